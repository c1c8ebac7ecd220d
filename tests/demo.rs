//! `junction demo`: the embedded config with its mock model servers, and the commands it
//! prints, run as a user would paste them (curl, Python `openai`).

mod support;

use junction::demo::{DEMO_CONFIG, start};
use tokio::process::Command;

/// A port that was free a moment ago (the mock servers need fixed ports in the config).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_demo() -> junction::demo::Demo {
    let config = DEMO_CONFIG
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9901", "127.0.0.1:0")
        .replace("127.0.0.1:9101", &format!("127.0.0.1:{}", free_port()))
        .replace("127.0.0.1:9102", &format!("127.0.0.1:{}", free_port()));
    start(&config).await.expect("demo starts")
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
    assert_eq!(curl.len(), 2, "two chat commands in {}", demo.instructions);

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
