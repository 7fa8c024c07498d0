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
}

pub async fn live() -> Response {
    Json(Health {
        status: "ok",
        checks: None,
    })
    .into_response()
}

pub async fn ready(State(state): State<AppState>) -> Response {
    let database = match tokio::time::timeout(Duration::from_secs(2), state.db.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness: database ping failed");
            false
        }
        Err(_) => {
            tracing::warn!("readiness: database ping timed out");
            false
        }
    };
    let status = if database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: if database { "ok" } else { "unavailable" },
        checks: Some(Checks {
            database: if database { "ok" } else { "unavailable" },
        }),
    };
    (status, Json(body)).into_response()
}
