//! An invitation records the email that carries its link, so that withdrawing the invitation (or
//! deleting the account that sent it) can also withdraw the email while it has not gone out yet.
//! Invitations from before this change have no email recorded; theirs go out as before.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(HouseholdInvitations::Table)
                    // `outbox_emails.message_id`; no foreign key: sent emails are purged after 30
                    // days while the invitation row may stay.
                    .add_column(
                        ColumnDef::new(HouseholdInvitations::MessageId)
                            .string_len(36)
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(HouseholdInvitations::Table)
                    .drop_column(HouseholdInvitations::MessageId)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum HouseholdInvitations {
    Table,
    MessageId,
}
