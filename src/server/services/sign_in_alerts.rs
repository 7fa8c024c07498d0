//! New-sign-in alerts: a sign-in from a browser and address pair the account has not signed in from
//! before is emailed to the owner, with a single-use "this wasn't me" link (24 hours) that ends every
//! session, makes the password unusable until it is reset, and sends a reset link.
//!
//! The email to the old address after a change of address carries the other such link, "put my
//! address back" (7 days): the same, with the old address restored first. Whoever took the account
//! over can disarm neither (a password or address change leaves them working), and the reset link
//! goes to the address the link was sent to, never to one the intruder chose since.

use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, EntityTrait as _, PaginatorTrait as _, QueryFilter as _,
};

use crate::routes;
use crate::server::api_support::{RequestMeta, readable_date};
use crate::server::entities::{
    account_token, backup_code, known_device, security_event, totp_credential, user,
};
use crate::server::mail::Template;
use crate::server::services::audit::{self, Event};
use crate::server::services::auth::{
    AuthError, commit_with_event, consume_token, enqueue_reset_link, issue_token, link, live_token,
    now, throttle_key, void_all_tokens,
};
use crate::server::services::crypto::hash_token;
use crate::server::services::outbox;
use crate::server::services::sessions::describe_agent;
use crate::server::state::AppState;

pub const PURPOSE_NOT_ME: &str = "not_me";
/// "Put my address back", in the email to the old address after a change of address.
pub const PURPOSE_RESTORE_EMAIL: &str = "restore_email";
/// How long the old address can take the account back after a change.
pub const RESTORE_EMAIL_TTL_SECS: i64 = 7 * 24 * 3600;
/// The `known_devices` row that says "this account has signed in before", whatever became of its
/// devices (forgotten after a report, or unseen for `AUDIT_RETENTION_DAYS`): without it, the next new
/// device would pass for the account's first, which is never emailed about. Never a device's
/// fingerprint, which is hex.
const SIGNED_IN_BEFORE: &str = "signed-in-before";
/// How finely a known device's latest sign-in is kept.
const LAST_SEEN_GRAIN_SECS: i64 = 24 * 3600;
const NOT_ME_TTL_SECS: i64 = 24 * 3600;

/// After a completed sign-in: remembers this browser and address for the account and, when they are
/// new and the account has signed in before, emails the owner. The unique key of `known_devices`
/// decides "new", so sign-ins racing each other from the same new device send exactly one email.
pub async fn after_sign_in(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
) -> Result<(), AuthError> {
    let device = describe_agent(&meta.user_agent);
    let ip = meta.ip.to_string();
    let fingerprint = hash_token(
        &state.settings.secret_key,
        "known-device",
        &format!("{device}\n{ip}"),
    );
    let now = now(state);
    // Almost every sign-in comes from a device seen before: a plain read settles it, without taking
    // the database's write lock (on SQLite one writer at a time, so every sign-in waited its turn).
    let seen = known_device::Entity::find_by_id((account.id.clone(), fingerprint.clone()))
        .one(&state.db)
        .await?;
    if let Some(seen) = seen {
        // Kept to the day: a device in daily use costs one write a day, not one per sign-in.
        if seen.last_seen_at <= now - LAST_SEEN_GRAIN_SECS {
            known_device::Entity::update_many()
                .col_expr(known_device::Column::LastSeenAt, now.into())
                .filter(known_device::Column::UserId.eq(&account.id))
                .filter(known_device::Column::Fingerprint.eq(&seen.fingerprint))
                .exec(&state.db)
                .await?;
        }
        return Ok(());
    }
    let txn = crate::server::db::begin_write(&state.db).await?;
    // The account as it is now, locked (on PostgreSQL; SQLite's write transaction excludes the rest):
    // the sign-in checked a password against the account read before its hash, which takes a while.
    // If the account was taken back meanwhile (a new address, an unusable password), this sign-in
    // is over already (its session ends at its next request) and must not mail a "this wasn't me"
    // link to the address it read, which could put that address back.
    if current_account(&txn, &account.id)
        .await?
        .is_none_or(|current| {
            current.email != account.email
                || current.password_changed_at != account.password_changed_at
        })
    {
        return Ok(());
    }
    let known_before = known_device::Entity::find()
        .filter(known_device::Column::UserId.eq(&account.id))
        .count(&txn)
        .await?;
    let inserted = known_device::Entity::insert(known_device::ActiveModel {
        user_id: Set(account.id.clone()),
        fingerprint: Set(fingerprint),
        first_seen_at: Set(now),
        last_seen_at: Set(now),
    })
    .on_conflict_do_nothing()
    .exec_without_returning(&txn)
    .await?;
    let new_device = matches!(inserted, sea_orm::TryInsertResult::Inserted(1));
    let first_device =
        new_device && known_before == 0 && !trail_shows_sign_ins(&txn, account).await?;
    if new_device && known_before == 0 {
        mark_signed_in_before(&txn, &account.id, now).await?;
    }
    if !new_device || first_device {
        // Seen before, or the account's first device: nothing to tell.
        txn.commit().await?;
        return Ok(());
    }
    let token = issue_token(
        &txn,
        state,
        &account.id,
        PURPOSE_NOT_ME,
        // Where the link goes: if the address has changed by the time it is used, it is put back.
        // Only a confirmed one (an unconfirmed address may be a typo, someone else's mailbox).
        account
            .email_verified_at
            .is_some()
            .then(|| account.email.clone()),
        now,
        NOT_ME_TTL_SECS,
    )
    .await?;
    let template = Template::NewSignIn {
        name: account.display_name.clone(),
        device: device.clone(),
        ip: ip.clone(),
        when: readable_date(now),
        not_me_link: link(state, routes::NOT_ME, &token),
    };
    outbox::enqueue_for(&txn, state, now, account, &template).await?;
    let event = Event::new("new_device_sign_in")
        .user(&account.id)
        .detail("device", device);
    commit_with_event(txn, state, meta, now, event).await
}

/// "This wasn't me": ends every session of the account, replaces the password with an unusable one
/// (so whoever knows it cannot sign in again) and emails a reset link. If the account's address has
/// changed since the alert was sent, the alert's address is put back first (see [`take_back`]).
pub async fn report(state: &AppState, meta: &RequestMeta, token: &str) -> Result<(), AuthError> {
    take_back_with(state, meta, PURPOSE_NOT_ME, token).await
}

/// "Put my address back", from the email to the old address after a change of address: the address
/// is the account's again, and the account is secured as by "this wasn't me".
pub async fn restore_address(
    state: &AppState,
    meta: &RequestMeta,
    token: &str,
) -> Result<(), AuthError> {
    take_back_with(state, meta, PURPOSE_RESTORE_EMAIL, token).await
}

async fn take_back_with(
    state: &AppState,
    meta: &RequestMeta,
    purpose: &'static str,
    token: &str,
) -> Result<(), AuthError> {
    let now = now(state);
    // A made-up link costs a look-up, not a hash: anyone may post links here, and argon2's few
    // slots are shared with every sign-in.
    if live_token(&state.db, state, purpose, token, now)
        .await?
        .is_none()
    {
        return Err(AuthError::LinkInvalid);
    }
    // Hashed before the transaction: argon2 takes a while and must not hold the write lock.
    let unusable = state
        .hasher
        .hash(&crate::server::services::crypto::generate_token())
        .await?;
    let txn = crate::server::db::begin_write(&state.db).await?;
    let row = consume_token(&txn, state, purpose, token, now).await?;
    // Locked: a sign-in finishing meanwhile waits, then finds the account taken back (see
    // `after_sign_in`), or has issued its link before, which is voided below.
    let Some(account) = current_account(&txn, &row.user_id).await? else {
        return Err(AuthError::LinkInvalid);
    };
    let (account, previous) = take_back(&txn, state, account, &row, now, unusable).await?;
    // A put-back address is recorded as a change of address (the export and a deletion follow the
    // addresses held by them); a restore link used while the address is the one it would put back
    // changes none (recorded otherwise, it would move when the account got its address).
    let restored = |previous: &str| {
        Event::new("email_restored")
            .user(&account.id)
            .detail("previous_address", previous.to_owned())
            .detail("address", account.email.clone())
    };
    let reported = Event::new("sign_in_reported").user(&account.id);
    match (purpose, previous) {
        (PURPOSE_RESTORE_EMAIL, Some(previous)) => {
            commit_with_event(txn, state, meta, now, restored(&previous)).await
        }
        (PURPOSE_RESTORE_EMAIL, None) => {
            let used = Event::new("email_restore_used").user(&account.id);
            commit_with_event(txn, state, meta, now, used).await
        }
        (_, Some(previous)) => {
            let also = audit::record(&txn, meta, now, restored(&previous)).await?;
            commit_with_event(txn, state, meta, now, reported).await?;
            also.emit();
            Ok(())
        }
        (_, None) => commit_with_event(txn, state, meta, now, reported).await,
    }
}

/// The account `user_id`, read under a row lock on PostgreSQL (SQLite's write transaction already
/// excludes other writers).
async fn current_account(
    txn: &sea_orm::DatabaseTransaction,
    user_id: &str,
) -> Result<Option<user::Model>, sea_orm::DbErr> {
    use sea_orm::{ConnectionTrait as _, QuerySelect as _};
    let query = user::Entity::find_by_id(user_id.to_owned());
    match txn.get_database_backend() {
        sea_orm::DbBackend::Postgres => query.lock_exclusive().one(txn).await,
        _ => query.one(txn).await,
    }
}

/// What the holder of `link` (a "this wasn't me" or "put my address back" link, just used) gets
/// back: the address it was sent to, if the account has another now (and nobody else has it); then
/// whatever whoever held the account since it was sent could still use is undone: the links sent
/// since (to them, possibly), two-factor authentication set up or moved since, and backup codes made
/// since; and the account is secured ([`secure_account`]), the reset link going to that address.
/// With the address it had before, when that was put back.
async fn take_back(
    txn: &sea_orm::DatabaseTransaction,
    state: &AppState,
    account: user::Model,
    link: &account_token::Model,
    now: i64,
    unusable: String,
) -> Result<(user::Model, Option<String>), AuthError> {
    let since = link.created_at;
    let (account, previous) = match link.new_email.as_deref() {
        Some(address) if address != account.email => {
            let previous = account.email.clone();
            let account = put_back_address(txn, state, account, address, now).await?;
            // The address replaced is told: the owner's own, if they had left this one because
            // someone else reads it. The account's mail (it held that address): in its export, and
            // gone with it.
            let notice = Template::AddressPutBack {
                name: account.display_name.clone(),
                restored_hint: crate::server::services::auth::mask_email(address),
            };
            outbox::enqueue(txn, state, now, &previous, Some(&account.id), &notice).await?;
            (account, Some(previous))
        }
        _ => (account, None),
    };
    // Links that are left working on purpose (see `void_all_tokens`), but went out after this one:
    // to whoever had the account since, perhaps at an address of theirs. Earlier ones went to
    // earlier holders of the account, who may still need theirs. After, by the order they were
    // issued in: one issued in the same second may be either (an intruder's "this wasn't me" must
    // not void the owner's link of that second).
    account_token::Entity::update_many()
        .col_expr(account_token::Column::UsedAt, now.into())
        .filter(account_token::Column::UserId.eq(&account.id))
        .filter(account_token::Column::UsedAt.is_null())
        .filter(account_token::Column::Id.gt(link.id))
        .exec(txn)
        .await?;
    forget_second_factor_since(txn, &account.id, since).await?;
    secure_account(txn, state, &account, now, unusable).await?;
    Ok((account, previous))
}

/// Gives `account` back `address`, confirmed (the link that was sent there was just used).
async fn put_back_address(
    txn: &sea_orm::DatabaseTransaction,
    state: &AppState,
    account: user::Model,
    address: &str,
    now: i64,
) -> Result<user::Model, AuthError> {
    use sea_orm::{ActiveModelTrait as _, IntoActiveModel as _, SqlErr};
    let taken = || AuthError::Invalid {
        field: None,
        message: format!(
            "{address} belongs to another account now, so it cannot be put back on yours. Ask \
             the operators of this service for help."
        ),
    };
    if user::Entity::find()
        .filter(user::Column::Email.eq(address))
        .count(txn)
        .await?
        > 0
    {
        return Err(taken());
    }
    let previous = account.email.clone();
    let mut update = account.into_active_model();
    update.email = Set(address.to_owned());
    update.email_verified_at = Set(Some(now));
    update.updated_at = Set(now);
    let account = match update.update(txn).await {
        Ok(account) => account,
        // A sign-up committing the address meanwhile (the check above does not hold it off).
        Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            return Err(taken());
        }
        Err(err) => return Err(err.into()),
    };
    // Sign-in throttling follows the address (as for a change).
    state
        .lockouts
        .forget(txn, &throttle_key(state, &previous))
        .await?;
    Ok(account)
}

/// Two-factor authentication turned on or moved to another phone since `since` is whoever held the
/// account then: it goes, with the backup codes. Otherwise the authenticator stays (the owner's),
/// and only backup codes made since go, with a move to a new phone started since.
async fn forget_second_factor_since(
    txn: &sea_orm::DatabaseTransaction,
    user_id: &str,
    since: i64,
) -> Result<(), sea_orm::DbErr> {
    let set_up_since = totp_credential::Entity::find()
        .filter(totp_credential::Column::UserId.eq(user_id))
        .filter(totp_credential::Column::ConfirmedAt.gte(since))
        .count(txn)
        .await?
        > 0;
    // A move to a new phone keeps the row and its first confirmation: the trail says when.
    let moved_since = security_event::Entity::find()
        .filter(security_event::Column::UserId.eq(user_id))
        .filter(security_event::Column::Kind.eq("mfa_replaced"))
        .filter(security_event::Column::CreatedAt.gte(since))
        .count(txn)
        .await?
        > 0;
    if set_up_since || moved_since {
        totp_credential::Entity::delete_by_id(user_id.to_owned())
            .exec(txn)
            .await?;
        backup_code::Entity::delete_many()
            .filter(backup_code::Column::UserId.eq(user_id))
            .exec(txn)
            .await?;
        return Ok(());
    }
    backup_code::Entity::delete_many()
        .filter(backup_code::Column::UserId.eq(user_id))
        .filter(backup_code::Column::CreatedAt.gte(since))
        .exec(txn)
        .await?;
    crate::server::services::mfa::without_replacement(totp_credential::Entity::update_many())
        .filter(totp_credential::Column::UserId.eq(user_id))
        .filter(totp_credential::Column::ReplacementCreatedAt.gte(since))
        .exec(txn)
        .await?;
    Ok(())
}

/// For an operator (`nestegg user force-reset EMAIL`), when an account is believed compromised: the
/// same as "this wasn't me". `Ok(false)` when no account has this address.
pub async fn force_reset(state: &AppState, email: &str) -> Result<bool, AuthError> {
    let now = now(state);
    let unusable = state
        .hasher
        .hash(&crate::server::services::crypto::generate_token())
        .await?;
    let txn = crate::server::db::begin_write(&state.db).await?;
    let Some(account) = user::Entity::find_by_typed_email(email).one(&txn).await? else {
        return Ok(false);
    };
    secure_account(&txn, state, &account, now, unusable).await?;
    let event = Event::new("password_reset_forced")
        .user(&account.id)
        .detail("by", "an operator");
    commit_with_event(txn, state, &RequestMeta::internal(), now, event).await?;
    Ok(true)
}

/// Every session ends, the password stops working, outstanding links die, the devices are forgotten,
/// and a reset link is emailed.
async fn secure_account(
    txn: &sea_orm::DatabaseTransaction,
    state: &AppState,
    account: &user::Model,
    now: i64,
    unusable: String,
) -> Result<(), AuthError> {
    crate::server::services::auth::replace_password(txn, &account.id, unusable, now).await?;
    state.sessions.revoke_user(txn, &account.id, None).await?;
    void_all_tokens(txn, &account.id, now).await?;
    // Whoever signed in must set off the alert again if they ever get back in: every device is
    // forgotten, and the marker keeps the next sign-in from passing for the account's first one (which
    // sends nothing), even if it is the intruder's, back in through the mailbox before the owner.
    known_device::Entity::delete_many()
        .filter(known_device::Column::UserId.eq(&account.id))
        .exec(txn)
        .await?;
    mark_signed_in_before(txn, &account.id, now).await?;
    enqueue_reset_link(txn, state, account, now).await?;
    Ok(())
}

/// Whether the account's trail shows it signed in before this sign-in (whose own event is recorded
/// already), or had its devices forgotten: for an account without the marker, which a release from
/// before it deletes with the devices (a report handled by it during a rolling upgrade or after a
/// rollback). Asked only for an account with no device known, so hardly ever.
async fn trail_shows_sign_ins(
    txn: &sea_orm::DatabaseTransaction,
    account: &user::Model,
) -> Result<bool, sea_orm::DbErr> {
    use crate::server::entities::security_event;
    let events = |kinds: &'static [&'static str]| {
        security_event::Entity::find()
            .filter(security_event::Column::UserId.eq(&account.id))
            .filter(security_event::Column::Kind.is_in(kinds.iter().copied()))
    };
    Ok(events(&["sign_in_reported", "password_reset_forced"])
        .count(txn)
        .await?
        > 0
        || events(&["sign_in"]).count(txn).await? > 1)
}

/// Writes the [`SIGNED_IN_BEFORE`] marker of `user_id` (once).
async fn mark_signed_in_before(
    txn: &sea_orm::DatabaseTransaction,
    user_id: &str,
    now: i64,
) -> Result<(), sea_orm::DbErr> {
    known_device::Entity::insert(known_device::ActiveModel {
        user_id: Set(user_id.to_owned()),
        fingerprint: Set(SIGNED_IN_BEFORE.to_owned()),
        first_seen_at: Set(now),
        last_seen_at: Set(now),
    })
    .on_conflict_do_nothing()
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Forgets the devices no sign-in came from since `cutoff` (their fingerprints derive from IP
/// addresses, kept no longer than the security events that record them). The marker stays.
pub async fn forget_unseen_devices(
    db: &sea_orm::DatabaseConnection,
    cutoff: i64,
) -> Result<u64, sea_orm::DbErr> {
    // Both times: a row written by an instance not yet upgraded (during a rolling upgrade) has no
    // last sign-in recorded, only its first.
    let deleted = known_device::Entity::delete_many()
        .filter(known_device::Column::LastSeenAt.lt(cutoff))
        .filter(known_device::Column::FirstSeenAt.lt(cutoff))
        .filter(known_device::Column::Fingerprint.ne(SIGNED_IN_BEFORE))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}
