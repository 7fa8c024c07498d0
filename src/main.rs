//! Server entry point: config → database → router → serve, or one of the maintenance commands.

// See `server::memory`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Before any thread exists: environment variables may only be set while single-threaded.
    nestegg::server::cli::export_dotenv();
    nestegg::server::memory::configure_allocator();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(nestegg::server::cli::run())
}
