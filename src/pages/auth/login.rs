//! Sign in.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::auth::SignIn;
use crate::components::auth_forms::{
    FormError, FormSuccess, PasswordField, SubmitButton, TextField, action_error, field_error,
    form_error,
};
use crate::routes;

/// The fields of the form, named exactly like the arguments of `sign_in`.
const FIELDS: &[&str] = &["email", "password", "next"];

#[component]
pub fn LoginPage() -> impl IntoView {
    let sign_in = ServerAction::<SignIn>::new();
    let error = action_error(sign_in);
    let query = use_query_map();
    // Where to go afterwards; the server only follows same-site paths (`routes::safe_next`).
    let next = Memo::new(move |_| query.with(|q| q.get("next")).unwrap_or_default());
    let reset_done = Memo::new(move |_| query.with(|q| q.get_str("reset") == Some("done")));

    view! {
        <Title text="Sign in — Nest Egg" />
        <section class="form-card auth-card">
            <h1>"Sign in"</h1>
            {move || {
                reset_done
                    .get()
                    .then(|| view! { <FormSuccess message="Your password was changed. Sign in with the new one." /> })
            }}
            // On success the server redirects to `next` (or home).
            <ActionForm action=sign_in attr:class="login-form">
                <FormError message=form_error(error, FIELDS) />
                <input type="hidden" name="next" value=move || next.get() />
                <TextField
                    id="login-email"
                    name="email"
                    label="Email address"
                    input_type="email"
                    autocomplete="username"
                    required=true
                    error=field_error(error, "email")
                />
                <PasswordField
                    id="login-password"
                    name="password"
                    label="Password"
                    autocomplete="current-password"
                    error=field_error(error, "password")
                />
                <SubmitButton label="Sign in" pending=sign_in.pending() />
            </ActionForm>
            <p class="form-links">
                <a href=routes::FORGOT_PASSWORD>"Forgot your password?"</a>
            </p>
            <p class="form-links">
                "New to Nest Egg? " <a href=routes::REGISTER>"Create an account"</a>
            </p>
        </section>
    }
}
