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
