//! Profile settings: who you are, and changing the email address you sign in with.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::auth::{ChangeDisplayName, ChangeEmail};
use crate::components::auth_forms::{
    CodeFieldIfTwoFactorOn, FormError, FormSuccess, PasswordField, SubmitButton, TextField,
    action_error, action_succeeded, field_error, form_error, kept_value, reset_on_success,
};
use crate::pages::settings::{SettingsLayout, SignedIn};
use crate::routes;
use crate::types::UserView;

/// The fields of the form, named exactly like the arguments of `change_email`.
const FIELDS: &[&str] = &["new_email", "password", "code"];

#[component]
pub fn SettingsProfilePage() -> impl IntoView {
    // Outside the `Suspend`, so the action (and its result) outlives a reload of the person.
    let change_email = ServerAction::<ChangeEmail>::new();
    let rename = ServerAction::<ChangeDisplayName>::new();

    view! {
        <Title text="Profile — Nest Egg" />
        <SettingsLayout title="Profile">
            <SignedIn next=routes::SETTINGS_PROFILE render=move |user| { view! { <ProfileSettings user=user change_email=change_email rename=rename /> }
                                .into_any() } />
        </SettingsLayout>
    }
}

#[component]
fn ProfileSettings(
    user: UserView,
    change_email: ServerAction<ChangeEmail>,
    rename: ServerAction<ChangeDisplayName>,
) -> impl IntoView {
    let error = action_error(change_email);
    let sent = action_succeeded(change_email);
    let form_ref = NodeRef::<leptos::html::Form>::new();
    let display_name = user.display_name.clone();
    // After a successful request, empty the form: the password must not stay in the page.
    reset_on_success(change_email, form_ref);

    view! {
        <section class="settings-section">
            <h2>"Your details"</h2>
            <dl class="profile-details">
                <dt>"Display name"</dt>
                // Text nodes only: display names are user input.
                <dd class="profile-display-name">{user.display_name}</dd>
                <dt>"Email address"</dt>
                <dd class="profile-email">
                    {user.email}
                    {(!user.email_verified)
                        .then(|| view! { <span class="badge badge-warning">"not confirmed yet"</span> })}
                </dd>
            </dl>
        </section>
        <DisplayNameForm current=display_name rename=rename />
        <section class="settings-section">
            <h2>"Change email address"</h2>
            <p class="hint">
                "We send a confirmation link to the new address, and tell your current address about the change."
            </p>
            {move || sent.get().then(|| view! {
                <FormSuccess message="We sent a confirmation link to the new address. Your address changes when you open it." />
            })}
            <ActionForm action=change_email node_ref=form_ref attr:class="change-email-form">
                <FormError message=form_error(error, FIELDS) />
                <TextField
                    id="change-email-new-email"
                    name="new_email"
                    label="New email address"
                    input_type="email"
                    autocomplete="email"
                    required=true
                    error=field_error(error, "new_email")
                />
                <PasswordField
                    id="change-email-password"
                    name="password"
                    label="Your password"
                    autocomplete="current-password"
                    hint="To make sure it is really you."
                    error=field_error(error, "password")
                />
                <CodeFieldIfTwoFactorOn id="change-email-code" error=error />
                <SubmitButton label="Change email address" pending=change_email.pending() />
            </ActionForm>
        </section>
    }
}

/// Renaming: the field starts with the current name; the header shows the new one after saving.
#[component]
fn DisplayNameForm(current: String, rename: ServerAction<ChangeDisplayName>) -> impl IntoView {
    let error = action_error(rename);
    let saved = action_succeeded(rename);
    // The header shows the name too: reload the person once the new name is saved.
    let session = crate::components::user_menu::use_session_user();
    Effect::new(move |previous: Option<usize>| {
        let version = rename.version().get();
        if previous.is_some_and(|p| p != version) && saved.get_untracked() {
            session.refetch();
        }
        version
    });
    view! {
        <section class="settings-section">
            <h2>"Display name"</h2>
            {move || saved.get().then(|| view! { <FormSuccess message="Your display name was changed." /> })}
            <ActionForm action=rename attr:class="change-display-name-form">
                <FormError message=form_error(error, &["display_name"]) />
                <div class="field">
                    <label for="profile-display-name">"Name shown in Nest Egg"</label>
                    <input
                        id="profile-display-name"
                        name="display_name"
                        type="text"
                        autocomplete="name"
                        maxlength="80"
                        required=true
                        value=kept_value("display_name").unwrap_or(current)
                        aria-invalid=move || field_error(error, "display_name").with(Option::is_some).then_some("true")
                        aria-describedby="profile-display-name-error"
                    />
                    <p class="field-error" id="profile-display-name-error" role="alert">
                        {move || field_error(error, "display_name").get()}
                    </p>
                </div>
                <SubmitButton label="Save name" pending=rename.pending() />
            </ActionForm>
        </section>
    }
}
