//! Request ids: a valid incoming `X-Request-ID` is kept (so a proxy's id links both logs), anything else is
//! replaced by a fresh UUID. tower-http then sets and echoes it; this layer only vets the incoming value.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderName;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Up to 128 visible characters from a conservative set: enough for UUIDs, ULIDs and proxy ids, and
/// nothing that could forge a log line.
pub fn is_valid_request_id(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value.iter().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        })
}

pub async fn drop_invalid_request_id(mut request: Request, next: Next) -> Response {
    let invalid = request
        .headers()
        .get_all(&REQUEST_ID)
        .iter()
        .enumerate()
        .any(|(i, value)| i > 0 || !is_valid_request_id(value.as_bytes()));
    if invalid {
        request.headers_mut().remove(&REQUEST_ID);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::is_valid_request_id;

    #[test]
    fn request_id_validation() {
        assert!(is_valid_request_id(b"0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert!(is_valid_request_id(b"01HZX3K5V9Q2W8R4T6Y7U1I0OP"));
        assert!(!is_valid_request_id(b""));
        assert!(!is_valid_request_id(b"has space"));
        assert!(!is_valid_request_id(b"new\nline"));
        assert!(!is_valid_request_id(&[b'a'; 129]));
    }
}
