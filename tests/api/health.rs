use crate::helpers::{backend_is_postgres, spawn_app};
use migration::{Migrator, MigratorTrait as _};
use sea_orm::{ConnectionTrait as _, Statement};

#[tokio::test]
async fn live_answers_ok_with_a_tiny_json_body() {
    let app = spawn_app().await;
    let response = app.get("/health/live").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.text().await.unwrap(), r#"{"status":"ok"}"#);
}

/// The readiness body: Redis is listed in the scaled-out mode only.
fn ready_body(app: &crate::helpers::TestApp, status: &str, database: &str) -> String {
    match app.state.redis {
        Some(_) => {
            format!(r#"{{"status":"{status}","checks":{{"database":"{database}","redis":"ok"}}}}"#)
        }
        None => format!(r#"{{"status":"{status}","checks":{{"database":"{database}"}}}}"#),
    }
}

#[tokio::test]
async fn ready_reports_the_database() {
    let app = spawn_app().await;
    let response = app.get("/health/ready").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), ready_body(&app, "ok", "ok"));
}

#[tokio::test]
async fn ready_answers_503_without_detail_when_the_database_is_gone() {
    let app = spawn_app().await;
    app.app_db.close_by_ref().await.unwrap();
    let started = std::time::Instant::now();
    let response = app.get("/health/ready").send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.text().await.unwrap(),
        ready_body(&app, "unavailable", "unavailable")
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    // Liveness is about the process, not its dependencies.
    assert_eq!(app.get("/health/live").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn health_probes_work_for_any_host_name() {
    let app = spawn_app().await;
    let response = app
        .get("/health/live")
        .header("host", "10.1.2.3:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn migrations_are_applied_at_start_up() {
    let app = spawn_app().await;
    let backend = app.app_db.get_database_backend();
    let row = app
        .app_db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT COUNT(*) AS n FROM seaql_migrations",
        ))
        .await
        .unwrap()
        .unwrap();
    let applied: i64 = row.try_get("", "n").unwrap();
    assert_eq!(applied as usize, Migrator::migrations().len());
    assert!(
        Migrator::get_pending_migrations(&app.app_db)
            .await
            .unwrap()
            .is_empty()
    );

    // The session table exists with its expiry index.
    let sql = if backend_is_postgres() {
        "SELECT COUNT(*) AS n FROM pg_indexes WHERE indexname = 'idx_sessions_expires_at'"
    } else {
        "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'index' AND name = 'idx_sessions_expires_at'"
    };
    let row = app
        .app_db
        .query_one_raw(Statement::from_string(backend, sql))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), 1);
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode_with_foreign_keys() {
    if backend_is_postgres() {
        return;
    }
    let app = spawn_app().await;
    let backend = app.app_db.get_database_backend();
    let mode = app
        .app_db
        .query_one_raw(Statement::from_string(backend, "PRAGMA journal_mode"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mode.try_get::<String>("", "journal_mode").unwrap(), "wal");
    let fk = app
        .app_db
        .query_one_raw(Statement::from_string(backend, "PRAGMA foreign_keys"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fk.try_get::<i32>("", "foreign_keys").unwrap(), 1);
    let busy = app
        .app_db
        .query_one_raw(Statement::from_string(backend, "PRAGMA busy_timeout"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(busy.try_get::<i32>("", "timeout").unwrap(), 5000);
}

#[tokio::test]
async fn graceful_shutdown_finishes_and_stops_accepting() {
    let mut app = spawn_app().await;
    assert_eq!(app.get("/health/live").send().await.unwrap().status(), 200);
    app.stop();
    let server = app.server.take().unwrap();
    let result = tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("server stops within the grace period");
    assert!(result.unwrap().is_ok());
    let fresh = reqwest::Client::new();
    assert!(
        fresh.get(app.url("/health/live")).send().await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn shutdown_finishes_the_email_being_sent_so_it_is_not_sent_again() {
    use std::sync::atomic::Ordering;
    let sink = crate::smtp_sink::SmtpSink::start().await;
    // Longer than the 10 s the worker used to be given.
    sink.reply_delay_ms.store(12_000, Ordering::SeqCst);
    let url = sink.url();
    let mut app = crate::helpers::spawn_app_with(move |vars| {
        vars.insert("SMTP_URL".into(), url);
        vars.insert("SHUTDOWN_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    app.register("ola@example.org", "Ola", "correct horse battery staple")
        .await;
    // The server has the message and has not said yes yet.
    for _ in 0..200 {
        if !sink.messages.lock().await.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(sink.messages.lock().await.len(), 1);

    app.stop();
    // Recorded as sent: no other instance (nor this one, restarted) sends it again.
    assert_eq!(
        the_email_once_stopped(&mut app, 40).await,
        ("sent".to_owned(), None)
    );
}

/// Waits (at most `within` seconds) for the stopping `app` to stop, and returns the status and lease
/// of the one email in its outbox.
async fn the_email_once_stopped(
    app: &mut crate::helpers::TestApp,
    within: u64,
) -> (String, Option<i64>) {
    let database_url = app.settings.database.url.expose().to_owned();
    let server = app.server.take().unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(within), server)
        .await
        .expect("the wait is bounded")
        .unwrap()
        .unwrap();
    // Stopping the app closed its pool.
    let db = sea_orm::Database::connect(database_url.as_str())
        .await
        .unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT status, locked_until FROM outbox_emails",
        ))
        .await
        .unwrap()
        .unwrap();
    (
        row.try_get("", "status").unwrap(),
        row.try_get("", "locked_until").unwrap(),
    )
}

#[tokio::test]
async fn a_stopping_instance_claims_no_more_email() {
    use nestegg::server::clock::Clock as _;
    let sink = crate::smtp_sink::SmtpSink::start().await;
    let url = sink.url();
    let mut app = crate::helpers::spawn_app_with(move |vars| {
        vars.insert("SMTP_URL".into(), url);
        vars.insert("SHUTDOWN_TIMEOUT_SECS".into(), "3".into());
    })
    .await;
    // A request whose body never finishes keeps the shutdown in its grace period.
    let stream = request_in_flight(&app).await;
    app.stop();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // An email enqueued meanwhile (by a request finishing, say) is left for another instance, or
    // for the next start, rather than begun by one about to stop.
    let template = nestegg::server::mail::Template::PasswordChanged {
        name: "Ola".to_owned(),
    };
    let now = app.clock.now().unix_timestamp();
    nestegg::server::services::outbox::enqueue(
        &app.app_db,
        &app.state,
        now,
        "ola@example.org",
        None,
        &template,
    )
    .await
    .unwrap();
    app.state.mail_wakeup.notify_one();

    assert_eq!(
        the_email_once_stopped(&mut app, 15).await,
        ("pending".to_owned(), None)
    );
    assert!(sink.messages.lock().await.is_empty());
    drop(stream);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_one() {
    let app = crate::helpers::spawn_app_with(|vars| {
        vars.insert("MAX_CONNECTIONS".into(), "2".into());
    })
    .await;
    // Two clients that connect and send nothing take both slots.
    let first = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let _second = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // A third waits, unserved …
    let url = app.url("/health/live");
    let mut third = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status()) });
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(1), &mut third)
            .await
            .is_err(),
        "served beyond the cap"
    );
    // … until one of the two closes.
    drop(first);
    let status = tokio::time::timeout(std::time::Duration::from_secs(5), third)
        .await
        .expect("served once a slot is free")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn start_up_migrations_can_be_turned_off() {
    let app = crate::helpers::spawn_app_with(|vars| {
        vars.insert("RUN_MIGRATIONS".into(), "false".into());
    })
    .await;
    let pending = Migrator::get_pending_migrations(&app.app_db).await.unwrap();
    assert_eq!(
        pending.len(),
        Migrator::migrations().len(),
        "nothing applied"
    );
    // The app still serves and says it is alive.
    assert_eq!(app.get("/health/live").send().await.unwrap().status(), 200);
}

/// A request to `app` whose body never finishes: its connection stays busy while the stream lives.
async fn request_in_flight(app: &crate::helpers::TestApp) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let head = format!(
        "POST /api/theme HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 100\r\n\r\ntheme=",
        app.port
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // Time for the server to read the head: a connection whose request has not started yet is idle,
    // and is closed at once (200 ms was too short on a loaded CI machine, on PostgreSQL).
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    stream
}

#[tokio::test]
async fn shutdown_waits_for_a_request_in_flight_but_only_for_the_grace_period() {
    let mut app = crate::helpers::spawn_app_with(|vars| {
        vars.insert("SHUTDOWN_TIMEOUT_SECS".into(), "2".into());
    })
    .await;
    // A request whose body never finishes keeps its connection busy.
    let _stream = request_in_flight(&app).await;

    let started = std::time::Instant::now();
    app.stop();
    let server = app.server.take().unwrap();
    let result = tokio::time::timeout(std::time::Duration::from_secs(15), server)
        .await
        .expect("the grace period bounds the wait");
    assert!(result.unwrap().is_ok());
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(1500),
        "waited for the request: {waited:?}"
    );
    assert!(
        waited < std::time::Duration::from_secs(6),
        "but not longer than the grace: {waited:?}"
    );
}

/// Probes sent in a loop (the path is public, and answered before every limit) must not take the
/// database from real requests: a check's result is given to the probes of the next second. So a
/// database lost just after a check is reported a second later, not at once.
#[tokio::test]
async fn readiness_is_checked_at_most_once_a_second() {
    let app = spawn_app().await;
    let ready = || async { app.get("/health/ready").send().await.unwrap().status() };
    assert_eq!(ready().await, 200);
    app.app_db.close_by_ref().await.unwrap();
    assert_eq!(ready().await, 200, "the check of a moment ago");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(ready().await, 503);
}
