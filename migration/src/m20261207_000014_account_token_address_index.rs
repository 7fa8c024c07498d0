//! Links are looked up by the address they carry: every sign-up asks whether its address can still be
//! put back on an account it was moved off (a "put my address back" or "this wasn't me" link), and
//! without an index that read scanned every link inside the sign-up's write transaction.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "idx_account_tokens_new_email";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(AccountTokens::Table)
                    .col(AccountTokens::NewEmail)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(INDEX)
                    .table(AccountTokens::Table)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum AccountTokens {
    Table,
    NewEmail,
}
