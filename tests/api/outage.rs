//! Without its database the app degrades instead of failing: pages and server functions answer 503
//! quickly (the pool's acquire timeout), nobody signs in, and when the database comes back the app
//! serves again by itself.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait as _, Database, Statement};

use crate::helpers::{TestApp, backend_is_postgres, spawn_app};

const PASSWORD: &str = "glacier Minnow 47 paperclip orbit";

/// Status, body and how long a page, a server function and a sign-in take.
async fn during_outage(app: &TestApp) {
    let started = Instant::now();
    let page = app
        .get("/settings/profile")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 503, "page");
    let html = page.text().await.unwrap();
    assert!(html.contains("temporarily unavailable"), "{html}");
    assert!(
        !html.to_lowercase().contains("error:"),
        "no detail leaks: {html}"
    );

    let call = app.call("current_user", &[]).await;
    assert_eq!(call.status(), 503, "server function");
    let sign_in = app.sign_in("ann@example.org", PASSWORD).await;
    assert_eq!(
        sign_in.status(),
        503,
        "sign-in never succeeds without the database"
    );
    // Within the pool's acquire timeout (1 s) each, not a hang.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn without_the_database_pages_and_calls_answer_503_quickly() {
    let app = spawn_app().await;
    app.register_verified("ann@example.org", PASSWORD).await;
    // Signed in: the session lives in the database too, and must not pass for signed out.
    assert_eq!(app.sign_in("ann@example.org", PASSWORD).await.status(), 200);
    app.app_db.close_by_ref().await.unwrap();
    during_outage(&app).await;
}

#[tokio::test]
async fn after_a_postgres_outage_the_app_recovers_by_itself() {
    if !backend_is_postgres() {
        return; // An outage of a SQLite file is not something that happens on its own.
    }
    let app = spawn_app().await;
    app.register_verified("ann@example.org", PASSWORD).await;
    assert_eq!(app.sign_in("ann@example.org", PASSWORD).await.status(), 200);

    let name = app
        .app_db
        .query_one_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT current_database() AS name",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "name")
        .unwrap();
    let admin = Database::connect(crate::helpers::postgres_admin_url())
        .await
        .unwrap();
    let run = |sql: String| {
        let admin = admin.clone();
        async move {
            admin
                .execute_raw(Statement::from_string(sea_orm::DbBackend::Postgres, sql))
                .await
                .unwrap();
        }
    };
    // The database goes away: no new connections, existing ones cut.
    run(format!(
        r#"ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false"#
    ))
    .await;
    run(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    ))
    .await;
    during_outage(&app).await;
    assert_eq!(app.get("/health/ready").send().await.unwrap().status(), 503);

    // It comes back: the app serves again without a restart.
    run(format!(
        r#"ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true"#
    ))
    .await;
    let mut recovered = false;
    for _ in 0..50 {
        if app.get("/health/ready").send().await.unwrap().status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "ready again");
    assert_eq!(app.sign_in("ann@example.org", PASSWORD).await.status(), 200);
}
