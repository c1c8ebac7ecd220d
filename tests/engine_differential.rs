//! The two HTTP/1.1 engines, differentially (issue #12 "Parsers proven"): generated
//! requests go through the hand-written fast path (`fast_path = true`) and through hyper
//! (`fast_path = false`), started from one config, in front of scripted raw upstreams
//! that record what they parse and answer with a generated reply. For every case, what
//! the upstream saw (endpoint, request line, header multiset, body, how many requests:
//! retries) and what the client saw (interim answers, status, header multiset,
//! de-chunked body, trailer fields, whether the connection stayed usable) must be the
//! same on both.
//!
//! The route under test carries the policies both engines must run through the one core:
//! an address allow list, header rules (a `deny` and a `tag` on the user agent),
//! `request_headers` and `response_headers` set/remove, a request rate limit that never
//! trips, `retries` on 503, and a split of two pools, sticky on `x-user`. A fallback
//! chain (a 429, 500 or 503 of its first pool goes on to another) and a plain route,
//! a route whose rate limit trips after 4 requests, a route whose allow list refuses
//! the test's address and a masking route (both directions; the generated bodies carry
//! e-mail addresses, card numbers, keys and addresses) and a route to a pool that speaks
//! Anthropic (`api`: chat completions requests translated, answers translated back) sit
//! beside it. What is generated is in
//! tests/support/differential/cases.rs, what is compared in outcome.rs there.
//!
//! Both engines share the upstreams, so the balancer (a hash over the endpoints'
//! addresses) picks alike. Not compared, each for the reason given where it is taken
//! out: `date`, the order and case of header lines (compared as a sorted multiset of
//! lowercased names), the proxy hop's random `traceparent` span id, the clock's values
//! on the route whose budget trips, and which upstream connection carried a request.
//! Five real differences between the engines were found; one is fixed (its test runs),
//! four are left out of the property by shape and pinned by ignored tests at the end (`-- --ignored` shows them failing); see
//! `without_known_differences` in outcome.rs.
//!
//! Cases: `PROPTEST_CASES` (default 128). `ENGINE_DIFF_ALL=1` reports every differing
//! case instead of shrinking the first one.

use crate::support;

#[path = "support/differential/cases.rs"]
mod cases;
#[path = "support/differential/outcome.rs"]
mod outcome;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cases::*;
use outcome::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use support::proxy::RunningProxy;
use support::raw_http::{Seen, Step, Upstream, find, ok, reply as raw_reply};
use support::travel::{Extra, Travel, start};

/// The generated replies of every case, by case id, for the upstreams of both engines.
type Replies = Arc<Mutex<HashMap<u64, [Reply; 2]>>>;

/// What one engine's upstreams parsed, by case id: the endpoint and the request.
type Log = Arc<Mutex<HashMap<u64, Vec<(String, Seen)>>>>;

/// Pools and how many endpoints each has; "p" is the catch-all route's pool of
/// tests/support/travel.rs, which also answers the connection probes.
const POOLS: &[(&str, usize)] = &[("blue", 2), ("green", 2), ("plain", 2), ("p", 1)];

/// The pools and routes before the catch-all route "all".
fn routes_toml(urls: &BTreeMap<&str, Vec<String>>) -> String {
    let endpoints = |pool: &str| {
        let all: Vec<String> = urls[pool]
            .iter()
            .map(|url| format!("{{ url = \"{url}\" }}"))
            .collect();
        all.join(", ")
    };
    let (blue, green, plain) = (endpoints("blue"), endpoints("green"), endpoints("plain"));
    // Every pool balances by a hash of `x-user`, which every request carries: the
    // endpoint is a function of the request, not of what earlier cases did, so a case
    // that differs cannot make the cases after it differ too. A retry goes to the
    // other endpoint of the pool.
    //
    // The retry budget's floor is raised so that no retry is ever refused for want of
    // budget: the budget counts per second, and how many seconds a run takes differs.
    format!(
        r#"
[[pools]]
name = "blue"
version = "v1"
balance = "hash"
hash_key = "header:x-user"
endpoints = [{blue}]

[[pools]]
name = "green"
version = "v2"
balance = "hash"
hash_key = "header:x-user"
endpoints = [{green}]

[[pools]]
name = "plain"
balance = "hash"
hash_key = "header:x-user"
endpoints = [{plain}]

[[routes]]
name = "api"
match = {{ path_prefix = "/api" }}
split = [{{ pool = "blue", weight = 50 }}, {{ pool = "green", weight = 50 }}]
sticky = "header:x-user"
allow = ["127.0.0.0/8", "10.0.0.0/8"]
rules = [
    {{ name = "scanner", header = "user-agent", matches = "(?i)sqlmap|nikto", action = "deny" }},
    {{ name = "curl", header = "user-agent", matches = "^curl/", action = "tag" }},
]
request_headers = {{ set = {{ "x-gateway" = "junction" }}, remove = ["x-secret"] }}
response_headers = {{ set = {{ "x-gateway" = "junction" }}, remove = ["x-secret", "server"] }}
rate_limit = {{ requests = 1000000, per = "1s" }}
retries = {{ attempts = 1, on = [503], budget_min_per_second = 1000 }}

[[routes]]
name = "plain"
match = {{ path_prefix = "/plain" }}
pool = "plain"

[[routes]]
name = "limited"
match = {{ path_prefix = "/limited" }}
pool = "plain"
rate_limit = {{ requests = 4, per = "1h", key = "route" }}

[[routes]]
name = "masked"
match = {{ path_prefix = "/masked" }}
pool = "plain"
mask = {{ directions = "both" }}

[[routes]]
name = "chain"
match = {{ path_prefix = "/chain" }}
targets = [{{ pool = "plain" }}, {{ pool = "green", on = [429, 500, 503] }}]
retries = {{ attempts = 0, budget_min_per_second = 1000 }}

[[pools]]
name = "claude"
balance = "hash"
hash_key = "header:x-user"
endpoints = [{plain}]
api = "anthropic"

[[routes]]
name = "translated"
match = {{ path_prefix = "/translated" }}
pool = "claude"

[[routes]]
name = "private"
match = {{ path_prefix = "/private" }}
pool = "plain"
allow = ["10.0.0.0/8"]
"#
    )
}

/// An upstream's script: the case's first reply to the first request of a case, its
/// second to a retry; a fixed 200 to the connection probe.
fn script(endpoint: String, replies: Replies, log: Log) -> impl Fn(&Seen) -> Vec<Step> {
    move |seen: &Seen| {
        let Some(id) = seen.head.get("x-case").and_then(|v| v.parse::<u64>().ok()) else {
            return vec![Step::Write(ok("probe"))];
        };
        let attempt = {
            let mut log = log.lock().unwrap();
            let requests = log.entry(id).or_default();
            requests.push((endpoint.clone(), seen.clone()));
            requests.len() - 1
        };
        let reply = replies.lock().unwrap().get(&id).cloned();
        match reply {
            Some(replies) => replies[attempt.min(1)].steps(&seen.method),
            None => vec![Step::Write(raw_reply(
                "500 Internal Server Error",
                "text/plain",
                "no such case",
            ))],
        }
    }
}

/// The upstreams both engines forward to (the same endpoints, so the balancer's hash,
/// which is over the endpoint's address, chooses alike), and what they parsed.
struct Upstreams {
    urls: BTreeMap<&'static str, Vec<String>>,
    log: Log,
    _running: Vec<Upstream>,
}

impl Upstreams {
    async fn start(replies: &Replies) -> Upstreams {
        let log = Log::default();
        let mut running = Vec::new();
        let mut urls: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (pool, count) in POOLS {
            for i in 0..*count {
                let endpoint = format!("{pool}-{i}");
                let upstream =
                    Upstream::start(script(endpoint, replies.clone(), log.clone())).await;
                urls.entry(pool).or_default().push(upstream.url());
                running.push(upstream);
            }
        }
        Upstreams {
            urls,
            log,
            _running: running,
        }
    }

    /// What the upstreams parsed for case `id` since the last call.
    fn take(&self, id: u64) -> Vec<Forwarded> {
        let requests = self.log.lock().unwrap().remove(&id).unwrap_or_default();
        requests
            .iter()
            .map(|(endpoint, seen)| Forwarded::of(endpoint, seen))
            .collect()
    }
}

/// One engine: a proxy in front of the shared upstreams.
struct Engine {
    name: &'static str,
    proxy: RunningProxy,
}

impl Engine {
    async fn start(travel: Travel, name: &'static str, upstreams: &Upstreams) -> Engine {
        let before = routes_toml(&upstreams.urls);
        let extra = Extra {
            before: &before,
            ..Extra::default()
        };
        let proxy = start(travel, &upstreams.urls["p"], &extra).await;
        Engine { name, proxy }
    }

    /// The client's side of a case, on a connection of its own.
    async fn answer(&self, bytes: Vec<u8>, method: &'static str) -> Result<Answer, String> {
        let addr = self.proxy.addr("public");
        // On a task of its own: a strict parse that panics is an outcome to compare.
        match tokio::spawn(exchange(addr, bytes, method)).await {
            Ok(answer) => answer,
            Err(error) => Err(match error.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".into()),
                Err(error) => error.to_string(),
            }),
        }
    }

    /// Case `id` on this engine: the client's side, then what reached the upstreams.
    async fn run(&self, upstreams: &Upstreams, id: u64, case: &Case) -> Outcome {
        let client = self
            .answer(case.request.bytes(id), case.request.method)
            .await;
        let mut outcome = Outcome {
            upstream: upstreams.take(id),
            client,
        };
        without_clock(&case.request, &mut outcome);
        outcome
    }
}

struct Bed {
    replies: Replies,
    upstreams: Upstreams,
    fast: Engine,
    hyper: Engine,
    next_id: AtomicU64,
    /// What the cases came to, for the summary.
    tally: Mutex<BTreeMap<String, u64>>,
}

impl Bed {
    async fn start() -> Bed {
        let replies = Replies::default();
        let upstreams = Upstreams::start(&replies).await;
        let fast = Engine::start(Travel::Fast, "fast path", &upstreams).await;
        let hyper = Engine::start(Travel::Hyper, "hyper", &upstreams).await;
        Bed {
            replies,
            upstreams,
            fast,
            hyper,
            next_id: AtomicU64::new(1),
            tally: Mutex::default(),
        }
    }

    /// Runs `case` on one engine after the other. The upstreams are shared, so a
    /// request an engine sent after its answer would be counted for the other engine,
    /// and differ all the same.
    async fn outcomes(&self, case: &Case) -> (u64, Outcome, Outcome) {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let replies = case.replies.clone();
        self.replies.lock().unwrap().insert(id, replies);
        let fast = self.fast.run(&self.upstreams, id, case).await;
        let hyper = self.hyper.run(&self.upstreams, id, case).await;
        self.replies.lock().unwrap().remove(&id);
        (id, fast, hyper)
    }

    fn count(&self, outcome: &Outcome) {
        let mut facts = vec![match outcome.upstream.len() {
            0 => "answered by the proxy".to_string(),
            1 => "forwarded".to_string(),
            _ => "retried".to_string(),
        }];
        match &outcome.client {
            Ok(answer) => {
                facts.push(format!("status {}", answer.status));
                if answer.after == After::Closed {
                    facts.push("connection closed".into());
                }
                if !answer.interim.is_empty() {
                    facts.push(format!("interim {:?}", answer.interim));
                }
            }
            Err(_) => facts.push("no answer".into()),
        }
        // That the masking route's cases did mask, both ways.
        if on_masked_route(outcome) {
            let masked = |body: &[u8]| find(body, b"[EMAIL_ADDRESS]").is_some();
            if outcome.upstream.iter().any(|f| masked(&f.body)) {
                facts.push("masked upstream".into());
            }
            if outcome.client.as_ref().is_ok_and(|a| masked(&a.body)) {
                facts.push("masked answer".into());
            }
        }
        let mut tally = self.tally.lock().unwrap();
        for fact in facts {
            *tally.entry(fact).or_default() += 1;
        }
    }

    /// Runs `case` on both engines; `Err` says how they differ. With `exact`, the
    /// known differences are compared too.
    async fn compare(&self, case: &Case, exact: bool) -> Result<(), String> {
        let (id, mut fast, mut hyper) = self.outcomes(case).await;
        if !exact {
            without_known_differences(case, &mut fast);
            without_known_differences(case, &mut hyper);
        }
        if fast == hyper {
            self.count(&fast);
            return leaks(&fast);
        }
        let replies: Vec<String> = case.replies.iter().map(|r| format!("    {r:?}")).collect();
        Err(format!(
            "the engines differ on case {id}\nrequest:\n{}\nreplies (first, to a retry):\n{}\n{}",
            shown_request(&case.request.bytes(id)),
            replies.join("\n"),
            side_by_side((self.fast.name, &fast), (self.hyper.name, &hyper)),
        ))
    }
}

/// Whether the request went the masking route's way: its path as forwarded (a target
/// like `/masked/..` is normalised to another route's).
fn on_masked_route(outcome: &Outcome) -> bool {
    outcome.upstream.iter().any(|forwarded| {
        let path = forwarded.request_line.split(' ').nth(1).unwrap_or("");
        path.starts_with("/masked")
    })
}

/// On the masking route, what both engines agree on must also be masked: no e-mail
/// address of the generated bodies whole, in what the upstream got or the client.
fn leaks(outcome: &Outcome) -> Result<(), String> {
    const VALUE: &[u8] = b"jane.doe@example.com";
    if !on_masked_route(outcome) {
        return Ok(());
    }
    let forwarded = outcome
        .upstream
        .iter()
        .any(|f| find(&f.body, VALUE).is_some());
    let answered = outcome
        .client
        .as_ref()
        .is_ok_and(|a| find(&a.body, VALUE).is_some());
    if forwarded || answered {
        return Err(format!(
            "the masking route let an e-mail address through (upstream {forwarded}, client {answered}): {outcome:#?}"
        ));
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(128)
}

#[test]
fn both_engines_forward_and_answer_alike() {
    let began = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bed = runtime.block_on(Bed::start());
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        max_shrink_iters: 48,
        failure_persistence: None,
        ..Config::default()
    });
    // ENGINE_DIFF_ALL=1: report every differing case and go on, instead of shrinking
    // the first one.
    let report_all = std::env::var_os("ENGINE_DIFF_ALL").is_some();
    let differing = AtomicU64::new(0);
    let outcome = runner.run(&case(), |case| {
        let compared = runtime.block_on(bed.compare(&case, false));
        match compared {
            Err(report) if report_all => {
                differing.fetch_add(1, Ordering::SeqCst);
                eprintln!("{report}");
                Ok(())
            }
            compared => compared.map_err(TestCaseError::fail),
        }
    });

    // The fast path must have served the policy routes itself, not handed them to hyper.
    let metrics = runtime.block_on(bed.fast.proxy.metrics_text());
    let handoffs = series_with(&metrics, "junction_fast_path_handoffs_total");
    let run = bed.next_id.load(Ordering::SeqCst) - 1;
    eprintln!(
        "{run} cases in {:.1?}: {:?}\nfast path connections handed to hyper: {handoffs:?}",
        began.elapsed(),
        bed.tally.lock().unwrap(),
    );
    let differing = differing.into_inner();
    assert_eq!(differing, 0, "{differing} cases differ (reported above)");
    match outcome {
        Ok(()) => {}
        Err(TestError::Fail(reason, case)) => {
            panic!("{reason}\nminimal case: {case:#?}")
        }
        Err(error) => panic!("{error}"),
    }
    let by_route: Vec<_> = handoffs
        .keys()
        .filter(|series| series.contains("reason=\"route\""))
        .collect();
    assert!(by_route.is_empty(), "routes handed to hyper: {by_route:?}");
}

// === The known differences, one case each ===

fn reply(status: (u16, &'static str), framing: Framing, body_len: usize) -> Reply {
    Reply {
        status,
        content_type: None,
        headers: Vec::new(),
        framing,
        body_len,
        retry_after: false,
        trailer: false,
        early_hints: false,
        name_case: 0,
    }
}

fn get(target: &str) -> Request {
    Request {
        method: "GET",
        target: target.into(),
        user: "alice",
        headers: Vec::new(),
        body: None,
        chunked: None,
        name_case: 0,
    }
}

/// Runs each case on both engines and fails with every difference, exactly.
fn engines_agree_on(cases: &[Case]) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let bed = Bed::start().await;
        let mut differences = Vec::new();
        for case in cases {
            if let Err(report) = bed.compare(case, true).await {
                differences.push(report);
            }
        }
        assert!(differences.is_empty(), "{}", differences.join("\n"));
    })
}

/// `GET /api`, answered 503 and retried: the retry's head is the first try's.
///
/// Until c088af7 (difference 1), through hyper the retry had a line the request never had:
///
/// ```text
/// client:     GET /api HTTP/1.1 (no body, no Content-Length)
/// upstream #1 (both):      GET /api HTTP/1.1 ... no content-length   -> 503
/// upstream #2 fast path:   GET /api HTTP/1.1 ... no content-length   -> 200
/// upstream #2 hyper:       GET /api HTTP/1.1 ... content-length: 0   -> 200
/// ```
#[test]
fn a_retry_of_a_bodiless_request_has_no_content_length() {
    let retried = |method| Case {
        request: Request {
            method,
            ..get("/api")
        },
        replies: [
            reply(STATUSES[7], Framing::Length, 3),
            reply(STATUSES[0], Framing::Length, 5),
        ],
    };
    engines_agree_on(&["GET", "HEAD", "PUT", "DELETE", "OPTIONS"].map(retried));
}

/// `TE` lines: a client's `TE: trailers` beside `TE: gzip`, and an endpoint's
/// `TE: trailers` that its `Connection` names. Both engines keep only the `trailers`
/// line of the request and drop the named one of the answer.
///
/// Until the fix (found by the response head fuzzer), the fast path relayed the named
/// `TE: trailers` of an answer, and hyper forwarded `TE: gzip` when a `TE: trailers`
/// line came first.
#[test]
fn te_lines_are_kept_alike() {
    let case = |named: bool| Case {
        request: Request {
            headers: vec!["TE: trailers", "TE: gzip"],
            ..get("/plain")
        },
        replies: [0, 1].map(|_| Reply {
            headers: if named {
                vec!["Connection: x-a, te", "TE: trailers", "X-A: 1"]
            } else {
                vec!["TE: trailers", "TE: gzip"]
            },
            ..reply(STATUSES[0], Framing::Length, 5)
        }),
    };
    engines_agree_on(&[case(true), case(false)]);
}

/// `GET /plain`, answered 200 with an empty chunked body, or an empty body delimited
/// by the close: the client gets the same framing from both engines.
///
/// Today (difference 2):
///
/// ```text
/// upstream answer:  HTTP/1.1 200 OK / Transfer-Encoding: chunked / 0 CRLF CRLF
///                   (or no length and an immediate close)
/// fast path client: 200, transfer-encoding: chunked, body "0\r\n\r\n" (empty)
/// hyper client:     200, content-length: 0 (empty)
/// ```
///
/// The same with `Content-Type: application/json`; with `text/event-stream` both
/// engines answer chunked.
#[test]
#[ignore = "engine difference 2: an empty chunked or close-delimited answer is content-length: 0 through hyper"]
fn an_empty_chunked_or_close_delimited_answer_keeps_its_framing() {
    let answered = |framing| Case {
        request: get("/plain"),
        replies: [
            reply(STATUSES[0], framing, 0),
            reply(STATUSES[0], framing, 0),
        ],
    };
    engines_agree_on(&[Framing::Chunked(16), Framing::Close].map(answered));
}

/// `GET /plain` with `TE: trailers`, answered with a chunked body and a trailer field:
/// the client gets the same trailer section from both engines (with or without the
/// client's `TE: trailers`).
///
/// Today (difference 3):
///
/// ```text
/// upstream answer:  HTTP/1.1 200 OK / Transfer-Encoding: chunked
///                   5 CRLF ov29G CRLF 0 CRLF X-Checksum: abc CRLF CRLF
/// fast path client: body "ov29G", trailer section "X-Checksum: abc"
/// hyper client:     body "ov29G", no trailer section
/// ```
#[test]
#[ignore = "engine difference 3: trailer fields of a chunked answer pass the fast path and are dropped by hyper"]
fn trailer_fields_of_a_chunked_answer_reach_the_client_alike() {
    let with_trailer = Reply {
        trailer: true,
        ..reply(STATUSES[0], Framing::Chunked(16), 5)
    };
    let asked = |headers| Case {
        request: Request {
            headers,
            ..get("/plain")
        },
        replies: [with_trailer.clone(), with_trailer.clone()],
    };
    engines_agree_on(&[vec!["TE: trailers"], vec![]].map(asked));
}

/// `GET /plain`, answered `304 Not Modified` with `Content-Length: 5` and no body: the
/// client gets the same head from both engines.
///
/// Today (difference 4):
///
/// ```text
/// upstream answer:  HTTP/1.1 304 Not Modified / Content-Length: 5 / (no body)
/// fast path client: 304, content-length: 5
/// hyper client:     304, no content-length
/// ```
#[test]
#[ignore = "engine difference 4: a 304's content-length passes the fast path and is dropped by hyper"]
fn a_304_keeps_the_content_length_it_was_sent_with() {
    let not_modified = reply(STATUSES[3], Framing::Length, 5);
    engines_agree_on(&[Case {
        request: get("/plain"),
        replies: [not_modified.clone(), not_modified],
    }]);
}

/// A chunked upload refused by a policy (the scanner rule on the user agent) before
/// any endpoint is asked.
///
/// Today (difference 5):
///
/// ```text
/// client:           GET /api, User-Agent: ... Nikto ..., Transfer-Encoding: chunked,
///                   649 bytes in 1-byte chunks
/// fast path client: 403, connection open (the body was read whole before the rules ran)
/// hyper client:     403, connection closed (answered unread, not drained)
/// ```
#[test]
#[ignore = "engine difference 5: a refused chunked upload keeps the connection on the fast path, hyper closes it"]
fn a_refused_chunked_upload_leaves_the_connection_alike() {
    engines_agree_on(&[Case {
        request: Request {
            headers: vec!["User-Agent: Mozilla/5.0 (compatible; Nikto/2.5)"],
            body: Some(649),
            chunked: Some(Chunking {
                size: 1,
                extension: false,
                trailer: false,
            }),
            ..get("/api")
        },
        replies: [0, 1].map(|_| reply(STATUSES[0], Framing::Length, 5)),
    }]);
}

/// A request copied to a mirror pool: what the mirror endpoint parses is the same
/// whichever engine served the request (the core's `send_shadow` sends both; the fast
/// engine hands it its head through `RequestHead::shadow_parts`), and it is what the
/// primary endpoint got: hop-by-hop lines and Junction's control headers gone, the
/// forwarding headers added, the body whole.
#[test]
fn mirrored_copies_are_alike() {
    const REQUEST: &str = "POST /v1/chat?x=1 HTTP/1.1\r\nHost: api.test\r\n\
        Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\nTE: trailers\r\n\
        X-Junction-Version: v9\r\nX-Forwarded-For: 10.0.0.1\r\nX-Request-Id: fixed-id\r\n\
        traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\
        Via: 1.0 edge\r\nUser-Agent: t/1\r\nX-Two: a\r\nX-Two: b\r\nContent-Type: application/json\r\n\
        Content-Length: 7\r\n\r\n{\"a\":1}";
    // The proxy hop's span id is random: only the trace id part is compared.
    let comparable = |seen: &Seen| {
        let mut headers: Vec<(String, String)> = seen
            .head
            .headers
            .iter()
            .map(|(name, value)| match name.as_str() {
                "traceparent" => (name.clone(), value[..35].to_string()),
                _ => (name.clone(), value.clone()),
            })
            .collect();
        headers.sort();
        (seen.head.start_line.clone(), headers, seen.body.clone())
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let copies = runtime.block_on(async {
        let mut copies = Vec::new();
        for travel in [Travel::Fast, Travel::Hyper] {
            let (copied, mut copies_seen) = tokio::sync::mpsc::unbounded_channel();
            let shadow = Upstream::start(move |seen| {
                let _ = copied.send(seen.clone());
                vec![Step::Write(ok("shadow"))]
            })
            .await;
            let primary = Upstream::start(|_| vec![Step::Write(ok("primary"))]).await;
            let pools = format!(
                "[[pools]]\nname = \"shadow\"\nendpoints = [{{ url = \"{}\" }}]\n",
                shadow.url()
            );
            let extra = Extra {
                before: &pools,
                route: "mirror = { pool = \"shadow\", percent = 100 }",
                ..Extra::default()
            };
            let proxy = start(travel, &[primary.url()], &extra).await;
            let mut client = support::raw_http::RawClient::connect(&proxy).await;
            let answer = client.request("POST", REQUEST).await;
            assert_eq!((answer.status, answer.text()), (200, "primary".into()));
            let copy = support::raw_http::within("the mirror's copy", copies_seen.recv())
                .await
                .expect("the mirror endpoint is running");
            let (copy, original) = (comparable(&copy), comparable(&primary.only_request()));
            assert_eq!(copy, original, "{travel:?}: the copy is the request sent");
            let handed_off = proxy
                .metrics_text()
                .await
                .contains("junction_fast_path_handoffs_total{");
            assert!(!handed_off, "{travel:?}: served by the engine under test");
            copies.push(copy);
        }
        copies
    });
    assert_eq!(copies[0], copies[1], "fast engine, then hyper");
    let (_, headers, body) = &copies[0];
    assert_eq!(body, b"{\"a\":1}");
    for gone in [
        "keep-alive",
        "proxy-connection",
        "connection",
        "x-junction-version",
    ] {
        assert!(headers.iter().all(|(name, _)| name != gone), "{headers:?}");
    }
}
