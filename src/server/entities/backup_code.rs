use sea_orm::entity::prelude::*;

/// One single-use backup code, stored as a keyed hash only.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "backup_codes")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: String,
    pub code_hash: String,
    pub used_at: Option<i64>,
    pub created_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
