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
