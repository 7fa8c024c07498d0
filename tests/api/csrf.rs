use nestegg::error::AppError;

use crate::helpers::spawn_app;

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn a_cross_site_post_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "https://evil.example"),
    ] {
        let response = app
            .client
            .post(app.url("/api/theme"))
            .header(name, value)
            .header("accept-encoding", "gzip, br")
            .header("content-type", FORM)
            .body("theme=dark")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{name}: {value}");
        assert!(response.headers().get("set-cookie").is_none());
        // An error object the page's server-function client can show, with the refusal's own words
        // (not compressed, which would leave only a generic message).
        let error: AppError = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert!(
            matches!(&error, AppError::Refused { status: 403, message } if message.contains("came from another website")),
            "{error:?}"
        );
    }
    // Nothing was stored: the next page still renders the default theme.
    let page = app.get("/").send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"data-theme="system""#));
}

#[tokio::test]
async fn without_javascript_a_refused_cross_site_form_goes_back_with_what_was_typed() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/register"))
        .header("sec-fetch-site", "cross-site")
        .header("accept", "text/html")
        .header("referer", app.url("/register"))
        .form(&[
            ("email", "kit@example.org"),
            ("email", "second@example.org"),
            ("display_name", "Kit"),
            ("password", "glacier Minnow 47 paperclip orbit"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(location.path(), "/register");
    let kept: Vec<(String, String)> = location
        .query_pairs()
        .into_owned()
        .filter(|(key, _)| key.starts_with("keep_"))
        .collect();
    assert_eq!(
        kept,
        [
            ("keep_email".to_owned(), "kit@example.org".to_owned()),
            ("keep_display_name".to_owned(), "Kit".to_owned()),
        ],
        "the first of each, never the password"
    );
    assert!(!location.as_str().contains("glacier"), "{location}");
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn a_same_origin_post_is_accepted() {
    let app = spawn_app().await;
    let response = app
        .post_same_origin("/api/theme")
        .header("content-type", FORM)
        .body("theme=dark")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("theme=dark"), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");

    let page = app.get("/").send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"data-theme="dark""#));
}

#[tokio::test]
async fn a_plain_html_form_post_redirects_back() {
    let app = spawn_app().await;
    let response = app
        .post_same_origin("/api/theme")
        .header("content-type", FORM)
        .header("accept", "text/html")
        .header("referer", app.url("/security"))
        .body("theme=light")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(&app.url("/security")), "{location}");
}

#[tokio::test]
async fn malformed_input_is_a_400_with_a_clear_message_not_a_500() {
    let app = spawn_app().await;
    for body in ["theme=purple", "", "nonsense"] {
        let response = app
            .post_same_origin("/api/theme")
            .header("content-type", FORM)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body:?}");
        let text = response.text().await.unwrap();
        assert!(text.contains("invalid_input"), "{text}");
        assert!(
            !text.contains("unknown variant"),
            "no parser internals: {text}"
        );
    }
}
