//! The security-event trail: stored for the user (and operators) to read, and emitted as a structured
//! log line. Details are non-secret facts only — never a password, token, code or link.

use sea_orm::{ActiveModelTrait as _, ActiveValue::Set, ConnectionTrait, DbErr};

use crate::server::api_support::RequestMeta;
use crate::server::entities::security_event;

pub struct Event<'a> {
    pub kind: &'static str,
    pub user_id: Option<&'a str>,
    pub details: serde_json::Value,
}

impl<'a> Event<'a> {
    pub fn new(kind: &'static str) -> Self {
        Event {
            kind,
            user_id: None,
            details: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    pub fn user(mut self, user_id: &'a str) -> Self {
        self.user_id = Some(user_id);
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        if let serde_json::Value::Object(map) = &mut self.details {
            map.insert(key.to_owned(), value.into());
        }
        self
    }
}

pub async fn record<C: ConnectionTrait>(
    db: &C,
    meta: &RequestMeta,
    now: i64,
    event: Event<'_>,
) -> Result<(), DbErr> {
    crate::server::metrics::security_event(event.kind, &event.details);
    tracing::info!(
        target: "nestegg::audit",
        kind = event.kind,
        user_id = event.user_id.unwrap_or("-"),
        ip = %meta.ip,
        details = %event.details,
        "security event"
    );
    security_event::ActiveModel {
        user_id: Set(event.user_id.map(str::to_owned)),
        kind: Set(event.kind.to_owned()),
        ip: Set(Some(meta.ip.to_string())),
        user_agent: Set(Some(meta.user_agent.clone())),
        details: Set(event.details.to_string()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}
