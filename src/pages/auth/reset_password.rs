//! Choose a new password with the token from the reset email. On success the server ends every
//! session of the account and redirects to the sign-in page (`routes::LOGIN_AFTER_RESET`).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::auth::ResetPassword;
use crate::components::auth_forms::{
    FormError, PasswordField, SubmitButton, action_error, field_error, form_error,
};
use crate::pages::auth::verify_email::IncompleteLink;
use crate::routes;

/// The visible field; the hidden token's errors go in the box at the top.
const FIELDS: &[&str] = &["password"];

#[component]
pub fn ResetPasswordPage() -> impl IntoView {
    let reset = ServerAction::<ResetPassword>::new();
    let error = action_error(reset);
    let query = use_query_map();
    let token = Memo::new(move |_| query.with(|q| q.get("token")).unwrap_or_default());
    let has_token = Memo::new(move |_| !token.with(String::is_empty));

    view! {
        <Title text="Choose a new password — Nest Egg" />
        <section class="form-card auth-card">
            <h1>"Choose a new password"</h1>
            {move || {
                if has_token.get() {
                    view! {
                        <ActionForm action=reset attr:class="reset-password-form">
                            <FormError message=form_error(error, FIELDS) />
                            <input type="hidden" name="token" value=move || token.get() />
                            <PasswordField
                                id="reset-password"
                                name="password"
                                label="New password"
                                autocomplete="new-password"
                                hint="At least 12 characters. Long phrases are easy to remember and hard to guess."
                                meter=true
                                error=field_error(error, "password")
                            />
                            <p class="hint">"You will be signed out everywhere and can then sign in with the new password."</p>
                            <SubmitButton label="Change password" pending=reset.pending() />
                        </ActionForm>
                    }
                        .into_any()
                } else {
                    view! { <IncompleteLink /> }.into_any()
                }
            }}
            <p class="form-links">
                "Link expired? " <a href=routes::FORGOT_PASSWORD>"Ask for a new one"</a>
            </p>
        </section>
    }
}
