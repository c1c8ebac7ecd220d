//! `junction mask`: the proxy's masking offline, one body per line in and out, the
//! report naming types and places but never values, refused lines kept as empty lines,
//! and a route's own `mask` table taken from a config.

use crate::support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn mask(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(support::process::binary())
        .arg("mask")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("junction runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin);
    child.wait_with_output().expect("junction mask ends")
}

const EMAIL: &str = "jane.doe@example.org";

#[test]
fn every_line_comes_out_masked_with_a_report_of_places_not_values() {
    let dir = tempfile::TempDir::new().unwrap();
    let report = dir.path().join("report.jsonl");
    let input = format!(
        "{}\n{}\n",
        serde_json::json!({ "model": "m", "messages": [{ "role": "user", "content": format!("mail {EMAIL}") }] }),
        serde_json::json!({ "model": "m", "messages": [{ "role": "user", "content": "nothing here" }] }),
    );
    let output = mask(&["--report", report.to_str().unwrap()], &input);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first["messages"][0]["content"], "mail [EMAIL_ADDRESS]");
    assert_eq!(
        lines[1],
        input.lines().nth(1).unwrap(),
        "an untouched body stays byte for byte"
    );
    let report = std::fs::read_to_string(&report).unwrap();
    assert!(!report.contains(EMAIL), "{report}");
    let entries: Vec<serde_json::Value> = report
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        entries[0]["findings"][0],
        serde_json::json!({ "type": "EMAIL_ADDRESS", "pointer": "/messages/0/content", "start": 5, "end": 5 + EMAIL.len() })
    );
    assert_eq!(entries[1]["findings"], serde_json::json!([]));
}

/// A member name may be a value itself: the report's pointer shows it masked.
#[test]
fn a_member_name_that_is_a_value_is_masked_in_the_report() {
    let dir = tempfile::TempDir::new().unwrap();
    let report = dir.path().join("report.jsonl");
    let input = format!(
        "{}\n",
        serde_json::json!({ "records": { EMAIL: { "note": format!("mail {EMAIL}") } } })
    );
    let output = mask(
        &[
            "--path",
            "/v1/records",
            "--report",
            report.to_str().unwrap(),
        ],
        &input,
    );
    assert!(output.status.success(), "{output:?}");
    let report = std::fs::read_to_string(&report).unwrap();
    assert!(!report.contains(EMAIL), "{report}");
    let entry: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(
        entry["findings"][0]["pointer"], "/records/[EMAIL_ADDRESS]/note",
        "{entry}"
    );
}

#[test]
fn a_line_that_is_not_json_is_an_empty_line_and_the_exit_status_says_so() {
    let input = format!("{{\"messages\": [\"{EMAIL}\"\nplain {EMAIL}\n");
    let output = mask(&[], &input);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout, "\n\n", "refused lines stay in place, empty");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("2 of 2 lines refused"), "{stderr}");
    assert!(!stderr.contains(EMAIL));
    // As text, the same lines are masked.
    let output = mask(&["--text"], &input);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "{\"messages\": [\"[EMAIL_ADDRESS]\"\nplain [EMAIL_ADDRESS]\n"
    );
}

#[test]
fn a_routes_mask_table_is_taken_from_the_config() {
    let dir = tempfile::TempDir::new().unwrap();
    let config = dir.path().join("junction.toml");
    std::fs::write(
        &config,
        r#"
[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "p"
endpoints = [{ url = "http://127.0.0.1:9001" }]

[[routes]]
name = "chat"
pool = "p"
mask = { types = { EMAIL_ADDRESS = "partial" }, custom = [{ name = "CODENAME", words = ["bluebird"] }] }
"#,
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let output = mask(
        &["--config", config, "--route", "chat", "--text"],
        &format!("{EMAIL} on Bluebird\n"),
    );
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        !stdout.contains("jane.doe") && !stdout.contains("Bluebird"),
        "{stdout}"
    );
    assert!(stdout.contains("[CODENAME]"), "{stdout}");
    let missing = mask(&["--config", config, "--route", "nope"], "");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no route is named \"nope\""));
}
