//! Create an account, then "check your inbox".

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::auth::Register;
use crate::components::auth_forms::{
    CheckboxField, FormError, PasswordField, SubmitButton, TextField, action_error, field_error,
    form_error,
};
use crate::routes;

/// The fields of the form, named exactly like the arguments of `register`.
const FIELDS: &[&str] = &[
    "email",
    "display_name",
    "password",
    "accept_terms",
    "accept_privacy",
];

#[component]
pub fn RegisterPage() -> impl IntoView {
    let register = ServerAction::<Register>::new();
    let error = action_error(register);
    // Only feeds the strength meter (passwords built from the address are weak); never bound back.
    let email = RwSignal::new(String::new());

    view! {
        <Title text="Create your account — Nest Egg" />
        <section class="form-card auth-card">
            <h1>"Create your account"</h1>
            <p class="form-intro">
                "One account per person. You can invite the rest of your household once you are in."
            </p>
            // On success the server redirects to "check your inbox".
            <ActionForm action=register attr:class="register-form">
                <FormError message=form_error(error, FIELDS) />
                <TextField
                    id="register-email"
                    name="email"
                    label="Email address"
                    input_type="email"
                    autocomplete="email"
                    maxlength="254"
                    required=true
                    error=field_error(error, "email")
                    track=email
                />
                <TextField
                    id="register-display-name"
                    name="display_name"
                    label="Display name"
                    autocomplete="name"
                    hint="How other members of your household will see you."
                    maxlength="80"
                    required=true
                    error=field_error(error, "display_name")
                />
                <PasswordField
                    id="register-password"
                    name="password"
                    label="Password"
                    autocomplete="new-password"
                    hint="At least 12 characters. Long phrases are easy to remember and hard to guess."
                    meter=true
                    email=email
                    error=field_error(error, "password")
                />
                <CheckboxField
                    id="register-accept-terms"
                    name="accept_terms"
                    error=field_error(error, "accept_terms")
                >
                    "I agree to the "
                    <a href=routes::TERMS target="_blank" rel="noopener">
                        "terms of service"
                        <span class="visually-hidden">" (opens in a new tab)"</span>
                    </a>
                </CheckboxField>
                <CheckboxField
                    id="register-accept-privacy"
                    name="accept_privacy"
                    error=field_error(error, "accept_privacy")
                >
                    "I agree to the "
                    <a href=routes::PRIVACY target="_blank" rel="noopener">
                        "privacy policy"
                        <span class="visually-hidden">" (opens in a new tab)"</span>
                    </a>
                </CheckboxField>
                <SubmitButton label="Create account" pending=register.pending() />
            </ActionForm>
            <p class="form-links">
                "Already have an account? " <a href=routes::LOGIN>"Sign in"</a>
            </p>
        </section>
    }
}

/// Shown after every registration attempt, whether or not the address already had an account, so
/// the page does not reveal who is registered.
#[component]
pub fn CheckInboxPage() -> impl IntoView {
    view! {
        <Title text="Check your inbox — Nest Egg" />
        <section class="form-card auth-card check-inbox">
            <h1>"Check your inbox"</h1>
            <p>
                "We sent a link to the address you gave us. Open it to confirm the address and finish "
                "creating your account."
            </p>
            <p class="hint">
                "The link expires in 24 hours. Nothing there? Check your spam folder; once you are signed "
                "in you can ask for a new link."
            </p>
            <p class="form-links">
                <a href=routes::LOGIN>"Sign in"</a>
            </p>
        </section>
    }
}
