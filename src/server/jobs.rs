//! The scheduled jobs and the one runner for them (the email outbox has its own worker, woken the
//! moment an email is queued; see `mail::worker`).
//!
//! Every job has a row in `jobs`. An instance runs a job only after taking its lease with one
//! conditional UPDATE (due, and not leased by anyone else), so with several app instances on one
//! database each run happens exactly once. A run has a soft time limit (a warning) and a hard one
//! (abandoned, recorded as `timeout`). A failed run is retried with exponential backoff and jitter; a
//! good one is scheduled a full interval later. The outcome of the last run is kept for the
//! operators' status page and exported as metrics. Time comes from the app's clock, so tests move
//! it instead of waiting.

use std::time::{Duration, Instant};

use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait as _, DbBackend, DbErr, EntityTrait as _,
    QueryFilter as _, QueryOrder as _, Statement,
};

use crate::server::entities::{
    account_token, household_invitation, job, outbox_email, security_event,
};
use crate::server::services::outbox::{STATUS_FAILED, STATUS_SENT};
use crate::server::state::AppState;

/// The jobs, by name (stable: stored in `jobs.name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// Expired sessions, and sign-ins left waiting for their second factor.
    PurgeSessions,
    /// Used or expired single-use links and invitations, and lock-out counters that have lapsed.
    PurgeTokens,
    /// Security events, and known devices not signed in from, older than `AUDIT_RETENTION_DAYS`;
    /// delivered or failed emails after 30 days.
    PurgeHistory,
    /// A copy of the SQLite database in `BACKUP_DIR`, keeping `BACKUPS_KEEP` (SQLite only).
    Backup,
    /// The email outbox. Its worker runs on every instance (each email is leased on its own) and is
    /// woken the moment an email is queued, so this runner never starts it; it records its runs in
    /// the same table, for the status page.
    Outbox,
}

pub const ALL: [Job; 5] = [
    Job::PurgeSessions,
    Job::PurgeTokens,
    Job::PurgeHistory,
    Job::Backup,
    Job::Outbox,
];

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;
/// Used links and withdrawn or accepted invitations stay this long (they explain "link already
/// used" to someone clicking late), then go.
const SPENT_TOKEN_GRACE_SECS: i64 = DAY;
/// Delivered or failed emails (subject and status only; bodies are cleared on sending) stay this long.
const EMAIL_HISTORY_SECS: i64 = 30 * DAY;

impl Job {
    pub fn name(self) -> &'static str {
        match self {
            Job::PurgeSessions => "purge_sessions",
            Job::PurgeTokens => "purge_tokens",
            Job::PurgeHistory => "purge_history",
            Job::Backup => "backup",
            Job::Outbox => "outbox",
        }
    }

    pub fn from_name(name: &str) -> Option<Job> {
        ALL.into_iter().find(|j| j.name() == name)
    }

    /// Time between good runs.
    pub fn interval_secs(self) -> i64 {
        match self {
            Job::PurgeSessions => 10 * 60,
            Job::PurgeTokens => HOUR,
            Job::PurgeHistory | Job::Backup => DAY,
            Job::Outbox => 5,
        }
    }

    /// After this a warning is logged; after `hard_limit` the run is abandoned.
    pub fn soft_limit(self) -> Duration {
        match self {
            Job::Backup => Duration::from_secs(5 * 60),
            _ => Duration::from_secs(30),
        }
    }

    pub fn hard_limit(self) -> Duration {
        self.soft_limit() * 4
    }

    /// Whether this job does anything on this deployment.
    pub fn applies(self, state: &AppState) -> bool {
        match self {
            Job::Backup => {
                state.db.get_database_backend() == DbBackend::Sqlite
                    && state.settings.backups_keep > 0
            }
            // Run by its own worker (`mail::worker`).
            Job::Outbox => false,
            _ => true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("database: {0}")]
    Database(#[from] DbErr),
    #[error("backup: {0}")]
    Backup(#[from] crate::server::backup::BackupError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What one call of [`run_due`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tick {
    /// Jobs this instance ran, with their outcome (`ok`, `error`, `timeout`).
    pub ran: Vec<(Job, &'static str)>,
}

/// Makes sure every job has its row (a new job is due at once).
pub async fn register(state: &AppState) -> Result<(), DbErr> {
    let now = state.clock.now().unix_timestamp();
    for job in ALL {
        let exists = job::Entity::find_by_id(job.name().to_owned())
            .one(&state.db)
            .await?
            .is_some();
        if exists {
            continue;
        }
        let inserted = job::Entity::insert(job::ActiveModel {
            name: Set(job.name().to_owned()),
            next_run_at: Set(now),
            lease_owner: Set(None),
            lease_until: Set(None),
            last_started_at: Set(None),
            last_finished_at: Set(None),
            last_success_at: Set(None),
            last_outcome: Set(None),
            last_summary: Set(None),
            last_duration_ms: Set(None),
            consecutive_failures: Set(0),
        })
        .exec(&state.db)
        .await;
        // Another instance starting at the same moment inserted it first: just as good.
        if let Err(err) = inserted
            && !matches!(
                err.sql_err(),
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
            )
        {
            return Err(err);
        }
    }
    Ok(())
}

/// Runs every job that is due and not leased elsewhere, one after another, as `instance`.
pub async fn run_due(state: &AppState, instance: &str) -> Result<Tick, DbErr> {
    register(state).await?;
    let mut tick = Tick::default();
    for job in ALL {
        if !job.applies(state) {
            continue;
        }
        if claim(state, job, instance).await? {
            let outcome = run_claimed(state, job, instance).await?;
            tick.ran.push((job, outcome));
        }
    }
    Ok(tick)
}

/// Takes `job`'s lease if it is due and free. One statement, so two instances cannot both win.
async fn claim(state: &AppState, job: Job, instance: &str) -> Result<bool, DbErr> {
    use sea_orm::sea_query::ExprTrait as _;
    let now = state.clock.now().unix_timestamp();
    let lease_until = now + job.hard_limit().as_secs() as i64 + 60;
    let claimed = job::Entity::update_many()
        .col_expr(job::Column::LeaseOwner, instance.into())
        .col_expr(job::Column::LeaseUntil, lease_until.into())
        .filter(job::Column::Name.eq(job.name()))
        .filter(job::Column::NextRunAt.lte(now))
        .filter(
            job::Column::LeaseUntil
                .is_null()
                .or(job::Column::LeaseUntil.lt(now)),
        )
        .exec(&state.db)
        .await?;
    Ok(claimed.rows_affected == 1)
}

/// Retry delay after `failures` failures in a row: 1, 2, 4 … minutes, at most the job's interval,
/// ±20 % so instances that failed together do not retry together.
pub fn retry_delay_secs(job: Job, failures: i32) -> i64 {
    use rand::Rng as _;
    let base = std::cmp::min(
        60i64.saturating_mul(1 << failures.clamp(1, 16).saturating_sub(1)),
        job.interval_secs(),
    );
    let jitter = rand::rng().random_range(-(base / 5)..=(base / 5));
    (base + jitter).max(1)
}

async fn run_claimed(state: &AppState, job: Job, instance: &str) -> Result<&'static str, DbErr> {
    let started_at = state.clock.now().unix_timestamp();
    job::Entity::update_many()
        .col_expr(job::Column::LastStartedAt, started_at.into())
        .filter(job::Column::Name.eq(job.name()))
        .exec(&state.db)
        .await?;
    let started = Instant::now();
    let work = run_job(state, job);
    tokio::pin!(work);
    let result = match tokio::time::timeout(job.soft_limit(), &mut work).await {
        Ok(result) => Some(result),
        Err(_) => {
            tracing::warn!(job = job.name(), "job is over its soft time limit");
            tokio::time::timeout(job.hard_limit() - job.soft_limit(), &mut work)
                .await
                .ok()
        }
    };
    let elapsed = started.elapsed();
    let (outcome, summary) = match result {
        Some(Ok(summary)) => ("ok", summary),
        Some(Err(err)) => ("error", err.to_string()),
        None => ("timeout", "abandoned at the hard time limit".to_owned()),
    };
    let current = job::Entity::find_by_id(job.name().to_owned())
        .one(&state.db)
        .await?;
    let failures = match (outcome, &current) {
        ("ok", _) => 0,
        (_, Some(row)) => row.consecutive_failures.saturating_add(1),
        (_, None) => 1,
    };
    let finished_at = state.clock.now().unix_timestamp();
    let next_run_at = if outcome == "ok" {
        finished_at + job.interval_secs()
    } else {
        finished_at + retry_delay_secs(job, failures)
    };
    let mut update = job::Entity::update_many()
        .col_expr(job::Column::LastFinishedAt, finished_at.into())
        .col_expr(job::Column::LastOutcome, outcome.into())
        .col_expr(
            job::Column::LastSummary,
            summary.chars().take(500).collect::<String>().into(),
        )
        .col_expr(
            job::Column::LastDurationMs,
            (elapsed.as_millis() as i64).into(),
        )
        .col_expr(job::Column::ConsecutiveFailures, failures.into())
        .col_expr(job::Column::NextRunAt, next_run_at.into())
        .col_expr(job::Column::LeaseOwner, Option::<String>::None.into())
        .col_expr(job::Column::LeaseUntil, Option::<i64>::None.into());
    if outcome == "ok" {
        update = update.col_expr(job::Column::LastSuccessAt, finished_at.into());
    }
    // Only under our own lease: had it run out and another instance taken over, its record stands.
    update
        .filter(job::Column::Name.eq(job.name()))
        .filter(job::Column::LeaseOwner.eq(instance))
        .exec(&state.db)
        .await?;

    metrics::counter!("job_runs_total", "job" => job.name(), "outcome" => outcome).increment(1);
    metrics::histogram!("job_duration_seconds", "job" => job.name()).record(elapsed.as_secs_f64());
    if outcome == "ok" {
        metrics::gauge!("job_last_success_timestamp_seconds", "job" => job.name())
            .set(finished_at as f64);
        tracing::info!(job = job.name(), %summary, ms = elapsed.as_millis() as u64, "job done");
    } else {
        tracing::warn!(job = job.name(), outcome, %summary, failures, "job failed; will retry");
    }
    Ok(outcome)
}

async fn run_job(state: &AppState, job: Job) -> Result<String, JobError> {
    let now = state.clock.now().unix_timestamp();
    match job {
        Job::PurgeSessions => purge_sessions(state, now).await,
        Job::PurgeTokens => purge_tokens(state, now).await,
        Job::PurgeHistory => purge_history(state, now).await,
        Job::Backup => backup(state, now).await,
        Job::Outbox => Ok("run by the outbox worker".to_owned()),
    }
}

/// Records a run of a job that has its own worker (the outbox): outcome, summary, and when.
pub async fn record_run<C: sea_orm::ConnectionTrait>(
    db: &C,
    job: Job,
    started_at: i64,
    finished_at: i64,
    outcome: Result<String, String>,
) -> Result<(), DbErr> {
    let ok = outcome.is_ok();
    let summary: String = match outcome {
        Ok(s) | Err(s) => s.chars().take(500).collect(),
    };
    let failures = if ok {
        0
    } else {
        job::Entity::find_by_id(job.name().to_owned())
            .one(db)
            .await?
            .map_or(1, |row| row.consecutive_failures.saturating_add(1))
    };
    let mut update = job::Entity::update_many()
        .col_expr(job::Column::LastStartedAt, started_at.into())
        .col_expr(job::Column::LastFinishedAt, finished_at.into())
        .col_expr(
            job::Column::LastOutcome,
            if ok { "ok" } else { "error" }.into(),
        )
        .col_expr(job::Column::LastSummary, summary.into())
        .col_expr(
            job::Column::LastDurationMs,
            ((finished_at - started_at) * 1000).into(),
        )
        .col_expr(job::Column::ConsecutiveFailures, failures.into())
        .col_expr(
            job::Column::NextRunAt,
            (finished_at + job.interval_secs()).into(),
        );
    if ok {
        update = update.col_expr(job::Column::LastSuccessAt, finished_at.into());
    }
    update
        .filter(job::Column::Name.eq(job.name()))
        .exec(db)
        .await?;
    Ok(())
}

async fn purge_sessions(state: &AppState, now: i64) -> Result<String, JobError> {
    state.limiters.shrink();
    // A password accepted but no second factor within its time: the half-signed-in session goes.
    let cutoff = now - crate::server::services::mfa::PENDING_TTL_SECS;
    let (expired, pending) = state.sessions.purge(cutoff).await?;
    Ok(format!(
        "{expired} expired sessions, {pending} unfinished two-factor sign-ins removed"
    ))
}

async fn purge_tokens(state: &AppState, now: i64) -> Result<String, JobError> {
    use sea_orm::sea_query::ExprTrait as _;
    let spent = now - SPENT_TOKEN_GRACE_SECS;
    let tokens = account_token::Entity::delete_many()
        .filter(
            account_token::Column::ExpiresAt
                .lte(spent)
                .or(account_token::Column::UsedAt.lte(spent)),
        )
        .exec(&state.db)
        .await?
        .rows_affected;
    let invitations = household_invitation::Entity::delete_many()
        .filter(
            household_invitation::Column::ExpiresAt
                .lte(spent)
                .or(household_invitation::Column::AcceptedAt.lte(spent))
                .or(household_invitation::Column::RevokedAt.lte(spent)),
        )
        .exec(&state.db)
        .await?
        .rows_affected;
    // Failures count until a success, however slowly they come; only counters untouched for a
    // month go (a slow guesser must not get a fresh count every hour).
    let counters = state.lockouts.purge(&state.db, now).await?;
    Ok(format!(
        "{tokens} links, {invitations} invitations, {counters} lock-out counters removed"
    ))
}

async fn purge_history(state: &AppState, now: i64) -> Result<String, JobError> {
    let cutoff = now - i64::from(state.settings.audit_retention_days) * DAY;
    let events = security_event::Entity::delete_many()
        .filter(security_event::Column::CreatedAt.lt(cutoff))
        .exec(&state.db)
        .await?
        .rows_affected;
    let emails = outbox_email::Entity::delete_many()
        .filter(outbox_email::Column::Status.is_in([STATUS_SENT, STATUS_FAILED]))
        .filter(outbox_email::Column::CreatedAt.lt(now - EMAIL_HISTORY_SECS))
        .exec(&state.db)
        .await?
        .rows_affected;
    let devices =
        crate::server::services::sign_in_alerts::forget_unseen_devices(&state.db, cutoff).await?;
    Ok(format!(
        "{events} security events and {devices} known devices older than {} days, {emails} old \
         emails removed",
        state.settings.audit_retention_days
    ))
}

/// The file name of a nightly backup (sortable, so the oldest go first).
fn backup_file_name(now: i64) -> String {
    let stamp = time::OffsetDateTime::from_unix_timestamp(now)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year][month][day]-[hour][minute][second]"
            ))
            .ok()
        })
        .unwrap_or_else(|| now.to_string());
    format!("nestegg-{stamp}.db")
}

/// Whether `name` is one [`backup_file_name`] gives: `nestegg-YYYYMMDD-HHMMSS.db`.
fn is_nightly_backup(name: &str) -> bool {
    let Some(stamp) = name
        .strip_prefix("nestegg-")
        .and_then(|rest| rest.strip_suffix(".db"))
    else {
        return false;
    };
    let bytes = stamp.as_bytes();
    bytes.len() == 15
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}

async fn backup(state: &AppState, now: i64) -> Result<String, JobError> {
    let dir = &state.settings.backup_dir;
    let target = dir.join(backup_file_name(now));
    // Copies an earlier run began and never finished (the process was killed, or the copy outlived the
    // job's time limit): whole copies of the database, which no retention below would ever count.
    let mut unfinished = 0;
    for path in backups_in(dir, crate::server::backup::is_unfinished_copy)? {
        std::fs::remove_file(&path)?;
        unfinished += 1;
    }
    let bytes = crate::server::backup::backup(&state.db, &target, &state.backup_turn).await?;
    // Keep the newest `BACKUPS_KEEP`: only nightly backups count (not a copy an operator named
    // `nestegg-before-upgrade.db`, say), in the order their names give, which is their time's; and
    // the one just written stays, even if others sort after it (written while the clock was ahead).
    let mut existing = backups_in(dir, is_nightly_backup)?;
    existing.retain(|path| *path != target);
    let keep = (state.settings.backups_keep as usize).saturating_sub(1);
    let mut removed = 0;
    while existing.len() > keep {
        let oldest = existing.remove(0);
        std::fs::remove_file(&oldest)?;
        removed += 1;
    }
    let leftovers = match unfinished {
        0 => String::new(),
        n => format!("; {n} unfinished copies removed"),
    };
    Ok(format!(
        "{} ({bytes} bytes); {removed} older backups removed{leftovers}",
        target.display()
    ))
}

/// The files of nightly backups in `dir` (`nestegg-…`) whose names pass `wanted`, in name order.
/// A directory that does not exist yet holds none.
fn backups_in(
    dir: &std::path::Path,
    wanted: impl Fn(&str) -> bool,
) -> std::io::Result<Vec<std::path::PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut found: Vec<std::path::PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("nestegg-") && wanted(n))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// Every job's row, for the status page.
pub async fn statuses(state: &AppState) -> Result<Vec<job::Model>, DbErr> {
    register(state).await?;
    job::Entity::find()
        .order_by_asc(job::Column::Name)
        .all(&state.db)
        .await
}

/// When the last good backup finished, if any (SQLite only).
pub async fn last_backup_at(state: &AppState) -> Result<Option<i64>, DbErr> {
    Ok(job::Entity::find_by_id(Job::Backup.name().to_owned())
        .one(&state.db)
        .await?
        .and_then(|j| j.last_success_at))
}

/// Runs until aborted: every `tick`, whatever is due.
pub fn spawn(state: AppState, tick: Duration) -> tokio::task::JoinHandle<()> {
    let instance = uuid::Uuid::new_v4().to_string();
    tokio::spawn(async move {
        // The first look a tick after start: a restart loop must not hammer the database.
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(err) = run_due(&state, &instance).await {
                tracing::warn!(error = %err, "job runner could not reach the database");
            }
        }
    })
}

/// Removes the lease of every job held by nobody alive: used by tests and by an operator after a
/// crash, so a job need not wait for its lease to run out.
pub async fn clear_leases(state: &AppState) -> Result<u64, DbErr> {
    let statement = Statement::from_string(
        state.db.get_database_backend(),
        "UPDATE jobs SET lease_owner = NULL, lease_until = NULL",
    );
    Ok(state.db.execute_raw(statement).await?.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_up_to_the_interval() {
        for (failures, base) in [(1, 60), (2, 120), (3, 240), (5, 960), (9, 3600), (20, 3600)] {
            for _ in 0..20 {
                let d = retry_delay_secs(Job::PurgeTokens, failures);
                assert!(
                    (base - base / 5..=base + base / 5).contains(&d),
                    "{failures}: {d}"
                );
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for job in ALL {
            assert_eq!(Job::from_name(job.name()), Some(job));
        }
    }

    #[test]
    fn backup_names_sort_by_time() {
        assert_eq!(
            backup_file_name(1_795_000_000),
            "nestegg-20261118-110640.db"
        );
    }
}
