//! Every path the app serves or links to, in one place.

pub const HOME: &str = "/";
pub const SECURITY: &str = "/security";
pub const TERMS: &str = "/terms";
pub const PRIVACY: &str = "/privacy";

pub const REGISTER: &str = "/register";
/// "Check your inbox": shown after every registration attempt, new address or not.
pub const REGISTER_DONE: &str = "/register/check-inbox";
pub const LOGIN: &str = "/login";
pub const LOGIN_AFTER_RESET: &str = "/login?reset=done";
pub const VERIFY_EMAIL: &str = "/verify-email";
pub const FORGOT_PASSWORD: &str = "/forgot-password";
pub const RESET_PASSWORD: &str = "/reset-password";
pub const CONFIRM_EMAIL_CHANGE: &str = "/confirm-email-change";
/// "This wasn't me", from the new-sign-in email.
pub const NOT_ME: &str = "/not-me";
/// "Put my address back", from the email to the old address after a change of address.
pub const RESTORE_EMAIL: &str = "/restore-email";
pub const SETTINGS_PROFILE: &str = "/settings/profile";
pub const SETTINGS_SECURITY: &str = "/settings/security";
pub const SETTINGS_TWO_FACTOR: &str = "/settings/security/two-factor";
pub const SETTINGS_SESSIONS: &str = "/settings/sessions";
pub const SETTINGS_ACTIVITY: &str = "/settings/activity";
pub const SETTINGS_ACCOUNT: &str = "/settings/account";
pub const SETTINGS_PRIVACY: &str = "/settings/privacy";
/// Asks for acceptance of updated terms or privacy policy after sign-in.
pub const ACCEPT_TERMS: &str = "/accept-terms";
/// Where a deleted account's browser lands.
pub const ACCOUNT_DELETED: &str = "/goodbye";
/// The person's household: members, invitations, ownership.
pub const HOUSEHOLD: &str = "/household";
/// Where a household invitation's link leads.
pub const HOUSEHOLD_JOIN: &str = "/household/join";
/// Downloads the person's data as a ZIP (a form posts here; not a server function, since the answer is
/// a file streamed as it is written).
pub const DATA_EXPORT: &str = "/settings/privacy/export";
/// Operators only (404 for everyone else): every security check, jobs, failed emails, events.
pub const ADMIN_SECURITY_STATUS: &str = "/admin/security-status";
/// The second step of signing in, for accounts with two-factor authentication.
pub const LOGIN_TWO_FACTOR: &str = "/login/two-factor";

/// Probes under this prefix stay reachable by IP and over plain HTTP, for load balancers.
pub const HEALTH_LIVE: &str = "/health/live";
pub const HEALTH_READY: &str = "/health/ready";

/// Prefix of every server function; also the JSON API surface that CSRF and CORS rules apply to.
pub const API_PREFIX: &str = "/api";
/// `set_theme` server function (kept stable so plain HTML forms and tests can post to it).
pub const API_SET_THEME: &str = "/api/theme";

/// Where to go after signing in: `next` when it is a path on this site, otherwise home. Absolute
/// URLs, scheme-relative `//host`, `/\\host` (browsers treat `\\` as `/`), `javascript:` and control
/// characters are all refused, so a crafted link cannot send someone elsewhere.
pub fn safe_next(next: Option<&str>) -> String {
    let Some(next) = next.map(str::trim) else {
        return HOME.to_owned();
    };
    let safe = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control())
        && next.len() <= 512;
    if safe {
        next.to_owned()
    } else {
        HOME.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_same_site_paths_are_followed() {
        assert_eq!(safe_next(Some("/settings/security")), "/settings/security");
        assert_eq!(safe_next(Some("/a?b=c#d")), "/a?b=c#d");
        for evil in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "/\\/evil.example",
            "javascript:alert(1)",
            "evil.example",
            "/ok\nLocation: x",
            "",
        ] {
            assert_eq!(safe_next(Some(evil)), "/", "{evil:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn random_inputs_never_escape_the_site() {
        // A small deterministic generator: no extra crates for property tests.
        let alphabet: Vec<char> = "/\\:.abc?#%@ \t\njs".chars().collect();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..5000 {
            let mut s = String::new();
            for _ in 0..(seed % 12) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                s.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let out = safe_next(Some(&s));
            assert!(
                out.starts_with('/') && !out.starts_with("//") && !out.contains('\\'),
                "{s:?} → {out:?}"
            );
        }
    }
}
