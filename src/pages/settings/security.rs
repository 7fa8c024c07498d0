//! Security settings: changing the password, and the state of two-factor authentication.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::auth::ChangePassword;
use crate::api::mfa::two_factor_summary;
use crate::components::auth_forms::{
    FormError, FormSuccess, PasswordField, SubmitButton, action_error, action_succeeded,
    field_error, form_error,
};
use crate::pages::settings::{LoadError, SettingsLayout, SignedIn};
use crate::routes;
use crate::types::UserView;

/// The fields of the form, named exactly like the arguments of `change_password`.
const FIELDS: &[&str] = &["current_password", "new_password"];

#[component]
pub fn SettingsSecurityPage() -> impl IntoView {
    // Outside the `Suspend`, so the action (and its result) outlives a reload of the person.
    let change_password = ServerAction::<ChangePassword>::new();

    view! {
        <Title text="Security settings — Nest Egg" />
        <SettingsLayout title="Security">
            <SignedIn next=routes::SETTINGS_SECURITY render=move |user| { view! {
                                <TwoFactorSummary />
                                <PasswordSettings user=user change_password=change_password />
                            }
                                .into_any() } />
        </SettingsLayout>
    }
}

#[component]
fn PasswordSettings(
    user: UserView,
    change_password: ServerAction<ChangePassword>,
) -> impl IntoView {
    let error = action_error(change_password);
    let changed = action_succeeded(change_password);
    let form_ref = NodeRef::<leptos::html::Form>::new();
    let new_password = RwSignal::new(String::new());
    let email = user.email;

    // After a successful change, empty the form (and the meter): no password stays in the page.
    Effect::new(move |_| {
        change_password.version().track();
        if changed.get() {
            if let Some(form) = form_ref.get() {
                form.reset();
            }
            new_password.set(String::new());
        }
    });

    view! {
        <section class="settings-section">
            <h2>"Change password"</h2>
            {move || changed.get().then(|| view! {
                <FormSuccess message="Password changed. You were signed out everywhere else." />
            })}
            <ActionForm action=change_password node_ref=form_ref attr:class="change-password-form">
                <FormError message=form_error(error, FIELDS) />
                <PasswordField
                    id="change-password-current"
                    name="current_password"
                    label="Current password"
                    autocomplete="current-password"
                    error=field_error(error, "current_password")
                />
                <PasswordField
                    id="change-password-new"
                    name="new_password"
                    label="New password"
                    autocomplete="new-password"
                    hint="At least 12 characters. Long phrases are easy to remember and hard to guess."
                    meter=true
                    email=Signal::derive(move || email.clone())
                    track=new_password
                    error=field_error(error, "new_password")
                />
                <SubmitButton label="Change password" pending=change_password.pending() />
            </ActionForm>
        </section>
    }
}

/// Whether two-factor authentication is on, since when, and how many backup codes are left.
#[component]
fn TwoFactorSummary() -> impl IntoView {
    let status = Resource::new(|| (), |_| two_factor_summary());
    view! {
        <section class="settings-section two-factor-summary">
            <h2>"Two-factor authentication"</h2>
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match status.await {
                        Ok(view) => match view.enabled_on {
                            Some(since) => {
                                let remaining = view.backup_codes_remaining;
                                view! {
                                    <p class="two-factor-state">
                                        <span class="badge badge-on">"On"</span>
                                        {format!(" since {since}.")}
                                    </p>
                                    <p class="backup-codes-remaining">
                                        {format!(
                                            "{remaining} unused backup {} left.",
                                            if remaining == 1 { "code" } else { "codes" },
                                        )}
                                    </p>
                                    {(remaining <= 3).then(|| view! {
                                        <p class="notice notice-warning backup-codes-low" role="status">
                                            "You are running low on backup codes: create a new set."
                                        </p>
                                    })}
                                    <a class="button button-secondary" href=routes::SETTINGS_TWO_FACTOR>
                                        "Manage two-factor authentication"
                                    </a>
                                }
                                    .into_any()
                            }
                            None => view! {
                                <p class="two-factor-state">
                                    <span class="badge badge-off">"Off"</span>
                                    " Add a code from your phone to every sign-in, so a stolen password is not enough."
                                </p>
                                <a class="button" href=routes::SETTINGS_TWO_FACTOR>
                                    "Set up two-factor authentication"
                                </a>
                            }
                                .into_any(),
                        },
                        Err(error) => view! { <LoadError error=error /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}
