//! The `nestegg` command: `serve` (default), `migrate`, `check-config`, `rotate-keys`, `admin`,
//! `backup`, `restore`.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::server::clock::SystemClock;
use crate::server::config::{KeyMode, Settings};
use crate::server::startup::{Application, shutdown_signal};
use crate::server::{db, site, telemetry};

#[derive(Parser)]
#[command(name = "nestegg", version, about = "Nest Egg household finance server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the web app (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Validate the configuration: prints "configuration OK" or every problem (exit code 1).
    CheckConfig,
    /// Re-encrypt every stored secret under the current ENCRYPTION_KEY (keys being retired stay in
    /// ENCRYPTION_KEYS_PREVIOUS until this reports nothing left). Safe to interrupt and run again.
    RotateKeys,
    /// Operators of this deployment (besides the addresses in ADMIN_EMAILS).
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Act on one account (for the runbooks: a suspected compromise).
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Measure the CPU time of one password hash at the configured ARGON2_* cost, and what it means
    /// for sign-ins per second on this machine.
    MeasureHash {
        /// How many hashes to average over.
        #[arg(long, default_value_t = 50)]
        count: u32,
    },
    /// Write a consistent copy of the SQLite database to PATH while the app keeps running.
    Backup { path: std::path::PathBuf },
    /// Restore a backup made by `backup` into an empty data directory (where DATABASE_URL points).
    Restore { path: std::path::PathBuf },
}

#[derive(Subcommand)]
enum UserAction {
    /// Sign the account out everywhere (its sessions end at their next request).
    RevokeSessions { email: String },
    /// Sign out everywhere, make the password unusable and email a reset link.
    ForceReset { email: String },
    /// Turn off two-factor authentication (a lost phone and no backup code left, or an authenticator
    /// someone else added), sign out everywhere and email the owner. Check who is asking first.
    RemoveTwoFactor { email: String },
}

#[derive(Subcommand)]
enum AdminAction {
    /// Make the account with this email an operator.
    Grant { email: String },
    /// Take operator rights granted with `admin grant` back.
    Revoke { email: String },
    /// List every operator and where the rights come from.
    List,
}

/// Copies `.env` (working directory only) into the process environment, for the parts that read the
/// environment directly (Leptos' `LEPTOS_*` site options). Variables already set win.
///
/// Must run before any thread is started: `main` calls it before building the async runtime.
pub fn export_dotenv() {
    // The well-formed lines; Settings::load reports the malformed ones with the other problems.
    let (vars, _) = crate::server::config::read_dotenv(std::path::Path::new(".env"));
    for (key, value) in vars {
        if std::env::var_os(&key).is_none() {
            // SAFETY: called from `main` before the runtime or any other thread exists.
            unsafe { std::env::set_var(key, value) };
        }
    }
}

/// Panics are logged through tracing (JSON in production, with the request id) with their location
/// and backtrace (function names only), never their message: it may carry request data.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        // The message may quote a value (`expect` on user input, a token); the frames name only code,
        // and without them a panic deep inside a library says nothing of how it was reached.
        let backtrace = std::backtrace::Backtrace::force_capture().to_string();
        tracing::error!(%location, %backtrace, "panic (message withheld)");
    }));
}

pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    let key_mode = match command {
        Command::CheckConfig => KeyMode::ReadOnly,
        _ => KeyMode::GenerateAndKeep,
    };
    let settings = match Settings::load(key_mode) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        Command::CheckConfig => check_config(),
        Command::Migrate => migrate(settings).await,
        Command::RotateKeys => rotate_keys(settings).await,
        Command::Admin { action } => admin(settings, action).await,
        Command::User { action } => user(settings, action).await,
        Command::MeasureHash { count } => measure_hash(&settings, count),
        Command::Backup { path } => backup(settings, &path).await,
        Command::Restore { path } => restore(settings, &path).await,
        Command::Serve => serve(settings).await,
    }
}

fn measure_hash(settings: &Settings, count: u32) -> ExitCode {
    use crate::server::services::crypto::PasswordHasher;
    let cost = settings.accounts.hash_cost;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // As many at once as the server lets run (ARGON2_MAX_CONCURRENT, the cores by default): under a
    // sign-in flood that is how they run, sharing the caches, so that is the time the bound uses.
    let threads = settings.accounts.hash_concurrency.min(cores);
    match PasswordHasher::measure(cost, count, threads) {
        Ok(timing) => {
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
            println!(
                "argon2id m={} KiB t={} p={}: {:.1} ms CPU per hash alone; {:.1} ms CPU per hash \
                 with {threads} at once ({count} hashes each); bound: {:.0} sign-ins/s on {threads} \
                 of {cores} cores",
                cost.memory_kib,
                cost.iterations,
                cost.parallelism,
                ms(timing.alone),
                ms(timing.concurrent),
                threads as f64 / timing.concurrent.as_secs_f64().max(f64::EPSILON),
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

fn check_config() -> ExitCode {
    // Settings already loaded; the site options are the other half of the configuration.
    match site::load(&site::config_path()) {
        Ok(_) => {
            println!("configuration OK");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("invalid configuration:\n  - {err}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(settings: Settings) -> ExitCode {
    telemetry::init(settings.log_format, &settings.log_filter, std::io::stderr);
    let result = async {
        let conn = db::connect(&settings.database).await?;
        let pending = db::pending_migrations(&conn)
            .await
            .map_err(db::DbSetupError::Migrate)?;
        db::migrate(&conn).await?;
        let _ = conn.close().await;
        Ok::<usize, db::DbSetupError>(pending)
    }
    .await;
    match result {
        Ok(applied) => {
            println!("migrations applied: {applied}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

async fn rotate_keys(settings: Settings) -> ExitCode {
    use crate::server::services::{key_rotation, secret_box::SecretBox};
    telemetry::init(settings.log_format, &settings.log_filter, std::io::stderr);
    let secret_box = SecretBox::new(&settings.encryption_key, &settings.encryption_keys_previous);
    let result = async {
        let conn = db::connect(&settings.database)
            .await
            .map_err(|e| e.to_string())?;
        db::migrate(&conn).await.map_err(|e| e.to_string())?;
        let report = key_rotation::rotate(&conn, &secret_box)
            .await
            .map_err(|e| format!("key rotation stopped (run it again to resume): {e}"))?;
        let _ = conn.close().await;
        Ok::<_, String>(report)
    }
    .await;
    match result {
        Ok(report) => {
            println!(
                "key {}: {} re-encrypted, {} already current, {} unreadable, {} changed meanwhile",
                secret_box.current_key_id(),
                report.rotated,
                report.current,
                report.unreadable,
                report.changed
            );
            if report.changed > 0 {
                eprintln!("some values changed while they were being re-encrypted: run again");
                ExitCode::FAILURE
            } else if report.unreadable > 0 {
                eprintln!(
                    "some values open with no configured key: add the key that sealed them to \
                     ENCRYPTION_KEYS_PREVIOUS and run again"
                );
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

/// Connects and brings the schema up to date, for the commands that work on the data.
async fn connect_migrated(settings: &Settings) -> Result<sea_orm::DatabaseConnection, String> {
    let conn = db::connect(&settings.database)
        .await
        .map_err(|e| e.to_string())?;
    db::migrate(&conn).await.map_err(|e| e.to_string())?;
    Ok(conn)
}

async fn admin(settings: Settings, action: AdminAction) -> ExitCode {
    use crate::server::services::operators::{self, Change};
    telemetry::init(settings.log_format, &settings.log_filter, std::io::stderr);
    let conn = match connect_migrated(&settings).await {
        Ok(conn) => conn,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (email, outcome) = match action {
        AdminAction::List => {
            return match operators::list(&conn, &settings).await {
                Ok(all) if all.is_empty() => {
                    println!("no operators (set ADMIN_EMAILS or run `nestegg admin grant EMAIL`)");
                    ExitCode::SUCCESS
                }
                Ok(all) => {
                    for (email, source) in all {
                        println!("{email}\t{source}");
                    }
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("{err}");
                    ExitCode::FAILURE
                }
            };
        }
        AdminAction::Grant { email } => {
            let outcome = operators::grant(&conn, &settings, &email, now).await;
            (
                email,
                outcome.map(|c| (c, "granted operator rights", "already an operator")),
            )
        }
        AdminAction::Revoke { email } => {
            let outcome = operators::revoke(&conn, &settings, &email, now).await;
            (
                email,
                outcome.map(|c| {
                    (
                        c,
                        "revoked operator rights",
                        "was not granted operator rights",
                    )
                }),
            )
        }
    };
    let _ = conn.close().await;
    match outcome {
        Ok((Change::Done, done, _)) => {
            println!("{email}: {done}");
            ExitCode::SUCCESS
        }
        Ok((Change::Unchanged, _, unchanged)) => {
            println!("{email}: {unchanged}");
            ExitCode::SUCCESS
        }
        Ok((Change::NoAccount, _, _)) => {
            eprintln!("{email}: no account has this address");
            ExitCode::FAILURE
        }
        Ok((Change::Unconfirmed, _, _)) => {
            eprintln!("{email}: the account has not confirmed its address yet");
            ExitCode::FAILURE
        }
        Ok((Change::StillInAdminEmails, _, _)) => {
            eprintln!(
                "{email}: still an operator through ADMIN_EMAILS; remove it there and restart"
            );
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

async fn user(settings: Settings, action: UserAction) -> ExitCode {
    use crate::server::services::{sessions, sign_in_alerts};
    telemetry::init(settings.log_format, &settings.log_filter, std::io::stderr);
    // The reset email goes through the outbox, which the running app delivers.
    let leptos_options = match site::load(&site::config_path()) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let conn = match connect_migrated(&settings).await {
        Ok(conn) => conn,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    // Sessions may live in Redis: revoking them must reach it.
    let redis = match crate::server::startup::connect_redis(&settings).await {
        Ok(redis) => redis,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let state = match crate::server::startup::new_state(
        settings,
        conn,
        redis,
        Arc::new(SystemClock),
        leptos_options,
    ) {
        Ok(state) => state,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome: Result<Option<String>, String> = match &action {
        UserAction::RevokeSessions { email } => {
            let account = crate::server::entities::user::Entity::find_by_typed_email(email)
                .one(&state.db)
                .await;
            match account {
                Ok(Some(account)) => sessions::revoke_all_by_operator(&state, &account)
                    .await
                    .map(|n| Some(format!("{email}: {n} sessions ended")))
                    .map_err(|e| e.to_string()),
                Ok(None) => Ok(None),
                Err(err) => Err(err.to_string()),
            }
        }
        UserAction::ForceReset { email } => sign_in_alerts::force_reset(&state, email)
            .await
            .map(|found| {
                found.then(|| {
                    format!("{email}: signed out everywhere, password disabled, reset link queued")
                })
            })
            .map_err(|e| e.to_string()),
        UserAction::RemoveTwoFactor { email } => {
            crate::server::services::mfa::remove_by_operator(&state, email)
                .await
                .map(|outcome| {
                    outcome.map(|removed| {
                        if removed {
                            format!(
                                "{email}: two-factor authentication removed, signed out everywhere"
                            )
                        } else {
                            format!(
                                "{email}: two-factor authentication was not on; nothing changed"
                            )
                        }
                    })
                })
                .map_err(|e| e.to_string())
        }
    };
    let _ = state.db.close_by_ref().await;
    match outcome {
        Ok(Some(message)) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("no account has this address");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

async fn backup(settings: Settings, path: &std::path::Path) -> ExitCode {
    telemetry::init(settings.log_format, &settings.log_filter, std::io::stderr);
    // Connecting would create an empty database where none is: that is a mistake, not a backup.
    if let Some(database) = settings.database.url.sqlite_path()
        && !database.exists()
    {
        eprintln!(
            "backup failed: there is no database at {} (check DATABASE_URL and DATA_DIR)",
            database.display()
        );
        return ExitCode::FAILURE;
    }
    let conn = match db::connect(&settings.database).await {
        Ok(conn) => conn,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let result =
        crate::server::backup::backup(&conn, path, &crate::server::backup::Turn::default()).await;
    let _ = conn.close().await;
    match result {
        Ok(bytes) => {
            println!("backup written to {} ({bytes} bytes)", path.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("backup failed: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn restore(settings: Settings, path: &std::path::Path) -> ExitCode {
    telemetry::init(settings.log_format, &settings.log_filter, std::io::stderr);
    match crate::server::backup::restore(&settings.database, path).await {
        Ok(()) => {
            // A backup from an older release gets the newer schema now, not at the next start.
            match connect_migrated(&settings).await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    println!(
                        "restored {} into {}",
                        path.display(),
                        settings.database.url.redacted()
                    );
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("restored, but migrating it failed: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(err) => {
            eprintln!("restore failed: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> ExitCode {
    telemetry::init(settings.log_format, &settings.log_filter, std::io::stdout);
    install_panic_hook();
    let leptos_options = match site::load(&site::config_path()) {
        Ok(options) => options,
        Err(err) => {
            tracing::error!(error = %err, "cannot load the site configuration");
            return ExitCode::FAILURE;
        }
    };
    let addr = leptos_options.site_addr;
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(%addr, error = %err, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        environment = ?settings.environment,
        database = %settings.database.url.redacted(),
        public_url = %settings.public_url,
        "starting Nest Egg"
    );
    let app =
        match Application::build(settings, leptos_options, Arc::new(SystemClock), listener).await {
            Ok(app) => app,
            Err(err) => {
                tracing::error!(error = %err, "start-up failed");
                return ExitCode::FAILURE;
            }
        };
    if let Ok(local) = app.local_addr() {
        tracing::info!("Nest Egg is ready on http://{local}");
    }
    match app.run_until(shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = %err, "server error");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    // nextest runs each test in a process of its own, so swapping the global hook touches no other test.
    #[test]
    fn panics_are_logged_with_where_and_how_they_were_reached_but_never_their_message() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let previous = std::panic::take_hook();
            super::install_panic_hook();
            let outcome = std::panic::catch_unwind(|| panic!("reset link token=s3cr3t-value"));
            std::panic::set_hook(previous);
            assert!(outcome.is_err());
        });
        let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("panic (message withheld)"), "{logged}");
        assert!(!logged.contains("s3cr3t"), "{logged}");
        assert!(
            logged.contains("src/server/cli.rs"),
            "no location: {logged}"
        );
        // The frames lead back to the code that panicked.
        assert!(
            logged.contains("panics_are_logged_with_where_and_how_they_were_reached"),
            "no backtrace: {logged}"
        );
    }
}
