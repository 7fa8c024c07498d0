use sea_orm::entity::prelude::*;

/// One accepted version of one document (terms, privacy), with when and from where.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "consents")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: String,
    pub document: String,
    pub version: i32,
    pub accepted_at: i64,
    pub ip: String,
    pub user_agent: String,
}

impl ActiveModelBehavior for ActiveModel {}
