//! Every path the app serves or links to, in one place.

pub const HOME: &str = "/";
pub const SECURITY: &str = "/security";
pub const TERMS: &str = "/terms";
pub const PRIVACY: &str = "/privacy";

/// Probes under this prefix stay reachable by IP and over plain HTTP, for load balancers.
pub const HEALTH_PREFIX: &str = "/health/";
pub const HEALTH_LIVE: &str = "/health/live";
pub const HEALTH_READY: &str = "/health/ready";

/// Prefix of every server function; also the JSON API surface that CSRF and CORS rules apply to.
pub const API_PREFIX: &str = "/api";
/// `set_theme` server function (kept stable so plain HTML forms and tests can post to it).
pub const API_SET_THEME: &str = "/api/theme";
