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
pub const KEY_B: &str = "9/G1JBt7ZIyNgD2sfIxll35ctR2YO2ZiZAf8UQnASrM=";

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    /// The app's own connection pool (closing it simulates a lost database).
    pub app_db: DatabaseConnection,
    pub clock: FakeClock,
    pub settings: Arc<Settings>,
    /// The running app's state (database pool, hasher, limiters …) for tests that call services.
    pub state: nestegg::server::state::AppState,
    pub data_dir: TempDir,
    /// `http://127.0.0.1:PORT` of the `/metrics` listener, unless `METRICS_ADDR=off`.
    pub metrics_address: Option<String>,
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

/// The `nestegg` binary run as an operator or a supervisor runs it: in `dir`, with an empty
/// environment but PATH and the site options (no developer `.env` or variable leaks in).
pub fn nestegg_command(dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_nestegg"));
    cmd.env_clear()
        .current_dir(dir)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "LEPTOS_CONFIG",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Leptos.toml"),
        );
    cmd
}

pub fn backend_is_postgres() -> bool {
    std::env::var("TEST_DATABASE").is_ok_and(|v| v == "postgres")
}

/// The Redis the PostgreSQL run uses (the scaled-out mode: PostgreSQL + Redis).
pub fn test_redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

/// Lock-out counters `(all, locked)`, wherever this app keeps them (the database or Redis).
pub async fn lockout_counters(app: &TestApp) -> (u64, u64) {
    use fred::prelude::HashesInterface as _;
    use futures::TryStreamExt as _;
    match &app.state.redis {
        None => (
            app.count("login_throttles").await as u64,
            app.count("login_throttles WHERE locked_until IS NOT NULL")
                .await as u64,
        ),
        Some(redis) => {
            let keys: Vec<fred::types::Key> = redis
                .pool
                .next()
                .scan_buffered(redis.key("lockout:*"), Some(100), None)
                .try_collect()
                .await
                .expect("scan");
            let mut locked = 0;
            for key in &keys {
                let exists: bool = redis.pool.hexists(key.clone(), "u").await.expect("hexists");
                locked += u64::from(exists);
            }
            (keys.len() as u64, locked)
        }
    }
}

/// Counts `n` sign-in attempts for `email` in the lock-out store, as requests still in flight (counted,
/// not yet checked) would have.
pub async fn attempts_in_flight(app: &TestApp, email: &str, n: u32) {
    use nestegg::server::clock::Clock as _;
    let key = nestegg::server::services::auth::throttle_key(&app.state, email);
    for _ in 0..n {
        app.state
            .lockouts
            .count(&app.app_db, &key, app.clock.now().unix_timestamp())
            .await
            .expect("counted");
    }
}

/// Signs in to `email` once per password, all at once, each from a browser of its own; the statuses.
pub async fn parallel_sign_ins(
    app: &TestApp,
    email: &str,
    passwords: &[String],
) -> Vec<reqwest::StatusCode> {
    let sign_ins = passwords.iter().map(|password| {
        let client = reqwest::Client::new();
        let url = app.url("/api/sign_in");
        let origin = app.address.clone();
        async move {
            client
                .post(url)
                .header("origin", origin)
                .form(&[("email", email), ("password", password)])
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    futures::future::join_all(sign_ins).await
}

/// For tests about the database session store and lock-out table: the embedded arrangement even on
/// PostgreSQL (sessions and counters in the database, no Redis).
pub fn without_redis(vars: &mut Vars) {
    vars.remove("REDIS_URL");
    vars.remove("REDIS_KEY_PREFIX");
    vars.remove("REDIS_ALLOW_NO_PASSWORD");
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
        // A port of its own: tests run in parallel.
        ("METRICS_ADDR", "127.0.0.1:0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if postgres.is_none() {
        // Opening a fresh SQLite file took over the default second once in CI (PoolTimedOut at
        // start-up, in a test that builds ten apps in a row while other tests hash passwords). No
        // SQLite test is about this timeout; the outage tests that are run on PostgreSQL only.
        vars.insert("DB_ACQUIRE_TIMEOUT_MS".to_owned(), "5000".to_owned());
    }
    if postgres.is_some() {
        // Scaled out: sessions, rate limits and lock-outs in Redis, under a prefix of this app's own
        // (tests run in parallel against one Redis).
        vars.insert("REDIS_URL".to_owned(), test_redis_url());
        // The machine's Redis has no password; tests that run as production say it is theirs alone.
        vars.insert("REDIS_ALLOW_NO_PASSWORD".to_owned(), "true".to_owned());
        vars.insert(
            "REDIS_KEY_PREFIX".to_owned(),
            format!("test-{}", uuid::Uuid::new_v4().simple()),
        );
    }
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
    let metrics_address = app.metrics_addr().map(|a| format!("http://{a}"));
    let settings = app.state().settings.clone();
    let state = app.state().clone();
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
        state,
        data_dir,
        metrics_address,
        shutdown: Some(tx),
        server: Some(server),
        _postgres: postgres,
    }
}

/// A small stand-in for the cargo-leptos output (the tests do not need the real WASM bundle, only files
/// of the right types to serve).
pub fn make_site_root(data_dir: &Path) -> String {
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
    // A file of the site's own, as `public/` puts there.
    std::fs::write(root.join("robots.txt"), "User-agent: *\nDisallow:\n").expect("robots.txt");
    root.display().to_string()
}

/// A database of its own on the local PostgreSQL, dropped when the test ends.
pub struct PostgresDatabase {
    pub url: String,
    name: String,
}

pub fn postgres_admin_url() -> String {
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

/// The `nestegg_session=…` pair a response set (as a `Cookie` header sends it back), if any.
pub fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("nestegg_session="))
        .map(|c| c.split(';').next().unwrap_or_default().to_owned())
}

/// The session id inside a signed `nestegg_session=…` cookie: the value is the signature (44
/// characters of base64) followed by the id.
pub fn session_id(cookie: &str) -> tower_sessions::session::Id {
    let value = cookie.trim_start_matches("nestegg_session=");
    value[44..]
        .parse()
        .expect("a session id after the signature")
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

/// An email as the tests read it: headers and the decoded plain-text part.
#[derive(Debug, Clone)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
}

impl Email {
    /// The first link in the text that starts with `prefix` (e.g. "/verify-email").
    pub fn link(&self, app: &TestApp, path: &str) -> String {
        let start = format!("{}{path}", app.address);
        let at = self
            .text
            .find(&start)
            .unwrap_or_else(|| panic!("no {path} link in: {}", self.text));
        link_at(&self.text[at..]).to_owned()
    }

    pub fn token(&self, app: &TestApp, path: &str) -> String {
        self.link(app, path)
            .rsplit("token=")
            .next()
            .unwrap()
            .to_owned()
    }

    /// The token of the first `path?token=…` link, whichever instance's address it names (the
    /// scale-out tests run several, and no `TestApp`).
    pub fn token_in(&self, path: &str) -> String {
        let marker = format!("{path}?token=");
        let at = self
            .text
            .find(&marker)
            .unwrap_or_else(|| panic!("no {path} link in: {}", self.text));
        link_at(&self.text[at + marker.len()..]).to_owned()
    }
}

/// The link (or the end of one) that `text` starts with: up to a space, a quote or an angle bracket.
fn link_at(text: &str) -> &str {
    text.split(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>')
        .next()
        .unwrap_or_default()
}

/// Parses a raw RFC 5322 message as a mail client would (MIME parts, quoted-printable, encoded
/// headers): To, Subject and the plain-text part. A parser, not string searches: a token that
/// happened to start a quoted-printable line with "--" once looked like the MIME boundary here.
pub fn parse_email(raw: &str) -> Email {
    let message = mail_parser::MessageParser::default()
        .parse(raw)
        .unwrap_or_else(|| panic!("not an email: {raw}"));
    let to = message
        .to()
        .map(|to| {
            to.iter()
                .filter_map(|addr| addr.address())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    Email {
        to,
        subject: message.subject().unwrap_or_default().to_owned(),
        text: message.body_text(0).unwrap_or_default().into_owned(),
    }
}

impl TestApp {
    /// Emails delivered (as `.eml` files by the development transport) to `to`, waiting up to 5 s for
    /// at least `count` of them.
    pub async fn emails_to(&self, to: &str, count: usize) -> Vec<Email> {
        let dir = self.data_dir.path().join("outbox");
        for _ in 0..100 {
            let mut found = vec![];
            if let Ok(entries) = std::fs::read_dir(&dir) {
                let mut paths: Vec<_> = entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect();
                paths.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
                for path in paths {
                    let raw = std::fs::read_to_string(&path).unwrap_or_default();
                    let email = parse_email(&raw);
                    if email.to.contains(to) {
                        found.push(email);
                    }
                }
            }
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("fewer than {count} emails to {to}");
    }

    /// Posts a form to a server function the way a same-origin page would (fetch, not navigation).
    pub async fn call(&self, function: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.post_same_origin(&format!("/api/{function}"))
            .form(form)
            .send()
            .await
            .expect("request sent")
    }

    /// Registers an account and confirms its address through the emailed link.
    pub async fn register_verified(&self, email: &str, password: &str) {
        let response = self.register(email, "Test Person", password).await;
        assert!(
            response.status().is_redirection() || response.status().is_success(),
            "{:?}",
            response.status()
        );
        let mail = self.emails_to(email, 1).await;
        let token = mail[0].token(self, "/verify-email");
        let response = self.call("verify_email", &[("token", &token)]).await;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, 200, "verify_email: {body}");
    }

    pub async fn register(&self, email: &str, name: &str, password: &str) -> reqwest::Response {
        self.call(
            "register",
            &[
                ("email", email),
                ("display_name", name),
                ("password", password),
                ("accept_terms", "on"),
                ("accept_privacy", "on"),
            ],
        )
        .await
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> reqwest::Response {
        self.call("sign_in", &[("email", email), ("password", password)])
            .await
    }

    /// Counts rows of a table with the app's own connection.
    pub async fn count(&self, table: &str) -> i64 {
        let backend = self.app_db.get_database_backend();
        let row = self
            .app_db
            .query_one_raw(sea_orm::Statement::from_string(
                backend,
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    }
}
