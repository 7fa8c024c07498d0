use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use sea_orm::DatabaseConnection;

use tokio::sync::Notify;

use crate::server::clock::SharedClock;
use crate::server::config::Settings;
use crate::server::rate_limit::RateLimiters;
use crate::server::services::crypto::PasswordHasher;
use crate::server::services::secret_box::SecretBox;

/// Shared by every request: handlers, server functions (through Leptos context) and middleware.
#[derive(Clone, Debug)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: DatabaseConnection,
    pub clock: SharedClock,
    pub leptos_options: LeptosOptions,
    pub hasher: PasswordHasher,
    pub limiters: Arc<RateLimiters>,
    /// Wakes the outbox worker as soon as an email is committed.
    pub mail_wakeup: Arc<Notify>,
    /// Data exports being written at once (each holds a blocking thread): see `services::export`.
    pub exports: Arc<tokio::sync::Semaphore>,
    /// Seals sensitive fields at rest under `ENCRYPTION_KEY`.
    pub secret_box: Arc<SecretBox>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
