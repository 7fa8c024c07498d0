//! A person's security activity: their own audit events, newest first, in plain words.

use sea_orm::{
    ColumnTrait as _, DbErr, EntityTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _,
};

use crate::server::entities::security_event;
use crate::server::services::sessions::describe_agent;
use crate::server::state::AppState;

pub const PER_PAGE: u64 = 20;

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub at: i64,
    /// "Signed in with a code from the authenticator app".
    pub what: String,
    /// "Firefox on Linux, 203.0.113.7".
    pub from: String,
}

/// Page `page` (from 1) of `user_id`'s events, and whether an older page exists.
pub async fn page(state: &AppState, user_id: &str, page: u64) -> Result<(Vec<Entry>, bool), DbErr> {
    let page = page.max(1);
    let mut rows = security_event::Entity::find()
        .filter(security_event::Column::UserId.eq(user_id))
        .order_by_desc(security_event::Column::CreatedAt)
        .order_by_desc(security_event::Column::Id)
        .offset((page - 1) * PER_PAGE)
        .limit(PER_PAGE + 1)
        .all(&state.db)
        .await?;
    let more = rows.len() as u64 > PER_PAGE;
    rows.truncate(PER_PAGE as usize);
    Ok((
        rows.into_iter()
            .map(|row| {
                let details: serde_json::Value =
                    serde_json::from_str(&row.details).unwrap_or_default();
                let device = describe_agent(row.user_agent.as_deref().unwrap_or_default());
                let from = match row.ip.as_deref().filter(|ip| !ip.is_empty()) {
                    Some(ip) => format!("{device}, {ip}"),
                    None => device,
                };
                Entry {
                    at: row.created_at,
                    what: describe(&row.kind, &details),
                    from,
                }
            })
            .collect(),
        more,
    ))
}

/// What an event means for the account's owner. Unknown kinds (from a newer version, say) still read
/// sensibly.
pub fn describe(kind: &str, details: &serde_json::Value) -> String {
    let text = |key: &str| {
        details
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    };
    let number = |key: &str| details.get(key).and_then(serde_json::Value::as_u64);
    match kind {
        "register" => "Created the account".to_owned(),
        "register_existing_email" => "Someone tried to sign up again with this address".to_owned(),
        "verification_resent" => "Asked for a new confirmation link".to_owned(),
        "email_verified" => "Confirmed the email address".to_owned(),
        "sign_in" => match text("method") {
            "totp" => "Signed in with a code from the authenticator app".to_owned(),
            "backup_code" => "Signed in with a backup code".to_owned(),
            _ => "Signed in".to_owned(),
        },
        "sign_in_password_ok" => {
            "Entered the right password; the two-factor code was next".to_owned()
        }
        "sign_in_failed" => "A sign-in failed: wrong password".to_owned(),
        "sign_in_refused_locked" => "A sign-in was refused while the account was locked".to_owned(),
        "locked_out" => "The account was locked after repeated failed attempts".to_owned(),
        "attempt_refused_past_threshold" => {
            "A two-factor code was refused: too many attempts at once".to_owned()
        }
        "password_check_failed" => "A wrong password was entered in the settings".to_owned(),
        "sign_out" => "Signed out".to_owned(),
        "password_reset_requested" => "Asked for a password reset link".to_owned(),
        "password_reset_completed" => {
            "Reset the password (every session was signed out)".to_owned()
        }
        "password_changed" => "Changed the password".to_owned(),
        "email_change_requested" => "Asked to change the email address".to_owned(),
        "email_changed" => "Changed the email address".to_owned(),
        "email_restore_used" => {
            "Used the link sent to an earlier email address (every session was signed out)"
                .to_owned()
        }
        "email_restored" => {
            "Put back an earlier email address with the link sent to it (every session was signed \
             out)"
                .to_owned()
        }
        "mfa_setup_started" => "Started setting up two-factor authentication".to_owned(),
        "mfa_enabled" => "Turned on two-factor authentication".to_owned(),
        "mfa_disabled" => "Turned off two-factor authentication".to_owned(),
        "mfa_replacement_started" => {
            "Started moving two-factor authentication to a new phone".to_owned()
        }
        "mfa_replaced" => "Moved two-factor authentication to a new phone".to_owned(),
        "mfa_replacement_cancelled" => {
            "Gave up moving two-factor authentication to a new phone".to_owned()
        }
        "mfa_backup_codes_regenerated" => "Created new backup codes".to_owned(),
        "mfa_backup_code_used" => match number("remaining") {
            Some(1) => "Used a backup code (1 left)".to_owned(),
            Some(n) => format!("Used a backup code ({n} left)"),
            None => "Used a backup code".to_owned(),
        },
        "mfa_sign_in_failed" => "A sign-in failed: wrong two-factor code".to_owned(),
        "mfa_sign_in_abandoned" => {
            "A sign-in was stopped after repeated wrong two-factor codes".to_owned()
        }
        "mfa_disable_failed" | "mfa_reauth_failed" => {
            "A wrong two-factor code was entered in the settings".to_owned()
        }
        "session_revoked" => "Signed out another session".to_owned(),
        "sessions_revoked" => match number("count") {
            Some(1) => "Signed out 1 other session".to_owned(),
            Some(n) => format!("Signed out {n} other sessions"),
            None => "Signed out the other sessions".to_owned(),
        },
        "new_device_sign_in" => match text("device") {
            "" => "Signed in from a new browser or place (we emailed you)".to_owned(),
            device => format!("Signed in from a new browser or place: {device} (we emailed you)"),
        },
        "sign_in_reported" => {
            "Reported a sign-in as not yours: every session was signed out".to_owned()
        }
        "consent_accepted" => "Accepted the updated terms".to_owned(),
        "display_name_changed" => "Changed the display name".to_owned(),
        "data_exported" => "Downloaded a copy of your data".to_owned(),
        "sessions_revoked_by_operator" => "An administrator signed out every session".to_owned(),
        "mfa_removed_by_operator" => {
            "An administrator turned off two-factor authentication and signed out every session"
                .to_owned()
        }
        "password_reset_forced" => {
            "An administrator required a new password and signed out every session".to_owned()
        }
        "household_invitation_sent" => match text("invitee") {
            "" => "Invited someone to the household".to_owned(),
            email => format!("Invited {email} to the household"),
        },
        "household_invitation_revoked" => match text("invitee") {
            "" => "Withdrew an invitation to the household".to_owned(),
            email => format!("Withdrew the invitation for {email}"),
        },
        "household_joined" => match text("household") {
            "" => "Joined a household".to_owned(),
            name => format!("Joined “{name}”"),
        },
        "household_left" => match text("household") {
            "" => "Left a household".to_owned(),
            name => format!("Left “{name}”"),
        },
        "household_removed" => match text("household") {
            "" => "Was removed from a household".to_owned(),
            name => format!("Was removed from “{name}” by an owner"),
        },
        "household_member_joined" => match text("member") {
            "" => "Someone joined the household".to_owned(),
            name => format!("{name} joined the household"),
        },
        "household_member_left" => match text("member") {
            "" => "Someone left the household".to_owned(),
            name => format!("{name} left the household"),
        },
        "household_member_removed" => match text("member") {
            "" => "Removed a member from the household".to_owned(),
            name => format!("Removed {name} from the household"),
        },
        "household_ownership_transferred" => match text("to") {
            "" => "Handed on ownership of the household".to_owned(),
            name => format!("Made {name} the owner of the household"),
        },
        "household_ownership_received" => match text("from") {
            "" => "Became an owner of the household".to_owned(),
            name => format!("Became the owner of the household (from {name})"),
        },
        "household_renamed" => match text("name") {
            "" => "Renamed the household".to_owned(),
            name => format!("Renamed the household to “{name}”"),
        },
        other => other.replace('_', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::describe;
    use serde_json::json;

    #[test]
    fn events_read_as_plain_sentences() {
        assert_eq!(
            describe("sign_in", &json!({"method": "totp"})),
            "Signed in with a code from the authenticator app"
        );
        assert_eq!(describe("sign_in", &json!({})), "Signed in");
        assert_eq!(
            describe("mfa_backup_code_used", &json!({"remaining": 4})),
            "Used a backup code (4 left)"
        );
        assert_eq!(
            describe("sessions_revoked", &json!({"count": 2})),
            "Signed out 2 other sessions"
        );
        assert_eq!(
            describe("household_joined", &json!({"household": "The Smiths"})),
            "Joined “The Smiths”"
        );
        assert_eq!(
            describe("data_exported", &json!({})),
            "Downloaded a copy of your data"
        );
        assert_eq!(describe("something_new", &json!({})), "something new");
    }
}
