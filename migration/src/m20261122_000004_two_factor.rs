//! Two-factor authentication: one TOTP credential per user (sealed secret, the last accepted time step
//! for replay protection) and single-use backup codes stored as keyed hashes.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TotpCredentials::Table)
                    .col(
                        ColumnDef::new(TotpCredentials::UserId)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    // Sealed with ENCRYPTION_KEY (`v1:<key id>:<ciphertext>`), never the plain secret.
                    .col(
                        ColumnDef::new(TotpCredentials::Secret)
                            .string_len(200)
                            .not_null(),
                    )
                    // NULL while setup waits for the first code from the app: not yet enforced.
                    .col(
                        ColumnDef::new(TotpCredentials::ConfirmedAt)
                            .big_integer()
                            .null(),
                    )
                    // The newest time step accepted: an equal or older one is a replay.
                    .col(
                        ColumnDef::new(TotpCredentials::LastUsedStep)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(TotpCredentials::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_totp_credentials_user")
                            .from(TotpCredentials::Table, TotpCredentials::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BackupCodes::Table)
                    .col(
                        ColumnDef::new(BackupCodes::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(BackupCodes::UserId)
                            .string_len(36)
                            .not_null(),
                    )
                    // Keyed hash (HMAC under SECRET_KEY) of the normalized code.
                    .col(
                        ColumnDef::new(BackupCodes::CodeHash)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(BackupCodes::UsedAt).big_integer().null())
                    .col(
                        ColumnDef::new(BackupCodes::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_backup_codes_user")
                            .from(BackupCodes::Table, BackupCodes::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_backup_codes_user_hash")
                    .table(BackupCodes::Table)
                    .col(BackupCodes::UserId)
                    .col(BackupCodes::CodeHash)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BackupCodes::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(TotpCredentials::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum TotpCredentials {
    Table,
    UserId,
    Secret,
    ConfirmedAt,
    LastUsedStep,
    CreatedAt,
}

#[derive(DeriveIden)]
enum BackupCodes {
    Table,
    Id,
    UserId,
    CodeHash,
    UsedAt,
    CreatedAt,
}
