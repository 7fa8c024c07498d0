//! The consent ledger, and accepting updated terms before anything else after they change.

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const PASSWORD: &str = "glacier Minnow 47 paperclip orbit";

async fn json(app: &TestApp, function: &str) -> (u16, serde_json::Value) {
    let response = app.call(function, &[]).await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// An app whose terms are at version 2.
async fn spawn_app_with_terms_v2() -> TestApp {
    spawn_app_with(|v| {
        v.insert("TERMS_VERSION".into(), "2".into());
    })
    .await
}

/// Rewrites the ledger as if `email` had accepted version 1 of the terms (before they changed).
async fn accepted_terms_v1(app: &TestApp, email: &str) {
    sea_orm::ConnectionTrait::execute_unprepared(
        &app.app_db,
        &format!(
            "UPDATE consents SET version = 1 WHERE document = 'terms' AND user_id = \
             (SELECT id FROM users WHERE email = '{email}')"
        ),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn the_ledger_lists_what_was_accepted_when_and_from_where() {
    let app = spawn_app().await;
    app.register_verified("ana@example.org", PASSWORD).await;
    app.sign_in("ana@example.org", PASSWORD).await;
    let (status, ledger) = json(&app, "consent_ledger").await;
    assert_eq!(status, 200);
    let entries = ledger.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let documents: Vec<&str> = entries
        .iter()
        .map(|e| e["document"].as_str().unwrap())
        .collect();
    assert!(documents.contains(&"Terms of service"), "{documents:?}");
    assert!(documents.contains(&"Privacy policy"), "{documents:?}");
    assert!(
        entries
            .iter()
            .all(|e| e["version"] == 1 && e["ip"] == "127.0.0.1")
    );
    assert_eq!(entries[0]["accepted"], "22 November 2026 at 12:00 UTC");
    assert_eq!(
        json(&app, "current_user").await.1["consent_required"],
        false
    );
}

#[tokio::test]
async fn updated_terms_must_be_accepted_before_anything_else() {
    let app = spawn_app_with_terms_v2().await;
    app.register_verified("ben@example.org", PASSWORD).await;
    // Ben accepted version 1 of the terms, before they changed.
    accepted_terms_v1(&app, "ben@example.org").await;
    app.sign_in("ben@example.org", PASSWORD).await;

    assert_eq!(json(&app, "current_user").await.1["consent_required"], true);
    assert_eq!(
        json(&app, "outstanding_consents").await.1,
        serde_json::json!({"documents": ["terms"], "shown": "terms:2"})
    );
    let (status, error) = json(&app, "list_sessions").await;
    assert_eq!(status, 403);
    assert_eq!(error["code"], "consent_required");
    // Pages send him to the question (the documents themselves stay readable).
    for (path, redirected) in [("/settings/profile", true), ("/", true), ("/terms", false)] {
        let response = app
            .client
            .get(app.url(path))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if redirected {
            assert_eq!(location.as_deref(), Some("/accept-terms"), "{path}");
        } else {
            assert_eq!(response.status(), 200, "{path}");
        }
    }

    // Two-factor settings are behind the question too.
    assert_eq!(
        json(&app, "two_factor_status").await.1["code"],
        "consent_required"
    );
    assert_eq!(json(&app, "start_two_factor_setup").await.0, 403);
    // But the account page (deleting the account) stays open, and its form learns whether it must ask
    // for a code.
    assert_eq!(
        json(&app, "two_factor_on").await,
        (200, serde_json::json!(false))
    );

    let response = app.call("accept_terms", &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        json(&app, "current_user").await.1["consent_required"],
        false
    );
    assert_eq!(json(&app, "list_sessions").await.0, 200);
    let ledger = json(&app, "consent_ledger").await.1;
    assert_eq!(ledger[0]["document"], "Terms of service");
    assert_eq!(ledger[0]["version"], 2);
    assert_eq!(ledger.as_array().unwrap().len(), 3, "the old entry is kept");
    assert_eq!(
        app.count("security_events WHERE kind = 'consent_accepted'")
            .await,
        1
    );
}

/// The session remembers that its person accepted everything in force (pages do not read the
/// ledger each time); that memory is theirs alone, not the next person's to sign in in the browser.
#[tokio::test]
async fn one_persons_accepted_terms_do_not_carry_over_to_the_next_sign_in() {
    let app = spawn_app_with_terms_v2().await;
    app.register_verified("ana@example.org", PASSWORD).await;
    app.register_verified("ben@example.org", PASSWORD).await;
    accepted_terms_v1(&app, "ben@example.org").await;

    app.sign_in("ana@example.org", PASSWORD).await;
    assert_eq!(
        json(&app, "current_user").await.1["consent_required"],
        false
    );
    // Remembered: once she has been found up to date, the ledger is not asked again.
    accepted_terms_v1(&app, "ana@example.org").await;
    assert_eq!(
        json(&app, "current_user").await.1["consent_required"],
        false
    );

    // Ben signs in in the same browser, on the same session data: he still has to accept.
    app.sign_in("ben@example.org", PASSWORD).await;
    assert_eq!(
        json(&app, "current_user").await.1["email"],
        "ben@example.org"
    );
    assert_eq!(json(&app, "current_user").await.1["consent_required"], true);
    assert_eq!(json(&app, "list_sessions").await.0, 403);
    assert_eq!(app.call("accept_terms", &[]).await.status(), 200);
    assert_eq!(
        json(&app, "current_user").await.1["consent_required"],
        false
    );
    assert_eq!(json(&app, "list_sessions").await.0, 200);
}

#[tokio::test]
async fn signing_in_records_that_all_is_accepted_so_the_first_page_need_not_ask() {
    let app = spawn_app_with_terms_v2().await;
    app.register_verified("ana@example.org", PASSWORD).await;
    app.sign_in("ana@example.org", PASSWORD).await;
    // What the sign-in found is kept in the session: the ledger is not read again for it.
    accepted_terms_v1(&app, "ana@example.org").await;
    assert_eq!(
        json(&app, "current_user").await.1["consent_required"],
        false
    );
}

#[tokio::test]
async fn a_consent_ledger_that_cannot_be_read_does_not_undo_a_sign_in() {
    let app = spawn_app().await;
    app.register_verified("ana@example.org", PASSWORD).await;
    // The sign-in's own look at the ledger fails; the password was right, and that stands.
    sea_orm::ConnectionTrait::execute_unprepared(&app.app_db, "DROP TABLE consents")
        .await
        .unwrap();
    let response = app.sign_in("ana@example.org", PASSWORD).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().contains_key("set-cookie"),
        "a session for the sign-in"
    );
}

/// Only what the page listed is accepted: a document whose version went up since it loaded (here the
/// privacy policy, while the page asked about the terms alone) is not recorded as accepted unseen.
/// And two acceptances at once (a double click, two tabs) are recorded once.
#[tokio::test]
async fn only_what_the_page_listed_is_accepted_and_only_once() {
    let app = spawn_app_with(|v| {
        v.insert("TERMS_VERSION".into(), "2".into());
        v.insert("PRIVACY_VERSION".into(), "2".into());
    })
    .await;
    app.register_verified("ben@example.org", PASSWORD).await;
    // Ben accepted version 1 of both; the page he opened asked about the terms only.
    sea_orm::ConnectionTrait::execute_unprepared(&app.app_db, "UPDATE consents SET version = 1")
        .await
        .unwrap();
    app.sign_in("ben@example.org", PASSWORD).await;
    let refused = app.call("accept_terms", &[("shown", "terms:2")]).await;
    assert_eq!(refused.status(), 400);
    let text = refused.text().await.unwrap();
    assert!(text.contains("changed while this page was open"), "{text}");
    assert_eq!(app.count("consents").await, 2, "nothing recorded");
    // Nor when a version the page showed is not the one in force.
    let refused = app
        .call("accept_terms", &[("shown", "privacy:1,terms:2")])
        .await;
    assert_eq!(refused.status(), 400);
    assert_eq!(app.count("consents").await, 2, "nothing recorded");

    let (first, second) = tokio::join!(
        app.call("accept_terms", &[("shown", "privacy:2,terms:2")]),
        app.call("accept_terms", &[("shown", "privacy:2,terms:2")]),
    );
    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);
    assert_eq!(app.count("consents WHERE version = 2").await, 2);
    assert_eq!(
        app.count("security_events WHERE kind = 'consent_accepted'")
            .await,
        1
    );
}
