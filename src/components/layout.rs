//! Header, main area and footer around every page.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_location;

use crate::components::theme_toggle::ThemeToggle;
use crate::components::user_menu::{AccountGate, AccountNav, provide_session_user};
use crate::components::verification_banner::VerificationBanner;
use crate::routes;

#[component]
pub fn Layout(children: Children) -> impl IntoView {
    // Who is signed in: one resource for the header, the banner and the pages, reloaded on navigation.
    provide_session_user();

    let menu_open = RwSignal::new(false);
    let close_menu = move |_| menu_open.set(false);
    // Any navigation (including the user menu's links and redirects after a form) closes the menu.
    let location = use_location();
    Effect::new(move |_| {
        location.pathname.track();
        menu_open.set(false);
    });

    view! {
        <a class="skip-link" href="#main">
            "Skip to content"
        </a>
        <header class="site-header">
            <div class="container header-inner">
                <a class="brand" href=routes::HOME>
                    <BrandMark />
                    <span class="brand-name">"Nest Egg"</span>
                </a>
                <button
                    class="nav-toggle"
                    type="button"
                    aria-controls="site-nav"
                    aria-expanded=move || menu_open.get().to_string()
                    on:click=move |_| menu_open.update(|open| *open = !*open)
                >
                    "Menu"
                </button>
                <nav id="site-nav" class="site-nav" class:open=move || menu_open.get() aria-label="Main">
                    <A href=routes::HOME exact=true attr:class="nav-link" on:click=close_menu>
                        "Home"
                    </A>
                    <A href=routes::SECURITY attr:class="nav-link" on:click=close_menu>
                        "Security"
                    </A>
                    <AccountNav />
                    <ThemeToggle />
                </nav>
            </div>
        </header>
        <AccountGate />
        <OutageNotice />
        <VerificationBanner />
        <main id="main" class="site-main">
            {children()}
        </main>
        <footer class="site-footer">
            <div class="container footer-inner">
                <p class="footer-brand">"Nest Egg — household finance, kept safe."</p>
                <nav class="footer-nav" aria-label="Footer">
                    <a href=routes::TERMS>"Terms of service"</a>
                    <a href=routes::PRIVACY>"Privacy policy"</a>
                    <a href=routes::SECURITY>"Security"</a>
                </nav>
                <p class="footer-note">
                    "Projections are illustrations, not financial advice."
                </p>
            </div>
        </footer>
    }
}

/// When the signed-in person cannot be loaded because a dependency (the database, the session store)
/// is down: the page answers 503 and says so plainly, rather than showing them as signed out.
#[component]
fn OutageNotice() -> impl IntoView {
    let session = crate::components::user_menu::use_session_user();
    view! {
        <Transition>
            {move || Suspend::new(async move {
                let down = matches!(
                    session.resource().await,
                    Err(crate::error::AppError::Unavailable | crate::error::AppError::Internal)
                );
                #[cfg(feature = "ssr")]
                if down && let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
                    response.set_status(http::StatusCode::SERVICE_UNAVAILABLE);
                    response.insert_header(
                        http::header::RETRY_AFTER,
                        http::HeaderValue::from_static("30"),
                    );
                }
                down.then(|| view! {
                    <div class="notice notice-warning outage-notice container" role="alert">
                        <p>
                            "Nest Egg is temporarily unavailable. Nothing you saved is lost; "
                            "please try again in a minute."
                        </p>
                    </div>
                })
            })}
        </Transition>
    }
}

/// The logo: an egg in a nest, drawn inline so it needs no extra request.
#[component]
fn BrandMark() -> impl IntoView {
    view! {
        <svg class="brand-mark" viewBox="0 0 32 32" aria-hidden="true" focusable="false">
            <ellipse cx="16" cy="13" rx="7.5" ry="9.5" fill="currentColor" opacity="0.9" />
            <path
                d="M3 19c2 6 7 9 13 9s11-3 13-9c-4 2-8 3-13 3s-9-1-13-3z"
                fill="currentColor"
                opacity="0.55"
            />
        </svg>
    }
}
