//! `junction demo`: the embedded config with its mock model servers, and the commands it
//! prints, run as a user would paste them (curl, Python `openai`).

use crate::support;

use junction::demo::{DEMO_CONFIG, DemoOptions, start};
use tokio::process::Command;

/// A port that was free a moment ago (the mock servers need fixed ports in the config).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The demo config on free ports.
fn demo_config() -> String {
    DEMO_CONFIG
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9901", "127.0.0.1:0")
        .replace("127.0.0.1:9101", &format!("127.0.0.1:{}", free_port()))
        .replace("127.0.0.1:9102", &format!("127.0.0.1:{}", free_port()))
}

/// The demo without its own traffic: with no requests to judge, the canary stays at
/// its first step and the first requests of the rotation go to v1, as the printed
/// commands promise.
async fn start_demo() -> junction::demo::Demo {
    let options = DemoOptions {
        traffic_per_second: 0,
        ..DemoOptions::default()
    };
    start(&demo_config(), &options).await.expect("demo starts")
}

/// The demo with its own traffic and its canary's phases shortened through the config:
/// a verdict every second on at least 3 candidate requests (100 requests a second, 5 to
/// the candidate at 5%). The mocks answer in microseconds, where a debug build's
/// scheduling noise decides p99 latency, so latency does not count here.
async fn start_fast_canary(candidate_failure_percent: u64) -> junction::demo::Demo {
    let config = demo_config()
        .replace("interval = \"10s\"", "interval = \"1s\"")
        .replace("min_requests = 5", "min_requests = 3")
        .replace("max_latency_ratio = 5.0", "max_latency_ratio = 1000.0");
    assert!(
        config.contains("interval = \"1s\"") && config.contains("min_requests = 3"),
        "the demo config's canary knobs moved: {config}"
    );
    let options = DemoOptions {
        traffic_per_second: 100,
        candidate_failure_percent,
    };
    start(&config, &options).await.expect("demo starts")
}

/// Polls the canary status the printed command shows until `done` holds (30 s at most).
async fn canary_until(
    demo: &junction::demo::Demo,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let admin = demo.gateway.admin_addr().unwrap();
    let url = format!("http://{admin}/api/routes/openai-api/canary");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let client = support::client();
    loop {
        let status: serde_json::Value =
            client.get(&url).send().await.unwrap().json().await.unwrap();
        if done(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the canary did not get there within 30 s: {status:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The version that answers a `demo-llama` completion now.
async fn answering_version(demo: &junction::demo::Demo) -> String {
    let addr = demo.gateway.listener_addr("public").unwrap();
    let reply = support::client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .json(&serde_json::json!({ "model": "demo-llama", "messages": [{ "role": "user", "content": "Hi" }] }))
        .send()
        .await
        .unwrap();
    reply.headers()["x-junction-version"]
        .to_str()
        .unwrap()
        .to_string()
}

/// The shell commands in the printed instructions: lines starting with `curl` or
/// `python3`, joined with their `\` continuation lines.
fn pasted_commands(instructions: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current: Option<String> = None;
    for line in instructions.lines().map(str::trim) {
        if let Some(command) = current.as_mut() {
            command.push(' ');
            command.push_str(line.trim_end_matches('\\'));
            if !line.ends_with('\\') {
                commands.push(current.take().unwrap());
            }
        } else if line.starts_with("curl ") || line.starts_with("python3 ") {
            if line.ends_with('\\') {
                current = Some(line.trim_end_matches('\\').to_string());
            } else {
                commands.push(line.to_string());
            }
        }
    }
    commands
}

async fn shell(command: &str) -> String {
    let output = Command::new("sh")
        .arg("-c")
        .arg(command)
        .output()
        .await
        .expect("sh runs");
    assert!(
        output.status.success(),
        "{command} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_commands_work_as_pasted() {
    let demo = start_demo().await;
    let commands = pasted_commands(&demo.instructions);
    let curl: Vec<&String> = commands
        .iter()
        .filter(|c| c.starts_with("curl") && c.contains("chat/completions"))
        .collect();
    assert_eq!(
        curl.len(),
        3,
        "three chat commands in {}",
        demo.instructions
    );

    let plain = shell(curl[0]).await;
    assert!(plain.contains("x-junction-version: v1"), "{plain}");
    assert!(
        plain.contains("Hello from the v1 model! You said: Hello!"),
        "{plain}"
    );

    let streamed = shell(curl[1]).await;
    let events: Vec<&str> = streamed
        .lines()
        .filter(|l| l.starts_with("data: "))
        .collect();
    assert!(events.len() > 5, "{streamed}");
    assert!(
        events.iter().any(|e| e.contains("\"v2")) || streamed.contains("v2"),
        "{streamed}"
    );
    assert_eq!(events.last(), Some(&"data: [DONE]"));

    // The masking example: the mock echoes the prompt it received, masked.
    assert!(curl[2].contains("jane.doe@example.com"), "{}", curl[2]);
    let masked = shell(curl[2]).await;
    assert!(
        masked.contains("You said: I am [EMAIL_ADDRESS], card [CREDIT_CARD]"),
        "{masked}"
    );
    assert!(
        !masked.contains("jane.doe") && !masked.contains("4111"),
        "{masked}"
    );
    let findings = commands
        .iter()
        .find(|c| c.contains("junction_masking_findings_total"))
        .expect("a metrics command for the findings");
    let findings = shell(findings).await;
    for kind in ["EMAIL_ADDRESS", "CREDIT_CARD"] {
        assert!(
            findings
                .lines()
                .any(|line| line.contains(&format!("type=\"{kind}\""))
                    && line.contains("route=\"openai-api\"")
                    && line.ends_with(" 1")),
            "{kind} counted once in {findings}"
        );
    }

    let python = commands
        .iter()
        .find(|c| c.starts_with("python3"))
        .expect("a python command");
    let answer = shell(python).await;
    assert_eq!(answer.trim(), "Hello from the v1 model! You said: Hi");

    let pools = commands.iter().find(|c| c.contains("/api/pools"));
    assert!(pools.is_none() || shell(pools.unwrap()).await.contains("candidate"));
}

#[tokio::test]
async fn models_route_to_their_version() {
    let demo = start_demo().await;
    let addr = demo.gateway.listener_addr("public").unwrap();
    let client = support::client();
    for (model, version) in [("demo-llama", "v1"), ("demo-llama-v2", "v2")] {
        let reply = client
            .post(format!("http://{addr}/v1/chat/completions"))
            .json(&serde_json::json!({ "model": model, "messages": [{ "role": "user", "content": "one two three" }] }))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.headers()["x-junction-version"], version);
        let body: serde_json::Value = reply.json().await.unwrap();
        assert_eq!(body["model"], model);
        assert_eq!(body["usage"]["prompt_tokens"], 3);
        let text = body["choices"][0]["message"]["content"].as_str().unwrap();
        assert_eq!(
            body["usage"]["completion_tokens"],
            text.split_whitespace().count()
        );
    }
    let models: serde_json::Value = client
        .get(format!("http://{addr}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "demo-llama");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_promotes_itself_and_the_printed_commands_show_it() {
    let demo = start_fast_canary(0).await;
    let commands = pasted_commands(&demo.instructions);
    let watch = commands
        .iter()
        .find(|c| c.contains("/api/routes/openai-api/canary"))
        .expect("a command to watch the canary");
    let first: serde_json::Value = serde_json::from_str(&shell(watch).await).unwrap();
    assert_eq!(first["weights"]["candidate"], 5, "{first:#}");
    assert_eq!(first["weights"]["stable"], 95, "{first:#}");

    let status = canary_until(&demo, |s| s["phase"]["state"] != "progressing").await;
    assert_eq!(status["phase"]["state"], "promoted", "{status:#}");
    assert_eq!(status["weights"]["candidate"], 100, "{status:#}");
    let steps: Vec<u64> = status["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["candidate_weight"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [25, 50, 100], "{status:#}");
    assert_eq!(answering_version(&demo).await, "v2");

    let metrics = commands
        .iter()
        .find(|c| c.contains("/metrics") && c.contains("junction_canary"))
        .expect("a command to watch the canary's metrics");
    let text = shell(metrics).await;
    assert!(
        text.contains("junction_canary_state{route=\"openai-api\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_canary_makes_the_canary_roll_back() {
    let demo = start_fast_canary(junction::demo::FAIL_CANARY_PERCENT).await;
    assert!(
        demo.instructions.contains("rolls it back"),
        "{}",
        demo.instructions
    );
    let status = canary_until(&demo, |s| s["phase"]["state"] != "progressing").await;
    assert_eq!(status["phase"]["state"], "failed", "{status:#}");
    let reason = status["phase"]["reason"].as_str().unwrap();
    assert!(reason.contains("error rate"), "{reason}");
    assert_eq!(status["weights"]["candidate"], 0, "{status:#}");
    assert_eq!(status["weights"]["stable"], 100, "{status:#}");
    assert_eq!(answering_version(&demo).await, "v1");
}
