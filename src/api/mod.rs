//! Server functions: thin `#[server]` doors. Who is calling → validate → one service → wire type.

pub mod account;
pub mod admin;
pub mod auth;
#[cfg(feature = "ssr")]
pub mod export;
pub mod households;
pub mod mfa;
pub mod preferences;
