//! `nestegg rotate-keys`: re-seals every stored secret under the current `ENCRYPTION_KEY`.
//!
//! Safe to interrupt and run again: each value is re-sealed with its own conditional update (only if it
//! still holds the ciphertext that was read), values already under the current key are skipped, and
//! the old keys stay listed in `ENCRYPTION_KEYS_PREVIOUS` until a run reports nothing left to rotate.

use sea_orm::{
    ColumnTrait as _, DatabaseConnection, DbErr, EntityTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _,
};

use crate::server::entities::{outbox_email, totp_credential};
use crate::server::services::mfa::{replacement_context, secret_context};
use crate::server::services::outbox::body_context;
use crate::server::services::secret_box::SecretBox;

const BATCH: u64 = 200;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Values re-sealed under the current key by this run.
    pub rotated: u64,
    /// Values that were already under the current key.
    pub current: u64,
    /// Values no configured key opens (their key is missing from `ENCRYPTION_KEYS_PREVIOUS`, or they
    /// were tampered with). Left untouched.
    pub unreadable: u64,
    /// Values rewritten by the app while this run was re-sealing them. The writer may be an instance
    /// still running with an older key, so these are not known to be done: run again.
    pub changed: u64,
}

impl Report {
    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Rotated => self.rotated += 1,
            Outcome::Current => self.current += 1,
            Outcome::Unreadable => self.unreadable += 1,
            Outcome::Raced => self.changed += 1,
        }
    }
}

enum Outcome {
    Rotated,
    Current,
    Unreadable,
    Raced,
}

/// Opens `sealed` with whichever key sealed it and seals it again under the current key; `None` when it
/// needs nothing, `Err` when no key opens it.
fn reseal(secret_box: &SecretBox, sealed: &str, context: &str) -> Result<Option<String>, ()> {
    if sealed.is_empty() || !secret_box.needs_rotation(sealed) {
        return Ok(None);
    }
    let plain = secret_box.open(sealed, context).map_err(|_| ())?;
    Ok(Some(secret_box.seal(&plain, context)))
}

pub async fn rotate(db: &DatabaseConnection, secret_box: &SecretBox) -> Result<Report, DbErr> {
    let mut report = Report::default();
    rotate_totp_secrets(db, secret_box, &mut report).await?;
    rotate_outbox_bodies(db, secret_box, &mut report).await?;
    Ok(report)
}

async fn rotate_totp_secrets(
    db: &DatabaseConnection,
    secret_box: &SecretBox,
    report: &mut Report,
) -> Result<(), DbErr> {
    let mut after = String::new();
    loop {
        let rows = totp_credential::Entity::find()
            .filter(totp_credential::Column::UserId.gt(after.as_str()))
            .order_by_asc(totp_credential::Column::UserId)
            .limit(BATCH)
            .all(db)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.user_id.clone();
        for row in rows {
            // The secret in use, and a new phone's waiting for its first code.
            let columns = [
                (
                    totp_credential::Column::Secret,
                    Some(&row.secret),
                    secret_context(&row.user_id),
                ),
                (
                    totp_credential::Column::ReplacementSecret,
                    row.replacement_secret.as_ref(),
                    replacement_context(&row.user_id),
                ),
            ];
            for (column, sealed, context) in columns {
                let Some(sealed) = sealed else { continue };
                let outcome = match reseal(secret_box, sealed, &context) {
                    Ok(None) => Outcome::Current,
                    Err(()) => {
                        tracing::error!(user_id = %row.user_id, "a TOTP secret opens with no configured key");
                        Outcome::Unreadable
                    }
                    Ok(Some(resealed)) => {
                        let updated = totp_credential::Entity::update_many()
                            .col_expr(column, resealed.into())
                            .filter(totp_credential::Column::UserId.eq(&row.user_id))
                            .filter(column.eq(sealed.as_str()))
                            .exec(db)
                            .await?;
                        if updated.rows_affected == 1 {
                            Outcome::Rotated
                        } else {
                            Outcome::Raced
                        }
                    }
                };
                report.count(outcome);
            }
        }
    }
}

async fn rotate_outbox_bodies(
    db: &DatabaseConnection,
    secret_box: &SecretBox,
    report: &mut Report,
) -> Result<(), DbErr> {
    let mut after = 0i64;
    loop {
        let rows = outbox_email::Entity::find()
            .filter(outbox_email::Column::Id.gt(after))
            .order_by_asc(outbox_email::Column::Id)
            .limit(BATCH)
            .all(db)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.id;
        for row in rows {
            for (column, kind, sealed) in [
                (outbox_email::Column::BodyText, "text", &row.body_text),
                (outbox_email::Column::BodyHtml, "html", &row.body_html),
            ] {
                let context = body_context(kind, &row.message_id);
                let outcome = match reseal(secret_box, sealed, &context) {
                    Ok(None) => Outcome::Current,
                    Err(()) => {
                        tracing::error!(
                            email_id = row.id,
                            "an email body opens with no configured key"
                        );
                        Outcome::Unreadable
                    }
                    Ok(Some(resealed)) => {
                        let updated = outbox_email::Entity::update_many()
                            .col_expr(column, resealed.into())
                            .filter(outbox_email::Column::Id.eq(row.id))
                            .filter(column.eq(sealed.as_str()))
                            .exec(db)
                            .await?;
                        if updated.rows_affected == 1 {
                            Outcome::Rotated
                        } else {
                            Outcome::Raced
                        }
                    }
                };
                report.count(outcome);
            }
        }
    }
}
