use sea_orm::{ConnectionTrait as _, Statement};

use crate::helpers::{backend_is_postgres, spawn_app};

/// The app's SQLite is built with the query planner stability guarantee (`.cargo/config.toml`):
/// without it, every `LIMIT ?` statement is parsed and planned again on each run.
#[tokio::test]
async fn sqlite_keeps_its_plans_whatever_the_bound_values() {
    if backend_is_postgres() {
        return; // A SQLite build option: PostgreSQL caches its plans by itself.
    }
    let app = spawn_app().await;
    let backend = app.app_db.get_database_backend();
    let options: Vec<String> = app
        .app_db
        .query_all_raw(Statement::from_string(backend, "PRAGMA compile_options"))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect();
    assert!(
        options.iter().any(|o| o == "ENABLE_QPSG"),
        "SQLite was built without ENABLE_QPSG: {options:?}"
    );
}

/// The migration that records when known devices were last used fills it in with the time of the
/// upgrade (not their first use, or every device first seen long ago would be forgotten at the next
/// purge), and marks every account that has signed in: one with devices, and one whose devices a
/// report forgot before the mark existed.
#[tokio::test]
async fn the_known_devices_migration_dates_devices_from_the_upgrade_and_marks_accounts_signed_in() {
    use migration::{Migrator, MigratorTrait as _};
    let app = spawn_app().await;
    let db = &app.app_db;
    let backend = db.get_database_backend();
    for email in ["ann@example.org", "bob@example.org", "cid@example.org"] {
        app.register_verified(email, "glacier Minnow 47 paperclip orbit")
            .await;
    }
    let id = |email: &'static str| async move {
        let row = db
            .query_one_raw(Statement::from_string(
                backend,
                format!("SELECT id FROM users WHERE email = '{email}'"),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<String>("", "id").unwrap()
    };
    let (ann, bob, cid) = (
        id("ann@example.org").await,
        id("bob@example.org").await,
        id("cid@example.org").await,
    );
    // Back to before the known devices migration (m20261207_000013, and the one after it).
    Migrator::down(db, Some(2)).await.unwrap();
    let long_ago = 1_600_000_000; // 2020
    for sql in [
        "DELETE FROM known_devices".to_owned(),
        "DELETE FROM security_events".to_owned(),
        format!(
            "INSERT INTO known_devices (user_id, fingerprint, first_seen_at) \
             VALUES ('{ann}', 'annsdevice', {long_ago})"
        ),
        format!(
            "INSERT INTO security_events (user_id, kind, details, created_at) \
             VALUES ('{bob}', 'sign_in_reported', '{{}}', {long_ago})"
        ),
        format!(
            "INSERT INTO security_events (user_id, kind, details, created_at) \
             VALUES ('{cid}', 'register', '{{}}', {long_ago})"
        ),
    ] {
        db.execute_unprepared(&sql).await.unwrap();
    }
    Migrator::up(db, None).await.unwrap();

    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT user_id, fingerprint, last_seen_at FROM known_devices ORDER BY fingerprint, user_id",
        ))
        .await
        .unwrap();
    let rows: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("", "user_id").unwrap(),
                r.try_get("", "fingerprint").unwrap(),
                r.try_get("", "last_seen_at").unwrap(),
            )
        })
        .collect();
    let upgrade = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut markers: Vec<&str> = rows
        .iter()
        .filter(|(_, fingerprint, _)| fingerprint == "signed-in-before")
        .map(|(user, _, _)| user.as_str())
        .collect();
    markers.sort_unstable();
    let mut expected = vec![ann.as_str(), bob.as_str()];
    expected.sort_unstable();
    assert_eq!(markers, expected, "not {cid}, who never signed in");
    let device = rows
        .iter()
        .find(|(_, fingerprint, _)| fingerprint == "annsdevice")
        .expect("Ann's device stays");
    assert!(
        (upgrade - 60..=upgrade).contains(&device.2),
        "last seen at the upgrade: {device:?}"
    );
}
