//! `/health/live` (the process answers) and `/health/ready` (its dependencies answer). Bodies are tiny
//! JSON and never carry error text: the cause goes to the log.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;

use crate::server::state::AppState;

#[derive(Serialize)]
struct Health {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    checks: Option<Checks>,
}

#[derive(Serialize)]
struct Checks {
    database: &'static str,
    /// Present in the scaled-out mode only (sessions, rate limits and lock-outs live there).
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<&'static str>,
}

fn word(ok: bool) -> &'static str {
    if ok { "ok" } else { "unavailable" }
}

pub async fn live() -> Response {
    Json(Health {
        status: "ok",
        checks: None,
    })
    .into_response()
}

/// The last readiness check, reused for [`REUSE_FOR`].
///
/// The probe is public (a proxy forwards every path) and answered before every limit of the app's
/// (see `startup::probes`), yet each check takes a database connection and a Redis round trip: probes
/// sent in a loop would take the pool from real requests. So at most one check runs at a time, and
/// probes arriving within a second of one get its result; a load balancer probing every few seconds
/// still sees each outage and each recovery within a second.
#[derive(Debug, Default)]
pub struct Readiness(tokio::sync::Mutex<Option<Checked>>);

#[derive(Debug, Clone, Copy)]
struct Checked {
    at: Instant,
    database: bool,
    redis: Option<bool>,
}

const REUSE_FOR: Duration = Duration::from_secs(1);

impl Readiness {
    /// The latest result, or a new one if it is older than [`REUSE_FOR`]: probes arriving during a
    /// check wait for it (its timeouts bound the wait) instead of starting their own.
    async fn current(&self, state: &AppState) -> Checked {
        let mut last = self.0.lock().await;
        if let Some(checked) = *last
            && checked.at.elapsed() < REUSE_FOR
        {
            return checked;
        }
        let (database, redis) = tokio::join!(database_ready(state), state.sessions.ping());
        let checked = Checked {
            at: Instant::now(),
            database,
            redis,
        };
        *last = Some(checked);
        checked
    }
}

pub async fn ready(State(state): State<AppState>) -> Response {
    let Checked {
        database, redis, ..
    } = state.readiness.current(&state).await;
    let ready = database && redis.unwrap_or(true);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: word(ready),
        checks: Some(Checks {
            database: word(database),
            redis: redis.map(word),
        }),
    };
    (status, Json(body)).into_response()
}

async fn database_ready(state: &AppState) -> bool {
    match tokio::time::timeout(Duration::from_secs(2), state.db.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness: database ping failed");
            false
        }
        Err(_) => {
            tracing::warn!("readiness: database ping timed out");
            false
        }
    }
}
