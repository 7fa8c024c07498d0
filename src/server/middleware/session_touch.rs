//! A session's idle timeout slides while it is used. tower-sessions' "always save" would write the
//! session store on every request to slide it — a database or Redis write per page view. Instead a
//! session is saved when it changes, or when its last save is a minute old (by the app clock): the
//! idle timeout is kept to within a minute, for one write a minute per active session.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tower_sessions::Session;

use crate::server::state::AppState;

/// Session data key: when (Unix seconds, app clock) the session was last saved for activity.
pub const TOUCHED_AT_KEY: &str = "touched_at";
const TOUCH_EVERY_SECS: i64 = 60;

/// Inside the session layer.
pub async fn touch_session(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let session = request.extensions().get::<Session>().cloned();
    let response = next.run(request).await;
    // Only a session the visitor brought (no session is created for an anonymous visit), and never
    // on a failure (tower-sessions does not save then).
    let Some(session) = session.filter(|s| s.id().is_some()) else {
        return response;
    };
    if response.status().is_server_error() {
        return response;
    }
    // A store that cannot be read leaves the response as the handler made it: one that needed the
    // session has answered 503 already.
    let Ok(touched) = session.get::<i64>(TOUCHED_AT_KEY).await else {
        return response;
    };
    // The cookie named a session that is gone (signed out, revoked, expired): nothing to slide.
    if session.id().is_none() || session.is_empty().await {
        return response;
    }
    let now = state.clock.now().unix_timestamp();
    if touched.is_none_or(|at| now - at >= TOUCH_EVERY_SECS) {
        // Saved only to slide the idle timeout: a store failing then is no reason to replace the
        // answer (what the request did is done) with a 503. A session the request changed itself
        // still gets one.
        if !session.is_modified() {
            crate::server::session_store::keep_answer_if_not_saved();
        }
        // Marks the session changed, so the session layer saves it (and sends the cookie again).
        let _ = session.insert(TOUCHED_AT_KEY, now).await;
    }
    response
}
