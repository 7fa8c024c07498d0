//! The operators' security status: every start-up and live check as pass/fail with a one-line fix,
//! the background jobs' last runs, the deployment-wide security events, and failed emails (with a
//! way to send them again).

use sea_orm::{
    ColumnTrait as _, DbErr, EntityTrait as _, PaginatorTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _,
};

use crate::server::api_support::RequestMeta;
use crate::server::config::{DEV_METRICS_PASSWORD, MfaPolicy};
use crate::server::entities::{outbox_email, security_event, user};
use crate::server::services::activity::describe;
use crate::server::services::audit::{self, Event};
use crate::server::services::auth::AuthError;
use crate::server::services::outbox::{STATUS_FAILED, STATUS_PENDING};
use crate::server::state::AppState;

/// One line of the status list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do about it, when it is not ok.
    pub fix: Option<&'static str>,
}

/// What the request itself tells about the deployment.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts {
    /// The request came with `X-Forwarded-For` from a peer not in `TRUSTED_PROXIES`: a proxy in
    /// front of us that we do not believe.
    pub forwarded_by_untrusted_peer: bool,
}

/// Emails older than this still waiting mean delivery is stuck.
const STUCK_EMAIL_SECS: i64 = 15 * 60;
/// A nightly backup older than this is overdue.
const BACKUP_MAX_AGE_SECS: i64 = 26 * 3600;

fn check(name: &'static str, ok: bool, detail: String, fix: &'static str) -> Check {
    Check {
        name,
        ok,
        detail,
        fix: (!ok).then_some(fix),
    }
}

pub async fn checks(state: &AppState, facts: RequestFacts) -> Result<Vec<Check>, DbErr> {
    let s = &state.settings;
    let now = state.clock.now().unix_timestamp();
    let production = s.environment.is_production();
    let mut out = Vec::new();

    out.push(check(
        "Secrets",
        s.generated_keys.is_empty(),
        if s.generated_keys.is_empty() {
            "SECRET_KEY and ENCRYPTION_KEY are configured (at least 32 random bytes each)."
                .to_owned()
        } else {
            format!(
                "{} generated on this machine for development.",
                s.generated_keys.join(" and ")
            )
        },
        "Set SECRET_KEY and ENCRYPTION_KEY (or their _FILE variants) to `openssl rand -base64 32`.",
    ));
    out.push(check(
        "Session cookies",
        s.cookie_secure,
        if s.cookie_secure {
            "Secure, HttpOnly, SameSite=Lax, __Host- prefixed.".to_owned()
        } else {
            "Sent over plain HTTP (COOKIE_SECURE=false).".to_owned()
        },
        "Serve over HTTPS and set COOKIE_SECURE=true (the production default).",
    ));
    let https = production && s.public_url.scheme() == "https";
    out.push(check(
        "HTTPS enforced",
        https,
        if https {
            "Plain HTTP is redirected to PUBLIC_URL (308) and HSTS is sent.".to_owned()
        } else {
            format!(
                "Not enforced (ENVIRONMENT={}, PUBLIC_URL {}).",
                if production {
                    "production"
                } else {
                    "development"
                },
                s.public_url.scheme()
            )
        },
        "Run with ENVIRONMENT=production and an https:// PUBLIC_URL behind a TLS proxy.",
    ));
    let wildcard_host = s.allowed_hosts.iter().any(|h| h == "*");
    out.push(check(
        "Allowed hosts",
        !wildcard_host,
        format!("ALLOWED_HOSTS: {}.", s.allowed_hosts.join(", ")),
        "List the host names you serve in ALLOWED_HOSTS instead of `*`.",
    ));
    let plain_cors: Vec<&String> = s
        .cors_origins
        .iter()
        .filter(|o| o.starts_with("http://") && s.public_url.scheme() == "https")
        .collect();
    out.push(check(
        "CORS origins",
        plain_cors.is_empty(),
        if s.cors_origins.is_empty() {
            "No other site may call the API with visitors' cookies.".to_owned()
        } else {
            format!("Allowed with credentials: {}.", s.cors_origins.join(", "))
        },
        "List only https:// origins you control in CORS_ORIGINS.",
    ));
    out.push(check(
        "Trusted proxies",
        !facts.forwarded_by_untrusted_peer,
        if facts.forwarded_by_untrusted_peer {
            "This request came through a proxy that is not in TRUSTED_PROXIES: client addresses \
             and HTTPS are not known."
                .to_owned()
        } else if s.trusted_proxies.is_empty() {
            "No proxy is trusted; clients connect directly.".to_owned()
        } else {
            format!("{} trusted proxy range(s).", s.trusted_proxies.len())
        },
        "Set TRUSTED_PROXIES to your reverse proxy's address (e.g. 127.0.0.1 or 10.0.0.0/8).",
    ));
    let metrics_ok = match s.metrics_addr {
        None => true,
        Some(_) => {
            let password = s.metrics_password.expose();
            password != DEV_METRICS_PASSWORD && password.chars().count() >= 16
        }
    };
    out.push(check(
        "Metrics",
        metrics_ok,
        match s.metrics_addr {
            None => "Turned off (METRICS_ADDR=off).".to_owned(),
            Some(addr) if metrics_ok => format!("On {addr}, behind basic auth."),
            Some(addr) => format!("On {addr}, with the development password."),
        },
        "Set METRICS_PASSWORD to a long random password (or METRICS_ADDR=off).",
    ));

    let (pending, failed) = crate::server::mail::worker::backlog(&state.db).await?;
    let stuck = outbox_email::Entity::find()
        .filter(outbox_email::Column::Status.eq(STATUS_PENDING))
        .filter(outbox_email::Column::CreatedAt.lt(now - STUCK_EMAIL_SECS))
        .count(&state.db)
        .await?;
    let smtp = s.mail.smtp_url.is_some();
    out.push(check(
        "Email delivery",
        smtp && stuck == 0,
        match (smtp, stuck) {
            (false, _) => format!(
                "No SMTP server: emails are written to {} instead of being sent.",
                s.mail.outbox_dir.display()
            ),
            (true, 0) => "Sending through SMTP; nothing stuck.".to_owned(),
            (true, n) => format!("{n} emails have waited more than 15 minutes: SMTP may be down."),
        },
        "Set SMTP_URL to a working server; see OPERATIONS.md, \"SMTP down and outbox growing\".",
    ));
    out.push(check(
        "Outbox",
        failed == 0,
        format!("{pending} waiting, {failed} failed for good."),
        "Fix the cause in each failed email's error below, then retry it.",
    ));
    out.push(check(
        "Two-factor policy",
        s.accounts.require_mfa != MfaPolicy::Off,
        match s.accounts.require_mfa {
            MfaPolicy::Off => "Nobody is required to use two-factor authentication.".to_owned(),
            MfaPolicy::Admins => "Operators must use two-factor authentication.".to_owned(),
            MfaPolicy::All => "Everyone must use two-factor authentication.".to_owned(),
        },
        "Set REQUIRE_MFA=admins (or all).",
    ));
    out.push(Check {
        name: "Registration",
        ok: true,
        detail: if s.accounts.registration_open {
            "Open: anyone can create an account.".to_owned()
        } else {
            "Closed (REGISTRATION_OPEN=false).".to_owned()
        },
        fix: None,
    });
    let pending_migrations = crate::server::db::pending_migrations(&state.db).await?;
    out.push(check(
        "Migrations",
        pending_migrations == 0,
        format!("{pending_migrations} pending."),
        "Run `nestegg migrate` (or restart with RUN_MIGRATIONS=true).",
    ));
    let last_backup = crate::server::jobs::last_backup_at(state).await?;
    let sqlite = state.db.get_database_backend() == sea_orm::DbBackend::Sqlite;
    let (backup_ok, backup_detail) = match (sqlite, s.backups_keep, last_backup) {
        (false, _, _) => (
            true,
            "PostgreSQL: back up with pg_dump (see OPERATIONS.md); not tracked here.".to_owned(),
        ),
        (true, 0, _) => (
            false,
            "Nightly backups are off (BACKUPS_KEEP=0).".to_owned(),
        ),
        (true, _, None) => (false, "No backup has been made yet.".to_owned()),
        (true, _, Some(at)) => (
            now - at <= BACKUP_MAX_AGE_SECS,
            format!("Last backup {} hours ago.", (now - at) / 3600),
        ),
    };
    out.push(check(
        "Backups",
        backup_ok,
        backup_detail,
        "Check the backup job below and BACKUP_DIR; `nestegg backup PATH` makes one now.",
    ));
    Ok(out)
}

/// A page of every account's security events, newest first.
#[derive(Debug, Clone)]
pub struct AdminEvent {
    pub at: i64,
    pub kind: String,
    pub description: String,
    /// The account's email; `None` for events without an account, or of deleted accounts.
    pub email: Option<String>,
    pub ip: Option<String>,
}

pub const EVENTS_PER_PAGE: u64 = 50;

pub async fn events(
    state: &AppState,
    kind: Option<&str>,
    email: Option<&str>,
    page: u64,
) -> Result<(Vec<AdminEvent>, bool), DbErr> {
    let mut query = security_event::Entity::find()
        .order_by_desc(security_event::Column::CreatedAt)
        .order_by_desc(security_event::Column::Id);
    if let Some(kind) = kind.filter(|k| !k.is_empty()) {
        query = query.filter(security_event::Column::Kind.eq(kind));
    }
    if let Some(email) = email.map(str::trim).filter(|e| !e.is_empty()) {
        let account = user::Entity::find_by_typed_email(email)
            .one(&state.db)
            .await?;
        let Some(account) = account else {
            return Ok((Vec::new(), false));
        };
        query = query.filter(security_event::Column::UserId.eq(account.id));
    }
    let mut rows = query
        .offset((page.max(1) - 1) * EVENTS_PER_PAGE)
        .limit(EVENTS_PER_PAGE + 1)
        .all(&state.db)
        .await?;
    let more = rows.len() as u64 > EVENTS_PER_PAGE;
    rows.truncate(EVENTS_PER_PAGE as usize);
    let ids: Vec<String> = rows.iter().filter_map(|r| r.user_id.clone()).collect();
    let people = user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(&state.db)
        .await?;
    Ok((
        rows.into_iter()
            .map(|row| {
                let details: serde_json::Value =
                    serde_json::from_str(&row.details).unwrap_or_default();
                AdminEvent {
                    at: row.created_at,
                    description: describe(&row.kind, &details),
                    email: row
                        .user_id
                        .as_ref()
                        .and_then(|id| people.iter().find(|p| &p.id == id))
                        .map(|p| p.email.clone()),
                    kind: row.kind,
                    ip: row.ip.filter(|ip| !ip.is_empty()),
                }
            })
            .collect(),
        more,
    ))
}

/// Every kind of event recorded so far, for the filter.
pub async fn event_kinds(state: &AppState) -> Result<Vec<String>, DbErr> {
    let mut kinds: Vec<String> = security_event::Entity::find()
        .select_only()
        .column(security_event::Column::Kind)
        .distinct()
        .into_tuple()
        .all(&state.db)
        .await?;
    kinds.sort();
    Ok(kinds)
}

#[derive(Debug, Clone)]
pub struct FailedEmail {
    pub id: i64,
    pub to: String,
    pub kind: String,
    pub subject: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: i64,
}

pub async fn failed_emails(state: &AppState) -> Result<Vec<FailedEmail>, DbErr> {
    Ok(outbox_email::Entity::find()
        .filter(outbox_email::Column::Status.eq(STATUS_FAILED))
        .order_by_desc(outbox_email::Column::CreatedAt)
        .limit(100)
        .all(&state.db)
        .await?
        .into_iter()
        .map(|row| FailedEmail {
            id: row.id,
            to: row.to_address,
            kind: row.kind,
            subject: row.subject,
            attempts: row.attempts,
            last_error: row.last_error,
            created_at: row.created_at,
        })
        .collect())
}

/// Puts a failed email back in the queue with a fresh set of attempts.
pub async fn retry_email(
    state: &AppState,
    meta: &RequestMeta,
    operator: &user::Model,
    id: i64,
) -> Result<(), AuthError> {
    let now = state.clock.now().unix_timestamp();
    let updated = outbox_email::Entity::update_many()
        .col_expr(outbox_email::Column::Status, STATUS_PENDING.into())
        .col_expr(outbox_email::Column::Attempts, 0.into())
        .col_expr(outbox_email::Column::NextAttemptAt, now.into())
        .col_expr(
            outbox_email::Column::LastError,
            Option::<String>::None.into(),
        )
        .filter(outbox_email::Column::Id.eq(id))
        .filter(outbox_email::Column::Status.eq(STATUS_FAILED))
        .exec(&state.db)
        .await?;
    if updated.rows_affected != 1 {
        return Err(AuthError::NotFound);
    }
    let event = Event::new("email_retried")
        .user(&operator.id)
        .detail("email_id", id);
    audit::log(&state.db, meta, now, event).await?;
    state.mail_wakeup.notify_one();
    Ok(())
}
