//! Operator-only server functions (the security status page). For anyone who is not an operator —
//! signed out, or signed in as an ordinary account, household owners included — they answer 404, so
//! the page's existence is not revealed.

use leptos::prelude::*;

use crate::error::AppError;
use crate::types::{AdminEventsView, FailedEmailView, SecurityStatusView};

/// Every check with its fix, and the background jobs' last runs.
#[server(prefix = "/api", endpoint = "security_status")]
pub async fn security_status() -> Result<SecurityStatusView, AppError> {
    use crate::server::api_support as s;
    use crate::server::services::security_status::{self, RequestFacts};
    use crate::types::{JobStatusView, StatusCheckView};
    let ctx = s::RequestContext::current().await?;
    ctx.require_operator().await?;
    let facts = RequestFacts {
        forwarded_by_untrusted_peer: ctx.forwarded_by_untrusted_peer(),
    };
    let checks = security_status::checks(&ctx.state, facts)
        .await
        .map_err(|err| s::internal("running the status checks", &err))?;
    let jobs = crate::server::jobs::statuses(&ctx.state)
        .await
        .map_err(|err| s::internal("reading the jobs", &err))?;
    let event_kinds = security_status::event_kinds(&ctx.state)
        .await
        .map_err(|err| s::internal("reading event kinds", &err))?;
    Ok(SecurityStatusView {
        checks: checks
            .into_iter()
            .map(|c| StatusCheckView {
                name: c.name.to_owned(),
                ok: c.ok,
                detail: c.detail,
                fix: c.fix.map(str::to_owned),
            })
            .collect(),
        jobs: jobs
            .into_iter()
            .map(|j| JobStatusView {
                outcome: j.last_outcome.unwrap_or_else(|| "never run".to_owned()),
                last_run: j.last_finished_at.map(s::readable_date),
                summary: j.last_summary,
                next_run: s::readable_date(j.next_run_at),
                failures: j.consecutive_failures,
                name: j.name,
            })
            .collect(),
        event_kinds,
    })
}

/// Every account's security events, newest first, filtered by kind and account email.
#[server(prefix = "/api", endpoint = "admin_security_events")]
pub async fn admin_security_events(
    kind: String,
    email: String,
    page: u64,
) -> Result<AdminEventsView, AppError> {
    use crate::server::api_support as s;
    use crate::types::AdminEventView;
    let ctx = s::RequestContext::current().await?;
    ctx.require_operator().await?;
    let page = page.clamp(1, 100_000);
    let (entries, has_more) = crate::server::services::security_status::events(
        &ctx.state,
        Some(kind.as_str()),
        Some(email.as_str()),
        page,
    )
    .await
    .map_err(|err| s::internal("reading security events", &err))?;
    Ok(AdminEventsView {
        entries: entries
            .into_iter()
            .map(|e| AdminEventView {
                when: s::readable_date(e.at),
                what: e.description,
                kind: e.kind,
                who: e.email.unwrap_or_else(|| "—".to_owned()),
                ip: e.ip.unwrap_or_else(|| "—".to_owned()),
            })
            .collect(),
        page,
        has_more,
    })
}

/// Emails that failed for good (the most recent 100).
#[server(prefix = "/api", endpoint = "failed_emails")]
pub async fn failed_emails() -> Result<Vec<FailedEmailView>, AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    ctx.require_operator().await?;
    let emails = crate::server::services::security_status::failed_emails(&ctx.state)
        .await
        .map_err(|err| s::internal("reading failed emails", &err))?;
    Ok(emails
        .into_iter()
        .map(|e| FailedEmailView {
            id: e.id,
            to: e.to,
            kind: e.kind,
            subject: e.subject,
            attempts: e.attempts,
            error: e.last_error.unwrap_or_default(),
            queued: s::readable_date(e.created_at),
        })
        .collect())
}

/// Queues a failed email again, with a fresh set of attempts.
#[server(prefix = "/api", endpoint = "retry_email")]
pub async fn retry_email(id: i64) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let operator = ctx.require_operator().await?;
    crate::server::services::security_status::retry_email(&ctx.state, &ctx.meta, &operator, id)
        .await
        .map_err(s::auth_error)?;
    s::redirect_back_done("retry_email");
    Ok(())
}
