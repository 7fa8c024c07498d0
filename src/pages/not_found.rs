use leptos::prelude::*;
use leptos_meta::Title;

use crate::routes;

/// Rendered for every unknown path, with status 404.
#[component]
pub fn NotFoundPage() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Page not found — Nest Egg" />
        <section class="error-page container">
            <p class="error-code">"404"</p>
            <h1>"We couldn't find that page"</h1>
            <p>"The link may be old, or the address mistyped."</p>
            <div class="error-actions">
                <a class="button" href=routes::HOME>
                    "Go to the home page"
                </a>
            </div>
        </section>
    }
}
