//! Account server functions beyond signing in: the person's sessions and security activity.

use leptos::prelude::*;

use crate::error::AppError;
use crate::types::SessionView;

/// Every signed-in session of the caller, the current one marked.
#[server(prefix = "/api", endpoint = "list_sessions")]
pub async fn list_sessions() -> Result<Vec<SessionView>, AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    let current = ctx.session_key();
    let sessions =
        crate::server::services::sessions::list(&ctx.state, &user.id, current.as_deref())
            .await
            .map_err(|err| s::internal("listing sessions", &err))?;
    Ok(sessions
        .into_iter()
        .map(|info| SessionView {
            id: info.key,
            device: info.device,
            ip: info.ip.unwrap_or_else(|| "unknown address".to_owned()),
            started: s::readable_date(info.started_at),
            last_active: s::readable_date(info.last_active_at),
            current: info.current,
        })
        .collect())
}

/// Signs out one of the caller's other sessions: its cookie stops working on its next request.
#[server(prefix = "/api", endpoint = "revoke_session")]
pub async fn revoke_session(id: String) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    if ctx.session_key().as_deref() == Some(id.as_str()) {
        return Err(AppError::InvalidInput {
            field: None,
            message: "That is the session you are using: use “Sign out” instead.".to_owned(),
        });
    }
    let ended = crate::server::services::sessions::revoke(&ctx.state, &ctx.meta, &user, &id)
        .await
        .map_err(|err| s::internal("ending a session", &err))?;
    if !ended {
        // Not one of theirs, or already gone: the same answer either way.
        return Err(AppError::NotFound);
    }
    s::redirect_back_done("revoke_session");
    Ok(())
}

/// Signs out every session of the caller except this one.
#[server(prefix = "/api", endpoint = "revoke_other_sessions")]
pub async fn revoke_other_sessions() -> Result<u64, AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    let keep = ctx.session_key();
    let ended = crate::server::services::sessions::revoke_others(
        &ctx.state,
        &ctx.meta,
        &user,
        keep.as_deref(),
    )
    .await
    .map_err(|err| s::internal("ending sessions", &err))?;
    // Not answered as done if the renewal cannot be saved (`keep_answer_if_not_saved`): the copy
    // would live on. Trying again ends no more sessions, and renews the id.
    // A copy of this browser's cookie (a shared computer, a leaked HAR file) is this session as far
    // as the list can tell: it ends too, and this browser goes on under a new id.
    ctx.renew_session_id().await?;
    s::redirect_back_done("revoke_other_sessions");
    Ok(ended)
}

/// A page (from 1) of the caller's own security activity, newest first.
#[server(prefix = "/api", endpoint = "security_activity")]
pub async fn security_activity(page: u64) -> Result<crate::types::ActivityPageView, AppError> {
    use crate::server::api_support as s;
    use crate::types::{ActivityEntryView, ActivityPageView};
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    let page = page.clamp(1, 100_000);
    let (entries, has_older) = crate::server::services::activity::page(&ctx.state, &user.id, page)
        .await
        .map_err(|err| s::internal("loading security activity", &err))?;
    Ok(ActivityPageView {
        entries: entries
            .into_iter()
            .map(|e| ActivityEntryView {
                when: s::readable_date(e.at),
                what: e.what,
                from: e.from,
            })
            .collect(),
        page,
        has_older,
    })
}

/// Deletes the caller's account: the password (and a code when two-factor authentication is on) and
/// the account's email typed out. Every session ends; a receipt is emailed.
#[server(prefix = "/api", endpoint = "delete_account")]
pub async fn delete_account(
    password: String,
    code: Option<String>,
    confirm_email: String,
) -> Result<(), AppError> {
    use crate::server::api_support as s;
    use crate::server::services::account::{self, Deletion};
    let ctx = s::RequestContext::current().await?;
    // Allowed whatever the account still owes (terms, two-factor setup): leaving is always possible.
    let user = ctx.require_user_ungated().await?;
    ctx.rate_limit(s::Limit::Mfa).await?;
    let input = Deletion {
        password: &password,
        code: code.as_deref().unwrap_or_default(),
        confirm_email: &confirm_email,
    };
    account::delete_account(&ctx.state, &ctx.meta, &user, input)
        .await
        .map_err(s::auth_error)?;
    // The account and every session record are gone already (committed): a store failing now
    // leaves this cookie naming nothing, not an account, so the answer still says it is done.
    if ctx.session.flush().await.is_err() {
        tracing::warn!("the account was deleted, but its session cookie could not be cleared");
    }
    leptos_axum::redirect(crate::routes::ACCOUNT_DELETED);
    Ok(())
}

/// The caller's consent ledger: each document and version accepted, when and from where.
#[server(prefix = "/api", endpoint = "consent_ledger")]
pub async fn consent_ledger() -> Result<Vec<crate::types::ConsentView>, AppError> {
    use crate::server::api_support as s;
    use crate::server::services::consents;
    let ctx = s::RequestContext::current().await?;
    // Readable while acceptance is pending: it is what they would be deciding about.
    let user = ctx.require_user_ungated().await?;
    let ledger = consents::ledger(&ctx.state, &user.id)
        .await
        .map_err(|err| s::internal("loading consents", &err))?;
    Ok(ledger
        .into_iter()
        .map(|c| crate::types::ConsentView {
            document: match c.document.as_str() {
                consents::TERMS => "Terms of service".to_owned(),
                consents::PRIVACY => "Privacy policy".to_owned(),
                other => other.to_owned(),
            },
            version: c.version,
            accepted: s::readable_date(c.accepted_at),
            ip: c.ip,
        })
        .collect())
}

/// The documents that changed since the caller last accepted them ("terms", "privacy").
#[server(prefix = "/api", endpoint = "outstanding_consents")]
pub async fn outstanding_consents() -> Result<crate::types::OutstandingConsentsView, AppError> {
    use crate::server::api_support as s;
    use crate::server::services::consents;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user_ungated().await?;
    let documents = consents::outstanding(&ctx.state, &user.id)
        .await
        .map_err(|err| s::internal("checking consents", &err))?;
    Ok(crate::types::OutstandingConsentsView {
        shown: consents::versions_key(&ctx.state, &documents),
        documents: documents.into_iter().map(str::to_owned).collect(),
    })
}

/// Accepts the versions in force of the terms and privacy policy, then goes home.
#[server(prefix = "/api", endpoint = "accept_terms")]
pub async fn accept_terms(
    // The documents and versions the page listed (`OutstandingConsentsView::shown`); absent from a
    // page served before this field existed, which is then not checked.
    shown: Option<String>,
) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user_ungated().await?;
    crate::server::services::consents::accept_current(
        &ctx.state,
        &ctx.meta,
        &user,
        shown.as_deref(),
    )
    .await
    .map_err(s::auth_error)?;
    leptos_axum::redirect(crate::routes::HOME);
    Ok(())
}

/// Whether the data export can be downloaded now (sudo mode), or needs the password again first.
#[server(prefix = "/api", endpoint = "export_status")]
pub async fn export_status() -> Result<crate::types::ExportStatusView, AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user_ungated().await?;
    let with_code = crate::server::services::mfa::is_enabled(&ctx.state.db, &user.id)
        .await
        .map_err(|err| s::internal("checking two-factor status", &err))?;
    Ok(crate::types::ExportStatusView {
        reauth_needed: !ctx.recently_authenticated().await?,
        with_code,
    })
}
