use crate::helpers::{KEY_A, KEY_B, spawn_app, spawn_app_with};

fn nonce_of(csp: &str) -> String {
    let start = csp.find("'nonce-").expect("CSP has a nonce") + "'nonce-".len();
    csp[start..].split('\'').next().unwrap().to_owned()
}

#[tokio::test]
async fn pages_carry_every_security_header() {
    let app = spawn_app().await;
    let response = app.get("/").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let h = response.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"));
    assert!(csp.contains("'wasm-unsafe-eval'"));
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("object-src 'none'"));
    assert!(csp.contains("base-uri 'none'"));
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin");
    let permissions = h["permissions-policy"].to_str().unwrap();
    for feature in ["camera=()", "microphone=()", "geolocation=()"] {
        assert!(permissions.contains(feature), "{permissions}");
    }
    assert_eq!(h["cross-origin-opener-policy"], "same-origin");
    assert_eq!(h["cache-control"], "no-store");
    assert!(
        h.get("strict-transport-security").is_none(),
        "no HSTS over development HTTP"
    );
}

#[tokio::test]
async fn each_response_gets_a_fresh_nonce_used_by_the_page_scripts() {
    let app = spawn_app().await;
    let first = app.get("/").send().await.unwrap();
    let first_nonce = nonce_of(first.headers()["content-security-policy"].to_str().unwrap());
    let body = first.text().await.unwrap();
    assert!(
        body.contains(&format!("nonce=\"{first_nonce}\"")),
        "hydration scripts carry the header's nonce"
    );
    // No script escapes the policy: every <script> tag carries this response's nonce.
    let tags: Vec<&str> = body
        .match_indices("<script")
        .map(|(at, _)| &body[at..at + body[at..].find('>').unwrap()])
        .collect();
    assert!(!tags.is_empty());
    for tag in &tags {
        assert!(
            tag.contains(&format!("nonce=\"{first_nonce}\"")),
            "script without the nonce: {tag}"
        );
    }

    let second = app.get("/").send().await.unwrap();
    let second_nonce = nonce_of(
        second.headers()["content-security-policy"]
            .to_str()
            .unwrap(),
    );
    assert_ne!(first_nonce, second_nonce);
}

#[tokio::test]
async fn refusals_and_not_found_pages_carry_the_headers_too() {
    let app = spawn_app().await;
    for response in [
        app.get("/no-such-page").send().await.unwrap(),
        app.get("/")
            .header("host", "evil.example")
            .send()
            .await
            .unwrap(),
        app.get("/health/live").send().await.unwrap(),
    ] {
        let h = response.headers();
        assert!(
            h.contains_key("content-security-policy"),
            "{:?}",
            response.url()
        );
        assert_eq!(h["x-frame-options"], "DENY");
        assert!(h.contains_key("x-request-id"));
    }
}

#[tokio::test]
async fn production_sends_hsts_and_secure_host_prefixed_cookies() {
    let app = spawn_app_with(|vars| {
        let port = vars["PUBLIC_URL"].rsplit(':').next().unwrap().to_owned();
        vars.insert("ENVIRONMENT".into(), "production".into());
        vars.insert("METRICS_PASSWORD".into(), "scrape-me-9f2c1e7a4b".into());
        vars.insert("PUBLIC_URL".into(), format!("https://127.0.0.1:{port}"));
        vars.insert("SECRET_KEY".into(), KEY_A.into());
        vars.insert("ENCRYPTION_KEY".into(), KEY_B.into());
        // Production refuses the password-less test PostgreSQL (as it should); SQLite is a valid
        // production database for a single host.
        let db = format!("sqlite://{}/prod.db?mode=rwc", vars["DATA_DIR"]);
        vars.insert("DATABASE_URL".into(), db);
        // HTTPS is the proxy's job; without it, production redirects to https://.
        vars.insert("TRUSTED_PROXIES".into(), "127.0.0.1".into());
    })
    .await;
    let response = app
        .get("/")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=63072000; includeSubDomains"
    );
    assert_eq!(app.settings.session_cookie_name(), "__Host-nestegg_session");
    assert!(app.settings.cookie_secure);

    // The theme cookie set by a server function is Secure in production.
    let response = app
        .client
        .post(app.url("/api/theme"))
        .header("x-forwarded-proto", "https")
        .header("origin", format!("https://127.0.0.1:{}", app.port))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("theme=dark")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("Secure"), "{cookie}");
}
