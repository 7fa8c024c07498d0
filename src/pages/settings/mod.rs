//! Account settings: a shared frame with a tab bar, and the prompt shown to visitors who are not
//! signed in.

pub mod account;
pub mod activity;
pub mod privacy;
pub mod profile;
pub mod security;
pub mod sessions;
pub mod two_factor;

use leptos::prelude::*;
use leptos_router::components::A;

use crate::api::auth::ConfirmPassword;
use crate::components::auth_forms::{
    FormError, PasswordField, SecondFactorCodeField, SubmitButton, action_error, field_error,
    form_error,
};
use crate::components::user_menu::use_session_user;
use crate::error::AppError;
use crate::routes;
use crate::types::UserView;

/// The frame around every settings page: the heading and the tabs between the pages.
#[component]
pub fn SettingsLayout(title: &'static str, children: Children) -> impl IntoView {
    view! {
        <div class="settings container">
            <nav class="settings-nav" aria-label="Settings">
                <A href=routes::SETTINGS_PROFILE attr:class="settings-nav-link">
                    "Profile"
                </A>
                <A href=routes::SETTINGS_SECURITY attr:class="settings-nav-link">
                    "Security"
                </A>
                <A href=routes::SETTINGS_SESSIONS attr:class="settings-nav-link">
                    "Sessions"
                </A>
                <A href=routes::SETTINGS_ACTIVITY attr:class="settings-nav-link">
                    "Activity"
                </A>
                <A href=routes::SETTINGS_PRIVACY attr:class="settings-nav-link">
                    "Privacy"
                </A>
                <A href=routes::SETTINGS_ACCOUNT attr:class="settings-nav-link">
                    "Account"
                </A>
            </nav>
            <div class="settings-content">
                <h1>{title}</h1>
                {children()}
            </div>
        </div>
    }
}

/// The body of a settings page: `render` with the signed-in person, the sign-in prompt (coming back
/// to `next`) for visitors, or the error when the person could not be loaded.
#[component]
pub fn SignedIn<F>(next: &'static str, render: F) -> impl IntoView
where
    F: Fn(UserView) -> AnyView + Clone + Send + Sync + 'static,
{
    let session = use_session_user();
    view! {
        <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
            {move || {
                let render = render.clone();
                Suspend::new(async move {
                    match session.resource().await {
                        Ok(Some(user)) => render(user),
                        Ok(None) => view! { <SignInPrompt next=next /> }.into_any(),
                        Err(error) => view! { <LoadError error=error /> }.into_any(),
                    }
                })
            }}
        </Transition>
    }
}

/// Shown instead of a settings page to someone who is not signed in; signing in comes back here.
#[component]
pub fn SignInPrompt(next: &'static str) -> impl IntoView {
    let href = format!("{}?next={}", routes::LOGIN, next);
    view! {
        <div class="sign-in-prompt">
            <p>"Sign in to see and change your account settings."</p>
            <a class="button" href=href>
                "Sign in"
            </a>
        </div>
    }
}

/// The signed-in person could not be loaded (the server is unavailable, …).
#[component]
pub fn LoadError(error: AppError) -> impl IntoView {
    view! {
        <div class="form-error" role="alert">
            <p>{error.to_string()}</p>
        </div>
    }
}

/// Asks for the password again before a sensitive change (sudo mode), and a code when two-factor
/// authentication is on: re-authenticating takes what signing in takes.
#[component]
pub fn ReauthForm(
    action: ServerAction<ConfirmPassword>,
    purpose: &'static str,
    #[prop(optional)] with_code: bool,
) -> impl IntoView {
    let error = action_error(action);
    let ask = if with_code {
        format!("For your security, enter your password and a code from your app to {purpose}.")
    } else {
        format!("For your security, enter your password to {purpose}.")
    };
    view! {
        <div class="reauth">
            <p>{ask}</p>
            <ActionForm action=action attr:class="reauth-form">
                <FormError message=form_error(error, &["password", "code"]) />
                <PasswordField
                    id="reauth-password"
                    name="password"
                    label="Your password"
                    autocomplete="current-password"
                    error=field_error(error, "password")
                />
                {with_code.then(|| view! {
                    <SecondFactorCodeField id="reauth-code" error=error />
                })}
                <SubmitButton label="Continue" pending=action.pending() />
            </ActionForm>
        </div>
    }
}
