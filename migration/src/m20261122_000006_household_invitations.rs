//! Invitations to join a household: addressed to an email, accepted once through a link that holds a
//! token (only its keyed hash is stored), within seven days.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(HouseholdInvitations::Table)
                    .col(
                        ColumnDef::new(HouseholdInvitations::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(HouseholdInvitations::HouseholdId)
                            .string_len(36)
                            .not_null(),
                    )
                    // Normalized like `users.email`.
                    .col(
                        ColumnDef::new(HouseholdInvitations::Email)
                            .string_len(254)
                            .not_null(),
                    )
                    // Kept when the inviter's account goes: the invitation belongs to the household.
                    .col(ColumnDef::new(HouseholdInvitations::InvitedBy).string_len(36))
                    .col(
                        ColumnDef::new(HouseholdInvitations::TokenHash)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(HouseholdInvitations::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(HouseholdInvitations::ExpiresAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(HouseholdInvitations::AcceptedAt).big_integer())
                    .col(ColumnDef::new(HouseholdInvitations::RevokedAt).big_integer())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_household_invitations_household")
                            .from(
                                HouseholdInvitations::Table,
                                HouseholdInvitations::HouseholdId,
                            )
                            .to(Households::Table, Households::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_household_invitations_inviter")
                            .from(HouseholdInvitations::Table, HouseholdInvitations::InvitedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_household_invitations_household")
                    .table(HouseholdInvitations::Table)
                    .col(HouseholdInvitations::HouseholdId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(HouseholdInvitations::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Households {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum HouseholdInvitations {
    Table,
    Id,
    HouseholdId,
    Email,
    InvitedBy,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    AcceptedAt,
    RevokedAt,
}
