//! Household server functions: the household page (members, invitations, ownership) and the page an
//! invitation's link opens. The household is always the caller's own, worked out on the server: no
//! function takes a household id, and member or invitation ids are only looked up inside it.

use leptos::prelude::*;

use crate::error::AppError;
use crate::types::{HouseholdView, JoinInvitationView};

/// The caller's household: members (owners first), and for owners the invitations waiting.
#[server(prefix = "/api", endpoint = "household_overview")]
pub async fn household_overview() -> Result<HouseholdView, AppError> {
    use crate::server::api_support as s;
    use crate::types::{InvitationView, MemberView};
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    let overview = crate::server::services::households::overview(&ctx.state, &user)
        .await
        .map_err(s::auth_error)?;
    Ok(HouseholdView {
        id: overview.membership.household.id.clone(),
        name: overview.membership.household.name.clone(),
        is_owner: overview.membership.is_owner(),
        members: overview
            .members
            .into_iter()
            .map(|m| MemberView {
                is_you: m.user_id == user.id,
                id: m.user_id,
                display_name: m.display_name,
                email: m.email,
                role: m.role,
                joined: s::readable_date(m.joined_at),
            })
            .collect(),
        invitations: overview
            .invitations
            .into_iter()
            .map(|i| InvitationView {
                id: i.id,
                email: i.email,
                sent: s::readable_date(i.created_at),
                expires: s::readable_date(i.expires_at),
            })
            .collect(),
    })
}

/// Emails an invitation (a single-use link, 7 days) to join the caller's household. Owners only.
#[server(prefix = "/api", endpoint = "invite_member")]
pub async fn invite_member(email: String) -> Result<String, AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    // Counted by the service, once the invitation is sure to go out.
    let sent_to = crate::server::services::households::invite(&ctx.state, &ctx.meta, &user, &email)
        .await
        .map_err(s::auth_error)?;
    s::redirect_back_done("invite_member");
    Ok(sent_to)
}

/// Withdraws a waiting invitation; its link stops working. Owners only.
#[server(prefix = "/api", endpoint = "revoke_invitation")]
pub async fn revoke_invitation(id: String) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    crate::server::services::households::revoke_invitation(&ctx.state, &ctx.meta, &user, &id)
        .await
        .map_err(s::auth_error)?;
    s::redirect_back_done("revoke_invitation");
    Ok(())
}

/// Removes a member (they get a household of their own). Owners only.
#[server(prefix = "/api", endpoint = "remove_member")]
pub async fn remove_member(id: String) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    crate::server::services::households::remove_member(&ctx.state, &ctx.meta, &user, &id)
        .await
        .map_err(s::auth_error)?;
    s::redirect_back_done("remove_member");
    Ok(())
}

/// Makes another member the owner; the caller stays as a member. Owners only.
#[server(prefix = "/api", endpoint = "transfer_ownership")]
pub async fn transfer_ownership(id: String) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    crate::server::services::households::transfer_ownership(&ctx.state, &ctx.meta, &user, &id)
        .await
        .map_err(s::auth_error)?;
    s::redirect_back_done("transfer_ownership");
    Ok(())
}

/// Leaves a shared household for a new one of the caller's own. `shown_household` is the household
/// the page showed (`HouseholdView::id`): if the caller is in another one by now (they joined it in
/// another tab), nothing happens.
#[server(prefix = "/api", endpoint = "leave_household")]
pub async fn leave_household(shown_household: Option<String>) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    let shown = shown_household.as_deref();
    crate::server::services::households::leave(&ctx.state, &ctx.meta, &user, shown)
        .await
        .map_err(s::auth_error)?;
    s::redirect_back_done("leave_household");
    Ok(())
}

/// Renames the household. Owners only.
#[server(prefix = "/api", endpoint = "rename_household")]
pub async fn rename_household(name: String) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    crate::server::services::households::rename(&ctx.state, &ctx.meta, &user, &name)
        .await
        .map_err(s::auth_error)?;
    s::redirect_back_done("rename_household");
    Ok(())
}

/// The invitation named by the link's `token`, or else the one kept in the session by
/// `remember_invitation`.
#[cfg(feature = "ssr")]
fn invitation_key<'a>(
    token: &'a str,
    kept: &'a Option<String>,
) -> crate::server::services::households::InvitationKey<'a> {
    use crate::server::services::households::InvitationKey;
    match kept {
        Some(id) if token.trim().is_empty() => InvitationKey::Id(id),
        _ => InvitationKey::Token(token),
    }
}

/// What an invitation link offers, and for a signed-in visitor what accepting it would do.
#[server(prefix = "/api", endpoint = "invitation_details")]
pub async fn invitation_details(token: String) -> Result<JoinInvitationView, AppError> {
    use crate::server::api_support as s;
    use crate::server::services::households::{self, Departure};
    let ctx = s::RequestContext::current().await?;
    let kept = ctx.kept_invitation().await?;
    let details = households::invitation_details(&ctx.state, invitation_key(&token, &kept))
        .await
        .map_err(s::auth_error)?;
    let (mut leaving, mut blocked, mut shown_departure) = (None, None, None);
    if let Some(user) = ctx.user().await? {
        if user.email != details.email {
            blocked = Some(format!(
                "This invitation was sent to {}, but you are signed in as {}. Sign out and sign in \
                 with {} to accept it.",
                details.email, user.email, details.email
            ));
        } else if user.email_verified_at.is_none() {
            blocked = Some(
                "Confirm your email address first: use the link we sent you when you signed up."
                    .to_owned(),
            );
        } else {
            match households::departure(&ctx.state.db, &user.id).await {
                Ok((
                    membership,
                    departure @ (Departure::DeletesHousehold(_) | Departure::Leaves(_)),
                )) => {
                    leaving = departure.note();
                    shown_departure = departure.key(&membership);
                }
                Ok((_, Departure::Blocked(name))) => {
                    blocked = Some(format!(
                        "You are the only owner of “{name}”. Make another member an owner there \
                         first, then come back to this link."
                    ));
                }
                Err(err) => return Err(s::auth_error(err)),
            }
        }
    }
    Ok(JoinInvitationView {
        household: details.household_name,
        inviter: details.inviter_name,
        email: details.email,
        expires: s::readable_date(details.expires_at),
        leaving,
        blocked,
        shown_departure,
    })
}

/// From the invitation page, signed out: keeps the invitation (its id, not the token) in the session
/// and goes to sign in, which comes back to `/household/join`.
#[server(prefix = "/api", endpoint = "remember_invitation")]
pub async fn remember_invitation(token: String) -> Result<(), AppError> {
    use crate::server::api_support as s;
    use crate::server::services::households::{self, InvitationKey};
    let ctx = s::RequestContext::current().await?;
    let details = households::invitation_details(&ctx.state, InvitationKey::Token(&token))
        .await
        .map_err(s::auth_error)?;
    ctx.keep_invitation(&details.id).await?;
    leptos_axum::redirect(&format!(
        "{}?next={}",
        crate::routes::LOGIN,
        crate::routes::HOUSEHOLD_JOIN
    ));
    Ok(())
}

/// Accepts the invitation behind `token` (or the one kept while signing in): the caller joins its
/// household as a member.
#[server(prefix = "/api", endpoint = "accept_invitation")]
pub async fn accept_invitation(
    token: String,
    // What the page said joining does (`JoinInvitationView::shown_departure`); absent from a page
    // served before this field existed, which is then not checked.
    shown_departure: Option<String>,
) -> Result<(), AppError> {
    use crate::server::api_support as s;
    let ctx = s::RequestContext::current().await?;
    let user = ctx.require_user().await?;
    let kept = ctx.kept_invitation().await?;
    crate::server::services::households::accept(
        &ctx.state,
        &ctx.meta,
        &user,
        invitation_key(&token, &kept),
        shown_departure.as_deref(),
    )
    .await
    .map_err(s::auth_error)?;
    // Joined: forgetting the used invitation may fail to be saved, the answer stands.
    crate::server::session_store::keep_answer_if_not_saved();
    ctx.forget_invitation().await?;
    leptos_axum::redirect(crate::routes::HOUSEHOLD);
    Ok(())
}
