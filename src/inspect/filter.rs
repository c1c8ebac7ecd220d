//! Filter expressions over flows, in mitmproxy's style: `~m POST & ~c 5..`,
//! `~model gpt-4* & !~route internal`, `(~tokens >1000 | ~ttft >2s) & ~client 10.0.0.0/8`.
//! Parsed once into a tree ([`Filter`]) with errors that say where and what; evaluated
//! against anything that exposes a flow's facts ([`FlowFacts`]). docs/inspection.md
//! has the grammar.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use regex::Regex;

use crate::units::parse_duration;

/// What a filter reads of a flow. Facts a flow lacks (no response yet, no model) make
/// the filters on them false.
pub trait FlowFacts {
    /// The request target as the client sent it (`/v1/chat/completions?x=1`), or the
    /// absolute URL on egress.
    fn url(&self) -> &str;
    fn method(&self) -> &str;
    fn status(&self) -> Option<u16>;
    /// Request and response header lines, name and value.
    fn headers(&self) -> Vec<(&str, &[u8])>;
    /// The request and response bodies as stored (masked first where masking applies).
    fn bodies(&self) -> Vec<&[u8]>;
    fn model(&self) -> Option<&str>;
    /// Prompt and completion tokens together.
    fn tokens(&self) -> Option<u64>;
    fn time_to_first_token(&self) -> Option<Duration>;
    fn route(&self) -> Option<&str>;
    fn version(&self) -> Option<&str>;
    fn client(&self) -> Option<IpAddr>;
}

/// A parsed filter expression.
#[derive(Debug, Clone)]
pub enum Filter {
    Url(Regex),
    Method(String),
    Status(StatusPattern),
    Header { name: Regex, value: Regex },
    Body(regex::bytes::Regex),
    Model(Glob),
    Tokens(Comparison<u64>),
    Ttft(Comparison<Duration>),
    Route(String),
    Version(String),
    Client(IpNet),
    Not(Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
}

/// Why an expression was refused: where (a byte offset into it) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "filter, at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for FilterError {}

/// `~c 404`, `~c 5..` (a digit or `.` per place), `~c 500-503`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusPattern {
    low: u16,
    high: u16,
}

/// `>N`, `>=N`, `<N`, `<=N`, `=N` or `N` (equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comparison<T> {
    op: Op,
    value: T,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Less,
    AtMost,
    Equal,
    AtLeast,
    More,
}

impl<T: PartialOrd> Comparison<T> {
    fn holds(&self, actual: T) -> bool {
        match self.op {
            Op::Less => actual < self.value,
            Op::AtMost => actual <= self.value,
            Op::Equal => actual == self.value,
            Op::AtLeast => actual >= self.value,
            Op::More => actual > self.value,
        }
    }
}

/// A shell-style pattern over a whole name: `*` any run, `?` one character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(Vec<char>);

impl Glob {
    fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let pattern = &self.0;
        // Iterative matching with one backtrack point, linear in practice.
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match pattern.get(p) {
                Some('*') => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(&c) if c == '?' || c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((star_p, star_t)) => {
                        p = star_p + 1;
                        t = star_t + 1;
                        star = Some((star_p, star_t + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].iter().all(|&c| c == '*')
    }
}

/// The longest expression taken, so that a filter in a query string cannot make the
/// parser (or the regexes) do unbounded work.
const MAX_LENGTH: usize = 4096;
/// How deeply parentheses and `!` may nest.
const MAX_DEPTH: usize = 64;
/// Compiled size of each regex.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl Filter {
    /// Whether the filter reads bodies (`~b`): its matches tell what a body holds, a
    /// character at a time if asked so, so it needs what reading a body needs.
    pub fn reads_bodies(&self) -> bool {
        match self {
            Filter::Body(_) => true,
            Filter::Not(inner) => inner.reads_bodies(),
            Filter::And(a, b) | Filter::Or(a, b) => a.reads_bodies() || b.reads_bodies(),
            _ => false,
        }
    }

    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        if text.len() > MAX_LENGTH {
            return Err(FilterError {
                offset: MAX_LENGTH,
                message: format!("longer than {MAX_LENGTH} bytes"),
            });
        }
        let mut parser = Parser { text, at: 0 };
        let filter = parser.or(0)?;
        parser.skip_space();
        if parser.at < text.len() {
            return Err(parser.error(format!(
                "unexpected {:?}: expected `&`, `|` or the end",
                parser.rest_word()
            )));
        }
        Ok(filter)
    }

    pub fn matches(&self, flow: &dyn FlowFacts) -> bool {
        match self {
            Filter::Url(regex) => regex.is_match(flow.url()),
            Filter::Method(method) => flow.method().eq_ignore_ascii_case(method),
            Filter::Status(pattern) => flow
                .status()
                .is_some_and(|code| (pattern.low..=pattern.high).contains(&code)),
            Filter::Header { name, value } => flow
                .headers()
                .iter()
                .any(|(n, v)| name.is_match(n) && value.is_match(&String::from_utf8_lossy(v))),
            Filter::Body(regex) => flow.bodies().iter().any(|body| regex.is_match(body)),
            Filter::Model(glob) => flow.model().is_some_and(|model| glob.matches(model)),
            Filter::Tokens(comparison) => flow.tokens().is_some_and(|t| comparison.holds(t)),
            Filter::Ttft(comparison) => flow
                .time_to_first_token()
                .is_some_and(|t| comparison.holds(t)),
            Filter::Route(name) => flow.route() == Some(name.as_str()),
            Filter::Version(version) => flow.version() == Some(version.as_str()),
            Filter::Client(net) => flow.client().is_some_and(|ip| net.contains(&ip)),
            Filter::Not(inner) => !inner.matches(flow),
            Filter::And(a, b) => a.matches(flow) && b.matches(flow),
            Filter::Or(a, b) => a.matches(flow) || b.matches(flow),
        }
    }
}

impl std::str::FromStr for Filter {
    type Err = FilterError;

    fn from_str(text: &str) -> Result<Filter, FilterError> {
        Filter::parse(text)
    }
}

/// Recursive descent: `or := and ('|' and)*`, `and := not (('&')? not)*` (two filters
/// side by side are both required, as in mitmproxy), `not := '!' not | '(' or ')' |
/// filter`.
struct Parser<'t> {
    text: &'t str,
    at: usize,
}

impl<'t> Parser<'t> {
    fn error(&self, message: String) -> FilterError {
        FilterError {
            offset: self.at,
            message,
        }
    }

    fn skip_space(&mut self) {
        let rest = &self.text[self.at..];
        self.at += rest.len() - rest.trim_start().len();
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_space();
        self.text[self.at..].chars().next()
    }

    fn rest_word(&self) -> &str {
        let rest = &self.text[self.at..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        &rest[..end]
    }

    fn or(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut left = self.and(depth)?;
        while self.peek() == Some('|') {
            self.at += 1;
            let right = self.and(depth)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut left = self.not(depth)?;
        loop {
            match self.peek() {
                Some('&') => self.at += 1,
                Some('~' | '!' | '(') => {}
                _ => return Ok(left),
            }
            let right = self.not(depth)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
    }

    fn not(&mut self, depth: usize) -> Result<Filter, FilterError> {
        if depth >= MAX_DEPTH {
            return Err(self.error(format!("nested more than {MAX_DEPTH} deep")));
        }
        match self.peek() {
            Some('!') => {
                self.at += 1;
                Ok(Filter::Not(Box::new(self.not(depth + 1)?)))
            }
            Some('(') => {
                let open = self.at;
                self.at += 1;
                let inner = self.or(depth + 1)?;
                if self.peek() != Some(')') {
                    return Err(FilterError {
                        offset: open,
                        message: "`(` is never closed".into(),
                    });
                }
                self.at += 1;
                Ok(inner)
            }
            Some('~') => self.filter(),
            Some(other) => Err(self.error(format!(
                "unexpected {other:?}: expected a filter (`~u`, `~m`, ...), `!` or `(`"
            ))),
            None => Err(self.error("the expression ends where a filter was expected".into())),
        }
    }

    fn filter(&mut self) -> Result<Filter, FilterError> {
        let (text, start) = (self.text, self.at);
        let name_end = text[start + 1..]
            .find(|c: char| !c.is_ascii_alphabetic())
            .map_or(text.len(), |end| start + 1 + end);
        let name = &text[start + 1..name_end];
        self.at = name_end;
        let argument = |parser: &mut Self| parser.argument(name);
        let filter = match name {
            "u" => {
                let (text, at) = argument(self)?;
                Filter::Url(regex(&text, at)?)
            }
            "m" => Filter::Method(argument(self)?.0),
            "c" => {
                let (text, at) = argument(self)?;
                Filter::Status(status(&text, at)?)
            }
            "h" => {
                let (text, at) = argument(self)?;
                let Some((name, value)) = text.split_once(':') else {
                    return Err(FilterError {
                        offset: at,
                        message: format!("`~h` takes `name:regex`, not {text:?}"),
                    });
                };
                Filter::Header {
                    name: regex(&format!("(?i)^(?:{name})$"), at)?,
                    value: regex(value.trim_start(), at)?,
                }
            }
            "b" => {
                let (text, at) = argument(self)?;
                let body = regex::bytes::RegexBuilder::new(&text)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| FilterError {
                        offset: at,
                        message: format!("invalid regex: {e}"),
                    })?;
                Filter::Body(body)
            }
            "model" => Filter::Model(Glob(argument(self)?.0.chars().collect())),
            "tokens" => {
                let (text, at) = argument(self)?;
                Filter::Tokens(comparison(&text, at, |number| {
                    number
                        .parse::<u64>()
                        .map_err(|_| "a whole number of tokens")
                })?)
            }
            "ttft" => {
                let (text, at) = argument(self)?;
                Filter::Ttft(comparison(&text, at, |number| {
                    parse_duration(number).map_err(|_| "a duration (`250ms`, `2s`)")
                })?)
            }
            "route" => Filter::Route(argument(self)?.0),
            "version" => Filter::Version(argument(self)?.0),
            "client" => {
                let (text, at) = argument(self)?;
                let net = text
                    .parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| FilterError {
                        offset: at,
                        message: format!("`~client` takes an address or a CIDR, not {text:?}"),
                    })?;
                Filter::Client(net)
            }
            "" => return Err(self.error("`~` without a filter name".into())),
            other => {
                return Err(FilterError {
                    offset: start,
                    message: format!(
                        "unknown filter `~{other}`: one of ~u ~m ~c ~h ~b ~model ~tokens ~ttft ~route ~version ~client"
                    ),
                });
            }
        };
        Ok(filter)
    }

    /// The filter's argument and where it starts: a quoted string (`"..."` or `'...'`,
    /// `\` escaping the next character) or a bare word, which ends at white space or
    /// at a `)` that closes a group.
    fn argument(&mut self, filter: &str) -> Result<(String, usize), FilterError> {
        let before = self.at;
        self.skip_space();
        let at = self.at;
        let rest = &self.text[at..];
        let Some(first) = rest.chars().next() else {
            return Err(FilterError {
                offset: before,
                message: format!("`~{filter}` needs an argument"),
            });
        };
        if at == before {
            return Err(self.error(format!(
                "`~{filter}` and its argument need a space between them"
            )));
        }
        if first == '"' || first == '\'' {
            let mut value = String::new();
            let mut chars = rest.char_indices().skip(1);
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, escaped)) => value.push(escaped),
                        None => break,
                    },
                    c if c == first => {
                        self.at = at + i + 1;
                        return Ok((value, at));
                    }
                    c => value.push(c),
                }
            }
            return Err(FilterError {
                offset: at,
                message: format!("the quoted argument of `~{filter}` is never closed"),
            });
        }
        let mut depth = 0i32;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' if depth == 0 => return true,
                    ')' => depth -= 1,
                    _ => {}
                }
                c.is_whitespace()
            })
            .map_or(rest.len(), |(i, _)| i);
        if end == 0 {
            return Err(self.error(format!("`~{filter}` needs an argument")));
        }
        self.at = at + end;
        Ok((rest[..end].to_string(), at))
    }
}

fn regex(text: &str, at: usize) -> Result<Regex, FilterError> {
    regex::RegexBuilder::new(text)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| FilterError {
            offset: at,
            message: format!("invalid regex: {e}"),
        })
}

fn status(text: &str, at: usize) -> Result<StatusPattern, FilterError> {
    let refuse = || FilterError {
        offset: at,
        message: format!(
            "`~c` takes a status (`404`), a pattern (`5..`) or a range (`500-503`), not {text:?}"
        ),
    };
    let code = |part: &str| -> Result<u16, FilterError> {
        (part.len() == 3 && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
            .filter(|code| (100..=999).contains(code))
            .ok_or_else(refuse)
    };
    if let Some((low, high)) = text.split_once('-') {
        let (low, high) = (code(low)?, code(high)?);
        return if low <= high {
            Ok(StatusPattern { low, high })
        } else {
            Err(refuse())
        };
    }
    // `5..`: the digits given, then any; a wildcard only after the digits.
    let digits = text.trim_end_matches('.');
    if text.len() != 3
        || digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || digits.starts_with('0')
    {
        return Err(refuse());
    }
    let scale = 10u16.pow((3 - digits.len()) as u32);
    let low = digits.parse::<u16>().map_err(|_| refuse())? * scale;
    Ok(StatusPattern {
        low,
        high: low + scale - 1,
    })
}

fn comparison<T>(
    text: &str,
    at: usize,
    value: impl Fn(&str) -> Result<T, &'static str>,
) -> Result<Comparison<T>, FilterError> {
    let (op, number) = [
        (">=", Op::AtLeast),
        ("<=", Op::AtMost),
        (">", Op::More),
        ("<", Op::Less),
        ("=", Op::Equal),
    ]
    .iter()
    .find_map(|(prefix, op)| text.strip_prefix(prefix).map(|rest| (*op, rest)))
    .unwrap_or((Op::Equal, text));
    let value = value(number.trim()).map_err(|expected| FilterError {
        offset: at,
        message: format!("expected {expected} after the comparison, not {number:?}"),
    })?;
    Ok(Comparison { op, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flow as the tests need it.
    #[derive(Default)]
    struct Flow {
        url: &'static str,
        method: &'static str,
        status: Option<u16>,
        headers: Vec<(&'static str, &'static [u8])>,
        bodies: Vec<&'static [u8]>,
        model: Option<&'static str>,
        tokens: Option<u64>,
        ttft: Option<Duration>,
        route: Option<&'static str>,
        version: Option<&'static str>,
        client: Option<IpAddr>,
    }

    impl FlowFacts for Flow {
        fn url(&self) -> &str {
            self.url
        }
        fn method(&self) -> &str {
            self.method
        }
        fn status(&self) -> Option<u16> {
            self.status
        }
        fn headers(&self) -> Vec<(&str, &[u8])> {
            self.headers.clone()
        }
        fn bodies(&self) -> Vec<&[u8]> {
            self.bodies.clone()
        }
        fn model(&self) -> Option<&str> {
            self.model
        }
        fn tokens(&self) -> Option<u64> {
            self.tokens
        }
        fn time_to_first_token(&self) -> Option<Duration> {
            self.ttft
        }
        fn route(&self) -> Option<&str> {
            self.route
        }
        fn version(&self) -> Option<&str> {
            self.version
        }
        fn client(&self) -> Option<IpAddr> {
            self.client
        }
    }

    fn chat() -> Flow {
        Flow {
            url: "/v1/chat/completions?stream=true",
            method: "POST",
            status: Some(503),
            headers: vec![
                ("Content-Type", b"application/json"),
                ("x-junction-version", b"v2"),
            ],
            bodies: vec![br#"{"model":"gpt-4o-mini","messages":[]}"#, b"overloaded"],
            model: Some("gpt-4o-mini"),
            tokens: Some(1500),
            ttft: Some(Duration::from_millis(2500)),
            route: Some("chat"),
            version: Some("v2"),
            client: Some("10.1.2.3".parse().unwrap()),
        }
    }

    fn matches(expression: &str, flow: &Flow) -> bool {
        Filter::parse(expression)
            .unwrap_or_else(|e| panic!("{expression}: {e}"))
            .matches(flow)
    }

    #[test]
    fn each_filter_matches_and_misses() {
        let flow = chat();
        for (yes, no) in [
            ("~u chat/completions", "~u ^/v1/embeddings"),
            ("~m post", "~m GET"),
            ("~c 503", "~c 504"),
            ("~c 5..", "~c 4.."),
            ("~c 50.", "~c 51."),
            ("~c 500-599", "~c 400-499"),
            ("~h content-type:json", "~h content-type:xml"),
            ("~h x-junction-.*:^v2$", "~h accept:.*"),
            ("~b overloaded", "~b rate.limited"),
            ("~model gpt-4*", "~model claude-*"),
            ("~model gpt-4?-mini", "~model gpt-4"),
            ("~tokens >1000", "~tokens <1000"),
            ("~tokens >=1500", "~tokens >1500"),
            ("~tokens 1500", "~tokens =1499"),
            ("~ttft >2s", "~ttft <=2s"),
            ("~ttft <2600ms", "~ttft >3s"),
            ("~route chat", "~route internal"),
            ("~version v2", "~version v1"),
            ("~client 10.0.0.0/8", "~client 192.168.0.0/16"),
            ("~client 10.1.2.3", "~client ::1"),
        ] {
            assert!(matches(yes, &flow), "{yes}");
            assert!(!matches(no, &flow), "{no}");
        }
    }

    #[test]
    fn combinations_follow_precedence() {
        let flow = chat();
        assert!(matches("~m POST & ~c 5..", &flow));
        assert!(matches("~m POST ~c 5..", &flow), "side by side: and");
        assert!(!matches("~m GET & ~c 5..", &flow));
        assert!(matches("~m GET | ~c 5..", &flow));
        assert!(matches("!~m GET", &flow));
        assert!(!matches("!(~m GET | ~c 5..)", &flow));
        // `&` binds tighter than `|`.
        assert!(matches("~m GET & ~c 4.. | ~route chat", &flow));
        assert!(!matches("~m GET & (~c 4.. | ~route chat)", &flow));
        assert!(matches(
            "(~tokens >1000 | ~ttft >2s) & ~client 10.0.0.0/8 & !~route internal",
            &flow
        ));
        assert!(matches(r#"~b "\"model\":\"gpt-4o""#, &flow));
        assert!(matches("(~route chat)", &flow), "a bare word ends at `)`");
        assert!(
            matches("~u (chat|embeddings)", &flow),
            "balanced parentheses stay"
        );
    }

    #[test]
    fn facts_a_flow_lacks_make_their_filters_false() {
        let empty = Flow {
            url: "/",
            method: "GET",
            ..Flow::default()
        };
        for expression in [
            "~c 2..",
            "~model *",
            "~tokens >=0",
            "~ttft >=0ms",
            "~route chat",
            "~version v1",
            "~client 0.0.0.0/0",
        ] {
            assert!(!matches(expression, &empty), "{expression}");
            assert!(matches(&format!("!{expression}"), &empty), "{expression}");
        }
    }

    #[test]
    fn bad_expressions_are_refused_with_where_and_what() {
        for (expression, offset, says) in [
            ("", 0, "ends where a filter was expected"),
            ("~x foo", 0, "unknown filter `~x`"),
            ("~", 1, "without a filter name"),
            ("~u", 2, "needs an argument"),
            ("~u(", 2, "need a space"),
            ("~u [a-", 3, "invalid regex"),
            ("~c 5x.", 3, "`~c` takes"),
            ("~c .5.", 3, "`~c` takes"),
            ("~c 600-500", 3, "`~c` takes"),
            ("~h novalue", 3, "`~h` takes `name:regex`"),
            ("~tokens >many", 8, "a whole number of tokens"),
            ("~ttft >2 parsecs", 6, "a duration"),
            ("~client 10.0.0.300/8", 8, "address or a CIDR"),
            ("(~m GET", 0, "never closed"),
            ("~m GET)", 6, "unexpected"),
            ("~m GET &", 8, "ends where a filter was expected"),
            ("~b \"open", 3, "never closed"),
            ("~m GET | | ~m PUT", 9, "unexpected '|'"),
        ] {
            let error = Filter::parse(expression).expect_err(expression);
            assert_eq!(error.offset, offset, "{expression}: {error}");
            assert!(error.message.contains(says), "{expression}: {error}");
        }
        let deep = format!("{}~m GET{}", "(".repeat(100), ")".repeat(100));
        assert!(Filter::parse(&deep).unwrap_err().message.contains("nested"));
        let long = "~m GET | ".repeat(1000);
        assert!(Filter::parse(&long).unwrap_err().message.contains("longer"));
    }

    #[test]
    fn globs_match_whole_names() {
        let glob = |p: &str| Glob(p.chars().collect());
        assert!(glob("*").matches(""));
        assert!(glob("gpt-*-mini").matches("gpt-4o-mini"));
        assert!(!glob("gpt-*-mini").matches("gpt-4o-mini-2024"));
        assert!(glob("*a*b*").matches("xxaxxbxx"));
        assert!(!glob("a?c").matches("ac"));
        assert!(glob("llama-3.*").matches("llama-3.1-8b"));
    }
}
