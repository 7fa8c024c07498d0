use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use sea_orm::DatabaseConnection;

use tokio::sync::Notify;

use crate::server::clock::SharedClock;
use crate::server::config::Settings;
use crate::server::rate_limit::RateLimiters;
use crate::server::redis::Redis;
use crate::server::services::crypto::PasswordHasher;
use crate::server::services::secret_box::SecretBox;
use crate::server::session_store::AppSessionStore;

/// Shared by every request: handlers, server functions (through Leptos context) and middleware.
///
/// One `Arc` around all of it: every middleware layer and every render clones the state, and cloning
/// a dozen reference-counted fields each time (the `LeptosOptions` alone holds nine) was the largest
/// single cost of a health check under load (bench/README.md).
#[derive(Clone, Debug)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    pub fn new(inner: AppStateInner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

#[derive(Debug)]
pub struct AppStateInner {
    pub settings: Arc<Settings>,
    pub db: DatabaseConnection,
    pub clock: SharedClock,
    pub leptos_options: LeptosOptions,
    pub hasher: PasswordHasher,
    pub limiters: Arc<RateLimiters>,
    /// Lock-out counters (the database, or Redis when scaled out).
    pub lockouts: crate::server::lockouts::Lockouts,
    /// Where sessions live (the database, or Redis when scaled out).
    pub sessions: AppSessionStore,
    /// The Redis connection of the scaled-out mode (`REDIS_URL`), if configured.
    pub redis: Option<Redis>,
    /// Wakes the outbox worker as soon as an email is committed.
    pub mail_wakeup: Arc<Notify>,
    /// Data exports being written at once (each holds a blocking thread): see `services::export`.
    pub exports: Arc<tokio::sync::Semaphore>,
    /// Seals sensitive fields at rest under `ENCRYPTION_KEY`.
    pub secret_box: Arc<SecretBox>,
    /// Held while SQLite writes a backup: see `backup::backup`.
    pub backup_turn: crate::server::backup::Turn,
    /// The last `/health/ready` check, shared by the probes of the next second.
    pub readiness: crate::server::health::Readiness,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
