//! Delivering a rendered email: over SMTP in production, or as `.eml` files in development and tests.
//!
//! Failures are sorted into "try again later" ([`MailError::Transient`]) and "this message will never
//! go" ([`MailError::Permanent`], [`MailError::InvalidAddress`], [`MailError::Build`]) so the outbox
//! worker knows whether to schedule a retry. Error strings end up in logs and in the outbox table, so
//! they never contain the message body or its links.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

use super::templates::Rendered;

/// Right-hand side of our Message-IDs: `<{message_id}@nestegg>`. A fixed value (not the host name)
/// so every attempt at one outbox row carries the same Message-ID, wherever the worker runs, and
/// receiving servers and people can recognise a retry as the same message.
const MESSAGE_ID_DOMAIN: &str = "nestegg";

/// Our ids are UUIDs (36 characters); the limit only stops a caller's mistake.
const MAX_MESSAGE_ID_LEN: usize = 64;

/// How long one delivery over SMTP may take, all of it (see [`Mailer::Smtp`]). Well inside the
/// outbox worker's lease, so that a send in progress never outlives the claim on its email.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the courtesy of a QUIT may take once the message was accepted (its answer changes nothing).
pub const QUIT_WAIT: Duration = Duration::from_secs(2);

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
    /// Not worth retrying: the server refused this message or its recipient for good (a 5xx reply
    /// about the address or the content; see [`classify_reply`]).
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
/// Cloning is cheap, so the worker can hold a clone. Each SMTP delivery opens a connection of its own
/// (no pool; see `Cargo.toml`): emails go out one at a time, and a send given up on must take its
/// connection with it.
#[derive(Debug, Clone)]
pub enum Mailer {
    Smtp {
        relay: Relay,
        /// Bounds a whole delivery (and a connection check), not only connecting: lettre's own
        /// timeout covers opening the connection only, so a server that accepts it and then never
        /// answers (plain SMTP pointed at an implicit-TLS port, a tarpit, a connection a NAT dropped)
        /// would hold the worker, and the email's lease, forever.
        timeout: Duration,
    },
    /// Writes each email to `dir/<message_id>.eml`: for development (open them in a mail client) and
    /// for tests that follow links from emails.
    Files { dir: PathBuf },
}

impl Mailer {
    /// An SMTP mailer from a URL: `smtps://user:pass@host:465`, `smtp://host:587?tls=required`,
    /// `smtp://host:25?tls=opportunistic`, or plain `smtp://localhost:1025` for a local catcher.
    /// Credentials must be percent-encoded. `timeout` bounds a whole delivery: connecting, every
    /// command and the message.
    ///
    /// Nothing is contacted here.
    pub fn smtp(url: &str, timeout: Duration) -> Result<Mailer, MailError> {
        let relay = Relay::from_url(url)
            .map_err(|err| MailError::Build(format!("invalid SMTP URL: {err}")))?;
        Ok(Mailer::Smtp { relay, timeout })
    }

    /// Whether [`Mailer::smtp`] would accept `url` (checked with the rest of the configuration).
    /// The error names what is wrong, never the URL.
    pub fn check_url(url: &str) -> Result<(), String> {
        Relay::from_url(url)
            .map(|_| ())
            .map_err(|err| format!("is not a valid SMTP URL: {err}"))
    }

    pub fn files(dir: PathBuf) -> Mailer {
        Mailer::Files { dir }
    }

    /// Delivers one email. Safe to repeat for the same `message_id`: SMTP receivers see the same
    /// Message-ID, and the file transport overwrites the same file.
    pub async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        let message = build_message(email)?;
        match self {
            Mailer::Smtp { relay, timeout } => {
                let envelope = message.envelope().clone();
                let bytes = message.formatted();
                let delivery = async {
                    let mut connection = relay.connect(*timeout).await?;
                    connection.send(&envelope, &bytes).await?;
                    Ok::<_, lettre::transport::smtp::Error>(connection)
                };
                match tokio::time::timeout(*timeout, delivery).await {
                    Ok(Ok(mut connection)) => {
                        // Accepted: sent. The QUIT after it is a courtesy with a limit of its own:
                        // lettre's transport waits for its answer inside the send, so a server
                        // that never answers it turned an accepted message into a send that timed
                        // out, sent again at every retry.
                        let _ = tokio::time::timeout(QUIT_WAIT, connection.quit()).await;
                        Ok(())
                    }
                    Ok(Err(err)) => Err(classify_smtp_error(&err)),
                    // Dropping the send closes its connection half-way through a command; with a
                    // pool it would have gone back for the next email (see `Cargo.toml`).
                    Err(_elapsed) => Err(MailError::Transient(format!(
                        "the SMTP server did not finish within {timeout:?}"
                    ))),
                }
            }
            Mailer::Files { dir } => {
                write_atomically(dir, &email.message_id, message.formatted()).await
            }
        }
    }

    /// Whether mail can currently be handed over: the SMTP server answers (connect, authenticate,
    /// NOOP), or the directory can be written to.
    pub async fn check(&self) -> bool {
        match self {
            Mailer::Smtp { relay, timeout } => {
                let probe = async {
                    let mut connection = relay.connect(*timeout).await?;
                    let connected = connection.test_connected().await;
                    let _ = tokio::time::timeout(QUIT_WAIT, connection.quit()).await;
                    Ok::<_, lettre::transport::smtp::Error>(connected)
                };
                match tokio::time::timeout(*timeout, probe).await {
                    Ok(Ok(connected)) => connected,
                    Ok(Err(err)) => {
                        let error = reply_text(&err);
                        tracing::warn!(%error, "mail: SMTP connection check failed");
                        false
                    }
                    Err(_elapsed) => {
                        tracing::warn!("mail: the SMTP server did not answer the connection check");
                        false
                    }
                }
            }
            Mailer::Files { dir } => dir_is_writable(dir).await,
        }
    }
}

/// The SMTP relay of `SMTP_URL`, read by lettre's rules for such URLs: `smtp://` (port 25, no TLS),
/// `smtp://…?tls=required` or `?tls=opportunistic` (port 587, STARTTLS), `smtps://` (port 465,
/// TLS from the start); credentials percent-encoded; a path names the client in EHLO. (lettre's own
/// transport would do, but for the QUIT: see [`Mailer::send`].)
#[derive(Clone)]
pub struct Relay {
    host: String,
    port: u16,
    tls: Tls,
    hello: ClientId,
    credentials: Option<Credentials>,
}

/// Written by hand: no credentials, whatever lettre's types show.
impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// The error names what is wrong, never the URL (which may hold a password).
    fn from_url(url: &str) -> Result<Relay, String> {
        use lettre::transport::smtp::{SMTP_PORT, SUBMISSION_PORT, SUBMISSIONS_PORT};
        let url = url::Url::parse(url).map_err(|err| err.to_string())?;
        // An IPv6 address is written in brackets in a URL, not in a socket address nor as the
        // name a certificate is checked against.
        let host = url
            .host_str()
            .ok_or("it names no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls_parameters = || TlsParameters::new(host.clone()).map_err(|err| one_line(&err));
        let tls_mode = url
            .query_pairs()
            .find(|(key, _)| key == "tls")
            .map(|(_, value)| value.into_owned());
        let (default_port, tls) = match (url.scheme(), tls_mode.as_deref()) {
            ("smtp", None) => (SMTP_PORT, Tls::None),
            ("smtp", Some("required")) => (SUBMISSION_PORT, Tls::Required(tls_parameters()?)),
            ("smtp", Some("opportunistic")) => {
                (SUBMISSION_PORT, Tls::Opportunistic(tls_parameters()?))
            }
            ("smtps", _) => (SUBMISSIONS_PORT, Tls::Wrapper(tls_parameters()?)),
            (scheme, _) => {
                return Err(format!(
                    "unknown scheme `{scheme}` or `tls` value (smtp, smtp with tls=required or \
                     tls=opportunistic, or smtps)"
                ));
            }
        };
        let hello = match url.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_owned()),
        };
        let decode = |part: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .map(std::borrow::Cow::into_owned)
                .map_err(|_| "its credentials are not valid percent-encoded UTF-8".to_owned())
        };
        let credentials = match url.password() {
            Some(password) => Some(Credentials::new(decode(url.username())?, decode(password)?)),
            None => None,
        };
        Ok(Relay {
            host,
            port: url.port().unwrap_or(default_port),
            tls,
            hello,
            credentials,
        })
    }

    /// A connection ready to send: greeted, encrypted as the URL asks, signed in.
    async fn connect(
        &self,
        timeout: Duration,
    ) -> Result<AsyncSmtpConnection, lettre::transport::smtp::Error> {
        let wrapper = match &self.tls {
            Tls::Wrapper(parameters) => Some(parameters.clone()),
            _ => None,
        };
        let mut connection = AsyncSmtpConnection::connect_tokio1(
            (self.host.as_str(), self.port),
            Some(timeout),
            &self.hello,
            wrapper,
            None,
        )
        .await?;
        match &self.tls {
            Tls::Required(parameters) => {
                connection.starttls(parameters.clone(), &self.hello).await?;
            }
            Tls::Opportunistic(parameters) if connection.can_starttls() => {
                connection.starttls(parameters.clone(), &self.hello).await?;
            }
            _ => {}
        }
        if let Some(credentials) = &self.credentials {
            connection.auth(DEFAULT_MECHANISMS, credentials).await?;
        }
        Ok(connection)
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

/// Sorts an SMTP failure into retry or give up (see [`classify_reply`]).
fn classify_smtp_error(err: &lettre::transport::smtp::Error) -> MailError {
    let detail = reply_text(err);
    let code = err.status().map(u16::from);
    if err.is_permanent() && classify_reply(code, &detail) == Reply::Refused {
        MailError::Permanent(detail)
    } else {
        MailError::Transient(detail)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// The server refused this message or its recipient: sending it again cannot help.
    Refused,
    /// Anything else may clear up (or be fixed by the operator) and is retried until the worker's
    /// attempt limit.
    Retry,
}

/// What a 5xx reply is about. Only a refusal of the recipient or the message is final; a refusal of
/// *us* (relay access denied, a sender the account may not use, authentication, a sending quota, an
/// address on a block list) would otherwise fail every queued email, resets and verifications
/// included, until the operator noticed and retried each by hand.
///
/// Judged by the enhanced status code (RFC 3463) when the reply has one: final for 5.1.x (address),
/// 5.2.x (mailbox), 5.3.x (the receiving system, e.g. message too big) and 5.6.x (content); retried for
/// 5.4.x (routing), 5.5.x (protocol) and 5.7.x (security and policy). Without one, by the basic code:
/// retried for the replies to authentication (530, 534, 535, 538), final otherwise.
fn classify_reply(code: Option<u16>, text: &str) -> Reply {
    match enhanced_class(text) {
        Some(1 | 2 | 3 | 6) => Reply::Refused,
        Some(_) => Reply::Retry,
        None if code.is_some_and(is_relay_configuration_code) => Reply::Retry,
        None => Reply::Refused,
    }
}

/// The subject digit of the first `5.X.Y` enhanced status code in a reply (`5.7.1` → 7).
fn enhanced_class(text: &str) -> Option<u8> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == ':' || c == ';')
        .find_map(|word| {
            let mut parts = word.split('.');
            let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
            let digits = |s: &str, max: usize| {
                !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
            };
            (parts.next().is_none() && class == "5" && digits(subject, 3) && digits(detail, 3))
                .then(|| subject.parse().ok())
                .flatten()
        })
}

/// Replies to authentication: our relay settings are wrong, which says nothing about this message.
/// (530 authentication required, 534 mechanism too weak, 535 credentials invalid, 538 encryption
/// required for the mechanism.)
fn is_relay_configuration_code(code: u16) -> bool {
    matches!(code, 530 | 534 | 535 | 538)
}

/// An SMTP error as it may be logged and stored: on one bounded line, with every email address in it
/// masked. Servers echo the recipient in their replies (`550 5.1.1 <bob@example.org>: Recipient
/// address rejected`), and addresses are personal data that no log or `last_error` column keeps.
fn reply_text(err: &dyn fmt::Display) -> String {
    one_line(&mask_addresses(&err.to_string()))
}

/// Replaces every word with an `@` in it by `[address]`, keeping the punctuation around it.
fn mask_addresses(text: &str) -> String {
    text.split_inclusive(char::is_whitespace)
        .map(|word| {
            let trimmed = word.trim_end_matches(char::is_whitespace);
            let space = &word[trimmed.len()..];
            if trimmed.contains('@') {
                let start = trimmed.find(|c: char| !"<(\"'[".contains(c)).unwrap_or(0);
                // Past the last character's bytes, however many: an address can end in `ф`, and
                // a reply can quote it in `‹…›`.
                let end = trimmed
                    .char_indices()
                    .rfind(|&(_, c)| !">)\"']:;,.".contains(c))
                    .map_or(trimmed.len(), |(i, c)| i + c.len_utf8());
                if start < end {
                    return format!("{}[address]{}{space}", &trimmed[..start], &trimmed[end..]);
                }
            }
            word.to_owned()
        })
        .collect()
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

    /// How a [`scripted_smtp_server`] behaves.
    #[derive(Clone, Copy)]
    struct Script {
        /// Whether it greets a new connection at all.
        greet: bool,
        /// Its reply to RCPT (everything else but DATA and QUIT gets 250).
        rcpt_reply: &'static str,
        /// Whether the first connection's first message is never acknowledged.
        stall_first_message: bool,
        /// What it does on QUIT: answers, hangs up without a word, or says nothing and waits.
        on_quit: OnQuit,
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum OnQuit {
        Bye,
        HangUp,
        Silence,
    }

    const ANSWERS: Script = Script {
        greet: true,
        rcpt_reply: "250 OK",
        stall_first_message: false,
        on_quit: OnQuit::Bye,
    };

    /// Every line each connection sent, in order of connection.
    type Transcripts = std::sync::Arc<std::sync::Mutex<Vec<Vec<String>>>>;

    /// An SMTP server on loopback playing `script`; returns its `smtp://` URL and what it was sent.
    async fn scripted_smtp_server(script: Script) -> (String, Transcripts) {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let transcripts = Transcripts::default();
        let seen = transcripts.clone();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let index = {
                    let mut all = seen.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read).lines();
                    let mut in_message = false;
                    let mut silent = !script.greet;
                    if !silent {
                        write.write_all(b"220 test ESMTP\r\n").await.unwrap();
                    }
                    while let Ok(Some(line)) = lines.next_line().await {
                        seen.lock().unwrap()[index].push(line.clone());
                        if silent {
                            continue;
                        }
                        if !in_message && line.eq_ignore_ascii_case("QUIT") {
                            match script.on_quit {
                                OnQuit::Bye => {}
                                OnQuit::HangUp => return,
                                OnQuit::Silence => {
                                    silent = true;
                                    continue;
                                }
                            }
                        }
                        let reply = if in_message {
                            if line != "." {
                                continue;
                            }
                            in_message = false;
                            if script.stall_first_message && index == 0 {
                                // Keeps reading (and recording) whatever comes, answering nothing.
                                silent = true;
                                continue;
                            }
                            "250 queued"
                        } else {
                            match line.get(..4).map(str::to_ascii_uppercase).as_deref() {
                                Some("RCPT") => script.rcpt_reply,
                                Some("DATA") => {
                                    in_message = true;
                                    "354 go ahead"
                                }
                                Some("QUIT") => "221 bye",
                                _ => "250 OK",
                            }
                        };
                        if write
                            .write_all(format!("{reply}\r\n").as_bytes())
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        (url, transcripts)
    }

    /// A send given up on half-way takes its connection with it: were it handed to the next email,
    /// the server, still reading the first message, would take the next one's commands and text
    /// (its link included) as more of the first, and deliver them to the first recipient.
    #[tokio::test]
    async fn a_send_given_up_on_never_passes_its_connection_on() {
        let (url, transcripts) = scripted_smtp_server(Script {
            stall_first_message: true,
            ..ANSWERS
        })
        .await;
        // Long enough for the second email's whole exchange on a busy machine.
        let mailer = Mailer::smtp(&url, Duration::from_secs(3)).unwrap();
        let first = tokio::time::timeout(
            Duration::from_secs(10),
            mailer.send(&email(&verify_email())),
        )
        .await
        .expect("the send gave up by itself")
        .unwrap_err();
        assert!(first.is_transient(), "{first:?}");
        // Time for a connection pool to take the connection back (it does so in a task of its own).
        tokio::time::sleep(Duration::from_millis(300)).await;

        let reset = Template::PasswordReset {
            name: "Bo".to_owned(),
            link: "https://nestegg.example/reset-password?token=second-secret".to_owned(),
        };
        let mut second = email(&reset);
        second.to = "bo@example.org".to_owned();
        second.message_id = "0b6f3c1e-8a59-4c4e-9d1b-000000000002".to_owned();
        let sent = tokio::time::timeout(Duration::from_secs(10), mailer.send(&second)).await;
        assert_eq!(sent, Ok(Ok(())));

        let transcripts = transcripts.lock().unwrap();
        assert_eq!(
            transcripts.len(),
            2,
            "a connection of its own for each email"
        );
        assert!(
            !transcripts[0]
                .iter()
                .any(|line| line.contains("bo@example.org")),
            "{:?}",
            transcripts[0]
        );
        assert!(
            transcripts[1]
                .iter()
                .any(|line| line.contains("bo@example.org"))
        );
    }

    /// A message the server accepted is sent, whatever becomes of the QUIT after it: counted as a
    /// failure, it would be sent again at every retry.
    #[tokio::test]
    async fn an_accepted_message_is_sent_even_if_the_goodbye_fails() {
        for on_quit in [OnQuit::HangUp, OnQuit::Silence] {
            let (url, transcripts) = scripted_smtp_server(Script { on_quit, ..ANSWERS }).await;
            let mailer = Mailer::smtp(&url, Duration::from_secs(20)).unwrap();
            let started = std::time::Instant::now();
            let sent = mailer.send(&email(&verify_email())).await;
            assert_eq!(sent, Ok(()));
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no wait for an answer to QUIT beyond its own short limit"
            );
            let transcripts = transcripts.lock().unwrap();
            assert_eq!(transcripts[0].last().map(String::as_str), Some("QUIT"));
        }
    }

    #[test]
    fn smtp_urls_are_read_as_lettre_reads_them() {
        let relay = |url: &str| Relay::from_url(url).unwrap();
        let plain = relay("smtp://mail.example.org");
        assert_eq!((plain.host.as_str(), plain.port), ("mail.example.org", 25));
        assert!(matches!(plain.tls, Tls::None));
        assert!(plain.credentials.is_none());
        let starttls = relay("smtp://a%40b:p%3Ass@mail.example.org?tls=required");
        assert_eq!(starttls.port, 587);
        assert!(matches!(starttls.tls, Tls::Required(_)));
        assert_eq!(
            starttls.credentials,
            Some(Credentials::new("a@b".to_owned(), "p:ss".to_owned()))
        );
        let opportunistic = relay("smtp://mail.example.org:2525?tls=opportunistic");
        assert_eq!(opportunistic.port, 2525);
        assert!(matches!(opportunistic.tls, Tls::Opportunistic(_)));
        let wrapped = relay("smtps://mail.example.org/client.example");
        assert_eq!(wrapped.port, 465);
        assert!(matches!(wrapped.tls, Tls::Wrapper(_)));
        assert_eq!(wrapped.hello, ClientId::Domain("client.example".to_owned()));
        assert_eq!(relay("smtp://[::1]:25").host, "::1");
        let ipv6_tls = relay("smtps://[2001:db8::1]");
        assert_eq!(ipv6_tls.host, "2001:db8::1");
        let Tls::Wrapper(parameters) = &ipv6_tls.tls else {
            panic!("smtps is TLS from the start");
        };
        assert_eq!(parameters.domain(), "2001:db8::1", "the certificate's name");
        for refused in [
            "smtp://u:hunter2@mail.example.org?tls=requried",
            "smtp://u:hunter2@:587",
            "smtp://u:hunter2@mail.example.org:99999",
            "imap://u:hunter2@mail.example.org",
        ] {
            let err = Relay::from_url(refused).unwrap_err();
            assert!(!err.contains("hunter2"), "{refused}: {err}");
        }
        assert!(!format!("{:?}", relay("smtp://u:hunter2@m.example")).contains("hunter2"));
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_given_up_on_within_the_timeout() {
        let (url, _) = scripted_smtp_server(Script {
            greet: false,
            ..ANSWERS
        })
        .await;
        let mailer = Mailer::smtp(&url, Duration::from_millis(300)).unwrap();
        let template = verify_email();
        // Without a bound of its own, the send would wait for the greeting forever.
        let outcome = tokio::time::timeout(Duration::from_secs(10), mailer.send(&email(&template)))
            .await
            .expect("the send gave up by itself");
        let err = outcome.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        let check = tokio::time::timeout(Duration::from_secs(10), mailer.check()).await;
        assert_eq!(check, Ok(false));
    }

    #[tokio::test]
    async fn a_refused_recipient_is_final_and_its_address_is_masked() {
        let (url, _) = scripted_smtp_server(Script {
            rcpt_reply: "550 5.1.1 <ann@example.org>: Recipient address rejected: User unknown",
            ..ANSWERS
        })
        .await;
        let mailer = Mailer::smtp(&url, Duration::from_secs(5)).unwrap();
        let err = mailer.send(&email(&verify_email())).await.unwrap_err();
        assert!(matches!(err, MailError::Permanent(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("5.1.1"), "{text}");
        assert!(text.contains("<[address]>:"), "{text}");
        assert!(!text.contains("example.org"), "{text}");
    }

    #[tokio::test]
    async fn a_refusal_of_our_relay_is_retried() {
        let (url, _) = scripted_smtp_server(Script {
            rcpt_reply: "554 5.7.1 <ann@example.org>: Relay access denied",
            ..ANSWERS
        })
        .await;
        let mailer = Mailer::smtp(&url, Duration::from_secs(5)).unwrap();
        let err = mailer.send(&email(&verify_email())).await.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert!(!err.to_string().contains("ann@"), "{err}");
    }

    #[test]
    fn five_hundred_replies_are_final_only_about_the_recipient_or_the_message() {
        let cases = [
            (
                550,
                "5.1.1 <bob@example.org>: Recipient address rejected",
                Reply::Refused,
            ),
            (552, "5.2.2 Mailbox full", Reply::Refused),
            (
                552,
                "5.3.4 Message size exceeds fixed limit",
                Reply::Refused,
            ),
            (554, "5.6.0 Message content rejected", Reply::Refused),
            (554, "5.7.1 Relay access denied", Reply::Retry),
            (
                553,
                "5.7.1 Sender address rejected: not owned by user",
                Reply::Retry,
            ),
            (550, "5.4.5 Daily sending quota exceeded", Reply::Retry),
            (
                550,
                "5.7.606 Access denied, banned sending IP",
                Reply::Retry,
            ),
            (535, "Authentication credentials invalid", Reply::Retry),
            (530, "Must issue a STARTTLS command first", Reply::Retry),
            (
                550,
                "Requested action not taken: mailbox unavailable",
                Reply::Refused,
            ),
            // A version number or an address is not a status code.
            (550, "Postfix 3.5.1 says no to a.b@c.d", Reply::Refused),
        ];
        for (code, text, expected) in cases {
            assert_eq!(classify_reply(Some(code), text), expected, "{code} {text}");
        }
    }

    #[test]
    fn addresses_in_replies_are_masked() {
        assert_eq!(
            mask_addresses("550 5.1.1 <bob@example.org>: rejected, try (ann@x.y). ok"),
            "550 5.1.1 <[address]>: rejected, try ([address]). ok"
        );
        assert_eq!(mask_addresses("no address here"), "no address here");
        assert_eq!(
            mask_addresses("to: bob@example.org\nnext"),
            "to: [address]\nnext"
        );
        // Addresses and quotes of more than one byte a character: an international domain ending
        // the word, curly quotes around it (each once made the worker panic, and die).
        assert_eq!(
            mask_addresses("450 4.1.2 <x@пример.рф>: Domain not found"),
            "450 4.1.2 <[address]>: Domain not found"
        );
        assert_eq!(
            mask_addresses("554 5.7.1 ‹ann@example.org›: denied; «bo@é.fr» …"),
            "554 5.7.1 [address]: denied; [address] …"
        );
        assert_eq!(mask_addresses("user@ü"), "[address]");
    }

    #[test]
    fn error_text_is_one_bounded_line() {
        let long = format!("550 first\r\nsecond {}", "x".repeat(1000));
        let line = one_line(&long);
        assert!(!line.contains(['\r', '\n']));
        assert_eq!(line.chars().count(), MAX_ERROR_CHARS + 3);
    }
}
