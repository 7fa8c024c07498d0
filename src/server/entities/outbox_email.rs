use sea_orm::entity::prelude::*;

/// An email waiting to be (or already) delivered. Written in the same transaction as the change that
/// causes it; the outbox worker delivers it. Bodies are cleared once sent (they may hold one-time links).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox_emails")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub message_id: String,
    pub kind: String,
    pub to_address: String,
    /// The account the email belongs to: deletion and the data export go by this, since an address
    /// can pass to another account. `None` for mail to someone without an account here (an
    /// invitation), the deletion receipt, and rows from before the column existed.
    pub user_id: Option<String>,
    pub subject: String,
    #[sea_orm(column_type = "Text")]
    pub body_text: String,
    #[sea_orm(column_type = "Text")]
    pub body_html: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: i64,
    /// Lease: a worker that claimed the row owns it until then.
    pub locked_until: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

impl ActiveModelBehavior for ActiveModel {}
