//! Credentials: provider API keys by their prefixes, AWS access key ids, bearer and basic
//! credentials, values assigned to key-like names, high-entropy tokens, JWTs and private
//! key blocks. Each candidate is checked whole (nothing glued on either side) and for the
//! character mix a random secret has, so UUIDs, git SHAs and digests stay.

use super::bounds;
use super::kinds::{Builtin, Found};
use super::shapes::PROVIDER_KEY_PREFIXES;
use super::triggers;

/// The longest private key block looked for between `-----BEGIN` and `-----END`.
pub const PEM_MAX: usize = 64 * 1024;
/// The longest token taken as one secret; longer runs are data (base64 images, blobs).
const TOKEN_MAX: usize = 512;

fn found(start: usize, end: usize, kind: Builtin) -> Option<Found> {
    Some(Found {
        start,
        end,
        kind,
        by_context: false,
    })
}

/// A value told by the words before it (`Bearer`, `API_KEY=`, `password:`, `my api key
/// is`).
fn found_by_context(start: usize, end: usize, kind: Builtin) -> Option<Found> {
    Some(Found {
        start,
        end,
        kind,
        by_context: true,
    })
}

fn is_pem_body_line(line: &str) -> bool {
    let line = line.trim_end_matches('\r');
    // A short last line of key material has digits or `+/=`; a word of prose has not.
    !line.is_empty()
        && line
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        && (line.len() >= 64
            || line
                .bytes()
                .any(|b| b.is_ascii_digit() || matches!(b, b'+' | b'/' | b'=')))
}

/// A `-----BEGIN ... PRIVATE KEY-----` header at `start..end`: the block up to its END
/// line. With no END line (cut off, or still to come in a stream), everything after the
/// header that still looks like key material is taken: a key never leaks for want of
/// its footer.
pub fn pem_block(text: &str, start: usize, end: usize) -> Option<Found> {
    let limit = bounds::window(text, end, end + PEM_MAX).len() + end;
    if let Some(footer) = text[end..limit].find("-----END") {
        let footer = end + footer;
        if let Some(close) = text[footer + 8..limit].find("-----") {
            return found(start, footer + 8 + close + 5, Builtin::PrivateKey);
        }
        return found(start, text.len(), Builtin::PrivateKey);
    }
    let mut at = end;
    for line in text[end..].split_inclusive('\n') {
        let content = line.trim_end_matches('\n');
        // Encrypted keys carry `Proc-Type: ...` and `DEK-Info: ...` header lines.
        let header = content.contains(": ");
        if !(content.trim().is_empty() || is_pem_body_line(content.trim()) || header) {
            break;
        }
        at += line.len();
    }
    found(start, at.max(end), Builtin::PrivateKey)
}

/// A `-----END ... PRIVATE KEY-----` footer whose header was not seen (cut off before
/// this text): the key material lines before it, back to `floor`, with the footer.
pub fn pem_footer(text: &str, start: usize, end: usize, floor: usize) -> Option<Found> {
    let mut from = start;
    // Whole lines only, back from a footer that starts its line.
    while from > floor && text.as_bytes()[from - 1] == b'\n' {
        let line_end = from - 1;
        let line_start = text[floor..line_end]
            .rfind('\n')
            .map_or(floor, |i| floor + i + 1);
        if !is_pem_body_line(text[line_start..line_end].trim()) {
            break;
        }
        from = line_start;
    }
    found(from, end, Builtin::PrivateKey)
}

/// A whole line of 64 base64 characters (the PEM line width) or 70 (OpenSSH's) with
/// upper and lower case and digits: the body of a key block whose header and footer are
/// in other pieces.
pub fn pem_line(text: &str, start: usize, end: usize) -> Option<Found> {
    let line = &text[start..end];
    let at_line_start = start == 0 || text.as_bytes()[start - 1] == b'\n';
    let rest = &text[end..];
    let at_line_end = rest.is_empty() || rest.starts_with('\n') || rest.starts_with("\r\n");
    // The place first: every token of 32 or more is asked, few are whole lines of 64.
    if !(matches!(line.len(), 64 | 70) && at_line_start && at_line_end) {
        return None;
    }
    let (upper, lower, digit) = classes(line);
    let base64 = line
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    (base64 && upper > 0 && lower > 0 && digit > 0).then_some(Found {
        start,
        end,
        kind: Builtin::PrivateKey,
        by_context: false,
    })
}

/// A JWT (`eyJ` header, payload, signature), or its head when it is cut off.
pub fn jwt(text: &str, start: usize, end: usize) -> Option<Found> {
    let end = start + text[start..end].trim_end_matches('.').len();
    if !bounds::token_may_start(text, start) || !bounds::token_may_end(text, end) {
        return None;
    }
    (end - start >= 20).then_some(Found {
        start,
        end,
        kind: Builtin::Jwt,
        by_context: false,
    })
}

/// Keys recognised by their prefix (`sk-`, `sk_live_`, `ghp_`, `xoxb-`, `AIza`, ...).
pub fn prefixed(text: &str, start: usize, end: usize) -> Option<Found> {
    // The run is the whole key, a last `-` or `_` included: URL-safe keys end with one
    // in one of 32.
    if !bounds::token_may_start(text, start) || !bounds::token_may_end(text, end) {
        return None;
    }
    looks_generated(&text[start..end]).then_some(Found {
        start,
        end,
        kind: Builtin::ApiKey,
        by_context: false,
    })
}

/// Keys whose prefix is too short or too common a word for the literal search, told
/// by their whole form instead: Twilio's API key (`SK` and 32 hex digits) and Mailgun's
/// (`key-` or `pubkey-` and 32 hex digits in small letters, as gitleaks reads them, or
/// `key-` and 32 small letters and digits, its older keys' form).
/// `start..end` is a token run of 32 or more (`detect::random_tokens`), so the prefix
/// starts a run of its own: `monkey-` or `taskkey-` and hex, or `SK` glued to a longer
/// word, are other runs. The hex must mix letters and digits, two of each at least, as
/// a hex key after a key-like word must (`SK000...` is a placeholder).
#[inline(never)]
pub fn short_prefixed_hex_key(text: &str, start: usize, end: usize) -> Option<Found> {
    let value = &text.as_bytes()[start..end];
    // The run's length picks the one prefix it can have: most runs are turned away here.
    // Mailgun's older private keys are `key-` and 32 of `[0-9a-z]`, not hex.
    let (prefix, small_only, base36): (&[u8], bool, bool) = match value.len() {
        34 => (b"SK", false, false),
        36 => (b"key-", true, true),
        39 => (b"pubkey-", true, false),
        _ => return None,
    };
    let hex = value.strip_prefix(prefix)?;
    let mut letters = 0;
    for &b in hex {
        match b {
            b'0'..=b'9' => {}
            b'a'..=b'f' => letters += 1,
            b'g'..=b'z' if base36 => letters += 1,
            b'A'..=b'F' if !small_only => letters += 1,
            _ => return None,
        }
    }
    if letters < 2
        || hex.len() - letters < 2
        || !bounds::token_may_start(text, start)
        || !bounds::token_may_end(text, end)
    {
        return None;
    }
    found(start, end, Builtin::ApiKey)
}

/// An Atlassian API token (`ATATT3x` and some 180 base64url characters, `=`, then eight
/// hex digits of checksum) whose run `start..end` (`detect::random_tokens`) ended at its
/// `=`: the checksum glued after the padding kept the run from ending there, so the
/// random-token test, which wants a word's end after it, left the whole token.
#[inline(never)]
pub fn atlassian_token(text: &str, start: usize, end: usize) -> Option<Found> {
    let bytes = text.as_bytes();
    if end - start < 64 || !bytes[start..].starts_with(b"ATATT") || bytes[end - 1] != b'=' {
        return None;
    }
    let checksum = bytes.get(end..end + 8)?;
    if !checksum.iter().all(u8::is_ascii_hexdigit)
        || !bounds::token_may_start(text, start)
        || !bounds::token_may_end(text, end + 8)
    {
        return None;
    }
    found(start, end + 8, Builtin::ApiKey)
}

/// A HashiCorp Vault token (`hvs.`, `hvb.` or `hvr.`, then the token), whose run
/// `start..end` (`detect::random_tokens`) starts just past the prefix's dot: the dot
/// kept the random-token test from taking it (a token does not start after a `.`, as a
/// file name's extension or a domain's label does).
#[inline(never)]
pub fn vault_token(text: &str, start: usize, end: usize) -> Option<Found> {
    let bytes = text.as_bytes();
    let prefix = bytes.get(start.checked_sub(4)?..start)?;
    let vault =
        prefix[..2] == *b"hv" && matches!(prefix[2], b's' | b'b' | b'r') && prefix[3] == b'.';
    if !(vault
        && end - start <= TOKEN_MAX
        && bounds::token_may_start(text, start - 4)
        && bounds::token_may_end(text, end)
        && mixes_cases_and_digits(&bytes[start..end]))
    {
        return None;
    }
    found(start - 4, end, Builtin::ApiKey)
}

/// A Sentry DSN's key: the e-mail-like `<key>@<host>` at `start..end` just after a
/// URL's `://` (`https://<32 hex>@o123.ingest.sentry.io/42`), its user part 32 hex
/// digits or more mixing letters and digits. The key is the secret, not an address.
#[inline(always)]
pub fn url_user_key(text: &str, start: usize, end: usize) -> Option<Found> {
    if start < 3 || text.as_bytes()[start - 1] != b'/' {
        return None;
    }
    url_user_key_after_slash(text, start, end)
}

/// [`url_user_key`] once a `/` is known to come before `start`: out of line, as few
/// e-mail addresses follow one.
#[inline(never)]
fn url_user_key_after_slash(text: &str, start: usize, end: usize) -> Option<Found> {
    if !text.as_bytes()[..start].ends_with(b"://") {
        return None;
    }
    let at = start + memchr::memchr(b'@', &text.as_bytes()[start..end])?;
    let user = &text.as_bytes()[start..at];
    if user.len() < 32 || hex_mixes_letters_and_digits(user) != Some(true) {
        return None;
    }
    found(start, at, Builtin::ApiKey)
}

/// The secret at the end of a webhook's URL path, whose run `start..end`
/// (`detect::random_tokens`) is not random as a whole, its path's words and slashes
/// being in it: Discord's `/api/webhooks/<id>/<68 characters>`, any path under a
/// `webhooks`, `webhook` or `hooks` part whose last part is a random token of 32 or
/// more, and Slack's `/services/T.../B.../<24 characters>`. Anyone holding such a URL
/// can post as its owner. Other paths' last parts are left: class and file names of
/// 32 or more mix cases and digits too (`ChaCha20Poly1305ParametersUnitTest`).
/// Slack's secret, shorter than a random token, is told by the path before it:
/// `services/`, then the workspace (`T`) and the channel or bot (`B`) ids in capitals
/// and digits.
#[inline(never)]
pub fn path_token(text: &str, start: usize, end: usize) -> Option<Found> {
    let bytes = text.as_bytes();
    let last = start + 1 + memchr::memrchr(b'/', &bytes[start..end])?;
    if !bounds::token_may_end(text, end) {
        return None;
    }
    let secret = &text[last..end];
    let under_hooks = || {
        bytes[start..last - 1]
            .split(|&b| b == b'/')
            .any(|part| matches!(part, b"webhooks" | b"webhook" | b"hooks"))
    };
    if (32..=TOKEN_MAX).contains(&secret.len()) && looks_random(secret) && under_hooks() {
        return found(last, end, Builtin::ApiKey);
    }
    let id = |part: &[u8], head: u8| {
        part.len() >= 9
            && part[0] == head
            && part
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    };
    let mut parts = bytes[start..last - 1].rsplit(|&b| b == b'/');
    let slack = secret.len() == 24
        && secret.bytes().all(|b| b.is_ascii_alphanumeric())
        && parts.next().is_some_and(|part| id(part, b'B'))
        && parts.next().is_some_and(|part| id(part, b'T'))
        && parts.next() == Some(&b"services"[..]);
    slack.then(|| found(last, end, Builtin::ApiKey)).flatten()
}

/// A Discord bot token around either of its dots, the one at `dot`: the bot's user id
/// (17 to 20 digits) in base64, `.`, six characters of timestamp, `.`, and 27 or more
/// of HMAC (`MTA0NjE4NTYzMjQ1NjE3MjQ5MA.GZ4v8k.` and the rest). A run of letters and
/// digits that decodes to digits alone is no word, so the id part tells the token by
/// itself; the other parts need only their lengths.
pub fn discord_token(text: &str, dot: usize) -> Option<Found> {
    let bytes = text.as_bytes();
    let dot = if bytes.get(dot + 7) == Some(&b'.') {
        dot
    } else if dot >= 7 && bytes[dot - 7] == b'.' {
        dot - 7
    } else {
        return None;
    };
    let is_part_byte = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_');
    if !bytes[dot + 1..dot + 7].iter().all(is_part_byte) {
        return None;
    }
    let id_len = bytes[dot.saturating_sub(28)..dot]
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    let id_start = dot - id_len;
    if !bounds::token_may_start(text, id_start) || !base64_of_an_id(&bytes[id_start..dot]) {
        return None;
    }
    let hmac = dot + 8;
    let end = hmac + bytes[hmac..].iter().take_while(|b| is_part_byte(b)).count();
    if !(27..=64).contains(&(end - hmac)) || !bounds::token_may_end(text, end) {
        return None;
    }
    found(id_start, end, Builtin::ApiKey)
}

/// Whether `part` is base64 (unpadded) of 17 to 20 decimal digits, the first not `0`:
/// a Discord user id, a snowflake.
fn base64_of_an_id(part: &[u8]) -> bool {
    // 17, 18, 19 and 20 bytes take 23, 24, 26 and 27 characters.
    if !matches!(part.len(), 23 | 24 | 26 | 27) {
        return false;
    }
    let sextet = |b: u8| match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        _ => b - b'0' + 52,
    };
    let mut bits = 0u32;
    let mut held = 0;
    let mut decoded = 0;
    for &b in part {
        bits = (bits << 6) | u32::from(sextet(b));
        held += 6;
        if held >= 8 {
            held -= 8;
            let byte = (bits >> held) as u8;
            let first = decoded == 0;
            if !byte.is_ascii_digit() || (first && byte == b'0') {
                return false;
            }
            decoded += 1;
        }
    }
    true
}

/// An AWS access key id: `AKIA`/`ASIA`/... and 16 upper-case letters or digits.
pub fn aws_key_id(text: &str, start: usize, end: usize) -> Option<Found> {
    (bounds::token_may_start(text, start) && bounds::token_may_end(text, end)).then_some(Found {
        start,
        end,
        kind: Builtin::AwsAccessKey,
        by_context: false,
    })
}

/// An AWS secret access key written just after its access key id, with no key-like
/// name before it: `AKIA...:wJalr...` as credential lists put them, `AKIA...,wJalr...`
/// as IAM's CSV of new keys does, `AKIA... / wJalr...`, `AKIA... and wJalr...`. Forty
/// characters of base64's alphabet with both cases; the id, whole, ends one to four
/// separators, or ` and `, before it.
#[inline(never)]
pub fn aws_secret_after_id(text: &str, start: usize, end: usize) -> Option<Found> {
    let bytes = text.as_bytes();
    let value = &bytes[start..end];
    if value.len() != 40
        || !value
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'/' || b == b'+')
        || !value.iter().any(u8::is_ascii_uppercase)
        || !value.iter().any(u8::is_ascii_lowercase)
    {
        return None;
    }
    let before = &bytes[..start];
    let separators = before
        .iter()
        .rev()
        .take(4)
        .take_while(|&&b| matches!(b, b' ' | b'\t' | b':' | b'/' | b',' | b';' | b'|'))
        .count();
    let mut id_end = start - separators;
    if separators == 1 && before[..id_end].ends_with(b" and") {
        id_end -= 4;
    }
    let id_start = id_end.checked_sub(20)?;
    let is_id = separators > 0
        && is_aws_key_id(&bytes[id_start..id_end])
        && bounds::token_may_start(text, id_start)
        && bounds::token_may_end(text, end);
    is_id.then_some(Found {
        start,
        end,
        kind: Builtin::ApiKey,
        by_context: false,
    })
}

/// A user's AWS access key id, whole: `AKIA` or `ASIA` and 16 upper-case letters or
/// digits.
fn is_aws_key_id(id: &[u8]) -> bool {
    id.len() == 20
        && [b"AKIA", b"ASIA"].iter().any(|p| id.starts_with(*p))
        && id
            .iter()
            .all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// What a secret value found after a key-like name or `Bearer` is: a JWT, an AWS key
/// id, or an API key.
fn kind_of_value(value: &str) -> Builtin {
    if value.starts_with("eyJ") {
        Builtin::Jwt
    } else if is_aws_key_id(value.as_bytes()) {
        Builtin::AwsAccessKey
    } else {
        Builtin::ApiKey
    }
}

/// The value at the end of `start..end` (after `:`/`=`, spaces or quotes), with its
/// base64 padding.
fn trailing_value(text: &str, start: usize, end: usize) -> (usize, usize) {
    let bytes = text.as_bytes();
    let mut value_start = end;
    while value_start > start && is_value_byte(bytes[value_start - 1]) {
        value_start -= 1;
    }
    let mut value_end = end;
    while bytes.get(value_end) == Some(&b'=') {
        value_end += 1;
    }
    // A sentence's full stop is not part of the value.
    while value_end > value_start && bytes[value_end - 1] == b'.' {
        value_end -= 1;
    }
    (value_start, value_end)
}

/// `[A-Za-z0-9_\-+/.~]`, one load per byte: values run to a hundred bytes and more,
/// where a chain of comparisons took several branches each.
fn is_value_byte(b: u8) -> bool {
    VALUE_BYTES[usize::from(b)]
}

const VALUE_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] =
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'/' | b'.' | b'~');
        i += 1;
    }
    table
};

/// The token after `Bearer` (matched at `start..end`).
pub fn bearer(text: &str, start: usize, end: usize) -> Option<Found> {
    if !bounds::token_may_start(text, start) {
        return None;
    }
    let (value_start, value_end) = trailing_value(text, start, end);
    let value = &text[value_start..value_end];
    let (upper, lower, digits) = classes(value);
    if value.len() < 16
        || digits == 0
        || upper + lower == 0
        || !bounds::token_may_end(text, value_end)
    {
        return None;
    }
    found_after_key_word(value_start, value_end, kind_of_value(value), value)
}

/// The credentials after `Authorization: Basic`.
pub fn basic(text: &str, start: usize, end: usize) -> Option<Found> {
    let (value_start, value_end) = trailing_value(text, start, end);
    bounds::token_may_end(text, value_end).then_some(Found {
        start: value_start,
        end: value_end,
        kind: Builtin::ApiKey,
        by_context: true,
    })
}

/// The value assigned to a key-like name (`API_KEY=...`, `"token": "..."`,
/// `X-Api-Key: ...`): taken when it looks generated (letters and digits, 16+ chars).
pub fn assigned(text: &str, start: usize, end: usize) -> Option<Found> {
    if !bounds::token_may_start(text, start) {
        return None;
    }
    let (value_start, value_end) = trailing_value(text, start, end);
    if !bounds::token_may_end(text, value_end) {
        return None;
    }
    assigned_key(value_start, &text[value_start..value_end])
}

/// The value of a URL's query parameter named as a credential (`?sig=...`,
/// `&X-Amz-Signature=...`, `?access_token=...`), `start..end` from its `?` or `&`:
/// taken whole, percent escapes and `=` padding included, when its decoded text looks
/// generated. `X-Amz-Credential`'s value is an access key id and its scope
/// (`AKIA.../20261201/us-east-1/s3/aws4_request`): only the key id is secret, and it is
/// left to the key id's own shape.
#[inline(never)]
pub fn query_secret(text: &str, start: usize, end: usize) -> Option<Found> {
    let bytes = text.as_bytes();
    let value_start = start + bytes[start..end].iter().position(|&b| b == b'=')? + 1;
    let mut value_end = end;
    while bytes.get(value_end) == Some(&b'=') {
        value_end += 1;
    }
    let decoded = percent_encoding::percent_decode(&bytes[value_start..end]).decode_utf8_lossy();
    let scoped_key_id = decoded.len() > 20
        && decoded.as_bytes()[20] == b'/'
        && kind_of_value(&decoded[..20]) == Builtin::AwsAccessKey;
    if decoded.len() < 16 || scoped_key_id || !assigned_value_looks_generated(&decoded) {
        return None;
    }
    found_after_key_word(
        value_start,
        value_end,
        kind_of_value(&decoded),
        &text[value_start..value_end],
    )
}

/// `value`, at `start`, assigned to a key-like name: a key when it is 16 or more and
/// looks generated.
fn assigned_key(start: usize, value: &str) -> Option<Found> {
    if value.len() < 16 || !assigned_value_looks_generated(value) {
        return None;
    }
    found_after_key_word(start, start + value.len(), kind_of_value(value), value)
}

/// The value assigned to a password-like name (`DB_PASSWORD=...`, `"password": "..."`,
/// `SMTP_PASS: ...`): any printable value of six or more (quoted, blanks and all),
/// unless it reads as a reference or a placeholder rather than a password.
///
/// Out of line: few candidates are passwords, and inlined into the detectors' confirm
/// step it kept that step from being inlined into the walk (2 700 instructions a
/// request more on the masking bench).
#[inline(never)]
pub fn password(text: &str, start: usize, end: usize) -> Option<Found> {
    if !bounds::token_may_start(text, start) || !bounds::token_may_end(text, end) {
        return None;
    }
    if let Some(inside) = quoted_value(text.as_bytes(), end) {
        return password_between(text, inside.start, inside.end, 6);
    }
    let value_start = triggers::assigned_value_start(text.as_bytes(), start)?;
    password_value(text, value_start, end, 6)
}

/// The password from `value_start` to `end` (a sentence's full stop not part of it):
/// taken when it is `least` bytes or more and does not read as a reference.
pub(super) fn password_value(
    text: &str,
    value_start: usize,
    end: usize,
    least: usize,
) -> Option<Found> {
    let value_end = value_start + text[value_start..end].trim_end_matches('.').len();
    password_between(text, value_start, value_end, least)
}

/// The password from `start` to `end`, as it is: taken when it is `least` bytes or
/// more and does not read as a reference.
fn password_between(text: &str, start: usize, end: usize, least: usize) -> Option<Found> {
    let value = &text[start..end];
    if value.len() < least || reads_as_a_reference(value) {
        return None;
    }
    found_by_context(start, end, Builtin::Password)
}

/// The whole of a JSON string whose member's key (`key`, raw) names a password or a
/// key: `{"password": "correct horse battery staple"}` in a tool call's arguments or a
/// login body, `{"api_key": "abcd1234efgh5678ijkl"}`. The key says what the value is,
/// as a name before `=` does in text, and the quotes bound it, spaces and all. A
/// password is four characters or more that do not read as a reference or a
/// placeholder (`"${DB_PASSWORD}"`, `"required"`); a key's value is one as an
/// assigned key's is (16 or more, no blank, generated-looking).
pub fn named_member_value(key: &[u8], value: &str) -> Option<Found> {
    // Lengths first: most strings are a message's long text, and those end it here.
    if value.len() > TOKEN_MAX || value.len() < 4 {
        return None;
    }
    let one_line = || memchr::memchr2(b'\n', b'\r', value.as_bytes()).is_none();
    if bounds::names_a_password(key) {
        let trimmed = value.trim();
        if trimmed.len() < 4 || !one_line() || reads_as_a_reference(trimmed) {
            return None;
        }
        return found_by_context(0, value.len(), Builtin::Password);
    }
    if value.bytes().any(|b| b.is_ascii_whitespace()) || !bounds::names_a_key(key) {
        return None;
    }
    assigned_key(0, value)
}

/// The text of an XML element named as a password or a key, at its closing tag's `</`
/// at `at`: `<password>S3cret!</password>` (Maven's `settings.xml`, a server's config),
/// `<db:Password>...</db:Password>`, `<apiKey>...</apiKey>`. The element's name says
/// what its text is, as a JSON member's key does ([`named_member_value`]); the text
/// must be the element's whole, on one line, right after its opening tag.
pub fn xml_element_value(text: &str, at: usize) -> Option<Found> {
    let bytes = text.as_bytes();
    let name_start = at + 2;
    let name_len = bytes[name_start..]
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':'))
        .count();
    let name = &bytes[name_start..name_start + name_len];
    if name.is_empty() || bytes.get(name_start + name_len) != Some(&b'>') {
        return None;
    }
    // The opening tag, `<name>`, ends where the text starts.
    let value_start = memchr::memrchr(b'>', &bytes[..at])? + 1;
    let open = value_start.checked_sub(name_len + 2)?;
    if bytes[open] != b'<' || &bytes[open + 1..value_start - 1] != name {
        return None;
    }
    // A namespace's prefix is not the name's (`db:Password`).
    let local = name.rsplit(|&b| b == b':').next()?;
    let found = named_member_value(local, &text[value_start..at])?;
    Some(Found {
        start: found.start + value_start,
        end: found.end + value_start,
        ..found
    })
}

/// The password of curl's `-u user:password` (matched at `start..end`, from the flag):
/// only in a curl command (`curl` among the 512 bytes before the flag), since other
/// tools' `-u` takes a user and a group (`docker run -u 1000:1000`, `-u www-data:www-data`).
pub fn user_password(text: &str, start: usize, end: usize) -> Option<Found> {
    if !bounds::token_may_start(text, start) || !bounds::token_may_end(text, end) {
        return None;
    }
    let before = bounds::window(text, start.saturating_sub(512), start);
    if !bounds::contains_ignore_case(before.as_bytes(), b"curl") {
        return None;
    }
    let value_start = start + text[start..end].find(':')? + 1;
    password_value(text, value_start, end, 1)
}

/// A password told in prose (`my password is hunter22`), matched from `assword` at
/// `start` to the value's end at `end`: `password` a word of its own, and a value that
/// does not read as a word of prose ("the password is required", "... is hashed").
pub fn prose_password(text: &str, start: usize, end: usize) -> Option<Found> {
    let bytes = text.as_bytes();
    if start == 0
        || !matches!(bytes[start - 1], b'p' | b'P')
        || !bounds::token_may_start(text, start - 1)
        || !bounds::token_may_end(text, end)
    {
        return None;
    }
    let found = match quoted_value(bytes, end) {
        Some(inside) => password_between(text, inside.start, inside.end, 6)?,
        None => {
            // The value's run starts after blanks; an opening quote or backtick is not
            // the value's unless it is too short without it (as the shape reads it).
            let mut value_start = end
                - bytes[..end]
                    .iter()
                    .rev()
                    .take_while(|&&b| triggers::is_password_run_byte(b))
                    .count();
            if matches!(bytes[value_start], b'"' | b'\'' | b'`')
                && triggers::unquoted_password_end(bytes, value_start + 1, &mut Default::default())
                    .is_some()
            {
                value_start += 1;
            }
            password_value(text, value_start, end, 6)?
        }
    };
    let told = bytes[start + 7..found.start]
        .iter()
        .any(|&b| !triggers::is_blank(b) && !matches!(b, b'"' | b'\'' | b'`'));
    if !told {
        // No verb: only a `.netrc` entry writes a password so.
        return in_a_netrc_entry(bytes, start - 1).then_some(found);
    }
    let value = &bytes[found.start..found.end];
    (unlike_a_word(value) || reads_as_a_passphrase(value)).then_some(found)
}

/// Whether the `password` at `at` is a `.netrc` entry's token: in the 256 bytes
/// before it, a `machine` entry with its host (or `default`), then `login` and its
/// user (and maybe `account` and its name), nothing else, as netrc files write them
/// (`machine api.example.com login me password s3cret`, on one line or on several).
fn in_a_netrc_entry(bytes: &[u8], at: usize) -> bool {
    let before = &bytes[at.saturating_sub(256)..at];
    let opens = |i: usize| {
        (i == 0 || before[i - 1].is_ascii_whitespace())
            && (before[i..].starts_with(b"machine") || before[i..].starts_with(b"default"))
    };
    let Some(entry) = (0..before.len()).rev().find(|&i| opens(i)) else {
        return false;
    };
    let mut tokens = before[entry..]
        .split(u8::is_ascii_whitespace)
        .filter(|token| !token.is_empty());
    match tokens.next() {
        Some(b"machine") if tokens.next().is_some() => {}
        Some(b"default") => {}
        _ => return false,
    }
    let mut login = false;
    while let Some(keyword) = tokens.next() {
        login |= keyword == b"login";
        if !matches!(keyword, b"login" | b"account") || tokens.next().is_none() {
            return false;
        }
    }
    login
}

/// The inside of a quoted password that a `Password` or `ProsePassword` match ends,
/// closing quote included, at `end`: only their quoted reading ends in a quote (an
/// unquoted one ends before its closers), and a quote like it inside is escaped, after
/// an odd run of `\` (`"quote\"inside99"`).
fn quoted_value(bytes: &[u8], end: usize) -> Option<std::ops::Range<usize>> {
    let quote = *bytes[..end].last()?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    // No further back than the longest quoted password (64 units of up to five
    // bytes, an escaped character's): a quote escaped in doubt is not followed into
    // the text before it, match after match.
    let floor = end.saturating_sub(2 + 64 * 5);
    let mut at = end - 1;
    loop {
        let open = floor + memchr::memrchr(quote, &bytes[floor..at])?;
        let escapes = bytes[..open]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if escapes % 2 == 0 {
            return Some(open + 1..end - 1);
        }
        at = open;
    }
}

/// Three words or more (`correct horse battery staple`), quoted after
/// `password is`: a passphrase, where one word would be a word of prose.
fn reads_as_a_passphrase(value: &[u8]) -> bool {
    value
        .split(|&b| b == b' ')
        .filter(|word| !word.is_empty())
        .count()
        >= 3
}

/// A digit, a small letter followed by a capital (`CorrectHorse`), one of `!@#$%^&*`
/// between letters or digits (`p@ss`; not a hyphen, a dot, a slash or brackets:
/// `case-sensitive`, `e.g.`, `and/or`, markup's `L{None}`), or three words or more joined
/// by hyphens, dots or underscores (`horse-battery-staple`): what a password has and a
/// word of prose has not.
pub(super) fn unlike_a_word(value: &[u8]) -> bool {
    let joins = |separator: u8| value.iter().filter(|&&b| b == separator).count() >= 2;
    value.iter().any(u8::is_ascii_digit)
        || joins(b'-')
        || joins(b'.')
        || joins(b'_')
        || value
            .windows(2)
            .any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase())
        || value.windows(3).any(|w| {
            w[0].is_ascii_alphanumeric()
                && matches!(w[1], b'!' | b'@' | b'#' | b'$' | b'%' | b'^' | b'&' | b'*')
                && w[2].is_ascii_alphanumeric()
        })
}

/// What code, templates and tools write where a password goes, rather than the
/// password: `${DB_PASSWORD}`, `$DB_PASSWORD`, `{{ vault.pw }}`, `<password>`, `%(pw)s`,
/// `%DB_PASS%`, `[REDACTED]`, a command's output (`` `pwd` ``), a path
/// (`PWD=/home/me`), a call or an index (`getpass(`,
/// `Some(password)`, `os.environ["PW"]`, `vec![0u8`), a field (`settings.DB_PASSWORD`,
/// `self.password`), the name passed on (`password=password)`), a type (`String`,
/// `Option<String>`, `SecretStr`), one character over and over (`********`), and words
/// that say the value is absent. Each is read whole (`{` must close with `}`), so that
/// generated passwords starting with `$`, `{`, `<`, `%` or `/` are still taken.
fn reads_as_a_reference(value: &str) -> bool {
    const ABSENT: [&str; 10] = [
        "undefined",
        "required",
        "optional",
        "string",
        "secretstr",
        "redacted",
        "hidden",
        "masked",
        "omitted",
        "filtered",
    ];
    // The objects code reads settings from (`config.db.password`, `args.pw`).
    const HOLDERS: [&str; 16] = [
        "self", "this", "cls", "config", "conf", "cfg", "settings", "args", "opts", "options",
        "params", "env", "os", "process", "secrets", "vault",
    ];
    let bytes = value.as_bytes();
    let first = bytes[0];
    let last = bytes[bytes.len() - 1];
    let enclosed = |open: &str, close: u8| value.starts_with(open) && last == close;
    let env_name = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    };
    let identifier_part = |part: &str| {
        part.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    let template = enclosed("${", b'}')
        || enclosed("$(", b')')
        || value.strip_prefix('$').is_some_and(env_name)
        || enclosed("{", b'}')
        || enclosed("<", b'>')
        || enclosed("[", b']')
        || enclosed("%(", b's')
        || (enclosed("%", b'%') && env_name(&value[1..value.len() - 1]))
        // A shell's command substitution, quoted again inside a quoted value
        // (`PWD="'`pwd`'"`).
        || {
            let inner = value.trim_matches(['\'', '"']);
            inner.len() >= 2 && inner.starts_with('`') && inner.ends_with('`')
        };
    // A path: of two parts or more, from home, or one part written as a directory's
    // name is (`/srv`, `/Users`, `/data2`; `/akVRD3l6` has capitals inside, as a
    // generated password has).
    let path = (first == b'/' || value.starts_with("~/"))
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'~'))
        && (first == b'~'
            || bytes[1..].contains(&b'/')
            || !bytes[2.min(bytes.len())..]
                .iter()
                .any(u8::is_ascii_uppercase));
    // A name (a path of them, a macro's `!`) then `(` or `[` and names, digits and
    // closing brackets, or a string: code, not a password (`P@ss(w0rd)` has no name
    // before its parenthesis, `K[A2np#o0)` has a `#` after it; `getpass("Password:`
    // and `os.environ["DB_PASSWORD"]` are read to a blank).
    let called = value.find(['(', '[']).is_some_and(|at| {
        let callee = value[..at].trim_end_matches('!');
        // Its first part is a name: the parts after may be empty (`std::env::var`).
        callee.len() >= 2
            && !callee.starts_with(['.', ':'])
            && callee
                .split(['.', ':'])
                .all(|part| part.is_empty() || identifier_part(part))
            && (value[at + 1..].starts_with(['"', '\''])
                || value[at + 1..]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b')' | b']')))
    });
    let field = value.contains('.') && value.split('.').all(identifier_part) && {
        let mut parts = value.split('.');
        let holder = parts.next().unwrap_or_default();
        HOLDERS.iter().any(|h| holder.eq_ignore_ascii_case(h))
            || parts
                .next_back()
                .is_some_and(|name| bounds::names_a_password(name.as_bytes()))
    };
    // A generic type: a name, `<`, names and `<>:`, closed (`Option<String>`,
    // `Vec<u8>`; `KNJz3LLZ<ei` is a password).
    let generic = last == b'>'
        && value.find('<').is_some_and(|at| {
            at >= 2
                && identifier_part(&value[..at])
                && value[at..]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'<' | b'>' | b':'))
        });
    // A structure opening with a string: JSON or code (`{"type": "string"}`).
    let structure = value.starts_with(['{', '[', '(']) && value[1..].starts_with(['"', '\'']);
    let passed_on = value.trim_end_matches([')', ']', '}']);
    template
        || structure
        || path
        || called
        || field
        || generic
        || bytes.iter().all(|&b| b == first)
        || (identifier_part(passed_on) && bounds::names_a_password(passed_on.as_bytes()))
        || ABSENT.iter().any(|word| value.eq_ignore_ascii_case(word))
}

/// A standalone token of 32+ characters that looks random: upper and lower case and
/// digits mixed, high entropy, few separators (an opaque bearer token, an AWS secret
/// key, a session key). Runs longer than `TOKEN_MAX` are data (base64 images), not one.
pub fn random_token(text: &str, start: usize, end: usize) -> Option<Found> {
    if end - start > TOKEN_MAX
        || !bounds::token_may_start(text, start)
        || !bounds::token_may_end(text, end)
    {
        return None;
    }
    looks_random(&text[start..end]).then_some(Found {
        start,
        end,
        kind: Builtin::ApiKey,
        by_context: false,
    })
}

/// Upper and lower case and digits mixed, high entropy, few separators.
fn looks_random(value: &str) -> bool {
    let (upper, lower, digits) = classes(value);
    let separators = value.bytes().filter(|b| matches!(b, b'-' | b'_')).count();
    let slashes = value.bytes().filter(|&b| b == b'/').count();
    upper >= 2
        && lower >= 2
        && digits >= 2
        && separators * 8 <= value.len()
        && slashes <= 3
        && entropy(value.as_bytes()) >= 4.0
}

/// A value found after a key-like name or `Bearer`, of type `kind`: told by that
/// context unless its form alone tells it too (a JWT, an AWS key id, a provider's
/// prefix, a token of 32 or more mixing both cases and digits). Only a value told by
/// its context is looked for again in the rest of the body ([`super::Span::by_context`]).
///
/// The token test is [`looks_random`]'s first part, stopped as soon as it holds: the
/// entropy cost about a thousand instructions a value here. A low-entropy token of
/// mixed classes is taken as told by its form, and its repeats are left to the
/// detectors.
fn found_after_key_word(start: usize, end: usize, kind: Builtin, value: &str) -> Option<Found> {
    let bytes = value.as_bytes();
    let by_form = kind != Builtin::ApiKey
        || ((32..=TOKEN_MAX).contains(&bytes.len()) && mixes_cases_and_digits(bytes))
        || PROVIDER_KEY_PREFIXES.iter().any(|prefix| {
            // The first byte before the comparison: a call to `memcmp` per prefix
            // otherwise.
            bytes.first() == prefix.as_bytes().first() && bytes.starts_with(prefix.as_bytes())
        });
    Some(Found {
        start,
        end,
        kind,
        by_context: !by_form,
    })
}

/// Two upper-case letters, two lower-case and two digits or more. Three counts over
/// the whole value, each a loop the compiler turns into vector compares.
fn mixes_cases_and_digits(value: &[u8]) -> bool {
    value.iter().filter(|b| b.is_ascii_uppercase()).count() >= 2
        && value.iter().filter(|b| b.is_ascii_lowercase()).count() >= 2
        && value.iter().filter(|b| b.is_ascii_digit()).count() >= 2
}

/// For a run of hex digits, whether two or more of them are letters and two or more
/// digits (a key's, not `000...`'s or a word's); `None` when `value` is not all hex.
/// One pass, left at the first byte that is not hex.
#[inline]
fn hex_mixes_letters_and_digits(value: &[u8]) -> Option<bool> {
    let mut letters = 0;
    for &b in value {
        match b {
            b'0'..=b'9' => {}
            b'a'..=b'f' | b'A'..=b'F' => letters += 1,
            _ => return None,
        }
    }
    Some(letters >= 2 && value.len() - letters >= 2)
}

/// A key of 32 to 128 characters written in prose after a key-like word (`my API key
/// is 7bd1...`, `secret 9f86...`), that [`random_token`] leaves: hex, letters and
/// digits mixed, having one case only; or both cases mixed at random with fewer than
/// two digits (`my api key is oggCsWAyRUGGDrtCilllMlxx...`). Without that word a hex
/// run cannot be told from a digest (`commit 9fceb02...`, `sha256 ...`) and stays, nor
/// a run of letters from a long name.
///
/// Out of line: most token runs are not keys, and inlined it made the loop over the
/// runs slower for all of them (218 instructions a request on the masking bench).
#[inline(never)]
pub fn key_after_key_word(text: &str, start: usize, end: usize) -> Option<Found> {
    let value = &text.as_bytes()[start..end];
    if !(32..=128).contains(&value.len()) {
        return None;
    }
    // A UUID is an identifier unless the word before names a credential; any other run
    // needs a key's shape, tested before the key word: a word's first bytes may be
    // hex, and the word costs more to look for.
    let uuid = is_uuid(value);
    let shaped = uuid
        || hex_mixes_letters_and_digits(value)
            .unwrap_or_else(|| mixed_case_with_few_digits(&text[start..end]));
    let word_before = if uuid {
        bounds::credential_word_before
    } else {
        bounds::key_word_before
    };
    if !shaped
        || !bounds::token_may_start(text, start)
        || !bounds::token_may_end(text, end)
        || !word_before(text, start)
    {
        return None;
    }
    found_by_context(start, end, Builtin::ApiKey)
}

/// `8-4-4-4-12` hex digits, either case: a UUID, an API key only when a word before
/// names a credential (`my Heroku API key is 3b241101-...`, not `request id 3b24...`).
fn is_uuid(value: &[u8]) -> bool {
    value.len() == 36
        && value.iter().enumerate().all(|(at, &b)| {
            if matches!(at, 8 | 13 | 18 | 23) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

/// Both cases mixed, fewer than two digits (more are [`random_token`]'s), random rather
/// than words: few separators, high entropy, not a type's or a function's name.
fn mixed_case_with_few_digits(value: &str) -> bool {
    // Most runs random_token left have digits: stop at the second.
    if value.bytes().filter(u8::is_ascii_digit).nth(1).is_some() {
        return false;
    }
    let (upper, lower, _) = classes(value);
    let separators = value
        .bytes()
        .filter(|b| matches!(b, b'-' | b'_' | b'/'))
        .count();
    upper >= 2
        && lower >= 2
        && separators * 8 <= value.len()
        && entropy(value.as_bytes()) >= 4.0
        && !reads_as_a_name(value)
}

/// True when `value` looks generated rather than written: letters and digits, or both
/// cases mixed (`sk-your-key-here-xxxx` and `YOUR_API_KEY` are placeholders).
fn looks_generated(value: &str) -> bool {
    let (upper, lower, digits) = classes(value);
    (digits > 0 && upper + lower > 0)
        || (upper >= 2 && lower >= 2 && entropy(value.as_bytes()) >= 3.5)
}

/// A value assigned to a key-like name: generated, not words joined by separators
/// (`auth_method: oauth2_client_credentials` stays) nor a type's or a function's name
/// in code (`credentials: AccountCredentials`, `first_token: DurationHistogram`).
fn assigned_value_looks_generated(value: &str) -> bool {
    let (upper, lower, digits) = classes(value);
    let separators = value
        .bytes()
        .filter(|b| matches!(b, b'_' | b'-' | b'.'))
        .count();
    ((digits >= 2 && upper + lower > 0) || (upper >= 2 && lower >= 2 && !reads_as_a_name(value)))
        && separators * 6 <= value.len()
        && entropy(value.as_bytes()) >= 3.0
}

/// Letters in words, each of two lower-case letters or more after its capitals
/// (`AccountCredentials`, `getAccessTokenAsync`, `HTTPRequestHandler`,
/// `getURLFromString`), parts between dots alike, with capitals a third of the letters
/// at most: a type's or a function's name. Random letters have one-letter runs and
/// capitals every other letter (`kNtYbPXWsbnjHMVe`). Of random 16-letter values about
/// 3 in 100 read as a name, of 32-letter ones 2 in 1 000; a random 16-character key has
/// no digit 6 times in 100, so about 2 in 1 000 such keys assigned to a key-like name
/// are left.
fn reads_as_a_name(value: &str) -> bool {
    let (mut letters, mut capitals) = (0, 0);
    for part in value.split('.') {
        let bytes = part.as_bytes();
        let mut at = 0;
        while at < bytes.len() {
            let caps = bytes[at..]
                .iter()
                .take_while(|b| b.is_ascii_uppercase())
                .count();
            let lower = bytes[at + caps..]
                .iter()
                .take_while(|b| b.is_ascii_lowercase())
                .count();
            at += caps + lower;
            // Not a letter; or a word of one lower-case letter; capitals alone end a part.
            if caps + lower == 0 || lower == 1 || (lower == 0 && at < bytes.len()) {
                return false;
            }
            letters += caps + lower;
            capitals += caps;
        }
    }
    letters > 0 && capitals * 3 <= letters
}

/// (upper-case letters, lower-case letters, digits) in `value`.
fn classes(value: &str) -> (usize, usize, usize) {
    value.bytes().fold((0, 0, 0), |(u, l, d), b| {
        (
            u + usize::from(b.is_ascii_uppercase()),
            l + usize::from(b.is_ascii_lowercase()),
            d + usize::from(b.is_ascii_digit()),
        )
    })
}

/// Shannon entropy in bits per byte.
fn entropy(bytes: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    // The bytes seen, as bits: only those are summed (in byte order, as a walk over
    // all 256 counts would), not every count.
    let mut seen = [0u64; 4];
    for &b in bytes {
        counts[usize::from(b)] += 1;
        seen[usize::from(b >> 6)] |= 1 << (b & 63);
    }
    let n = bytes.len() as f64;
    let term = |c: u32| {
        let p = f64::from(c) / n;
        -p * p.log2()
    };
    // A token's bytes mostly occur once to a few times: each small count's term is
    // worked out once (the same arithmetic, so the same bits) rather than a `log2`
    // per byte seen.
    let mut small = [f64::NAN; 8];
    let mut sum = 0.0;
    for (word, &bits) in seen.iter().enumerate() {
        let mut bits = bits;
        while bits != 0 {
            let c = counts[word * 64 + bits.trailing_zeros() as usize];
            sum += match small.get_mut(c as usize) {
                Some(known) if !known.is_nan() => *known,
                Some(known) => {
                    *known = term(c);
                    *known
                }
                None => term(c),
            };
            bits &= bits - 1;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The cached terms give the very bits of a `log2` per byte seen, summed in
        /// byte order: the thresholds decide exactly as before.
        #[test]
        fn entropy_is_the_plain_sum_bit_for_bit(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![4 => 0x30u8..0x3a, 4 => 0x41u8..0x5b, 1 => proptest::num::u8::ANY],
                1..300,
            ),
        ) {
            let mut counts = [0u32; 256];
            for &b in &bytes {
                counts[usize::from(b)] += 1;
            }
            let n = bytes.len() as f64;
            let mut plain = 0.0;
            for &c in counts.iter().filter(|&&c| c > 0) {
                let p = f64::from(c) / n;
                plain += -p * p.log2();
            }
            proptest::prop_assert_eq!(entropy(&bytes).to_bits(), plain.to_bits());
        }
    }

    #[test]
    fn random_tokens_but_not_digests_or_identifiers() {
        let text = "token CEXbqnQMpLlL-Bk0qG1h9VkbWCsmpKYeIbFa56lCpymnC-9c6X7I9FmkYVhHdKCJ end";
        let s = 6;
        let e = text.len() - 4;
        assert!(random_token(text, s, e).is_some());
        for look_alike in [
            "7092e1e352f5c25b5b83b244e50b6491580e1890",
            "15d32a4781b971d8b0340a78c7e446dea52ea8c13e669d41c50dfd5bc997eb22",
            "AbstractSingletonProxyFactoryBeanImplementation",
            "this_is_a_long_variable_name_for_2024_v2_Final_X",
        ] {
            assert!(
                random_token(look_alike, 0, look_alike.len()).is_none(),
                "{look_alike}"
            );
        }
    }

    /// A hex run, or one of random letters, is a key after a key-like word among the
    /// three before it on its line, and a digest or an identifier anywhere else.
    #[test]
    fn keys_after_key_words_but_not_digests_or_names() {
        let hex = "7bd15de0101a4edad6e585c3832fb1d5";
        let taken = |before: &str, value: &str, after: &str| {
            let text = format!("{before}{value}{after}");
            key_after_key_word(&text, before.len(), before.len() + value.len())
                .map(|f| (f.start, f.end, f.kind))
        };
        for before in [
            "secret ",
            "my api key is ",
            "My API Key: ",
            "auth token (",
            "the client_secret was ",
            "TOKEN\t",
        ] {
            let found = taken(before, hex, " for prod");
            assert_eq!(
                found,
                Some((before.len(), before.len() + hex.len(), Builtin::ApiKey)),
                "{before:?}"
            );
        }
        let digest = "74ef41c7d0c1225fdffe52691525bd114680a681537eb8f1f75b9d1eef5224df";
        assert!(taken("api key ", digest, "").is_some(), "64 digits");
        for (before, value) in [
            ("commit ", hex),
            ("sha256 ", digest),
            ("request id ", hex),
            // The key word is four words back, or on the line before.
            ("key was set to ", hex),
            ("api key\n", hex),
            // Too far back on the line.
            (&format!("token:{}", " ".repeat(40)), hex),
            // Not hex, too short, too long, digits or letters only.
            ("secret ", "7bd15de0101a4edad6e585c3832fb1dg"),
            ("secret ", "7bd15de0101a4edad6e585c3832fb1d"),
            ("secret ", &"7bd15de0".repeat(17)),
            ("secret ", "73215001014111651358538321111115"),
            ("secret ", "abcdefabcdefabcdefabcdefabcdefab"),
        ] {
            assert_eq!(taken(before, value, " end"), None, "{before:?} {value}");
        }
        // Inside a longer word it is not a token of its own.
        assert_eq!(taken("secret x", hex, ""), None);
        assert_eq!(taken("secret ", hex, "_v2"), None);
        // Both cases at random with fewer than two digits: a key after a key word only;
        // a long name stays even there.
        let letters = "oggCsWAyRUGGDrtCilllMlxxSouxbf4LmpZYQAwz";
        assert!(taken("my api key is ", letters, ".").is_some());
        assert!(taken("secret: ", "wJalrXUtnFEMIKMDENGbPxRfiCYEXAMPLEKEY", "").is_some());
        for (before, value) in [
            ("I see you mentioned ", letters),
            ("secret ", "AbstractSingletonProxyFactoryBeanImplementation"),
            ("token ", "JwtAuthenticationTokenFilterConfiguration"),
            ("api key ", "aaaaaaaaaaaaaaaaBBBBBBBBBBBBBBBBaaaa"),
        ] {
            assert_eq!(taken(before, value, ""), None, "{before:?} {value}");
        }
    }

    /// A secret access key just after its key id, with no name before it; a run of
    /// its length elsewhere, or after something else, is not one.
    #[test]
    fn aws_secrets_just_after_their_key_id() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let taken = |before: &str| {
            let text = format!("{before}{secret} ok");
            aws_secret_after_id(&text, before.len(), before.len() + secret.len())
                .map(|f| (f.start, f.kind))
        };
        for before in [
            "AKIAIOSFODNN7EXAMPLE:",
            "keys: AKIAIOSFODNN7EXAMPLE / ",
            "ASIAIOSFODNN7EXAMPLE and ",
            "AKIAIOSFODNN7EXAMPLE,",
            "AKIAIOSFODNN7EXAMPLE\t",
            "| AKIAIOSFODNN7EXAMPLE | ",
        ] {
            assert_eq!(
                taken(before),
                Some((before.len(), Builtin::ApiKey)),
                "{before:?}"
            );
        }
        for before in [
            "",
            "the value ",
            "XAKIAIOSFODNN7EXAMPLE:",
            "AKIAIOSFODNN7EXAMPL:",
            "AKIAIOSFODNN7EXAMPLE",
            "AKIAIOSFODNN7EXAMPLE, then, ",
            "AKIAIOSFODNN7exAMPLE:",
        ] {
            assert_eq!(taken(before), None, "{before:?}");
        }
        let lower = "AKIAIOSFODNN7EXAMPLE:wjalrxutnfemi/k7mdeng/bpxrficyexamplekey";
        assert_eq!(aws_secret_after_id(lower, 21, lower.len()), None);
    }

    /// A UUID is a key after a word that names a credential (Heroku's and Postmark's
    /// keys are UUIDs), and an identifier after any other word, `key` of an
    /// idempotency, a primary or a partition key included.
    #[test]
    fn uuids_are_keys_only_after_a_word_naming_a_credential() {
        let uuid = "3b241101-e2bb-4255-8caf-4136c566a962";
        let taken = |before: &str, value: &str| {
            let text = format!("{before}{value} for prod");
            key_after_key_word(&text, before.len(), before.len() + value.len())
                .map(|f| (f.start, f.kind, f.by_context))
        };
        for before in [
            "my api key is ",
            "Heroku API Key: ",
            "HEROKU_API_KEY ",
            "apiKey ",
            "X-Api-Key ",
            "the secret is ",
            "server token ",
            "Postmark token (",
            "license key ",
            "access key ",
            "auth ",
            "password ",
        ] {
            assert_eq!(
                taken(before, uuid),
                Some((before.len(), Builtin::ApiKey, true)),
                "{before:?}"
            );
        }
        assert!(taken("api key ", &uuid.to_ascii_uppercase()).is_some());
        for before in [
            "request id ",
            "trace_id=",
            "idempotency key ",
            "primary key ",
            "partition key ",
            "the key is ",
            "author ",
            "commit ",
            "api key\n",
        ] {
            assert_eq!(taken(before, uuid), None, "{before:?}");
        }
        // Not a UUID: groups of other lengths, a letter past `f`.
        assert_eq!(
            taken("api key ", "3b241101e-2bb-4255-8caf-4136c566a962"),
            None
        );
        assert_eq!(
            taken("api key ", "3b241101-e2bb-4255-8caf-4136c566a96g"),
            None
        );
    }

    /// What reads as a name, next to random letters of the same lengths.
    #[test]
    fn names_in_code_read_as_names_and_random_letters_do_not() {
        for name in [
            "AccountCredentials",
            "getAccessTokenFromRefreshTokenAsync",
            "HTTPRequestHandler",
            "aws.SecretsManagerClient",
            "getURLFromTokenString",
        ] {
            assert!(reads_as_a_name(name), "{name}");
        }
        for value in [
            "kNtYbPXWsbnjHMVe",
            "QmVyYXRpbmdUaGVDb2RlSXNGdW4",
            "AbCdEfGhIjKlMnOpQrSt",
            "S3Client",
            "Get_Token",
            "getIdFromDb",
            "",
        ] {
            assert!(!reads_as_a_name(value), "{value}");
        }
    }

    #[test]
    fn assigned_values_take_the_value_only() {
        let text =
            "SENDGRID_KEY=4c496af2fac6b0ff663e73a436ab2d319cef8a906f526bd622140fe880d8184e\n";
        let f = assigned(text, 0, text.len() - 1).unwrap();
        assert_eq!(&text[f.start..f.end], &text[13..text.len() - 1]);
        let text = "AWS_ACCESS_KEY_ID=AKIAIKJKU7J62MTBTIIY";
        assert_eq!(
            assigned(text, 0, text.len()).unwrap().kind,
            Builtin::AwsAccessKey
        );
        assert!(assigned("max_tokens: 1024", 0, 16).is_none());
        let text = "auth_method: oauth2_client_credentials";
        assert!(assigned(text, 0, text.len()).is_none());
        // Names of types and functions in code stay; random letters do not.
        for text in [
            "pub credentials: AccountCredentials,",
            "time_to_first_token: DurationHistogram",
            "let token = getAccessTokenFromRefreshTokenAsync",
            "auth_handler: HTTPRequestHandler",
            "secret_store: aws.SecretsManagerClient",
            "credentials_provider: AWSCredentialsProvider",
            "tokenizer: getURLFromTokenString",
        ] {
            let name = text.find([':', '=']).unwrap();
            let start = text[..name].rfind(' ').map_or(0, |at| at + 1);
            assert!(assigned(text, start, text.len()).is_none(), "{text}");
        }
        for text in [
            "token: kNtYbPXWsbnjHMVeEsBxFpWzSjizNLFq",
            "api_key=QmVyYXRpbmdUaGVDb2RlSXNGdW4",
            "client_secret=AbCdEfGhIjKlMnOpQrSt",
        ] {
            assert!(assigned(text, 0, text.len()).is_some(), "{text}");
        }
    }

    #[test]
    fn a_key_block_without_its_footer_is_taken_to_the_end_of_its_material() {
        let line = "MIIEpAIBAAKCAQEA".repeat(4);
        let text = format!("-----BEGIN RSA PRIVATE KEY-----\n{line}\nabc+/=\nthanks");
        let text = text.as_str();
        let f = pem_block(text, 0, 31).unwrap();
        assert_eq!(&text[f.end..], "thanks");
        let text = format!("x\n{line}\n-----END PRIVATE KEY-----");
        let text = text.as_str();
        let s = text.find("-----END").unwrap();
        let f = pem_footer(text, s, text.len(), 0).unwrap();
        assert_eq!(f.start, 2);
    }

    /// Lines of key material alone, as a stream's pieces or a log's lines carry them:
    /// PEM's 64 characters and OpenSSH's 70 (whose first lines hold runs of `A` that the
    /// random-token test turns away), whole lines only.
    #[test]
    fn lines_of_key_material_alone_are_private_keys() {
        let pem = "MIIEpAIBAAKCAQEAx9aUvQm3kT2wZr8LbN5cJ1fY4hP6sD0eG7uK2iV9oXqRtWyB";
        let openssh = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW";
        assert_eq!((pem.len(), openssh.len()), (64, 70));
        for line in [pem, openssh] {
            let text = format!("x\n{line}\ny");
            let found = pem_line(&text, 2, 2 + line.len()).map(|f| f.kind);
            assert_eq!(found, Some(Builtin::PrivateKey), "{line}");
            let cut = &line[..line.len() - 1];
            let text = format!("x\n{cut}\ny");
            assert_eq!(pem_line(&text, 2, 2 + cut.len()), None, "{cut}");
            let text = format!("x {line}\ny");
            assert_eq!(pem_line(&text, 2, 2 + line.len()), None, "not a whole line");
        }
    }
}
