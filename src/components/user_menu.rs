//! Who is signed in (loaded once per page, shared by the header, the banner and the settings pages),
//! and the account part of the header: sign-in links, or the user menu.

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_router::components::A;
use leptos_router::hooks::use_location;

use crate::api::auth::{SignOut, current_user};
use crate::components::auth_forms::{FormError, SubmitButton, url_error_for};
use crate::error::AppError;
use crate::routes;
use crate::types::UserView;

/// The signed-in person as a resource, provided as context by the layout.
#[derive(Clone, Copy)]
pub struct SessionUser(Resource<Result<Option<UserView>, AppError>>);

impl SessionUser {
    pub fn resource(self) -> Resource<Result<Option<UserView>, AppError>> {
        self.0
    }

    /// Loads the person again, e.g. after their address was confirmed or they signed out.
    pub fn refetch(self) {
        self.0.refetch();
    }
}

/// Creates the resource (keyed on the current path, so it is fresh after every navigation) and
/// provides it as context. Called once, by the layout.
pub fn provide_session_user() -> SessionUser {
    let location = use_location();
    // Blocking: the page is sent only once the user is known, so the header and the banner are in the
    // HTML itself (streamed-in fragments need JavaScript to be moved into place).
    let resource = Resource::new_blocking(move || location.pathname.get(), |_| current_user());
    let session = SessionUser(resource);
    provide_context(session);
    session
}

/// The resource the layout provided (or a new one when rendered outside the layout).
pub fn use_session_user() -> SessionUser {
    // Not `provide_session_user`: the context is also missing when a render is being torn down (the
    // client went away mid-page), and `use_location` would then panic for want of the router.
    use_context::<SessionUser>()
        .unwrap_or_else(|| SessionUser(Resource::new_blocking(|| (), |()| current_user())))
}

/// Holds a signed-in person on one page until they have done what the deployment requires: accept
/// updated terms (`/accept-terms`), then set up two-factor authentication (`REQUIRE_MFA`). The server
/// refuses their other requests anyway (`consent_required`, `mfa_setup_required`); this makes the way
/// out obvious. Deleting the account stays reachable: leaving is always possible.
#[component]
pub fn AccountGate() -> impl IntoView {
    let session = use_session_user();
    let location = use_location();
    // `Redirect` needs a matched route and this sits outside the routes, so redirect by hand: a 302 while
    // rendering on the server, a navigation in the browser.
    let navigate = leptos_router::hooks::use_navigate();
    view! {
        <Transition>
            {move || {
                let navigate = navigate.clone();
                Suspend::new(async move {
                    let Ok(Some(user)) = session.resource().await else {
                        return;
                    };
                    let path = location.pathname.get();
                    let target = if user.consent_required {
                        let allowed = [
                            routes::ACCEPT_TERMS,
                            routes::TERMS,
                            routes::PRIVACY,
                            routes::SETTINGS_PRIVACY,
                            routes::SETTINGS_ACCOUNT,
                            routes::NOT_ME,
                            routes::RESTORE_EMAIL,
                            routes::RESET_PASSWORD,
                            routes::VERIFY_EMAIL,
                            routes::CONFIRM_EMAIL_CHANGE,
                        ];
                        (!allowed.contains(&path.as_str())).then_some(routes::ACCEPT_TERMS)
                    } else if user.mfa_setup_required {
                        let allowed = [
                            routes::SETTINGS_TWO_FACTOR,
                            routes::SETTINGS_ACCOUNT,
                            routes::NOT_ME,
                            routes::RESTORE_EMAIL,
                            routes::RESET_PASSWORD,
                            routes::VERIFY_EMAIL,
                            routes::CONFIRM_EMAIL_CHANGE,
                        ];
                        (!allowed.contains(&path.as_str())).then_some(routes::SETTINGS_TWO_FACTOR)
                    } else {
                        None
                    };
                    if let Some(target) = target {
                        #[cfg(feature = "ssr")]
                        {
                            let _ = &navigate;
                            leptos_axum::redirect(target);
                        }
                        #[cfg(not(feature = "ssr"))]
                        navigate(target, Default::default());
                    }
                })
            }}
        </Transition>
    }
}

/// The account links of the header: "Sign in" / "Create account", or the user menu.
#[component]
pub fn AccountNav() -> impl IntoView {
    let session = use_session_user();
    view! {
        <Transition>
            {move || Suspend::new(async move {
                match session.resource().await {
                    Ok(Some(user)) => view! { <UserMenu user=user /> }.into_any(),
                    // Signed out, or the server could not say: offer to sign in either way.
                    _ => {
                        view! {
                            <A href=routes::LOGIN attr:class="nav-link nav-sign-in">
                                "Sign in"
                            </A>
                            <A href=routes::REGISTER attr:class="button button-small nav-register">
                                "Create account"
                            </A>
                        }
                            .into_any()
                    }
                }
            })}
        </Transition>
    }
}

/// The signed-in person's name, links to their settings, and "Sign out" (a POST form: a link could
/// be followed by prefetchers or other sites).
#[component]
pub fn UserMenu(user: UserView) -> impl IntoView {
    let session = use_session_user();
    let sign_out = ServerAction::<SignOut>::new();
    // The server redirects home; when that is the current page nothing navigates, so reload the
    // person explicitly. Only after a success: reloading rebuilds this menu, and with it the action
    // whose error must stay on screen.
    Effect::new(move |_| {
        if matches!(sign_out.value().get(), Some(Ok(()))) {
            session.refetch();
        }
    });
    // Someone at a shared computer must not walk away believing they signed out. The menu is outside
    // `<Routes>`, so a no-JavaScript post's error is read from the URL here (but for the updated-terms
    // page, whose "Decline and sign out" shows the same error next to itself).
    let url_error = url_error_for(<SignOut as ServerFn>::PATH);
    let location = use_location();
    let failed = Signal::derive(move || {
        match sign_out.value().get() {
            Some(result) => result.err(),
            None if location.pathname.get() == routes::ACCEPT_TERMS => None,
            None => url_error.get(),
        }
        .map(|err| format!("You are still signed in. {err}"))
    });

    view! {
        <div class="user-menu" role="group" aria-label="Your account">
            <span class="user-menu-name">
                <span class="visually-hidden">"Signed in as "</span>
                // A text node: display names are user input.
                <span class="user-name">{user.display_name}</span>
            </span>
            <A href=routes::HOUSEHOLD attr:class="nav-link">
                "Household"
            </A>
            <A href=routes::SETTINGS_PROFILE attr:class="nav-link">
                "Profile"
            </A>
            <A href=routes::SETTINGS_SECURITY attr:class="nav-link">
                "Security"
            </A>
            <ActionForm action=sign_out attr:class="sign-out-form">
                <SubmitButton
                    label="Sign out"
                    pending=sign_out.pending()
                    button_class="nav-link sign-out-button"
                />
            </ActionForm>
            <FormError message=failed />
        </div>
    }
}
