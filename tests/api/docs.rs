//! The operator documentation stays true: every `nestegg` command it shows exists and is run by a
//! test, every configuration variable is documented, and the PostgreSQL backup procedure works as
//! written.

use std::path::Path;
use std::process::Command;

use crate::helpers::{PostgresDatabase, backend_is_postgres, spawn_app, spawn_app_with};

const DOCS: [&str; 3] = ["DEPLOYMENT.md", "OPERATIONS.md", "SECURITY.md"];
const PASSWORD: &str = "glacier Minnow 47 paperclip orbit";

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The lines of the docs' ```sh blocks.
fn shell_lines() -> Vec<String> {
    let mut lines = Vec::new();
    for doc in DOCS {
        let mut in_sh = false;
        for line in read(&format!("docs/{doc}")).lines() {
            let trimmed = line.trim();
            if trimmed.starts_with("```") {
                in_sh = !in_sh && trimmed == "```sh";
                continue;
            }
            if in_sh {
                lines.push(trimmed.to_owned());
            }
        }
    }
    lines
}

/// `nestegg admin grant ops@example.org` → `["admin", "grant"]`.
fn subcommand(line: &str) -> Vec<String> {
    line.split_whitespace()
        .skip(1)
        .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_nestegg_command_in_the_docs_exists_and_is_run_by_a_test() {
    let commands: Vec<Vec<String>> = shell_lines()
        .iter()
        .filter(|l| l.starts_with("nestegg "))
        .map(|l| subcommand(l))
        .collect();
    assert!(commands.len() >= 10, "{commands:?}");
    let tests: String = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    for words in commands {
        let output = Command::new(env!("CARGO_BIN_EXE_nestegg"))
            .args(&words)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "`nestegg {}` does not exist",
            words.join(" ")
        );
        for word in &words {
            assert!(
                tests.contains(&format!("\"{word}\"")),
                "no test runs `nestegg {}`",
                words.join(" ")
            );
        }
    }
}

/// Whether `text` names `variable` as a whole word (`MAX_CONNECTIONS` is not in `DB_MAX_CONNECTIONS`).
fn mentions(text: &str, variable: &str) -> bool {
    let part_of_name = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_';
    text.match_indices(variable).any(|(at, _)| {
        !text[..at].chars().next_back().is_some_and(part_of_name)
            && !text[at + variable.len()..]
                .chars()
                .next()
                .is_some_and(part_of_name)
    })
}

#[test]
fn every_configuration_variable_is_documented() {
    let config = read("src/server/config.rs");
    let deployment = read("docs/DEPLOYMENT.md");
    let example = read(".env.example");
    let mut missing = Vec::new();
    for piece in config.split('"').skip(1).step_by(2) {
        let is_variable = piece.len() > 3
            && piece.contains('_')
            && piece
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if is_variable && (!mentions(&deployment, piece) || !mentions(&example, piece)) {
            missing.push(piece.to_owned());
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "undocumented: {missing:?}");
}

#[tokio::test]
async fn the_documented_postgres_backup_and_restore_work() {
    if !backend_is_postgres() {
        return;
    }
    let app = spawn_app().await;
    app.register_verified("ann@example.org", PASSWORD).await;
    let procedure: Vec<String> = shell_lines()
        .into_iter()
        .filter(|l| l.starts_with("pg_dump ") || l.starts_with("pg_restore "))
        .collect();
    assert_eq!(procedure.len(), 2, "{procedure:?}");
    let target = PostgresDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    for line in &procedure {
        let output = Command::new("sh")
            .arg("-c")
            .arg(line)
            .current_dir(dir.path())
            .env("DATABASE_URL", app.settings.database.url.expose())
            .env("RESTORE_DATABASE_URL", &target.url)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let url = target.url.clone();
    let restored = spawn_app_with(move |vars| {
        vars.insert("DATABASE_URL".into(), url);
    })
    .await;
    assert_eq!(restored.count("users").await, 1);
    assert_eq!(
        restored.sign_in("ann@example.org", PASSWORD).await.status(),
        200
    );
}
