//! The sessions list: every signed-in browser with its device and times, signing out one or all others,
//! and the idle and absolute limits on a session's life (moved by the fake clock).

use serde_json::Value;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const PASSWORD: &str = "glacier Minnow 47 paperclip orbit";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const SAFARI: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like \
                      Gecko) Version/18.1 Safari/605.1.15";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like \
                      Gecko) Chrome/131.0.0.0 Safari/537.36";

/// A browser with its own cookie jar and user agent.
struct Browser {
    client: reqwest::Client,
    address: String,
}

impl Browser {
    async fn signed_in(app: &TestApp, email: &str, user_agent: &str) -> Browser {
        Browser::signed_in_with(app, email, PASSWORD, user_agent).await
    }

    async fn signed_in_with(
        app: &TestApp,
        email: &str,
        password: &str,
        user_agent: &str,
    ) -> Browser {
        let browser = Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .cookie_store(true)
                .user_agent(user_agent)
                .build()
                .unwrap(),
            address: app.address.clone(),
        };
        let response = browser
            .call("sign_in", &[("email", email), ("password", password)])
            .await;
        assert_eq!(response.status(), 200, "sign in");
        browser
    }

    async fn call(&self, function: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(format!("{}/api/{function}", self.address))
            .header("origin", &self.address)
            .header("sec-fetch-site", "same-origin")
            .form(form)
            .send()
            .await
            .unwrap()
    }

    async fn json(&self, function: &str, form: &[(&str, &str)]) -> Value {
        let response = self.call(function, form).await;
        assert_eq!(response.status(), 200, "{function}");
        serde_json::from_str(&response.text().await.unwrap()).unwrap()
    }

    async fn signed_in_as(&self) -> Option<String> {
        self.json("current_user", &[]).await["email"]
            .as_str()
            .map(str::to_owned)
    }

    async fn sessions(&self) -> Vec<Value> {
        self.json("list_sessions", &[])
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

async fn account(app: &TestApp, email: &str) {
    app.register_verified(email, PASSWORD).await;
}

#[tokio::test]
async fn every_session_is_listed_and_another_one_can_be_signed_out() {
    let app = spawn_app().await;
    account(&app, "ana@example.org").await;
    let laptop = Browser::signed_in(&app, "ana@example.org", FIREFOX).await;
    let office = Browser::signed_in(&app, "ana@example.org", CHROME).await;

    let listed = laptop.sessions().await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let me = listed
        .iter()
        .find(|s| s["current"] == true)
        .expect("current");
    assert_eq!(me["device"], "Firefox on Linux");
    assert_eq!(me["ip"], "127.0.0.1");
    assert_eq!(me["started"], "22 November 2026 at 12:00 UTC");
    let other = listed
        .iter()
        .find(|s| s["current"] == false)
        .expect("other");
    assert_eq!(other["device"], "Chrome on Windows 10");
    let other_id = other["id"].as_str().unwrap().to_owned();
    assert_eq!(other_id.len(), 64, "an opaque hash, not the session id");

    // Signing out the office browser: its cookie stops working on its next request.
    let response = laptop.call("revoke_session", &[("id", &other_id)]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(office.signed_in_as().await, None);
    assert_eq!(
        laptop.signed_in_as().await.as_deref(),
        Some("ana@example.org")
    );
    assert_eq!(laptop.sessions().await.len(), 1);
    assert_eq!(
        app.count("security_events WHERE kind = 'session_revoked'")
            .await,
        1
    );

    // The current session is signed out with "Sign out", not from the list.
    let me_id = me["id"].as_str().unwrap();
    assert_eq!(
        laptop
            .call("revoke_session", &[("id", me_id)])
            .await
            .status(),
        400
    );
    assert_eq!(
        laptop.signed_in_as().await.as_deref(),
        Some("ana@example.org")
    );
}

#[tokio::test]
async fn nobody_can_sign_out_someone_else() {
    let app = spawn_app().await;
    account(&app, "ben@example.org").await;
    account(&app, "cy@example.org").await;
    let ben = Browser::signed_in(&app, "ben@example.org", FIREFOX).await;
    let cy = Browser::signed_in(&app, "cy@example.org", CHROME).await;
    let cy_id = cy.sessions().await[0]["id"].as_str().unwrap().to_owned();

    let response = ben.call("revoke_session", &[("id", &cy_id)]).await;
    assert_eq!(response.status(), 404);
    assert_eq!(cy.signed_in_as().await.as_deref(), Some("cy@example.org"));
    assert_eq!(ben.sessions().await.len(), 1, "Ben sees only his own");

    // Signed out, the list is not available at all.
    let stranger = reqwest::Client::new()
        .post(app.url("/api/list_sessions"))
        .header("origin", &app.address)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 401);
}

#[tokio::test]
async fn signing_out_everywhere_else_keeps_this_session() {
    let app = spawn_app().await;
    account(&app, "dee@example.org").await;
    let here = Browser::signed_in(&app, "dee@example.org", FIREFOX).await;
    let a = Browser::signed_in(&app, "dee@example.org", CHROME).await;
    let b = Browser::signed_in(&app, "dee@example.org", CHROME).await;
    assert_eq!(here.sessions().await.len(), 3);

    assert_eq!(here.json("revoke_other_sessions", &[]).await, 2);
    assert_eq!(a.signed_in_as().await, None);
    assert_eq!(b.signed_in_as().await, None);
    assert_eq!(
        here.signed_in_as().await.as_deref(),
        Some("dee@example.org")
    );
    let left = here.sessions().await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["current"], true);
}

#[tokio::test]
async fn an_idle_session_ends_after_the_idle_timeout_and_activity_keeps_it_alive() {
    let app = spawn_app().await;
    account(&app, "eli@example.org").await;
    let browser = Browser::signed_in(&app, "eli@example.org", FIREFOX).await;

    // Active every 20 minutes for two hours: still signed in (the timeout slides).
    for _ in 0..6 {
        app.clock.advance(time::Duration::minutes(20));
        assert_eq!(
            browser.signed_in_as().await.as_deref(),
            Some("eli@example.org")
        );
    }
    // Then 31 minutes of nothing: signed out.
    app.clock.advance(time::Duration::minutes(31));
    assert_eq!(browser.signed_in_as().await, None);
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_however_active() {
    let app = spawn_app_with(|v| {
        v.insert("SESSION_LIFETIME_HOURS".into(), "12".into());
    })
    .await;
    account(&app, "fay@example.org").await;
    let browser = Browser::signed_in(&app, "fay@example.org", FIREFOX).await;

    // Active every 20 minutes for 11 h 40 min: still signed in.
    for _ in 0..35 {
        app.clock.advance(time::Duration::minutes(20));
        assert_eq!(
            browser.signed_in_as().await.as_deref(),
            Some("fay@example.org")
        );
    }
    app.clock.advance(time::Duration::minutes(20));
    assert_eq!(
        browser.signed_in_as().await,
        None,
        "12 hours after signing in"
    );
    // The session is gone from the list of a new sign-in, and the new one works.
    let again = Browser::signed_in(&app, "fay@example.org", FIREFOX).await;
    assert_eq!(again.sessions().await.len(), 1);
}

#[test]
fn the_lifetime_is_configurable_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut vars = nestegg::server::config::Vars::new();
    vars.insert(
        "DATA_DIR".to_owned(),
        dir.path().to_str().unwrap().to_owned(),
    );
    vars.insert("SESSION_LIFETIME_HOURS".to_owned(), "0".to_owned());
    let err = nestegg::server::config::Settings::from_vars(&vars).unwrap_err();
    assert!(err.to_string().contains("SESSION_LIFETIME_HOURS"), "{err}");
}

// ---------------------------------------------------------------------------------------------------
// New-sign-in alerts and "this wasn't me"
// ---------------------------------------------------------------------------------------------------

async fn alerts(app: &TestApp, to: &str) -> Vec<crate::helpers::Email> {
    // Wait for the outbox to drain what is queued, then read what went out.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while app.count("outbox_emails WHERE status = 'pending'").await > 0
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.emails_to(to, 1)
        .await
        .into_iter()
        .filter(|m| m.subject.contains("New sign-in"))
        .collect()
}

#[tokio::test]
async fn a_sign_in_from_a_new_browser_or_address_is_emailed_once() {
    let app = spawn_app().await;
    account(&app, "gus@example.org").await;
    // The first sign-in of an account has nothing to compare with.
    let _first = Browser::signed_in(&app, "gus@example.org", FIREFOX).await;
    assert!(alerts(&app, "gus@example.org").await.is_empty());
    // The same browser again: nothing.
    let _again = Browser::signed_in(&app, "gus@example.org", FIREFOX).await;
    assert!(alerts(&app, "gus@example.org").await.is_empty());

    // A new browser: one email naming it, with a single-use link.
    let _other = Browser::signed_in(&app, "gus@example.org", CHROME).await;
    let mail = alerts(&app, "gus@example.org").await;
    assert_eq!(mail.len(), 1);
    assert!(
        mail[0].text.contains("Chrome on Windows 10"),
        "{}",
        mail[0].text
    );
    assert!(mail[0].text.contains("127.0.0.1"), "{}", mail[0].text);
    assert!(mail[0].link(&app, "/not-me").contains("token="));
    assert_eq!(
        app.count("security_events WHERE kind = 'new_device_sign_in'")
            .await,
        1
    );
    // Seen now: no second email for it.
    let _other_again = Browser::signed_in(&app, "gus@example.org", CHROME).await;
    assert_eq!(alerts(&app, "gus@example.org").await.len(), 1);
}

/// Devices are remembered while they are used, and forgotten once unused for `AUDIT_RETENTION_DAYS`
/// (their fingerprint derives from an IP address); a forgotten one is new again, and since the account
/// has signed in before, its next sign-in is emailed about.
#[tokio::test]
async fn an_unused_device_is_forgotten_after_the_retention_period_and_then_emailed_about_again() {
    let app = spawn_app_with(|v| {
        v.insert("AUDIT_RETENTION_DAYS".into(), "30".into());
        v.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "100".into());
    })
    .await;
    let email = "uma@example.org";
    account(&app, email).await;
    let _first = Browser::signed_in(&app, email, FIREFOX).await;
    let _second = Browser::signed_in(&app, email, CHROME).await;
    assert_eq!(alerts(&app, email).await.len(), 1);
    // Chrome is used again on day 20; Firefox is not.
    app.clock.advance(time::Duration::days(20));
    let _again = Browser::signed_in(&app, email, CHROME).await;
    app.clock.advance(time::Duration::days(15));
    let tick = nestegg::server::jobs::run_due(&app.state, "test")
        .await
        .unwrap();
    assert!(
        tick.ran
            .contains(&(nestegg::server::jobs::Job::PurgeHistory, "ok")),
        "{tick:?}"
    );
    // Chrome, seen 15 days ago, is still known; Firefox, 35 days ago, is forgotten and alerts again.
    let _chrome = Browser::signed_in(&app, email, CHROME).await;
    assert_eq!(alerts(&app, email).await.len(), 1);
    let _firefox = Browser::signed_in(&app, email, FIREFOX).await;
    let mail = alerts(&app, email).await;
    assert_eq!(mail.len(), 2, "a forgotten device is new again");
    assert!(mail[1].text.contains("Firefox"), "{}", mail[1].text);
    // Once every device is forgotten, the account has still signed in before: the next sign-in is
    // not taken for its first one, which is never emailed about.
    app.clock.advance(time::Duration::days(31));
    nestegg::server::jobs::run_due(&app.state, "test")
        .await
        .unwrap();
    let _back = Browser::signed_in(&app, email, CHROME).await;
    assert_eq!(alerts(&app, email).await.len(), 3);
}

/// A release from before the "signed in before" marker deletes it with the devices (a report it
/// handles during a rolling upgrade, or after a rollback): the trail still tells that the account has
/// signed in before, and the next new device is emailed about.
#[tokio::test]
async fn without_devices_or_marker_the_trail_tells_that_the_account_signed_in_before() {
    let app = spawn_app().await;
    account(&app, "vic@example.org").await;
    let _first = Browser::signed_in(&app, "vic@example.org", FIREFOX).await;
    sea_orm::ConnectionTrait::execute_unprepared(&app.app_db, "DELETE FROM known_devices")
        .await
        .unwrap();
    let _second = Browser::signed_in(&app, "vic@example.org", CHROME).await;
    let mail = alerts(&app, "vic@example.org").await;
    assert_eq!(mail.len(), 1, "the second sign-in is not the first");
    assert!(mail[0].text.contains("Chrome"), "{}", mail[0].text);
}

#[tokio::test]
async fn this_was_not_me_signs_out_everywhere_and_requires_a_new_password() {
    // Five sign-in attempts from one address, the whole of the default minute's allowance.
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "100".into());
    })
    .await;
    account(&app, "hana@example.org").await;
    let owner = Browser::signed_in(&app, "hana@example.org", FIREFOX).await;
    let intruder = Browser::signed_in(&app, "hana@example.org", CHROME).await;
    let mail = alerts(&app, "hana@example.org").await;
    let token = mail[0].token(&app, "/not-me");

    assert_eq!(use_link(&app, "report_sign_in", &token).await, 200);
    assert_eq!(owner.signed_in_as().await, None);
    assert_eq!(intruder.signed_in_as().await, None);
    assert_eq!(app.count("sessions WHERE user_id IS NOT NULL").await, 0);

    // The old password no longer signs in (same answer as any wrong password).
    let again = intruder
        .call(
            "sign_in",
            &[("email", "hana@example.org"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(again.status(), 400);

    // A reset link arrived, and it works.
    let resets: Vec<_> = app
        .emails_to("hana@example.org", 3)
        .await
        .into_iter()
        .filter(|m| m.subject.contains("Reset your Nest Egg password"))
        .collect();
    assert_eq!(resets.len(), 1);
    let reset = resets[0].token(&app, "/reset-password");
    let new_password = "velvet Harbor 93 lantern quiver";
    let response = app
        .call(
            "reset_password",
            &[("token", reset.as_str()), ("password", new_password)],
        )
        .await;
    assert_eq!(response.status(), 200);
    // Whoever reads the mailbox may get back in before the owner: that sign-in is not taken for the
    // account's first one (which is never emailed), it sets off the alert again.
    let response = intruder
        .call(
            "sign_in",
            &[("email", "hana@example.org"), ("password", new_password)],
        )
        .await;
    assert_eq!(response.status(), 200);
    let mail = alerts(&app, "hana@example.org").await;
    assert_eq!(mail.len(), 2, "the sign-in after the report is emailed");
    assert!(mail[1].text.contains("Chrome"), "{}", mail[1].text);
    let response = owner
        .call(
            "sign_in",
            &[("email", "hana@example.org"), ("password", new_password)],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.count("security_events WHERE kind = 'sign_in_reported'")
            .await,
        1
    );

    // The link worked once.
    assert_eq!(use_link(&app, "report_sign_in", &token).await, 400);
}

#[tokio::test]
async fn this_was_not_me_links_expire_after_a_day() {
    let app = spawn_app().await;
    account(&app, "ira@example.org").await;
    let _owner = Browser::signed_in(&app, "ira@example.org", FIREFOX).await;
    let _other = Browser::signed_in(&app, "ira@example.org", CHROME).await;
    let token = alerts(&app, "ira@example.org").await[0].token(&app, "/not-me");
    app.clock
        .advance(time::Duration::hours(24) + time::Duration::seconds(1));
    let hashes_before = app.state.hasher.computed();
    assert_eq!(use_link(&app, "report_sign_in", &token).await, 400);
    // Neither an expired link nor a made-up one costs an argon2 hash: anyone may post them, and
    // the hashing slots are shared with every sign-in.
    let response = app
        .call(
            "report_sign_in",
            &[("token", "made-up-token-of-plausible-length-0123456789")],
        )
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(app.state.hasher.computed(), hashes_before);
}

// ---------------------------------------------------------------------------------------------------
// Taking the account back after a change of address
// ---------------------------------------------------------------------------------------------------

/// The one email to `to` whose subject contains `subject`, once the outbox has sent what is queued.
async fn only_mail_about(app: &TestApp, to: &str, subject: &str) -> crate::helpers::Email {
    let mut found = mail_about(app, to, subject).await;
    assert_eq!(found.len(), 1, "emails to {to} about {subject:?}");
    found.remove(0)
}

async fn mail_about(app: &TestApp, to: &str, subject: &str) -> Vec<crate::helpers::Email> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while app.count("outbox_emails WHERE status = 'pending'").await > 0
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.emails_to(to, 0)
        .await
        .into_iter()
        .filter(|m| m.subject.contains(subject))
        .collect()
}

/// `browser`, signed in to the account at `from` with its password, moves it to `to` and confirms
/// the new address from its mailbox.
async fn move_address(app: &TestApp, browser: &Browser, from: &str, to: &str) {
    let earlier = confirmation_links(app, to).await;
    let response = browser
        .call("change_email", &[("password", PASSWORD), ("new_email", to)])
        .await;
    assert_eq!(response.status(), 200, "change {from} to {to}");
    let mut token = None;
    for _ in 0..100 {
        token = confirmation_links(app, to)
            .await
            .into_iter()
            .find(|t| !earlier.contains(t));
        if token.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let token = token.expect("the confirmation link");
    let response = browser
        .call("confirm_email_change", &[("token", token.as_str())])
        .await;
    assert_eq!(response.status(), 200, "confirm {to}");
    assert_eq!(browser.signed_in_as().await.as_deref(), Some(to));
}

/// The confirmation links of changes of address that reached `to` so far.
async fn confirmation_links(app: &TestApp, to: &str) -> Vec<String> {
    app.emails_to(to, 0)
        .await
        .iter()
        .filter(|m| m.text.contains("/confirm-email-change"))
        .map(|m| m.token(app, "/confirm-email-change"))
        .collect()
}

/// Posts `token` to `function` (`restore_email`, `report_sign_in`), as the link's page does; the status.
async fn use_link(app: &TestApp, function: &str, token: &str) -> u16 {
    app.call(function, &[("token", token)])
        .await
        .status()
        .as_u16()
}

const CHANGED: &str = "email address was changed";
const RESET: &str = "Reset your Nest Egg password";
const NEW_PASSWORD: &str = "velvet Harbor 93 lantern quiver";

async fn sign_in_status(app: &TestApp, email: &str, password: &str) -> u16 {
    app.call("sign_in", &[("email", email), ("password", password)])
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_change_of_address_is_undone_from_the_old_address_which_gets_the_account_back() {
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "100".into());
    })
    .await;
    account(&app, "ana@example.org").await;
    let owner = Browser::signed_in(&app, "ana@example.org", FIREFOX).await;
    let intruder = Browser::signed_in(&app, "ana@example.org", CHROME).await;
    move_address(&app, &intruder, "ana@example.org", "eve@evil.example").await;
    // A sign-in from yet another browser now alerts the intruder's address, with a link of its own.
    let _another = Browser::signed_in(&app, "eve@evil.example", SAFARI).await;
    let intruders_not_me = alerts(&app, "eve@evil.example").await[0].token(&app, "/not-me");

    // The old address is told, with a link to undo it; the intruder's password change (or anything
    // else they do with the account) does not disarm it.
    let notice = only_mail_about(&app, "ana@example.org", CHANGED).await;
    assert!(notice.text.contains("e•••@evil.example"), "{}", notice.text);
    assert!(!notice.text.contains("eve@evil.example"), "{}", notice.text);
    let token = notice.token(&app, "/restore-email");
    let response = intruder
        .call(
            "change_password",
            &[
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(mail_about(&app, "eve@evil.example", RESET).await.is_empty());

    let response = app
        .call("restore_email", &[("token", token.as_str())])
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(owner.signed_in_as().await, None);
    assert_eq!(intruder.signed_in_as().await, None);
    // Neither address signs in with any password the intruder knows, and the reset link goes to
    // the old address, not the intruder's.
    assert_eq!(
        sign_in_status(&app, "eve@evil.example", NEW_PASSWORD).await,
        400
    );
    assert_eq!(
        sign_in_status(&app, "ana@example.org", NEW_PASSWORD).await,
        400
    );
    assert_eq!(sign_in_status(&app, "ana@example.org", PASSWORD).await, 400);
    // The address replaced is told (the owner's, had they left this one because someone reads it).
    let told = only_mail_about(&app, "eve@evil.example", "was put back").await;
    assert!(told.text.contains("a•••@example.org"), "{}", told.text);
    assert!(mail_about(&app, "eve@evil.example", RESET).await.is_empty());
    let reset = only_mail_about(&app, "ana@example.org", RESET).await;
    let reset = reset.token(&app, "/reset-password");
    let chosen = "quartz Meadow 58 trolley sparrow";
    let response = app
        .call(
            "reset_password",
            &[("token", reset.as_str()), ("password", chosen)],
        )
        .await;
    assert_eq!(response.status(), 200);
    let back = Browser::signed_in_with(&app, "ana@example.org", chosen, FIREFOX).await;
    assert_eq!(
        back.signed_in_as().await.as_deref(),
        Some("ana@example.org")
    );
    assert_eq!(
        app.count(
            "security_events WHERE kind = 'email_restored' \
             AND details LIKE '%eve@evil.example%' AND details LIKE '%ana@example.org%'"
        )
        .await,
        1
    );
    // The link worked once, and the links sent to the intruder's address since the change are dead:
    // theirs would put that address back.
    assert_eq!(use_link(&app, "restore_email", &token).await, 400);
    assert_eq!(
        use_link(&app, "report_sign_in", &intruders_not_me).await,
        400
    );
    assert_eq!(app.count("users WHERE email = 'ana@example.org'").await, 1);
}

#[tokio::test]
async fn this_was_not_me_after_a_change_of_address_puts_the_address_back() {
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "100".into());
    })
    .await;
    account(&app, "ana@example.org").await;
    let _owner = Browser::signed_in(&app, "ana@example.org", FIREFOX).await;
    let intruder = Browser::signed_in(&app, "ana@example.org", CHROME).await;
    let not_me = alerts(&app, "ana@example.org").await[0].token(&app, "/not-me");
    move_address(&app, &intruder, "ana@example.org", "eve@evil.example").await;

    assert_eq!(use_link(&app, "report_sign_in", &not_me).await, 200);
    assert_eq!(intruder.signed_in_as().await, None);
    assert!(mail_about(&app, "eve@evil.example", RESET).await.is_empty());
    let reset = only_mail_about(&app, "ana@example.org", RESET)
        .await
        .token(&app, "/reset-password");
    let response = app
        .call(
            "reset_password",
            &[("token", reset.as_str()), ("password", NEW_PASSWORD)],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        sign_in_status(&app, "ana@example.org", NEW_PASSWORD).await,
        200
    );
    assert_eq!(
        app.count("security_events WHERE kind IN ('email_restored', 'sign_in_reported')")
            .await,
        2
    );
}

#[tokio::test]
async fn the_first_address_outranks_later_ones_and_one_taken_since_is_not_put_back() {
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "100".into());
        v.insert("RATE_LIMIT_REGISTER_PER_HOUR".into(), "100".into());
    })
    .await;
    account(&app, "ana@example.org").await;
    let intruder = Browser::signed_in(&app, "ana@example.org", CHROME).await;
    move_address(&app, &intruder, "ana@example.org", "eve@evil.example").await;
    app.clock.advance(time::Duration::minutes(5));
    move_address(&app, &intruder, "eve@evil.example", "eve2@evil.example").await;
    let first = only_mail_about(&app, "ana@example.org", CHANGED)
        .await
        .token(&app, "/restore-email");
    let second = only_mail_about(&app, "eve@evil.example", CHANGED)
        .await
        .token(&app, "/restore-email");
    app.clock.advance(time::Duration::minutes(5));

    // The intruder's own link takes the account back to their first address: Ana's still works.
    assert_eq!(use_link(&app, "restore_email", &second).await, 200);
    app.clock.advance(time::Duration::minutes(5));

    // Meanwhile someone tries to sign up with Ana's address: it is on hold while her link works, so
    // no account is made (the answer is the one any sign-up gets), and its mailbox is told why.
    let sign_up = |email: &'static str| {
        let app = &app;
        async move {
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let response = client
                .post(app.url("/api/register"))
                .header("origin", &app.address)
                .form(&[
                    ("email", email),
                    ("display_name", "Someone"),
                    ("password", PASSWORD),
                    ("accept_terms", "on"),
                    ("accept_privacy", "on"),
                ])
                .send()
                .await
                .unwrap();
            let status = response.status();
            let location = response.headers().get("location").cloned();
            let cookie = crate::helpers::session_cookie(&response).is_some();
            (status, location, cookie, response.text().await.unwrap())
        }
    };
    let free = sign_up("newcomer@example.org").await;
    assert_eq!(sign_up("ana@example.org").await, free, "the same answer");
    assert_eq!(app.count("users WHERE email = 'ana@example.org'").await, 0);
    let held = only_mail_about(&app, "ana@example.org", "tried to create").await;
    assert!(held.text.contains("Put my address back"), "{}", held.text);

    // Someone who can confirm it from its mailbox may still take it, though: then it cannot be put
    // back, and nothing changes (the link is not used up).
    account(&app, "zoe@example.org").await;
    let zoe = Browser::signed_in(&app, "zoe@example.org", FIREFOX).await;
    move_address(&app, &zoe, "zoe@example.org", "ana@example.org").await;
    let refused = app
        .call("restore_email", &[("token", first.as_str())])
        .await;
    assert_eq!(refused.status(), 400);
    let text = refused.text().await.unwrap();
    assert!(text.contains("belongs to another account now"), "{text}");
    assert_eq!(
        app.count("users WHERE email = 'eve@evil.example'").await,
        1,
        "still at the intruder's address"
    );

    // Once that address is free again, the first link puts it back.
    move_address(&app, &zoe, "ana@example.org", "zoe@elsewhere.example").await;
    assert_eq!(use_link(&app, "restore_email", &first).await, 200);
    assert_eq!(app.count("users WHERE email = 'ana@example.org'").await, 1);
    assert_eq!(app.count("users WHERE email LIKE '%evil.example'").await, 0);
}

/// An intruder's own "this wasn't me" link, sent in the same second as the owner's restore link
/// (to their address, after the change), must not void the owner's.
#[tokio::test]
async fn an_intruders_link_of_the_same_second_does_not_void_the_owners() {
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "100".into());
    })
    .await;
    account(&app, "ana@example.org").await;
    let _owner = Browser::signed_in(&app, "ana@example.org", FIREFOX).await;
    let intruder = Browser::signed_in(&app, "ana@example.org", CHROME).await;
    move_address(&app, &intruder, "ana@example.org", "eve@evil.example").await;
    let _another = Browser::signed_in(&app, "eve@evil.example", SAFARI).await;
    let intruders_not_me = alerts(&app, "eve@evil.example").await[0].token(&app, "/not-me");
    let restore = only_mail_about(&app, "ana@example.org", CHANGED)
        .await
        .token(&app, "/restore-email");
    assert_eq!(
        use_link(&app, "report_sign_in", &intruders_not_me).await,
        200
    );
    assert_eq!(use_link(&app, "restore_email", &restore).await, 200);
    assert_eq!(app.count("users WHERE email = 'ana@example.org'").await, 1);
}

/// An address never confirmed may be someone else's (a typo): it gets no link to take the account.
#[tokio::test]
async fn an_unconfirmed_address_cannot_take_the_account_back() {
    let app = spawn_app().await;
    let response = app.register("bbo@example.org", "Bob", PASSWORD).await;
    assert!(response.status().is_success() || response.status().is_redirection());
    let bob = Browser::signed_in(&app, "bbo@example.org", FIREFOX).await;
    let _laptop = Browser::signed_in(&app, "bbo@example.org", CHROME).await;
    let not_me = alerts(&app, "bbo@example.org").await[0].token(&app, "/not-me");
    move_address(&app, &bob, "bbo@example.org", "bob@example.org").await;
    assert!(
        mail_about(&app, "bbo@example.org", CHANGED)
            .await
            .is_empty()
    );
    assert_eq!(
        app.count("account_tokens WHERE purpose = 'restore_email'")
            .await,
        0
    );
    // Nor does the new-sign-in alert it got: it secures the account, but the address stays.
    assert_eq!(use_link(&app, "report_sign_in", &not_me).await, 200);
    assert_eq!(app.count("users WHERE email = 'bob@example.org'").await, 1);
    assert!(mail_about(&app, "bbo@example.org", RESET).await.is_empty());
}

/// A sign-in checks the password against the account it read before its (slow) hash: if the account
/// was taken back meanwhile, that sign-in must not mail a "this wasn't me" link to the address it
/// read, which could put that address back.
#[tokio::test]
async fn a_sign_in_that_read_the_account_before_it_was_taken_back_sends_no_link() {
    use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "100".into());
    })
    .await;
    account(&app, "ana@example.org").await;
    let intruder = Browser::signed_in(&app, "ana@example.org", CHROME).await;
    move_address(&app, &intruder, "ana@example.org", "eve@evil.example").await;
    let read_before = nestegg::server::entities::user::Entity::find()
        .filter(nestegg::server::entities::user::Column::Email.eq("eve@evil.example"))
        .one(&app.app_db)
        .await
        .unwrap()
        .unwrap();
    let restore = only_mail_about(&app, "ana@example.org", CHANGED)
        .await
        .token(&app, "/restore-email");
    assert_eq!(use_link(&app, "restore_email", &restore).await, 200);

    // The sign-in that read the account at the intruder's address finishes now, from a new device.
    let meta = nestegg::server::api_support::RequestMeta {
        user_agent: SAFARI.to_owned(),
        ..nestegg::server::api_support::RequestMeta::internal()
    };
    nestegg::server::services::sign_in_alerts::after_sign_in(&app.state, &meta, &read_before)
        .await
        .unwrap();
    assert_eq!(
        app.count("account_tokens WHERE purpose = 'not_me' AND used_at IS NULL")
            .await,
        0
    );
    assert!(
        mail_about(&app, "eve@evil.example", "New sign-in")
            .await
            .is_empty()
    );
}

/// Deleting the account right after moving it away takes the old address's link with it: the old
/// address is told that the account was deleted, rather than left with a link that stops working.
#[tokio::test]
async fn deleting_the_account_after_moving_it_tells_the_address_that_could_take_it_back() {
    let app = spawn_app().await;
    account(&app, "ana@example.org").await;
    let intruder = Browser::signed_in(&app, "ana@example.org", CHROME).await;
    move_address(&app, &intruder, "ana@example.org", "eve@evil.example").await;
    let response = intruder
        .call(
            "delete_account",
            &[
                ("password", PASSWORD),
                ("confirm_email", "eve@evil.example"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    only_mail_about(&app, "ana@example.org", "account was deleted").await;
    only_mail_about(&app, "eve@evil.example", "account was deleted").await;
}

/// A restore link used while the account has the address it would put back (moved away and back
/// again) secures the account but records no change of address: the account held it all along.
#[tokio::test]
async fn a_restore_link_for_the_address_the_account_has_records_no_change_of_address() {
    let app = spawn_app().await;
    account(&app, "ana@example.org").await;
    let ana = Browser::signed_in(&app, "ana@example.org", FIREFOX).await;
    move_address(&app, &ana, "ana@example.org", "ana@new.example").await;
    app.clock.advance(time::Duration::minutes(5));
    move_address(&app, &ana, "ana@new.example", "ana@example.org").await;
    let restore = only_mail_about(&app, "ana@example.org", CHANGED)
        .await
        .token(&app, "/restore-email");
    assert_eq!(use_link(&app, "restore_email", &restore).await, 200);
    assert_eq!(ana.signed_in_as().await, None);
    assert_eq!(
        app.count("security_events WHERE kind = 'email_restored'")
            .await,
        0
    );
    assert_eq!(
        app.count("security_events WHERE kind = 'email_restore_used'")
            .await,
        1
    );
}

/// An address on hold is told of sign-ups with it a few times an hour at most, as any address
/// anyone can have mailed.
#[tokio::test]
async fn an_address_on_hold_is_told_of_sign_ups_a_few_times_an_hour_at_most() {
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_REGISTER_PER_HOUR".into(), "100".into());
    })
    .await;
    account(&app, "ana@example.org").await;
    let ana = Browser::signed_in(&app, "ana@example.org", FIREFOX).await;
    move_address(&app, &ana, "ana@example.org", "ana@new.example").await;
    for _ in 0..5 {
        app.register("ana@example.org", "Someone", PASSWORD).await;
    }
    assert_eq!(app.count("users WHERE email = 'ana@example.org'").await, 0);
    assert_eq!(
        mail_about(&app, "ana@example.org", "tried to create")
            .await
            .len(),
        3
    );
}
