//! Request body limit with a clear 413, whether the client announced the length or streamed the body.
//!
//! Bodies are small here (forms and server-function calls), so buffering up to the limit is cheap and
//! gives handlers a body that is known to fit.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, HttpBody as _};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::TryFutureExt as _;
use http::StatusCode;

use crate::server::state::AppState;

#[cfg(test)]
mod tests {
    #[test]
    fn nul_characters_are_found_raw_or_encoded() {
        assert!(super::has_nul(b"email=a%00b"));
        assert!(super::has_nul(b"email=a\0b"));
        assert!(!super::has_nul(b"email=a%2500b&x=%41"));
    }
}

/// The buffered body of an `application/x-www-form-urlencoded` request.
#[derive(Clone, Debug)]
pub struct RawForm(pub axum::body::Bytes);

/// Where the body read here is handed to a layer outside this one (`api_errors::explain_refusals`),
/// which answers for whichever layer refused the request, even one that dropped it (the timeout).
#[derive(Clone, Debug, Default)]
pub struct FormSlot(pub std::sync::Arc<std::sync::OnceLock<RawForm>>);

fn is_form(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

fn too_large(limit: usize) -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "Request too large: the limit is {} KiB. Please shorten what you entered and try again.",
            limit / 1024
        ),
    )
        .into_response()
}

/// A NUL character, raw or percent-encoded. No field has a use for one, and PostgreSQL refuses it
/// in text (the query would fail as a server error), so it is turned away here, for every server
/// function at once.
fn has_nul(body: &[u8]) -> bool {
    body.contains(&0) || percent_encoding::percent_decode(body).any(|b| b == 0)
}

fn nul_refused(parts: &http::request::Parts) -> Response {
    let error = crate::error::AppError::InvalidInput {
        field: None,
        message: "What you sent contains a character that is not allowed (NUL). Remove it and try \
                  again."
            .to_owned(),
    };
    // Without the form: what was typed holds the NUL, and would be refused again.
    let asked = crate::server::middleware::api_errors::Asked::new(&parts.headers, &parts.uri);
    crate::server::middleware::api_errors::answer(&asked, error)
}

/// Reads the body (up to `MAX_BODY_BYTES`) before the rest of the stack sees the request: see
/// `startup::router`, where this comes before a request takes its turn. A request without a body
/// (most of them: page loads) goes straight through, without a boxed future or a copy of the stack
/// below, which 1000 waiting requests would otherwise each hold.
#[derive(Clone, Debug)]
pub struct BodyLimitLayer {
    state: AppState,
}

impl BodyLimitLayer {
    pub fn new(state: AppState) -> Self {
        BodyLimitLayer { state }
    }
}

impl<S> tower::Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct BodyLimit<S> {
    inner: S,
    state: AppState,
}

type Buffered = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// The inner response as an axum one (the layers below change the body type).
type Unbuffered<F, R> = futures_util::future::MapOk<F, fn(R) -> Response>;

impl<S> tower::Service<Request> for BodyLimit<S>
where
    S: tower::Service<Request, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = futures_util::future::Either<Unbuffered<S::Future, S::Response>, Buffered>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.body().is_end_stream() {
            let into: fn(S::Response) -> Response = IntoResponse::into_response;
            return futures_util::future::Either::Left(self.inner.call(request).map_ok(into));
        }
        // The ready service goes into the future; a fresh clone waits for the next request.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        let state = self.state.clone();
        futures_util::future::Either::Right(Box::pin(async move {
            Ok(limit_body(&state, request, ready).await)
        }))
    }
}

async fn limit_body<S>(state: &AppState, request: Request, mut inner: S) -> Response
where
    S: tower::Service<Request, Error = Infallible>,
    S::Response: IntoResponse,
{
    let limit = state.settings.max_body_bytes;
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return too_large(limit);
    }
    let (mut parts, body) = request.into_parts();
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) if parts.uri.path().starts_with(crate::routes::API_PREFIX) && has_nul(&bytes) => {
            nul_refused(&parts)
        }
        Ok(bytes) => {
            // Kept for `api_errors`, which hands non-secret fields back to a refused plain form: with
            // the request for the layers and functions below, and in the slot for the layers above.
            if is_form(&parts.headers) {
                let form = RawForm(bytes.clone());
                if let Some(slot) = parts.extensions.get::<FormSlot>() {
                    let _ = slot.0.set(form.clone());
                }
                parts.extensions.insert(form);
            }
            match inner
                .call(Request::from_parts(parts, Body::from(bytes)))
                .await
            {
                Ok(response) => response.into_response(),
                Err(never) => match never {},
            }
        }
        Err(_) => too_large(limit),
    }
}
