//! Account: deleting it, with everything that is only theirs.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::account::DeleteAccount;
use crate::components::auth_forms::{
    CodeFieldIfTwoFactorOn, FormError, PasswordField, SubmitButton, TextField, action_error,
    field_error, form_error,
};
use crate::pages::settings::{SettingsLayout, SignedIn};
use crate::routes;
use crate::types::UserView;

const FIELDS: &[&str] = &["password", "code", "confirm_email"];

#[component]
pub fn SettingsAccountPage() -> impl IntoView {
    let delete = ServerAction::<DeleteAccount>::new();
    view! {
        <Title text="Account — Nest Egg" />
        <SettingsLayout title="Account">
            <SignedIn next=routes::SETTINGS_ACCOUNT render=move |user| { view! { <DeleteAccountForm user=user delete=delete /> }.into_any() } />
        </SettingsLayout>
    }
}

#[component]
fn DeleteAccountForm(user: UserView, delete: ServerAction<DeleteAccount>) -> impl IntoView {
    let error = action_error(delete);
    view! {
        <section class="settings-section danger-zone">
            <h2>"Delete your account"</h2>
            <p>
                "This deletes your account and your personal data for good: your profile, sessions, security activity "
                "and consent records. A household only you belong to is deleted with everything in it; a household "
                "you share stays with its other members. If you are the only owner of a shared household, make "
                "someone else an owner first."
            </p>
            <ActionForm action=delete attr:class="delete-account-form">
                <FormError message=form_error(error, FIELDS) />
                <PasswordField
                    id="delete-password"
                    name="password"
                    label="Your password"
                    autocomplete="current-password"
                    error=field_error(error, "password")
                />
                <CodeFieldIfTwoFactorOn id="delete-code" error=error />
                <TextField
                    id="delete-confirm-email"
                    name="confirm_email"
                    label="Type your email address to confirm"
                    input_type="email"
                    autocomplete="off"
                    required=true
                    error=field_error(error, "confirm_email")
                />
                <p class="hint">{format!("Type: {}", user.email)}</p>
                <SubmitButton
                    label="Delete my account"
                    pending=delete.pending()
                    button_class="button button-danger"
                />
            </ActionForm>
        </section>
    }
}

/// Where the browser lands after the account was deleted.
#[component]
pub fn AccountDeletedPage() -> impl IntoView {
    view! {
        <Title text="Account deleted — Nest Egg" />
        <section class="form-card auth-card">
            <h1>"Your account was deleted"</h1>
            <p>
                "Your account and your personal data are gone, and you are signed out everywhere. "
                "We emailed you a receipt. Thank you for having used Nest Egg."
            </p>
            <a class="button" href=routes::HOME>
                "Go to the home page"
            </a>
        </section>
    }
}
