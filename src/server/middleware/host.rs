//! Trusted hosts: a request naming a host we do not serve gets 400 before it reaches the app (defeats
//! DNS rebinding and poisoned absolute links). The health probes never get here (see `startup::probes`), so load balancers can probe by IP.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use http::StatusCode;

use crate::server::state::AppState;

/// The host name of a `Host` header value, lower-cased and without port (`[::1]:3000` → `[::1]`).
pub fn host_name(header: &str) -> Option<String> {
    let header = header.trim();
    let (name, port) = if let Some(rest) = header.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (&header[..inside.len() + 2], port)
    } else {
        match header.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (header, None),
        }
    };
    if port.is_some_and(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit())) {
        return None;
    }
    let valid = !name.is_empty()
        && (name.starts_with('[')
            || name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    valid.then(|| name.to_ascii_lowercase())
}

/// The request's `Host` header, or for HTTP/2 the authority of its URI.
pub fn request_host(request: &Request) -> Option<String> {
    request
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
}

pub fn is_allowed(allowed: &[String], header: Option<&str>) -> bool {
    let Some(name) = header.and_then(host_name) else {
        return false;
    };
    allowed.iter().any(|a| a == "*" || *a == name)
}

pub async fn check_host(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let header = request_host(&request);
    if is_allowed(&state.settings.allowed_hosts, header.as_deref()) {
        next.run(request).await
    } else {
        tracing::warn!(
            host = header.as_deref().unwrap_or("-"),
            "request for a host we do not serve"
        );
        (
            StatusCode::BAD_REQUEST,
            "Unknown host. This server does not serve the host name in your request.",
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_normalised() {
        assert_eq!(host_name("LocalHost:3000").as_deref(), Some("localhost"));
        assert_eq!(host_name("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_name("[::1]:3000").as_deref(), Some("[::1]"));
        assert_eq!(host_name("").as_deref(), None);
        assert_eq!(host_name("[::1]evil.example").as_deref(), None);
        assert_eq!(host_name("[::1]:").as_deref(), None);
        assert_eq!(host_name("a.example:44x").as_deref(), None);
        assert_eq!(host_name("a b.example").as_deref(), None);
        assert_eq!(
            host_name("nestegg.example:443").as_deref(),
            Some("nestegg.example")
        );
    }

    #[test]
    fn only_listed_hosts_pass() {
        let allowed = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        assert!(is_allowed(&allowed, Some("localhost:3000")));
        assert!(is_allowed(&allowed, Some("127.0.0.1:45678")));
        assert!(!is_allowed(&allowed, Some("evil.example")));
        assert!(!is_allowed(&allowed, Some("localhost.evil.example")));
        assert!(!is_allowed(&allowed, None));
        assert!(is_allowed(&["*".to_owned()], Some("anything")));
    }
}
