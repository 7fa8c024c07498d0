//! The job runner: each purge removes only what is past its time, jobs run again only when due,
//! failures back off, nightly backups are written and pruned, and with two app instances on one
//! database every run happens exactly once. Time is the fake clock's; nothing sleeps.

use nestegg::server::clock::Clock as _;
use nestegg::server::entities::{
    account_token, job, known_device, login_throttle, outbox_email, security_event, session,
};
use nestegg::server::jobs::{self, Job};
use sea_orm::{ActiveModelTrait as _, ActiveValue::Set, EntityTrait as _};

use crate::helpers::{TestApp, backend_is_postgres, spawn_app, spawn_app_with};

const PASSWORD: &str = "glacier Minnow 47 paperclip orbit";
const DAY: i64 = 24 * 3600;

fn now(app: &TestApp) -> i64 {
    app.clock.now().unix_timestamp()
}

async fn user_id(app: &TestApp) -> String {
    nestegg::server::entities::user::Entity::find()
        .one(&app.app_db)
        .await
        .unwrap()
        .expect("a user")
        .id
}

async fn job_row(app: &TestApp, job: Job) -> job::Model {
    job::Entity::find_by_id(job.name().to_owned())
        .one(&app.app_db)
        .await
        .unwrap()
        .expect("registered")
}

fn names(tick: &jobs::Tick) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = tick.ran.iter().map(|(j, _)| j.name()).collect();
    names.sort();
    names
}

async fn event(app: &TestApp, user: &str, kind: &str, created_at: i64) {
    security_event::ActiveModel {
        user_id: Set(Some(user.to_owned())),
        kind: Set(kind.to_owned()),
        ip: Set(None),
        user_agent: Set(None),
        details: Set("{}".to_owned()),
        created_at: Set(created_at),
        ..Default::default()
    }
    .insert(&app.app_db)
    .await
    .unwrap();
}

async fn token(app: &TestApp, user: &str, hash: &str, expires_at: i64) {
    account_token::ActiveModel {
        user_id: Set(user.to_owned()),
        purpose: Set("reset_password".to_owned()),
        token_hash: Set(hash.to_owned()),
        new_email: Set(None),
        created_at: Set(expires_at - 3600),
        expires_at: Set(expires_at),
        used_at: Set(None),
        ..Default::default()
    }
    .insert(&app.app_db)
    .await
    .unwrap();
}

async fn raw_session(
    app: &TestApp,
    id: &str,
    user: Option<&str>,
    data: &str,
    updated: i64,
    expires: i64,
) {
    session::ActiveModel {
        id_hash: Set(id.to_owned()),
        data: Set(data.to_owned()),
        expires_at: Set(expires),
        created_at: Set(updated),
        updated_at: Set(updated),
        user_id: Set(user.map(str::to_owned)),
    }
    .insert(&app.app_db)
    .await
    .unwrap();
}

async fn email(app: &TestApp, id: &str, status: &str, created_at: i64) {
    outbox_email::ActiveModel {
        message_id: Set(id.to_owned()),
        kind: Set("password_changed".to_owned()),
        to_address: Set("ann@example.org".to_owned()),
        subject: Set("subject".to_owned()),
        body_text: Set(String::new()),
        body_html: Set(String::new()),
        status: Set(status.to_owned()),
        attempts: Set(1),
        next_attempt_at: Set(created_at),
        locked_until: Set(None),
        last_error: Set(None),
        created_at: Set(created_at),
        sent_at: Set(Some(created_at)),
        ..Default::default()
    }
    .insert(&app.app_db)
    .await
    .unwrap();
}

async fn exists(app: &TestApp, table: &str, filter: &str) -> bool {
    app.count(&format!("{table} WHERE {filter}")).await > 0
}

#[tokio::test]
async fn each_purge_removes_only_what_is_past_its_time() {
    let app = spawn_app_with(|vars| {
        crate::helpers::without_redis(vars);
        vars.insert("AUDIT_RETENTION_DAYS".into(), "400".into());
    })
    .await;
    app.register_verified("ann@example.org", PASSWORD).await;
    let ann = user_id(&app).await;
    let t = now(&app);

    event(&app, &ann, "old_event", t - 401 * DAY).await;
    event(&app, &ann, "kept_event", t - 399 * DAY).await;
    token(&app, &ann, "expired-two-days-ago", t - 2 * DAY).await;
    token(&app, &ann, "still-valid", t + 3600).await;
    login_throttle::ActiveModel {
        email_hash: Set("lapsed".into()),
        failures: Set(3),
        locked_until: Set(None),
        updated_at: Set(t - 31 * DAY),
    }
    .insert(&app.app_db)
    .await
    .unwrap();
    login_throttle::ActiveModel {
        email_hash: Set("slow-guesser".into()),
        failures: Set(4),
        locked_until: Set(None),
        updated_at: Set(t - 2 * DAY),
    }
    .insert(&app.app_db)
    .await
    .unwrap();
    login_throttle::ActiveModel {
        email_hash: Set("locked-now".into()),
        failures: Set(10),
        locked_until: Set(Some(t + 600)),
        updated_at: Set(t - 2 * DAY),
    }
    .insert(&app.app_db)
    .await
    .unwrap();
    raw_session(
        &app,
        "expired",
        Some(&ann),
        r#"{"uid":"x"}"#,
        t - 3600,
        t - 1,
    )
    .await;
    raw_session(
        &app,
        "live",
        Some(&ann),
        r#"{"uid":"x"}"#,
        t - 600,
        t + 1200,
    )
    .await;
    let pending = format!(
        r#"{{"mfa_pending":{{"user_id":"{ann}","started_at":{},"failures":0,"next":"/"}}}}"#,
        t - 600
    );
    raw_session(
        &app,
        "stale-pending",
        Some(&ann),
        &pending,
        t - 600,
        t + 1200,
    )
    .await;
    let fresh = format!(
        r#"{{"mfa_pending":{{"user_id":"{ann}","started_at":{},"failures":0,"next":"/"}}}}"#,
        t - 60
    );
    raw_session(&app, "fresh-pending", Some(&ann), &fresh, t - 60, t + 1200).await;
    email(&app, "old-sent", "sent", t - 31 * DAY).await;
    email(&app, "new-sent", "sent", t - 29 * DAY).await;
    // Known devices go once unused for the retention period; the account's marker of having signed
    // in before never does. (Instead of whatever the registration left.)
    known_device::Entity::delete_many()
        .exec(&app.app_db)
        .await
        .unwrap();
    // (A row an instance not yet upgraded wrote has no last sign-in: its first counts.)
    for (fingerprint, first_seen_at, last_seen_at) in [
        ("unused-device", t - 500 * DAY, t - 401 * DAY),
        ("used-device", t - 500 * DAY, t - 399 * DAY),
        ("signed-in-before", t - 500 * DAY, t - 500 * DAY),
        ("not-yet-dated", t - 10 * DAY, 0),
    ] {
        known_device::ActiveModel {
            user_id: Set(ann.clone()),
            fingerprint: Set(fingerprint.to_owned()),
            first_seen_at: Set(first_seen_at),
            last_seen_at: Set(last_seen_at),
        }
        .insert(&app.app_db)
        .await
        .unwrap();
    }

    let tick = jobs::run_due(&app.state, "test").await.unwrap();
    assert!(
        tick.ran.iter().all(|(_, outcome)| *outcome == "ok"),
        "{tick:?}"
    );

    assert!(!exists(&app, "security_events", "kind = 'old_event'").await);
    assert!(exists(&app, "security_events", "kind = 'kept_event'").await);
    assert!(
        !exists(
            &app,
            "account_tokens",
            "token_hash = 'expired-two-days-ago'"
        )
        .await
    );
    assert!(exists(&app, "account_tokens", "token_hash = 'still-valid'").await);
    assert!(!exists(&app, "login_throttles", "email_hash = 'lapsed'").await);
    assert!(exists(&app, "login_throttles", "email_hash = 'locked-now'").await);
    // Four failures two days ago still count: the fifth, whenever it comes, locks.
    assert!(exists(&app, "login_throttles", "email_hash = 'slow-guesser'").await);
    assert!(!exists(&app, "sessions", "id_hash = 'expired'").await);
    assert!(exists(&app, "sessions", "id_hash = 'live'").await);
    assert!(!exists(&app, "sessions", "id_hash = 'stale-pending'").await);
    assert!(exists(&app, "sessions", "id_hash = 'fresh-pending'").await);
    assert!(!exists(&app, "outbox_emails", "message_id = 'old-sent'").await);
    assert!(exists(&app, "outbox_emails", "message_id = 'new-sent'").await);
    assert!(!exists(&app, "known_devices", "fingerprint = 'unused-device'").await);
    assert!(exists(&app, "known_devices", "fingerprint = 'used-device'").await);
    assert!(exists(&app, "known_devices", "fingerprint = 'signed-in-before'").await);
    assert!(exists(&app, "known_devices", "fingerprint = 'not-yet-dated'").await);

    // Each run is recorded, with what it did, and scheduled a full interval later.
    for job in [Job::PurgeSessions, Job::PurgeTokens, Job::PurgeHistory] {
        let row = job_row(&app, job).await;
        assert_eq!(row.last_outcome.as_deref(), Some("ok"), "{}", job.name());
        assert_eq!(row.last_success_at, Some(t));
        assert_eq!(row.next_run_at, t + job.interval_secs());
        assert_eq!(row.consecutive_failures, 0);
        assert!(row.lease_owner.is_none());
        assert!(!row.last_summary.unwrap_or_default().is_empty());
    }
    assert!(
        job_row(&app, Job::PurgeSessions)
            .await
            .last_summary
            .unwrap()
            .starts_with("1 expired sessions, 1 unfinished")
    );
}

#[tokio::test]
async fn jobs_run_again_only_when_due() {
    let app = spawn_app_with(|vars| {
        vars.insert("BACKUPS_KEEP".into(), "0".into());
    })
    .await;
    let first = jobs::run_due(&app.state, "test").await.unwrap();
    assert_eq!(
        names(&first),
        vec!["purge_history", "purge_sessions", "purge_tokens"]
    );
    assert!(
        jobs::run_due(&app.state, "test")
            .await
            .unwrap()
            .ran
            .is_empty()
    );
    app.clock.advance(time::Duration::minutes(10));
    assert_eq!(
        names(&jobs::run_due(&app.state, "test").await.unwrap()),
        vec!["purge_sessions"]
    );
    app.clock.advance(time::Duration::minutes(50));
    assert_eq!(
        names(&jobs::run_due(&app.state, "test").await.unwrap()),
        vec!["purge_sessions", "purge_tokens"]
    );
}

#[tokio::test]
async fn a_failing_job_is_retried_with_growing_delays_and_recorded() {
    if backend_is_postgres() {
        return; // The job made to fail here is the SQLite backup.
    }
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let backup_dir = blocker.path().join("backups"); // Under a file: cannot be created.
    let app = spawn_app_with(move |vars| {
        vars.insert("BACKUP_DIR".into(), backup_dir.display().to_string());
    })
    .await;
    let t = now(&app);
    jobs::run_due(&app.state, "test").await.unwrap();
    let row = job_row(&app, Job::Backup).await;
    assert_eq!(row.last_outcome.as_deref(), Some("error"));
    assert_eq!(row.consecutive_failures, 1);
    assert!(
        (t + 48..=t + 72).contains(&row.next_run_at),
        "{}",
        row.next_run_at - t
    );
    assert!(row.last_success_at.is_none());
    assert!(jobs::last_backup_at(&app.state).await.unwrap().is_none());

    app.clock.advance(time::Duration::seconds(75));
    let tick = jobs::run_due(&app.state, "test").await.unwrap();
    assert!(tick.ran.contains(&(Job::Backup, "error")), "{tick:?}");
    let row = job_row(&app, Job::Backup).await;
    assert_eq!(row.consecutive_failures, 2);
    let delay = row.next_run_at - now(&app);
    assert!((96..=144).contains(&delay), "{delay}");
}

#[tokio::test]
async fn nightly_backups_are_written_and_only_the_newest_kept() {
    if backend_is_postgres() {
        return; // PostgreSQL is backed up with pg_dump.
    }
    let dir = tempfile::tempdir().unwrap();
    let backup_dir = dir.path().join("backups");
    let configured = backup_dir.clone();
    let app = spawn_app_with(move |vars| {
        vars.insert("BACKUP_DIR".into(), configured.display().to_string());
        vars.insert("BACKUPS_KEEP".into(), "2".into());
    })
    .await;
    app.register_verified("ann@example.org", PASSWORD).await;
    // A copy that a killed process began: whole data, never finished, never counted as a backup.
    let left_over = backup_dir.join("nestegg-20261120-120000.db.partial-4242");
    let stranger = backup_dir.join("notes.partial-1");
    // An operator's own copy, whose name sorts after every nightly one: not a nightly backup, so
    // never pruned, and never taking the place of one.
    let manual = backup_dir.join("nestegg-manual.db");
    std::fs::create_dir_all(&backup_dir).unwrap();
    std::fs::write(&left_over, b"half a database").unwrap();
    std::fs::write(&stranger, b"not ours").unwrap();
    std::fs::write(&manual, b"kept by hand").unwrap();
    let listing = || {
        let mut files: Vec<String> = std::fs::read_dir(&backup_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        files
    };
    for _ in 0..3 {
        let tick = jobs::run_due(&app.state, "test").await.unwrap();
        assert!(tick.ran.contains(&(Job::Backup, "ok")), "{tick:?}");
        assert!(!left_over.exists());
        app.clock
            .advance(time::Duration::days(1) + time::Duration::seconds(1));
    }
    let files = listing();
    assert_eq!(
        files,
        vec![
            "nestegg-20261123-120001.db",
            "nestegg-20261124-120002.db",
            "nestegg-manual.db",
            "notes.partial-1"
        ]
    );
    assert!(jobs::last_backup_at(&app.state).await.unwrap().is_some());
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode(&backup_dir.join(&files[1])) & 0o777, 0o600);
    }
    // Written while the clock was ahead: two backups dated later than the next one. The one just
    // written is kept all the same, with the newest of the others.
    for ahead in ["nestegg-20301231-000000.db", "nestegg-20310101-000000.db"] {
        std::fs::write(backup_dir.join(ahead), b"from the future").unwrap();
    }
    let tick = jobs::run_due(&app.state, "test").await.unwrap();
    assert!(tick.ran.contains(&(Job::Backup, "ok")), "{tick:?}");
    let files = listing();
    assert_eq!(
        files,
        vec![
            "nestegg-20261125-120003.db",
            "nestegg-20310101-000000.db",
            "nestegg-manual.db",
            "notes.partial-1"
        ]
    );
}

/// The folder the nightly backups create for themselves is the service's own.
#[tokio::test]
async fn a_backup_folder_it_creates_is_private() {
    if backend_is_postgres() {
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let backup_dir = dir.path().join("new").join("backups");
    let configured = backup_dir.clone();
    let app = spawn_app_with(move |vars| {
        vars.insert("BACKUP_DIR".into(), configured.display().to_string());
    })
    .await;
    let tick = jobs::run_due(&app.state, "test").await.unwrap();
    assert!(tick.ran.contains(&(Job::Backup, "ok")), "{tick:?}");
    let mode = std::fs::metadata(&backup_dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[tokio::test]
async fn with_two_instances_on_one_database_each_run_happens_once() {
    let first = spawn_app().await;
    let url = first.settings.database.url.expose().to_owned();
    let second = spawn_app_with(move |vars| {
        vars.insert("DATABASE_URL".into(), url);
    })
    .await;
    let mut total: Vec<&'static str> = Vec::new();
    for round in 0..3 {
        let (a, b) = tokio::join!(
            jobs::run_due(&first.state, "instance-a"),
            jobs::run_due(&second.state, "instance-b"),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let mut both: Vec<&'static str> = names(&a);
        both.extend(names(&b));
        both.sort();
        let mut unique = both.clone();
        unique.dedup();
        assert_eq!(both, unique, "round {round}: a job ran twice: {a:?} {b:?}");
        total.extend(both);
        for app in [&first, &second] {
            app.clock
                .advance(time::Duration::days(1) + time::Duration::seconds(1));
        }
    }
    // Every applicable job ran in every round, on one instance or the other.
    let per_round = if backend_is_postgres() { 3 } else { 4 };
    assert_eq!(total.len(), 3 * per_round, "{total:?}");
}

#[tokio::test]
async fn the_outbox_worker_records_its_runs_with_the_other_jobs() {
    let app = spawn_app().await;
    app.register_verified("ann@example.org", PASSWORD).await;
    // The verification email went out; the worker wrote down what it did.
    let mut row = job_row(&app, Job::Outbox).await;
    for _ in 0..100 {
        if row
            .last_summary
            .as_deref()
            .is_some_and(|s| s.starts_with("1 sent"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        row = job_row(&app, Job::Outbox).await;
    }
    assert_eq!(row.last_outcome.as_deref(), Some("ok"));
    assert_eq!(
        row.last_summary.as_deref(),
        Some("1 sent, 0 to retry, 0 failed")
    );
    assert!(row.last_success_at.is_some());
    // The runner itself never starts it.
    let tick = jobs::run_due(&app.state, "test").await.unwrap();
    assert!(!names(&tick).contains(&"outbox"), "{tick:?}");
}

/// During a rolling change of `ENCRYPTION_KEY`, an instance without the key an email was sealed under
/// (a newer instance's, say) leaves it for a later attempt, which an instance with the key can make,
/// instead of failing it for good after one try.
#[tokio::test]
async fn an_email_sealed_under_a_key_this_instance_lacks_is_retried_not_failed() {
    let app = spawn_app().await;
    let now = now(&app);
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
    // Sealed by an instance whose key this one does not know (the key id names no key here).
    let newer = nestegg::server::services::secret_box::SecretBox::new(
        &nestegg::server::config::SecretKey::generate(),
        &[],
    );
    let sealed = newer.seal("Hello Ann", "elsewhere");
    assert_ne!(
        newer.current_key_id(),
        app.state.secret_box.current_key_id()
    );
    outbox_email::Entity::update_many()
        .col_expr(outbox_email::Column::BodyText, sealed.clone().into())
        .col_expr(outbox_email::Column::BodyHtml, sealed.into())
        .exec(&txn)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    app.state.mail_wakeup.notify_one();

    let mut row = None;
    for _ in 0..100 {
        let email = outbox_email::Entity::find().one(&app.app_db).await.unwrap();
        if email.as_ref().is_some_and(|e| e.attempts > 0) {
            row = email;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let row = row.expect("the worker tried the email");
    assert_eq!(row.status, "pending", "{:?}", row.last_error);
    assert_eq!(row.attempts, 1);
    assert!(row.next_attempt_at > now, "retried later");
    let error = row.last_error.unwrap_or_default();
    assert!(error.contains("not configured"), "{error}");
}
