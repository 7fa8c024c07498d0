use sea_orm::entity::prelude::*;

/// A browser-and-address pair an account has signed in from (as a keyed hash).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "known_devices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub fingerprint: String,
    pub first_seen_at: i64,
    /// The latest sign-in from it, to a day: devices unseen for `AUDIT_RETENTION_DAYS` are forgotten.
    pub last_seen_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
