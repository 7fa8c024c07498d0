//! The data export (GDPR article 20): everything Nest Egg holds about a person, as a ZIP with one JSON
//! file per kind of data and a README.txt describing each.
//!
//! The archive is written while it downloads. `zip` writes synchronously, so it runs on a blocking
//! thread that reads the database page by page (through the runtime's handle) and hands the bytes to
//! the response through a small bounded channel: memory stays flat however long the history is, and
//! a client that stops reading stops the writing.
//!
//! Never in it: the password hash, the two-factor secret, backup codes, tokens, session ids, and the
//! bodies of emails (they hold one-time links). Features that add household records add a [`SECTIONS`]
//! entry and a writer for it.

use std::io::Write;

use axum::body::Bytes;
use sea_orm::{
    ColumnTrait as _, Condition, DbErr, EntityTrait as _, QueryFilter as _, QueryOrder as _,
    QuerySelect as _,
};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;
use zip::write::SimpleFileOptions;

use crate::server::entities::{
    consent, household, household_invitation, operator, outbox_email, security_event, user,
};
use crate::server::services::{activity, audit, households, mfa, operators, outbox, sessions};
use crate::server::state::AppState;

/// Rows read per query for the files that can grow long.
const PAGE: u64 = 500;
/// Bytes gathered before they are handed to the response.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight between the writer and the response.
const CHANNEL_DEPTH: usize = 4;
/// Exports written at once. Each holds a thread of the blocking pool (which password hashing also
/// uses) for as long as its download lasts; more are turned away until a slot frees.
pub const MAX_CONCURRENT: usize = 4;
/// A download that takes no data for this long is abandoned, freeing its slot.
const STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// A file of the archive, and what README.txt says about it.
pub struct Section {
    pub file: &'static str,
    pub description: &'static str,
}

pub const SECTIONS: &[Section] = &[
    Section {
        file: "profile.json",
        description: "Your account: email address, display name, when you joined, confirmed your \
                      address and last changed your password, whether two-factor \
                      authentication is on (not its secret, nor your backup codes), and whether you \
                      operate this deployment.",
    },
    Section {
        file: "household.json",
        description: "Your household: its name, your role, its members with their roles, the \
                      invitations you sent, and the invitations sent to your address.",
    },
    Section {
        file: "consents.json",
        description: "Each version of the terms of service and privacy policy you accepted, when, \
                      and from which address and browser.",
    },
    Section {
        file: "sessions.json",
        description: "The browsers signed in to your account now: browser and system, address, \
                      when each signed in and was last active (not the session cookies).",
    },
    Section {
        file: "security_events.json",
        description: "Your security activity, oldest first: sign-ins, failed attempts, changes to \
                      your password, email and two-factor settings, with address and browser.",
    },
    Section {
        file: "emails.json",
        description: "The emails we sent you, at this address or an earlier one: subject, kind, and \
                      when. Their text is left out because it holds one-time links.",
    },
];

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("database: {0}")]
    Database(#[from] DbErr),
    #[error("zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("writing: {0}")]
    Io(#[from] std::io::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Service(#[from] crate::server::services::auth::AuthError),
}

/// The archive's suggested file name.
pub fn file_name(now: i64) -> String {
    let date = time::OffsetDateTime::from_unix_timestamp(now)
        .map(|t| t.date().to_string())
        .unwrap_or_default();
    format!("nestegg-export-{date}.zip")
}

/// All export slots are taken.
#[derive(Debug, thiserror::Error)]
#[error("too many exports at once")]
pub struct Busy;

/// A slot for one export, taken before anything is recorded.
pub fn reserve(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, Busy> {
    state.exports.clone().try_acquire_owned().map_err(|_| Busy)
}

/// Starts writing `account`'s archive; the receiver yields it in chunks. A failure part-way ends the
/// stream with an error, so the download is visibly broken rather than silently short.
pub fn start(
    state: AppState,
    account: user::Model,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> mpsc::Receiver<Result<Bytes, std::io::Error>> {
    let (sender, receiver) = mpsc::channel(CHANNEL_DEPTH);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let sink = ChannelWriter {
            runtime: runtime.clone(),
            sender: sender.clone(),
            buffer: Vec::with_capacity(CHUNK),
        };
        if let Err(err) = write_archive(&runtime, &state, &account, sink) {
            tracing::error!(error = %err, "data export failed");
            // The client may be gone already; then there is no one to tell.
            let _ = sender.blocking_send(Err(std::io::Error::other("export failed")));
        }
        // The compressor's buffers were freed on this blocking thread, which may now sleep.
        crate::server::memory::return_freed_memory();
    });
    receiver
}

/// Gathers bytes into chunks and sends them on; fails once the response is gone.
struct ChannelWriter {
    runtime: tokio::runtime::Handle,
    sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    fn send_buffer(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        let sent = self
            .runtime
            .block_on(tokio::time::timeout(STALL, self.sender.send(Ok(chunk))));
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "download ended",
            )),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "download stalled",
            )),
        }
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.send_buffer()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buffer()
    }
}

/// A timestamp as RFC 3339 (UTC), the way every file of the archive writes times.
fn iso(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn iso_opt(unix: Option<i64>) -> Option<String> {
    unix.map(iso)
}

fn write_archive(
    runtime: &tokio::runtime::Handle,
    state: &AppState,
    account: &user::Model,
    sink: ChannelWriter,
) -> Result<(), ExportError> {
    let now = state.clock.now();
    let modified = time::PrimitiveDateTime::new(now.date(), now.time());
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::try_from(modified).unwrap_or_default());
    let mut zip = zip::ZipWriter::new_stream(sink);

    zip.start_file("README.txt", options)?;
    zip.write_all(readme(account, now.unix_timestamp()).as_bytes())?;

    zip.start_file("profile.json", options)?;
    let profile = runtime.block_on(profile(state, account))?;
    serde_json::to_writer_pretty(&mut zip, &profile)?;

    zip.start_file("household.json", options)?;
    let household = runtime.block_on(household(state, account))?;
    serde_json::to_writer_pretty(&mut zip, &household)?;

    zip.start_file("consents.json", options)?;
    let consents: Vec<ConsentJson> = runtime
        .block_on(
            consent::Entity::find()
                .filter(consent::Column::UserId.eq(&account.id))
                .order_by_asc(consent::Column::Id)
                .all(&state.db),
        )?
        .into_iter()
        .map(|c| ConsentJson {
            document: c.document,
            version: c.version,
            accepted_at: iso(c.accepted_at),
            ip: c.ip,
            user_agent: c.user_agent,
        })
        .collect();
    serde_json::to_writer_pretty(&mut zip, &consents)?;

    zip.start_file("sessions.json", options)?;
    let sessions: Vec<SessionJson> = runtime
        .block_on(sessions::list(state, &account.id, None))?
        .into_iter()
        .map(|s| SessionJson {
            browser: s.device,
            ip: s.ip,
            signed_in_at: iso(s.started_at),
            last_active_at: iso(s.last_active_at),
        })
        .collect();
    serde_json::to_writer_pretty(&mut zip, &sessions)?;

    zip.start_file("security_events.json", options)?;
    write_events(runtime, state, &account.id, &mut zip)?;

    zip.start_file("emails.json", options)?;
    let since = runtime.block_on(addressed_since(state, account))?;
    let held = runtime.block_on(audit::addresses_held(&state.db, account))?;
    write_emails(runtime, state, account, since, &held, &mut zip)?;

    let mut sink = zip.finish()?;
    sink.flush()?;
    Ok(())
}

fn readme(account: &user::Model, now: i64) -> String {
    let mut text = format!(
        "Nest Egg data export\r\n====================\r\n\r\nFor: {}\r\nCreated: {}\r\n\r\n\
         Everything Nest Egg holds about you, one JSON file per kind of data. Times are UTC \
         (RFC 3339). Secrets are never included: no password hash, two-factor secret, backup \
         codes, session cookies or one-time links.\r\n\r\n",
        account.email,
        iso(now)
    );
    for section in SECTIONS {
        text.push_str(&format!(
            "{}\r\n    {}\r\n\r\n",
            section.file, section.description
        ));
    }
    text
}

#[derive(Serialize)]
struct ProfileJson {
    id: String,
    email: String,
    display_name: String,
    created_at: String,
    email_confirmed_at: Option<String>,
    password_changed_at: String,
    two_factor: TwoFactorJson,
    /// Operator of this deployment (`ADMIN_EMAILS` or granted from the command line).
    operator: bool,
    /// When operator rights were granted from the command line.
    operator_granted_at: Option<String>,
}

#[derive(Serialize)]
struct TwoFactorJson {
    enabled: bool,
    enabled_at: Option<String>,
    backup_codes_remaining: u32,
}

async fn profile(state: &AppState, account: &user::Model) -> Result<ProfileJson, ExportError> {
    let status = mfa::status(state, &account.id).await?;
    // Not a change of address waiting for confirmation: one to a taken address gets no link, so
    // listing it would tell whether someone has an account there (see CHANGE_LINK_KIND).
    let granted = operator::Entity::find_by_id(account.id.clone())
        .one(&state.db)
        .await?;
    let is_operator = operators::is_operator(&state.db, &state.settings, account).await?;
    Ok(ProfileJson {
        id: account.id.clone(),
        email: account.email.clone(),
        display_name: account.display_name.clone(),
        created_at: iso(account.created_at),
        email_confirmed_at: iso_opt(account.email_verified_at),
        password_changed_at: iso(account.password_changed_at),
        two_factor: TwoFactorJson {
            enabled: status.enabled_at.is_some(),
            enabled_at: iso_opt(status.enabled_at),
            backup_codes_remaining: status.backup_codes_remaining,
        },
        operator: is_operator,
        operator_granted_at: granted.map(|g| iso(g.granted_at)),
    })
}

#[derive(Serialize)]
struct HouseholdJson {
    id: String,
    name: String,
    created_at: String,
    your_role: String,
    you_joined_at: String,
    members: Vec<MemberJson>,
    invitations_you_sent: Vec<InvitationJson>,
    invitations_to_you: Vec<InvitationToYouJson>,
}

#[derive(Serialize)]
struct InvitationToYouJson {
    household: String,
    sent_at: String,
    expires_at: String,
    status: &'static str,
}

#[derive(Serialize)]
struct MemberJson {
    display_name: String,
    email: String,
    role: String,
    joined_at: String,
}

#[derive(Serialize)]
struct InvitationJson {
    email: String,
    sent_at: String,
    expires_at: String,
    status: &'static str,
}

async fn household(state: &AppState, account: &user::Model) -> Result<HouseholdJson, ExportError> {
    let membership = households::membership(&state.db, &account.id).await?;
    let members = households::members(&state.db, &membership.household.id).await?;
    let now = state.clock.now().unix_timestamp();
    let invitations = household_invitation::Entity::find()
        .filter(household_invitation::Column::InvitedBy.eq(&account.id))
        .order_by_asc(household_invitation::Column::CreatedAt)
        .all(&state.db)
        .await?;
    let departures = departures(&state.db, &account.id).await?;
    // To the address the account has now (invitations to earlier addresses are in emails.json).
    let to_you = household_invitation::Entity::find()
        .filter(household_invitation::Column::Email.eq(&account.email))
        .filter(household_invitation::Column::CreatedAt.gte(addressed_since(state, account).await?))
        .order_by_asc(household_invitation::Column::CreatedAt)
        .all(&state.db)
        .await?;
    let household_names: std::collections::HashMap<String, String> = household::Entity::find()
        .filter(household::Column::Id.is_in(to_you.iter().map(|i| i.household_id.clone())))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|h| (h.id, h.name))
        .collect();
    Ok(HouseholdJson {
        id: membership.household.id.clone(),
        name: membership.household.name.clone(),
        created_at: iso(membership.household.created_at),
        your_role: membership.role.clone(),
        you_joined_at: iso(membership.joined_at),
        members: members
            .into_iter()
            .map(|m| MemberJson {
                display_name: m.display_name,
                email: m.email,
                role: m.role,
                joined_at: iso(m.joined_at),
            })
            .collect(),
        invitations_you_sent: invitations
            .into_iter()
            .map(|i| InvitationJson {
                // In a household the person has left, what became of it since is that household's
                // business: its status as it stood when they last left it (having come back, they saw
                // its members again; once the trail no longer holds that, when they joined the
                // household they are in now, by which time they had left every other).
                status: if i.household_id == membership.household.id {
                    invitation_status(&i, now)
                } else {
                    let left_at = departures
                        .get(&i.household_id)
                        .and_then(|times| times.iter().rev().find(|&&t| t >= i.created_at))
                        .copied()
                        .unwrap_or(membership.joined_at);
                    status_when_left(&i, left_at)
                },
                email: i.email,
                sent_at: iso(i.created_at),
                expires_at: iso(i.expires_at),
            })
            .collect(),
        invitations_to_you: to_you
            .into_iter()
            .map(|i| InvitationToYouJson {
                status: invitation_status(&i, now),
                household: household_names
                    .get(&i.household_id)
                    .cloned()
                    .unwrap_or_default(),
                sent_at: iso(i.created_at),
                expires_at: iso(i.expires_at),
            })
            .collect(),
    })
}

fn invitation_status(invitation: &household_invitation::Model, now: i64) -> &'static str {
    if invitation.accepted_at.is_some() {
        "accepted"
    } else if invitation.revoked_at.is_some() {
        "withdrawn"
    } else if invitation.expires_at <= now {
        "expired"
    } else {
        "waiting"
    }
}

/// When the person left each household they left (oldest first), from their trail: leaving,
/// being removed, and joining another.
async fn departures(
    db: &sea_orm::DatabaseConnection,
    account_id: &str,
) -> Result<std::collections::HashMap<String, Vec<i64>>, sea_orm::DbErr> {
    let events: Vec<(String, String, i64)> = security_event::Entity::find()
        .select_only()
        .column(security_event::Column::Kind)
        .column(security_event::Column::Details)
        .column(security_event::Column::CreatedAt)
        .filter(security_event::Column::UserId.eq(account_id))
        .filter(security_event::Column::Kind.is_in([
            "household_left",
            "household_removed",
            "household_joined",
        ]))
        .order_by_asc(security_event::Column::CreatedAt)
        .into_tuple()
        .all(db)
        .await?;
    let mut departures: std::collections::HashMap<String, Vec<i64>> = Default::default();
    for (kind, details, at) in events {
        let key = match kind.as_str() {
            "household_joined" => "left_household_id",
            _ => "household_id",
        };
        let left = serde_json::from_str::<serde_json::Value>(&details)
            .ok()
            .and_then(|d| d.get(key).and_then(|id| id.as_str()).map(str::to_owned));
        if let Some(household_id) = left {
            departures.entry(household_id).or_default().push(at);
        }
    }
    Ok(departures)
}

/// [`invitation_status`] as it stood at `left_at`.
fn status_when_left(invitation: &household_invitation::Model, left_at: i64) -> &'static str {
    let by_then = |at: Option<i64>| at.is_some_and(|at| at <= left_at);
    if by_then(invitation.accepted_at) {
        "accepted"
    } else if by_then(invitation.revoked_at) {
        "withdrawn"
    } else if invitation.expires_at <= left_at {
        "expired"
    } else {
        "waiting_when_you_left"
    }
}

#[derive(Serialize)]
struct ConsentJson {
    document: String,
    version: i32,
    accepted_at: String,
    ip: String,
    user_agent: String,
}

#[derive(Serialize)]
struct SessionJson {
    browser: String,
    ip: Option<String>,
    signed_in_at: String,
    last_active_at: String,
}

#[derive(Serialize)]
struct EventJson {
    at: String,
    kind: String,
    description: String,
    ip: Option<String>,
    user_agent: Option<String>,
    details: serde_json::Value,
}

/// Writes a JSON array, one page of rows at a time: `next` returns the next page after the given
/// cursor (empty when done) and the cursor to continue from.
fn write_array<T: Serialize>(
    out: &mut impl Write,
    mut next: impl FnMut(i64) -> Result<(Vec<T>, i64), ExportError>,
) -> Result<(), ExportError> {
    out.write_all(b"[")?;
    let mut cursor = 0;
    let mut first = true;
    loop {
        let (rows, last) = next(cursor)?;
        if rows.is_empty() {
            break;
        }
        cursor = last;
        for row in rows {
            out.write_all(if first { b"\n" } else { b",\n" })?;
            first = false;
            serde_json::to_writer_pretty(&mut *out, &row)?;
        }
    }
    out.write_all(if first { b"]\n" } else { b"\n]\n" })?;
    Ok(())
}

fn write_events(
    runtime: &tokio::runtime::Handle,
    state: &AppState,
    user_id: &str,
    out: &mut impl Write,
) -> Result<(), ExportError> {
    write_array(out, |after| {
        let rows = runtime.block_on(
            security_event::Entity::find()
                .filter(security_event::Column::UserId.eq(user_id))
                .filter(security_event::Column::Id.gt(after))
                .order_by_asc(security_event::Column::Id)
                .limit(PAGE)
                .all(&state.db),
        )?;
        let last = rows.last().map_or(after, |r| r.id);
        let rows = rows
            .into_iter()
            .map(|row| {
                let mut details: serde_json::Value =
                    serde_json::from_str(&row.details).unwrap_or_default();
                // Another person's internal id is theirs, not this archive's (their name is here).
                if let Some(details) = details.as_object_mut() {
                    details.remove(audit::PERSON_ID);
                }
                EventJson {
                    at: iso(row.created_at),
                    description: activity::describe(&row.kind, &details),
                    kind: row.kind,
                    ip: row.ip,
                    user_agent: row.user_agent,
                    details,
                }
            })
            .collect();
        Ok((rows, last))
    })
}

#[derive(Serialize)]
struct EmailJson {
    kind: String,
    subject: String,
    status: String,
    queued_at: String,
    sent_at: Option<String>,
}

/// When the account got the address it has now: its registration, or its last change of address.
/// Only emails without a recorded owner are judged by it (see [`write_emails`]): those to the address
/// from before then went to whoever held it before (an address is freed by a change or a deletion),
/// or invited someone who had no account yet. (An `email_changed` event outlives the emails it could
/// exclude: events are kept at least 30 days, sent or failed emails at most 30.)
/// From when what was sent to the account's address without naming the account (invitations, and
/// the emails carrying them) is in its archive: since it has held the address, and only once it has
/// confirmed it. Whoever registers someone else's address without confirming it must not learn who
/// writes to its owner. (`i64::MAX`: never.)
async fn addressed_since(state: &AppState, account: &user::Model) -> Result<i64, DbErr> {
    match account.email_verified_at {
        Some(_) => address_held_since(state, account).await,
        None => Ok(i64::MAX),
    }
}

async fn address_held_since(state: &AppState, account: &user::Model) -> Result<i64, DbErr> {
    let changed = security_event::Entity::find()
        .select_only()
        .column(security_event::Column::CreatedAt)
        .filter(security_event::Column::UserId.eq(&account.id))
        .filter(security_event::Column::Kind.is_in(crate::server::services::audit::ADDRESS_CHANGES))
        .order_by_desc(security_event::Column::CreatedAt)
        .into_tuple::<i64>()
        .one(&state.db)
        .await?;
    Ok(changed.map_or(account.created_at, |at| at.max(account.created_at)))
}

/// The kind of the email with the link confirming a new address. It is queued only when the address
/// is free, so one to an address the account has not held (a change not confirmed) stays out of the
/// archive: otherwise asking to move to an address and downloading the archive would tell whether
/// someone has an account there. Addresses held are the current one and those its `email_changed`
/// events record.
const CHANGE_LINK_KIND: &str = "email_change_verify";

/// The account's emails, at whatever address they went to (but see [`CHANGE_LINK_KIND`]), and those
/// without a recorded owner (an invitation, or sent before owners were recorded) sent to its address
/// since `since` (Unix seconds).
fn write_emails(
    runtime: &tokio::runtime::Handle,
    state: &AppState,
    account: &user::Model,
    since: i64,
    held: &[String],
    out: &mut impl Write,
) -> Result<(), ExportError> {
    write_array(out, |after| {
        // Not the bodies: they are large, sealed, and hold one-time links.
        let rows: Vec<(i64, String, String, String, i64, Option<i64>)> = runtime.block_on(
            outbox_email::Entity::find()
                .select_only()
                .columns([
                    outbox_email::Column::Id,
                    outbox_email::Column::Kind,
                    outbox_email::Column::Subject,
                    outbox_email::Column::Status,
                    outbox_email::Column::CreatedAt,
                    outbox_email::Column::SentAt,
                ])
                .filter(outbox::mail_of(account, since))
                .filter(
                    Condition::any()
                        .add(outbox_email::Column::Kind.ne(CHANGE_LINK_KIND))
                        .add(outbox_email::Column::ToAddress.is_in(held)),
                )
                .filter(outbox_email::Column::Id.gt(after))
                .order_by_asc(outbox_email::Column::Id)
                .limit(PAGE)
                .into_tuple()
                .all(&state.db),
        )?;
        let last = rows.last().map_or(after, |r| r.0);
        let rows = rows
            .into_iter()
            .map(|(_, kind, subject, status, queued, sent)| EmailJson {
                kind,
                subject,
                status,
                queued_at: iso(queued),
                sent_at: iso_opt(sent),
            })
            .collect();
        Ok((rows, last))
    })
}
