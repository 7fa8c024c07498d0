//! "Please confirm your email address": shown under the header on every page until the signed-in
//! person has confirmed it, with a button that sends the link again.

use leptos::prelude::*;
use leptos::server_fn::ServerFn;

use crate::api::auth::ResendVerification;
use crate::components::auth_forms::{SubmitButton, url_error_for};
use crate::components::user_menu::use_session_user;

#[component]
pub fn VerificationBanner() -> impl IntoView {
    let session = use_session_user();
    let resend = ServerAction::<ResendVerification>::new();
    // The banner is outside `<Routes>`, so a no-JavaScript post's error is read from the URL here.
    let url_error = url_error_for(<ResendVerification as ServerFn>::PATH);
    // …and its success from `?done=resend_verification` (see `api_support::redirect_back_done`).
    let query = leptos_router::hooks::use_query_map();
    let outcome = Signal::derive(move || match resend.value().get() {
        Some(result) => Some(result.map_err(|err| err.to_string())),
        None if query.with(|q| q.get_str("done") == Some("resend_verification")) => Some(Ok(())),
        None => url_error.get().map(|err| Err(err.to_string())),
    });

    view! {
        <Transition>
            {move || Suspend::new(async move {
                match session.resource().await {
                    Ok(Some(user)) if !user.email_verified => {
                        Some(
                            view! {
                                <div
                                    class="banner banner-warning verification-banner"
                                    role="region"
                                    aria-label="Email address not confirmed"
                                >
                                    <div class="container">
                                        <p>
                                            "Please confirm your email address — we sent a link to "
                                            <strong class="verification-email">{user.email}</strong>
                                            "."
                                        </p>
                                        <div class="verification-actions">
                                            <ActionForm
                                                action=resend
                                                attr:class="resend-verification-form"
                                            >
                                                <SubmitButton
                                                    label="Resend link"
                                                    pending=resend.pending()
                                                    button_class="button button-small button-secondary"
                                                />
                                            </ActionForm>
                                            {move || match outcome.get() {
                                                Some(Ok(())) => {
                                                    Some(
                                                        view! {
                                                            <p class="resend-status" role="status">
                                                                "Sent. Check your inbox."
                                                            </p>
                                                        }
                                                            .into_any(),
                                                    )
                                                }
                                                Some(Err(message)) => {
                                                    Some(
                                                        view! {
                                                            <p class="resend-error" role="alert">
                                                                {message}
                                                            </p>
                                                        }
                                                            .into_any(),
                                                    )
                                                }
                                                None => None,
                                            }}
                                        </div>
                                    </div>
                                </div>
                            },
                        )
                    }
                    _ => None,
                }
            })}
        </Transition>
    }
}
