//! Usage that is never lost (#15 part 5), on every way a request travels: a route's
//! `include_usage` adds `stream_options.include_usage` to streamed requests that lack
//! it and drops the usage chunk from what the client gets, usage is read from gzip, br
//! and zstd answers the client gets unchanged, and an estimate is labelled as one.

use crate::support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use support::sse::{ChannelBody, event_stream};
use support::travel::{Extra, Travel, start};
use support::upstream::{RunningUpstream, UpstreamReply, reply};
use support::{TestUpstream, client, parse_metrics};

/// What an endpoint received: its body and headers.
#[derive(Clone, Debug)]
struct Received {
    body: Vec<u8>,
    headers: http::HeaderMap,
}

type Seen = Arc<Mutex<Vec<Received>>>;

/// The events of an OpenAI stream with usage asked for: two content chunks, the usage
/// chunk (`"choices": []`), `[DONE]`.
const CONTENT_1: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}],\"usage\":null}\n\n";
const CONTENT_2: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";
const USAGE: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7,\"total_tokens\":18}}\n\n";
const DONE: &str = "data: [DONE]\n\n";

/// An endpoint that records each request and answers with `answer(received)`.
async fn endpoint(
    name: &str,
    answer: impl Fn(&Received) -> UpstreamReply + Send + Sync + 'static,
) -> (RunningUpstream, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let answer = Arc::new(answer);
    let upstream = TestUpstream::named(name)
        .handler(move |request: http::Request<hyper::body::Incoming>| {
            let record = record.clone();
            let answer = answer.clone();
            async move {
                let (head, body) = request.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let received = Received {
                    body: body.to_vec(),
                    headers: head.headers,
                };
                let reply = answer(&received);
                record.lock().unwrap().push(received);
                reply
            }
        })
        .start()
        .await;
    (upstream, seen)
}

/// An event stream sent in awkward pieces, a few milliseconds apart: the usage chunk
/// is cut inside its JSON and between the two line ends of its blank line.
fn split_stream(with_usage: bool) -> UpstreamReply {
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    let mut stream = format!("{CONTENT_1}{CONTENT_2}");
    if with_usage {
        stream.push_str(USAGE);
    }
    stream.push_str(DONE);
    let usage_at = CONTENT_1.len() + CONTENT_2.len();
    let cuts = [
        7,
        CONTENT_1.len() + 3,
        usage_at + 40,
        usage_at + USAGE.len() - 1,
        stream.len(),
    ];
    tokio::spawn(async move {
        let mut from = 0;
        for cut in cuts {
            let cut = cut.min(stream.len());
            if cut <= from {
                continue;
            }
            let piece = Bytes::copy_from_slice(&stream.as_bytes()[from..cut]);
            from = cut;
            if sender.send(piece).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    event_stream(ChannelBody(receiver))
}

/// The sum of the series of `name` whose labels include all of `labels`.
fn metric(metrics: &HashMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .iter()
        .filter(|(series, _)| {
            series.starts_with(&format!("{name}{{"))
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| value)
        .sum()
}

/// Waits until the token counters reach `expected` (they are counted when the exchange
/// ends, just after the client read the last byte).
async fn tokens_reach(
    proxy: &support::proxy::RunningProxy,
    source: &str,
    expected: (f64, f64),
    what: &str,
) -> HashMap<String, f64> {
    let mut last = (0.0, 0.0);
    for _ in 0..100 {
        let metrics = parse_metrics(&proxy.metrics_text().await);
        let tokens = |kind| {
            metric(
                &metrics,
                "junction_llm_tokens_total",
                &[("route", "all"), ("kind", kind), ("source", source)],
            )
        };
        last = (tokens("prompt"), tokens("completion"));
        if last == expected {
            return metrics;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: {source} tokens (prompt, completion) = {last:?}, expected {expected:?}");
}

async fn post(url: &str, body: &str) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let response = client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept-encoding", "gzip, br, zstd")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body").to_vec();
    (headers, body)
}

/// Odd spacing and a `stream_options` in a message: only the field is added, after
/// the last member.
const STREAMED: &str = "{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"user\", \"content\": \"\\\"stream_options\\\": 1\"}],\n \"stream\" : true , \"temperature\":0.50 }";

fn with_field(body: &str) -> String {
    body.replacen(
        "0.50 }",
        "0.50,\"stream_options\":{\"include_usage\":true} }",
        1,
    )
}

#[tokio::test]
async fn include_usage_is_added_and_its_chunk_kept_from_the_client() {
    for travel in Travel::ALL {
        let (upstream, seen) = endpoint("p", |received| {
            let body: serde_json::Value =
                serde_json::from_slice(&received.body).unwrap_or_default();
            let asked = body["stream_options"]["include_usage"] == true;
            split_stream(asked)
        })
        .await;
        let extra = Extra {
            route: "include_usage = true",
            ..Extra::default()
        };
        let proxy = start(travel, &[upstream.url()], &extra).await;
        let url = proxy.url("/v1/chat/completions");

        // The client did not ask: the endpoint gets the original bytes plus the field,
        // the client the stream without the usage chunk.
        let (_, got) = post(&url, STREAMED).await;
        let sent = seen.lock().unwrap()[0].clone();
        let expected = with_field(STREAMED);
        assert_eq!(String::from_utf8_lossy(&sent.body), expected, "{travel:?}");
        assert_eq!(
            sent.headers["content-length"],
            expected.len().to_string().as_str(),
            "{travel:?}"
        );
        assert_eq!(sent.headers["accept-encoding"], "identity", "{travel:?}");
        assert_eq!(
            String::from_utf8_lossy(&got),
            format!("{CONTENT_1}{CONTENT_2}{DONE}"),
            "{travel:?}"
        );
        // Its usage is counted all the same.
        tokens_reach(&proxy, "reported", (11.0, 7.0), &format!("{travel:?}")).await;

        // The client asked: its body goes on unchanged and it gets the chunk.
        let asked = STREAMED.replacen(
            "\"temperature\"",
            "\"stream_options\": {\"include_usage\": true}, \"temperature\"",
            1,
        );
        let (_, got) = post(&url, &asked).await;
        assert_eq!(
            String::from_utf8_lossy(&seen.lock().unwrap()[1].body),
            asked,
            "{travel:?}"
        );
        assert_eq!(
            String::from_utf8_lossy(&got),
            format!("{CONTENT_1}{CONTENT_2}{USAGE}{DONE}"),
            "{travel:?}"
        );
        tokens_reach(&proxy, "reported", (22.0, 14.0), &format!("{travel:?}")).await;

        // `include_usage: false` becomes true, and the chunk is kept from the client.
        let declined = STREAMED.replacen(
            "\"temperature\"",
            "\"stream_options\": {\"include_usage\": false}, \"temperature\"",
            1,
        );
        let (_, got) = post(&url, &declined).await;
        assert_eq!(
            String::from_utf8_lossy(&seen.lock().unwrap()[2].body),
            declined.replacen("false", "true", 1),
            "{travel:?}"
        );
        assert_eq!(
            String::from_utf8_lossy(&got),
            format!("{CONTENT_1}{CONTENT_2}{DONE}"),
            "{travel:?}"
        );

        // A request that does not stream, or another API's path, goes on as it came.
        let plain = STREAMED.replacen("true", "false", 1);
        post(&url, &plain).await;
        post(&proxy.url("/v1/messages"), STREAMED).await;
        let seen = seen.lock().unwrap();
        assert_eq!(String::from_utf8_lossy(&seen[3].body), plain, "{travel:?}");
        assert_eq!(
            String::from_utf8_lossy(&seen[4].body),
            STREAMED,
            "{travel:?}"
        );
    }
}

#[tokio::test]
async fn without_the_option_nothing_changes() {
    for travel in Travel::ALL {
        let (upstream, seen) = endpoint("p", |_| split_stream(false)).await;
        let proxy = start(travel, &[upstream.url()], &Extra::default()).await;
        let (_, got) = post(&proxy.url("/v1/chat/completions"), STREAMED).await;
        assert_eq!(
            String::from_utf8_lossy(&seen.lock().unwrap()[0].body),
            STREAMED
        );
        assert_eq!(
            String::from_utf8_lossy(&got),
            format!("{CONTENT_1}{CONTENT_2}{DONE}")
        );
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A brotli stream, by the reference encoder.
fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        std::io::Write::write_all(&mut writer, bytes).unwrap();
    }
    out
}

fn encoded(coding: &str, bytes: &[u8]) -> Vec<u8> {
    match coding {
        "gzip" => gzip(bytes),
        "br" => brotli(bytes),
        "zstd" => zstd::encode_all(bytes, 3).unwrap(),
        other => panic!("no coding {other}"),
    }
}

fn compressed_reply(
    content_type: &'static str,
    coding: &'static str,
    body: Vec<u8>,
) -> UpstreamReply {
    let mut reply = reply(200, body);
    let headers = reply.headers_mut();
    headers.insert("content-type", http::HeaderValue::from_static(content_type));
    headers.insert("content-encoding", http::HeaderValue::from_static(coding));
    reply
}

const JSON_ANSWER: &str = r#"{"id":"c2","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":13,"completion_tokens":4,"total_tokens":17}}"#;

#[tokio::test]
async fn usage_is_read_from_compressed_answers_the_client_gets_unchanged() {
    for travel in Travel::ALL {
        let sse = encoded(
            "gzip",
            format!("{CONTENT_1}{CONTENT_2}{USAGE}{DONE}").as_bytes(),
        );
        let mut answers = vec![("text/event-stream", "gzip", sse, (11.0, 7.0))];
        for coding in ["gzip", "br", "zstd"] {
            let json = encoded(coding, JSON_ANSWER.as_bytes());
            answers.push(("application/json", coding, json, (13.0, 4.0)));
        }
        for (content_type, coding, body, tokens) in answers {
            let answer = body.clone();
            let (upstream, _) = endpoint("p", move |_| {
                compressed_reply(content_type, coding, answer.clone())
            })
            .await;
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("access.log");
            let top = format!("[access_log]\npath = \"{}\"\n", log.display());
            let extra = Extra {
                top: &top,
                ..Extra::default()
            };
            let proxy = start(travel, &[upstream.url()], &extra).await;
            let (headers, got) = post(&proxy.url("/v1/chat/completions"), STREAMED).await;
            let what = format!("{travel:?} {content_type} {coding}");
            assert_eq!(got, body, "{what}: the client gets the compressed bytes");
            assert_eq!(headers["content-encoding"], coding, "{what}");
            tokens_reach(&proxy, "reported", tokens, &what).await;
            // The access log has the same counts, and the compressed size sent.
            let mut line = String::new();
            for _ in 0..100 {
                line = std::fs::read_to_string(&log).unwrap_or_default();
                if !line.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let entry: serde_json::Value = serde_json::from_str(line.trim()).expect("a log line");
            assert_eq!(entry["prompt_tokens"].as_f64(), Some(tokens.0), "{what}");
            assert_eq!(
                entry["completion_tokens"].as_f64(),
                Some(tokens.1),
                "{what}"
            );
            assert_eq!(
                entry["bytes_out"].as_u64(),
                Some(body.len() as u64),
                "{what}"
            );
        }
    }
}

#[tokio::test]
async fn a_compression_bomb_is_read_only_up_to_the_cap() {
    // 80 MiB of spaces in a JSON answer, about 80 KiB of gzip.
    let mut json = Vec::with_capacity(81 << 20);
    json.extend_from_slice(br#"{"usage":{"prompt_tokens":1},"x":""#);
    json.resize(json.len() + (80 << 20), b' ');
    json.extend_from_slice(b"\"}");
    let bomb = gzip(&json);
    drop(json);
    for travel in Travel::ALL {
        let answer = bomb.clone();
        let (upstream, _) = endpoint("p", move |_| {
            compressed_reply("application/json", "gzip", answer.clone())
        })
        .await;
        let proxy = start(travel, &[upstream.url()], &Extra::default()).await;
        let (_, got) = post(&proxy.url("/v1/chat/completions"), "{}").await;
        assert_eq!(got, bomb, "{travel:?}");
        let mut unread = 0.0;
        for _ in 0..100 {
            let metrics = parse_metrics(&proxy.metrics_text().await);
            unread = metric(
                &metrics,
                "junction_usage_unread_total",
                &[("route", "all"), ("reason", "decoded_limit")],
            );
            if unread > 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(unread, 1.0, "{travel:?}");
        let metrics = parse_metrics(&proxy.metrics_text().await);
        let tokens = metric(&metrics, "junction_llm_tokens_total", &[("route", "all")]);
        assert_eq!(tokens, 0.0, "{travel:?}: neither reported nor estimated");
    }
}

#[tokio::test]
async fn an_answer_without_usage_is_counted_as_an_estimate() {
    for travel in Travel::ALL {
        // 13 bytes of text ("Hello, world!"), no usage: ⌈13 / 4⌉ = 4 completion tokens.
        let answer = r#"{"id":"c3","choices":[{"index":0,"message":{"role":"assistant","content":"Hello, world!"}}]}"#;
        let (upstream, _) = endpoint("p", move |_| {
            let mut reply = reply(200, answer);
            reply.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("application/json"),
            );
            reply
        })
        .await;
        let proxy = start(travel, &[upstream.url()], &Extra::default()).await;
        let request = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        post(&proxy.url("/v1/chat/completions"), request).await;
        let prompt = request.len().div_ceil(4) as f64;
        let what = format!("{travel:?}");
        let metrics = tokens_reach(&proxy, "estimated", (prompt, 4.0), &what).await;
        let reported = metric(
            &metrics,
            "junction_llm_tokens_total",
            &[("route", "all"), ("source", "reported")],
        );
        assert_eq!(reported, 0.0, "{what}");
        // A streamed answer without usage: its text is estimated too (5 bytes: 2).
        let (upstream, _) = endpoint("p", |_| split_stream(false)).await;
        let proxy = start(travel, &[upstream.url()], &Extra::default()).await;
        post(&proxy.url("/v1/chat/completions"), STREAMED).await;
        let prompt = STREAMED.len().div_ceil(4) as f64;
        tokens_reach(&proxy, "estimated", (prompt, 2.0), &what).await;
    }
}
