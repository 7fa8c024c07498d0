//! The security-event trail: stored for the user (and operators) to read, and emitted as a structured
//! log line. Details are non-secret facts only — never a password, token, code or link.

use sea_orm::{
    ActiveModelTrait as _, ActiveValue::Set, ColumnTrait as _, Condition, ConnectionTrait, DbErr,
    EntityTrait as _, QueryFilter as _,
};

use crate::server::api_support::RequestMeta;
use crate::server::entities::security_event;

/// The detail holding the id of the other person an event names (a member removed, the new owner),
/// so that their name can be taken out of it when their account is deleted ([`forget_person`]).
const PERSON_ID: &str = "person_id";
/// Details that name that other person.
const NAMING: [&str; 3] = ["member", "to", "from"];
/// The detail naming the address an invitation went to.
const INVITEE: &str = "invitee";

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

    /// The event names `person_id`, another person than its owner: in `member`, `to` or `from`.
    pub fn about(self, person_id: &str) -> Self {
        self.detail(PERSON_ID, person_id)
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

/// For the deletion of the account `user_id` (at `email`): other people's events keep what happened
/// but no longer name it: its display name where an event is [`Event::about`] it, and its address
/// where it was invited. Its own events go with the account (foreign key). Returns how many events
/// were changed.
pub async fn forget_person<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
    email: &str,
) -> Result<u64, DbErr> {
    // LIKE only narrows the search (`_` in an address matches any character); each match is checked
    // exactly below. Details are compact JSON, as `record` writes them.
    let quoted = |value: &str| serde_json::Value::from(value).to_string();
    let candidates = security_event::Entity::find()
        .filter(
            Condition::any()
                .add(
                    security_event::Column::Details
                        .like(format!("%\"{PERSON_ID}\":{}%", quoted(user_id))),
                )
                .add(
                    security_event::Column::Details
                        .like(format!("%\"{INVITEE}\":{}%", quoted(email))),
                ),
        )
        .all(db)
        .await?;
    let mut changed = 0;
    for event in candidates {
        let Ok(serde_json::Value::Object(mut details)) =
            serde_json::from_str::<serde_json::Value>(&event.details)
        else {
            continue;
        };
        let mut forgot = false;
        if details.get(PERSON_ID).and_then(|v| v.as_str()) == Some(user_id) {
            details.remove(PERSON_ID);
            for key in NAMING {
                details.remove(key);
            }
            forgot = true;
        }
        if details.get(INVITEE).and_then(|v| v.as_str()) == Some(email) {
            details.remove(INVITEE);
            forgot = true;
        }
        if forgot {
            security_event::Entity::update_many()
                .col_expr(
                    security_event::Column::Details,
                    serde_json::Value::Object(details).to_string().into(),
                )
                .filter(security_event::Column::Id.eq(event.id))
                .exec(db)
                .await?;
            changed += 1;
        }
    }
    Ok(changed)
}
