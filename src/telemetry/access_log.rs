//! The access log: one JSON line per request, written by a thread of its own from a
//! bounded queue. A request never waits for the log: when the writer falls behind (a
//! full pipe, a slow disk), lines are dropped and counted instead. SIGUSR1 reopens the
//! file (for logrotate).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    File(PathBuf),
}

/// The access log settings of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSettings {
    pub destination: Destination,
    /// Field names to write, in order.
    pub fields: Vec<Field>,
    pub queue: usize,
}

macro_rules! fields {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// A field of an access log line.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Field { $($variant),* }

        impl Field {
            pub const ALL: &'static [Field] = &[$(Field::$variant),*];

            pub fn name(self) -> &'static str {
                match self { $(Field::$variant => $name),* }
            }

            /// How the field opens its place in a line, made at compile time.
            pub fn key(self) -> Key<'static> {
                match self {
                    $(Field::$variant => {
                        const OPENING: Opening = Opening::of(concat!(",\"", $name, "\":"));
                        Key::Opening(&OPENING)
                    }),*
                }
            }

            pub fn parse(name: &str) -> Option<Field> {
                match name { $($name => Some(Field::$variant),)* _ => None }
            }
        }
    };
}

fields! {
    Time => "time",
    RequestId => "request_id",
    TraceId => "trace_id",
    ClientIp => "client_ip",
    Method => "method",
    Path => "path",
    Protocol => "protocol",
    Route => "route",
    Pool => "pool",
    Version => "version",
    Endpoint => "endpoint",
    Status => "status",
    Error => "error",
    BytesIn => "bytes_in",
    BytesOut => "bytes_out",
    DurationMs => "duration_ms",
    TtfbMs => "ttfb_ms",
    TtftMs => "ttft_ms",
    PromptTokens => "prompt_tokens",
    CompletionTokens => "completion_tokens",
    Retries => "retries",
    ApiKey => "api_key",
    ClientIdentity => "client_identity",
    UserAgent => "user_agent",
    Masked => "masked",
    Hops => "hops",
}

struct Writer {
    settings: AccessLogSettings,
    batches: Arc<Batches>,
    reopen: Arc<AtomicBool>,
    /// Hangs up when the writer thread has written everything and ended.
    done: std::sync::Mutex<Option<Receiver<()>>>,
}

impl Drop for Writer {
    /// No request can reach this writer any more: the thread writes what is left and ends.
    fn drop(&mut self) {
        self.batches.closed.store(true, Ordering::Release);
    }
}

/// Lines waiting for the writer thread, in a few shards of bytes. A request appends its
/// line to its thread's shard under a lock nobody else wants (the writer takes it once
/// per tick): no allocation and no channel per line, which cost more than the line itself.
struct Batches {
    shards: Box<[Mutex<Shard>]>,
    /// Lines in the shards, against the `queue` bound.
    waiting: AtomicUsize,
    queue: usize,
    closed: AtomicBool,
}

const SHARDS: usize = 8;

/// Lines waiting in one shard, and how many: the writer then never counts newlines
/// (a pass over every byte it writes).
#[derive(Default)]
struct Shard {
    bytes: Vec<u8>,
    lines: usize,
}

impl Batches {
    fn new(queue: usize) -> Self {
        Batches {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            waiting: AtomicUsize::new(0),
            queue,
            closed: AtomicBool::new(false),
        }
    }

    /// Queues a line, or returns false when `queue` lines are waiting already.
    fn push(&self, line: &[u8]) -> bool {
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        let shard = SHARD.with(|shard| *shard) % self.shards.len();
        let mut shard = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        shard.bytes.extend_from_slice(line);
        shard.lines += 1;
        true
    }

    /// Writes every waiting line; `spare` is swapped with each shard so neither side
    /// allocates in the steady state.
    fn drain(&self, spare: &mut Vec<u8>, output: &mut impl Write) {
        for shard in self.shards.iter() {
            spare.clear();
            let lines = {
                let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
                std::mem::swap(spare, &mut shard.bytes);
                std::mem::take(&mut shard.lines)
            };
            if spare.is_empty() {
                continue;
            }
            let _ = output.write_all(spare);
            self.waiting.fetch_sub(lines, Ordering::Relaxed);
        }
    }
}

thread_local! {
    /// The shard this thread appends to, spread over threads as they first log.
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
    /// This thread's line buffer, reused for every line.
    static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The access log shared by every plan; [`AccessLog::apply`] follows config changes.
#[derive(Default)]
pub struct AccessLog {
    current: arc_swap::ArcSwapOption<Writer>,
    dropped: AtomicU64,
}

impl AccessLog {
    /// Starts, restarts or stops the writer to match `settings` (`None`: off).
    /// Called by reloads, which are serialised.
    pub fn apply(&self, settings: Option<&AccessLogSettings>) -> std::io::Result<()> {
        if self.current.load().as_ref().map(|w| &w.settings) == settings {
            return Ok(());
        }
        let next = match settings {
            None => None,
            Some(settings) => {
                let output = open(&settings.destination)?;
                let batches = Arc::new(Batches::new(settings.queue.max(1)));
                let reopen = Arc::new(AtomicBool::new(false));
                let thread_reopen = reopen.clone();
                let thread_batches = batches.clone();
                let destination = settings.destination.clone();
                let (finished, done) = std::sync::mpsc::channel::<()>();
                std::thread::Builder::new()
                    .name("access-log".into())
                    .spawn(move || {
                        write_lines(thread_batches, output, destination, thread_reopen);
                        drop(finished);
                    })?;
                Some(Arc::new(Writer {
                    settings: settings.clone(),
                    batches,
                    reopen,
                    done: std::sync::Mutex::new(Some(done)),
                }))
            }
        };
        // The old writer's thread ends once nothing can reach it and its lines are written.
        self.current.store(next);
        Ok(())
    }

    pub fn enabled(&self) -> bool {
        self.current.load().is_some()
    }

    /// Builds and queues one line when the log is on: `fill` gets the configured fields
    /// and a line to write them into (this thread's buffer, reused). Never blocks.
    pub fn write_line(&self, fill: impl FnOnce(&[Field], &mut JsonLine)) {
        let current = self.current.load();
        let Some(writer) = current.as_ref() else {
            return;
        };
        LINE.with(|buffer| {
            let Ok(mut buffer) = buffer.try_borrow_mut() else {
                return;
            };
            buffer.clear();
            let mut line = JsonLine {
                text: std::mem::take(&mut *buffer),
            };
            fill(&writer.settings.fields, &mut line);
            line.close();
            if !writer.batches.push(&line.text) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            *buffer = line.text;
        });
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops the writer after it has written what is queued (at shutdown); waits for
    /// that at most `timeout` (a blocked destination must not hold up the exit).
    pub fn close(&self, timeout: std::time::Duration) {
        let Some(writer) = self.current.swap(None) else {
            return;
        };
        let Some(done) = writer.done.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        drop(writer);
        let _ = done.recv_timeout(timeout);
    }

    /// Asks the writer to reopen its file before the next line (SIGUSR1).
    pub fn reopen(&self) {
        if let Some(writer) = self.current.load().as_ref() {
            writer.reopen.store(true, Ordering::Relaxed);
        }
    }
}

fn open(destination: &Destination) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match destination {
        Destination::Stdout => Box::new(std::io::stdout()),
        Destination::File(path) => {
            Box::new(OpenOptions::new().create(true).append(true).open(path)?)
        }
    })
}

/// How often the writer wakes to write what was queued. Requests never wake it: a
/// wake-up per line (a futex call and a context switch on the proxy's core) cost more
/// than the rest of the request under load.
const WRITE_TICK: std::time::Duration = std::time::Duration::from_millis(20);

fn write_lines(
    batches: Arc<Batches>,
    output: Box<dyn Write + Send>,
    destination: Destination,
    reopen: Arc<AtomicBool>,
) {
    // No `BufWriter`: each shard's bytes are a batch already, written with one call;
    // a buffer would only copy them once more.
    let mut output = output;
    let mut spare = Vec::new();
    loop {
        std::thread::sleep(WRITE_TICK);
        if reopen.swap(false, Ordering::Relaxed) {
            let _ = output.flush();
            match open(&destination) {
                Ok(fresh) => output = fresh,
                Err(error) => {
                    tracing::error!(%error, ?destination, "cannot reopen the access log; keeping the old file")
                }
            }
        }
        // Read before draining: lines queued before the close are all in this drain.
        let closed = batches.closed.load(Ordering::Acquire);
        batches.drain(&mut spare, &mut output);
        let _ = output.flush();
        if closed {
            return;
        }
    }
}

/// A request's path and query as its line shows them: hyper's parsed URI, or the HTTP/1.1
/// engine's origin-form target as it came (which that engine takes only in the characters
/// `http::Uri` takes, so both show the same text), kept inline when short: parsing it
/// into a `Uri` (and the allocation of its copy) cost more than the rest of the line's
/// path field.
pub enum LogPath {
    Uri(http::Uri),
    Inline {
        len: u8,
        bytes: [u8; LogPath::INLINE],
    },
    Text(Box<str>),
}

impl LogPath {
    const INLINE: usize = 62;

    /// A target the HTTP/1.1 engine took (ASCII); anything else shows as `/`, as a
    /// `Uri` refused by that engine would.
    pub fn of_target(target: &[u8]) -> Self {
        if target.len() <= Self::INLINE && target.is_ascii() {
            let mut bytes = [0u8; Self::INLINE];
            bytes[..target.len()].copy_from_slice(target);
            return LogPath::Inline {
                len: target.len() as u8,
                bytes,
            };
        }
        match std::str::from_utf8(target) {
            Ok(text) => LogPath::Text(text.into()),
            Err(_) => LogPath::Uri(http::Uri::default()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            LogPath::Uri(uri) => uri.path_and_query().map_or(uri.path(), |pq| pq.as_str()),
            LogPath::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("/")
            }
            LogPath::Text(text) => text,
        }
    }
}

/// Builds one JSON object line by hand: the log's hot path, so no intermediate maps.
pub struct JsonLine {
    /// Bytes, not a `String`: every part is ASCII or a `&str`'s UTF-8, and a line has
    /// some twenty fields, each a few plain copies.
    text: Vec<u8>,
}

impl Default for JsonLine {
    fn default() -> Self {
        JsonLine {
            text: Vec::with_capacity(384),
        }
    }
}

/// A field's name in a line: any name, or a [`Field`]'s, whose opening (`,"name":`)
/// is made at compile time so that a line's twenty-odd keys cost one copy each, not
/// three (a tenth of the access log's cost on the policy route).
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    /// `,"name":`, the name plain ASCII (no escapes).
    Opening(&'static Opening),
    Name(&'a str),
}

/// A field's opening, padded to a fixed size: the line takes all [`Opening::SIZE`]
/// bytes (a copy of known length, two vector stores rather than a `memcpy` call) and
/// gives back the padding.
#[derive(Debug)]
pub struct Opening {
    bytes: [u8; Opening::SIZE],
    len: usize,
}

impl Opening {
    const SIZE: usize = 32;

    /// Fails to compile for an opening longer than `SIZE`.
    const fn of(text: &str) -> Opening {
        let text = text.as_bytes();
        assert!(text.len() <= Opening::SIZE);
        let mut bytes = [b' '; Opening::SIZE];
        let mut at = 0;
        while at < text.len() {
            bytes[at] = text[at];
            at += 1;
        }
        Opening {
            bytes,
            len: text.len(),
        }
    }
}

impl<'a> From<&'a str> for Key<'a> {
    fn from(name: &'a str) -> Self {
        Key::Name(name)
    }
}

impl JsonLine {
    fn key<'k>(&mut self, key: impl Into<Key<'k>>) {
        let first = self.text.is_empty();
        match key.into() {
            Key::Opening(opening) => {
                let start = self.text.len();
                self.text.extend_from_slice(&opening.bytes);
                self.text.truncate(start + opening.len);
                if first {
                    // The opening's comma starts the object instead.
                    self.text[start] = b'{';
                }
            }
            Key::Name(name) => {
                self.text
                    .extend_from_slice(if first { b"{\"" } else { b",\"" });
                self.text.extend_from_slice(name.as_bytes());
                self.text.extend_from_slice(b"\":");
            }
        }
    }

    pub fn string<'k>(&mut self, key: impl Into<Key<'k>>, value: Option<&str>) {
        self.key(key);
        match value {
            Some(value) => crate::json_text::encode_string(value, &mut self.text),
            None => self.text.extend_from_slice(b"null"),
        }
    }

    /// An unsigned integer, formatted by hand (no `fmt` machinery on the hot path).
    pub fn number<'k>(&mut self, key: impl Into<Key<'k>>, value: Option<impl Into<u64>>) {
        self.key(key);
        match value {
            Some(value) => push_integer(&mut self.text, value.into()),
            None => self.text.extend_from_slice(b"null"),
        }
    }

    /// An IP address as a JSON string; IPv4 formatted by hand.
    pub fn ip<'k>(&mut self, key: impl Into<Key<'k>>, value: Option<std::net::IpAddr>) {
        match value {
            Some(std::net::IpAddr::V4(v4)) => {
                self.key(key);
                // `"255.255.255.255"` at most: built on the stack, copied once.
                let mut text = [0u8; 17];
                let mut len = 0;
                let mut put = |byte: u8| {
                    text[len] = byte;
                    len += 1;
                };
                put(b'"');
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        put(b'.');
                    }
                    if octet >= 100 {
                        put(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        put(b'0' + octet / 10 % 10);
                    }
                    put(b'0' + octet % 10);
                }
                put(b'"');
                self.text.extend_from_slice(&text[..len]);
            }
            other => self.display(key, other),
        }
    }

    /// Any value written with `Display` as a JSON string.
    pub fn display<'k>(&mut self, key: impl Into<Key<'k>>, value: Option<impl std::fmt::Display>) {
        match value {
            Some(value) => self.string(key, Some(&value.to_string())),
            None => self.string(key, None),
        }
    }

    /// A duration in milliseconds with three decimals (microsecond resolution),
    /// formatted with integer arithmetic: no float formatting on the request path.
    pub fn millis<'k>(&mut self, key: impl Into<Key<'k>>, value: Option<std::time::Duration>) {
        self.key(key);
        let Some(value) = value else {
            self.text.extend_from_slice(b"null");
            return;
        };
        let micros = value.as_micros().min(u128::from(u64::MAX)) as u64;
        push_integer(&mut self.text, micros / 1000);
        let fraction = micros % 1000;
        self.text.extend_from_slice(&[
            b'.',
            b'0' + (fraction / 100) as u8,
            b'0' + (fraction / 10 % 10) as u8,
            b'0' + (fraction % 10) as u8,
        ]);
    }

    /// The current time as RFC 3339 with milliseconds; the date-and-seconds part is
    /// formatted once per second per thread.
    pub fn time<'k>(&mut self, key: impl Into<Key<'k>>) {
        self.key(key);
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        SECOND.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.0 != since_epoch.as_secs() || cache.1.is_empty() {
                *cache = (
                    since_epoch.as_secs(),
                    crate::units::format_second(since_epoch.as_secs() as i64),
                );
            }
            self.text.push(b'"');
            self.text.extend_from_slice(cache.1.as_bytes());
        });
        let millis = since_epoch.subsec_millis();
        self.text.extend_from_slice(&[
            b'.',
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
            b'Z',
            b'"',
        ]);
    }

    fn close(&mut self) {
        if self.text.is_empty() {
            self.text.push(b'{');
        }
        self.text.extend_from_slice(b"}\n");
    }

    pub fn finish(mut self) -> String {
        self.close();
        // Built from `&str`s and ASCII only, so this never replaces anything.
        String::from_utf8(self.text)
            .unwrap_or_else(|bad| String::from_utf8_lossy(bad.as_bytes()).into_owned())
    }
}

thread_local! {
    /// (second, "YYYY-MM-DDTHH:MM:SS") of the last line written on this thread.
    static SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

fn push_integer(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(crate::decimal::Digits::of(value).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_escape_and_parse() {
        let mut line = JsonLine::default();
        line.string("path", Some("/a\"b\\c\n\u{1}é"));
        line.number("status", Some(200u16));
        line.string("endpoint", None);
        line.number("tokens", None::<u64>);
        let text = line.finish();
        assert!(text.ends_with("}\n"));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["path"], "/a\"b\\c\n\u{1}é");
        assert_eq!(value["status"], 200);
        assert!(value["endpoint"].is_null());
    }

    #[test]
    fn field_keys_open_the_line_and_follow_it() {
        let mut line = JsonLine::default();
        line.ip(
            Field::ClientIp.key(),
            Some(std::net::IpAddr::from([255, 100, 9, 0])),
        );
        line.number(Field::Status.key(), Some(204u16));
        line.string("plain", Some("x"));
        line.string(Field::Route.key(), None);
        let text = line.finish();
        assert_eq!(
            text,
            "{\"client_ip\":\"255.100.9.0\",\"status\":204,\"plain\":\"x\",\"route\":null}\n"
        );
        for field in Field::ALL {
            let mut line = JsonLine::default();
            line.number(field.key(), Some(1u8));
            let value: serde_json::Value = serde_json::from_str(&line.finish()).unwrap();
            assert_eq!(value[field.name()], 1, "{field:?}");
        }
    }

    #[test]
    fn numbers_and_time_in_lines() {
        let mut line = JsonLine::default();
        line.millis("a", Some(std::time::Duration::from_micros(1_234_567)));
        line.millis("b", Some(std::time::Duration::from_micros(5)));
        line.millis("c", None);
        line.time("t");
        line.ip("ip", Some(std::net::IpAddr::from([10, 0, 0, 1])));
        line.ip(
            "ip6",
            Some(std::net::IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])),
        );
        line.number("big", Some(u64::MAX));
        let value: serde_json::Value = serde_json::from_str(&line.finish()).unwrap();
        assert_eq!(value["a"].as_f64(), Some(1234.567));
        assert_eq!(value["b"].as_f64(), Some(0.005));
        assert!(value["c"].is_null());
        assert_eq!(value["t"].as_str().unwrap().len(), 24);
        assert_eq!(value["ip"], "10.0.0.1");
        assert_eq!(value["ip6"], "::1");
        assert_eq!(value["big"], u64::MAX);
    }

    #[test]
    fn time_format() {
        let time = crate::units::now_rfc3339();
        assert_eq!(time.len(), 24, "{time}");
        assert!(time.starts_with("20") && time.ends_with('Z'));
    }

    /// The HTTP/1.1 engine's targets show as `http::Uri` shows them on hyper's side.
    #[test]
    fn log_paths_show_targets_as_uris_do() {
        let long = format!("/{}?q={}", "a".repeat(70), "b".repeat(10));
        for target in ["/", "/a/b?c=d&e", "/json/{\"a\":1}", "/q?x=`y`&z=/?", &long] {
            let uri: http::Uri = target.parse().unwrap();
            assert_eq!(LogPath::of_target(target.as_bytes()).as_str(), target);
            assert_eq!(LogPath::Uri(uri).as_str(), target);
        }
    }

    #[test]
    fn field_names_round_trip() {
        for field in Field::ALL {
            assert_eq!(Field::parse(field.name()), Some(*field));
        }
    }
}
