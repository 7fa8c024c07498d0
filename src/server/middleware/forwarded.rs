//! Running behind a reverse proxy, and insisting on HTTPS in production.
//!
//! `X-Forwarded-Proto` and `X-Forwarded-Host` are believed only from a peer in `TRUSTED_PROXIES`: the
//! proxy's `X-Forwarded-Host` becomes the request's `Host` (which the host check and CSRF check then
//! judge), and its `X-Forwarded-Proto` says whether the client used HTTPS. From anyone else both
//! headers are removed, so nothing downstream can be fooled by them. (`X-Forwarded-For` is handled
//! the same way in `client_ip`.)
//!
//! In production a request that did not arrive over HTTPS is redirected (308, keeping the method) to
//! the same path on `PUBLIC_URL`. The health probes, which load balancers send over plain HTTP, are
//! answered before this layer (`startup::probes`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use http::{HeaderName, HeaderValue, StatusCode, header};

use crate::server::state::AppState;

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Whether the client reached us over HTTPS (as far as we can know), for the request's handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientScheme {
    pub https: bool,
}

/// The last value of a possibly repeated, comma-separated header: the one our own proxy added
/// (earlier values may come from the client).
fn proxy_value(request: &Request, name: &HeaderName) -> Option<String> {
    request
        .headers()
        .get_all(name)
        .iter()
        .rev()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.rsplit(','))
        .map(str::trim)
        .find(|v| !v.is_empty())
        .map(str::to_owned)
}

pub async fn apply_forwarded_headers(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| {
            c.0.ip().to_canonical()
        });
    let trusted = state
        .settings
        .trusted_proxies
        .iter()
        .any(|net| net.contains(&peer));
    let https = if trusted {
        if let Some(host) = proxy_value(&request, &X_FORWARDED_HOST)
            && let Ok(value) = HeaderValue::from_str(&host)
        {
            request.headers_mut().insert(header::HOST, value);
        }
        proxy_value(&request, &X_FORWARDED_PROTO).is_some_and(|p| p.eq_ignore_ascii_case("https"))
    } else {
        if request.headers().contains_key(&X_FORWARDED_PROTO)
            || request.headers().contains_key("x-forwarded-for")
        {
            // Most likely a proxy missing from TRUSTED_PROXIES: in production every request would
            // be redirected to HTTPS again and again. Say so where operators look.
            metrics::counter!("untrusted_forwarded_requests_total").increment(1);
            tracing::warn!(%peer, "forwarded headers from a peer not in TRUSTED_PROXIES were ignored");
        }
        request.headers_mut().remove(X_FORWARDED_PROTO);
        request.headers_mut().remove(X_FORWARDED_HOST);
        // We never terminate TLS ourselves: without a trusted proxy saying otherwise, it is HTTP.
        false
    };
    request.extensions_mut().insert(ClientScheme { https });

    if state.settings.environment.is_production() && !https {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        // To PUBLIC_URL's origin, never to a host taken from the request: no open redirect.
        let location = format!("{}{path}", state.settings.public_origin());
        let mut response = StatusCode::PERMANENT_REDIRECT.into_response();
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        return response;
    }
    next.run(request).await
}
