//! `/health/live` (the process answers) and `/health/ready` (its dependencies answer). Bodies are tiny
//! JSON and never carry error text: the cause goes to the log.

use std::time::Duration;

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

pub async fn ready(State(state): State<AppState>) -> Response {
    let (database, redis) = tokio::join!(database_ready(&state), state.sessions.ping());
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
