//! The SeaORM-backed session store, on the same database backend the suite runs against.

use std::collections::HashMap;
use std::sync::Arc;

use nestegg::server::entities::session;
use nestegg::server::session_store::{DbSessionStore, hash_id};
use sea_orm::EntityTrait as _;
use tower_sessions::SessionStore as _;
use tower_sessions::session::{Id, Record};

use crate::helpers::{spawn_app_with, without_redis};

fn record(expires_in: time::Duration, now: time::OffsetDateTime) -> Record {
    let mut data = HashMap::new();
    data.insert("user".to_owned(), serde_json::json!({"id": 42}));
    Record {
        id: Id::default(),
        data,
        expiry_date: now + expires_in,
    }
}

#[tokio::test]
async fn sessions_are_stored_loaded_updated_and_deleted() {
    let app = spawn_app_with(without_redis).await;
    let store = DbSessionStore::new(app.app_db.clone(), Arc::new(app.clock.clone()));
    let now = nestegg::server::clock::Clock::now(&app.clock);

    let mut rec = record(time::Duration::minutes(30), now);
    store.create(&mut rec).await.unwrap();
    let loaded = store.load(&rec.id).await.unwrap().expect("stored");
    assert_eq!(loaded.data, rec.data);
    assert_eq!(
        loaded.expiry_date.unix_timestamp(),
        rec.expiry_date.unix_timestamp()
    );

    // Only a hash of the id is at rest.
    let row = session::Entity::find_by_id(hash_id(&rec.id))
        .one(&app.app_db)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(row.id_hash, rec.id.to_string());
    assert!(!row.data.contains(&rec.id.to_string()));

    rec.data
        .insert("theme".to_owned(), serde_json::json!("dark"));
    store.save(&rec).await.unwrap();
    assert_eq!(
        store.load(&rec.id).await.unwrap().unwrap().data["theme"],
        "dark"
    );

    store.delete(&rec.id).await.unwrap();
    assert!(store.load(&rec.id).await.unwrap().is_none());
}

#[tokio::test]
async fn expired_sessions_are_not_loaded_and_are_swept() {
    let app = spawn_app_with(without_redis).await;
    let store = DbSessionStore::new(app.app_db.clone(), Arc::new(app.clock.clone()));
    let now = nestegg::server::clock::Clock::now(&app.clock);
    let mut short = record(time::Duration::minutes(5), now);
    let mut long = record(time::Duration::hours(2), now);
    store.create(&mut short).await.unwrap();
    store.create(&mut long).await.unwrap();

    app.clock.advance(time::Duration::minutes(6));
    assert!(store.load(&short.id).await.unwrap().is_none(), "expired");
    assert!(store.load(&long.id).await.unwrap().is_some());
    assert_eq!(store.delete_expired().await.unwrap(), 1);
    assert_eq!(
        session::Entity::find()
            .all(&app.app_db)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn an_unknown_session_id_loads_nothing() {
    let app = spawn_app_with(without_redis).await;
    let store = DbSessionStore::new(app.app_db.clone(), Arc::new(app.clock.clone()));
    assert!(store.load(&Id::default()).await.unwrap().is_none());
}

/// The real session layer, as the app configures it, wrapped around a handler that starts a session.
async fn session_cookie(app: &crate::helpers::TestApp) -> String {
    use axum::routing::get;
    use tower::ServiceExt as _;
    let state = app.state.clone();
    let router = axum::Router::new()
        .route(
            "/",
            get(|session: tower_sessions::Session| async move {
                session.insert("n", 1).await.unwrap();
                "ok"
            }),
        )
        .layer(nestegg::server::startup::session_layer(&state).unwrap());
    let response = router
        .oneshot(
            axum::http::Request::get("/")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn session_cookies_are_http_only_lax_and_signed() {
    let app = spawn_app_with(without_redis).await;
    let cookie = session_cookie(&app).await;
    assert!(cookie.starts_with("nestegg_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/")
    );
    assert!(!cookie.contains("Secure"), "development over plain HTTP");
    // Signed: the value carries a MAC in front of the id, so a forged id is rejected.
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("nestegg_session=");
    assert!(value.len() > 44, "{value}");
    assert_eq!(
        session::Entity::find()
            .all(&app.app_db)
            .await
            .unwrap()
            .len(),
        1,
        "stored server-side"
    );
}

#[tokio::test]
async fn production_session_cookies_are_secure_and_host_prefixed() {
    let app = crate::helpers::spawn_app_with(|vars| {
        let port = vars["PUBLIC_URL"].rsplit(':').next().unwrap().to_owned();
        vars.insert("ENVIRONMENT".into(), "production".into());
        vars.insert("METRICS_PASSWORD".into(), "scrape-me-9f2c1e7a4b".into());
        vars.insert("PUBLIC_URL".into(), format!("https://127.0.0.1:{port}"));
        let db = format!("sqlite://{}/prod.db?mode=rwc", vars["DATA_DIR"]);
        vars.insert("DATABASE_URL".into(), db);
    })
    .await;
    let cookie = session_cookie(&app).await;
    assert!(cookie.starts_with("__Host-nestegg_session="), "{cookie}");
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly") && cookie.contains("Path=/"));
    assert!(
        !cookie.contains("Domain"),
        "__Host- cookies carry no Domain"
    );
}

#[tokio::test]
async fn saving_a_session_that_was_ended_does_not_bring_it_back() {
    // A request still in flight for a session that was signed out elsewhere saves it at its end.
    let app = spawn_app_with(without_redis).await;
    let store = DbSessionStore::new(app.app_db.clone(), Arc::new(app.clock.clone()));
    let now = nestegg::server::clock::Clock::now(&app.clock);
    let mut rec = record(time::Duration::minutes(30), now);
    store.create(&mut rec).await.unwrap();
    session::Entity::delete_by_id(hash_id(&rec.id))
        .exec(&app.app_db)
        .await
        .unwrap();
    store.save(&rec).await.unwrap();
    assert!(store.load(&rec.id).await.unwrap().is_none());
}
