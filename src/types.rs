//! Wire types shared by the server and the browser. Never a database model.

use serde::{Deserialize, Serialize};

/// The colour theme a visitor chose. `System` follows the operating system's preference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    #[default]
    System,
    Light,
    Dark,
}

impl Theme {
    pub const COOKIE_NAME: &'static str = "theme";

    pub fn as_str(self) -> &'static str {
        match self {
            Theme::System => "system",
            Theme::Light => "light",
            Theme::Dark => "dark",
        }
    }

    pub fn parse(value: &str) -> Option<Theme> {
        match value {
            "system" => Some(Theme::System),
            "light" => Some(Theme::Light),
            "dark" => Some(Theme::Dark),
            _ => None,
        }
    }

    /// The theme the toggle switches to: system → dark → light → system.
    pub fn next(self) -> Theme {
        match self {
            Theme::System => Theme::Dark,
            Theme::Dark => Theme::Light,
            Theme::Light => Theme::System,
        }
    }

    /// What the toggle button says it will do.
    pub fn toggle_label(self) -> &'static str {
        match self.next() {
            Theme::System => "Use system theme",
            Theme::Dark => "Use dark theme",
            Theme::Light => "Use light theme",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theme_cycles_through_all_three_and_round_trips() {
        let mut seen = vec![];
        let mut theme = Theme::System;
        for _ in 0..3 {
            seen.push(theme);
            assert_eq!(Theme::parse(theme.as_str()), Some(theme));
            theme = theme.next();
        }
        assert_eq!(theme, Theme::System);
        assert_eq!(seen, vec![Theme::System, Theme::Dark, Theme::Light]);
        assert_eq!(Theme::parse("purple"), None);
    }
}

/// The signed-in person, as pages see them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub display_name: String,
    pub email: String,
    pub email_verified: bool,
    /// The deployment requires two-factor authentication and this person has not set it up: every
    /// page but the setup sends them there.
    pub mfa_setup_required: bool,
    /// The terms or privacy policy changed since they last accepted: every page but the one asking
    /// sends them there.
    pub consent_required: bool,
}

/// One entry of the consent ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentView {
    /// "Terms of service" or "Privacy policy".
    pub document: String,
    pub version: i32,
    pub accepted: String,
    pub ip: String,
}

/// The two-factor section of the security settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwoFactorView {
    /// When it was turned on (a readable UTC date), or `None` when it is off.
    pub enabled_on: Option<String>,
    pub backup_codes_remaining: u32,
    /// The password was entered too long ago for sensitive changes: ask for it first.
    pub reauth_needed: bool,
    /// `REQUIRE_MFA` applies to this account (it cannot be turned off).
    pub required: bool,
    /// A setup that is waiting for the first code (shown only while re-authenticated).
    pub setup: Option<TotpSetupView>,
    /// A move to a new phone waiting for the new app's first code (shown only while
    /// re-authenticated).
    pub replacement: Option<TotpSetupView>,
    /// Whether such a move waits, re-authenticated or not (the page says so before asking).
    pub replacement_waiting: bool,
}

/// What someone needs to add Nest Egg to their authenticator app.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpSetupView {
    pub otpauth_uri: String,
    /// The QR code of `otpauth_uri`, an inline SVG rendered by the server.
    pub qr_svg: String,
    /// The secret in base32, in groups of four for typing.
    pub manual_key: String,
}

impl std::fmt::Debug for TotpSetupView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSetupView(<hidden>)")
    }
}

/// Freshly generated backup codes: shown once, never stored in the clear.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupCodesView {
    pub codes: Vec<String>,
}

impl std::fmt::Debug for BackupCodesView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackupCodesView({} codes)", self.codes.len())
    }
}

/// Live password strength for the meter next to a password field (0 = very weak … 4 = strong), with
/// the policy's verdict so the meter and the server never disagree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordStrengthView {
    pub score: u8,
    /// `None` when the password would be accepted.
    pub problem: Option<String>,
}

/// One signed-in session in the sessions list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    /// Opaque handle for "sign out this session" (a hash of the session id, never the id).
    pub id: String,
    /// "Firefox on Linux".
    pub device: String,
    pub ip: String,
    pub started: String,
    pub last_active: String,
    /// The session this page is open in.
    pub current: bool,
}

/// One page of the security activity, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityPageView {
    pub entries: Vec<ActivityEntryView>,
    pub page: u64,
    /// An older page exists.
    pub has_older: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityEntryView {
    pub when: String,
    pub what: String,
    pub from: String,
}

/// Whether the data export can be downloaded now, or needs the password (and a code) again first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportStatusView {
    pub reauth_needed: bool,
    /// Re-authenticating takes a two-factor code too.
    pub with_code: bool,
}

/// The caller's household, as the household page shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HouseholdView {
    /// Which household the page shows: "leave" sends it back, to be refused if the person's
    /// household is another one by then.
    pub id: String,
    pub name: String,
    pub is_owner: bool,
    pub members: Vec<MemberView>,
    /// Waiting invitations; only owners see them.
    pub invitations: Vec<InvitationView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// Opaque handle for "remove" and "make owner".
    pub id: String,
    pub display_name: String,
    pub email: String,
    /// "owner" or "member".
    pub role: String,
    pub joined: String,
    pub is_you: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationView {
    pub id: String,
    pub email: String,
    pub sent: String,
    pub expires: String,
}

/// What an invitation link's page shows before it is accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinInvitationView {
    pub household: String,
    pub inviter: Option<String>,
    /// The address it was sent to (only whoever signs in with it can accept).
    pub email: String,
    pub expires: String,
    /// For a signed-in visitor: what joining does to the household they are in now.
    pub leaving: Option<String>,
    /// For a signed-in visitor: why they cannot accept (another address, last owner…), if so.
    pub blocked: Option<String>,
    /// For a signed-in visitor who can accept: names what `leaving` describes, sent back with the
    /// acceptance so that it is refused if their household changed meanwhile.
    pub shown_departure: Option<String>,
}

/// What the updated-terms page asks to accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutstandingConsentsView {
    /// "terms", "privacy": the documents whose version in force the person has not accepted.
    pub documents: Vec<String>,
    /// Those documents with their versions, sent back with the acceptance, which is refused if they
    /// are not what is outstanding then.
    pub shown: String,
}

/// The operators' security status page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityStatusView {
    pub checks: Vec<StatusCheckView>,
    pub jobs: Vec<JobStatusView>,
    /// Every kind of security event recorded, for the filter.
    pub event_kinds: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCheckView {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    pub fix: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatusView {
    pub name: String,
    /// "ok", "error", "timeout", or "never run".
    pub outcome: String,
    pub last_run: Option<String>,
    pub summary: Option<String>,
    pub next_run: String,
    pub failures: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminEventsView {
    pub entries: Vec<AdminEventView>,
    pub page: u64,
    pub has_more: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminEventView {
    pub when: String,
    pub kind: String,
    pub what: String,
    /// The account's email, or "—" (no account, or deleted).
    pub who: String,
    pub ip: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedEmailView {
    pub id: i64,
    pub to: String,
    pub kind: String,
    pub subject: String,
    pub attempts: i32,
    pub error: String,
    pub queued: String,
}
