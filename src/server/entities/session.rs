use sea_orm::entity::prelude::*;

/// A server-side session. `id_hash` is the SHA-256 of the cookie's session id, so a database dump
/// cannot be replayed as cookies.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id_hash: String,
    /// The session's key/value data as JSON.
    #[sea_orm(column_type = "Text")]
    pub data: String,
    /// Unix seconds; an index on it keeps the expiry sweep cheap.
    pub expires_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// The signed-in user, copied from the session data so all of a user's sessions can be ended.
    pub user_id: Option<String>,
}

impl ActiveModelBehavior for ActiveModel {}
