//! When each known device last signed in, so that devices not seen for `AUDIT_RETENTION_DAYS` are
//! forgotten (their fingerprint is derived from an IP address), and a marker row per account that has
//! ever signed in, which outlives its devices: an account whose devices were all forgotten has still
//! signed in before, and its next new device is emailed about.

use sea_orm_migration::prelude::*;

/// The fingerprint of the marker row (`services::sign_in_alerts`); never a device's, which is hex.
const SIGNED_IN_BEFORE: &str = "signed-in-before";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(KnownDevices::Table)
                    .add_column(
                        ColumnDef::new(KnownDevices::LastSeenAt)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        // When each device was last used is not known: counted from now, so that a device in use
        // since long ago is not forgotten at the first purge.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let db = manager.get_connection();
        db.execute_unprepared(&format!("UPDATE known_devices SET last_seen_at = {now}"))
            .await?;
        // Every account that has signed in: one with devices, or whose trail records a sign-in or
        // a report that forgot its devices (the marker did not exist yet).
        db.execute_unprepared(&format!(
            "INSERT INTO known_devices (user_id, fingerprint, first_seen_at, last_seen_at) \
             SELECT u.id, '{SIGNED_IN_BEFORE}', {now}, {now} FROM users u \
             WHERE EXISTS (SELECT 1 FROM known_devices d WHERE d.user_id = u.id) \
             OR EXISTS (SELECT 1 FROM security_events e WHERE e.user_id = u.id \
             AND e.kind IN ('sign_in', 'sign_in_reported', 'password_reset_forced'))"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "DELETE FROM known_devices WHERE fingerprint = '{SIGNED_IN_BEFORE}'"
            ))
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(KnownDevices::Table)
                    .drop_column(KnownDevices::LastSeenAt)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum KnownDevices {
    Table,
    LastSeenAt,
}
