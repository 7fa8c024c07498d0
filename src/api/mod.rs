//! Server functions: thin `#[server]` doors. Who is calling → validate → one service → wire type.

pub mod account;
pub mod auth;
pub mod mfa;
pub mod preferences;
