//! Two-factor authentication with an authenticator app: setup, backup codes, the sign-in step, moving
//! to a new phone and turning it off.
//!
//! The TOTP secret is sealed under `ENCRYPTION_KEY` and bound to its row; backup codes are stored as keyed
//! hashes. Replay protection lives in the database (`last_used_step`, advanced only forwards by one
//! conditional update), so it survives restarts and holds across instances. Wrong codes count toward the
//! same lock-out as wrong passwords.

use sea_orm::sea_query::{Expr, ExprTrait as _, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait, DbErr, EntityTrait as _,
    PaginatorTrait as _, QueryFilter as _, UpdateMany,
};

use crate::routes;
use crate::server::api_support::RequestMeta;
use crate::server::entities::{backup_code, totp_credential, user};
use crate::server::mail::Template;
use crate::server::services::audit::{self, Event};
use crate::server::services::auth::{
    self, AuthError, Failure, clear_attempts, commit_with_event, count_attempt, invalid, now, page,
    past_threshold, record_failure,
};
use crate::server::services::crypto::hash_token;
use crate::server::services::device_cookies::ThrottleKeys;
use crate::server::services::outbox;
use crate::server::services::totp::{self, TotpSecret};
use crate::server::state::AppState;
use crate::types::TotpSetupView;

/// How long the second step of a sign-in may take.
pub const PENDING_TTL_SECS: i64 = 5 * 60;
/// Wrong codes after which a pending sign-in is cancelled (the password must be entered again).
pub const MAX_PENDING_FAILURES: u32 = 5;
/// At or below this many unused backup codes, the settings warn.
pub const LOW_BACKUP_CODES: u32 = 3;
/// How long a move to a new phone waits for the new app's first code.
pub const REPLACEMENT_TTL_SECS: i64 = 24 * 3600;

/// What a sealed TOTP secret is bound to: its column and its owner.
pub fn secret_context(user_id: &str) -> String {
    format!("totp_credentials.secret:{user_id}")
}

/// What a sealed replacement secret (a new phone's, waiting for its first code) is bound to.
pub fn replacement_context(user_id: &str) -> String {
    format!("totp_credentials.replacement_secret:{user_id}")
}

fn backup_code_hash(state: &AppState, normalized: &str) -> String {
    hash_token(&state.settings.secret_key, "backup-code", normalized)
}

fn settings_link(state: &AppState) -> String {
    page(state, routes::SETTINGS_TWO_FACTOR)
}

/// The enabled (confirmed) credential, if any.
pub async fn confirmed_credential<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
) -> Result<Option<totp_credential::Model>, DbErr> {
    totp_credential::Entity::find_by_id(user_id.to_owned())
        .filter(totp_credential::Column::ConfirmedAt.is_not_null())
        .one(db)
        .await
}

pub async fn is_enabled<C: ConnectionTrait>(db: &C, user_id: &str) -> Result<bool, DbErr> {
    Ok(confirmed_credential(db, user_id).await?.is_some())
}

/// The state the settings show.
#[derive(Debug)]
pub struct Status {
    pub enabled_at: Option<i64>,
    pub backup_codes_remaining: u32,
    /// A setup waiting for its first code.
    pub pending_setup: Option<totp_credential::Model>,
    /// Two-factor is on and a new phone's secret waits for its first code.
    pub pending_replacement: Option<totp_credential::Model>,
}

pub async fn status(state: &AppState, user_id: &str) -> Result<Status, AuthError> {
    let credential = totp_credential::Entity::find_by_id(user_id.to_owned())
        .one(&state.db)
        .await?;
    let enabled_at = credential.as_ref().and_then(|c| c.confirmed_at);
    let backup_codes_remaining = if enabled_at.is_some() {
        unused_backup_codes(&state.db, user_id).await?
    } else {
        0
    };
    let now = now(state);
    let (pending_setup, pending_replacement) = match credential {
        Some(c) if c.confirmed_at.is_none() => (Some(c), None),
        Some(c) if replacement_waits(&c, now) => (None, Some(c)),
        _ => (None, None),
    };
    Ok(Status {
        enabled_at,
        backup_codes_remaining,
        pending_setup,
        pending_replacement,
    })
}

/// Whether a move to a new phone waits for its first code (and has not expired).
fn replacement_waits(credential: &totp_credential::Model, now: i64) -> bool {
    credential.replacement_secret.is_some()
        && credential
            .replacement_created_at
            .is_some_and(|at| now < at + REPLACEMENT_TTL_SECS)
}

async fn unused_backup_codes<C: ConnectionTrait>(db: &C, user_id: &str) -> Result<u32, DbErr> {
    let count = backup_code::Entity::find()
        .filter(backup_code::Column::UserId.eq(user_id))
        .filter(backup_code::Column::UsedAt.is_null())
        .count(db)
        .await?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

fn open_secret(
    state: &AppState,
    credential: &totp_credential::Model,
) -> Result<TotpSecret, AuthError> {
    open_sealed(
        state,
        &credential.secret,
        &secret_context(&credential.user_id),
    )
}

fn open_sealed(state: &AppState, sealed: &str, context: &str) -> Result<TotpSecret, AuthError> {
    let text = state.secret_box.open(sealed, context)?;
    TotpSecret::from_base32(&text).ok_or(AuthError::Seal(
        crate::server::services::secret_box::SealError::Format,
    ))
}

/// The QR code, URI and typed form of a setup's secret.
pub fn setup_details(
    state: &AppState,
    account: &user::Model,
    credential: &totp_credential::Model,
) -> Result<TotpSetupView, AuthError> {
    details_of(&open_secret(state, credential)?, account)
}

/// The same for the new phone's secret of a move, if one waits.
pub fn replacement_details(
    state: &AppState,
    account: &user::Model,
    credential: &totp_credential::Model,
) -> Result<Option<TotpSetupView>, AuthError> {
    let Some(sealed) = &credential.replacement_secret else {
        return Ok(None);
    };
    let secret = open_sealed(state, sealed, &replacement_context(&credential.user_id))?;
    details_of(&secret, account).map(Some)
}

fn details_of(secret: &TotpSecret, account: &user::Model) -> Result<TotpSetupView, AuthError> {
    let uri = secret.otpauth_uri(&account.email).ok_or(AuthError::Seal(
        crate::server::services::secret_box::SealError::Format,
    ))?;
    let qr_svg = totp::qr_svg(&uri).unwrap_or_default();
    Ok(TotpSetupView {
        otpauth_uri: uri,
        qr_svg,
        manual_key: secret.grouped(),
    })
}

/// Creates a new secret for setup (replacing an unfinished setup). Nothing is enforced until
/// [`confirm_setup`] sees a code from the app. Returns the setup's [`setup_fingerprint`], for the
/// session that started it.
pub async fn start_setup(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
) -> Result<String, AuthError> {
    if account.email_verified_at.is_none() {
        return Err(AuthError::MfaNeedsConfirmedAddress);
    }
    let now = now(state);
    let secret = TotpSecret::generate();
    let sealed = state
        .secret_box
        .seal(&secret.to_base32(), &secret_context(&account.id));
    let row = totp_credential::ActiveModel {
        user_id: Set(account.id.clone()),
        secret: Set(sealed.clone()),
        confirmed_at: Set(None),
        last_used_step: Set(None),
        created_at: Set(now),
        replacement_secret: Set(None),
        replacement_created_at: Set(None),
    };
    // An enabled credential is never overwritten: the update applies only to an unfinished setup.
    let inserted = totp_credential::Entity::insert(row)
        .on_conflict(
            OnConflict::column(totp_credential::Column::UserId)
                .update_columns([
                    totp_credential::Column::Secret,
                    totp_credential::Column::CreatedAt,
                    totp_credential::Column::LastUsedStep,
                ])
                .action_and_where(
                    Expr::col((
                        totp_credential::Entity,
                        totp_credential::Column::ConfirmedAt,
                    ))
                    .is_null(),
                )
                .to_owned(),
        )
        .exec_without_returning(&state.db)
        .await?;
    if inserted == 0 {
        return Err(AuthError::MfaAlreadyEnabled);
    }
    audit::log(
        &state.db,
        meta,
        now,
        Event::new("mfa_setup_started").user(&account.id),
    )
    .await?;
    Ok(setup_fingerprint(state, &secret))
}

/// Which setup a session started: a keyed hash of its secret (of the secret itself, not of how it is
/// sealed, which `rotate-keys` changes). Until two-factor is on, sudo mode takes the password alone;
/// someone else signed in with it could otherwise read the secret of the owner's setup from the
/// settings page and, once the owner confirms it, sign in with both factors. So the secret is shown
/// to, and confirmed from, the session that started the setup only.
fn setup_fingerprint(state: &AppState, secret: &TotpSecret) -> String {
    hash_token(&state.settings.secret_key, "mfa-setup", &secret.to_base32())
}

/// Whether `started_here` (a session's [`setup_fingerprint`]) names the setup in progress.
pub fn setup_started_here(
    state: &AppState,
    credential: &totp_credential::Model,
    started_here: Option<&str>,
) -> bool {
    started_here.is_some_and(|fingerprint| {
        open_secret(state, credential)
            .is_ok_and(|secret| setup_fingerprint(state, &secret) == fingerprint)
    })
}

/// Replaces every backup code of the account with ten new ones; returns them (the only time they
/// exist in the clear).
async fn replace_backup_codes<C: ConnectionTrait>(
    db: &C,
    state: &AppState,
    user_id: &str,
    now: i64,
) -> Result<Vec<String>, DbErr> {
    backup_code::Entity::delete_many()
        .filter(backup_code::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    let codes = totp::generate_backup_codes();
    let rows = codes.iter().filter_map(|code| {
        let normalized = totp::normalize_backup_code(code)?;
        Some(backup_code::ActiveModel {
            user_id: Set(user_id.to_owned()),
            code_hash: Set(backup_code_hash(state, &normalized)),
            used_at: Set(None),
            created_at: Set(now),
            ..Default::default()
        })
    });
    backup_code::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    Ok(codes)
}

/// Two-factor authentication turned on by [`confirm_setup`].
pub struct Enabled {
    /// The account's new `two_factor_enabled_at`.
    pub at: i64,
    /// The first set of backup codes, to show once.
    pub backup_codes: Vec<String>,
}

/// Turns two-factor authentication on with a code from the setup that this session started
/// (`started_here`, its [`setup_fingerprint`]), and ends the account's other sessions but `keep`:
/// they took the password alone, which from now on is not enough. Sessions still being signed in
/// with the password alone end too, on their next request (`two_factor_enabled_at`).
pub async fn confirm_setup(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
    code_input: &str,
    started_here: Option<&str>,
    keep: Option<&str>,
) -> Result<Enabled, AuthError> {
    let Some(code) = totp::parse_totp_code(code_input) else {
        return Err(invalid(
            "code",
            "Enter the 6-digit code your authenticator app shows.",
        ));
    };
    let now = now(state);
    let credential = totp_credential::Entity::find_by_id(account.id.clone())
        .one(&state.db)
        .await?;
    let credential = match credential {
        Some(c) if c.confirmed_at.is_none() => c,
        Some(_) => return Err(AuthError::MfaAlreadyEnabled),
        None => return Err(AuthError::MfaSetupMissing),
    };
    let secret = open_secret(state, &credential)?;
    if started_here != Some(setup_fingerprint(state, &secret).as_str()) {
        return Err(AuthError::MfaSetupMissing);
    }
    let Some(step) = secret.matching_step(&code, now) else {
        return Err(invalid(
            "code",
            "That code didn't match. Make sure your phone sets its clock automatically, then enter \
             the newest code.",
        ));
    };
    let txn = crate::server::db::begin_write(&state.db).await?;
    let updated = totp_credential::Entity::update_many()
        .col_expr(totp_credential::Column::ConfirmedAt, now.into())
        .col_expr(totp_credential::Column::LastUsedStep, step.into())
        .filter(totp_credential::Column::UserId.eq(&account.id))
        .filter(totp_credential::Column::ConfirmedAt.is_null())
        // The secret the code was checked against, not one a concurrent restart put in its place.
        .filter(totp_credential::Column::Secret.eq(&credential.secret))
        .exec(&txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(AuthError::MfaSetupMissing);
    }
    let codes = replace_backup_codes(&txn, state, &account.id, now).await?;
    // A new value even when turned off and on again within the second: sessions compare it.
    let enabled_at = std::cmp::max(now, account.two_factor_enabled_at.map_or(0, |at| at + 1));
    user::Entity::update_many()
        .col_expr(user::Column::TwoFactorEnabledAt, Some(enabled_at).into())
        .filter(user::Column::Id.eq(&account.id))
        .exec(&txn)
        .await?;
    state.sessions.revoke_user(&txn, &account.id, keep).await?;
    let template = Template::MfaEnabled {
        name: account.display_name.clone(),
        settings_link: settings_link(state),
    };
    outbox::enqueue_for(&txn, state, now, account, &template).await?;
    commit_with_event(
        txn,
        state,
        meta,
        now,
        Event::new("mfa_enabled").user(&account.id),
    )
    .await?;
    Ok(Enabled {
        at: enabled_at,
        backup_codes: codes,
    })
}

pub async fn regenerate_backup_codes(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
) -> Result<Vec<String>, AuthError> {
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    // A no-op update of the credential: checks it is enabled and, on PostgreSQL, locks it, so two
    // concurrent regenerations cannot both leave their codes behind.
    let locked = totp_credential::Entity::update_many()
        .col_expr(
            totp_credential::Column::ConfirmedAt,
            Expr::col(totp_credential::Column::ConfirmedAt),
        )
        .filter(totp_credential::Column::UserId.eq(&account.id))
        .filter(totp_credential::Column::ConfirmedAt.is_not_null())
        .exec(&txn)
        .await?;
    if locked.rows_affected != 1 {
        return Err(AuthError::MfaNotEnabled);
    }
    let codes = replace_backup_codes(&txn, state, &account.id, now).await?;
    let template = Template::BackupCodesRegenerated {
        name: account.display_name.clone(),
        settings_link: settings_link(state),
    };
    outbox::enqueue_for(&txn, state, now, account, &template).await?;
    let event = Event::new("mfa_backup_codes_regenerated").user(&account.id);
    commit_with_event(txn, state, meta, now, event).await?;
    Ok(codes)
}

/// Starts moving two-factor authentication to a new phone: a new secret waits beside the one in use
/// (replacing a move not finished) until [`confirm_replacement`] sees a code from the new app. The
/// current authenticator keeps working meanwhile, so the account is never without its second factor.
pub async fn start_replacement(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
) -> Result<(), AuthError> {
    let now = now(state);
    let secret = TotpSecret::generate();
    let sealed = state
        .secret_box
        .seal(&secret.to_base32(), &replacement_context(&account.id));
    let updated = totp_credential::Entity::update_many()
        .col_expr(totp_credential::Column::ReplacementSecret, sealed.into())
        .col_expr(totp_credential::Column::ReplacementCreatedAt, now.into())
        .filter(totp_credential::Column::UserId.eq(&account.id))
        .filter(totp_credential::Column::ConfirmedAt.is_not_null())
        .exec(&state.db)
        .await?;
    if updated.rows_affected != 1 {
        return Err(AuthError::MfaNotEnabled);
    }
    let event = Event::new("mfa_replacement_started").user(&account.id);
    audit::log(&state.db, meta, now, event).await?;
    Ok(())
}

/// Finishes a move to a new phone with a first code from the new app: its secret replaces the one in
/// use, whose codes stop working. The backup codes stay as they are.
pub async fn confirm_replacement(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
    code: &str,
) -> Result<(), AuthError> {
    let Some(code) = totp::parse_totp_code(code) else {
        return Err(invalid(
            "code",
            "Enter the 6-digit code your new authenticator app shows.",
        ));
    };
    let now = now(state);
    let credential = confirmed_credential(&state.db, &account.id)
        .await?
        .ok_or(AuthError::MfaNotEnabled)?;
    let Some(sealed) = credential
        .replacement_secret
        .clone()
        .filter(|_| replacement_waits(&credential, now))
    else {
        return Err(AuthError::MfaSetupMissing);
    };
    let secret = open_sealed(state, &sealed, &replacement_context(&account.id))?;
    let Some(step) = secret.matching_step(&code, now) else {
        return Err(invalid(
            "code",
            "That code didn't match. Make sure the new phone sets its clock automatically, then \
             enter the newest code its app shows.",
        ));
    };
    let resealed = state
        .secret_box
        .seal(&secret.to_base32(), &secret_context(&account.id));
    // Steps count time for every secret alike: the new code's step is used up, and the step only
    // ever moves forward (a sign-in may have used a later one of the old app meanwhile).
    let last_step = Expr::case(
        Expr::col(totp_credential::Column::LastUsedStep)
            .is_null()
            .or(Expr::col(totp_credential::Column::LastUsedStep).lt(step)),
        step,
    )
    .finally(Expr::col(totp_credential::Column::LastUsedStep));
    let txn = crate::server::db::begin_write(&state.db).await?;
    let updated = without_replacement(totp_credential::Entity::update_many())
        .col_expr(totp_credential::Column::Secret, resealed.into())
        .col_expr(totp_credential::Column::LastUsedStep, last_step.into())
        .filter(totp_credential::Column::UserId.eq(&account.id))
        .filter(totp_credential::Column::ConfirmedAt.is_not_null())
        // The secret the code was checked against, not one a concurrent restart put in its place.
        .filter(totp_credential::Column::ReplacementSecret.eq(&sealed))
        .exec(&txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(AuthError::MfaSetupMissing);
    }
    let template = Template::MfaReplaced {
        name: account.display_name.clone(),
        settings_link: settings_link(state),
    };
    outbox::enqueue_for(&txn, state, now, account, &template).await?;
    commit_with_event(
        txn,
        state,
        meta,
        now,
        Event::new("mfa_replaced").user(&account.id),
    )
    .await
}

/// `update`, also clearing a waiting move's secret.
pub(crate) fn without_replacement(
    update: UpdateMany<totp_credential::Entity>,
) -> UpdateMany<totp_credential::Entity> {
    update
        .col_expr(
            totp_credential::Column::ReplacementSecret,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            totp_credential::Column::ReplacementCreatedAt,
            Expr::value(Option::<i64>::None),
        )
}

/// Gives up a move to a new phone: the authenticator in use stays.
pub async fn cancel_replacement(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
) -> Result<(), AuthError> {
    let cleared = without_replacement(totp_credential::Entity::update_many())
        .filter(totp_credential::Column::UserId.eq(&account.id))
        .filter(totp_credential::Column::ReplacementSecret.is_not_null())
        .exec(&state.db)
        .await?;
    if cleared.rows_affected == 1 {
        let event = Event::new("mfa_replacement_cancelled").user(&account.id);
        audit::log(&state.db, meta, now(state), event).await?;
    }
    Ok(())
}

/// Which second factor was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    Totp,
    BackupCode { remaining: u32 },
}

impl Factor {
    fn method(self) -> &'static str {
        match self {
            Factor::Totp => "totp",
            Factor::BackupCode { .. } => "backup_code",
        }
    }
}

/// Checks and consumes a code: a TOTP code whose step is newer than the last one accepted, or an
/// unused backup code. Each consumption is one conditional update, so two requests racing with the
/// same code cannot both win.
async fn consume_factor(
    state: &AppState,
    credential: &totp_credential::Model,
    input: &str,
    now: i64,
) -> Result<Option<Factor>, AuthError> {
    if let Some(code) = totp::parse_totp_code(input) {
        let mut checked = credential.clone();
        // Twice at most: once more if the stored secret was only sealed anew meanwhile.
        for _ in 0..2 {
            let secret = open_secret(state, &checked)?;
            let Some(step) = secret.matching_step(&code, now) else {
                return Ok(None);
            };
            let advanced = totp_credential::Entity::update_many()
                .col_expr(totp_credential::Column::LastUsedStep, step.into())
                .filter(totp_credential::Column::UserId.eq(&checked.user_id))
                .filter(totp_credential::Column::ConfirmedAt.is_not_null())
                // Still the secret the code was checked against: a move to a new phone committed
                // since has made the old app's codes worthless.
                .filter(totp_credential::Column::Secret.eq(&checked.secret))
                .filter(
                    sea_orm::Condition::any()
                        .add(totp_credential::Column::LastUsedStep.is_null())
                        .add(totp_credential::Column::LastUsedStep.lt(step)),
                )
                .exec(&state.db)
                .await?;
            if advanced.rows_affected == 1 {
                return Ok(Some(Factor::Totp));
            }
            // Refused: the step was used already, or what is stored changed since it was read. A
            // move to a new phone changed the secret (the code is checked against the new one,
            // and fails); `rotate-keys` only sealed the same secret under a new key.
            match confirmed_credential(&state.db, &checked.user_id).await? {
                Some(now_stored) if now_stored.secret != checked.secret => checked = now_stored,
                _ => return Ok(None),
            }
        }
        return Ok(None);
    }
    if let Some(code) = totp::normalize_backup_code(input) {
        let used = backup_code::Entity::update_many()
            .col_expr(backup_code::Column::UsedAt, now.into())
            .filter(backup_code::Column::UserId.eq(&credential.user_id))
            .filter(backup_code::Column::CodeHash.eq(backup_code_hash(state, &code)))
            .filter(backup_code::Column::UsedAt.is_null())
            .exec(&state.db)
            .await?;
        if used.rows_affected == 1 {
            let remaining = unused_backup_codes(&state.db, &credential.user_id).await?;
            return Ok(Some(Factor::BackupCode { remaining }));
        }
    }
    Ok(None)
}

/// Makes the backup code `input` unused again, if it was marked used at `now` (by this request).
async fn give_back_backup_code(
    state: &AppState,
    user_id: &str,
    input: &str,
    now: i64,
) -> Result<(), AuthError> {
    let Some(code) = totp::normalize_backup_code(input) else {
        return Ok(());
    };
    backup_code::Entity::update_many()
        .col_expr(backup_code::Column::UsedAt, Option::<i64>::None.into())
        .filter(backup_code::Column::UserId.eq(user_id))
        .filter(backup_code::Column::CodeHash.eq(backup_code_hash(state, &code)))
        .filter(backup_code::Column::UsedAt.eq(now))
        .exec(&state.db)
        .await?;
    Ok(())
}

/// A second factor for `account`, counted against the lock-out key `key` like a password guess (the
/// address's, or a trusted device's: see `auth::account_keys`).
async fn verify_second_factor(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
    input: &str,
    failed_event: &'static str,
    keys: ThrottleKeys,
) -> Result<Factor, AuthError> {
    let credential = confirmed_credential(&state.db, &account.id)
        .await?
        .ok_or(AuthError::MfaNotEnabled)?;
    let ThrottleKeys { primary: key, also } = keys;
    let now = now(state);
    let (failures, locked_until) = count_attempt(state, &key, now).await?;
    if locked_until.is_some_and(|until| until > now) {
        return Err(AuthError::CodesLockedOut);
    }
    let failure = Failure::SecondFactor(failed_event);
    if past_threshold(state, meta, &key, failures, Some(account), now).await? {
        return Err(AuthError::CodesLockedOut);
    }
    match consume_factor(state, &credential, input, now).await? {
        Some(factor) => {
            if !clear_attempts(state, &key, now).await? {
                // Locked while the code was checked: refused, so it must not have cost a backup
                // code (gone unannounced: no email nor event is written for a refusal).
                if let Factor::BackupCode { .. } = factor {
                    give_back_backup_code(state, &account.id, input, now).await?;
                }
                return Err(AuthError::CodesLockedOut);
            }
            Ok(factor)
        }
        None => {
            let keys = (key.as_str(), also.as_deref());
            if record_failure(state, meta, keys, failures, Some(account), now, failure).await? {
                return Err(AuthError::CodesLockedOut);
            }
            let threshold = state.settings.accounts.lockout_threshold as i32;
            Err(AuthError::WrongCode {
                tries_left: u32::try_from(threshold - failures).unwrap_or(0),
            })
        }
    }
}

/// The second step of a sign-in whose password was right. `password_seen` is the account's
/// `password_changed_at` as read before that password was checked: when the password has changed
/// since (the pending step was saved after a reset ended every session), the sign-in must start over,
/// and is refused before the code is checked, so it spends no code and records no sign-in.
/// A device cookie (`meta.device`) counts the code under a trusted device's key, as for the password
/// (`auth::sign_in`).
pub async fn complete_sign_in(
    state: &AppState,
    meta: &RequestMeta,
    user_id: &str,
    password_seen: Option<i64>,
    input: &str,
) -> Result<user::Model, AuthError> {
    let account = user::Entity::find_by_id(user_id.to_owned())
        .one(&state.db)
        .await?
        .ok_or(AuthError::MfaPendingMissing)?;
    if password_seen.is_some_and(|seen| seen != account.password_changed_at) {
        return Err(AuthError::MfaPendingMissing);
    }
    let keys = auth::account_keys(state, meta, &account, now(state));
    let factor =
        verify_second_factor(state, meta, &account, input, "mfa_sign_in_failed", keys).await?;
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    let used = match factor {
        Factor::BackupCode { remaining } => {
            Some(backup_code_used(&txn, state, meta, &account, remaining, now).await?)
        }
        Factor::Totp => None,
    };
    let event = Event::new("sign_in")
        .user(&account.id)
        .detail("method", factor.method());
    commit_with_event(txn, state, meta, now, event).await?;
    if let Some(used) = used {
        used.emit();
    }
    Ok(account)
}

/// A field for a second-factor code left empty: asked for before anything is checked or counted.
pub fn require_code(code: &str) -> Result<(), AuthError> {
    if code.trim().is_empty() {
        return Err(invalid(
            "code",
            "Enter a code from your authenticator app, or a backup code.",
        ));
    }
    Ok(())
}

/// Re-authentication (sudo mode) for an account with two-factor authentication: the password and a
/// code, as at sign-in.
pub async fn reauthenticate(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
    password: &str,
    code: &str,
) -> Result<(), AuthError> {
    require_code(code)?;
    auth::check_own_password_before_code(state, meta, account, password, "password").await?;
    let keys = auth::account_keys(state, meta, account, now(state));
    let factor =
        verify_second_factor(state, meta, account, code, "mfa_reauth_failed", keys).await?;
    if let Factor::BackupCode { remaining } = factor {
        let now = now(state);
        let txn = crate::server::db::begin_write(&state.db).await?;
        let used = backup_code_used(&txn, state, meta, account, remaining, now).await?;
        txn.commit().await?;
        used.emit();
        state.mail_wakeup.notify_one();
    }
    Ok(())
}

/// A backup code was spent: the owner is told how many are left, and the trail records it.
async fn backup_code_used(
    txn: &sea_orm::DatabaseTransaction,
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
    remaining: u32,
    now: i64,
) -> Result<audit::Recorded, AuthError> {
    let template = Template::BackupCodeUsed {
        name: account.display_name.clone(),
        remaining,
        settings_link: settings_link(state),
    };
    outbox::enqueue_for(txn, state, now, account, &template).await?;
    let event = Event::new("mfa_backup_code_used")
        .user(&account.id)
        .detail("remaining", remaining);
    Ok(audit::record(txn, meta, now, event).await?)
}

/// A pending sign-in was cancelled after too many wrong codes: tell the owner (their password is
/// known to whoever tried).
pub async fn abandon_sign_in(
    state: &AppState,
    meta: &RequestMeta,
    user_id: &str,
) -> Result<(), AuthError> {
    let Some(account) = user::Entity::find_by_id(user_id.to_owned())
        .one(&state.db)
        .await?
    else {
        return Ok(());
    };
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    let template = Template::MfaFailures {
        name: account.display_name.clone(),
        reset_link: page(state, routes::FORGOT_PASSWORD),
    };
    outbox::enqueue_for(&txn, state, now, &account, &template).await?;
    let event = Event::new("mfa_sign_in_abandoned").user(&account.id);
    commit_with_event(txn, state, meta, now, event).await
}

/// For an operator (`nestegg user remove-two-factor EMAIL`), once the owner has shown who they are in
/// some other way: a lost phone with no backup code left, or an authenticator someone else added
/// with the password. The authenticator and backup codes go, every session ends (a pending code
/// step too), and the owner is told. `Ok(None)` when no account has this address, `Ok(Some(false))`
/// when it has no two-factor authentication on (nothing changes then).
pub async fn remove_by_operator(state: &AppState, email: &str) -> Result<Option<bool>, AuthError> {
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    let Some(account) = user::Entity::find_by_typed_email(email).one(&txn).await? else {
        return Ok(None);
    };
    let removed = totp_credential::Entity::delete_many()
        .filter(totp_credential::Column::UserId.eq(&account.id))
        .filter(totp_credential::Column::ConfirmedAt.is_not_null())
        .exec(&txn)
        .await?
        .rows_affected;
    if removed == 0 {
        return Ok(Some(false));
    }
    backup_code::Entity::delete_many()
        .filter(backup_code::Column::UserId.eq(&account.id))
        .exec(&txn)
        .await?;
    state.sessions.revoke_user(&txn, &account.id, None).await?;
    let template = Template::MfaDisabled {
        name: account.display_name.clone(),
        settings_link: settings_link(state),
    };
    outbox::enqueue_for(&txn, state, now, &account, &template).await?;
    let event = Event::new("mfa_removed_by_operator").user(&account.id);
    commit_with_event(txn, state, &RequestMeta::internal(), now, event).await?;
    Ok(Some(true))
}

/// Turns two-factor authentication off; needs the password and a current code or a backup code.
pub async fn disable(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
    password: &str,
    code: &str,
) -> Result<(), AuthError> {
    if crate::server::services::operators::requires_mfa(&state.db, &state.settings, account).await?
    {
        return Err(AuthError::Invalid {
            field: None,
            message: "Two-factor authentication is required for your account, so it cannot be \
                      turned off. To use a new phone, choose “Move to a new phone” instead."
                .to_owned(),
        });
    }
    if code.trim().is_empty() {
        return Err(invalid(
            "code",
            "Enter a code from your authenticator app, or a backup code.",
        ));
    }
    auth::check_own_password_before_code(state, meta, account, password, "password").await?;
    let keys = auth::account_keys(state, meta, account, now(state));
    verify_second_factor(state, meta, account, code, "mfa_disable_failed", keys).await?;
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    totp_credential::Entity::delete_by_id(account.id.clone())
        .exec(&txn)
        .await?;
    backup_code::Entity::delete_many()
        .filter(backup_code::Column::UserId.eq(&account.id))
        .exec(&txn)
        .await?;
    let template = Template::MfaDisabled {
        name: account.display_name.clone(),
        settings_link: settings_link(state),
    };
    outbox::enqueue_for(&txn, state, now, account, &template).await?;
    commit_with_event(
        txn,
        state,
        meta,
        now,
        Event::new("mfa_disabled").user(&account.id),
    )
    .await
}
