//! The security-event trail: stored for the user (and operators) to read, and emitted as a structured
//! log line. Details are non-secret facts only — never a password, token, code or link.

use sea_orm::sea_query::LikeExpr;
use sea_orm::{
    ActiveModelTrait as _, ActiveValue::Set, ColumnTrait as _, Condition, ConnectionTrait, DbErr,
    EntityTrait as _, QueryFilter as _, QuerySelect as _,
};

use crate::server::api_support::RequestMeta;
use crate::server::entities::security_event;

/// The detail holding the id of the other person an event names (a member removed, the new owner),
/// so that their name can be taken out of it when their account is deleted ([`forget_person`]).
pub const PERSON_ID: &str = "person_id";
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

/// Stores `event` in the trail. Its log line and metric wait for [`Recorded::emit`], to be called once
/// the event is committed: at once on a plain connection, after the commit in a transaction.
pub async fn record<C: ConnectionTrait>(
    db: &C,
    meta: &RequestMeta,
    now: i64,
    event: Event<'_>,
) -> Result<Recorded, DbErr> {
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
    Ok(Recorded {
        kind: event.kind,
        user_id: event.user_id.map(str::to_owned),
        ip: meta.ip,
        details: event.details,
    })
}

/// [`record`] outside a transaction: stored, then logged and counted.
pub async fn log(
    db: &sea_orm::DatabaseConnection,
    meta: &RequestMeta,
    now: i64,
    event: Event<'_>,
) -> Result<(), DbErr> {
    record(db, meta, now, event).await?.emit();
    Ok(())
}

/// An event stored by [`record`] and not yet logged or counted. The log line and the
/// `security_events_total` metric are what alerting and log-based audits read: an event rolled back
/// with its transaction (a failed commit, a lost race) must appear in neither.
#[must_use = "emit() it once the event is committed"]
pub struct Recorded {
    kind: &'static str,
    user_id: Option<String>,
    ip: std::net::IpAddr,
    details: serde_json::Value,
}

impl Recorded {
    pub fn emit(self) {
        crate::server::metrics::security_event(self.kind, &self.details);
        tracing::info!(
            target: "nestegg::audit",
            kind = self.kind,
            user_id = self.user_id.as_deref().unwrap_or("-"),
            ip = %self.ip,
            details = %self.details,
            "security event"
        );
    }
}

/// The events that record a change of the account's address, with `previous_address` and `address`
/// in their details: a change confirmed from the new address, and one undone by the link sent to the
/// old (or by "this wasn't me").
pub const ADDRESS_CHANGES: [&str; 2] = ["email_changed", "email_restored"];

/// Every address `account` has held that its [`ADDRESS_CHANGES`] events record, with the one it has now.
pub async fn addresses_held<C: ConnectionTrait>(
    db: &C,
    account: &crate::server::entities::user::Model,
) -> Result<Vec<String>, DbErr> {
    let details: Vec<String> = security_event::Entity::find()
        .select_only()
        .column(security_event::Column::Details)
        .filter(security_event::Column::UserId.eq(&account.id))
        .filter(security_event::Column::Kind.is_in(ADDRESS_CHANGES))
        .into_tuple()
        .all(db)
        .await?;
    let mut held = vec![account.email.clone()];
    for details in details {
        let Ok(details) = serde_json::from_str::<serde_json::Value>(&details) else {
            continue;
        };
        for key in ["previous_address", "address"] {
            if let Some(address) = details.get(key).and_then(|a| a.as_str()) {
                held.push(address.to_owned());
            }
        }
    }
    held.sort();
    held.dedup();
    Ok(held)
}

/// Details that hold a household's name.
const HOUSEHOLD_NAMING: [&str; 2] = ["household", "name"];

/// For the deletion of the account `user_id`: other people's events about `households` no longer hold
/// `name`, the name those households were given after it
/// ([`crate::server::services::households::default_name`]). The event keeps what happened ("Left a
/// household"). Returns how many events were changed.
pub async fn forget_household_name<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
    name: &str,
    households: &[String],
) -> Result<u64, DbErr> {
    if households.is_empty() {
        return Ok(0);
    }
    let search = Condition::all()
        .add(holding_any(HOUSEHOLD_NAMING.map(|key| (key, name))))
        .add(holding_any(
            households.iter().map(|id| ("household_id", id.as_str())),
        ));
    rewrite_others_events(db, user_id, search, |details| {
        let household = details.get("household_id").and_then(|v| v.as_str());
        if !household.is_some_and(|id| households.iter().any(|h| h == id)) {
            return false;
        }
        let before = details.len();
        details.retain(|key, value| {
            !(HOUSEHOLD_NAMING.contains(&key.as_str()) && value.as_str() == Some(name))
        });
        details.len() < before
    })
    .await
}

/// A LIKE pattern matching `text` anywhere, with `\`, `%` and `_` taken literally (used with
/// `ESCAPE '\'`, so SQLite and PostgreSQL agree).
fn contains(text: &str) -> LikeExpr {
    let mut escaped = String::with_capacity(text.len() + 2);
    escaped.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    LikeExpr::new(escaped).escape('\\')
}

/// For the deletion of the account `user_id`, which held `addresses` ([`addresses_held`]): other
/// people's events keep what happened but no longer name it: its display name where an event is
/// [`Event::about`] it, and its addresses where one was invited. Its own events go with the account
/// (foreign key). Returns how many events were changed.
pub async fn forget_person<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
    addresses: &[String],
) -> Result<u64, DbErr> {
    let search = holding_any(
        std::iter::once((PERSON_ID, user_id))
            .chain(addresses.iter().map(|address| (INVITEE, address.as_str()))),
    );
    rewrite_others_events(db, user_id, search, |details| {
        let mut forgot = false;
        if details.get(PERSON_ID).and_then(|v| v.as_str()) == Some(user_id) {
            details.remove(PERSON_ID);
            for key in NAMING {
                details.remove(key);
            }
            forgot = true;
        }
        if details
            .get(INVITEE)
            .and_then(|v| v.as_str())
            .is_some_and(|invitee| addresses.iter().any(|a| a == invitee))
        {
            details.remove(INVITEE);
            forgot = true;
        }
        forgot
    })
    .await
}

/// How many `kind` events of `user_id` since `since` (exclusive) have `value` under `key` in their
/// details.
pub async fn count_own<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
    kind: &str,
    (key, value): (&str, &str),
    since: i64,
) -> Result<u64, DbErr> {
    let candidates: Vec<String> = security_event::Entity::find()
        .select_only()
        .column(security_event::Column::Details)
        .filter(security_event::Column::UserId.eq(user_id))
        .filter(security_event::Column::Kind.eq(kind))
        .filter(security_event::Column::CreatedAt.gt(since))
        .filter(holding_any([(key, value)]))
        .into_tuple()
        .all(db)
        .await?;
    Ok(candidates
        .iter()
        .filter(|details| {
            serde_json::from_str::<serde_json::Value>(details)
                .is_ok_and(|d| d.get(key).and_then(|v| v.as_str()) == Some(value))
        })
        .count() as u64)
}

/// Events whose details hold any of the `(key, value)` pairs. LIKE only narrows the search (the
/// details are compact JSON, as [`record`] writes them): whoever uses it checks each match exactly.
fn holding_any<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Condition {
    pairs
        .into_iter()
        .fold(Condition::any(), |any, (key, value)| {
            let value = serde_json::Value::from(value).to_string();
            any.add(security_event::Column::Details.like(contains(&format!("\"{key}\":{value}"))))
        })
}

/// Changes the details of the events matching `search` that are not `user_id`'s own, where `forget`
/// says it changed them; returns how many were changed.
async fn rewrite_others_events<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
    search: Condition,
    mut forget: impl FnMut(&mut serde_json::Map<String, serde_json::Value>) -> bool,
) -> Result<u64, DbErr> {
    let candidates = security_event::Entity::find()
        .filter(search)
        .filter(
            Condition::any()
                .add(security_event::Column::UserId.is_null())
                .add(security_event::Column::UserId.ne(user_id)),
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
        if forget(&mut details) {
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
