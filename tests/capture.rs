//! Flow capture as a phase of the proxy core (issue #14), on every engine: the fast
//! HTTP/1.1 engine, hyper, and the hand-off between them. A scripted upstream answers;
//! the flows are read back from the capture directory, the admin flow API and its live
//! tail. Covered: heads and bodies with credentials redacted, masking before anything is
//! stored, a stream reassembled into events and answer, timings and tokens, the
//! proxy's own refusals, the capture filter, sampling, a listener's capture, and the
//! admin API's filter, token and errors.

use crate::support;

use std::path::Path;
use std::time::Duration;

use junction::inspect::Flow;
use junction::inspect::capture::read_newest;
use support::proxy::RunningProxy;
use support::raw_http::*;
use support::travel::{self, Extra, Travel};

const EMAIL: &str = "jane.doe@example.org";
const TOKEN: &str = "capture-admin-token";

fn chat(content: &str, stream: bool) -> String {
    serde_json::json!({
        "model": "gpt-4o-mini",
        "stream": stream,
        "messages": [{ "role": "user", "content": content }],
    })
    .to_string()
}

fn post(body: &str, extra_headers: &str) -> String {
    format!(
        "POST /v1/chat/completions?trace=1 HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn json_reply(body: &str) -> Vec<Step> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    vec![Step::Write((head + body).into_bytes())]
}

const ANSWER: &str = r#"{"id":"c1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello back"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;

fn sse_reply(pieces: &[&str]) -> Vec<Step> {
    let mut steps = vec![Step::Write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec(),
    )];
    let mut events: Vec<String> = pieces
        .iter()
        .map(|piece| {
            let event = serde_json::json!({
                "choices": [{ "index": 0, "delta": { "content": piece } }],
            });
            format!("data: {event}\n\n")
        })
        .collect();
    events.push(
        r#"data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#.to_owned()
            + "\n\n",
    );
    events.push("data: [DONE]\n\n".into());
    for event in events {
        steps.push(Step::Write(
            format!("{:x}\r\n{event}\r\n", event.len()).into_bytes(),
        ));
        steps.push(Step::Yield);
    }
    steps.push(Step::Write(b"0\r\n\r\n".to_vec()));
    steps
}

/// Admin token and `capture` for the route "all", writing to `dir`.
async fn start(
    travel: Travel,
    upstream: &Upstream,
    dir: &Path,
    capture: &str,
    route: &str,
) -> RunningProxy {
    let top = format!("[admin]\ntoken_file = \"{}\"\n", token_file(dir).display());
    let route = format!(
        "capture = {{ dir = \"{}\", {capture} }}\n{route}",
        dir.join("flows").display()
    );
    let access_log = format!("[access_log]\npath = {:?}\n", dir.join("access.log"));
    let config = travel::config(
        travel,
        &[upstream.url()],
        &Extra {
            top: &access_log,
            route: &route,
            ..Extra::default()
        },
    );
    // The test listeners' `[admin]` table takes the token file.
    let config = config.replacen("[admin]\n", &top, 1);
    support::TestProxy::from_toml(&config).start().await
}

fn token_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("admin-token");
    std::fs::write(&path, TOKEN).unwrap();
    path
}

/// The flows in `dir/flows` once `count` are written (the writer thread is not the
/// request's: it is waited for, never slept on).
async fn flows(dir: &Path, count: usize) -> Vec<Flow> {
    let dir = dir.join("flows");
    within("the flows to be written", async {
        loop {
            let flows = read_newest(&dir, None, 1000).unwrap();
            if flows.len() >= count {
                return flows;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

async fn a_flow_holds_heads_bodies_timings_and_tokens(travel: Travel) {
    let upstream = Upstream::start(|_| json_reply(ANSWER)).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(travel, &upstream, dir.path(), "sample = 1.0", "").await;
    let body = chat("Hi there", false);
    let mut client = RawClient::connect(&proxy).await;
    let response = client
        .request(
            "POST",
            &post(
                &body,
                "Authorization: Bearer sk-live-secret\r\nX-Trace: t1\r\n",
            ),
        )
        .await;
    assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    let flows = flows(dir.path(), 1).await;
    let flow = &flows[0];
    let request = &flow.request;
    assert_eq!(request.method, "POST");
    assert_eq!(request.url, "/v1/chat/completions?trace=1", "{travel:?}");
    assert_eq!(request.body.data, body.as_bytes(), "{travel:?}");
    assert_eq!(request.body.size, body.len() as u64);
    let header = |headers: &[(String, String)], name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header(&request.headers, "authorization").as_deref(),
        Some("Bearer [redacted]"),
        "{travel:?}"
    );
    assert_eq!(header(&request.headers, "x-trace").as_deref(), Some("t1"));
    let response = flow.response.as_ref().expect("a response");
    assert_eq!(response.status, 200);
    assert_eq!(response.body.data, ANSWER.as_bytes(), "{travel:?}");
    assert!(
        header(&response.headers, "x-request-id").is_some(),
        "{travel:?}: {:?}",
        response.headers
    );
    assert_eq!(flow.route.as_deref(), Some("all"));
    assert_eq!(flow.pool.as_deref(), Some("p"));
    assert_eq!(flow.endpoint.as_deref(), Some(upstream.url().as_str()));
    assert_eq!(flow.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(
        (flow.tokens.prompt, flow.tokens.completion),
        (Some(12), Some(3))
    );
    assert!(
        flow.timings.ttfb_ms.is_some(),
        "{travel:?}: {:?}",
        flow.timings
    );
    assert!(flow.timings.total_ms >= flow.timings.ttfb_ms.unwrap());
    assert_eq!(flow.answer().as_deref(), Some("Hello back"));
    assert_eq!(flow.client, Some("127.0.0.1".parse().unwrap()));
    let raw = std::fs::read_dir(dir.path().join("flows"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(
        !raw.contains("sk-live-secret"),
        "{travel:?}: a credential was stored"
    );
}

#[tokio::test]
async fn a_flow_holds_heads_bodies_timings_and_tokens_on_every_engine() {
    for travel in Travel::ALL {
        a_flow_holds_heads_bodies_timings_and_tokens(travel).await;
    }
}

/// Sends `request` through a route that captures every flow and masks by `mask` (its
/// `mask = ...` line); returns the client's answer, the flow stored and the access log's
/// `path`.
async fn through_a_masking_route(
    travel: Travel,
    upstream: &Upstream,
    mask: &str,
    request: &str,
) -> (RawResponse, Flow, String) {
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(travel, upstream, dir.path(), "sample = 1.0", mask).await;
    let mut client = RawClient::connect(&proxy).await;
    let response = client.request("POST", request).await;
    let flow = flows(dir.path(), 1).await.remove(0);
    let line = &support::wait_for_lines(&dir.path().join("access.log"), 1).await[0];
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    let logged_path = line["path"].as_str().unwrap_or_default().to_string();
    (response, flow, logged_path)
}

async fn bodies_are_masked_before_they_are_stored(travel: Travel) {
    let upstream = Upstream::start(|_| json_reply(ANSWER)).await;
    let body = chat(&format!("Write to {EMAIL} please"), false);
    // A value in the query is stored masked too (the endpoint gets the URL as it is).
    let request = post(&body, "").replacen("?trace=1", &format!("?trace=1&to={EMAIL}"), 1);
    let mask = "mask = { directions = \"request\" }";
    let (response, flow, logged_path) =
        through_a_masking_route(travel, &upstream, mask, &request).await;
    assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    assert_eq!(
        flow.request.url, "/v1/chat/completions?trace=1&to=[EMAIL_ADDRESS]",
        "{travel:?}"
    );
    // The access log's path is the same text, read once for both (body_phase::begin_capture).
    assert_eq!(logged_path, flow.request.url, "{travel:?}");
    let stored = flow.request.body.text().unwrap();
    assert!(!stored.contains(EMAIL), "{travel:?}: {stored}");
    assert!(stored.contains("[EMAIL_ADDRESS]"), "{travel:?}: {stored}");
    // What is stored is what the endpoint got.
    assert_eq!(upstream.only_request().body, flow.request.body.data);
    assert!(
        flow.masked.as_deref().unwrap_or("").contains("EMAIL"),
        "{:?}",
        flow.masked
    );
}

/// A response that restores pseudonyms gives the client its values back; the flow keeps
/// the pseudonyms, so no value masking took out is stored.
async fn restored_values_are_not_stored(travel: Travel) {
    const RESTORED: &str = r#"{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Mail sent to <EMAIL_ADDRESS_1>."},"finish_reason":"stop"}]}"#;
    let upstream = Upstream::start(|_| json_reply(RESTORED)).await;
    let dir = tempfile::tempdir().unwrap();
    let route = "mask = { directions = \"request\", types = { EMAIL_ADDRESS = \"pseudonymize\" } }";
    let proxy = start(travel, &upstream, dir.path(), "sample = 1.0", route).await;
    let body = chat(&format!("Write to {EMAIL} please"), false);
    let mut client = RawClient::connect(&proxy).await;
    let response = client.request("POST", &post(&body, "")).await;
    assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    assert!(
        response.text().contains(EMAIL),
        "{travel:?}: restored for the client"
    );
    let flow = &flows(dir.path(), 1).await[0];
    let kept = flow.response.as_ref().unwrap().body.text().unwrap();
    assert!(
        kept.contains("Mail sent to <EMAIL_ADDRESS_1>."),
        "{travel:?}: {kept}"
    );
    let raw = std::fs::read_dir(dir.path().join("flows"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(
        !raw.contains(EMAIL),
        "{travel:?}: a restored value was stored"
    );
}

#[tokio::test]
async fn restored_values_are_not_stored_on_every_engine() {
    for travel in Travel::ALL {
        restored_values_are_not_stored(travel).await;
    }
}

#[tokio::test]
async fn bodies_are_masked_before_they_are_stored_on_every_engine() {
    for travel in Travel::ALL {
        bodies_are_masked_before_they_are_stored(travel).await;
    }
}

async fn a_stream_is_reassembled(travel: Travel) {
    let upstream = Upstream::start(|_| sse_reply(&["Hel", "lo", " world"])).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(travel, &upstream, dir.path(), "sample = 1.0", "").await;
    let mut client = RawClient::connect(&proxy).await;
    let response = client.request("POST", &post(&chat("Hi", true), "")).await;
    assert_eq!(response.status, 200, "{travel:?}");
    let flow = &flows(dir.path(), 1).await[0];
    let sse = flow
        .sse
        .as_ref()
        .unwrap_or_else(|| panic!("{travel:?}: no events: {flow:?}"));
    assert_eq!(sse.answer.as_deref(), Some("Hello world"), "{travel:?}");
    assert_eq!(sse.events.len(), 5, "{travel:?}: {:?}", sse.events);
    assert_eq!(sse.events[4].data, "[DONE]");
    assert!(flow.timings.ttft_ms.is_some(), "{travel:?}");
    assert_eq!(flow.tokens.completion, Some(2));
    // The raw body is kept too, as the client got it (framing removed).
    let body = flow.response.as_ref().unwrap().body.text().unwrap();
    assert!(
        body.starts_with("data: {") && body.ends_with("data: [DONE]\n\n"),
        "{body:?}"
    );
}

#[tokio::test]
async fn a_stream_is_reassembled_on_every_engine() {
    for travel in Travel::ALL {
        a_stream_is_reassembled(travel).await;
    }
}

async fn refusals_the_filter_and_the_body_budget(travel: Travel) {
    let upstream = Upstream::start(|seen| {
        if seen.path.starts_with("/fail") {
            let body = r#"{"error":"overloaded"}"#;
            let head = format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            vec![Step::Write((head + body).into_bytes())]
        } else {
            json_reply(ANSWER)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // Only errors are kept, 16 bytes of each body; clients from 10.0.0.0/8 are refused.
    let proxy = start(
        travel,
        &upstream,
        dir.path(),
        "filter = \"~c 4.. | ~c 5..\", max_body = 16",
        "deny = [\"127.0.0.2/32\"]\nrequire_headers = [\"x-team\"]",
    )
    .await;
    let mut client = RawClient::connect(&proxy).await;
    // Kept: the endpoint's 503.
    let fail = "POST /fail HTTP/1.1\r\nHost: h\r\nX-Team: a\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"model\":\"m\",\"messages\":[],\"pad\":\"xxxx\"}";
    let response = client.request("POST", fail).await;
    assert_eq!(response.status, 503, "{travel:?}");
    // Left out by the filter: a 200.
    let ok = client.get("/ok").await;
    assert_eq!(ok.status, 400, "{travel:?}: no x-team header is refused");
    let flows = flows(dir.path(), 2).await;
    let statuses: Vec<u16> = flows
        .iter()
        .map(|f| f.response.as_ref().unwrap().status)
        .collect();
    assert_eq!(statuses, [400, 503], "{travel:?}: newest first");
    let refused = &flows[0];
    let error_body = &refused.response.as_ref().unwrap().body;
    assert_eq!(error_body.data, br#"{"error":{"messa"#, "{travel:?}");
    assert!(error_body.truncated && error_body.size > 16);
    let failed = &flows[1];
    assert_eq!(
        failed.request.body.data,
        &fail.as_bytes()[fail.len() - 40..][..16]
    );
    assert!(failed.request.body.truncated);
    assert_eq!(failed.request.body.size, 40);
    // A 200 is never written, whatever else comes.
    let mut client = RawClient::connect(&proxy).await;
    let ok = client
        .request("GET", "GET /ok HTTP/1.1\r\nHost: h\r\nX-Team: a\r\n\r\n")
        .await;
    assert_eq!(ok.status, 200);
    let again = client.get("/third").await;
    assert_eq!(again.status, 400);
    let flows = self::flows(dir.path(), 3).await;
    assert!(
        flows
            .iter()
            .all(|f| f.response.as_ref().unwrap().status >= 400),
        "{travel:?}"
    );
}

#[tokio::test]
async fn refusals_the_filter_and_the_body_budget_on_every_engine() {
    for travel in Travel::ALL {
        refusals_the_filter_and_the_body_budget(travel).await;
    }
}

#[tokio::test]
async fn a_sample_of_zero_records_nothing_and_a_listener_capture_covers_its_routes() {
    let upstream = Upstream::start(|_| json_reply(ANSWER)).await;
    let dir = tempfile::tempdir().unwrap();
    let flows_dir = dir.path().join("flows");
    let listener_dir = dir.path().join("listener-flows");
    let config = travel::config(
        Travel::Fast,
        &[upstream.url()],
        &Extra {
            listener: &format!("capture = {{ dir = \"{}\" }}", listener_dir.display()),
            before: &format!(
                "[[routes]]\nname = \"never\"\nmatch = {{ path_prefix = \"/never\" }}\npool = \"p\"\ncapture = {{ dir = \"{}\", sample = 0.0 }}\n",
                flows_dir.display()
            ),
            ..Extra::default()
        },
    );
    let proxy = support::TestProxy::from_toml(&config).start().await;
    let mut client = RawClient::connect(&proxy).await;
    for _ in 0..50 {
        assert_eq!(client.get("/never").await.status, 200);
    }
    assert_eq!(client.get("/listener").await.status, 200);
    // The listener's flow is written after every /never request was answered: had any
    // of them been recorded, it would be there by now (one writer per directory, but
    // the check below reads both).
    let listener_flows = within("the listener's flow", async {
        loop {
            let flows = read_newest(&listener_dir, None, 10).unwrap();
            if !flows.is_empty() {
                return flows;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(listener_flows.len(), 1);
    assert_eq!(listener_flows[0].request.url, "/listener");
    assert!(read_newest(&flows_dir, None, 10).unwrap().is_empty());
}

#[tokio::test]
async fn the_admin_api_lists_finds_and_tails_flows() {
    let upstream = Upstream::start(|seen| {
        if seen.path.starts_with("/missing") {
            let head = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
            vec![Step::Write(head.as_bytes().to_vec())]
        } else {
            json_reply(ANSWER)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(Travel::Fast, &upstream, dir.path(), "sample = 1.0", "").await;
    let http = support::client();

    // A live tail, opened before the traffic.
    let mut tail = http
        .get(proxy.admin_url("/api/flows/tail?filter=~c%20404"))
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 200);
    assert_eq!(
        tail.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let opened = within("the tail to open", tail.chunk())
        .await
        .unwrap()
        .unwrap();
    assert!(opened.starts_with(b": tail open"), "{opened:?}");

    let mut client = RawClient::connect(&proxy).await;
    let body = chat("first", false);
    assert_eq!(client.request("POST", &post(&body, "")).await.status, 200);
    assert_eq!(client.get("/missing").await.status, 404);
    flows(dir.path(), 2).await;

    // The tail sent the 404 only.
    let event = within("the tail's event", tail.chunk())
        .await
        .unwrap()
        .unwrap();
    let event = String::from_utf8_lossy(&event).into_owned();
    assert!(event.starts_with("event: flow\nid: "), "{event}");
    assert!(event.contains(r#""url":"/missing""#), "{event}");

    let list = proxy.admin_json("/api/flows").await;
    let listed = list["flows"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{list}");
    assert_eq!(listed[0]["request"]["url"], "/missing", "newest first");
    assert!(
        listed[1]["request"]["body"].get("text").is_none(),
        "no bodies in lists: {list}"
    );
    assert_eq!(listed[1]["request"]["body"]["size"], body.len());

    let filtered = proxy
        .admin_json("/api/flows?filter=~m%20POST&limit=5")
        .await;
    let filtered = filtered["flows"].as_array().unwrap();
    assert_eq!(filtered.len(), 1);
    let id = filtered[0]["id"].as_str().unwrap().to_owned();

    // One flow whole needs the token: it holds the bodies.
    let url = proxy.admin_url(&format!("/api/flows/{id}"));
    let refused = http.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let whole: serde_json::Value = http
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(whole["request"]["body"]["text"], body, "{whole}");
    assert_eq!(whole["response"]["body"]["text"], ANSWER);

    // A listing filtered on bodies tells what they hold, a guess at a time: it needs
    // the token too, in the list and in the tail, wherever `~b` stands.
    for path in [
        "/api/flows?filter=~b%20Hello",
        "/api/flows?filter=~m%20POST%20%26%20!~b%20x",
        "/api/flows/tail?filter=~c%20200%20|%20~b%20Hello",
    ] {
        let url = proxy.admin_url(path);
        let refused = http.get(&url).send().await.unwrap();
        assert_eq!(refused.status(), 401, "{path}");
    }
    let found: serde_json::Value = http
        .get(proxy.admin_url("/api/flows?filter=~b%20Hello"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["flows"].as_array().unwrap().len(), 1, "{found}");

    // Clear errors.
    let bad = http
        .get(proxy.admin_url("/api/flows?filter=~x%201"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let error: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_filter");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at byte 0"),
        "{error}"
    );
    let bad_limit = http
        .get(proxy.admin_url("/api/flows?limit=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_limit.status(), 400);
    let missing = http
        .get(proxy.admin_url("/api/flows/00ff"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // The capture's own metrics.
    let metrics = support::parse_metrics(&proxy.metrics_text().await);
    let written = metrics
        .iter()
        .find(|(k, _)| {
            k.starts_with("junction_capture_flows_total{") && k.contains("outcome=\"written\"")
        })
        .map(|(_, v)| *v);
    assert_eq!(written, Some(2.0), "{metrics:?}");
    support::promtool_check(&proxy.metrics_text().await).await;
}

async fn a_body_masking_passed_unmasked_is_not_stored(travel: Travel) {
    let upstream = Upstream::start(|_| json_reply(ANSWER)).await;
    // Not JSON: masking cannot read it and, with `pass`, sends it on as it is.
    let body = format!("{{\"broken\": \"{EMAIL}\"");
    let mask = "mask = { directions = \"request\", on_error = \"pass\" }";
    let (response, flow, _) =
        through_a_masking_route(travel, &upstream, mask, &post(&body, "")).await;
    assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    assert_eq!(
        upstream.only_request().body,
        body.as_bytes(),
        "passed on unmasked"
    );
    assert!(
        flow.request.body.data.is_empty(),
        "{travel:?}: {:?}",
        flow.request.body
    );
    assert!(flow.request.body.truncated);
    assert_eq!(flow.request.body.size, body.len() as u64);
    assert!(
        flow.masked
            .as_deref()
            .unwrap_or("")
            .contains("request:passed_unmasked"),
        "{:?}",
        flow.masked
    );

    // An answer masking cannot read, passed on: the client gets it, the flow keeps its
    // size only.
    let answer = format!("mail {EMAIL}");
    let reply = answer.clone();
    let upstream = Upstream::start(move |_| {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            reply.len()
        );
        vec![Step::Write((head + &reply).into_bytes())]
    })
    .await;
    let mask = "mask = { directions = \"response\", on_error = \"pass\" }";
    let request = post(&chat("hi", false), "");
    let (response, flow, _) = through_a_masking_route(travel, &upstream, mask, &request).await;
    assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    assert_eq!(response.text(), answer, "{travel:?}: passed on");
    let kept = &flow.response.as_ref().unwrap().body;
    assert!(kept.data.is_empty(), "{travel:?}: {kept:?}");
    assert!(kept.truncated);
    assert_eq!(kept.size, answer.len() as u64);
}

/// A value `log` lets through is in the bodies that went on, but no flow stores it:
/// a body that holds one is kept by its size only, both ways.
async fn values_let_through_by_log_are_not_stored(travel: Travel) {
    let answer = format!(
        r#"{{"choices":[{{"index":0,"message":{{"role":"assistant","content":"mail {EMAIL}"}}}}]}}"#
    );
    let reply = answer.clone();
    let upstream = Upstream::start(move |_| json_reply(&reply)).await;
    let body = chat(&format!("Write to {EMAIL} please"), false);
    let mask = "mask = { directions = \"both\", types = { EMAIL_ADDRESS = \"log\" } }";
    let (response, flow, _) =
        through_a_masking_route(travel, &upstream, mask, &post(&body, "")).await;
    assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    assert_eq!(response.text(), answer, "{travel:?}: `log` changes nothing");
    assert_eq!(upstream.only_request().body, body.as_bytes());
    let stored = serde_json::to_string(&flow).unwrap();
    assert!(!stored.contains(EMAIL), "{travel:?}: {stored}");
    assert_eq!(flow.request.body.size, body.len() as u64);
    assert_eq!(
        flow.response.as_ref().unwrap().body.size,
        answer.len() as u64
    );
    assert!(
        flow.masked
            .as_deref()
            .unwrap_or("")
            .contains("EMAIL_ADDRESS:log=1"),
        "{travel:?}: {:?}",
        flow.masked
    );
}

/// A request masking refuses (`block`) is captured with its size, not its body.
async fn a_blocked_body_is_stored_by_its_size_only(travel: Travel) {
    let upstream = Upstream::start(|_| json_reply(ANSWER)).await;
    let body = chat(&format!("Write to {EMAIL} please"), false);
    let mask = "mask = { types = { EMAIL_ADDRESS = \"block\" } }";
    let (response, flow, _) =
        through_a_masking_route(travel, &upstream, mask, &post(&body, "")).await;
    assert_eq!(response.status, 400, "{travel:?}: {}", response.text());
    assert!(flow.request.body.data.is_empty(), "{travel:?}");
    assert_eq!(flow.request.body.size, body.len() as u64, "{travel:?}");
    let stored = serde_json::to_string(&flow).unwrap();
    assert!(!stored.contains(EMAIL), "{travel:?}: {stored}");
}

#[tokio::test]
async fn a_blocked_body_is_stored_by_its_size_only_on_every_engine() {
    for travel in Travel::ALL {
        a_blocked_body_is_stored_by_its_size_only(travel).await;
    }
}

#[tokio::test]
async fn values_let_through_by_log_are_not_stored_on_every_engine() {
    for travel in Travel::ALL {
        values_let_through_by_log_are_not_stored(travel).await;
    }
}

#[tokio::test]
async fn a_body_masking_passed_unmasked_is_not_stored_on_every_engine() {
    for travel in Travel::ALL {
        a_body_masking_passed_unmasked_is_not_stored(travel).await;
    }
}
