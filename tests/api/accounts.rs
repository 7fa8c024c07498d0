//! The account life cycle over HTTP: register, verify, sign in/out, lock-out, rate limits, password reset
//! and change, email change — on whichever database backend the suite runs against.

use nestegg::server::clock::Clock as _;
use nestegg::server::services::auth::throttle_key;

use crate::helpers::{
    TestApp, attempts_in_flight, lockout_counters, logs, parallel_sign_ins, session_cookie,
    session_id, spawn_app, spawn_app_with,
};
use crate::smtp_sink::SmtpSink;

const PASSWORD: &str = "glacier Minnow 47 paperclip orbit";
const NEW_PASSWORD: &str = "velvet Harbor 93 lantern quiver";

/// Lots of sign-in attempts in one test: lift the per-IP limit so the lock-out is what is measured.
async fn app_for_lockout() -> TestApp {
    spawn_app_with(|v| {
        v.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "1000".into());
    })
    .await
}

/// The address in a `current_user` answer (`null` when signed out).
fn email_in(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    value
        .get("email")
        .and_then(|e| e.as_str())
        .map(str::to_owned)
}

async fn signed_in_user(app: &TestApp) -> Option<String> {
    let response = app.call("current_user", &[]).await;
    let body = response.text().await.unwrap();
    email_in(&body)
}

#[tokio::test]
async fn registration_creates_account_household_consents_and_sends_verification() {
    let app = spawn_app().await;
    let response = app.register("Ana@Example.org", "Ana", PASSWORD).await;
    // A fetch-style call gets the redirect as a Location header (a plain form post gets a 302).
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["location"], "/register/check-inbox");

    assert_eq!(app.count("users").await, 1);
    assert_eq!(app.count("households").await, 1);
    assert_eq!(app.count("household_members").await, 1);
    assert_eq!(app.count("consents").await, 2);
    assert_eq!(
        app.count("security_events WHERE kind = 'register'").await,
        1
    );

    let mail = app.emails_to("ana@example.org", 1).await;
    assert!(
        mail[0].subject.to_lowercase().contains("confirm"),
        "{}",
        mail[0].subject
    );
    let link = mail[0].link(&app, "/verify-email");
    assert!(
        link.starts_with(&format!("{}/verify-email?token=", app.address)),
        "built from PUBLIC_URL"
    );
    let token = mail[0].token(&app, "/verify-email");
    assert!(token.len() >= 43, "at least 256 bits");
    // Only a keyed hash of the token is stored.
    assert_eq!(
        app.count(&format!("account_tokens WHERE token_hash = '{token}'"))
            .await,
        0
    );
}

#[tokio::test]
async fn registering_a_taken_address_looks_identical_and_tells_the_owner() {
    let app = spawn_app().await;
    let first = app.register("ben@example.org", "Ben", PASSWORD).await;
    let other = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let again = other
        .post(app.url("/api/register"))
        .header("origin", &app.address)
        .form(&[
            ("email", "ben@example.org"),
            ("display_name", "Someone"),
            ("password", NEW_PASSWORD),
            ("accept_terms", "on"),
            ("accept_privacy", "on"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), again.status());
    assert_eq!(
        first.headers().get("location"),
        again.headers().get("location")
    );
    assert_eq!(
        session_cookie(&first).is_some(),
        session_cookie(&again).is_some()
    );
    assert_eq!(first.text().await.unwrap(), again.text().await.unwrap());
    assert_eq!(app.count("users").await, 1);
    let mail = app.emails_to("ben@example.org", 2).await;
    assert!(
        mail.iter().any(|m| m.text.contains("already")),
        "owner is told: {mail:?}"
    );
}

#[tokio::test]
async fn registration_explains_what_is_wrong_next_to_the_field() {
    // More attempts than the per-IP registration limit allows.
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_REGISTER_PER_HOUR".into(), "100".into());
    })
    .await;
    for (password, expected) in [
        ("short", "at least 12"),
        ("password1234", "leaked"),
        ("ana-budget-2026-ana", "email"),
        ("my nestegg password!", "Nest Egg"),
    ] {
        let response = app.register("ana@example.org", "Ana", password).await;
        assert_eq!(response.status(), 400, "{password}");
        let body: serde_json::Value =
            serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(body["field"], "password", "{password}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.to_lowercase().contains(&expected.to_lowercase()),
            "{password}: {message}"
        );
        if password.len() > 8 {
            assert!(!message.contains(password), "the password is never echoed");
        }
    }
    let response = app
        .call(
            "register",
            &[
                ("email", "ana@example.org"),
                ("display_name", "Ana"),
                ("password", PASSWORD),
                ("accept_terms", "on"),
            ],
        )
        .await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["field"], "accept_privacy");
    assert_eq!(app.count("users").await, 0);
}

/// Every sign-up with a taken address tells its owner, up to the hourly allowance of such emails to
/// one address (`RATE_LIMIT_RESET_PER_ACCOUNT_PER_HOUR`, 3): however many IPs try, the mailbox is not
/// flooded. The answer stays the same throughout, so it tells nothing either.
#[tokio::test]
async fn sign_ups_with_a_taken_address_email_its_owner_a_few_times_an_hour_at_most() {
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_REGISTER_PER_HOUR".into(), "100".into());
    })
    .await;
    app.register_verified("ola@example.org", PASSWORD).await;
    let mut answers = Vec::new();
    for _ in 0..5 {
        let response = app
            .register("ola@example.org", "Someone Else", PASSWORD)
            .await;
        let location = response.headers().get("location").cloned();
        answers.push((response.status(), location));
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, 200);
    let told = app
        .count("outbox_emails WHERE to_address = 'ola@example.org' AND kind = 'already_registered'")
        .await;
    assert_eq!(told, 3);
}

#[tokio::test]
async fn the_operator_can_close_registration() {
    let app = spawn_app_with(|v| {
        v.insert("REGISTRATION_OPEN".into(), "false".into());
    })
    .await;
    let response = app.register("ana@example.org", "Ana", PASSWORD).await;
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Sign-ups are closed")
    );
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn verification_links_work_once_expire_and_are_voided_by_a_new_one() {
    let app = spawn_app().await;
    app.register("cleo@example.org", "Cleo", PASSWORD).await;
    let first = app.emails_to("cleo@example.org", 1).await[0].token(&app, "/verify-email");

    // Sign in to ask for a new link; the first one stops working.
    assert_eq!(
        app.sign_in("cleo@example.org", PASSWORD).await.status(),
        200
    );
    // The sign-up email itself starts the 60-second cooldown.
    assert_eq!(app.call("resend_verification", &[]).await.status(), 429);
    app.clock.advance(time::Duration::seconds(61));
    assert_eq!(app.call("resend_verification", &[]).await.status(), 200);
    // Cooldown: a second resend within 60 s is refused with a wait time.
    let too_soon = app.call("resend_verification", &[]).await;
    assert_eq!(too_soon.status(), 429);
    assert!(too_soon.headers().contains_key("retry-after"));
    let second = app.emails_to("cleo@example.org", 2).await[1].token(&app, "/verify-email");
    assert_ne!(first, second);
    assert_eq!(
        app.call("verify_email", &[("token", &first)])
            .await
            .status(),
        400,
        "voided"
    );
    assert_eq!(
        app.call("verify_email", &[("token", &second)])
            .await
            .status(),
        200
    );
    assert_eq!(
        app.call("verify_email", &[("token", &second)])
            .await
            .status(),
        400,
        "single use"
    );
    let body = app.call("current_user", &[]).await.text().await.unwrap();
    assert!(body.contains(r#""email_verified":true"#), "{body}");

    // A fresh account's link expires after 24 hours.
    app.register("dora@example.org", "Dora", PASSWORD).await;
    let token = app.emails_to("dora@example.org", 1).await[0].token(&app, "/verify-email");
    app.clock.advance(time::Duration::hours(25));
    let expired = app.call("verify_email", &[("token", &token)]).await;
    assert_eq!(expired.status(), 400);
    assert!(expired.text().await.unwrap().contains("expired"));
}

#[tokio::test]
async fn sign_in_rotates_the_session_and_sign_out_makes_the_cookie_useless() {
    let app = spawn_app().await;
    app.register_verified("eve@example.org", PASSWORD).await;
    let first = app.sign_in("eve@example.org", PASSWORD).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["location"], "/");
    let first_cookie = session_cookie(&first).expect("session cookie");
    assert_eq!(
        signed_in_user(&app).await.as_deref(),
        Some("eve@example.org")
    );

    // Signing in again (same browser) gets a new session id: no fixation.
    let second = app.sign_in("eve@example.org", PASSWORD).await;
    let second_cookie = session_cookie(&second).expect("session cookie");
    assert_ne!(first_cookie, second_cookie);

    // `next` is honoured only when it is a path on this site.
    let response = app
        .call(
            "sign_in",
            &[
                ("email", "eve@example.org"),
                ("password", PASSWORD),
                ("next", "/settings/security"),
            ],
        )
        .await;
    assert_eq!(response.headers()["location"], "/settings/security");
    let response = app
        .call(
            "sign_in",
            &[
                ("email", "eve@example.org"),
                ("password", PASSWORD),
                ("next", "//evil.example"),
            ],
        )
        .await;
    assert_eq!(response.headers()["location"], "/");
    let current_cookie = session_cookie(&response).expect("cookie");

    assert_eq!(app.call("sign_out", &[]).await.status(), 200);
    assert_eq!(signed_in_user(&app).await, None);
    // Replaying the old cookie from another client: the server no longer knows it.
    let replay = reqwest::Client::new()
        .post(app.url("/api/current_user"))
        .header("cookie", current_cookie)
        .header("origin", &app.address)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.text().await.unwrap(), "null");
}

#[tokio::test]
async fn failed_sign_ins_look_the_same_for_known_and_unknown_addresses() {
    let app = spawn_app().await;
    app.register_verified("finn@example.org", PASSWORD).await;
    let known = app
        .sign_in("finn@example.org", "wrong password entirely")
        .await;
    let unknown = app
        .sign_in("nobody@example.org", "wrong password entirely")
        .await;
    assert_eq!(known.status(), 400);
    assert_eq!(known.status(), unknown.status());
    assert_eq!(
        session_cookie(&known).is_some(),
        session_cookie(&unknown).is_some()
    );
    assert_eq!(known.text().await.unwrap(), unknown.text().await.unwrap());
}

#[tokio::test]
async fn five_failures_lock_the_address_for_thirty_minutes_even_with_the_right_password() {
    let app = app_for_lockout().await;
    app.register_verified("gus@example.org", PASSWORD).await;
    for _ in 0..4 {
        assert_eq!(
            app.sign_in("gus@example.org", "not the password")
                .await
                .status(),
            400
        );
    }
    let fifth = app.sign_in("gus@example.org", "not the password").await;
    assert!(
        fifth
            .text()
            .await
            .unwrap()
            .contains("Too many attempts — try again later. If you have forgotten your password, you can reset it.")
    );
    let right = app.sign_in("gus@example.org", PASSWORD).await;
    assert_eq!(right.status(), 400);
    let locked_message = right.text().await.unwrap();
    assert!(locked_message.contains("Too many attempts"));
    // The owner hears about it, with a way to reset.
    let mail = app.emails_to("gus@example.org", 2).await;
    assert!(
        mail.iter().any(|m| m.text.contains("/forgot-password")),
        "{mail:?}"
    );
    assert_eq!(
        app.count("security_events WHERE kind = 'locked_out'").await,
        1
    );

    // Unknown addresses lock the same way and say the same thing.
    for _ in 0..5 {
        app.sign_in("ghost@example.org", "not the password").await;
    }
    let ghost = app.sign_in("ghost@example.org", "not the password").await;
    assert_eq!(ghost.text().await.unwrap(), locked_message);

    // Thirty minutes later the lock is gone.
    app.clock.advance(time::Duration::minutes(31));
    assert_eq!(app.sign_in("gus@example.org", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn a_lock_that_could_not_be_recorded_is_set_again_by_the_next_guess_and_announced() {
    let app = app_for_lockout().await;
    app.register_verified("lou@example.org", PASSWORD).await;
    for _ in 0..4 {
        let wrong = app.sign_in("lou@example.org", "not the password").await;
        assert_eq!(wrong.status(), 400);
    }
    // The guess that reaches the threshold cannot record the lock (nor queue the owner's email).
    let rename = |from: &str, to: &str| format!("ALTER TABLE {from} RENAME TO {to}");
    let db = &app.app_db;
    sea_orm::ConnectionTrait::execute_unprepared(db, &rename("security_events", "events_away"))
        .await
        .unwrap();
    let fifth = app.sign_in("lou@example.org", "not the password").await;
    assert!(fifth.status().is_server_error(), "{}", fifth.status());
    // Nor does the audit log claim it: its lines follow what was stored, not what was tried.
    let user_id = {
        use nestegg::server::entities::user;
        use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
        user::Entity::find()
            .filter(user::Column::Email.eq("lou@example.org"))
            .one(db)
            .await
            .unwrap()
            .expect("the account")
            .id
    };
    let audited = |kind: &str| {
        logs::lines()
            .iter()
            .filter(|l| l["target"] == "nestegg::audit" && l["user_id"] == user_id.as_str())
            .filter(|l| l["kind"] == kind)
            .count()
    };
    assert_eq!(
        audited("sign_in_failed"),
        4,
        "only the four recorded guesses"
    );
    assert_eq!(audited("locked_out"), 0);
    sea_orm::ConnectionTrait::execute_unprepared(db, &rename("events_away", "security_events"))
        .await
        .unwrap();
    // No lock stood unannounced (with Redis it is not part of the transaction): the next guess sets
    // it, records it and emails the owner.
    let sixth = app.sign_in("lou@example.org", "not the password").await;
    assert_eq!(sixth.status(), 400);
    assert!(
        sixth.text().await.unwrap().contains("Too many attempts"),
        "locked"
    );
    assert_eq!(
        app.count("security_events WHERE kind = 'locked_out'").await,
        1
    );
    let mail = app.emails_to("lou@example.org", 2).await;
    assert!(
        mail.iter().any(|m| m.text.contains("/forgot-password")),
        "{mail:?}"
    );
    assert_eq!(app.sign_in("lou@example.org", PASSWORD).await.status(), 400);
    assert_eq!(audited("locked_out"), 1);
}

#[tokio::test]
async fn a_browser_signed_in_before_is_not_locked_out_by_someone_elses_guesses() {
    let app = app_for_lockout().await;
    app.register_verified("kim@example.org", PASSWORD).await;
    app.register_verified("lou@example.org", PASSWORD).await;
    let own = TestBrowser::new(&app);
    let signed_in = own.sign_in_response("kim@example.org", PASSWORD).await;
    assert_eq!(signed_in.status(), 200);
    let device = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("nestegg_device="))
        .expect("a device cookie")
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=15552000"] {
        assert!(device.contains(attribute), "{attribute} in {device}");
    }
    assert_eq!(own.call("sign_out", &[]).await.status(), 200);

    // Someone else locks the address; the browser Kim signed in with still gets in, nobody else.
    let stranger = TestBrowser::new(&app);
    let lock = |email: &'static str| {
        let stranger = &stranger;
        async move {
            for _ in 0..5 {
                stranger.sign_in(email, "not the password").await;
            }
            assert_eq!(
                stranger.sign_in(email, PASSWORD).await,
                400,
                "{email} locked"
            );
        }
    };
    lock("kim@example.org").await;
    assert_eq!(own.sign_in("kim@example.org", PASSWORD).await, 200);
    assert_eq!(own.current_user().await.as_deref(), Some("kim@example.org"));
    assert_eq!(
        TestBrowser::new(&app)
            .sign_in("kim@example.org", PASSWORD)
            .await,
        400
    );

    // The cookie is Kim's: it does not open Lou's locked address.
    lock("lou@example.org").await;
    assert_eq!(own.sign_in("lou@example.org", PASSWORD).await, 400);

    // Wrong passwords from Kim's browser lock that browser too, after as many.
    for _ in 0..5 {
        assert_eq!(
            own.sign_in("kim@example.org", "not the password").await,
            400
        );
    }
    assert_eq!(own.sign_in("kim@example.org", PASSWORD).await, 400);

    // Once every lock is over, a trusted browser's wrong guesses count toward the address too: a
    // stolen device cookie gets no more guesses than the address allows.
    app.clock.advance(time::Duration::minutes(31));
    assert_eq!(own.sign_in("kim@example.org", PASSWORD).await, 200);
    for _ in 0..5 {
        own.sign_in("kim@example.org", "not the password").await;
    }
    assert_eq!(
        TestBrowser::new(&app)
            .sign_in("kim@example.org", PASSWORD)
            .await,
        400
    );

    // A password change withdraws the trust of the cookies issued before it, but for the browser it
    // was made in, whose cookie is re-signed for the new password.
    app.clock.advance(time::Duration::minutes(31));
    let other = TestBrowser::new(&app);
    assert_eq!(other.sign_in("kim@example.org", PASSWORD).await, 200);
    assert_eq!(own.sign_in("kim@example.org", PASSWORD).await, 200);
    let changed = own
        .call(
            "change_password",
            &[
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(changed.status(), 200);
    lock("kim@example.org").await;
    assert_eq!(other.sign_in("kim@example.org", NEW_PASSWORD).await, 400);
    assert_eq!(own.sign_in("kim@example.org", NEW_PASSWORD).await, 200);

    // A cookie is trusted for 180 days from its sign-in, whatever the browser keeps.
    app.clock.advance(time::Duration::minutes(31));
    assert_eq!(own.sign_in("kim@example.org", NEW_PASSWORD).await, 200);
    app.clock.advance(time::Duration::days(180));
    lock("kim@example.org").await;
    assert_eq!(own.sign_in("kim@example.org", NEW_PASSWORD).await, 400);
}

#[tokio::test]
async fn a_lock_of_the_address_set_by_a_trusted_browser_is_recorded_and_emailed_once() {
    let app = app_for_lockout().await;
    app.register_verified("meg@example.org", PASSWORD).await;
    let own = TestBrowser::new(&app);
    assert_eq!(own.sign_in("meg@example.org", PASSWORD).await, 200);
    let locks = || app.count("security_events WHERE kind = 'locked_out'");
    let lock_emails =
        || app.count("outbox_emails WHERE to_address = 'meg@example.org' AND kind = 'locked_out'");

    // Three guesses from elsewhere, then two from Meg's browser: the fifth at the address locks it,
    // though the browser's own run is only at two.
    let stranger = TestBrowser::new(&app);
    for _ in 0..3 {
        assert_eq!(stranger.sign_in("meg@example.org", "not it").await, 400);
    }
    for _ in 0..2 {
        assert_eq!(own.sign_in("meg@example.org", "not it").await, 400);
    }
    assert_eq!(stranger.sign_in("meg@example.org", PASSWORD).await, 400);
    assert_eq!(locks().await, 1, "the address's lock is in the activity");
    assert_eq!(lock_emails().await, 1, "and its owner told");
    // The browser itself is not locked by it.
    assert_eq!(own.sign_in("meg@example.org", PASSWORD).await, 200);

    // Later, five wrong guesses from the browser alone lock it and the address with one guess: one
    // lock in the activity, one email.
    app.clock.advance(time::Duration::minutes(31));
    for _ in 0..5 {
        assert_eq!(own.sign_in("meg@example.org", "not it").await, 400);
    }
    assert_eq!(own.sign_in("meg@example.org", PASSWORD).await, 400);
    assert_eq!(stranger.sign_in("meg@example.org", PASSWORD).await, 400);
    assert_eq!(locks().await, 2);
    assert_eq!(lock_emails().await, 2);
}

#[tokio::test]
async fn someone_elses_guesses_do_not_lock_the_owner_out_of_their_own_settings() {
    let app = app_for_lockout().await;
    app.register_verified("max@example.org", PASSWORD).await;
    let own = TestBrowser::new(&app);
    let signed_in = own.sign_in_response("max@example.org", PASSWORD).await;
    assert_eq!(signed_in.status(), 200);
    let session_only = session_cookie(&signed_in).expect("a session cookie");
    let confirm = |password: &'static str| {
        let own = &own;
        async move {
            own.call("confirm_password", &[("password", password)])
                .await
                .status()
                .as_u16()
        }
    };
    // The session without the browser's device cookie (a stolen session cookie, say).
    let confirm_with_session_only = || async {
        let response = app
            .post_same_origin("/api/confirm_password")
            .header("cookie", &session_only)
            .form(&[("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };

    // Someone else locks the address.
    for _ in 0..6 {
        TestBrowser::new(&app)
            .sign_in("max@example.org", "not the password")
            .await;
    }
    assert_eq!(
        TestBrowser::new(&app)
            .sign_in("max@example.org", PASSWORD)
            .await,
        400
    );

    // Max, in the browser he signed in with, still confirms his password and changes it; his session
    // alone, without that browser's cookie, is refused.
    let (status, body) = confirm_with_session_only().await;
    assert_eq!(status, 400);
    assert!(
        body.contains("Too many attempts"),
        "the address is locked: {body}"
    );
    assert_eq!(confirm(PASSWORD).await, 200);
    let changed = own
        .call(
            "change_password",
            &[
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(changed.status(), 200);
    // The change kept his browser trusted, with the new password, while the address is still locked.
    assert_eq!(confirm(NEW_PASSWORD).await, 200);

    // His browser's own wrong guesses lock it after as many as the address allows.
    for _ in 0..5 {
        assert_eq!(confirm("not the password").await, 400);
    }
    let locked = own
        .call("confirm_password", &[("password", NEW_PASSWORD)])
        .await;
    assert_eq!(locked.status(), 400);
    assert!(
        locked.text().await.unwrap().contains("Too many attempts"),
        "locked"
    );

    // Once every lock is over, those guesses count toward the address too: a stolen session with its
    // browser's cookie gets no more guesses than the address allows.
    app.clock.advance(time::Duration::minutes(31));
    assert_eq!(own.sign_in("max@example.org", NEW_PASSWORD).await, 200);
    for _ in 0..5 {
        assert_eq!(confirm("not the password").await, 400);
    }
    assert_eq!(
        TestBrowser::new(&app)
            .sign_in("max@example.org", NEW_PASSWORD)
            .await,
        400
    );
}

#[tokio::test]
async fn sign_in_attempts_are_rate_limited_per_ip_with_retry_after() {
    let app = spawn_app().await;
    for _ in 0..5 {
        let r = app.sign_in("hal@example.org", "whatever it is").await;
        assert_ne!(r.status(), 429);
    }
    let limited = app.sign_in("hal@example.org", "whatever it is").await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let error: nestegg::error::AppError =
        serde_json::from_str(&limited.text().await.unwrap()).unwrap();
    assert_eq!(error.code(), "rate_limited");
    assert!(
        error.to_string().starts_with("Too many requests"),
        "{error}"
    );
}

#[tokio::test]
async fn a_spoofed_forwarded_header_does_not_escape_the_rate_limit() {
    let app = spawn_app().await;
    for i in 0..6 {
        let response = app
            .post_same_origin("/api/sign_in")
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .form(&[("email", "ivy@example.org"), ("password", "whatever it is")])
            .send()
            .await
            .unwrap();
        if i == 5 {
            assert_eq!(response.status(), 429, "the peer is not a trusted proxy");
        }
    }
}

#[tokio::test]
async fn password_reset_by_email_ends_every_session_and_the_lock() {
    let app = app_for_lockout().await;
    app.register_verified("jo@example.org", PASSWORD).await;
    // Another browser is signed in.
    let other = TestBrowser::new(&app);
    assert_eq!(other.sign_in("jo@example.org", PASSWORD).await, 200);
    assert_eq!(
        other.current_user().await.as_deref(),
        Some("jo@example.org")
    );
    // And the address is locked.
    for _ in 0..5 {
        app.sign_in("jo@example.org", "not the password").await;
    }

    let same_for_unknown = app
        .call("request_password_reset", &[("email", "nobody@example.org")])
        .await;
    let response = app
        .call("request_password_reset", &[("email", "jo@example.org")])
        .await;
    assert_eq!(response.status(), same_for_unknown.status());
    assert_eq!(
        response.text().await.unwrap(),
        same_for_unknown.text().await.unwrap()
    );

    let mail = app.emails_to("jo@example.org", 3).await;
    let reset = mail
        .iter()
        .find(|m| m.text.contains("/reset-password"))
        .expect("reset email");
    let token = reset.token(&app, "/reset-password");

    let weak = app
        .call(
            "reset_password",
            &[("token", &token), ("password", "short")],
        )
        .await;
    assert_eq!(weak.status(), 400);
    let done = app
        .call(
            "reset_password",
            &[("token", &token), ("password", NEW_PASSWORD)],
        )
        .await;
    assert_eq!(done.status(), 200);
    assert_eq!(done.headers()["location"], "/login?reset=done");
    assert_eq!(
        app.call(
            "reset_password",
            &[("token", &token), ("password", NEW_PASSWORD)]
        )
        .await
        .status(),
        400
    );

    assert_eq!(other.current_user().await, None, "every session ended");
    assert_eq!(app.sign_in("jo@example.org", PASSWORD).await.status(), 400);
    assert_eq!(
        app.sign_in("jo@example.org", NEW_PASSWORD).await.status(),
        200,
        "lock lifted"
    );
    let mail = app.emails_to("jo@example.org", 4).await;
    assert!(
        mail.iter()
            .any(|m| m.subject.to_lowercase().contains("password") && m.text.contains("changed"))
    );
}

#[tokio::test]
async fn reset_links_expire_after_an_hour() {
    let app = spawn_app().await;
    app.register_verified("kim@example.org", PASSWORD).await;
    app.call("request_password_reset", &[("email", "kim@example.org")])
        .await;
    let mail = app.emails_to("kim@example.org", 2).await;
    let token = mail[1].token(&app, "/reset-password");
    app.clock.advance(time::Duration::minutes(61));
    assert_eq!(
        app.call(
            "reset_password",
            &[("token", &token), ("password", NEW_PASSWORD)]
        )
        .await
        .status(),
        400
    );
}

#[tokio::test]
async fn changing_the_password_ends_other_sessions_but_keeps_this_one() {
    let app = spawn_app().await;
    app.register_verified("lee@example.org", PASSWORD).await;
    app.sign_in("lee@example.org", PASSWORD).await;
    let other = TestBrowser::new(&app);
    other.sign_in("lee@example.org", PASSWORD).await;

    let wrong = app
        .call(
            "change_password",
            &[
                ("current_password", "not it at all"),
                ("new_password", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(wrong.status(), 400);
    assert!(wrong.text().await.unwrap().contains("current_password"));
    let ok = app
        .call(
            "change_password",
            &[
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        signed_in_user(&app).await.as_deref(),
        Some("lee@example.org")
    );
    assert_eq!(other.current_user().await, None);
    let mail = app.emails_to("lee@example.org", 2).await;
    assert!(mail[1].text.contains("changed"));
}

/// The signed-in user as seen by a client that sends only `cookie` (a copy of someone's cookie).
async fn user_with_cookie(app: &TestApp, cookie: &str) -> Option<String> {
    let body = reqwest::Client::new()
        .post(app.url("/api/current_user"))
        .header("cookie", cookie)
        .header("origin", &app.address)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    email_in(&body)
}

/// A copy of this browser's cookie (a shared computer, a leaked HAR file) is this session as far as
/// the sessions page can tell, so ending the other sessions does not end it. Confirming the password
/// (sudo mode) and changing it renew the session id: the copy stops working, this browser goes on.
#[tokio::test]
async fn a_copied_session_cookie_ends_when_the_password_is_confirmed_or_changed() {
    let app = spawn_app().await;
    app.register_verified("cy@example.org", PASSWORD).await;
    let signed_in = app.sign_in("cy@example.org", PASSWORD).await;
    let copy = session_cookie(&signed_in).expect("a session cookie");
    assert_eq!(
        user_with_cookie(&app, &copy).await.as_deref(),
        Some("cy@example.org")
    );

    let confirmed = app
        .call("confirm_password", &[("password", PASSWORD)])
        .await;
    assert_eq!(confirmed.status(), 200);
    let renewed = session_cookie(&confirmed).expect("a new session cookie");
    assert_eq!(user_with_cookie(&app, &copy).await, None);
    assert_eq!(
        signed_in_user(&app).await.as_deref(),
        Some("cy@example.org")
    );

    let changed = app
        .call(
            "change_password",
            &[
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(user_with_cookie(&app, &renewed).await, None);
    assert_eq!(
        signed_in_user(&app).await.as_deref(),
        Some("cy@example.org")
    );
}

#[tokio::test]
async fn a_copied_session_cookie_ends_when_every_other_session_is_signed_out() {
    let app = spawn_app().await;
    app.register_verified("di@example.org", PASSWORD).await;
    let copy = session_cookie(&app.sign_in("di@example.org", PASSWORD).await).expect("a cookie");
    assert_eq!(
        user_with_cookie(&app, &copy).await.as_deref(),
        Some("di@example.org")
    );
    let ended = app.call("revoke_other_sessions", &[]).await;
    assert_eq!(ended.status(), 200);
    assert_eq!(user_with_cookie(&app, &copy).await, None, "the copy ends");
    assert!(
        session_cookie(&ended).is_some(),
        "this browser goes on under a new id"
    );
    assert_eq!(
        signed_in_user(&app).await.as_deref(),
        Some("di@example.org")
    );
}

/// A sign-in that checked the old password can save its session after a concurrent reset ended every
/// session: it is still verifying (argon2, tens of milliseconds) while the reset commits, and its
/// clock then reads the same second as the reset's or later. That session must be over all the same.
/// The race is played out in order: the sign-in's session is taken from the store, the reset ends
/// it, and it is put back as the late save would. (The test clock stands still, so everything
/// happens in one second, as it would in the race.)
#[tokio::test]
async fn a_sign_in_that_checked_the_old_password_does_not_outlive_a_reset() {
    use tower_sessions::SessionStore as _;

    let app = spawn_app().await;
    app.register_verified("rai@example.org", PASSWORD).await;
    app.call("request_password_reset", &[("email", "rai@example.org")])
        .await;
    let mail = app.emails_to("rai@example.org", 2).await;
    let token = mail[1].token(&app, "/reset-password");

    // The intruder's browser, with the password that is about to be replaced.
    let intruder = TestBrowser::new(&app);
    let signed_in = intruder.sign_in_response("rai@example.org", PASSWORD).await;
    assert_eq!(signed_in.status(), 200);
    let cookie = session_cookie(&signed_in).expect("a session cookie");
    assert_eq!(
        intruder.current_user().await.as_deref(),
        Some("rai@example.org")
    );
    let id = session_id(&cookie);
    let mut late_save = app.state.sessions.load(&id).await.unwrap().unwrap();

    let done = app
        .call(
            "reset_password",
            &[("token", &token), ("password", NEW_PASSWORD)],
        )
        .await;
    assert_eq!(done.status(), 200);
    assert!(app.state.sessions.load(&id).await.unwrap().is_none());

    app.state.sessions.create(&mut late_save).await.unwrap();
    assert_eq!(late_save.id, id);
    assert!(
        app.state.sessions.load(&id).await.unwrap().is_some(),
        "the session is back in the store: only the password check can end it"
    );
    assert_eq!(
        intruder.current_user().await,
        None,
        "the reset ends the late session too"
    );
}

/// The session that changes the password stays signed in, however often and quickly it does so.
#[tokio::test]
async fn changing_the_password_twice_in_one_second_keeps_this_session() {
    let app = spawn_app().await;
    app.register_verified("ola@example.org", PASSWORD).await;
    app.sign_in("ola@example.org", PASSWORD).await;
    for (current, new) in [(PASSWORD, NEW_PASSWORD), (NEW_PASSWORD, PASSWORD)] {
        let changed = app
            .call(
                "change_password",
                &[("current_password", current), ("new_password", new)],
            )
            .await;
        assert_eq!(changed.status(), 200);
        assert_eq!(
            signed_in_user(&app).await.as_deref(),
            Some("ola@example.org")
        );
    }
}

/// A request renewing its session id (confirming the password, say) that was in flight when its
/// session was ended must not store the session again under the new id: the stored record is re-keyed
/// only if it is still there. Played in order, as in the test above: the intruder's session is read
/// as its request would read it, the owner ends every other session, then the request renews the id
/// and saves the session as the session layer does at the end.
#[tokio::test]
async fn a_renewal_in_flight_does_not_bring_back_a_session_ended_meanwhile() {
    use std::sync::Arc;
    use tower_sessions::SessionStore as _;

    let app = spawn_app().await;
    app.register_verified("ren@example.org", PASSWORD).await;
    app.sign_in("ren@example.org", PASSWORD).await;
    let intruder = TestBrowser::new(&app);
    let signed_in = intruder.sign_in_response("ren@example.org", PASSWORD).await;
    let intruder_id = session_id(&session_cookie(&signed_in).expect("a session cookie"));
    let store = Arc::new(app.state.sessions.clone());

    let in_flight = tower_sessions::Session::new(Some(intruder_id), store.clone(), None);
    let user: Option<String> = in_flight.get("uid").await.unwrap();
    assert!(
        user.is_some(),
        "the intruder's request read a signed-in session"
    );
    let ended = app.call("revoke_other_sessions", &[]).await;
    assert_eq!(ended.status(), 200);
    // Signing out the others renews the id of the session that asked.
    let owner_cookie = session_cookie(&ended).expect("a session cookie");

    nestegg::server::session_store::renew_id(&in_flight)
        .await
        .unwrap();
    in_flight.save().await.unwrap();
    let renewed = in_flight.id().expect("a new id");
    assert_ne!(renewed, intruder_id);
    assert!(
        store.load(&renewed).await.unwrap().is_none(),
        "not brought back"
    );
    assert!(store.load(&intruder_id).await.unwrap().is_none());
    assert_eq!(intruder.current_user().await, None);

    // A live session renewed the same way goes on under its new id, and only under it.
    let owner_id = session_id(&owner_cookie);
    let live = tower_sessions::Session::new(Some(owner_id), store.clone(), None);
    nestegg::server::session_store::renew_id(&live)
        .await
        .unwrap();
    live.save().await.unwrap();
    let renewed = live.id().expect("a new id");
    let record = store
        .load(&renewed)
        .await
        .unwrap()
        .expect("the session goes on");
    assert!(record.data.contains_key("uid"));
    assert!(
        !record.data.contains_key("renews"),
        "{:?}",
        record.data.keys()
    );
    assert!(store.load(&owner_id).await.unwrap().is_none());
}

#[tokio::test]
async fn renewals_racing_a_revocation_of_every_session_do_not_escape_it() {
    use std::sync::Arc;
    use tower_sessions::SessionStore as _;

    let app = spawn_app().await;
    app.register_verified("ray@example.org", PASSWORD).await;
    let user_id = {
        use nestegg::server::entities::user;
        use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
        user::Entity::find()
            .filter(user::Column::Email.eq("ray@example.org"))
            .one(&app.app_db)
            .await
            .unwrap()
            .expect("the account")
            .id
    };
    let store = Arc::new(app.state.sessions.clone());

    // Many signed-in sessions, each renewing its id (as confirming the password does) while every
    // session of the account is ended.
    let mut sessions = Vec::new();
    for _ in 0..40 {
        let session = tower_sessions::Session::new(None, store.clone(), None);
        session.insert("uid", &user_id).await.unwrap();
        session.save().await.unwrap();
        sessions.push(session);
    }
    let renewals = sessions.iter().map(|session| async move {
        nestegg::server::session_store::renew_id(session)
            .await
            .unwrap();
        session.save().await.unwrap();
    });
    let revocation = store.revoke_user(&app.app_db, &user_id, None);
    let (ended, _) = tokio::join!(revocation, futures::future::join_all(renewals));

    let mut survivors = 0;
    for session in &sessions {
        let id = session.id().expect("an id");
        if store.load(&id).await.unwrap().is_some() {
            survivors += 1;
        }
    }
    assert_eq!(
        survivors, 0,
        "sessions renewed during the revocation live on"
    );
    assert!(
        ended.unwrap() >= 40,
        "each is counted, under one key or the other"
    );
}

#[tokio::test]
async fn the_email_address_changes_only_when_the_new_one_is_confirmed() {
    let app = spawn_app().await;
    app.register_verified("max@example.org", PASSWORD).await;
    app.sign_in("max@example.org", PASSWORD).await;
    let wrong = app
        .call(
            "change_email",
            &[
                ("password", "nope nope nope"),
                ("new_email", "max@new.example"),
            ],
        )
        .await;
    assert_eq!(wrong.status(), 400);
    assert_eq!(
        app.call(
            "change_email",
            &[("password", PASSWORD), ("new_email", "max@new.example")]
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        signed_in_user(&app).await.as_deref(),
        Some("max@example.org"),
        "not yet"
    );
    let notice = app.emails_to("max@example.org", 2).await;
    assert!(
        notice[1].text.contains("m•••@new.example"),
        "{}",
        notice[1].text
    );
    let token = app.emails_to("max@new.example", 1).await[0].token(&app, "/confirm-email-change");
    assert_eq!(
        app.call("confirm_email_change", &[("token", &token)])
            .await
            .status(),
        200
    );
    assert_eq!(
        signed_in_user(&app).await.as_deref(),
        Some("max@new.example")
    );
    assert_eq!(app.sign_in("max@new.example", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn asking_for_a_taken_address_ends_the_earlier_link_as_asking_for_a_free_one_does() {
    let app = spawn_app().await;
    app.register_verified("ida@example.org", PASSWORD).await;
    app.register_verified("max@example.org", PASSWORD).await;
    app.sign_in("max@example.org", PASSWORD).await;
    let change_to = |address: &'static str| {
        let app = &app;
        async move {
            let response = app
                .call(
                    "change_email",
                    &[("password", PASSWORD), ("new_email", address)],
                )
                .await;
            assert_eq!(response.status(), 200, "{address}");
        }
    };
    change_to("max@new.example").await;
    let earlier = app.emails_to("max@new.example", 1).await[0].token(&app, "/confirm-email-change");
    // Ida's address gets no link; whether the earlier one still works must not tell that it is taken.
    change_to("ida@example.org").await;
    let confirmed = app
        .call("confirm_email_change", &[("token", &earlier)])
        .await;
    assert_eq!(confirmed.status(), 400);
    assert!(
        confirmed
            .text()
            .await
            .unwrap()
            .contains("expired or was already used")
    );
    assert_eq!(
        signed_in_user(&app).await.as_deref(),
        Some("max@example.org")
    );
}

#[tokio::test]
async fn email_survives_smtp_failures_and_is_delivered_exactly_once_without_logging_secrets() {
    let sink = SmtpSink::start().await;
    sink.failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let url = sink.url();
    let app = spawn_app_with(move |v| {
        v.insert("SMTP_URL".into(), url);
    })
    .await;
    app.register("nia@example.org", "Nia", PASSWORD).await;

    // The first attempt fails (451): the email waits for its retry.
    let mut attempts = 0;
    for _ in 0..100 {
        attempts = app
            .count("outbox_emails WHERE attempts >= 1 AND status = 'pending'")
            .await;
        if attempts == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(attempts, 1, "one failed attempt recorded");
    // While it waits, its body (with the one-time link) is sealed: a database dump reveals no link.
    assert_eq!(
        app.count("outbox_emails WHERE body_text LIKE 'v1:%' AND body_html LIKE 'v1:%'")
            .await,
        1
    );
    assert_eq!(
        app.count("outbox_emails WHERE body_text LIKE '%token=%' OR body_html LIKE '%token=%'")
            .await,
        0
    );
    assert!(sink.messages.lock().await.is_empty());

    // The server recovers; a minute later (backoff) the retry delivers it, once.
    sink.failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    app.clock.advance(time::Duration::minutes(2));
    app.state.mail_wakeup.notify_one();
    for _ in 0..100 {
        if !sink.messages.lock().await.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.clock.advance(time::Duration::minutes(20));
    app.state.mail_wakeup.notify_one();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let messages = sink.messages.lock().await.clone();
    assert_eq!(messages.len(), 1, "delivered exactly once");
    assert_eq!(
        app.count("outbox_emails WHERE status = 'sent' AND body_text = ''")
            .await,
        1
    );

    // Nothing secret reached the log: not the password, not the token, not the link.
    let email = crate::helpers::parse_email(&messages[0]);
    let token = email.token(&app, "/verify-email");
    let log = logs::raw();
    assert!(!log.contains(PASSWORD), "password logged");
    assert!(!log.contains(&token), "token logged");
    assert!(!log.contains("/verify-email?token="), "link logged");
}

/// A second browser: its own cookie jar.
struct TestBrowser {
    client: reqwest::Client,
    address: String,
}

impl TestBrowser {
    fn new(app: &TestApp) -> Self {
        TestBrowser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .cookie_store(true)
                .build()
                .unwrap(),
            address: app.address.clone(),
        }
    }

    async fn sign_in(&self, email: &str, password: &str) -> u16 {
        self.sign_in_response(email, password)
            .await
            .status()
            .as_u16()
    }

    async fn sign_in_response(&self, email: &str, password: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/api/sign_in", self.address))
            .header("origin", &self.address)
            .form(&[("email", email), ("password", password)])
            .send()
            .await
            .unwrap()
    }

    /// Posts a form to a server function as a same-origin page would.
    async fn call(&self, function: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(format!("{}/api/{function}", self.address))
            .header("origin", &self.address)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    async fn current_user(&self) -> Option<String> {
        let body = self
            .client
            .post(format!("{}/api/current_user", self.address))
            .header("origin", &self.address)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        email_in(&body)
    }
}

#[tokio::test]
async fn required_verification_blocks_sign_in_and_offers_a_new_link() {
    let app = spawn_app_with(|v| {
        v.insert("REQUIRE_EMAIL_VERIFICATION".into(), "true".into());
    })
    .await;
    app.register("olu@example.org", "Olu", PASSWORD).await;
    let blocked = app.sign_in("olu@example.org", PASSWORD).await;
    assert_eq!(blocked.status(), 403);
    assert!(blocked.text().await.unwrap().contains("email_not_verified"));
    assert_eq!(signed_in_user(&app).await, None);

    // A new link by address, past the sign-up email's cooldown; unknown addresses get the same answer.
    app.clock.advance(time::Duration::seconds(61));
    let unknown = app
        .call(
            "request_verification_email",
            &[("email", "nobody@example.org")],
        )
        .await;
    let known = app
        .call(
            "request_verification_email",
            &[("email", "olu@example.org")],
        )
        .await;
    assert_eq!(known.status(), unknown.status());
    let mail = app.emails_to("olu@example.org", 2).await;
    let token = mail[1].token(&app, "/verify-email");
    assert_eq!(
        app.call("verify_email", &[("token", &token)])
            .await
            .status(),
        200
    );
    assert_eq!(app.sign_in("olu@example.org", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn every_other_server_function_has_a_per_ip_budget() {
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_API_PER_MINUTE".into(), "3".into());
    })
    .await;
    for _ in 0..3 {
        assert_eq!(app.call("current_user", &[]).await.status(), 200);
    }
    let limited = app.call("current_user", &[]).await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
}

/// Page loads have a budget of their own, per network: rendering reads the session and the database,
/// so a loop of them meets a limit. The site's own files and the bundle come with every page and do
/// not count; server functions have their own budget.
#[tokio::test]
async fn page_loads_have_a_per_ip_budget() {
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_PAGES_PER_MINUTE".into(), "3".into());
        v.insert("TRUSTED_PROXIES".into(), "127.0.0.1/32".into());
    })
    .await;
    let page = |path: &str, client: &str| {
        app.get(path)
            .header("accept", "text/html")
            .header("x-forwarded-for", client)
            .send()
    };
    // The not-found page costs a rendering too.
    for path in ["/terms", "/login", "/no-such-page"] {
        let status = page(path, "203.0.113.1").await.unwrap().status();
        assert_ne!(status, 429, "{path}");
    }
    for path in ["/robots.txt", "/pkg/nestegg.css", "/pkg/nestegg.wasm"] {
        let status = page(path, "203.0.113.1").await.unwrap().status();
        assert_eq!(status, 200, "{path} is not a page load");
    }
    let limited = page("/terms", "203.0.113.1").await.unwrap();
    assert_eq!(limited.status(), 429);
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // 3 a minute: one comes back every 20 seconds.
    assert!((1..=21).contains(&wait), "{wait}");
    let text = limited.text().await.unwrap();
    assert!(
        text.contains(&format!("Please wait {wait} seconds")),
        "{text}"
    );
    assert!(
        page("/login", "203.0.113.1").await.unwrap().status() == 429,
        "every page, not only the one loaded most"
    );
    assert_eq!(
        page("/terms", "198.51.100.7").await.unwrap().status(),
        200,
        "another network is not affected"
    );
    let call = app
        .post_same_origin("/api/current_user")
        .header("x-forwarded-for", "203.0.113.1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        call.status(),
        200,
        "server functions have a budget of their own"
    );
}

#[tokio::test]
async fn a_sign_out_that_fails_says_so() {
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_API_PER_MINUTE".into(), "3".into());
    })
    .await;
    app.register_verified("sol@example.org", PASSWORD).await;
    app.sign_in("sol@example.org", PASSWORD).await;
    while app.call("current_user", &[]).await.status() != 429 {}
    // Without JavaScript: back on the page, the header says so.
    let (_, page) = post_plain_form(&app, "sign_out", "/terms", &[]).await;
    assert!(page.contains("You are still signed in."), "{page}");
}

#[tokio::test]
async fn without_javascript_a_form_turned_away_before_its_function_ran_keeps_what_was_typed() {
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_API_PER_MINUTE".into(), "3".into());
    })
    .await;
    for _ in 0..3 {
        assert_eq!(app.call("current_user", &[]).await.status(), 200);
    }
    let (location, page) = post_plain_form(
        &app,
        "register",
        "/register",
        &[
            ("email", "rue@example.org"),
            ("display_name", "Rue"),
            ("password", PASSWORD),
            ("accept_terms", "on"),
        ],
    )
    .await;
    assert!(location.contains("__err="), "{location}");
    assert!(
        !location.contains("password") && !location.contains("glacier"),
        "passwords never travel in URLs: {location}"
    );
    assert!(page.contains("Too many requests"), "the refusal is shown");
    assert!(
        page.contains(r#"value="rue@example.org""#),
        "the email is kept"
    );
    assert!(page.contains(r#"value="Rue""#), "the name is kept");
    assert!(input_tag(&page, "register-accept-terms").contains(" checked"));
    assert!(!input_tag(&page, "register-accept-privacy").contains(" checked"));
}

/// What a refused form leaves in its page's address is honoured only after one of our own pages sent
/// the browser there: a link from elsewhere must not tick the consent boxes, fill in an address or
/// show an error in words of its author's choosing.
#[tokio::test]
async fn a_link_from_elsewhere_cannot_fill_in_forms_or_show_errors_in_our_pages() {
    let app = spawn_app().await;
    let error = leptos::server_fn::error::ServerFnUrlError::<nestegg::error::AppError>::new(
        "/api/register",
        nestegg::error::AppError::InvalidInput {
            field: None,
            message: "Your account is suspended: call +1 555 0100.".to_owned(),
        },
    )
    .to_url(&app.url("/register"))
    .unwrap();
    let query = format!(
        "keep_accept_terms=on&keep_accept_privacy=on&keep_email=eve%40evil.example&{}",
        error.query().unwrap()
    );
    for site in ["cross-site", "same-site", "none"] {
        let response = app
            .get(&format!("/register?{query}"))
            .header("sec-fetch-site", site)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{site}");
        assert_eq!(response.headers()["location"], "/register", "{site}");
    }
    // The rest of the address stays (a link's token); never another site's address.
    let sent_on = |path: &'static str| {
        let app = &app;
        async move {
            let response = app
                .get(path)
                .header("sec-fetch-site", "cross-site")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 303, "{path}");
            response.headers()["location"].to_str().unwrap().to_owned()
        }
    };
    assert_eq!(
        sent_on("/reset-password?token=abc&__err=x&done=y").await,
        "/reset-password?token=abc"
    );
    assert_eq!(
        sent_on("//evil.example/x?keep_email=a").await,
        "/evil.example/x"
    );

    // As after posting the form from our own page: shown and kept.
    let page = app
        .get(&format!("/register?{query}"))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(input_tag(&page, "register-accept-terms").contains(" checked"));
    assert!(page.contains("call +1 555 0100"));
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let app = spawn_app_with(|v| {
        v.insert("TRUSTED_PROXIES".into(), "127.0.0.1/32".into());
    })
    .await;
    for client in 0..3 {
        for _ in 0..5 {
            let response = app
                .post_same_origin("/api/sign_in")
                .header("x-forwarded-for", format!("203.0.113.{client}"))
                .form(&[("email", "pat@example.org"), ("password", "whatever it is")])
                .send()
                .await
                .unwrap();
            assert_ne!(
                response.status(),
                429,
                "client {client} has its own five a minute"
            );
        }
    }
    let sixth = app
        .post_same_origin("/api/sign_in")
        .header("x-forwarded-for", "203.0.113.0")
        .form(&[("email", "pat@example.org"), ("password", "whatever it is")])
        .send()
        .await
        .unwrap();
    assert_eq!(sixth.status(), 429);
    let events = app.count("security_events WHERE ip = '203.0.113.1'").await;
    assert!(
        events >= 1,
        "the audit trail records the forwarded client address"
    );
}

#[tokio::test]
async fn without_javascript_a_refused_form_comes_back_with_its_error_and_what_was_typed() {
    let app = spawn_app().await;
    let response = app
        .post_same_origin("/api/register")
        .header("accept", "text/html")
        .header("referer", app.url("/register"))
        .form(&[
            ("email", "quinn@example.org"),
            ("display_name", "Quinn <Q>"),
            ("password", "short"),
            ("accept_terms", "on"),
            ("accept_privacy", "on"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("__err="), "{location}");
    assert!(
        location.contains("keep_email=quinn%40example.org"),
        "{location}"
    );
    assert!(
        !location.contains("short"),
        "passwords never travel in URLs: {location}"
    );

    let page = app
        .client
        .get(&location)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Use at least 12 characters"),
        "the error is shown next to the field"
    );
    assert!(
        page.contains(r#"value="quinn@example.org""#),
        "the email is kept"
    );
    assert!(
        page.contains(r#"value="Quinn &lt;Q&gt;""#),
        "the name is kept, escaped"
    );
    for id in ["register-accept-terms", "register-accept-privacy"] {
        assert!(
            input_tag(&page, id).contains(" checked"),
            "{id} is ticked again"
        );
    }
    // A box that was not ticked stays unticked.
    let (location, page) = post_plain_form(
        &app,
        "register",
        "/register",
        &[
            ("email", "quinn@example.org"),
            ("display_name", "Quinn"),
            ("password", "short"),
            ("accept_terms", "on"),
        ],
    )
    .await;
    assert!(location.contains("__err="), "{location}");
    assert!(input_tag(&page, "register-accept-terms").contains(" checked"));
    assert!(!input_tag(&page, "register-accept-privacy").contains(" checked"));
}

/// The `<input …>` tag with this id in a page.
fn input_tag<'p>(page: &'p str, id: &str) -> &'p str {
    let at = page
        .find(&format!(r#"id="{id}""#))
        .unwrap_or_else(|| panic!("no #{id}"));
    let start = page[..at].rfind("<input").unwrap();
    let end = at + page[at..].find('>').unwrap();
    &page[start..end]
}

/// A plain (no-JavaScript) form post to `/api/{function}` from the page at `referer`: where the
/// server sends the browser back to, and the page found there.
async fn post_plain_form(
    app: &TestApp,
    function: &str,
    referer: &str,
    form: &[(&str, &str)],
) -> (String, String) {
    let response = app
        .post_same_origin(&format!("/api/{function}"))
        .header("accept", "text/html")
        .header("referer", app.url(referer))
        .form(form)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let page = app
        .get(&path_and_query(&location))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (location, page)
}

/// The path and query of `location`, an absolute URL or a path.
fn path_and_query(location: &str) -> String {
    match url::Url::parse(location) {
        Ok(url) => format!("{}?{}", url.path(), url.query().unwrap_or_default()),
        Err(_) => location.to_owned(),
    }
}

#[tokio::test]
async fn without_javascript_a_second_refusal_shows_only_its_own_error_and_fields() {
    let app = spawn_app().await;
    let form = |email: &'static str, password: &'static str, terms: &'static str| {
        [
            ("email", email),
            ("display_name", "Quinn"),
            ("password", password),
            ("accept_terms", terms),
            ("accept_privacy", "on"),
        ]
    };
    let (first, page) = post_plain_form(
        &app,
        "register",
        "/register",
        &form("quinn@example.org", "short", "on"),
    )
    .await;
    assert!(page.contains("Use at least 12 characters"), "{first}");
    // Corrected on that page, but for another mistake.
    let (second, page) = post_plain_form(
        &app,
        "register",
        &path_and_query(&first),
        &form("quinn2@example.org", PASSWORD, ""),
    )
    .await;
    assert_eq!(second.matches("__err=").count(), 1, "{second}");
    assert_eq!(second.matches("__path=").count(), 1, "{second}");
    assert_eq!(second.matches("keep_email=").count(), 1, "{second}");
    assert!(
        page.contains("Please accept the terms of service"),
        "the new error shows"
    );
    assert!(
        !page.contains("Use at least 12 characters"),
        "the old one is gone"
    );
    assert!(
        page.contains(r#"value="quinn2@example.org""#),
        "the new value is kept"
    );
}

#[tokio::test]
async fn without_javascript_a_refusal_after_a_success_shows_no_success() {
    let app = spawn_app().await;
    let (done, page) = post_plain_form(
        &app,
        "request_password_reset",
        "/forgot-password",
        &[("email", "rae@example.org")],
    )
    .await;
    let sent = "If an account exists for that address";
    assert!(page.contains(sent), "{done}");
    let (refused, page) = post_plain_form(
        &app,
        "request_password_reset",
        &path_and_query(&done),
        &[("email", "not an address")],
    )
    .await;
    assert!(!refused.contains("done="), "{refused}");
    assert!(page.contains("Enter an email address like name@example.org."));
    assert!(!page.contains(sent), "no success beside the refusal");
}

#[tokio::test]
async fn without_javascript_refused_settings_forms_keep_what_was_typed() {
    let app = spawn_app().await;
    app.register_verified("ned@example.org", PASSWORD).await;
    app.sign_in("ned@example.org", PASSWORD).await;
    let too_long = format!("Ned {}", "x".repeat(80));
    let at_most = "Use at most 80 characters.";
    let kept = |page: &str, value: &str| page.contains(&format!(r#"value="{value}""#));

    let (_, page) = post_plain_form(
        &app,
        "change_display_name",
        "/settings/profile",
        &[("display_name", &too_long)],
    )
    .await;
    assert!(page.contains(at_most));
    assert!(
        kept(&page, &too_long),
        "the typed name, not the current one"
    );

    let (_, page) = post_plain_form(
        &app,
        "rename_household",
        "/household",
        &[("name", &too_long)],
    )
    .await;
    assert!(page.contains(at_most));
    assert!(kept(&page, &too_long), "the typed household name");

    let (_, page) = post_plain_form(
        &app,
        "delete_account",
        "/settings/account",
        &[
            ("password", PASSWORD),
            ("code", ""),
            ("confirm_email", "ned@example.com"),
        ],
    )
    .await;
    assert!(page.contains("Type your account's email address exactly"));
    assert!(kept(&page, "ned@example.com"), "the typed confirmation");
    assert_eq!(
        signed_in_user(&app).await.as_deref(),
        Some("ned@example.org")
    );
}

/// Without JavaScript, the answer to a form is a new page: it keeps the page's own address (a link's
/// token another form on it did not use, where to go after signing in), and shows the form's answer
/// even where the form was offered because of an earlier refusal (the sign-in's) that is gone now.
#[tokio::test]
async fn without_javascript_a_form_answered_on_a_new_page_keeps_its_address_and_shows_its_answer() {
    let app = spawn_app().await;
    let (location, page) = post_plain_form(
        &app,
        "request_verification_email",
        "/login?next=%2Fhousehold",
        &[("email", "rae@example.org")],
    )
    .await;
    assert_eq!(
        path_and_query(&location),
        "/login?next=%2Fhousehold&done=request_verification_email"
    );
    assert!(
        page.contains("If that address has an unconfirmed account"),
        "the answer is shown"
    );
    let (location, page) = post_plain_form(
        &app,
        "request_verification_email",
        "/login?next=%2Fhousehold",
        &[("email", "rae@")],
    )
    .await;
    assert!(location.contains("__err="), "{location}");
    assert!(location.contains("next=%2Fhousehold"), "{location}");
    let error_at = page
        .find(r#"id="resend-email-error""#)
        .expect("the field's error");
    assert!(
        !page[error_at..].starts_with(r#"id="resend-email-error" role="alert"></p>"#),
        "the error is shown next to the field"
    );
    assert!(page.contains(r#"value="rae@""#), "what was typed is kept");

    // A link's token that another form on its page did not use stays; one the form used is spent
    // and leaves the address.
    let (location, _) = post_plain_form(
        &app,
        "request_password_reset",
        "/household/join?token=xyz",
        &[("email", "rae@example.org")],
    )
    .await;
    assert_eq!(
        path_and_query(&location),
        "/household/join?token=xyz&done=request_password_reset"
    );
    app.register("kai@example.org", "Kai", PASSWORD).await;
    let token = app.emails_to("kai@example.org", 1).await[0].token(&app, "/verify-email");
    let (location, page) = post_plain_form(
        &app,
        "verify_email",
        &format!("/verify-email?token={token}"),
        &[("token", token.as_str())],
    )
    .await;
    assert_eq!(path_and_query(&location), "/verify-email?done=verify_email");
    assert!(!page.contains(&token));
}

#[tokio::test]
async fn without_javascript_a_success_says_so_on_the_page() {
    let app = spawn_app().await;
    let response = app
        .post_same_origin("/api/request_password_reset")
        .header("accept", "text/html")
        .header("referer", app.url("/forgot-password"))
        .form(&[("email", "rae@example.org")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/forgot-password?done=request_password_reset");
    let page = app
        .get(&location)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("If an account exists for that address"));
}

/// Attempts are counted before they are checked, right passwords too (until each clears the count).
/// So many browsers signing in to one account at once, more than the lock-out threshold, must not lock
/// it: a right password is checked however many attempts are in flight.
#[tokio::test]
async fn many_sign_ins_to_one_account_at_once_all_get_in() {
    let app = app_for_lockout().await;
    app.register_verified("tia@example.org", PASSWORD).await;
    let threshold = app.settings.accounts.lockout_threshold as usize;

    // As many attempts in flight as the threshold, then a right password.
    attempts_in_flight(&app, "tia@example.org", threshold as u32).await;
    assert_eq!(app.sign_in("tia@example.org", PASSWORD).await.status(), 200);
    assert_eq!(
        signed_in_user(&app).await.as_deref(),
        Some("tia@example.org")
    );
    assert_eq!(lockout_counters(&app).await, (0, 0));

    // And for real: more browsers at once than the threshold.
    let passwords = vec![PASSWORD.to_owned(); threshold * 3];
    for status in parallel_sign_ins(&app, "tia@example.org", &passwords).await {
        assert_eq!(status, 200);
    }
    assert_eq!(lockout_counters(&app).await.1, 0, "nothing locked");
}

/// A failure that counted before its counter went (a reset, or a right password, cleared it) does not
/// lock the address afterwards: in Redis as in the database.
#[tokio::test]
async fn a_failure_does_not_lock_a_counter_cleared_meanwhile() {
    let app = app_for_lockout().await;
    let key = throttle_key(&app.state, "uma@example.org");
    let now = app.clock.now().unix_timestamp();
    let lockouts = &app.state.lockouts;
    lockouts
        .count(&app.app_db, &key, now)
        .await
        .expect("counted");
    lockouts.forget(&app.app_db, &key).await.expect("forgotten");
    assert!(
        !lockouts
            .lock(&app.app_db, &key, now + 60)
            .await
            .expect("answered")
    );
    assert_eq!(lockout_counters(&app).await, (0, 0));
}

#[tokio::test]
async fn concurrent_guesses_all_count_toward_the_lock() {
    let app = app_for_lockout().await;
    app.register_verified("ray@example.org", PASSWORD).await;
    let guesses: Vec<String> = (0..8).map(|i| format!("wrong guess {i}")).collect();
    parallel_sign_ins(&app, "ray@example.org", &guesses).await;
    let right = app.sign_in("ray@example.org", PASSWORD).await;
    assert!(
        right.text().await.unwrap().contains("Too many attempts"),
        "parallel guesses were all counted"
    );
    assert_eq!(
        app.count("security_events WHERE kind = 'locked_out'").await,
        1,
        "locked exactly once"
    );
}

#[tokio::test]
async fn guessing_the_password_in_settings_counts_toward_the_lock() {
    let app = app_for_lockout().await;
    app.register_verified("sam@example.org", PASSWORD).await;
    app.sign_in("sam@example.org", PASSWORD).await;
    for _ in 0..5 {
        app.call(
            "change_password",
            &[
                ("current_password", "a wrong guess!!"),
                ("new_password", NEW_PASSWORD),
            ],
        )
        .await;
    }
    let locked = app
        .call(
            "change_password",
            &[
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
            ],
        )
        .await;
    assert!(locked.text().await.unwrap().contains("Too many attempts"));
    assert_eq!(
        app.count("security_events WHERE kind = 'password_check_failed'")
            .await,
        5
    );
}

#[tokio::test]
async fn a_password_reset_voids_every_other_outstanding_link() {
    let app = spawn_app().await;
    app.register_verified("tia@example.org", PASSWORD).await;
    app.sign_in("tia@example.org", PASSWORD).await;
    // Someone holding the password starts an email change…
    app.call(
        "change_email",
        &[
            ("password", PASSWORD),
            ("new_email", "attacker@evil.example"),
        ],
    )
    .await;
    let change =
        app.emails_to("attacker@evil.example", 1).await[0].token(&app, "/confirm-email-change");
    // …the owner resets the password…
    app.call("request_password_reset", &[("email", "tia@example.org")])
        .await;
    let mails = app.emails_to("tia@example.org", 3).await;
    let reset = mails
        .iter()
        .find(|m| m.text.contains("/reset-password"))
        .unwrap()
        .token(&app, "/reset-password");
    assert_eq!(
        app.call(
            "reset_password",
            &[("token", &reset), ("password", NEW_PASSWORD)]
        )
        .await
        .status(),
        200
    );
    // …and the pending change no longer works.
    assert_eq!(
        app.call("confirm_email_change", &[("token", &change)])
            .await
            .status(),
        400
    );
}
