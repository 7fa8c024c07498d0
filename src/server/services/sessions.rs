//! A person's signed-in sessions: listing them (device, place, times) and ending them.
//!
//! Ending a session deletes its row; its cookie then finds nothing on its next request. Rows are
//! addressed by their stored key (a hash of the session id), never by the id itself.

use sea_orm::DbErr;

use crate::server::api_support::RequestMeta;
use crate::server::entities::user;
use crate::server::services::audit::{self, Event};
use crate::server::session_store::{
    AUTH_AT_KEY, CLIENT_IP_KEY, CLIENT_UA_KEY, STARTED_AT_KEY, USER_KEY,
};
use crate::server::state::AppState;

/// One signed-in session as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub key: String,
    pub device: String,
    pub ip: Option<String>,
    pub started_at: i64,
    pub last_active_at: i64,
    pub current: bool,
}

/// "Firefox on Linux", "Safari on iPhone", or "an unknown browser" when the user agent says nothing
/// recognisable.
pub fn describe_agent(user_agent: &str) -> String {
    let parsed = woothee::parser::Parser::new().parse(user_agent);
    let known = |v: &str| !v.is_empty() && v != woothee::woothee::VALUE_UNKNOWN;
    match parsed {
        Some(p) if known(p.name) && known(p.os) => format!("{} on {}", p.name, p.os),
        Some(p) if known(p.name) => p.name.to_owned(),
        Some(p) if known(p.os) => format!("A browser on {}", p.os),
        _ => "An unknown browser".to_owned(),
    }
}

/// Every live session of `user_id`: this one (`current`, this request's session key) first, then the
/// most recent sign-ins. The order must not depend on activity: the page's own requests change that,
/// and a list that reorders between the server's rendering and the browser's reload of it would not
/// hydrate.
pub async fn list(
    state: &AppState,
    user_id: &str,
    current: Option<&str>,
) -> Result<Vec<SessionInfo>, DbErr> {
    let now = state.clock.now().unix_timestamp();
    let lifetime = state.settings.session_absolute_lifetime.as_secs() as i64;
    let rows = state.sessions.list_user(user_id).await?;
    let mut sessions: Vec<SessionInfo> = rows
        .into_iter()
        .filter_map(|row| {
            let data = row.data;
            // Only signed-in sessions (a sign-in waiting for its code is not one yet).
            data.get(USER_KEY)?;
            let started_at = data
                .get(STARTED_AT_KEY)
                .or_else(|| data.get(AUTH_AT_KEY))
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(row.created_at);
            if now - started_at >= lifetime {
                return None;
            }
            let text = |key: &str| data.get(key).and_then(|v| v.as_str()).map(str::to_owned);
            Some(SessionInfo {
                current: current == Some(row.key.as_str()),
                device: describe_agent(&text(CLIENT_UA_KEY).unwrap_or_default()),
                ip: text(CLIENT_IP_KEY),
                started_at,
                last_active_at: row.updated_at,
                key: row.key,
            })
        })
        .collect();
    sessions.sort_by(|a, b| {
        b.current
            .cmp(&a.current)
            .then(b.started_at.cmp(&a.started_at))
            .then(a.key.cmp(&b.key))
    });
    Ok(sessions)
}

/// Ends one of `account`'s sessions. Returns false when it is not theirs (or already gone).
pub async fn revoke(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
    key: &str,
) -> Result<bool, DbErr> {
    if !state.sessions.revoke(&account.id, key).await? {
        return Ok(false);
    }
    let now = state.clock.now().unix_timestamp();
    audit::log(
        &state.db,
        meta,
        now,
        Event::new("session_revoked").user(&account.id),
    )
    .await?;
    Ok(true)
}

/// Ends every session of `account` but `keep` (this one); returns how many ended.
pub async fn revoke_others(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
    keep: Option<&str>,
) -> Result<u64, DbErr> {
    let ended = state
        .sessions
        .revoke_user(&state.db, &account.id, keep)
        .await?;
    let now = state.clock.now().unix_timestamp();
    let event = Event::new("sessions_revoked")
        .user(&account.id)
        .detail("count", ended);
    audit::log(&state.db, meta, now, event).await?;
    Ok(ended)
}

/// Ends every session of `account`, for an operator (`nestegg user revoke-sessions`).
pub async fn revoke_all_by_operator(state: &AppState, account: &user::Model) -> Result<u64, DbErr> {
    let ended = state
        .sessions
        .revoke_user(&state.db, &account.id, None)
        .await?;
    let now = state.clock.now().unix_timestamp();
    let event = Event::new("sessions_revoked_by_operator")
        .user(&account.id)
        .detail("count", ended);
    audit::log(&state.db, &RequestMeta::internal(), now, event).await?;
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::describe_agent;

    #[test]
    fn user_agents_read_as_browser_and_system() {
        assert_eq!(
            describe_agent(
                "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
            ),
            "Firefox on Linux"
        );
        assert_eq!(
            describe_agent(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/131.0.0.0 Safari/537.36"
            ),
            "Chrome on Windows 10"
        );
        assert_eq!(describe_agent(""), "An unknown browser");
        assert_eq!(describe_agent("curl/8.5.0"), "HTTP Library");
        assert_eq!(describe_agent("gibberish"), "An unknown browser");
    }
}
