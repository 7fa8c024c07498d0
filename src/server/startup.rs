//! Builds the axum router with every layer, and runs it with graceful shutdown. Used by `main` and by the
//! integration tests, so what the tests exercise is what ships.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use http::StatusCode;
use leptos::config::LeptosOptions;
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes as _, generate_route_list};
use tokio::net::TcpListener;
use tower::util::{MapRequestLayer, MapResponseLayer};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::ServeDir;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::{Key, SameSite};
use tower_sessions::{Expiry, SessionManagerLayer};

use crate::app::{App, shell};
use crate::routes;
use crate::server::api_support;
use crate::server::clock::SharedClock;
use crate::server::config::Settings;
use crate::server::db::{self, DbSetupError};
use crate::server::lockouts::Lockouts;
use crate::server::mail::{Mailer, worker};
use crate::server::middleware::in_progress::InProgressLimitLayer;
use crate::server::middleware::{
    api_errors, body_limit, csrf, forwarded, host, request_id, security_headers, whole_pages,
};
use crate::server::rate_limit::RateLimiters;
use crate::server::redis::Redis;
use crate::server::services::crypto::PasswordHasher;
use crate::server::services::secret_box::SecretBox;
use crate::server::session_store::{AppSessionStore, DbSessionStore, RedisSessionStore};
use crate::server::state::{AppState, AppStateInner};
use crate::server::{health, telemetry};
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] DbSetupError),
    #[error(transparent)]
    Redis(#[from] crate::server::redis::RedisError),
    #[error("cannot derive the session cookie key")]
    SessionKey,
    #[error(transparent)]
    Crypto(#[from] crate::server::services::crypto::CryptoError),
    #[error("mail transport: {0}")]
    Mail(#[from] crate::server::mail::MailError),
    #[error("cannot listen for metrics on {addr}: {source}")]
    MetricsListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Application {
    listener: TcpListener,
    /// The admin listener for `/metrics`, unless `METRICS_ADDR=off`.
    metrics_listener: Option<TcpListener>,
    router: Router,
    state: AppState,
    mailer: Mailer,
}

impl Application {
    /// Connects, migrates (unless turned off) and assembles the app on an already bound listener.
    pub async fn build(
        settings: Settings,
        leptos_options: LeptosOptions,
        clock: SharedClock,
        listener: TcpListener,
    ) -> Result<Application, StartupError> {
        let db = db::connect(&settings.database).await?;
        if settings.database.run_migrations {
            db::migrate(&db).await?;
        }
        let mailer = match &settings.mail.smtp_url {
            Some(url) => Mailer::smtp(url.expose(), crate::server::mail::transport::SMTP_TIMEOUT)?,
            None => Mailer::files(settings.mail.outbox_dir.clone()),
        };
        let redis = connect_redis(&settings).await?;
        let state = new_state(settings, db, redis, clock, leptos_options)?;
        let router = router(state.clone())?;
        let metrics_listener = match state.settings.metrics_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartupError::MetricsListen { addr, source })?,
            ),
            None => None,
        };
        Ok(Application {
            listener,
            metrics_listener,
            router,
            state,
            mailer,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish for at most
    /// `SHUTDOWN_TIMEOUT_SECS`, and closes the database pool. The outbox worker stops claiming at the
    /// same moment, and the email it has in hand is finished (see [`MAIL_STOP_WAIT`]).
    pub async fn run_until<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Application {
            listener,
            metrics_listener,
            router,
            state,
            mailer,
        } = self;
        let metrics_server = metrics_listener.map(|l| {
            (
                crate::server::metrics::spawn_admin_listener(l, state.clone()),
                crate::server::metrics::spawn_upkeep(),
            )
        });
        // Every job has its row before anything records a run in it.
        if let Err(err) = crate::server::jobs::register(&state).await {
            tracing::warn!(error = %err, "could not register the background jobs");
        }
        // Purges, backups: see `jobs`. Due jobs are looked for every JOBS_TICK_SECS (30).
        let jobs = crate::server::jobs::spawn(state.clone(), state.settings.jobs_tick);
        let redis_watchdog = state.redis.as_ref().map(|redis| redis.spawn_watchdog());
        let (stop_mail, mail_stop) = tokio::sync::watch::channel(false);
        let stop_mail = Arc::new(stop_mail);
        let mut mail_worker = worker::spawn(
            state.secret_box.clone(),
            state.db.clone(),
            state.settings.clone(),
            state.clock.clone(),
            mailer,
            state.mail_wakeup.clone(),
            Duration::from_secs(5),
            mail_stop,
        );

        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        // When the shutdown started: the worker's time to finish runs from then, alongside the
        // requests' grace period rather than after it.
        let stopping_since = Arc::new(std::sync::OnceLock::<tokio::time::Instant>::new());
        let graceful = {
            let stop_mail = stop_mail.clone();
            let stopping_since = stopping_since.clone();
            async move {
                shutdown.await;
                tracing::info!("shutting down: no new connections, finishing in-flight requests");
                // Now rather than after the requests: the email in hand finishes meanwhile. What
                // they enqueue stays due for another instance, or for the next start.
                let _ = stopping_since.set(tokio::time::Instant::now());
                let _ = stop_mail.send(true);
                let _ = stopping_tx.send(());
            }
        };
        let max_connections = crate::server::serve::connection_cap(
            state.settings.max_connections,
            state.settings.database.max_connections,
        );
        tracing::info!(max_connections, "serving");
        let server = crate::server::serve::serve(
            listener,
            router,
            state.settings.header_timeout,
            max_connections,
            graceful,
        );
        let grace = state.settings.shutdown_timeout;
        let deadline = async move {
            match stopping_rx.await {
                Ok(()) => tokio::time::sleep(grace).await,
                Err(_) => std::future::pending::<()>().await,
            }
        };
        let result = tokio::select! {
            () = server => Ok(()),
            () = deadline => {
                tracing::warn!(seconds = grace.as_secs(), "in-flight requests did not finish in time; stopping anyway");
                Ok(())
            }
        };
        jobs.abort();
        if let Some(watchdog) = redis_watchdog {
            watchdog.abort();
        }
        let _ = stop_mail.send(true);
        let since = stopping_since
            .get()
            .copied()
            .unwrap_or_else(tokio::time::Instant::now);
        if tokio::time::timeout_at(since + MAIL_STOP_WAIT, &mut mail_worker)
            .await
            .is_err()
        {
            tracing::warn!("the outbox worker did not finish in time; stopping it");
            mail_worker.abort();
        }
        if let Some((listener, upkeep)) = metrics_server {
            listener.abort();
            upkeep.abort();
        }
        // Closing waits for every connection in use to come back, and one may not for long: a nightly
        // backup copy (`VACUUM INTO`) runs on to its end after its job is aborted. The exit must
        // not wait for it past what the supervisor allows (its half-written copy is cleared by the
        // next backup).
        match tokio::time::timeout(DB_CLOSE_WAIT, state.db.close_by_ref()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "closing the database pool failed"),
            Err(_) => tracing::warn!("database connections still in use; stopping without them"),
        }
        result
    }
}

/// How long a stopping instance waits for the outbox worker: the email in hand must be finished, sent
/// *and* recorded, since stopping between the two has another instance send it again once its lease
/// runs out. A send gives up after `SMTP_TIMEOUT`, its goodbye after `QUIT_WAIT` more; recording it
/// takes a moment more.
const MAIL_STOP_WAIT: Duration = Duration::from_secs(
    crate::server::mail::transport::SMTP_TIMEOUT.as_secs()
        + crate::server::mail::transport::QUIT_WAIT.as_secs()
        + 5,
);

/// How long a stopping instance waits for its database connections to be given back.
const DB_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The Redis connection when `REDIS_URL` is set (the scaled-out mode).
pub async fn connect_redis(settings: &Settings) -> Result<Option<Redis>, StartupError> {
    match &settings.redis {
        Some(redis) => Ok(Some(Redis::connect(redis).await?)),
        None => Ok(None),
    }
}

/// The shared state, for the server and for command-line tasks that act like it (sending mail,
/// hashing passwords).
pub fn new_state(
    settings: Settings,
    db: sea_orm::DatabaseConnection,
    redis: Option<Redis>,
    clock: SharedClock,
    leptos_options: LeptosOptions,
) -> Result<AppState, StartupError> {
    let hasher = PasswordHasher::new(
        settings.accounts.hash_cost,
        settings.accounts.hash_concurrency,
    )?;
    let idle = time::Duration::try_from(settings.session_idle_timeout)
        .map_err(|_| StartupError::SessionKey)?;
    let (limiters, lockouts, sessions) = match &redis {
        Some(redis) => (
            RateLimiters::redis(&settings.rate_limits, redis.clone()),
            Lockouts::redis(redis.clone()),
            AppSessionStore::Redis(RedisSessionStore::new(redis.clone(), clock.clone(), idle)),
        ),
        None => (
            RateLimiters::new(&settings.rate_limits),
            Lockouts::Database,
            AppSessionStore::Database(
                DbSessionStore::new(db.clone(), clock.clone()).with_idle_timeout(idle),
            ),
        ),
    };
    let limiters = Arc::new(limiters);
    let secret_box = Arc::new(SecretBox::new(
        &settings.encryption_key,
        &settings.encryption_keys_previous,
    ));
    Ok(AppState::new(AppStateInner {
        settings: Arc::new(settings),
        db,
        clock,
        leptos_options,
        hasher,
        limiters,
        lockouts,
        sessions,
        redis,
        mail_wakeup: Arc::new(Notify::new()),
        exports: Arc::new(tokio::sync::Semaphore::new(
            crate::server::services::export::MAX_CONCURRENT,
        )),
        secret_box,
        backup_turn: crate::server::backup::Turn::default(),
        readiness: crate::server::health::Readiness::default(),
    }))
}

/// Context every render and server function gets: the app state and this response's CSP nonce.
fn provide_request_context(state: &AppState) {
    provide_context(state.clone());
    if let Some(parts) = use_context::<http::request::Parts>()
        && let Some(nonce) = parts.extensions.get::<security_headers::CspNonce>()
    {
        provide_context(leptos::nonce::Nonce::from_value(nonce.0.clone()));
    }
}

/// Requests (pages, server functions, files; not the health probes) in progress at once; the rest wait
/// their turn, in order, before any of their work starts (`middleware::in_progress`). Rendering is
/// CPU-bound, so more at once is not faster, only bigger: 1000 clients at once held 320 MiB of
/// half-rendered pages (bench/run.sh) and queued for the database pool until they timed out. 16 rather
/// than 64: on 2 cores the signed-in page ran as fast or faster and the 1000-client peak was 18 MiB
/// lower.
const MAX_IN_PROGRESS: usize = 16;

pub fn router(state: AppState) -> Result<Router, StartupError> {
    let settings = state.settings.clone();
    let leptos_options = state.leptos_options.clone();
    let state_for_probes = state.clone();
    let route_list = generate_route_list(App);
    // Installs the recorder on first use; every request from here on is counted. With metrics off
    // there is no recorder and recording costs nothing.
    if settings.metrics_addr.is_some() {
        let _ = crate::server::metrics::handle();
    }
    let route_labels = Arc::new(crate::server::metrics::RouteLabels::new(
        route_list.iter().map(|r| r.path().to_owned()),
    ));

    let context = {
        let state = state.clone();
        move || provide_request_context(&state)
    };
    let app_shell = move || shell(leptos_options.clone());

    // Every stack of layers below wraps one service, once (`ServiceBuilder`, outermost first), not each
    // route: `Router::layer` wraps every route on its own and boxes each layer, so a request cloned the
    // whole boxed stack, and every `from_fn` layer cloned the rest of it again. A request refused at
    // the host check took 70 µs of CPU that way, most of it allocating (perf, by hand).
    let pages = Router::new()
        // Inside the session layer, which it needs; a plain handler, since it answers with a file.
        .route(
            routes::DATA_EXPORT,
            axum::routing::post(crate::api::export::download),
        )
        .leptos_routes_with_context(&state, route_list, context.clone(), app_shell)
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(context, shell))
        .with_state(state.clone());
    let pages = tower::ServiceBuilder::new()
        // First: a page load over the budget is turned away before any work on it.
        .layer(from_fn_with_state(
            api_support::PageBudget::new(state.clone()),
            api_support::limit_page_loads,
        ))
        // Before the rest: it only sends the browser on.
        .layer(from_fn(api_errors::drop_foreign_form_results))
        // Outside the session layer: its bare 500 for a store that failed becomes a 503.
        .layer(from_fn(
            crate::server::session_store::unavailable_when_the_store_fails,
        ))
        .layer(session_layer(&state)?)
        // Inside the session layer: saves a used session once a minute, so its idle timeout slides.
        .layer(from_fn_with_state(
            state.clone(),
            crate::server::middleware::session_touch::touch_session,
        ))
        // Inside the session layer: it needs to know who is asking.
        .layer(from_fn_with_state(
            state.clone(),
            crate::server::middleware::operator_pages::hide_from_non_operators,
        ))
        // Inside the session layer: tower-sessions does not save a session on a 5xx, and the
        // server-function runtime answers every error with 500 until this maps it (a wrong MFA code
        // must still count in the session).
        .layer(from_fn(api_errors::map_server_fn_errors))
        // Innermost: a page is rendered whole even if its client leaves, and the session layer saves
        // only once it is.
        .layer(from_fn(whole_pages::render_whole_pages))
        .service(pages);

    // The compiled bundle is served by ServeDir, which answers conditional requests with 304, so a
    // page load revalidates the WASM instead of downloading it again. It needs no session.
    let pkg_dir = std::path::Path::new(&*state.leptos_options.site_root)
        .join(&*state.leptos_options.site_pkg_dir);
    let pkg_route = format!("/{}", state.leptos_options.site_pkg_dir);
    let site = Router::new()
        .nest_service(&pkg_route, ServeDir::new(pkg_dir))
        .fallback_service(pages);

    // The outermost layers run for every response, even a refusal, so each one gets a request id, a
    // log line and the security headers.
    let site = tower::ServiceBuilder::new()
        .layer(MapRequestLayer::new(request_id::drop_invalid_request_id))
        .layer(SetRequestIdLayer::x_request_id(request_id::MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(telemetry::make_request_span)
                .on_request(())
                .on_response(telemetry::on_response)
                .on_failure(()),
        )
        .layer(from_fn_with_state(
            route_labels,
            crate::server::metrics::track_requests,
        ))
        .layer(from_fn_with_state(
            state.clone(),
            security_headers::set_security_headers,
        ))
        // Outside every layer below that can turn a server-function call away in plain text.
        .layer(from_fn(api_errors::explain_refusals))
        // Covers reading the body and the wait for a turn, below.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            settings.request_timeout,
        ))
        // The body is read before the request takes a turn: a client sending its body a byte at a
        // time holds a connection, not one of the few turns every other visitor waits for.
        .layer(body_limit::BodyLimitLayer::new(state.clone()))
        // A request waits for its turn here, before the layers below have started on it: 1000 waiting
        // requests then hold little more than their headers and bodies (at most MAX_BODY_BYTES each;
        // below those layers they held 16 MiB of middleware state at 1000 clients, bench/run.sh).
        .layer(InProgressLimitLayer::new(MAX_IN_PROGRESS))
        // Inside the headers layer, so even the answer to a panic carries every security header.
        .layer(CatchPanicLayer::custom(internal_error))
        .layer(compression_layer())
        .layer(from_fn_with_state(
            state.clone(),
            forwarded::apply_forwarded_headers,
        ))
        // Inside the forwarded-headers layer: a trusted proxy's X-Forwarded-Host is the host to judge.
        .layer(from_fn_with_state(state.clone(), host::check_host))
        // Outside the CSRF check: a preflight is answered here, and only listed origins get the
        // Access-Control-Allow-* headers.
        .layer(cors_layer(&settings))
        .layer(from_fn_with_state(state.clone(), csrf::refuse_cross_site))
        .layer(from_fn_with_state(
            state.clone(),
            api_support::attach_request_meta,
        ))
        .layer(from_fn_with_state(state, api_support::limit_api_calls))
        .service(site);
    Ok(probes(&state_for_probes).fallback_service(site))
}

/// `/health/live` and `/health/ready`, answered before the app's layers: a load balancer probes by IP,
/// over plain HTTP and often, and a probe needs no host check, no HTTPS redirect, no session, no
/// compression and no access-log line. It keeps its request id and the security headers.
fn probes(state: &AppState) -> Router {
    let production = state.settings.environment.is_production();
    // Each probe's handler wrapped once, as the site is (see `router`), with no router of its own: one
    // path lookup per probe. (Measured by hand against per-route `Router::layer`: about the same,
    // 131–138k probes a second either way, 71% of bare axum; the probe's cost is mostly its headers.)
    let probe = |handler: axum::routing::MethodRouter| {
        tower::ServiceBuilder::new()
            .layer(MapRequestLayer::new(request_id::drop_invalid_request_id))
            .layer(SetRequestIdLayer::x_request_id(request_id::MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(MapResponseLayer::new(move |response| {
                security_headers::set_probe_headers(production, response)
            }))
            .layer(CatchPanicLayer::custom(internal_error))
            .service(handler)
    };
    Router::new()
        .route_service(routes::HEALTH_LIVE, probe(get(health::live)))
        .route_service(
            routes::HEALTH_READY,
            probe(get(health::ready).with_state(state.clone())),
        )
}

/// gzip/brotli for what is worth it; not the data export, a ZIP is compressed already.
fn compression_layer() -> CompressionLayer<impl tower_http::compression::Predicate> {
    use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate as _};
    // A moderate level: the defaults (brotli's is its slowest, 11) cost more CPU per page than
    // rendering it, and the WASM bundle is compressed on every download.
    // Of the errors, only pages (the 404 page, the outage page: the whole site's shell). The others
    // are short, and `api_errors::explain_refusals` reads their text.
    let a_page_if_an_error =
        |status: StatusCode, _: http::Version, headers: &http::HeaderMap, _: &http::Extensions| {
            !(status.is_client_error() || status.is_server_error())
                || headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("text/html"))
        };
    CompressionLayer::new()
        .quality(tower_http::CompressionLevel::Precise(4))
        .compress_when(
            DefaultPredicate::new()
                .and(NotForContentType::const_new("application/zip"))
                .and(a_page_if_an_error),
        )
}

/// CORS for the sites in `CORS_ORIGINS` (none by default): exact origins, with credentials.
fn cors_layer(settings: &crate::server::config::Settings) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<http::HeaderValue> = settings
        .cors_origins
        .iter()
        .filter_map(|o| http::HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([http::Method::GET, http::Method::POST])
        .allow_headers([http::header::CONTENT_TYPE, http::header::ACCEPT])
        .max_age(std::time::Duration::from_secs(600))
}

/// The session layer with the cookie attributes `Settings` asks for (also used by the cookie tests).
pub fn session_layer(
    state: &AppState,
) -> Result<SessionManagerLayer<AppSessionStore, tower_sessions::service::SignedCookie>, StartupError>
{
    let settings = &state.settings;
    let idle = time::Duration::try_from(settings.session_idle_timeout)
        .map_err(|_| StartupError::SessionKey)?;
    Ok(SessionManagerLayer::new(state.sessions.clone())
        .with_name(settings.session_cookie_name())
        .with_secure(settings.cookie_secure)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(idle))
        // Saved when changed; `session_touch` changes a used session once a minute, so the idle
        // timeout slides without a store write on every request.
        .with_always_save(false)
        .with_signed(session_cookie_key(settings)?))
}

/// The cookie-signing key, derived from `SECRET_KEY` for this one purpose (HKDF-SHA256), so rotating
/// `SECRET_KEY` signs everyone out and no other use of the key can be confused with it.
fn session_cookie_key(settings: &Settings) -> Result<Key, StartupError> {
    let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"nestegg"), settings.secret_key.expose());
    let mut okm = [0u8; 64];
    hkdf.expand(b"session-cookie-signing", &mut okm)
        .map_err(|_| StartupError::SessionKey)?;
    Key::try_from(&okm[..]).map_err(|_| StartupError::SessionKey)
}

fn internal_error(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    // The panic hook (see `cli::install_panic_hook`) has logged where it happened, without the message.
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on our side. Please try again in a moment.",
    )
        .into_response()
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, wait for SIGTERM instead of stopping at once.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
