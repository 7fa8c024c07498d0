//! Confirm a new email address from the link sent to it. Like verifying: the GET shows a button,
//! the POST uses the token.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::auth::ConfirmEmailChange;
use crate::components::auth_forms::{
    FormError, FormSuccess, SubmitButton, action_error, action_succeeded, form_error,
};
use crate::components::user_menu::use_session_user;
use crate::pages::auth::verify_email::IncompleteLink;
use crate::routes;

/// The token is hidden, so every error goes in the box at the top.
const FIELDS: &[&str] = &[];

#[component]
pub fn ConfirmEmailChangePage() -> impl IntoView {
    let confirm = ServerAction::<ConfirmEmailChange>::new();
    let error = action_error(confirm);
    let confirmed = action_succeeded(confirm);
    let query = use_query_map();
    let token = Memo::new(move |_| query.with(|q| q.get("token")).unwrap_or_default());

    // The header, banner and profile show the address: load it again.
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
            <p>"Confirm that you want to use this address to sign in and to receive messages from Nest Egg."</p>
            <ActionForm action=confirm attr:class="confirm-email-change-form">
                <FormError message=form_error(error, FIELDS) />
                <input type="hidden" name="token" value=move || token.get() />
                <SubmitButton label="Confirm my new email address" pending=confirm.pending() />
            </ActionForm>
            <p class="hint">
                "Link expired? Start the change again from your "
                <a href=routes::SETTINGS_PROFILE>"profile settings"</a>
                "."
            </p>
        }
        .into_any()
    };

    view! {
        <Title text="Confirm your new email address — Nest Egg" />
        <section class="form-card auth-card">
            <h1>"Confirm your new email address"</h1>
            {move || {
                if confirmed.get() {
                    view! {
                        <FormSuccess message="Your new email address is confirmed. Use it to sign in from now on." />
                        <p class="form-links">
                            <a href=routes::SETTINGS_PROFILE>"Go to your profile"</a>
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
