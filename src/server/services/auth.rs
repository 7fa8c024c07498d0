//! The account life cycle: register, verify the address, sign in (with lock-out), reset or change the
//! password, change the email address.
//!
//! Rules that keep accounts private: every answer that could reveal whether an address is registered is
//! the same either way (registration, reset requests, failed sign-ins), and the work done is the same
//! too (a password is hashed or verified in both branches). Tokens exist only in the emailed link; the
//! database keeps a keyed hash. Every change and its email commit together.

use sea_orm::{
    ActiveModelTrait as _, ActiveValue::Set, ColumnTrait as _, ConnectionTrait,
    DatabaseTransaction, DbErr, EntityTrait as _, IntoActiveModel as _, PaginatorTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _, SqlErr,
};

use crate::routes;
use crate::server::api_support::{Limit, LimitError, RequestMeta};
use crate::server::entities::{account_token, consent, user};
use crate::server::mail::Template;
use crate::server::services::audit::{self, Event};
use crate::server::services::crypto::{CryptoError, Verified, hash_token};
use crate::server::services::device_cookies;
use crate::server::services::outbox;
use crate::server::services::password_policy::{self, PasswordPolicy};
use crate::server::state::AppState;
use crate::types::PasswordStrengthView;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{message}")]
    Invalid {
        field: Option<&'static str>,
        message: String,
    },
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("locked out")]
    LockedOut,
    #[error("email address not verified")]
    EmailNotVerified,
    #[error("registration is closed")]
    RegistrationClosed,
    #[error("link invalid, expired or used")]
    LinkInvalid,
    #[error("too soon; retry in {retry_after_secs} s")]
    TooSoon { retry_after_secs: u64 },
    /// Locked out while a second factor was checked, for the account's or the browser's run of
    /// failures: said to someone who has proven the password, so the message can say more than
    /// [`AuthError::LockedOut`] (which must not tell an account with two-factor apart).
    #[error("locked out")]
    CodesLockedOut,
    /// A second-factor code (authenticator or backup) that did not match, or was already used;
    /// `tries_left` more wrong ones lock the account (or the trusted browser) out.
    #[error("wrong second-factor code")]
    WrongCode { tries_left: u32 },
    #[error("two-factor authentication is already on")]
    MfaAlreadyEnabled,
    #[error("two-factor authentication is off")]
    MfaNotEnabled,
    #[error("no two-factor setup in progress")]
    MfaSetupMissing,
    /// Two-factor authentication is set up only on a confirmed address: otherwise someone who signed
    /// up with another person's address could lock its owner out with a second factor of their own,
    /// which a password reset does not remove.
    #[error("two-factor setup needs a confirmed email address")]
    MfaNeedsConfirmedAddress,
    /// The password step of a sign-in is gone: expired, cancelled, or never happened.
    #[error("no sign-in waiting for a second factor")]
    MfaPendingMissing,
    /// Not there, or not the caller's: the same answer either way.
    #[error("not found")]
    NotFound,
    #[error("sealed value: {0}")]
    Seal(#[from] crate::server::services::secret_box::SealError),
    #[error("database: {0}")]
    Database(#[from] DbErr),
    /// The shared counters (rate limits and lock-outs in Redis) could not be reached.
    #[error("counters: {0}")]
    CountersUnavailable(String),
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
}

pub(super) fn invalid(field: &'static str, message: impl Into<String>) -> AuthError {
    AuthError::Invalid {
        field: Some(field),
        message: message.into(),
    }
}

pub const PURPOSE_VERIFY: &str = "verify_email";
pub const PURPOSE_RESET: &str = "reset_password";
pub const PURPOSE_CHANGE_EMAIL: &str = "change_email";
const VERIFY_TTL_SECS: i64 = 24 * 3600;
const RESET_TTL_SECS: i64 = 3600;
const CHANGE_EMAIL_TTL_SECS: i64 = 24 * 3600;
const RESEND_COOLDOWN_SECS: i64 = 60;
const RESENDS_PER_HOUR: u64 = 5;

/// Trimmed and lower-cased; one `@`, something on both sides, a dot in the domain, no spaces, ≤ 254.
pub fn normalize_email(input: &str, field: &'static str) -> Result<String, AuthError> {
    let email = input.trim().to_lowercase();
    if email.is_empty() {
        return Err(invalid(field, "Enter your email address."));
    }
    let valid = email.len() <= 254
        && !email.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"')
        })
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.len() <= 64
                && domain.contains('.')
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if valid {
        Ok(email)
    } else {
        Err(invalid(
            field,
            "Enter an email address like name@example.org.",
        ))
    }
}

/// 1–80 characters after trimming, no control characters. Shown escaped everywhere.
pub fn parse_display_name(input: &str) -> Result<String, AuthError> {
    let name = input.trim();
    let length = name.chars().count();
    if length == 0 {
        return Err(invalid(
            "display_name",
            "Enter the name to show in Nest Egg.",
        ));
    }
    if length > 80 {
        return Err(invalid("display_name", "Use at most 80 characters."));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(
            "display_name",
            "Use letters, numbers and punctuation only.",
        ));
    }
    Ok(name.to_owned())
}

fn policy(state: &AppState) -> PasswordPolicy {
    PasswordPolicy {
        min_length: state.settings.accounts.password_min_length,
        max_length: password_policy::DEFAULT_MAX_LENGTH,
    }
}

/// The policy check runs zxcvbn, which is CPU work: keep it off the async workers.
async fn check_password(
    state: &AppState,
    password: &str,
    email: &str,
    name: &str,
    field: &'static str,
) -> Result<(), AuthError> {
    let policy = policy(state);
    let (password, email, name) = (password.to_owned(), email.to_owned(), name.to_owned());
    let verdict = crate::server::memory::spawn_blocking_and_give_back(move || {
        policy.check(&password, &email, Some(&name))
    })
    .await
    .map_err(|_| AuthError::Crypto(CryptoError::Hash))?;
    verdict.map_err(|rejection| invalid(field, rejection.to_string()))
}

pub(super) fn link(state: &AppState, path: &str, token: &str) -> String {
    format!("{}{path}?token={token}", state.settings.public_origin())
}

pub(super) fn page(state: &AppState, path: &str) -> String {
    format!("{}{path}", state.settings.public_origin())
}

pub(super) fn now(state: &AppState) -> i64 {
    state.clock.now().unix_timestamp()
}

/// Voids the user's unused links for `purpose`.
async fn void_unused_tokens(
    txn: &DatabaseTransaction,
    user_id: &str,
    purpose: &'static str,
    now: i64,
) -> Result<(), DbErr> {
    account_token::Entity::update_many()
        .col_expr(account_token::Column::UsedAt, now.into())
        .filter(account_token::Column::UserId.eq(user_id))
        .filter(account_token::Column::Purpose.eq(purpose))
        .filter(account_token::Column::UsedAt.is_null())
        .exec(txn)
        .await?;
    Ok(())
}

/// Issues a token for `purpose`, voiding the user's earlier unused ones, and returns it (for the link).
/// "This wasn't me" and "put my address back" links are the exception: each email keeps its own
/// working link (a second change of address must not disarm the first one's).
pub(super) async fn issue_token(
    txn: &DatabaseTransaction,
    state: &AppState,
    user_id: &str,
    purpose: &'static str,
    new_email: Option<String>,
    now: i64,
    ttl: i64,
) -> Result<String, DbErr> {
    if !KEPT_LINKS.contains(&purpose) {
        void_unused_tokens(txn, user_id, purpose, now).await?;
    }
    let token = crate::server::services::crypto::generate_token();
    account_token::ActiveModel {
        user_id: Set(user_id.to_owned()),
        purpose: Set(purpose.to_owned()),
        token_hash: Set(hash_token(&state.settings.secret_key, purpose, &token)),
        new_email: Set(new_email),
        created_at: Set(now),
        expires_at: Set(now + ttl),
        used_at: Set(None),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    Ok(token)
}

/// The token of `purpose` behind a link, if it is still unused and unexpired. Read-only: for a check
/// before slow work (argon2), which must not run for a made-up link; [`consume_token`] decides.
pub(super) async fn live_token(
    db: &impl ConnectionTrait,
    state: &AppState,
    purpose: &'static str,
    token: &str,
    now: i64,
) -> Result<Option<account_token::Model>, DbErr> {
    let token = token.trim();
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let hash = hash_token(&state.settings.secret_key, purpose, token);
    Ok(account_token::Entity::find()
        .filter(account_token::Column::TokenHash.eq(hash))
        .filter(account_token::Column::Purpose.eq(purpose))
        .one(db)
        .await?
        .filter(|row| row.used_at.is_none() && row.expires_at > now))
}

/// Marks a valid token used (exactly once, even under concurrent clicks) and returns it.
pub(super) async fn consume_token(
    txn: &DatabaseTransaction,
    state: &AppState,
    purpose: &'static str,
    token: &str,
    now: i64,
) -> Result<account_token::Model, AuthError> {
    let Some(row) = live_token(txn, state, purpose, token, now).await? else {
        return Err(AuthError::LinkInvalid);
    };
    let updated = account_token::Entity::update_many()
        .col_expr(account_token::Column::UsedAt, now.into())
        .filter(account_token::Column::Id.eq(row.id))
        .filter(account_token::Column::UsedAt.is_null())
        .exec(txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(AuthError::LinkInvalid);
    }
    Ok(row)
}

/// Issues a verification link for `account_id` and puts its email in the outbox, recording `event`.
async fn send_verification(
    txn: &DatabaseTransaction,
    state: &AppState,
    meta: &RequestMeta,
    (account_id, name, email): (&str, &str, &str),
    now: i64,
    event: &'static str,
) -> Result<audit::Recorded, DbErr> {
    let token = issue_token(
        txn,
        state,
        account_id,
        PURPOSE_VERIFY,
        None,
        now,
        VERIFY_TTL_SECS,
    )
    .await?;
    let template = Template::VerifyEmail {
        name: name.to_owned(),
        link: link(state, routes::VERIFY_EMAIL, &token),
    };
    outbox::enqueue(txn, state, now, email, Some(account_id), &template).await?;
    audit::record(txn, meta, now, Event::new(event).user(account_id)).await
}

/// Records the event, commits the change together with its emails, and wakes the outbox worker so
/// they go out at once.
pub(super) async fn commit_with_event(
    txn: DatabaseTransaction,
    state: &AppState,
    meta: &RequestMeta,
    now: i64,
    event: Event<'_>,
) -> Result<(), AuthError> {
    let recorded = audit::record(&txn, meta, now, event).await?;
    txn.commit().await?;
    recorded.emit();
    state.mail_wakeup.notify_one();
    Ok(())
}

pub fn throttle_key(state: &AppState, email: &str) -> String {
    hash_token(&state.settings.secret_key, "login-throttle", email)
}

pub struct Registration {
    pub email: String,
    pub display_name: String,
    pub password: String,
    pub accepted_terms: bool,
    pub accepted_privacy: bool,
}

pub async fn register(
    state: &AppState,
    meta: &RequestMeta,
    input: Registration,
) -> Result<(), AuthError> {
    if !state.settings.accounts.registration_open {
        return Err(AuthError::RegistrationClosed);
    }
    let email = normalize_email(&input.email, "email")?;
    let name = parse_display_name(&input.display_name)?;
    check_password(state, &input.password, &email, &name, "password").await?;
    if !input.accepted_terms {
        return Err(invalid(
            "accept_terms",
            "Please accept the terms of service to create an account.",
        ));
    }
    if !input.accepted_privacy {
        return Err(invalid(
            "accept_privacy",
            "Please accept the privacy policy to create an account.",
        ));
    }
    // Hash first, whether or not the address is taken: the hash is most of either answer's time. The
    // writes after it differ (a new account takes a few more statements in its transaction than a
    // taken address, about a millisecond on PostgreSQL); telling addresses apart by that takes many
    // tries per address, which the per-IP registration limit slows down.
    let password_hash = state.hasher.hash(&input.password).await?;
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;

    if let Some(existing) = user::Entity::find()
        .filter(user::Column::Email.eq(&email))
        .one(&txn)
        .await?
    {
        if !refused(state, Limit::MailToAddress, &throttle_key(state, &email)).await? {
            let template = Template::AlreadyRegistered {
                name: existing.display_name.clone(),
                sign_in_link: page(state, routes::LOGIN),
                reset_link: page(state, routes::FORGOT_PASSWORD),
            };
            outbox::enqueue_for(&txn, state, now, &existing, &template).await?;
        }
        return commit_with_event(
            txn,
            state,
            meta,
            now,
            Event::new("register_existing_email").user(&existing.id),
        )
        .await;
    }

    // An address moved off an account lately can still be put back on it: until its link lapses, it
    // is not free to take (a sign-up with it would keep the owner from getting the account back).
    // The same answer as ever; its holder is told why no account was made.
    if let Some(until) = on_hold_until(&txn, &email, now).await? {
        if !refused(state, Limit::MailToAddress, &throttle_key(state, &email)).await? {
            let template = Template::AddressOnHold {
                name: String::new(),
                until: crate::server::api_support::readable_date(until),
            };
            outbox::enqueue(&txn, state, now, &email, None, &template).await?;
        }
        return commit_with_event(
            txn,
            state,
            meta,
            now,
            Event::new("register_address_on_hold"),
        )
        .await;
    }

    let user_id = uuid::Uuid::new_v4().to_string();
    let created = user::ActiveModel {
        id: Set(user_id.clone()),
        email: Set(email.clone()),
        display_name: Set(name.clone()),
        password_hash: Set(password_hash),
        email_verified_at: Set(None),
        password_changed_at: Set(now),
        two_factor_enabled_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await;
    if let Err(err) = created {
        if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
            // The same address registered a moment ago: that registration carries on; this one looks
            // exactly like it.
            return Ok(());
        }
        return Err(err.into());
    }
    crate::server::services::households::create_own(&txn, &user_id, &name, now).await?;
    for (document, version) in [
        ("terms", state.settings.accounts.terms_version),
        ("privacy", state.settings.accounts.privacy_version),
    ] {
        consent::ActiveModel {
            user_id: Set(user_id.clone()),
            document: Set(document.to_owned()),
            version: Set(version),
            accepted_at: Set(now),
            ip: Set(meta.ip.to_string()),
            user_agent: Set(meta.user_agent.clone()),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
    }
    let recorded = send_verification(
        &txn,
        state,
        meta,
        (&user_id, &name, &email),
        now,
        "register",
    )
    .await?;
    txn.commit().await?;
    recorded.emit();
    state.mail_wakeup.notify_one();
    Ok(())
}

pub async fn verify_email(
    state: &AppState,
    meta: &RequestMeta,
    token: &str,
) -> Result<(), AuthError> {
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    let row = consume_token(&txn, state, PURPOSE_VERIFY, token, now).await?;
    let Some(found) = user::Entity::find_by_id(row.user_id.clone())
        .one(&txn)
        .await?
    else {
        return Err(AuthError::LinkInvalid);
    };
    if found.email_verified_at.is_none() {
        let mut update = found.into_active_model();
        update.email_verified_at = Set(Some(now));
        update.updated_at = Set(now);
        update.update(&txn).await?;
    }
    commit_with_event(
        txn,
        state,
        meta,
        now,
        Event::new("email_verified").user(&row.user_id),
    )
    .await
}

pub async fn resend_verification(
    state: &AppState,
    meta: &RequestMeta,
    who: &user::Model,
) -> Result<(), AuthError> {
    if who.email_verified_at.is_some() {
        return Ok(());
    }
    let now = now(state);
    let recent = account_token::Entity::find()
        .filter(account_token::Column::UserId.eq(&who.id))
        .filter(account_token::Column::Purpose.eq(PURPOSE_VERIFY))
        .filter(account_token::Column::CreatedAt.gt(now - 3600))
        .order_by_asc(account_token::Column::CreatedAt)
        .all(&state.db)
        .await?;
    if let Some(latest) = recent.last()
        && latest.created_at > now - RESEND_COOLDOWN_SECS
    {
        return Err(AuthError::TooSoon {
            retry_after_secs: (latest.created_at + RESEND_COOLDOWN_SECS - now).max(1) as u64,
        });
    }
    if recent.len() as u64 >= RESENDS_PER_HOUR
        && let Some(oldest) = recent.first()
    {
        return Err(AuthError::TooSoon {
            retry_after_secs: (oldest.created_at + 3600 - now).max(1) as u64,
        });
    }
    // The checks above read before writing; this in-memory limiter makes the cooldown hold even for
    // requests racing each other.
    if refused(state, Limit::VerificationPerAccount, &who.id).await? {
        return Err(AuthError::TooSoon {
            retry_after_secs: RESEND_COOLDOWN_SECS as u64,
        });
    }
    let txn = crate::server::db::begin_write(&state.db).await?;
    let who_details = (
        who.id.as_str(),
        who.display_name.as_str(),
        who.email.as_str(),
    );
    let recorded =
        send_verification(&txn, state, meta, who_details, now, "verification_resent").await?;
    txn.commit().await?;
    recorded.emit();
    state.mail_wakeup.notify_one();
    Ok(())
}

/// A new verification link by address, for the sign-in page when `REQUIRE_EMAIL_VERIFICATION` blocks
/// sign-in. The answer never says whether the address exists or why nothing was sent.
pub async fn request_verification_email(
    state: &AppState,
    meta: &RequestMeta,
    email_input: &str,
) -> Result<(), AuthError> {
    let email = normalize_email(email_input, "email")?;
    // Answer first (same body, same time for every address); the rest happens afterwards.
    let (state, meta) = (state.clone(), meta.clone());
    tokio::spawn(async move {
        let result = async {
            let found = user::Entity::find()
                .filter(user::Column::Email.eq(&email))
                .one(&state.db)
                .await?;
            match found {
                Some(account) => resend_verification(&state, &meta, &account).await,
                None => Ok(()),
            }
        }
        .await;
        match result {
            Ok(()) | Err(AuthError::TooSoon { .. }) => {}
            Err(err) => tracing::error!(error = %err, "sending a verification link failed"),
        }
    });
    Ok(())
}

/// Counts one attempt for a throttle key and returns the failures so far, this one included, and any
/// lock (see `lockouts`).
pub(super) async fn count_attempt(
    state: &AppState,
    key: &str,
    now: i64,
) -> Result<(i32, Option<i64>), DbErr> {
    state.lockouts.count(&state.db, key, now).await
}

/// After a correct password: the run of failures ends, unless a concurrent failure locked the address
/// meanwhile (then the lock wins). Returns whether the attempt may proceed.
pub(super) async fn clear_attempts(state: &AppState, key: &str, now: i64) -> Result<bool, DbErr> {
    state.lockouts.clear(&state.db, key, now).await
}

/// A correct password that a second factor must still follow: this attempt is not a failure, but the
/// run of failures so far (wrong codes included) stands until the second factor succeeds. Otherwise
/// someone with the password could guess codes forever, re-entering it every few tries.
pub(super) async fn uncount_attempt(state: &AppState, key: &str) -> Result<(), DbErr> {
    state.lockouts.uncount(&state.db, key).await
}

/// Whether `limit` refuses `key` now. Counters that cannot be reached are an error, never a pass.
pub(super) async fn refused(state: &AppState, limit: Limit, key: &str) -> Result<bool, AuthError> {
    match state.limiters.check(limit, key).await {
        Ok(()) => Ok(false),
        Err(LimitError::Exceeded { .. }) => Ok(true),
        Err(LimitError::Unavailable(err)) => Err(AuthError::CountersUnavailable(err)),
    }
}

/// What failed, with the name of its audit event: the password, or the second factor after a correct
/// password (the owner is then told their password is known).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    Password(&'static str),
    SecondFactor(&'static str),
}

impl Failure {
    fn event(self) -> &'static str {
        match self {
            Failure::Password(event) | Failure::SecondFactor(event) => event,
        }
    }
}

/// After a wrong password or code: locks `key` once its run reaches the threshold. A wrong guess from a
/// trusted device (`address_key` set, see `device_cookies`) counts toward its address too, which locks
/// the same way: a stolen device cookie buys no more guesses than the address allows. The request that
/// sets a lock (exactly one per lock, even under concurrency) records it and emails the owner; once,
/// when it sets both.
pub(super) async fn record_failure(
    state: &AppState,
    meta: &RequestMeta,
    (key, address_key): (&str, Option<&str>),
    failures: i32,
    account: Option<&user::Model>,
    now: i64,
    failure: Failure,
) -> Result<bool, AuthError> {
    let threshold = state.settings.accounts.lockout_threshold as i32;
    let until = now + state.settings.accounts.lockout_duration.as_secs() as i64;
    let address_failures = match address_key {
        Some(address_key) => count_attempt(state, address_key, now).await?.0,
        None => 0,
    };
    let txn = crate::server::db::begin_write(&state.db).await?;
    // The locks this request set, to take back should it fail before they are recorded.
    let mut set_here = Vec::new();
    if failures >= threshold && state.lockouts.lock(&txn, key, until).await? {
        set_here.push(key);
    }
    // Not short-circuited: the address is locked even when this guess also locks the device.
    if let Some(address_key) = address_key
        && address_failures >= threshold
        && lock_or_undo(state, &txn, address_key, until, &set_here).await?
    {
        set_here.push(address_key);
    }
    let locked_now = !set_here.is_empty();
    let recorded = async {
        let mut failed = Event::new(failure.event()).detail("consecutive_failures", failures);
        if let Some(account) = account {
            failed = failed.user(&account.id);
        }
        let mut recorded = vec![audit::record(&txn, meta, now, failed).await?];
        if locked_now {
            let mut locked = Event::new("locked_out");
            if let Some(account) = account {
                locked = locked.user(&account.id);
                let name = account.display_name.clone();
                let reset_link = page(state, routes::FORGOT_PASSWORD);
                let template = match failure {
                    Failure::Password(_) => Template::LockedOut {
                        name,
                        reset_link,
                        two_factor: crate::server::services::mfa::is_enabled(&txn, &account.id)
                            .await?,
                    },
                    Failure::SecondFactor(_) => Template::MfaFailures { name, reset_link },
                };
                outbox::enqueue_for(&txn, state, now, account, &template).await?;
            }
            recorded.push(audit::record(&txn, meta, now, locked).await?);
        }
        txn.commit().await?;
        recorded.into_iter().for_each(audit::Recorded::emit);
        Ok::<(), AuthError>(())
    };
    if let Err(err) = recorded.await {
        undo_locks(state, &set_here, until).await;
        return Err(err);
    }
    if locked_now {
        state.mail_wakeup.notify_one();
    }
    Ok(failures >= threshold)
}

/// Locks `key`; should that fail, takes back the locks already `set` by this request.
async fn lock_or_undo<C: ConnectionTrait>(
    state: &AppState,
    db: &C,
    key: &str,
    until: i64,
    set: &[&str],
) -> Result<bool, AuthError> {
    match state.lockouts.lock(db, key, until).await {
        Ok(locked) => Ok(locked),
        Err(err) => {
            undo_locks(state, set, until).await;
            Err(err.into())
        }
    }
}

/// Takes back locks set by a request that then failed to record them and email the owner (with Redis
/// they are not part of the transaction): the next failure sets them again, with both. Best effort: a
/// failure here (Redis gone as well) leaves the lock in place, unannounced.
async fn undo_locks(state: &AppState, keys: &[&str], until: i64) {
    for key in keys {
        if let Err(err) = state.lockouts.unlock(key, until).await {
            tracing::error!(error = %err, "could not take back a lock whose notice failed");
        }
    }
}

/// After counting a second-factor code that found no lock: whether it must be refused all the same,
/// because the attempts counted before it already reached the threshold. One of them is about to set
/// the lock. Codes are checked in moments and all at once, so without this a burst of parallel guesses,
/// all counted before the first of them locks the account, would all be checked.
///
/// Passwords are not refused this way: in-flight attempts include right passwords (several browsers
/// signing in to one account at once), which a count cannot tell from guesses, and argon2 checks
/// passwords a few at a time, in order, so a right guess that finishes after the lock is refused when
/// it clears the count ([`clear_attempts`]).
///
/// The refusal is recorded (as an attempt refused, not checked: it may have been right), which also
/// sets the lock should the attempt that reached the threshold never get to it (it may have failed on
/// its way); the owner then gets the plain lock-out email, which claims nothing about what was wrong.
pub(super) async fn past_threshold(
    state: &AppState,
    meta: &RequestMeta,
    key: &str,
    failures: i32,
    account: Option<&user::Model>,
    now: i64,
) -> Result<bool, AuthError> {
    if failures <= state.settings.accounts.lockout_threshold as i32 {
        return Ok(false);
    }
    let refused = Failure::Password("attempt_refused_past_threshold");
    record_failure(state, meta, (key, None), failures, account, now, refused).await?;
    Ok(true)
}

/// Where a correct password leads.
#[derive(Debug)]
pub enum SignIn {
    /// Signed in.
    Complete(user::Model),
    /// The account has two-factor authentication: the second step must follow.
    NeedsSecondFactor(user::Model),
}

/// Checks a password for `email_input`. A device cookie (`meta.device`) valid for the account has the
/// attempt counted under its own key instead of the address's (see `device_cookies`).
pub async fn sign_in(
    state: &AppState,
    meta: &RequestMeta,
    email_input: &str,
    password: &str,
) -> Result<SignIn, AuthError> {
    // Malformed addresses are counted like unknown ones: the answer must not tell them apart.
    let email =
        normalize_email(email_input, "email").unwrap_or_else(|_| email_input.trim().to_lowercase());
    let now = now(state);
    let found = user::Entity::find()
        .filter(user::Column::Email.eq(&email))
        .one(&state.db)
        .await?;
    let device_cookies::ThrottleKeys { primary: key, also } = device_cookies::throttle_keys(
        state,
        found.as_ref(),
        meta.device.as_ref(),
        throttle_key(state, &email),
        now,
    );

    // Count the attempt before checking it, so guesses racing each other all count.
    let (failures, locked_until) = count_attempt(state, &key, now).await?;
    if locked_until.is_some_and(|until| until > now) {
        let mut event = Event::new("sign_in_refused_locked");
        if let Some(account) = &found {
            event = event.user(&account.id);
        }
        audit::log(&state.db, meta, now, event).await?;
        return Err(AuthError::LockedOut);
    }
    let failure = Failure::Password("sign_in_failed");

    // Verify against the real hash or a dummy one: the same work whether or not the account exists.
    // Over-long input is refused before any hashing (it could not be a valid password).
    let verified = if password.chars().count() > password_policy::DEFAULT_MAX_LENGTH {
        Verified::No
    } else {
        state
            .hasher
            .verify(password, found.as_ref().map(|u| u.password_hash.as_str()))
            .await?
    };

    match (verified, found) {
        (Verified::Yes { rehash }, Some(account)) => {
            let second_factor =
                crate::server::services::mfa::is_enabled(&state.db, &account.id).await?;
            if second_factor {
                // The failures so far stand until the code is right as well.
                uncount_attempt(state, &key).await?;
            } else if !clear_attempts(state, &key, now).await? {
                return Err(AuthError::LockedOut);
            }
            if rehash {
                let new_hash = state.hasher.hash(password).await?;
                // Only if the password is still the one just checked: a reset that committed in the
                // meantime must win.
                user::Entity::update_many()
                    .col_expr(user::Column::PasswordHash, new_hash.into())
                    .filter(user::Column::Id.eq(&account.id))
                    .filter(user::Column::PasswordHash.eq(&account.password_hash))
                    .exec(&state.db)
                    .await?;
            }
            if state.settings.accounts.require_email_verification
                && account.email_verified_at.is_none()
            {
                return Err(AuthError::EmailNotVerified);
            }
            if second_factor {
                audit::log(
                    &state.db,
                    meta,
                    now,
                    Event::new("sign_in_password_ok").user(&account.id),
                )
                .await?;
                return Ok(SignIn::NeedsSecondFactor(account));
            }
            audit::log(
                &state.db,
                meta,
                now,
                Event::new("sign_in")
                    .user(&account.id)
                    .detail("method", "password"),
            )
            .await?;
            Ok(SignIn::Complete(account))
        }
        (_, found) => {
            let keys = (key.as_str(), also.as_deref());
            let locked =
                record_failure(state, meta, keys, failures, found.as_ref(), now, failure).await?;
            Err(if locked {
                AuthError::LockedOut
            } else {
                AuthError::InvalidCredentials
            })
        }
    }
}

/// The lock-out keys of a check of `account`'s password or code from this browser: its device
/// cookie's when it holds a valid one for the account, else the address's.
pub(super) fn account_keys(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
    now: i64,
) -> device_cookies::ThrottleKeys {
    device_cookies::throttle_keys(
        state,
        Some(account),
        meta.device.as_ref(),
        throttle_key(state, &account.email),
        now,
    )
}

/// Checks the signed-in person's own password before a sensitive change. Wrong guesses count toward the
/// same lock-out as sign-in, so a stolen session cannot be used to guess the password; and as at
/// sign-in, the owner's own browser is not refused for a lock of the address by someone else.
pub async fn check_own_password(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
    password: &str,
    field: &'static str,
) -> Result<(), AuthError> {
    check_password_of(state, meta, account, password, field, false).await
}

/// [`check_own_password`], for when a second-factor code must follow: a correct password then leaves
/// the run of failures in place (the code's success clears it).
pub async fn check_own_password_before_code(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
    password: &str,
    field: &'static str,
) -> Result<(), AuthError> {
    check_password_of(state, meta, account, password, field, true).await
}

async fn check_password_of(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
    password: &str,
    field: &'static str,
    code_follows: bool,
) -> Result<(), AuthError> {
    let now = now(state);
    let device_cookies::ThrottleKeys { primary: key, also } =
        account_keys(state, meta, account, now);
    let (failures, locked_until) = count_attempt(state, &key, now).await?;
    if locked_until.is_some_and(|until| until > now) {
        return Err(AuthError::LockedOut);
    }
    let failure = Failure::Password("password_check_failed");
    let verified = if password.chars().count() > password_policy::DEFAULT_MAX_LENGTH {
        Verified::No
    } else {
        state
            .hasher
            .verify(password, Some(&account.password_hash))
            .await?
    };
    if verified == Verified::No {
        let keys = (key.as_str(), also.as_deref());
        if record_failure(state, meta, keys, failures, Some(account), now, failure).await? {
            return Err(AuthError::LockedOut);
        }
        return Err(invalid(field, "That is not your current password."));
    }
    if code_follows {
        uncount_attempt(state, &key).await?;
    } else if !clear_attempts(state, &key, now).await? {
        return Err(AuthError::LockedOut);
    }
    Ok(())
}

pub async fn request_password_reset(
    state: &AppState,
    meta: &RequestMeta,
    email_input: &str,
) -> Result<(), AuthError> {
    let email = normalize_email(email_input, "email")?;
    // The same answer in the same time for every address: the per-account work (look-up, token,
    // email) happens after the answer, so neither the body nor the timing tells accounts apart.
    let (state, meta) = (state.clone(), meta.clone());
    tokio::spawn(async move {
        if let Err(err) = send_password_reset(&state, &meta, &email).await {
            tracing::error!(error = %err, "sending a password reset link failed");
        }
    });
    Ok(())
}

async fn send_password_reset(
    state: &AppState,
    meta: &RequestMeta,
    email: &str,
) -> Result<(), AuthError> {
    let Some(account) = user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .one(&state.db)
        .await?
    else {
        return Ok(());
    };
    if refused(state, Limit::ResetPerAccount, &account.id).await? {
        // Same answer; the mailbox is simply not flooded.
        return Ok(());
    }
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    // Read again under a lock: an email change confirmed since the read above voids every link and
    // moves the account to another address, and a link issued after that must not go to the old one.
    // (SQLite's write transaction already excludes the change; on PostgreSQL the row lock orders this
    // against its update, which comes before its voiding of the links.)
    let query = user::Entity::find_by_id(account.id.clone());
    let query = if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        query.lock_exclusive()
    } else {
        query
    };
    let Some(account) = query.one(&txn).await?.filter(|a| a.email == email) else {
        return Ok(());
    };
    enqueue_reset_link(&txn, state, &account, now).await?;
    commit_with_event(
        txn,
        state,
        meta,
        now,
        Event::new("password_reset_requested").user(&account.id),
    )
    .await
}

/// Issues a reset link (voiding earlier ones) and puts its email in the outbox, within `txn`.
pub(super) async fn enqueue_reset_link(
    txn: &DatabaseTransaction,
    state: &AppState,
    account: &user::Model,
    now: i64,
) -> Result<(), AuthError> {
    let token = issue_token(
        txn,
        state,
        &account.id,
        PURPOSE_RESET,
        None,
        now,
        RESET_TTL_SECS,
    )
    .await?;
    let template = Template::PasswordReset {
        name: account.display_name.clone(),
        link: link(state, routes::RESET_PASSWORD, &token),
    };
    outbox::enqueue_for(txn, state, now, account, &template).await?;
    Ok(())
}

pub async fn reset_password(
    state: &AppState,
    meta: &RequestMeta,
    token: &str,
    new_password: &str,
) -> Result<(), AuthError> {
    let now = now(state);
    // Look the token up first (read-only) to check the policy against the right account's details.
    let Some(pending) = live_token(&state.db, state, PURPOSE_RESET, token, now).await? else {
        return Err(AuthError::LinkInvalid);
    };
    let Some(account) = user::Entity::find_by_id(pending.user_id.clone())
        .one(&state.db)
        .await?
    else {
        return Err(AuthError::LinkInvalid);
    };
    check_password(
        state,
        new_password,
        &account.email,
        &account.display_name,
        "password",
    )
    .await?;
    let new_hash = state.hasher.hash(new_password).await?;

    let txn = crate::server::db::begin_write(&state.db).await?;
    consume_token(&txn, state, PURPOSE_RESET, token, now).await?;
    replace_password(&txn, &account.id, new_hash, now).await?;
    // The link reached the account's address (an email change voids every link), which confirms it.
    user::Entity::update_many()
        .col_expr(user::Column::EmailVerifiedAt, now.into())
        .filter(user::Column::Id.eq(&account.id))
        .filter(user::Column::Email.eq(&account.email))
        .filter(user::Column::EmailVerifiedAt.is_null())
        .exec(&txn)
        .await?;
    void_all_tokens(&txn, &account.id, now).await?;
    // A reset lifts a lock-out that wrong passwords set. With two-factor on, the run may be of wrong
    // codes too, which a reset must not end (as a password change does not): whoever reads the
    // mailbox could otherwise reset after every few wrong codes and guess on without waiting.
    // (Whether it is on now: `two_factor_enabled_at` stays after it is turned off, and accounts that
    // turned it on before that column was added have none.)
    if !crate::server::services::mfa::is_enabled(&txn, &account.id).await? {
        state
            .lockouts
            .forget(&txn, &throttle_key(state, &account.email))
            .await?;
    }
    state.sessions.revoke_user(&txn, &account.id, None).await?;
    let template = Template::PasswordChanged {
        name: account.display_name.clone(),
    };
    outbox::enqueue_for(&txn, state, now, &account, &template).await?;
    commit_with_event(
        txn,
        state,
        meta,
        now,
        Event::new("password_reset_completed").user(&account.id),
    )
    .await
}

/// Stores a new password hash and moves `password_changed_at` on; returns its new value. The value
/// always changes, even for two changes in one second (or on a clock that stands still): sessions
/// hold the value their password was checked against ([`PASSWORD_SEEN_KEY`]), and any change must
/// end them.
///
/// [`PASSWORD_SEEN_KEY`]: crate::server::session_store::PASSWORD_SEEN_KEY
pub(super) async fn replace_password(
    txn: &DatabaseTransaction,
    user_id: &str,
    hash: String,
    now: i64,
) -> Result<i64, DbErr> {
    use sea_orm::sea_query::{Expr, ExprTrait as _};
    let previous = Expr::col(user::Column::PasswordChangedAt);
    // In the statement itself, so that concurrent changes each move it on.
    let changed_at = Expr::Case(Box::new(
        Expr::case(previous.clone().lt(now), now).finally(previous.add(1)),
    ));
    let updated = user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, hash.into())
        .col_expr(user::Column::PasswordChangedAt, changed_at)
        .col_expr(user::Column::UpdatedAt, now.into())
        .filter(user::Column::Id.eq(user_id))
        .exec(txn)
        .await?;
    if updated.rows_affected == 0 {
        return Err(DbErr::RecordNotUpdated);
    }
    user::Entity::find_by_id(user_id)
        .one(txn)
        .await?
        .map(|account| account.password_changed_at)
        .ok_or(DbErr::RecordNotUpdated)
}

/// Links that the account's owner uses against whoever took it over: nothing that a holder of the
/// account can do voids them (only using one of them does, see `sign_in_alerts::take_back`).
const KEPT_LINKS: [&str; 2] = [
    crate::server::services::sign_in_alerts::PURPOSE_NOT_ME,
    crate::server::services::sign_in_alerts::PURPOSE_RESTORE_EMAIL,
];

/// Until when `email` can still be put back on the account it was moved off (the latest expiry of an
/// unused link that would do it, see `sign_in_alerts::take_back`), if it can.
async fn on_hold_until(
    txn: &DatabaseTransaction,
    email: &str,
    now: i64,
) -> Result<Option<i64>, DbErr> {
    let links = account_token::Entity::find()
        .filter(account_token::Column::Purpose.is_in(KEPT_LINKS))
        .filter(account_token::Column::NewEmail.eq(email))
        .filter(account_token::Column::UsedAt.is_null())
        .filter(account_token::Column::ExpiresAt.gt(now))
        .all(txn)
        .await?;
    Ok(links.iter().map(|link| link.expires_at).max())
}

/// Voids every outstanding link of the user: after a password or address change, links sent to the old
/// credentials' owner (or requested by someone who held them) must stop working.
pub(super) async fn void_all_tokens<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
    now: i64,
) -> Result<(), DbErr> {
    // Except `KEPT_LINKS`: someone who took the account over must not be able to disarm them by
    // changing the password or the address.
    account_token::Entity::update_many()
        .col_expr(account_token::Column::UsedAt, now.into())
        .filter(account_token::Column::UserId.eq(user_id))
        .filter(account_token::Column::UsedAt.is_null())
        .filter(account_token::Column::Purpose.is_not_in(KEPT_LINKS))
        .exec(db)
        .await?;
    Ok(())
}

/// A password changed by [`change_password`].
#[derive(Debug, Clone, Copy)]
pub struct PasswordChanged {
    /// The account's new `password_changed_at`.
    pub changed_at: i64,
    /// Whether the account has two-factor on (it was checked for the change).
    pub two_factor: bool,
}

pub async fn change_password(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
    current: &str,
    new_password: &str,
    keep_session: Option<&str>,
) -> Result<PasswordChanged, AuthError> {
    // With two-factor on, a right password does not end the run of failures, wrong codes included:
    // only a right code does. Otherwise a session and the password could guess codes without end,
    // changing the password every few tries.
    let two_factor = crate::server::services::mfa::is_enabled(&state.db, &account.id).await?;
    if two_factor {
        check_own_password_before_code(state, meta, account, current, "current_password").await?;
    } else {
        check_own_password(state, meta, account, current, "current_password").await?;
    }
    check_password(
        state,
        new_password,
        &account.email,
        &account.display_name,
        "new_password",
    )
    .await?;
    let new_hash = state.hasher.hash(new_password).await?;
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    let changed_at = replace_password(&txn, &account.id, new_hash, now).await?;
    void_all_tokens(&txn, &account.id, now).await?;
    state
        .sessions
        .revoke_user(&txn, &account.id, keep_session)
        .await?;
    let template = Template::PasswordChanged {
        name: account.display_name.clone(),
    };
    outbox::enqueue_for(&txn, state, now, account, &template).await?;
    commit_with_event(
        txn,
        state,
        meta,
        now,
        Event::new("password_changed").user(&account.id),
    )
    .await?;
    Ok(PasswordChanged {
        changed_at,
        two_factor,
    })
}

/// `j•••@example.org`: enough for the owner to recognise, not enough to harvest.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}•••@{domain}")
        }
        None => "•••".to_owned(),
    }
}

/// Starts moving the account to another address: the password, and with two-factor on a code too
/// (as to delete the account). Whoever controls the address controls resets and every notice, so a
/// session and a password alone, say on a computer left signed in, must not be enough to take it.
pub async fn request_email_change(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
    password: &str,
    code: &str,
    new_email_input: &str,
) -> Result<(), AuthError> {
    let new_email = normalize_email(new_email_input, "new_email")?;
    // Before the credentials: spending a backup code on a request refused anyway would be a loss.
    if new_email == account.email {
        return Err(invalid("new_email", "That is already your email address."));
    }
    let too_soon = || AuthError::TooSoon {
        retry_after_secs: 3600,
    };
    if crate::server::services::mfa::is_enabled(&state.db, &account.id).await? {
        // The hour's allowance first, for the same reason (a wrong password or code then uses up
        // a try of it, which the per-IP allowance for codes bounds anyway; an empty code does not).
        crate::server::services::mfa::require_code(code)?;
        if refused(state, Limit::EmailChangePerAccount, &account.id).await? {
            return Err(too_soon());
        }
        crate::server::services::mfa::reauthenticate(state, meta, account, password, code).await?;
    } else {
        // A mistyped password does not use up a try of the hour's allowance.
        check_own_password(state, meta, account, password, "password").await?;
        if refused(state, Limit::EmailChangePerAccount, &account.id).await? {
            return Err(too_soon());
        }
    }
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    // Every request ends the links sent before it, whether or not a new one goes out: otherwise
    // whether an earlier link still worked would tell a taken address from a free one.
    void_unused_tokens(&txn, &account.id, PURPOSE_CHANGE_EMAIL, now).await?;
    let taken = user::Entity::find()
        .filter(user::Column::Email.eq(&new_email))
        .count(&txn)
        .await?
        > 0;
    // A taken address gets no link, but the answer is the same: the form must not reveal accounts.
    // Nor does an address that has had its share of such links this hour.
    if !taken
        && !refused(
            state,
            Limit::MailToAddress,
            &throttle_key(state, &new_email),
        )
        .await?
    {
        let token = issue_token(
            &txn,
            state,
            &account.id,
            PURPOSE_CHANGE_EMAIL,
            Some(new_email.clone()),
            now,
            CHANGE_EMAIL_TTL_SECS,
        )
        .await?;
        let template = Template::EmailChangeVerify {
            name: account.display_name.clone(),
            link: link(state, routes::CONFIRM_EMAIL_CHANGE, &token),
        };
        // Theirs, though the address is not theirs yet (and may never be).
        outbox::enqueue(&txn, state, now, &new_email, Some(&account.id), &template).await?;
    }
    let notice = Template::EmailChangeNotice {
        name: account.display_name.clone(),
        new_email_hint: mask_email(&new_email),
    };
    outbox::enqueue_for(&txn, state, now, account, &notice).await?;
    commit_with_event(
        txn,
        state,
        meta,
        now,
        Event::new("email_change_requested").user(&account.id),
    )
    .await
}

pub async fn confirm_email_change(
    state: &AppState,
    meta: &RequestMeta,
    token: &str,
) -> Result<(), AuthError> {
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    let row = consume_token(&txn, state, PURPOSE_CHANGE_EMAIL, token, now).await?;
    let (Some(new_email), Some(account)) = (
        row.new_email.clone(),
        user::Entity::find_by_id(row.user_id.clone())
            .one(&txn)
            .await?,
    ) else {
        return Err(AuthError::LinkInvalid);
    };
    let taken = || AuthError::Invalid {
        field: None,
        message: "That address now belongs to another account, so it cannot be yours too."
            .to_owned(),
    };
    if user::Entity::find()
        .filter(user::Column::Email.eq(&new_email))
        .count(&txn)
        .await?
        > 0
    {
        return Err(taken());
    }
    let old_email = account.email.clone();
    let account_name = account.display_name.clone();
    // Only a confirmed address gets the account back: an unconfirmed one may be a typo, someone
    // else's mailbox.
    let old_confirmed = account.email_verified_at.is_some();
    let mut update = account.into_active_model();
    update.email = Set(new_email.clone());
    update.email_verified_at = Set(Some(now));
    update.updated_at = Set(now);
    // The check above does not hold off a sign-up or another confirmation committing the address
    // meanwhile (PostgreSQL reads committed data); the unique index does.
    if let Err(err) = update.update(&txn).await {
        if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
            return Err(taken());
        }
        return Err(err.into());
    }
    // Links that went to the old address (reset, verification) must not outlive it.
    void_all_tokens(&txn, &row.user_id, now).await?;
    // Whoever had the old address gets the means to undo this, should it not be their doing: the
    // one message that reaches them once the account's mail goes to the new address.
    if old_confirmed {
        let restore = issue_token(
            &txn,
            state,
            &row.user_id,
            crate::server::services::sign_in_alerts::PURPOSE_RESTORE_EMAIL,
            Some(old_email.clone()),
            now,
            crate::server::services::sign_in_alerts::RESTORE_EMAIL_TTL_SECS,
        )
        .await?;
        let template = Template::EmailChanged {
            name: account_name,
            new_email_hint: mask_email(&new_email),
            restore_link: link(state, routes::RESTORE_EMAIL, &restore),
        };
        outbox::enqueue(&txn, state, now, &old_email, Some(&row.user_id), &template).await?;
    }
    // Sign-in throttling follows the address; the old one's counter has no owner any more.
    state
        .lockouts
        .forget(&txn, &throttle_key(state, &old_email))
        .await?;
    commit_with_event(
        txn,
        state,
        meta,
        now,
        // The addresses held: the export lists the link that confirmed one (see
        // `export::CHANGE_LINK_KIND`), and deletion takes them out of others' activity
        // (`audit::addresses_held`).
        Event::new("email_changed")
            .user(&row.user_id)
            .detail("previous_address", old_email)
            .detail("address", new_email),
    )
    .await
}

pub async fn password_strength(
    state: &AppState,
    password: &str,
    email: &str,
) -> PasswordStrengthView {
    // Bounded work whatever is posted (the policy refuses anything longer anyway), off the async workers.
    let password: String = password
        .chars()
        .take(password_policy::DEFAULT_MAX_LENGTH + 1)
        .collect();
    let email = email.trim().to_lowercase();
    let policy = policy(state);
    crate::server::memory::spawn_blocking_and_give_back(move || PasswordStrengthView {
        score: password_policy::strength(&password, &[email.as_str()]),
        problem: policy
            .check(&password, &email, None)
            .err()
            .map(|r| r.to_string()),
    })
    .await
    .unwrap_or(PasswordStrengthView {
        score: 0,
        problem: None,
    })
}

/// Renames the account (shown escaped everywhere; never in email subjects).
pub async fn change_display_name(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
    input: &str,
) -> Result<(), AuthError> {
    let name = parse_display_name(input)?;
    if name == account.display_name {
        return Ok(());
    }
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    user::Entity::update_many()
        .col_expr(user::Column::DisplayName, name.into())
        .col_expr(user::Column::UpdatedAt, now.into())
        .filter(user::Column::Id.eq(&account.id))
        .exec(&txn)
        .await?;
    commit_with_event(
        txn,
        state,
        meta,
        now,
        Event::new("display_name_changed").user(&account.id),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            normalize_email("  Jane.Doe@Example.ORG ", "email")
                .ok()
                .as_deref(),
            Some("jane.doe@example.org")
        );
        for bad in [
            "",
            "jane",
            "jane@",
            "@example.org",
            "jane@example",
            "ja ne@example.org",
            "a@b@c.org",
            "x@.org",
        ] {
            assert!(normalize_email(bad, "email").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_names_are_bounded() {
        assert_eq!(parse_display_name("  Ana  ").ok().as_deref(), Some("Ana"));
        assert!(parse_display_name("").is_err());
        assert!(parse_display_name(&"x".repeat(81)).is_err());
        assert!(parse_display_name("a\u{0}b").is_err());
        assert!(
            parse_display_name("<script>alert(1)</script>").is_ok(),
            "escaped on output, not refused"
        );
    }

    #[test]
    fn masked_emails_keep_only_the_first_letter() {
        assert_eq!(mask_email("jane@example.org"), "j•••@example.org");
    }
}
