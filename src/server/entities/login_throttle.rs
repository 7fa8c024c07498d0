use sea_orm::entity::prelude::*;

/// Consecutive failed sign-ins per normalized email (keyed hash), and the lock that follows.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "login_throttles")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub email_hash: String,
    pub failures: i32,
    pub locked_until: Option<i64>,
    pub updated_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
