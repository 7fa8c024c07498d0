//! Use cases: each owns its rules, transaction, audit event and outgoing mail. Time and configuration
//! come in as parameters.

pub mod account;
pub mod activity;
pub mod audit;
pub mod auth;
pub mod consents;
pub mod crypto;
pub mod device_cookies;
pub mod export;
pub mod households;
pub mod key_rotation;
pub mod mfa;
pub mod operators;
pub mod outbox;
pub mod password_policy;
pub mod secret_box;
pub mod security_status;
pub mod sessions;
pub mod sign_in_alerts;
pub mod totp;
