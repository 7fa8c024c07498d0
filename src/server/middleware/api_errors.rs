//! Gives server-function errors their real HTTP status.
//!
//! The server-function runtime answers every error with 500, including input that did not decode. This
//! layer is the one place where an [`AppError`] on the wire is mapped to its status (400, 401, 429 …), so
//! bad input never looks like a server fault and `Retry-After` accompanies rate limits.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderValue, StatusCode};

use crate::error::AppError;
use crate::routes;
use crate::server::middleware::body_limit::RawForm;

/// A plain form post that failed is redirected back with `__err` in the URL; add the non-secret
/// fields it carried as `keep_<name>`. The page's URL may still hold an earlier result (a success's
/// `done`, an earlier refusal's `__path`, `__err` and `keep_` fields), which would show beside this
/// refusal, or instead of it where the page reads the first `__err`: only this refusal's stay.
fn keep_form_fields(response: &mut Response, form: &RawForm) {
    let Some(mut location) = response
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .filter(|l| l.contains("__err="))
        .and_then(|l| url::Url::parse(l).ok())
    else {
        return;
    };
    let pairs: Vec<(String, String)> = location.query_pairs().into_owned().collect();
    // The server-function runtime appends this refusal's pair after whatever the page had.
    let latest = |name: &str| pairs.iter().rposition(|(key, _)| key == name);
    let (path_at, error_at) = (latest("__path"), latest("__err"));
    let current = pairs
        .iter()
        .enumerate()
        .filter(|(at, (key, _))| match key.as_str() {
            "__path" => Some(*at) == path_at,
            "__err" => Some(*at) == error_at,
            key => key != "done" && !key.starts_with("keep_"),
        })
        .map(|(_, pair)| pair);
    {
        let mut query = location.query_pairs_mut();
        query.clear().extend_pairs(current);
        for (key, value) in url::form_urlencoded::parse(&form.0) {
            if KEPT_FIELDS.contains(&key.as_ref()) && value.len() <= 254 {
                query.append_pair(&format!("keep_{key}"), &value);
            }
        }
    }
    if let Ok(value) = HeaderValue::from_str(location.as_str()) {
        response.headers_mut().insert(http::header::LOCATION, value);
    }
}

/// Error bodies are a small JSON object; anything larger is not one of ours.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// Form fields a refused plain (no-JavaScript) form gets back, so the person need not type them
/// again. Never passwords or tokens.
const KEPT_FIELDS: [&str; 5] = [
    "email",
    "display_name",
    "new_email",
    "confirm_email",
    // A household's name.
    "name",
];

pub async fn map_server_fn_errors(request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with(routes::API_PREFIX) {
        return next.run(request).await;
    }
    let form = request.extensions().get::<RawForm>().cloned();
    let mut response = next.run(request).await;
    if let Some(form) = form {
        keep_form_fields(&mut response, &form);
    }
    // A plain HTML form post that failed is redirected back with the error in the URL; leave it be.
    if !response
        .headers()
        .contains_key(leptos::server_fn::error::SERVER_FN_ERROR_HEADER)
        || response.status().is_redirection()
        || response.headers().contains_key(http::header::LOCATION)
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        parts.status = StatusCode::INTERNAL_SERVER_ERROR;
        return Response::from_parts(parts, Body::empty());
    };
    if let Ok(error) = serde_json::from_slice::<AppError>(&bytes) {
        parts.status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if let AppError::RateLimited { retry_after_secs } = error
            && let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            parts.headers.insert(http::header::RETRY_AFTER, value);
        }
        tracing::info!(code = error.code(), "server function refused the request");
    }
    Response::from_parts(parts, Body::from(bytes))
}
