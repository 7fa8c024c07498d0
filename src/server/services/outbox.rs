//! Putting an email in the outbox, inside the caller's transaction: it is sent if and only if the change
//! that caused it is committed. The worker in `mail::worker` delivers it.

use sea_orm::{ActiveModelTrait as _, ActiveValue::Set, ConnectionTrait, DbErr};

use crate::server::config::Settings;
use crate::server::entities::outbox_email;
use crate::server::mail::Template;

pub async fn enqueue<C: ConnectionTrait>(
    db: &C,
    settings: &Settings,
    now: i64,
    to: &str,
    template: &Template,
) -> Result<(), DbErr> {
    let rendered = template.render();
    let message_id = uuid::Uuid::new_v4().to_string();
    outbox_email::ActiveModel {
        message_id: Set(message_id.clone()),
        kind: Set(template.kind().to_owned()),
        to_address: Set(to.to_owned()),
        subject: Set(rendered.subject),
        body_text: Set(rendered.text),
        body_html: Set(rendered.html),
        status: Set(STATUS_PENDING.to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        locked_until: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        sent_at: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    if settings.mail.log_links {
        // Development without SMTP only (see `MailSettings::log_links`): the newcomer's way in.
        for link in template.links() {
            tracing::info!(kind = template.kind(), %message_id, "development email link: {link}");
        }
    }
    Ok(())
}

pub const STATUS_PENDING: &str = "pending";
pub const STATUS_SENT: &str = "sent";
pub const STATUS_FAILED: &str = "failed";
