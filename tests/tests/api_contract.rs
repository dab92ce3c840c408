//! The served OpenAPI document says exactly what the server does: schemathesis (PyPI) generates
//! requests from it, valid and invalid, follows its links (register -> login -> refresh ->
//! logout), and checks every answer against it with all of its checks.
//!
//! Needs schemathesis; `scripts/test.sh` installs it into `.tmp/schemathesis-venv` (or set
//! `SCHEMATHESIS` to an `st` executable).

use latchkey_tests::{
    http::{app, TestApp},
    Backend,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Per operation; with eight operations and every phase, well over 1,000 cases in all.
const MAX_EXAMPLES: &str = "400";
const MIN_CASES: u64 = 1_000;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schemathesis() -> PathBuf {
    let st = std::env::var_os("SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository().join(".tmp/schemathesis-venv/bin/st"));
    assert!(
        st.is_file(),
        "schemathesis is not installed at {}: run scripts/test.sh, or set SCHEMATHESIS",
        st.display()
    );
    st
}

/// Runs schemathesis against `app` with `bearer`'s access token and `extra` arguments; returns
/// its JSON report, what it printed, and whether it exited successfully.
async fn run(app: &TestApp, bearer: &str, extra: &[&str], name: &str) -> (Value, String, bool) {
    let st = schemathesis();
    let work_dir = repository().join("target/schemathesis");
    std::fs::create_dir_all(&work_dir).unwrap();
    let report = work_dir.join(format!("{name}.json"));
    let _ = std::fs::remove_file(&report);
    let mut args = vec![
        "--config-file".to_owned(),
        repository()
            .join("tests/schemathesis.toml")
            .display()
            .to_string(),
        "run".to_owned(),
        app.url("/api/openapi.json"),
        "--checks".into(),
        "all".into(),
        "--header".into(),
        format!("Authorization: Bearer {bearer}"),
        "--workers".into(),
        "1".into(),
        "--report".into(),
        "json".into(),
        "--report-json-path".into(),
        report.display().to_string(),
    ];
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(st)
            .args(args)
            .current_dir(work_dir)
            .env("NO_COLOR", "1")
            .output()
            .expect("schemathesis runs")
    })
    .await
    .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{printed}");
    let report: Value = serde_json::from_slice(
        &std::fs::read(&report).unwrap_or_else(|e| panic!("no report ({e}): {printed}")),
    )
    .unwrap();
    (report, printed, output.status.success())
}

/// "Sign out everywhere" ends the session whose token schemathesis holds, so it is checked on
/// its own, last, with a session of its own; everything else first.
const ENDS_EVERY_SESSION: &str = "logoutAll";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_difference_between_the_document_and_the_server() {
    let app = app(Backend::Mongo).listening().spawn().await;
    let login = app.signed_in("schemathesis@example.com").await;

    let (report, printed, succeeded) = run(
        &app,
        &login.str("access_token"),
        &[
            "--max-examples",
            MAX_EXAMPLES,
            "--exclude-operation-id",
            ENDS_EVERY_SESSION,
        ],
        "report",
    )
    .await;

    let cases = &report["test_cases"];
    assert_eq!(cases["with_failures"], 0, "{printed}");
    assert_eq!(cases["errored"], 0, "{printed}");
    assert!(
        cases["generated"].as_u64().unwrap() >= MIN_CASES,
        "too few cases: {cases}"
    );
    for phase in ["examples", "coverage", "fuzzing", "stateful"] {
        assert_eq!(
            report["phases"][phase]["status"], "success",
            "{phase}: {printed}"
        );
    }
    assert!(succeeded, "{printed}");

    let again = app
        .login("schemathesis@example.com", "correct horse battery")
        .await;
    let (report, printed, succeeded) = run(
        &app,
        &again.str("access_token"),
        &[
            "--max-examples",
            "50",
            "--include-operation-id",
            ENDS_EVERY_SESSION,
            // Alone, it has no links to follow.
            "--phases",
            "examples,coverage,fuzzing",
        ],
        "report-logout-all",
    )
    .await;
    assert_eq!(report["test_cases"]["with_failures"], 0, "{printed}");
    assert_eq!(report["test_cases"]["errored"], 0, "{printed}");
    assert!(succeeded, "{printed}");
}
