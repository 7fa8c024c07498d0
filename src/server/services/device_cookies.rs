//! Device cookies (OWASP's answer to lock-out as a denial of service): a browser that has signed in to
//! an account gets a cookie naming the account and a random nonce under a keyed MAC. Anyone can lock an
//! address by typing wrong passwords for it; a sign-in from a browser holding a valid device cookie for
//! the account is counted under the cookie's own key instead, so the owner still gets in on their own
//! devices while a stranger hammers the address. Its wrong guesses lock that cookie after the same
//! number of failures, so a stolen cookie buys no more guesses than the address has.
//!
//! The MAC also covers the account's `password_changed_at`: a password change or reset withdraws the
//! trust of every device cookie issued before it (the next sign-in issues a new one). Nothing is stored
//! on the server; the lock-out counters of a cookie's key expire like the address's.

use subtle::ConstantTimeEq as _;

use crate::server::entities::user;
use crate::server::services::crypto::{generate_token, hash_token};
use crate::server::state::AppState;

const PURPOSE_MAC: &str = "device-cookie";
const PURPOSE_THROTTLE: &str = "device-throttle";
/// How long a browser stays trusted without signing in again.
pub const MAX_AGE_DAYS: i64 = 180;

fn mac(state: &AppState, account: &user::Model, nonce: &str) -> String {
    hash_token(
        &state.settings.secret_key,
        PURPOSE_MAC,
        &format!("{}\n{}\n{nonce}", account.id, account.password_changed_at),
    )
}

/// A new cookie value for `account` (after a completed sign-in).
pub fn issue(state: &AppState, account: &user::Model) -> String {
    let nonce = generate_token();
    let mac = mac(state, account, &nonce);
    format!("{nonce}.{mac}")
}

/// The lock-out key a sign-in to `account` counts under: the device cookie's own when `cookie` is a
/// valid one for the account and its current password, else `address_key`.
pub fn throttle_key(
    state: &AppState,
    account: Option<&user::Model>,
    cookie: Option<&str>,
    address_key: String,
) -> String {
    let trusted = account.zip(cookie).and_then(|(account, cookie)| {
        let (nonce, given) = cookie.split_once('.')?;
        // A token from `generate_token` and a hex MAC: anything longer is not ours.
        if nonce.len() > 64 || given.len() != 64 {
            return None;
        }
        let expected = mac(state, account, nonce);
        bool::from(expected.as_bytes().ct_eq(given.as_bytes())).then(|| nonce.to_owned())
    });
    match trusted {
        Some(nonce) => hash_token(&state.settings.secret_key, PURPOSE_THROTTLE, &nonce),
        None => address_key,
    }
}
