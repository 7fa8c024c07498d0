//! The data-export download: a plain form post answered with a ZIP streamed as it is written. Not a
//! server function, because its answer is a file, not a value.
//!
//! Refusals go back to the privacy page with a reason the page explains (a browser posting the form
//! sees that, not an error body), or, for other clients, as the status and JSON error every server
//! function uses.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse as _, Response};
use http::{HeaderValue, StatusCode, header};

use crate::error::AppError;
use crate::routes;
use crate::server::api_support::{self as s, Limit, RequestContext};
use crate::server::services::{audit, export};
use crate::server::state::AppState;

/// Why the privacy page was sent back to, as its `export` query parameter.
pub const REFUSED_REAUTH: &str = "reauth";
pub const REFUSED_RATE_LIMITED: &str = "rate_limited";
pub const REFUSED_UNAVAILABLE: &str = "unavailable";

pub async fn download(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let wants_page = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    match prepare(state, &parts).await {
        Ok(response) => response,
        Err(error) if wants_page => {
            let location = match &error {
                AppError::Unauthenticated => {
                    format!("{}?next={}", routes::LOGIN, routes::SETTINGS_PRIVACY)
                }
                AppError::ReauthRequired => {
                    format!("{}?export={REFUSED_REAUTH}", routes::SETTINGS_PRIVACY)
                }
                AppError::RateLimited { retry_after_secs } => format!(
                    "{}?export={REFUSED_RATE_LIMITED}&retry_after={retry_after_secs}",
                    routes::SETTINGS_PRIVACY
                ),
                _ => format!("{}?export={REFUSED_UNAVAILABLE}", routes::SETTINGS_PRIVACY),
            };
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Err(error) => error_response(&error),
    }
}

/// The status and JSON body a server function would answer with.
fn error_response(error: &AppError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_string(error).unwrap_or_default();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let AppError::RateLimited { retry_after_secs } = error
        && let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string())
    {
        headers.insert(header::RETRY_AFTER, value);
    }
    response
}

async fn prepare(state: AppState, parts: &http::request::Parts) -> Result<Response, AppError> {
    let ctx = RequestContext::from_parts(state, parts)?;
    // Like deleting the account, always possible: even while updated terms wait for an answer.
    let user = ctx.require_user_ungated().await?;
    ctx.require_recent_auth().await?;
    let slot = export::reserve(&ctx.state).map_err(|_| AppError::Unavailable)?;
    ctx.rate_limit_key(Limit::ExportPerAccount, &user.id)
        .await?;
    let now = ctx.state.clock.now().unix_timestamp();
    audit::log(
        &ctx.state.db,
        &ctx.meta,
        now,
        audit::Event::new("data_exported").user(&user.id),
    )
    .await
    .map_err(|err| s::internal("recording a data export", &err))?;

    let mut chunks = export::start(ctx.state.clone(), user, slot);
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| {
        chunks.poll_recv(cx)
    }));
    let disposition = format!("attachment; filename=\"{}\"", export::file_name(now));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
