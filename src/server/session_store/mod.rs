//! Where sessions live: the app's database (the embedded default, [`DbSessionStore`]) or Redis (the
//! scaled-out mode, [`RedisSessionStore`]), behind one [`AppSessionStore`] that the session layer and
//! the services use alike.
//!
//! Besides the tower-sessions [`SessionStore`] calls, the services need a person's sessions: to list
//! them, to end one, to end all of them (a password reset). Each backend keeps its own per-user index
//! for that. Sessions are addressed by their *key*, a hash of the session id, so neither the table nor
//! Redis nor the sessions page ever holds a usable cookie value.

mod db;
mod redis;

use std::cell::Cell;
use std::collections::HashMap;

use async_trait::async_trait;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use sea_orm::{ConnectionTrait, DbErr};
use sha2::{Digest as _, Sha256};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

pub use db::DbSessionStore;
pub use redis::RedisSessionStore;

/// Session data key holding the signed-in user's id.
pub const USER_KEY: &str = "uid";
/// Session data key holding when (Unix seconds) the password was last checked in this session.
pub const AUTH_AT_KEY: &str = "auth_at";
/// Session data key holding the account's `password_changed_at` as it was when this session's password
/// was checked. A session is over once the account's value differs, that is once the password changed
/// or was reset since. Compared by value, not by time: a sign-in that checked the old password can
/// save its session after a concurrent reset has ended every session, and its clock may read later
/// than the reset's.
pub const PASSWORD_SEEN_KEY: &str = "pw_changed_at";
/// Session data key holding the account's `two_factor_enabled_at` (0 for none) as read by the sign-in,
/// before it decided whether a code was needed. A session is over once the account's value differs:
/// turning two-factor authentication on ends the other sessions, and one whose password-only sign-in
/// was still under way then, and saved its session afterwards, must end too. By value, as above.
/// Sessions from before it was recorded have none and are not checked.
pub const TWO_FACTOR_SEEN_KEY: &str = "tfa_enabled_at";
/// Session data keys describing the sign-in, for the sessions list: when (Unix seconds), from which IP
/// and with which user agent.
pub const STARTED_AT_KEY: &str = "started_at";
pub const CLIENT_IP_KEY: &str = "ip";
pub const CLIENT_UA_KEY: &str = "ua";

/// Session data key of a sign-in waiting for its second factor ([`PendingMfa`]). A session holding it
/// has no user: it is signed out for everything but the two-factor step.
pub const MFA_PENDING_KEY: &str = "mfa_pending";
/// Session data key of the two-factor setup this session started (`mfa::setup_started_here`): only
/// this session is shown its secret and may confirm it.
pub const MFA_SETUP_KEY: &str = "mfa_setup";
/// The id of a household invitation opened before signing in: kept here, so the link's token appears
/// in no other address (nor in the session data) while the visitor signs in.
pub const INVITATION_KEY: &str = "invitation";

/// Session data key set only while a session's id is renewed ([`renew_id`]): the key of the stored
/// record the new id takes over.
const RENEWS_KEY: &str = "renews";

/// Session data key of [`ConsentSeen`].
pub const CONSENTED_KEY: &str = "consented";

/// The versions of the terms and of the privacy policy that `user_id` was last found to have
/// accepted, so that a page does not read the consent ledger again. Consents are only ever added
/// while the account exists, so what is recorded here stays true; a newer version in force asks the
/// ledger again. It names the user: another sign-in in the same browser keeps the session data.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsentSeen {
    pub user_id: String,
    pub terms: i32,
    pub privacy: i32,
}

/// The password step of a sign-in succeeded for `user_id` at `started_at`; the code step is next.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PendingMfa {
    pub user_id: String,
    pub started_at: i64,
    pub failures: u32,
    /// Where to go once signed in (already checked to be a same-site path).
    pub next: String,
    /// The account's `password_changed_at` when its password was checked ([`PASSWORD_SEEN_KEY`]).
    /// Absent in sign-ins begun before it was recorded.
    #[serde(default)]
    pub password_changed_at: Option<i64>,
}

/// The stored key of a session: a hash, so the table never holds a usable cookie value.
pub fn hash_id(id: &Id) -> String {
    hex::encode(Sha256::digest(id.to_string().as_bytes()))
}

/// The signed-in user of a stored session, or the user a pending two-factor sign-in belongs to (so
/// "sign out everywhere" also ends a sign-in half done).
fn owner(data: &HashMap<String, serde_json::Value>) -> Option<String> {
    data.get(USER_KEY)
        .and_then(|v| v.as_str())
        .or_else(|| {
            data.get(MFA_PENDING_KEY)
                .and_then(|p| p.get("user_id"))
                .and_then(|v| v.as_str())
        })
        .map(str::to_owned)
}

/// A session holding only a sign-in that waits for its second factor, started before `cutoff`.
fn is_stale_pending_sign_in(data: &HashMap<String, serde_json::Value>, cutoff: i64) -> bool {
    let started = data
        .get(MFA_PENDING_KEY)
        .and_then(|p| p.get("started_at"))
        .and_then(serde_json::Value::as_i64);
    !data.contains_key(USER_KEY) && started.is_some_and(|s| s < cutoff)
}

/// One stored session of a person, as the sessions page and the export read it.
#[derive(Clone, Debug)]
pub struct StoredSession {
    /// The session's key ([`hash_id`]).
    pub key: String,
    pub data: HashMap<String, serde_json::Value>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The session store in use.
#[derive(Clone, Debug)]
pub enum AppSessionStore {
    Database(DbSessionStore),
    Redis(RedisSessionStore),
}

impl AppSessionStore {
    /// `user_id`'s live sessions (signed in, or waiting for the second factor), in no set order.
    pub async fn list_user(&self, user_id: &str) -> Result<Vec<StoredSession>, DbErr> {
        match self {
            AppSessionStore::Database(store) => store.list_user(user_id).await,
            AppSessionStore::Redis(store) => store.list_user(user_id).await,
        }
    }

    /// Ends `user_id`'s session `key`. False when there is none such (not theirs, or already gone).
    pub async fn revoke(&self, user_id: &str, key: &str) -> Result<bool, DbErr> {
        match self {
            AppSessionStore::Database(store) => store.revoke(user_id, key).await,
            AppSessionStore::Redis(store) => store.revoke(user_id, key).await,
        }
    }

    /// Ends every session of `user_id` but `keep`; returns how many ended. In the database it is part
    /// of `db`'s transaction (a password change and the sign-out everywhere commit together); in Redis
    /// it happens at once, before the caller commits, so a failure here fails the whole change.
    pub async fn revoke_user<C: ConnectionTrait>(
        &self,
        db: &C,
        user_id: &str,
        keep: Option<&str>,
    ) -> Result<u64, DbErr> {
        match self {
            AppSessionStore::Database(_) => DbSessionStore::revoke_user(db, user_id, keep).await,
            AppSessionStore::Redis(store) => store.revoke_user(user_id, keep).await,
        }
    }

    /// Removes expired sessions and sign-ins whose second factor never came (started before
    /// `pending_cutoff`): `(expired, pending)` counts.
    pub async fn purge(&self, pending_cutoff: i64) -> Result<(u64, u64), DbErr> {
        match self {
            AppSessionStore::Database(store) => store.purge(pending_cutoff).await,
            AppSessionStore::Redis(store) => store.purge(pending_cutoff).await,
        }
    }

    /// Signed-in sessions, for the `sessions_active` gauge (in Redis: as indexed, so sessions that
    /// ended by expiring, or were revoked while a request re-keyed them, count until the next purge).
    pub async fn count_signed_in(&self) -> Result<u64, DbErr> {
        match self {
            AppSessionStore::Database(store) => store.count_signed_in().await,
            AppSessionStore::Redis(store) => store.count_indexed().await,
        }
    }

    /// Whether the store answers (readiness). The database store is the database, checked anyway.
    pub async fn ping(&self) -> Option<bool> {
        match self {
            AppSessionStore::Database(_) => None,
            AppSessionStore::Redis(store) => Some(store.ping().await),
        }
    }
}

tokio::task_local! {
    /// Set when a store call failed during this request (see [`unavailable_when_the_store_fails`]).
    static STORE_FAILED: Cell<bool>;
    /// Set by [`keep_answer_if_not_saved`]: a failure to save the session at the end of this request
    /// does not replace its answer.
    static KEEP_ANSWER: Cell<bool>;
    /// Set while [`renew_id`] has tower-sessions cycle the id: the old record is kept for the re-key.
    static RENEWING: ();
}

/// Gives a stored session a new id, keeping everything in it (the cookie changes, the session does
/// not): a copy of the old cookie stops working.
///
/// tower-sessions' `cycle_id` deletes the old record at once and stores the session afresh when the
/// response is sent, so a session ended meanwhile (signed out elsewhere, revoked, ended when two-factor
/// was turned on) would be stored again under the new id, by a request that was in flight when it
/// ended. Here the old record stays until the response, and is then re-keyed in one step if it still
/// exists; a session ended meanwhile stays ended (the new cookie names nothing). A session not stored
/// yet is simply cycled.
pub async fn renew_id(
    session: &tower_sessions::Session,
) -> Result<(), tower_sessions::session::Error> {
    let Some(id) = session.id() else {
        return session.cycle_id().await;
    };
    session.insert(RENEWS_KEY, hash_id(&id)).await?;
    RENEWING.scope((), session.cycle_id()).await
}

fn note_failure<T>(result: session_store::Result<T>) -> session_store::Result<T> {
    if result.is_err() {
        let _ = STORE_FAILED.try_with(|failed| failed.set(true));
    }
    result
}

/// The session is saved once the answer is ready, and a store failing then replaces the answer with
/// a 503 "try again". After a change that has been committed (a new password, two-factor turned on
/// and its backup codes shown once, a household joined), that answer would be false, and trying
/// again would fail or do it twice: so a request that has made such a change calls this, and a
/// failed save at its end is only logged. The session then stays as it was stored before, which must
/// be safe: ended where the change ends it (the password or two-factor value it recorded is out of
/// date), and this browser's renewed cookie names nothing, so it signs in again. Never where the
/// save is the point (a failed code's count, a sign-in; ending the other sessions, whose renewal
/// ends a copy of this cookie): those still answer 503, and trying again finishes them.
pub fn keep_answer_if_not_saved() {
    let _ = KEEP_ANSWER.try_with(|keep| keep.set(true));
}

/// A failed save or create at the end of a request that asked to keep its answer: logged, and
/// reported as done, so that the session layer sends the answer.
fn unless_answer_kept(result: session_store::Result<()>) -> session_store::Result<()> {
    match result {
        Err(err) if KEEP_ANSWER.try_with(Cell::get).unwrap_or(false) => {
            tracing::warn!(
                error = %err,
                "the session could not be saved after a committed change; it stays as it was stored"
            );
            Ok(())
        }
        result => note_failure(result),
    }
}

#[async_trait]
impl SessionStore for AppSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let renews = record
            .data
            .remove(RENEWS_KEY)
            .and_then(|key| key.as_str().map(str::to_owned));
        unless_answer_kept(match (self, renews) {
            (AppSessionStore::Database(store), Some(old)) => store.renew(&old, record).await,
            (AppSessionStore::Redis(store), Some(old)) => store.renew(&old, record).await,
            (AppSessionStore::Database(store), None) => store.create(record).await,
            (AppSessionStore::Redis(store), None) => store.create(record).await,
        })
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        unless_answer_kept(match self {
            AppSessionStore::Database(store) => store.save(record).await,
            AppSessionStore::Redis(store) => store.save(record).await,
        })
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        note_failure(match self {
            AppSessionStore::Database(store) => store.load(id).await,
            AppSessionStore::Redis(store) => store.load(id).await,
        })
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        // The id being renewed: its record is re-keyed when the session is saved (see `renew_id`).
        if RENEWING.try_with(|()| ()).is_ok() {
            return Ok(());
        }
        note_failure(match self {
            AppSessionStore::Database(store) => store.delete(id).await,
            AppSessionStore::Redis(store) => store.delete(id).await,
        })
    }
}

/// Outside the session layer. tower-sessions answers a failed save with a bare 500; when the store
/// could not be reached that is an outage (503, try again), not a fault, and the person is told so.
/// A request whose session could not be read never counts as signed in nor as signed out: the
/// handlers answer 503 themselves, and this catches the save at the end.
pub async fn unavailable_when_the_store_fails(request: Request, next: Next) -> Response {
    let answer = KEEP_ANSWER.scope(Cell::new(false), next.run(request));
    STORE_FAILED
        .scope(Cell::new(false), async move {
            let response = answer.await;
            let failed = STORE_FAILED.try_with(Cell::get).unwrap_or(false);
            if failed && response.status() == http::StatusCode::INTERNAL_SERVER_ERROR {
                tracing::warn!("the session store failed; answering 503");
                return (
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    [(http::header::RETRY_AFTER, "5")],
                    "Nest Egg is briefly unavailable. Please try again in a moment.",
                )
                    .into_response();
            }
            response
        })
        .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn data(json: &str) -> HashMap<String, serde_json::Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn only_half_finished_sign_ins_are_stale() {
        let pending =
            data(r#"{"mfa_pending":{"user_id":"u","started_at":100,"failures":0,"next":"/"}}"#);
        assert!(is_stale_pending_sign_in(&pending, 500));
        assert!(!is_stale_pending_sign_in(&pending, 50));
        let signed_in = data(r#"{"uid":"u","mfa_pending":{"started_at":100}}"#);
        assert!(!is_stale_pending_sign_in(&signed_in, 500));
        assert!(!is_stale_pending_sign_in(&data("{}"), 500));
    }

    #[test]
    fn a_session_belongs_to_its_user_or_its_pending_sign_in() {
        assert_eq!(owner(&data(r#"{"uid":"a"}"#)).as_deref(), Some("a"));
        assert_eq!(
            owner(&data(r#"{"mfa_pending":{"user_id":"b"}}"#)).as_deref(),
            Some("b")
        );
        assert_eq!(owner(&data(r#"{"invitation":"x"}"#)), None);
    }
}
