use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use nestegg::error::AppError;

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn an_unknown_host_is_refused() {
    let app = spawn_app().await;
    let response = app
        .get("/")
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("Unknown host"));
    let response = app
        .get("/")
        .header("host", format!("localhost:{}", app.port))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn allowed_hosts_are_configurable() {
    let app = spawn_app_with(|vars| {
        vars.insert("ALLOWED_HOSTS".into(), "nestegg.test".into());
    })
    .await;
    assert_eq!(app.get("/").send().await.unwrap().status(), 400);
    assert_eq!(
        app.get("/")
            .header("host", "nestegg.test")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let app = spawn_app().await;
    let body = format!("theme={}", "a".repeat(70 * 1024));
    let response = app
        .post_same_origin("/api/theme")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    // As an error object, which the browser's server-function client shows as it is.
    let error: AppError = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    let AppError::Refused { status, message } = error else {
        panic!("{error:?}");
    };
    assert_eq!(status, 413);
    assert!(message.contains("the limit is 64 KiB"), "{message}");

    // A plain form post (no JavaScript) goes back to its page, with the error in the address.
    let body = format!("display_name={}", "a".repeat(70 * 1024));
    let response = app
        .post_same_origin("/api/change_display_name")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html")
        // An earlier success and refusal still in the page's address: they go.
        .header(
            "referer",
            app.url("/settings/profile?done=change_display_name&keep_display_name=Old"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let (location, query, error) = sent_back(&response);
    assert_eq!(location.path(), "/settings/profile");
    assert_eq!(query["__path"], "/api/change_display_name");
    assert_eq!(query.len(), 2, "{location}");
    assert!(
        matches!(&error, AppError::Refused { status: 413, message } if message.contains("64 KiB")),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_oversized_streamed_body_is_refused_with_413() {
    let app = spawn_app().await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let head = format!(
        "POST /api/theme HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.port
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = "a".repeat(8192);
    for _ in 0..10 {
        // The server may answer and close before reading everything; that is fine.
        if stream
            .write_all(format!("2000\r\n{chunk}\r\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

/// How long the server took to close `stream`, which must send nothing before closing.
async fn closed_after(stream: &mut tokio::net::TcpStream) -> std::time::Duration {
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 256];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buffer))
        .await
        .expect("the server kept the connection open");
    // A close (0 bytes) or a reset; either way nothing was answered.
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    started.elapsed()
}

#[tokio::test]
async fn clients_slow_to_send_headers_and_idle_connections_are_cut_off() {
    let app = spawn_app_with(|vars| {
        vars.insert("HEADER_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", app.port));
    let host = format!("Host: 127.0.0.1:{}\r\n", app.port);

    // Connects and sends nothing.
    let mut silent = connect().await.unwrap();
    let waited = closed_after(&mut silent).await;
    assert!(waited < std::time::Duration::from_secs(5), "{waited:?}");

    // Sends its headers a piece at a time, never finishing ("slowloris"): more time does not help.
    let mut slow = connect().await.unwrap();
    let started = std::time::Instant::now();
    slow.write_all(b"GET /health/live HTTP/1.1\r\n")
        .await
        .unwrap();
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        if slow.write_all(b"X-Pad: a\r\n").await.is_err() {
            break;
        }
    }
    closed_after(&mut slow).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A complete request within the time is answered; the connection is then closed once idle.
    let mut kept = connect().await.unwrap();
    kept.write_all(format!("GET /health/live HTTP/1.1\r\n{host}\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = kept.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let waited = closed_after(&mut kept).await;
    assert!(waited < std::time::Duration::from_secs(5), "{waited:?}");

    // Ordinary clients are unaffected.
    let response = app.get("/health/live").send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// Clients sending their bodies a byte at a time hold connections, not the few turns every other
/// visitor waits for (`MAX_IN_PROGRESS` in `startup`, 16): with 20 of them stalled mid-body, a page
/// still answers while they all wait. (A bound of 15 s only keeps a failure from hanging: with the
/// bodies read inside the turns, the page waited for the stalled requests' 30 s timeout.)
#[tokio::test]
async fn clients_slow_to_send_bodies_do_not_hold_up_everyone_else() {
    let app = spawn_app().await;
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
            .await
            .unwrap();
        stream
            .write_all(
                format!(
                    "GET /terms HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 100\r\n\r\na",
                    app.port
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        stalled.push(stream);
    }
    // Long enough for the server to have taken all of them in.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let page = tokio::time::timeout(std::time::Duration::from_secs(15), app.get("/terms").send())
        .await
        .expect("the page waited behind the stalled bodies")
        .unwrap();
    assert_eq!(page.status(), 200);
    for stream in &stalled {
        let mut buffer = [0u8; 64];
        let read = stream.try_read(&mut buffer);
        assert!(
            matches!(&read, Err(err) if err.kind() == std::io::ErrorKind::WouldBlock),
            "a stalled request was answered: {read:?}"
        );
    }
}

#[tokio::test]
async fn the_body_limit_is_configurable() {
    let app = spawn_app_with(|vars| {
        vars.insert("MAX_BODY_BYTES".into(), "2048".into());
    })
    .await;
    let response = app
        .post_same_origin("/api/theme")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("theme=dark&pad={}", "x".repeat(3000)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("the limit is 2 KiB")
    );
}

#[tokio::test]
async fn a_valid_request_id_is_echoed_and_others_are_replaced() {
    let app = spawn_app().await;
    let response = app
        .get("/health/live")
        .header("x-request-id", "lb-7f3a9c.42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "lb-7f3a9c.42");

    let response = app.get("/").send().await.unwrap();
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");

    for bad in ["has spaces in it", &"x".repeat(200)] {
        let response = app
            .get("/")
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(id).is_ok());
    }
}

#[tokio::test]
async fn html_css_and_wasm_are_compressed() {
    let app = spawn_app().await;
    let response = app
        .get("/")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let html = gunzip(&response.bytes().await.unwrap());
    assert!(html.contains("Nest Egg"));

    let response = app
        .get("/")
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "br");

    for (path, content_type) in [
        ("/pkg/nestegg.css", "text/css"),
        ("/pkg/nestegg.js", "text/javascript"),
        ("/pkg/nestegg.wasm", "application/wasm"),
    ] {
        let response = app
            .get(path)
            .header("accept-encoding", "gzip, br")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let actual = response.headers()["content-type"].to_str().unwrap();
        assert!(actual.starts_with(content_type), "{path}: {actual}");
        assert!(
            response.headers().contains_key("content-encoding"),
            "{path} is compressed"
        );
    }
}

/// A gzip-compressed text body, as text.
fn gunzip(compressed: &[u8]) -> String {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(compressed), &mut text)
        .unwrap();
    text
}

#[tokio::test]
async fn error_pages_are_compressed_and_error_objects_are_not() {
    let app = spawn_app().await;
    let page = app
        .get("/no/such/page")
        .header("accept", "text/html")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404);
    assert_eq!(page.headers()["content-encoding"], "gzip", "a whole page");
    let html = gunzip(&page.bytes().await.unwrap());
    assert!(html.contains("Page not found"), "{html}");

    let refusal = app
        .post_same_origin("/api/sign_in")
        .header("accept-encoding", "gzip")
        .form(&[("email", "nobody@example.org"), ("password", "not the one")])
        .send()
        .await
        .unwrap();
    assert!(refusal.status().is_client_error(), "{}", refusal.status());
    assert!(!refusal.headers().contains_key("content-encoding"));
}

#[tokio::test]
async fn a_nul_in_a_plain_form_goes_back_to_the_form_with_the_error() {
    let app = spawn_app().await;
    let response = app
        .post_same_origin("/api/sign_in")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html")
        .header("referer", app.url("/login"))
        .body("email=a%00b%40example.org&password=whatever")
        .send()
        .await
        .unwrap();
    let (location, _, error) = sent_back(&response);
    assert_eq!(location.path(), "/login");
    assert!(error.to_string().contains("(NUL)"), "{error:?}");
}

/// Where a refused plain form post (no JavaScript) is sent back to (a 303), its query, and the error
/// in it.
fn sent_back(
    response: &reqwest::Response,
) -> (
    url::Url,
    std::collections::HashMap<String, String>,
    AppError,
) {
    assert_eq!(response.status(), 303);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    let error = leptos::server_fn::error::ServerFnUrlError::<AppError>::decode_err(&query["__err"]);
    (location, query, error)
}
