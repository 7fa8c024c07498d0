//! The one user-facing error type, shared by the server and the browser.
//!
//! Services have their own error enums; the edge maps them once into an [`AppError`], logs the detail
//! with the request id, and sends only the stable code and a safe message. Nothing from a database or a
//! library ever reaches the wire.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum AppError {
    /// The input was wrong; `field` names the form field the message belongs next to.
    #[error("{message}")]
    InvalidInput {
        field: Option<String>,
        message: String,
    },
    #[error("Please sign in to continue.")]
    Unauthenticated,
    /// Sign-in refused until the address is confirmed (`REQUIRE_EMAIL_VERIFICATION`).
    #[error(
        "Please confirm your email address first: open the link we sent you, or ask for a new one below."
    )]
    EmailNotVerified,
    /// A sensitive action needs the password again (it was last entered too long ago).
    #[error("For your security, enter your password again to continue.")]
    ReauthRequired,
    /// The terms or the privacy policy changed and this person has not accepted the new version yet.
    #[error("Please review and accept the updated terms to continue.")]
    ConsentRequired,
    /// The deployment requires two-factor authentication and this account has not set it up yet.
    #[error("Set up two-factor authentication to continue.")]
    MfaSetupRequired,
    #[error("You do not have access to this.")]
    Forbidden,
    #[error("We could not find that.")]
    NotFound,
    #[error("Too many requests. Please wait {retry_after_secs} seconds and try again.")]
    RateLimited { retry_after_secs: u64 },
    /// Turned away before any server function ran: a body over the limit, a cross-site post, a method
    /// or media type the endpoint does not take. `status` is the 4xx it was sent with; `message` is
    /// the refusal's own explanation.
    #[error("{message}")]
    Refused { status: u16, message: String },
    #[error("Nest Egg is temporarily unavailable. Please try again in a moment.")]
    Unavailable,
    #[error("Something went wrong on our side. Please try again.")]
    Internal,
}

impl AppError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        AppError::InvalidInput {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    /// Stable machine-readable code, also used in logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::InvalidInput { .. } => "invalid_input",
            AppError::Unauthenticated => "unauthenticated",
            AppError::EmailNotVerified => "email_not_verified",
            AppError::ReauthRequired => "reauth_required",
            AppError::MfaSetupRequired => "mfa_setup_required",
            AppError::ConsentRequired => "consent_required",
            AppError::Forbidden => "forbidden",
            AppError::NotFound => "not_found",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::Refused { .. } => "refused",
            AppError::Unavailable => "unavailable",
            AppError::Internal => "internal",
        }
    }

    /// The HTTP status this error is sent with.
    pub fn status(&self) -> u16 {
        match self {
            AppError::InvalidInput { .. } => 400,
            AppError::Unauthenticated => 401,
            AppError::EmailNotVerified => 403,
            AppError::ReauthRequired => 403,
            AppError::MfaSetupRequired => 403,
            AppError::ConsentRequired => 403,
            AppError::Forbidden => 403,
            AppError::NotFound => 404,
            AppError::RateLimited { .. } => 429,
            AppError::Refused { status, .. } if (400..500).contains(status) => *status,
            AppError::Refused { .. } => 400,
            AppError::Unavailable => 503,
            AppError::Internal => 500,
        }
    }

    /// The message for a given form field, if this error belongs next to it.
    pub fn for_field(&self, name: &str) -> Option<String> {
        match self {
            AppError::InvalidInput {
                field: Some(field),
                message,
            } if field == name => Some(message.clone()),
            _ => None,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            // The request did not decode: malformed or missing fields. Say so without echoing parser
            // internals back.
            ServerFnErrorErr::Args(_) | ServerFnErrorErr::Deserialization(_) => {
                AppError::InvalidInput {
                    field: None,
                    message: "The form was incomplete or malformed. Please check it and try again."
                        .to_owned(),
                }
            }
            // Browser side: the request never got an answer.
            ServerFnErrorErr::Request(_) => AppError::Unavailable,
            _ => AppError::Internal,
        }
    }

    /// Nest Egg answers every server-function error with one of these as JSON (even the refusals
    /// made before a function runs: `middleware::api_errors::explain_refusals`). An error body that
    /// is not one came from something between the browser and Nest Egg (a proxy's 502 page, a load
    /// balancer's timeout) or was cut short: Nest Egg could not be reached. (The default called it
    /// malformed input, and told the person to check the form.)
    fn de(data: leptos::server_fn::Bytes) -> Self {
        <Self::Encoder as leptos::server_fn::Decodes<Self>>::decode(data)
            .unwrap_or(AppError::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_never_reach_the_message() {
        let err = AppError::from_server_fn_error(ServerFnErrorErr::ServerError(
            "sqlx: connection refused at 10.0.0.3".into(),
        ));
        assert_eq!(err, AppError::Internal);
        assert!(!err.to_string().contains("sqlx"));

        let err = AppError::from_server_fn_error(ServerFnErrorErr::Args(
            "missing field `email` at line 1".into(),
        ));
        assert!(!err.to_string().contains("missing field"));
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn an_error_body_that_is_not_ours_means_unreachable() {
        let ours = AppError::invalid("email", "Enter an email address");
        assert_eq!(AppError::de(ours.ser()), ours);
        for body in [
            &b"<html><body><h1>502 Bad Gateway</h1></body></html>"[..],
            b"",
            b"{\"code\":\"unavail",
        ] {
            assert_eq!(
                AppError::de(leptos::server_fn::Bytes::from_static(body)),
                AppError::Unavailable
            );
        }
    }

    #[test]
    fn field_errors_are_found_by_name() {
        let err = AppError::invalid("email", "Enter an email address");
        assert_eq!(
            err.for_field("email").as_deref(),
            Some("Enter an email address")
        );
        assert_eq!(err.for_field("password"), None);
        assert_eq!(err.code(), "invalid_input");
    }
}
