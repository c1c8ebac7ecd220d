//! The admin flow API: captured flows listed with a filter expression, one flow whole
//! (bodies included, so it needs the admin token), and a live tail over SSE. Reads the
//! capture directories of the running plan's routes.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use super::json_response;
use crate::config::Plan;
use crate::inspect::capture::{find_flow, read_newest};
use crate::inspect::{Capture, Filter, Flow};
use crate::pipeline::{BoxError, ProxyBody, json_error};

/// Flows a list returns unless `limit` says otherwise, and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;
/// A comment line this often keeps proxies from timing an idle tail out, and finds
/// clients that went away.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// The captures of the running plan (routes, listeners, egress), one per directory.
pub(super) fn captures(plan: &Plan) -> Vec<Arc<Capture>> {
    let mut by_dir = BTreeMap::new();
    let routes = plan.listeners.iter().flat_map(|l| &l.routes.routes);
    let egress = plan
        .listeners
        .iter()
        .filter_map(|l| l.egress.as_ref().and_then(|e| e.capture.as_ref()));
    let all = routes
        .filter_map(|route| route.capture.as_ref())
        .chain(egress);
    for capture in all {
        let dir = capture
            .dir
            .canonicalize()
            .unwrap_or_else(|_| capture.dir.clone());
        by_dir.entry(dir).or_insert_with(|| capture.clone());
    }
    by_dir.into_values().collect()
}

/// The query's parameters, percent-decoded (`+` as a space, as forms send it).
pub(super) fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    let decode = |text: &str| {
        let text = text.replace('+', " ");
        percent_encoding::percent_decode_str(&text)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

pub(super) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The `filter` parameter parsed, or the 400 that names what is wrong with it.
fn filter_of(params: &[(String, String)]) -> Result<Option<Filter>, Box<Response<ProxyBody>>> {
    match param(params, "filter").filter(|f| !f.trim().is_empty()) {
        None => Ok(None),
        Some(text) => Filter::parse(text).map(Some).map_err(|error| {
            Box::new(json_error(
                StatusCode::BAD_REQUEST,
                "invalid_filter",
                &error.to_string(),
            ))
        }),
    }
}

/// `GET /api/flows?filter=...&limit=N`: the newest flows that match, newest first,
/// without their bodies and headers (`GET /api/flows/{id}` has them).
pub fn list(plan: &Plan, query: Option<&str>) -> Response<ProxyBody> {
    let params = query_params(query);
    let filter = match filter_of(&params) {
        Ok(filter) => filter,
        Err(refusal) => return *refusal,
    };
    let limit = match param(&params, "limit").map(str::parse::<usize>) {
        None => DEFAULT_LIMIT,
        Some(Ok(limit)) if (1..=MAX_LIMIT).contains(&limit) => limit,
        Some(_) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_limit",
                &format!("limit is a number of flows from 1 to {MAX_LIMIT}"),
            );
        }
    };
    let captures = captures(plan);
    let mut flows = Vec::new();
    for capture in &captures {
        match read_newest(&capture.dir, filter.as_ref(), limit) {
            Ok(found) => flows.extend(found),
            // Nothing captured there yet.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return unreadable(capture, &error),
        }
    }
    // Ids sort in time order: the newest of every directory, newest first.
    flows.sort_by(|a, b| b.id.cmp(&a.id));
    flows.truncate(limit);
    let summaries: Vec<Flow> = flows.iter().map(Flow::summary).collect();
    let dirs: Vec<String> = captures
        .iter()
        .map(|c| c.dir.display().to_string())
        .collect();
    json_response(StatusCode::OK, &json!({ "flows": summaries, "dirs": dirs }))
}

/// A capture directory that exists but cannot be read.
fn unreadable(capture: &Capture, error: &std::io::Error) -> Response<ProxyBody> {
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "capture_unreadable",
        &format!("{}: {error}", capture.dir.display()),
    )
}

/// `GET /api/flows/{id}`: one flow whole.
pub fn one(plan: &Plan, id: &str) -> Response<ProxyBody> {
    let well_formed = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if well_formed {
        for capture in captures(plan) {
            match find_flow(&capture.dir, id) {
                Ok(Some(flow)) => return json_response(StatusCode::OK, &json!(flow)),
                Ok(None) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return unreadable(&capture, &error),
            }
        }
    }
    json_error(
        StatusCode::NOT_FOUND,
        "flow_not_found",
        &format!("no captured flow has the id {id:?} (it may have been rotated out)"),
    )
}

/// `GET /api/flows/tail?filter=...`: flows as they are captured, as SSE events
/// (`event: flow`, the summary as data); `event: skipped` says how many a slow reader
/// missed.
pub fn tail(plan: &Plan, query: Option<&str>) -> Response<ProxyBody> {
    let params = query_params(query);
    let filter = match filter_of(&params) {
        Ok(filter) => filter,
        Err(refusal) => return *refusal,
    };
    let receivers: Vec<broadcast::Receiver<Arc<Flow>>> = captures(plan)
        .iter()
        .filter_map(|capture| capture.sink().map(|sink| sink.subscribe()))
        .collect();
    let (sender, events) = mpsc::channel::<Bytes>(16);
    tokio::spawn(forward_tail(receivers, filter, sender));
    let body = BoxBody::new(ChannelBody(events));
    let mut response = Response::new(ProxyBody::Boxed(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    response
}

/// Moves captured flows from the sinks to one client until it goes away.
async fn forward_tail(
    receivers: Vec<broadcast::Receiver<Arc<Flow>>>,
    filter: Option<Filter>,
    sender: mpsc::Sender<Bytes>,
) {
    let (merged, mut flows) = mpsc::channel::<Result<Arc<Flow>, u64>>(64);
    for mut receiver in receivers {
        let merged = merged.clone();
        tokio::spawn(async move {
            loop {
                let item = match receiver.recv().await {
                    Ok(flow) => Ok(flow),
                    Err(broadcast::error::RecvError::Lagged(missed)) => Err(missed),
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if merged.send(item).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(merged);
    // The first bytes tell the client the stream is open.
    if sender
        .send(Bytes::from_static(b": tail open\n\n"))
        .await
        .is_err()
    {
        return;
    }
    loop {
        let event = tokio::select! {
            item = flows.recv() => match item {
                Some(Ok(flow)) if filter.as_ref().is_none_or(|f| f.matches(&*flow)) => {
                    let data = serde_json::to_string(&flow.summary()).unwrap_or_default();
                    format!("event: flow\nid: {}\ndata: {data}\n\n", flow.id)
                }
                Some(Ok(_)) => continue,
                Some(Err(missed)) => format!("event: skipped\ndata: {{\"flows\":{missed}}}\n\n"),
                None => return,
            },
            () = tokio::time::sleep(HEARTBEAT) => ": heartbeat\n\n".to_owned(),
            () = sender.closed() => return,
        };
        if sender.send(Bytes::from(event)).await.is_err() {
            return;
        }
    }
}

/// A response body fed by a channel; ends when the sender goes.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0
            .poll_recv(cx)
            .map(|next| next.map(|b| Ok(Frame::data(b))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        let params = query_params(Some("filter=~c+5..%20%26+~m%20POST&limit=5&x"));
        assert_eq!(param(&params, "filter"), Some("~c 5.. & ~m POST"));
        assert_eq!(param(&params, "limit"), Some("5"));
        assert_eq!(param(&params, "x"), Some(""));
        assert_eq!(param(&params, "y"), None);
    }
}
