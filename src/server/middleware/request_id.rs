//! Request ids: a valid incoming `X-Request-ID` is kept (so a proxy's id links both logs), anything else is
//! replaced by a fresh UUID. tower-http then sets and echoes it; this layer only vets the incoming value.

use axum::extract::Request;
use http::{HeaderName, HeaderValue};
use tower_http::request_id::{MakeRequestId, RequestId};

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

/// A fresh random (v4) UUID for a request that brought no valid id. From the thread's random generator,
/// where `uuid`'s own `new_v4` makes a `getrandom` system call for each one.
#[derive(Clone, Copy, Debug, Default)]
pub struct MakeRequestUuid;

impl MakeRequestId for MakeRequestUuid {
    fn make_request_id<B>(&mut self, _request: &http::Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut buffer = uuid::Uuid::encode_buffer();
        HeaderValue::from_str(id.hyphenated().encode_lower(&mut buffer))
            .ok()
            .map(RequestId::new)
    }
}

/// A plain function (for `tower::util::MapRequestLayer`): it runs on every request, the health probes
/// included, so it costs no boxed future.
pub fn drop_invalid_request_id(mut request: Request) -> Request {
    let invalid = request
        .headers()
        .get_all(&REQUEST_ID)
        .iter()
        .enumerate()
        .any(|(i, value)| i > 0 || !is_valid_request_id(value.as_bytes()));
    if invalid {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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

    #[test]
    fn generated_ids_are_fresh_v4_uuids() {
        use tower_http::request_id::MakeRequestId as _;
        let request = http::Request::new(());
        let mut make = super::MakeRequestUuid;
        let ids: Vec<uuid::Uuid> = (0..2)
            .map(|_| {
                let id = make.make_request_id(&request).unwrap();
                uuid::Uuid::parse_str(id.header_value().to_str().unwrap()).unwrap()
            })
            .collect();
        assert_ne!(ids[0], ids[1]);
        assert!(ids.iter().all(|id| id.get_version_num() == 4));
    }
}
