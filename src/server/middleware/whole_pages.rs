//! A page is rendered to its end, in a task of its own, even when the client leaves halfway.
//!
//! Leptos renders a page while its body streams out, and a `<Suspense>` / `<Transition>` checks its
//! pending resources from a task it spawns (leptos 0.8.23, `suspense_component.rs`: an isomorphic
//! effect that walks the views under it). When the client hung up (or the request timed out), the
//! body was dropped and the page's reactive owner disposed with it, possibly while that task was
//! walking the page on the other worker thread: it then read disposed signals and a router context
//! that was gone, and panicked (`Get::get` on a disposed value, `use_resolved_path` outside a
//! `<Router>`). No response was affected, but each one was logged as a panic: by hand, 17 in 8,000
//! hang-ups mid-page (debug build, 2 cores).
//!
//! So a page is rendered into memory by a task that a departing client cannot cancel, and sent
//! whole: the owner is disposed only once every Suspense has finished. A page is small (the
//! signed-in settings page is 6.7 KB) and is sent only once the signed-in person is known anyway
//! (`provide_session_user`), so buffering it costs nothing a visitor sees; it also gets a
//! `Content-Length`, and the session layer outside sees every change the render made before it
//! saves. It is also faster: one write of the whole page instead of a chunk per streamed part. By
//! hand, release builds one after the other on 2 cores (wrk, 64 connections, 10 s, two rounds): the
//! anonymous terms page 4,031–4,419 a second streamed, 7,335–8,680 whole; the signed-in settings
//! page 1,698–1,985 and 2,020–2,263.
//!
//! A render whose client has left (or whose request timed out) still runs to its end; it cannot run
//! long, since every database or store call it makes has a timeout of its own.
//!
//! Only page loads (`GET`/`HEAD` answered with HTML) are buffered; other responses (server
//! functions, files) pass through as they are.

use axum::body::{Body, HttpBody as _};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, header};
use tracing::Instrument;

/// Far more than any page of ours: a response this big is no page, and is refused rather than sent
/// cut short.
const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// Innermost around the pages: inside the session layer (which then saves what the whole render
/// changed) and inside the panic catcher (a panic in the render is passed on to it).
pub async fn render_whole_pages(request: Request, next: Next) -> Response {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let render = async move {
        let response = next.run(request).await;
        // A body of known length is complete already (a file, an error page): nothing to wait for.
        if !is_html(&response) || response.body().size_hint().exact().is_some() {
            return response;
        }
        let (mut parts, body) = response.into_parts();
        match axum::body::to_bytes(body, MAX_PAGE_BYTES).await {
            Ok(bytes) => {
                // The streamed body had no length; the whole one has.
                parts.headers.remove(header::TRANSFER_ENCODING);
                Response::from_parts(parts, Body::from(bytes))
            }
            // Too big, or the body failed midway: what was already read is gone, so the page
            // cannot be sent whole or in part.
            Err(err) => {
                tracing::error!(error = %err, "a page could not be rendered");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    };
    match tokio::spawn(render.instrument(tracing::Span::current())).await {
        Ok(response) => response,
        // Logged by the panic hook where it happened; the panic catcher outside answers it.
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        // The runtime is shutting down.
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

fn is_html(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..9))
        .is_some_and(|v| v.eq_ignore_ascii_case("text/html"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    use tower::ServiceExt;

    fn failing_render() -> Response {
        panic!("render failed")
    }

    fn html(body: impl Into<Body>) -> Response {
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body.into(),
        )
            .into_response()
    }

    /// A body that arrives in `chunks`, with no length known in advance (as a streamed render).
    fn streamed(chunks: Vec<String>) -> Body {
        Body::from_stream(futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(c))),
        ))
    }

    fn chunks(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| (*p).to_owned()).collect()
    }

    /// `app` behind the layer, asked `request`.
    async fn send(app: Router, request: Request) -> Response {
        app.layer(axum::middleware::from_fn(render_whole_pages))
            .oneshot(request)
            .await
            .unwrap()
    }

    fn get_root() -> Request {
        Request::get("/").body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn a_page_is_sent_whole_with_its_length() {
        let page = chunks(&["<p>", "whole", "</p>"]);
        let app = Router::new().route("/", get(move || async move { html(streamed(page)) }));
        let response = send(app, get_root()).await;
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "12");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&body[..], b"<p>whole</p>");
    }

    #[tokio::test]
    async fn a_render_goes_on_after_the_client_has_left() {
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        let app = Router::new().route(
            "/",
            get(move || async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                flag.store(true, Ordering::SeqCst);
                html("<p>done</p>")
            }),
        );
        // The client hangs up after 5 ms: the request's future is dropped.
        assert!(
            tokio::time::timeout(Duration::from_millis(5), send(app, get_root()))
                .await
                .is_err()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(finished.load(Ordering::SeqCst), "the render was cancelled");
    }

    #[tokio::test]
    async fn other_responses_stream_as_they_are() {
        let (json, posted) = (chunks(&["{", "}"]), chunks(&["<p>", "posted</p>"]));
        let app = Router::new()
            .route(
                "/file",
                get(move || async move {
                    ([(header::CONTENT_TYPE, "application/json")], streamed(json))
                }),
            )
            .route(
                "/api",
                axum::routing::post(move || async move { html(streamed(posted)) }),
            );
        // Buffered, they would have got a length.
        let file = send(
            app.clone(),
            Request::get("/file").body(Body::empty()).unwrap(),
        )
        .await;
        assert!(file.headers().get(header::CONTENT_LENGTH).is_none());
        let posted = send(app, Request::post("/api").body(Body::empty()).unwrap()).await;
        assert_eq!(posted.status(), StatusCode::OK);
        assert!(posted.headers().get(header::CONTENT_LENGTH).is_none());
    }

    #[tokio::test]
    async fn a_panic_in_the_render_reaches_the_panic_catcher() {
        let app = Router::new()
            .route("/", get(|| async { failing_render() }))
            .layer(axum::middleware::from_fn(render_whole_pages))
            .layer(tower_http::catch_panic::CatchPanicLayer::new());
        let response = app.oneshot(get_root()).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn a_body_too_big_for_a_page_is_refused_not_cut() {
        let big = vec!["x".repeat(MAX_PAGE_BYTES + 1)];
        let app = Router::new().route("/", get(move || async move { html(streamed(big)) }));
        let response = send(app, get_root()).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
