//! Prometheus metrics on the separate admin listener: basic auth, and what is counted.

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const PASSWORD: &str = "glacier Minnow 47 paperclip orbit";
const METRICS_PASSWORD: &str = "scrape-me-please-9f2c";

async fn scrape(app: &TestApp, user: &str, password: &str) -> reqwest::Response {
    let url = format!(
        "{}/metrics",
        app.metrics_address.as_deref().expect("metrics on")
    );
    reqwest::Client::new()
        .get(url)
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
}

/// The value of the first sample line starting with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_need_the_configured_credentials() {
    let app = spawn_app_with(|vars| {
        vars.insert("METRICS_PASSWORD".into(), METRICS_PASSWORD.into());
    })
    .await;
    let url = format!("{}/metrics", app.metrics_address.as_deref().unwrap());
    let anonymous = reqwest::get(&url).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(
        anonymous.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic ")
    );
    assert_eq!(scrape(&app, "metrics", "wrong").await.status(), 401);
    assert_eq!(
        scrape(&app, "someone", METRICS_PASSWORD).await.status(),
        401
    );
    let ok = scrape(&app, "metrics", METRICS_PASSWORD).await;
    assert_eq!(ok.status(), 200);
    assert!(
        ok.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    // Not on the public port.
    assert_eq!(app.get("/metrics").send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn requests_sign_ins_emails_and_sessions_are_counted() {
    let app = spawn_app().await;
    app.register_verified("ann@example.org", PASSWORD).await;
    assert_eq!(
        app.sign_in("ann@example.org", "wrong password")
            .await
            .status(),
        400
    );
    assert_eq!(app.sign_in("ann@example.org", PASSWORD).await.status(), 200);
    app.get("/settings/profile").send().await.unwrap();
    // Scanners' paths do not become labels.
    app.get("/wp-login.php").send().await.unwrap();

    let response = scrape(
        &app,
        "metrics",
        nestegg::server::config::DEV_METRICS_PASSWORD,
    )
    .await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for (prefix, at_least) in [
        (r#"sign_ins_total{outcome="success"}"#, 1.0),
        (r#"sign_ins_total{outcome="wrong_password"}"#, 1.0),
        (r#"emails_queued_total{kind="verify_email"}"#, 1.0),
        ("sessions_active", 1.0),
        (r#"db_pool_connections{state="idle"}"#, 0.0),
        ("db_pool_max_connections", 5.0),
        (r#"outbox_emails{status="pending"}"#, 0.0),
    ] {
        let value = sample(&text, prefix).unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
        assert!(value >= at_least, "{prefix} = {value}");
    }
    assert!(
        text.contains(
            r#"http_requests_total{route="/settings/profile",method="GET",status="200"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"http_requests_total{route="/api/sign_in",method="POST",status="200"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"route="other",method="GET",status="404""#),
        "{text}"
    );
    assert!(!text.contains("wp-login"), "a raw path became a label");
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn rate_limit_rejections_and_lock_outs_are_counted() {
    let app = spawn_app_with(|vars| {
        vars.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "2".into());
    })
    .await;
    for _ in 0..3 {
        app.sign_in("nobody@example.org", "wrong password").await;
    }
    let text = scrape(
        &app,
        "metrics",
        nestegg::server::config::DEV_METRICS_PASSWORD,
    )
    .await
    .text()
    .await
    .unwrap();
    let rejected = sample(&text, r#"rate_limit_rejections_total{limiter="sign_in"}"#)
        .unwrap_or_else(|| panic!("no rate-limit counter in\n{text}"));
    assert!(rejected >= 1.0);
}
