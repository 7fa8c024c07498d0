//! Confirm an email address from the link in the verification email.
//!
//! Opening the link (a GET) only shows a button; confirming is a POST. Mail systems that follow links
//! to scan them therefore cannot use up the token.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::auth::VerifyEmail;
use crate::components::auth_forms::{
    FormError, FormSuccess, SubmitButton, action_error, action_succeeded, form_error,
};
use crate::components::user_menu::use_session_user;
use crate::routes;

/// The token is hidden, so every error goes in the box at the top.
const FIELDS: &[&str] = &[];

#[component]
pub fn VerifyEmailPage() -> impl IntoView {
    let verify = ServerAction::<VerifyEmail>::new();
    let error = action_error(verify);
    let confirmed = action_succeeded(verify);
    let query = use_query_map();
    let token = Memo::new(move |_| query.with(|q| q.get("token")).unwrap_or_default());

    // The banner asking to confirm the address must go away.
    let session = use_session_user();
    Effect::new(move |_| {
        if confirmed.get() {
            session.refetch();
        }
    });

    let form = move || {
        if token.with(String::is_empty) {
            return view! { <IncompleteLink /> }.into_any();
        }
        view! {
            <p>"Confirm that this address is yours to finish setting up your account."</p>
            <ActionForm action=verify attr:class="verify-email-form">
                <FormError message=form_error(error, FIELDS) />
                <input type="hidden" name="token" value=move || token.get() />
                <SubmitButton label="Confirm my email address" pending=verify.pending() />
            </ActionForm>
            <p class="hint">
                "Link expired? Sign in and use “Resend link” at the top of the page to get a new one."
            </p>
        }
        .into_any()
    };

    view! {
        <Title text="Confirm your email address — Nest Egg" />
        <section class="form-card auth-card">
            <h1>"Confirm your email address"</h1>
            {move || {
                if confirmed.get() {
                    view! {
                        <FormSuccess message="Your email address is confirmed." />
                        <p class="form-links">
                            <a href=routes::HOME>"Go to the home page"</a>
                        </p>
                    }
                        .into_any()
                } else {
                    form()
                }
            }}
        </section>
    }
}

/// Opened without a token: the link was cut off (some mail programs wrap long lines).
#[component]
pub fn IncompleteLink() -> impl IntoView {
    view! {
        <div class="form-error" role="alert">
            <p>
                "This link is incomplete. Open it again from the email, or copy the whole address into "
                "your browser."
            </p>
        </div>
    }
}
