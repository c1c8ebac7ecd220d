//! A property test over the headers a client's `Connection` names, on the HTTP/1.1
//! engines (fast path, hyper, and a hand-off between them): 1 to 3 `Connection` lines
//! of random tokens (random case, whitespace and empty list elements), random
//! end-to-end and proxy-managed headers, and a body with Content-Length. A `Connection`
//! naming a framing or routing header (content-length, transfer-encoding, host) is
//! refused with 400 before anything reaches the upstream; otherwise the upstream gets
//! exactly one request with the client's body, none of the client's headers that
//! `Connection` named, and every header Junction adds.

use crate::support;

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestError, TestRunner};
use support::guarded::*;

/// Tokens a `Connection` line is made of (besides `x-custom-N` and random ones).
const TOKENS: &[&str] = &[
    "keep-alive",
    "close",
    "te",
    "upgrade",
    "content-length",
    "transfer-encoding",
    "host",
    "x-forwarded-for",
    "x-request-id",
    "traceparent",
    "via",
    "x-junction-tag",
    "authorization",
    SET_NAME,
];

/// Names that, named by `Connection`, would change how the request is framed or routed.
const REFUSED: &[&str] = &["content-length", "transfer-encoding", "host"];

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

/// What Junction does with a client header that `Connection` does not name.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    /// Forwarded as sent.
    Passed,
    /// Junction puts its own value instead, or removes it.
    Replaced,
    /// Junction appends its own entry (`Via`).
    Appended,
}

/// Optional client headers: name, line, a piece of the client's value, and its fate.
const OPTIONAL: &[(&str, &str, &str, Fate)] = &[
    ("te", "TE: trailers", "trailers", Fate::Passed),
    (
        "x-forwarded-for",
        "X-Forwarded-For: 9.9.9.9",
        "9.9.9.9",
        Fate::Replaced,
    ),
    (
        "x-request-id",
        "X-Request-Id: client-id-1",
        "client-id-1",
        Fate::Passed,
    ),
    (
        "traceparent",
        "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        TRACE_ID,
        Fate::Passed,
    ),
    ("via", "Via: 1.0 client-via", "client-via", Fate::Appended),
    (
        "x-junction-tag",
        "X-Junction-Tag: forged",
        "forged",
        Fate::Replaced,
    ),
    (
        "authorization",
        "Authorization: Bearer client-key",
        "client-key",
        Fate::Passed,
    ),
    (
        "x-custom-0",
        "X-Custom-0: custom-zero",
        "custom-zero",
        Fate::Passed,
    ),
    (
        "x-custom-1",
        "X-Custom-1: custom-one",
        "custom-one",
        Fate::Passed,
    ),
    (
        "keep-alive",
        "Keep-Alive: timeout=5",
        "timeout=5",
        Fate::Replaced,
    ),
];

#[derive(Debug, Clone)]
struct Element {
    before: &'static str,
    /// Empty: an empty list element.
    token: String,
    after: &'static str,
}

#[derive(Debug, Clone)]
struct Case {
    connection_lines: Vec<Vec<Element>>,
    /// One flag per entry of `OPTIONAL`.
    present: Vec<bool>,
    body_len: usize,
    /// `/tagged` (a tag rule and `request_headers.set`) or the plain public route.
    tagged: bool,
    /// Which letters of the name `Connection` are upper case, per line.
    name_flips: u64,
}

impl Case {
    fn request(&self) -> String {
        let path = if self.tagged {
            "/tagged/p"
        } else {
            "/public/p"
        };
        let mut text = format!("POST {path} HTTP/1.1\r\nHost: {PUBLIC_HOST}\r\n");
        for (index, line) in self.connection_lines.iter().enumerate() {
            let list: Vec<String> = line
                .iter()
                .map(|e| format!("{}{}{}", e.before, e.token, e.after))
                .collect();
            let name = random_case("connection".into(), self.name_flips >> (index * 10));
            text.push_str(&format!("{name}: {}\r\n", list.join(",")));
        }
        for (present, (_, line, _, _)) in self.present.iter().zip(OPTIONAL) {
            if *present {
                text.push_str(line);
                text.push_str("\r\n");
            }
        }
        text.push_str(&format!("Content-Length: {}\r\n\r\n", self.body_len));
        text.push_str(&self.body());
        text
    }

    fn body(&self) -> String {
        (0..self.body_len)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect()
    }

    /// Every token `Connection` names, lowercased.
    fn named(&self) -> BTreeSet<String> {
        self.connection_lines
            .iter()
            .flatten()
            .map(|e| e.token.to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect()
    }
}

fn random_case(token: String, flips: u64) -> String {
    token
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if flips >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

fn token() -> impl Strategy<Value = String> {
    let known = prop_oneof![
        8 => proptest::sample::select(TOKENS).prop_map(str::to_string),
        2 => (0..3u8).prop_map(|n| format!("x-custom-{n}")),
        1 => proptest::collection::vec(0..36u32, 0..6).prop_map(|digits| {
            let tail: String = digits
                .into_iter()
                .map(|d| char::from_digit(d, 36).expect("base 36"))
                .collect();
            format!("r{tail}")
        }),
    ];
    (known, any::<u64>()).prop_map(|(token, flips)| random_case(token, flips))
}

fn element() -> impl Strategy<Value = Element> {
    let space = || proptest::sample::select(&["", "", " ", "  ", "\t", " \t"][..]);
    let token = prop_oneof![1 => Just(String::new()), 6 => token()];
    (space(), token, space()).prop_map(|(before, token, after)| Element {
        before,
        token,
        after,
    })
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(proptest::collection::vec(element(), 1..=4), 1..=3),
        proptest::collection::vec(any::<bool>(), OPTIONAL.len()),
        0..40usize,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(connection_lines, present, body_len, tagged, name_flips)| Case {
                connection_lines,
                present,
                body_len,
                tagged,
                name_flips,
            },
        )
}

async fn check(bed: &Bed, case: &Case) {
    let named = case.named();
    let mut client = bed.client().await;
    client.send(case.request().as_bytes()).await;
    let response = client.try_final_response("POST").await;
    drop(client);
    bed.upstream.settle().await;
    let seen = bed.upstream.take_seen();
    let response = response.expect("the proxy answers");

    if named.iter().any(|t| REFUSED.contains(&t.as_str())) {
        let parsed: Vec<&str> = seen.iter().map(|s| s.head.start_line.as_str()).collect();
        assert!(
            seen.is_empty(),
            "Connection names {named:?}, yet the upstream parsed {parsed:?}"
        );
        assert_eq!(
            (response.status, response.error_type().as_str()),
            (400, "invalid_request"),
            "Connection names {named:?}: {}",
            response.text()
        );
        return;
    }
    assert_eq!(
        response.status,
        200,
        "{}{}",
        response.head.raw,
        response.text()
    );
    assert_eq!(seen.len(), 1, "requests at the upstream: {seen:#?}");
    let head = &seen[0].head;
    let raw = &head.raw;
    assert_eq!(
        String::from_utf8_lossy(&seen[0].body),
        case.body(),
        "body at the upstream:\n{raw}"
    );

    // Junction's own headers, whatever the client named.
    assert_eq!(head.all("x-forwarded-for"), ["127.0.0.1"], "{raw}");
    assert_eq!(head.all("x-forwarded-proto"), ["http"], "{raw}");
    assert_eq!(head.all("x-forwarded-host"), [PUBLIC_HOST], "{raw}");
    assert!(
        head.joined("via")
            .unwrap_or_default()
            .contains("1.1 junction"),
        "via:\n{raw}"
    );
    let ids = head.all("x-request-id");
    assert!(
        ids.len() == 1 && !ids[0].is_empty(),
        "one x-request-id:\n{raw}"
    );
    if case.tagged {
        assert_eq!(head.all("x-junction-tag"), [TAG], "{raw}");
        assert_eq!(head.all(SET_NAME), [SET_VALUE], "{raw}");
    } else {
        assert!(!head.has("x-junction-tag"), "{raw}");
    }
    for token in head.tokens("connection") {
        assert!(
            token == "keep-alive" || token == "close",
            "the client's Connection option {token:?} reached the upstream:\n{raw}"
        );
    }

    // The client's own headers: gone when named, else as Junction treats them.
    for (present, (name, _, value, fate)) in case.present.iter().zip(OPTIONAL) {
        if !present {
            continue;
        }
        let reached = head.all(name).iter().any(|v| v.contains(value));
        let wanted = !named.contains(*name) && matches!(fate, Fate::Passed | Fate::Appended);
        assert_eq!(
            reached,
            wanted,
            "the client's {name} ({value}) {} the upstream (Connection names {named:?}):\n{raw}",
            if reached { "reached" } else { "did not reach" }
        );
    }
}

fn property_holds(travel: Travel) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bed = runtime.block_on(Bed::start(travel));
    let mut runner = TestRunner::new(Config {
        cases: 48,
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&case(), |case| {
        runtime.block_on(async {
            // A failed case may have left requests behind.
            bed.upstream.settle().await;
            bed.upstream.take_seen();
            check(&bed, &case).await
        });
        Ok(())
    });
    match outcome {
        Ok(()) => {}
        Err(TestError::Fail(reason, case)) => panic!(
            "{travel:?}: {reason}\nminimal case:\n{}",
            case.request().escape_debug()
        ),
        Err(error) => panic!("{travel:?}: {error}"),
    }
}

#[test]
fn connection_named_headers_fast_path() {
    property_holds(Travel::Fast)
}

#[test]
fn connection_named_headers_hyper_path() {
    property_holds(Travel::Hyper)
}

#[test]
fn connection_named_headers_hand_off() {
    property_holds(Travel::HandOff)
}
