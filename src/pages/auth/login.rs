//! Sign in.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::auth::{RequestVerificationEmail, SignIn};
use crate::components::auth_forms::{
    FormError, FormSuccess, PasswordField, SubmitButton, TextField, action_error, action_succeeded,
    field_error, form_error,
};
use crate::error::AppError;
use crate::routes;

/// The fields of the form, named exactly like the arguments of `sign_in`.
const FIELDS: &[&str] = &["email", "password", "next"];

#[component]
pub fn LoginPage() -> impl IntoView {
    let sign_in = ServerAction::<SignIn>::new();
    let error = action_error(sign_in);
    let request = ServerAction::<RequestVerificationEmail>::new();
    let request_error = action_error(request);
    let request_sent = action_succeeded(request);
    // Offered when the sign-in needs a confirmed address, and kept once used: without JavaScript its
    // answer is a new page, where the sign-in's refusal is no longer.
    // (A memo: the form is drawn again only when this changes, not at each answer, losing nothing typed.)
    let offer_new_link = Memo::new(move |_| {
        matches!(error.get(), Some(AppError::EmailNotVerified))
            || request_sent.get()
            || request_error.with(Option::is_some)
    });
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
            {move || offer_new_link.get().then(|| view! { <NewConfirmationLink request=request /> })}
            <p class="form-links">
                <a href=routes::FORGOT_PASSWORD>"Forgot your password?"</a>
            </p>
            <p class="form-links">
                "New to Nest Egg? " <a href=routes::REGISTER>"Create an account"</a>
            </p>
        </section>
    }
}

/// Shown when sign-in needs a confirmed address: asks for a fresh confirmation link by email address.
#[component]
fn NewConfirmationLink(request: ServerAction<RequestVerificationEmail>) -> impl IntoView {
    let error = action_error(request);
    let sent = action_succeeded(request);
    view! {
        <div class="form-subsection">
            <h2>"Need a new confirmation link?"</h2>
            {move || {
                if sent.get() {
                    view! {
                        <FormSuccess message="If that address has an unconfirmed account, we sent a new link. It expires in 24 hours." />
                    }
                        .into_any()
                } else {
                    view! {
                        <ActionForm action=request attr:class="request-verification-form">
                            <FormError message=form_error(error, &["email"]) />
                            <TextField
                                id="resend-email"
                                name="email"
                                label="Email address"
                                input_type="email"
                                autocomplete="email"
                                required=true
                                error=field_error(error, "email")
                            />
                            <SubmitButton label="Send a new confirmation link" pending=request.pending() />
                        </ActionForm>
                    }
                        .into_any()
                }
            }}
        </div>
    }
}
