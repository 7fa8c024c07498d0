//! Per-client request limits (GCRA via `governor`), in process memory. The embedded deployment is one
//! process, so in-memory counters are exact; the scaled-out deployment moves them to Redis.

use std::num::NonZeroU32;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::server::config::RateLimitSettings;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// Every other server function.
    Api,
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
            Limit::Api => "api",
        }
    }
}

pub struct RateLimiters {
    sign_in: DefaultKeyedRateLimiter<String>,
    register: DefaultKeyedRateLimiter<String>,
    reset: DefaultKeyedRateLimiter<String>,
    reset_account: DefaultKeyedRateLimiter<String>,
    verification: DefaultKeyedRateLimiter<String>,
    verification_account: DefaultKeyedRateLimiter<String>,
    email_change_account: DefaultKeyedRateLimiter<String>,
    strength: DefaultKeyedRateLimiter<String>,
    mfa: DefaultKeyedRateLimiter<String>,
    export_account: DefaultKeyedRateLimiter<String>,
    invite_account: DefaultKeyedRateLimiter<String>,
    api: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
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
    pub fn new(cfg: &RateLimitSettings) -> Self {
        RateLimiters {
            sign_in: RateLimiter::keyed(Quota::per_minute(nonzero(cfg.sign_in_per_minute))),
            register: RateLimiter::keyed(Quota::per_hour(nonzero(cfg.register_per_hour))),
            reset: RateLimiter::keyed(Quota::per_hour(nonzero(cfg.reset_per_hour))),
            reset_account: RateLimiter::keyed(Quota::per_hour(nonzero(
                cfg.reset_per_account_per_hour,
            ))),
            verification: RateLimiter::keyed(Quota::per_hour(nonzero(cfg.reset_per_hour))),
            verification_account: RateLimiter::keyed(Quota::per_minute(NonZeroU32::MIN)),
            email_change_account: RateLimiter::keyed(Quota::per_hour(nonzero(
                cfg.reset_per_account_per_hour,
            ))),
            // Typing in a password field calls it once per pause: generous, but bounded.
            strength: RateLimiter::keyed(Quota::per_minute(nonzero(60))),
            mfa: RateLimiter::keyed(Quota::per_minute(nonzero(cfg.mfa_per_minute))),
            export_account: RateLimiter::keyed(Quota::per_hour(nonzero(cfg.exports_per_hour))),
            invite_account: RateLimiter::keyed(Quota::per_hour(nonzero(cfg.invitations_per_hour))),
            api: RateLimiter::keyed(Quota::per_minute(nonzero(cfg.api_per_minute))),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(seconds)` to wait when `key` has used up `limit`.
    pub fn check(&self, limit: Limit, key: &str) -> Result<(), u64> {
        let limiter = match limit {
            Limit::SignIn => &self.sign_in,
            Limit::Register => &self.register,
            Limit::ResetRequest => &self.reset,
            Limit::ResetPerAccount => &self.reset_account,
            Limit::VerificationRequest => &self.verification,
            Limit::VerificationPerAccount => &self.verification_account,
            Limit::EmailChangePerAccount => &self.email_change_account,
            Limit::Strength => &self.strength,
            Limit::Mfa => &self.mfa,
            Limit::ExportPerAccount => &self.export_account,
            Limit::InvitePerAccount => &self.invite_account,
            Limit::Api => &self.api,
        };
        limiter.check_key(&key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            tracing::warn!(limiter = limit.name(), "rate limit reached");
            metrics::counter!("rate_limit_rejections_total", "limiter" => limit.name())
                .increment(1);
            wait.as_secs() + 1
        })
    }

    /// Forgets keys that have fully recovered, so memory stays bounded.
    pub fn shrink(&self) {
        for limiter in [
            &self.sign_in,
            &self.register,
            &self.reset,
            &self.reset_account,
            &self.verification,
            &self.verification_account,
            &self.email_change_account,
            &self.strength,
            &self.mfa,
            &self.export_account,
            &self.invite_account,
            &self.api,
        ] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_is_enforced_per_key_with_a_wait_time() {
        let limits = RateLimiters::new(&RateLimitSettings {
            sign_in_per_minute: 5,
            register_per_hour: 3,
            reset_per_hour: 3,
            reset_per_account_per_hour: 3,
            api_per_minute: 100,
            mfa_per_minute: 3,
            exports_per_hour: 3,
            invitations_per_hour: 10,
        });
        for _ in 0..5 {
            assert!(limits.check(Limit::SignIn, "203.0.113.7").is_ok());
        }
        let wait = limits.check(Limit::SignIn, "203.0.113.7").unwrap_err();
        assert!((1..=61).contains(&wait), "{wait}");
        assert!(
            limits.check(Limit::SignIn, "198.51.100.1").is_ok(),
            "other clients are unaffected"
        );
        for _ in 0..3 {
            assert!(limits.check(Limit::Register, "203.0.113.7").is_ok());
        }
        assert!(limits.check(Limit::Register, "203.0.113.7").unwrap_err() > 60);
    }
}
