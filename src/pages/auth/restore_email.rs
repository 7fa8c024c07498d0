//! "Put my address back", from the email sent to the old address when a change of address is
//! confirmed: undoes the change and secures the account in one step.
//!
//! Opening the link only shows a button (mail scanners follow links); restoring is a POST.

use leptos::prelude::*;

use crate::api::auth::RestoreEmail;
use crate::components::auth_forms::{
    FormError, SubmitButton, action_error, action_succeeded, form_error,
};
use crate::pages::auth::not_me::{TakeBackLink, TakeBackPage};

#[component]
pub fn RestoreEmailPage() -> impl IntoView {
    let restore = ServerAction::<RestoreEmail>::new();
    let error = action_error(restore);
    let link = TakeBackLink::new(action_succeeded(restore));
    let token = link.token;
    view! {
        <TakeBackPage
            link=link
            title="Put your email address back — Nest Egg"
            heading="Put your email address back"
            done="Done. Your account has its previous email address again, every session was signed out, and your password no longer works. We emailed a link to choose a new one to that address."
            explanation="If you didn't change your account's email address, someone else did, and they may know your password. This puts back the address this link was sent to, signs out every session (including any they have), stops the current password from working, and emails you a link to choose a new one. Two-factor authentication that was set up since the change is removed too."
            form=move || view! {
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
        />
    }
}
