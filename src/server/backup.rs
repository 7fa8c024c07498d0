//! Online backups of the embedded SQLite database (`VACUUM INTO`: a consistent copy while the app
//! keeps serving) and restoring one into an empty data directory. PostgreSQL deployments use
//! `pg_dump`/`pg_restore` instead (docs/OPERATIONS.md).

use std::path::{Path, PathBuf};

use sea_orm::{ConnectionTrait as _, Database, DatabaseConnection, DbBackend, DbErr, Statement};

use crate::server::config::DatabaseSettings;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the database is not SQLite: back up PostgreSQL with pg_dump (see docs/OPERATIONS.md)")]
    NotSqlite,
    #[error("{0} already exists: choose a new file, or move the existing one away first")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Database(#[from] DbErr),
    #[error("{path} failed its integrity check: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "an earlier backup is still being copied (one given up on keeps going until SQLite is done \
         with it): try again once it has finished"
    )]
    Busy,
    #[error("the copy was stopped: {0}")]
    Stopped(String),
}

/// One `VACUUM INTO` of a database at a time (the app keeps one in its state), held by the task that
/// runs it for as long as SQLite is at it. SQLite cannot stop a `VACUUM INTO` it has begun: a backup
/// that gives up on it (the job's time limit) leaves it running, and a retry must not start a second
/// whole copy beside it.
#[derive(Clone, Debug, Default)]
pub struct Turn(std::sync::Arc<tokio::sync::Mutex<()>>);

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A sibling path to write to before renaming into place, so a half-written file never has the
/// final name.
fn partial(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes a consistent copy of the live database to `target` (which must not exist yet), checks it,
/// and returns its size in bytes.
pub async fn backup(
    db: &DatabaseConnection,
    target: &Path,
    turn: &Turn,
) -> Result<u64, BackupError> {
    if db.get_database_backend() != DbBackend::Sqlite {
        return Err(BackupError::NotSqlite);
    }
    if target.exists() {
        return Err(BackupError::Exists(target.to_owned()));
    }
    let turn = turn
        .0
        .clone()
        .try_lock_owned()
        .map_err(|_| BackupError::Busy)?;
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    let temporary = partial(target);
    let _ = std::fs::remove_file(&temporary);
    // Created empty, readable by the service's user only, before SQLite writes the copy into it (which
    // `VACUUM INTO` allows for an empty file): the data is never in a file others can read, not even
    // while being written or if this is interrupted before the end.
    create_private(&temporary)?;
    // Removes the copy if this future is dropped half-way (the job's time limit, a shutdown), where
    // the clean-up below never runs.
    let mut unfinished = Unfinished(Some(temporary.clone()));
    let written = async {
        // In a task of its own, which keeps the turn until SQLite is done, even once this future
        // is dropped; then nobody waits for the copy, and the task removes it (SQLite may have
        // written it after `Unfinished` removed the empty file).
        let (done, copied) = tokio::sync::oneshot::channel();
        {
            let db = db.clone();
            let into = temporary.clone();
            tokio::spawn(async move {
                let _turn = turn;
                let result = db
                    .execute_raw(Statement::from_sql_and_values(
                        DbBackend::Sqlite,
                        "VACUUM INTO ?",
                        [into.display().to_string().into()],
                    ))
                    .await;
                if done.send(result).is_err() {
                    let _ = std::fs::remove_file(&into);
                }
            });
        }
        copied
            .await
            .map_err(|err| BackupError::Stopped(err.to_string()))??;
        check_integrity(&temporary).await?;
        // Password hashes and personal data: readable by the service's user only.
        restrict(&temporary)?;
        Ok::<(), BackupError>(())
    }
    .await;
    if let Err(err) = written {
        // A half-written copy (disk full, say) must not stay behind.
        let _ = std::fs::remove_file(&temporary);
        return Err(err);
    }
    std::fs::rename(&temporary, target).map_err(io(target))?;
    unfinished.0 = None;
    Ok(std::fs::metadata(target).map_err(io(target))?.len())
}

/// A copy being written, removed on drop unless it was finished (`None`).
struct Unfinished(Option<PathBuf>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Whether `name` is a copy that [`backup`] or [`restore`] began and did not finish (a process that
/// was killed leaves one behind, named after its pid).
pub fn is_unfinished_copy(name: &str) -> bool {
    name.contains(".partial-")
}

/// Creates `dir` (and its missing parents) for the service's user only, if it does not exist: an
/// interrupted copy may still be written after its clean-up (SQLite finishes a `VACUUM INTO` it has
/// begun), with SQLite's default permissions, and then it sits in a folder nobody else can open. A
/// folder that exists already is left as the operator made it.
#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::create_dir_all(dir).map_err(io(dir))
}

#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(io(path))
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> Result<(), BackupError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(drop)
        .map_err(io(path))
}

/// Copies the backup at `source` to where `DATABASE_URL` points, which must not hold a database yet.
pub async fn restore(settings: &DatabaseSettings, source: &Path) -> Result<(), BackupError> {
    let target = settings.url.sqlite_path().ok_or(BackupError::NotSqlite)?;
    for existing in [
        target.clone(),
        sidecar(&target, "-wal"),
        sidecar(&target, "-journal"),
    ] {
        if existing.exists() {
            return Err(BackupError::Exists(existing));
        }
    }
    if !source.is_file() {
        return Err(BackupError::Io {
            path: source.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such backup file"),
        });
    }
    check_integrity(source).await?;
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let temporary = partial(&target);
    std::fs::copy(source, &temporary).map_err(io(&temporary))?;
    let placed = std::fs::File::open(&temporary)
        .and_then(|f| f.sync_all())
        // A hard link fails if the target appeared meanwhile, where a rename would replace it.
        .and_then(|()| std::fs::hard_link(&temporary, &target));
    let _ = std::fs::remove_file(&temporary);
    placed.map_err(|err| match err.kind() {
        std::io::ErrorKind::AlreadyExists => BackupError::Exists(target.clone()),
        _ => BackupError::Io {
            path: target.clone(),
            source: err,
        },
    })?;
    restrict(&target)?;
    Ok(())
}

#[cfg(unix)]
fn restrict(path: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))
}

#[cfg(not(unix))]
fn restrict(_path: &Path) -> Result<(), BackupError> {
    Ok(())
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Opens `path` read-only and runs SQLite's integrity check on it.
async fn check_integrity(path: &Path) -> Result<(), BackupError> {
    let url = format!("sqlite://{}?mode=ro", path.display());
    let db = Database::connect(url).await?;
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA integrity_check",
        ))
        .await?;
    let _ = db.close().await;
    let verdict: String = match row {
        Some(row) => row.try_get_by_index(0)?,
        None => String::new(),
    };
    if verdict == "ok" {
        Ok(())
    } else {
        Err(BackupError::Corrupt {
            path: path.to_owned(),
            detail: verdict,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_copy_waits_its_turn_behind_one_still_running() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live.db");
        let db = Database::connect(format!("sqlite://{}?mode=rwc", live.display()))
            .await
            .unwrap();
        db.execute_unprepared("CREATE TABLE t (x INTEGER)")
            .await
            .unwrap();
        let turn = Turn::default();
        // Stands for a copy that a backup gave up on and SQLite is still writing.
        let running = turn.0.lock().await;
        let target = dir.path().join("copy.db");
        let refused = backup(&db, &target, &turn).await;
        assert!(matches!(refused, Err(BackupError::Busy)), "{refused:?}");
        assert!(!target.exists());
        drop(running);
        assert!(backup(&db, &target, &turn).await.unwrap() > 0);
    }
}
