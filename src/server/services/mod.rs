//! Use cases: each owns its rules, transaction, audit event and outgoing mail. Time and configuration
//! come in as parameters.

pub mod crypto;
pub mod password_policy;
