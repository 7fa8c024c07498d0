//! Sessions in Redis (the scaled-out mode): the records go through the maintained tower-sessions
//! Redis store; this wrapper adds what the services need on top.
//!
//! - Records are stored under an id *derived* from the session key (the first 128 bits of
//!   [`hash_id`]), never under the cookie's own id: like the database table, Redis holds nothing a
//!   cookie could be made from, and the sessions page can end a session knowing only its key.
//! - Each person has an index, a hash `PREFIX:user-sessions:USER` of key → start time, so their
//!   sessions can be listed and ended. Entries of sessions that ended by expiring are dropped when
//!   met (listing, revoking, the purge job).
//! - Expiry follows the app clock (stored in the record, checked on load), as in the database; the
//!   Redis TTL (by the system clock) only frees the memory.

use std::collections::HashMap;

use async_trait::async_trait;
use fred::prelude::{HashesInterface as _, Pool};
use futures_util::TryStreamExt as _;
use sea_orm::DbErr;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions_redis_store::RedisStore;

use crate::server::clock::SharedClock;
use crate::server::redis::{COMMAND_TIMEOUT, Redis};

use super::{StoredSession, hash_id, is_stale_pending_sign_in, owner};

/// Bookkeeping kept in the stored record only (stripped on load): last use and expiry, app clock.
const SEEN_AT: &str = "__seen_at";
const EXPIRES_AT: &str = "__expires_at";
/// An index outlives its newest session by this much (its entries are swept anyway).
const INDEX_SLACK_SECS: i64 = 24 * 3600;
/// How many times ending all of a person's sessions reads their index again for sessions renewed
/// meanwhile.
const ROUNDS: usize = 4;

/// Re-keys a session record and its entry in its owner's index, if the record still exists.
/// KEYS: the old record, the new record, the index; ARGV: the old and the new key as indexed.
const RENEW_LUA: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('RENAME', KEYS[1], KEYS[2])
local started = redis.call('HGET', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if started then
  redis.call('HSET', KEYS[3], ARGV[2], started)
end
return 1
"#;

/// Ends a session: takes its entry off the index and deletes its record in one step, if the entry
/// is still there (a renewal moved it otherwise, and the caller looks again). A renewal after this
/// finds no record ([`RENEW_LUA`]), so none in flight escapes a revocation; returns 1 when a record
/// was deleted. KEYS: the index, the record; ARGV: the key as indexed.
const END_LUA: &str = r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return -1
end
return redis.call('DEL', KEYS[2])
"#;

/// Adds a session to its owner's index (and keeps the index one idle period and a day) if its record
/// exists: a request that saves a session ended meanwhile (signed out, revoked) leaves it ended, and
/// must not put its entry back. KEYS: the record, the index; ARGV: the key as indexed, the time of
/// sign-in, the index's lifetime in seconds.
const INDEX_LUA: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"#;

#[derive(Clone, Debug)]
pub struct RedisSessionStore {
    records: RedisStore<Pool>,
    renew_script: fred::types::scripts::Script,
    end_script: fred::types::scripts::Script,
    index_script: fred::types::scripts::Script,
    redis: Redis,
    clock: SharedClock,
    idle: time::Duration,
}

/// A Redis failure seen by a service: the store is unreachable (503).
fn unreachable(err: impl std::fmt::Display) -> DbErr {
    crate::server::redis::unreachable("session store", err)
}

fn backend(err: fred::error::Error) -> session_store::Error {
    session_store::Error::Backend(err.to_string())
}

/// The id a session's record is stored under, from its key.
fn storage_id(key: &str) -> Option<Id> {
    let bytes = hex::decode(key).ok()?;
    let first: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
    Some(Id(i128::from_le_bytes(first)))
}

fn stored_id(id: &Id) -> Id {
    // A key from `hash_id` is always 64 hex digits; the fallback is unreachable.
    storage_id(&hash_id(id)).unwrap_or(*id)
}

impl RedisSessionStore {
    pub fn new(redis: Redis, clock: SharedClock, idle: time::Duration) -> Self {
        RedisSessionStore {
            records: RedisStore::new(redis.pool.clone()),
            renew_script: fred::types::scripts::Script::from_lua(RENEW_LUA),
            end_script: fred::types::scripts::Script::from_lua(END_LUA),
            index_script: fred::types::scripts::Script::from_lua(INDEX_LUA),
            redis,
            clock,
            idle,
        }
    }

    fn index(&self, user_id: &str) -> String {
        self.redis.key(&format!("user-sessions:{user_id}"))
    }

    /// The record as stored: under its derived id, with its bookkeeping, and a Redis expiry one idle
    /// period away by the system clock.
    fn to_stored(&self, record: &Record) -> Record {
        let now = self.clock.now().unix_timestamp();
        let mut stored = record.clone();
        stored.id = stored_id(&record.id);
        stored.data.insert(SEEN_AT.to_owned(), now.into());
        stored.data.insert(
            EXPIRES_AT.to_owned(),
            (now + self.idle.whole_seconds()).into(),
        );
        stored.expiry_date = OffsetDateTime::now_utc() + self.idle;
        stored
    }

    /// Adds the session to its owner's index (kept while the owner has a live session).
    async fn index_session(&self, record: &Record) -> session_store::Result<()> {
        let Some(user_id) = owner(&record.data) else {
            return Ok(());
        };
        let now = self.clock.now().unix_timestamp();
        // The record's key as the maintained store names it: the bare (derived) id.
        let keys = vec![stored_id(&record.id).to_string(), self.index(&user_id)];
        let args = vec![
            hash_id(&record.id),
            now.to_string(),
            (self.idle.whole_seconds() + INDEX_SLACK_SECS).to_string(),
        ];
        let _: i64 = self
            .index_script
            .evalsha_with_reload(self.redis.pool.next(), keys, args)
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// Saves `stored` if it still exists (SET XX). The maintained store reads SET's answer as a
    /// boolean, and a SET XX that finds no record answers nil, which it reports as an error: so a
    /// request saving a session ended meanwhile (signed out elsewhere) would fail with a 503. A
    /// record that is gone is no failure: the session stays ended.
    async fn save_unless_ended(&self, stored: &Record) -> session_store::Result<()> {
        use fred::prelude::KeysInterface as _;
        match self.records.save(stored).await {
            Ok(()) => Ok(()),
            Err(err) => {
                let exists: u32 = self
                    .redis
                    .pool
                    .exists(stored.id.to_string())
                    .await
                    .map_err(backend)?;
                if exists == 0 { Ok(()) } else { Err(err) }
            }
        }
    }

    /// The stored record of `key`, bookkeeping included, whether or not it is live.
    async fn load_raw(&self, key: &str) -> Result<Option<Record>, DbErr> {
        match storage_id(key) {
            Some(id) => self.records.load(&id).await.map_err(unreachable),
            None => Ok(None),
        }
    }

    /// The stored record of `key`, bookkeeping included, if it is live by the app clock.
    async fn load_stored(&self, key: &str) -> Result<Option<Record>, DbErr> {
        let record = self.load_raw(key).await?;
        let now = self.clock.now().unix_timestamp();
        Ok(record.filter(|r| expires_at(r).is_some_and(|at| at > now)))
    }

    async fn delete_key(&self, key: &str) -> Result<(), DbErr> {
        if let Some(id) = storage_id(key) {
            self.records.delete(&id).await.map_err(unreachable)?;
        }
        Ok(())
    }

    async fn index_entries(&self, index: &str) -> Result<HashMap<String, i64>, DbErr> {
        self.redis.pool.hgetall(index).await.map_err(unreachable)
    }

    async fn unindex(&self, index: &str, keys: Vec<String>) -> Result<(), DbErr> {
        if keys.is_empty() {
            return Ok(());
        }
        self.redis
            .pool
            .hdel::<(), _, _>(index, keys)
            .await
            .map_err(unreachable)
    }

    pub(super) async fn list_user(&self, user_id: &str) -> Result<Vec<StoredSession>, DbErr> {
        let index = self.index(user_id);
        let mut sessions = Vec::new();
        let mut gone = Vec::new();
        for (key, created_at) in self.index_entries(&index).await? {
            match self.load_stored(&key).await? {
                Some(mut record) if owner(&record.data).as_deref() == Some(user_id) => {
                    let updated_at = record
                        .data
                        .remove(SEEN_AT)
                        .and_then(|v| v.as_i64())
                        .unwrap_or(created_at);
                    record.data.remove(EXPIRES_AT);
                    sessions.push(StoredSession {
                        key,
                        data: record.data,
                        created_at,
                        updated_at,
                    });
                }
                _ => gone.push(key),
            }
        }
        self.unindex(&index, gone).await?;
        Ok(sessions)
    }

    /// Ends the session indexed under `key` in `index` ([`END_LUA`]): `None` when it is no longer
    /// indexed there, else whether a record was deleted.
    async fn end(&self, index: &str, key: &str) -> Result<Option<bool>, DbErr> {
        let Some(id) = storage_id(key) else {
            self.unindex(index, vec![key.to_owned()]).await?;
            return Ok(None);
        };
        let ended: i64 = self
            .end_script
            .evalsha_with_reload(
                self.redis.pool.next(),
                vec![index.to_owned(), id.to_string()],
                vec![key.to_owned()],
            )
            .await
            .map_err(unreachable)?;
        Ok((ended >= 0).then_some(ended == 1))
    }

    pub(super) async fn revoke(&self, user_id: &str, key: &str) -> Result<bool, DbErr> {
        let live = self
            .load_stored(key)
            .await?
            .is_some_and(|r| owner(&r.data).as_deref() == Some(user_id));
        // Not listed any more: ended meanwhile, or renewed under another key (which the database
        // does not find either).
        Ok(self.end(&self.index(user_id), key).await? == Some(true) && live)
    }

    /// Moves the stored session `old_key` to `record`'s id, with `record`'s data, if it is still
    /// stored ([`super::renew_id`]). The move and its index entry are one script, and so is each
    /// session's end in a revocation ([`END_LUA`]), which reads the index again for sessions moved
    /// meanwhile: none escapes it.
    pub(super) async fn renew(
        &self,
        old_key: &str,
        record: &mut Record,
    ) -> session_store::Result<()> {
        let Some(old) = storage_id(old_key) else {
            return Ok(());
        };
        let stored = self.to_stored(record);
        let index = self.index(&owner(&record.data).unwrap_or_default());
        let keys = vec![old.to_string(), stored.id.to_string(), index];
        let moved: i64 = self
            .renew_script
            .evalsha_with_reload(
                self.redis.pool.next(),
                keys,
                vec![old_key.to_owned(), hash_id(&record.id)],
            )
            .await
            .map_err(backend)?;
        if moved == 1 {
            // SET XX: the data of this request, unless the session ended in the meantime.
            self.save_unless_ended(&stored).await?;
            self.index_session(record).await?;
        }
        Ok(())
    }

    pub(super) async fn revoke_user(
        &self,
        user_id: &str,
        keep: Option<&str>,
    ) -> Result<u64, DbErr> {
        let index = self.index(user_id);
        let mut ended = 0;
        // Each session's entry and record go in one step ([`END_LUA`]). A session renewed after the
        // index was read is indexed under a new key: read it again until none is left, as the
        // database's one statement would have caught it. A sign-in completing meanwhile is ended too
        // if it is seen; a few rounds bound this.
        for _ in 0..ROUNDS {
            let mut found = false;
            for key in self.index_entries(&index).await?.into_keys() {
                if Some(key.as_str()) == keep {
                    continue;
                }
                found = true;
                // Counted like rows deleted from the table: whatever was still stored.
                if self.end(&index, &key).await? == Some(true) {
                    ended += 1;
                }
            }
            if !found {
                break;
            }
        }
        Ok(ended)
    }

    /// Walks every index: drops entries of sessions gone, ends expired sessions and sign-ins whose
    /// second factor never came.
    pub(super) async fn purge(&self, pending_cutoff: i64) -> Result<(u64, u64), DbErr> {
        let now = self.clock.now().unix_timestamp();
        let (mut expired, mut pending) = (0, 0);
        for index in self.indexes().await? {
            let mut gone = Vec::new();
            for key in self.index_entries(&index).await?.into_keys() {
                let Some(record) = self.load_raw(&key).await? else {
                    gone.push(key);
                    continue;
                };
                if expires_at(&record).is_none_or(|at| at <= now) {
                    expired += 1;
                } else if is_stale_pending_sign_in(&record.data, pending_cutoff) {
                    pending += 1;
                } else {
                    continue;
                }
                self.delete_key(&key).await?;
                gone.push(key);
            }
            self.unindex(&index, gone).await?;
        }
        Ok((expired, pending))
    }

    async fn indexes(&self) -> Result<Vec<String>, DbErr> {
        let pattern = self.redis.key("user-sessions:*");
        let keys = self
            .redis
            .pool
            .next()
            .scan_buffered(pattern, Some(500), None);
        let mut keys = std::pin::pin!(keys);
        let mut indexes = Vec::new();
        // fred gives SCAN no command timeout: while it reconnects, a page would wait until Redis is
        // back (a metrics scrape or the purge job hanging through the outage). So each page gets
        // one here.
        loop {
            match tokio::time::timeout(COMMAND_TIMEOUT, keys.try_next()).await {
                Ok(Ok(Some(key))) => indexes.push(key.into_string().unwrap_or_default()),
                Ok(Ok(None)) => return Ok(indexes),
                Ok(Err(err)) => return Err(unreachable(err)),
                Err(_) => {
                    return Err(unreachable(format!(
                        "no answer to SCAN within {COMMAND_TIMEOUT:?}"
                    )));
                }
            }
        }
    }

    pub(super) async fn count_indexed(&self) -> Result<u64, DbErr> {
        let mut count = 0;
        for index in self.indexes().await? {
            let n: u64 = self.redis.pool.hlen(&index).await.map_err(unreachable)?;
            count += n;
        }
        Ok(count)
    }

    pub(super) async fn ping(&self) -> bool {
        self.redis.ping().await
    }
}

fn expires_at(record: &Record) -> Option<i64> {
    record.data.get(EXPIRES_AT).and_then(|v| v.as_i64())
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        loop {
            let mut stored = self.to_stored(record);
            let wanted = stored.id;
            // SET NX: on a taken id the store draws another, which is of no use under a derived id.
            self.records.create(&mut stored).await?;
            if stored.id == wanted {
                break;
            }
            self.records.delete(&stored.id).await?;
            record.id = Id::default();
        }
        self.index_session(record).await
    }

    /// SET XX: a session ended elsewhere while this request was in flight stays ended.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.save_unless_ended(&self.to_stored(record)).await?;
        self.index_session(record).await
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let Some(mut record) = self.records.load(&stored_id(id)).await? else {
            return Ok(None);
        };
        let now = self.clock.now().unix_timestamp();
        let Some(expires) = expires_at(&record).filter(|at| *at > now) else {
            return Ok(None);
        };
        record.data.remove(SEEN_AT);
        record.data.remove(EXPIRES_AT);
        record.id = *id;
        record.expiry_date = OffsetDateTime::from_unix_timestamp(expires)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(record))
    }

    /// Signing out, or the old id of a renewed session: the record, and its owner's index entry.
    /// Only deleting the record can fail the request: a record that cannot be read (to find its
    /// owner) is deleted all the same, and an entry left behind is swept by `purge`.
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let stored = stored_id(id);
        let owner = match self.records.load(&stored).await {
            Ok(record) => record.and_then(|record| owner(&record.data)),
            Err(err) => {
                tracing::warn!(error = %err, "could not read a session being deleted");
                None
            }
        };
        self.records.delete(&stored).await?;
        if let Some(user_id) = owner {
            let removed: Result<i64, _> = self
                .redis
                .pool
                .hdel(self.index(&user_id), hash_id(id))
                .await;
            if let Err(err) = removed {
                tracing::warn!(error = %err, "could not take a deleted session off its index");
            }
        }
        Ok(())
    }
}
