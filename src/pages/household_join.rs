//! Where a household invitation's link leads: who invites whom to what, and for the invited person
//! (signed in with the invited address) a button to join. Opening the link changes nothing (mail
//! scanners follow links); joining is a POST.
//!
//! A visitor who is not signed in is offered to sign in (a POST that keeps the invitation's id in
//! their session, so signing in comes back to this page without the token in any other URL) or to
//! create an account first.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::households::{AcceptInvitation, RememberInvitation, invitation_details};
use crate::components::auth_forms::{FormError, SubmitButton, action_error, form_error, refusals};
use crate::components::user_menu::use_session_user;
use crate::error::AppError;
use crate::routes;
use crate::types::JoinInvitationView;

#[component]
pub fn HouseholdJoinPage() -> impl IntoView {
    let accept = ServerAction::<AcceptInvitation>::new();
    let remember = ServerAction::<RememberInvitation>::new();
    let query = use_query_map();
    let token = Memo::new(move |_| query.with(|q| q.get("token")).unwrap_or_default());
    // A refused acceptance may mean the visitor's household changed since the page loaded (see
    // `accept_invitation`): what the page says about leaving it is loaded again.
    let refused = refusals(accept);
    let details = Resource::new(
        move || (token.get(), refused.get()),
        |(token, _)| invitation_details(token),
    );

    view! {
        <Title text="Join a household — Nest Egg" />
        <section class="form-card auth-card household-join">
            <h1>"Join a household"</h1>
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match details.await {
                        Ok(view) => view! { <Invitation view=view token=token accept=accept remember=remember /> }.into_any(),
                        Err(error @ (AppError::RateLimited { .. } | AppError::Unavailable | AppError::Internal)) => {
                            view! {
                                <div class="form-error" role="alert"><p>{error.to_string()}</p></div>
                            }
                                .into_any()
                        }
                        Err(_) => view! {
                            <div class="notice notice-warning" role="status">
                                <p>
                                    "This invitation has expired, was already used, or was withdrawn. "
                                    "Ask the person who invited you to send a new one."
                                </p>
                            </div>
                            <p class="form-links"><a href=routes::HOUSEHOLD>"Go to your household"</a></p>
                        }
                            .into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn Invitation(
    view: JoinInvitationView,
    token: Memo<String>,
    accept: ServerAction<AcceptInvitation>,
    remember: ServerAction<RememberInvitation>,
) -> impl IntoView {
    let session = use_session_user();
    let error = action_error(accept);
    let remember_error = action_error(remember);
    let who = view
        .inviter
        .clone()
        .unwrap_or_else(|| "A member".to_owned());
    let household = view.household.clone();
    view! {
        <p class="invitation-summary">
            {format!("{who} invited you to join “{household}” on Nest Egg.")}
        </p>
        <p class="hint">{format!("Sent to {} · valid until {}", view.email, view.expires)}</p>
        <Transition>
            {move || {
                let view = view.clone();
                Suspend::new(async move {
                    let signed_in = matches!(session.resource().await, Ok(Some(_)));
                    if !signed_in {
                        return view! {
                            <p>{format!("Sign in with {} to accept.", view.email)}</p>
                            <ActionForm action=remember attr:class="remember-invitation-form">
                                <FormError message=form_error(remember_error, &[]) />
                                <input type="hidden" name="token" value=move || token.get() />
                                <SubmitButton label="Sign in to accept" pending=remember.pending() />
                            </ActionForm>
                            <p class="hint">
                                "No account yet? "
                                <a href=routes::REGISTER>"Create one"</a>
                                {format!(
                                    " with {}, confirm your address, then open the link in the invitation email again.",
                                    view.email,
                                )}
                            </p>
                        }
                            .into_any();
                    }
                    if let Some(reason) = view.blocked {
                        return view! {
                            <div class="notice notice-warning join-blocked" role="status">
                                <p>{reason}</p>
                            </div>
                        }
                            .into_any();
                    }
                    view! {
                        {view.leaving.map(|note| view! { <p class="join-leaving">{note}</p> })}
                        <ActionForm action=accept attr:class="accept-invitation-form">
                            <FormError message=form_error(error, &[]) />
                            <input type="hidden" name="token" value=move || token.get() />
                            {view.shown_departure.map(|shown| view! {
                                <input type="hidden" name="shown_departure" value=shown />
                            })}
                            <SubmitButton label="Join the household" pending=accept.pending() />
                        </ActionForm>
                    }
                        .into_any()
                })
            }}
        </Transition>
    }
}
