//! Two-factor authentication (TOTP) over HTTP: setting it up, the code step of signing in (expiry,
//! wrong-code limits, lock-out, replay, rate limit), backup codes, sudo mode, turning it off,
//! `REQUIRE_MFA`, secrets at rest, and `nestegg rotate-keys`, on whichever database backend the suite
//! runs against.
//!
//! Codes are computed the way an authenticator app would, from the secret the setup shows and the app's
//! fake clock. The server refuses a time step it has already accepted (replay protection), so tests move
//! the clock on by one 30-second step between uses of a code.

use std::process::{Command, Output};

use nestegg::server::clock::Clock as _;
use nestegg::server::config::SecretKey;
use nestegg::server::entities::{
    backup_code, outbox_email, security_event, session, totp_credential,
};
use nestegg::server::mail::Template;
use nestegg::server::services::mfa::{replacement_context, secret_context};
use nestegg::server::services::outbox::{self, body_context};
use nestegg::server::services::secret_box::SecretBox;
use nestegg::server::services::totp::{TotpSecret, normalize_backup_code};
use sea_orm::EntityTrait as _;
use serde_json::Value;

use crate::helpers::{
    Email, KEY_A, KEY_B, TestApp, logs, session_cookie, session_id, spawn_app, spawn_app_with,
};

const PASSWORD: &str = "glacier Minnow 47 paperclip orbit";
const NEW_PASSWORD: &str = "velvet Harbor 93 lantern quiver";
/// The display name `TestApp::register_verified` registers with.
const NAME: &str = "Test Person";
const TWO_FACTOR_STEP: &str = "/login/two-factor";
/// What the settings pages show someone who is not signed in.
const SIGN_IN_PROMPT: &str = "Sign in to see and change your account settings";
/// Crockford's base32, the alphabet of backup codes.
const BACKUP_ALPHABET: &str = "0123456789abcdefghjkmnpqrstvwxyz";

// ---------------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------------

/// A browser: its own cookie jar, calling server functions the way our pages do (fetch, same origin).
struct Browser {
    client: reqwest::Client,
    address: String,
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .cookie_store(true)
                .build()
                .expect("client"),
            address: app.address.clone(),
        }
    }

    async fn call(&self, function: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(format!("{}/api/{function}", self.address))
            .header("origin", &self.address)
            .header("sec-fetch-site", "same-origin")
            .form(form)
            .send()
            .await
            .expect("request sent")
    }

    async fn sign_in(&self, email: &str, password: &str) -> reqwest::Response {
        self.call("sign_in", &[("email", email), ("password", password)])
            .await
    }

    async fn sign_in_to(&self, email: &str, password: &str, next: &str) -> reqwest::Response {
        self.call(
            "sign_in",
            &[("email", email), ("password", password), ("next", next)],
        )
        .await
    }

    async fn verify_code(&self, code: &str) -> reqwest::Response {
        self.call("verify_sign_in_code", &[("code", code)]).await
    }

    /// Finishes a move to a new phone with a code from the new app.
    async fn confirm_move(&self, code: &str) -> reqwest::Response {
        self.call("confirm_two_factor_replacement", &[("code", code)])
            .await
    }

    /// `current_user`: `null` when signed out.
    async fn current_user(&self) -> Value {
        ok_json(self.call("current_user", &[]).await).await
    }

    async fn user_email(&self) -> Option<String> {
        self.current_user()
            .await
            .get("email")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    async fn two_factor_status(&self) -> Value {
        ok_json(self.call("two_factor_status", &[]).await).await
    }

    async fn pending_sign_in(&self) -> bool {
        ok_json(self.call("pending_sign_in", &[]).await)
            .await
            .as_bool()
            .expect("pending_sign_in answers a boolean")
    }

    async fn page(&self, path: &str) -> String {
        let response = self
            .client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status(), 200, "{path}");
        response.text().await.unwrap()
    }
}

/// What enabling two-factor authentication left the test with.
struct Mfa {
    secret: TotpSecret,
    /// The secret as the setup showed it, without the spaces.
    base32: String,
    backup_codes: Vec<String>,
}

/// The body of a successful call, as JSON.
async fn ok_json(response: reqwest::Response) -> Value {
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

/// Asserts a successful call (the body is shown when it was not).
async fn assert_ok(response: reqwest::Response) {
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
}

/// Asserts a refusal with `status` and error `code`; returns the JSON error body.
async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    let actual = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(actual.as_u16(), status, "{body}");
    let error: Value =
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("not a JSON error: {body}"));
    assert_eq!(error["code"], code, "{body}");
    error
}

/// A 400 that belongs next to `field`; returns its message.
async fn expect_field_error(response: reqwest::Response, field: &str) -> String {
    let error = expect_error(response, 400, "invalid_input").await;
    assert_eq!(error["field"], field, "{error}");
    message(&error)
}

fn message(error: &Value) -> String {
    error["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {error}"))
        .to_owned()
}

fn location(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A server-function call carrying only `cookie` (as an attacker replaying it would).
async fn call_with_cookie(app: &TestApp, cookie: &str, function: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url(&format!("/api/{function}")))
        .header("cookie", cookie)
        .header("origin", &app.address)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap()
}

fn unix_now(app: &TestApp) -> i64 {
    app.clock.now().unix_timestamp()
}

/// The code an authenticator app shows at the app's current (fake) time.
fn code_now(app: &TestApp, secret: &TotpSecret) -> String {
    code_at(secret, unix_now(app))
}

fn code_at(secret: &TotpSecret, unix: i64) -> String {
    secret.code_at(unix as u64).expect("a code")
}

/// Six digits that match none of the codes the server accepts right now (±1 step).
fn wrong_code(app: &TestApp, secret: &TotpSecret) -> String {
    let now = unix_now(app);
    let valid: Vec<String> = [-30, 0, 30]
        .iter()
        .map(|offset| code_at(secret, now + offset))
        .collect();
    (0..10)
        .map(|digit: u32| digit.to_string().repeat(6))
        .find(|candidate| !valid.contains(candidate))
        .expect("ten candidates, at most three valid")
}

/// Moves the fake clock on by one TOTP step, so the next code is not a replay.
fn next_step(app: &TestApp) {
    app.clock.advance(time::Duration::seconds(30));
}

/// An app that allows many codes (and sign-ins) a minute from one IP, so limits other than the
/// per-IP rate limit are what a test measures.
async fn app_for_many_codes() -> TestApp {
    spawn_app_with(|v| {
        v.insert("RATE_LIMIT_MFA_PER_MINUTE".into(), "1000".into());
        v.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "1000".into());
    })
    .await
}

/// Registers and verifies `email`, and signs it in on a new browser (password only).
async fn signed_in(app: &TestApp, email: &str) -> Browser {
    app.register_verified(email, PASSWORD).await;
    let browser = Browser::new(app);
    let response = browser.sign_in(email, PASSWORD).await;
    assert_eq!(location(&response).as_deref(), Some("/"));
    assert_ok(response).await;
    browser
}

/// The setup's secret from a `two_factor_status` answer, without the spaces of the typed form.
fn setup_key(status: &Value) -> String {
    status["setup"]["manual_key"]
        .as_str()
        .unwrap_or_else(|| panic!("no setup details in {status}"))
        .replace(' ', "")
}

/// The backup codes of a successful `enable_two_factor` / `regenerate_backup_codes`.
async fn backup_codes_of(response: reqwest::Response) -> Vec<String> {
    let body = ok_json(response).await;
    let codes: Vec<String> = body["codes"]
        .as_array()
        .unwrap_or_else(|| panic!("no codes in {body}"))
        .iter()
        .map(|c| c.as_str().expect("a code is a string").to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    codes
}

/// Sets up an authenticator for the signed-in `browser` (which must be in sudo mode) and confirms
/// it with a first code. Moves the clock on one step afterwards, so the caller's next code is fresh.
async fn enable_mfa(app: &TestApp, browser: &Browser) -> Mfa {
    assert_ok(browser.call("start_two_factor_setup", &[]).await).await;
    let base32 = setup_key(&browser.two_factor_status().await);
    let secret = TotpSecret::from_base32(&base32).expect("the setup shows a base32 secret");
    let response = browser
        .call("enable_two_factor", &[("code", &code_now(app, &secret))])
        .await;
    let backup_codes = backup_codes_of(response).await;
    next_step(app);
    Mfa {
        secret,
        base32,
        backup_codes,
    }
}

/// A new browser that entered the right password for an account with two-factor authentication: it
/// waits at the code step.
async fn sign_in_pending(app: &TestApp, email: &str) -> Browser {
    let browser = Browser::new(app);
    let response = browser.sign_in(email, PASSWORD).await;
    assert_eq!(location(&response).as_deref(), Some(TWO_FACTOR_STEP));
    assert_ok(response).await;
    browser
}

/// Waits for at least `at_least` emails to `to` and returns the one whose subject contains `subject`.
async fn email_about(app: &TestApp, to: &str, at_least: usize, subject: &str) -> Email {
    let mail = app.emails_to(to, at_least).await;
    mail.iter()
        .find(|m| m.subject.contains(subject))
        .cloned()
        .unwrap_or_else(|| {
            let subjects: Vec<&str> = mail.iter().map(|m| m.subject.as_str()).collect();
            panic!("no email about {subject:?} to {to}: {subjects:?}")
        })
}

/// Waits (bounded) until the outbox worker has sent every email and cleared its sealed bodies.
async fn wait_until_outbox_is_empty(app: &TestApp) {
    let unsent = "outbox_emails WHERE status <> 'sent' OR body_text <> '' OR body_html <> ''";
    for _ in 0..100 {
        if app.count(unsent).await == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the outbox did not empty");
}

/// The (only) TOTP credential in `db`.
async fn credential(db: &sea_orm::DatabaseConnection) -> totp_credential::Model {
    totp_credential::Entity::find()
        .one(db)
        .await
        .unwrap()
        .expect("credential")
}

fn assert_backup_code_format(code: &str) {
    assert_eq!(code.len(), 11, "{code}");
    let (left, right) = code.split_at(5);
    assert!(right.starts_with('-'), "{code}");
    for c in left.chars().chain(right[1..].chars()) {
        assert!(BACKUP_ALPHABET.contains(c), "{code}");
    }
}

/// How a person might type a backup code off paper: upper case, spaces instead of the dash, and the
/// letter O for a zero.
fn typed_sloppily(code: &str) -> String {
    format!(
        "  {}  ",
        code.to_uppercase().replace('-', "  ").replace('0', "O")
    )
}

// ---------------------------------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn setup_shows_a_qr_code_and_key_checks_a_first_code_and_returns_ten_backup_codes() {
    let app = spawn_app().await;
    let ana = signed_in(&app, "ana@example.org").await;

    let status = ana.two_factor_status().await;
    assert!(status["enabled_on"].is_null(), "{status}");
    assert_eq!(status["backup_codes_remaining"], 0);
    assert_eq!(status["reauth_needed"], false);
    assert_eq!(status["required"], false);
    assert!(status["setup"].is_null());

    assert_ok(ana.call("start_two_factor_setup", &[]).await).await;
    let status = ana.two_factor_status().await;
    assert!(
        status["enabled_on"].is_null(),
        "not on before a code confirms it"
    );
    let setup = &status["setup"];
    let manual_key = setup["manual_key"].as_str().expect("manual key");
    let groups: Vec<&str> = manual_key.split(' ').collect();
    assert_eq!(groups.len(), 8, "{manual_key}");
    for group in &groups {
        assert_eq!(group.len(), 4, "{manual_key}");
        assert!(
            group
                .chars()
                .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)),
            "base32: {manual_key}"
        );
    }
    let key = manual_key.replace(' ', "");
    assert_eq!(
        setup["otpauth_uri"],
        format!(
            "otpauth://totp/Nest%20Egg:ana%40example.org?secret={key}&issuer=Nest%20Egg\
             &algorithm=SHA1&digits=6&period=30"
        )
    );
    let svg = setup["qr_svg"].as_str().expect("QR code");
    assert!(svg.starts_with("<svg"), "{svg:.60}");
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(
        app.count("totp_credentials WHERE confirmed_at IS NULL")
            .await,
        1,
        "a setup in progress, not enforced"
    );
    assert_eq!(
        app.count("security_events WHERE kind = 'mfa_setup_started'")
            .await,
        1
    );
    let secret = TotpSecret::from_base32(&key).expect("a valid secret");

    // Wrong or malformed codes are refused next to the code field, and change nothing.
    let wrong = ana
        .call("enable_two_factor", &[("code", &wrong_code(&app, &secret))])
        .await;
    expect_field_error(wrong, "code").await;
    let malformed = ana.call("enable_two_factor", &[("code", "12ab")]).await;
    expect_field_error(malformed, "code").await;
    assert!(ana.two_factor_status().await["enabled_on"].is_null());
    assert_eq!(app.count("backup_codes").await, 0);

    let response = ana
        .call("enable_two_factor", &[("code", &code_now(&app, &secret))])
        .await;
    let codes = backup_codes_of(response).await;
    for code in &codes {
        assert_backup_code_format(code);
    }
    let mut distinct = codes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10, "{codes:?}");

    let status = ana.two_factor_status().await;
    assert_eq!(status["enabled_on"], "22 November 2026 at 12:00 UTC");
    assert_eq!(status["backup_codes_remaining"], 10);
    assert!(status["setup"].is_null(), "no secret shown once it is on");
    assert_eq!(app.count("backup_codes").await, 10);

    let mail = email_about(
        &app,
        "ana@example.org",
        2,
        "Two-factor authentication is on",
    )
    .await;
    for code in &codes {
        assert!(!mail.text.contains(code.as_str()), "codes are not emailed");
    }
    assert_eq!(
        app.count("security_events WHERE kind = 'mfa_enabled'")
            .await,
        1
    );

    // An enabled authenticator cannot be replaced by starting another setup.
    let again = expect_error(
        ana.call("start_two_factor_setup", &[]).await,
        400,
        "invalid_input",
    )
    .await;
    assert!(message(&again).contains("already on"), "{again}");
}

// ---------------------------------------------------------------------------------------------------
// Signing in
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_password_alone_reaches_only_the_code_step_and_a_code_completes_the_sign_in() {
    let app = spawn_app().await;
    let owner = signed_in(&app, "ben@example.org").await;
    let mfa = enable_mfa(&app, &owner).await;

    let browser = Browser::new(&app);
    let response = browser
        .sign_in_to("ben@example.org", PASSWORD, "/settings/profile")
        .await;
    assert_eq!(location(&response).as_deref(), Some(TWO_FACTOR_STEP));
    let pending_cookie = session_cookie(&response).expect("a session for the code step");
    assert_ok(response).await;

    // The waiting session is signed in to nothing.
    assert!(browser.current_user().await.is_null());
    expect_error(
        browser.call("two_factor_status", &[]).await,
        401,
        "unauthenticated",
    )
    .await;
    expect_error(
        browser
            .call(
                "change_password",
                &[
                    ("current_password", PASSWORD),
                    ("new_password", NEW_PASSWORD),
                ],
            )
            .await,
        401,
        "unauthenticated",
    )
    .await;
    let page = browser.page("/settings/security").await;
    assert!(page.contains(SIGN_IN_PROMPT), "a sign-in prompt");
    assert!(!page.contains(NAME), "the account is not shown");
    // The same page does show the account to its signed-in owner (so the checks above can fail).
    let owners_page = owner.page("/settings/security").await;
    assert!(owners_page.contains(NAME) && !owners_page.contains(SIGN_IN_PROMPT));
    assert!(browser.pending_sign_in().await);
    assert_eq!(
        app.count("security_events WHERE kind = 'sign_in_password_ok'")
            .await,
        1
    );

    let response = browser.verify_code(&code_now(&app, &mfa.secret)).await;
    assert_eq!(
        location(&response).as_deref(),
        Some("/settings/profile"),
        "the `next` given with the password"
    );
    let cookie = session_cookie(&response).expect("a new session id");
    assert_ne!(cookie, pending_cookie, "the session id is replaced again");
    assert_ok(response).await;

    assert_eq!(
        browser.user_email().await.as_deref(),
        Some("ben@example.org")
    );
    assert!(!browser.pending_sign_in().await);
    let status = browser.two_factor_status().await;
    assert!(status["enabled_on"].is_string());
    assert_eq!(
        status["reauth_needed"], false,
        "the password was just entered"
    );
    assert_eq!(
        app.count(r#"security_events WHERE kind = 'sign_in' AND details LIKE '%"method":"totp"%'"#)
            .await,
        1
    );

    // The cookie of the code step is worth nothing afterwards.
    let replay = call_with_cookie(&app, &pending_cookie, "current_user").await;
    assert_eq!(replay.text().await.unwrap(), "null");
    let replay = call_with_cookie(&app, &pending_cookie, "pending_sign_in").await;
    assert_eq!(replay.text().await.unwrap(), "false");
}

#[tokio::test]
async fn the_code_step_expires_after_five_minutes() {
    let app = spawn_app().await;
    let owner = signed_in(&app, "cleo@example.org").await;
    let mfa = enable_mfa(&app, &owner).await;
    let browser = sign_in_pending(&app, "cleo@example.org").await;

    app.clock.advance(time::Duration::minutes(5));
    assert!(
        browser.pending_sign_in().await,
        "five minutes is still in time"
    );
    app.clock.advance(time::Duration::seconds(1));

    let code = code_now(&app, &mfa.secret);
    let error = expect_error(browser.verify_code(&code).await, 400, "invalid_input").await;
    assert!(message(&error).contains("sign in again"), "{error}");
    assert!(!browser.pending_sign_in().await);
    assert!(browser.current_user().await.is_null());

    // The code itself was fine: after the password again, it is accepted.
    let browser = sign_in_pending(&app, "cleo@example.org").await;
    assert_ok(browser.verify_code(&code).await).await;
    assert_eq!(
        browser.user_email().await.as_deref(),
        Some("cleo@example.org")
    );
}

#[tokio::test]
async fn five_wrong_codes_stop_the_sign_in_and_tell_the_owner() {
    // A high account lock-out threshold, so the pending sign-in's own limit is what is measured.
    let app = spawn_app_with(|v| {
        v.insert("LOCKOUT_THRESHOLD".into(), "20".into());
        v.insert("RATE_LIMIT_MFA_PER_MINUTE".into(), "1000".into());
        v.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "1000".into());
    })
    .await;
    let owner = signed_in(&app, "dora@example.org").await;
    let mfa = enable_mfa(&app, &owner).await;
    let browser = sign_in_pending(&app, "dora@example.org").await;
    let wrong = wrong_code(&app, &mfa.secret);

    for attempt in 1..=4 {
        let text = expect_field_error(browser.verify_code(&wrong).await, "code").await;
        let left = 5 - attempt;
        let expected = format!("{left} {} left", if left == 1 { "try" } else { "tries" });
        assert!(text.contains(&expected), "attempt {attempt}: {text}");
        assert!(browser.pending_sign_in().await);
    }
    let fifth = expect_error(browser.verify_code(&wrong).await, 400, "invalid_input").await;
    assert!(
        message(&fifth).contains("this sign-in was stopped"),
        "{fifth}"
    );
    assert!(fifth["field"].is_null());
    assert!(!browser.pending_sign_in().await);

    // Even the right code cannot finish the stopped sign-in.
    let right = expect_error(
        browser.verify_code(&code_now(&app, &mfa.secret)).await,
        400,
        "invalid_input",
    )
    .await;
    assert!(message(&right).contains("sign in again"), "{right}");
    assert!(browser.current_user().await.is_null());

    // The owner hears that someone has their password.
    let mail = email_about(&app, "dora@example.org", 3, "Failed sign-in attempts").await;
    assert!(mail.text.contains("/forgot-password"), "{}", mail.text);
    assert_eq!(
        app.count("outbox_emails WHERE kind = 'mfa_failures'").await,
        1
    );
    assert_eq!(
        app.count("security_events WHERE kind = 'mfa_sign_in_abandoned'")
            .await,
        1
    );
    assert_eq!(
        app.count("security_events WHERE kind = 'locked_out'").await,
        0,
        "below the account threshold"
    );

    // The account is not locked: the password and a fresh code sign in.
    let response = browser.sign_in("dora@example.org", PASSWORD).await;
    assert_eq!(location(&response).as_deref(), Some(TWO_FACTOR_STEP));
    next_step(&app);
    let response = browser.verify_code(&code_now(&app, &mfa.secret)).await;
    assert_eq!(location(&response).as_deref(), Some("/"));
    assert_ok(response).await;
    assert_eq!(
        browser.user_email().await.as_deref(),
        Some("dora@example.org")
    );
}

#[tokio::test]
async fn changing_the_password_does_not_end_a_run_of_wrong_codes() {
    let app = app_for_many_codes().await;
    let ivy = signed_in(&app, "ivy@example.org").await;
    let mfa = enable_mfa(&app, &ivy).await;
    let confirm = |password: &'static str, code: String| {
        let ivy = &ivy;
        async move {
            ivy.call(
                "confirm_password",
                &[("password", password), ("code", code.as_str())],
            )
            .await
        }
    };
    // Someone with Ivy's session and password, but not her phone: four wrong codes …
    for _ in 0..4 {
        expect_field_error(
            confirm(PASSWORD, wrong_code(&app, &mfa.secret)).await,
            "code",
        )
        .await;
    }
    // … then a password change, which asks for no code, does not start them a new run …
    assert_ok(
        ivy.call(
            "change_password",
            &[
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
            ],
        )
        .await,
    )
    .await;
    // … so the fifth wrong code locks this browser, and even the right code is refused now.
    let fifth = confirm(NEW_PASSWORD, wrong_code(&app, &mfa.secret)).await;
    let fifth = expect_error(fifth, 400, "invalid_input").await;
    assert!(message(&fifth).contains("Too many attempts"), "{fifth}");
    // Not the advice to reset the password: a reset does not lift a lock set by codes.
    assert!(!message(&fifth).contains("reset"), "{fifth}");
    let refused = confirm(NEW_PASSWORD, code_now(&app, &mfa.secret)).await;
    assert_eq!(refused.status(), 400);
    let body = refused.text().await.unwrap();
    assert!(body.contains("Too many attempts"), "{body}");
}

#[tokio::test]
async fn wrong_codes_count_toward_the_account_lock_out() {
    let app = app_for_many_codes().await;
    let owner = signed_in(&app, "eve@example.org").await;
    let mfa = enable_mfa(&app, &owner).await;
    let browser = sign_in_pending(&app, "eve@example.org").await;
    let wrong = wrong_code(&app, &mfa.secret);

    for _ in 0..4 {
        expect_field_error(browser.verify_code(&wrong).await, "code").await;
    }
    let fifth = expect_error(browser.verify_code(&wrong).await, 400, "invalid_input").await;
    // Not the usual advice to reset the password: a reset does not lift a lock set by codes.
    assert_eq!(
        message(&fifth),
        "Too many attempts — signing in to this account is paused for a while. Please try again \
         later.",
    );
    assert_eq!(crate::helpers::lockout_counters(&app).await.1, 1);
    assert!(!browser.pending_sign_in().await);

    // The account is locked: the right password is refused too.
    let again = browser.sign_in("eve@example.org", PASSWORD).await;
    assert_eq!(location(&again), None);
    let refused = expect_error(again, 400, "invalid_input").await;
    assert!(message(&refused).contains("Too many attempts"), "{refused}");
    assert!(browser.current_user().await.is_null());
    assert!(!browser.pending_sign_in().await);

    assert_eq!(
        app.count("security_events WHERE kind = 'mfa_sign_in_failed'")
            .await,
        5
    );
    assert_eq!(
        app.count("security_events WHERE kind = 'locked_out'").await,
        1
    );
    // The owner learns that their password is known (it was right; the codes were not).
    let mail = email_about(&app, "eve@example.org", 3, "Failed sign-in attempts").await;
    assert!(
        mail.text.contains("wrong two-factor codes"),
        "{}",
        mail.text
    );
}

/// A password reset lifts a lock that wrong passwords set, not one that wrong codes set: whoever reads
/// the mailbox could otherwise reset after every few wrong codes and guess on without waiting.
#[tokio::test]
async fn a_password_reset_does_not_lift_a_lock_set_by_wrong_codes() {
    let app = app_for_many_codes().await;
    let owner = signed_in(&app, "rex@example.org").await;
    let mfa = enable_mfa(&app, &owner).await;
    // As for an account that turned two-factor on before the time of it was recorded: what counts
    // is whether it is on.
    sea_orm::ConnectionTrait::execute_unprepared(
        &app.app_db,
        "UPDATE users SET two_factor_enabled_at = NULL",
    )
    .await
    .unwrap();
    let browser = sign_in_pending(&app, "rex@example.org").await;
    let wrong = wrong_code(&app, &mfa.secret);
    for _ in 0..4 {
        expect_field_error(browser.verify_code(&wrong).await, "code").await;
    }
    let fifth = expect_error(browser.verify_code(&wrong).await, 400, "invalid_input").await;
    assert!(message(&fifth).contains("Too many attempts"), "{fifth}");
    email_about(&app, "rex@example.org", 3, "Failed sign-in attempts").await;
    let new_password = reset_by_email(&app, "rex@example.org", 4).await;

    // The new password is set, and the lock stands: it is refused before any code is asked for.
    let again = Browser::new(&app);
    let refused = expect_error(
        again.sign_in("rex@example.org", new_password).await,
        400,
        "invalid_input",
    )
    .await;
    assert!(message(&refused).contains("Too many attempts"), "{refused}");
    assert!(!again.pending_sign_in().await);

    // Once the lock is over, the new password and a code sign in.
    app.clock.advance(
        app.settings
            .accounts
            .lockout_duration
            .try_into()
            .expect("a duration"),
    );
    let browser = Browser::new(&app);
    let response = browser.sign_in("rex@example.org", new_password).await;
    assert_eq!(location(&response).as_deref(), Some(TWO_FACTOR_STEP));
    assert_ok(browser.verify_code(&code_now(&app, &mfa.secret)).await).await;
}

/// Asks for a reset link (the `at_least`-th email to `email`), and sets a new password with it.
async fn reset_by_email(app: &TestApp, email: &str, at_least: usize) -> &'static str {
    let response = app
        .call("request_password_reset", &[("email", email)])
        .await;
    assert_eq!(response.status(), 200);
    let token = email_about(app, email, at_least, "Reset your Nest Egg password")
        .await
        .token(app, "/reset-password");
    let new_password = "copper Lantern 47 meadow drift";
    let done = app
        .call(
            "reset_password",
            &[("token", token.as_str()), ("password", new_password)],
        )
        .await;
    assert_eq!(done.status(), 200);
    new_password
}

/// Once two-factor is off again, a reset lifts a lock set by wrong passwords, as for any account
/// without it, and the lock-out email says so.
#[tokio::test]
async fn with_two_factor_turned_off_again_a_reset_lifts_the_lock() {
    let app = app_for_many_codes().await;
    let owner = signed_in(&app, "sol@example.org").await;
    let mfa = enable_mfa(&app, &owner).await;
    assert_ok(
        owner
            .call(
                "disable_two_factor",
                &[
                    ("password", PASSWORD),
                    ("code", &code_now(&app, &mfa.secret)),
                ],
            )
            .await,
    )
    .await;
    let browser = Browser::new(&app);
    for _ in 0..5 {
        browser.sign_in("sol@example.org", "not the password").await;
    }
    let locked = email_about(&app, "sol@example.org", 4, "temporarily locked").await;
    assert!(
        locked.text.contains("or choose a new password now"),
        "{}",
        locked.text
    );
    let new_password = reset_by_email(&app, "sol@example.org", 5).await;
    let response = Browser::new(&app)
        .sign_in("sol@example.org", new_password)
        .await;
    assert_ok(response).await;
}

/// Guesses still in flight count. Once the attempts counted before it reach the threshold, even the
/// right code is refused rather than checked: otherwise a burst of parallel guesses, all counted before
/// the first of them locks the account, would all be checked.
#[tokio::test]
async fn a_code_counted_past_the_threshold_is_refused_unchecked() {
    let app = app_for_many_codes().await;
    let owner = signed_in(&app, "ivy@example.org").await;
    let mfa = enable_mfa(&app, &owner).await;
    let browser = sign_in_pending(&app, "ivy@example.org").await;
    // As many guesses as the threshold, counted and not yet answered.
    let threshold = app.settings.accounts.lockout_threshold;
    crate::helpers::attempts_in_flight(&app, "ivy@example.org", threshold).await;

    let right = expect_error(
        browser.verify_code(&code_now(&app, &mfa.secret)).await,
        400,
        "invalid_input",
    )
    .await;
    assert!(message(&right).contains("Too many attempts"), "{right}");
    assert!(browser.current_user().await.is_null());
    // The refusal locks the account, should the guesses in flight not get to it, and tells the owner,
    // without claiming the code was wrong: it was never checked.
    assert_eq!(crate::helpers::lockout_counters(&app).await.1, 1);
    assert_eq!(
        app.count("security_events WHERE kind = 'locked_out'").await,
        1
    );
    assert_eq!(
        app.count("security_events WHERE kind = 'attempt_refused_past_threshold'")
            .await,
        1
    );
    assert_eq!(
        app.count("security_events WHERE kind = 'mfa_sign_in_failed'")
            .await,
        0
    );
    email_about(&app, "ivy@example.org", 3, "temporarily locked").await;
    assert_eq!(
        app.count("outbox_emails WHERE kind = 'mfa_failures'").await,
        0
    );
    // The code was not spent: once the lock is over, it still works.
    app.clock.advance(
        app.settings
            .accounts
            .lockout_duration
            .try_into()
            .expect("a duration"),
    );
    let browser = sign_in_pending(&app, "ivy@example.org").await;
    let response = browser.verify_code(&code_now(&app, &mfa.secret)).await;
    assert_eq!(location(&response).as_deref(), Some("/"));
}

/// A password change that lands while a sign-in waits at the code step (after the step was saved, so
/// ending every session missed it): the sign-in starts over before its code is checked, so the code
/// is not spent and no sign-in is recorded.
#[tokio::test]
async fn a_code_step_whose_password_changed_meanwhile_starts_over_and_spends_no_code() {
    let app = app_for_many_codes().await;
    let owner = signed_in(&app, "jon@example.org").await;
    let mfa = enable_mfa(&app, &owner).await;
    let browser = sign_in_pending(&app, "jon@example.org").await;
    sea_orm::ConnectionTrait::execute_unprepared(
        &app.app_db,
        "UPDATE users SET password_changed_at = password_changed_at + 1 \
         WHERE email = 'jon@example.org'",
    )
    .await
    .expect("the password moves on");
    let signed_in_before = app.count("security_events WHERE kind = 'sign_in'").await;

    let backup = &mfa.backup_codes[0];
    let refused = expect_error(browser.verify_code(backup).await, 400, "invalid_input").await;
    assert!(message(&refused).contains("sign in again"), "{refused}");
    assert!(!browser.pending_sign_in().await);
    assert!(browser.current_user().await.is_null());
    assert_eq!(
        app.count("security_events WHERE kind = 'sign_in'").await,
        signed_in_before
    );
    assert_eq!(
        app.count("outbox_emails WHERE kind = 'backup_code_used'")
            .await,
        0
    );

    // Signing in again, the same backup code still works.
    let browser = sign_in_pending(&app, "jon@example.org").await;
    let response = browser.verify_code(backup).await;
    assert_eq!(location(&response).as_deref(), Some("/"));
}

#[tokio::test]
async fn entering_the_password_again_does_not_reset_the_count_of_wrong_codes() {
    let app = app_for_many_codes().await;
    let owner = signed_in(&app, "gil@example.org").await;
    let mfa = enable_mfa(&app, &owner).await;
    let wrong = wrong_code(&app, &mfa.secret);

    // Four wrong codes, the password again, one more wrong code: the fifth locks the account.
    let browser = sign_in_pending(&app, "gil@example.org").await;
    for _ in 0..4 {
        expect_field_error(browser.verify_code(&wrong).await, "code").await;
    }
    let browser = sign_in_pending(&app, "gil@example.org").await;
    let fifth = expect_error(browser.verify_code(&wrong).await, 400, "invalid_input").await;
    assert!(message(&fifth).contains("Too many attempts"), "{fifth}");
    let refused = expect_error(
        browser.sign_in("gil@example.org", PASSWORD).await,
        400,
        "invalid_input",
    )
    .await;
    assert!(message(&refused).contains("Too many attempts"), "{refused}");

    // A right code, by contrast, ends the run of failures.
    let other = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_MFA_PER_MINUTE".into(), "1000".into());
        v.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "1000".into());
    })
    .await;
    let owner = signed_in(&other, "hal@example.org").await;
    let mfa = enable_mfa(&other, &owner).await;
    let wrong = wrong_code(&other, &mfa.secret);
    let browser = sign_in_pending(&other, "hal@example.org").await;
    for _ in 0..4 {
        expect_field_error(browser.verify_code(&wrong).await, "code").await;
    }
    assert_ok(browser.verify_code(&code_now(&other, &mfa.secret)).await).await;
    assert_eq!(crate::helpers::lockout_counters(&other).await.0, 0);
}

#[tokio::test]
async fn a_code_is_accepted_once_even_across_browsers() {
    let app = app_for_many_codes().await;
    let owner = signed_in(&app, "finn@example.org").await;
    let mfa = enable_mfa(&app, &owner).await;
    let first = sign_in_pending(&app, "finn@example.org").await;
    let second = sign_in_pending(&app, "finn@example.org").await;

    let code = code_now(&app, &mfa.secret);
    assert_ok(first.verify_code(&code).await).await;
    assert_eq!(
        first.user_email().await.as_deref(),
        Some("finn@example.org")
    );

    // The same code, at the same moment, from another browser: a replay.
    expect_field_error(second.verify_code(&code).await, "code").await;
    // So is an older code that is still inside the ±1 step window.
    let older = code_at(&mfa.secret, unix_now(&app) - 30);
    expect_field_error(second.verify_code(&older).await, "code").await;
    assert!(second.pending_sign_in().await);
    assert!(second.current_user().await.is_null());

    // The accepted step is stored with the credential, so the protection survives restarts.
    let step = unix_now(&app).div_euclid(30);
    assert_eq!(credential(&app.app_db).await.last_used_step, Some(step));

    // The next step's code works.
    next_step(&app);
    assert_ok(second.verify_code(&code_now(&app, &mfa.secret)).await).await;
    assert_eq!(
        second.user_email().await.as_deref(),
        Some("finn@example.org")
    );
    assert_eq!(credential(&app.app_db).await.last_used_step, Some(step + 1));
}

#[tokio::test]
async fn the_code_step_is_rate_limited_per_ip_with_retry_after() {
    // The default: three codes a minute from one address.
    let app = spawn_app().await;
    let owner = signed_in(&app, "gus@example.org").await;
    let mfa = enable_mfa(&app, &owner).await;
    let browser = sign_in_pending(&app, "gus@example.org").await;
    let wrong = wrong_code(&app, &mfa.secret);

    for _ in 0..3 {
        expect_field_error(browser.verify_code(&wrong).await, "code").await;
    }
    // The fourth is refused before it is looked at, even when it is right.
    let limited = browser.verify_code(&code_now(&app, &mfa.secret)).await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    expect_error(limited, 429, "rate_limited").await;
    assert!(browser.current_user().await.is_null());
    assert!(browser.pending_sign_in().await, "still waiting for a code");
    assert_eq!(
        app.count("security_events WHERE kind = 'mfa_sign_in_failed'")
            .await,
        3,
        "the refused call was not counted as a guess"
    );
}

// ---------------------------------------------------------------------------------------------------
// Backup codes
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_backup_code_signs_in_once_however_it_is_typed() {
    let app = spawn_app().await;
    let owner = signed_in(&app, "hal@example.org").await;
    let mfa = enable_mfa(&app, &owner).await;
    let code = &mfa.backup_codes[0];
    let typed = typed_sloppily(code);
    assert_ne!(&typed, code);

    let browser = sign_in_pending(&app, "hal@example.org").await;
    let response = browser.verify_code(&typed).await;
    assert_eq!(location(&response).as_deref(), Some("/"));
    assert_ok(response).await;
    assert_eq!(
        browser.user_email().await.as_deref(),
        Some("hal@example.org")
    );
    assert_eq!(
        browser.two_factor_status().await["backup_codes_remaining"],
        9
    );
    assert_eq!(
        app.count(
            r#"security_events WHERE kind = 'sign_in' AND details LIKE '%"method":"backup_code"%'"#
        )
        .await,
        1
    );

    // Used up: another sign-in cannot use it again.
    let other = sign_in_pending(&app, "hal@example.org").await;
    expect_field_error(other.verify_code(code).await, "code").await;
    assert!(other.current_user().await.is_null());
    assert_eq!(owner.two_factor_status().await["backup_codes_remaining"], 9);

    let mail = email_about(&app, "hal@example.org", 3, "A backup code was used").await;
    assert!(mail.text.contains("you have 9 left"), "{}", mail.text);
    assert_eq!(
        app.count("security_events WHERE kind = 'mfa_backup_code_used'")
            .await,
        1
    );
}

// ---------------------------------------------------------------------------------------------------
// Sudo mode
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn setup_needs_a_recent_password_and_hides_its_secret_until_it_is_entered_again() {
    let app = spawn_app().await;
    let ivy = signed_in(&app, "ivy@example.org").await;
    assert_ok(ivy.call("start_two_factor_setup", &[]).await).await;
    let first_key = setup_key(&ivy.two_factor_status().await);

    // Past SUDO_WINDOW_MINUTES (10) but well within the session's idle timeout.
    app.clock.advance(time::Duration::minutes(11));
    let status = ivy.two_factor_status().await;
    assert_eq!(status["reauth_needed"], true);
    assert!(
        status["setup"].is_null(),
        "the secret is not shown: {status}"
    );
    expect_error(
        ivy.call("start_two_factor_setup", &[]).await,
        403,
        "reauth_required",
    )
    .await;

    expect_field_error(
        ivy.call(
            "confirm_password",
            &[("password", "not the password at all")],
        )
        .await,
        "password",
    )
    .await;
    assert_eq!(ivy.two_factor_status().await["reauth_needed"], true);
    assert_ok(
        ivy.call("confirm_password", &[("password", PASSWORD)])
            .await,
    )
    .await;

    let status = ivy.two_factor_status().await;
    assert_eq!(status["reauth_needed"], false);
    assert_eq!(
        setup_key(&status),
        first_key,
        "the refused request replaced nothing"
    );
    assert_ok(ivy.call("start_two_factor_setup", &[]).await).await;
    let second_key = setup_key(&ivy.two_factor_status().await);
    assert_ne!(second_key, first_key, "a new secret");

    // Only the newest secret turns it on.
    let old = TotpSecret::from_base32(&first_key).unwrap();
    let new = TotpSecret::from_base32(&second_key).unwrap();
    expect_field_error(
        ivy.call("enable_two_factor", &[("code", &code_now(&app, &old))])
            .await,
        "code",
    )
    .await;
    backup_codes_of(
        ivy.call("enable_two_factor", &[("code", &code_now(&app, &new))])
            .await,
    )
    .await;
    assert!(ivy.two_factor_status().await["enabled_on"].is_string());
}

/// Until two-factor is on, sudo mode takes the password alone: someone else signed in with it must
/// neither read the secret of the owner's setup nor keep a session once the owner turns it on.
#[tokio::test]
async fn a_setup_belongs_to_the_session_that_started_it_and_turning_it_on_ends_the_others() {
    let app = spawn_app().await;
    app.register_verified("ada@example.org", PASSWORD).await;
    let owner = Browser::new(&app);
    let signed_in = owner.sign_in("ada@example.org", PASSWORD).await;
    let copy = session_cookie(&signed_in).expect("a session cookie");
    assert_ok(signed_in).await;
    let intruder = Browser::new(&app);
    assert_ok(intruder.sign_in("ada@example.org", PASSWORD).await).await;

    assert_ok(owner.call("start_two_factor_setup", &[]).await).await;
    let key = setup_key(&owner.two_factor_status().await);
    let seen = intruder.two_factor_status().await;
    assert_eq!(seen["reauth_needed"], false, "the intruder is in sudo mode");
    assert!(seen["setup"].is_null(), "another session's setup: {seen}");

    // Nor can the intruder confirm it, even with a right code.
    let secret = TotpSecret::from_base32(&key).unwrap();
    let refused = intruder
        .call("enable_two_factor", &[("code", &code_now(&app, &secret))])
        .await;
    let error = expect_error(refused, 400, "invalid_input").await;
    assert!(message(&error).contains("Start again"), "{error}");
    assert!(owner.two_factor_status().await["enabled_on"].is_null());

    backup_codes_of(
        owner
            .call("enable_two_factor", &[("code", &code_now(&app, &secret))])
            .await,
    )
    .await;
    assert_eq!(owner.user_email().await.as_deref(), Some("ada@example.org"));
    assert_eq!(intruder.user_email().await, None, "other sessions end");
    // A copy of the owner's own cookie ends as well: the session id is new.
    let replay = call_with_cookie(&app, &copy, "current_user").await;
    assert_eq!(replay.text().await.unwrap(), "null");
    let status = owner.two_factor_status().await;
    assert!(status["enabled_on"].is_string(), "{status}");
}

/// A password-only sign-in still under way when two-factor authentication is turned on saves its
/// session after the switch ended the others (it read "off" just before). Played out in order, as
/// for a password reset (`accounts.rs`): the intruder's session is taken from the store, the switch
/// ends it, and it is put back as the late save would.
#[tokio::test]
async fn a_password_only_sign_in_racing_the_switch_to_two_factor_does_not_outlive_it() {
    use tower_sessions::SessionStore as _;

    let app = spawn_app().await;
    let owner = signed_in(&app, "ria@example.org").await;
    let intruder = Browser::new(&app);
    let signed_in = intruder.sign_in("ria@example.org", PASSWORD).await;
    let id = session_id(&session_cookie(&signed_in).expect("a session cookie"));
    assert_ok(signed_in).await;
    let late_save = app.state.sessions.load(&id).await.unwrap().unwrap();

    // The test clock stands still from here: everything happens in one second.
    let turn_on = || async {
        assert_ok(owner.call("start_two_factor_setup", &[]).await).await;
        let key = setup_key(&owner.two_factor_status().await);
        let secret = TotpSecret::from_base32(&key).unwrap();
        let enabled = owner
            .call("enable_two_factor", &[("code", &code_now(&app, &secret))])
            .await;
        backup_codes_of(enabled).await
    };
    // The switch ends `browser`'s session (`id`, as loaded before it), which its late save puts back.
    let store = &app.state.sessions;
    let late_save_after_switch = |id, mut late_save| async move {
        assert!(store.load(&id).await.unwrap().is_none());
        store.create(&mut late_save).await.unwrap();
        assert_eq!(late_save.id, id);
    };
    let backup_codes = turn_on().await;
    late_save_after_switch(id, late_save).await;
    assert_eq!(
        intruder.user_email().await,
        None,
        "the switch ends the late session too"
    );
    assert_eq!(
        owner.user_email().await.as_deref(),
        Some("ria@example.org"),
        "the session that turned it on stays"
    );

    // Turned off and on again within that second: a password-only sign-in from between ends too.
    assert_ok(
        owner
            .call(
                "disable_two_factor",
                &[("password", PASSWORD), ("code", &backup_codes[0])],
            )
            .await,
    )
    .await;
    let between = Browser::new(&app);
    let signed_in = between.sign_in("ria@example.org", PASSWORD).await;
    let id = session_id(&session_cookie(&signed_in).expect("a session cookie"));
    assert_ok(signed_in).await;
    let late_save = app.state.sessions.load(&id).await.unwrap().unwrap();
    turn_on().await;
    late_save_after_switch(id, late_save).await;
    assert_eq!(between.user_email().await, None);
    assert_eq!(owner.user_email().await.as_deref(), Some("ria@example.org"));
}

/// When everyone must use two-factor, someone whose address is not confirmed yet can still have the
/// link sent again: the setup needs it.
#[tokio::test]
async fn a_required_setup_leaves_the_way_to_confirm_the_address_open() {
    let app = spawn_app_with(|v| {
        v.insert("REQUIRE_MFA".into(), "all".into());
    })
    .await;
    assert_eq!(
        app.register("rae@example.org", NAME, PASSWORD)
            .await
            .status(),
        200
    );
    let rae = Browser::new(&app);
    assert_ok(rae.sign_in("rae@example.org", PASSWORD).await).await;
    assert_eq!(rae.current_user().await["mfa_setup_required"], true);
    let refused = expect_error(
        rae.call("start_two_factor_setup", &[]).await,
        400,
        "invalid_input",
    )
    .await;
    assert!(
        message(&refused).contains("Confirm your email address first"),
        "{refused}"
    );
    // Past the two-factor gate: only its one-a-minute cooldown stops it, the sign-up's link being
    // that fresh (the limiter keeps real time, which the test clock does not move).
    expect_error(
        rae.call("resend_verification", &[]).await,
        429,
        "rate_limited",
    )
    .await;
    let mail = app.emails_to("rae@example.org", 1).await;
    let token = mail[0].token(&app, "/verify-email");
    assert_ok(app.call("verify_email", &[("token", &token)]).await).await;
    assert_ok(rae.call("start_two_factor_setup", &[]).await).await;
}

/// Two-factor authentication is set up on a confirmed address only: someone who signed up with
/// another person's address could otherwise lock its owner out with a second factor a password reset
/// does not remove. A completed reset confirms the address (its link went there).
#[tokio::test]
async fn two_factor_needs_a_confirmed_address_and_a_reset_confirms_it() {
    let app = spawn_app().await;
    let response = app.register("una@example.org", NAME, PASSWORD).await;
    assert_eq!(response.status(), 200);
    let una = Browser::new(&app);
    assert_ok(una.sign_in("una@example.org", PASSWORD).await).await;
    let refused = una.call("start_two_factor_setup", &[]).await;
    let error = expect_error(refused, 400, "invalid_input").await;
    assert!(
        message(&error).contains("Confirm your email address first"),
        "{error}"
    );
    assert_eq!(app.count("totp_credentials").await, 0);

    app.call("request_password_reset", &[("email", "una@example.org")])
        .await;
    let mail = app.emails_to("una@example.org", 2).await;
    let token = mail[1].token(&app, "/reset-password");
    assert_ok(
        app.call(
            "reset_password",
            &[("token", &token), ("password", NEW_PASSWORD)],
        )
        .await,
    )
    .await;
    assert_eq!(
        app.count("users WHERE email_verified_at IS NOT NULL").await,
        1
    );
    let una = Browser::new(&app);
    assert_ok(una.sign_in("una@example.org", NEW_PASSWORD).await).await;
    assert_ok(una.call("start_two_factor_setup", &[]).await).await;
}

#[tokio::test]
async fn new_backup_codes_need_a_recent_password_and_replace_the_old_ones() {
    let app = app_for_many_codes().await;
    let jo = signed_in(&app, "jo@example.org").await;
    let mfa = enable_mfa(&app, &jo).await;

    app.clock.advance(time::Duration::minutes(11));
    expect_error(
        jo.call("regenerate_backup_codes", &[]).await,
        403,
        "reauth_required",
    )
    .await;
    let status = jo.two_factor_status().await;
    assert_eq!(status["reauth_needed"], true);
    assert_eq!(status["backup_codes_remaining"], 10, "nothing replaced");

    // With two-factor on, re-authenticating takes what signing in takes: the password and a code
    // (so a stolen session plus the password cannot mint backup codes and then turn it off).
    expect_field_error(
        jo.call("confirm_password", &[("password", PASSWORD)]).await,
        "code",
    )
    .await;
    expect_field_error(
        jo.call(
            "confirm_password",
            &[
                ("password", PASSWORD),
                ("code", &wrong_code(&app, &mfa.secret)),
            ],
        )
        .await,
        "code",
    )
    .await;
    assert_eq!(jo.two_factor_status().await["reauth_needed"], true);
    assert_ok(
        jo.call(
            "confirm_password",
            &[
                ("password", PASSWORD),
                ("code", &code_now(&app, &mfa.secret)),
            ],
        )
        .await,
    )
    .await;
    let codes = backup_codes_of(jo.call("regenerate_backup_codes", &[]).await).await;
    for code in &codes {
        assert_backup_code_format(code);
        assert!(!mfa.backup_codes.contains(code), "{code} is new");
    }
    let mut distinct = codes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10);
    assert_eq!(jo.two_factor_status().await["backup_codes_remaining"], 10);
    assert_eq!(app.count("backup_codes").await, 10, "the old set is gone");

    email_about(&app, "jo@example.org", 3, "New backup codes").await;
    assert_eq!(
        app.count("security_events WHERE kind = 'mfa_backup_codes_regenerated'")
            .await,
        1
    );

    // At sign-in an old code no longer works; a new one does.
    let browser = sign_in_pending(&app, "jo@example.org").await;
    expect_field_error(browser.verify_code(&mfa.backup_codes[0]).await, "code").await;
    assert_ok(browser.verify_code(&codes[0]).await).await;
    assert_eq!(
        browser.user_email().await.as_deref(),
        Some("jo@example.org")
    );
}

// ---------------------------------------------------------------------------------------------------
// Turning it off
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn turning_it_off_needs_the_password_and_a_code_and_removes_every_trace() {
    let app = app_for_many_codes().await;
    let kai = signed_in(&app, "kai@example.org").await;
    let mfa = enable_mfa(&app, &kai).await;
    assert_eq!(app.count("totp_credentials").await, 1);
    assert_eq!(app.count("backup_codes").await, 10);
    let code = code_now(&app, &mfa.secret);

    expect_field_error(
        kai.call(
            "disable_two_factor",
            &[("password", "not the password at all"), ("code", &code)],
        )
        .await,
        "password",
    )
    .await;
    expect_field_error(
        kai.call(
            "disable_two_factor",
            &[
                ("password", PASSWORD),
                ("code", &wrong_code(&app, &mfa.secret)),
            ],
        )
        .await,
        "code",
    )
    .await;
    expect_field_error(
        kai.call(
            "disable_two_factor",
            &[("password", PASSWORD), ("code", "")],
        )
        .await,
        "code",
    )
    .await;
    assert!(
        kai.two_factor_status().await["enabled_on"].is_string(),
        "still on"
    );

    assert_ok(
        kai.call(
            "disable_two_factor",
            &[("password", PASSWORD), ("code", &code)],
        )
        .await,
    )
    .await;
    let status = kai.two_factor_status().await;
    assert!(status["enabled_on"].is_null(), "{status}");
    assert_eq!(status["backup_codes_remaining"], 0);
    assert_eq!(app.count("totp_credentials").await, 0);
    assert_eq!(app.count("backup_codes").await, 0);
    email_about(
        &app,
        "kai@example.org",
        3,
        "Two-factor authentication was turned off",
    )
    .await;
    assert_eq!(
        app.count("security_events WHERE kind = 'mfa_disabled'")
            .await,
        1
    );

    // The password alone signs in again.
    let browser = Browser::new(&app);
    let response = browser.sign_in("kai@example.org", PASSWORD).await;
    assert_eq!(location(&response).as_deref(), Some("/"));
    assert_ok(response).await;
    assert_eq!(
        browser.user_email().await.as_deref(),
        Some("kai@example.org")
    );
}

#[tokio::test]
async fn a_backup_code_can_turn_it_off_when_the_phone_is_lost() {
    let app = spawn_app().await;
    let lee = signed_in(&app, "lee@example.org").await;
    let mfa = enable_mfa(&app, &lee).await;
    assert_ok(
        lee.call(
            "disable_two_factor",
            &[
                ("password", PASSWORD),
                ("code", &typed_sloppily(&mfa.backup_codes[3])),
            ],
        )
        .await,
    )
    .await;
    assert!(lee.two_factor_status().await["enabled_on"].is_null());
    assert_eq!(app.count("totp_credentials").await, 0);
    assert_eq!(app.count("backup_codes").await, 0);
}

/// The new phone's secret, as the settings show it while a move waits for its first code.
async fn replacement_secret(browser: &Browser) -> TotpSecret {
    let status = browser.two_factor_status().await;
    let key = status["replacement"]["manual_key"]
        .as_str()
        .unwrap_or_else(|| panic!("a move waits: {status}"))
        .replace(' ', "");
    TotpSecret::from_base32(&key).expect("a base32 secret")
}

#[tokio::test]
async fn moving_to_a_new_phone_keeps_the_old_app_until_the_new_one_shows_a_code() {
    let app = app_for_many_codes().await;
    let owner = signed_in(&app, "kim@example.org").await;
    let old = enable_mfa(&app, &owner).await;
    assert!(owner.two_factor_status().await["replacement"].is_null());

    assert_ok(owner.call("start_two_factor_replacement", &[]).await).await;
    let new = replacement_secret(&owner).await;
    assert_ne!(new.to_base32(), old.base32);
    let status = owner.two_factor_status().await;
    assert!(status["enabled_on"].is_string(), "still on: {status}");
    let uri = status["replacement"]["otpauth_uri"]
        .as_str()
        .expect("a URI");
    assert!(uri.contains("kim%40example.org"), "{uri}");
    assert!(
        status["replacement"]["qr_svg"]
            .as_str()
            .expect("a QR code")
            .contains("<svg")
    );

    // Meanwhile the old app still signs in, and the new one does not yet.
    let elsewhere = sign_in_pending(&app, "kim@example.org").await;
    expect_field_error(elsewhere.verify_code(&code_now(&app, &new)).await, "code").await;
    assert_ok(elsewhere.verify_code(&code_now(&app, &old.secret)).await).await;
    next_step(&app);

    // A wrong code is refused next to the field, and nothing moves.
    let wrong = expect_field_error(owner.confirm_move(&wrong_code(&app, &new)).await, "code").await;
    assert!(wrong.contains("didn't match"), "{wrong}");
    let not_a_code = expect_field_error(owner.confirm_move("12ab").await, "code").await;
    assert!(not_a_code.contains("6-digit code"), "{not_a_code}");
    assert_eq!(
        replacement_secret(&owner).await.to_base32(),
        new.to_base32()
    );

    // The new app's code moves it: the old app stops working, the backup codes stay.
    let first = code_now(&app, &new);
    assert_ok(owner.confirm_move(&first).await).await;
    let status = owner.two_factor_status().await;
    assert!(status["replacement"].is_null(), "{status}");
    assert_eq!(status["backup_codes_remaining"], 10);
    let mail = email_about(&app, "kim@example.org", 3, "moved to a new authenticator").await;
    assert!(
        mail.text.contains("/settings/security/two-factor"),
        "{}",
        mail.text
    );
    assert_eq!(
        app.count("security_events WHERE kind = 'mfa_replaced'")
            .await,
        1
    );

    // The code that confirmed the move cannot sign in as well.
    let browser = sign_in_pending(&app, "kim@example.org").await;
    expect_field_error(browser.verify_code(&first).await, "code").await;
    next_step(&app);
    expect_field_error(
        browser.verify_code(&code_now(&app, &old.secret)).await,
        "code",
    )
    .await;
    let response = browser.verify_code(&code_now(&app, &new)).await;
    assert_eq!(location(&response).as_deref(), Some("/"));
    let browser = sign_in_pending(&app, "kim@example.org").await;
    let response = browser.verify_code(&old.backup_codes[0]).await;
    assert_eq!(location(&response).as_deref(), Some("/"));
}

#[tokio::test]
async fn a_move_to_a_new_phone_can_be_given_up_and_needs_a_recent_password() {
    let app = app_for_many_codes().await;
    let owner = signed_in(&app, "lou@example.org").await;
    let old = enable_mfa(&app, &owner).await;

    assert_ok(owner.call("start_two_factor_replacement", &[]).await).await;
    let new = replacement_secret(&owner).await;
    assert_ok(owner.call("cancel_two_factor_replacement", &[]).await).await;
    let status = owner.two_factor_status().await;
    assert!(status["replacement"].is_null(), "{status}");
    assert_eq!(status["replacement_waiting"], false, "{status}");
    let refused = expect_error(
        owner.confirm_move(&code_now(&app, &new)).await,
        400,
        "invalid_input",
    )
    .await;
    assert!(!message(&refused).is_empty());
    let browser = sign_in_pending(&app, "lou@example.org").await;
    assert_ok(browser.verify_code(&code_now(&app, &old.secret)).await).await;
    next_step(&app);

    // Past the sudo window the secret is not shown, and neither starting nor finishing a move works.
    assert_ok(owner.call("start_two_factor_replacement", &[]).await).await;
    let new = replacement_secret(&owner).await;
    app.clock.advance(time::Duration::minutes(11));
    let status = owner.two_factor_status().await;
    assert_eq!(status["reauth_needed"], true);
    assert!(status["replacement"].is_null(), "{status}");
    assert_eq!(status["replacement_waiting"], true, "{status}");
    assert!(
        owner
            .page("/settings/security/two-factor")
            .await
            .contains("A move to a new phone is waiting")
    );
    expect_error(
        owner.call("start_two_factor_replacement", &[]).await,
        403,
        "reauth_required",
    )
    .await;
    expect_error(
        owner.confirm_move(&code_now(&app, &new)).await,
        403,
        "reauth_required",
    )
    .await;
    // Nor giving it up: a session left signed in must not quietly undo the owner's move.
    expect_error(
        owner.call("cancel_two_factor_replacement", &[]).await,
        403,
        "reauth_required",
    )
    .await;
    assert_eq!(owner.two_factor_status().await["replacement_waiting"], true);

    // A move waits a day at most: then even a fresh sign-in neither sees nor finishes it.
    app.clock.advance(time::Duration::hours(25));
    let again = sign_in_pending(&app, "lou@example.org").await;
    assert_ok(again.verify_code(&code_now(&app, &old.secret)).await).await;
    let status = again.two_factor_status().await;
    assert_eq!(status["reauth_needed"], false);
    assert!(status["replacement"].is_null(), "{status}");
    assert_eq!(status["replacement_waiting"], false, "{status}");
    next_step(&app);
    let expired = expect_error(
        again.confirm_move(&code_now(&app, &new)).await,
        400,
        "invalid_input",
    )
    .await;
    assert!(message(&expired).contains("Start again"), "{expired}");
    assert_eq!(
        app.count("security_events WHERE kind = 'mfa_replacement_cancelled'")
            .await,
        1
    );

    // Without two-factor on there is nothing to move.
    let other = signed_in(&app, "mo@example.org").await;
    let refused = expect_error(
        other.call("start_two_factor_replacement", &[]).await,
        400,
        "invalid_input",
    )
    .await;
    assert!(!message(&refused).is_empty());
}

/// Changing the password asks for the password alone. With two-factor on, re-authenticating takes a
/// code as well, so a password change must not open sudo mode: it would be a way round the code to
/// new backup codes or a new phone.
#[tokio::test]
async fn changing_the_password_opens_sudo_mode_only_when_the_password_is_all_it_takes() {
    let app = app_for_many_codes().await;
    let owner = signed_in(&app, "ned@example.org").await;
    enable_mfa(&app, &owner).await;
    let plain = signed_in(&app, "ola@example.org").await;
    app.clock.advance(time::Duration::minutes(11));
    for browser in [&owner, &plain] {
        assert_eq!(browser.two_factor_status().await["reauth_needed"], true);
        assert_ok(
            browser
                .call(
                    "change_password",
                    &[
                        ("current_password", PASSWORD),
                        ("new_password", NEW_PASSWORD),
                    ],
                )
                .await,
        )
        .await;
    }
    assert_eq!(owner.two_factor_status().await["reauth_needed"], true);
    for function in ["start_two_factor_replacement", "regenerate_backup_codes"] {
        expect_error(owner.call(function, &[]).await, 403, "reauth_required").await;
    }
    assert_eq!(plain.two_factor_status().await["reauth_needed"], false);
}

// ---------------------------------------------------------------------------------------------------
// REQUIRE_MFA
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn when_everyone_must_use_it_nothing_but_the_setup_works_until_it_is_on() {
    let app = spawn_app_with(|v| {
        v.insert("REQUIRE_MFA".into(), "all".into());
    })
    .await;
    let max = signed_in(&app, "max@example.org").await;
    let me = max.current_user().await;
    assert_eq!(me["email"], "max@example.org");
    assert_eq!(me["mfa_setup_required"], true);

    expect_error(
        max.call(
            "change_password",
            &[
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
            ],
        )
        .await,
        403,
        "mfa_setup_required",
    )
    .await;
    expect_error(
        max.call("regenerate_backup_codes", &[]).await,
        403,
        "mfa_setup_required",
    )
    .await;

    // Every page sends them to the setup; the setup page itself renders.
    for path in ["/", "/settings/profile", "/settings/security"] {
        let response = max
            .client
            .get(format!("{}{path}", max.address))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_redirection(),
            "{path}: {}",
            response.status()
        );
        assert_eq!(
            location(&response).as_deref(),
            Some("/settings/security/two-factor"),
            "{path}"
        );
    }
    assert!(
        max.page("/settings/security/two-factor")
            .await
            .contains("Your account must use two-factor authentication")
    );

    let status = max.two_factor_status().await;
    assert_eq!(status["required"], true);
    assert!(status["enabled_on"].is_null());
    let mfa = enable_mfa(&app, &max).await;
    assert_eq!(max.current_user().await["mfa_setup_required"], false);
    assert!(
        max.page("/settings/profile")
            .await
            .contains("max@example.org")
    );

    assert_ok(
        max.call(
            "change_password",
            &[
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
            ],
        )
        .await,
    )
    .await;

    // Required means it stays on.
    let refused = expect_error(
        max.call(
            "disable_two_factor",
            &[
                ("password", NEW_PASSWORD),
                ("code", &code_now(&app, &mfa.secret)),
            ],
        )
        .await,
        400,
        "invalid_input",
    )
    .await;
    assert!(message(&refused).contains("required"), "{refused}");
    assert!(
        message(&refused).contains("Move to a new phone"),
        "{refused}"
    );
    assert!(max.two_factor_status().await["enabled_on"].is_string());
    assert_eq!(app.count("totp_credentials").await, 1);

    // What they can do instead: move to a new phone.
    next_step(&app);
    assert_ok(max.call("start_two_factor_replacement", &[]).await).await;
    let new = replacement_secret(&max).await;
    assert_ok(max.confirm_move(&code_now(&app, &new)).await).await;
    assert_eq!(max.current_user().await["mfa_setup_required"], false);
}

#[tokio::test]
async fn when_only_operators_must_use_it_other_people_are_not_held_up() {
    let app = spawn_app_with(|v| {
        v.insert("REQUIRE_MFA".into(), "admins".into());
        v.insert("ADMIN_EMAILS".into(), "ops@example.org".into());
    })
    .await;
    let ops = signed_in(&app, "ops@example.org").await;
    let member = signed_in(&app, "member@example.org").await;

    assert_eq!(ops.current_user().await["mfa_setup_required"], true);
    assert_eq!(member.current_user().await["mfa_setup_required"], false);
    assert_eq!(ops.two_factor_status().await["required"], true);
    assert_eq!(member.two_factor_status().await["required"], false);

    let change = [
        ("current_password", PASSWORD),
        ("new_password", NEW_PASSWORD),
    ];
    expect_error(
        ops.call("change_password", &change).await,
        403,
        "mfa_setup_required",
    )
    .await;
    assert_ok(member.call("change_password", &change).await).await;
}

// ---------------------------------------------------------------------------------------------------
// Secrets at rest
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_secret_and_backup_codes_are_never_stored_or_logged_in_the_clear() {
    let app = crate::helpers::spawn_app_with(crate::helpers::without_redis).await;
    let owner = signed_in(&app, "nia@example.org").await;
    let mfa = enable_mfa(&app, &owner).await;
    let spaced = mfa
        .base32
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    // A sign-in with a backup code, so that path is covered too.
    let browser = sign_in_pending(&app, "nia@example.org").await;
    assert_ok(browser.verify_code(&mfa.backup_codes[0]).await).await;

    let mut needles = vec![mfa.base32.clone(), spaced, mfa.base32.to_lowercase()];
    for code in &mfa.backup_codes {
        needles.push(code.clone());
        needles.push(normalize_backup_code(code).expect("a valid code"));
    }

    // The secret is sealed under ENCRYPTION_KEY and bound to its owner's row.
    let row = credential(&app.app_db).await;
    let sealed_prefix = format!("v1:{}:", app.state.secret_box.current_key_id());
    assert!(row.secret.starts_with(&sealed_prefix), "sealed");
    for needle in &needles {
        assert!(
            !row.secret.contains(needle.as_str()),
            "the secret column leaks"
        );
    }
    let context = secret_context(&row.user_id);
    assert_eq!(
        app.state.secret_box.open(&row.secret, &context).unwrap(),
        mfa.base32
    );
    assert!(
        app.state
            .secret_box
            .open(&row.secret, &secret_context("someone-else"))
            .is_err(),
        "bound to its row"
    );

    // Backup codes are keyed hashes.
    let rows = backup_code::Entity::find().all(&app.app_db).await.unwrap();
    assert_eq!(rows.len(), 10);
    let mut hashes: Vec<&str> = rows.iter().map(|r| r.code_hash.as_str()).collect();
    for hash in &hashes {
        assert_eq!(hash.len(), 64, "{hash}");
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()), "{hash}");
        for needle in &needles {
            assert!(!hash.contains(needle.as_str()), "a code in a hash column");
        }
    }
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), 10);

    // Nowhere else either: the audit trail, sessions, the outbox, the log.
    let events = security_event::Entity::find()
        .all(&app.app_db)
        .await
        .unwrap();
    assert!(!events.is_empty());
    let sessions = session::Entity::find().all(&app.app_db).await.unwrap();
    let emails = outbox_email::Entity::find().all(&app.app_db).await.unwrap();
    let log = logs::raw();
    for needle in &needles {
        for event in &events {
            assert!(
                !event.details.contains(needle.as_str()),
                "{} details hold a secret",
                event.kind
            );
        }
        for row in &sessions {
            assert!(
                !row.data.contains(needle.as_str()),
                "a session holds a secret"
            );
        }
        for email in &emails {
            assert!(
                !email.body_text.contains(needle.as_str())
                    && !email.body_html.contains(needle.as_str())
                    && !email.subject.contains(needle.as_str()),
                "the {} email holds a secret",
                email.kind
            );
        }
        assert!(!log.contains(needle.as_str()), "a secret was logged");
    }
    assert!(!log.contains("otpauth://"), "the setup URI was logged");
}

#[tokio::test]
async fn an_operator_removes_two_factor_for_an_owner_who_lost_their_phone() {
    let app = spawn_app().await;
    let url = app.settings.database.url.expose().to_owned();
    let owner = signed_in(&app, "lee@example.org").await;
    enable_mfa(&app, &owner).await;
    let pending = sign_in_pending(&app, "lee@example.org").await;
    let remove = |email: &'static str| {
        let (app, url) = (&app, url.clone());
        async move { crate::operations::nestegg(app, &url, &["user", "remove-two-factor", email]).await }
    };

    let removed = remove("Lee@Example.org").await;
    assert!(removed.status.success(), "{}", stderr_of(&removed));
    assert_eq!(
        stdout_of(&removed).trim(),
        "Lee@Example.org: two-factor authentication removed, signed out everywhere"
    );
    assert_eq!(owner.user_email().await, None, "signed out everywhere");
    let stopped = expect_error(pending.verify_code("123456").await, 400, "invalid_input").await;
    assert!(message(&stopped).contains("sign in again"), "{stopped}");
    assert_eq!(app.count("totp_credentials").await, 0);
    assert_eq!(app.count("backup_codes").await, 0);
    assert_eq!(
        app.count("outbox_emails WHERE kind = 'mfa_disabled' AND to_address = 'lee@example.org'")
            .await,
        1,
        "the owner is told"
    );
    assert_eq!(
        app.count("security_events WHERE kind = 'mfa_removed_by_operator'")
            .await,
        1
    );
    // The password alone signs in again.
    let back = Browser::new(&app);
    let response = back.sign_in("lee@example.org", PASSWORD).await;
    assert_eq!(location(&response).as_deref(), Some("/"));
    assert_ok(response).await;

    // Nothing left to remove, and an address nobody has.
    let again = remove("lee@example.org").await;
    assert!(again.status.success(), "{}", stderr_of(&again));
    assert!(stdout_of(&again).contains("was not on; nothing changed"));
    assert_eq!(back.user_email().await.as_deref(), Some("lee@example.org"));
    let unknown = remove("nobody@example.org").await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr_of(&unknown).contains("no account has this address"));
}

/// The link in the email to `to` (its `at_least`-th) saying the account's address was changed.
async fn restore_link(app: &TestApp, to: &str, at_least: usize) -> String {
    email_about(app, to, at_least, "email address was changed")
        .await
        .token(app, "/restore-email")
}

#[tokio::test]
async fn putting_the_address_back_removes_two_factor_set_up_since_the_change_only() {
    let app = app_for_many_codes().await;
    // An intruder with Bo's password moves the address, then turns two-factor on.
    let intruder = signed_in(&app, "bo@example.org").await;
    let moved = intruder
        .call(
            "change_email",
            &[("password", PASSWORD), ("new_email", "eve@evil.example")],
        )
        .await;
    assert_ok(moved).await;
    let token = app.emails_to("eve@evil.example", 1).await[0].token(&app, "/confirm-email-change");
    assert_ok(
        intruder
            .call("confirm_email_change", &[("token", &token)])
            .await,
    )
    .await;
    app.clock.advance(time::Duration::minutes(1));
    enable_mfa(&app, &intruder).await;
    let restore = restore_link(&app, "bo@example.org", 3).await;
    assert_ok(app.call("restore_email", &[("token", &restore)]).await).await;
    assert_eq!(app.count("totp_credentials").await, 0);
    assert_eq!(app.count("backup_codes").await, 0);

    // Lee turned it on before moving her address herself: the old address's link keeps her
    // authenticator and backup codes.
    let lee = signed_in(&app, "lee@example.org").await;
    let mfa = enable_mfa(&app, &lee).await;
    app.clock.advance(time::Duration::minutes(1));
    let moved = lee
        .call(
            "change_email",
            &[
                ("password", PASSWORD),
                ("new_email", "lee@new.example"),
                ("code", &code_now(&app, &mfa.secret)),
            ],
        )
        .await;
    assert_ok(moved).await;
    let token = app.emails_to("lee@new.example", 1).await[0].token(&app, "/confirm-email-change");
    assert_ok(lee.call("confirm_email_change", &[("token", &token)]).await).await;
    app.clock.advance(time::Duration::minutes(1));
    let restore = restore_link(&app, "lee@example.org", 4).await;
    assert_ok(app.call("restore_email", &[("token", &restore)]).await).await;
    assert_eq!(
        app.count("totp_credentials WHERE confirmed_at IS NOT NULL")
            .await,
        1
    );
    assert_eq!(app.count("backup_codes WHERE used_at IS NULL").await, 10);
}

// ---------------------------------------------------------------------------------------------------
// Key rotation
// ---------------------------------------------------------------------------------------------------

/// `nestegg rotate-keys` as an operator runs it: a process in an empty directory with only the given
/// environment (no `.env`, nothing inherited).
fn rotate_keys(database_url: &str, key: &str, previous: Option<&str>) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nestegg"));
    cmd.env_clear()
        .current_dir(dir.path())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "LEPTOS_CONFIG",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Leptos.toml"),
        )
        .env("DATA_DIR", dir.path())
        .env("DATABASE_URL", database_url)
        .env("SECRET_KEY", KEY_A)
        .env("ENCRYPTION_KEY", key);
    if let Some(previous) = previous {
        cmd.env("ENCRYPTION_KEYS_PREVIOUS", previous);
    }
    cmd.arg("rotate-keys").output().unwrap()
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn rotate_keys_reseals_secrets_under_the_new_key_resumably_and_needs_the_old_key() {
    // ENCRYPTION_KEY is helpers::KEY_B.
    let mut app = spawn_app().await;
    let owner = signed_in(&app, "olu@example.org").await;
    let mfa = enable_mfa(&app, &owner).await;
    // A move to a new phone waiting for its first code: its secret is sealed too.
    assert_ok(owner.call("start_two_factor_replacement", &[]).await).await;
    let new = replacement_secret(&owner).await;
    app.emails_to("olu@example.org", 2).await;
    wait_until_outbox_is_empty(&app).await;
    let user_id = credential(&app.app_db).await.user_id;
    let old_key_id = app.state.secret_box.current_key_id().to_owned();
    let database_url = app.settings.database.url.expose().to_owned();

    // The app is down while the operator rotates (stopping it closes its pool: use a new one).
    app.stop();
    let server = app.server.take().unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("the app stops")
        .unwrap()
        .unwrap();
    let db = sea_orm::Database::connect(database_url.as_str())
        .await
        .unwrap();

    // An email still waiting to be sent, its bodies sealed under the old key.
    let template = Template::MfaDisabled {
        name: "Olu".to_owned(),
        settings_link: app.url("/settings/security/two-factor"),
    };
    outbox::enqueue(
        &db,
        &app.state,
        unix_now(&app) - 3600,
        "olu-notice@example.org",
        None,
        &template,
    )
    .await
    .unwrap();

    let new_key = SecretKey::generate().to_base64();
    let new_box = SecretBox::new(&SecretKey::parse(&new_key).unwrap(), &[]);
    let new_key_id = new_box.current_key_id().to_owned();
    assert_ne!(new_key_id, old_key_id);
    let sealed_before = credential(&db).await.secret;
    assert!(sealed_before.starts_with(&format!("v1:{old_key_id}:")));

    // Without the old key nothing can be opened: nothing is touched, and the run fails.
    let out = rotate_keys(&database_url, &new_key, None);
    let (stdout, stderr) = (stdout_of(&out), stderr_of(&out));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(" 0 re-encrypted") && stdout.contains(" 4 unreadable"),
        "both secrets and both bodies of the waiting email: {stdout}"
    );
    assert!(stderr.contains("ENCRYPTION_KEYS_PREVIOUS"), "{stderr}");
    assert_eq!(credential(&db).await.secret, sealed_before);

    // With the old key listed as previous, everything is re-sealed under the new one.
    let out = rotate_keys(&database_url, &new_key, Some(KEY_B));
    let (stdout, stderr) = (stdout_of(&out), stderr_of(&out));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with(&format!("key {new_key_id}: 4 re-encrypted,")),
        "{stdout}"
    );
    assert!(stdout.contains(" 0 unreadable"), "{stdout}");

    let sealed = credential(&db).await.secret;
    assert!(
        sealed.starts_with(&format!("v1:{new_key_id}:")),
        "{sealed:.20}"
    );
    assert_eq!(
        new_box.open(&sealed, &secret_context(&user_id)).unwrap(),
        mfa.base32,
        "the new key alone opens it"
    );
    let old_box = SecretBox::new(&SecretKey::parse(KEY_B).unwrap(), &[]);
    assert!(old_box.open(&sealed, &secret_context(&user_id)).is_err());
    let waiting_move = credential(&db)
        .await
        .replacement_secret
        .expect("the move still waits");
    assert_eq!(
        new_box
            .open(&waiting_move, &replacement_context(&user_id))
            .unwrap(),
        new.to_base32()
    );
    let waiting = outbox_email::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.to_address == "olu-notice@example.org")
        .expect("the waiting email");
    let text = new_box
        .open(
            &waiting.body_text,
            &body_context("text", &waiting.message_id),
        )
        .unwrap();
    assert!(text.contains("Hi Olu,"), "{text}");
    new_box
        .open(
            &waiting.body_html,
            &body_context("html", &waiting.message_id),
        )
        .unwrap();

    // Running it again finds nothing left to do.
    let out = rotate_keys(&database_url, &new_key, Some(KEY_B));
    let stdout = stdout_of(&out);
    assert!(out.status.success(), "{stdout}\n{}", stderr_of(&out));
    assert!(
        stdout.starts_with(&format!("key {new_key_id}: 0 re-encrypted,")),
        "{stdout}"
    );
    assert_eq!(credential(&db).await.secret, sealed, "untouched");
    let _ = db.close().await;

    // The app, configured with only the new key, still signs the owner in with their authenticator
    // and sends the waiting email.
    let url = database_url.clone();
    let key = new_key.clone();
    let restarted = spawn_app_with(move |v| {
        v.insert("DATABASE_URL".into(), url);
        v.insert("ENCRYPTION_KEY".into(), key);
    })
    .await;
    // Its clock starts where the first app's did: move past the step that app already accepted.
    restarted.clock.advance(time::Duration::minutes(1));
    let browser = sign_in_pending(&restarted, "olu@example.org").await;
    assert_ok(
        browser
            .verify_code(&code_now(&restarted, &mfa.secret))
            .await,
    )
    .await;
    assert_eq!(
        browser.user_email().await.as_deref(),
        Some("olu@example.org")
    );
    restarted.state.mail_wakeup.notify_one();
    email_about(
        &restarted,
        "olu-notice@example.org",
        1,
        "Two-factor authentication was turned off",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------------
// Without JavaScript, cancelling, and password resets
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn without_javascript_turning_it_on_is_refused_rather_than_losing_the_backup_codes() {
    let app = spawn_app().await;
    let lou = signed_in(&app, "lou@example.org").await;
    assert_ok(lou.call("start_two_factor_setup", &[]).await).await;
    let status = lou.two_factor_status().await;
    let key = status["setup"]["manual_key"]
        .as_str()
        .unwrap()
        .replace(' ', "");
    let secret = TotpSecret::from_base32(&key).unwrap();
    let response = lou
        .client
        .post(format!("{}/api/enable_two_factor", lou.address))
        .header("origin", &lou.address)
        .header("sec-fetch-site", "same-origin")
        .header("accept", "text/html")
        .header(
            "referer",
            format!("{}/settings/security/two-factor", lou.address),
        )
        .form(&[("code", code_now(&app, &secret).as_str())])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    let location = location(&response).unwrap();
    assert!(location.contains("__err="), "{location}");
    assert!(
        !location.contains(&code_now(&app, &secret)),
        "codes never travel in URLs: {location}"
    );
    // Nothing was turned on, and no codes were made only to be lost.
    assert!(lou.two_factor_status().await["enabled_on"].is_null());
    assert_eq!(app.count("backup_codes").await, 0);
}

#[tokio::test]
async fn without_javascript_a_refusal_for_a_missing_code_brings_its_field() {
    let app = spawn_app().await;
    let kim = signed_in(&app, "kim@example.org").await;
    enable_mfa(&app, &kim).await;
    let page = |url: String| {
        let kim = &kim;
        async move {
            let response = kim.client.get(url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.text().await.unwrap()
        }
    };
    // The page does not ask while rendering whether two-factor is on: the browser does, once loaded.
    let profile = page(format!("{}/settings/profile", kim.address)).await;
    assert!(profile.contains("change-email-form"), "{profile}");
    assert!(!profile.contains(r#"id="change-email-code""#));

    // Without JavaScript, the form posts without a code, and the page it comes back to has the field,
    // with what is missing next to it.
    let response = kim
        .client
        .post(format!("{}/api/change_email", kim.address))
        .header("origin", &kim.address)
        .header("sec-fetch-site", "same-origin")
        .header("accept", "text/html")
        .header("referer", format!("{}/settings/profile", kim.address))
        .form(&[
            ("new_email", "kim@elsewhere.example"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    let back = location(&response).unwrap();
    assert!(back.contains("__err="), "{back}");
    let back = if back.starts_with('/') {
        format!("{}{back}", kim.address)
    } else {
        back
    };
    let refused = page(back).await;
    assert!(refused.contains(r#"id="change-email-code""#), "{refused}");
    assert!(
        refused.contains("Enter a code from your authenticator app, or a backup code."),
        "{refused}"
    );
    assert_eq!(
        app.count("account_tokens WHERE purpose = 'change_email'")
            .await,
        0
    );
}

#[tokio::test]
async fn cancelling_the_code_step_goes_back_to_the_password() {
    let app = spawn_app().await;
    let owner = signed_in(&app, "mo@example.org").await;
    enable_mfa(&app, &owner).await;
    let browser = sign_in_pending(&app, "mo@example.org").await;
    let response = browser.call("cancel_sign_in", &[]).await;
    assert_eq!(location(&response).as_deref(), Some("/login"));
    assert_ok(response).await;
    assert!(!browser.pending_sign_in().await);
    assert!(browser.current_user().await.is_null());
}

#[tokio::test]
async fn a_password_reset_ends_sign_ins_waiting_for_a_code() {
    // The database store: the test counts its rows (Redis's index is tested in scale_out).
    let app = crate::helpers::spawn_app_with(crate::helpers::without_redis).await;
    let owner = signed_in(&app, "ned@example.org").await;
    let mfa = enable_mfa(&app, &owner).await;
    let browser = sign_in_pending(&app, "ned@example.org").await;
    assert_eq!(
        app.count("sessions WHERE user_id IS NOT NULL").await,
        2,
        "the waiting sign-in belongs to its user"
    );

    assert_ok(
        app.call("request_password_reset", &[("email", "ned@example.org")])
            .await,
    )
    .await;
    let mail = email_about(&app, "ned@example.org", 3, "Reset your Nest Egg password").await;
    let token = mail.token(&app, "/reset-password");
    assert_ok(
        app.call(
            "reset_password",
            &[("token", token.as_str()), ("password", NEW_PASSWORD)],
        )
        .await,
    )
    .await;
    assert!(!browser.pending_sign_in().await);
    expect_error(
        browser.verify_code(&code_now(&app, &mfa.secret)).await,
        400,
        "invalid_input",
    )
    .await;
    assert!(browser.current_user().await.is_null());
}

#[tokio::test]
async fn with_two_factor_on_moving_to_another_address_takes_a_code_too() {
    let app = app_for_many_codes().await;
    let lia = signed_in(&app, "lia@example.org").await;
    let mfa = enable_mfa(&app, &lia).await;
    let change = |code: String| {
        let lia = &lia;
        async move {
            lia.call(
                "change_email",
                &[
                    ("password", PASSWORD),
                    ("new_email", "lia@elsewhere.example"),
                    ("code", code.as_str()),
                ],
            )
            .await
        }
    };

    // The password alone (a session left signed in, a password seen) is not enough, nor a wrong code.
    let missing = expect_field_error(change(String::new()).await, "code").await;
    assert!(missing.contains("Enter a code"), "{missing}");
    expect_field_error(change(wrong_code(&app, &mfa.secret)).await, "code").await;
    let without_field = lia
        .call(
            "change_email",
            &[
                ("password", PASSWORD),
                ("new_email", "lia@elsewhere.example"),
            ],
        )
        .await;
    expect_field_error(without_field, "code").await;
    assert_eq!(
        app.count("account_tokens WHERE purpose = 'change_email'")
            .await,
        0,
        "no link was issued"
    );

    // A code from the app, or a backup code, completes it.
    assert_ok(change(code_now(&app, &mfa.secret)).await).await;
    email_about(&app, "lia@elsewhere.example", 1, "Confirm").await;
    assert_ok(change(mfa.backup_codes[0].clone()).await).await;
    assert_eq!(lia.two_factor_status().await["backup_codes_remaining"], 9);

    // Past the hour's allowance (a wrong code used one try, an empty one none), a request is refused
    // before its backup code is spent.
    let refused = change(mfa.backup_codes[1].clone()).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(lia.two_factor_status().await["backup_codes_remaining"], 9);
}

/// The tries left at the code step are the account's as well as the sign-in's: the wrong passwords
/// before it count toward the same lock-out.
#[tokio::test]
async fn the_tries_left_at_the_code_step_count_the_wrong_passwords_before_it() {
    let app = app_for_many_codes().await;
    let owner = signed_in(&app, "uma@example.org").await;
    let mfa = enable_mfa(&app, &owner).await;
    let browser = Browser::new(&app);
    for _ in 0..2 {
        let refused = browser.sign_in("uma@example.org", "not the password").await;
        assert_eq!(refused.status(), 400);
    }
    let response = browser.sign_in("uma@example.org", PASSWORD).await;
    assert_eq!(location(&response).as_deref(), Some(TWO_FACTOR_STEP));
    let wrong = wrong_code(&app, &mfa.secret);
    let first = expect_field_error(browser.verify_code(&wrong).await, "code").await;
    assert!(first.contains(" 2 tries left."), "{first}");
    let second = expect_field_error(browser.verify_code(&wrong).await, "code").await;
    assert!(second.contains(" 1 try left."), "{second}");
    let third = expect_error(browser.verify_code(&wrong).await, 400, "invalid_input").await;
    assert!(message(&third).contains("paused"), "{third}");
    assert!(!browser.pending_sign_in().await);
}

/// Turning two-factor on withdraws the trust of device cookies issued before: whoever signed in with
/// the password alone then could have kept any number of them, each an allowance of code guesses of
/// its own while the address is locked. The browser that turned it on keeps its trust.
#[tokio::test]
async fn turning_two_factor_on_withdraws_the_trust_of_browsers_signed_in_before() {
    let app = app_for_many_codes().await;
    let own = signed_in(&app, "kai@example.org").await;
    let earlier = Browser::new(&app);
    let response = earlier.sign_in("kai@example.org", PASSWORD).await;
    assert_eq!(location(&response).as_deref(), Some("/"));
    let mfa = enable_mfa(&app, &own).await;
    assert_ok(own.call("sign_out", &[]).await).await;

    let stranger = Browser::new(&app);
    for _ in 0..5 {
        stranger
            .sign_in("kai@example.org", "not the password")
            .await;
    }
    let refused = stranger.sign_in("kai@example.org", PASSWORD).await;
    assert_eq!(refused.status(), 400, "the address is locked");

    // Signed in before two-factor was on: its cookie no longer counts, so the address's lock holds.
    let refused = expect_error(
        earlier.sign_in("kai@example.org", PASSWORD).await,
        400,
        "invalid_input",
    )
    .await;
    assert!(message(&refused).contains("Too many attempts"), "{refused}");
    assert!(!earlier.pending_sign_in().await);

    // The browser that turned it on is still trusted.
    let response = own.sign_in("kai@example.org", PASSWORD).await;
    assert_eq!(location(&response).as_deref(), Some(TWO_FACTOR_STEP));
    assert_ok(own.verify_code(&code_now(&app, &mfa.secret)).await).await;
}

#[tokio::test]
async fn a_browser_signed_in_before_passes_both_steps_while_someone_else_locked_the_address() {
    let app = app_for_many_codes().await;
    let own = signed_in(&app, "mo@example.org").await;
    let mfa = enable_mfa(&app, &own).await;
    assert_ok(own.call("sign_out", &[]).await).await;

    let stranger = Browser::new(&app);
    for _ in 0..5 {
        stranger.sign_in("mo@example.org", "not the password").await;
    }
    let refused = stranger.sign_in("mo@example.org", PASSWORD).await;
    assert_eq!(refused.status(), 400, "the address is locked");

    // Mo's own browser: the password, then the code, each counted under its device cookie.
    let response = own.sign_in("mo@example.org", PASSWORD).await;
    assert_eq!(location(&response).as_deref(), Some(TWO_FACTOR_STEP));
    assert_ok(response).await;
    let code = code_now(&app, &mfa.secret);
    assert_ok(
        own.call("verify_sign_in_code", &[("code", code.as_str())])
            .await,
    )
    .await;
    assert_eq!(own.user_email().await.as_deref(), Some("mo@example.org"));

    // Signed in, the same for confirming the password and a code before a sensitive change.
    next_step(&app);
    let code = code_now(&app, &mfa.secret);
    assert_ok(
        own.call(
            "confirm_password",
            &[("password", PASSWORD), ("code", code.as_str())],
        )
        .await,
    )
    .await;
}
