//! SeaORM entities: table shapes only, no logic.

pub mod account_token;
pub mod backup_code;
pub mod consent;
pub mod household;
pub mod household_invitation;
pub mod household_member;
pub mod job;
pub mod known_device;
pub mod login_throttle;
pub mod operator;
pub mod outbox_email;
pub mod security_event;
pub mod session;
pub mod totp_credential;
pub mod user;
