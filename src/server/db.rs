//! Connecting to SQLite or PostgreSQL with the same code, and running migrations.

use migration::{Migrator, MigratorTrait as _};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

use crate::server::config::DatabaseSettings;

#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] DbErr),
    #[error("database migration failed: {0}")]
    Migrate(#[source] DbErr),
}

/// A pooled PostgreSQL connection idle this long is pinged before it is handed out.
const PING_IF_IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(1);

pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, DbSetupError> {
    if let Some(path) = settings.url.sqlite_path()
        && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|source| DbSetupError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
    }

    let mut options = ConnectOptions::new(settings.url.expose().to_owned());
    options
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        // A request waits at most this long for a connection, then answers 503 instead of hanging.
        .acquire_timeout(settings.acquire_timeout)
        .connect_timeout(settings.acquire_timeout)
        .idle_timeout(settings.idle_timeout)
        // Statement logging could print bound values (tokens, hashes); our own spans log what matters.
        .sqlx_logging(false);
    // sqlx pings a connection before every query by default: a round trip to the SQLite worker thread,
    // or to PostgreSQL, for each statement. By hand (release build, 2 cores, SQLite): 2,339 signed-in
    // pages a second with it, 2,759 without; sign-ins 121 and 127 a second. sqlx still pings a
    // connection when it goes back to the pool, which closes one that failed.
    if settings.url.is_sqlite() {
        // A thread in this process: no network or server restart can lose it.
        options.test_before_acquire(false);
    } else {
        // Only a connection idle long enough that PostgreSQL, a proxy or a firewall may have dropped
        // it. One lost while busy (a restart) fails its query, which answers 503 as any outage does,
        // and is closed on its way back to the pool.
        options.test_before_acquire_if_idle_for(PING_IF_IDLE_FOR);
    }
    // SQLite itself is compiled with the query planner stability guarantee (`.cargo/config.toml`),
    // so cached statements with a bound `LIMIT ?` are not planned again on every run.
    let busy_timeout = settings.sqlite_busy_timeout;
    options.map_sqlx_sqlite_opts(move |o| {
        o.journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(busy_timeout)
            .create_if_missing(true)
    });
    Database::connect(options)
        .await
        .map_err(DbSetupError::Connect)
}

pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbSetupError> {
    Migrator::up(db, None).await.map_err(DbSetupError::Migrate)
}

/// Migrations known to this build that the database has not applied yet.
pub async fn pending_migrations(db: &DatabaseConnection) -> Result<usize, DbErr> {
    Ok(Migrator::get_pending_migrations(db).await?.len())
}

/// Starts a transaction that will write. On SQLite it takes the write lock at `BEGIN` (`IMMEDIATE`): a
/// deferred transaction that reads first and writes later fails at once with "database is locked" when
/// another connection wrote in between (the busy timeout cannot help an upgrade), whereas `IMMEDIATE`
/// waits its turn. PostgreSQL ignores the option.
pub async fn begin_write(db: &DatabaseConnection) -> Result<sea_orm::DatabaseTransaction, DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait as _};
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}
