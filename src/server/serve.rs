//! Accepting connections and serving HTTP/1.1 on them, with the connection limits `axum::serve` has no
//! setting for.
//!
//! A client gets `HEADER_TIMEOUT_SECS` to send a request's headers, and a kept-alive connection with no
//! new request for that long is closed. Without it (axum's own loop sets no timer, so hyper's header
//! timeout never runs) a client that connects and sends nothing, or a header a byte at a time
//! ("slowloris"), holds its connection and its buffers for as long as it likes: the embedded default
//! faces clients with no proxy in front to cut them off. `REQUEST_TIMEOUT_SECS` (the `TimeoutLayer`)
//! bounds everything after the headers, a slow body included.
//!
//! HTTP/1.1 only: the app serves plain HTTP behind a proxy or on localhost, where browsers never use
//! HTTP/2; skipping the protocol detection also means no read that the header timer does not cover.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting and returns once
/// every open connection has finished the request it was on (callers bound that wait).
pub async fn serve<F>(listener: TcpListener, router: Router, header_timeout: Duration, shutdown: F)
where
    F: Future<Output = ()>,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connections = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    pause_after(&err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // No Nagle delay: a page is streamed in several writes, and Nagle's algorithm held each one
        // after the first until the client's delayed acknowledgement (up to 40 ms): 15 ms a page on a
        // keep-alive connection, 69 pages a second on one connection instead of several hundred.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY on a connection");
        }
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            // What `into_make_service_with_connect_info` gave the handlers: the peer's address.
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request.map(axum::body::Body::new))
        });
        let connection = connections.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that went away or timed out; nothing anyone could act on.
            if let Err(err) = connection.await {
                tracing::trace!(error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
}

/// After a failed accept: a connection that failed before we took it is simply skipped; anything else
/// (out of file descriptors, above all) is logged and waited out for a second, as `axum::serve` does,
/// rather than spinning.
async fn pause_after(err: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
