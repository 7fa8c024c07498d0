//! The consent ledger: which version of the terms and the privacy policy a person accepted, when and
//! from where; and asking again when `TERMS_VERSION` or `PRIVACY_VERSION` goes up.

use sea_orm::{
    ActiveModelTrait as _, ActiveValue::Set, ColumnTrait as _, ConnectionTrait, DbErr,
    EntityTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _,
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
    ledger_in(&state.db, user_id).await
}

async fn ledger_in<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
) -> Result<Vec<consent::Model>, DbErr> {
    consent::Entity::find()
        .filter(consent::Column::UserId.eq(user_id))
        .order_by_desc(consent::Column::AcceptedAt)
        .order_by_desc(consent::Column::Id)
        .all(db)
        .await
}

/// The documents whose version in force this person has not accepted yet.
pub async fn outstanding(state: &AppState, user_id: &str) -> Result<Vec<&'static str>, DbErr> {
    outstanding_in(&state.db, state, user_id).await
}

async fn outstanding_in<C: ConnectionTrait>(
    db: &C,
    state: &AppState,
    user_id: &str,
) -> Result<Vec<&'static str>, DbErr> {
    let accepted = ledger_in(db, user_id).await?;
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

/// Names `documents` with the versions in force ("privacy:2,terms:3"): what a page asks to accept.
pub fn versions_key(state: &AppState, documents: &[&str]) -> String {
    let mut listed: Vec<String> = current(state)
        .into_iter()
        .filter(|(document, _)| documents.contains(document))
        .map(|(document, version)| format!("{document}:{version}"))
        .collect();
    listed.sort_unstable();
    listed.join(",")
}

/// Records acceptance of the versions in force of every outstanding document.
///
/// `shown` names the documents and versions the page asked to accept ([`versions_key`]). If they are
/// not the outstanding ones any more (a version went up since the page loaded, or another instance has
/// a newer one in a rolling upgrade), nothing is recorded: the ledger must hold only what the person
/// was shown. Accepting
/// twice at once (a double click, two tabs) records it once.
pub async fn accept_current(
    state: &AppState,
    meta: &RequestMeta,
    account: &user::Model,
    shown: Option<&str>,
) -> Result<(), AuthError> {
    let now = now(state);
    let txn = crate::server::db::begin_write(&state.db).await?;
    // Concurrent acceptances take their turn here (SQLite's write transaction already does that).
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        user::Entity::find_by_id(account.id.clone())
            .lock_exclusive()
            .one(&txn)
            .await?;
    }
    let documents = outstanding_in(&txn, state, &account.id).await?;
    if documents.is_empty() {
        return Ok(());
    }
    if let Some(shown) = shown
        && shown != versions_key(state, &documents)
    {
        return Err(AuthError::Invalid {
            field: None,
            message: "What you are asked to accept changed while this page was open. Read the \
                      documents listed now, then accept again."
                .to_owned(),
        });
    }
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
