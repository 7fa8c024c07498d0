//! A tower-sessions [`SessionStore`] on the app's own database (SQLite or PostgreSQL through SeaORM).
//!
//! tower-sessions-sqlx-store is built on sqlx 0.8 while SeaORM 2 uses sqlx 0.9, hence this small store.
//! Sessions survive restarts; deleting the row ends the session everywhere on its next request.

use std::collections::HashMap;

use async_trait::async_trait;
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, DatabaseConnection, EntityTrait as _, QueryFilter as _,
    SqlErr,
};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use crate::server::clock::SharedClock;
use crate::server::entities::session;

/// Session data key holding the signed-in user's id.
pub const USER_KEY: &str = "uid";
/// Session data key holding when (Unix seconds) the password was last checked in this session.
pub const AUTH_AT_KEY: &str = "auth_at";
/// Session data keys describing the sign-in, for the sessions list: when (Unix seconds), from which IP
/// and with which user agent.
pub const STARTED_AT_KEY: &str = "started_at";
pub const CLIENT_IP_KEY: &str = "ip";
pub const CLIENT_UA_KEY: &str = "ua";

/// Session data key of a sign-in waiting for its second factor ([`PendingMfa`]). A session holding it
/// has no user: it is signed out for everything but the two-factor step.
pub const MFA_PENDING_KEY: &str = "mfa_pending";
/// The id of a household invitation opened before signing in: kept here, so the link's token appears
/// in no other address (nor in the session data) while the visitor signs in.
pub const INVITATION_KEY: &str = "invitation";

/// The password step of a sign-in succeeded for `user_id` at `started_at`; the code step is next.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PendingMfa {
    pub user_id: String,
    pub started_at: i64,
    pub failures: u32,
    /// Where to go once signed in (already checked to be a same-site path).
    pub next: String,
}

#[derive(Clone, Debug)]
pub struct DbSessionStore {
    db: DatabaseConnection,
    clock: SharedClock,
    idle_timeout: Option<time::Duration>,
}

impl DbSessionStore {
    pub fn new(db: DatabaseConnection, clock: SharedClock) -> Self {
        DbSessionStore {
            db,
            clock,
            idle_timeout: None,
        }
    }

    /// Each save moves the stored expiry to the app clock's now plus `idle`. tower-sessions computes
    /// its expiry from the system clock; the server's own rule (and its tests) use the app clock.
    pub fn with_idle_timeout(mut self, idle: time::Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    /// Ends every session of `user_id` except the one whose stored key is `keep`.
    pub async fn revoke_user<C: sea_orm::ConnectionTrait>(
        db: &C,
        user_id: &str,
        keep: Option<&str>,
    ) -> Result<u64, sea_orm::DbErr> {
        let mut query = session::Entity::delete_many().filter(session::Column::UserId.eq(user_id));
        if let Some(keep) = keep {
            query = query.filter(session::Column::IdHash.ne(keep));
        }
        Ok(query.exec(db).await?.rows_affected)
    }

    /// Removes every expired session; returns how many went.
    pub async fn delete_expired(&self) -> Result<u64, sea_orm::DbErr> {
        let now = self.clock.now().unix_timestamp();
        let result = session::Entity::delete_many()
            .filter(session::Column::ExpiresAt.lte(now))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected)
    }

    fn active_model(&self, record: &Record) -> session_store::Result<session::ActiveModel> {
        let data = serde_json::to_string(&record.data)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let now = self.clock.now().unix_timestamp();
        // A sign-in waiting for its second factor belongs to its user too, so "sign out everywhere"
        // (a password reset) also ends it.
        let user_id = record
            .data
            .get(USER_KEY)
            .and_then(|v| v.as_str())
            .or_else(|| {
                record
                    .data
                    .get(MFA_PENDING_KEY)
                    .and_then(|p| p.get("user_id"))
                    .and_then(|v| v.as_str())
            })
            .map(str::to_owned);
        Ok(session::ActiveModel {
            id_hash: Set(hash_id(&record.id)),
            data: Set(data),
            expires_at: Set(match self.idle_timeout {
                Some(idle) => (self.clock.now() + idle).unix_timestamp(),
                None => record.expiry_date.unix_timestamp(),
            }),
            created_at: Set(now),
            updated_at: Set(now),
            user_id: Set(user_id),
        })
    }
}

/// The stored key of a session: a hash, so the table never holds a usable cookie value.
pub fn hash_id(id: &Id) -> String {
    hex::encode(Sha256::digest(id.to_string().as_bytes()))
}

fn backend(err: sea_orm::DbErr) -> session_store::Error {
    // The message goes to tower-sessions' own error log; it never reaches a response body.
    session_store::Error::Backend(err.to_string())
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // Ids are 128 random bits, so a collision is all but impossible; still, never overwrite one.
        loop {
            let model = self.active_model(record)?;
            match session::Entity::insert(model)
                .exec_without_returning(&self.db)
                .await
            {
                Ok(_) => return Ok(()),
                Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                    record.id = Id::default();
                }
                Err(err) => return Err(backend(err)),
            }
        }
    }

    /// Updates an existing session only. New and re-keyed sessions go through `create`; a row that is
    /// gone was ended (signed out elsewhere, revoked, swept), and a request that was already in flight
    /// for it must not bring it back by saving at its end.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let mut model = self.active_model(record)?;
        // The key and the start stay as they were.
        model.id_hash = sea_orm::ActiveValue::NotSet;
        model.created_at = sea_orm::ActiveValue::NotSet;
        session::Entity::update_many()
            .set(model)
            .filter(session::Column::IdHash.eq(hash_id(&record.id)))
            .exec(&self.db)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let now = self.clock.now().unix_timestamp();
        let Some(row) = session::Entity::find_by_id(hash_id(id))
            .filter(session::Column::ExpiresAt.gt(now))
            .one(&self.db)
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let data: HashMap<String, serde_json::Value> = serde_json::from_str(&row.data)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let expiry_date = OffsetDateTime::from_unix_timestamp(row.expires_at)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        session::Entity::delete_by_id(hash_id(id))
            .exec(&self.db)
            .await
            .map_err(backend)?;
        Ok(())
    }
}
