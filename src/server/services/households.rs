//! Households: who belongs to which, invitations by email, removing members, handing on ownership
//! and leaving.
//!
//! A person belongs to exactly one household (a unique key on `household_members.user_id`). Every
//! function here starts from the caller's own membership, and ids that come from a browser (members,
//! invitations) are looked up only inside that household: an id from another household is "not
//! found", exactly like an id that does not exist.
//!
//! Changes lock the households they touch first (`FOR UPDATE` on PostgreSQL; SQLite's write
//! transactions already run one at a time), then decide: two owners acting at once, or someone
//! joining a household its last member is leaving, cannot leave a household without an owner or a
//! person without a household.

use sea_orm::{
    ActiveModelTrait as _, ActiveValue::Set, ColumnTrait as _, Condition, ConnectionTrait,
    DatabaseTransaction, DbBackend, DbErr, EntityTrait as _, PaginatorTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, SqlErr,
};

use crate::routes;
use crate::server::api_support::RequestMeta;
use crate::server::entities::{household, household_invitation, household_member, user};
use crate::server::mail::Template;
use crate::server::rate_limit::{Limit, LimitError};
use crate::server::services::audit::{self, Event};
use crate::server::services::auth::{
    AuthError, commit_with_event, invalid, link, normalize_email, now,
};
use crate::server::services::crypto::{generate_token, hash_token};
use crate::server::services::outbox;
use crate::server::state::AppState;

pub const ROLE_OWNER: &str = "owner";
pub const ROLE_MEMBER: &str = "member";
/// How long an invitation link works.
pub const INVITATION_TTL_SECS: i64 = 7 * 24 * 3600;
/// Invitations a household may have waiting at once.
pub const MAX_PENDING_INVITATIONS: u64 = 20;
const PURPOSE_INVITATION: &str = "household_invitation";

/// The caller's place in their household.
#[derive(Debug, Clone)]
pub struct Membership {
    pub household: household::Model,
    pub role: String,
    pub joined_at: i64,
}

impl Membership {
    pub fn is_owner(&self) -> bool {
        self.role == ROLE_OWNER
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: String,
    pub display_name: String,
    pub email: String,
    pub role: String,
    pub joined_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingInvitation {
    pub id: String,
    pub email: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What the household page shows.
#[derive(Debug, Clone)]
pub struct Overview {
    pub membership: Membership,
    pub members: Vec<Member>,
    /// Only for owners, who can withdraw them.
    pub invitations: Vec<PendingInvitation>,
}

/// What the invitation link's page shows before it is accepted.
#[derive(Debug, Clone)]
pub struct InvitationDetails {
    pub household_name: String,
    pub inviter_name: Option<String>,
    pub email: String,
    pub expires_at: i64,
    /// To keep in the session instead of the token while the visitor signs in.
    pub id: String,
}

/// The name a household gets from the person it was made for ([`create_own`]).
pub fn default_name(display_name: &str) -> String {
    format!("{display_name}'s household")
}

/// What a household still named after someone who deleted their account ([`default_name`]) is
/// called from then on by the members it stays with: the name is that person's, and goes with them.
pub const NAME_WITHOUT_ITS_NAMESAKE: &str = "Our household";

/// A new household with `user_id` as its owner (at registration, and for someone who leaves or is
/// removed from a shared one).
pub async fn create_own<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
    display_name: &str,
    now: i64,
) -> Result<String, DbErr> {
    let household_id = uuid::Uuid::new_v4().to_string();
    household::ActiveModel {
        id: Set(household_id.clone()),
        name: Set(default_name(display_name)),
        created_at: Set(now),
    }
    .insert(db)
    .await?;
    household_member::ActiveModel {
        household_id: Set(household_id.clone()),
        user_id: Set(user_id.to_owned()),
        role: Set(ROLE_OWNER.to_owned()),
        joined_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(household_id)
}

/// The household `user_id` belongs to.
pub async fn membership<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
) -> Result<Membership, AuthError> {
    let row = household_member::Entity::find()
        .filter(household_member::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .ok_or(AuthError::NotFound)?;
    let household = household::Entity::find_by_id(row.household_id)
        .one(db)
        .await?
        .ok_or(AuthError::NotFound)?;
    Ok(Membership {
        household,
        role: row.role,
        joined_at: row.joined_at,
    })
}

/// Everyone in `household_id`, owners first, then by when they joined.
pub async fn members<C: ConnectionTrait>(db: &C, household_id: &str) -> Result<Vec<Member>, DbErr> {
    let rows = household_member::Entity::find()
        .filter(household_member::Column::HouseholdId.eq(household_id))
        .order_by_asc(household_member::Column::JoinedAt)
        .all(db)
        .await?;
    let ids: Vec<String> = rows.iter().map(|m| m.user_id.clone()).collect();
    let users = user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(db)
        .await?;
    let mut members: Vec<Member> = rows
        .into_iter()
        .filter_map(|row| {
            let person = users.iter().find(|u| u.id == row.user_id)?;
            Some(Member {
                user_id: row.user_id,
                display_name: person.display_name.clone(),
                email: person.email.clone(),
                role: row.role,
                joined_at: row.joined_at,
            })
        })
        .collect();
    members.sort_by_key(|m| (m.role != ROLE_OWNER, m.joined_at));
    Ok(members)
}

pub async fn overview(state: &AppState, user: &user::Model) -> Result<Overview, AuthError> {
    let membership = membership(&state.db, &user.id).await?;
    let members = members(&state.db, &membership.household.id).await?;
    let invitations = if membership.is_owner() {
        pending_invitations(&state.db, &membership.household.id, now(state)).await?
    } else {
        Vec::new()
    };
    Ok(Overview {
        membership,
        members,
        invitations,
    })
}

async fn pending_invitations<C: ConnectionTrait>(
    db: &C,
    household_id: &str,
    now: i64,
) -> Result<Vec<PendingInvitation>, DbErr> {
    Ok(pending(household_id, now)
        .order_by_desc(household_invitation::Column::CreatedAt)
        .all(db)
        .await?
        .into_iter()
        .map(|row| PendingInvitation {
            id: row.id,
            email: row.email,
            created_at: row.created_at,
            expires_at: row.expires_at,
        })
        .collect())
}

/// Invitations of `household_id` that can still be accepted.
fn pending(household_id: &str, now: i64) -> sea_orm::Select<household_invitation::Entity> {
    household_invitation::Entity::find()
        .filter(household_invitation::Column::HouseholdId.eq(household_id))
        .filter(household_invitation::Column::AcceptedAt.is_null())
        .filter(household_invitation::Column::RevokedAt.is_null())
        .filter(household_invitation::Column::ExpiresAt.gt(now))
}

/// Before `households_going` are deleted (and, for the deletion of an account, with the `inviter`'s
/// account): the invitation emails of those households, and those the inviter sent, that have not
/// gone out are withdrawn (they carry the inviter's name and a link about to stop working). An
/// invitation whose email is withdrawn is withdrawn too, since nobody holds its link; one already
/// delivered stays: it belongs to its household, which stays (or cascades away with it).
pub async fn withdraw_unsent_invitations(
    txn: &DatabaseTransaction,
    now: i64,
    inviter: Option<&str>,
    households_going: &[String],
) -> Result<(), DbErr> {
    let mut from = Condition::any();
    if let Some(inviter) = inviter {
        from = from.add(household_invitation::Column::InvitedBy.eq(inviter));
    }
    if !households_going.is_empty() {
        from = from.add(household_invitation::Column::HouseholdId.is_in(households_going));
    }
    let invitations = household_invitation::Entity::find()
        .filter(from)
        .filter(household_invitation::Column::AcceptedAt.is_null())
        .filter(household_invitation::Column::RevokedAt.is_null())
        .filter(household_invitation::Column::MessageId.is_not_null())
        .all(txn)
        .await?;
    for invitation in invitations {
        if outbox::withdraw(txn, now, invitation.message_id).await? == 1 {
            household_invitation::Entity::update_many()
                .col_expr(household_invitation::Column::RevokedAt, now.into())
                .filter(household_invitation::Column::Id.eq(&invitation.id))
                .exec(txn)
                .await?;
        }
    }
    Ok(())
}

fn owners_only() -> AuthError {
    AuthError::Invalid {
        field: None,
        message: "Only an owner of the household can do that.".to_owned(),
    }
}

/// The caller's membership, refused unless they own the household.
async fn owner_membership(
    txn: &DatabaseTransaction,
    user: &user::Model,
) -> Result<Membership, AuthError> {
    let membership = locked_membership(txn, &user.id, None).await?;
    if membership.is_owner() {
        Ok(membership)
    } else {
        Err(owners_only())
    }
}

/// Locks the given households (in id order, so two transactions never wait on each other in a
/// circle). Returns the ids that still exist.
async fn lock_households(txn: &DatabaseTransaction, ids: &[&str]) -> Result<Vec<String>, DbErr> {
    let mut ids: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
    ids.sort();
    ids.dedup();
    let query = household::Entity::find()
        .filter(household::Column::Id.is_in(ids))
        .order_by_asc(household::Column::Id);
    let query = if txn.get_database_backend() == DbBackend::Postgres {
        query.lock_exclusive()
    } else {
        query
    };
    Ok(query.all(txn).await?.into_iter().map(|h| h.id).collect())
}

/// `user_id`'s membership with their household (and `other`, if given) locked, read again under the
/// lock so that it cannot have changed in between.
pub async fn locked_membership(
    txn: &DatabaseTransaction,
    user_id: &str,
    other: Option<&str>,
) -> Result<Membership, AuthError> {
    let before = membership(txn, user_id).await?;
    let mut ids = vec![before.household.id.as_str()];
    ids.extend(other);
    lock_households(txn, &ids).await?;
    let after = membership(txn, user_id).await?;
    if after.household.id != before.household.id || after.role != before.role {
        return Err(changed_meanwhile());
    }
    Ok(after)
}

fn changed_meanwhile() -> AuthError {
    AuthError::Invalid {
        field: None,
        message: "Your household changed a moment ago. Reload the page and try again.".to_owned(),
    }
}

/// Another member of the caller's household, and who they are (never someone elsewhere: that is
/// `NotFound`).
async fn fellow_member(
    txn: &DatabaseTransaction,
    membership: &Membership,
    user_id: &str,
) -> Result<(household_member::Model, user::Model), AuthError> {
    let member = household_member::Entity::find()
        .filter(household_member::Column::HouseholdId.eq(&membership.household.id))
        .filter(household_member::Column::UserId.eq(user_id))
        .one(txn)
        .await?
        .ok_or(AuthError::NotFound)?;
    let person = user::Entity::find_by_id(member.user_id.clone())
        .one(txn)
        .await?
        .ok_or(AuthError::NotFound)?;
    Ok((member, person))
}

/// Sends an invitation to `email_input`. Re-inviting an address replaces its earlier link. The
/// answer is the same whether the address has an account or not.
pub async fn invite(
    state: &AppState,
    meta: &RequestMeta,
    inviter: &user::Model,
    email_input: &str,
) -> Result<String, AuthError> {
    // Our emails carry the inviter's name to any address: only from a confirmed one.
    if inviter.email_verified_at.is_none() {
        return Err(AuthError::EmailNotVerified);
    }
    let email = normalize_email(email_input, "email")?;
    if email == inviter.email {
        return Err(invalid("email", "That is your own address."));
    }
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    let membership = owner_membership(&txn, inviter).await?;
    let household_id = membership.household.id.clone();
    if members(&txn, &household_id)
        .await?
        .iter()
        .any(|m| m.email == email)
    {
        return Err(invalid(
            "email",
            format!("{email} is already a member of this household."),
        ));
    }
    // A new link for the same address replaces the old one, and the old one's email, if still
    // waiting to go out, is not sent at all: the address gets one invitation, with the live link.
    let replaced = pending(&household_id, now)
        .filter(household_invitation::Column::Email.eq(&email))
        .all(&txn)
        .await?;
    household_invitation::Entity::update_many()
        .col_expr(household_invitation::Column::RevokedAt, now.into())
        .filter(household_invitation::Column::HouseholdId.eq(&household_id))
        .filter(household_invitation::Column::Email.eq(&email))
        .filter(household_invitation::Column::AcceptedAt.is_null())
        .filter(household_invitation::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    outbox::withdraw(&txn, now, replaced.into_iter().filter_map(|i| i.message_id)).await?;
    if pending(&household_id, now).count(&txn).await? >= MAX_PENDING_INVITATIONS {
        return Err(AuthError::Invalid {
            field: None,
            message: format!(
                "This household already has {MAX_PENDING_INVITATIONS} invitations waiting. \
                 Withdraw some before sending more."
            ),
        });
    }
    // Counted only for an invitation that is going out: a mistyped address or a refusal above
    // spends none of the allowance.
    count_invitation(&txn, state, inviter, &email, now).await?;
    let token = generate_token();
    let template = Template::HouseholdInvitation {
        // Whether the address has an account is not for the inviter's request to look up.
        name: String::new(),
        inviter: inviter.display_name.clone(),
        household: membership.household.name.clone(),
        link: link(state, routes::HOUSEHOLD_JOIN, &token),
    };
    let message_id = outbox::enqueue(&txn, state, now, &email, None, &template).await?;
    household_invitation::ActiveModel {
        id: Set(uuid::Uuid::new_v4().to_string()),
        household_id: Set(household_id.clone()),
        email: Set(email.clone()),
        invited_by: Set(Some(inviter.id.clone())),
        token_hash: Set(hash_token(
            &state.settings.secret_key,
            PURPOSE_INVITATION,
            &token,
        )),
        created_at: Set(now),
        expires_at: Set(now + INVITATION_TTL_SECS),
        accepted_at: Set(None),
        revoked_at: Set(None),
        message_id: Set(Some(message_id)),
    }
    .insert(&txn)
    .await?;
    let event = Event::new(INVITATION_SENT)
        .user(&inviter.id)
        .detail("household_id", household_id)
        .detail("invitee", email.clone());
    commit_with_event(txn, state, meta, now, event).await?;
    Ok(email)
}

/// The event of an invitation sent (its `invitee` detail is the address).
const INVITATION_SENT: &str = "household_invitation_sent";

/// Invitations one account may send to one address in 24 hours (each one replaces the last).
pub const INVITATIONS_PER_ADDRESS_PER_DAY: u64 = 3;

/// Counts an invitation about to be sent: against the few a day the inviter may send to one address
/// (sending again replaces the invitation and mails it again, so without that an owner could fill
/// any inbox with mail in their name, one every few minutes), then against their hourly allowance.
/// The first is counted from the inviter's trail (the invitations themselves go with a household
/// that is deleted, and the trail is kept at least 30 days), so a refusal spends nothing; it is per
/// inviter, so a refusal tells nothing of invitations others sent there.
async fn count_invitation(
    txn: &DatabaseTransaction,
    state: &AppState,
    inviter: &user::Model,
    email: &str,
    now: i64,
) -> Result<(), AuthError> {
    let sent = audit::count_own(
        txn,
        &inviter.id,
        INVITATION_SENT,
        ("invitee", email),
        now - 24 * 3600,
    )
    .await?;
    if sent >= INVITATIONS_PER_ADDRESS_PER_DAY {
        return Err(invalid(
            "email",
            format!(
                "You have invited {email} {INVITATIONS_PER_ADDRESS_PER_DAY} times in the last 24 \
                 hours. Ask them to look in their spam folder, or send it again tomorrow."
            ),
        ));
    }
    match state
        .limiters
        .check(Limit::InvitePerAccount, &inviter.id)
        .await
    {
        Ok(()) => Ok(()),
        Err(LimitError::Exceeded { retry_after_secs }) => {
            Err(AuthError::TooSoon { retry_after_secs })
        }
        Err(LimitError::Unavailable(err)) => Err(AuthError::CountersUnavailable(err)),
    }
}

/// Withdraws a waiting invitation of the caller's household; its link stops working.
pub async fn revoke_invitation(
    state: &AppState,
    meta: &RequestMeta,
    owner: &user::Model,
    invitation_id: &str,
) -> Result<(), AuthError> {
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    let membership = owner_membership(&txn, owner).await?;
    let invitation = pending(&membership.household.id, now)
        .filter(household_invitation::Column::Id.eq(invitation_id))
        .one(&txn)
        .await?
        .ok_or(AuthError::NotFound)?;
    household_invitation::Entity::update_many()
        .col_expr(household_invitation::Column::RevokedAt, now.into())
        .filter(household_invitation::Column::Id.eq(&invitation.id))
        .exec(&txn)
        .await?;
    // A link that no longer works is not worth sending, nor is the owner's name to that address.
    let withdrawn = outbox::withdraw(&txn, now, invitation.message_id).await?;
    let event = Event::new("household_invitation_revoked")
        .user(&owner.id)
        .detail("household_id", membership.household.id)
        .detail("invitee", invitation.email)
        .detail("email_withdrawn", withdrawn > 0);
    commit_with_event(txn, state, meta, now, event).await
}

/// How an invitation is named: by its link's token, or (once the link was opened and the visitor
/// went to sign in) by its id, which the session keeps instead of the token.
#[derive(Clone, Copy, Debug)]
pub enum InvitationKey<'a> {
    Token(&'a str),
    Id(&'a str),
}

/// The invitation named by `key`, while it can be accepted.
async fn find_invitation<C: ConnectionTrait>(
    db: &C,
    state: &AppState,
    key: InvitationKey<'_>,
    now: i64,
) -> Result<household_invitation::Model, AuthError> {
    let filter = match key {
        InvitationKey::Token(token) => {
            let token = token.trim();
            if token.is_empty() || token.len() > 128 {
                return Err(AuthError::LinkInvalid);
            }
            let hash = hash_token(&state.settings.secret_key, PURPOSE_INVITATION, token);
            household_invitation::Column::TokenHash.eq(hash)
        }
        InvitationKey::Id(id) => household_invitation::Column::Id.eq(id),
    };
    household_invitation::Entity::find()
        .filter(filter)
        .filter(household_invitation::Column::AcceptedAt.is_null())
        .filter(household_invitation::Column::RevokedAt.is_null())
        .filter(household_invitation::Column::ExpiresAt.gt(now))
        .one(db)
        .await?
        .ok_or(AuthError::LinkInvalid)
}

/// Who invites whom to what, for the page the link opens (nothing is changed).
pub async fn invitation_details(
    state: &AppState,
    key: InvitationKey<'_>,
) -> Result<InvitationDetails, AuthError> {
    let invitation = find_invitation(&state.db, state, key, now(state)).await?;
    let household = household::Entity::find_by_id(invitation.household_id.clone())
        .one(&state.db)
        .await?
        .ok_or(AuthError::LinkInvalid)?;
    let inviter_name = match &invitation.invited_by {
        Some(id) => user::Entity::find_by_id(id.clone())
            .one(&state.db)
            .await?
            .map(|u| u.display_name),
        None => None,
    };
    Ok(InvitationDetails {
        id: invitation.id,
        household_name: household.name,
        inviter_name,
        email: invitation.email,
        expires_at: invitation.expires_at,
    })
}

/// What joining another household does to the one `user` is in now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Departure {
    /// They are its only member: it is deleted, with everything in it.
    DeletesHousehold(String),
    /// Others stay in it.
    Leaves(String),
    /// They are its last owner and others remain: they must hand ownership on first.
    Blocked(String),
}

impl Departure {
    /// What the invitation page says joining does to the current household (`None` when blocked).
    pub fn note(&self) -> Option<String> {
        match self {
            Departure::DeletesHousehold(name) => Some(format!(
                "You will leave “{name}”. You are its only member, so it is deleted, with everything \
                 in it."
            )),
            Departure::Leaves(name) => Some(format!(
                "You will leave “{name}”; its other members stay in it."
            )),
            Departure::Blocked(_) => None,
        }
    }

    /// Names what joining does, to which household: the invitation page sends back the one it
    /// showed, and accepting refuses if it no longer holds (`None` when blocked: nothing to accept).
    pub fn key(&self, membership: &Membership) -> Option<String> {
        let kind = match self {
            Departure::DeletesHousehold(_) => "deletes",
            Departure::Leaves(_) => "leaves",
            Departure::Blocked(_) => return None,
        };
        Some(format!("{kind}:{}", membership.household.id))
    }
}

pub async fn departure<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
) -> Result<(Membership, Departure), AuthError> {
    let membership = membership(db, user_id).await?;
    classify(db, membership, user_id).await
}

/// What leaving `membership` would mean for `user_id`.
async fn classify<C: ConnectionTrait>(
    db: &C,
    membership: Membership,
    user_id: &str,
) -> Result<(Membership, Departure), AuthError> {
    let others: Vec<Member> = members(db, &membership.household.id)
        .await?
        .into_iter()
        .filter(|m| m.user_id != user_id)
        .collect();
    let name = membership.household.name.clone();
    let departure = if others.is_empty() {
        Departure::DeletesHousehold(name)
    } else if membership.is_owner() && !others.iter().any(|m| m.role == ROLE_OWNER) {
        Departure::Blocked(name)
    } else {
        Departure::Leaves(name)
    };
    Ok((membership, departure))
}

fn last_owner_error(household: &str) -> AuthError {
    AuthError::Invalid {
        field: None,
        message: format!(
            "You are the only owner of “{household}”. Make another member an owner first, then \
             you can leave it."
        ),
    }
}

/// Joins the household of the invitation behind `token`, leaving the current one (deleted when the
/// person was its only member). The invitation is used up.
///
/// `shown` is the [`Departure::key`] of what the page told the person joining would do. Their
/// household may have changed since it loaded (the owner handed it to them and left, so it would now
/// be deleted; they were removed from it): then nothing happens and they are told what it does now.
pub async fn accept(
    state: &AppState,
    meta: &RequestMeta,
    user: &user::Model,
    key: InvitationKey<'_>,
    shown: Option<&str>,
) -> Result<household::Model, AuthError> {
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    let invitation = find_invitation(&txn, state, key, now).await?;
    if user.email_verified_at.is_none() {
        return Err(AuthError::EmailNotVerified);
    }
    if invitation.email != user.email {
        return Err(AuthError::Invalid {
            field: None,
            message: format!(
                "This invitation was sent to {}. Sign in with that address to accept it, or ask \
                 for an invitation to {}.",
                invitation.email, user.email
            ),
        });
    }
    let current = locked_membership(&txn, &user.id, Some(&invitation.household_id)).await?;
    // Its last member may have taken it away while we waited for the lock.
    if household::Entity::find_by_id(invitation.household_id.clone())
        .one(&txn)
        .await?
        .is_none()
    {
        return Err(AuthError::LinkInvalid);
    }
    let (current, departure) = classify(&txn, current, &user.id).await?;
    if current.household.id == invitation.household_id {
        return Err(AuthError::Invalid {
            field: None,
            message: "You are already a member of this household.".to_owned(),
        });
    }
    if let (Some(shown), Some(now_key), Some(note)) =
        (shown, departure.key(&current), departure.note())
        && shown != now_key
    {
        return Err(AuthError::Invalid {
            field: None,
            message: format!(
                "Your household changed since this page was opened. {note} Join again if that is \
                 what you want."
            ),
        });
    }
    match departure {
        Departure::Blocked(name) => return Err(last_owner_error(&name)),
        Departure::DeletesHousehold(_) => {
            withdraw_unsent_invitations(
                &txn,
                now,
                None,
                std::slice::from_ref(&current.household.id),
            )
            .await?;
            household::Entity::delete_by_id(current.household.id.clone())
                .exec(&txn)
                .await?;
        }
        Departure::Leaves(_) => {
            household_member::Entity::delete_by_id((current.household.id.clone(), user.id.clone()))
                .exec(&txn)
                .await?;
        }
    }
    let used = household_invitation::Entity::update_many()
        .col_expr(household_invitation::Column::AcceptedAt, now.into())
        .filter(household_invitation::Column::Id.eq(&invitation.id))
        .filter(household_invitation::Column::AcceptedAt.is_null())
        .filter(household_invitation::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    if used.rows_affected != 1 {
        return Err(AuthError::LinkInvalid);
    }
    let joined = household_member::ActiveModel {
        household_id: Set(invitation.household_id.clone()),
        user_id: Set(user.id.clone()),
        role: Set(ROLE_MEMBER.to_owned()),
        joined_at: Set(now),
    }
    .insert(&txn)
    .await;
    if let Err(err) = joined {
        if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
            // Another request moved them a moment ago: this one changes nothing.
            return Err(AuthError::LinkInvalid);
        }
        return Err(err.into());
    }
    let household = household::Entity::find_by_id(invitation.household_id.clone())
        .one(&txn)
        .await?
        .ok_or(AuthError::LinkInvalid)?;
    let mut told = tell_owners(&txn, &household.id, user, "household_member_joined", now).await?;
    // The household left behind, if it goes on (it has owners but this person).
    let left = "household_member_left";
    told.extend(tell_owners(&txn, &current.household.id, user, left, now).await?);
    let event = Event::new("household_joined")
        .user(&user.id)
        .detail("household_id", household.id.clone())
        .detail("household", household.name.clone())
        .detail("left_household_id", current.household.id);
    commit_with_event(txn, state, meta, now, event).await?;
    told.into_iter().for_each(audit::Recorded::emit);
    Ok(household)
}

/// Records in the activity of the owners of `household_id` (but `person`) that `person` joined or
/// left it: who can see the household's money is theirs to know. Without the person's address and
/// browser, which are not theirs to see; deleting the person's account takes the name out (`about`).
async fn tell_owners(
    txn: &DatabaseTransaction,
    household_id: &str,
    person: &user::Model,
    kind: &'static str,
    now: i64,
) -> Result<Vec<audit::Recorded>, AuthError> {
    let owners = household_member::Entity::find()
        .filter(household_member::Column::HouseholdId.eq(household_id))
        .filter(household_member::Column::Role.eq(ROLE_OWNER))
        .filter(household_member::Column::UserId.ne(&person.id))
        .all(txn)
        .await?;
    let mut recorded = Vec::with_capacity(owners.len());
    for owner in owners {
        let event = Event::new(kind)
            .user(&owner.user_id)
            .about(&person.id)
            .detail("household_id", household_id)
            .detail("member", person.display_name.clone());
        recorded.push(audit::record(txn, &RequestMeta::internal(), now, event).await?);
    }
    Ok(recorded)
}

/// Removes another member from the caller's household; they get a household of their own and an
/// email saying so.
pub async fn remove_member(
    state: &AppState,
    meta: &RequestMeta,
    owner: &user::Model,
    member_id: &str,
) -> Result<(), AuthError> {
    if member_id == owner.id {
        return Err(AuthError::Invalid {
            field: None,
            message: "To leave the household yourself, use “Leave household”.".to_owned(),
        });
    }
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    let membership = owner_membership(&txn, owner).await?;
    let (member, person) = fellow_member(&txn, &membership, member_id).await?;
    household_member::Entity::delete_by_id((member.household_id.clone(), member.user_id.clone()))
        .exec(&txn)
        .await?;
    create_own(&txn, &person.id, &person.display_name, now).await?;
    let template = Template::HouseholdRemoved {
        name: person.display_name.clone(),
        household: membership.household.name.clone(),
    };
    outbox::enqueue_for(&txn, state, now, &person, &template).await?;
    let removed = Event::new("household_removed")
        .user(&person.id)
        .detail("household_id", membership.household.id.clone())
        .detail("household", membership.household.name.clone());
    // In their trail without the owner's address and browser: those are not theirs to see.
    let removed = audit::record(&txn, &RequestMeta::internal(), now, removed).await?;
    let event = Event::new("household_member_removed")
        .user(&owner.id)
        .about(&person.id)
        .detail("household_id", membership.household.id)
        .detail("member", person.display_name);
    commit_with_event(txn, state, meta, now, event).await?;
    removed.emit();
    Ok(())
}

/// Makes another member the owner; the caller stays on as a member.
pub async fn transfer_ownership(
    state: &AppState,
    meta: &RequestMeta,
    owner: &user::Model,
    member_id: &str,
) -> Result<(), AuthError> {
    if member_id == owner.id {
        return Err(AuthError::Invalid {
            field: None,
            message: "You already own this household. Choose another member.".to_owned(),
        });
    }
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    let membership = owner_membership(&txn, owner).await?;
    let (member, person) = fellow_member(&txn, &membership, member_id).await?;
    for (user_id, role) in [(&member.user_id, ROLE_OWNER), (&owner.id, ROLE_MEMBER)] {
        let updated = household_member::Entity::update_many()
            .col_expr(household_member::Column::Role, role.into())
            .filter(household_member::Column::HouseholdId.eq(&membership.household.id))
            .filter(household_member::Column::UserId.eq(user_id))
            .exec(&txn)
            .await?;
        if updated.rows_affected != 1 {
            return Err(changed_meanwhile());
        }
    }
    let received = Event::new("household_ownership_received")
        .user(&person.id)
        .about(&owner.id)
        .detail("household_id", membership.household.id.clone())
        .detail("from", owner.display_name.clone());
    let received = audit::record(&txn, &RequestMeta::internal(), now, received).await?;
    let event = Event::new("household_ownership_transferred")
        .user(&owner.id)
        .about(&person.id)
        .detail("household_id", membership.household.id)
        .detail("to", person.display_name);
    commit_with_event(txn, state, meta, now, event).await?;
    received.emit();
    Ok(())
}

/// Leaves a shared household for a new one of their own. The last owner must hand on ownership
/// first; someone alone in their household has nothing to leave. `shown`: the household the page
/// offered to leave, refused if it is no longer theirs (they would leave the one they just joined).
pub async fn leave(
    state: &AppState,
    meta: &RequestMeta,
    user: &user::Model,
    shown: Option<&str>,
) -> Result<(), AuthError> {
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    let locked = locked_membership(&txn, &user.id, None).await?;
    let (membership, departure) = classify(&txn, locked, &user.id).await?;
    if shown.is_some_and(|shown| shown != membership.household.id) {
        return Err(changed_meanwhile());
    }
    match departure {
        Departure::DeletesHousehold(_) => {
            return Err(AuthError::Invalid {
                field: None,
                message: "You are the only member of this household, so there is nothing to \
                          leave."
                    .to_owned(),
            });
        }
        Departure::Blocked(name) => return Err(last_owner_error(&name)),
        Departure::Leaves(_) => {}
    }
    household_member::Entity::delete_by_id((membership.household.id.clone(), user.id.clone()))
        .exec(&txn)
        .await?;
    create_own(&txn, &user.id, &user.display_name, now).await?;
    let told = tell_owners(
        &txn,
        &membership.household.id,
        user,
        "household_member_left",
        now,
    )
    .await?;
    let event = Event::new("household_left")
        .user(&user.id)
        .detail("household_id", membership.household.id)
        .detail("household", membership.household.name);
    commit_with_event(txn, state, meta, now, event).await?;
    told.into_iter().for_each(audit::Recorded::emit);
    Ok(())
}

/// 1–80 characters after trimming, no control characters.
pub fn parse_household_name(input: &str) -> Result<String, AuthError> {
    let name = input.trim();
    let length = name.chars().count();
    if length == 0 {
        return Err(invalid("name", "Enter a name for the household."));
    }
    if length > 80 {
        return Err(invalid("name", "Use at most 80 characters."));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(
            "name",
            "Use letters, numbers and punctuation only.",
        ));
    }
    Ok(name.to_owned())
}

pub async fn rename(
    state: &AppState,
    meta: &RequestMeta,
    owner: &user::Model,
    name_input: &str,
) -> Result<(), AuthError> {
    let name = parse_household_name(name_input)?;
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    let membership = owner_membership(&txn, owner).await?;
    household::Entity::update_many()
        .col_expr(household::Column::Name, name.clone().into())
        .filter(household::Column::Id.eq(&membership.household.id))
        .exec(&txn)
        .await?;
    let event = Event::new("household_renamed")
        .user(&owner.id)
        .detail("household_id", membership.household.id)
        .detail("name", name);
    commit_with_event(txn, state, meta, now, event).await
}

#[cfg(test)]
mod tests {
    use super::parse_household_name;

    #[test]
    fn household_names_are_trimmed_and_bounded() {
        assert_eq!(
            parse_household_name("  The Smiths ").ok().as_deref(),
            Some("The Smiths")
        );
        assert!(parse_household_name("   ").is_err());
        assert!(parse_household_name(&"x".repeat(81)).is_err());
        assert!(parse_household_name(&"é".repeat(80)).is_ok());
        assert!(parse_household_name("a\u{7}b").is_err());
    }
}
