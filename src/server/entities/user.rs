use sea_orm::entity::prelude::*;

/// A person's account. `password_hash` is an argon2id PHC string; it never leaves the server.
///
/// Compact rather than dense format: the dense format derives `Debug` on a generated companion type,
/// and this model's `Debug` must be written by hand to keep the hash out of logs.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Normalized (trimmed, lower-case) address.
    #[sea_orm(unique)]
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub email_verified_at: Option<i64>,
    pub password_changed_at: i64,
    /// When two-factor authentication was last turned on (kept when it is turned off); see
    /// `session_store::TWO_FACTOR_SEEN_KEY`.
    pub two_factor_enabled_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Entity {
    /// The account with this address as an operator typed it (any case, spaces around): addresses
    /// are stored normalized.
    pub fn find_by_typed_email(email: &str) -> Select<Entity> {
        Self::find().filter(Column::Email.eq(email.trim().to_lowercase()))
    }
}

/// Written by hand so the password hash cannot reach a log through `{:?}`.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email_verified", &self.email_verified_at.is_some())
            .field("password_hash", &"<hidden>")
            .finish_non_exhaustive()
    }
}
