//! Small, separately tested layers that every response passes through.

pub mod api_errors;
pub mod body_limit;
pub mod csrf;
pub mod forwarded;
pub mod host;
pub mod in_progress;
pub mod operator_pages;
pub mod request_id;
pub mod security_headers;
pub mod session_touch;
pub mod whole_pages;
