//! Gives server-function errors their real HTTP status.
//!
//! The server-function runtime answers every error with 500, including input that did not decode. This
//! layer is the one place where an [`AppError`] on the wire is mapped to its status (400, 401, 429 …), so
//! bad input never looks like a server fault and `Retry-After` accompanies rate limits.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use http::{HeaderValue, StatusCode};

use crate::error::AppError;
use crate::routes;
use crate::server::middleware::body_limit::{FormSlot, RawForm};

/// The address a refused plain form post (no JavaScript) is sent back to: its page's, with this
/// refusal's `__path` and `__err` appended (by the server-function runtime, or by [`answer`]). The
/// page's address may still hold an earlier result (a success's `done`, an earlier refusal's
/// `__path`, `__err` and `keep_` fields), which would show beside this refusal, or instead of it
/// where the page reads the first `__err`: only this refusal's stay.
fn only_this_refusal(location: &mut url::Url) {
    let pairs: Vec<(String, String)> = location.query_pairs().into_owned().collect();
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
    location.query_pairs_mut().clear().extend_pairs(current);
}

/// Query parameters that a plain form post (no JavaScript) leaves in the address of the page it is
/// sent back to: a refusal's `__path` and `__err`, a success's `done`, and what was typed (`keep_…`).
pub fn is_form_result(key: &str) -> bool {
    matches!(key, "__err" | "__path" | "done") || key.starts_with("keep_")
}

/// `query` without [`is_form_result`] parameters; `None` when it has none.
fn without_form_results(query: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if !pairs.iter().any(|(key, _)| is_form_result(key)) {
        return None;
    }
    Some(
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter().filter(|(key, _)| !is_form_result(key)))
            .finish(),
    )
}

/// A form's result in a page's address is honoured only when the browser came from one of our own
/// pages, as it does after posting a form. A link from anywhere else carrying one (an `__err` whose
/// words, chosen by the link's author, the page would show as our error; `keep_accept_terms=on`
/// ticking the consent boxes; `keep_new_email` filling in an address) is sent on to the same page
/// without it. Browsers say where a navigation came from (`Sec-Fetch-Site`); a request that does not
/// say is left alone.
pub async fn drop_foreign_form_results(request: Request, next: Next) -> Response {
    let foreign = request
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() != b"same-origin");
    if foreign
        && matches!(*request.method(), http::Method::GET | http::Method::HEAD)
        && !request.uri().path().starts_with(routes::API_PREFIX)
        && let Some(kept) = request.uri().query().and_then(without_form_results)
    {
        // One leading slash: `//elsewhere.example/…` would be another site's address.
        let path = format!("/{}", request.uri().path().trim_start_matches('/'));
        let location = match kept.is_empty() {
            true => path,
            false => format!("{path}?{kept}"),
        };
        return axum::response::Redirect::to(&location).into_response();
    }
    next.run(request).await
}

/// Adds the non-secret fields a refused plain form carried to the address it is sent back to, as
/// `keep_<name>`, so the person need not type them again.
fn keep_form_fields(location: &mut url::Url, form: &RawForm) {
    let mut kept = Vec::new();
    let mut query = location.query_pairs_mut();
    for (key, value) in url::form_urlencoded::parse(&form.0) {
        // The first of a field sent more than once: the form has one of each.
        if KEPT_FIELDS.contains(&key.as_ref()) && value.len() <= 254 && !kept.contains(&key) {
            query.append_pair(&format!("keep_{key}"), &value);
            kept.push(key);
        }
    }
}

/// A plain form post that the server function refused is redirected back with `__err` in the URL;
/// only this refusal stays there ([`only_this_refusal`]), with what the form carried.
fn send_back_what_was_typed(response: &mut Response, form: &RawForm) {
    let Some(mut location) = response
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .filter(|l| l.contains("__err="))
        .and_then(|l| url::Url::parse(l).ok())
    else {
        return;
    };
    only_this_refusal(&mut location);
    keep_form_fields(&mut location, form);
    if let Ok(value) = HeaderValue::from_str(location.as_str()) {
        response.headers_mut().insert(http::header::LOCATION, value);
    }
}

/// Error bodies are a small JSON object; anything larger is not one of ours.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// What a request asked for, read before it is passed on: enough to answer it with an error later.
pub struct Asked {
    /// The page a plain form (no JavaScript) was posted from, to send it back to with the error.
    plain_form_from: Option<String>,
    path: String,
    /// The form it carried, once the body limit has read it.
    form: Option<RawForm>,
}

impl Asked {
    pub fn from_request(request: &Request) -> Self {
        let mut asked = Self::new(request.headers(), request.uri());
        asked.form = request.extensions().get::<RawForm>().cloned();
        asked
    }

    pub fn new(headers: &http::HeaderMap, uri: &http::Uri) -> Self {
        let plain_form = headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
        let referer = headers
            .get(http::header::REFERER)
            .and_then(|v| v.to_str().ok());
        Asked {
            plain_form_from: referer.filter(|_| plain_form).map(str::to_owned),
            path: uri.path().to_owned(),
            form: None,
        }
    }
}

/// Answers a server-function call with `error` the way the server functions answer their own: a plain
/// form post goes back to its page with the error in the address (`__err`) and what was typed in it,
/// anything else gets the error object as JSON with its status (and `Retry-After` for a rate limit).
pub fn answer(asked: &Asked, error: AppError) -> Response {
    if let Some(referer) = &asked.plain_form_from
        && let Ok(mut url) =
            leptos::server_fn::error::ServerFnUrlError::new(&asked.path, error.clone())
                .to_url(referer)
    {
        only_this_refusal(&mut url);
        if let Some(form) = &asked.form {
            keep_form_fields(&mut url, form);
        }
        if let Ok(location) = HeaderValue::from_str(url.as_str()) {
            let mut response = StatusCode::SEE_OTHER.into_response();
            response
                .headers_mut()
                .insert(http::header::LOCATION, location);
            return response;
        }
    }
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let retry_after = match &error {
        AppError::RateLimited { retry_after_secs } => {
            HeaderValue::from_str(&retry_after_secs.to_string()).ok()
        }
        _ => None,
    };
    let mut response = (status, axum::Json(error)).into_response();
    if let Some(value) = retry_after {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, value);
    }
    response
}

/// Around every layer that can turn a server-function call away on its own, before the function
/// runs: the request timeout, the body limit, the wait for a turn, a panic, the host and cross-site
/// checks, the session store. Those answer in plain text (or nothing), which the browser's
/// server-function client cannot decode: it showed "The form was incomplete or malformed" for an
/// outage, and a form without JavaScript got a bare text page. Here such an answer becomes the
/// [`AppError`] its status means, answered as the server functions answer theirs ([`answer`]).
pub async fn explain_refusals(mut request: Request, next: Next) -> Response {
    // Server functions are called with POST; someone opening an `/api/…` address gets the site's
    // pages (its 404 page, say).
    if request.method() != http::Method::POST
        || !request.uri().path().starts_with(routes::API_PREFIX)
    {
        return next.run(request).await;
    }
    // The form is read further in: the slot brings it back.
    let mut asked = Asked::new(request.headers(), request.uri());
    let slot = FormSlot::default();
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    let status = response.status();
    // A server function's own error (its runtime sends no content type), or one of the edge's
    // answers that is an error object already (a rate limit, a NUL in the body).
    let ours = response
        .headers()
        .contains_key(leptos::server_fn::error::SERVER_FN_ERROR_HEADER)
        || response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || ours {
        return response;
    }
    // Read below this layer (`body_limit`), whichever layer refused it.
    asked.form = slot.0.get().cloned();
    // The rest of what it carried goes on (CORS, `Vary`, a session cookie, `Retry-After`); not what
    // described its body.
    let mut carried = response.headers().clone();
    for described in [
        http::header::CONTENT_TYPE,
        http::header::CONTENT_LENGTH,
        http::header::CONTENT_ENCODING,
        http::header::TRANSFER_ENCODING,
    ] {
        carried.remove(described);
    }
    let error = match status {
        // No such function (the site's own 404 page answers it).
        StatusCode::NOT_FOUND => AppError::NotFound,
        StatusCode::INTERNAL_SERVER_ERROR => AppError::Internal,
        _ if status.is_server_error() => AppError::Unavailable,
        _ => AppError::Refused {
            status: status.as_u16(),
            message: refusal_text(response).await.unwrap_or_else(|| {
                "This request was turned away. Please reload the page and try again.".to_owned()
            }),
        },
    };
    let mut answer = answer(&asked, error);
    let own: Vec<http::HeaderName> = answer.headers().keys().cloned().collect();
    for (name, value) in &carried {
        if !own.contains(name) {
            answer.headers_mut().append(name, value.clone());
        }
    }
    answer
}

/// The explanation a refusal was sent with, when it is short plain text: the edge's own words (the
/// body limit's, the cross-site check's), not a library's.
async fn refusal_text(response: Response) -> Option<String> {
    let plain = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !plain
        || response
            .headers()
            .contains_key(http::header::CONTENT_ENCODING)
    {
        return None;
    }
    let bytes = axum::body::to_bytes(response.into_body(), MAX_ERROR_BODY)
        .await
        .ok()?;
    let text = std::str::from_utf8(&bytes).ok()?.trim();
    (!text.is_empty() && text.chars().count() <= 500).then(|| text.to_owned())
}

/// Form fields a refused plain (no-JavaScript) form gets back, so the person need not type them
/// again. Never passwords or tokens.
const KEPT_FIELDS: [&str; 7] = [
    "email",
    "display_name",
    "new_email",
    "confirm_email",
    // A household's name.
    "name",
    // The registration's consent boxes (sent only when ticked).
    "accept_terms",
    "accept_privacy",
];

pub async fn map_server_fn_errors(request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with(routes::API_PREFIX) {
        return next.run(request).await;
    }
    let form = request.extensions().get::<RawForm>().cloned();
    let mut response = next.run(request).await;
    if let Some(form) = form {
        send_back_what_was_typed(&mut response, &form);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_results_are_taken_out_of_a_query_and_the_rest_kept() {
        assert_eq!(without_form_results("token=abc&page=2"), None);
        assert_eq!(without_form_results(""), None);
        assert_eq!(
            without_form_results(
                "token=a%20b&__err=x&__path=%2Fapi%2Fsign_in&keep_email=e%40x&done=y"
            )
            .as_deref(),
            Some("token=a+b")
        );
        assert_eq!(
            without_form_results("keep_accept_terms=on&keep_accept_privacy=on").as_deref(),
            Some("")
        );
    }
}
