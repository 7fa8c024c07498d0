//! The consent ledger: which version of the terms and the privacy policy a person accepted, when and
//! from where; and asking again when `TERMS_VERSION` or `PRIVACY_VERSION` goes up.

use sea_orm::{
    ActiveModelTrait as _, ActiveValue::Set, ColumnTrait as _, DbErr, EntityTrait as _,
    QueryFilter as _, QueryOrder as _,
};

use crate::server::api_support::RequestMeta;
use crate::server::entities::{consent, user};
use crate::server::services::audit::Event;
use crate::server::services::auth::{AuthError, commit_with_event, now};
use crate::server::state::AppState;

pub const TERMS: &str = "terms";
pub const PRIVACY: &str = "privacy";

/// The documents and the versions in force.
fn current(state: &AppState) -> [(&'static str, i32); 2] {
    [
        (TERMS, state.settings.accounts.terms_version),
        (PRIVACY, state.settings.accounts.privacy_version),
    ]
}

/// Every consent of `user_id`, newest first.
pub async fn ledger(state: &AppState, user_id: &str) -> Result<Vec<consent::Model>, DbErr> {
    consent::Entity::find()
        .filter(consent::Column::UserId.eq(user_id))
        .order_by_desc(consent::Column::AcceptedAt)
        .order_by_desc(consent::Column::Id)
        .all(&state.db)
        .await
}

/// The documents whose version in force this person has not accepted yet.
pub async fn outstanding(state: &AppState, user_id: &str) -> Result<Vec<&'static str>, DbErr> {
    let accepted = ledger(state, user_id).await?;
    Ok(current(state)
        .into_iter()
        .filter(|(document, version)| {
            !accepted
                .iter()
                .any(|c| c.document == *document && c.version >= *version)
        })
        .map(|(document, _)| document)
        .collect())
}

/// Records acceptance of the versions in force of every outstanding document.
pub async fn accept_current(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
) -> Result<(), AuthError> {
    let documents = outstanding(state, &account.id).await?;
    if documents.is_empty() {
        return Ok(());
    }
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    for (document, version) in current(state) {
        if !documents.contains(&document) {
            continue;
        }
        consent::ActiveModel {
            user_id: Set(account.id.clone()),
            document: Set(document.to_owned()),
            version: Set(version),
            accepted_at: Set(now),
            ip: Set(meta.ip.to_string()),
            user_agent: Set(meta.user_agent.clone()),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
    }
    let event = Event::new("consent_accepted")
        .user(&account.id)
        .detail("documents", documents.join(","));
    commit_with_event(txn, state, meta, now, event).await
}
