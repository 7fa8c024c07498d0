//! Prometheus metrics: recorded through the `metrics` facade everywhere, rendered by
//! `metrics-exporter-prometheus` on a separate admin listener (`METRICS_ADDR`) behind HTTP basic auth
//! (`METRICS_USER` / `METRICS_PASSWORD`), so they are never reachable on the public port.
//!
//! Request metrics are labelled by route template, never by raw path: a path the app does not serve
//! is counted as `other`, so scanners cannot create unbounded series. Gauges that live in the
//! database (outbox depth, active sessions) and the pool's state are read when Prometheus scrapes.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sea_orm::DbBackend;

use crate::routes;
use crate::server::state::AppState;

/// Latency buckets, in seconds: from a cached page to a request that hit the 30 s timeout.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process-wide recorder (the `metrics` facade has one global recorder; tests start several apps
/// in one process, which share it).
pub fn handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new().set_buckets(BUCKETS).ok()?;
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(err) => {
                    tracing::warn!(error = %err, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

/// The paths the app serves, each its own route label.
#[derive(Debug, Default)]
pub struct RouteLabels(HashSet<String>);

impl RouteLabels {
    pub fn new(paths: impl IntoIterator<Item = String>) -> Self {
        let mut known: HashSet<String> = paths.into_iter().collect();
        // The health probes are answered before this layer (`startup::probes`), so they are not counted.
        known.insert(routes::DATA_EXPORT.to_owned());
        for (path, _) in leptos::server_fn::axum::server_fn_paths() {
            known.insert(path.to_owned());
        }
        RouteLabels(known)
    }

    pub fn label(&self, path: &str) -> String {
        if self.0.contains(path) {
            path.to_owned()
        } else if path.starts_with("/pkg/") {
            "/pkg/{file}".to_owned()
        } else {
            "other".to_owned()
        }
    }
}

/// Middleware: counts every request and records its latency, by route, method and status.
pub async fn track_requests(
    State(labels): State<Arc<RouteLabels>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = labels.label(request.uri().path());
    // A fixed set: any other token is a valid HTTP method, and each would be a new series.
    let method = match *request.method() {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        _ => "other",
    }
    .to_owned();
    let response = next.run(request).await;
    let labels = [
        ("route", route),
        ("method", method),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Turns a security event into the counters operators watch (sign-ins by outcome, lock-outs,
/// second-factor outcomes), besides counting every kind.
pub fn security_event(kind: &'static str, details: &serde_json::Value) {
    metrics::counter!("security_events_total", "kind" => kind).increment(1);
    let sign_in = |outcome: &'static str| {
        metrics::counter!("sign_ins_total", "outcome" => outcome).increment(1);
    };
    let mfa = |outcome: &'static str| {
        metrics::counter!("mfa_verifications_total", "outcome" => outcome).increment(1);
    };
    match kind {
        "sign_in" => {
            sign_in("success");
            match details.get("method").and_then(|m| m.as_str()) {
                Some("totp") => mfa("success_totp"),
                Some("backup_code") => mfa("success_backup_code"),
                _ => {}
            }
        }
        "sign_in_failed" => sign_in("wrong_password"),
        "sign_in_refused_locked" => sign_in("locked"),
        "sign_in_password_ok" => sign_in("second_factor_required"),
        "mfa_sign_in_failed" | "mfa_reauth_failed" | "mfa_disable_failed" => mfa("failure"),
        "mfa_sign_in_abandoned" => mfa("abandoned"),
        "locked_out" => metrics::counter!("lockouts_total").increment(1),
        _ => {}
    }
}

/// The admin listener's router: `GET /metrics` only.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(state)
}

/// Histograms keep their samples until upkeep folds them in; scrapes do it too, but without a
/// scraper memory would grow with traffic. Runs until aborted.
pub fn spawn_upkeep() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            if let Some(handle) = handle() {
                handle.run_upkeep();
            }
        }
    })
}

/// Serves the admin router on `listener` until aborted.
pub fn spawn_admin_listener(
    listener: tokio::net::TcpListener,
    state: AppState,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let header_timeout = state.settings.header_timeout;
        let app = admin_router(state);
        // The same connection limits as the app's own listener (a scraper needs a few connections at
        // most); it ends when aborted.
        crate::server::serve::serve(listener, app, header_timeout, 64, std::future::pending())
            .await;
    })
}

/// Whether `headers` carry the configured basic-auth credentials (compared in constant time).
fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    use base64::Engine as _;
    use sha2::Digest as _;
    use subtle::ConstantTimeEq as _;
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
        })
    else {
        return false;
    };
    let expected = format!(
        "{}:{}",
        state.settings.metrics_user,
        state.settings.metrics_password.expose()
    );
    // Digests have one length, so the comparison takes the same time whatever was sent.
    let given = sha2::Sha256::digest(&given);
    let expected = sha2::Sha256::digest(expected.as_bytes());
    given.ct_eq(&expected).into()
}

async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"nestegg metrics\", charset=\"UTF-8\""),
        );
        return response;
    }
    let Some(handle) = handle() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    update_gauges(&state).await;
    handle.run_upkeep();
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Reads what lives in the database and the pool. A failure leaves the last values and is counted.
async fn update_gauges(state: &AppState) {
    match crate::server::mail::worker::backlog(&state.db).await {
        Ok((pending, failed)) => {
            metrics::gauge!("outbox_emails", "status" => "pending").set(pending as f64);
            metrics::gauge!("outbox_emails", "status" => "failed").set(failed as f64);
        }
        Err(err) => {
            tracing::warn!(error = %err, "metrics: reading the outbox failed");
            metrics::counter!("metrics_scrape_errors_total").increment(1);
        }
    }
    match state.sessions.count_signed_in().await {
        Ok(active) => metrics::gauge!("sessions_active").set(active as f64),
        Err(err) => {
            tracing::warn!(error = %err, "metrics: counting sessions failed");
            metrics::counter!("metrics_scrape_errors_total").increment(1);
        }
    }
    let (size, idle, wait) = match state.db.get_database_backend() {
        DbBackend::Postgres => {
            let pool = state.db.get_postgres_connection_pool();
            let started = Instant::now();
            let acquired = pool.acquire().await.is_ok();
            (
                pool.size(),
                pool.num_idle(),
                acquired.then(|| started.elapsed()),
            )
        }
        DbBackend::Sqlite => {
            let pool = state.db.get_sqlite_connection_pool();
            let started = Instant::now();
            let acquired = pool.acquire().await.is_ok();
            (
                pool.size(),
                pool.num_idle(),
                acquired.then(|| started.elapsed()),
            )
        }
        _ => return,
    };
    let idle = idle as f64;
    metrics::gauge!("db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("db_pool_connections", "state" => "in_use")
        .set((f64::from(size) - idle).max(0.0));
    metrics::gauge!("db_pool_max_connections")
        .set(f64::from(state.settings.database.max_connections));
    if let Some(wait) = wait {
        metrics::histogram!("db_pool_acquire_seconds").record(wait.as_secs_f64());
    }
}
