//! What surrounds a candidate: the characters before and after it, so that a value is
//! only taken whole (not the tail of a longer number, the middle of a hex digest, ...).

/// The character before byte `at` (a char boundary), if any.
pub fn before(text: &str, at: usize) -> Option<char> {
    text.get(..at)?.chars().next_back()
}

/// The character at byte `at` (a char boundary), if any.
pub fn after(text: &str, at: usize) -> Option<char> {
    text.get(at..)?.chars().next()
}

/// A character that goes on with a word: a letter, a digit or `_`.
pub fn is_word(c: char) -> bool {
    c == '_' || is_letter_or_digit(c)
}

/// A letter or a digit of a script that writes spaces between words. In Chinese,
/// Japanese, Korean (before its particles), Thai and their neighbours a value stands
/// right beside the words around it (`电话13812345678`, `カード番号4111...です`): their
/// characters end a word rather than go on with it.
#[inline]
pub fn is_letter_or_digit(c: char) -> bool {
    match c.is_ascii() {
        true => c.is_ascii_alphanumeric(),
        false => non_ascii_letter_or_digit(c),
    }
}

/// [`is_letter_or_digit`] beyond ASCII: out of line, so that the ASCII test stays small
/// where it is inlined (the boundary checks of every candidate).
#[inline(never)]
fn non_ascii_letter_or_digit(c: char) -> bool {
    c.is_alphanumeric()
        && !matches!(
            u32::from(c),
            0x0E00..=0x0EFF // Thai, Lao
                | 0x1000..=0x109F // Myanmar
                | 0x1100..=0x11FF // Hangul jamo
                | 0x1780..=0x17FF // Khmer
                | 0x2E80..=0x2FDF // CJK radicals
                | 0x3040..=0x31FF // kana, bopomofo, Hangul compatibility jamo
                | 0x3400..=0x4DBF // CJK extension A
                | 0x4E00..=0x9FFF // CJK ideographs
                | 0xAC00..=0xD7AF // Hangul syllables
                | 0xF900..=0xFAFF // CJK compatibility ideographs
                | 0xFF66..=0xFF9F // half-width katakana
                | 0x20000..=0x3FFFF // CJK extensions B and later
        )
}

/// True when a number may start at `at`: not glued to a word, and not the next part of
/// a dotted or dashed token (`v1.2`, `PO-2021-...`, `12:30`, `$1000`). A comma is a
/// list or CSV separator: what follows it may start a value.
pub fn number_may_start(text: &str, at: usize) -> bool {
    match before(text, at) {
        None => true,
        Some(c) if is_word(c) => false,
        // `#` glued to a label is its number sign (`SSN#219-09-9998`, `Acct#...`); a `#`
        // of its own starts a ticket, an issue or a colour (`#4521`).
        Some('#') => before(text, at - 1).is_some_and(|c| c.is_ascii_alphabetic()),
        Some('$' | '€' | '£' | '¥' | '@' | '+' | '/' | '\\') => false,
        Some(c @ ('.' | '-' | ':')) => {
            let ahead = before(text, at - c.len_utf8());
            match c {
                // `12:34567`: a digit before the colon continues a time or a port.
                ':' => !ahead.is_some_and(|a| a.is_ascii_digit()),
                _ => !ahead.is_some_and(is_word),
            }
        }
        Some(_) => true,
    }
}

/// True when a number may end at `at`: not followed by a word character, nor by a
/// separator that goes on with more digits or letters (`1.2.3.4.5`, `2024-01-01T`).
pub fn number_may_end(text: &str, at: usize) -> bool {
    match after(text, at) {
        None => true,
        Some(c) if is_word(c) => false,
        // `555-0134-Office` is a label; `2024-01-01`, `1.2.3.4.5`, `12:30` go on.
        Some('-') => !after(text, at + 1).is_some_and(|a| a.is_ascii_digit()),
        Some(c @ ('.' | ':' | '/')) => {
            !after(text, at + c.len_utf8()).is_some_and(|a| a.is_ascii_alphanumeric())
        }
        Some(_) => true,
    }
}

/// True when a token (key, id, encoded value) may start at `at`: no word character or
/// token punctuation right before it.
pub fn token_may_start(text: &str, at: usize) -> bool {
    !before(text, at).is_some_and(|c| is_word(c) || matches!(c, '-' | '+' | '/' | '.'))
}

/// Whether `start` follows a `#` that is no label's (`card #4111`: a blank or the
/// text's start before it), or a `/` after a path's letter, `/`, `-` or `_` (not
/// `1/4111`): where values that tell themselves by their form (a card's check digit,
/// an IBAN's) are still taken, and others are not.
pub fn after_sign_or_path(bytes: &[u8], start: usize) -> bool {
    let Some(sign) = start.checked_sub(1).map(|at| bytes[at]) else {
        return false;
    };
    let before = start.checked_sub(2).map(|at| bytes[at]);
    match sign {
        b'#' => before.is_none_or(|b| matches!(b, b' ' | b'\t' | b'\n')),
        b'/' => before.is_some_and(|b| b.is_ascii_alphabetic() || matches!(b, b'/' | b'-' | b'_')),
        _ => false,
    }
}

/// True when a token may end at `at`.
pub fn token_may_end(text: &str, at: usize) -> bool {
    !after(text, at).is_some_and(|c| is_word(c) || matches!(c, '-' | '+' | '/'))
}

/// Whether `needle` (lower-case ASCII) occurs in `hay`, ignoring ASCII case. Only the
/// places its first byte (either case) is at are compared (`memchr2`): an SSN's context
/// is looked for in 4 KiB of text, which a comparison at every byte made cost tens of
/// thousands of instructions a number.
pub fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    if hay.len() < needle.len() {
        return false;
    }
    let last_start = hay.len() - needle.len();
    memchr::memchr2_iter(first, first.to_ascii_uppercase(), &hay[..=last_start])
        .any(|at| hay[at..at + needle.len()].eq_ignore_ascii_case(needle))
}

/// The words that make a name key-like (`API_KEY`, `x-auth-token`, `client_secret`).
const KEY_WORDS: [&[u8]; 5] = [b"key", b"token", b"secret", b"credential", b"auth"];

/// Whether `name` holds a key-like word, in any case.
pub fn names_a_key(name: &[u8]) -> bool {
    KEY_WORDS
        .iter()
        .any(|word| contains_ignore_case(name, word))
}

/// Whether a URL query parameter's `name` is a credential's: a signature's (`sig`,
/// `signature`, `X-Amz-Signature`, `X-Goog-Signature`), whose value makes a pre-signed
/// URL a key, or a key-like name.
pub fn names_a_query_secret(name: &[u8]) -> bool {
    const SIGNATURE: &[u8] = b"signature";
    let signature = name.eq_ignore_ascii_case(b"sig")
        || name.len() >= SIGNATURE.len()
            && name[name.len() - SIGNATURE.len()..].eq_ignore_ascii_case(SIGNATURE)
            && (name.len() == SIGNATURE.len()
                || matches!(name[name.len() - SIGNATURE.len() - 1], b'_' | b'.' | b'-'));
    signature || names_a_key(name)
}

/// The words that end a password-like name (`DB_PASSWORD`, `mysql_pwd`, `passphrase`).
const PASSWORD_WORDS: [&[u8]; 4] = [b"password", b"passwd", b"passphrase", b"pwd"];

/// The word for a password in other languages, written in ASCII as names are
/// (German, Dutch, Spanish without its tilde, Portuguese, Polish, Finnish): taken as a
/// name's last part only (`Passwort:`, `db_kennwort=`; not `resenha`, a review).
const OTHER_PASSWORD_WORDS: [&[u8]; 7] = [
    b"passwort",
    b"kennwort",
    b"wachtwoord",
    b"contrasena",
    b"senha",
    b"haslo",
    b"salasana",
];

/// Whether `name` ends in a password word, in any case, digits after it allowed
/// (`new_password2`), or in `pass` or another language's word as its last part
/// (`SMTP_PASS`, `db.pass`, `Passwort`; not `bypass`, nor `pass` alone: `first pass:
/// ...` is prose).
pub fn names_a_password(name: &[u8]) -> bool {
    let digits = name.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let name = &name[..name.len() - digits];
    // Every word ends in `a`, `d`, `e`, `o`, `s` or `t`: most names are turned away by
    // their last byte.
    if !name.last().is_some_and(|b| {
        matches!(
            b.to_ascii_lowercase(),
            b'a' | b'd' | b'e' | b'o' | b's' | b't'
        )
    }) {
        return false;
    }
    let ends_with = |word: &[u8]| {
        name.len() >= word.len() && name[name.len() - word.len()..].eq_ignore_ascii_case(word)
    };
    let last_part = |word: &[u8]| {
        ends_with(word)
            && (name.len() == word.len()
                || matches!(name[name.len() - word.len() - 1], b'_' | b'.' | b'-'))
    };
    PASSWORD_WORDS.iter().any(|word| ends_with(word))
        || (last_part(b"pass") && name.len() > 4)
        || OTHER_PASSWORD_WORDS.iter().any(|word| last_part(word))
}

/// How far back, on the same line, a key-like word is looked for before a value
/// written in prose (`my API key is ...`).
const KEY_WORD_REACH: usize = 40;

/// Whether one of the three words just before byte `at`, on its line and within
/// [`KEY_WORD_REACH`] bytes, is key-like: `secret 9f86...`, `my API key is 9f86...`,
/// `auth token: 9f86...`. Words are runs of letters, digits, `_` and `-`.
pub fn key_word_before(text: &str, at: usize) -> bool {
    let words = words_before(text, at);
    names_a_key(words) || mentions_a_session(words)
}

/// Whether one of the three words just before byte `at` (as [`key_word_before`] reads
/// them) names a credential, for values whose form is also an identifier's (a UUID is
/// a request's id as often as Heroku's or Postmark's API key): `secret`, `token`,
/// `password`, `credential`, `auth` (not `author`), and `key` only as an API's, an
/// access's, a licence's or a subscription's, never an idempotency, primary or
/// partition key's. Any case, `-` and `_` read as blanks (`X-Api-Key`, `API_KEY`).
pub fn credential_word_before(text: &str, at: usize) -> bool {
    let words = words_before(text, at);
    let mut lower = [0u8; KEY_WORD_REACH];
    let lower = &mut lower[..words.len()];
    for (to, &b) in lower.iter_mut().zip(words) {
        *to = match b {
            b'-' | b'_' | b'\t' => b' ',
            b => b.to_ascii_lowercase(),
        };
    }
    // Only the places where a word's first letter is are compared.
    (0..lower.len()).any(|at| {
        let rest = &lower[at..];
        let words: &[&[u8]] = match rest[0] {
            b'a' if !rest.starts_with(b"author") => {
                &[b"api key", b"apikey", b"access key", b"accesskey", b"auth"]
            }
            b's' => &[b"secret", b"subscription key"],
            b't' => &[b"token"],
            b'p' => &[b"password", b"passwd"],
            b'c' => &[b"credential"],
            b'l' => &[b"license key", b"licence key"],
            _ => &[],
        };
        words.iter().any(|word| rest.starts_with(word))
    })
}

/// The three words just before byte `at`, on its line and within [`KEY_WORD_REACH`]
/// bytes, and what is between them. Words are runs of letters, digits, `_` and `-`.
fn words_before(text: &str, at: usize) -> &[u8] {
    let bytes = &text.as_bytes()[..at.min(text.len())];
    let from = bytes.len().saturating_sub(KEY_WORD_REACH);
    let line = match memchr::memrchr(b'\n', &bytes[from..]) {
        Some(newline) => &bytes[from + newline + 1..],
        None => &bytes[from..],
    };
    // Where the third word from the end starts; the words from there are searched at
    // once (a key word never spans two of them), rather than word by word.
    let is_word_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-');
    let mut words = 0;
    let mut at = line.len();
    while at > 0 && words < 3 {
        while at > 0 && !is_word_byte(line[at - 1]) {
            at -= 1;
        }
        if at == 0 {
            break;
        }
        while at > 0 && is_word_byte(line[at - 1]) {
            at -= 1;
        }
        words += 1;
    }
    &line[at..]
}

/// Words that make a random value after them a session's key in prose or a cookie
/// (`Cookie: session=8f2a...`, `session id 8f2a...`): whoever holds it is logged in. Not
/// key-like names for an assignment (`session_path=/var/lib/php/sessions` is no key).
const SESSION_WORDS: [&[u8]; 2] = [b"session", b"cookie"];

/// Whether `words` hold a session word as a word of its own or a name's part
/// (`Session-ID`, `session_id`, `sessionid`, `Set-Cookie`, `cookies`), any case; not
/// inside a longer name (`ActiveSessionChanged`, `CookieHandler` in a path).
fn mentions_a_session(words: &[u8]) -> bool {
    SESSION_WORDS.iter().any(|word| {
        // Only where its first letter is, in either case (as `contains_ignore_case`).
        let first = word[0];
        memchr::memchr2_iter(first, first.to_ascii_uppercase(), words).any(|at| {
            let Some(here) = words.get(at..at + word.len()) else {
                return false;
            };
            let after = &words[at + word.len()..];
            // The word's part ends here, or after `id` or a plural `s`.
            let part_ends_after = |suffix: &[u8]| {
                after.len() >= suffix.len()
                    && after[..suffix.len()].eq_ignore_ascii_case(suffix)
                    && !after.get(suffix.len()).is_some_and(u8::is_ascii_alphabetic)
            };
            here.eq_ignore_ascii_case(word)
                && (at == 0 || !words[at - 1].is_ascii_alphabetic())
                && [&b""[..], b"id", b"s"].into_iter().any(part_ends_after)
        })
    })
}

/// `text[start..end]` widened to char boundaries, clamped to the text.
pub fn window(text: &str, start: usize, end: usize) -> &str {
    let mut start = start.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = end.min(text.len()).max(start);
    while !text.is_char_boundary(end) {
        end += 1;
    }
    &text[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_names_in_other_languages_are_a_name_s_last_part() {
        for name in [
            "Passwort",
            "db_kennwort",
            "WACHTWOORD",
            "contrasena",
            "user.senha",
            "haslo2",
        ] {
            assert!(names_a_password(name.as_bytes()), "{name}");
        }
        for name in ["resenha", "Passworte", "xhaslo", "bypass", "pass"] {
            assert!(!names_a_password(name.as_bytes()), "{name}");
        }
    }

    /// Letters of scripts written without spaces end a word; others go on with it.
    #[test]
    fn unspaced_scripts_end_words() {
        for c in ['电', '话', 'カ', 'で', '입', 'ก', '𠀀'] {
            assert!(!is_word(c), "{c}");
        }
        for c in ['a', 'Z', '7', '_', 'é', 'ß', 'д', 'λ', 'ع'] {
            assert!(is_word(c), "{c}");
        }
        assert!(number_may_start("电话13812345678", "电话".len()));
        assert!(number_may_end("4111111111111111です", 16));
        assert!(!number_may_start("é4111", 'é'.len_utf8()));
    }

    #[test]
    fn a_number_sign_glued_to_a_label_starts_a_number_and_one_alone_does_not() {
        assert!(number_may_start("SSN#219-09-9998", 4));
        assert!(number_may_start("Acct#4111", 5));
        for (text, at) in [("#4521", 1), ("see #4521", 5), ("x:#4521", 3), ("1#2", 2)] {
            assert!(!number_may_start(text, at), "{text}");
        }
    }

    proptest::proptest! {
        /// The key word before a place is found as splitting the line's last 40 bytes
        /// into words and looking in the last three finds it.
        #[test]
        fn key_words_before_are_the_last_three_words(
            text in "[a-zA-Z0-9 _:\\-\n]{0,70}",
            words in proptest::collection::vec(
                proptest::sample::select(vec!["key", "Token", "is", "my", "api", "x-auth", "\n", "monkey"]),
                0..6,
            ),
        ) {
            let text = format!("{text} {}", words.join(" "));
            let at = text.len();
            let from = at.saturating_sub(KEY_WORD_REACH);
            let line = text.as_bytes()[from..].rsplit(|&b| b == b'\n').next().unwrap_or_default();
            let naive = line
                .rsplit(|b: &u8| !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')))
                .filter(|word| !word.is_empty())
                .take(3)
                .any(names_a_key);
            proptest::prop_assert_eq!(key_word_before(&text, at), naive, "{:?}", text);
        }

        /// The first-byte search finds a needle where a comparison at every place does.
        #[test]
        fn contains_ignore_case_finds_what_every_window_finds(
            hay in "[sSnNoc ial-]{0,100}",
            needle in proptest::sample::select(vec!["ssn", "social security", "s", "", "key"]),
        ) {
            let naive = needle.is_empty()
                || hay
                    .as_bytes()
                    .windows(needle.len())
                    .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()));
            proptest::prop_assert_eq!(contains_ignore_case(hay.as_bytes(), needle.as_bytes()), naive);
        }
    }
}
