//! Emails record the account they belong to. An address can pass from one account to another (a change
//! of address frees the old one for anyone), so deletion and the data export go by the account, not the
//! address. Rows from before this change have no owner and are judged by address and time, as before,
//! until the 30-day purge removes them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OutboxEmails::Table)
                    .add_column(ColumnDef::new(OutboxEmails::UserId).string_len(36).null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_emails_user")
                    .table(OutboxEmails::Table)
                    .col(OutboxEmails::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_outbox_emails_user")
                    .table(OutboxEmails::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OutboxEmails::Table)
                    .drop_column(OutboxEmails::UserId)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum OutboxEmails {
    Table,
    UserId,
}
