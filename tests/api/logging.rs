use crate::helpers::{logs, spawn_app};

/// The `request` span among the spans a JSON log line lists (events inside nested spans, such as the
/// session layer's, list it too).
fn request_span(line: &serde_json::Value) -> serde_json::Value {
    line["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == "request"))
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

#[tokio::test]
async fn every_request_is_logged_with_its_id_method_path_status_and_latency() {
    let app = spawn_app().await;
    let id = format!("log-test-{}", uuid::Uuid::new_v4().simple());
    let response = app
        .get("/security?token=do-not-log-me-7731")
        .header("x-request-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The response is sent before the log line is written; give the span a moment to close.
    let mut ours = vec![];
    for _ in 0..50 {
        ours = logs::lines()
            .into_iter()
            .filter(|line| request_span(line)["request_id"] == id.as_str())
            .collect();
        if ours.iter().any(|l| l["message"] == "request finished") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let finished = ours
        .iter()
        .find(|l| l["message"] == "request finished")
        .unwrap_or_else(|| panic!("no finish line for {id}: {ours:?}"));
    assert_eq!(finished["status"], 200);
    assert!(finished["latency_ms"].as_f64().is_some());
    assert_eq!(finished["span"]["method"], "GET");
    assert_eq!(
        finished["span"]["path"], "/security",
        "path without the query string"
    );
    assert!(
        !logs::raw().contains("do-not-log-me-7731"),
        "query strings never reach the log"
    );
}
