use sea_orm::entity::prelude::*;

/// A scheduled background job: its next run, its lease, and how its last run went.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    pub next_run_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub last_started_at: Option<i64>,
    pub last_finished_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub last_outcome: Option<String>,
    pub last_summary: Option<String>,
    pub last_duration_ms: Option<i64>,
    pub consecutive_failures: i32,
}

impl ActiveModelBehavior for ActiveModel {}
