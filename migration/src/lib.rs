//! Database schema changes, one file per change, never edited after it lands.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_sessions;
mod m20261122_000002_create_accounts;
mod m20261122_000003_session_owner;
mod m20261122_000004_two_factor;
mod m20261122_000005_known_devices;
mod m20261122_000006_household_invitations;
mod m20261122_000007_operators;
mod m20261122_000008_jobs;
mod m20261206_000009_outbox_owner;
mod m20261206_000010_totp_replacement;
mod m20261206_000011_invitation_email;
mod m20261207_000012_two_factor_enabled_at;
mod m20261207_000013_known_device_last_seen;
mod m20261207_000014_account_token_address_index;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_sessions::Migration),
            Box::new(m20261122_000002_create_accounts::Migration),
            Box::new(m20261122_000003_session_owner::Migration),
            Box::new(m20261122_000004_two_factor::Migration),
            Box::new(m20261122_000005_known_devices::Migration),
            Box::new(m20261122_000006_household_invitations::Migration),
            Box::new(m20261122_000007_operators::Migration),
            Box::new(m20261122_000008_jobs::Migration),
            Box::new(m20261206_000009_outbox_owner::Migration),
            Box::new(m20261206_000010_totp_replacement::Migration),
            Box::new(m20261206_000011_invitation_email::Migration),
            Box::new(m20261207_000012_two_factor_enabled_at::Migration),
            Box::new(m20261207_000013_known_device_last_seen::Migration),
            Box::new(m20261207_000014_account_token_address_index::Migration),
        ]
    }
}
