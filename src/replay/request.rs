//! A captured request made sendable again: its method, target and body as stored, its
//! headers less the hop-by-hop ones, the framing ones (set again for the body sent) and
//! the credentials the capture stored redacted, plus the headers given on the command
//! line. A flow that cannot be sent as it was (a body cut short) says why.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Uri};

use crate::inspect::Flow;
use crate::inspect::flow::REDACTED;

/// A request ready to be addressed to an endpoint.
#[derive(Debug)]
pub struct ReplayRequest {
    pub method: Method,
    /// The path and query the client sent (of an absolute target, its path and query).
    pub path_and_query: PathAndQuery,
    /// The `Host` the client sent, for a pool that passes it on (`rewrite_host = false`).
    pub host: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Names of credential headers that were left out, the capture having stored them
    /// redacted and no `--header` giving them.
    pub credentials_left_out: Vec<String>,
}

/// A header given with `--header 'Name: value'`.
#[derive(Debug, Clone)]
pub struct GivenHeader {
    pub name: HeaderName,
    pub value: HeaderValue,
}

impl GivenHeader {
    pub fn parse(text: &str) -> Result<GivenHeader, String> {
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| format!("--header {text:?}: expected 'Name: value'"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("--header {text:?}: {:?} is not a header name", name.trim()))?;
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            return Err(format!(
                "--header {text:?}: {name} is set from the body sent, not given"
            ));
        }
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("--header {text:?}: the value is not a header value"))?;
        Ok(GivenHeader { name, value })
    }
}

/// Whether a stored header value is a credential the capture did not keep: `[redacted]`,
/// or a scheme then `[redacted]` (`Bearer [redacted]`).
fn is_redacted(value: &str) -> bool {
    value == REDACTED
        || value
            .split_once(' ')
            .is_some_and(|(scheme, rest)| rest == REDACTED && !scheme.is_empty())
}

/// The request of `flow`, or why it is not sent again.
pub fn rebuild(flow: &Flow, given: &[GivenHeader]) -> Result<ReplayRequest, String> {
    let stored = &flow.request;
    if stored.body.truncated {
        return Err("body truncated".into());
    }
    let method = Method::from_bytes(stored.method.as_bytes())
        .map_err(|_| format!("invalid method {:?}", stored.method))?;
    if method == Method::CONNECT {
        return Err("a CONNECT tunnel is not replayed".into());
    }
    let path_and_query = target_path(&stored.url)?;
    let mut headers = HeaderMap::new();
    let mut credentials_left_out = Vec::new();
    for (name, value) in &stored.headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        // Host is the destination's; the framing is the body's as sent now; an encoded
        // reply could not be read for its answer and usage.
        if [
            header::HOST,
            header::CONTENT_LENGTH,
            header::ACCEPT_ENCODING,
        ]
        .contains(&name)
        {
            continue;
        }
        if is_redacted(value) {
            let left_out = name.as_str().to_owned();
            if !given.iter().any(|g| g.name == name) && !credentials_left_out.contains(&left_out) {
                credentials_left_out.push(left_out);
            }
            continue;
        }
        // Stored lossily as text: a value that no longer makes a header stays out.
        if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
            headers.append(name, value);
        }
    }
    crate::pipeline::forwarding::strip_hop_by_hop(&mut headers, false);
    for name in given.iter().map(|g| &g.name) {
        headers.remove(name);
    }
    for GivenHeader { name, value } in given {
        headers.append(name.clone(), value.clone());
    }
    let body = Bytes::from(stored.body.data.clone());
    if !body.is_empty() || [Method::POST, Method::PUT, Method::PATCH].contains(&method) {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    Ok(ReplayRequest {
        method,
        path_and_query,
        host: stored.host.clone(),
        headers,
        body,
        credentials_left_out,
    })
}

/// The path and query of a stored target: as it is, or taken from an absolute URL.
fn target_path(url: &str) -> Result<PathAndQuery, String> {
    let invalid = || format!("invalid target {url:?}");
    if url.contains("://") {
        let uri: Uri = url.parse().map_err(|_| invalid())?;
        return Ok(uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")));
    }
    if !url.starts_with('/') && url != "*" {
        return Err(invalid());
    }
    url.parse().map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::flow::{FlowBody, FlowRequest, stored_header};

    fn flow(url: &str, headers: &[(&str, &str)], body: FlowBody) -> Flow {
        Flow {
            request: FlowRequest {
                method: "POST".into(),
                url: url.into(),
                http_version: "HTTP/1.1".into(),
                host: Some("gateway.example".into()),
                headers: headers
                    .iter()
                    .map(|(n, v)| stored_header(n.as_bytes(), v.as_bytes()))
                    .collect(),
                body,
                ..FlowRequest::default()
            },
            ..Flow::default()
        }
    }

    #[test]
    fn headers_lose_hop_by_hop_framing_and_redacted_credentials() {
        let body = br#"{"model":"m"}"#.to_vec();
        let flow = flow(
            "/v1/chat/completions?x=1",
            &[
                ("Host", "gateway.example"),
                ("Content-Length", "999"),
                ("Connection", "keep-alive, x-hop"),
                ("X-Hop", "1"),
                ("Keep-Alive", "timeout=5"),
                ("Transfer-Encoding", "chunked"),
                ("Accept-Encoding", "gzip"),
                ("Authorization", "Bearer sk-live-secret"),
                ("X-Api-Key", "sk-other"),
                ("Content-Type", "application/json"),
                ("X-Trace", "a"),
                ("X-Trace", "b"),
            ],
            FlowBody::kept(body.clone(), body.len() as u64),
        );
        let request = rebuild(&flow, &[]).unwrap();
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.path_and_query.as_str(), "/v1/chat/completions?x=1");
        assert_eq!(request.host.as_deref(), Some("gateway.example"));
        let mut names: Vec<&str> = request.headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-length", "content-type", "x-trace"]);
        assert_eq!(request.headers.get_all("x-trace").iter().count(), 2);
        assert_eq!(request.headers[header::CONTENT_LENGTH], "13");
        assert_eq!(request.body, Bytes::from(body));
        assert_eq!(request.credentials_left_out, ["authorization", "x-api-key"]);
    }

    #[test]
    fn given_headers_replace_stored_ones_and_supply_credentials() {
        let flow = flow(
            "/v1/models",
            &[("Authorization", "Bearer sk-1"), ("User-Agent", "old")],
            FlowBody::default(),
        );
        let given = [
            GivenHeader::parse("Authorization: Bearer sk-new").unwrap(),
            GivenHeader::parse("user-agent:replay").unwrap(),
        ];
        let request = rebuild(&flow, &given).unwrap();
        assert_eq!(request.headers[header::AUTHORIZATION], "Bearer sk-new");
        assert_eq!(request.headers[header::USER_AGENT], "replay");
        assert!(request.credentials_left_out.is_empty());
        assert_eq!(
            request.headers[header::CONTENT_LENGTH],
            "0",
            "a POST says 0"
        );
    }

    #[test]
    fn bad_given_headers_are_refused_with_the_reason() {
        for (text, reason) in [
            ("Authorization", "expected 'Name: value'"),
            ("Bad Name: x", "is not a header name"),
            ("Content-Length: 5", "set from the body"),
            ("X-A: line\nbreak", "not a header value"),
        ] {
            let error = GivenHeader::parse(text).unwrap_err();
            assert!(error.contains(reason), "{text:?}: {error}");
        }
    }

    #[test]
    fn flows_that_cannot_be_sent_as_they_were_say_why() {
        let cut = FlowBody {
            data: b"{\"mod".to_vec(),
            size: 5000,
            truncated: true,
        };
        assert_eq!(
            rebuild(&flow("/v1/x", &[], cut), &[]).unwrap_err(),
            "body truncated"
        );
        let mut connect = flow("api.example:443", &[], FlowBody::default());
        connect.request.method = "CONNECT".into();
        assert!(rebuild(&connect, &[]).unwrap_err().contains("CONNECT"));
        assert!(
            rebuild(&flow("no-slash", &[], FlowBody::default()), &[])
                .unwrap_err()
                .contains("invalid target")
        );
        let mut bad_method = flow("/", &[], FlowBody::default());
        bad_method.request.method = "GE T".into();
        assert!(
            rebuild(&bad_method, &[])
                .unwrap_err()
                .contains("invalid method")
        );
    }

    #[test]
    fn an_absolute_target_gives_its_path_and_query() {
        let egress = flow("http://site.example/a/b?q=1", &[], FlowBody::default());
        let request = rebuild(&egress, &[]).unwrap();
        assert_eq!(request.path_and_query.as_str(), "/a/b?q=1");
        let bare = flow("http://site.example", &[], FlowBody::default());
        assert_eq!(rebuild(&bare, &[]).unwrap().path_and_query.as_str(), "/");
    }
}
