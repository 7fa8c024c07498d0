//! Behind a reverse proxy: forwarded headers believed only from `TRUSTED_PROXIES`, HTTPS enforced in
//! production (with `/health/*` reachable over HTTP), and CORS for the origins in `CORS_ORIGINS` only.

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const PUBLIC: &str = "https://nestegg.example.org";
const HOST: &str = "nestegg.example.org";

/// A production deployment on the test's database, behind a proxy at `trusted` (the test client
/// connects from 127.0.0.1).
async fn production(trusted: &str) -> TestApp {
    let trusted = trusted.to_owned();
    spawn_app_with(move |vars| {
        vars.insert("ENVIRONMENT".into(), "production".into());
        vars.insert("METRICS_PASSWORD".into(), "scrape-me-9f2c1e7a4b".into());
        vars.insert("PUBLIC_URL".into(), PUBLIC.into());
        vars.insert("ALLOWED_HOSTS".into(), HOST.into());
        vars.insert("TRUSTED_PROXIES".into(), trusted);
        // Production refuses the password-less test PostgreSQL; SQLite is a valid single-host setup.
        let db = format!("sqlite://{}/prod.db?mode=rwc", vars["DATA_DIR"]);
        vars.insert("DATABASE_URL".into(), db);
    })
    .await
}

#[tokio::test]
async fn a_trusted_proxys_forwarded_host_is_the_host_judged() {
    let app = spawn_app_with(|vars| {
        vars.insert("ALLOWED_HOSTS".into(), HOST.into());
        vars.insert("TRUSTED_PROXIES".into(), "127.0.0.1".into());
    })
    .await;
    let response = app
        .get("/")
        .header("x-forwarded-host", HOST)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The proxy's own choice of host is still checked against ALLOWED_HOSTS.
    let response = app
        .get("/")
        .header("x-forwarded-host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn forwarded_headers_from_anyone_else_are_ignored() {
    let app = spawn_app_with(|vars| {
        vars.insert("ALLOWED_HOSTS".into(), HOST.into());
        vars.insert("TRUSTED_PROXIES".into(), "10.0.0.0/8".into());
    })
    .await;
    // The client is not a trusted proxy: its X-Forwarded-Host does not make an unknown host known.
    let response = app
        .get("/")
        .header("x-forwarded-host", HOST)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn production_redirects_plain_http_to_https_except_health() {
    let app = production("").await;
    let response = app
        .get("/settings/profile?tab=1")
        .header("host", HOST)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(
        response.headers()["location"],
        "https://nestegg.example.org/settings/profile?tab=1"
    );
    // A POST keeps its method through a 308.
    let response = app
        .post_same_origin("/api/current_user")
        .header("host", HOST)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    // The redirect goes to PUBLIC_URL whatever host the request named.
    let response = app
        .get("/")
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(
        response.headers()["location"],
        "https://nestegg.example.org/"
    );
    // Load balancers probe over plain HTTP, by IP.
    for path in ["/health/live", "/health/ready"] {
        let response = app.get(path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn production_serves_https_from_a_trusted_proxy_with_hsts() {
    let app = production("127.0.0.1").await;
    let response = app
        .get("/")
        .header("host", "127.0.0.1")
        .header("x-forwarded-host", HOST)
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=63072000; includeSubDomains"
    );
    // The proxy saying the client used plain HTTP gets the redirect.
    let response = app
        .get("/")
        .header("host", HOST)
        .header("x-forwarded-proto", "http")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
}

#[tokio::test]
async fn production_ignores_a_claimed_https_from_an_untrusted_peer() {
    let app = production("10.0.0.0/8").await;
    let response = app
        .get("/")
        .header("host", HOST)
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
}

fn preflight(app: &TestApp, origin: &str) -> reqwest::RequestBuilder {
    app.client
        .request(reqwest::Method::OPTIONS, app.url("/api/current_user"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
}

#[tokio::test]
async fn cors_allows_only_the_listed_origins_with_credentials() {
    let app = spawn_app_with(|vars| {
        vars.insert("CORS_ORIGINS".into(), "https://app.example.org".into());
    })
    .await;
    let allowed = preflight(&app, "https://app.example.org")
        .send()
        .await
        .unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.org"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-credentials"],
        "true"
    );
    assert!(
        allowed.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );

    let foreign = preflight(&app, "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        !foreign
            .headers()
            .contains_key("access-control-allow-origin")
    );

    // The actual call: the listed origin gets the answer's CORS headers and passes the CSRF check.
    let call = app
        .client
        .post(app.url("/api/current_user"))
        .header("origin", "https://app.example.org")
        .header("sec-fetch-site", "cross-site")
        .form(&[("", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), 200);
    assert_eq!(
        call.headers()["access-control-allow-origin"],
        "https://app.example.org"
    );
    // Anyone else is refused, with no CORS header to read the refusal by.
    let call = app
        .client
        .post(app.url("/api/current_user"))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), 403);
    assert!(!call.headers().contains_key("access-control-allow-origin"));

    // A refusal made before any function runs (no such function) is an error object the listed
    // site can read: it keeps its CORS headers.
    let call = app
        .client
        .post(app.url("/api/no_such_function"))
        .header("origin", "https://app.example.org")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), 404);
    assert_eq!(
        call.headers()["access-control-allow-origin"],
        "https://app.example.org"
    );
    let error: nestegg::error::AppError =
        serde_json::from_str(&call.text().await.unwrap()).unwrap();
    assert_eq!(error, nestegg::error::AppError::NotFound);
}

#[tokio::test]
async fn without_cors_origins_no_site_gets_cors_headers() {
    let app = spawn_app().await;
    let response = preflight(&app, "https://app.example.org")
        .send()
        .await
        .unwrap();
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );
    let call = app
        .client
        .post(app.url("/api/current_user"))
        .header("origin", "https://app.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), 403);
    assert!(!call.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn the_value_the_proxy_appended_wins_over_what_the_client_sent() {
    let app = production("127.0.0.1").await;
    // The client claims https; our proxy appended what it saw: http.
    let response = app
        .get("/")
        .header("host", HOST)
        .header("x-forwarded-proto", "https, http")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    let response = app
        .get("/")
        .header("host", "127.0.0.1")
        .header("x-forwarded-host", "evil.example, nestegg.example.org")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
