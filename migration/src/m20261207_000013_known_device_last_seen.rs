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
        let db = manager.get_connection();
        db.execute_unprepared("UPDATE known_devices SET last_seen_at = first_seen_at")
            .await?;
        db.execute_unprepared(&format!(
            "INSERT INTO known_devices (user_id, fingerprint, first_seen_at, last_seen_at) \
             SELECT user_id, '{SIGNED_IN_BEFORE}', MIN(first_seen_at), MIN(first_seen_at) \
             FROM known_devices GROUP BY user_id"
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
