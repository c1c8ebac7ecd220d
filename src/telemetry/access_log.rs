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

            pub fn parse(name: &str) -> Option<Field> {
                match name { $($name => Some(Field::$variant),)* _ => None }
            }
        }
    };
}

impl Field {
    /// Whether the field's value is the same on every line of one route, target,
    /// endpoint, method and protocol (see [`Run`]).
    pub fn of_target(self) -> bool {
        matches!(
            self,
            Field::Method
                | Field::Protocol
                | Field::Route
                | Field::Pool
                | Field::Version
                | Field::Endpoint
        )
    }
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
    /// The configured fields with their openings, made once for every line.
    slots: Box<[Slot]>,
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

/// Bytes reserved in a shard before a line is written: more than a line with every field
/// and short strings needs (~530 bytes).
const LINE_GUESS: usize = 768;

/// A line being written into a shard: should its `fill` unwind, the part written is
/// taken back out, so no half line reaches the file.
struct PartLine<'a> {
    line: JsonLine<'a>,
    /// The queue's count, which this line was counted in.
    waiting: &'a AtomicUsize,
    done: bool,
}

impl Drop for PartLine<'_> {
    fn drop(&mut self) {
        if !self.done {
            let start = self.line.start;
            self.line.text.truncate(start);
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

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

    /// Writes a line straight into this thread's shard (no line buffer, no second copy
    /// of its ~500 bytes), or returns false when `queue` lines are waiting already.
    fn push_with(&self, fill: impl FnOnce(&mut JsonLine<'_>)) -> bool {
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        let shard = SHARD.with(|shard| *shard) % self.shards.len();
        let mut shard = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        let shard = &mut *shard;
        // A line's usual size: its writes then never grow the shard one by one.
        shard.bytes.reserve(LINE_GUESS);
        let mut line = PartLine {
            line: JsonLine::at_end(&mut shard.bytes),
            waiting: &self.waiting,
            done: false,
        };
        fill(&mut line.line);
        line.line.close();
        line.done = true;
        drop(line);
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
    /// This thread is writing a line (into its shard, under the shard's lock): a line
    /// asked for meanwhile is dropped rather than waiting for that lock.
    static WRITING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Clears [`WRITING`] when the line is done, also when its `fill` unwound.
struct Writing;

impl Drop for Writing {
    fn drop(&mut self) {
        WRITING.set(false);
    }
}

/// The access log shared by every plan; [`AccessLog::apply`] follows config changes.
#[derive(Default)]
pub struct AccessLog {
    current: arc_swap::ArcSwapOption<Writer>,
    /// Whether `current` holds a writer: read on every request, where a load of
    /// `current` costs several times an atomic read.
    on: AtomicBool,
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
                    slots: Slot::all(&settings.fields),
                    settings: settings.clone(),
                    batches,
                    reopen,
                    done: std::sync::Mutex::new(Some(done)),
                }))
            }
        };
        // The old writer's thread ends once nothing can reach it and its lines are written.
        self.on.store(next.is_some(), Ordering::Relaxed);
        self.current.store(next);
        Ok(())
    }

    pub fn enabled(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Builds and queues one line when the log is on: `fill` gets the configured fields
    /// (with their openings, made when the writer started) and the line to write them
    /// into, which is this thread's shard of the queue. Never blocks.
    pub fn write_line(&self, fill: impl FnOnce(&[Slot], &mut JsonLine<'_>)) {
        let current = self.current.load();
        let Some(writer) = current.as_ref() else {
            return;
        };
        if WRITING.replace(true) {
            return;
        }
        let writing = Writing;
        let queued = writer.batches.push_with(|line| fill(&writer.slots, line));
        drop(writing);
        if !queued {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops the writer after it has written what is queued (at shutdown); waits for
    /// that at most `timeout` (a blocked destination must not hold up the exit).
    pub fn close(&self, timeout: std::time::Duration) {
        self.on.store(false, Ordering::Relaxed);
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

/// Builds one JSON object line by hand, at the end of a buffer (the writer's shard, or
/// a line of its own): the log's hot path, so no intermediate maps. Its parts are put
/// together in a block on the stack first, each as a copy of fixed size where it can be
/// (a field's opening, a short string, digits), and the block goes to the buffer in
/// one copy: a vector's length and capacity checked, reloaded and stored for each of a
/// line's ~80 parts cost more than the parts themselves.
pub struct JsonLine<'a> {
    /// Bytes, not a `String`: every part is ASCII or a `&str`'s UTF-8.
    text: &'a mut Vec<u8>,
    /// Where the line starts in `text`.
    start: usize,
    /// The parts not yet in `text`, and how many bytes of them.
    block: [u8; BLOCK],
    at: usize,
}

/// A place in a [`JsonLine`], from [`JsonLine::mark`].
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    text: usize,
    at: usize,
}

/// The stack block's size: a line with every field and short values fits (~530 bytes);
/// a longer one goes to the buffer in more copies.
const BLOCK: usize = 768;

/// A configured field of the log, with its opening made when the writer starts: so a
/// line's twenty-odd keys cost one fixed-size copy each, and a field without a value
/// (`"error":null`) one copy with its `null`.
#[derive(Debug, Clone)]
pub struct Slot {
    pub field: Field,
    /// `,"name":`, or `{"name":` for the line's first field.
    opening: Opening,
    /// The opening followed by `null`.
    null: Opening,
    /// At the first of two or more fields in a row that are [`Field::of_target`].
    pub run: Option<Run>,
}

/// Two or more configured fields in a row whose text is the same on every line of one
/// route, target, endpoint, method and protocol (`"protocol":"HTTP/1.1","route":...,
/// "endpoint":"http://..."` in the default order): their text can be written once and
/// repeated as one copy (`Exchange`'s lines keep it per thread), rather than as a
/// dispatch, an opening and an escape check per field on every line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// How many slots, this one included.
    pub len: usize,
    /// Names the run among all writers' runs, so that a text kept for one is never
    /// repeated for another (a reload may order the fields otherwise).
    pub id: u64,
}

impl Slot {
    /// The slots of `fields`, in order: the first opens the object.
    pub fn all(fields: &[Field]) -> Box<[Slot]> {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let mut slots: Box<[Slot]> = fields
            .iter()
            .enumerate()
            .map(|(at, &field)| {
                let open = if at == 0 { '{' } else { ',' };
                let opening = format!("{open}\"{}\":", field.name());
                Slot {
                    field,
                    opening: Opening::of(&opening),
                    null: Opening::of(&format!("{opening}null")),
                    run: None,
                }
            })
            .collect();
        let mut at = 0;
        while at < slots.len() {
            let len = slots[at..]
                .iter()
                .take_while(|slot| slot.field.of_target())
                .count();
            if len >= 2 {
                let id = RUNS.fetch_add(1, Ordering::Relaxed);
                slots[at].run = Some(Run { len, id });
            }
            at += len.max(1);
        }
        slots
    }
}

/// A field's name in a line: any name, or a configured field's [`Slot`].
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    Slot(&'a Slot),
    Name(&'a str),
}

/// Text of at most [`Opening::SIZE`] bytes, padded to that size: the line takes all
/// of it (a copy of known length, two vector stores rather than a `memcpy` call) and
/// gives back the padding.
#[derive(Debug, Clone)]
struct Opening {
    bytes: [u8; Opening::SIZE],
    len: usize,
}

impl Opening {
    const SIZE: usize = 32;

    /// Field names are short (the longest opening with its `null` is 26 bytes); a
    /// longer text is cut, which `slots_open_lines_as_names_do` would catch.
    fn of(text: &str) -> Opening {
        let text = text.as_bytes();
        let len = text.len().min(Opening::SIZE);
        let mut bytes = [b' '; Opening::SIZE];
        bytes[..len].copy_from_slice(&text[..len]);
        Opening { bytes, len }
    }
}

impl<'a> From<&'a str> for Key<'a> {
    fn from(name: &'a str) -> Self {
        Key::Name(name)
    }
}

impl<'a> From<&'a Slot> for Key<'a> {
    fn from(slot: &'a Slot) -> Self {
        Key::Slot(slot)
    }
}

impl<'a> JsonLine<'a> {
    /// A line appended to `text`.
    fn at_end(text: &'a mut Vec<u8>) -> Self {
        let start = text.len();
        JsonLine {
            text,
            start,
            block: [0; BLOCK],
            at: 0,
        }
    }

    /// Moves the parts made so far to the buffer.
    #[cold]
    #[inline(never)]
    fn flush(&mut self) {
        self.text.extend_from_slice(&self.block[..self.at]);
        self.at = 0;
    }

    /// Room for `N` more bytes in the block (`N` is at most a few dozen).
    fn room<const N: usize>(&mut self) -> &mut [u8] {
        const { assert!(N <= BLOCK) };
        if self.at + N > BLOCK {
            self.flush();
        }
        let at = self.at;
        &mut self.block[at..at + N]
    }

    /// `N` bytes of `part`, of which the line keeps `len`: one copy of fixed size.
    fn put<const N: usize>(&mut self, part: &[u8; N], len: usize) {
        self.room::<N>().copy_from_slice(part);
        self.at += len.min(N);
    }

    /// Bytes of any length.
    fn put_slice(&mut self, part: &[u8]) {
        if self.at + part.len() > BLOCK {
            self.flush();
            self.text.extend_from_slice(part);
            return;
        }
        self.block[self.at..self.at + part.len()].copy_from_slice(part);
        self.at += part.len();
    }

    /// Where the next part goes, for [`JsonLine::written_since`].
    pub fn mark(&self) -> Mark {
        Mark {
            text: self.text.len(),
            at: self.at,
        }
    }

    /// The parts written since `mark`, when they are all still in the stack block (a
    /// long value may have sent them to the buffer).
    pub fn written_since(&self, mark: Mark) -> Option<&[u8]> {
        (self.text.len() == mark.text)
            .then(|| self.block.get(mark.at..self.at))
            .flatten()
    }

    /// Parts this writer's slots wrote before ([`JsonLine::written_since`]), again: the
    /// caller answers for their being the same fields with the same values.
    pub fn repeat(&mut self, parts: &[u8]) {
        self.put_slice(parts);
    }

    #[inline]
    fn key<'k>(&mut self, key: impl Into<Key<'k>>) {
        match key.into() {
            Key::Slot(slot) => self.put(&slot.opening.bytes, slot.opening.len),
            Key::Name(name) => {
                let first = self.text.len() == self.start && self.at == 0;
                self.put_slice(if first { b"{\"" } else { b",\"" });
                self.put_slice(name.as_bytes());
                self.put_slice(b"\":");
            }
        }
    }

    /// A field without a value: `null`.
    #[inline]
    fn null<'k>(&mut self, key: impl Into<Key<'k>>) {
        match key.into() {
            Key::Slot(slot) => self.put(&slot.null.bytes, slot.null.len),
            name => {
                self.key(name);
                self.put_slice(b"null");
            }
        }
    }

    #[inline]
    pub fn string<'k>(&mut self, key: impl Into<Key<'k>>, value: Option<&str>) {
        // A field without a value (most of them on most lines) is one copy, inline.
        match value {
            Some(value) => self.some_string(key.into(), value),
            None => self.null(key),
        }
    }

    fn some_string(&mut self, key: Key<'_>, value: &str) {
        self.key(key);
        let room = self.room::<{ crate::json_text::SHORT_QUOTED }>();
        match crate::json_text::encode_short(value.as_bytes(), room) {
            Some(len) => self.at += len,
            None => {
                self.flush();
                crate::json_text::encode_string(value, self.text);
            }
        }
    }

    /// 32 hex digits (a request id Junction made) as a JSON string: one copy of fixed
    /// size, with no UTF-8 or escape check, which hex digits never need (the general
    /// string path cost ~150 instructions a line for this field).
    #[inline(always)]
    pub fn hex_string<'k>(&mut self, key: impl Into<Key<'k>>, digits: &[u8; 32]) {
        debug_assert!(digits.iter().all(u8::is_ascii_hexdigit));
        self.key(key);
        let mut text = [b'"'; 34];
        text[1..33].copy_from_slice(digits);
        self.put(&text, 34);
    }

    /// An unsigned integer, formatted by hand (no `fmt` machinery on the hot path).
    /// Always inline, as the line's other small writers: a call per field cost more
    /// than the field.
    #[inline(always)]
    pub fn number<'k>(&mut self, key: impl Into<Key<'k>>, value: Option<impl Into<u64>>) {
        match value {
            Some(value) => {
                self.key(key);
                let (digits, len) = crate::decimal::Digits::block(value.into());
                self.put(&digits, len);
            }
            None => self.null(key),
        }
    }

    /// An IP address as a JSON string; IPv4 formatted by hand.
    pub fn ip<'k>(&mut self, key: impl Into<Key<'k>>, value: Option<std::net::IpAddr>) {
        match value {
            Some(std::net::IpAddr::V4(v4)) => {
                self.key(key);
                // `"255.255.255.255"` at most: built on the stack, copied once.
                let (address, len) = crate::decimal::ipv4(v4);
                let mut text = [b'"'; 17];
                text[1..16].copy_from_slice(&address);
                text[1 + len] = b'"';
                self.put(&text, len + 2);
            }
            other => self.display(key, other),
        }
    }

    /// Any value written with `Display` as a JSON string.
    pub fn display<'k>(&mut self, key: impl Into<Key<'k>>, value: Option<impl std::fmt::Display>) {
        match value {
            Some(value) => self.string(key, Some(&value.to_string())),
            None => self.null(key),
        }
    }

    /// A duration in milliseconds with three decimals (microsecond resolution),
    /// formatted with integer arithmetic: no float formatting on the request path.
    #[inline(always)]
    pub fn millis<'k>(&mut self, key: impl Into<Key<'k>>, value: Option<std::time::Duration>) {
        let Some(value) = value else {
            self.null(key);
            return;
        };
        self.key(key);
        let (text, len) = millis_text(value);
        self.put(&text, len);
    }

    /// The current time as RFC 3339 with milliseconds; the date-and-seconds part is
    /// formatted once per second per thread.
    pub fn time<'k>(&mut self, key: impl Into<Key<'k>>) {
        self.key(key);
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let (text, len) = time_text(since_epoch);
        self.put(&text, len);
    }

    fn close(&mut self) {
        if self.text.len() == self.start && self.at == 0 {
            self.put_slice(b"{");
        }
        self.put_slice(b"}\n");
        self.flush();
    }
}

/// A line of its own, outside the writer's queue (for tests and tools).
pub fn line_of(fill: impl FnOnce(&mut JsonLine<'_>)) -> String {
    let mut text = Vec::new();
    let mut line = JsonLine::at_end(&mut text);
    fill(&mut line);
    line.close();
    // Built from `&str`s and ASCII only, so this never replaces anything.
    String::from_utf8(text)
        .unwrap_or_else(|bad| String::from_utf8_lossy(bad.as_bytes()).into_owned())
}

/// `1234.567` for 1 234 567 µs: whole milliseconds, a point and three decimals, in a
/// block of which the first `len` bytes count.
fn millis_text(value: std::time::Duration) -> ([u8; 24], usize) {
    let micros = value.as_micros().min(u128::from(u64::MAX)) as u64;
    let (digits, len) = crate::decimal::Digits::block(micros / 1000);
    let mut text = [0u8; 24];
    text[..20].copy_from_slice(&digits);
    let fraction = micros % 1000;
    let tail = [
        b'.',
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ];
    // `len` is at most 20 (a `u64`'s digits): the tail fits.
    let len = len.min(20);
    text[len..len + 4].copy_from_slice(&tail);
    (text, len + 4)
}

/// `"2026-11-27T10:15:02.481Z"` (quotes included, 26 bytes) for a time since the epoch;
/// the part up to the seconds is made once per second per thread.
fn time_text(since_epoch: std::time::Duration) -> ([u8; 32], usize) {
    let seconds = since_epoch.as_secs();
    let mut text = SECOND.with(|cache| {
        let (second, text) = cache.get();
        if second == seconds && text[0] == b'"' {
            return text;
        }
        let mut text = [0u8; 32];
        let formatted = crate::units::format_second(seconds as i64);
        let formatted = formatted.as_bytes();
        // `"YYYY-MM-DDTHH:MM:SS`: 20 bytes; a year past 9999 is cut (never met).
        let len = formatted.len().min(19);
        text[0] = b'"';
        text[1..1 + len].copy_from_slice(&formatted[..len]);
        cache.set((seconds, text));
        text
    });
    let millis = since_epoch.subsec_millis();
    text[20..26].copy_from_slice(&[
        b'.',
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
        b'Z',
        b'"',
    ]);
    (text, 26)
}

thread_local! {
    /// The last second a line was written in on this thread, and its text:
    /// `"YYYY-MM-DDTHH:MM:SS` (with the opening quote).
    static SECOND: std::cell::Cell<(u64, [u8; 32])> = const { std::cell::Cell::new((0, [0; 32])) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_escape_and_parse() {
        let text = line_of(|line| {
            line.string("path", Some("/a\"b\\c\n\u{1}é"));
            line.number("status", Some(200u16));
            line.string("endpoint", None);
            line.number("tokens", None::<u64>);
        });
        assert!(text.ends_with("}\n"));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["path"], "/a\"b\\c\n\u{1}é");
        assert_eq!(value["status"], 200);
        assert!(value["endpoint"].is_null());
    }

    /// A made request id is written as the string path writes it.
    #[test]
    fn hex_ids_write_as_strings_do() {
        let digits = *b"0123456789abcdef0123456789ABCDEF";
        let text = std::str::from_utf8(&digits).unwrap();
        assert_eq!(
            line_of(|line| line.hex_string("request_id", &digits)),
            line_of(|line| line.string("request_id", Some(text)))
        );
    }

    #[test]
    fn slots_open_the_line_and_follow_it() {
        let slots = Slot::all(&[Field::ClientIp, Field::Status, Field::Route]);
        let text = line_of(|line| {
            line.ip(&slots[0], Some(std::net::IpAddr::from([255, 100, 9, 0])));
            line.number(&slots[1], Some(204u16));
            line.string("plain", Some("x"));
            line.string(&slots[2], None);
        });
        assert_eq!(
            text,
            "{\"client_ip\":\"255.100.9.0\",\"status\":204,\"plain\":\"x\",\"route\":null}\n"
        );
    }

    /// A line written through slots is the line written with the fields' names, byte for
    /// byte, whichever field comes first and whether its value is there or not.
    #[test]
    fn slots_open_lines_as_names_do() {
        let slots = Slot::all(Field::ALL);
        for first in 0..Field::ALL.len() {
            let order: Vec<usize> = (first..Field::ALL.len()).chain(0..first).collect();
            for with_values in [true, false] {
                let write = |line: &mut JsonLine<'_>, by_slot: bool| {
                    for &at in &order {
                        let value = with_values.then_some(at as u64);
                        let slots =
                            Slot::all(&order.iter().map(|&i| Field::ALL[i]).collect::<Vec<_>>());
                        let position = order.iter().position(|&i| i == at).unwrap();
                        if by_slot {
                            line.number(&slots[position], value);
                        } else {
                            line.number(Field::ALL[at].name(), value);
                        }
                    }
                };
                let by_slots = line_of(|line| write(line, true));
                let by_names = line_of(|line| write(line, false));
                assert_eq!(by_slots, by_names);
                let value: serde_json::Value = serde_json::from_str(&by_slots).unwrap();
                assert_eq!(value.as_object().unwrap().len(), Field::ALL.len());
            }
        }
        for slot in slots.iter() {
            assert!(
                slot.null.len < Opening::SIZE,
                "{:?} fits its block",
                slot.field
            );
        }
    }

    /// Runs start at the first of two or more target fields in a row, cover them all,
    /// and never share an id, also across writers.
    #[test]
    fn runs_cover_target_fields_in_a_row() {
        let runs = |fields: &[Field]| -> Vec<Option<usize>> {
            Slot::all(fields)
                .iter()
                .map(|slot| slot.run.map(|run| run.len))
                .collect()
        };
        let all = runs(Field::ALL);
        let at = |field| Field::ALL.iter().position(|&f| f == field).unwrap();
        assert_eq!(all[at(Field::Protocol)], Some(5));
        assert_eq!(all.iter().flatten().count(), 1, "{all:?}");
        assert_eq!(
            runs(&[Field::Method, Field::Route, Field::Status, Field::Pool]),
            [Some(2), None, None, None]
        );
        assert_eq!(
            runs(&[Field::Status, Field::Route, Field::Pool]),
            [None, Some(2), None]
        );
        assert_eq!(runs(&[Field::Route]), [None]);
        let (first, second) = (Slot::all(Field::ALL), Slot::all(Field::ALL));
        let id = |slots: &[Slot]| slots.iter().find_map(|slot| slot.run).unwrap().id;
        assert_ne!(id(&first), id(&second));
    }

    /// A run's text taken with `written_since` and repeated makes the line writing its
    /// fields makes; none is taken once the parts left the stack block.
    #[test]
    fn repeated_parts_make_the_same_line() {
        let slots = Slot::all(&[Field::Status, Field::Route, Field::Pool, Field::Error]);
        let mut kept = Vec::new();
        let written = line_of(|line| {
            line.number(&slots[0], Some(200u16));
            let mark = line.mark();
            line.string(&slots[1], Some("chat"));
            line.string(&slots[2], None);
            kept = line.written_since(mark).unwrap().to_vec();
            line.string(&slots[3], None);
        });
        let repeated = line_of(|line| {
            line.number(&slots[0], Some(200u16));
            line.repeat(&kept);
            line.string(&slots[3], None);
        });
        assert_eq!(written, repeated);
        assert_eq!(
            written,
            "{\"status\":200,\"route\":\"chat\",\"pool\":null,\"error\":null}\n"
        );
        let long = "r".repeat(2 * BLOCK);
        line_of(|line| {
            let mark = line.mark();
            line.string(&slots[1], Some(&long));
            assert!(line.written_since(mark).is_none());
            let mark = line.mark();
            line.string(&slots[2], Some("after"));
            assert_eq!(line.written_since(mark), Some(&b",\"pool\":\"after\""[..]));
        });
    }

    #[test]
    fn numbers_and_time_in_lines() {
        let text = line_of(|line| {
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
            line.millis("long", Some(std::time::Duration::MAX));
        });
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["a"].as_f64(), Some(1234.567));
        assert_eq!(value["b"].as_f64(), Some(0.005));
        assert!(value["c"].is_null());
        assert_eq!(value["t"].as_str().unwrap().len(), 24);
        assert_eq!(value["ip"], "10.0.0.1");
        assert_eq!(value["ip6"], "::1");
        assert_eq!(value["big"], u64::MAX);
        assert!(text.contains("\"long\":18446744073709551.615}"), "{text}");
    }

    /// The cached part of the time and the milliseconds make the text a fresh format
    /// makes, across second, minute, day and year boundaries, forwards and back.
    #[test]
    fn cached_times_match_fresh_ones() {
        let fresh = |since: std::time::Duration| {
            format!(
                "\"{}.{:03}Z\"",
                crate::units::format_second(since.as_secs() as i64),
                since.subsec_millis()
            )
        };
        let mut times = Vec::new();
        for base in [
            0u64,
            1_764_892_799,
            1_767_225_599,
            1_798_761_599,
            4_102_444_799,
        ] {
            for millis in [0u64, 1, 998, 999, 1000, 1001, 1999, 2000, 61_000] {
                times.push(std::time::Duration::from_millis(base * 1000 + millis));
            }
        }
        let backwards: Vec<_> = times.iter().rev().copied().collect();
        for since in times.into_iter().chain(backwards) {
            let (text, len) = time_text(since);
            assert_eq!(std::str::from_utf8(&text[..len]).unwrap(), fresh(since));
        }
    }

    #[test]
    fn millis_as_before() {
        for micros in [0u64, 5, 999, 1000, 1001, 123_456, 999_999_999, u64::MAX] {
            let (text, len) = millis_text(std::time::Duration::from_micros(micros));
            let expected = format!("{}.{:03}", micros / 1000, micros % 1000);
            assert_eq!(std::str::from_utf8(&text[..len]).unwrap(), expected);
        }
    }

    /// A line whose `fill` unwinds leaves nothing in the queue, and the next is whole.
    #[test]
    fn an_unwinding_line_leaves_nothing_behind() {
        let batches = Batches::new(10);
        batches.push_with(|line| line.number("a", Some(1u8)));
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            batches.push_with(|line| {
                line.number("b", Some(2u8));
                panic!("mid-line");
            })
        }));
        assert!(unwound.is_err());
        batches.push_with(|line| line.number("c", Some(3u8)));
        let mut spare = Vec::new();
        let mut out = Vec::new();
        batches.drain(&mut spare, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "{\"a\":1}\n{\"c\":3}\n");
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
