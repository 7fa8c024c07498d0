//! Device cookies (OWASP's answer to lock-out as a denial of service): a browser that has signed in to
//! an account gets a cookie naming the account, when it was issued and a random nonce, under a keyed
//! MAC. Anyone can lock an address by typing wrong passwords for it; a sign-in from a browser holding
//! a valid device cookie for the account is not refused for the address's lock, but counted under the
//! cookie's own key, so the owner still gets in on their own devices while a stranger hammers the
//! address. Its wrong guesses count toward the address as well, and lock the cookie after the same
//! number: a stolen cookie gives at most the guesses the address allows (a lock of the cookie's own
//! and then of the address), per cookie.
//!
//! The same holds for the password (and code) checks of a signed-in session before a sensitive change
//! (sudo mode, a new password or address, deleting the account, turning two-factor off): someone
//! keeping the address locked does not keep its owner from those either.
//!
//! The MAC also covers the account's `password_changed_at`: a password change or reset withdraws the
//! trust of every device cookie issued before it (the next sign-in issues a new one), but for the browser
//! that made a change, whose cookie is [`rebind`]ed to the new password: same nonce, so the same
//! lock-out key and its run of failures, which a new cookie would have wiped. It covers
//! `two_factor_enabled_at` too, for the same reason: turning two-factor on withdraws the trust of
//! cookies issued while the password alone signed in (but the turning browser's). Each is a
//! code-guessing allowance of its own, and whoever had the password then could have collected any
//! number of them. A cookie is
//! trusted for [`MAX_AGE_DAYS`] from its issue, whatever the browser keeps. Nothing but the lock-out
//! counters of a cookie's key (which expire like the address's) is stored on the server.

use std::fmt;

use subtle::ConstantTimeEq as _;

use crate::server::entities::user;
use crate::server::services::crypto::{generate_token, hash_token};
use crate::server::state::AppState;

const PURPOSE_MAC: &str = "device-cookie";
const PURPOSE_THROTTLE: &str = "device-throttle";
/// How long a browser stays trusted without signing in again.
pub const MAX_AGE_DAYS: i64 = 180;

fn mac(state: &AppState, account: &user::Model, issued_at: i64, nonce: &str) -> String {
    let mut signed = format!(
        "{}\n{}\n{issued_at}\n{nonce}",
        account.id, account.password_changed_at
    );
    // Only once two-factor has been turned on, so the cookies of accounts that never did stayed
    // valid when this was added.
    if let Some(at) = account.two_factor_enabled_at {
        signed.push_str(&format!("\ntwo-factor {at}"));
    }
    hash_token(&state.settings.secret_key, PURPOSE_MAC, &signed)
}

/// A device cookie as the browser sent it. A credential: its `Debug` does not show it.
#[derive(Clone)]
pub struct DeviceCookie(String);

impl DeviceCookie {
    /// The longest value [`issue`] makes is far shorter; anything longer is not ours.
    const MAX_LEN: usize = 256;

    pub fn new(value: &str) -> Option<Self> {
        (value.len() <= Self::MAX_LEN).then(|| DeviceCookie(value.to_owned()))
    }
}

impl fmt::Debug for DeviceCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceCookie(…)")
    }
}

/// A new cookie value for `account` (after a completed sign-in at `now`).
pub fn issue(state: &AppState, account: &user::Model, now: i64) -> String {
    let nonce = generate_token();
    let mac = mac(state, account, now, &nonce);
    format!("{now}.{nonce}.{mac}")
}

/// `cookie`'s issue time and nonce, when it is valid for `account` and its current password, and was
/// issued less than [`MAX_AGE_DAYS`] before `now`.
fn verified<'a>(
    state: &AppState,
    account: &user::Model,
    cookie: &'a DeviceCookie,
    now: i64,
) -> Option<(i64, &'a str)> {
    let (issued_at, rest) = cookie.0.split_once('.')?;
    let (nonce, given) = rest.split_once('.')?;
    // A token from `generate_token` and a hex MAC: anything longer is not ours.
    if nonce.len() > 64 || given.len() != 64 {
        return None;
    }
    let issued_at: i64 = issued_at.parse().ok()?;
    if now.saturating_sub(issued_at) >= MAX_AGE_DAYS * 24 * 3600 {
        return None;
    }
    let expected = mac(state, account, issued_at, nonce);
    bool::from(expected.as_bytes().ct_eq(given.as_bytes())).then_some((issued_at, nonce))
}

/// After `before` changed their password or turned two-factor on (`after`) in this browser: its
/// cookie, if valid, made valid for the account as it is now. The issue time and nonce stay, so its trust does not outlast the first
/// cookie's, and its lock-out key (with the failures counted there) is the same: a new cookie would
/// have started a clean run, letting whoever holds a session and the password guess codes again after
/// each change of password.
pub fn rebind(
    state: &AppState,
    before: &user::Model,
    after: &user::Model,
    cookie: Option<&DeviceCookie>,
    now: i64,
) -> Option<String> {
    let (issued_at, nonce) = verified(state, before, cookie?, now)?;
    let mac = mac(state, after, issued_at, nonce);
    Some(format!("{issued_at}.{nonce}.{mac}"))
}

/// The lock-out keys an attempt counts under (a sign-in, or a check in a signed-in session).
pub struct ThrottleKeys {
    /// Whose lock refuses the attempt, and whose run of failures a success ends: the device cookie's
    /// when it is trusted, else the address's.
    pub primary: String,
    /// With a trusted device cookie, the address's: its failures count there too (but its lock does
    /// not refuse them).
    pub also: Option<String>,
}

/// The keys for an attempt on `account` at `now`: the device cookie's own first when `cookie` is a
/// valid one for the account and its current password, issued less than [`MAX_AGE_DAYS`] ago.
pub fn throttle_keys(
    state: &AppState,
    account: Option<&user::Model>,
    cookie: Option<&DeviceCookie>,
    address_key: String,
    now: i64,
) -> ThrottleKeys {
    let trusted = account
        .zip(cookie)
        .and_then(|(account, cookie)| verified(state, account, cookie, now));
    match trusted {
        Some((_, nonce)) => ThrottleKeys {
            primary: hash_token(&state.settings.secret_key, PURPOSE_THROTTLE, nonce),
            also: Some(address_key),
        },
        None => ThrottleKeys {
            primary: address_key,
            also: None,
        },
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::DeviceCookie;

    #[test]
    fn a_device_cookie_does_not_show_in_debug_output() {
        let cookie = DeviceCookie::new("1795367100.nonce.mac").expect("short enough");
        assert_eq!(format!("{cookie:?}"), "DeviceCookie(…)");
        assert!(DeviceCookie::new(&"x".repeat(257)).is_none());
    }
}
