//! "Put my address back", from the email sent to the old address when a change of address is
//! confirmed: undoes the change and secures the account in one step.
//!
//! Opening the link only shows a button (mail scanners follow links); restoring is a POST.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::auth::RestoreEmail;
use crate::components::auth_forms::{
    FormError, FormSuccess, SubmitButton, action_error, action_succeeded, form_error,
};
use crate::components::user_menu::use_session_user;
use crate::pages::auth::verify_email::IncompleteLink;
use crate::routes;

#[component]
pub fn RestoreEmailPage() -> impl IntoView {
    let restore = ServerAction::<RestoreEmail>::new();
    let error = action_error(restore);
    let done = action_succeeded(restore);
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
        <Title text="Put your email address back — Nest Egg" />
        <section class="form-card auth-card">
            <h1>"Put your email address back"</h1>
            {move || {
                if done.get() {
                    view! {
                        <FormSuccess message="Done. Your account has its previous email address again, every session was signed out, and your password no longer works. We emailed a link to choose a new one to that address." />
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
                            "If you didn't change your account's email address, someone else did, and "
                            "they may know your password. This puts back the address this link was "
                            "sent to, signs out every session (including any they have), stops the "
                            "current password from working, and emails you a link to choose a new one. "
                            "Two-factor authentication that was set up since the change is removed too."
                        </p>
                        <ActionForm action=restore attr:class="restore-email-form">
                            <FormError message=form_error(error, &[]) />
                            <input type="hidden" name="token" value=move || token.get() />
                            <SubmitButton
                                label="Put my address back and secure my account"
                                pending=restore.pending()
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
