//! Operator commands run as processes the way an operator runs them, against the database of a
//! running app: granting and revoking operator rights, and backing up and restoring the embedded
//! database.

use std::path::Path;
use std::process::{Command, Output};

use crate::helpers::{KEY_A, KEY_B, TestApp, backend_is_postgres, spawn_app, spawn_app_with};

const PASSWORD: &str = "glacier Minnow 47 paperclip orbit";

/// `nestegg <args>` in an empty directory with only the app's database and keys (no `.env`, nothing
/// inherited), off the async runtime so the app under test keeps serving.
pub(crate) async fn nestegg(app: &TestApp, database_url: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nestegg"));
    cmd.env_clear()
        .current_dir(dir.path())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "LEPTOS_CONFIG",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Leptos.toml"),
        )
        .env("DATA_DIR", dir.path())
        .env("DATABASE_URL", database_url)
        .env("SECRET_KEY", KEY_A)
        .env("ENCRYPTION_KEY", KEY_B)
        .env("ADMIN_EMAILS", app.settings.admin_emails.join(","))
        .args(args);
    // Scaled out, sessions live in Redis: the commands must be given it too.
    if let Some(redis) = &app.settings.redis {
        cmd.env("REDIS_URL", redis.url.expose())
            .env("REDIS_KEY_PREFIX", &redis.key_prefix);
    }
    tokio::task::spawn_blocking(move || {
        let output = cmd.output().unwrap();
        drop(dir);
        output
    })
    .await
    .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn url_of(app: &TestApp) -> String {
    app.settings.database.url.expose().to_owned()
}

/// The status of a call that needs a fully set-up account (it is refused with 403 while
/// `REQUIRE_MFA` wants two-factor authentication first).
async fn gated_status(app: &TestApp) -> u16 {
    app.call("list_sessions", &[]).await.status().as_u16()
}

#[tokio::test]
async fn operators_are_granted_listed_and_revoked_from_the_command_line() {
    let app = spawn_app_with(|vars| {
        vars.insert("REQUIRE_MFA".into(), "admins".into());
        vars.insert("ADMIN_EMAILS".into(), "root@example.org".into());
    })
    .await;
    let url = url_of(&app);
    app.register_verified("ops@example.org", PASSWORD).await;
    assert_eq!(app.sign_in("ops@example.org", PASSWORD).await.status(), 200);
    // Not an operator: REQUIRE_MFA=admins does not apply yet.
    assert_eq!(gated_status(&app).await, 200);

    let granted = nestegg(&app, &url, &["admin", "grant", "Ops@Example.org"]).await;
    assert!(granted.status.success(), "{}", stderr(&granted));
    assert_eq!(
        stdout(&granted).trim(),
        "Ops@Example.org: granted operator rights"
    );
    // Now an operator: two-factor authentication comes first.
    assert_eq!(gated_status(&app).await, 403);
    let again = nestegg(&app, &url, &["admin", "grant", "ops@example.org"]).await;
    assert!(again.status.success());
    assert!(stdout(&again).contains("already an operator"));

    let list = nestegg(&app, &url, &["admin", "list"]).await;
    assert!(list.status.success(), "{}", stderr(&list));
    assert_eq!(
        stdout(&list),
        "ops@example.org\tgranted\nroot@example.org\tADMIN_EMAILS\n"
    );

    let revoked = nestegg(&app, &url, &["admin", "revoke", "ops@example.org"]).await;
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    assert!(stdout(&revoked).contains("revoked operator rights"));
    assert_eq!(gated_status(&app).await, 200);

    // Each change is in the account's security trail.
    for kind in ["operator_granted", "operator_revoked"] {
        assert_eq!(
            app.count(&format!("security_events WHERE kind = '{kind}'"))
                .await,
            1,
            "{kind}"
        );
    }
}

#[tokio::test]
async fn admin_commands_explain_what_they_cannot_do() {
    let app = spawn_app_with(|vars| {
        vars.insert("ADMIN_EMAILS".into(), "root@example.org".into());
    })
    .await;
    let url = url_of(&app);
    app.register_verified("root@example.org", PASSWORD).await;

    let unknown = nestegg(&app, &url, &["admin", "grant", "nobody@example.org"]).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("no account has this address"));

    // Rights from ADMIN_EMAILS cannot be revoked from the command line.
    let env_admin = nestegg(&app, &url, &["admin", "revoke", "root@example.org"]).await;
    assert_eq!(env_admin.status.code(), Some(1));
    assert!(stderr(&env_admin).contains("still an operator through ADMIN_EMAILS"));
}

#[tokio::test]
async fn a_backup_restored_into_an_empty_data_directory_serves_the_same_accounts() {
    let app = spawn_app().await;
    let url = url_of(&app);
    let backups = tempfile::tempdir().unwrap();
    let backup = backups.path().join("nightly").join("nestegg-backup.db");
    let backup_arg = backup.to_str().unwrap().to_owned();

    if backend_is_postgres() {
        // PostgreSQL is backed up with its own tools; the command says so instead of half-working.
        let refused = nestegg(&app, &url, &["backup", &backup_arg]).await;
        assert_eq!(refused.status.code(), Some(1));
        assert!(stderr(&refused).contains("pg_dump"));
        assert!(!backup.exists());
        return;
    }

    app.register_verified("ann@example.org", PASSWORD).await;
    app.register_verified("ben@example.org", PASSWORD).await;
    assert_eq!(app.sign_in("ann@example.org", PASSWORD).await.status(), 200);

    // Online: the app keeps running while the copy is taken.
    let written = nestegg(&app, &url, &["backup", &backup_arg]).await;
    assert!(written.status.success(), "{}", stderr(&written));
    assert!(stdout(&written).starts_with(&format!("backup written to {backup_arg} (")));
    assert!(backup.metadata().unwrap().len() > 0);
    // Never over an existing file.
    let twice = nestegg(&app, &url, &["backup", &backup_arg]).await;
    assert_eq!(twice.status.code(), Some(1));
    assert!(stderr(&twice).contains("already exists"));

    // Restore into a new, empty data directory.
    let fresh = tempfile::tempdir().unwrap();
    let restored_url = format!(
        "sqlite://{}?mode=rwc",
        fresh.path().join("nestegg.db").display()
    );
    let restored = nestegg(&app, &restored_url, &["restore", &backup_arg]).await;
    assert!(restored.status.success(), "{}", stderr(&restored));
    // Never over an existing database.
    let again = nestegg(&app, &restored_url, &["restore", &backup_arg]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already exists"));

    let copy = spawn_app_with(|vars| {
        vars.insert("DATABASE_URL".into(), restored_url.clone());
    })
    .await;
    assert_eq!(copy.count("users").await, 2);
    assert_eq!(
        copy.sign_in("ann@example.org", PASSWORD).await.status(),
        200
    );
    assert_eq!(
        copy.sign_in("ben@example.org", PASSWORD).await.status(),
        200
    );
    assert_eq!(
        copy.sign_in("ann@example.org", "wrong password")
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn a_damaged_backup_is_refused_and_nothing_is_restored() {
    if backend_is_postgres() {
        return; // SQLite files only.
    }
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let damaged = dir.path().join("damaged.db");
    std::fs::write(&damaged, b"SQLite format 3\0 but not really".repeat(200)).unwrap();
    let target = dir.path().join("data").join("nestegg.db");
    let target_url = format!("sqlite://{}?mode=rwc", target.display());
    let refused = nestegg(&app, &target_url, &["restore", damaged.to_str().unwrap()]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("restore failed"));
    assert!(!target.exists());
    assert!(!Path::new(&format!("{}-wal", target.display())).exists());
}

#[tokio::test]
async fn a_suspected_compromise_is_contained_from_the_command_line() {
    let app = spawn_app().await;
    let url = url_of(&app);
    app.register_verified("ann@example.org", PASSWORD).await;
    assert_eq!(app.sign_in("ann@example.org", PASSWORD).await.status(), 200);
    assert_eq!(app.call("list_sessions", &[]).await.status(), 200);

    // Signed out everywhere: this browser's next request finds no session.
    let revoked = nestegg(&app, &url, &["user", "revoke-sessions", "ann@example.org"]).await;
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    assert_eq!(stdout(&revoked).trim(), "ann@example.org: 1 sessions ended");
    assert_eq!(app.call("list_sessions", &[]).await.status(), 401);

    // Force a reset: the password stops working and a reset link is queued.
    assert_eq!(app.sign_in("ann@example.org", PASSWORD).await.status(), 200);
    let reset = nestegg(&app, &url, &["user", "force-reset", "ann@example.org"]).await;
    assert!(reset.status.success(), "{}", stderr(&reset));
    assert!(stdout(&reset).contains("password disabled, reset link queued"));
    assert_eq!(app.call("list_sessions", &[]).await.status(), 401);
    assert_eq!(app.sign_in("ann@example.org", PASSWORD).await.status(), 400);
    assert_eq!(
        app.count("outbox_emails WHERE kind = 'password_reset' AND to_address = 'ann@example.org'")
            .await,
        1
    );
    assert_eq!(
        app.count("security_events WHERE kind = 'password_reset_forced'")
            .await,
        1
    );

    for command in ["revoke-sessions", "force-reset"] {
        let unknown = nestegg(&app, &url, &["user", command, "nobody@example.org"]).await;
        assert_eq!(unknown.status.code(), Some(1), "{command}");
        assert!(stderr(&unknown).contains("no account has this address"));
    }
}
