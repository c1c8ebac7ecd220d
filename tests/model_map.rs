//! A pool's `model_map` on every way a request travels: the endpoint gets the body
//! byte for byte except the top-level `model` value, with a matching `Content-Length`,
//! and a retry to another pool gets that pool's name for the model.

use crate::support;

use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use support::travel::{Extra, Travel, start};
use support::upstream::{RunningUpstream, reply};
use support::{TestUpstream, client};

/// The bodies an endpoint received, with their `Content-Length` header.
type Seen = Arc<Mutex<Vec<(Option<String>, Vec<u8>)>>>;

async fn recording(name: &str, status: u16) -> (RunningUpstream, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let upstream = TestUpstream::named(name)
        .handler(move |request: http::Request<hyper::body::Incoming>| {
            let record = record.clone();
            async move {
                let (head, body) = request.into_parts();
                let length = head
                    .headers
                    .get("content-length")
                    .map(|v| v.to_str().unwrap_or("").to_string());
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                record.lock().unwrap().push((length, body.to_vec()));
                reply(status, "{}")
            }
        })
        .start()
        .await;
    (upstream, seen)
}

/// Odd spacing, a `model` key inside a message, and the alias as message text: only the
/// top-level value may change.
const BODY: &str = "{\"messages\": [ {\"role\": \"user\", \"content\": \"gpt-4o\", \"model\": \"gpt-4o\"} ],\n  \"model\" :  \"gpt-4o\" , \"stream\":false,\"temperature\": 0.50}";

fn renamed(to: &str) -> String {
    BODY.replacen(":  \"gpt-4o\"", &format!(":  \"{to}\""), 1)
}

async fn send(url: &str, body: &str) -> u16 {
    client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

fn seen(seen: &Seen) -> Vec<(Option<String>, String)> {
    let seen = seen.lock().unwrap();
    seen.iter()
        .map(|(length, body)| (length.clone(), String::from_utf8_lossy(body).into_owned()))
        .collect()
}

fn expected(body: &str) -> Vec<(Option<String>, String)> {
    vec![(Some(body.len().to_string()), body.to_string())]
}

#[tokio::test]
async fn only_the_model_value_changes() {
    for travel in Travel::ALL {
        let (upstream, received) = recording("p", 200).await;
        let extra = Extra {
            pool: "model_map = { \"gpt-4o\" = \"my-longer-deployment-name\" }",
            ..Extra::default()
        };
        let proxy = start(travel, &[upstream.url()], &extra).await;
        let url = proxy.url("/v1/chat/completions");
        assert_eq!(send(&url, BODY).await, 200, "{travel:?}");
        assert_eq!(
            seen(&received),
            expected(&renamed("my-longer-deployment-name")),
            "{travel:?}"
        );
        // A model the map does not name goes on as it came.
        let other = BODY.replacen(":  \"gpt-4o\"", ":  \"llama\"", 1);
        assert_eq!(send(&url, &other).await, 200, "{travel:?}");
        assert_eq!(seen(&received)[1], expected(&other)[0], "{travel:?}");
    }
}

#[tokio::test]
async fn a_retry_to_another_pool_sends_that_pools_name() {
    for travel in Travel::ALL {
        let (primary, primary_seen) = recording("primary", 503).await;
        let (azure, azure_seen) = recording("azure", 200).await;
        let pool = "model_map = { \"gpt-4o\" = \"gpt-4o-2024-08-06\" }\nfallback = \"azure\"";
        let before = format!(
            "[[pools]]\nname = \"azure\"\nendpoints = [{{ url = \"{}\" }}]\n\
             model_map = {{ \"gpt-4o\" = \"my-azure-deployment\" }}\n",
            azure.url()
        );
        let extra = Extra {
            pool,
            before: &before,
            route: "retries = { attempts = 1, on = [503], retry_non_idempotent = true }",
            ..Extra::default()
        };
        let proxy = start(travel, &[primary.url()], &extra).await;
        assert_eq!(send(&proxy.url("/v1/chat/completions"), BODY).await, 200);
        assert_eq!(
            seen(&primary_seen),
            expected(&renamed("gpt-4o-2024-08-06")),
            "{travel:?}"
        );
        assert_eq!(
            seen(&azure_seen),
            expected(&renamed("my-azure-deployment")),
            "{travel:?}"
        );
    }
}

/// A chunked request body, held whole and sent on with its length, is renamed too.
#[tokio::test]
async fn a_chunked_body_is_renamed_and_sent_with_its_length() {
    use support::raw_http::{RawClient, chunked_json_post};
    for travel in Travel::ALL {
        let (upstream, received) = recording("p", 200).await;
        let extra = Extra {
            pool: "model_map = { \"gpt-4o\" = \"dep\" }",
            ..Extra::default()
        };
        let proxy = start(travel, &[upstream.url()], &extra).await;
        let request = chunked_json_post("/v1/chat/completions", BODY, 40);
        let mut raw = RawClient::connect(&proxy).await;
        raw.send(request.as_bytes()).await;
        assert_eq!(raw.response("POST").await.status, 200, "{travel:?}");
        assert_eq!(seen(&received), expected(&renamed("dep")), "{travel:?}");
    }
}

/// The route's mirror gets the copy renamed (and with the key) of its own pool.
#[tokio::test]
async fn the_mirror_gets_its_own_pools_name_and_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("shadow.key");
    std::fs::write(&key_file, "sk-shadow").unwrap();
    for travel in Travel::ALL {
        let (primary, primary_seen) = recording("p", 200).await;
        // The copy arrives after the client's answer: the test waits for it on a channel.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let shadow = TestUpstream::named("shadow")
            .handler(move |request: http::Request<hyper::body::Incoming>| {
                let tx = tx.clone();
                async move {
                    let (head, body) = request.into_parts();
                    let header = |name: &str| {
                        head.headers
                            .get(name)
                            .map(|v| v.to_str().unwrap_or("").to_string())
                    };
                    let seen = (header("content-length"), header("authorization"));
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let _ = tx.send((seen, String::from_utf8_lossy(&body).into_owned()));
                    reply(200, "{}")
                }
            })
            .start()
            .await;
        let before = format!(
            "[[pools]]\nname = \"shadow\"\nendpoints = [{{ url = \"{}\" }}]\n\
             model_map = {{ \"gpt-4o\" = \"shadow-model\" }}\nauth = {{ value_file = {key_file:?} }}\n",
            shadow.url()
        );
        let extra = Extra {
            pool: "model_map = { \"gpt-4o\" = \"primary-model\" }",
            before: &before,
            route: "mirror = { pool = \"shadow\", percent = 100 }",
            ..Extra::default()
        };
        let proxy = start(travel, &[primary.url()], &extra).await;
        assert_eq!(send(&proxy.url("/v1/chat/completions"), BODY).await, 200);
        assert_eq!(
            seen(&primary_seen),
            expected(&renamed("primary-model")),
            "{travel:?}"
        );
        let copy = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("the mirror's copy within 5 s")
            .expect("a copy");
        let body = renamed("shadow-model");
        let headers = (
            Some(body.len().to_string()),
            Some("Bearer sk-shadow".to_string()),
        );
        assert_eq!(copy, (headers, body), "{travel:?}");
    }
}
