use sea_orm::entity::prelude::*;

/// The audit trail: who (if known), what, from where, when. `details` is JSON with non-secret facts only.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "security_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: Option<String>,
    pub kind: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub details: String,
    pub created_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
