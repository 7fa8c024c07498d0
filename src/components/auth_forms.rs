//! Shared pieces of the account forms: fields with their error next to them, the password field with
//! its live strength meter, the error/success boxes and a submit button with a pending state.
//!
//! Every form is an `ActionForm`, so it posts as a plain HTML form before the WASM has loaded (the
//! server then redirects back, with a failure encoded in the query string that `ServerAction::new`
//! picks up) and is dispatched without a page load afterwards. Either way the error ends up in
//! `action.value()`, which is all the helpers below read.

use std::time::Duration;

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos::server_fn::error::ServerFnUrlError;
use leptos_router::hooks::use_url;

use crate::api::auth::PasswordStrength;
use crate::error::AppError;

/// How long typing has to pause before the password is scored.
const STRENGTH_DEBOUNCE: Duration = Duration::from_millis(300);

/// The error of the action's latest run, if it failed.
pub fn action_error<S>(action: ServerAction<S>) -> Signal<Option<AppError>>
where
    S: ServerFn<Error = AppError> + Clone + Send + Sync + 'static,
    S::Output: Clone + Send + Sync + 'static,
{
    Signal::derive(move || action.value().get().and_then(Result::err))
}

/// Changes each time `action` is refused, and only then: for what a page loads again after a refusal
/// but not after a success, which leaves the page (loaded again first, it would briefly show what
/// comes after the success: a used link called invalid, a finished sign-in step called expired).
pub fn refusals<S>(action: ServerAction<S>) -> Memo<usize>
where
    S: ServerFn<Error = AppError> + Clone + Send + Sync + 'static,
    S::Output: Clone + Send + Sync + 'static,
{
    Memo::new(move |before: Option<&usize>| {
        if action.value().with(|v| matches!(v, Some(Err(_)))) {
            action.version().get()
        } else {
            before.copied().unwrap_or_default()
        }
    })
}

/// Empties `form` each time `action` succeeds from now on: what was typed (an address, a password)
/// must not stay in the page. Only on a new success: a view drawn again later (after another action
/// reloaded what it shows) must not be emptied for an earlier one, over what was typed since.
pub fn reset_on_success<S>(action: ServerAction<S>, form: NodeRef<leptos::html::Form>)
where
    S: ServerFn<Error = AppError> + Clone + Send + Sync + 'static,
    S::Output: Clone + Send + Sync + 'static,
{
    Effect::new(move |seen: Option<usize>| {
        let version = action.version().get();
        if seen.is_some_and(|seen| seen != version)
            && action.value().with_untracked(|v| matches!(v, Some(Ok(_))))
            && let Some(form) = form.get_untracked()
        {
            form.reset();
        }
        version
    });
}

/// Whether the action's latest run succeeded. Only changes between success and anything else, so
/// views keyed on it are not rebuilt (and lose nothing typed) when one error follows another.
pub fn action_succeeded<S>(action: ServerAction<S>) -> Memo<bool>
where
    S: ServerFn<Error = AppError> + Clone + Send + Sync + 'static,
    S::Output: Clone + Send + Sync + 'static,
{
    // Without JavaScript the form posted normally and the server sent the browser back here with
    // `?done=<endpoint>` (see `api_support::redirect_back_done`).
    let query = leptos_router::hooks::use_query_map();
    let endpoint = S::PATH.rsplit('/').next().unwrap_or_default();
    // Once the action has run in this page, its result decides: the `done` left in the URL by an
    // earlier plain post says nothing about it.
    Memo::new(move |_| match action.value().get() {
        Some(result) => result.is_ok(),
        None => query.with(|q| q.get("done").is_some_and(|done| done == endpoint)),
    })
}

/// Of the actions whose outcomes share one place in a page, the one that finished last (its index in
/// `versions`, their `version()` signals; none before any has finished here), so that a later
/// outcome replaces an earlier one instead of showing beside it.
pub fn last_finished(versions: Vec<RwSignal<usize>>) -> ReadSignal<Option<usize>> {
    let last = RwSignal::new(None);
    for (index, version) in versions.into_iter().enumerate() {
        Effect::new(move |previous: Option<usize>| {
            let finished = version.get();
            if previous.is_some_and(|previous| previous != finished) {
                last.set(Some(index));
            }
            finished
        });
    }
    last.read_only()
}

/// Whether the outcome of the action at `index` is the one to show, given [`last_finished`]: before
/// any has finished in this page, each may (a plain post's result in the URL names one at most).
pub fn outcome_shown(last: ReadSignal<Option<usize>>, index: usize) -> bool {
    last.get().is_none_or(|last| last == index)
}

/// The message that belongs next to the field called `name`.
pub fn field_error(error: Signal<Option<AppError>>, name: &'static str) -> Signal<Option<String>> {
    Signal::derive(move || error.get().and_then(|err| err.for_field(name)))
}

/// The message for the box at the top of a form: every error that does not belong next to one of
/// the form's `fields` (no field, rate limits, outages, or a field this form does not have).
pub fn form_error(
    error: Signal<Option<AppError>>,
    fields: &'static [&'static str],
) -> Signal<Option<String>> {
    Signal::derive(move || {
        error
            .get()
            .filter(|err| !fields.iter().any(|field| err.for_field(field).is_some()))
            .map(|err| err.to_string())
    })
}

/// The error a plain (no-JavaScript) form post to the server function at `path` left in the query
/// string (`?__path=…&__err=…`).
///
/// `ServerAction::new` reads this by itself, but only below `<Routes>`, which provides it as context.
/// Forms in the layout (header, banner) sit outside `<Routes>` and use this instead.
pub fn url_error_for(path: &'static str) -> Memo<Option<AppError>> {
    let url = use_url();
    Memo::new(move |_| {
        url.with(|url| {
            let params = url.search_params();
            match (params.get_str("__path"), params.get_str("__err")) {
                (Some(err_path), Some(err)) if err_path == path => {
                    Some(ServerFnUrlError::<AppError>::decode_err(err))
                }
                _ => None,
            }
        })
    })
}

/// The box at the top of a form for errors that belong to no single field.
#[component]
pub fn FormError(#[prop(into)] message: Signal<Option<String>>) -> impl IntoView {
    move || {
        message.get().map(|message| {
            view! {
                <div class="form-error" role="alert">
                    <p>{message}</p>
                </div>
            }
        })
    }
}

/// A confirmation box. The message is static text, never user input.
#[component]
pub fn FormSuccess(message: &'static str) -> impl IntoView {
    view! {
        <div class="form-success" role="status">
            <p>{message}</p>
        </div>
    }
}

/// The submit button: disabled, busy and with "…" while the action runs.
#[component]
pub fn SubmitButton(
    #[prop(into)] label: String,
    #[prop(into)] pending: Signal<bool>,
    #[prop(default = "button")] button_class: &'static str,
) -> impl IntoView {
    view! {
        <button
            type="submit"
            class=button_class
            disabled=move || pending.get()
            aria-busy=move || pending.get().then_some("true")
        >
            {move || if pending.get() { format!("{label}…") } else { label.clone() }}
        </button>
    }
}

/// The ids an input is described by: its hint, its strength meter, and its error while there is one.
fn described_by(
    hint_id: Option<String>,
    meter_id: Option<String>,
    error_id: String,
    error: Signal<Option<String>>,
) -> impl Fn() -> Option<String> + Send + Sync + 'static {
    move || {
        let mut ids: Vec<&str> = Vec::with_capacity(3);
        if let Some(id) = hint_id.as_deref() {
            ids.push(id);
        }
        if let Some(id) = meter_id.as_deref() {
            ids.push(id);
        }
        if error.with(Option::is_some) {
            ids.push(&error_id);
        }
        (!ids.is_empty()).then(|| ids.join(" "))
    }
}

/// What was typed in the field `name` of a form refused without JavaScript: such a form comes back
/// as a new page, and the server carries its non-secret fields back as `keep_<name>` (see
/// `middleware::api_errors`) so nothing typed is lost.
///
/// Only for the page as the server sent it (and its hydration). Once the page is live, a part of it
/// drawn again (the household's sections, after any action there; a form rebuilt after a rename)
/// would put back what the URL kept from that earlier refusal, over what was typed or saved since.
pub fn kept_value(name: &str) -> Option<String> {
    #[cfg(feature = "hydrate")]
    if crate::app::is_hydrated() {
        return None;
    }
    leptos_router::hooks::use_query_map()
        .with_untracked(|q| q.get(&format!("keep_{name}")))
        .filter(|v| v.len() <= 254)
}

/// A labelled text-like input (text, email) with an optional hint and its error underneath.
///
/// The value is never bound to a signal: the browser keeps what was typed when the server answers
/// with an error. `track` only mirrors the typing into a signal (e.g. for the strength meter).
#[component]
pub fn TextField(
    id: &'static str,
    name: &'static str,
    label: &'static str,
    #[prop(into)] error: Signal<Option<String>>,
    #[prop(default = "text")] input_type: &'static str,
    #[prop(optional)] autocomplete: Option<&'static str>,
    #[prop(optional)] inputmode: Option<&'static str>,
    #[prop(optional)] hint: Option<&'static str>,
    #[prop(optional)] maxlength: Option<&'static str>,
    #[prop(optional)] required: bool,
    #[prop(optional)] track: Option<RwSignal<String>>,
) -> impl IntoView {
    let error_id = format!("{id}-error");
    let hint_id = hint.map(|_| format!("{id}-hint"));
    let describedby = described_by(hint_id.clone(), None, error_id.clone(), error);
    let is_email = input_type == "email";
    let kept = kept_value(name);
    view! {
        <div class="field">
            <label for=id>{label}</label>
            <input
                id=id
                name=name
                value=kept
                type=input_type
                autocomplete=autocomplete
                inputmode=inputmode.or(is_email.then_some("email"))
                maxlength=maxlength
                required=required
                autocapitalize=is_email.then_some("none")
                spellcheck=is_email.then_some("false")
                aria-invalid=move || error.with(Option::is_some).then_some("true")
                aria-describedby=describedby
                on:input=move |ev| {
                    if let Some(track) = track {
                        track.set(event_target_value(&ev));
                    }
                }
            />
            {hint
                .zip(hint_id)
                .map(|(hint, hint_id)| {
                    view! {
                        <p class="hint" id=hint_id>
                            {hint}
                        </p>
                    }
                })}
            <p class="field-error" id=error_id role="alert">
                {move || error.get()}
            </p>
        </div>
    }
}

/// A required "I agree" checkbox (posted as `on` when ticked). The label is the children, so it can
/// hold links.
#[component]
pub fn CheckboxField(
    id: &'static str,
    name: &'static str,
    #[prop(into)] error: Signal<Option<String>>,
    children: Children,
) -> impl IntoView {
    let error_id = format!("{id}-error");
    let describedby = described_by(None, None, error_id.clone(), error);
    view! {
        <div class="field field-checkbox">
            <label class="checkbox" for=id>
                <input
                    id=id
                    name=name
                    type="checkbox"
                    value="on"
                    // Ticked again after a refused form without JavaScript (`keep_…`).
                    checked=kept_value(name).is_some_and(|v| v == "on")
                    required=true
                    aria-invalid=move || error.with(Option::is_some).then_some("true")
                    aria-describedby=describedby
                />
                <span>{children()}</span>
            </label>
            <p class="field-error" id=error_id role="alert">
                {move || error.get()}
            </p>
        </div>
    }
}

/// A password input. Never prefilled and never echoed: its value only lives in the browser's field
/// (and, with `meter`, in a signal that feeds the strength check).
///
/// With `meter`, a strength meter under the field scores the password ~300 ms after typing stops,
/// by asking the server (`password_strength`) so the meter and the policy never disagree. That only
/// happens in the browser, from an effect; server rendering shows an empty live region.
#[component]
pub fn PasswordField(
    id: &'static str,
    name: &'static str,
    label: &'static str,
    autocomplete: &'static str,
    #[prop(into)] error: Signal<Option<String>>,
    #[prop(optional)] hint: Option<&'static str>,
    #[prop(optional)] meter: bool,
    /// The email address the password belongs to, so the meter can flag passwords built from it.
    #[prop(optional, into)]
    email: Option<Signal<String>>,
    /// Mirror of the typed password; give one to clear the meter when the form is reset.
    #[prop(optional)]
    track: Option<RwSignal<String>>,
) -> impl IntoView {
    let password = track.unwrap_or_else(|| RwSignal::new(String::new()));
    let error_id = format!("{id}-error");
    let hint_id = hint.map(|_| format!("{id}-hint"));
    let meter_id = meter.then(|| format!("{id}-strength"));
    let describedby = described_by(hint_id.clone(), meter_id.clone(), error_id.clone(), error);
    view! {
        <div class="field field-password">
            <label for=id>{label}</label>
            <input
                id=id
                name=name
                type="password"
                autocomplete=autocomplete
                required=true
                autocapitalize="none"
                spellcheck="false"
                aria-invalid=move || error.with(Option::is_some).then_some("true")
                aria-describedby=describedby
                on:input=move |ev| password.set(event_target_value(&ev))
            />
            {hint
                .zip(hint_id)
                .map(|(hint, hint_id)| {
                    view! {
                        <p class="hint" id=hint_id>
                            {hint}
                        </p>
                    }
                })}
            {meter_id.map(|meter_id| view! { <StrengthMeter id=meter_id password=password email=email /> })}
            <p class="field-error" id=error_id role="alert">
                {move || error.get()}
            </p>
        </div>
    }
}

/// The live verdict on a password: a `<meter>` from 0 to 4, a word, and what the policy objects to.
#[component]
fn StrengthMeter(
    id: String,
    password: RwSignal<String>,
    email: Option<Signal<String>>,
) -> impl IntoView {
    let check = ServerAction::<PasswordStrength>::new();
    let timer = StoredValue::new(None::<TimeoutHandle>);
    let cancel_pending = move || {
        if let Some(Some(handle)) = timer.try_update_value(Option::take) {
            handle.clear();
        }
    };

    // Effects only run in the browser, so the server never scores anything while rendering.
    Effect::new(move |_| {
        let typed = password.get();
        let email = email.map(|email| email.get()).unwrap_or_default();
        cancel_pending();
        if typed.is_empty() {
            return;
        }
        let scheduled = set_timeout_with_handle(
            move || {
                check.dispatch(PasswordStrength {
                    password: typed,
                    email,
                });
            },
            STRENGTH_DEBOUNCE,
        );
        if let Ok(handle) = scheduled {
            timer.set_value(Some(handle));
        }
    });
    on_cleanup(cancel_pending);

    let verdict = Memo::new(move |_| {
        if password.with(String::is_empty) {
            None
        } else {
            check.value().get().and_then(Result::ok)
        }
    });

    view! {
        <div class="password-strength" id=id aria-live="polite">
            {move || {
                verdict
                    .get()
                    .map(|verdict| {
                        let score = verdict.score.min(4);
                        view! {
                            <meter
                                class="strength-meter"
                                min="0"
                                max="4"
                                low="2"
                                high="3"
                                optimum="4"
                                value=score.to_string()
                                data-score=score.to_string()
                                aria-hidden="true"
                            ></meter>
                            <span class="strength-label">
                                {format!("Strength: {}", strength_word(score))}
                            </span>
                            {verdict
                                .problem
                                .map(|problem| {
                                    view! { <span class="strength-problem">{problem}</span> }
                                })}
                        }
                    })
            }}
        </div>
    }
}

fn strength_word(score: u8) -> &'static str {
    match score {
        0 | 1 => "weak",
        2 => "fair",
        3 => "good",
        _ => "strong",
    }
}

#[cfg(test)]
mod tests {
    use super::strength_word;

    #[test]
    fn every_score_has_a_word() {
        assert_eq!(strength_word(0), "weak");
        assert_eq!(strength_word(1), "weak");
        assert_eq!(strength_word(2), "fair");
        assert_eq!(strength_word(3), "good");
        assert_eq!(strength_word(4), "strong");
        assert_eq!(strength_word(200), "strong");
    }
}

/// The field for a second-factor code in a form that asks for one when two-factor authentication is
/// on, and for nothing more otherwise.
///
/// Decided in the browser, after hydration: the server enforces the code either way, and asking while
/// rendering cost the profile page about a quarter of its throughput. Until the browser knows, and
/// always without JavaScript, a refusal that names the code (`error`) shows the field, with its
/// message next to it; so does two-factor turned on in another tab since the page loaded. Once shown,
/// the field stays (with what was typed in it) whatever the next refusal is about.
#[component]
pub fn CodeFieldIfTwoFactorOn(id: &'static str, error: Signal<Option<AppError>>) -> impl IntoView {
    // Not a resource: one read inside the page's `Suspense` would hold the server's stream open for
    // an answer that only the browser fetches. Effects run only in the browser.
    let known_on = RwSignal::new(false);
    Effect::new(move |_| {
        leptos::task::spawn_local(async move {
            if let Ok(on) = crate::api::mfa::two_factor_on().await {
                known_on.set(on);
            }
        });
    });
    let on = Memo::new(move |shown: Option<&bool>| {
        shown.copied().unwrap_or(false)
            || known_on.get()
            || error.with(|err| {
                err.as_ref()
                    .is_some_and(|err| err.for_field("code").is_some())
            })
    });
    view! {
        <Show when=move || on.get()>
            <SecondFactorCodeField id=id error=error />
        </Show>
    }
}

/// The field for a second-factor code (from the authenticator app, or a backup code), named `code`
/// as every server function that takes one names it.
#[component]
pub fn SecondFactorCodeField(id: &'static str, error: Signal<Option<AppError>>) -> impl IntoView {
    view! {
        <TextField
            id=id
            name="code"
            label="Code from your app, or a backup code"
            autocomplete="one-time-code"
            maxlength="20"
            required=true
            error=field_error(error, "code")
        />
    }
}
