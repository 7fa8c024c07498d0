use sea_orm::entity::prelude::*;

/// An invitation to join a household, sent by email. Only the keyed hash of the link's token is
/// stored; it is used once (`accepted_at`) or withdrawn (`revoked_at`).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "household_invitations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub household_id: String,
    pub email: String,
    pub invited_by: Option<String>,
    #[sea_orm(unique)]
    pub token_hash: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The email carrying the link (`outbox_emails.message_id`), withdrawn with the invitation if it
    /// has not gone out yet. `None` for invitations from before it was recorded.
    pub message_id: Option<String>,
}

impl ActiveModelBehavior for ActiveModel {}
