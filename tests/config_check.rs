//! `junction check` and the config errors a user sees: every runnable example passes,
//! and every broken config fails with exit status 1 and each error's key path and line.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::process::Command;

/// Runs the built binary with `args` and returns its output (10 s at most).
async fn junction(args: &[&str], config: Option<&Path>) -> Output {
    let mut command = Command::new(support::process::binary());
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    tokio::time::timeout(Duration::from_secs(10), command.output())
        .await
        .unwrap_or_else(|_| panic!("junction {args:?} did not finish within 10 s"))
        .expect("junction runs")
}

/// A config file in its own temporary folder.
struct ConfigFile {
    _dir: TempDir,
    path: PathBuf,
}

fn config_file(text: &str) -> ConfigFile {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("junction.toml");
    std::fs::write(&path, text).expect("write config");
    ConfigFile { _dir: dir, path }
}

/// `junction check` on `text`: its exit code and its errors with the file name prefix
/// removed. An error starts with the file name; lines without it continue the error
/// before (a regex error shows the pattern with a caret under the problem).
async fn check(text: &str) -> (Option<i32>, Vec<String>) {
    let file = config_file(text);
    let output = junction(&["check"], Some(&file.path)).await;
    let prefix = format!("{}: ", file.path.display());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut errors: Vec<String> = Vec::new();
    for line in stderr.lines() {
        match (line.strip_prefix(&prefix), errors.last_mut()) {
            (Some(error), _) => errors.push(error.to_string()),
            (None, Some(error)) => {
                error.push('\n');
                error.push_str(line);
            }
            (None, None) => panic!("output does not start with the file name: {stderr}"),
        }
    }
    (output.status.code(), errors)
}

#[tokio::test]
async fn every_example_and_deployment_config_passes_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = ["examples", "deploy", "deploy/kubernetes"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(root.join(dir)).expect("the folder exists"))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("deploy/junction.toml"))
            && files
                .iter()
                .any(|f| f.ends_with("deploy/kubernetes/junction.toml")),
        "the deployment configs are missing: {files:?}"
    );
    files.sort();
    assert!(
        files.iter().any(|f| f.ends_with("demo.toml")),
        "examples/demo.toml is missing: {files:?}"
    );
    let mut failures = Vec::new();
    for file in &files {
        let output = junction(&["check"], Some(file)).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if output.status.code() != Some(0) || !stdout.contains(": ok (") {
            failures.push(format!(
                "{}: exit {:?}\n{stdout}{}",
                file.display(),
                output.status.code(),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "examples that fail `junction check`:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn check_reports_counts_for_a_valid_config() {
    let file = config_file(
        r#"
[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "p"
endpoints = [{ url = "http://127.0.0.1:9001" }]

[[routes]]
name = "a"
pool = "p"

[[routes]]
name = "b"
pool = "p"
"#,
    );
    let output = junction(&["check"], Some(&file.path)).await;
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!(
            "{}: ok (1 listeners, 1 pools, 2 routes)",
            file.path.display()
        )
    );
}

#[tokio::test]
async fn a_route_naming_an_unknown_pool_is_reported_with_its_line() {
    let (code, errors) = check(
        r#"[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "p"
endpoints = [{ url = "http://127.0.0.1:9001" }]

[[routes]]
name = "first"
pool = "p"

[[routes]]
name = "second"
pool = "llama"
"#,
    )
    .await;
    assert_eq!(code, Some(1));
    assert_eq!(
        errors,
        [r#"routes[1].pool (line 15): no pool is named "llama""#]
    );
}

#[tokio::test]
async fn a_bad_regex_is_reported_with_its_key_path_and_line() {
    let (code, errors) = check(
        r#"[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "p"
endpoints = [{ url = "http://127.0.0.1:9001" }]

[[routes]]
name = "chat"
match = { path_regex = "^/v1/(chat" }
pool = "p"
"#,
    )
    .await;
    assert_eq!(code, Some(1));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("routes[0].match.path_regex (line 11): invalid regex:"),
        "{errors:#?}"
    );
}

#[tokio::test]
async fn an_unknown_key_is_named_with_its_line() {
    let (code, errors) = check(
        r#"[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "p"
balanse = "least_conn"
endpoints = [{ url = "http://127.0.0.1:9001" }]

[[routes]]
name = "chat"
pool = "p"
"#,
    )
    .await;
    assert_eq!(code, Some(1));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("pools[0].balanse (line 7): unknown field `balanse`"),
        "{errors:#?}"
    );
}

#[tokio::test]
async fn an_unknown_key_in_an_inline_table_is_named_with_its_line() {
    let (code, errors) = check(
        r#"[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "p"
endpoints = [
  { url = "http://127.0.0.1:9001" },
  { url = "http://127.0.0.1:9002", wieght = 2 },
]

[[routes]]
name = "chat"
pool = "p"
"#,
    )
    .await;
    assert_eq!(code, Some(1));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("pools[0].endpoints[1].wieght (line 9): unknown field `wieght`"),
        "{errors:#?}"
    );
}

#[tokio::test]
async fn a_size_of_the_wrong_type_says_what_a_size_looks_like() {
    let (code, errors) = check(
        r#"[[listeners]]
name = "public"
bind = "127.0.0.1:0"
max_request_head_bytes = true

[[pools]]
name = "p"
endpoints = [{ url = "http://127.0.0.1:9001" }]

[[routes]]
name = "chat"
pool = "p"
"#,
    )
    .await;
    assert_eq!(code, Some(1));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("listeners[0].max_request_head_bytes (line 4): ")
            && errors[0].contains(r#"expected a size like "64KiB", "10MB" or a number of bytes"#)
            && !errors[0].contains("untagged"),
        "{errors:#?}"
    );
}

#[tokio::test]
async fn a_toml_syntax_error_is_reported_with_its_line() {
    let (code, errors) = check(
        r#"[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "p"
endpoints = [{ url = "http://127.0.0.1:9001" }]

[[routes]]
name = "chat
pool = "p"
"#,
    )
    .await;
    assert_eq!(code, Some(1));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    // The file does not parse, so there is no key path: only the line.
    assert!(errors[0].starts_with("line 10: "), "{errors:#?}");
}

#[tokio::test]
async fn a_zero_weight_is_reported_with_its_key_path_and_line() {
    let (code, errors) = check(
        r#"[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "p"
endpoints = [
  { url = "http://127.0.0.1:9001" },
  { url = "http://127.0.0.1:9002", weight = 0 },
]

[[routes]]
name = "chat"
pool = "p"
"#,
    )
    .await;
    assert_eq!(code, Some(1));
    assert_eq!(
        errors,
        ["pools[0].endpoints[1].weight (line 9): weight must be between 1 and 1000, got 0"]
    );
}

#[tokio::test]
async fn every_error_in_a_file_is_reported() {
    let (code, errors) = check(
        r#"[admin]
bind = "localhost:9901"

[server]
shutdown_grace = "soon"

[[listeners]]
name = "public"
bind = "127.0.0.1:0"
trusted_proxies = ["10.0.0.0/33"]

[[pools]]
name = "p"
endpoints = [
  { url = "http://127.0.0.1:9001" },
  { url = "http://127.0.0.1:9002", weight = 0 },
]

[[routes]]
name = "chat"
match = { path_regex = "(" }
pool = "p"

[[routes]]
name = "embeddings"
match = { path_prefix = "v1/embeddings" }
pool = "missing"
timeouts = { connect = "0s" }
"#,
    )
    .await;
    assert_eq!(code, Some(1));
    let located: Vec<&str> = errors
        .iter()
        .map(|e| e.split(": ").next().unwrap_or(""))
        .collect();
    let mut expected = [
        "admin.bind (line 2)",
        "server.shutdown_grace (line 5)",
        "listeners[0].trusted_proxies[0] (line 10)",
        "pools[0].endpoints[1].weight (line 16)",
        "routes[0].match.path_regex (line 21)",
        "routes[1].pool (line 27)",
        "routes[1].match.path_prefix (line 26)",
        "routes[1].timeouts.connect (line 28)",
    ];
    let mut located_sorted = located.clone();
    located_sorted.sort();
    expected.sort();
    assert_eq!(
        located_sorted,
        expected,
        "all errors:\n{}",
        errors.join("\n")
    );
}

#[tokio::test]
async fn check_on_a_missing_file_fails() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("absent.toml");
    let output = junction(&["check"], Some(&path)).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot read config file"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn run_with_an_invalid_config_exits_1_with_the_errors() {
    let file = config_file(
        r#"[admin]
bind = "127.0.0.1:0"

[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "p"
endpoints = [{ url = "http://127.0.0.1:9001", weight = 0 }]

[[routes]]
name = "chat"
pool = "nope"
"#,
    );
    let output = junction(&["run"], Some(&file.path)).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid config"), "{stderr}");
    assert!(
        stderr.contains("pools[0].endpoints[0].weight (line 10): weight must be between"),
        "{stderr}"
    );
    assert!(
        stderr.contains(r#"routes[0].pool (line 14): no pool is named "nope""#),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
}

#[tokio::test]
async fn version_prints_the_version() {
    let output = junction(&["version"], None).await;
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("junction {}", env!("CARGO_PKG_VERSION"))
    );
}

/// A listener, a pool and a route without a fault, after the section a test is about
/// (which comes first, so that the lines it names are those written in the test).
const VALID_TAIL: &str = r#"
[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "p"
endpoints = [{ url = "http://127.0.0.1:9001" }]

[[routes]]
name = "chat"
pool = "p"
"#;

#[tokio::test]
async fn audit_checkpoint_and_key_errors_are_reported_with_their_lines() {
    let (code, errors) = check(&format!(
        r#"[audit]
path = "audit.log"
checkpoint_interval = "0s"
checkpoint_records = 0
key_env = "JUNCTION_TEST_AUDIT_KEY_THAT_IS_NOT_SET"
{VALID_TAIL}"#
    ))
    .await;
    assert_eq!(code, Some(1));
    assert_eq!(
        errors,
        [
            "audit.checkpoint_interval (line 3): must be greater than zero",
            "audit.checkpoint_records (line 4): must be at least 1",
            "audit.key_env (line 5): the environment variable JUNCTION_TEST_AUDIT_KEY_THAT_IS_NOT_SET is not set",
        ]
    );
    let (code, errors) = check(&format!(
        r#"[audit]
key_file = "audit.key"
{VALID_TAIL}"#
    ))
    .await;
    assert_eq!(code, Some(1));
    assert_eq!(errors, ["audit.key_file (line 2): needs audit.path"]);
}

/// Header rules may not touch what the proxy writes itself, so that an edit means the
/// same on both engines.
#[tokio::test]
async fn header_rules_naming_proxy_owned_headers_are_refused() {
    let (code, errors) = check(
        r#"[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "p"
endpoints = [{ url = "http://127.0.0.1:9001" }]

[[routes]]
name = "chat"
pool = "p"
request_headers = { set = { "x-forwarded-for" = "1.2.3.4", "x-team" = "a" }, remove = ["Content-Length"] }
response_headers = { remove = ["x-junction-version", "server"] }
"#,
    )
    .await;
    assert_eq!(code, Some(1));
    assert_eq!(errors.len(), 3, "{errors:#?}");
    for (error, path) in errors.iter().zip([
        "routes[0].request_headers.set.x-forwarded-for",
        "routes[0].request_headers.remove[0]",
        "routes[0].response_headers.remove[0]",
    ]) {
        assert!(error.starts_with(path), "{errors:#?}");
    }
    assert!(
        errors[0].contains("written by the proxy itself"),
        "{errors:#?}"
    );
}

/// Found by the config fuzzer: a canary whose stable pool has a bad endpoint URL
/// compiled its route with one split side and indexed past it.
#[tokio::test]
async fn a_canary_over_a_broken_pool_reports_the_pool_and_does_not_crash() {
    let (code, errors) = check(
        r#"[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "stable"
endpoints = [{ url = "thtp://127.0.0.1:9101" }]

[[pools]]
name = "candidate"
endpoints = [{ url = "http://127.0.0.1:9102" }]

[[routes]]
name = "api"
split = [{ pool = "stable", weight = 95 }, { pool = "candidate", weight = 5 }]
[routes.canary]
candidate = "candidate"
steps = [5, 50, 100]
"#,
    )
    .await;
    assert_eq!(code, Some(1), "{errors:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("pools[0].endpoints[0].url (line 7): unsupported scheme"),
        "{errors:?}"
    );
}

/// An admin API bound beyond loopback without a token is valid, but `junction check`
/// says what that exposes; with a token, or on loopback, it says nothing.
#[tokio::test]
async fn check_warns_of_an_admin_beyond_loopback_without_a_token() {
    let text = |admin: &str| {
        format!(
            r#"
[admin]
{admin}

[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "p"
endpoints = [{{ url = "http://127.0.0.1:9001" }}]

[[routes]]
name = "a"
pool = "p"
"#
        )
    };
    let exposed = "bind = \"0.0.0.0:9901\"\ntoken_env = \"JUNCTION_TEST_NO_SUCH_TOKEN\"";
    let (code, lines) = check(&text(exposed)).await;
    assert_eq!(code, Some(0), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("warning: admin.bind 0.0.0.0:9901: the admin API listens beyond loopback without an admin token"),
        "{lines:?}"
    );

    let file = config_file(&text(
        "bind = \"0.0.0.0:9901\"\ntoken_file = \"admin.token\"",
    ));
    std::fs::write(file.path.with_file_name("admin.token"), "s3cret").unwrap();
    let output = junction(&["check"], Some(&file.path)).await;
    assert!(output.status.success());
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let loopback = "bind = \"127.0.0.1:9901\"\ntoken_env = \"JUNCTION_TEST_NO_SUCH_TOKEN\"";
    let (code, lines) = check(&text(loopback)).await;
    assert_eq!((code, lines.len()), (Some(0), 0), "{lines:?}");
}

#[tokio::test]
async fn a_fleet_needs_a_redis_url_and_a_lease_of_a_second_or_more() {
    let base = r#"
[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "p"
endpoints = [{ url = "http://127.0.0.1:9001" }]

[[routes]]
name = "r"
pool = "p"
"#;
    let (code, errors) = check(&format!(
        "[fleet]\nbackend = \"http://127.0.0.1:6379\"\nlease = \"10ms\"\nkey_prefix = \"a b\"\n{base}"
    ))
    .await;
    assert_eq!(code, Some(1));
    assert_eq!(
        errors,
        [
            r#"fleet.backend (line 2): "http://127.0.0.1:6379": a redis:// or rediss:// URL is needed"#,
            r#"fleet.lease (line 3): at least "1s""#,
            "fleet.key_prefix (line 4): a non-empty name without spaces",
        ]
    );
    let (code, errors) = check(&format!(
        "[fleet]\nbackend = \"redis://127.0.0.1:6379/0\"\nlease = \"5s\"\n{base}"
    ))
    .await;
    assert_eq!((code, errors), (Some(0), vec![]));
}

#[tokio::test]
async fn an_egress_mask_is_checked_as_a_routes_and_refused_where_no_body_is_seen() {
    let (code, errors) = check(
        r#"[[egress]]
name = "crawl"
bind = "127.0.0.1:0"
protocol = "socks5"
exits = [{ url = "direct" }]
mask = { directions = "both", types = { EMAIL_ADDRESS = "scramble" } }
"#,
    )
    .await;
    assert_eq!(code, Some(1));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0].starts_with("egress[0].mask (line 6): a socks5 listener carries tunnels only"),
        "{errors:#?}"
    );
    assert!(
        errors[1].starts_with("egress[0].mask.types.EMAIL_ADDRESS (line 6): unknown action"),
        "{errors:#?}"
    );
}
