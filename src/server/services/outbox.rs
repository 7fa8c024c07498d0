//! Putting an email in the outbox, inside the caller's transaction: it is sent if and only if the change
//! that caused it is committed. The worker in `mail::worker` delivers it.

use sea_orm::{
    ActiveModelTrait as _, ActiveValue::Set, ColumnTrait as _, Condition, ConnectionTrait, DbErr,
    EntityTrait as _, QueryFilter as _,
};

use crate::server::entities::{outbox_email, user};
use crate::server::mail::Template;
use crate::server::state::AppState;

/// Queues `template` for the account, at its current address.
pub async fn enqueue_for<C: ConnectionTrait>(
    db: &C,
    state: &AppState,
    now: i64,
    account: &user::Model,
    template: &Template,
) -> Result<String, DbErr> {
    enqueue(db, state, now, &account.email, Some(&account.id), template).await
}

/// Queues `template` for `to`. `owner` is the account the email belongs to, if any: deletion and the
/// data export go by it, since an address can pass from one account to another. Returns the email's
/// message id, by which it can be withdrawn.
pub async fn enqueue<C: ConnectionTrait>(
    db: &C,
    state: &AppState,
    now: i64,
    to: &str,
    owner: Option<&str>,
    template: &Template,
) -> Result<String, DbErr> {
    let settings = &state.settings;
    metrics::counter!("emails_queued_total", "kind" => template.kind()).increment(1);
    let rendered = template.render();
    let message_id = uuid::Uuid::new_v4().to_string();
    // Bodies carry one-time links: sealed at rest until the worker sends them (and then cleared).
    let body_text = state
        .secret_box
        .seal(&rendered.text, &body_context("text", &message_id));
    let body_html = state
        .secret_box
        .seal(&rendered.html, &body_context("html", &message_id));
    outbox_email::ActiveModel {
        message_id: Set(message_id.clone()),
        kind: Set(template.kind().to_owned()),
        to_address: Set(to.to_owned()),
        user_id: Set(owner.map(str::to_owned)),
        subject: Set(rendered.subject),
        body_text: Set(body_text),
        body_html: Set(body_html),
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
    Ok(message_id)
}

/// Withdraws the emails among `message_ids` that have not gone out and are not being sent right now
/// (a worker's lease on one means it may already be on the wire: that one goes). Failed ones go too,
/// so an operator's retry cannot send what was withdrawn. Returns how many were withdrawn. On PostgreSQL a concurrent claim and this delete are ordered by the row lock, and the
/// loser sees the winner's change; SQLite runs one writer at a time.
pub async fn withdraw<C: ConnectionTrait>(
    db: &C,
    now: i64,
    message_ids: impl IntoIterator<Item = String>,
) -> Result<u64, DbErr> {
    let message_ids: Vec<String> = message_ids.into_iter().collect();
    if message_ids.is_empty() {
        return Ok(0);
    }
    let withdrawn = outbox_email::Entity::delete_many()
        .filter(outbox_email::Column::MessageId.is_in(message_ids))
        .filter(outbox_email::Column::Status.is_in([STATUS_PENDING, STATUS_FAILED]))
        .filter(
            Condition::any()
                .add(outbox_email::Column::LockedUntil.is_null())
                .add(outbox_email::Column::LockedUntil.lt(now)),
        )
        .exec(db)
        .await?
        .rows_affected;
    if withdrawn > 0 {
        metrics::counter!("emails_withdrawn_total").increment(withdrawn);
    }
    Ok(withdrawn)
}

/// The account's mail: what was sent on its behalf, at whatever address, and mail without an owner
/// (an invitation, or a row from before owners were recorded) to its current address since `since`
/// (Unix seconds; 0 for all of it).
pub fn mail_of(account: &user::Model, since: i64) -> Condition {
    Condition::any()
        .add(outbox_email::Column::UserId.eq(&account.id))
        .add(
            Condition::all()
                .add(outbox_email::Column::UserId.is_null())
                .add(outbox_email::Column::ToAddress.eq(&account.email))
                .add(outbox_email::Column::CreatedAt.gte(since)),
        )
}

pub const STATUS_PENDING: &str = "pending";
pub const STATUS_SENT: &str = "sent";
pub const STATUS_FAILED: &str = "failed";

/// What a sealed body is bound to: its column and its email, so it cannot be moved elsewhere.
pub fn body_context(part: &str, message_id: &str) -> String {
    format!("outbox_emails.body_{part}:{message_id}")
}
