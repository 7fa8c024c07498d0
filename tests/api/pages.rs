use crate::helpers::spawn_app;

#[tokio::test]
async fn the_landing_page_renders_the_shell_and_calculator() {
    let app = spawn_app().await;
    let response = app.get("/").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = response.text().await.unwrap();
    for needle in [
        "<title>Nest Egg",
        r#"class="site-header""#,
        r#"<main id="main" class="site-main">"#,
        r#"class="site-footer""#,
        r#"id="calc-monthly""#,
        // 250/month for 20 years at 5 %.
        "$102,758",
        "/pkg/nestegg.js",
    ] {
        assert!(html.contains(needle), "missing {needle}");
    }
}

#[tokio::test]
async fn the_calculator_answers_without_javascript() {
    let app = spawn_app().await;
    let html = app
        .get("/?monthly=500&years=10&rate=0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("$60,000"), "500 × 120 months");
    let html = app
        .get("/?monthly=-3&years=10&rate=0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Enter an amount between 0 and 1,000,000."));
    assert!(html.contains(r#"aria-invalid="true""#));
}

#[tokio::test]
async fn content_pages_render() {
    let app = spawn_app().await;
    for (path, heading) in [
        ("/security", "How Nest Egg keeps your household safe"),
        ("/terms", "Terms of service"),
        ("/privacy", "Privacy policy"),
    ] {
        let response = app.get(path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.text().await.unwrap().contains(heading), "{path}");
    }
}

#[tokio::test]
async fn unknown_pages_get_a_friendly_404_without_internals() {
    let app = spawn_app().await;
    for path in ["/no-such-page", "/api/no-such-function"] {
        let response = app.get(path).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let html = response.text().await.unwrap();
        assert!(html.contains("We couldn't find that page"), "{path}");
        for leak in ["panic", "RUST_BACKTRACE", "sqlx", "src/", "server function"] {
            assert!(!html.contains(leak), "{path} leaks {leak}");
        }
    }
    let response = app
        .post_same_origin("/api/no-such-function")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(
        !response
            .text()
            .await
            .unwrap()
            .contains("Could not find a server function")
    );
}

#[tokio::test]
async fn assets_are_revalidated_not_downloaded_again() {
    let app = spawn_app().await;
    let first = app.get("/pkg/nestegg.wasm").send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["cache-control"], "no-cache");
    let modified = first.headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_owned();
    let again = app
        .get("/pkg/nestegg.wasm")
        .header("if-modified-since", modified)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
}
