//! The HTML shell, the root component and the route table.

use leptos::prelude::*;
#[cfg(feature = "ssr")]
use leptos_meta::MetaTags;
use leptos_meta::{Title, provide_meta_context};
use leptos_router::{
    SsrMode,
    components::{Route, Router, Routes},
    path,
};

use crate::components::layout::Layout;
use crate::pages::auth::{
    accept_terms::AcceptTermsPage,
    confirm_email_change::ConfirmEmailChangePage,
    forgot_password::ForgotPasswordPage,
    login::LoginPage,
    login_two_factor::LoginTwoFactorPage,
    not_me::NotMePage,
    register::{CheckInboxPage, RegisterPage},
    reset_password::ResetPasswordPage,
    verify_email::VerifyEmailPage,
};
use crate::pages::settings::{
    account::{AccountDeletedPage, SettingsAccountPage},
    activity::SettingsActivityPage,
    privacy::SettingsPrivacyPage,
    profile::SettingsProfilePage,
    security::SettingsSecurityPage,
    sessions::SettingsSessionsPage,
    two_factor::SettingsTwoFactorPage,
};
use crate::pages::{
    admin::SecurityStatusPage, home::HomePage, household::HouseholdPage,
    household_join::HouseholdJoinPage, legal::PrivacyPage, legal::TermsPage,
    not_found::NotFoundPage, security::SecurityPage,
};
use crate::routes;

/// `path!` needs a literal; this checks at compile time that the literal is the one in `routes`.
macro_rules! route_path {
    ($constant:path, $literal:tt) => {{
        const _: () = assert!(same_str($constant, $literal));
        path!($literal)
    }};
}

const fn same_str(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The document around the app. Rendered on the server only; the browser hydrates `<App/>` inside it.
#[cfg(feature = "ssr")]
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let theme = crate::api::preferences::initial_theme();
    let stylesheet = format!("/{}/{}.css", options.site_pkg_dir, options.output_name);
    view! {
        <!DOCTYPE html>
        <html lang="en" data-theme=theme.as_str()>
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <meta
                    name="description"
                    content="Nest Egg helps households plan, save and share their finances — safely."
                />
                <link rel="icon" type="image/svg+xml" href="/favicon.svg" />
                <link rel="stylesheet" id="leptos" href=stylesheet />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The root component: the same tree renders on the server and hydrates in the browser.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_context(RwSignal::new(crate::api::preferences::initial_theme()));

    // Runs only in the browser, once the WASM has taken over the page. Tests and styles rely on it
    // (e.g. the no-JavaScript fallbacks hide themselves once this is set).
    Effect::new(move |_| {
        if let Some(root) = document().document_element() {
            let _ = root.set_attribute("data-hydrated", "true");
        }
    });

    view! {
        <Title text="Nest Egg" />
        <Router>
            <Layout>
                <ErrorBoundary fallback=|_errors| view! { <ErrorPage /> }>
                    // In order: every Suspense (the signed-in user in the header) is rendered in place, so the
                    // header and banner are in the HTML itself and work without JavaScript.
                    <Routes fallback=NotFoundPage>
                        <Route ssr=SsrMode::InOrder path=path!("/") view=HomePage />
                        <Route ssr=SsrMode::InOrder path=path!("/security") view=SecurityPage />
                        <Route ssr=SsrMode::InOrder path=path!("/terms") view=TermsPage />
                        <Route ssr=SsrMode::InOrder path=path!("/privacy") view=PrivacyPage />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::REGISTER_DONE, "/register/check-inbox") view=CheckInboxPage />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::REGISTER, "/register") view=RegisterPage />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::LOGIN, "/login") view=LoginPage />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::VERIFY_EMAIL, "/verify-email") view=VerifyEmailPage />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::FORGOT_PASSWORD, "/forgot-password") view=ForgotPasswordPage />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::RESET_PASSWORD, "/reset-password") view=ResetPasswordPage />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::CONFIRM_EMAIL_CHANGE, "/confirm-email-change")
                            view=ConfirmEmailChangePage
                        />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::SETTINGS_PROFILE, "/settings/profile") view=SettingsProfilePage />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::SETTINGS_SECURITY, "/settings/security")
                            view=SettingsSecurityPage
                        />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::SETTINGS_TWO_FACTOR, "/settings/security/two-factor")
                            view=SettingsTwoFactorPage
                        />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::SETTINGS_SESSIONS, "/settings/sessions")
                            view=SettingsSessionsPage
                        />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::SETTINGS_ACTIVITY, "/settings/activity")
                            view=SettingsActivityPage
                        />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::NOT_ME, "/not-me") view=NotMePage />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::ACCEPT_TERMS, "/accept-terms") view=AcceptTermsPage />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::SETTINGS_PRIVACY, "/settings/privacy")
                            view=SettingsPrivacyPage
                        />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::SETTINGS_ACCOUNT, "/settings/account")
                            view=SettingsAccountPage
                        />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::ACCOUNT_DELETED, "/goodbye") view=AccountDeletedPage />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::HOUSEHOLD, "/household") view=HouseholdPage />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::ADMIN_SECURITY_STATUS, "/admin/security-status")
                            view=SecurityStatusPage
                        />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::HOUSEHOLD_JOIN, "/household/join")
                            view=HouseholdJoinPage
                        />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::LOGIN_TWO_FACTOR, "/login/two-factor")
                            view=LoginTwoFactorPage
                        />
                    </Routes>
                </ErrorBoundary>
            </Layout>
        </Router>
    }
}

/// Shown when rendering a page failed. Says nothing about the cause: the detail is in the server log,
/// under the request id.
#[component]
fn ErrorPage() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::INTERNAL_SERVER_ERROR);
    }
    view! {
        <Title text="Something went wrong — Nest Egg" />
        <section class="error-page container">
            <p class="error-code">"500"</p>
            <h1>"Something went wrong"</h1>
            <p>"We could not show this page. Nothing you entered was lost; please try again in a moment."</p>
            <div class="error-actions">
                <a class="button" href=crate::routes::HOME>
                    "Go to the home page"
                </a>
            </div>
        </section>
    }
}
