//! The security activity page: a person's own events, newest first, in plain words, a page at a time.

use serde_json::Value;

use crate::helpers::{TestApp, spawn_app_with};

const PASSWORD: &str = "glacier Minnow 47 paperclip orbit";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

async fn signed_in_client(app: &TestApp, email: &str) -> reqwest::Client {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .user_agent(FIREFOX)
        .build()
        .unwrap();
    let response = call(
        app,
        &client,
        "sign_in",
        &[("email", email), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(response.status(), 200);
    client
}

async fn call(
    app: &TestApp,
    client: &reqwest::Client,
    function: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    client
        .post(app.url(&format!("/api/{function}")))
        .header("origin", &app.address)
        .header("sec-fetch-site", "same-origin")
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn activity(app: &TestApp, client: &reqwest::Client, page: &str) -> Value {
    let response = call(app, client, "security_activity", &[("page", page)]).await;
    assert_eq!(response.status(), 200);
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

fn whats(page: &Value) -> Vec<String> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["what"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_timeline_reads_in_plain_words_newest_first_and_only_shows_your_own() {
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "1000".into());
    })
    .await;
    app.register_verified("ivy@example.org", PASSWORD).await;
    app.register_verified("jay@example.org", PASSWORD).await;
    // A wrong password, then a real sign-in.
    let stranger = reqwest::Client::new();
    call(
        &app,
        &stranger,
        "sign_in",
        &[("email", "ivy@example.org"), ("password", "not it at all")],
    )
    .await;
    app.clock.advance(time::Duration::minutes(1));
    let ivy = signed_in_client(&app, "ivy@example.org").await;
    let _jay = signed_in_client(&app, "jay@example.org").await;

    let page = activity(&app, &ivy, "1").await;
    assert_eq!(
        whats(&page),
        vec![
            "Signed in",
            "A sign-in failed: wrong password",
            "Confirmed the email address",
            "Created the account",
        ]
    );
    let newest = &page["entries"][0];
    assert_eq!(newest["from"], "Firefox on Linux, 127.0.0.1");
    assert_eq!(newest["when"], "22 November 2026 at 12:01 UTC");
    assert_eq!(page["has_older"], false);

    // Signed out, there is no timeline to read.
    let response = call(&app, &stranger, "security_activity", &[("page", "1")]).await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn long_timelines_come_twenty_to_a_page() {
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "1000".into());
    })
    .await;
    app.register_verified("kim@example.org", PASSWORD).await;
    // 2 events so far (created, confirmed) + 24 sign-ins = 26.
    let mut client = None;
    for _ in 0..24 {
        app.clock.advance(time::Duration::seconds(10));
        client = Some(signed_in_client(&app, "kim@example.org").await);
    }
    let client = client.unwrap();

    let first = activity(&app, &client, "1").await;
    assert_eq!(whats(&first).len(), 20);
    assert_eq!(first["has_older"], true);
    let second = activity(&app, &client, "2").await;
    assert_eq!(
        whats(&second),
        vec![
            "Signed in",
            "Signed in",
            "Signed in",
            "Signed in",
            "Confirmed the email address",
            "Created the account",
        ]
    );
    assert_eq!(second["has_older"], false);
    // Page 0 or nonsense is page 1.
    assert_eq!(activity(&app, &client, "0").await["page"], 1);
}

#[tokio::test]
async fn the_display_name_can_be_changed_with_a_clear_error_when_it_is_not_acceptable() {
    let app = crate::helpers::spawn_app().await;
    app.register_verified("lee@example.org", PASSWORD).await;
    let client = signed_in_client(&app, "lee@example.org").await;
    for (input, why) in [
        ("   ", "Enter the name"),
        (&"x".repeat(81) as &str, "at most 80"),
        ("Lee\u{7}", "Use letters"),
    ] {
        let response = call(
            &app,
            &client,
            "change_display_name",
            &[("display_name", input)],
        )
        .await;
        assert_eq!(response.status(), 400, "{input:?}");
        let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(body["field"], "display_name");
        assert!(body["message"].as_str().unwrap().contains(why), "{body}");
    }
    let response = call(
        &app,
        &client,
        "change_display_name",
        &[("display_name", "  Lee <Admin> Park ")],
    )
    .await;
    assert_eq!(response.status(), 200);
    let me = call(&app, &client, "current_user", &[]).await;
    let me: Value = serde_json::from_str(&me.text().await.unwrap()).unwrap();
    assert_eq!(me["display_name"], "Lee <Admin> Park");
    // Shown escaped in the page, never as markup.
    let page = client
        .get(app.url("/settings/profile"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Lee &lt;Admin&gt; Park"));
    assert!(!page.contains("<Admin>"));
    assert_eq!(
        whats(&activity(&app, &client, "1").await)[0],
        "Changed the display name"
    );
}
