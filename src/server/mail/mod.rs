//! Email: what the accounts feature says ([`templates`]) and how it gets delivered ([`transport`]).
//!
//! Nothing sends email from a request handler. Every email is rendered and written to the outbox
//! table (`outbox_emails`) in the same database transaction as the change that causes it: the sign-up,
//! the reset request, the email change. So an email exists if and only if its change committed, and a
//! slow or unreachable mail server never slows down or fails a request. A background worker claims
//! pending rows and hands each one to [`Mailer::send`]:
//!
//! - `Ok` marks the row sent (and clears its bodies, which may hold one-time links);
//! - [`MailError::Transient`] schedules another attempt later, with backoff;
//! - any other error marks the row failed: retrying would not change the answer.
//!
//! Delivery is at least once: a crash between the server accepting an email and the row being marked
//! sent means it is sent again. The row's UUID becomes the Message-ID (`<{id}@nestegg>`), so every
//! attempt is recognisably the same message, and the file transport simply overwrites its file.
//!
//! The worker and the table live elsewhere; this module only renders and delivers.

pub mod templates;
pub mod transport;
pub mod worker;

pub use templates::{Rendered, Template, escape_html};
pub use transport::{MailError, Mailer, OutgoingEmail};
