//! The benchmark's ceiling: bare axum on a multi-threaded tokio runtime, with no middleware, no
//! database and no sessions. `bench/run.sh` compares Nest Egg's requests per second against this.
//!
//! Listens on `127.0.0.1:$PORT` (default 3999) and answers `GET /` and `GET /health/live`.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// The body Nest Egg's `/health/live` sends, so both move about the same bytes.
async fn ok() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("PORT")
        .ok()
        .map_or(Ok(3999), |value| value.parse())
        .expect("PORT must be a port number");
    let app = Router::new()
        .route("/", get(ok))
        .route("/health/live", get(ok));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("cannot listen on 127.0.0.1:$PORT");
    axum::serve(listener, app).await.expect("server error");
}
