//! Browser-and-address pairs each account has signed in from, so a new one can be emailed about
//! exactly once (a unique key decides, even for sign-ins racing each other).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(KnownDevices::Table)
                    .col(
                        ColumnDef::new(KnownDevices::UserId)
                            .string_len(36)
                            .not_null(),
                    )
                    // Keyed hash of "browser on system" and the address: no user agent or IP kept here.
                    .col(
                        ColumnDef::new(KnownDevices::Fingerprint)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(KnownDevices::FirstSeenAt)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(KnownDevices::UserId)
                            .col(KnownDevices::Fingerprint),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_known_devices_user")
                            .from(KnownDevices::Table, KnownDevices::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(KnownDevices::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum KnownDevices {
    Table,
    UserId,
    Fingerprint,
    FirstSeenAt,
}
