//! The `nestegg` binary's maintenance commands, run as a process the way an operator would.

use std::path::Path;
use std::process::Command;

use crate::helpers::{KEY_A, KEY_B, PostgresDatabase, backend_is_postgres};

/// Runs in an empty directory with only what the test sets, so no developer `.env` or environment
/// leaks in.
fn nestegg(dir: &Path, envs: &[(&str, &str)]) -> Command {
    let mut cmd = crate::helpers::nestegg_command(dir);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

#[test]
fn check_config_accepts_a_good_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = nestegg(dir.path(), &[("DATA_DIR", data)])
        .arg("check-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configuration OK"
    );
}

#[test]
fn measure_hash_reports_the_cpu_time_per_hash_and_the_sign_in_bound() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = nestegg(dir.path(), &[("DATA_DIR", data)])
        .args(["measure-hash", "--count", "3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // "argon2id m=19456 KiB t=2 p=1: 21.4 ms CPU per hash alone; 24.0 ms CPU per hash with 2 at once
    // (3 hashes each); bound: 83 sign-ins/s on 2 of 2 cores"
    assert!(text.starts_with("argon2id m=19456 KiB t=2 p=1: "), "{text}");
    let time_before = |marker: &str| -> f64 {
        text.split(marker)
            .next()
            .and_then(|head| head.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no time before {marker:?} in {text}"))
    };
    assert!(time_before(" ms CPU per hash alone") > 0.0, "{text}");
    assert!(time_before(" ms CPU per hash with") > 0.0, "{text}");
    assert!(text.contains("sign-ins/s on"), "{text}");
}

#[test]
fn check_config_lists_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = nestegg(
        dir.path(),
        &[
            ("ENVIRONMENT", "production"),
            ("PUBLIC_URL", "http://nestegg.example.org"),
            ("SECRET_KEY", "changeme"),
            ("COOKIE_SECURE", "false"),
            ("DATABASE_URL", "postgres://postgres:postgres@db/nestegg"),
            ("MAX_BODY_BYTES", "lots"),
        ],
    )
    .arg("check-config")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for variable in [
        "PUBLIC_URL",
        "DATABASE_URL",
        "SECRET_KEY",
        "ENCRYPTION_KEY",
        "COOKIE_SECURE",
        "MAX_BODY_BYTES",
        "METRICS_PASSWORD",
    ] {
        assert!(
            stderr.contains(&format!("  - {variable}: ")),
            "{variable} missing in:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("postgres:postgres"),
        "no secret echoed:\n{stderr}"
    );
}

#[test]
fn a_malformed_env_line_is_reported_by_number_with_the_problems_of_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "ENVIRONMENT=production\nPUBLIC_URL=http://nestegg.example.org\nDATA_DIR={}\n\
             # a comment\nhunter2-not-a-setting\n",
            data.display()
        ),
    )
    .unwrap();
    let out = nestegg(dir.path(), &[]).arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("  - .env: line 5 is malformed"),
        "the bad line, by number:\n{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "not its text:\n{stderr}");
    // The good lines applied: production's refusals, not development's defaults.
    for variable in ["PUBLIC_URL", "SECRET_KEY", "ENCRYPTION_KEY"] {
        assert!(
            stderr.contains(&format!("  - {variable}: ")),
            "{variable} missing in:\n{stderr}"
        );
    }
    // In development, a start refused for a bad line generates no keys on the way.
    std::fs::write(
        dir.path().join(".env"),
        format!("DATA_DIR={}\nhunter2-not-a-setting\n", data.display()),
    )
    .unwrap();
    let out = nestegg(dir.path(), &[]).arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("  - .env: line 2 is malformed"), "{stderr}");
    assert!(!data.join("secret_key").exists(), "{stderr}");
}

#[tokio::test]
async fn migrate_applies_pending_migrations_then_has_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let pg = if backend_is_postgres() {
        Some(PostgresDatabase::create().await)
    } else {
        None
    };
    let url = match &pg {
        Some(pg) => pg.url.clone(),
        None => format!("sqlite://{}/m.db?mode=rwc", dir.path().display()),
    };
    let envs = [
        ("DATA_DIR", dir.path().to_str().unwrap()),
        ("DATABASE_URL", url.as_str()),
        ("SECRET_KEY", KEY_A),
        ("ENCRYPTION_KEY", KEY_B),
    ];
    let first = nestegg(dir.path(), &envs).arg("migrate").output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let applied: usize = String::from_utf8_lossy(&first.stdout)
        .trim()
        .trim_start_matches("migrations applied: ")
        .parse()
        .unwrap();
    assert!(applied >= 1);
    let second = nestegg(dir.path(), &envs).arg("migrate").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&second.stdout).trim(),
        "migrations applied: 0"
    );
}
