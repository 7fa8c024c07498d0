//! "This wasn't me", from the new-sign-in email: secure the account in one step.
//!
//! Opening the link only shows a button (mail scanners follow links); securing is a POST.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::auth::ReportSignIn;
use crate::components::auth_forms::{
    FormError, FormSuccess, SubmitButton, action_error, action_succeeded, form_error,
};
use crate::components::user_menu::use_session_user;
use crate::pages::auth::verify_email::IncompleteLink;
use crate::routes;

#[component]
pub fn NotMePage() -> impl IntoView {
    let report = ServerAction::<ReportSignIn>::new();
    let error = action_error(report);
    let done = action_succeeded(report);
    let query = use_query_map();
    let token = Memo::new(move |_| query.with(|q| q.get("token")).unwrap_or_default());
    // This browser was signed out with every other session: the header must say so.
    let session = use_session_user();
    Effect::new(move |_| {
        if done.get() {
            session.refetch();
        }
    });

    view! {
        <Title text="Secure your account — Nest Egg" />
        <section class="form-card auth-card">
            <h1>"Secure your account"</h1>
            {move || {
                if done.get() {
                    view! {
                        <FormSuccess message="Done. Every session was signed out and your password no longer works. We emailed you a link to choose a new one." />
                        <p class="form-links">
                            <a href=routes::FORGOT_PASSWORD>"Didn't get the email?"</a>
                        </p>
                    }
                        .into_any()
                } else if token.with(String::is_empty) {
                    view! { <IncompleteLink /> }.into_any()
                } else {
                    view! {
                        <p>
                            "If you didn't sign in just now, someone else may know your password. This signs out "
                            "every session (including any they have), stops your current password from working, "
                            "and emails you a link to choose a new one."
                        </p>
                        <ActionForm action=report attr:class="not-me-form">
                            <FormError message=form_error(error, &[]) />
                            <input type="hidden" name="token" value=move || token.get() />
                            <SubmitButton
                                label="Sign out everywhere and reset my password"
                                pending=report.pending()
                                button_class="button button-danger"
                            />
                        </ActionForm>
                    }
                        .into_any()
                }
            }}
        </section>
    }
}
