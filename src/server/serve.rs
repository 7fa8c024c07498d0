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
//! At most `MAX_CONNECTIONS` connections are served at once; more wait in the listen queue until one
//! closes. Without a cap, a flood of connections runs the process out of file descriptors (then the
//! database pool cannot reconnect, and every request fails) and each waiting request holds its body
//! in memory. The default is what the open-file limit leaves room for.
//!
//! HTTP/1.1 only: the app serves plain HTTP behind a proxy or on localhost, where browsers never use
//! HTTP/2; skipping the protocol detection also means no read that the header timer does not cover.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

/// File descriptors kept for everything but client connections and the database pool: Redis, SMTP,
/// the SQLite files and backups, logs.
const RESERVED_FILES: u64 = 256;
/// Descriptors per pooled database connection, at most (SQLite in WAL mode: the database, its
/// write-ahead log and shared memory).
const FILES_PER_DB_CONNECTION: u64 = 3;
/// The most connections served at once whatever the limit (none where there is no limit).
const MOST: usize = 1_000_000;

/// How many client connections to serve at once: `configured` (`MAX_CONNECTIONS`), but never more
/// than the open-file limit leaves room for beside the database pool (`db_connections`). The soft
/// limit is raised to the hard one first, as servers do (it is often 1024 by default, for the sake
/// of programs that `select()`).
pub fn connection_cap(configured: Option<usize>, db_connections: u32) -> usize {
    let open_files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(err) => {
            tracing::warn!(error = %err, "could not read the open-file limit; assuming 1024");
            1024
        }
    };
    let reserved = RESERVED_FILES + FILES_PER_DB_CONNECTION * u64::from(db_connections);
    let fits = usize::try_from(open_files.saturating_sub(reserved).max(16))
        .unwrap_or(MOST)
        .min(MOST);
    match configured {
        Some(wanted) if wanted > fits => {
            tracing::warn!(
                wanted,
                open_files,
                serving = fits,
                "MAX_CONNECTIONS is more than the open-file limit leaves room for; raise the limit (ulimit -n, LimitNOFILE)"
            );
            fits
        }
        Some(wanted) => wanted,
        None => fits,
    }
}

/// Serves `router` on `listener`, at most `max_connections` at once, until `shutdown` completes; then
/// stops accepting and returns once every open connection has finished the request it was on
/// (callers bound that wait).
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    max_connections: usize,
    shutdown: F,
) where
    F: Future<Output = ()>,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connections = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(max_connections.clamp(1, MOST)));
    let mut warned_at: Option<std::time::Instant> = None;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A free slot first: until one is, new connections wait in the listen queue. Said at most
        // once a minute: at the cap, slots free up and fill again all the time.
        if slots.available_permits() == 0
            && warned_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(60))
        {
            tracing::warn!(
                max_connections,
                "connection limit reached; new connections wait"
            );
            warned_at = Some(std::time::Instant::now());
        }
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                // Never closed; were it, serving could not go on.
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
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
            drop(slot);
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
