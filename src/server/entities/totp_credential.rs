use sea_orm::entity::prelude::*;

/// A person's authenticator-app credential. `secret` is sealed (see `services::secret_box`); the row is
/// a setup in progress until `confirmed_at` is set. `replacement_secret` (sealed too) is a new phone's
/// secret waiting for its first code, while `secret` stays in use. Compact format, like `user`, for the hand-written
/// `Debug`.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "totp_credentials")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    pub secret: String,
    pub confirmed_at: Option<i64>,
    pub last_used_step: Option<i64>,
    pub created_at: i64,
    pub replacement_secret: Option<String>,
    pub replacement_created_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

// Even sealed, the secret stays out of logs.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpCredential")
            .field("user_id", &self.user_id)
            .field("secret", &"<hidden>")
            .field("confirmed_at", &self.confirmed_at)
            .field("last_used_step", &self.last_used_step)
            .field(
                "replacement_secret",
                &self.replacement_secret.as_ref().map(|_| "<hidden>"),
            )
            .finish_non_exhaustive()
    }
}

impl ActiveModelBehavior for ActiveModel {}
