//! The shapes found from a trigger byte rather than a literal: numbers, IPv4 and IBANs
//! from digits, e-mail from `@`, IPv6 and URL passwords from `:`, key assignments,
//! credential query parameters and `Authorization: Basic` from `:` and `=`. One pass
//! finds where each may start; each shape's extent is then read by hand, exactly as
//! its pattern in `shapes::SHAPES` would match it anchored there (a property test
//! holds them to the patterns).

use super::bounds;
use super::shapes::Shape;
use crate::normalize::host;

/// A place a triggered shape starts, found from its trigger byte at `anchor`, and
/// where that match ends (read once, here, to know the shape matches at all).
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub start: usize,
    pub anchor: usize,
    pub shape: Shape,
    pub end: usize,
}

const NONE: u8 = 0;
const DIGIT: u8 = 1;
const AT: u8 = 2;
const COLON: u8 = 3;
const EQUALS: u8 = 4;

const TRIGGERS: [u8; 256] = {
    let mut table = [NONE; 256];
    let mut b = b'0';
    while b <= b'9' {
        table[b as usize] = DIGIT;
        b += 1;
    }
    table[b'@' as usize] = AT;
    table[b':' as usize] = COLON;
    table[b'=' as usize] = EQUALS;
    table
};

/// Eight bytes (little-endian) at a time: the high bit of each byte in `0x30..=0x40`
/// (digits, `:`, `;`, `<`, `=`, `>`, `?`, `@`), the range every trigger byte is in.
/// Prose is mostly letters and spaces, so most of it is stepped over eight bytes at a
/// time, and the first byte that may be a trigger is found from the mask.
fn trigger_range_mask(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = word & !HIGH;
    // Per byte, with no carry into the next (at most 0x7f + 0x50): the high bit is set
    // when the byte is at least 0x30, and when it is at least 0x41.
    let from_0x30 = low7 + ONES * (0x80 - 0x30);
    let from_0x41 = low7 + ONES * (0x80 - 0x41);
    from_0x30 & !from_0x41 & !word & HIGH
}

/// Whether any byte of `block` is in `0x30..=0x40`, the trigger bytes' range: every
/// byte tested, no early exit, so that the compiler vectorises it (no `unsafe`).
fn block_may_trigger(block: &[u8; 32]) -> bool {
    block.iter().fold(0u8, |any, &byte| {
        any | u8::from(byte.wrapping_sub(0x30) <= 0x10)
    }) != 0
}

/// The byte classes the shapes are read with, one bit each in `CLASSES`: one load per
/// byte where a chain of comparisons would take several branches (these loops are most
/// of the detectors' time on text dense with numbers and keys).
const WORD: u8 = 1;
const HEX: u8 = 2;
const NUMBER: u8 = 4;
const LOCAL: u8 = 8;
const NAME: u8 = 16;
const VALUE: u8 = 32;
const PASSWORD: u8 = 64;

const CLASSES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let alphanumeric = b.is_ascii_alphanumeric();
        let mut class = 0;
        if alphanumeric || b == b'_' {
            class |= WORD;
        }
        if b.is_ascii_hexdigit() {
            class |= HEX;
        }
        // `[0-9 ().\-/]`: what a number's run is made of.
        if b.is_ascii_digit() || matches!(b, b' ' | b'(' | b')' | b'.' | b'-' | b'/') {
            class |= NUMBER;
        }
        // `[A-Za-z0-9._%+\-]`: an e-mail's local part.
        if alphanumeric || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-') {
            class |= LOCAL;
        }
        // `[A-Za-z0-9_.\-]`: a key-like name.
        if alphanumeric || matches!(b, b'_' | b'.' | b'-') {
            class |= NAME;
        }
        // `[A-Za-z0-9_+/.~\-]`: an assigned value.
        if alphanumeric || matches!(b, b'_' | b'+' | b'/' | b'.' | b'~' | b'-') {
            class |= VALUE;
        }
        // Printable ASCII but blanks, quotes, `,;\` and Markdown's backtick: a
        // password's bytes after curl's `-u` and the tools' flags.
        if b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b',' | b';' | b'\\' | b'`') {
            class |= PASSWORD;
        }
        table[i] = class;
        i += 1;
    }
    table
};

fn is(class: u8, b: u8) -> bool {
    CLASSES[usize::from(b)] & class != 0
}

pub fn is_word_byte(b: u8) -> bool {
    is(WORD, b)
}

fn is_hex(b: u8) -> bool {
    is(HEX, b)
}

pub(super) fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_quote(b: u8) -> bool {
    b == b'"' || b == b'\''
}

fn is_number_byte(b: u8) -> bool {
    is(NUMBER, b)
}

pub(super) fn is_local_byte(b: u8) -> bool {
    is(LOCAL, b)
}

fn is_name_byte(b: u8) -> bool {
    is(NAME, b)
}

fn is_value_byte(b: u8) -> bool {
    is(VALUE, b)
}

/// `[!#-&(-+\--:<-\[\]-_a-~]`: a printable byte but blanks, quotes, `,;\` and the
/// backtick, as curl's `-u` and the tools' flags read a password.
pub(super) fn is_assigned_password_byte(b: u8) -> bool {
    is(PASSWORD, b)
}

/// A byte a password's unquoted value may hold: printable ASCII, or any byte of a
/// character beyond ASCII (a password in German or Chinese is one too). Where the value
/// ends among them is [`unquoted_password_end`]'s to say.
pub(super) fn is_password_run_byte(b: u8) -> bool {
    b.is_ascii_graphic() || b >= 0x80
}

/// The character at `at`, beyond ASCII, and its length; `None` where the bytes are no
/// UTF-8 (never in a text, only in the raw bytes the scan's tests give it).
fn char_at(bytes: &[u8], at: usize) -> Option<(char, usize)> {
    let len = match bytes.get(at)? {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let c = std::str::from_utf8(bytes.get(at..at + len)?)
        .ok()?
        .chars()
        .next()?;
    Some((c, len))
}

/// `[A-Za-z0-9._~%!$&'()*+,;=\-]`: a URL's user name (RFC 3986 `userinfo` less `:`:
/// a host name's bytes and the `%` of escapes).
fn is_user_byte(b: u8) -> bool {
    b == b'%' || host::is_reg_name_byte(b)
}

/// `[A-Za-z0-9._~%!$&'()*+,;=@#^?|{}\-]`: a URL's password as people write them in
/// connection strings, `@` and the unescaped `#^?|{}` of generated passwords included
/// (`postgres://app:xK9#mQ2@db`): a password cut at its first `#` would not match at
/// all, and leave whole.
fn is_password_byte(b: u8) -> bool {
    is_user_byte(b) || matches!(b, b'@' | b'#' | b'^' | b'?' | b'|' | b'{' | b'}')
}

/// Whether the first `len` bytes of `bytes` are all of `class`.
fn leads_with(bytes: &[u8], len: usize, class: impl Fn(u8) -> bool) -> bool {
    bytes.iter().take(len).take_while(|&&b| class(b)).count() == len
}

/// Where a run of bytes of `class` ending just before `end` starts.
fn run_back(bytes: &[u8], end: usize, class: impl Fn(u8) -> bool) -> usize {
    let mut start = end;
    while start > 0 && class(bytes[start - 1]) {
        start -= 1;
    }
    start
}

/// The runs of a byte class read so far in one text, by class. Where a trigger or a
/// literal repeats inside its own value's run (`password=password=...`,
/// `sk-sk-sk-...`), each one's value ends where that run does: known, instead of read
/// again from each, which cost time in the square of the run's length (a megabyte of
/// `sk-` took minutes of a core).
#[derive(Default)]
pub(super) struct KnownRuns {
    /// The class (its address), where a read started and where its run ended: the
    /// last read of each class.
    runs: [(usize, usize, usize); 8],
    /// An unquoted password read from a place: that place, where its run's last byte
    /// that is neither a closer nor a trailer ends, and where the password ends.
    password_tail: Option<(usize, usize, Option<usize>)>,
}

impl KnownRuns {
    /// Where the run of `class` starting at `at` ends, as [`run_forward`] gives it.
    #[inline(always)]
    pub(super) fn end(&mut self, bytes: &[u8], at: usize, class: fn(u8) -> bool) -> usize {
        // Classes are told by address: one with two addresses is only read twice. A
        // class keeps one place, taken in the order classes are first read (the search
        // stops at it or at the first free one): its many short runs (the
        // `is_value_byte` runs of `password=password=...`) must not push out another
        // class's long one. Past eight classes, the last place is shared.
        let key = class as usize;
        let slot = self
            .runs
            .iter()
            .position(|&(known, ..)| known == key || known == 0)
            .unwrap_or(self.runs.len() - 1);
        let (known, from, end) = self.runs[slot];
        if known == key && from <= at && at <= end {
            return end;
        }
        let end = run_forward(bytes, at, class);
        self.runs[slot] = (key, at, end);
        end
    }
}

/// Where a run of bytes of `class` starting at `start` ends.
fn run_forward(bytes: &[u8], start: usize, class: impl Fn(u8) -> bool) -> usize {
    let mut end = start.min(bytes.len());
    while end < bytes.len() && class(bytes[end]) {
        end += 1;
    }
    end
}

/// `\b` (ASCII) just before `at`, where `bytes[at]` is a word byte.
fn word_starts(bytes: &[u8], at: usize) -> bool {
    at == 0 || !is_word_byte(bytes[at - 1])
}

/// The places the triggered shapes may start, in one pass over the bytes. Only places
/// where the shape's pattern matches are given.
pub fn candidates(bytes: &[u8], out: &mut Vec<Candidate>) {
    let mut push = |start: usize, anchor: usize, shape: Shape, end: usize| {
        out.push(Candidate {
            start,
            anchor,
            shape,
            end,
        })
    };
    let mut number_run = NumberRun::default();
    let mut known = KnownRuns::default();
    let mut i = 0;
    while i < bytes.len() {
        // Runs of prose without a digit or `:=@` are passed thirty-two bytes at a time,
        // then eight bytes at a time up to the first that may be a trigger.
        if let Some(block) = bytes[i..].first_chunk::<32>()
            && !block_may_trigger(block)
        {
            i += 32;
            continue;
        }
        if let Some(word) = bytes[i..].first_chunk::<8>() {
            let mask = trigger_range_mask(u64::from_le_bytes(*word));
            if mask == 0 {
                i += 8;
                continue;
            }
            i += mask.trailing_zeros() as usize / 8;
        }
        i = at_trigger(bytes, i, &mut number_run, &mut known, &mut push);
    }
}

/// The candidates from the byte at `i`, if it is a trigger; where the scan goes on.
fn at_trigger(
    bytes: &[u8],
    i: usize,
    number_run: &mut NumberRun,
    known: &mut KnownRuns,
    push: &mut impl FnMut(usize, usize, Shape, usize),
) -> usize {
    let trigger = TRIGGERS[usize::from(bytes[i])];
    match trigger {
        NONE => {}
        DIGIT => {
            let digits_end = run_forward(bytes, i, |b| b.is_ascii_digit());
            if !word_starts(bytes, i) {
                if i >= 2
                    && bytes[i - 1].is_ascii_alphabetic()
                    // Before the call: digits inside hex (`fdf0304`) come after letters.
                    && word_starts(bytes, i - 2)
                    && let Some(end) = iban_end(bytes, i - 2)
                {
                    push(i - 2, i, Shape::Iban, end);
                }
            } else {
                let before = i.checked_sub(1).map(|p| bytes[p]);
                // A number ends at the same place whether it starts at its first
                // digit or at the `(+`, `+(`, `+` or `(` before it.
                let number = number_run.end_from(bytes, i, digits_end);
                if let Some(end) = number {
                    let two_before = i.checked_sub(2).map(|p| bytes[p]);
                    if matches!(
                        (two_before, before),
                        (Some(b'('), Some(b'+')) | (Some(b'+'), Some(b'('))
                    ) {
                        push(i - 2, i, Shape::Number, end);
                    }
                    if matches!(before, Some(b'+' | b'(')) {
                        push(i - 1, i, Shape::Number, end);
                    }
                }
                if digits_end - i <= 3
                    && bytes.get(digits_end) == Some(&b'.')
                    && let Some(end) = ipv4_end(bytes, i)
                {
                    push(i, i, Shape::Ipv4, end);
                }
                if let Some(end) = number {
                    push(i, i, Shape::Number, end);
                }
            }
            return digits_end;
        }
        AT => {
            let local = run_back(bytes, i, is_local_byte);
            if local < i
                && let Some(end) = domain_end(bytes, i + 1)
            {
                push(local, i, Shape::Email, end);
            }
        }
        _ => {
            if trigger == COLON {
                if bytes[i + 1..].starts_with(b"//") {
                    let scheme = run_back(bytes, i, |b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-')
                    });
                    // The pattern starts at any letter of the scheme, and ends at
                    // the same place from each: the walk gets the first, and the
                    // others after a digit or `+.-` should the first be refused.
                    let first_letter = (scheme..i).find(|&at| bytes[at].is_ascii_alphabetic());
                    if let Some(end) = first_letter.and_then(|at| url_password_end(bytes, at)) {
                        for at in scheme..i {
                            if bytes[at].is_ascii_alphabetic()
                                && (at == scheme || !bytes[at - 1].is_ascii_alphabetic())
                            {
                                push(at, i, Shape::UrlPassword, end);
                            }
                        }
                    }
                }
                // The first colon of a run of hex digits and colons: a later one
                // has a colon or a hex digit before its address.
                let hex = run_back(bytes, i, is_hex);
                if (hex == 0 || bytes[hex - 1] != b':')
                    && let Some(end) = ipv6_end(bytes, hex)
                {
                    push(hex, i, Shape::Ipv6, end);
                }
            }
            key_assignment(bytes, i, known, push);
        }
    }
    i + 1
}

/// curl's `-u user:password` at the `:` at `i` (`Shape::UserPassword`), the user's name
/// starting at `user`: after a quote or not, after `-u` and blanks, `--user` and
/// blanks, or `--user=`; the password is six bytes or more right after the `:`.
///
/// Out of line: inlined into `key_assignment`, and so into the scan, it made the whole
/// scan dearer (registers), not only the colons it looks at.
#[inline(never)]
fn user_password(
    bytes: &[u8],
    user: usize,
    i: usize,
    push: &mut impl FnMut(usize, usize, Shape, usize),
) {
    if !leads_with(&bytes[i + 1..], 6, is_assigned_password_byte) {
        return;
    }
    let mut at = user;
    if at > 0 && is_quote(bytes[at - 1]) {
        at -= 1;
    }
    let start = if at >= 7 && bytes[at - 1] == b'=' {
        (&bytes[at - 7..at - 1] == b"--user").then(|| at - 7)
    } else {
        let blanks = run_back(bytes, at, is_blank);
        if blanks == at {
            None
        } else if blanks >= 6 && &bytes[blanks - 6..blanks] == b"--user" {
            Some(blanks - 6)
        } else if blanks >= 2 && &bytes[blanks - 2..blanks] == b"-u" {
            Some(blanks - 2)
        } else {
            None
        }
    };
    if let Some(start) = start {
        push(
            start,
            i,
            Shape::UserPassword,
            run_forward(bytes, i + 1, is_assigned_password_byte),
        );
    }
}

/// `(?:-u[ \t]+|--user(?:[ \t]+|=))["']?[name]+:[password]{6,}` at `start`: the
/// `UserPassword` pattern of `shapes::SHAPES`.
fn user_password_end(bytes: &[u8], start: usize) -> Option<usize> {
    let rest = bytes.get(start..)?;
    let mut at = if rest.starts_with(b"--user") {
        let after = start + 6;
        match bytes.get(after) {
            Some(b'=') => after + 1,
            _ => {
                let blanks = run_forward(bytes, after, is_blank);
                (blanks > after).then_some(blanks)?
            }
        }
    } else if rest.starts_with(b"-u") {
        let blanks = run_forward(bytes, start + 2, is_blank);
        (blanks > start + 2).then_some(blanks)?
    } else {
        return None;
    };
    if bytes.get(at).is_some_and(|&b| is_quote(b)) {
        at += 1;
    }
    let user_end = run_forward(bytes, at, is_name_byte);
    if user_end == at || bytes.get(user_end) != Some(&b':') {
        return None;
    }
    let end = run_forward(bytes, user_end + 1, is_assigned_password_byte);
    (end - (user_end + 1) >= 6).then_some(end)
}

/// `name: value` or `name = value` at the `:`/`=` at `i`: a key-like name with a value
/// (`Shape::Assigned`), or `Authorization: Basic`.
/// Out of line: inlined into the walk, its reading of quoted passwords cost the walk's
/// loop some 800 instructions a request on the masking bench (spills), where a call
/// per `:`/`=` costs 400.
#[inline(never)]
fn key_assignment(
    bytes: &[u8],
    i: usize,
    known: &mut KnownRuns,
    push: &mut impl FnMut(usize, usize, Shape, usize),
) {
    // Most colons and equals signs in prose and code have a short word after them:
    // neither shape can match then (a value of 16, or `basic` and 8).
    let separator_end = run_forward(bytes, i + 1, is_blank);
    let mut value = separator_end;
    let quote = bytes.get(value).copied().filter(|&b| is_quote(b));
    if quote.is_some() {
        value += 1;
    }
    let head = &bytes[value.min(bytes.len())..];
    let short = !leads_with(head, 5, is_value_byte);
    // A password may hold any printable byte, and is taken from six; a quoted one may
    // also start with a short word or hold a blank early (`"open sesame"`).
    // From the opening quote: it is the value's when the value is too short without.
    let password_head = leads_with(&bytes[separator_end..], 6, is_password_run_byte);
    let quoted_head = !password_head
        && quote.is_some()
        && leads_with(head, 6, |b| is_password_run_byte(b) || is_blank(b));
    if short && !password_head && !quoted_head {
        return;
    }
    let mut name_end = run_back(bytes, i, is_blank);
    if name_end > 0 && is_quote(bytes[name_end - 1]) {
        name_end -= 1;
    }
    let name_start = run_back(bytes, name_end, is_name_byte);
    if name_start == name_end {
        return;
    }
    if password_head && name_end == i && bytes[i] == b':' {
        user_password(bytes, name_start, i, push);
    }
    let name = &bytes[name_start..name_end];
    if name_start > 0
        && matches!(bytes[name_start - 1], b'?' | b'&')
        && name_end == i
        && bytes[i] == b'='
        && let Some(end) = query_secret_value_end(bytes, name, i)
    {
        push(name_start - 1, i, Shape::QuerySecret, end);
    }
    if name.len() >= 13
        && name[name.len() - 13..].eq_ignore_ascii_case(b"authorization")
        && let Some(end) = basic_end(bytes, name_end - 13)
    {
        push(name_end - 13, i, Shape::Basic, end);
    }
    // `assigned_end(bytes, name_start)` without reading the name and the separator
    // again: the name runs to `name_end` (a quote, blank or `:=` follows it) and the
    // separator from there is the one at `i`, so the value starts at `value`.
    let value_end = known.end(bytes, value, is_value_byte);
    let assigned = (value_end - value >= 16 && bounds::names_a_key(name)).then_some(value_end);
    debug_assert_eq!(
        assigned,
        assigned_end(bytes, name_start, &mut KnownRuns::default())
    );
    if let Some(end) = assigned {
        push(name_start, i, Shape::Assigned, end);
    }
    if (password_head || quoted_head)
        && bounds::names_a_password(name)
        && let Some(end) = password_value_end(bytes, separator_end, is_quote, known)
    {
        debug_assert_eq!(
            Some(end),
            password_end(bytes, name_start, &mut KnownRuns::default())
        );
        push(name_start, i, Shape::Password, end);
    }
}

/// The end of a match of the triggered `shape` anchored at `start`, as its pattern in
/// `shapes::SHAPES` would give it.
/// `known`: the runs read before in the same text, as [`KnownRuns`] says.
pub fn end_of(shape: Shape, bytes: &[u8], start: usize, known: &mut KnownRuns) -> Option<usize> {
    match shape {
        Shape::UrlPassword => url_password_end(bytes, start),
        Shape::Basic => basic_end(bytes, start),
        Shape::Assigned => assigned_end(bytes, start, known),
        Shape::QuerySecret => query_secret_end(bytes, start),
        Shape::Password => password_end(bytes, start, known),
        Shape::UserPassword => user_password_end(bytes, start),
        Shape::Email => email_end(bytes, start),
        Shape::Iban => iban_end(bytes, start),
        Shape::Ipv6 => ipv6_end(bytes, start),
        Shape::Ipv4 => ipv4_end(bytes, start),
        Shape::Number => number_start_end(bytes, start),
        _ => None,
    }
}

/// The run of number bytes the scan is in, read once for all its digit groups: each
/// group's number (`number_end`) ends at the run's last digit, so a number of many
/// groups is not read again from each.
#[derive(Default)]
struct NumberRun {
    /// The digit the run was read from, and the run's end.
    from: usize,
    run_end: usize,
    /// The offset of the run's last digit (after `from`), if any.
    last: Option<usize>,
}

impl NumberRun {
    /// `number_end(bytes, digit)`, where the digits from `digit` run to `digits_end`
    /// (already read: digits are number bytes, so the run goes on from there).
    fn end_from(&mut self, bytes: &[u8], digit: usize, digits_end: usize) -> Option<usize> {
        if !(digit > self.from && digit < self.run_end) {
            let run_end = run_forward(bytes, digits_end.max(digit + 1), is_number_byte);
            *self = NumberRun {
                from: digit,
                run_end,
                last: (digit + 1..run_end)
                    .rev()
                    .find(|&at| bytes[at].is_ascii_digit()),
            };
        }
        let last = self.last.filter(|&last| last > digit)?;
        (last - digit >= 5).then_some(last + 1)
    }
}

/// `(?:\+\(?|\(\+?|\b)[0-9][0-9 ().\-/]{4,}[0-9]` at `start`.
fn number_start_end(bytes: &[u8], start: usize) -> Option<usize> {
    let first = *bytes.get(start)?;
    let digit = match first {
        b'+' if bytes.get(start + 1) == Some(&b'(') => start + 2,
        b'+' => start + 1,
        b'(' if bytes.get(start + 1) == Some(&b'+') => start + 2,
        b'(' => start + 1,
        _ if word_starts(bytes, start) => start,
        _ => return None,
    };
    number_end(bytes, digit)
}

/// `[0-9][0-9 ().\-/]{4,}[0-9]` at `digit`: up to the last digit of the run.
fn number_end(bytes: &[u8], digit: usize) -> Option<usize> {
    if !bytes.get(digit)?.is_ascii_digit() {
        return None;
    }
    let run_end = run_forward(bytes, digit + 1, is_number_byte);
    let last = (digit + 1..run_end)
        .rev()
        .find(|&at| bytes[at].is_ascii_digit())?;
    (last - digit >= 5).then_some(last + 1)
}

/// `\b[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}` at `start`.
fn ipv4_end(bytes: &[u8], start: usize) -> Option<usize> {
    if !bytes.get(start)?.is_ascii_digit() || !word_starts(bytes, start) {
        return None;
    }
    let mut at = start;
    for octet in 0..4 {
        let digits = run_forward(bytes, at, |b| b.is_ascii_digit()) - at;
        if digits == 0 {
            return None;
        }
        if octet == 3 {
            return Some(at + digits.min(3));
        }
        if digits > 3 || bytes.get(at + digits) != Some(&b'.') {
            return None;
        }
        at += digits + 1;
    }
    None
}

/// `\b[A-Z]{2}[0-9]{2}[ \-]?[A-Z0-9]{4}` at `start`, or the same in small letters.
fn iban_end(bytes: &[u8], start: usize) -> Option<usize> {
    let head = bytes.get(start..start + 4)?;
    let small = head[0].is_ascii_lowercase();
    let letter = |b: u8| {
        if small {
            b.is_ascii_lowercase()
        } else {
            b.is_ascii_uppercase()
        }
    };
    if !(letter(head[0])
        && letter(head[1])
        && head[2].is_ascii_digit()
        && head[3].is_ascii_digit()
        && word_starts(bytes, start))
    {
        return None;
    }
    let mut at = start + 4;
    if matches!(bytes.get(at), Some(b' ' | b'-')) {
        at += 1;
    }
    let group = bytes.get(at..at + 4)?;
    group
        .iter()
        .all(|&b| letter(b) || b.is_ascii_digit())
        .then_some(at + 4)
}

/// `[A-Za-z0-9._%+\-]+@` then the domain, at `start`.
fn email_end(bytes: &[u8], start: usize) -> Option<usize> {
    let at = run_forward(bytes, start, is_local_byte);
    if at == start || bytes.get(at) != Some(&b'@') {
        return None;
    }
    domain_end(bytes, at + 1)
}

/// `[label]+(?:\.[label]+)*\.[A-Za-z]{2,}` at `start`, a label byte being
/// `[A-Za-z0-9\-]` or any byte of a non-ASCII character (internationalised domains,
/// `müller.de`): the labels are taken greedily, then given back one at a time until a
/// label after a dot starts with two ASCII letters; the match ends after them.
pub(super) fn domain_end(bytes: &[u8], start: usize) -> Option<usize> {
    let is_label_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80;
    let first_end = run_forward(bytes, start, is_label_byte);
    if first_end == start {
        return None;
    }
    // Over the dots after which a non-empty label follows, the last whose label starts
    // with two letters: where the labels given back stop.
    let mut end = None;
    let mut at = first_end;
    while bytes.get(at) == Some(&b'.') {
        let label_end = run_forward(bytes, at + 1, is_label_byte);
        if label_end == at + 1 {
            break;
        }
        let letters = run_forward(bytes, at + 1, |b| b.is_ascii_alphabetic()) - at - 1;
        if letters >= 2 {
            end = Some(at + 1 + letters);
        }
        at = label_end;
    }
    end
}

/// `[0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f:]*` at `start`: the whole run of
/// hex digits and colons, when it has three colons.
fn ipv6_end(bytes: &[u8], start: usize) -> Option<usize> {
    let end = run_forward(bytes, start, |b| is_hex(b) || b == b':');
    let colons = bytes[start.min(end)..end]
        .iter()
        .filter(|&&b| b == b':')
        .count();
    (colons >= 3).then_some(end)
}

/// `[A-Za-z][A-Za-z0-9+.\-]*://[user]*:[password]+@` at `start`: up to the last `@` of
/// the password's run. The user may be empty (`redis://:secret@host`).
fn url_password_end(bytes: &[u8], start: usize) -> Option<usize> {
    if !bytes.get(start)?.is_ascii_alphabetic() {
        return None;
    }
    let scheme_end = run_forward(bytes, start + 1, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-')
    });
    if !bytes[scheme_end..].starts_with(b"://") {
        return None;
    }
    let user = scheme_end + 3;
    let user_end = run_forward(bytes, user, is_user_byte);
    if bytes.get(user_end) != Some(&b':') {
        return None;
    }
    let password = user_end + 1;
    let password_end = run_forward(bytes, password, is_password_byte);
    (password + 1..password_end)
        .rev()
        .find(|&at| bytes[at] == b'@')
        .map(|at| at + 1)
}

/// After a name: `["']?[ \t]*[:=][ \t]*`; where the value, or its opening quote, starts.
fn separator_end(bytes: &[u8], name_end: usize) -> Option<usize> {
    let mut at = name_end;
    if bytes.get(at).is_some_and(|&b| is_quote(b)) {
        at += 1;
    }
    at = run_forward(bytes, at, is_blank);
    if !matches!(bytes.get(at), Some(b':' | b'=')) {
        return None;
    }
    Some(run_forward(bytes, at + 1, is_blank))
}

/// After a name: `["']?[ \t]*[:=][ \t]*["']?`; where the value starts.
fn after_separator(bytes: &[u8], name_end: usize) -> Option<usize> {
    let mut at = separator_end(bytes, name_end)?;
    if bytes.get(at).is_some_and(|&b| is_quote(b)) {
        at += 1;
    }
    Some(at)
}

/// The longest quoted password read whole, blanks and all: a passphrase of a few words
/// is under it, a sentence in quotes (a form's hint, a message) mostly over it.
const QUOTED_PASSWORD_MAX: usize = 64;

/// A password's value at `at`, just past the separator's blanks, to its end:
/// quoted, to past its closing quote ([`quoted_password_end`]: `"correct horse battery
/// staple"`, `'a,b;c d'`, `"quote\"inside99"`); otherwise after an optional opening
/// quote (or other byte that `opens`), or with it should the value be too short
/// without, an unquoted value ([`unquoted_password_end`]).
pub(super) fn password_value_end(
    bytes: &[u8],
    at: usize,
    opens: impl Fn(u8) -> bool,
    known: &mut KnownRuns,
) -> Option<usize> {
    if let Some(&open) = bytes.get(at) {
        if is_quote(open)
            && let Some(end) = quoted_password_end(bytes, at + 1, open)
        {
            return Some(end);
        }
        if opens(open)
            && let Some(end) = unquoted_password_end(bytes, at + 1, known)
        {
            return Some(end);
        }
    }
    unquoted_password_end(bytes, at, known)
}

/// Quotes, `,`, `;` and the backtick: inside an unquoted password they are its own
/// (`it'sMyPass99`, `abc,def123456`), but at its end they close what holds it (a
/// string, code's argument list, a connection string's field, Markdown's inline code).
fn is_password_closer(b: u8) -> bool {
    matches!(b, b'"' | b'\'' | b',' | b';' | b'`')
}

/// Closing brackets and the full stop: a password's own after its last other byte
/// (`P@ss(1)`), the text's after a closer (`"--password=hunter22"])`).
fn is_password_trailer(b: u8) -> bool {
    matches!(b, b')' | b']' | b'}' | b'>' | b'.')
}

/// An unquoted password at `value`: the run of printable characters up to a blank, a
/// line's end or a blank beyond ASCII, less what closes it at its end (a closer, then
/// only closers and trailers: `hunter22",` ends before its `"`; `Pa$$w0rd\xyz123`
/// and `abc"def12345` are taken whole, `\` being no escape outside quotes), six
/// characters or more. A password is never cut inside: of a run whose end is in
/// doubt, the run is taken (`password=abc;Database=x` takes `abc;Database=x`).
pub(super) fn unquoted_password_end(
    bytes: &[u8],
    value: usize,
    known: &mut KnownRuns,
) -> Option<usize> {
    // Where the value ends is told by its run's tail, from the run's last byte that is
    // neither a closer nor a trailer: the same for every start up to that byte
    // (`password=password=...` reads the run once, not once for each `=`).
    let end = match known.password_tail {
        Some((from, last_other, end)) if from <= value && value < last_other => end,
        _ => {
            let (last_other, end) = unquoted_password_tail(bytes, value);
            known.password_tail = Some((value, last_other, end));
            end
        }
    };
    end.filter(|&end| holds_six_characters(bytes, value, end))
}

/// Whether `bytes[value..end]` (a password's run) holds six characters or more, read
/// as [`unquoted_password_tail`] counts them.
fn holds_six_characters(bytes: &[u8], value: usize, end: usize) -> bool {
    let mut at = value;
    for _ in 0..6 {
        if at >= end {
            return false;
        }
        at += if bytes[at] < 0x80 {
            1
        } else {
            char_at(bytes, at).map_or(1, |(_, len)| len)
        };
    }
    true
}

/// [`unquoted_password_end`] read from `value`: where its run's last byte neither a
/// closer nor a trailer ends (`value` if none), and where the password ends, whatever
/// its length.
fn unquoted_password_tail(bytes: &[u8], value: usize) -> (usize, Option<usize>) {
    let mut last_other = value;
    let mut at = value;
    // Where the value ends so far.
    let mut end = None;
    // A closer since the last other byte, or no such byte yet: a trailer then does not
    // extend the value.
    let mut closed = true;
    while let Some(&b) = bytes.get(at) {
        let len = if b < 0x80 {
            if !b.is_ascii_graphic() {
                break;
            }
            1
        } else {
            match char_at(bytes, at) {
                Some((c, _)) if c.is_whitespace() => break,
                Some((_, len)) => len,
                None => 1,
            }
        };
        at += len;
        if is_password_closer(b) {
            closed = true;
        } else if !is_password_trailer(b) {
            closed = false;
            last_other = at;
            end = Some(at);
        } else if !closed {
            end = Some(at);
        }
    }
    (last_other, end)
}

/// The length of a quoted password's unit at `at`: a printable byte or a blank but
/// `quote` and `\`, a character beyond ASCII, or `\` and the byte or character it
/// escapes (`\"` inside `"..."`); `None` for a line's end or a control byte.
fn quoted_unit_len(bytes: &[u8], at: usize, quote: u8) -> Option<usize> {
    let b = *bytes.get(at)?;
    let one = |b: u8| b == b'\t' || (b' '..=b'~').contains(&b);
    if b == b'\\' {
        let next = *bytes.get(at + 1)?;
        return if next < 0x80 {
            one(next).then_some(2)
        } else {
            Some(1 + char_at(bytes, at + 1).map_or(1, |(_, len)| len))
        };
    }
    if b < 0x80 {
        return (one(b) && b != quote).then_some(1);
    }
    Some(char_at(bytes, at).map_or(1, |(_, len)| len))
}

/// The quoted password whose first byte is at `start`, opened by `quote`: past its
/// closing quote, when it is 6 to [`QUOTED_PASSWORD_MAX`] units
/// ([`quoted_unit_len`]: an escape is one) on one line and does not start with a
/// blank. A `\` escapes the byte after it, the quote too: a `\"` is no closing quote.
fn quoted_password_end(bytes: &[u8], start: usize, quote: u8) -> Option<usize> {
    if bytes.get(start).is_some_and(|&b| is_blank(b)) {
        return None;
    }
    let mut at = start;
    let mut units = 0;
    while units <= QUOTED_PASSWORD_MAX && bytes.get(at) != Some(&quote) {
        at += quoted_unit_len(bytes, at, quote)?;
        units += 1;
    }
    ((6..=QUOTED_PASSWORD_MAX).contains(&units) && bytes.get(at) == Some(&quote)).then_some(at + 1)
}

/// `(?i:[name]*(?:key|token|secret|credential|auth)[name]*)["']?[ \t]*[:=][ \t]*["']?`
/// then `[value]{16,}`, at `start`.
fn assigned_end(bytes: &[u8], start: usize, known: &mut KnownRuns) -> Option<usize> {
    let name_end = run_forward(bytes, start, is_name_byte);
    let value = after_separator(bytes, name_end)?;
    let value_end = known.end(bytes, value, is_value_byte);
    // The name's words last: most assignments in prose and code have a short value.
    let name = &bytes[start..name_end];
    (value_end - value >= 16 && bounds::names_a_key(name)).then_some(value_end)
}

/// `[?&]`, a query parameter's name that is a credential's, `=`, then sixteen or more
/// of `[A-Za-z0-9_.~+/\-]` or `%` and two hex digits, at `start`: the `QuerySecret`
/// pattern of `shapes::SHAPES`.
fn query_secret_end(bytes: &[u8], start: usize) -> Option<usize> {
    if !matches!(bytes.get(start), Some(b'?' | b'&')) {
        return None;
    }
    let name_end = run_forward(bytes, start + 1, is_name_byte);
    if bytes.get(name_end) != Some(&b'=') {
        return None;
    }
    query_secret_value_end(bytes, &bytes[start + 1..name_end], name_end)
}

/// The end of a query parameter's value from just past its `=` at `equals`, when the
/// parameter's `name` is a credential's and the value is sixteen units or more.
///
/// Out of line: few `=`s are a query's, and the key assignments' reader is on every one.
#[inline(never)]
fn query_secret_value_end(bytes: &[u8], name: &[u8], equals: usize) -> Option<usize> {
    let mut end = equals + 1;
    let mut units = 0;
    loop {
        match bytes.get(end) {
            Some(&b) if is_value_byte(b) => end += 1,
            Some(b'%')
                if bytes
                    .get(end + 1..end + 3)
                    .is_some_and(|hex| hex.iter().all(|&b| is_hex(b))) =>
            {
                end += 3
            }
            _ => break,
        }
        units += 1;
    }
    (units >= 16 && bounds::names_a_query_secret(name)).then_some(end)
}

/// Where the value assigned to the name at `start` begins (after `["']?[ \t]*[:=][ \t]*["']?`).
pub(super) fn assigned_value_start(bytes: &[u8], start: usize) -> Option<usize> {
    after_separator(bytes, run_forward(bytes, start, is_name_byte))
}

/// A name ending in a password word ([`bounds::names_a_password`]), the separator, then
/// a value as [`password_value_end`] reads it, at `start`: the `Password` pattern of
/// `shapes::SHAPES`.
fn password_end(bytes: &[u8], start: usize, known: &mut KnownRuns) -> Option<usize> {
    let name_end = run_forward(bytes, start, is_name_byte);
    let value = separator_end(bytes, name_end)?;
    let value_end = password_value_end(bytes, value, is_quote, known)?;
    bounds::names_a_password(&bytes[start..name_end]).then_some(value_end)
}

/// `(?i:authorization)["']?[ \t]*[:=][ \t]*["']?(?i:basic)[ \t]+[A-Za-z0-9+/]{8,}` at
/// `start`.
fn basic_end(bytes: &[u8], start: usize) -> Option<usize> {
    if !bytes
        .get(start..start + 13)?
        .eq_ignore_ascii_case(b"authorization")
    {
        return None;
    }
    let scheme = after_separator(bytes, start + 13)?;
    if !bytes
        .get(scheme..scheme + 5)?
        .eq_ignore_ascii_case(b"basic")
    {
        return None;
    }
    let value = run_forward(bytes, scheme + 5, is_blank);
    if value == scheme + 5 {
        return None;
    }
    let value_end = run_forward(bytes, value, |b| {
        b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
    });
    (value_end - value >= 8).then_some(value_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static CLASS_READS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// `[A-Za-z0-9=\-]`, counting the bytes it is asked about.
    fn counted(b: u8) -> bool {
        CLASS_READS.with(|reads| reads.set(reads.get() + 1));
        b.is_ascii_alphanumeric() || b == b'=' || b == b'-'
    }

    /// A run is read once however many reads start inside it (`password=password=...`):
    /// the bytes looked at grow with the text, not with its square.
    #[test]
    fn known_runs_read_a_run_once() {
        let text = "x password=".to_string() + &"password=".repeat(10_000) + " end";
        let bytes = text.as_bytes();
        let starts: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i] == b'=').collect();
        let run_end = bytes.len() - " end".len();
        let mut known = KnownRuns::default();
        CLASS_READS.with(|reads| reads.set(0));
        for &at in &starts {
            // Another class's short run read between (the name's, as the scan does).
            known.end(bytes, at + 1, |b| b.is_ascii_lowercase());
            assert_eq!(known.end(bytes, at + 1, counted), run_end);
        }
        let reads = CLASS_READS.with(std::cell::Cell::get);
        assert!(
            reads <= bytes.len(),
            "{reads} reads for {} bytes",
            bytes.len()
        );
    }

    /// An unquoted password's end told by the run's tail read before is the end a
    /// fresh read gives, from every place, closers, trailers and wide characters
    /// among them.
    #[test]
    fn a_passwords_known_tail_gives_the_fresh_end() {
        let pieces = [
            "pw=", "ab", "\"", ",", ")", ".", "é", "密", " ", "x;y", "`", "]",
        ];
        let mut seed = 7u64;
        for _ in 0..400 {
            let mut text = String::new();
            for _ in 0..24 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                text.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            let bytes = text.as_bytes();
            let mut known = KnownRuns::default();
            for value in (0..=bytes.len()).filter(|&at| text.is_char_boundary(at)) {
                let fresh = unquoted_password_end(bytes, value, &mut KnownRuns::default());
                assert_eq!(
                    unquoted_password_end(bytes, value, &mut known),
                    fresh,
                    "{text:?} from {value}"
                );
            }
        }
    }

    /// The values of a trigger repeated inside its own value's run end where a fresh
    /// read ends them (`key_assignment`'s debug assertions compare each with
    /// `assigned_end` and `password_end`).
    #[test]
    fn repeated_triggers_give_the_ends_a_fresh_read_gives() {
        for unit in ["password=", "api_key=", "pwd=", "a=b=", "password: "] {
            let text = unit.repeat(300);
            let mut scanned = Vec::new();
            candidates(text.as_bytes(), &mut scanned);
            assert!(!scanned.is_empty() || !unit.starts_with('p'), "{unit}");
        }
    }

    #[test]
    fn the_word_filter_finds_every_trigger_byte() {
        for b in 0..=255u8 {
            for at in 0..8 {
                let mut word = *b"ab c def";
                word[at] = b;
                let mask = trigger_range_mask(u64::from_le_bytes(word));
                if (0x30..=0x40).contains(&b) {
                    assert_eq!(mask.trailing_zeros() as usize / 8, at, "byte {b:#x}");
                    assert_eq!(mask.count_ones(), 1, "byte {b:#x}");
                } else {
                    assert_eq!(TRIGGERS[usize::from(b)], NONE);
                    assert_eq!(mask, 0, "byte {b:#x} at {at}");
                }
            }
        }
    }

    #[test]
    fn the_block_filter_finds_every_trigger_byte() {
        for b in 0..=255u8 {
            for at in 0..32 {
                let mut block = *b"a plain line of prose, no digits";
                block[at] = b;
                assert_eq!(
                    block_may_trigger(&block),
                    (0x30..=0x40).contains(&b),
                    "byte {b:#x} at {at}"
                );
            }
        }
    }

    use proptest::prelude::*;
    use regex_automata::util::syntax;
    use regex_automata::{Anchored, Input, meta};

    use super::super::shapes::{SHAPES, pattern};

    const TRIGGERED: [Shape; 11] = [
        Shape::UrlPassword,
        Shape::Basic,
        Shape::Assigned,
        Shape::QuerySecret,
        Shape::Password,
        Shape::UserPassword,
        Shape::Email,
        Shape::Iban,
        Shape::Ipv6,
        Shape::Ipv4,
        Shape::Number,
    ];

    /// Pieces texts are made of: every byte class the triggered patterns read, and the
    /// words they look for.
    const PIECES: &[&str] = &[
        "0",
        "1",
        "12",
        "255",
        "4111",
        "7",
        "99",
        ".",
        ":",
        "::",
        "=",
        "@",
        "+",
        "(",
        ")",
        "-",
        "_",
        "/",
        "//",
        " ",
        "\t",
        "\"",
        "'",
        "~",
        "%",
        "%40",
        ";",
        ",",
        "a",
        "b",
        "f",
        "x",
        "Z",
        "DE",
        "GB",
        "AB",
        "de",
        "gb",
        "gb82",
        "Gb82",
        "gB82",
        "west",
        "WEST",
        "key",
        "password",
        "PASS",
        "pwd",
        "bypass",
        "hunter2!",
        "p@ss#w0rd",
        "-u",
        "-u ",
        "--user",
        "--user=",
        "u",
        "Token",
        "auth",
        "authorization",
        "Authorization",
        "basic",
        "Basic",
        "http",
        "postgres",
        "://",
        "user",
        "example",
        "com",
        "io",
        "é",
        "ü",
        "\\",
        "`",
        "\u{a0}",
        ")",
        "]",
        "@müller.de",
        "例え",
        "abcdefghij",
        "ABCDEFGH",
        "0123456789",
        "fe80",
        "db8",
        "sk",
        "\n",
        "open sesame",
        "=\"",
        "?",
        "&",
        "?sig=",
        "&sig",
        "Signature",
        "x-amz-signature",
        "_signature",
        "%2F",
        "%3d",
        "%2",
        "%zz",
        // Whole values and near misses, so that every shape's edges are reached often.
        "a@example.com",
        "j.doe@mail.example.co",
        "x@y.io",
        "@host",
        "key=",
        "api_key: ",
        "\"token\": \"",
        "Authorization: Basic ",
        "+1 ",
        "(+44) ",
        "10.0.0.1",
        "1.2.3",
        "http://u:p@h",
        "s3://k:s@b",
        "redis://:",
        "#",
        "?",
        "scheme://",
        "DE89 3704",
        "DE89",
        "2001:db8::1",
        "12:30:45",
    ];

    fn anchored(shape: Shape) -> meta::Regex {
        meta::Builder::new()
            .syntax(syntax::Config::new().unicode(false).utf8(true))
            .build(pattern(shape))
            .unwrap()
    }

    /// Every password-like name and look-alike, with every separator and values of every
    /// length around the six taken: the hand reader ends where the pattern ends, at
    /// every start, and the scan lists the name.
    #[test]
    fn assigned_passwords_are_read_as_their_pattern_reads_them() {
        let regex = anchored(Shape::Password);
        let names = [
            "password",
            "DB_PASSWORD",
            "new_password2",
            "passwd",
            "PassPhrase",
            "mysql_pwd",
            "SMTP_PASS",
            "db.pass",
            "pass",
            "x-pass1",
            "bypass",
            "compass",
            "passport",
            "passwords",
            "pwdx",
            "--password",
        ];
        let separators = ["=", ": ", "\": \"", " = '", ":\t", "=\""];
        for name in names {
            for separator in separators {
                // Values of every printable byte, and of the bytes only a quoted one
                // holds (blanks, `,;`, quotes), around the quoted value's bounds.
                let values = [
                    "aZ9!@#$%^&*(){}[]<>?/~`|",
                    "a b,c;d'e\t\"f",
                    // Escapes, closers and trailers, letters beyond ASCII.
                    "é\\\"ü).',;`]x密\u{a0}",
                ];
                for (alphabet, len) in values
                    .iter()
                    .flat_map(|a| (0..9).chain(62..67).map(move |len| (a, len)))
                {
                    let value: String = alphabet.chars().cycle().skip(len).take(len).collect();
                    for after in ["", " x", "\"", "'", ",", ";", "\\", "é"] {
                        let text = format!("x {name}{separator}{value}{after}");
                        let bytes = text.as_bytes();
                        for start in 0..bytes.len() {
                            if !text.is_char_boundary(start) {
                                continue;
                            }
                            let input = Input::new(bytes).range(start..).anchored(Anchored::Yes);
                            let expected = regex.search(&input).map(|m| m.end());
                            assert_eq!(
                                password_end(bytes, start, &mut KnownRuns::default()),
                                expected,
                                "{text:?} at {start}"
                            );
                        }
                        let name_at = 2;
                        if let Some(end) = password_end(bytes, name_at, &mut KnownRuns::default()) {
                            let mut found = Vec::new();
                            candidates(bytes, &mut found);
                            assert!(
                                found.iter().any(|c| c.shape == Shape::Password
                                    && c.start == name_at
                                    && c.end == end),
                                "{text:?} not listed"
                            );
                        }
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Each hand-read shape ends where its pattern, anchored at the same place,
        /// ends, and the scan gives a candidate wherever a shape's matches begin (a
        /// place where it matches but not one byte before).
        #[test]
        fn hand_read_shapes_match_their_patterns(
            pieces in prop::collection::vec(prop::sample::select(PIECES), 0..40)
        ) {
            let text = pieces.concat();
            let bytes = text.as_bytes();
            let mut found = Vec::new();
            candidates(bytes, &mut found);
            for shape in TRIGGERED {
                let regex = anchored(shape);
                let mut matched_before = false;
                // One for the whole text, as the walk keeps it.
                let mut known = KnownRuns::default();
                for start in 0..=bytes.len() {
                    let input = Input::new(bytes).range(start..).anchored(Anchored::Yes);
                    let expected = text
                        .is_char_boundary(start)
                        .then(|| regex.search(&input).map(|m| m.end()))
                        .flatten();
                    let got = if text.is_char_boundary(start) {
                        end_of(shape, bytes, start, &mut known)
                    } else {
                        None
                    };
                    prop_assert_eq!(got, expected, "{:?} at {} in {:?}", shape, start, text);
                    let listed = found.iter().any(|c| c.shape == shape && c.start == start);
                    for c in found.iter().filter(|c| c.shape == shape && c.start == start) {
                        prop_assert_eq!(Some(c.end), expected, "{:?} end at {} in {:?}", shape, start, text);
                    }
                    if expected.is_some() && !matched_before {
                        prop_assert!(listed, "{:?} at {} not listed in {:?}", shape, start, text);
                    }
                    if listed {
                        prop_assert!(expected.is_some(), "{:?} listed at {} in {:?}", shape, start, text);
                    }
                    matched_before = expected.is_some();
                }
            }
            prop_assert_eq!(SHAPES.len(), 18);
        }
    }

    /// The scan without its shortcuts: every byte looked at, one at a time.
    fn candidates_byte_by_byte(bytes: &[u8]) -> Vec<(usize, usize, Shape, usize)> {
        let mut out = Vec::new();
        let mut push = |start, anchor, shape, end| out.push((start, anchor, shape, end));
        let mut number_run = NumberRun::default();
        let mut known = KnownRuns::default();
        let mut i = 0;
        while i < bytes.len() {
            i = at_trigger(bytes, i, &mut number_run, &mut known, &mut push);
        }
        out
    }

    fn listed(bytes: &[u8]) -> Vec<(usize, usize, Shape, usize)> {
        let mut found = Vec::new();
        candidates(bytes, &mut found);
        found
            .iter()
            .map(|c| (c.start, c.anchor, c.shape, c.end))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// The scan's shortcuts (blocks and words without a trigger byte passed whole)
        /// list exactly what looking at every byte lists, on texts of the pieces and on
        /// any bytes.
        #[test]
        fn the_scan_lists_what_a_byte_by_byte_scan_lists(
            pieces in prop::collection::vec(prop::sample::select(PIECES), 0..60),
            raw in prop::collection::vec(prop::sample::select(b"0123456789aAZz_.-+() :=@/%\t\"'ABCDEFxyk".to_vec()), 0..200),
        ) {
            let text = pieces.concat();
            prop_assert_eq!(listed(text.as_bytes()), candidates_byte_by_byte(text.as_bytes()));
            prop_assert_eq!(listed(&raw), candidates_byte_by_byte(&raw));
        }

        #[test]
        fn the_scan_lists_what_a_byte_by_byte_scan_lists_on_any_bytes(
            raw in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            prop_assert_eq!(listed(&raw), candidates_byte_by_byte(&raw));
        }
    }

    #[test]
    fn domains_give_labels_back_to_a_letter_label() {
        fn end(text: &str) -> Option<&str> {
            domain_end(text.as_bytes(), 0).map(|e| &text[..e])
        }
        assert_eq!(end("example.com"), Some("example.com"));
        assert_eq!(end("a.bc.c1"), Some("a.bc"));
        assert_eq!(end("a.b.c1"), None);
        assert_eq!(end("mail.example.com1x"), Some("mail.example.com"));
        assert_eq!(end("host"), None);
        assert_eq!(end("a..com"), None);
        assert_eq!(end("a.c"), None);
    }
}
