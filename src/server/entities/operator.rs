use sea_orm::entity::prelude::*;

/// An account granted operator rights from the command line (`ADMIN_EMAILS` grants them too).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "operators")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    pub granted_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
