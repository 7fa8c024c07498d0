//! The outbox worker: claims due emails, delivers them, and records the outcome.
//!
//! Claiming sets a short lease (`locked_until`) in one statement; on PostgreSQL the candidate rows are
//! picked with `FOR UPDATE SKIP LOCKED`, so several app instances never take the same email. Failures
//! are retried with exponential backoff and jitter (1, 2, 4 … minutes, capped at 10) until
//! `EMAIL_MAX_ATTEMPTS`, then marked failed. Nothing is lost when SMTP is down or the app restarts: an
//! unsent row simply stays due.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait as _, DatabaseBackend, DatabaseConnection,
    DbErr, EntityTrait as _, IntoActiveModel as _, QueryFilter as _, Statement,
};
use tokio::sync::Notify;

use crate::server::clock::SharedClock;
use crate::server::config::Settings;
use crate::server::entities::outbox_email;
use crate::server::mail::MailError;
use crate::server::mail::{Mailer, OutgoingEmail, Rendered};
use crate::server::services::outbox::{STATUS_FAILED, STATUS_PENDING, STATUS_SENT, body_context};
use crate::server::services::secret_box::SealError;
use crate::server::services::secret_box::SecretBox;

/// How long a claimed email belongs to the worker that claimed it.
const LEASE_SECS: i64 = 120;
/// One email per claim: each is sent well within its own lease, so a slow SMTP server can never make a
/// lease expire while its email is still being sent (which would let another instance send it again).
const BATCH: i64 = 1;
// A send gives up after SMTP_TIMEOUT (and its goodbye after QUIT_WAIT), with time to spare for
// recording its outcome (`record_by`).
const _: () = assert!(
    super::transport::SMTP_TIMEOUT.as_secs() + super::transport::QUIT_WAIT.as_secs() + 20
        < LEASE_SECS as u64
);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
}

/// Delay before attempt `attempts + 1`: 1, 2, 4, 8 … minutes, capped at 10, ±20 % jitter so a batch that
/// failed together does not retry together.
pub fn backoff_secs(attempts: u32) -> i64 {
    use rand::Rng as _;
    let base = 60i64
        .saturating_mul(1 << attempts.saturating_sub(1).min(10))
        .min(600);
    let jitter = rand::rng().random_range(-(base / 5)..=(base / 5));
    (base + jitter).max(1)
}

/// Delivers everything due now; returns what happened.
pub async fn run_once(
    secret_box: &SecretBox,
    db: &DatabaseConnection,
    settings: &Settings,
    clock: &SharedClock,
    mailer: &Mailer,
) -> Result<RunSummary, DbErr> {
    let now = clock.now().unix_timestamp();
    let lease = now + LEASE_SECS;
    // Outcomes are recorded well inside the lease, counted from the claim (real time: the clock that
    // set the lease may be a test's).
    let record_by = std::time::Instant::now() + Duration::from_secs((LEASE_SECS - 20) as u64);
    let ids = claim(db, now).await?;
    let mut summary = RunSummary::default();
    for id in ids {
        let Some(row) = outbox_email::Entity::find_by_id(id).one(db).await? else {
            continue;
        };
        let opened = secret_box
            .open(&row.body_text, &body_context("text", &row.message_id))
            .and_then(|text| {
                let html =
                    secret_box.open(&row.body_html, &body_context("html", &row.message_id))?;
                Ok((text, html))
            });
        let result = match opened {
            Ok((text, html)) => {
                let email = OutgoingEmail {
                    to: row.to_address.clone(),
                    from: settings.mail.from.clone(),
                    rendered: Rendered {
                        subject: row.subject.clone(),
                        text,
                        html,
                    },
                    message_id: row.message_id.clone(),
                };
                send_guarded(mailer, email).await
            }
            // Sealed under a key this instance does not have: during a rolling change of
            // `ENCRYPTION_KEY`, another instance (or this one, restarted) may have it, so it is
            // retried like a relay that is down, and fails only once the attempts run out.
            Err(err @ SealError::UnknownKey(_)) => Err(MailError::Transient(format!(
                "cannot open the sealed body: {err}"
            ))),
            // Altered or unreadable: retrying cannot help.
            Err(err) => Err(MailError::Permanent(format!(
                "cannot open the sealed body: {err}"
            ))),
        };
        let attempts = row.attempts.saturating_add(1);
        let kind = row.kind.clone();
        let mut update = row.into_active_model();
        update.attempts = Set(attempts);
        update.locked_until = Set(None);
        let finished = clock.now().unix_timestamp();
        match result {
            Ok(()) => {
                update.status = Set(STATUS_SENT.to_owned());
                update.sent_at = Set(Some(finished));
                update.last_error = Set(None);
                // The bodies may hold one-time links; once delivered they have no reason to stay.
                update.body_text = Set(String::new());
                update.body_html = Set(String::new());
                summary.sent += 1;
                metrics::counter!("emails_sent_total").increment(1);
                tracing::info!(kind, attempts, "email sent");
            }
            Err(err) if err.is_transient() && (attempts as u32) < settings.mail.max_attempts => {
                let delay = backoff_secs(attempts as u32);
                update.next_attempt_at = Set(finished + delay);
                update.last_error = Set(Some(err.to_string().chars().take(300).collect()));
                summary.retried += 1;
                metrics::counter!("emails_retried_total").increment(1);
                tracing::warn!(kind, attempts, retry_in_secs = delay, error = %err, "email delivery failed; will retry");
            }
            Err(err) => {
                update.status = Set(STATUS_FAILED.to_owned());
                update.last_error = Set(Some(err.to_string().chars().take(300).collect()));
                summary.failed += 1;
                metrics::counter!("emails_failed_total").increment(1);
                tracing::error!(kind, attempts, error = %err, "email delivery failed for good");
            }
        }
        if !record_outcome(db, update, id, lease, record_by).await? {
            tracing::warn!(kind, "outbox lease lost before the outcome was recorded");
        }
    }
    Ok(summary)
}

/// Sends in a task of its own, so that a fault of ours on the way (a panic on what a server replied,
/// say) fails this email, for good and visibly, instead of ending the worker: the email would stay
/// leased, unsent and uncounted, and kill the worker of every instance that claimed it next.
async fn send_guarded(mailer: &Mailer, email: OutgoingEmail) -> Result<(), MailError> {
    let mailer = mailer.clone();
    match tokio::spawn(async move { mailer.send(&email).await }).await {
        Ok(result) => result,
        Err(err) => Err(MailError::Permanent(format!(
            "the send stopped on a fault of Nest Egg's ({}); see the server log",
            if err.is_panic() {
                "a panic"
            } else {
                "cancelled"
            }
        ))),
    }
}

/// Records a delivery's outcome, only under our own lease (if it ran out and another worker took the
/// email over, that worker's outcome stands). The email has gone out: if the database cannot be
/// reached just now, keep trying while the lease holds rather than give up, since giving up means
/// sending it again once the lease runs out. False when the lease was lost.
async fn record_outcome(
    db: &DatabaseConnection,
    update: outbox_email::ActiveModel,
    id: i64,
    lease: i64,
    deadline: std::time::Instant,
) -> Result<bool, DbErr> {
    let mut warned = false;
    loop {
        let result = outbox_email::Entity::update_many()
            .set(update.clone())
            .filter(outbox_email::Column::Id.eq(id))
            .filter(outbox_email::Column::LockedUntil.eq(lease))
            .exec(db)
            .await;
        match result {
            Ok(done) => return Ok(done.rows_affected == 1),
            Err(err) if std::time::Instant::now() < deadline => {
                if !warned {
                    tracing::warn!(error = %err, "cannot record an email's outcome yet; retrying");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Takes a lease on up to `BATCH` due emails and returns their ids.
async fn claim(db: &DatabaseConnection, now: i64) -> Result<Vec<i64>, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => {
            "UPDATE outbox_emails SET locked_until = $1 WHERE id IN (\
               SELECT id FROM outbox_emails WHERE status = $2 AND next_attempt_at <= $3 \
               AND (locked_until IS NULL OR locked_until < $3) ORDER BY id LIMIT $4 \
               FOR UPDATE SKIP LOCKED) RETURNING id"
        }
        // SQLite serializes writers, so the plain sub-select cannot hand one row to two claimers.
        _ => {
            "UPDATE outbox_emails SET locked_until = $1 WHERE id IN (\
               SELECT id FROM outbox_emails WHERE status = $2 AND next_attempt_at <= $3 \
               AND (locked_until IS NULL OR locked_until < $3) ORDER BY id LIMIT $4) RETURNING id"
        }
    };
    let statement = Statement::from_sql_and_values(
        backend,
        sql,
        [
            (now + LEASE_SECS).into(),
            STATUS_PENDING.into(),
            now.into(),
            BATCH.into(),
        ],
    );
    let rows = db.query_all_raw(statement).await?;
    rows.iter()
        .map(|row| row.try_get::<i64>("", "id"))
        .collect()
}

/// How many emails wait, and how many failed for good (for health checks and operators).
pub async fn backlog(db: &DatabaseConnection) -> Result<(u64, u64), DbErr> {
    use sea_orm::PaginatorTrait as _;
    let pending = outbox_email::Entity::find()
        .filter(outbox_email::Column::Status.eq(STATUS_PENDING))
        .count(db)
        .await?;
    let failed = outbox_email::Entity::find()
        .filter(outbox_email::Column::Status.eq(STATUS_FAILED))
        .count(db)
        .await?;
    Ok((pending, failed))
}

/// Runs until `stop` turns true: wakes when an email is enqueued, and at least every `poll` for
/// retries. Stopping lets the email in hand finish (sent *and* recorded): aborting between the two
/// would send it again once its lease ran out.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    secret_box: Arc<SecretBox>,
    db: DatabaseConnection,
    settings: Arc<Settings>,
    clock: SharedClock,
    mailer: Mailer,
    wakeup: Arc<Notify>,
    poll: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_recorded: Option<std::time::Instant> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            let started_at = clock.now().unix_timestamp();
            let outcome = run_once(&secret_box, &db, &settings, &clock, &mailer).await;
            // For the status page: every run that did something or failed, and otherwise a heartbeat
            // a minute (a write every few seconds would be load for nothing).
            let busy = outcome
                .as_ref()
                .map_or(true, |s| s.sent + s.retried + s.failed > 0);
            if busy || last_recorded.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                let summary = outcome
                    .as_ref()
                    .map(|s| {
                        format!(
                            "{} sent, {} to retry, {} failed",
                            s.sent, s.retried, s.failed
                        )
                    })
                    .map_err(|e| e.to_string());
                let finished_at = clock.now().unix_timestamp();
                let recorded = crate::server::jobs::record_run(
                    &db,
                    crate::server::jobs::Job::Outbox,
                    started_at,
                    finished_at,
                    summary,
                )
                .await;
                if recorded.is_ok() {
                    last_recorded = Some(std::time::Instant::now());
                }
            }
            metrics::counter!(
                "job_runs_total",
                "job" => "outbox",
                "outcome" => if outcome.is_ok() { "ok" } else { "error" },
            )
            .increment(1);
            match outcome {
                // A full batch probably left more behind: go again at once.
                Ok(summary)
                    if summary.sent + summary.retried + summary.failed >= BATCH as usize =>
                {
                    continue;
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "outbox run failed"),
            }
            tokio::select! {
                () = wakeup.notified() => {}
                () = tokio::time::sleep(poll) => {}
                _ = stop.changed() => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::backoff_secs;

    #[test]
    fn backoff_doubles_from_one_minute_and_caps_at_ten() {
        for (attempts, base) in [(1, 60), (2, 120), (3, 240), (4, 480), (5, 600), (12, 600)] {
            for _ in 0..50 {
                let d = backoff_secs(attempts);
                assert!(
                    (base - base / 5..=base + base / 5).contains(&d),
                    "{attempts}: {d}"
                );
            }
        }
    }
}
