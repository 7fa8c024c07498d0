//! The HTML shell, the root component and the route table.

use leptos::prelude::*;
#[cfg(feature = "ssr")]
use leptos_meta::MetaTags;
use leptos_meta::{Title, provide_meta_context};
use leptos_router::{
    Lazy, LazyRoute, SsrMode,
    components::{Route, Router, Routes},
    lazy_route, path,
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
    restore_email::RestoreEmailPage,
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

/// Every page's code is split out of the main WASM module into modules of its own (`cargo leptos build
/// --split`; every build script passes it), loaded with the first page that needs them. A first visit
/// then downloads the main module (the runtime, the router and the layout) and that page's modules,
/// not the whole site: in release builds 331 KB gzip for the main module, 364 KB with the home page's
/// and 457 KB with the largest page's (two-factor setup), against 575 KB for the single bundle before
/// (bench/run.sh measures it). All modules together are larger (797 KB), as code shared by pages is
/// compressed file by file; a returning visitor has them cached.
///
/// The server lists a page's modules for preloading only when the page's code ran before the head
/// was written, which in leptos 0.8.23 is not always so: otherwise the browser asks for them while it
/// hydrates, one round trip later. The page works either way, and without JavaScript it needs none.
///
/// `$route` is the route's name for the page component `$page`; the page needs no data loaded before
/// its code (it loads its own, through the resources it creates).
macro_rules! lazy_pages {
    ($($route:ident => $page:ident),+ $(,)?) => {
        $(
            struct $route;

            #[lazy_route]
            impl LazyRoute for $route {
                fn data() -> Self {
                    $route
                }

                fn view(_route: Self) -> AnyView {
                    view! { <$page /> }.into_any()
                }
            }
        )+
    };
}

lazy_pages! {
    HomeRoute => HomePage,
    SecurityRoute => SecurityPage,
    TermsRoute => TermsPage,
    PrivacyRoute => PrivacyPage,
    CheckInboxRoute => CheckInboxPage,
    RegisterRoute => RegisterPage,
    LoginRoute => LoginPage,
    VerifyEmailRoute => VerifyEmailPage,
    ForgotPasswordRoute => ForgotPasswordPage,
    ResetPasswordRoute => ResetPasswordPage,
    ConfirmEmailChangeRoute => ConfirmEmailChangePage,
    SettingsProfileRoute => SettingsProfilePage,
    SettingsSecurityRoute => SettingsSecurityPage,
    SettingsTwoFactorRoute => SettingsTwoFactorPage,
    SettingsSessionsRoute => SettingsSessionsPage,
    SettingsActivityRoute => SettingsActivityPage,
    NotMeRoute => NotMePage,
    RestoreEmailRoute => RestoreEmailPage,
    AcceptTermsRoute => AcceptTermsPage,
    SettingsPrivacyRoute => SettingsPrivacyPage,
    SettingsAccountRoute => SettingsAccountPage,
    AccountDeletedRoute => AccountDeletedPage,
    HouseholdRoute => HouseholdPage,
    SecurityStatusRoute => SecurityStatusPage,
    HouseholdJoinRoute => HouseholdJoinPage,
    LoginTwoFactorRoute => LoginTwoFactorPage,
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

/// Marks the page as taken over by the WASM (`data-hydrated` on `<html>`), once all of it is hydrated:
/// the page's own code included, which arrives in a module of its own. Tests and styles rely on it
/// (e.g. the no-JavaScript fallbacks hide themselves once this is set).
#[cfg(feature = "hydrate")]
pub fn mark_hydrated() {
    if let Some(root) = document().document_element() {
        let _ = root.set_attribute("data-hydrated", "true");
    }
}

/// Whether [`mark_hydrated`] has run: the page is live.
#[cfg(feature = "hydrate")]
pub fn is_hydrated() -> bool {
    document()
        .document_element()
        .is_some_and(|root| root.has_attribute("data-hydrated"))
}

/// The root component: the same tree renders on the server and hydrates in the browser.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_context(RwSignal::new(crate::api::preferences::initial_theme()));

    view! {
        <Title text="Nest Egg" />
        <Router>
            <Layout>
                <ErrorBoundary fallback=|_errors| view! { <ErrorPage /> }>
                    // In order: every Suspense (the signed-in user in the header) is rendered in place, so the
                    // header and banner are in the HTML itself and work without JavaScript.
                    <Routes fallback=NotFoundPage>
                        <Route ssr=SsrMode::InOrder path=path!("/") view={Lazy::<HomeRoute>::new()} />
                        <Route ssr=SsrMode::InOrder path=path!("/security") view={Lazy::<SecurityRoute>::new()} />
                        <Route ssr=SsrMode::InOrder path=path!("/terms") view={Lazy::<TermsRoute>::new()} />
                        <Route ssr=SsrMode::InOrder path=path!("/privacy") view={Lazy::<PrivacyRoute>::new()} />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::REGISTER_DONE, "/register/check-inbox") view={Lazy::<CheckInboxRoute>::new()} />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::REGISTER, "/register") view={Lazy::<RegisterRoute>::new()} />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::LOGIN, "/login") view={Lazy::<LoginRoute>::new()} />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::VERIFY_EMAIL, "/verify-email") view={Lazy::<VerifyEmailRoute>::new()} />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::FORGOT_PASSWORD, "/forgot-password") view={Lazy::<ForgotPasswordRoute>::new()} />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::RESET_PASSWORD, "/reset-password") view={Lazy::<ResetPasswordRoute>::new()} />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::CONFIRM_EMAIL_CHANGE, "/confirm-email-change")
                            view={Lazy::<ConfirmEmailChangeRoute>::new()}
                        />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::SETTINGS_PROFILE, "/settings/profile") view={Lazy::<SettingsProfileRoute>::new()} />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::SETTINGS_SECURITY, "/settings/security")
                            view={Lazy::<SettingsSecurityRoute>::new()}
                        />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::SETTINGS_TWO_FACTOR, "/settings/security/two-factor")
                            view={Lazy::<SettingsTwoFactorRoute>::new()}
                        />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::SETTINGS_SESSIONS, "/settings/sessions")
                            view={Lazy::<SettingsSessionsRoute>::new()}
                        />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::SETTINGS_ACTIVITY, "/settings/activity")
                            view={Lazy::<SettingsActivityRoute>::new()}
                        />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::NOT_ME, "/not-me") view={Lazy::<NotMeRoute>::new()} />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::RESTORE_EMAIL, "/restore-email")
                            view={Lazy::<RestoreEmailRoute>::new()}
                        />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::ACCEPT_TERMS, "/accept-terms") view={Lazy::<AcceptTermsRoute>::new()} />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::SETTINGS_PRIVACY, "/settings/privacy")
                            view={Lazy::<SettingsPrivacyRoute>::new()}
                        />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::SETTINGS_ACCOUNT, "/settings/account")
                            view={Lazy::<SettingsAccountRoute>::new()}
                        />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::ACCOUNT_DELETED, "/goodbye") view={Lazy::<AccountDeletedRoute>::new()} />
                        <Route ssr=SsrMode::InOrder path=route_path!(routes::HOUSEHOLD, "/household") view={Lazy::<HouseholdRoute>::new()} />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::ADMIN_SECURITY_STATUS, "/admin/security-status")
                            view={Lazy::<SecurityStatusRoute>::new()}
                        />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::HOUSEHOLD_JOIN, "/household/join")
                            view={Lazy::<HouseholdJoinRoute>::new()}
                        />
                        <Route
                            ssr=SsrMode::InOrder
                            path=route_path!(routes::LOGIN_TWO_FACTOR, "/login/two-factor")
                            view={Lazy::<LoginTwoFactorRoute>::new()}
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
