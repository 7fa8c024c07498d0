//! At most so many requests in progress at once, across every route of the service it wraps; the
//! rest wait their turn, in order, before any of their work starts.
//!
//! tower's own concurrency limits wait for a turn in `poll_ready`, which runs before any layer's
//! `call`: before the request timeout's timer starts, so a request could wait for its turn forever,
//! and before the access log and the metrics see it, so nobody could tell. This one waits inside
//! `call`, under the timeout of the layers above it (the request timeout answers 503 when the wait is
//! too long).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceExt as _};

/// One semaphore shared by every copy of the layer and of its service: applied with `Router::layer`,
/// which wraps each route on its own, a limit per copy would give each route its own `max`.
#[derive(Clone, Debug)]
pub struct InProgressLimitLayer {
    turns: Arc<Semaphore>,
}

impl InProgressLimitLayer {
    pub fn new(max: usize) -> Self {
        InProgressLimitLayer {
            turns: Arc::new(Semaphore::new(max)),
        }
    }
}

impl<S> Layer<S> for InProgressLimitLayer {
    type Service = InProgressLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InProgressLimit {
            inner,
            turns: self.turns.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct InProgressLimit<S> {
    inner: S,
    turns: Arc<Semaphore>,
}

impl<S, R> Service<R> for InProgressLimit<S>
where
    S: Service<R> + Clone + Send + 'static,
    S::Future: Send,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    /// Always ready: the wait for a turn is part of the call (see the module's comment), and the
    /// inner service is made ready there too, once the turn is ours.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: R) -> Self::Future {
        let turns = self.turns.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            // The semaphore is never closed, so this only fails in theory; go ahead without a turn
            // then rather than refuse the request.
            let _turn = turns.acquire_owned().await.ok();
            inner.oneshot(request).await
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http::StatusCode;
    use tower::ServiceExt as _;

    use super::*;

    /// Requests to different routes share the one limit.
    #[tokio::test]
    async fn the_limit_spans_every_route() {
        #[derive(Default)]
        struct Gauge {
            now: AtomicUsize,
            most: AtomicUsize,
        }
        let gauge = Arc::new(Gauge::default());
        let slow = |gauge: Arc<Gauge>| {
            get(move || async move {
                let now = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
                gauge.most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                gauge.now.fetch_sub(1, Ordering::SeqCst);
            })
        };
        let mut router = Router::new();
        for route in ["/a", "/b", "/c", "/d", "/e"] {
            router = router.route(route, slow(gauge.clone()));
        }
        // Applied as `Router::layer` applies it: to each route on its own.
        let router = router.layer(InProgressLimitLayer::new(2));
        let requests = ["/a", "/b", "/c", "/d", "/e"]
            .iter()
            .cycle()
            .take(20)
            .map(|path| {
                let request = http::Request::get(*path).body(Body::empty()).unwrap();
                tokio::spawn(router.clone().oneshot(request))
            });
        for request in requests.collect::<Vec<_>>() {
            let response = request.await.unwrap().unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        // All 20 ran, and never more than 2 at once (with a limit per route, up to 10 would).
        assert_eq!(gauge.now.load(Ordering::SeqCst), 0);
        assert_eq!(gauge.most.load(Ordering::SeqCst), 2);
    }

    /// A request waiting for its turn is under the timeout of the layers above: it gets their 503
    /// instead of waiting for as long as the requests ahead of it take.
    #[tokio::test]
    async fn the_wait_for_a_turn_times_out() {
        let started = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Notify::new());
        let (on_start, held) = (started.clone(), release.clone());
        let router = Router::new()
            .route(
                "/hold",
                get(move || {
                    let (on_start, held) = (on_start.clone(), held.clone());
                    async move {
                        on_start.notify_one();
                        held.notified().await;
                    }
                }),
            )
            .route("/quick", get(|| async {}));
        let limit = InProgressLimitLayer::new(1);
        // The request holding the only turn has no timeout; the one waiting for it has.
        let holder = limit.layer(router.clone());
        let waiter = tower::ServiceBuilder::new()
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                Duration::from_millis(200),
            ))
            .layer(limit)
            .service(router);

        let hold = http::Request::get("/hold").body(Body::empty()).unwrap();
        let holding = tokio::spawn(holder.oneshot(hold));
        started.notified().await;
        let quick = http::Request::get("/quick").body(Body::empty()).unwrap();
        // A bound of our own, so a wait outside the timeout fails the test instead of hanging it.
        let waited = tokio::time::timeout(Duration::from_secs(10), waiter.oneshot(quick))
            .await
            .expect("the wait for a turn was not under the request timeout")
            .unwrap();
        assert_eq!(waited.status(), StatusCode::SERVICE_UNAVAILABLE);
        release.notify_one();
        let held = holding.await.unwrap().unwrap();
        assert_eq!(held.status(), StatusCode::OK);
    }
}
