//! Ask for a password reset link. The answer is the same whether or not the address has an account.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::auth::RequestPasswordReset;
use crate::components::auth_forms::{
    FormError, FormSuccess, SubmitButton, TextField, action_error, action_succeeded, field_error,
    form_error,
};
use crate::routes;

/// The fields of the form, named exactly like the arguments of `request_password_reset`.
const FIELDS: &[&str] = &["email"];

#[component]
pub fn ForgotPasswordPage() -> impl IntoView {
    let request = ServerAction::<RequestPasswordReset>::new();
    let error = action_error(request);
    let sent = action_succeeded(request);

    view! {
        <Title text="Reset your password — Nest Egg" />
        <section class="form-card auth-card">
            <h1>"Reset your password"</h1>
            {move || {
                if sent.get() {
                    view! {
                        <FormSuccess message="If an account exists for that address, we sent a link to reset its password. It expires in 1 hour." />
                    }
                        .into_any()
                } else {
                    view! {
                        <p class="form-intro">
                            "Enter the email address you sign in with and we will send you a link to choose a new password."
                        </p>
                        <ActionForm action=request attr:class="forgot-password-form">
                            <FormError message=form_error(error, FIELDS) />
                            <TextField
                                id="forgot-email"
                                name="email"
                                label="Email address"
                                input_type="email"
                                autocomplete="email"
                                required=true
                                error=field_error(error, "email")
                            />
                            <SubmitButton label="Send reset link" pending=request.pending() />
                        </ActionForm>
                    }
                        .into_any()
                }
            }}
            <p class="form-links">
                "Remembered it? " <a href=routes::LOGIN>"Sign in"</a>
            </p>
        </section>
    }
}
