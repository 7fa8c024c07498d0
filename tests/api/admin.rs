//! The operators' security status: only operators see it (everyone else gets 404), each check turns
//! red when its setting is weakened, failed emails can be retried, and events can be filtered.

use nestegg::server::entities::{operator, outbox_email, user};
use nestegg::server::services::security_status::{self, Check, RequestFacts};
use sea_orm::{
    ActiveModelTrait as _, ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _,
};

use crate::helpers::{TestApp, backend_is_postgres, spawn_app_with};

const PASSWORD: &str = "glacier Minnow 47 paperclip orbit";
const OPS: &str = "ops@example.org";

async fn operator_app() -> TestApp {
    let app = spawn_app_with(|vars| {
        vars.insert("ADMIN_EMAILS".into(), format!("{OPS},boss@example.org"));
        vars.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "100".into());
        vars.insert("RATE_LIMIT_REGISTER_PER_HOUR".into(), "100".into());
    })
    .await;
    app.register_verified(OPS, PASSWORD).await;
    app.register_verified("ann@example.org", PASSWORD).await;
    app
}

async fn page_status(app: &TestApp) -> u16 {
    app.get("/admin/security-status")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn only_operators_see_the_status_and_everyone_else_gets_404() {
    let app = operator_app().await;
    // Signed out: not a sign-in prompt, a 404.
    assert_eq!(page_status(&app).await, 404);
    assert_eq!(app.call("security_status", &[]).await.status(), 404);

    // A household owner is not an operator.
    assert_eq!(app.sign_in("ann@example.org", PASSWORD).await.status(), 200);
    assert_eq!(page_status(&app).await, 404);
    for (function, form) in [
        ("security_status", vec![]),
        ("failed_emails", vec![]),
        (
            "admin_security_events",
            vec![("kind", ""), ("email", ""), ("page", "1")],
        ),
        ("retry_email", vec![("id", "1")]),
    ] {
        assert_eq!(app.call(function, &form).await.status(), 404, "{function}");
    }
    let body = app
        .get("/admin/security-status")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !body.contains("Security status"),
        "the page gave itself away"
    );

    // An ADMIN_EMAILS address registered by someone who cannot confirm it is not an operator.
    app.call("sign_out", &[]).await;
    let response = app
        .register("boss@example.org", "Not The Boss", PASSWORD)
        .await;
    assert!(response.status().is_success() || response.status().is_redirection());
    assert_eq!(
        app.sign_in("boss@example.org", PASSWORD).await.status(),
        200
    );
    assert_eq!(page_status(&app).await, 404);
    assert_eq!(app.call("security_status", &[]).await.status(), 404);

    // An operator from ADMIN_EMAILS.
    app.call("sign_out", &[]).await;
    assert_eq!(app.sign_in(OPS, PASSWORD).await.status(), 200);
    let page = app
        .get("/admin/security-status")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Security status") && html.contains("Background jobs"),
        "{html}"
    );
    let status: serde_json::Value = app
        .call("security_status", &[])
        .await
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert!(status["checks"].as_array().unwrap().len() >= 10);

    // An operator granted from the command line.
    app.call("sign_out", &[]).await;
    let ann = user::Entity::find()
        .filter(user::Column::Email.eq("ann@example.org"))
        .one(&app.app_db)
        .await
        .unwrap()
        .unwrap();
    operator::ActiveModel {
        user_id: Set(ann.id),
        granted_at: Set(0),
    }
    .insert(&app.app_db)
    .await
    .unwrap();
    assert_eq!(app.sign_in("ann@example.org", PASSWORD).await.status(), 200);
    assert_eq!(page_status(&app).await, 200);
}

fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}"))
}

async fn checks_with(setting: &[(&str, &str)], facts: RequestFacts) -> Vec<Check> {
    let setting: Vec<(String, String)> = setting
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let app = spawn_app_with(move |vars| {
        for (k, v) in setting {
            vars.insert(k, v);
        }
    })
    .await;
    security_status::checks(&app.state, facts).await.unwrap()
}

/// A check's name, the settings that weaken it, and what the request says.
type WeakenedCase = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    RequestFacts,
);

fn production() -> Vec<(&'static str, &'static str)> {
    vec![
        ("ENVIRONMENT", "production"),
        ("PUBLIC_URL", "https://nestegg.example.org"),
        ("ALLOWED_HOSTS", "nestegg.example.org"),
        ("METRICS_PASSWORD", "scrape-me-9f2c1e7a4b"),
        ("REQUIRE_MFA", "admins"),
        ("SMTP_URL", "smtp://127.0.0.1:2525"),
    ]
}

#[tokio::test]
async fn a_well_configured_production_deployment_passes_the_configuration_checks() {
    let mut setting = production();
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/prod.db?mode=rwc", db_dir.path().display());
    setting.push(("DATABASE_URL", &db));
    let checks = checks_with(&setting, RequestFacts::default()).await;
    for name in [
        "Secrets",
        "Session cookies",
        "HTTPS enforced",
        "Allowed hosts",
        "CORS origins",
        "Trusted proxies",
        "Metrics",
        "Email delivery",
        "Outbox",
        "Two-factor policy",
        "Migrations",
    ] {
        let check = find(&checks, name);
        assert!(check.ok, "{name}: {}", check.detail);
        assert!(check.fix.is_none());
    }
}

#[tokio::test]
async fn each_check_turns_red_when_its_setting_is_weakened() {
    let plain = RequestFacts::default();
    let cases: Vec<WeakenedCase> = vec![
        ("Session cookies", vec![("COOKIE_SECURE", "false")], plain),
        (
            "HTTPS enforced",
            vec![("ENVIRONMENT", "development")],
            plain,
        ),
        ("Allowed hosts", vec![("ALLOWED_HOSTS", "*")], plain),
        (
            "Metrics",
            vec![(
                "METRICS_PASSWORD",
                nestegg::server::config::DEV_METRICS_PASSWORD,
            )],
            plain,
        ),
        ("Email delivery", vec![("SMTP_URL", "")], plain),
        ("Two-factor policy", vec![("REQUIRE_MFA", "off")], plain),
        (
            "Trusted proxies",
            vec![],
            RequestFacts {
                forwarded_by_untrusted_peer: true,
            },
        ),
        (
            "CORS origins",
            vec![
                ("PUBLIC_URL", "https://nestegg.example.org"),
                ("CORS_ORIGINS", "http://app.example.org"),
            ],
            plain,
        ),
    ];
    for (name, weaken, facts) in cases {
        // Development settings for the ones production would refuse outright.
        let mut setting: Vec<(&str, &str)> = vec![
            ("PUBLIC_URL", "http://127.0.0.1:3000"),
            ("METRICS_PASSWORD", "scrape-me-9f2c1e7a4b"),
            ("REQUIRE_MFA", "admins"),
            ("SMTP_URL", "smtp://127.0.0.1:2525"),
        ];
        setting.extend(weaken);
        let checks = checks_with(&setting, facts).await;
        let check = find(&checks, name);
        assert!(!check.ok, "{name} should fail: {}", check.detail);
        assert!(check.fix.is_some(), "{name} has no fix");
    }
    // Secrets generated on the machine (no SECRET_KEY configured) are flagged.
    let app = spawn_app_with(|vars| {
        vars.remove("SECRET_KEY");
        vars.remove("ENCRYPTION_KEY");
    })
    .await;
    let checks = security_status::checks(&app.state, plain).await.unwrap();
    assert!(!find(&checks, "Secrets").ok);
}

#[tokio::test]
async fn failed_emails_and_missing_backups_turn_red_and_recover() {
    let app = operator_app().await;
    let now = nestegg::server::clock::Clock::now(&app.clock).unix_timestamp();
    // A real email (sealed body and all) that failed for good, in one transaction so the outbox
    // worker never sees it pending.
    let txn = sea_orm::TransactionTrait::begin(&app.app_db).await.unwrap();
    nestegg::server::services::outbox::enqueue(
        &txn,
        &app.state,
        now,
        "ann@example.org",
        None,
        &nestegg::server::mail::Template::PasswordChanged {
            name: "Ann".to_owned(),
        },
    )
    .await
    .unwrap();
    outbox_email::Entity::update_many()
        .col_expr(outbox_email::Column::Status, "failed".into())
        .col_expr(outbox_email::Column::Attempts, 8.into())
        .col_expr(
            outbox_email::Column::LastError,
            Some("550 mailbox unavailable".to_owned()).into(),
        )
        .filter(outbox_email::Column::Kind.eq("password_changed"))
        .exec(&txn)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let checks = security_status::checks(&app.state, RequestFacts::default())
        .await
        .unwrap();
    assert!(!find(&checks, "Outbox").ok);
    if !backend_is_postgres() {
        assert!(!find(&checks, "Backups").ok, "no backup yet");
        nestegg::server::jobs::run_due(&app.state, "test")
            .await
            .unwrap();
        let checks = security_status::checks(&app.state, RequestFacts::default())
            .await
            .unwrap();
        assert!(
            find(&checks, "Backups").ok,
            "{}",
            find(&checks, "Backups").detail
        );
    }

    // The operator sees it and sends it again.
    assert_eq!(app.sign_in(OPS, PASSWORD).await.status(), 200);
    let failed: serde_json::Value = app
        .call("failed_emails", &[])
        .await
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    let entry = &failed.as_array().unwrap()[0];
    assert_eq!(entry["error"], "550 mailbox unavailable");
    let id = entry["id"].as_i64().unwrap().to_string();
    assert_eq!(
        app.call("retry_email", &[("id", id.as_str())])
            .await
            .status(),
        200
    );
    // The worker sends it at once.
    let mut status = String::new();
    for _ in 0..100 {
        status = outbox_email::Entity::find()
            .filter(outbox_email::Column::Kind.eq("password_changed"))
            .one(&app.app_db)
            .await
            .unwrap()
            .unwrap()
            .status;
        if status == "sent" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, "sent");
    // Only a failed email can be retried.
    assert_eq!(
        app.call("retry_email", &[("id", id.as_str())])
            .await
            .status(),
        404
    );
    assert_eq!(
        app.call("retry_email", &[("id", "999999")]).await.status(),
        404
    );
    assert_eq!(
        app.count("security_events WHERE kind = 'email_retried'")
            .await,
        1
    );
}

#[tokio::test]
async fn security_events_of_every_account_can_be_filtered() {
    let app = operator_app().await;
    assert_eq!(
        app.sign_in("ann@example.org", "wrong password")
            .await
            .status(),
        400
    );
    assert_eq!(app.sign_in("ann@example.org", PASSWORD).await.status(), 200);
    app.call("sign_out", &[]).await;
    assert_eq!(app.sign_in(OPS, PASSWORD).await.status(), 200);

    let all: serde_json::Value = app
        .call(
            "admin_security_events",
            &[("kind", ""), ("email", ""), ("page", "1")],
        )
        .await
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    let who: Vec<&str> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["who"].as_str().unwrap())
        .collect();
    assert!(
        who.contains(&"ann@example.org") && who.contains(&OPS),
        "{who:?}"
    );

    let filtered: serde_json::Value = app
        .call(
            "admin_security_events",
            &[
                ("kind", "sign_in_failed"),
                ("email", "Ann@Example.org"),
                ("page", "1"),
            ],
        )
        .await
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    let entries = filtered["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{filtered}");
    assert_eq!(entries[0]["who"], "ann@example.org");
    assert_eq!(entries[0]["kind"], "sign_in_failed");

    let nobody: serde_json::Value = app
        .call(
            "admin_security_events",
            &[("kind", ""), ("email", "nobody@example.org"), ("page", "1")],
        )
        .await
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert!(nobody["entries"].as_array().unwrap().is_empty());
}
