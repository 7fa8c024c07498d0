//! Operator pages (`/admin/…`) answer 404 to everyone but operators, decided before the page streams:
//! the page renders the "not found" content by itself, but its status must not depend on when
//! rendering reaches that point.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::StatusCode;

use crate::server::api_support::RequestContext;
use crate::server::state::AppState;

pub const PREFIX: &str = "/admin/";

pub async fn hide_from_non_operators(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !request.uri().path().starts_with(PREFIX) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let operator = match RequestContext::from_parts(state, &parts) {
        Ok(ctx) => ctx.require_operator().await.is_ok(),
        Err(_) => false,
    };
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if !operator && response.status().is_success() {
        *response.status_mut() = StatusCode::NOT_FOUND;
    }
    response
}
