//! The household page: its members and their roles; for owners, inviting by email, withdrawing
//! invitations, removing members, handing on ownership and renaming; for everyone, leaving.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::households::{
    InviteMember, LeaveHousehold, RemoveMember, RenameHousehold, RevokeInvitation,
    TransferOwnership, household_overview,
};
use crate::components::auth_forms::{
    FormError, FormSuccess, SubmitButton, TextField, action_error, action_succeeded, field_error,
    form_error, kept_value, last_finished, outcome_shown, reset_on_success,
};
use crate::pages::settings::{LoadError, SignedIn};
use crate::routes;
use crate::types::{HouseholdView, InvitationView, MemberView};

/// Every action of the page; the household is reloaded after any of them.
#[derive(Clone, Copy)]
struct Actions {
    invite: ServerAction<InviteMember>,
    revoke: ServerAction<RevokeInvitation>,
    remove: ServerAction<RemoveMember>,
    transfer: ServerAction<TransferOwnership>,
    leave: ServerAction<LeaveHousehold>,
    rename: ServerAction<RenameHousehold>,
}

#[component]
pub fn HouseholdPage() -> impl IntoView {
    let actions = Actions {
        invite: ServerAction::new(),
        revoke: ServerAction::new(),
        remove: ServerAction::new(),
        transfer: ServerAction::new(),
        leave: ServerAction::new(),
        rename: ServerAction::new(),
    };
    view! {
        <Title text="Household — Nest Egg" />
        <div class="container household-page">
            <SignedIn next=routes::HOUSEHOLD render=move |_| { view! { <Household actions=actions /> }.into_any() } />
        </div>
    }
}

#[component]
fn Household(actions: Actions) -> impl IntoView {
    let household = Resource::new(
        move || {
            (
                actions.invite.version().get(),
                actions.revoke.version().get(),
                actions.remove.version().get(),
                actions.transfer.version().get(),
                actions.leave.version().get(),
                actions.rename.version().get(),
            )
        },
        |_| household_overview(),
    );
    // These four show their outcome at the top of the page: only the latest one's.
    let last = last_finished(vec![
        actions.revoke.version(),
        actions.remove.version(),
        actions.transfer.version(),
        actions.leave.version(),
    ]);
    let failures = [
        action_error(actions.revoke),
        action_error(actions.remove),
        action_error(actions.transfer),
        action_error(actions.leave),
    ];
    let errors = Signal::derive(move || {
        failures
            .iter()
            .enumerate()
            .filter(|(index, _)| outcome_shown(last, *index))
            .find_map(|(_, error)| error.get())
            .map(|e| e.to_string())
    });
    let succeeded = |index: usize, done: Memo<bool>| {
        Signal::derive(move || outcome_shown(last, index) && done.get())
    };
    let revoked = succeeded(0, action_succeeded(actions.revoke));
    let removed = succeeded(1, action_succeeded(actions.remove));
    let transferred = succeeded(2, action_succeeded(actions.transfer));
    let left = succeeded(3, action_succeeded(actions.leave));

    view! {
        <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match household.await {
                    Ok(view) => view! {
                        <h1 class="household-name">{view.name.clone()}</h1>
                        {move || left.get().then(|| view! {
                            <FormSuccess message="You left the household. This is your own household now." />
                        })}
                        {move || removed.get().then(|| view! { <FormSuccess message="The member was removed." /> })}
                        {move || transferred.get().then(|| view! {
                            <FormSuccess message="Ownership handed on. You are now a member of this household." />
                        })}
                        {move || revoked.get().then(|| view! { <FormSuccess message="The invitation was withdrawn." /> })}
                        <FormError message=errors />
                        <Members view=view.clone() actions=actions />
                        {view.is_owner.then(|| view! {
                            <InviteSection invitations=view.invitations.clone() actions=actions />
                            <RenameSection name=view.name.clone() action=actions.rename />
                        })}
                        <LeaveSection view=view actions=actions />
                    }
                        .into_any(),
                    Err(error) => view! { <LoadError error=error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn Members(view: HouseholdView, actions: Actions) -> impl IntoView {
    let is_owner = view.is_owner;
    view! {
        <section class="settings-section">
            <h2>"Members"</h2>
            <ul class="member-list">
                {view
                    .members
                    .into_iter()
                    .map(|member| view! { <MemberItem member=member can_manage=is_owner actions=actions /> })
                    .collect_view()}
            </ul>
        </section>
    }
}

#[component]
fn MemberItem(member: MemberView, can_manage: bool, actions: Actions) -> impl IntoView {
    let manage = can_manage && !member.is_you;
    let name = member.display_name.clone();
    let id = member.id.clone();
    view! {
        <li class="member-item" data-email=member.email.clone()>
            <div class="member-details">
                <p class="member-name">
                    {member.display_name.clone()}
                    {member.is_you.then_some(" (you)")}
                    <span class="badge" class:badge-on=member.role == "owner">
                        {if member.role == "owner" { "Owner" } else { "Member" }}
                    </span>
                </p>
                <p class="member-meta">{format!("{} · joined {}", member.email, member.joined)}</p>
            </div>
            {manage.then(|| view! {
                <div class="member-actions">
                    {(member.role != "owner").then(|| view! {
                        <details class="confirm transfer-ownership">
                            <summary class="button button-small button-secondary">"Make owner"</summary>
                            <p>
                                {format!("{name} will own the household and you will become a member. Only an owner can undo this.")}
                            </p>
                            <ActionForm action=actions.transfer attr:class="transfer-ownership-form">
                                <input type="hidden" name="id" value=id.clone() />
                                <SubmitButton
                                    label=format!("Make {name} the owner")
                                    pending=actions.transfer.pending()
                                    button_class="button button-small"
                                />
                            </ActionForm>
                        </details>
                    })}
                    <details class="confirm remove-member">
                        <summary class="button button-small button-secondary">"Remove"</summary>
                        <p>
                            {format!(
                                "{} will no longer be a member of this household. They keep their account, with a household of their own.",
                                member.display_name,
                            )}
                        </p>
                        <ActionForm action=actions.remove attr:class="remove-member-form">
                            <input type="hidden" name="id" value=member.id.clone() />
                            <SubmitButton
                                label=format!("Remove {}", member.display_name)
                                pending=actions.remove.pending()
                                button_class="button button-small button-danger"
                            />
                        </ActionForm>
                    </details>
                </div>
            })}
        </li>
    }
}

#[component]
fn InviteSection(invitations: Vec<InvitationView>, actions: Actions) -> impl IntoView {
    let error = action_error(actions.invite);
    let sent = Signal::derive(move || match actions.invite.value().get() {
        Some(Ok(email)) => Some(email),
        _ => None,
    });
    let sent_without_js = action_succeeded(actions.invite);
    let form_ref = NodeRef::<leptos::html::Form>::new();
    reset_on_success(actions.invite, form_ref);
    view! {
        <section class="settings-section">
            <h2>"Invite someone"</h2>
            <p>
                "We email them a link that works once, for 7 days. They join with an account using that address; "
                "if they have none yet, they can create one first."
            </p>
            {move || match sent.get() {
                Some(email) => Some(view! {
                    <div class="form-success" role="status">
                        <p>{format!("Invitation sent to {email}.")}</p>
                    </div>
                }.into_any()),
                None => sent_without_js.get().then(|| view! { <FormSuccess message="Invitation sent." /> }.into_any()),
            }}
            <ActionForm action=actions.invite node_ref=form_ref attr:class="invite-form">
                <FormError message=form_error(error, &["email"]) />
                <TextField
                    id="invite-email"
                    name="email"
                    label="Their email address"
                    input_type="email"
                    autocomplete="off"
                    maxlength="254"
                    required=true
                    error=field_error(error, "email")
                />
                <SubmitButton label="Send invitation" pending=actions.invite.pending() />
            </ActionForm>
            {(!invitations.is_empty()).then(|| view! {
                <h3>"Waiting invitations"</h3>
                <ul class="invitation-list">
                    {invitations
                        .into_iter()
                        .map(|invitation| view! {
                            <li class="invitation-item" data-email=invitation.email.clone()>
                                <div>
                                    <p class="invitation-email">{invitation.email.clone()}</p>
                                    <p class="hint">{format!("Sent {} · expires {}", invitation.sent, invitation.expires)}</p>
                                </div>
                                <ActionForm action=actions.revoke attr:class="revoke-invitation-form">
                                    <input type="hidden" name="id" value=invitation.id />
                                    <SubmitButton
                                        label="Withdraw"
                                        pending=actions.revoke.pending()
                                        button_class="button button-small button-secondary"
                                    />
                                </ActionForm>
                            </li>
                        })
                        .collect_view()}
                </ul>
            })}
        </section>
    }
}

#[component]
fn RenameSection(name: String, action: ServerAction<RenameHousehold>) -> impl IntoView {
    let error = action_error(action);
    let renamed = action_succeeded(action);
    view! {
        <section class="settings-section">
            <h2>"Household name"</h2>
            {move || renamed.get().then(|| view! { <FormSuccess message="Household renamed." /> })}
            <ActionForm action=action attr:class="rename-household-form">
                <FormError message=form_error(error, &["name"]) />
                <div class="field">
                    <label for="household-name">"Name"</label>
                    <input
                        id="household-name"
                        name="name"
                        type="text"
                        maxlength="80"
                        required=true
                        value=kept_value("name").unwrap_or(name)
                        aria-invalid=move || field_error(error, "name").with(Option::is_some).then_some("true")
                        aria-describedby="household-name-error"
                    />
                    <p class="field-error" id="household-name-error" role="alert">
                        {move || field_error(error, "name").get()}
                    </p>
                </div>
                <SubmitButton label="Rename" pending=action.pending() button_class="button button-secondary" />
            </ActionForm>
        </section>
    }
}

#[component]
fn LeaveSection(view: HouseholdView, actions: Actions) -> impl IntoView {
    let alone = view.members.len() <= 1;
    let other_owner = view.members.iter().any(|m| !m.is_you && m.role == "owner");
    view! {
        <section class="settings-section">
            <h2>"Leave the household"</h2>
            {if alone {
                view! {
                    <p class="hint">"You are the only member. Invite someone to share this household with them."</p>
                }
                    .into_any()
            } else if view.is_owner && !other_owner {
                view! {
                    <p class="hint">
                        "You are the only owner. To leave, first make another member an owner."
                    </p>
                }
                    .into_any()
            } else {
                view! {
                    <p>
                        "You will no longer be a member of this household, and you will get a household of your own. "
                        "To come back, an owner has to invite you again."
                    </p>
                    <details class="confirm leave-household">
                        <summary class="button button-secondary">"Leave household"</summary>
                        <ActionForm action=actions.leave attr:class="leave-household-form">
                            <input type="hidden" name="shown_household" value=view.id.clone() />
                            <SubmitButton
                                label=format!("Leave {}", view.name)
                                pending=actions.leave.pending()
                                button_class="button button-danger"
                            />
                        </ActionForm>
                    </details>
                }
                    .into_any()
            }}
        </section>
    }
}
