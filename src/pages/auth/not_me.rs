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
    let link = TakeBackLink::new(action_succeeded(report));
    let token = link.token;
    view! {
        <TakeBackPage
            link=link
            title="Secure your account — Nest Egg"
            heading="Secure your account"
            done="Done. Every session was signed out and your password no longer works. We emailed you a link to choose a new one."
            explanation="If you didn't sign in just now, someone else may know your password. This signs out every session (including any they have), stops your current password from working, and emails you a link to choose a new one."
            form=move || view! {
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
        />
    }
}

/// The state of a page behind a link that takes the account back ("this wasn't me", "put my
/// address back"): the link's token, and whether its action succeeded.
#[derive(Clone, Copy)]
pub struct TakeBackLink {
    pub token: Memo<String>,
    done: Memo<bool>,
}

impl TakeBackLink {
    pub fn new(done: Memo<bool>) -> Self {
        let query = use_query_map();
        let token = Memo::new(move |_| query.with(|q| q.get("token")).unwrap_or_default());
        TakeBackLink { token, done }
    }
}

/// Such a page: the explanation and the form (a button that posts the token), or what was done,
/// or that the link is incomplete.
#[component]
pub fn TakeBackPage(
    link: TakeBackLink,
    title: &'static str,
    heading: &'static str,
    done: &'static str,
    explanation: &'static str,
    #[prop(into)] form: ViewFn,
) -> impl IntoView {
    // This browser was signed out with every other session: the header must say so.
    let session = use_session_user();
    Effect::new(move |_| {
        if link.done.get() {
            session.refetch();
        }
    });
    view! {
        <Title text=title />
        <section class="form-card auth-card">
            <h1>{heading}</h1>
            {move || {
                if link.done.get() {
                    view! {
                        <FormSuccess message=done />
                        <p class="form-links">
                            <a href=routes::FORGOT_PASSWORD>"Didn't get the email?"</a>
                        </p>
                    }
                        .into_any()
                } else if link.token.with(String::is_empty) {
                    view! { <IncompleteLink /> }.into_any()
                } else {
                    view! {
                        <p>{explanation}</p>
                        {form.run()}
                    }
                        .into_any()
                }
            }}
        </section>
    }
}
