//! Server entry point: config → database → router → serve, or one of the maintenance commands.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    nestegg::server::cli::run().await
}
