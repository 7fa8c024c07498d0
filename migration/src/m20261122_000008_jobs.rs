//! Scheduled background jobs: when each runs next, who holds it (a lease, so several app instances
//! never run the same job at once), and how its last run went (for operators and metrics).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .col(
                        ColumnDef::new(Jobs::Name)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Jobs::NextRunAt).big_integer().not_null())
                    .col(ColumnDef::new(Jobs::LeaseOwner).string_len(64))
                    .col(ColumnDef::new(Jobs::LeaseUntil).big_integer())
                    .col(ColumnDef::new(Jobs::LastStartedAt).big_integer())
                    .col(ColumnDef::new(Jobs::LastFinishedAt).big_integer())
                    .col(ColumnDef::new(Jobs::LastSuccessAt).big_integer())
                    // `ok`, `error` or `timeout`.
                    .col(ColumnDef::new(Jobs::LastOutcome).string_len(16))
                    .col(ColumnDef::new(Jobs::LastSummary).string_len(500))
                    .col(ColumnDef::new(Jobs::LastDurationMs).big_integer())
                    .col(
                        ColumnDef::new(Jobs::ConsecutiveFailures)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Jobs::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Name,
    NextRunAt,
    LeaseOwner,
    LeaseUntil,
    LastStartedAt,
    LastFinishedAt,
    LastSuccessAt,
    LastOutcome,
    LastSummary,
    LastDurationMs,
    ConsecutiveFailures,
}
