//! Two-factor authentication settings: set up an authenticator app (QR code or typed key, confirmed
//! with a first code), see and replace backup codes, move to a new phone, turn it off.
//!
//! Starting setup or a move, seeing their secret and new backup codes need the password within the
//! sudo window; when it has lapsed the page asks for the password first.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::auth::ConfirmPassword;
use crate::api::mfa::{
    CancelTwoFactorReplacement, ConfirmTwoFactorReplacement, DisableTwoFactor, EnableTwoFactor,
    RegenerateBackupCodes, StartTwoFactorReplacement, StartTwoFactorSetup, two_factor_status,
};
use crate::components::auth_forms::{
    FormError, FormSuccess, PasswordField, SecondFactorCodeField, SubmitButton, TextField,
    action_error, action_succeeded, field_error, form_error,
};
use crate::pages::settings::{LoadError, ReauthForm, SettingsLayout, SignedIn};
use crate::routes;
use crate::types::{TotpSetupView, TwoFactorView, UserView};

/// At or below this many unused backup codes the page warns (as the service does).
const LOW_BACKUP_CODES: u32 = 3;

/// Every action of the page; the status is reloaded after any of them.
#[derive(Clone, Copy)]
struct Actions {
    reauth: ServerAction<ConfirmPassword>,
    start: ServerAction<StartTwoFactorSetup>,
    enable: ServerAction<EnableTwoFactor>,
    regenerate: ServerAction<RegenerateBackupCodes>,
    start_replacement: ServerAction<StartTwoFactorReplacement>,
    confirm_replacement: ServerAction<ConfirmTwoFactorReplacement>,
    cancel_replacement: ServerAction<CancelTwoFactorReplacement>,
    disable: ServerAction<DisableTwoFactor>,
}

#[component]
pub fn SettingsTwoFactorPage() -> impl IntoView {
    let actions = Actions {
        reauth: ServerAction::new(),
        start: ServerAction::new(),
        enable: ServerAction::new(),
        regenerate: ServerAction::new(),
        start_replacement: ServerAction::new(),
        confirm_replacement: ServerAction::new(),
        cancel_replacement: ServerAction::new(),
        disable: ServerAction::new(),
    };

    view! {
        <Title text="Two-factor authentication — Nest Egg" />
        <SettingsLayout title="Two-factor authentication">
            <SignedIn next=routes::SETTINGS_TWO_FACTOR render=move |user| { view! { <TwoFactorSettings user=user actions=actions /> }.into_any() } />
        </SettingsLayout>
    }
}

#[component]
fn TwoFactorSettings(user: UserView, actions: Actions) -> impl IntoView {
    let status = Resource::new(
        move || {
            (
                actions.reauth.version().get(),
                actions.start.version().get(),
                actions.enable.version().get(),
                actions.regenerate.version().get(),
                actions.start_replacement.version().get(),
                actions.confirm_replacement.version().get(),
                actions.cancel_replacement.version().get(),
                actions.disable.version().get(),
            )
        },
        |_| two_factor_status(),
    );
    // New backup codes stay on screen until the person says they saved them.
    let fresh_codes = RwSignal::new(None::<Vec<String>>);
    Effect::new(move |_| {
        if let Some(Ok(view)) = actions.enable.value().get() {
            fresh_codes.set(Some(view.codes));
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(view)) = actions.regenerate.value().get() {
            fresh_codes.set(Some(view.codes));
        }
    });
    let email = user.email.clone();

    view! {
        {move || {
            fresh_codes
                .get()
                .map(|codes| {
                    view! {
                        <BackupCodesPanel
                            codes=codes
                            email=email.clone()
                            on_done=move || fresh_codes.set(None)
                        />
                    }
                })
        }}
        <div class="two-factor-status" class:hidden=move || fresh_codes.with(Option::is_some)>
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match status.await {
                        Ok(view) => view! { <StatusView view=view actions=actions /> }.into_any(),
                        Err(error) => view! { <LoadError error=error /> }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}

#[component]
fn StatusView(view: TwoFactorView, actions: Actions) -> impl IntoView {
    let disabled_now = action_succeeded(actions.disable);
    match (view.enabled_on.clone(), view.setup.clone()) {
        (Some(enabled_on), _) => view! { <EnabledView view=view enabled_on=enabled_on actions=actions /> }
            .into_any(),
        (None, Some(setup)) => view! { <SetupView setup=setup actions=actions /> }.into_any(),
        (None, None) => view! {
            {move || disabled_now.get().then(|| view! {
                <FormSuccess message="Two-factor authentication is off. Signing in now needs only your password." />
            })}
            {view.required.then(|| view! {
                <div class="notice notice-warning" role="status">
                    <p>
                        "Your account must use two-factor authentication. Set it up to continue using Nest Egg."
                    </p>
                </div>
            })}
            <section class="settings-section">
                <h2>"Protect your account with a second step"</h2>
                <p>
                    "When you sign in, Nest Egg will ask for a 6-digit code from an authenticator app on your phone "
                    "(such as Google Authenticator, Microsoft Authenticator, 1Password or Aegis) as well as your password. "
                    "Someone who learns your password still cannot get in."
                </p>
                {if view.reauth_needed {
                    view! { <ReauthForm action=actions.reauth purpose="set up two-factor authentication" /> }
                        .into_any()
                } else {
                    view! { <StartSetupForm action=actions.start label="Set up two-factor authentication" /> }
                        .into_any()
                }}
            </section>
        }
            .into_any(),
    }
}

#[component]
fn StartSetupForm(action: ServerAction<StartTwoFactorSetup>, label: &'static str) -> impl IntoView {
    let error = action_error(action);
    view! {
        <ActionForm action=action attr:class="start-setup-form">
            <FormError message=form_error(error, &[]) />
            <SubmitButton label=label pending=action.pending() />
        </ActionForm>
    }
}

/// Step by step: scan (or type) the secret, then prove it with a first code.
#[component]
fn SetupView(setup: TotpSetupView, actions: Actions) -> impl IntoView {
    let error = action_error(actions.enable);
    view! {
        <section class="settings-section two-factor-setup">
            <h2>"Set up your authenticator app"</h2>
            <ol class="setup-steps">
                <ScanSteps setup=setup />
                <li>
                    <p>"Enter the 6-digit code the app now shows for Nest Egg."</p>
                    <ActionForm action=actions.enable attr:class="enable-two-factor-form">
                        <FormError message=form_error(error, &["code"]) />
                        <TextField
                            id="enable-code"
                            name="code"
                            label="6-digit code"
                            inputmode="numeric"
                            autocomplete="one-time-code"
                            maxlength="7"
                            required=true
                            error=field_error(error, "code")
                        />
                        <SubmitButton label="Turn on two-factor authentication" pending=actions.enable.pending() />
                    </ActionForm>
                    <noscript>
                        <p class="hint">"Turning this on needs JavaScript, so that your backup codes can be shown to you."</p>
                    </noscript>
                </li>
            </ol>
            <details class="setup-restart">
                <summary>"Start over with a new QR code"</summary>
                <StartSetupForm action=actions.start label="Get a new QR code" />
            </details>
        </section>
    }
}

/// The first two steps of adding a secret to an authenticator app: scan it, or type it.
#[component]
fn ScanSteps(setup: TotpSetupView) -> impl IntoView {
    let manual_key = setup.manual_key.clone();
    view! {
                <li>
                    <p>"Open your authenticator app and scan this QR code."</p>
                    <div
                        class="qr-code"
                        data-otpauth-uri=setup.otpauth_uri.clone()
                        inner_html=setup.qr_svg
                    ></div>
                    <p class="hint">
                        "On this phone? "
                        <a href=setup.otpauth_uri class="otpauth-link">
                            "Open in your authenticator app"
                        </a>
                    </p>
                </li>
                <li>
                    <p>"Can't scan it? Choose “enter a setup key” in the app and type this key (time-based):"</p>
                    <div class="manual-key-row">
                        <code class="manual-key" aria-label="Setup key">
                            {manual_key.clone()}
                        </code>
                        <CopyButton text=manual_key.replace(' ', "") />
                    </div>
                </li>
    }
}

/// Copies the setup key (only once the page is interactive: without JavaScript it stays selectable text).
#[component]
fn CopyButton(text: String) -> impl IntoView {
    let copied = RwSignal::new(false);
    let copy = move |_| {
        #[cfg(feature = "hydrate")]
        {
            let clipboard = window().navigator().clipboard();
            let _ = clipboard.write_text(&text);
            copied.set(true);
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = &text;
    };
    view! {
        <button type="button" class="button button-small button-secondary copy-button js-only" on:click=copy>
            {move || if copied.get() { "Copied" } else { "Copy key" }}
        </button>
    }
}

#[component]
fn EnabledView(view: TwoFactorView, enabled_on: String, actions: Actions) -> impl IntoView {
    let remaining = view.backup_codes_remaining;
    let reauth_needed = view.reauth_needed;
    let regenerate_error = action_error(actions.regenerate);
    view! {
        <section class="settings-section">
            <h2>"Two-factor authentication is on"</h2>
            <p class="two-factor-state">{format!("On since {enabled_on}.")}</p>
            <p class="backup-codes-remaining">
                {format!(
                    "{remaining} unused backup {} left.",
                    if remaining == 1 { "code" } else { "codes" },
                )}
            </p>
            {(remaining <= LOW_BACKUP_CODES).then(|| view! {
                <div class="notice notice-warning backup-codes-low" role="status">
                    <p>
                        "You are running low on backup codes. Create a new set so you can still get in if you lose your phone."
                    </p>
                </div>
            })}
        </section>
        <section class="settings-section">
            <h2>"Backup codes"</h2>
            <p>
                "Each backup code lets you in once if you can't use your authenticator app. "
                "For your safety we can't show existing codes again; creating a new set replaces them all."
            </p>
            {if reauth_needed {
                view! {
                    <ReauthForm
                        action=actions.reauth
                        purpose="create new backup codes or move to a new phone"
                        with_code=true
                    />
                }
                    .into_any()
            } else {
                view! {
                    <ActionForm action=actions.regenerate attr:class="regenerate-codes-form">
                        <FormError message=form_error(regenerate_error, &[]) />
                        <SubmitButton
                            label="Create new backup codes"
                            pending=actions.regenerate.pending()
                            button_class="button button-secondary"
                        />
                    </ActionForm>
                }
                    .into_any()
            }}
        </section>
        <ReplacementSection
            replacement=view.replacement
            waiting=view.replacement_waiting
            reauth_needed=reauth_needed
            actions=actions
        />
        {(!view.required).then(|| view! { <DisableForm action=actions.disable /> })}
    }
}

/// Moving to a new phone: the new app's secret, confirmed by its first code, replaces the one in use.
#[component]
fn ReplacementSection(
    replacement: Option<TotpSetupView>,
    waiting: bool,
    reauth_needed: bool,
    actions: Actions,
) -> impl IntoView {
    let moved = action_succeeded(actions.confirm_replacement);
    let start_error = action_error(actions.start_replacement);
    view! {
        <section class="settings-section two-factor-move">
            <h2>"Move to a new phone"</h2>
            {match replacement {
                Some(setup) => view! { <ReplacementSteps setup=setup actions=actions /> }.into_any(),
                None => view! {
                    {move || moved.get().then(|| view! {
                        <FormSuccess message="Two-factor authentication moved to your new phone. Codes from the old one no longer work." />
                    })}
                    <p>
                        "Got a new phone? Add Nest Egg to the authenticator app on it here. The app you use "
                        "now keeps working until the new one shows its first code, and your backup codes stay "
                        "the same."
                    </p>
                    {if reauth_needed && waiting {
                        view! {
                            <p class="hint replacement-waiting">
                                "A move to a new phone is waiting for the new app's first code. Confirm it's "
                                "you under “Backup codes” to finish it."
                            </p>
                        }
                            .into_any()
                    } else if reauth_needed {
                        view! { <p class="hint">"Confirm it's you under “Backup codes” first."</p> }.into_any()
                    } else {
                        view! {
                            <ActionForm action=actions.start_replacement attr:class="start-replacement-form">
                                <FormError message=form_error(start_error, &[]) />
                                <SubmitButton
                                    label="Set up a new phone"
                                    pending=actions.start_replacement.pending()
                                    button_class="button button-secondary"
                                />
                            </ActionForm>
                        }
                            .into_any()
                    }}
                }
                    .into_any(),
            }}
        </section>
    }
}

#[component]
fn ReplacementSteps(setup: TotpSetupView, actions: Actions) -> impl IntoView {
    let error = action_error(actions.confirm_replacement);
    let cancel_error = action_error(actions.cancel_replacement);
    view! {
        <p>"On the new phone:"</p>
        <ol class="setup-steps">
            <ScanSteps setup=setup />
            <li>
                <p>"Enter the 6-digit code the new phone's app now shows for Nest Egg."</p>
                <ActionForm action=actions.confirm_replacement attr:class="confirm-replacement-form">
                    <FormError message=form_error(error, &["code"]) />
                    <TextField
                        id="replacement-code"
                        name="code"
                        label="6-digit code from the new phone"
                        inputmode="numeric"
                        autocomplete="one-time-code"
                        maxlength="7"
                        required=true
                        error=field_error(error, "code")
                    />
                    <SubmitButton label="Move to this phone" pending=actions.confirm_replacement.pending() />
                </ActionForm>
            </li>
        </ol>
        <ActionForm action=actions.cancel_replacement attr:class="cancel-replacement-form">
            <FormError message=form_error(cancel_error, &[]) />
            <SubmitButton
                label="Keep the phone I use now"
                pending=actions.cancel_replacement.pending()
                button_class="button button-secondary"
            />
        </ActionForm>
    }
}

#[component]
fn DisableForm(action: ServerAction<DisableTwoFactor>) -> impl IntoView {
    let error = action_error(action);
    view! {
        <section class="settings-section">
            <h2>"Turn off two-factor authentication"</h2>
            <p>"Signing in will then need only your password. Your backup codes stop working."</p>
            <ActionForm action=action attr:class="disable-two-factor-form">
                <FormError message=form_error(error, &["password", "code"]) />
                <PasswordField
                    id="disable-password"
                    name="password"
                    label="Your password"
                    autocomplete="current-password"
                    error=field_error(error, "password")
                />
                <SecondFactorCodeField id="disable-code" error=error />
                <SubmitButton
                    label="Turn off two-factor authentication"
                    pending=action.pending()
                    button_class="button button-danger"
                />
            </ActionForm>
        </section>
    }
}

/// Fresh backup codes, shown once: download, print, and confirm they were saved before moving on.
#[component]
fn BackupCodesPanel(
    codes: Vec<String>,
    email: String,
    on_done: impl Fn() + Send + Sync + 'static,
) -> impl IntoView {
    let saved = RwSignal::new(false);
    let text = format!(
        "Nest Egg backup codes for {email}\n\nEach code can be used once to sign in without your \
         authenticator app.\n\n{}\n",
        codes.join("\n")
    );
    let download = data_url(&text);
    let print = move |_| {
        #[cfg(feature = "hydrate")]
        let _ = window().print();
    };
    // The form just used is hidden under this panel, which would leave the focus nowhere: it moves
    // to the heading, so a screen reader announces the codes.
    let heading = NodeRef::<leptos::html::H2>::new();
    Effect::new(move |_| {
        if let Some(heading) = heading.get() {
            let _ = heading.focus();
        }
    });
    view! {
        <section class="settings-section backup-codes-panel" aria-labelledby="backup-codes-heading">
            <h2 id="backup-codes-heading" tabindex="-1" node_ref=heading>"Save your backup codes"</h2>
            <p class="no-print">
                "Two-factor authentication is on. If you lose your phone, each of these codes lets you sign in once. "
                "Keep them somewhere safe, like a password manager or a printed copy. "
                <strong>"They won't be shown again."</strong>
            </p>
            <ul class="backup-codes">
                {codes
                    .into_iter()
                    .map(|code| view! { <li><code class="backup-code">{code}</code></li> })
                    .collect_view()}
            </ul>
            <div class="backup-codes-actions no-print">
                <a class="button button-secondary" href=download download="nest-egg-backup-codes.txt">
                    "Download as .txt"
                </a>
                <button type="button" class="button button-secondary js-only" on:click=print>
                    "Print"
                </button>
            </div>
            <div class="field field-checkbox no-print">
                <label class="checkbox" for="backup-codes-saved">
                    <input
                        id="backup-codes-saved"
                        type="checkbox"
                        prop:checked=move || saved.get()
                        on:change=move |ev| saved.set(event_target_checked(&ev))
                    />
                    <span>"I have saved these codes"</span>
                </label>
            </div>
            <button
                type="button"
                class="button no-print"
                disabled=move || !saved.get()
                on:click=move |_| on_done()
            >
                "Continue"
            </button>
        </section>
    }
}

/// A `data:` URL holding `text`, so the codes download without another request (and without being
/// sent anywhere).
fn data_url(text: &str) -> String {
    let mut url = String::from("data:text/plain;charset=utf-8,");
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            url.push(byte as char);
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::data_url;

    #[test]
    fn the_download_link_carries_the_text_percent_encoded() {
        assert_eq!(
            data_url("a b\nc-d@e"),
            "data:text/plain;charset=utf-8,a%20b%0Ac-d%40e"
        );
    }
}
