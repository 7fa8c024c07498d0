//! `spawn_app()`: the real router on a free port, with its own fresh database (a unique SQLite file, or a
//! unique PostgreSQL database when `TEST_DATABASE=postgres`), a fake clock, and an HTTP client.

#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use nestegg::server::clock::FakeClock;
use nestegg::server::config::{Settings, Vars};
use nestegg::server::site;
use nestegg::server::startup::Application;
use sea_orm::{ConnectionTrait as _, Database, DatabaseConnection};
use tempfile::TempDir;
use time::macros::datetime;
use tokio::sync::oneshot;

pub const KEY_A: &str = "q83vEjq6GyxXKjvZ1sYkB2b8Vw9mN4pR7tU0cD5eF6g=";
pub const KEY_B: &str = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo=";

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    /// The app's own connection pool (closing it simulates a lost database).
    pub app_db: DatabaseConnection,
    pub clock: FakeClock,
    pub settings: Arc<Settings>,
    pub data_dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _postgres: Option<PostgresDatabase>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    /// A POST as our own pages send it: same-origin by the browser's account.
    pub fn post_same_origin(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .header("origin", &self.address)
            .header("sec-fetch-site", "same-origin")
    }

    /// Asks the server to stop, as SIGTERM would.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn backend_is_postgres() -> bool {
    std::env::var("TEST_DATABASE").is_ok_and(|v| v == "postgres")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts an app whose environment is the development defaults plus whatever `customize` sets.
pub async fn spawn_app_with(customize: impl FnOnce(&mut Vars)) -> TestApp {
    logs::init();
    let data_dir = tempfile::tempdir().expect("temp dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let address = format!("http://127.0.0.1:{port}");

    let postgres = if backend_is_postgres() {
        Some(PostgresDatabase::create().await)
    } else {
        None
    };
    let database_url = match &postgres {
        Some(pg) => pg.url.clone(),
        None => format!(
            "sqlite://{}?mode=rwc",
            data_dir.path().join("nestegg.db").display()
        ),
    };

    let mut vars: Vars = [
        ("ENVIRONMENT", "development".to_owned()),
        ("DATA_DIR", data_dir.path().display().to_string()),
        ("DATABASE_URL", database_url),
        ("PUBLIC_URL", address.clone()),
        ("SECRET_KEY", KEY_A.to_owned()),
        ("ENCRYPTION_KEY", KEY_B.to_owned()),
        ("DB_MAX_CONNECTIONS", "5".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    customize(&mut vars);
    let settings = Settings::from_vars(&vars).expect("test settings are valid");

    let mut leptos_options = site::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/Leptos.toml"
    )))
    .expect("Leptos.toml");
    leptos_options.site_addr = listener.local_addr().expect("addr");
    leptos_options.site_root = make_site_root(data_dir.path()).into();

    let clock = FakeClock::new(datetime!(2026-11-22 12:00 UTC));
    let app = Application::build(settings, leptos_options, Arc::new(clock.clone()), listener)
        .await
        .expect("app builds");
    let app_db = app.state().db.clone();
    let settings = app.state().settings.clone();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .expect("client");

    TestApp {
        address,
        port,
        client,
        app_db,
        clock,
        settings,
        data_dir,
        shutdown: Some(tx),
        server: Some(server),
        _postgres: postgres,
    }
}

/// A small stand-in for the cargo-leptos output (the tests do not need the real WASM bundle, only files
/// of the right types to serve).
fn make_site_root(data_dir: &Path) -> String {
    let root = data_dir.join("site");
    let pkg = root.join("pkg");
    std::fs::create_dir_all(&pkg).expect("site dir");
    let filler = "/* Nest Egg test asset */\n".repeat(200);
    std::fs::write(
        pkg.join("nestegg.css"),
        format!("body {{ margin: 0 }}\n{filler}"),
    )
    .expect("css");
    std::fs::write(
        pkg.join("nestegg.js"),
        format!("export default function init() {{}}\n{filler}"),
    )
    .expect("js");
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    wasm.extend(std::iter::repeat_n(0u8, 8192));
    std::fs::write(pkg.join("nestegg.wasm"), wasm).expect("wasm");
    root.display().to_string()
}

/// A database of its own on the local PostgreSQL, dropped when the test ends.
pub struct PostgresDatabase {
    pub url: String,
    name: String,
}

fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

impl PostgresDatabase {
    pub async fn create() -> PostgresDatabase {
        let admin = Database::connect(postgres_admin_url())
            .await
            .expect("PostgreSQL reachable");
        let name = format!("nestegg_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        let _ = admin.close().await;
        let base = postgres_admin_url();
        let url = match base.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("TEST_POSTGRES_URL must end in /DATABASE"),
        };
        PostgresDatabase { url, name }
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on itself: use a short-lived one.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(admin) = Database::connect(postgres_admin_url()).await {
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// Every log line the test process writes, as JSON, so tests can assert what was (and was not) logged.
pub mod logs {
    use super::*;

    static LINES: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

    #[derive(Clone)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    pub fn init() {
        LINES.get_or_init(|| {
            let buffer = Arc::new(Mutex::new(Vec::new()));
            let writer = Capture(buffer.clone());
            nestegg::server::telemetry::init(
                nestegg::server::config::LogFormat::Json,
                "info",
                move || writer.clone(),
            );
            buffer
        });
    }

    /// All captured lines so far, parsed.
    pub fn lines() -> Vec<serde_json::Value> {
        let Some(buffer) = LINES.get() else {
            return vec![];
        };
        let bytes = buffer.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    pub fn raw() -> String {
        let Some(buffer) = LINES.get() else {
            return String::new();
        };
        String::from_utf8_lossy(&buffer.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}
