//! Every email the accounts feature sends: subject, plain-text part and HTML part.
//!
//! Each template is first described as a short list of blocks (paragraphs, call-to-action links,
//! "if this wasn't you" guidance), and both parts are rendered from that one description, so the text
//! and HTML versions cannot drift apart. The HTML part never receives raw markup from a template:
//! every piece of text, constant or interpolated, goes through [`escape_html`].
//!
//! Subjects are constant per kind. The display name is chosen by whoever signs up, so it stays out of
//! the subject (the one place a mail client shows before the message is opened, and a header).

use std::fmt;

/// Longest display name we repeat back in an email. Names are chosen by whoever signs up, possibly
/// with someone else's address, so a long "name" must not become a paragraph of phishing text.
const MAX_NAME_CHARS: usize = 60;

/// Longest masked address we show. Ours are short; this only bounds a caller's mistake.
const MAX_HINT_CHARS: usize = 254;

/// How long each kind of link lasts. Shown to people, so it must match the token lifetimes the
/// accounts feature uses.
const VERIFY_LIFETIME: &str = "24 hours";
const RESET_LIFETIME: &str = "1 hour";
const EMAIL_CHANGE_LIFETIME: &str = "24 hours";
const RESTORE_LIFETIME: &str = "7 days";

/// One email the accounts feature can send, with what it needs to say.
///
/// `name` is the person's display name (user-chosen, untrusted); links are absolute URLs built by the
/// server and may carry one-time tokens, which is why `Debug` is written by hand.
#[derive(Clone, PartialEq, Eq)]
pub enum Template {
    /// Sent after sign-up, to prove the address belongs to the person.
    VerifyEmail { name: String, link: String },
    /// Sent instead of a verification email when someone signs up with an address that already has
    /// an account, so the sign-up form never reveals which addresses are registered.
    AlreadyRegistered {
        name: String,
        sign_in_link: String,
        reset_link: String,
    },
    /// Sent when repeated failed sign-ins pause an account. With `two_factor` on, a new password does
    /// not end the pause (it may hold wrong codes too, which a reset must not wipe).
    LockedOut {
        name: String,
        reset_link: String,
        two_factor: bool,
    },
    /// Sent on a password-reset request.
    PasswordReset { name: String, link: String },
    /// Sent after the password changed, so the owner notices a change they did not make.
    PasswordChanged { name: String },
    /// Sent to the new address when someone asks to change their account's email.
    EmailChangeVerify { name: String, link: String },
    /// Sent to the old address when a change of email is requested; `new_email_hint` is masked
    /// (e.g. "j•••@example.org") so this mail does not disclose the new address in full.
    EmailChangeNotice {
        name: String,
        new_email_hint: String,
    },
    /// Sent to the old address once a change of email is confirmed: `restore_link` puts the old address
    /// back and takes the account back from whoever changed it.
    EmailChanged {
        name: String,
        new_email_hint: String,
        restore_link: String,
    },
    /// Two-factor authentication was turned on.
    MfaEnabled { name: String, settings_link: String },
    /// Two-factor authentication was turned off.
    MfaDisabled { name: String, settings_link: String },
    /// Two-factor authentication moved to another authenticator (a new phone).
    MfaReplaced { name: String, settings_link: String },
    /// A backup code was used to sign in; `remaining` unused codes are left.
    BackupCodeUsed {
        name: String,
        remaining: u32,
        settings_link: String,
    },
    /// A new set of backup codes replaced the old one.
    BackupCodesRegenerated { name: String, settings_link: String },
    /// A sign-in was stopped after repeated wrong second-factor codes (the password was right).
    MfaFailures { name: String, reset_link: String },
    /// The receipt for a deleted account.
    AccountDeleted { name: String },
    /// Sent to the address replaced when an earlier one was put back by its link (`restored_hint`,
    /// masked): if the owner left that earlier address because someone else reads it, they learn.
    AddressPutBack { name: String, restored_hint: String },
    /// A sign-up with an address that was moved off an account lately, and can still be put back on
    /// it until `until` (its "put my address back" link): no account is created.
    AddressOnHold { name: String, until: String },
    /// A sign-in from a browser and address not seen before; `not_me_link` secures the account.
    NewSignIn {
        name: String,
        device: String,
        ip: String,
        when: String,
        not_me_link: String,
    },
    /// An invitation to join `household`; `name` is empty when the invitee has no account yet.
    HouseholdInvitation {
        name: String,
        inviter: String,
        household: String,
        link: String,
    },
    /// An owner removed them from `household`; they now have one of their own.
    HouseholdRemoved { name: String, household: String },
}

/// A rendered email, ready to be stored in the outbox or handed to a transport.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Written by hand: the bodies may hold one-time links, which must not reach a log through `{:?}`.
impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendered")
            .field("subject", &self.subject)
            .field("text_len", &self.text.len())
            .field("html_len", &self.html.len())
            .finish_non_exhaustive()
    }
}

/// Written by hand: the fields hold one-time links and personal data, which must not reach a log.
impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

impl Template {
    /// A stable snake_case name for this kind of email (stored in the outbox, used in logs and
    /// metrics). Never change an existing value: stored rows refer to it.
    pub fn kind(&self) -> &'static str {
        match self {
            Template::VerifyEmail { .. } => "verify_email",
            Template::AlreadyRegistered { .. } => "already_registered",
            Template::LockedOut { .. } => "locked_out",
            Template::PasswordReset { .. } => "password_reset",
            Template::PasswordChanged { .. } => "password_changed",
            Template::EmailChangeVerify { .. } => "email_change_verify",
            Template::EmailChangeNotice { .. } => "email_change_notice",
            Template::EmailChanged { .. } => "email_changed",
            Template::MfaEnabled { .. } => "mfa_enabled",
            Template::MfaDisabled { .. } => "mfa_disabled",
            Template::MfaReplaced { .. } => "mfa_replaced",
            Template::BackupCodeUsed { .. } => "backup_code_used",
            Template::BackupCodesRegenerated { .. } => "backup_codes_regenerated",
            Template::MfaFailures { .. } => "mfa_failures",
            Template::NewSignIn { .. } => "new_sign_in",
            Template::AccountDeleted { .. } => "account_deleted",
            Template::AddressOnHold { .. } => "address_on_hold",
            Template::AddressPutBack { .. } => "address_put_back",
            Template::HouseholdInvitation { .. } => "household_invitation",
            Template::HouseholdRemoved { .. } => "household_removed",
        }
    }

    /// Every link this email contains, in the order they appear.
    pub fn links(&self) -> Vec<&str> {
        match self {
            Template::VerifyEmail { link, .. }
            | Template::PasswordReset { link, .. }
            | Template::EmailChangeVerify { link, .. } => vec![link.as_str()],
            Template::AlreadyRegistered {
                sign_in_link,
                reset_link,
                ..
            } => vec![sign_in_link.as_str(), reset_link.as_str()],
            Template::LockedOut { reset_link, .. } | Template::MfaFailures { reset_link, .. } => {
                vec![reset_link.as_str()]
            }
            Template::NewSignIn { not_me_link, .. } => vec![not_me_link.as_str()],
            Template::EmailChanged { restore_link, .. } => vec![restore_link.as_str()],
            Template::AccountDeleted { .. }
            | Template::HouseholdRemoved { .. }
            | Template::AddressOnHold { .. }
            | Template::AddressPutBack { .. } => Vec::new(),
            Template::HouseholdInvitation { link, .. } => vec![link.as_str()],
            Template::MfaEnabled { settings_link, .. }
            | Template::MfaDisabled { settings_link, .. }
            | Template::MfaReplaced { settings_link, .. }
            | Template::BackupCodeUsed { settings_link, .. }
            | Template::BackupCodesRegenerated { settings_link, .. } => {
                vec![settings_link.as_str()]
            }
            Template::PasswordChanged { .. } | Template::EmailChangeNotice { .. } => Vec::new(),
        }
    }

    /// Renders the subject and both parts.
    pub fn render(&self) -> Rendered {
        let content = self.content();
        let name = one_line(self.name(), MAX_NAME_CHARS);
        Rendered {
            subject: content.subject.to_owned(),
            text: render_text(&content, &name),
            html: render_html(&content, &name),
        }
    }

    fn name(&self) -> &str {
        match self {
            Template::VerifyEmail { name, .. }
            | Template::AlreadyRegistered { name, .. }
            | Template::LockedOut { name, .. }
            | Template::PasswordReset { name, .. }
            | Template::PasswordChanged { name }
            | Template::EmailChangeVerify { name, .. }
            | Template::EmailChangeNotice { name, .. }
            | Template::EmailChanged { name, .. }
            | Template::MfaEnabled { name, .. }
            | Template::MfaDisabled { name, .. }
            | Template::MfaReplaced { name, .. }
            | Template::BackupCodeUsed { name, .. }
            | Template::BackupCodesRegenerated { name, .. }
            | Template::MfaFailures { name, .. }
            | Template::NewSignIn { name, .. }
            | Template::HouseholdInvitation { name, .. }
            | Template::HouseholdRemoved { name, .. }
            | Template::AccountDeleted { name }
            | Template::AddressOnHold { name, .. }
            | Template::AddressPutBack { name, .. } => name,
        }
    }

    /// What each email says. Wording: what happened, what to do, how long the link lasts, and what to
    /// do if it wasn't you. Only the masked address is interpolated here; the name goes in the greeting.
    fn content(&self) -> Content<'_> {
        match self {
            Template::VerifyEmail { link, .. } => Content {
                subject: "Confirm your email for Nest Egg",
                heading: "Confirm your email",
                blocks: vec![
                    Block::Para(
                        "Welcome to Nest Egg! Please confirm that this is your email address so we \
                         can finish setting up your account."
                            .to_owned(),
                    ),
                    Block::Action {
                        label: "Confirm my email",
                        link: link.as_str(),
                    },
                    Block::Para(format!(
                        "This link works for {VERIFY_LIFETIME}. If it expires, you can ask Nest Egg \
                         for a new one."
                    )),
                    Block::Note(
                        "If this wasn't you, you can safely ignore this email. Someone may have typed \
                         your address by mistake, and nothing happens unless the link is used."
                            .to_owned(),
                    ),
                ],
            },
            Template::AlreadyRegistered {
                sign_in_link,
                reset_link,
                ..
            } => Content {
                subject: "You already have a Nest Egg account",
                heading: "You already have an account",
                blocks: vec![
                    Block::Para(
                        "Someone just tried to create a Nest Egg account with this email address. \
                         There's already an account for it, so no new one was created. If that was \
                         you, you can simply sign in:"
                            .to_owned(),
                    ),
                    Block::Action {
                        label: "Sign in to Nest Egg",
                        link: sign_in_link.as_str(),
                    },
                    Block::Para(
                        "Forgotten your password? You can choose a new one here:".to_owned(),
                    ),
                    Block::Action {
                        label: "Reset my password",
                        link: reset_link.as_str(),
                    },
                    Block::Note(
                        "If this wasn't you, you can safely ignore this email. Your account hasn't \
                         been changed."
                            .to_owned(),
                    ),
                ],
            },
            Template::LockedOut {
                reset_link,
                two_factor,
                ..
            } => Content {
                subject: "Your Nest Egg account is temporarily locked",
                heading: "Sign-ins are paused for now",
                blocks: vec![
                    Block::Para(if *two_factor {
                        "There were several unsuccessful attempts to sign in to your Nest Egg \
                         account, so we've paused sign-ins for a little while to keep it safe. You \
                         can try again later. If you have forgotten your password, you can choose a \
                         new one now, but the pause still runs its course: your account has \
                         two-factor authentication, whose codes it also protects."
                            .to_owned()
                    } else {
                        "There were several unsuccessful attempts to sign in to your Nest Egg \
                         account, so we've paused sign-ins for a little while to keep it safe. You \
                         can try again later, or choose a new password now:"
                            .to_owned()
                    }),
                    Block::Action {
                        label: "Reset my password",
                        link: reset_link.as_str(),
                    },
                    Block::Note(
                        "If this wasn't you, someone may be trying to guess your password. The pause \
                         is there to slow them down; choosing a new password that you don't use \
                         anywhere else keeps your account safer still."
                            .to_owned(),
                    ),
                ],
            },
            Template::PasswordReset { link, .. } => Content {
                subject: "Reset your Nest Egg password",
                heading: "Reset your password",
                blocks: vec![
                    Block::Para(
                        "We received a request to reset the password for your Nest Egg account. You \
                         can choose a new one here:"
                            .to_owned(),
                    ),
                    Block::Action {
                        label: "Choose a new password",
                        link: link.as_str(),
                    },
                    Block::Para(format!(
                        "This link works for {RESET_LIFETIME}. After that, you can ask for a new one \
                         from the sign-in page."
                    )),
                    Block::Note(
                        "If this wasn't you, you can safely ignore this email. Your password stays \
                         the same unless someone opens the link and chooses a new one."
                            .to_owned(),
                    ),
                ],
            },
            Template::PasswordChanged { .. } => Content {
                subject: "Your Nest Egg password was changed",
                heading: "Your password was changed",
                blocks: vec![
                    Block::Para(
                        "The password for your Nest Egg account was just changed. If you did this, \
                         there's nothing else to do."
                            .to_owned(),
                    ),
                    Block::Note(
                        "If this wasn't you, reset your password right away with \"Forgot your \
                         password?\" on the Nest Egg sign-in page, then check that the email address \
                         on your account is still yours."
                            .to_owned(),
                    ),
                ],
            },
            Template::EmailChangeVerify { link, .. } => Content {
                subject: "Confirm your new email for Nest Egg",
                heading: "Confirm your new email",
                blocks: vec![
                    Block::Para(
                        "You asked to use this address for your Nest Egg account. Please confirm it \
                         so we know it's yours:"
                            .to_owned(),
                    ),
                    Block::Action {
                        label: "Confirm my new email",
                        link: link.as_str(),
                    },
                    Block::Para(format!(
                        "This link works for {EMAIL_CHANGE_LIFETIME}. Until you confirm, we'll keep \
                         using your current address."
                    )),
                    Block::Note(
                        "If this wasn't you, you can safely ignore this email. This address won't be \
                         added to any account unless the link is used."
                            .to_owned(),
                    ),
                ],
            },
            Template::EmailChangeNotice { new_email_hint, .. } => {
                let hint = one_line(new_email_hint, MAX_HINT_CHARS);
                Content {
                    subject: "Your Nest Egg email address is changing",
                    heading: "Your email address is changing",
                    blocks: vec![
                        Block::Para(format!(
                            "Someone asked to change the email address on your Nest Egg account to \
                             {hint}. The change happens once it's confirmed from the new address \
                             (the confirmation link lasts {EMAIL_CHANGE_LIFETIME})."
                        )),
                        Block::Para(
                            "If this was you, there's nothing else to do. Once it's confirmed, emails \
                             about your account will go to the new address."
                                .to_owned(),
                        ),
                        Block::Note(
                            "If this wasn't you, someone may know your password. Sign in and change \
                             your password right away."
                                .to_owned(),
                        ),
                    ],
                }
            }
            Template::EmailChanged {
                new_email_hint,
                restore_link,
                ..
            } => {
                let hint = one_line(new_email_hint, MAX_HINT_CHARS);
                Content {
                    subject: "Your Nest Egg email address was changed",
                    heading: "Your email address was changed",
                    blocks: vec![
                        Block::Para(format!(
                            "The email address of your Nest Egg account is now {hint}. Emails about \
                             your account go there from now on; this is the last one to this address."
                        )),
                        Block::Para("If this was you, there's nothing else to do.".to_owned()),
                        Block::Note(format!(
                            "If this wasn't you, someone has taken over your account. This link puts \
                             this address back, signs out every session, and emails you here a link to \
                             choose a new password. It works once, for {RESTORE_LIFETIME}."
                        )),
                        Block::Action {
                            label: "Put my address back",
                            link: restore_link.as_str(),
                        },
                    ],
                }
            }
            Template::MfaEnabled { settings_link, .. } => Content {
                subject: "Two-factor authentication is on for your Nest Egg account",
                heading: "Two-factor authentication is on",
                blocks: vec![
                    Block::Para(
                        "From now on, signing in to Nest Egg needs your password and a code from \
                         your authenticator app. Keep your backup codes somewhere safe: they let you \
                         in if you lose your phone."
                            .to_owned(),
                    ),
                    Block::Action {
                        label: "Review your security settings",
                        link: settings_link.as_str(),
                    },
                    Block::Note(
                        "If this wasn't you, someone has your password and may have added their own \
                         authenticator. Reset your password with \"Forgot your password?\" on the \
                         sign-in page right away."
                            .to_owned(),
                    ),
                ],
            },
            Template::MfaReplaced { settings_link, .. } => Content {
                subject: "Two-factor authentication for Nest Egg moved to a new authenticator",
                heading: "Two-factor authentication moved",
                blocks: vec![
                    Block::Para(
                        "Signing in to Nest Egg now needs a code from the authenticator app you just \
                         set up. Codes from the previous one no longer work; your backup codes still \
                         do."
                            .to_owned(),
                    ),
                    Block::Action {
                        label: "Review your security settings",
                        link: settings_link.as_str(),
                    },
                    Block::Note(
                        "If this wasn't you, someone has your password and is signed in to your \
                         account. Reset your password with \"Forgot your password?\" on the sign-in \
                         page, sign in with a backup code, and move two-factor authentication back to \
                         your own phone."
                            .to_owned(),
                    ),
                ],
            },
            Template::MfaDisabled { settings_link, .. } => Content {
                subject: "Two-factor authentication was turned off for your Nest Egg account",
                heading: "Two-factor authentication is off",
                blocks: vec![
                    Block::Para(
                        "Signing in to Nest Egg now needs only your password. Your old backup codes \
                         no longer work."
                            .to_owned(),
                    ),
                    Block::Action {
                        label: "Turn it back on",
                        link: settings_link.as_str(),
                    },
                    Block::Note(
                        "If this wasn't you, reset your password with \"Forgot your password?\" on \
                         the sign-in page right away, then turn two-factor authentication back on."
                            .to_owned(),
                    ),
                ],
            },
            Template::BackupCodeUsed {
                remaining,
                settings_link,
                ..
            } => Content {
                subject: "A backup code was used to sign in to Nest Egg",
                heading: "A backup code was used",
                blocks: vec![
                    Block::Para(format!(
                        "Someone signed in to your Nest Egg account with one of your backup codes. \
                         Each code works once; you have {remaining} left."
                    )),
                    Block::Para(if *remaining <= 3 {
                        "You are running low: create a new set in your security settings.".to_owned()
                    } else {
                        "You can create a new set at any time in your security settings.".to_owned()
                    }),
                    Block::Action {
                        label: "Manage backup codes",
                        link: settings_link.as_str(),
                    },
                    Block::Note(
                        "If this wasn't you, someone has your password and a backup code. Reset your \
                         password right away and create new backup codes."
                            .to_owned(),
                    ),
                ],
            },
            Template::BackupCodesRegenerated { settings_link, .. } => Content {
                subject: "New backup codes for your Nest Egg account",
                heading: "You have new backup codes",
                blocks: vec![
                    Block::Para(
                        "A new set of backup codes was created for your Nest Egg account. The old \
                         codes no longer work."
                            .to_owned(),
                    ),
                    Block::Action {
                        label: "Review your security settings",
                        link: settings_link.as_str(),
                    },
                    Block::Note(
                        "If this wasn't you, someone is signed in to your account. Reset your \
                         password right away."
                            .to_owned(),
                    ),
                ],
            },
            Template::NewSignIn {
                device,
                ip,
                when,
                not_me_link,
                ..
            } => Content {
                subject: "New sign-in to your Nest Egg account",
                heading: "New sign-in to your account",
                blocks: vec![
                    Block::Para(format!(
                        "Your Nest Egg account was just signed in to from {}, at {} ({}).",
                        one_line(device, MAX_HINT_CHARS),
                        one_line(ip, MAX_HINT_CHARS),
                        one_line(when, MAX_HINT_CHARS),
                    )),
                    Block::Para(
                        "If this was you, there's nothing to do. We send this the first time a \
                         browser signs in from a new address."
                            .to_owned(),
                    ),
                    Block::Note(
                        "If this wasn't you, use this link (it works once, for 24 hours): it signs \
                         out every session and stops your current password from working until you \
                         choose a new one."
                            .to_owned(),
                    ),
                    Block::Action {
                        label: "This wasn't me",
                        link: not_me_link.as_str(),
                    },
                ],
            },
            Template::AddressPutBack { restored_hint, .. } => {
                let hint = one_line(restored_hint, MAX_HINT_CHARS);
                Content {
                    subject: "Your Nest Egg email address was put back",
                    heading: "Your email address was put back",
                    blocks: vec![
                        Block::Para(format!(
                            "The email address of your Nest Egg account is {hint} again: someone used \
                             the link we sent there when it was changed to this address. Every session \
                             was signed out, and a link to choose a new password went to {hint}. This \
                             is the last email to this address."
                        )),
                        Block::Note(format!(
                            "If this wasn't you, and you moved away from {hint} because someone else \
                             can read its mail, that person may now have your account: contact the \
                             people who run this Nest Egg right away."
                        )),
                    ],
                }
            }
            Template::AddressOnHold { until, .. } => Content {
                subject: "Someone tried to create a Nest Egg account with this address",
                heading: "This address is on hold",
                blocks: vec![
                    Block::Para(
                        "Someone, perhaps you, tried to create a Nest Egg account with this email \
                         address. No account was created: until recently this was the address of \
                         another Nest Egg account, which then moved to a new one."
                            .to_owned(),
                    ),
                    Block::Para(format!(
                        "Until {}, it can only go back to that account. If the account was yours \
                         and you didn't move it, open the \u{201c}Put my address back\u{201d} link in \
                         the email we sent to this address when it was changed. After that date, \
                         you can create a new account with this address.",
                        one_line(until, MAX_NAME_CHARS)
                    )),
                    Block::Note(
                        "If this wasn't you, you can ignore this email.".to_owned(),
                    ),
                ],
            },
            Template::AccountDeleted { .. } => Content {
                subject: "Your Nest Egg account was deleted",
                heading: "Your account was deleted",
                blocks: vec![
                    Block::Para(
                        "As you asked, your Nest Egg account and your personal data were deleted, \
                         along with any household you were the only member of. Households you \
                         shared stay with their other members. This is the last email we send you."
                            .to_owned(),
                    ),
                    Block::Note(
                        "If this wasn't you, someone had your password (and your two-factor code, \
                         if it was on). The account cannot be restored, but you can create a new one \
                         with this address at any time."
                            .to_owned(),
                    ),
                ],
            },
            Template::HouseholdInvitation {
                inviter,
                household,
                link,
                ..
            } => Content {
                subject: "You're invited to a household on Nest Egg",
                heading: "Join a household on Nest Egg",
                blocks: vec![
                    Block::Para(format!(
                        "{} invited you to join “{}” on Nest Egg, where members of a household plan \
                         and track their finances together.",
                        one_line(inviter, MAX_NAME_CHARS),
                        one_line(household, MAX_NAME_CHARS),
                    )),
                    Block::Action {
                        label: "See the invitation",
                        link: link.as_str(),
                    },
                    Block::Para(
                        "The link works once, for 7 days. No account yet? Create one with this \
                         email address, confirm it, then open this link again."
                            .to_owned(),
                    ),
                    Block::Note(
                        "If this wasn't you they meant to invite, or you don't know them, you can \
                         ignore this email: nothing happens unless the invitation is accepted."
                            .to_owned(),
                    ),
                ],
            },
            Template::HouseholdRemoved { household, .. } => Content {
                subject: "You were removed from a household on Nest Egg",
                heading: "You were removed from a household",
                blocks: vec![
                    Block::Para(format!(
                        "An owner of “{}” removed you from it. Your account is unchanged, and you \
                         now have a household of your own.",
                        one_line(household, MAX_NAME_CHARS),
                    )),
                    Block::Note(
                        "If you think this was a mistake, ask an owner of the household to invite \
                         you again. If this wasn't you (you have never been in this household), you \
                         can ignore this email."
                            .to_owned(),
                    ),
                ],
            },
            Template::MfaFailures { reset_link, .. } => Content {
                subject: "Failed sign-in attempts on your Nest Egg account",
                heading: "Someone entered wrong codes",
                blocks: vec![
                    Block::Para(
                        "Someone entered your correct password but then several wrong two-factor \
                         codes, so we stopped them. They cannot get in without your authenticator app \
                         or one of your backup codes."
                            .to_owned(),
                    ),
                    Block::Note(
                        "If this wasn't you, your password is known to someone else. Choose a new \
                         one now:"
                            .to_owned(),
                    ),
                    Block::Action {
                        label: "Reset my password",
                        link: reset_link.as_str(),
                    },
                ],
            },
        }
    }
}

/// One email, described once and rendered twice (text and HTML).
struct Content<'a> {
    subject: &'static str,
    /// Shown as the HTML title line; the text part starts with the greeting instead.
    heading: &'static str,
    blocks: Vec<Block<'a>>,
}

enum Block<'a> {
    /// A paragraph of plain text (escaped for HTML).
    Para(String),
    /// A link shown as a button and as a copyable URL (HTML), or as a labelled URL (text).
    Action { label: &'static str, link: &'a str },
    /// The "if this wasn't you" guidance, set apart at the end.
    Note(String),
}

const SIGN_OFF: &str = "The Nest Egg team";
const FOOTER: &str = "You're receiving this email because of activity on a Nest Egg account that \
                      uses this address.";

fn greeting(name: &str) -> String {
    if name.is_empty() {
        "Hi there,".to_owned()
    } else {
        format!("Hi {name},")
    }
}

fn render_text(content: &Content<'_>, name: &str) -> String {
    let mut out = String::with_capacity(1024);
    out.push_str(&greeting(name));
    out.push_str("\n\n");
    for block in &content.blocks {
        match block {
            Block::Para(text) | Block::Note(text) => out.push_str(text),
            Block::Action { label, link } => {
                out.push_str(label);
                out.push_str(":\n");
                out.push_str(link);
            }
        }
        out.push_str("\n\n");
    }
    out.push_str(SIGN_OFF);
    out.push_str("\n\n--\n");
    out.push_str(FOOTER);
    out.push('\n');
    out
}

// Inline styles only: many mail clients drop <style> blocks and never load external CSS or images.
const BODY_STYLE: &str = "margin:0;padding:0;background-color:#f5f3ee;";
const WRAPPER_STYLE: &str = "max-width:560px;margin:0 auto;padding:32px 16px;\
     font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;\
     font-size:16px;line-height:1.5;color:#1f2933;";
const BRAND_STYLE: &str = "margin:0 0 16px;font-size:20px;font-weight:bold;color:#2f6b4f;";
const CARD_STYLE: &str = "background-color:#ffffff;border-radius:8px;padding:24px;";
const HEADING_STYLE: &str = "margin:0 0 16px;font-size:22px;line-height:1.3;color:#1f2933;";
const PARA_STYLE: &str = "margin:0 0 16px;";
const BUTTON_ROW_STYLE: &str = "margin:24px 0 8px;";
const BUTTON_STYLE: &str = "display:inline-block;padding:12px 20px;background-color:#2f6b4f;\
     color:#ffffff;text-decoration:none;border-radius:6px;font-weight:bold;";
const SMALL_STYLE: &str = "margin:0 0 24px;font-size:14px;color:#52606d;";
const URL_STYLE: &str = "color:#2f6b4f;word-break:break-all;";
const NOTE_STYLE: &str = "margin:24px 0 0;padding-top:16px;border-top:1px solid #e4e0d6;\
     font-size:14px;color:#52606d;";
const FOOTER_STYLE: &str = "margin:16px 0 0;font-size:12px;color:#7b8794;";

fn render_html(content: &Content<'_>, name: &str) -> String {
    let mut out = String::with_capacity(4096);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<title>");
    out.push_str(&escape_html(content.subject));
    out.push_str("</title>\n</head>\n");
    push_open(&mut out, "body", BODY_STYLE);
    out.push('\n');
    push_open(&mut out, "div", WRAPPER_STYLE);
    out.push('\n');
    push_element(&mut out, "p", BRAND_STYLE, "Nest Egg");
    push_open(&mut out, "div", CARD_STYLE);
    out.push('\n');
    push_element(&mut out, "h1", HEADING_STYLE, content.heading);
    push_element(&mut out, "p", PARA_STYLE, &greeting(name));
    for block in &content.blocks {
        match block {
            Block::Para(text) => push_element(&mut out, "p", PARA_STYLE, text),
            Block::Note(text) => push_element(&mut out, "p", NOTE_STYLE, text),
            Block::Action { label, link } => push_action(&mut out, label, link),
        }
    }
    push_element(&mut out, "p", PARA_STYLE, SIGN_OFF);
    out.push_str("</div>\n");
    push_element(&mut out, "p", FOOTER_STYLE, FOOTER);
    out.push_str("</div>\n</body>\n</html>\n");
    out
}

/// `<tag style="…">`. Styles are our own constants, escaped anyway so a quote in one can never end the
/// attribute early.
fn push_open(out: &mut String, tag: &str, style: &str) {
    out.push('<');
    out.push_str(tag);
    out.push_str(" style=\"");
    out.push_str(&escape_html(style));
    out.push_str("\">");
}

/// `<tag style="…">text</tag>` with the text escaped.
fn push_element(out: &mut String, tag: &str, style: &str, text: &str) {
    push_open(out, tag, style);
    out.push_str(&escape_html(text));
    out.push_str("</");
    out.push_str(tag);
    out.push_str(">\n");
}

/// The link as a button, and again as visible text for clients that block or mangle buttons.
fn push_action(out: &mut String, label: &str, link: &str) {
    push_open(out, "p", BUTTON_ROW_STYLE);
    push_link(out, link, BUTTON_STYLE, label);
    out.push_str("</p>\n");
    push_open(out, "p", SMALL_STYLE);
    out.push_str("If the button doesn&#39;t work, copy this link into your browser:<br>\n");
    push_link(out, link, URL_STYLE, link);
    out.push_str("</p>\n");
}

/// `<a href="…" style="…">text</a>` with every part escaped.
fn push_link(out: &mut String, href: &str, style: &str, text: &str) {
    out.push_str("<a href=\"");
    out.push_str(&escape_html(href));
    out.push_str("\" style=\"");
    out.push_str(&escape_html(style));
    out.push_str("\">");
    out.push_str(&escape_html(text));
    out.push_str("</a>");
}

/// Escapes text for use in HTML element content and in double- or single-quoted attribute values.
pub fn escape_html(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + input.len() / 8);
    for c in input.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Makes an untrusted value safe to repeat inside a sentence: one line (line breaks and other control
/// characters become spaces, so a name cannot start fake paragraphs in the text part), no bidi
/// overrides (which could visually reorder the sentence around it), trimmed and bounded in length.
fn one_line(value: &str, max_chars: usize) -> String {
    let cleaned: String = value
        .chars()
        .filter(|c| !is_reordering_control(*c))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let collapsed = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= max_chars {
        return collapsed;
    }
    let mut cut: String = collapsed.chars().take(max_chars).collect();
    cut.truncate(cut.trim_end().len());
    cut.push_str("...");
    cut
}

/// Bidirectional embeddings, overrides and isolates, zero-width space and byte-order mark.
fn is_reordering_control(c: char) -> bool {
    matches!(
        c,
        '\u{200B}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn all_with_name(name: &str) -> Vec<Template> {
        let name = name.to_owned();
        vec![
            Template::VerifyEmail {
                name: name.clone(),
                link: "https://nestegg.example/verify-email?token=abc&x=1".to_owned(),
            },
            Template::AlreadyRegistered {
                name: name.clone(),
                sign_in_link: "https://nestegg.example/sign-in".to_owned(),
                reset_link: "https://nestegg.example/forgot-password".to_owned(),
            },
            Template::LockedOut {
                name: name.clone(),
                reset_link: "https://nestegg.example/forgot-password".to_owned(),
                two_factor: false,
            },
            Template::PasswordReset {
                name: name.clone(),
                link: "https://nestegg.example/reset-password?token=def".to_owned(),
            },
            Template::PasswordChanged { name: name.clone() },
            Template::EmailChangeVerify {
                name: name.clone(),
                link: "https://nestegg.example/confirm-email?token=ghi".to_owned(),
            },
            Template::EmailChangeNotice {
                name: name.clone(),
                new_email_hint: "j\u{2022}\u{2022}\u{2022}@example.org".to_owned(),
            },
            Template::EmailChanged {
                name: name.clone(),
                new_email_hint: "j\u{2022}\u{2022}\u{2022}@example.org".to_owned(),
                restore_link: "https://nestegg.example/restore-email?token=abc".to_owned(),
            },
            Template::MfaEnabled {
                name: name.clone(),
                settings_link: "https://nestegg.example/settings/security/two-factor".to_owned(),
            },
            Template::MfaDisabled {
                name: name.clone(),
                settings_link: "https://nestegg.example/settings/security/two-factor".to_owned(),
            },
            Template::MfaReplaced {
                name: name.clone(),
                settings_link: "https://nestegg.example/settings/security/two-factor".to_owned(),
            },
            Template::BackupCodeUsed {
                name: name.clone(),
                remaining: 2,
                settings_link: "https://nestegg.example/settings/security/two-factor".to_owned(),
            },
            Template::BackupCodesRegenerated {
                name: name.clone(),
                settings_link: "https://nestegg.example/settings/security/two-factor".to_owned(),
            },
            Template::MfaFailures {
                name: name.clone(),
                reset_link: "https://nestegg.example/forgot-password".to_owned(),
            },
            Template::AccountDeleted { name: name.clone() },
            Template::AddressOnHold {
                name: name.clone(),
                until: "14 December 2026 at 12:00 UTC".to_owned(),
            },
            Template::AddressPutBack {
                name: name.clone(),
                restored_hint: "a\u{2022}\u{2022}\u{2022}@example.org".to_owned(),
            },
            Template::HouseholdInvitation {
                name: name.clone(),
                inviter: "Bea".to_owned(),
                household: "Bea's household".to_owned(),
                link: "https://nestegg.example/household/join?token=mno".to_owned(),
            },
            Template::HouseholdRemoved {
                name: name.clone(),
                household: "Bea's household".to_owned(),
            },
            Template::NewSignIn {
                name,
                device: "Firefox on Linux".to_owned(),
                ip: "203.0.113.7".to_owned(),
                when: "22 November 2026 at 17:05 UTC".to_owned(),
                not_me_link: "https://nestegg.example/not-me?token=jkl".to_owned(),
            },
        ]
    }

    #[test]
    fn escape_html_escapes_the_five_characters() {
        assert_eq!(
            escape_html(r#"<a href="x">Tom & Jerry's</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;"
        );
        assert_eq!(escape_html("plain text, é"), "plain text, é");
        assert_eq!(escape_html(""), "");
        // Escaping twice escapes the ampersands again: callers escape exactly once.
        assert_eq!(escape_html("&amp;"), "&amp;amp;");
    }

    #[test]
    fn every_template_renders_both_parts() {
        for template in all_with_name("Ann") {
            let rendered = template.render();
            let kind = template.kind();
            assert!(!rendered.subject.is_empty(), "{kind}");
            assert!(rendered.subject.contains("Nest Egg"), "{kind}");
            assert!(rendered.text.starts_with("Hi Ann,\n\n"), "{kind}");
            assert!(rendered.text.contains(SIGN_OFF), "{kind}");
            assert!(rendered.html.starts_with("<!DOCTYPE html>"), "{kind}");
            assert!(rendered.html.contains("Hi Ann,"), "{kind}");
            assert!(rendered.html.trim_end().ends_with("</html>"), "{kind}");
        }
    }

    #[test]
    fn every_template_contains_its_links_in_text_and_html() {
        for template in all_with_name("Ann") {
            let rendered = template.render();
            for link in template.links() {
                assert!(rendered.text.contains(link), "{} text", template.kind());
                let escaped = escape_html(link);
                assert!(
                    rendered.html.contains(&format!("href=\"{escaped}\"")),
                    "{} html button",
                    template.kind()
                );
                assert!(
                    rendered.html.contains(&format!(">{escaped}</a>")),
                    "{} html plain link",
                    template.kind()
                );
            }
        }
    }

    #[test]
    fn links_lists_every_link() {
        let counts: Vec<(&str, usize)> = all_with_name("Ann")
            .iter()
            .map(|t| (t.kind(), t.links().len()))
            .collect();
        assert_eq!(
            counts,
            vec![
                ("verify_email", 1),
                ("already_registered", 2),
                ("locked_out", 1),
                ("password_reset", 1),
                ("password_changed", 0),
                ("email_change_verify", 1),
                ("email_change_notice", 0),
                ("email_changed", 1),
                ("mfa_enabled", 1),
                ("mfa_disabled", 1),
                ("mfa_replaced", 1),
                ("backup_code_used", 1),
                ("backup_codes_regenerated", 1),
                ("mfa_failures", 1),
                ("account_deleted", 0),
                ("address_on_hold", 0),
                ("address_put_back", 0),
                ("household_invitation", 1),
                ("household_removed", 0),
                ("new_sign_in", 1),
            ]
        );
    }

    #[test]
    fn html_has_no_external_resources_or_tables() {
        for template in all_with_name("Ann") {
            let html = template.render().html;
            assert!(!html.contains("<table"), "{}", template.kind());
            assert!(!html.contains("<img"), "{}", template.kind());
            assert!(!html.contains("<link"), "{}", template.kind());
            assert!(!html.contains("<script"), "{}", template.kind());
        }
    }

    #[test]
    fn script_in_name_is_escaped() {
        for template in all_with_name("<script>alert('x')</script>") {
            let rendered = template.render();
            assert!(!rendered.html.contains("<script"), "{}", template.kind());
            assert!(
                rendered
                    .html
                    .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
                "{}",
                template.kind()
            );
        }
    }

    #[test]
    fn subjects_are_single_line_and_never_include_the_name() {
        for (a, b) in all_with_name("Ann")
            .iter()
            .zip(all_with_name("Mallory\r\nBcc: x@y"))
        {
            let (ra, rb) = (a.render(), b.render());
            assert!(!rb.subject.contains(['\r', '\n']), "{}", b.kind());
            assert!(!rb.subject.contains("Mallory"), "{}", b.kind());
            assert_eq!(ra.subject, rb.subject, "{}", b.kind());
            assert!(ra.subject.is_ascii(), "{}", a.kind());
        }
    }

    #[test]
    fn line_breaks_in_a_name_cannot_add_lines_to_the_text() {
        let rendered = Template::PasswordChanged {
            name: "Eve\r\n\r\nYour account is closed.\tVisit evil.example".to_owned(),
        }
        .render();
        let first_line = rendered.text.lines().next().unwrap();
        assert_eq!(
            first_line,
            "Hi Eve Your account is closed. Visit evil.example,"
        );
    }

    #[test]
    fn long_names_are_shortened_and_bidi_overrides_removed() {
        let rendered = Template::PasswordChanged {
            name: format!("\u{202E}{}", "a".repeat(500)),
        }
        .render();
        let first_line = rendered.text.lines().next().unwrap();
        assert_eq!(first_line, format!("Hi {}...,", "a".repeat(MAX_NAME_CHARS)));
    }

    #[test]
    fn blank_name_gets_a_generic_greeting() {
        let rendered = Template::PasswordChanged {
            name: " \n ".to_owned(),
        }
        .render();
        assert!(rendered.text.starts_with("Hi there,\n"));
        assert!(rendered.html.contains(">Hi there,</p>"));
    }

    /// With two-factor on, a reset does not end the pause: the email must not promise that it does.
    #[test]
    fn the_lock_out_email_promises_a_reset_ends_the_pause_only_without_two_factor() {
        let locked = |two_factor| {
            Template::LockedOut {
                name: "Ann".to_owned(),
                reset_link: "https://nestegg.example/forgot-password".to_owned(),
                two_factor,
            }
            .render()
            .text
        };
        let plain = locked(false);
        assert!(plain.contains("or choose a new password now"), "{plain}");
        let with_codes = locked(true);
        assert!(
            !with_codes.contains("or choose a new password now"),
            "{with_codes}"
        );
        assert!(
            with_codes.contains("the pause still runs its course"),
            "{with_codes}"
        );
        assert!(with_codes.contains("/forgot-password"), "{with_codes}");
    }

    #[test]
    fn kinds_are_unique_snake_case() {
        let kinds: Vec<&str> = all_with_name("Ann").iter().map(Template::kind).collect();
        let mut unique = kinds.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), kinds.len());
        for kind in kinds {
            assert!(
                kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{kind}"
            );
        }
    }

    #[test]
    fn link_lifetimes_are_stated() {
        let rendered: Vec<Rendered> = all_with_name("Ann").iter().map(Template::render).collect();
        assert!(rendered[0].text.contains("24 hours"), "verify_email");
        assert!(rendered[3].text.contains("1 hour."), "password_reset");
        assert!(rendered[5].text.contains("24 hours"), "email_change_verify");
    }

    #[test]
    fn every_template_says_what_to_do_if_it_was_not_you() {
        for template in all_with_name("Ann") {
            let rendered = template.render();
            assert!(
                rendered.text.contains("If this wasn't you"),
                "{}",
                template.kind()
            );
            assert!(
                rendered.html.contains("If this wasn&#39;t you"),
                "{}",
                template.kind()
            );
        }
    }

    #[test]
    fn email_hint_is_shown_and_escaped() {
        let rendered = Template::EmailChangeNotice {
            name: "Ann".to_owned(),
            new_email_hint: "j\u{2022}\u{2022}\u{2022}@example.org<b>".to_owned(),
        }
        .render();
        assert!(
            rendered
                .text
                .contains("j\u{2022}\u{2022}\u{2022}@example.org<b>.")
        );
        assert!(
            rendered
                .html
                .contains("j\u{2022}\u{2022}\u{2022}@example.org&lt;b&gt;.")
        );
    }

    #[test]
    fn debug_output_hides_links() {
        let template = Template::PasswordReset {
            name: "Ann".to_owned(),
            link: "https://nestegg.example/reset-password?token=secret".to_owned(),
        };
        let rendered = template.render();
        assert!(!format!("{template:?}").contains("secret"));
        assert!(!format!("{rendered:?}").contains("secret"));
        assert!(format!("{template:?}").contains("password_reset"));
    }
}
