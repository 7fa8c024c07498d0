//! Per-client request limits (GCRA): via `governor` in process memory for the embedded deployment (one
//! process, so exact), or in Redis for the scaled-out one (`REDIS_URL`), where every instance shares
//! the counters.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::server::config::RateLimitSettings;
use crate::server::redis::Redis;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    SignIn,
    Register,
    ResetRequest,
    ResetPerAccount,
    /// New confirmation links requested by address (sign-in page), per IP.
    VerificationRequest,
    /// Confirmation emails per account: one a minute (the banner's cooldown, race-free).
    VerificationPerAccount,
    /// Email-change links per account (each one mails an address the account names).
    EmailChangePerAccount,
    /// The live password-strength meter, per IP.
    Strength,
    /// Second-factor codes at sign-in, per IP.
    Mfa,
    /// Data exports, per account.
    ExportPerAccount,
    /// Household invitations sent, per account.
    InvitePerAccount,
    /// Emails that anyone can have sent to someone else's address (the "you already have an account"
    /// note of a sign-up, the link of a move to a new address), per address: many IPs or throwaway
    /// accounts must not flood one mailbox. Over the limit the email is not sent; the answer is the
    /// same.
    MailToAddress,
    /// Every other server function.
    Api,
    /// Page loads: each one reads the session and renders, most read the database.
    Pages,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::SignIn => "sign_in",
            Limit::Register => "register",
            Limit::ResetRequest => "reset_request",
            Limit::ResetPerAccount => "reset_per_account",
            Limit::VerificationRequest => "verification_request",
            Limit::VerificationPerAccount => "verification_per_account",
            Limit::EmailChangePerAccount => "email_change_per_account",
            Limit::Strength => "password_strength",
            Limit::Mfa => "mfa",
            Limit::ExportPerAccount => "export_per_account",
            Limit::InvitePerAccount => "invite_per_account",
            Limit::MailToAddress => "mail_to_address",
            Limit::Api => "api",
            Limit::Pages => "pages",
        }
    }
}

/// How many requests a key may make at once (`burst`), and how fast that allowance comes back (one
/// request per `period`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Allowance {
    burst: u32,
    period: Duration,
}

impl Allowance {
    fn per_minute(n: u32) -> Self {
        let burst = n.max(1);
        Allowance {
            burst,
            period: Duration::from_secs(60) / burst,
        }
    }

    fn per_hour(n: u32) -> Self {
        let burst = n.max(1);
        Allowance {
            burst,
            period: Duration::from_secs(3600) / burst,
        }
    }

    fn quota(self) -> Quota {
        Quota::with_period(self.period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(nonzero(self.burst))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("rate limit reached; retry in {retry_after_secs} s")]
    Exceeded { retry_after_secs: u64 },
    /// The shared counters (Redis) could not be asked. Never a free pass: the request fails (503).
    #[error("rate limit store unreachable: {0}")]
    Unavailable(String),
}

/// Every limit's allowance, from the settings.
#[derive(Clone, Debug)]
struct Allowances(RateLimitSettings);

impl Allowances {
    fn of(&self, limit: Limit) -> Allowance {
        let cfg = &self.0;
        match limit {
            Limit::SignIn => Allowance::per_minute(cfg.sign_in_per_minute),
            Limit::Register => Allowance::per_hour(cfg.register_per_hour),
            Limit::ResetRequest | Limit::VerificationRequest => {
                Allowance::per_hour(cfg.reset_per_hour)
            }
            Limit::ResetPerAccount | Limit::EmailChangePerAccount => {
                Allowance::per_hour(cfg.reset_per_account_per_hour)
            }
            Limit::VerificationPerAccount => Allowance::per_minute(1),
            // Typing in a password field calls it once per pause: generous, but bounded.
            Limit::Strength => Allowance::per_minute(60),
            Limit::Mfa => Allowance::per_minute(cfg.mfa_per_minute),
            Limit::ExportPerAccount => Allowance::per_hour(cfg.exports_per_hour),
            Limit::InvitePerAccount => Allowance::per_hour(cfg.invitations_per_hour),
            Limit::MailToAddress => Allowance::per_hour(cfg.reset_per_account_per_hour),
            Limit::Api => Allowance::per_minute(cfg.api_per_minute),
            Limit::Pages => Allowance::per_minute(cfg.pages_per_minute),
        }
    }
}

const ALL: [Limit; 14] = [
    Limit::SignIn,
    Limit::Register,
    Limit::ResetRequest,
    Limit::ResetPerAccount,
    Limit::VerificationRequest,
    Limit::VerificationPerAccount,
    Limit::EmailChangePerAccount,
    Limit::Strength,
    Limit::Mfa,
    Limit::ExportPerAccount,
    Limit::InvitePerAccount,
    Limit::MailToAddress,
    Limit::Api,
    Limit::Pages,
];

/// GCRA, the algorithm `governor` uses in process, as one atomic script: the key holds the
/// "theoretical arrival time" (µs) of the next request. Time is Redis's own clock, so every instance
/// counts against the same one. Microseconds, so even a million a minute has a non-zero period.
/// Returns 0 when allowed, else the microseconds to wait.
/// (No maintained Rust crate offers a Redis-backed limiter for fred; redis-cell is a server module we
/// cannot assume.)
const GCRA_LUA: &str = r#"
local period = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then
  return tat - now - tolerance
end
local next_tat = tat + period
redis.call('SET', KEYS[1], next_tat, 'PX', math.max(1, math.ceil((next_tat - now) / 1000)))
return 0
"#;

enum Backend {
    Local {
        limiters: HashMap<Limit, DefaultKeyedRateLimiter<String>>,
        clock: DefaultClock,
    },
    Redis {
        redis: Redis,
        script: fred::types::scripts::Script,
    },
}

pub struct RateLimiters {
    allowances: Allowances,
    backend: Backend,
}

impl std::fmt::Debug for RateLimiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimiters")
    }
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl RateLimiters {
    /// In process memory: exact for the one process of the embedded deployment.
    pub fn new(cfg: &RateLimitSettings) -> Self {
        let allowances = Allowances(*cfg);
        let limiters = ALL
            .iter()
            .map(|&limit| (limit, RateLimiter::keyed(allowances.of(limit).quota())))
            .collect();
        RateLimiters {
            allowances,
            backend: Backend::Local {
                limiters,
                clock: DefaultClock::default(),
            },
        }
    }

    /// In Redis: every instance counts against the same counters.
    pub fn redis(cfg: &RateLimitSettings, redis: Redis) -> Self {
        RateLimiters {
            allowances: Allowances(*cfg),
            backend: Backend::Redis {
                redis,
                script: fred::types::scripts::Script::from_lua(GCRA_LUA),
            },
        }
    }

    /// Counts a request of `key` against `limit`.
    pub async fn check(&self, limit: Limit, key: &str) -> Result<(), LimitError> {
        let wait = match &self.backend {
            Backend::Local { limiters, clock } => {
                let Some(limiter) = limiters.get(&limit) else {
                    return Ok(());
                };
                match limiter.check_key(&key.to_owned()) {
                    Ok(()) => return Ok(()),
                    Err(not_until) => not_until.wait_time_from(clock.now()),
                }
            }
            Backend::Redis { redis, script } => {
                let allowance = self.allowances.of(limit);
                let period = (allowance.period.as_micros() as i64).max(1);
                let tolerance = period * i64::from(allowance.burst.saturating_sub(1));
                let redis_key = redis.key(&format!("rl:{}:{key}", limit.name()));
                let wait_us: i64 = script
                    .evalsha_with_reload(redis.pool.next(), redis_key, vec![period, tolerance])
                    .await
                    .map_err(|e| LimitError::Unavailable(e.to_string()))?;
                if wait_us <= 0 {
                    return Ok(());
                }
                Duration::from_micros(wait_us as u64)
            }
        };
        tracing::warn!(limiter = limit.name(), "rate limit reached");
        metrics::counter!("rate_limit_rejections_total", "limiter" => limit.name()).increment(1);
        Err(LimitError::Exceeded {
            retry_after_secs: wait.as_secs() + 1,
        })
    }

    /// Forgets keys that have fully recovered, so memory stays bounded (Redis keys expire by
    /// themselves).
    pub fn shrink(&self) {
        if let Backend::Local { limiters, .. } = &self.backend {
            for limiter in limiters.values() {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_quota_is_enforced_per_key_with_a_wait_time() {
        let limits = RateLimiters::new(&RateLimitSettings {
            sign_in_per_minute: 5,
            register_per_hour: 3,
            reset_per_hour: 3,
            reset_per_account_per_hour: 3,
            api_per_minute: 100,
            pages_per_minute: 300,
            mfa_per_minute: 3,
            exports_per_hour: 3,
            invitations_per_hour: 10,
        });
        for _ in 0..5 {
            assert!(limits.check(Limit::SignIn, "203.0.113.7").await.is_ok());
        }
        let Err(LimitError::Exceeded { retry_after_secs }) =
            limits.check(Limit::SignIn, "203.0.113.7").await
        else {
            panic!("the sixth sign-in in a minute is refused");
        };
        assert!((1..=61).contains(&retry_after_secs), "{retry_after_secs}");
        assert!(
            limits.check(Limit::SignIn, "198.51.100.1").await.is_ok(),
            "other clients are unaffected"
        );
        for _ in 0..3 {
            assert!(limits.check(Limit::Register, "203.0.113.7").await.is_ok());
        }
        let Err(LimitError::Exceeded { retry_after_secs }) =
            limits.check(Limit::Register, "203.0.113.7").await
        else {
            panic!("the fourth registration in an hour is refused");
        };
        assert!(retry_after_secs > 60);
    }
}
