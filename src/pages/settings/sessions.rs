//! Sessions: everywhere the account is signed in, with a way to sign out any of them.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::account::{RevokeOtherSessions, RevokeSession, list_sessions};
use crate::components::auth_forms::{
    FormError, FormSuccess, SubmitButton, action_error, action_succeeded, last_finished,
    outcome_shown,
};
use crate::pages::settings::{LoadError, SettingsLayout, SignedIn};
use crate::routes;
use crate::types::SessionView;

#[component]
pub fn SettingsSessionsPage() -> impl IntoView {
    let revoke = ServerAction::<RevokeSession>::new();
    let revoke_others = ServerAction::<RevokeOtherSessions>::new();

    view! {
        <Title text="Sessions — Nest Egg" />
        <SettingsLayout title="Sessions">
            <SignedIn next=routes::SETTINGS_SESSIONS render=move |_| { view! { <SessionList revoke=revoke revoke_others=revoke_others /> }.into_any() } />
        </SettingsLayout>
    }
}

#[component]
fn SessionList(
    revoke: ServerAction<RevokeSession>,
    revoke_others: ServerAction<RevokeOtherSessions>,
) -> impl IntoView {
    let sessions = Resource::new(
        move || (revoke.version().get(), revoke_others.version().get()),
        |_| list_sessions(),
    );
    // Both show their outcome in one place: only the latest one's.
    let last = last_finished(vec![revoke.version(), revoke_others.version()]);
    let revoke_error = action_error(revoke);
    let others_error = action_error(revoke_others);
    let revoked = action_succeeded(revoke);
    let others_revoked = action_succeeded(revoke_others);
    let revoked = Signal::derive(move || outcome_shown(last, 0) && revoked.get());
    let others_revoked = Signal::derive(move || outcome_shown(last, 1) && others_revoked.get());

    view! {
        <section class="settings-section">
            <p>
                "These are the browsers and devices signed in to your account. If you don't recognise one, "
                "sign it out and change your password."
            </p>
            {move || revoked.get().then(|| view! { <FormSuccess message="That session was signed out." /> })}
            {move || {
                others_revoked
                    .get()
                    .then(|| view! { <FormSuccess message="Every other session was signed out." /> })
            }}
            <FormError message=Signal::derive(move || {
                let revoke_error = outcome_shown(last, 0).then(|| revoke_error.get()).flatten();
                let others_error = outcome_shown(last, 1).then(|| others_error.get()).flatten();
                revoke_error.or(others_error).map(|e| e.to_string())
            }) />
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match sessions.await {
                        Ok(list) => {
                            let others = list.iter().filter(|s| !s.current).count();
                            view! {
                                <ul class="session-list">
                                    {list
                                        .into_iter()
                                        .map(|s| view! { <SessionItem session=s revoke=revoke /> })
                                        .collect_view()}
                                </ul>
                                {(others > 0).then(|| view! {
                                    <ActionForm action=revoke_others attr:class="revoke-others-form">
                                        <SubmitButton
                                            label="Sign out of all other sessions"
                                            pending=revoke_others.pending()
                                            button_class="button button-secondary"
                                        />
                                    </ActionForm>
                                })}
                            }
                                .into_any()
                        }
                        Err(error) => view! { <LoadError error=error /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn SessionItem(session: SessionView, revoke: ServerAction<RevokeSession>) -> impl IntoView {
    view! {
        <li class="session-item" class:session-current=session.current>
            <div class="session-details">
                <p class="session-device">
                    {session.device}
                    {session.current.then(|| view! { <span class="badge badge-on">"This browser"</span> })}
                </p>
                <p class="session-meta">
                    {format!(
                        "{} · signed in {} · last active {}",
                        session.ip,
                        session.started,
                        session.last_active,
                    )}
                </p>
            </div>
            {(!session.current).then(|| view! {
                <ActionForm action=revoke attr:class="revoke-session-form">
                    <input type="hidden" name="id" value=session.id />
                    <SubmitButton
                        label="Sign out"
                        pending=revoke.pending()
                        button_class="button button-small button-secondary"
                    />
                </ActionForm>
            })}
        </li>
    }
}
