//! Two-factor authentication server functions: settings (status, setup, backup codes, moving to a new
//! phone, turning it off) and the code step of signing in.
//!
//! Setup, new backup codes, moving to a new phone and the secrets they show need sudo mode (the password entered within
//! `SUDO_WINDOW_MINUTES`); turning it off asks for the password itself.

use leptos::prelude::*;

use crate::error::AppError;
use crate::types::{BackupCodesView, TwoFactorView};

/// The two-factor settings page: the status, and an unfinished setup's secret while re-authenticated.
#[server(prefix = "/api", endpoint = "two_factor_status")]
pub async fn two_factor_status() -> Result<TwoFactorView, AppError> {
    status(true).await
}

/// The status alone, for the security overview (no secret ever goes to a page that does not show it).
#[server(prefix = "/api", endpoint = "two_factor_summary")]
pub async fn two_factor_summary() -> Result<TwoFactorView, AppError> {
    status(false).await
}

/// Whether two-factor authentication is on, for forms that then ask for a code (deleting the account,
/// moving to another address). Ungated like those forms: the account page stays open to someone asked
/// to accept updated terms.
#[server(prefix = "/api", endpoint = "two_factor_on")]
pub async fn two_factor_on() -> Result<bool, AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user_ungated().await?;
    crate::server::services::mfa::is_enabled(&ctx.state.db, &user.id)
        .await
        .map_err(|err| s::internal("checking two-factor status", &err))
}

#[cfg(feature = "ssr")]
async fn status(with_setup: bool) -> Result<TwoFactorView, AppError> {
    use crate::server::api_support as s;
    use crate::server::services::mfa;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user_allowing_mfa_setup().await?;
    let status = mfa::status(&ctx.state, &user.id)
        .await
        .map_err(s::auth_error)?;
    let reauth_needed = !ctx.recently_authenticated().await?;
    // The secret of an unfinished setup is shown only in sudo mode, like starting one, and only to the
    // session that started it (see `mfa::setup_started_here`).
    let setup = match (&status.pending_setup, reauth_needed) {
        (Some(credential), false) if with_setup => {
            let started_here = ctx.mfa_setup_started_here().await?;
            if mfa::setup_started_here(&ctx.state, credential, started_here.as_deref()) {
                Some(mfa::setup_details(&ctx.state, &user, credential).map_err(s::auth_error)?)
            } else {
                None
            }
        }
        _ => None,
    };
    let replacement = match (&status.pending_replacement, reauth_needed) {
        (Some(credential), false) if with_setup => {
            mfa::replacement_details(&ctx.state, &user, credential).map_err(s::auth_error)?
        }
        _ => None,
    };
    let required = ctx.mfa_required(&user).await?;
    Ok(TwoFactorView {
        enabled_on: status.enabled_at.map(s::readable_date),
        backup_codes_remaining: status.backup_codes_remaining,
        reauth_needed,
        required,
        setup,
        replacement_waiting: status.pending_replacement.is_some(),
        replacement,
    })
}

/// Creates a new authenticator secret (shown by `two_factor_status` until it is confirmed).
#[server(prefix = "/api", endpoint = "start_two_factor_setup")]
pub async fn start_two_factor_setup() -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user_allowing_mfa_setup().await?;
    ctx.require_recent_auth().await?;
    let fingerprint = crate::server::services::mfa::start_setup(&ctx.state, &ctx.meta, &user)
        .await
        .map_err(s::auth_error)?;
    ctx.set_mfa_setup_started_here(&fingerprint).await?;
    s::redirect_back_done("start_two_factor_setup");
    Ok(())
}

/// Backup codes are returned to the page's script; a plain form post could only be redirected, losing
/// them after they replaced the old ones. So without JavaScript these actions are refused up front.
#[cfg(feature = "ssr")]
fn refuse_without_javascript() -> Result<(), AppError> {
    if crate::server::api_support::is_plain_form_post() {
        return Err(AppError::InvalidInput {
            field: None,
            message: "Showing your backup codes needs JavaScript. Please turn it on for this page \
                      and try again."
                .to_owned(),
        });
    }
    Ok(())
}

/// Turns two-factor authentication on with the first code from the app; returns the backup codes,
/// which are shown this once.
#[server(prefix = "/api", endpoint = "enable_two_factor")]
pub async fn enable_two_factor(code: String) -> Result<BackupCodesView, AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user_allowing_mfa_setup().await?;
    refuse_without_javascript()?;
    // The backup codes it returns are as sensitive as the setup's secret.
    ctx.require_recent_auth().await?;
    let started_here = ctx.mfa_setup_started_here().await?;
    let keep = ctx.session_key();
    let enabled = crate::server::services::mfa::confirm_setup(
        &ctx.state,
        &ctx.meta,
        &user,
        &code,
        started_here.as_deref(),
        keep.as_deref(),
    )
    .await
    .map_err(s::auth_error)?;
    // On, and its backup codes are shown only in this answer.
    crate::server::session_store::keep_answer_if_not_saved();
    // The other sessions just ended, and any still signing in end on their next request; this one
    // stays, and a copy of its cookie ends too.
    ctx.mark_two_factor_seen(Some(enabled.at)).await?;
    ctx.renew_session_id().await?;
    // Turning it on withdrew the trust of every device cookie (`device_cookies`): this browser's own
    // stays valid.
    let after = crate::server::entities::user::Model {
        two_factor_enabled_at: Some(enabled.at),
        ..user.clone()
    };
    ctx.rebind_device(&user, &after)?;
    let codes = enabled.backup_codes;
    Ok(BackupCodesView { codes })
}

/// Replaces the backup codes with a new set (the old ones stop working).
#[server(prefix = "/api", endpoint = "regenerate_backup_codes")]
pub async fn regenerate_backup_codes() -> Result<BackupCodesView, AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    refuse_without_javascript()?;
    ctx.require_recent_auth().await?;
    let codes = crate::server::services::mfa::regenerate_backup_codes(&ctx.state, &ctx.meta, &user)
        .await
        .map_err(s::auth_error)?;
    Ok(BackupCodesView { codes })
}

/// Starts moving two-factor authentication to a new phone: a new secret, shown by
/// `two_factor_status` until a code from the new app confirms it. The current app keeps working.
#[server(prefix = "/api", endpoint = "start_two_factor_replacement")]
pub async fn start_two_factor_replacement() -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    ctx.require_recent_auth().await?;
    crate::server::services::mfa::start_replacement(&ctx.state, &ctx.meta, &user)
        .await
        .map_err(s::auth_error)?;
    s::redirect_back_done("start_two_factor_replacement");
    Ok(())
}

/// Finishes the move with the first code from the new phone's app; the old app's codes stop working.
#[server(prefix = "/api", endpoint = "confirm_two_factor_replacement")]
pub async fn confirm_two_factor_replacement(code: String) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    ctx.rate_limit(s::Limit::Mfa).await?;
    ctx.require_recent_auth().await?;
    crate::server::services::mfa::confirm_replacement(&ctx.state, &ctx.meta, &user, &code)
        .await
        .map_err(s::auth_error)?;
    s::redirect_back_done("confirm_two_factor_replacement");
    Ok(())
}

/// Gives up a move to a new phone; the app in use stays. Like starting and finishing one, only just
/// after proving it is the owner: a session left signed in must not quietly undo the owner's move.
#[server(prefix = "/api", endpoint = "cancel_two_factor_replacement")]
pub async fn cancel_two_factor_replacement() -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    ctx.require_recent_auth().await?;
    crate::server::services::mfa::cancel_replacement(&ctx.state, &ctx.meta, &user)
        .await
        .map_err(s::auth_error)?;
    s::redirect_back_done("cancel_two_factor_replacement");
    Ok(())
}

/// Turns two-factor authentication off: needs the password and a current or backup code.
#[server(prefix = "/api", endpoint = "disable_two_factor")]
pub async fn disable_two_factor(password: String, code: String) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    ctx.rate_limit(s::Limit::Mfa).await?;
    crate::server::services::mfa::disable(&ctx.state, &ctx.meta, &user, &password, &code)
        .await
        .map_err(s::auth_error)?;
    ctx.mark_reauthenticated().await?;
    s::redirect_back_done("disable_two_factor");
    Ok(())
}

/// Abandons a sign-in waiting for its second factor and goes back to the password step.
#[server(prefix = "/api", endpoint = "cancel_sign_in")]
pub async fn cancel_sign_in() -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    ctx.clear_pending_mfa().await?;
    leptos_axum::redirect(crate::routes::LOGIN);
    Ok(())
}

/// Whether this browser has a sign-in waiting for its second factor.
#[server(prefix = "/api", endpoint = "pending_sign_in")]
pub async fn pending_sign_in() -> Result<bool, AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    Ok(ctx.pending_mfa().await?.is_some())
}

/// The second step of signing in: a 6-digit code from the app or a backup code. Five wrong codes
/// cancel the sign-in; on success the session id is replaced again and the browser goes to `next`.
#[server(prefix = "/api", endpoint = "verify_sign_in_code")]
pub async fn verify_sign_in_code(code: String) -> Result<(), AppError> {
    use crate::server::api_support as s;
    use crate::server::services::auth::AuthError;
    use crate::server::services::mfa;
    let ctx = s::RequestContext::current().await?;
    ctx.rate_limit(s::Limit::Mfa).await?;
    let Some(mut pending) = ctx.pending_mfa().await? else {
        return Err(s::auth_error(AuthError::MfaPendingMissing));
    };
    if code.trim().is_empty() {
        return Err(AppError::invalid(
            "code",
            "Enter the 6-digit code from your authenticator app.",
        ));
    }
    let signed_in = mfa::complete_sign_in(
        &ctx.state,
        &ctx.meta,
        &pending.user_id,
        pending.password_changed_at,
        &code,
    )
    .await;
    match signed_in {
        Ok(user) => {
            ctx.start_session(&user, pending.started_at, pending.password_changed_at)
                .await?;
            ctx.remember_device(&user)?;
            s::alert_new_device(&ctx, &user).await;
            leptos_axum::redirect(&pending.next);
            Ok(())
        }
        Err(AuthError::WrongCode { tries_left }) => {
            pending.failures += 1;
            if pending.failures >= mfa::MAX_PENDING_FAILURES {
                ctx.clear_pending_mfa().await?;
                mfa::abandon_sign_in(&ctx.state, &ctx.meta, &pending.user_id)
                    .await
                    .map_err(s::auth_error)?;
                return Err(AppError::InvalidInput {
                    field: None,
                    message: "Too many wrong codes. For your security this sign-in was stopped: \
                              sign in again with your password."
                        .to_owned(),
                });
            }
            ctx.set_pending_mfa(&pending).await?;
            // Whichever comes first: this sign-in's own limit, or the account's lock-out, which
            // counts the wrong passwords and codes before it too.
            let left = (mfa::MAX_PENDING_FAILURES - pending.failures).min(tries_left);
            Err(AppError::invalid(
                "code",
                format!(
                    "That code didn't work. Enter the newest code from your app, or use a backup \
                     code. {left} {} left.",
                    if left == 1 { "try" } else { "tries" }
                ),
            ))
        }
        Err(
            err @ (AuthError::LockedOut
            | AuthError::CodesLockedOut
            | AuthError::MfaPendingMissing
            | AuthError::MfaNotEnabled),
        ) => {
            // The sign-in cannot continue: the password step must be done again (later).
            ctx.clear_pending_mfa().await?;
            Err(match err {
                // Not the usual advice to reset a forgotten password: a reset does not lift a lock
                // set by wrong codes.
                AuthError::LockedOut | AuthError::CodesLockedOut => AppError::InvalidInput {
                    field: None,
                    message: "Too many attempts — signing in to this account is paused for a \
                              while. Please try again later."
                        .to_owned(),
                },
                AuthError::MfaNotEnabled => s::auth_error(AuthError::MfaPendingMissing),
                other => s::auth_error(other),
            })
        }
        Err(err) => Err(s::auth_error(err)),
    }
}
