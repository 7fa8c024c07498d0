//! Deleting an account (GDPR article 17), household-aware.
//!
//! The person's own rows go with the `users` row (foreign keys cascade: memberships, consents,
//! tokens, their security events, two-factor credentials). A household they were the only member of
//! goes too, with everything in it. A household others still belong to stays; if they are its last
//! owner, deletion is refused until they hand ownership on. A pseudonymous event (a keyed hash of the
//! id, no personal data) is kept for the audit trail.

use sea_orm::{
    ColumnTrait as _, Condition, ConnectionTrait, DbErr, EntityTrait as _, PaginatorTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _,
};

use crate::server::api_support::RequestMeta;
use crate::server::entities::{
    account_token, household, household_invitation, household_member, outbox_email, security_event,
    user,
};
use crate::server::mail::Template;
use crate::server::services::audit::{self, Event};
use crate::server::services::auth::{self, AuthError, commit_with_event, invalid, now};
use crate::server::services::crypto::hash_token;
use crate::server::services::households::{self, ROLE_OWNER};
use crate::server::services::{mfa, outbox};
use crate::server::state::AppState;

/// What the person typed to confirm.
pub struct Deletion<'a> {
    pub password: &'a str,
    /// Required when two-factor authentication is on.
    pub code: &'a str,
    /// Their email address, typed out.
    pub confirm_email: &'a str,
}

pub async fn delete_account(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
    input: Deletion<'_>,
) -> Result<(), AuthError> {
    if input.confirm_email.trim().to_lowercase() != account.email {
        return Err(invalid(
            "confirm_email",
            "Type your account's email address exactly as shown to confirm.",
        ));
    }
    // Refused before the password and code are checked: checking them has effects (a backup code is
    // spent, and its owner told so) that a refused deletion must not have. Checked again below, with
    // the household locked.
    if let Some(refusal) = last_owner_refusal(&state.db, &account.id).await? {
        return Err(refusal);
    }
    if mfa::is_enabled(&state.db, &account.id).await? {
        mfa::reauthenticate(state, meta, account, input.password, input.code).await?;
    } else {
        auth::check_own_password(state, meta, account, input.password, "password").await?;
    }

    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    // Nobody joins (or changes) the household while it is decided whether it goes too.
    match households::locked_membership(&txn, &account.id, None).await {
        Ok(_) | Err(AuthError::NotFound) => {}
        Err(err) => return Err(err),
    }
    if let Some(refusal) = last_owner_refusal(&txn, &account.id).await? {
        return Err(refusal);
    }
    // A household theirs alone goes, with everything in it (cascades). Otherwise the household stays
    // with its other members; this membership cascades away, and a name that is still theirs too.
    let (going, staying): (Vec<_>, Vec<_>) = memberships_with_others(&txn, &account.id)
        .await?
        .into_iter()
        .partition(|(_, others)| others.is_empty());
    let going: Vec<String> = going.into_iter().map(|(m, _)| m.household_id).collect();
    // The households whose name, if it is still theirs, goes with them: in others' trails as well.
    let mut named_after_them = going.clone();
    for (membership, others) in staying {
        if !has_namesake(&txn, account, &others).await? {
            rename_if_named_after(&txn, account, &membership.household_id).await?;
            named_after_them.push(membership.household_id);
        }
    }
    households::withdraw_unsent_invitations(&txn, now, Some(&account.id), &going).await?;
    for household_id in &going {
        household::Entity::delete_by_id(household_id.clone())
            .exec(&txn)
            .await?;
    }
    let households_deleted = going.len();
    state.sessions.revoke_user(&txn, &account.id, None).await?;
    // Co-members' trails keep what happened, without this person's name or address, nor the
    // name their households were given after them.
    // Invitations to them that are over (the one they accepted, withdrawn or lapsed ones) are only a
    // record of their address in others' households, which their senders' exports would list. Only
    // theirs: accepted while the address was theirs (only its holder can accept), or, never
    // accepted, sent while it was. One still waiting is its sender's, who typed the address, and
    // lapses on its own.
    let mut theirs = Condition::any();
    for (address, from, until) in address_periods(&txn, account, now).await? {
        theirs = theirs
            .add(
                Condition::all()
                    .add(household_invitation::Column::Email.eq(address.clone()))
                    .add(household_invitation::Column::AcceptedAt.gte(from))
                    .add(household_invitation::Column::AcceptedAt.lte(until)),
            )
            .add(
                Condition::all()
                    .add(household_invitation::Column::Email.eq(address))
                    .add(household_invitation::Column::AcceptedAt.is_null())
                    .add(household_invitation::Column::CreatedAt.gte(from))
                    .add(household_invitation::Column::CreatedAt.lte(until)),
            );
    }
    household_invitation::Entity::delete_many()
        .filter(theirs)
        .filter(
            Condition::any()
                .add(household_invitation::Column::AcceptedAt.is_not_null())
                .add(household_invitation::Column::RevokedAt.is_not_null())
                .add(household_invitation::Column::ExpiresAt.lte(now)),
        )
        .exec(&txn)
        .await?;
    let addresses = audit::addresses_held(&txn, account).await?;
    audit::forget_person(&txn, &account.id, &addresses).await?;
    audit::forget_household_name(
        &txn,
        &account.id,
        &households::default_name(&account.display_name),
        &named_after_them,
    )
    .await?;
    // Mail sent to them is personal data too (the receipt below is the last): theirs at any address
    // they had, and what reached their current address before it was recorded whose mail is whose.
    outbox_email::Entity::delete_many()
        .filter(outbox::mail_of(account, 0))
        .exec(&txn)
        .await?;
    // An earlier address that can still take the account back (its "put my address back" link,
    // which goes with the account) is told too: deleting it right after moving it to an address of
    // theirs must not leave its owner with a link that just stops working.
    let can_take_back: Vec<String> = account_token::Entity::find()
        .filter(account_token::Column::UserId.eq(&account.id))
        .filter(
            account_token::Column::Purpose
                .eq(crate::server::services::sign_in_alerts::PURPOSE_RESTORE_EMAIL),
        )
        .filter(account_token::Column::UsedAt.is_null())
        .filter(account_token::Column::ExpiresAt.gt(now))
        .filter(account_token::Column::NewEmail.ne(&account.email))
        .all(&txn)
        .await?
        .into_iter()
        .filter_map(|link| link.new_email)
        .collect();
    user::Entity::delete_by_id(account.id.clone())
        .exec(&txn)
        .await?;
    let template = Template::AccountDeleted {
        name: account.display_name.clone(),
    };
    // Owned by nobody: the account is gone, and the address may be someone else's tomorrow.
    let mut told = vec![account.email.clone()];
    told.extend(can_take_back);
    told.sort_unstable();
    told.dedup();
    for address in &told {
        outbox::enqueue(&txn, state, now, address, None, &template).await?;
    }
    state
        .lockouts
        .forget(&txn, &auth::throttle_key(state, &account.email))
        .await?;
    let pseudonym = hash_token(&state.settings.secret_key, "deleted-account", &account.id);
    let event = Event::new("account_deleted")
        .detail("subject", pseudonym)
        .detail("households_deleted", households_deleted);
    // Recorded without the request's address and browser: the trail keeps no personal data.
    commit_with_event(txn, state, &RequestMeta::internal(), now, event).await
}

/// Each address `account` held, with the time it held it (from, until; Unix seconds), by its
/// `email_changed` events. (Past `AUDIT_RETENTION_DAYS` those are gone, and the current address
/// counts from the account's creation.)
async fn address_periods<C: ConnectionTrait>(
    db: &C,
    account: &user::Model,
    now: i64,
) -> Result<Vec<(String, i64, i64)>, DbErr> {
    let changes: Vec<(i64, String)> = security_event::Entity::find()
        .select_only()
        .column(security_event::Column::CreatedAt)
        .column(security_event::Column::Details)
        .filter(security_event::Column::UserId.eq(&account.id))
        .filter(security_event::Column::Kind.is_in(crate::server::services::audit::ADDRESS_CHANGES))
        // In the order they were applied (their times come from before the write).
        .order_by_asc(security_event::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    let mut periods = Vec::new();
    let mut from = account.created_at;
    for (at, details) in changes {
        let previous = serde_json::from_str::<serde_json::Value>(&details)
            .ok()
            .and_then(|d| d.get("previous_address")?.as_str().map(str::to_owned));
        if let Some(previous) = previous {
            periods.push((previous, from, at));
        }
        from = at;
    }
    periods.push((account.email.clone(), from, now));
    Ok(periods)
}

/// One of `others` has the same display name as `account`: a household named after `account`
/// ([`households::default_name`]) is named after them too, and keeps its name.
async fn has_namesake<C: ConnectionTrait>(
    db: &C,
    account: &user::Model,
    others: &[household_member::Model],
) -> Result<bool, DbErr> {
    let namesakes = user::Entity::find()
        .filter(user::Column::Id.is_in(others.iter().map(|m| m.user_id.clone())))
        .filter(user::Column::DisplayName.eq(&account.display_name))
        .count(db)
        .await?;
    Ok(namesakes > 0)
}

/// A household that stays with others and is still named after `account` ([`households::default_name`])
/// is renamed ([`households::NAME_WITHOUT_ITS_NAMESAKE`]).
async fn rename_if_named_after<C: ConnectionTrait>(
    db: &C,
    account: &user::Model,
    household_id: &str,
) -> Result<(), DbErr> {
    household::Entity::update_many()
        .col_expr(
            household::Column::Name,
            sea_orm::sea_query::Expr::value(households::NAME_WITHOUT_ITS_NAMESAKE),
        )
        .filter(household::Column::Id.eq(household_id))
        .filter(household::Column::Name.eq(households::default_name(&account.display_name)))
        .exec(db)
        .await?;
    Ok(())
}

/// Each household `user_id` belongs to, with its other members.
async fn memberships_with_others<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
) -> Result<Vec<(household_member::Model, Vec<household_member::Model>)>, DbErr> {
    let memberships = household_member::Entity::find()
        .filter(household_member::Column::UserId.eq(user_id))
        .all(db)
        .await?;
    let mut found = Vec::with_capacity(memberships.len());
    for membership in memberships {
        let others = household_member::Entity::find()
            .filter(household_member::Column::HouseholdId.eq(&membership.household_id))
            .filter(household_member::Column::UserId.ne(user_id))
            .all(db)
            .await?;
        found.push((membership, others));
    }
    Ok(found)
}

/// Why `user_id` cannot delete their account yet, if they cannot: they are the last owner of a
/// household others still belong to.
async fn last_owner_refusal<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
) -> Result<Option<AuthError>, DbErr> {
    for (membership, others) in memberships_with_others(db, user_id).await? {
        if others.is_empty()
            || membership.role != ROLE_OWNER
            || others.iter().any(|m| m.role == ROLE_OWNER)
        {
            continue;
        }
        let name = household::Entity::find_by_id(membership.household_id.clone())
            .one(db)
            .await?
            .map_or_else(|| "your household".to_owned(), |h| h.name);
        return Ok(Some(AuthError::Invalid {
            field: None,
            message: format!(
                "You are the only owner of “{name}”, and {} other {} still in it. Make one of them \
                 an owner on the household page first (or remove them); then you can delete your \
                 account.",
                others.len(),
                if others.len() == 1 {
                    "person is"
                } else {
                    "people are"
                },
            ),
        }));
    }
    Ok(None)
}
