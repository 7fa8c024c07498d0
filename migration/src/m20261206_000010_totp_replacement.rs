//! Moving two-factor authentication to a new phone: the new authenticator's secret waits beside the
//! one in use until a code from the new app confirms it, so the account is never without its second
//! factor meanwhile.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Two statements: SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(TotpCredentials::Table)
                    // Sealed with ENCRYPTION_KEY, like `secret`.
                    .add_column(
                        ColumnDef::new(TotpCredentials::ReplacementSecret)
                            .string_len(200)
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(TotpCredentials::Table)
                    .add_column(
                        ColumnDef::new(TotpCredentials::ReplacementCreatedAt)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            TotpCredentials::ReplacementCreatedAt,
            TotpCredentials::ReplacementSecret,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(TotpCredentials::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum TotpCredentials {
    Table,
    ReplacementSecret,
    ReplacementCreatedAt,
}
