//! A tower-sessions [`SessionStore`] on the app's own database (SQLite or PostgreSQL through SeaORM).
//!
//! tower-sessions-sqlx-store is built on sqlx 0.8 while SeaORM 2 uses sqlx 0.9, hence this small store.
//! Sessions survive restarts; deleting the row ends the session everywhere on its next request.

use std::collections::HashMap;

use async_trait::async_trait;
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, DatabaseConnection, DbErr, EntityTrait as _,
    PaginatorTrait as _, QueryFilter as _, QuerySelect as _, SqlErr,
};
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use crate::server::clock::SharedClock;
use crate::server::entities::session;

use super::{StoredSession, hash_id, is_stale_pending_sign_in, owner};

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

    pub(super) async fn list_user(&self, user_id: &str) -> Result<Vec<StoredSession>, DbErr> {
        let now = self.clock.now().unix_timestamp();
        let rows = session::Entity::find()
            .filter(session::Column::UserId.eq(user_id))
            .filter(session::Column::ExpiresAt.gt(now))
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                Some(StoredSession {
                    data: serde_json::from_str(&row.data).ok()?,
                    key: row.id_hash,
                    created_at: row.created_at,
                    updated_at: row.updated_at,
                })
            })
            .collect())
    }

    pub(super) async fn revoke(&self, user_id: &str, key: &str) -> Result<bool, DbErr> {
        let deleted = session::Entity::delete_many()
            .filter(session::Column::IdHash.eq(key))
            .filter(session::Column::UserId.eq(user_id))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected > 0)
    }

    pub(super) async fn purge(&self, pending_cutoff: i64) -> Result<(u64, u64), DbErr> {
        let expired = self.delete_expired().await?;
        let candidates: Vec<(String, String)> = session::Entity::find()
            .select_only()
            .columns([session::Column::IdHash, session::Column::Data])
            .filter(session::Column::UserId.is_not_null())
            .filter(session::Column::UpdatedAt.lt(pending_cutoff))
            .into_tuple()
            .all(&self.db)
            .await?;
        let stale: Vec<String> = candidates
            .into_iter()
            .filter(|(_, data)| {
                serde_json::from_str(data)
                    .is_ok_and(|data| is_stale_pending_sign_in(&data, pending_cutoff))
            })
            .map(|(id, _)| id)
            .collect();
        let pending = if stale.is_empty() {
            0
        } else {
            session::Entity::delete_many()
                .filter(session::Column::IdHash.is_in(stale))
                .exec(&self.db)
                .await?
                .rows_affected
        };
        Ok((expired, pending))
    }

    pub(super) async fn count_signed_in(&self) -> Result<u64, DbErr> {
        let now = self.clock.now().unix_timestamp();
        session::Entity::find()
            .filter(session::Column::UserId.is_not_null())
            .filter(session::Column::ExpiresAt.gt(now))
            .count(&self.db)
            .await
    }

    /// Moves the stored session `old_key` to `record`'s id, with `record`'s data, if it is still
    /// stored; one that ended meanwhile stays ended ([`super::renew_id`]).
    pub(super) async fn renew(
        &self,
        old_key: &str,
        record: &mut Record,
    ) -> session_store::Result<()> {
        loop {
            let mut model = self.active_model(record)?;
            // The session goes on: it started when it started.
            model.created_at = sea_orm::ActiveValue::NotSet;
            match session::Entity::update_many()
                .set(model)
                .filter(session::Column::IdHash.eq(old_key))
                .exec(&self.db)
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

    fn active_model(&self, record: &Record) -> session_store::Result<session::ActiveModel> {
        let data = serde_json::to_string(&record.data)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let now = self.clock.now().unix_timestamp();
        let user_id = owner(&record.data);
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
