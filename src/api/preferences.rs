//! Visitor preferences that need no account (the colour theme).

use leptos::prelude::*;

use crate::error::AppError;
use crate::types::Theme;

/// Remembers the visitor's theme in a cookie so the server renders the right one on the next visit.
#[server(prefix = "/api", endpoint = "theme")]
pub async fn set_theme(theme: Theme) -> Result<Theme, AppError> {
    use crate::server::state::AppState;
    use http::{HeaderValue, header::SET_COOKIE};
    use tower_sessions::cookie::{Cookie, SameSite, time::Duration};

    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    let response = use_context::<leptos_axum::ResponseOptions>().ok_or(AppError::Internal)?;
    let cookie = Cookie::build((Theme::COOKIE_NAME, theme.as_str()))
        .path("/")
        .max_age(Duration::days(365))
        .same_site(SameSite::Lax)
        .http_only(true)
        .secure(state.settings.cookie_secure)
        .build();
    let value = HeaderValue::from_str(&cookie.to_string()).map_err(|_| AppError::Internal)?;
    response.append_header(SET_COOKIE, value);
    Ok(theme)
}

/// The theme to render with: from the request's cookie on the server, from the server-rendered
/// `<html data-theme>` in the browser, so both sides agree during hydration.
pub fn initial_theme() -> Theme {
    #[cfg(feature = "ssr")]
    {
        use_context::<http::request::Parts>()
            .and_then(|parts| {
                crate::server::api_support::cookie_value(&parts.headers, Theme::COOKIE_NAME)
                    .and_then(Theme::parse)
            })
            .unwrap_or_default()
    }
    #[cfg(not(feature = "ssr"))]
    {
        document()
            .document_element()
            .and_then(|root| root.get_attribute("data-theme"))
            .and_then(|value| Theme::parse(&value))
            .unwrap_or_default()
    }
}
