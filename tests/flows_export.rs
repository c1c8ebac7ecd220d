//! `junction flows`: a capture directory written by the flow ring, exported by the built
//! binary as HAR (checked against the HAR 1.2 schema by the npm package `har-validator`,
//! which scripts/test installs) and as JSON lines; `--limit`, `--filter` and its errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use junction::inspect::Filter;
use junction::inspect::flow::{
    FORMAT, Flow, FlowBody, FlowRequest, FlowResponse, SseEventRecord, SseRecord, Timings, Tokens,
    stored_header,
};
use junction::inspect::ring::{Ring, RingConfig};
use serde_json::Value;

fn flows(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_junction"))
        .arg("flows")
        .args(args)
        .output()
        .expect("junction runs")
}

const ANSWER: &[u8] = br#"{"choices":[{"message":{"content":"an answer"}}]}"#;

fn flow(number: u64, status: Option<u16>) -> Flow {
    let body = format!(
        r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"question {number}"}}]}}"#
    );
    let size = body.len() as u64;
    Flow {
        v: FORMAT,
        id: format!("0190000000{number:02}000001"),
        started: format!("2026-12-03T17:00:{number:02}.250Z"),
        client: Some("10.0.0.7".parse().unwrap()),
        route: Some("chat".into()),
        pool: Some("openai".into()),
        endpoint: Some("http://127.0.0.1:9101".into()),
        model: Some("gpt-4o".into()),
        request: FlowRequest {
            method: "POST".into(),
            url: format!("/v1/chat/completions?attempt={number}&note=a%20b"),
            http_version: "HTTP/1.1".into(),
            host: Some("gateway.example".into()),
            scheme: None,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                stored_header(b"authorization", b"Bearer sk-live-secret"),
                stored_header(b"cookie", b"session=secret"),
            ],
            body: FlowBody::kept(body.into_bytes(), size),
        },
        response: status.map(|status| FlowResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: FlowBody::kept(ANSWER.to_vec(), ANSWER.len() as u64),
        }),
        timings: Timings {
            ttfb_ms: Some(12.5),
            ttft_ms: None,
            total_ms: 40.125,
        },
        tokens: Tokens {
            prompt: Some(12),
            completion: Some(3),
        },
        ..Flow::default()
    }
}

/// Eight flows of every kind the HAR mapping treats apart, oldest first.
fn captured() -> Vec<Flow> {
    let mut streamed = flow(2, Some(200));
    streamed.response.as_mut().unwrap().headers =
        vec![("content-type".into(), "text/event-stream".into())];
    streamed.response.as_mut().unwrap().body = FlowBody::kept(
        b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n".to_vec(),
        4000,
    );
    streamed.sse = Some(SseRecord {
        events: vec![SseEventRecord {
            event: None,
            data: r#"{"choices":[{"delta":{"content":"Hel"}}]}"#.into(),
        }],
        truncated: true,
        answer: Some("Hello".into()),
    });
    streamed.timings.ttft_ms = Some(30.0);

    let mut binary = flow(4, Some(200));
    binary.request.body = FlowBody::kept(vec![0x00, 0xff, 0xfe, b'a'], 4);
    binary.response.as_mut().unwrap().body = FlowBody::kept(vec![0x89, b'P', b'N', b'G'], 4);

    let mut gone = flow(6, None);
    gone.timings = Timings {
        ttfb_ms: None,
        ttft_ms: None,
        total_ms: 7.0,
    };
    gone.error = Some("client_closed".into());

    let mut absolute = flow(7, Some(201));
    absolute.request.url = "https://api.openai.com/v1/files?purpose=batch".into();
    absolute.request.method = "GET".into();
    absolute.request.body = FlowBody::default();

    vec![
        flow(1, Some(200)),
        streamed,
        flow(3, Some(404)),
        binary,
        flow(5, Some(502)),
        gone,
        absolute,
        flow(8, Some(302)),
    ]
}

/// A capture directory as the proxy leaves it: the flows written by the ring.
fn capture_dir(flows: &[Flow]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ring = Ring::<Flow>::open(RingConfig {
        dir: dir.path().to_path_buf(),
        max_disk: 1 << 20,
        queue: 64,
        queue_bytes: usize::MAX,
    })
    .unwrap();
    for flow in flows {
        assert!(ring.offer(flow.clone()));
    }
    ring.close();
    dir
}

fn dir_arg(dir: &tempfile::TempDir) -> &str {
    dir.path().to_str().unwrap()
}

fn ids(entries: &[Value], field: impl Fn(&Value) -> &Value) -> Vec<String> {
    entries
        .iter()
        .map(|entry| field(entry).as_str().unwrap().to_owned())
        .collect()
}

// === The HAR validator ===

/// `node_modules` holding har-validator, installed by scripts/test.
fn validator_modules() -> PathBuf {
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/node/node_modules");
    assert!(
        modules.join("har-validator").is_dir(),
        "har-validator is not installed in {}: run scripts/test, which installs it \
         (npm install --prefix tools/node --no-audit --no-fund har-validator@5)",
        modules.display()
    );
    modules
}

/// Exit 0: valid; 3: invalid, the schema's complaints on stderr. Anything else (node or
/// the module missing, a crash) is neither, so that it can never pass for a verdict.
const VALIDATE: &str = r#"
const validator = require('har-validator');
const har = JSON.parse(require('fs').readFileSync(process.argv[1], 'utf8'));
validator.har(har).then(
  () => process.exit(0),
  (error) => { console.error(JSON.stringify(error.errors || String(error))); process.exit(3); });
"#;

/// `Ok`, or why the HAR 1.2 schema refuses `har`.
fn validate_har(har: &Value) -> Result<(), String> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(har).unwrap()).unwrap();
    let output = Command::new("node")
        .env("NODE_PATH", validator_modules())
        .arg("-e")
        .arg(VALIDATE)
        .arg(file.path())
        .output()
        .expect("node runs (Node.js is part of the machine; scripts/test uses its npm)");
    match output.status.code() {
        Some(0) => Ok(()),
        Some(3) => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
        _ => panic!("the HAR validator did not run: {output:?}"),
    }
}

/// What the schema cannot say (its `min` is not a JSON Schema keyword): the timings are
/// never negative and add up to the entry's time.
fn assert_timings_add_up(entry: &Value) {
    let timings = &entry["timings"];
    let time = entry["time"].as_f64().unwrap();
    let parts: Vec<f64> = ["send", "wait", "receive"]
        .iter()
        .map(|name| timings[name].as_f64().unwrap())
        .collect();
    assert!(time >= 0.0 && parts.iter().all(|t| *t >= 0.0), "{entry}");
    assert!((parts.iter().sum::<f64>() - time).abs() < 1e-6, "{entry}");
}

// === Tests ===

#[test]
fn the_har_export_is_valid_har_1_2_and_the_validator_refuses_a_broken_one() {
    let flows = captured();
    let dir = capture_dir(&flows);
    let output = flows_export(&dir, &["--export", "har", "--filter", "~c 2.."]);
    let har: Value = serde_json::from_slice(&output.stdout).unwrap();
    let entries = har["log"]["entries"].as_array().unwrap();
    assert_eq!(
        ids(entries, |e| &e["_junction"]["id"]),
        [&flows[0], &flows[1], &flows[3], &flows[6]].map(|f| f.id.clone()),
        "the 2xx flows, oldest first"
    );
    validate_har(&har).unwrap_or_else(|errors| panic!("{errors}\n{har:#}"));
    entries.iter().for_each(assert_timings_add_up);

    let first = &entries[0];
    assert_eq!(
        first["request"]["url"],
        "http://gateway.example/v1/chat/completions?attempt=1&note=a%20b"
    );
    assert_eq!(first["request"]["queryString"][1]["value"], "a b");
    let text = serde_json::to_string(&har).unwrap();
    assert!(!text.contains("sk-live-secret") && !text.contains("session=secret"));
    assert_eq!(entries[1]["_junction"]["answer"], "Hello");
    assert_eq!(entries[2]["response"]["content"]["encoding"], "base64");

    // The validator can fail: an entry without its request is refused.
    let mut broken = har.clone();
    broken["log"]["entries"][0]
        .as_object_mut()
        .unwrap()
        .remove("request");
    let errors = validate_har(&broken).expect_err("an entry without `request` is refused");
    assert!(errors.contains("request"), "{errors}");
    let mut broken = har.clone();
    broken["log"]["entries"][1]["startedDateTime"] = "yesterday".into();
    assert!(validate_har(&broken).is_err());
}

#[test]
fn every_flow_exports_as_valid_har_to_a_file_even_without_a_response() {
    let flows = captured();
    let dir = capture_dir(&flows);
    let out = dir.path().join("export.har");
    let output = flows_export(&dir, &["--export", "har", "--out", out.to_str().unwrap()]);
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("8 flows written to"), "{stderr}");
    let har: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    validate_har(&har).unwrap_or_else(|errors| panic!("{errors}\n{har:#}"));
    let entries = har["log"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), flows.len());
    entries.iter().for_each(assert_timings_add_up);
    let gone = &entries[5];
    assert_eq!(gone["response"]["status"], 0);
    assert_eq!(gone["_junction"]["error"], "client_closed");
    assert_eq!(entries[7]["response"]["statusText"], "Found");
}

#[test]
fn the_jsonl_export_is_the_stored_lines_unchanged() {
    let flows = captured();
    let dir = capture_dir(&flows);
    let output = flows_export(&dir, &[]);
    let mut stored = Vec::new();
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    segments.sort();
    for segment in segments {
        stored.extend(std::fs::read(segment).unwrap());
    }
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&stored)
    );
    let read: Vec<Flow> = output
        .stdout
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| Flow::from_line(line).unwrap())
        .collect();
    assert_eq!(read, flows);
}

#[test]
fn limit_keeps_the_newest_matching_flows_oldest_first() {
    let flows = captured();
    let dir = capture_dir(&flows);
    let exported = |args: &[&str]| -> Vec<String> {
        let output = flows_export(&dir, args);
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| Flow::from_line(line.as_bytes()).unwrap().id)
            .collect()
    };
    assert_eq!(
        exported(&["--limit", "2"]),
        [&flows[6], &flows[7]].map(|f| f.id.clone())
    );
    assert_eq!(
        exported(&["--limit", "2", "--filter", "~c 2.."]),
        [&flows[3], &flows[6]].map(|f| f.id.clone())
    );
    assert_eq!(exported(&["--limit", "100"]).len(), flows.len());
    assert!(exported(&["--limit", "0"]).is_empty());
}

#[test]
fn a_bad_filter_says_where_and_exits_2() {
    let dir = capture_dir(&captured());
    for expression in ["~x gpt", "~c 2.. & ~tokens >many", "(~m POST"] {
        let output = flows(&[dir_arg(&dir), "--filter", expression]);
        assert_eq!(output.status.code(), Some(2), "{expression}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let error = Filter::parse(expression).unwrap_err().to_string();
        assert!(error.starts_with("filter, at byte "), "{error}");
        assert!(stderr.contains(&error), "{expression}: {stderr}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn a_missing_directory_is_an_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-captures");
    let out = dir.path().join("out.har");
    let output = flows(&[
        missing.to_str().unwrap(),
        "--export",
        "har",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no-captures: no such directory"),
        "{stderr}"
    );
    assert!(!out.exists(), "no file is created for a failed export");
}

/// `junction flows DIR ARGS...`, which must succeed.
fn flows_export(dir: &tempfile::TempDir, args: &[&str]) -> Output {
    let mut all = vec![dir_arg(dir)];
    all.extend_from_slice(args);
    let output = flows(&all);
    assert!(output.status.success(), "{args:?}: {output:?}");
    output
}
