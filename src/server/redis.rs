//! The Redis connection of the scaled-out mode (`REDIS_URL`): one fred client pool shared by the
//! session store, the rate limiters and the lock-out counters.
//!
//! Redis failing must be quick and loud, never silent: a command gets at most [`COMMAND_TIMEOUT`]
//! (the request then answers 503), while the pool reconnects in the background for as long as it
//! takes, so the app recovers by itself when Redis is back.

use std::time::Duration;

use fred::prelude::{ClientLike as _, Config, Pool, ReconnectPolicy};
use fred::types::Builder;

use crate::server::config::RedisSettings;

/// How long one command may take, queueing while disconnected included.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(1000);
/// How often [`Redis::spawn_watchdog`] pings each connection.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// Connections per instance: commands are pipelined, so a few carry a lot.
const POOL_SIZE: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("REDIS_URL is not usable: {0}")]
    Config(String),
    #[error("cannot reach Redis: {0}")]
    Connect(String),
}

/// A Redis failure as the services see it: the store is unreachable (503), as a lost database would
/// be. `what` names the store in the log.
pub fn unreachable(what: &str, err: impl std::fmt::Display) -> sea_orm::DbErr {
    sea_orm::DbErr::Conn(sea_orm::RuntimeErr::Internal(format!(
        "{what} (Redis): {err}"
    )))
}

/// The pool and the key prefix every Nest Egg key starts with.
#[derive(Clone, Debug)]
pub struct Redis {
    pub pool: Pool,
    pub prefix: String,
}

impl Redis {
    /// Connects (failing at start-up if Redis cannot be reached in time: a misconfigured URL should
    /// stop the deployment, not surface as 503s) and keeps reconnecting after any later loss.
    pub async fn connect(settings: &RedisSettings) -> Result<Redis, RedisError> {
        let config = Config::from_url(settings.url.expose())
            .map_err(|_| RedisError::Config(settings.url.redacted()))?;
        let pool = Builder::from_config(config)
            .with_performance_config(|perf| perf.default_command_timeout = COMMAND_TIMEOUT)
            .with_connection_config(|conn| {
                conn.connection_timeout = COMMAND_TIMEOUT;
                conn.internal_command_timeout = COMMAND_TIMEOUT;
                // Never resent: a script that ran before the connection dropped (a rate-limit or
                // lock-out count) would count twice. The request answers 503 instead.
                conn.max_command_attempts = 1;
            })
            // Forever, backing off from 100 ms to 2 s: Redis coming back is noticed within 2 s.
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
            .build_pool(POOL_SIZE)
            .map_err(|e| RedisError::Config(e.to_string()))?;
        pool.init()
            .await
            .map_err(|e| RedisError::Connect(e.to_string()))?;
        Ok(Redis {
            pool,
            prefix: settings.key_prefix.clone(),
        })
    }

    /// Replaces connections that stop answering without closing: Redis failed over to a new address,
    /// or a NAT or firewall forgot the flow. fred notices a closed socket, but not a silent one: its
    /// commands time out (503s) while the socket lingers until the kernel gives up on it, about 15
    /// minutes. (fred's own "unresponsive" check counts from the latest write, so a connection in
    /// steady use is never found out.) Every [`WATCH_EVERY`], each connection that fred believes
    /// healthy is pinged; one that twice in a row does not answer within the command timeout is
    /// reconnected. An error answer (Redis loading its data after a restart, a script running long)
    /// shows the connection alive and counts for nothing, and connections already reconnecting
    /// (Redis down) are left to fred. Runs until aborted.
    pub fn spawn_watchdog(&self) -> tokio::task::JoinHandle<()> {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(WATCH_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut silent = vec![0u32; pool.clients().len()];
            loop {
                every.tick().await;
                for (client, silent) in pool.clients().iter().zip(silent.iter_mut()) {
                    let timed_out = client.is_connected()
                        && client
                            .ping::<String>(None)
                            .await
                            .is_err_and(|err| *err.kind() == fred::error::ErrorKind::Timeout);
                    *silent = if timed_out { *silent + 1 } else { 0 };
                    if *silent >= 2 && client.is_connected() {
                        *silent = 0;
                        tracing::warn!("a Redis connection stopped answering; reconnecting it");
                        // Bounded: with Redis unreachable the reconnection itself waits for it.
                        let _ = tokio::time::timeout(COMMAND_TIMEOUT, client.force_reconnection())
                            .await;
                    }
                }
            }
        })
    }

    /// `prefix:part`: every key Nest Egg names itself.
    pub fn key(&self, part: &str) -> String {
        format!("{}:{part}", self.prefix)
    }

    /// Whether Redis answers a PING within the command timeout.
    pub async fn ping(&self) -> bool {
        match self.pool.next().ping::<String>(None).await {
            Ok(_) => true,
            Err(err) => {
                tracing::warn!(error = %err, "Redis ping failed");
                false
            }
        }
    }
}
