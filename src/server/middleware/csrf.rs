//! Cross-site request forgery protection from the browser's own signals.
//!
//! A state-changing request (anything but GET/HEAD/OPTIONS) is refused with 403 when the browser says it
//! is not same-origin (`Sec-Fetch-Site`), or when its `Origin` is not our own. Requests carrying neither
//! header do not come from a browser (browsers send `Origin` on every cross-origin and every POST
//! request), so they cannot ride on a visitor's cookies and pass. SameSite=Lax cookies are the second
//! line of defence.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use http::{HeaderMap, Method, StatusCode};

use crate::server::middleware::host::{host_name, request_host};
use crate::server::state::AppState;

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Refuse(&'static str),
}

/// `public_url` is `PUBLIC_URL`; `host` the request's `Host` (or HTTP/2 authority).
pub fn judge(
    method: &Method,
    headers: &HeaderMap,
    public_url: &url::Url,
    host: Option<&str>,
    cors_origins: &[String],
) -> Verdict {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Verdict::Allow;
    }
    // Sites listed in `CORS_ORIGINS` are trusted to call us from their pages.
    if let Some(origin) = headers
        .get(http::header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        && cors_origins.iter().any(|allowed| allowed == origin)
    {
        return Verdict::Allow;
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        // "none" means the person typed the URL or used a bookmark: not forgeable by a site.
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return Verdict::Refuse("sec-fetch-site");
        }
    }
    if let Some(origin) = headers.get(http::header::ORIGIN) {
        let Ok(origin) = origin.to_str() else {
            return Verdict::Refuse("origin");
        };
        if !is_own_origin(origin, public_url, host) {
            return Verdict::Refuse("origin");
        }
    }
    Verdict::Allow
}

/// Our origin is `PUBLIC_URL`'s, or `PUBLIC_URL`'s scheme with the host the request was addressed to
/// (already checked against `ALLOWED_HOSTS`), so `localhost` and `127.0.0.1` both work in development
/// while an `http://` origin never passes for an `https://` deployment.
fn is_own_origin(origin: &str, public_url: &url::Url, host: Option<&str>) -> bool {
    if origin == public_url.origin().ascii_serialization() {
        return true;
    }
    match host {
        Some(host) if host_name(host).is_some() => {
            origin.eq_ignore_ascii_case(&format!("{}://{}", public_url.scheme(), host))
        }
        // "null" (sandboxed frames, file:), and anything when the host is unknown.
        _ => false,
    }
}

pub async fn refuse_cross_site(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let host = request_host(&request);
    match judge(
        request.method(),
        request.headers(),
        &state.settings.public_url,
        host.as_deref(),
        &state.settings.cors_origins,
    ) {
        Verdict::Allow => next.run(request).await,
        Verdict::Refuse(signal) => {
            tracing::warn!(signal, "refused a cross-site state-changing request");
            (
                StatusCode::FORBIDDEN,
                "This request was refused because it came from another website. \
                 If you clicked a link or button on Nest Egg, reload the page and try again.",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const OURS: &str = "http://127.0.0.1:3000";

    fn judge(method: &Method, headers: &HeaderMap, public: &str) -> Verdict {
        let host = headers.get("host").and_then(|v| v.to_str().ok());
        super::judge(method, headers, &public.parse().unwrap(), host, &[])
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn safe_methods_always_pass() {
        let h = headers(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ]);
        assert_eq!(judge(&Method::GET, &h, OURS), Verdict::Allow);
        assert_eq!(judge(&Method::HEAD, &h, OURS), Verdict::Allow);
    }

    #[test]
    fn cross_site_posts_are_refused() {
        for site in ["cross-site", "same-site"] {
            let h = headers(&[("sec-fetch-site", site), ("host", "127.0.0.1:3000")]);
            assert_eq!(
                judge(&Method::POST, &h, OURS),
                Verdict::Refuse("sec-fetch-site")
            );
        }
        let h = headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:3000"),
        ]);
        assert_eq!(judge(&Method::POST, &h, OURS), Verdict::Refuse("origin"));
        let h = headers(&[("origin", "null"), ("host", "127.0.0.1:3000")]);
        assert_eq!(judge(&Method::DELETE, &h, OURS), Verdict::Refuse("origin"));
        // Same host name on another port is another origin.
        let h = headers(&[
            ("origin", "http://127.0.0.1:4000"),
            ("host", "127.0.0.1:3000"),
        ]);
        assert_eq!(judge(&Method::POST, &h, OURS), Verdict::Refuse("origin"));
        // Plain HTTP is not our origin when we are served over HTTPS.
        let h = headers(&[("origin", "http://app.example"), ("host", "app.example")]);
        assert_eq!(
            judge(&Method::POST, &h, "https://app.example"),
            Verdict::Refuse("origin")
        );
    }

    #[test]
    fn same_origin_posts_pass() {
        let h = headers(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", OURS),
            ("host", "127.0.0.1:3000"),
        ]);
        assert_eq!(judge(&Method::POST, &h, OURS), Verdict::Allow);
        let h = headers(&[
            ("origin", "http://localhost:3000"),
            ("host", "localhost:3000"),
        ]);
        assert_eq!(judge(&Method::POST, &h, OURS), Verdict::Allow);
        // Not a browser: no cookies of a visitor can be involved.
        assert_eq!(
            judge(&Method::POST, &HeaderMap::new(), OURS),
            Verdict::Allow
        );
    }
}
