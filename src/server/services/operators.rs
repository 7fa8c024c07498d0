//! Operators: the people who run this deployment (its admin pages, metrics, runbooks). They are the
//! accounts whose address is in `ADMIN_EMAILS`, plus those granted with `nestegg admin grant EMAIL`.
//! Owning a household makes nobody an operator.

use sea_orm::{
    ActiveModelTrait as _, ActiveValue::Set, ColumnTrait as _, ConnectionTrait, DbErr,
    EntityTrait as _, QueryFilter as _,
};

use crate::server::api_support::RequestMeta;
use crate::server::config::{MfaPolicy, Settings};
use crate::server::entities::{operator, user};
use crate::server::services::audit::{self, Event};

/// Whether `account` is an operator of this deployment.
pub async fn is_operator<C: ConnectionTrait>(
    db: &C,
    settings: &Settings,
    account: &user::Model,
) -> Result<bool, DbErr> {
    // Only a confirmed address counts: otherwise whoever registers an address named in ADMIN_EMAILS
    // before its owner does would become an operator.
    if account.email_verified_at.is_none() {
        return Ok(false);
    }
    if settings.is_admin(&account.email) {
        return Ok(true);
    }
    Ok(operator::Entity::find_by_id(account.id.clone())
        .one(db)
        .await?
        .is_some())
}

/// Whether `account` must have two-factor authentication (`REQUIRE_MFA`) before anything else.
pub async fn requires_mfa<C: ConnectionTrait>(
    db: &C,
    settings: &Settings,
    account: &user::Model,
) -> Result<bool, DbErr> {
    match settings.accounts.require_mfa {
        MfaPolicy::Off => Ok(false),
        MfaPolicy::All => Ok(true),
        MfaPolicy::Admins => is_operator(db, settings, account).await,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Done,
    /// Nothing to do: already so.
    Unchanged,
    /// No account has this address.
    NoAccount,
    /// The account has not confirmed its address yet.
    Unconfirmed,
    /// Revoked here, but `ADMIN_EMAILS` still names the address.
    StillInAdminEmails,
}

async fn account_by_email<C: ConnectionTrait>(
    db: &C,
    email: &str,
) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find_by_typed_email(email).one(db).await
}

/// Grants operator rights to the account with `email`.
pub async fn grant<C: ConnectionTrait>(
    db: &C,
    settings: &Settings,
    email: &str,
    now: i64,
) -> Result<Change, DbErr> {
    let Some(account) = account_by_email(db, email).await? else {
        return Ok(Change::NoAccount);
    };
    if account.email_verified_at.is_none() {
        return Ok(Change::Unconfirmed);
    }
    if operator::Entity::find_by_id(account.id.clone())
        .one(db)
        .await?
        .is_some()
    {
        return Ok(Change::Unchanged);
    }
    operator::ActiveModel {
        user_id: Set(account.id.clone()),
        granted_at: Set(now),
    }
    .insert(db)
    .await?;
    let event = Event::new("operator_granted")
        .user(&account.id)
        .detail("by", "command line")
        .detail("in_admin_emails", settings.is_admin(&account.email));
    // The command line's connection commits each statement: the event is stored.
    audit::record(db, &RequestMeta::internal(), now, event)
        .await?
        .emit();
    Ok(Change::Done)
}

/// Takes back rights granted with [`grant`]. Rights from `ADMIN_EMAILS` stay until the address is
/// removed there.
pub async fn revoke<C: ConnectionTrait>(
    db: &C,
    settings: &Settings,
    email: &str,
    now: i64,
) -> Result<Change, DbErr> {
    let Some(account) = account_by_email(db, email).await? else {
        return Ok(Change::NoAccount);
    };
    let deleted = operator::Entity::delete_by_id(account.id.clone())
        .exec(db)
        .await?;
    if deleted.rows_affected > 0 {
        let event = Event::new("operator_revoked")
            .user(&account.id)
            .detail("by", "command line");
        audit::record(db, &RequestMeta::internal(), now, event)
            .await?
            .emit();
    }
    Ok(if settings.is_admin(&account.email) {
        Change::StillInAdminEmails
    } else if deleted.rows_affected > 0 {
        Change::Done
    } else {
        Change::Unchanged
    })
}

/// Every operator's address and where the rights come from ("ADMIN_EMAILS", "granted" or both).
pub async fn list<C: ConnectionTrait>(
    db: &C,
    settings: &Settings,
) -> Result<Vec<(String, &'static str)>, DbErr> {
    let granted_ids: Vec<String> = operator::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|o| o.user_id)
        .collect();
    let granted: Vec<String> = user::Entity::find()
        .filter(user::Column::Id.is_in(granted_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|u| u.email)
        .collect();
    let mut all: Vec<(String, &'static str)> = Vec::new();
    for email in &settings.admin_emails {
        let source = if granted.contains(email) {
            "ADMIN_EMAILS and granted"
        } else {
            "ADMIN_EMAILS"
        };
        all.push((email.clone(), source));
    }
    for email in granted {
        if !settings.is_admin(&email) {
            all.push((email, "granted"));
        }
    }
    all.sort();
    Ok(all)
}
