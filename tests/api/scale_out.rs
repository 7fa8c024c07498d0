//! The scaled-out mode (PostgreSQL + Redis), on the PostgreSQL run:
//! - two app *processes* on one database and one Redis, taking requests in turn, behave as one app;
//! - Redis out of reach: 503s (never signed in or out by mistake), readiness says so, and the app
//!   recovers by itself, also from a connection that goes silent without closing;
//! - sessions in Redis hold no cookie value.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fred::prelude::KeysInterface as _;
use serde_json::Value;

use nestegg::error::AppError;
use nestegg::server::services::totp::TotpSecret;
use nestegg::server::session_store::hash_id;

use crate::helpers::{
    KEY_A, KEY_B, PostgresDatabase, backend_is_postgres, make_site_root, parse_email,
    session_cookie, session_id, spawn_app_with, test_redis_url,
};
use crate::smtp_sink::SmtpSink;
use crate::tcp_proxy::TcpProxy;

const PASSWORD: &str = "glacier Minnow 47 paperclip orbit";
const WRONG: &str = "not the password at all 93";
const NEW_PASSWORD: &str = "fresh Lantern 58 quartz meadow";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `nestegg` process, killed when dropped.
struct Instance {
    address: String,
    metrics: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nestegg(dir: &std::path::Path, envs: &[(&str, String)]) -> Command {
    let mut cmd = crate::helpers::nestegg_command(dir);
    cmd.env("DATA_DIR", dir)
        .env("SECRET_KEY", KEY_A)
        .env("ENCRYPTION_KEY", KEY_B);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

impl Instance {
    async fn start(shared: &[(&str, String)]) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let metrics_port = free_port();
        let address = format!("http://127.0.0.1:{port}");
        let mut envs = shared.to_vec();
        envs.extend([
            ("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}")),
            ("LEPTOS_SITE_ROOT", make_site_root(dir.path())),
            ("PUBLIC_URL", address.clone()),
            ("METRICS_ADDR", format!("127.0.0.1:{metrics_port}")),
            // Migrated once beforehand, as the deployment guide says: instances must not race.
            ("RUN_MIGRATIONS", "false".to_owned()),
            ("LOG_FORMAT", "json".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ]);
        let child = nestegg(dir.path(), &envs)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let instance = Instance {
            address,
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
            child,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(instance.url("/health/ready")).send().await
                && r.status() == 200
            {
                return instance;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("instance at {} never became ready", instance.address);
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A server function called the way our pages call it, on this instance.
    async fn call(
        &self,
        client: &reqwest::Client,
        function: &str,
        form: &[(&str, &str)],
    ) -> (u16, String) {
        let response = client
            .post(self.url(&format!("/api/{function}")))
            .header("origin", &self.address)
            .header("sec-fetch-site", "same-origin")
            .form(form)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// Runs of `job` on this instance, by outcome, from its metrics.
    async fn job_runs(&self, job: &str) -> f64 {
        let text = reqwest::Client::new()
            .get(&self.metrics)
            .basic_auth(
                "metrics",
                Some(nestegg::server::config::DEV_METRICS_PASSWORD),
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let label = format!("job=\"{job}\"");
        text.lines()
            .filter(|l| l.starts_with("job_runs_total{") && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// A browser: its own cookies, which (like a browser's) go to whichever instance the balancer picks.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn signed_in_as(instance: &Instance, client: &reqwest::Client) -> Option<String> {
    let (status, body) = instance.call(client, "current_user", &[]).await;
    assert_eq!(status, 200, "{body}");
    let value: Value = serde_json::from_str(&body).unwrap();
    value
        .get("email")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The sink's raw messages, once at least `count` arrived.
async fn messages(sink: &SmtpSink, count: usize) -> Vec<String> {
    for _ in 0..200 {
        let got = sink.messages.lock().await.clone();
        if got.len() >= count {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "expected {count} emails, got {}",
        sink.messages.lock().await.len()
    );
}

async fn pg_count(db: &sea_orm::DatabaseConnection, sql: &str) -> i64 {
    use sea_orm::ConnectionTrait as _;
    db.query_one_raw(sea_orm::Statement::from_string(
        sea_orm::DbBackend::Postgres,
        sql.to_owned(),
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get::<i64>("", "n")
    .unwrap()
}

#[tokio::test]
async fn two_instances_on_one_database_and_one_redis_behave_as_one_app() {
    if !backend_is_postgres() {
        return; // The scaled-out arrangement: PostgreSQL and Redis.
    }
    let pg = PostgresDatabase::create().await;
    let sink = SmtpSink::start().await;
    let shared: Vec<(&str, String)> = vec![
        ("DATABASE_URL", pg.url.clone()),
        ("REDIS_URL", test_redis_url()),
        (
            "REDIS_KEY_PREFIX",
            format!("test-{}", uuid::Uuid::new_v4().simple()),
        ),
        ("SMTP_URL", sink.url()),
        ("ALLOWED_HOSTS", "127.0.0.1".to_owned()),
        ("JOBS_TICK_SECS", "1".to_owned()),
        ("LOCKOUT_THRESHOLD", "4".to_owned()),
        ("RATE_LIMIT_SIGN_IN_PER_MINUTE", "100".to_owned()),
        ("RATE_LIMIT_RESET_PER_HOUR", "4".to_owned()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let migrated = nestegg(dir.path(), &shared)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let started = Instant::now();
    let a = Instance::start(&shared).await;
    let b = Instance::start(&shared).await;
    let db = sea_orm::Database::connect(&pg.url).await.unwrap();

    // Registered on A, confirmed on B through the emailed link.
    let ann = browser();
    let (status, body) = a
        .call(
            &ann,
            "register",
            &[
                ("email", "ann@example.org"),
                ("display_name", "Ann"),
                ("password", PASSWORD),
                ("accept_terms", "on"),
                ("accept_privacy", "on"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mail = messages(&sink, 1).await;
    let token = parse_email(&mail[0]).token_in("/verify-email");
    let (status, body) = b.call(&ann, "verify_email", &[("token", &token)]).await;
    assert_eq!(status, 200, "{body}");

    // A session started on B is valid on A; signing out on A ends it on B.
    let (status, body) = b
        .call(
            &ann,
            "sign_in",
            &[("email", "ann@example.org"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        signed_in_as(&a, &ann).await.as_deref(),
        Some("ann@example.org")
    );
    assert_eq!(
        signed_in_as(&b, &ann).await.as_deref(),
        Some("ann@example.org")
    );
    let (status, body) = a.call(&ann, "sign_out", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(signed_in_as(&b, &ann).await, None, "signed out on B too");
    assert_eq!(signed_in_as(&a, &ann).await, None);

    // Two sessions; the one on the laptop ends the phone's from the other instance.
    let laptop = browser();
    let phone = browser();
    for (instance, client) in [(&a, &laptop), (&b, &phone)] {
        let (status, body) = instance
            .call(
                client,
                "sign_in",
                &[("email", "ann@example.org"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = b.call(&laptop, "list_sessions", &[]).await;
    assert_eq!(status, 200, "{body}");
    let sessions: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(sessions.len(), 2, "{body}");
    let other = sessions
        .iter()
        .find(|s| s["current"] == false)
        .and_then(|s| s["id"].as_str())
        .unwrap()
        .to_owned();
    let (status, body) = a.call(&laptop, "revoke_session", &[("id", &other)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(signed_in_as(&a, &phone).await, None, "revoked on A");
    assert_eq!(signed_in_as(&b, &phone).await, None, "revoked on B");
    assert_eq!(
        signed_in_as(&b, &laptop).await.as_deref(),
        Some("ann@example.org")
    );

    // Wrong passwords alternate between the instances: the fourth locks the account for both.
    let guesser = browser();
    for (i, instance) in [&a, &b, &a, &b].into_iter().enumerate() {
        let (status, body) = instance
            .call(
                &guesser,
                "sign_in",
                &[("email", "ann@example.org"), ("password", WRONG)],
            )
            .await;
        assert_eq!(status, 400, "guess {i}: {body}");
    }
    for instance in [&a, &b] {
        let (status, body) = instance
            .call(
                &guesser,
                "sign_in",
                &[("email", "ann@example.org"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("Too many attempts"), "{body}");
    }

    // A per-IP limit of 4 an hour, counted across the instances: the fifth request is refused.
    let asker = browser();
    for (i, instance) in [&a, &b, &a, &b].into_iter().enumerate() {
        let email = format!("nobody{i}@example.org");
        let (status, body) = instance
            .call(&asker, "request_password_reset", &[("email", &email)])
            .await;
        assert_eq!(status, 200, "request {i}: {body}");
    }
    let (status, body) = a
        .call(
            &asker,
            "request_password_reset",
            &[("email", "nobody@example.org")],
        )
        .await;
    assert_eq!(status, 429, "{body}");

    // Every queued email (confirmation, lock-out notice) delivered exactly once, though both
    // instances run the outbox worker.
    let mut drained = false;
    for _ in 0..200 {
        if pg_count(
            &db,
            "SELECT COUNT(*) AS n FROM outbox_emails WHERE status <> 'sent'",
        )
        .await
            == 0
        {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(drained, "the outbox drains");
    let queued = pg_count(&db, "SELECT COUNT(*) AS n FROM outbox_emails").await;
    assert!(queued >= 2, "confirmation and lock-out notice: {queued}");
    let delivered = messages(&sink, queued as usize).await;
    // A late duplicate would arrive after the rows say "sent": give it the time to.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        sink.messages.lock().await.len(),
        queued as usize,
        "no email twice"
    );
    use sea_orm::EntityTrait as _;
    for row in nestegg::server::entities::outbox_email::Entity::find()
        .all(&db)
        .await
        .unwrap()
    {
        let copies = delivered
            .iter()
            .filter(|m| m.contains(&row.message_id))
            .count();
        assert_eq!(copies, 1, "{} delivered {copies} times", row.kind);
    }

    // Both instances look for due jobs every second; each job ran on one of them, once.
    let ticks_needed = Duration::from_secs(4);
    if let Some(wait) = ticks_needed.checked_sub(started.elapsed()) {
        tokio::time::sleep(wait).await;
    }
    for job in ["purge_sessions", "purge_tokens", "purge_history"] {
        let (on_a, on_b) = (a.job_runs(job).await, b.job_runs(job).await);
        assert_eq!(on_a + on_b, 1.0, "{job}: {on_a} runs on A, {on_b} on B");
    }
}

#[tokio::test]
async fn without_redis_nothing_passes_for_signed_in_or_out_and_it_recovers_by_itself() {
    if !backend_is_postgres() {
        return; // The scaled-out arrangement: PostgreSQL and Redis.
    }
    let (proxy, app) = app_behind_a_proxy().await;
    app.register_verified("ann@example.org", PASSWORD).await;
    assert_eq!(app.sign_in("ann@example.org", PASSWORD).await.status(), 200);
    let page = |app: &crate::helpers::TestApp| {
        app.get("/settings/profile")
            .header("accept", "text/html")
            .send()
    };
    assert_eq!(page(&app).await.unwrap().status(), 200);

    proxy.cut();
    let started = Instant::now();
    let response = page(&app).await.unwrap();
    assert_eq!(response.status(), 503, "a page needing the session");
    let html = response.text().await.unwrap();
    assert!(html.contains("temporarily unavailable"), "{html}");
    let call = app.call("current_user", &[]).await;
    assert_eq!(call.status(), 503, "never signed out by mistake");
    let stranger = reqwest::Client::new();
    let sign_in = stranger
        .post(app.url("/api/sign_in"))
        .header("origin", &app.address)
        .header("sec-fetch-site", "same-origin")
        .form(&[("email", "ann@example.org"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(sign_in.status(), 503, "nobody signs in");
    // Said in the error object the browser's server-function client reads (as plain text it showed
    // "The form was incomplete or malformed").
    let error: AppError = serde_json::from_str(&sign_in.text().await.unwrap()).unwrap();
    assert_eq!(error, AppError::Unavailable);
    // Without JavaScript: back to the form, with the error in the address as for any refusal.
    let plain = browser()
        .post(app.url("/api/sign_in"))
        .header("origin", &app.address)
        .header("sec-fetch-site", "same-origin")
        .header("accept", "text/html")
        .header("referer", app.url("/login"))
        .form(&[("email", "ann@example.org"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 303, "the form, again");
    let location = plain.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(&app.url("/login?")) && location.contains("__err="),
        "{location}"
    );
    assert!(
        location.contains("keep_email=ann%40example.org"),
        "with what was typed: {location}"
    );
    assert!(
        !location.contains("glacier"),
        "never the password: {location}"
    );
    let ready = app.get("/health/ready").send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = serde_json::from_str(&ready.text().await.unwrap()).unwrap();
    assert_eq!(ready["checks"]["redis"], "unavailable", "{ready}");
    assert_eq!(ready["checks"]["database"], "ok", "{ready}");
    assert_eq!(app.get("/health/live").send().await.unwrap().status(), 200);
    // Monitoring sees the outage rather than hanging in it: counting sessions (a SCAN) gives up, the
    // rest of the scrape is there.
    let metrics = reqwest::Client::new()
        .get(format!(
            "{}/metrics",
            app.metrics_address.as_deref().unwrap()
        ))
        .basic_auth(
            "metrics",
            Some(nestegg::server::config::DEV_METRICS_PASSWORD),
        )
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("a scrape answered during the outage");
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("metrics_scrape_errors_total"), "{metrics}");
    assert!(metrics.contains("outbox_emails{"), "{metrics}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "quick answers, not hangs: {:?}",
        started.elapsed()
    );

    proxy.restore();
    let mut recovered = false;
    for _ in 0..100 {
        if app.get("/health/ready").send().await.unwrap().status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "ready again without a restart");
    // Redis itself kept the session: still signed in.
    let me = app.call("current_user", &[]).await;
    assert_eq!(me.status(), 200);
    assert!(me.text().await.unwrap().contains("ann@example.org"));
    assert_eq!(page(&app).await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_redis_connection_gone_silent_is_replaced_without_a_restart() {
    let Some((proxy, app, _)) = ann_signed_in_behind_a_proxy().await else {
        return;
    };
    // Every connection open now passes nothing more but stays open: Redis moved to a new address,
    // or a firewall forgot the flow. Only new connections get through.
    proxy.freeze();
    let started = Instant::now();
    let mut answers = Vec::new();
    let mut in_a_row = 0;
    while in_a_row < 8 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still not back after {:?}: {answers:?}",
            started.elapsed()
        );
        let me = app.call("current_user", &[]).await;
        let status = me.status().as_u16();
        let text = me.text().await.unwrap();
        if status == 200 {
            assert!(text.contains("ann@example.org"), "never signed out: {text}");
            in_a_row += 1;
        } else {
            assert_eq!(status, 503, "{text}");
            in_a_row = 0;
        }
        answers.push(status);
    }
    assert!(
        answers.contains(&503),
        "the frozen connections were in use: {answers:?}"
    );
    assert_eq!(app.get("/health/ready").send().await.unwrap().status(), 200);
}

/// The app on the test Redis, reached through a proxy the test can cut.
async fn app_behind_a_proxy() -> (TcpProxy, crate::helpers::TestApp) {
    let redis = url::Url::parse(&test_redis_url()).unwrap();
    let target = format!(
        "{}:{}",
        redis.host_str().unwrap_or("127.0.0.1"),
        redis.port().unwrap_or(6379)
    );
    let proxy = TcpProxy::start(&target).await;
    let port = proxy.port;
    let app = spawn_app_with(move |vars| {
        vars.insert("REDIS_URL".into(), format!("redis://127.0.0.1:{port}/0"));
    })
    .await;
    (proxy, app)
}

/// Ann, signed in on the app behind a proxy ([`app_behind_a_proxy`]), and the key her session is
/// stored under ([`stored_key`]); none unless the tests run on PostgreSQL (the scaled-out
/// arrangement).
async fn ann_signed_in_behind_a_proxy() -> Option<(TcpProxy, crate::helpers::TestApp, String)> {
    if !backend_is_postgres() {
        return None;
    }
    let (proxy, app) = app_behind_a_proxy().await;
    app.register_verified("ann@example.org", PASSWORD).await;
    let signed_in = app.sign_in("ann@example.org", PASSWORD).await;
    assert_eq!(signed_in.status(), 200);
    let key = stored_key(&signed_in);
    Some((proxy, app, key))
}

/// The key the session a response started is stored under, which the session store sends Redis
/// only when it saves the session.
fn stored_key(response: &reqwest::Response) -> String {
    hash_id(&session_id(&session_cookie(response).unwrap()))
}

/// Starts two-factor setup for the signed-in caller; the authenticator's current code confirms it.
async fn current_setup_code(app: &crate::helpers::TestApp) -> String {
    assert_eq!(app.call("start_two_factor_setup", &[]).await.status(), 200);
    let status: Value = serde_json::from_str(
        &app.call("two_factor_status", &[])
            .await
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let manual_key = status["setup"]["manual_key"]
        .as_str()
        .unwrap()
        .replace(' ', "");
    let secret = TotpSecret::from_base32(&manual_key).unwrap();
    let now = nestegg::server::clock::Clock::now(&app.clock).unix_timestamp() as u64;
    secret.code_at(now).unwrap()
}

/// Cuts the link to Redis no more, and waits until the app has reconnected.
async fn restore(proxy: &TcpProxy, app: &crate::helpers::TestApp) {
    proxy.restore();
    for _ in 0..100 {
        if app.get("/health/ready").send().await.unwrap().status() == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not ready again");
}

/// Signs in on a browser of its own, which the test then watches for being signed out.
async fn another_browser(
    app: &crate::helpers::TestApp,
    email: &str,
    password: &str,
) -> reqwest::Client {
    let other = browser();
    let signed_in = other
        .post(app.url("/api/sign_in"))
        .header("origin", &app.address)
        .header("sec-fetch-site", "same-origin")
        .form(&[("email", email), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    other
}

async fn is_signed_in(app: &crate::helpers::TestApp, client: &reqwest::Client) -> bool {
    let response = client
        .post(app.url("/api/current_user"))
        .header("origin", &app.address)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let me: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    !me.is_null()
}

/// Redis lost just when the session is saved, at the end of a request whose change has been made:
/// the answer says what was done (it used to be a 503 "try again", and trying again failed on the
/// old password), and this browser is signed out rather than left half-renewed.
#[tokio::test]
async fn a_change_made_is_answered_even_when_the_session_cannot_be_saved_after_it() {
    let Some((proxy, app, key)) = ann_signed_in_behind_a_proxy().await else {
        return; // The scaled-out arrangement: PostgreSQL and Redis.
    };
    // The renewal at the end of the request moves the record stored under this key; nothing in the
    // request before it names the key.
    let other = another_browser(&app, "ann@example.org", PASSWORD).await;

    proxy.cut_when_sent(key.as_bytes());
    let changed = app
        .call(
            "change_password",
            &[
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
            ],
        )
        .await;
    let status = changed.status();
    assert_eq!(status, 200, "{}", changed.text().await.unwrap());
    restore(&proxy, &app).await;

    assert!(
        !is_signed_in(&app, &other).await,
        "the other browser is out"
    );
    assert!(
        !is_signed_in(&app, &app.client).await,
        "this browser signs in again"
    );
    assert_eq!(app.sign_in("ann@example.org", PASSWORD).await.status(), 400);
    let again = app.sign_in("ann@example.org", NEW_PASSWORD).await;
    assert_eq!(again.status(), 200, "the new password is the one");

    // Ending the other sessions is not answered as done when this one's renewal is lost: the old
    // id, which a copy of this browser's cookie holds, would live on. Trying again finishes it.
    let key = stored_key(&again);
    let other = another_browser(&app, "ann@example.org", NEW_PASSWORD).await;
    proxy.cut_when_sent(key.as_bytes());
    let refused = app.call("revoke_other_sessions", &[]).await;
    assert_eq!(refused.status(), 503);
    restore(&proxy, &app).await;
    assert!(
        is_signed_in(&app, &app.client).await,
        "still signed in, under the old id"
    );
    let ended = app.call("revoke_other_sessions", &[]).await;
    assert_eq!(ended.status(), 200);
    assert!(
        !is_signed_in(&app, &other).await,
        "the other browser is out"
    );
    assert!(
        is_signed_in(&app, &app.client).await,
        "this one goes on under a new id"
    );
}

/// Two-factor turned on as Redis goes: its backup codes are shown once, in this answer, and must not
/// be lost to a 503.
#[tokio::test]
async fn backup_codes_are_shown_even_when_the_session_cannot_be_saved_after_them() {
    let Some((proxy, app, key)) = ann_signed_in_behind_a_proxy().await else {
        return; // The scaled-out arrangement: PostgreSQL and Redis.
    };
    let code = current_setup_code(&app).await;
    proxy.cut_when_sent(key.as_bytes());
    let enabled = app.call("enable_two_factor", &[("code", &code)]).await;
    assert_eq!(enabled.status(), 200);
    let codes: Value = serde_json::from_str(&enabled.text().await.unwrap()).unwrap();
    assert_eq!(codes["codes"].as_array().map(Vec::len), Some(10), "{codes}");
    restore(&proxy, &app).await;
}

/// A session change that must not be lost (a wrong code counted toward the limit at the code step)
/// still answers 503 when it cannot be saved, even on a request that also slides the idle timeout.
#[tokio::test]
async fn a_wrong_code_that_cannot_be_counted_is_not_answered_as_counted() {
    let Some((proxy, app, _)) = ann_signed_in_behind_a_proxy().await else {
        return; // The scaled-out arrangement: PostgreSQL and Redis.
    };
    let code = current_setup_code(&app).await;
    let enabled = app.call("enable_two_factor", &[("code", &code)]).await;
    assert_eq!(enabled.status(), 200);
    assert_eq!(app.call("sign_out", &[]).await.status(), 200);

    // The password step: the code step is next, in a session of its own.
    let password_step = app.sign_in("ann@example.org", PASSWORD).await;
    assert_eq!(password_step.status(), 200);
    let key = stored_key(&password_step);
    app.clock.advance(time::Duration::minutes(2));
    proxy.cut_when_sent(key.as_bytes());
    let wrong = app.call("verify_sign_in_code", &[("code", "000000")]).await;
    assert_eq!(wrong.status(), 503, "{}", wrong.text().await.unwrap());
    restore(&proxy, &app).await;
}

/// A request that changed nothing in its session, whose only save is the once-a-minute one that
/// slides the idle timeout: Redis lost just then does not turn what the request did into a 503.
#[tokio::test]
async fn a_failed_touch_of_the_session_leaves_the_answer_and_the_session_as_they_were() {
    let Some((proxy, app, key)) = ann_signed_in_behind_a_proxy().await else {
        return; // The scaled-out arrangement: PostgreSQL and Redis.
    };
    // The save that slides the timeout indexes the session under this key.
    // The first request after signing in notes in the session that the terms were accepted: after
    // it, a request changes nothing there.
    assert!(is_signed_in(&app, &app.client).await);
    app.clock.advance(time::Duration::minutes(2));

    proxy.cut_when_sent(key.as_bytes());
    let renamed = app
        .call("rename_household", &[("name", "Harbour House")])
        .await;
    let status = renamed.status();
    assert_eq!(status, 200, "{}", renamed.text().await.unwrap());
    restore(&proxy, &app).await;
    assert!(
        is_signed_in(&app, &app.client).await,
        "the session is as it was"
    );
    let overview = app
        .call("household_overview", &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(overview.contains("Harbour House"), "{overview}");
}

#[tokio::test]
async fn redis_holds_no_cookie_value_and_keys_sit_under_the_prefix() {
    if !backend_is_postgres() {
        return; // The scaled-out arrangement: PostgreSQL and Redis.
    }
    let app = spawn_app_with(|_| {}).await;
    let redis = app
        .state
        .redis
        .clone()
        .expect("Redis in the scaled-out run");
    app.register_verified("ann@example.org", PASSWORD).await;
    let signed_in = app.sign_in("ann@example.org", PASSWORD).await;
    assert_eq!(signed_in.status(), 200);

    let cookies = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect::<Vec<_>>();
    let cookie = cookies
        .iter()
        .find_map(|c| c.strip_prefix("nestegg_session="))
        .and_then(|c| c.split(';').next())
        .expect("the sign-in sets the session cookie")
        .to_owned();
    // Signed cookie: a 44-character signature, then the session id.
    let id = &cookie[44..];
    let exists: u32 = redis.pool.exists(id).await.unwrap();
    assert_eq!(exists, 0, "no record under the cookie's id");
    let key = nestegg::server::session_store::hash_id(&id.parse().unwrap());
    let sessions = app
        .state
        .sessions
        .list_user(&user_id(&app).await)
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].key, key);
    let index: u32 = redis
        .pool
        .exists(redis.key(&format!("user-sessions:{}", user_id(&app).await)))
        .await
        .unwrap();
    assert_eq!(index, 1, "the per-user index is under the prefix");
}

#[tokio::test]
async fn a_persons_session_index_lists_only_sessions_that_exist() {
    use tower_sessions::SessionStore as _;
    use tower_sessions::session::{Id, Record};
    if !backend_is_postgres() {
        return;
    }
    let app = spawn_app_with(|_| {}).await;
    let redis = app
        .state
        .redis
        .clone()
        .expect("Redis on the PostgreSQL run");
    let store = nestegg::server::session_store::RedisSessionStore::new(
        redis.clone(),
        std::sync::Arc::new(app.clock.clone()),
        time::Duration::hours(1),
    );
    let index = redis.key("user-sessions:u-zoe");
    let entries = || async {
        let n: u64 = fred::prelude::HashesInterface::hlen(&redis.pool, &index)
            .await
            .unwrap();
        n
    };
    let mut record = Record {
        id: Id::default(),
        data: [(
            nestegg::server::session_store::USER_KEY.to_owned(),
            Value::from("u-zoe"),
        )]
        .into(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    store.create(&mut record).await.unwrap();
    assert_eq!(entries().await, 1);
    // Signed out: the record and its entry go.
    store.delete(&record.id).await.unwrap();
    assert_eq!(entries().await, 0, "signing out leaves no entry behind");
    // A request that began before the sign-out saves the session after it: it stays ended, and its
    // entry is not put back.
    store.save(&record).await.unwrap();
    assert!(store.load(&record.id).await.unwrap().is_none());
    assert_eq!(entries().await, 0, "no entry for a session that is gone");
}

async fn user_id(app: &crate::helpers::TestApp) -> String {
    use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
    nestegg::server::entities::user::Entity::find()
        .filter(nestegg::server::entities::user::Column::Email.eq("ann@example.org"))
        .one(&app.app_db)
        .await
        .unwrap()
        .unwrap()
        .id
}

#[tokio::test]
async fn redis_rate_limits_hold_their_quota_at_any_rate() {
    use nestegg::server::rate_limit::{Limit, LimitError};
    if !backend_is_postgres() {
        return; // The scaled-out arrangement: PostgreSQL and Redis.
    }
    let app = spawn_app_with(|vars| {
        vars.insert("RATE_LIMIT_API_PER_MINUTE".into(), "1000000".into());
        vars.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "2".into());
    })
    .await;
    let limits = &app.state.limiters;
    // A million a minute: a period under a millisecond still counts (and never refuses here).
    for _ in 0..200 {
        limits.check(Limit::Api, "203.0.113.9").await.unwrap();
    }
    limits.check(Limit::SignIn, "203.0.113.9").await.unwrap();
    limits.check(Limit::SignIn, "203.0.113.9").await.unwrap();
    match limits.check(Limit::SignIn, "203.0.113.9").await {
        Err(LimitError::Exceeded { retry_after_secs }) => {
            assert!((1..=31).contains(&retry_after_secs), "{retry_after_secs}");
        }
        other => panic!("the third sign-in in a minute is refused: {other:?}"),
    }
    limits.check(Limit::SignIn, "198.51.100.2").await.unwrap();
}
