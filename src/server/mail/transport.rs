//! Delivering a rendered email: over SMTP in production, or as `.eml` files in development and tests.
//!
//! Failures are sorted into "try again later" ([`MailError::Transient`]) and "this message will never
//! go" ([`MailError::Permanent`], [`MailError::InvalidAddress`], [`MailError::Build`]) so the outbox
//! worker knows whether to schedule a retry. Error strings end up in logs and in the outbox table, so
//! they never contain the message body or its links.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::AsyncTransport as _;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, Message, Tokio1Executor};

use super::templates::Rendered;

/// Right-hand side of our Message-IDs: `<{message_id}@nestegg>`. A fixed value (not the host name)
/// so every attempt at one outbox row carries the same Message-ID, wherever the worker runs, and
/// receiving servers and people can recognise a retry as the same message.
const MESSAGE_ID_DOMAIN: &str = "nestegg";

/// Our ids are UUIDs (36 characters); the limit only stops a caller's mistake.
const MAX_MESSAGE_ID_LEN: usize = 64;

/// Server replies can be long and multi-line; a stored error only needs the gist.
const MAX_ERROR_CHARS: usize = 300;

/// One email to deliver.
#[derive(Clone)]
pub struct OutgoingEmail {
    /// Recipient: `user@example.org` or `Name <user@example.org>`.
    pub to: String,
    /// Sender, in the same forms as `to`.
    pub from: String,
    pub rendered: Rendered,
    /// Our own id for this email (the outbox row's UUID). It names the Message-ID header and, for the
    /// file transport, the file; so only ASCII letters, digits, `-` and `_` are accepted.
    pub message_id: String,
}

/// Written by hand: the address is personal data and the body may hold one-time links.
impl fmt::Debug for OutgoingEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingEmail")
            .field("message_id", &self.message_id)
            .field("rendered", &self.rendered)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// An address could not be used. Holds which field (`"to"` or `"from"`), never the address itself,
    /// which may be personal data or attacker-controlled text.
    #[error("invalid address in the `{0}` field")]
    InvalidAddress(String),
    /// The message could not be put together (bad message id, refused subject, transport set-up).
    #[error("could not build the email: {0}")]
    Build(String),
    /// Worth retrying: the server or network failed, a 4xx reply, our relay configuration.
    #[error("temporary delivery failure: {0}")]
    Transient(String),
    /// Not worth retrying: the server refused this message for good (5xx reply).
    #[error("permanent delivery failure: {0}")]
    Permanent(String),
}

impl MailError {
    /// Whether the outbox should schedule another attempt.
    pub fn is_transient(&self) -> bool {
        matches!(self, MailError::Transient(_))
    }
}

/// Where email goes.
///
/// Cloning is cheap and shares the SMTP connection pool, so the worker can hold a clone.
#[derive(Debug, Clone)]
pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// Writes each email to `dir/<message_id>.eml`: for development (open them in a mail client) and
    /// for tests that follow links from emails.
    Files {
        dir: PathBuf,
    },
}

impl Mailer {
    /// An SMTP mailer from a URL: `smtps://user:pass@host:465`, `smtp://host:587?tls=required`,
    /// `smtp://host:25?tls=opportunistic`, or plain `smtp://localhost:1025` for a local catcher.
    /// Credentials must be percent-encoded. `timeout` bounds connecting and each SMTP command.
    ///
    /// Nothing is contacted here, but it must be called inside a Tokio runtime: lettre's connection
    /// pool starts its clean-up task on creation.
    pub fn smtp(url: &str, timeout: Duration) -> Result<Mailer, MailError> {
        // lettre's URL errors name the scheme or what is malformed, never the URL, so the password it
        // may contain cannot leak into the message.
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|err| MailError::Build(format!("invalid SMTP URL: {}", one_line(&err))))?;
        Ok(Mailer::Smtp(builder.timeout(Some(timeout)).build()))
    }

    pub fn files(dir: PathBuf) -> Mailer {
        Mailer::Files { dir }
    }

    /// Delivers one email. Safe to repeat for the same `message_id`: SMTP receivers see the same
    /// Message-ID, and the file transport overwrites the same file.
    pub async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        let message = build_message(email)?;
        match self {
            Mailer::Smtp(transport) => match transport.send(message).await {
                Ok(_response) => Ok(()),
                Err(err) => Err(classify_smtp_error(&err)),
            },
            Mailer::Files { dir } => {
                write_atomically(dir, &email.message_id, message.formatted()).await
            }
        }
    }

    /// Whether mail can currently be handed over: the SMTP server answers (connect, authenticate,
    /// NOOP), or the directory can be written to.
    pub async fn check(&self) -> bool {
        match self {
            Mailer::Smtp(transport) => match transport.test_connection().await {
                Ok(connected) => connected,
                Err(err) => {
                    let error = one_line(&err);
                    tracing::warn!(%error, "mail: SMTP connection check failed");
                    false
                }
            },
            Mailer::Files { dir } => dir_is_writable(dir).await,
        }
    }
}

fn build_message(email: &OutgoingEmail) -> Result<Message, MailError> {
    check_message_id(&email.message_id)?;
    let from = parse_mailbox(&email.from, "from")?;
    let to = parse_mailbox(&email.to, "to")?;
    // lettre would encode a line break rather than let it end the header, but a subject with one is a
    // bug in a template, and our subjects are constants: refuse it instead of sending it mangled.
    if email.rendered.subject.chars().any(char::is_control) {
        return Err(MailError::Build(
            "the subject contains control characters".to_owned(),
        ));
    }
    let id = &email.message_id;
    Message::builder()
        .from(from)
        .to(to)
        .subject(email.rendered.subject.as_str())
        .message_id(Some(format!("<{id}@{MESSAGE_ID_DOMAIN}>")))
        .date_now()
        .multipart(MultiPart::alternative_plain_html(
            email.rendered.text.clone(),
            email.rendered.html.clone(),
        ))
        // lettre's message errors describe headers ("missing destination address"), never the body.
        .map_err(|err| MailError::Build(one_line(&err)))
}

/// Parses `user@domain` or `Name <user@domain>`. The parser requires the whole input to be one
/// mailbox, so a second address or trailing text is refused rather than dropped.
fn parse_mailbox(value: &str, field: &str) -> Result<Mailbox, MailError> {
    // Checked before parsing so that no parser quirk can ever carry a line break (and with it a new
    // header such as `Bcc:`) into the message, whatever the parser accepts in quoted names.
    if value.chars().any(char::is_control) {
        return Err(MailError::InvalidAddress(field.to_owned()));
    }
    value
        .trim()
        .parse::<Mailbox>()
        .map_err(|_| MailError::InvalidAddress(field.to_owned()))
}

/// The id becomes part of a header and a file name: a small alphabet rules out header injection and
/// path traversal (`../`) at once.
fn check_message_id(id: &str) -> Result<(), MailError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_MESSAGE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(MailError::Build(format!(
            "the message id must be 1 to {MAX_MESSAGE_ID_LEN} ASCII letters, digits, '-' or '_'"
        )))
    }
}

/// Sorts an SMTP failure into retry or give up.
///
/// Only a 5xx reply means the server refused this message for good. Everything else (refused or
/// dropped connections, timeouts, TLS failures, 4xx replies, garbled replies) may clear up, so it is
/// retried; the worker's attempt limit ends retries that never succeed.
fn classify_smtp_error(err: &lettre::transport::smtp::Error) -> MailError {
    let detail = one_line(err);
    let code = err.status().map(u16::from);
    if err.is_permanent() && !code.is_some_and(is_relay_configuration_code) {
        MailError::Permanent(detail)
    } else {
        MailError::Transient(detail)
    }
}

/// 5xx replies to authentication: our relay settings are wrong, which says nothing about this message.
/// Giving up on it would drop every email while the credentials are being fixed, so these are retried.
/// (530 authentication required, 534 mechanism too weak, 535 credentials invalid, 538 encryption
/// required for the mechanism.)
fn is_relay_configuration_code(code: u16) -> bool {
    matches!(code, 530 | 534 | 535 | 538)
}

/// An error's text on one bounded line, ready for a log field or the outbox's `last_error` column.
/// Server replies are multi-line and could be long.
fn one_line(err: &dyn fmt::Display) -> String {
    let text = err.to_string();
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ERROR_CHARS)
        .collect();
    if text.chars().count() > MAX_ERROR_CHARS {
        out.push_str("...");
    }
    out
}

/// Writes the message to `dir/<message_id>.eml` under a temporary name first and renames it into
/// place, so a reader (a test waiting for the email, a developer's mail client) never sees half a file.
async fn write_atomically(dir: &Path, message_id: &str, bytes: Vec<u8>) -> Result<(), MailError> {
    tokio::fs::create_dir_all(dir).await.map_err(io_failure)?;
    let final_path = dir.join(format!("{message_id}.eml"));
    // Unique per attempt: a retry can race a slow first attempt at the same message, and two writers
    // must not share one temporary file. The leading dot keeps it out of `*.eml` globs.
    let nonce = uuid::Uuid::new_v4().simple();
    let temp_path = dir.join(format!(".{message_id}.{nonce}.tmp"));
    let mut result = tokio::fs::write(temp_path.as_path(), bytes).await;
    if result.is_ok() {
        // rename(2) replaces the target atomically: readers see the old file or the new one.
        result = tokio::fs::rename(temp_path.as_path(), final_path).await;
    }
    if let Err(err) = result {
        // Best effort: a leftover temporary file is hidden and never read, only untidy.
        let _ = tokio::fs::remove_file(temp_path).await;
        return Err(io_failure(err));
    }
    Ok(())
}

/// A full disk or a permissions problem can be fixed without touching the message: retry it.
/// `io::Error`'s text names the failure, not the path or the data.
fn io_failure(err: std::io::Error) -> MailError {
    MailError::Transient(format!(
        "could not write the email file: {}",
        one_line(&err)
    ))
}

async fn dir_is_writable(dir: &Path) -> bool {
    if tokio::fs::create_dir_all(dir).await.is_err() {
        return false;
    }
    let nonce = uuid::Uuid::new_v4().simple();
    let probe = dir.join(format!(".check.{nonce}.tmp"));
    let writable = tokio::fs::write(probe.as_path(), b"ok").await.is_ok();
    let _ = tokio::fs::remove_file(probe).await;
    writable
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::server::mail::templates::Template;

    const MESSAGE_ID: &str = "0b6f3c1e-8a59-4c4e-9d1b-5f2a7e0c9d42";

    fn email(template: &Template) -> OutgoingEmail {
        OutgoingEmail {
            to: "Ann Example <ann@example.org>".to_owned(),
            from: "Nest Egg <no-reply@nestegg.example>".to_owned(),
            rendered: template.render(),
            message_id: MESSAGE_ID.to_owned(),
        }
    }

    fn verify_email() -> Template {
        Template::VerifyEmail {
            name: "Ann".to_owned(),
            link: "https://nestegg.example/verify-email/abc123".to_owned(),
        }
    }

    /// Reads a message as a mail client would: parts split, quoted-printable decoded.
    fn parse(raw: &str) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(raw)
            .expect("a parsable email")
    }

    fn eml_files(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect()
    }

    #[tokio::test]
    async fn files_transport_writes_one_complete_eml() {
        let tmp = tempfile::tempdir().unwrap();
        // A directory that does not exist yet: the transport creates it.
        let dir = tmp.path().join("outbox");
        let mailer = Mailer::files(dir.clone());
        let template = verify_email();

        mailer.send(&email(&template)).await.unwrap();
        // A retry of the same message replaces the file instead of adding another.
        mailer.send(&email(&template)).await.unwrap();

        let files = eml_files(&dir);
        assert_eq!(files, vec![dir.join(format!("{MESSAGE_ID}.eml"))]);
        let raw = std::fs::read_to_string(files[0].as_path()).unwrap();
        let (headers, _) = raw.split_once("\r\n\r\n").unwrap();
        assert!(headers.contains("Subject: Confirm your email for Nest Egg\r\n"));
        assert!(headers.contains(&format!("Message-ID: <{MESSAGE_ID}@nestegg>\r\n")));
        assert!(headers.contains("\r\nDate: "));
        assert!(headers.contains("ann@example.org"));
        assert!(headers.contains("no-reply@nestegg.example"));
        assert!(headers.contains("multipart/alternative"));
        assert!(raw.contains("Content-Type: text/plain"));
        assert!(raw.contains("Content-Type: text/html"));

        let message = parse(&raw);
        let text = message.body_text(0).unwrap();
        assert!(text.contains("Hi Ann,"), "{text}");
        assert!(
            text.contains("Confirm my email:\r\nhttps://nestegg.example/verify-email/abc123"),
            "{text}"
        );
        let html = message.body_html(0).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
        assert!(html.contains("href=\"https://nestegg.example/verify-email/abc123\""));
    }

    #[tokio::test]
    async fn line_breaks_in_addresses_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mailer = Mailer::files(tmp.path().to_path_buf());
        let template = verify_email();

        let mut bad_to = email(&template);
        bad_to.to = "ann@example.org\r\nBcc: x@y".to_owned();
        assert_eq!(
            mailer.send(&bad_to).await,
            Err(MailError::InvalidAddress("to".to_owned()))
        );

        let mut bad_from = email(&template);
        bad_from.from = "\"Nest Egg\nBcc: x@y\" <no-reply@nestegg.example>".to_owned();
        assert_eq!(
            mailer.send(&bad_from).await,
            Err(MailError::InvalidAddress("from".to_owned()))
        );

        let mut two_recipients = email(&template);
        two_recipients.to = "ann@example.org, x@y.example".to_owned();
        assert_eq!(
            mailer.send(&two_recipients).await,
            Err(MailError::InvalidAddress("to".to_owned()))
        );

        assert!(eml_files(tmp.path()).is_empty());
    }

    #[tokio::test]
    async fn a_name_with_line_breaks_cannot_inject_headers() {
        let tmp = tempfile::tempdir().unwrap();
        let mailer = Mailer::files(tmp.path().to_path_buf());
        let template = Template::VerifyEmail {
            name: "Eve\r\nBcc: attacker@evil.example\r\n\r\n".to_owned(),
            link: "https://nestegg.example/verify-email/abc123".to_owned(),
        };

        mailer.send(&email(&template)).await.unwrap();

        let raw = std::fs::read_to_string(tmp.path().join(format!("{MESSAGE_ID}.eml"))).unwrap();
        let message = parse(&raw);
        assert!(message.bcc().is_none());
        let to = message.to().unwrap();
        assert_eq!(to.iter().count(), 1);
        assert_eq!(to.first().unwrap().address(), Some("ann@example.org"));
        // The name stays text inside the body; it never starts a header line of its own.
        for part in [message.body_text(0).unwrap(), message.body_html(0).unwrap()] {
            assert!(part.lines().all(|line| !line.starts_with("Bcc:")), "{part}");
        }
        let (headers, _) = raw.split_once("\r\n\r\n").unwrap();
        assert!(!headers.contains("evil.example"));
    }

    #[tokio::test]
    async fn message_ids_that_could_escape_the_directory_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("outbox");
        let mailer = Mailer::files(dir.clone());
        for id in ["../escape", "a/b", "", "id with space", "x\r\ny"] {
            let mut outgoing = email(&verify_email());
            outgoing.message_id = id.to_owned();
            let err = mailer.send(&outgoing).await.unwrap_err();
            assert!(matches!(err, MailError::Build(_)), "{id:?}: {err:?}");
        }
        assert!(!tmp.path().join("escape.eml").exists());
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn files_check_reports_writability() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(Mailer::files(tmp.path().join("new")).check().await);
        // A regular file where the directory should be.
        let blocked = tmp.path().join("blocked");
        std::fs::write(&blocked, b"").unwrap();
        assert!(!Mailer::files(blocked).check().await);
        assert_eq!(eml_files(&tmp.path().join("new")), Vec::<PathBuf>::new());
    }

    #[tokio::test]
    async fn bad_smtp_urls_are_refused_without_echoing_them() {
        let err =
            Mailer::smtp("smtpx://user:hunter2@mail.example", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, MailError::Build(_)), "{err:?}");
        assert!(!err.to_string().contains("hunter2"));
        assert!(Mailer::smtp("not a url", Duration::from_secs(1)).is_err());
    }

    #[tokio::test]
    async fn unreachable_smtp_server_is_transient() {
        // Port 1 on loopback: nothing listens there, so the connection is refused at once.
        let mailer = Mailer::smtp("smtp://127.0.0.1:1", Duration::from_secs(2)).unwrap();
        let template = verify_email();
        let err = mailer.send(&email(&template)).await.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert!(!err.to_string().contains("abc123"));
        assert!(!mailer.check().await);
    }

    #[test]
    fn relay_configuration_replies_are_retried() {
        assert!(is_relay_configuration_code(535));
        assert!(!is_relay_configuration_code(550));
    }

    #[test]
    fn error_text_is_one_bounded_line() {
        let long = format!("550 first\r\nsecond {}", "x".repeat(1000));
        let line = one_line(&long);
        assert!(!line.contains(['\r', '\n']));
        assert_eq!(line.chars().count(), MAX_ERROR_CHARS + 3);
    }
}
