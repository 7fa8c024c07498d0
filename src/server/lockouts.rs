//! Lock-out counters: consecutive failed sign-ins per address (a keyed hash of it) and the lock that
//! follows. In the database (`login_throttles`) for the embedded default, in Redis when scaled out, so
//! every instance counts the same guesses.
//!
//! Every operation is atomic (one SQL statement, or one Lua script): guesses racing each other, on one
//! instance or several, all count, and exactly one of them sets the lock. Functions that change a
//! counter take the caller's connection: in the database they join its transaction; in Redis they
//! happen at once (before the caller commits, so a failure fails the whole change).
//!
//! Times come from the app clock (a parameter), so lock windows are tested by moving a fake clock.

use fred::types::scripts::Script;
use sea_orm::sea_query::ExprTrait as _;
use sea_orm::{
    ColumnTrait as _, ConnectionTrait, DbErr, EntityTrait as _, QueryFilter as _, Statement,
};

use crate::server::entities::login_throttle;
use crate::server::redis::Redis;

/// A counter untouched this long is forgotten (a slow guesser must not get a fresh count every hour,
/// but an address nobody tries any more needs no counter).
pub const IDLE_SECS: i64 = 30 * 24 * 3600;

/// `{failures, locked_until or -1}` after counting one attempt; an expired lock starts a fresh count.
const COUNT_LUA: &str = r#"
local now = tonumber(ARGV[1])
local locked = tonumber(redis.call('HGET', KEYS[1], 'u'))
local failures
if locked and locked <= now then
  redis.call('HDEL', KEYS[1], 'u')
  redis.call('HSET', KEYS[1], 'f', 1)
  locked = nil
  failures = 1
else
  failures = redis.call('HINCRBY', KEYS[1], 'f', 1)
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {failures, locked or -1}
"#;

/// 1 when the run of failures ended; 0 when a lock (set meanwhile) still holds.
const CLEAR_LUA: &str = r#"
local locked = tonumber(redis.call('HGET', KEYS[1], 'u'))
if locked and locked > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
return 1
"#;

const UNCOUNT_LUA: &str = r#"
local failures = tonumber(redis.call('HGET', KEYS[1], 'f'))
if failures and failures > 0 then redis.call('HINCRBY', KEYS[1], 'f', -1) end
return 0
"#;

/// 1 for the one caller that sets the lock. Not for a counter that is gone (a reset or a correct
/// password cleared it meanwhile), as in the database, where the update then finds no row.
const LOCK_LUA: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'u') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'u', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"#;

/// Takes back the lock a caller set (its `until`), when what had to go with it failed.
const UNLOCK_LUA: &str = r#"
if tonumber(redis.call('HGET', KEYS[1], 'u')) == tonumber(ARGV[1]) then
  redis.call('HDEL', KEYS[1], 'u')
end
return 0
"#;

#[derive(Clone, Debug)]
pub enum Lockouts {
    Database,
    Redis(Box<RedisLockouts>),
}

#[derive(Clone, Debug)]
pub struct RedisLockouts {
    redis: Redis,
    count: Script,
    clear: Script,
    uncount: Script,
    lock: Script,
    unlock: Script,
}

/// A Redis failure, seen by the services as an unreachable store (503).
fn unreachable(err: fred::error::Error) -> DbErr {
    crate::server::redis::unreachable("lock-out counters", err)
}

impl RedisLockouts {
    fn key(&self, key: &str) -> String {
        self.redis.key(&format!("lockout:{key}"))
    }

    async fn run<R: fred::types::FromValue>(
        &self,
        script: &Script,
        key: &str,
        args: Vec<i64>,
    ) -> Result<R, DbErr> {
        script
            .evalsha_with_reload(self.redis.pool.next(), self.key(key), args)
            .await
            .map_err(unreachable)
    }
}

impl Lockouts {
    pub fn redis(redis: Redis) -> Self {
        Lockouts::Redis(Box::new(RedisLockouts {
            redis,
            count: Script::from_lua(COUNT_LUA),
            clear: Script::from_lua(CLEAR_LUA),
            uncount: Script::from_lua(UNCOUNT_LUA),
            lock: Script::from_lua(LOCK_LUA),
            unlock: Script::from_lua(UNLOCK_LUA),
        }))
    }

    /// Counts one attempt: the failures so far (this one included) and any lock.
    pub async fn count<C: ConnectionTrait>(
        &self,
        db: &C,
        key: &str,
        now: i64,
    ) -> Result<(i32, Option<i64>), DbErr> {
        match self {
            Lockouts::Database => count_in_database(db, key, now).await,
            Lockouts::Redis(redis) => {
                let (failures, locked): (i64, i64) =
                    redis.run(&redis.count, key, vec![now, IDLE_SECS]).await?;
                let failures = i32::try_from(failures).unwrap_or(i32::MAX);
                Ok((failures, (locked >= 0).then_some(locked)))
            }
        }
    }

    /// After a correct password: the run of failures ends, unless a concurrent failure locked the
    /// address meanwhile (then the lock wins). Returns whether the attempt may proceed.
    pub async fn clear<C: ConnectionTrait>(
        &self,
        db: &C,
        key: &str,
        now: i64,
    ) -> Result<bool, DbErr> {
        match self {
            Lockouts::Database => {
                let cleared = login_throttle::Entity::delete_many()
                    .filter(login_throttle::Column::EmailHash.eq(key))
                    .filter(
                        sea_orm::Condition::any()
                            .add(login_throttle::Column::LockedUntil.is_null())
                            .add(login_throttle::Column::LockedUntil.lte(now)),
                    )
                    .exec(db)
                    .await?;
                // The usual case, in one statement: the counter was there (the attempt was counted a
                // moment ago) and held no lock. Otherwise a lock kept it, or something else cleared it.
                if cleared.rows_affected > 0 {
                    return Ok(true);
                }
                let still_locked = login_throttle::Entity::find_by_id(key.to_owned())
                    .one(db)
                    .await?
                    .is_some_and(|t| t.locked_until.is_some_and(|until| until > now));
                Ok(!still_locked)
            }
            Lockouts::Redis(redis) => {
                let cleared: i64 = redis.run(&redis.clear, key, vec![now]).await?;
                Ok(cleared == 1)
            }
        }
    }

    /// Takes back one counted attempt (a correct password that a second factor must still follow).
    pub async fn uncount<C: ConnectionTrait>(&self, db: &C, key: &str) -> Result<(), DbErr> {
        match self {
            Lockouts::Database => {
                login_throttle::Entity::update_many()
                    .col_expr(
                        login_throttle::Column::Failures,
                        sea_orm::sea_query::Expr::col(login_throttle::Column::Failures).sub(1),
                    )
                    .filter(login_throttle::Column::EmailHash.eq(key))
                    .filter(login_throttle::Column::Failures.gt(0))
                    .exec(db)
                    .await?;
                Ok(())
            }
            Lockouts::Redis(redis) => {
                let _: i64 = redis.run(&redis.uncount, key, vec![]).await?;
                Ok(())
            }
        }
    }

    /// Locks `key` until `until`. True for the one caller that set the lock (it records the event and
    /// emails the owner), false when a lock was already there.
    pub async fn lock<C: ConnectionTrait>(
        &self,
        db: &C,
        key: &str,
        until: i64,
    ) -> Result<bool, DbErr> {
        match self {
            Lockouts::Database => {
                let updated = login_throttle::Entity::update_many()
                    .col_expr(login_throttle::Column::LockedUntil, until.into())
                    .filter(login_throttle::Column::EmailHash.eq(key))
                    .filter(login_throttle::Column::LockedUntil.is_null())
                    .exec(db)
                    .await?;
                Ok(updated.rows_affected == 1)
            }
            Lockouts::Redis(redis) => {
                let set: i64 = redis.run(&redis.lock, key, vec![until, IDLE_SECS]).await?;
                Ok(set == 1)
            }
        }
    }

    /// Takes back a lock [`Self::lock`] set (`until` as given to it) when the transaction that was to
    /// record it and email the owner failed: the next failure then sets it again, with both. The
    /// database's lock went with the rolled-back transaction already; Redis' has to be undone.
    pub async fn unlock(&self, key: &str, until: i64) -> Result<(), DbErr> {
        match self {
            Lockouts::Database => Ok(()),
            Lockouts::Redis(redis) => {
                let _: i64 = redis.run(&redis.unlock, key, vec![until]).await?;
                Ok(())
            }
        }
    }

    /// Forgets `key`'s counter and lock (the password was reset, the address changed or went).
    pub async fn forget<C: ConnectionTrait>(&self, db: &C, key: &str) -> Result<(), DbErr> {
        match self {
            Lockouts::Database => {
                login_throttle::Entity::delete_by_id(key.to_owned())
                    .exec(db)
                    .await?;
                Ok(())
            }
            Lockouts::Redis(redis) => {
                use fred::prelude::KeysInterface as _;
                redis
                    .redis
                    .pool
                    .del::<(), _>(redis.key(key))
                    .await
                    .map_err(unreachable)
            }
        }
    }

    /// Removes counters idle for [`IDLE_SECS`] whose lock (if any) is over; returns how many went.
    /// In Redis they expire by themselves.
    pub async fn purge<C: ConnectionTrait>(&self, db: &C, now: i64) -> Result<u64, DbErr> {
        match self {
            Lockouts::Database => Ok(login_throttle::Entity::delete_many()
                .filter(login_throttle::Column::UpdatedAt.lte(now - IDLE_SECS))
                .filter(
                    login_throttle::Column::LockedUntil
                        .is_null()
                        .or(login_throttle::Column::LockedUntil.lte(now)),
                )
                .exec(db)
                .await?
                .rows_affected),
            Lockouts::Redis(_) => Ok(0),
        }
    }
}

/// One statement, so parallel guesses cannot overwrite each other's counts.
async fn count_in_database<C: ConnectionTrait>(
    db: &C,
    key: &str,
    now: i64,
) -> Result<(i32, Option<i64>), DbErr> {
    let backend = db.get_database_backend();
    let sql = "INSERT INTO login_throttles (email_hash, failures, locked_until, updated_at) \
               VALUES ($1, 1, NULL, $2) \
               ON CONFLICT (email_hash) DO UPDATE SET \
               failures = CASE WHEN login_throttles.locked_until IS NOT NULL \
                 AND login_throttles.locked_until <= $2 THEN 1 ELSE login_throttles.failures + 1 END, \
               locked_until = CASE WHEN login_throttles.locked_until IS NOT NULL \
                 AND login_throttles.locked_until <= $2 THEN NULL ELSE login_throttles.locked_until END, \
               updated_at = $2 \
               RETURNING failures, locked_until";
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [key.into(), now.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("login_throttles".to_owned()))?;
    Ok((
        row.try_get("", "failures")?,
        row.try_get("", "locked_until")?,
    ))
}
