//! The second step of signing in: a code from the authenticator app, or a backup code.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::mfa::{CancelSignIn, VerifySignInCode, pending_sign_in};
use crate::components::auth_forms::{
    FormError, SubmitButton, TextField, action_error, field_error, form_error, refusals,
};
use crate::pages::settings::LoadError;
use crate::routes;

#[component]
pub fn LoginTwoFactorPage() -> impl IntoView {
    let verify = ServerAction::<VerifySignInCode>::new();
    // Reloaded after each refused attempt: too many wrong codes end the pending sign-in.
    let refused = refusals(verify);
    let pending = Resource::new(move || refused.get(), |_| pending_sign_in());
    let query = use_query_map();
    let use_backup = Memo::new(move |_| query.with(|q| q.get_str("backup") == Some("1")));

    view! {
        <Title text="Two-factor authentication — Nest Egg" />
        <section class="form-card auth-card">
            <h1>"Two-factor authentication"</h1>
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match pending.await {
                        Ok(true) => view! { <CodeForm verify=verify use_backup=use_backup /> }.into_any(),
                        Ok(false) => view! { <Expired verify=verify /> }.into_any(),
                        // Not "expired" when it could not be found out (an outage, a rate limit):
                        // the sign-in may well be waiting still.
                        Err(error) => view! { <LoadError error=error /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn CodeForm(verify: ServerAction<VerifySignInCode>, use_backup: Memo<bool>) -> impl IntoView {
    let error = action_error(verify);
    let cancel = ServerAction::<CancelSignIn>::new();
    view! {
        {move || {
            if use_backup.get() {
                view! {
                    <p>"Enter one of the backup codes you saved when you set up two-factor authentication. Each code works once."</p>
                    <ActionForm action=verify attr:class="two-factor-form backup-code-form">
                        <FormError message=form_error(error, &["code"]) />
                        <TextField
                            id="two-factor-backup-code"
                            name="code"
                            label="Backup code"
                            autocomplete="off"
                            maxlength="20"
                            required=true
                            hint="Like abcde-12345."
                            error=field_error(error, "code")
                        />
                        <SubmitButton label="Sign in" pending=verify.pending() />
                    </ActionForm>
                    <p class="form-links">
                        <a href=routes::LOGIN_TWO_FACTOR>"Use your authenticator app instead"</a>
                    </p>
                }
                    .into_any()
            } else {
                view! {
                    <p>"Open your authenticator app and enter the 6-digit code it shows for Nest Egg."</p>
                    <ActionForm action=verify attr:class="two-factor-form totp-form">
                        <FormError message=form_error(error, &["code"]) />
                        <TextField
                            id="two-factor-code"
                            name="code"
                            label="6-digit code"
                            inputmode="numeric"
                            autocomplete="one-time-code"
                            maxlength="7"
                            required=true
                            error=field_error(error, "code")
                        />
                        <SubmitButton label="Sign in" pending=verify.pending() />
                    </ActionForm>
                    <p class="form-links">
                        <a href=format!("{}?backup=1", routes::LOGIN_TWO_FACTOR) class="use-backup-code">
                            "Use a backup code"
                        </a>
                    </p>
                }
                    .into_any()
            }
        }}
        <ActionForm action=cancel attr:class="cancel-sign-in-form">
            <FormError message=form_error(action_error(cancel), &[]) />
            <SubmitButton label="Cancel and sign in again" pending=cancel.pending() button_class="link-button" />
        </ActionForm>
    }
}

/// No sign-in is waiting: it expired (5 minutes), was stopped after wrong codes, or never started.
#[component]
fn Expired(verify: ServerAction<VerifySignInCode>) -> impl IntoView {
    let error = action_error(verify);
    view! {
        <FormError message=form_error(error, &[]) />
        <p class="two-factor-expired">
            "This sign-in has expired or was stopped. For your security, please sign in again with your password."
        </p>
        <a class="button" href=routes::LOGIN>
            "Sign in"
        </a>
    }
}
