use crate::helpers::{session_cookie, spawn_app, spawn_app_with};

const PASSWORD: &str = "glacier Minnow 47 paperclip orbit";

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
async fn the_updated_terms_page_does_not_say_all_is_accepted_when_it_cannot_tell() {
    let app = spawn_app().await;
    // Signed out (the Back button after signing out, say): nobody's consents to look up.
    let page = app
        .get("/accept-terms")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Please sign in to continue."), "{page}");
    assert!(!page.contains("Nothing to do here"));
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

/// A client that hangs up mid-page (a closed tab, a load generator ending its run) must not make the
/// render panic. Leptos renders while the body streams out, and a `<Suspense>` finishes its
/// bookkeeping on a task it spawns: a page dropped with its client while that task ran on another
/// thread left it reading the page's disposed state, and it panicked (`middleware::whole_pages`).
///
/// A race, so hang up many times: without that layer, 17 of 8,000 hang-ups panicked by hand (debug
/// build, 2 cores), and this test failed each of the four times it was run (12 and 14 panics in
/// 3,000 hang-ups; then 2,000, as here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hanging_up_mid_page_cause_no_panic() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    // Panics raised inside the rendering crates, wherever they run (in a task nobody awaits, too).
    // One process per test under nextest; under `cargo test` the hook also sees other tests' panics,
    // but theirs are raised in test code, never in these crates.
    let render_panics = Arc::new(AtomicUsize::new(0));
    let seen = render_panics.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let file = info.location().map(|l| l.file()).unwrap_or_default();
        if ["reactive_graph", "leptos", "tachys"]
            .iter()
            .any(|c| file.contains(c))
        {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        previous(info);
    }));

    // Thousands of page loads from one address: past the page budget.
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_PAGES_PER_MINUTE".into(), "1000000".into());
    })
    .await;
    let email = "hangs-up@example.com";
    app.register_verified(email, PASSWORD).await;
    let response = app.sign_in(email, PASSWORD).await;
    let cookie = session_cookie(&response).expect("a session cookie");
    let authority = app.address.trim_start_matches("http://").to_owned();
    let request = Arc::new(format!(
        "GET /settings/profile HTTP/1.1\r\nHost: {authority}\r\nCookie: {cookie}\r\n\
         Accept: text/html\r\n\r\n"
    ));

    // Hang up at every stage of a render: after 0 to 4 ms, or as soon as the first bytes arrive.
    // Eight at a time, as a busy server sees them.
    let mut hangups = tokio::task::JoinSet::new();
    for i in 0..2000u64 {
        let (authority, request) = (authority.clone(), request.clone());
        hangups.spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            if i % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(i % 5)).await;
            } else {
                let mut first = [0u8; 1];
                let _ = stream.read(&mut first).await;
            }
            // Reset, not a polite close: the server's next write fails at once. (Deprecated for the
            // blocking a non-zero linger does on drop; a zero one resets at once.)
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
        });
        if hangups.len() >= 8 {
            hangups.join_next().await;
        }
    }
    while hangups.join_next().await.is_some() {}

    // The page still renders for someone who stays; by then the renders left behind have finished.
    let page = app.get("/settings/profile").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains(email));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(render_panics.load(Ordering::SeqCst), 0, "renders panicked");
}

/// The pages behind the links that take an account back show a button (opening a link changes
/// nothing: mail scanners follow links), or say the link is incomplete.
#[tokio::test]
async fn the_take_back_pages_show_a_button_for_their_link() {
    let app = spawn_app().await;
    for (path, button) in [
        ("/not-me", "Sign out everywhere and reset my password"),
        (
            "/restore-email",
            "Put my address back and secure my account",
        ),
    ] {
        let page = app
            .get(&format!("{path}?token=abc"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains(button), "{path}");
        assert!(page.contains(r#"name="token" value="abc""#), "{path}");
        let page = app.get(path).send().await.unwrap().text().await.unwrap();
        assert!(!page.contains(button), "{path} without a token");
    }
}
