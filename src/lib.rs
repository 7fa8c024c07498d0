//! Nest Egg: household finance, production-ready from the first commit.
//!
//! The crate compiles twice: with `ssr` into the server binary (everything under [`server`]) and with
//! `hydrate` into the WASM bundle the browser loads. Only the modules outside `server` reach the browser,
//! so nothing secret or heavy may live in them.

// The optimized builds (without `erase_components`) type the views in full: the admin page's view
// type is deeper than the default limit of 128.
#![recursion_limit = "256"]
// No panics on request paths: every module that runs per request is covered (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod app;
pub mod components;
pub mod error;
pub mod finance;
pub mod pages;
pub mod routes;
pub mod types;

#[cfg(feature = "ssr")]
pub mod server;

/// Entry point of the WASM bundle: attaches the reactive app to the server-rendered HTML.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // What `leptos::mount::hydrate_lazy` does (lazy routes, see `app`, are hydrated asynchronously,
    // once their module is loaded), then marks the page hydrated: only now is all of it live.
    wasm_bindgen_futures::spawn_local(async {
        let app = leptos::mount::hydrate_from_async(leptos::tachys::dom::body(), app::App).await;
        // Hydrated for as long as the page is open.
        app.forget();
        app::mark_hydrated();
    });
}
