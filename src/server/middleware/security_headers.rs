//! Security headers on every response, and a fresh CSP nonce per request.
//!
//! The nonce is generated here, handed to the Leptos renderer through a request extension (see
//! `startup::provide_request_context`), and written into the `Content-Security-Policy` header on the way
//! out, so the header and the `nonce="…"` attributes in the HTML always agree.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderName, HeaderValue};

use crate::routes;
use crate::server::state::AppState;

/// The per-request CSP nonce: 128 random bits, URL-safe base64.
#[derive(Clone, Debug)]
pub struct CspNonce(pub String);

impl CspNonce {
    pub fn generate() -> Self {
        use base64::Engine as _;
        use rand::RngCore as _;
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        CspNonce(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }
}

pub fn content_security_policy(nonce: &str) -> String {
    // 'wasm-unsafe-eval' lets the browser compile our WASM bundle; it does not allow JS eval().
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    )
}

const PERMISSIONS_POLICY: HeaderName = HeaderName::from_static("permissions-policy");
const CROSS_ORIGIN_OPENER_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-opener-policy");
const CROSS_ORIGIN_RESOURCE_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-resource-policy");

pub async fn set_security_headers(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let nonce = CspNonce::generate();
    request.extensions_mut().insert(nonce.clone());
    let is_api = request.uri().path().starts_with(routes::API_PREFIX);

    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(&nonce.0)) {
        headers.insert(CONTENT_SECURITY_POLICY, csp);
    }
    set_fixed_headers(headers, state.settings.environment.is_production());

    // Pages and API answers can carry personal data: no cache may keep them. Static assets keep the
    // validators ServeDir gives them and are revalidated.
    let is_html = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html"));
    if is_html || is_api {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    } else if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    response
}

/// The headers of the health probes (`startup::probes`): JSON needs no nonce, so the policy is fixed and
/// allows nothing at all. A plain function (for `tower::util::MapResponseLayer`): no boxed future. Any
/// body: it runs outside `CatchPanicLayer`, which boxes the body its own way.
pub fn set_probe_headers<B>(
    production: bool,
    mut response: http::Response<B>,
) -> http::Response<B> {
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    set_fixed_headers(headers, production);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Every header but the content policy and caching, which depend on the response.
fn set_fixed_headers(headers: &mut http::HeaderMap, production: bool) {
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    headers.insert(
        PERMISSIONS_POLICY,
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
    );
    headers.insert(
        CROSS_ORIGIN_OPENER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        CROSS_ORIGIN_RESOURCE_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if production {
        headers.insert(
            STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_fresh_and_long_enough() {
        let a = CspNonce::generate().0;
        let b = CspNonce::generate().0;
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
    }

    #[test]
    fn policy_has_no_unsafe_inline_scripts() {
        let csp = content_security_policy("abc");
        assert!(csp.contains("script-src 'self' 'nonce-abc' 'wasm-unsafe-eval'"));
        assert!(!csp.contains("unsafe-inline"));
        for directive in [
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{directive}");
        }
    }
}
