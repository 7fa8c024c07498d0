//! Account server functions: register, verify, sign in/out, password reset and changes.
//!
//! Each is a thin door: who is calling (session) → parse the input → one service call → a wire type or
//! a redirect. Every failure is an [`AppError`] whose message is safe to show next to the form.

use leptos::prelude::*;

use crate::error::AppError;
use crate::types::{PasswordStrengthView, UserView};

/// Creates an account (with its household and consent records) and sends the verification email.
/// An address that is already registered gets the same answer; its owner is told by email.
#[server(prefix = "/api", endpoint = "register")]
pub async fn register(
    email: String,
    display_name: String,
    password: String,
    accept_terms: Option<String>,
    accept_privacy: Option<String>,
) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    ctx.rate_limit(s::Limit::Register).await?;
    let input = crate::server::services::auth::Registration {
        email,
        display_name,
        password,
        accepted_terms: accept_terms.is_some(),
        accepted_privacy: accept_privacy.is_some(),
    };
    crate::server::services::auth::register(&ctx.state, &ctx.meta, input)
        .await
        .map_err(s::auth_error)?;
    leptos_axum::redirect(crate::routes::REGISTER_DONE);
    Ok(())
}

/// Signs in with email and password; on success the session id is replaced and the browser goes to
/// `next` when it is a safe same-site path, otherwise home. Accounts with two-factor authentication go
/// to the code step first, with a session that is signed in to nothing else.
#[server(prefix = "/api", endpoint = "sign_in")]
pub async fn sign_in(
    email: String,
    password: String,
    next: Option<String>,
) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    ctx.rate_limit(s::Limit::SignIn).await?;
    use crate::server::services::auth::{self, SignIn};
    let next = crate::routes::safe_next(next.as_deref());
    match auth::sign_in(&ctx.state, &ctx.meta, &email, &password)
        .await
        .map_err(s::auth_error)?
    {
        SignIn::Complete(user) => {
            let now = ctx.state.clock.now().unix_timestamp();
            ctx.start_session(&user, now, Some(user.password_changed_at))
                .await?;
            ctx.remember_device(&user)?;
            s::alert_new_device(&ctx, &user).await;
            leptos_axum::redirect(&next);
        }
        SignIn::NeedsSecondFactor(user) => {
            ctx.begin_mfa_sign_in(&user.id, next, user.password_changed_at)
                .await?;
            leptos_axum::redirect(crate::routes::LOGIN_TWO_FACTOR);
        }
    }
    Ok(())
}

/// Ends the session on the server and clears the cookie.
#[server(prefix = "/api", endpoint = "sign_out")]
pub async fn sign_out() -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    ctx.end_session().await?;
    leptos_axum::redirect(crate::routes::HOME);
    Ok(())
}

/// Confirms an email address with the token from the emailed link.
#[server(prefix = "/api", endpoint = "verify_email")]
pub async fn verify_email(token: String) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    crate::server::services::auth::verify_email(&ctx.state, &ctx.meta, &token)
        .await
        .map_err(s::auth_error)?;
    s::redirect_back_done("verify_email");
    Ok(())
}

/// Sends a fresh verification link to the signed-in person (cooldown 60 s, 5 an hour). Allowed before
/// a required two-factor setup: the setup needs a confirmed address.
#[server(prefix = "/api", endpoint = "resend_verification")]
pub async fn resend_verification() -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user_allowing_mfa_setup().await?;
    crate::server::services::auth::resend_verification(&ctx.state, &ctx.meta, &user)
        .await
        .map_err(s::auth_error)?;
    s::redirect_back_done("resend_verification");
    Ok(())
}

/// For someone who cannot sign in yet because their address is unconfirmed: always answers the same;
/// an existing unconfirmed account gets a fresh link (same cooldown and hourly cap as the banner).
#[server(prefix = "/api", endpoint = "request_verification_email")]
pub async fn request_verification_email(email: String) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    ctx.rate_limit(s::Limit::VerificationRequest).await?;
    crate::server::services::auth::request_verification_email(&ctx.state, &ctx.meta, &email)
        .await
        .map_err(s::auth_error)?;
    s::redirect_back_done("request_verification_email");
    Ok(())
}

/// Always answers the same; an existing account gets a reset link by email.
#[server(prefix = "/api", endpoint = "request_password_reset")]
pub async fn request_password_reset(email: String) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    ctx.rate_limit(s::Limit::ResetRequest).await?;
    crate::server::services::auth::request_password_reset(&ctx.state, &ctx.meta, &email)
        .await
        .map_err(s::auth_error)?;
    s::redirect_back_done("request_password_reset");
    Ok(())
}

/// Sets a new password with the token from the emailed link; every session of the account ends.
#[server(prefix = "/api", endpoint = "reset_password")]
pub async fn reset_password(token: String, password: String) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    crate::server::services::auth::reset_password(&ctx.state, &ctx.meta, &token, &password)
        .await
        .map_err(s::auth_error)?;
    leptos_axum::redirect(crate::routes::LOGIN_AFTER_RESET);
    Ok(())
}

/// Changes the password of the signed-in person; their other sessions end.
#[server(prefix = "/api", endpoint = "change_password")]
pub async fn change_password(
    current_password: String,
    new_password: String,
) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    let keep = ctx.session_key();
    let changed = crate::server::services::auth::change_password(
        &ctx.state,
        &ctx.meta,
        &user,
        &current_password,
        &new_password,
        keep.as_deref(),
    )
    .await
    .map_err(s::auth_error)?;
    // Changed: a session that cannot be saved now must not turn "changed" into "try again".
    crate::server::session_store::keep_answer_if_not_saved();
    // This session stays signed in: it proved the new password just now.
    ctx.mark_password_changed(changed.changed_at, changed.two_factor)
        .await?;
    // The change withdrew the trust of every device cookie, this browser's too: its own stays valid.
    let after = crate::server::entities::user::Model {
        password_changed_at: changed.changed_at,
        ..user.clone()
    };
    ctx.rebind_device(&user, &after)?;
    s::redirect_back_done("change_password");
    Ok(())
}

/// Changes the name shown in Nest Egg.
#[server(prefix = "/api", endpoint = "change_display_name")]
pub async fn change_display_name(display_name: String) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    crate::server::services::auth::change_display_name(&ctx.state, &ctx.meta, &user, &display_name)
        .await
        .map_err(s::auth_error)?;
    s::redirect_back_done("change_display_name");
    Ok(())
}

/// Starts an email change: a link goes to the new address, a notice to the current one. Takes the
/// password, and a code when two-factor authentication is on.
#[server(prefix = "/api", endpoint = "change_email")]
pub async fn change_email(
    password: String,
    new_email: String,
    code: Option<String>,
) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    // A code may be guessed here as at sign-in: the same allowance (without one, only the password
    // is checked, which counts toward the account's lock-out).
    if code.as_deref().is_some_and(|code| !code.trim().is_empty()) {
        ctx.rate_limit(s::Limit::Mfa).await?;
    }
    crate::server::services::auth::request_email_change(
        &ctx.state,
        &ctx.meta,
        &user,
        &password,
        code.as_deref().unwrap_or_default(),
        &new_email,
    )
    .await
    .map_err(s::auth_error)?;
    s::redirect_back_done("change_email");
    Ok(())
}

/// Completes an email change with the token sent to the new address.
#[server(prefix = "/api", endpoint = "confirm_email_change")]
pub async fn confirm_email_change(token: String) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    crate::server::services::auth::confirm_email_change(&ctx.state, &ctx.meta, &token)
        .await
        .map_err(s::auth_error)?;
    s::redirect_back_done("confirm_email_change");
    Ok(())
}

/// "This wasn't me", from a new-sign-in email: every session ends, the password stops working and a
/// reset link is emailed.
#[server(prefix = "/api", endpoint = "report_sign_in")]
pub async fn report_sign_in(token: String) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    crate::server::services::sign_in_alerts::report(&ctx.state, &ctx.meta, &token)
        .await
        .map_err(s::auth_error)?;
    // This browser may be signed in to the account too: it is signed out with the rest. The report
    // is committed (every session record of the account is gone already), so a store failing now
    // leaves this cookie naming nothing, and the answer still says it is done: a retry would only
    // be told that the link is used.
    if ctx.session.flush().await.is_err() {
        tracing::warn!(
            "the sign-in was reported, but this browser's session cookie could not be cleared"
        );
    }
    s::redirect_back_done("report_sign_in");
    Ok(())
}

/// "Put my address back", from the email to the old address after a change of address: the address
/// the link was sent to is the account's again, and the account is secured as by "this wasn't me".
#[server(prefix = "/api", endpoint = "restore_email")]
pub async fn restore_email(token: String) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    crate::server::services::sign_in_alerts::restore_address(&ctx.state, &ctx.meta, &token)
        .await
        .map_err(s::auth_error)?;
    // As for a report: committed already, so a store failing now only leaves a cookie naming nothing.
    if ctx.session.flush().await.is_err() {
        tracing::warn!(
            "the address was put back, but this browser's session cookie could not be cleared"
        );
    }
    s::redirect_back_done("restore_email");
    Ok(())
}

/// Who is signed in, if anyone.
#[server(prefix = "/api", endpoint = "current_user")]
pub async fn current_user() -> Result<Option<UserView>, AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let Some(user) = ctx.user().await? else {
        return Ok(None);
    };
    let mfa_setup_required = ctx.mfa_setup_required(&user).await?;
    let consent_required = ctx.consent_required(&user).await?;
    Ok(Some(UserView {
        display_name: user.display_name,
        email: user.email,
        email_verified: user.email_verified_at.is_some(),
        mfa_setup_required,
        consent_required,
    }))
}

/// Re-authenticates before a sensitive change ("sudo mode" for `SUDO_WINDOW_MINUTES`): the password, and
/// a code when two-factor authentication is on (as at sign-in). Wrong guesses count toward the
/// account's lock-out.
#[server(prefix = "/api", endpoint = "confirm_password")]
pub async fn confirm_password(password: String, code: Option<String>) -> Result<(), AppError> {
    use crate::server::api_support as s;
    use crate::server::services::{auth, mfa};
    let ctx = s::RequestContext::current().await?;
    // Ungated: someone asked to accept updated terms may still re-authenticate to export their data.
    let user = ctx.require_user_ungated().await?;
    let has_mfa = mfa::is_enabled(&ctx.state.db, &user.id)
        .await
        .map_err(|err| s::internal("checking two-factor status", &err))?;
    if has_mfa {
        ctx.rate_limit(s::Limit::Mfa).await?;
        let code = code.unwrap_or_default();
        mfa::reauthenticate(&ctx.state, &ctx.meta, &user, &password, &code).await
    } else {
        auth::check_own_password(&ctx.state, &ctx.meta, &user, &password, "password").await
    }
    .map_err(s::auth_error)?;
    ctx.mark_reauthenticated().await?;
    s::redirect_back_done("confirm_password");
    Ok(())
}

/// Scores a password for the live meter with the same policy the server enforces.
#[server(prefix = "/api", endpoint = "password_strength")]
pub async fn password_strength(
    password: String,
    email: String,
) -> Result<PasswordStrengthView, AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    ctx.rate_limit(s::Limit::Strength).await?;
    Ok(crate::server::services::auth::password_strength(&ctx.state, &password, &email).await)
}
