//! The configured masker: the built-in detectors, the optional name and address
//! detectors and the custom ones, with an action per type. It is the `TextMasker` the
//! JSON, text and SSE body maskers run.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::custom::{CustomDetectors, CustomSpec};
use super::detect::Detectors;
use super::folded::FoldedText;
use super::found_cache::{CacheScope, FoundCache, Partition};
use super::keep::KeepList;
use super::kinds::{Builtin, Found};
use super::names::NameDetectors;
use super::secrets;
use super::spelled_email;
use super::{Action, Blocked, Findings, Kind, Span, TextMasker, Vault};

/// How many bytes a streaming masker holds back: the longest value caught whole. Keys,
/// tokens and IBANs are far shorter; a JWT with large claims may be longer, and so may a
/// private key block: the head of a longer JWT (`eyJ...`) and every 64-character line of
/// key material are detected on their own, so neither leaks when split (see
/// docs/masking.md).
pub const LOOK_BEHIND: usize = 1024;

thread_local! {
    /// The built-in values of the text being masked (see `Masker::find`).
    static FOUND: Cell<Vec<Found>> = const { Cell::new(Vec::new()) };
    /// The text being masked with its full-width forms, other scripts' digits and
    /// typography's separators folded, when it has any (see `Masker::find`).
    static FOLDED: Cell<FoldedText> = const { Cell::new(FoldedText::new()) };
}

/// Entries of a masker's cache of what it found in texts it read before (`FoundCache`),
/// unless the builder is told otherwise.
pub const DEFAULT_CACHE_ENTRIES: usize = 8192;

/// Bytes of the HMAC shown by the `hash` action (16 hex digits).
const HASH_BYTES: usize = 8;

/// A configuration the masker cannot be built from.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaskerError {
    #[error("type {0} uses the hash action but no hash key was given")]
    NoHashKey(String),
    #[error("custom detector {index}: {message}")]
    Custom { index: usize, message: String },
    #[error("custom detector {0} has the name of a built-in type")]
    BuiltinName(String),
}

/// Builds a [`Masker`]: every built-in type is redacted unless told otherwise; PERSON
/// and STREET_ADDRESS are off until turned on.
#[derive(Clone)]
pub struct MaskerBuilder {
    actions: HashMap<Builtin, Option<Action>>,
    custom: Vec<(CustomSpec, Action)>,
    hash_key: Option<Vec<u8>>,
    cache_entries: usize,
    cache_scope: CacheScope,
    identifiers: bool,
    keep: KeepList,
}

impl Default for MaskerBuilder {
    fn default() -> Self {
        MaskerBuilder {
            actions: HashMap::new(),
            custom: Vec::new(),
            hash_key: None,
            cache_entries: DEFAULT_CACHE_ENTRIES,
            cache_scope: CacheScope::Client,
            identifiers: false,
            keep: KeepList::default(),
        }
    }
}

impl std::fmt::Debug for MaskerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hash key, nor the custom word lists.
        f.debug_struct("MaskerBuilder")
            .field("actions", &self.actions)
            .field("custom", &self.custom.len())
            .field("hash_key", &self.hash_key.as_ref().map(|_| "<set>"))
            .field("cache_entries", &self.cache_entries)
            .field("cache_scope", &self.cache_scope)
            .field("identifiers", &self.identifiers)
            .field("keep", &!self.keep.is_empty())
            .finish()
    }
}

impl MaskerBuilder {
    /// The action for a built-in type (which turns an optional detector on).
    pub fn action(mut self, kind: Builtin, action: Action) -> Self {
        self.actions.insert(kind, Some(action));
        self
    }

    /// Turns a built-in detector off.
    pub fn off(mut self, kind: Builtin) -> Self {
        self.actions.insert(kind, None);
        self
    }

    /// Turns the optional PERSON and STREET_ADDRESS detectors on (redact) unless an
    /// action was set for them.
    pub fn names(mut self) -> Self {
        for kind in [Builtin::Person, Builtin::StreetAddress] {
            self.actions.entry(kind).or_insert(Some(Action::Redact));
        }
        self
    }

    pub fn custom(mut self, spec: CustomSpec, action: Action) -> Self {
        self.custom.push((spec, action));
        self
    }

    /// The key of the `hash` action's HMAC.
    pub fn hash_key(mut self, key: Vec<u8>) -> Self {
        self.hash_key = Some(key);
        self
    }

    /// How many texts' answers `find_whole` keeps (0: none; see `FoundCache`).
    pub fn cache_entries(mut self, entries: usize) -> Self {
        self.cache_entries = entries;
        self
    }

    /// Also reads an AI API request's end-user identifiers (`user`,
    /// `safety_identifier`, every string of `metadata`), not only its contents.
    pub fn identifiers(mut self, on: bool) -> Self {
        self.identifiers = on;
        self
    }

    /// Values never masked (`keep`): a value found that the list keeps is no finding.
    pub fn keep(mut self, keep: KeepList) -> Self {
        self.keep = keep;
        self
    }

    /// Whose texts the cache answers from: each client's own (the default), or every
    /// client's of the route.
    pub fn cache_scope(mut self, scope: CacheScope) -> Self {
        self.cache_scope = scope;
        self
    }

    pub fn build(self) -> Result<Masker, MaskerError> {
        let mut actions: HashMap<Kind, Action> = HashMap::new();
        let mut enabled = [false; Builtin::ALL.len()];
        for kind in Builtin::ALL {
            let action = match self.actions.get(&kind) {
                Some(action) => *action,
                None if kind.is_optional() => None,
                None => Some(Action::Redact),
            };
            if let Some(action) = action {
                enabled[kind.index()] = true;
                actions.insert(Kind(kind.name().into()), action);
            }
        }
        let mut specs = Vec::new();
        for (spec, action) in &self.custom {
            let kind = match spec {
                CustomSpec::Regex { kind, .. } | CustomSpec::Words { kind, .. } => kind,
            };
            if Builtin::from_name(kind.name()).is_some() {
                return Err(MaskerError::BuiltinName(kind.name().to_string()));
            }
            actions.insert(kind.clone(), *action);
            specs.push(spec.clone());
        }
        if self.hash_key.is_none()
            && let Some((kind, _)) = actions.iter().find(|(_, a)| **a == Action::Hash)
        {
            return Err(MaskerError::NoHashKey(kind.name().to_string()));
        }
        let custom = if specs.is_empty() {
            None
        } else {
            Some(
                CustomDetectors::new(&specs)
                    .map_err(|(index, message)| MaskerError::Custom { index, message })?,
            )
        };
        let kinds = Builtin::ALL.map(|kind| Kind(kind.name().into()));
        let builtin_actions = kinds.clone().map(|kind| actions.get(&kind).copied());
        let hasher = self.hash_key.map(|key| {
            Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length")
        });
        let people = enabled[Builtin::Person.index()];
        let streets = enabled[Builtin::StreetAddress.index()];
        Ok(Masker {
            detectors: Detectors::new(),
            names: (people || streets).then(NameDetectors::new),
            enabled,
            kinds,
            builtin_actions,
            actions,
            custom,
            hasher,
            cache: FoundCache::new(self.cache_entries),
            cache_scope: self.cache_scope,
            identifiers: self.identifiers,
            keep: (!self.keep.is_empty()).then_some(self.keep),
        })
    }
}

/// Detectors and an action per type. Cheap to share (`Arc<Masker>`); `find` and
/// `replace` take `&self`.
pub struct Masker {
    detectors: Detectors,
    /// The optional PERSON / STREET_ADDRESS detectors, when either is on.
    names: Option<NameDetectors>,
    /// Per built-in type, whether its values are reported.
    enabled: [bool; Builtin::ALL.len()],
    /// Per built-in type, its `Kind` (shared, so a span costs no allocation).
    kinds: [Kind; Builtin::ALL.len()],
    /// Per built-in type, its action (`actions` of its `Kind`), found without hashing.
    builtin_actions: [Option<Action>; Builtin::ALL.len()],
    actions: HashMap<Kind, Action>,
    custom: Option<CustomDetectors>,
    hasher: Option<Hmac<Sha256>>,
    /// What was found in the whole texts read lately, by their keyed hash.
    cache: Option<FoundCache>,
    cache_scope: CacheScope,
    /// An AI API request's end-user identifiers are read too.
    identifiers: bool,
    /// Values never masked, when the route lists some.
    keep: Option<KeepList>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash key and custom word lists are never shown.
        let mut actions: Vec<(&str, &str)> = self
            .actions
            .iter()
            .map(|(k, a)| (k.name(), a.name()))
            .collect();
        actions.sort();
        f.debug_struct("Masker")
            .field("actions", &actions)
            .field("custom", &self.custom)
            .field("hash_key", &self.hasher.as_ref().map(|_| "<set>"))
            .field(
                "cache_entries",
                &self.cache.as_ref().map(FoundCache::entries),
            )
            .field("cache_scope", &self.cache_scope)
            .field("identifiers", &self.identifiers)
            .field("keep", &self.keep.is_some())
            .finish()
    }
}

impl Default for Masker {
    /// Every built-in type redacted; PERSON and STREET_ADDRESS off.
    fn default() -> Self {
        Masker::builder()
            .build()
            .expect("the default masker needs no key")
    }
}

impl Masker {
    pub fn builder() -> MaskerBuilder {
        MaskerBuilder::default()
    }

    /// Request texts answered from the cache and texts read since the masker was
    /// built (`None` with the cache off).
    pub fn cache_lookups(&self) -> Option<(u64, u64)> {
        self.cache.as_ref().map(FoundCache::lookups)
    }

    /// The action for a type, if it is detected.
    pub fn action(&self, kind: &Kind) -> Option<Action> {
        // The spans of built-in types carry this masker's own `Kind`s: known by address,
        // with no hash of the name per value.
        match self
            .kinds
            .iter()
            .position(|own| Arc::ptr_eq(&own.0, &kind.0))
        {
            Some(index) => self.builtin_actions[index],
            None => self.actions.get(kind).copied(),
        }
    }

    fn builtin_spans(&self, text: &str, found: &[Found], spans: &mut Vec<Span>) {
        for f in found {
            if self.enabled[f.kind.index()] {
                spans.push(Span {
                    start: f.start,
                    end: f.end,
                    kind: self.kinds[f.kind.index()].clone(),
                    by_context: f.by_context,
                });
            }
        }
        debug_assert!(
            spans
                .iter()
                .all(|s| text.is_char_boundary(s.start) && text.is_char_boundary(s.end))
        );
    }

    fn hash(&self, value: &str, out: &mut String) {
        if let Some(hasher) = &self.hasher {
            let mut mac = hasher.clone();
            mac.update(value.as_bytes());
            for byte in &mac.finalize().into_bytes()[..HASH_BYTES] {
                let _ = write!(out, "{byte:02x}");
            }
        }
    }
}

/// Whether `span` is the hex of a hash this masker writes, `[TYPE:` hex `]`.
fn is_own_hash(text: &str, span: &Span) -> bool {
    let bytes = text.as_bytes();
    let hex = &bytes[span.start..span.end];
    if hex.len() != 2 * HASH_BYTES
        || !hex
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        || bytes.get(span.end) != Some(&b']')
    {
        return false;
    }
    let before = &bytes[..span.start];
    let Some(name) = before.strip_suffix(b":") else {
        return false;
    };
    let len = name
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || **b == b'_')
        .count();
    len > 0 && name.len() > len && name[name.len() - len - 1] == b'['
}

/// Keeps the longer of two overlapping spans (the first found on a tie), in order.
fn resolve_overlaps(spans: &mut Vec<Span>) {
    spans.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut kept: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans.drain(..) {
        match kept.last_mut() {
            Some(last) if span.start < last.end => {
                if span.end - span.start > last.end - last.start {
                    *last = span;
                    // The longer span may now reach over earlier kept ones.
                    while kept.len() >= 2 && kept[kept.len() - 2].end > kept[kept.len() - 1].start {
                        let longer = kept.pop().expect("two spans");
                        kept.pop();
                        kept.push(longer);
                    }
                }
            }
            _ => kept.push(span),
        }
    }
    *spans = kept;
}

impl TextMasker for Masker {
    fn find(&self, text: &str, spans: &mut Vec<Span>) {
        let first = spans.len();
        // The thread's list, reused: no allocation per text.
        let mut found = FOUND.take();
        found.clear();
        // The built-in detectors read digits and punctuation as ASCII: text holding
        // others (`４１１１`, `٠٥٠`, `06 12` with a no-break space) is read folded, and
        // what is found there is mapped back.
        let mut folded = FOLDED.take();
        let is_folded = folded.fold(text);
        self.detectors
            .find(if is_folded { folded.as_str() } else { text }, &mut found);
        if is_folded {
            folded.map_back(&mut found);
        }
        FOLDED.set(folded);
        let mut overlapping = false;
        if self.enabled[Builtin::EmailAddress.index()] {
            // Appended after the detectors' finds, out of the text's order: sorted
            // with the overlaps settled below.
            let before = found.len();
            spelled_email::find(text, &mut found);
            overlapping = found.len() > before;
        }
        if let Some(names) = &self.names {
            let before = found.len();
            names.find(
                text,
                self.enabled[Builtin::Person.index()],
                self.enabled[Builtin::StreetAddress.index()],
                &mut found,
            );
            overlapping |= found.len() > before;
        }
        self.builtin_spans(text, &found, spans);
        if let Some(custom) = &self.custom {
            let mut extra = Vec::new();
            custom.find(text, &mut extra);
            overlapping |= !extra.is_empty();
            spans.extend(extra.into_iter().map(|(start, end, kind)| Span {
                start,
                end,
                kind,
                by_context: false,
            }));
        }
        if overlapping {
            let mut mine: Vec<Span> = spans.drain(first..).collect();
            resolve_overlaps(&mut mine);
            spans.extend(mine);
        }
        FOUND.set(found);
        // After the overlaps are settled: a kept value leaves the text as it is, and
        // does not give way to a shorter value inside it.
        if let Some(keep) = &self.keep {
            let mut at = 0;
            spans.retain(|span| {
                at += 1;
                at <= first || !keep.keeps(&text[span.start..span.end])
            });
        }
        // An answer quoting the request's hashes (`key [API_KEY:025247c1c8297806]`)
        // holds the masker's own writing, not a value: hashed again, it would read
        // `[API_KEY:[API_KEY:...]]`.
        if spans.len() > first && text.contains(':') {
            let mut at = 0;
            spans.retain(|span| {
                at += 1;
                at <= first || !is_own_hash(text, span)
            });
        }
    }

    fn find_whole(&self, text: &str, partition: Partition, spans: &mut Vec<Span>) {
        let partition = match self.cache_scope {
            CacheScope::Client => partition,
            CacheScope::Route => Partition::SHARED,
        };
        let Some((cache, key)) = self
            .cache
            .as_ref()
            .and_then(|cache| Some((cache, cache.key(text, partition)?)))
        else {
            return self.find(text, spans);
        };
        if cache.get(key, spans) {
            return;
        }
        let first = spans.len();
        self.find(text, spans);
        cache.put(key, &spans[first..]);
    }

    fn reads_identifiers(&self) -> bool {
        self.identifiers
    }

    fn find_named(&self, key: &[u8], text: &str) -> Option<Span> {
        let found = secrets::named_member_value(key, text)?;
        if self
            .keep
            .as_ref()
            .is_some_and(|keep| keep.keeps(&text[found.start..found.end]))
        {
            return None;
        }
        self.enabled[found.kind.index()].then(|| Span {
            start: found.start,
            end: found.end,
            kind: self.kinds[found.kind.index()].clone(),
            by_context: found.by_context,
        })
    }

    fn replace(
        &self,
        span: &Span,
        value: &str,
        vault: &mut Vault,
        out: &mut String,
        findings: &mut Findings,
    ) -> Result<(), Blocked> {
        // A span of a type this masker does not know (a body masker's own) is redacted:
        // fail closed.
        let action = self.action(&span.kind).unwrap_or(Action::Redact);
        findings.add(&span.kind, action);
        let name = span.kind.name();
        match action {
            Action::Redact => {
                out.push('[');
                out.push_str(name);
                out.push(']');
            }
            Action::Hash => {
                out.push('[');
                out.push_str(name);
                out.push(':');
                self.hash(value, out);
                out.push(']');
            }
            Action::Partial => {
                out.push_str("****");
                let chars = value.chars().count();
                if chars > 4 {
                    let tail = value.char_indices().nth(chars - 4).map_or(0, |(i, _)| i);
                    out.push_str(&value[tail..]);
                }
            }
            Action::Pseudonymize => out.push_str(vault.pseudonym(&span.kind, value)),
            Action::Block => {
                return Err(Blocked {
                    kind: span.kind.clone(),
                });
            }
            Action::Log => out.push_str(value),
        }
        Ok(())
    }

    fn look_behind(&self) -> usize {
        LOOK_BEHIND.max(self.custom.as_ref().map_or(0, |c| c.longest_word()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::mask_text;
    use super::*;

    fn mask(masker: &Masker, text: &str) -> (Result<String, Blocked>, Findings) {
        let mut out = String::new();
        let mut findings = Findings::default();
        let mut vault = Vault::default();
        let result = mask_text(masker, text, &mut vault, &mut out, &mut findings).map(|_| out);
        (result, findings)
    }

    #[test]
    fn kept_values_are_left_as_they_are_and_not_counted() {
        let entries = ["@acme.com", "203.0.113.7", "hunter22hunter"].map(String::from);
        let masker = Masker::builder()
            .keep(super::super::keep::KeepList::new(&entries).unwrap())
            .build()
            .unwrap();
        let text = "Ask ann@acme.com or bob@example.org; the status page is 203.0.113.7, \
                    the database 203.0.113.8.";
        let (masked, findings) = mask(&masker, text);
        assert_eq!(
            masked.unwrap(),
            "Ask ann@acme.com or [EMAIL_ADDRESS]; the status page is 203.0.113.7, \
             the database [IP_ADDRESS]."
        );
        assert_eq!(findings.total(), 2);
        // A JSON member named as a secret is kept too, when its value is listed.
        assert_eq!(masker.find_named(b"password", "hunter22hunter"), None);
        assert!(masker.find_named(b"password", "hunter22hunter!").is_some());
    }

    #[test]
    fn a_whole_text_read_again_is_answered_from_the_cache() {
        let masker = Masker::default();
        let text = "Write to jane.doe@example.com about the order she placed last week, politely.";
        let cache = masker.cache.as_ref().expect("on by default");
        let client = Partition::of("a client");
        let key = cache.key(text, client).expect("long enough");
        assert!(!cache.get(key, &mut Vec::new()));
        // `find` (a stream's window) leaves nothing behind; `find_whole` does.
        masker.find(text, &mut Vec::new());
        assert!(!cache.get(key, &mut Vec::new()));
        let mut read = Vec::new();
        masker.find_whole(text, client, &mut read);
        assert_eq!(read.len(), 1);
        let mut kept = Vec::new();
        assert!(cache.get(key, &mut kept));
        assert_eq!(kept, read);
        // Appended after what the caller had already, as `find` does.
        let mut again = vec![read[0].clone()];
        masker.find_whole(text, client, &mut again);
        assert_eq!(again, [read[0].clone(), read[0].clone()]);
        // The test's own three lookups count too: two missed, one answered.
        assert_eq!(masker.cache_lookups(), Some((1 + 1, 2 + 1)));
        // Another client's same text is read anew, unless the route shares its texts.
        masker.find_whole(text, Partition::of("another client"), &mut Vec::new());
        assert_eq!(masker.cache_lookups(), Some((2, 4)));
        let shared = Masker::builder()
            .cache_scope(CacheScope::Route)
            .build()
            .unwrap();
        for client in ["a client", "another client"] {
            shared.find_whole(text, Partition::of(client), &mut Vec::new());
        }
        assert_eq!(shared.cache_lookups(), Some((1, 1)));
        assert!(
            Masker::builder()
                .cache_entries(0)
                .build()
                .unwrap()
                .cache
                .is_none()
        );
    }

    #[test]
    fn redact_by_default() {
        let (out, findings) = mask(
            &Masker::default(),
            "mail a.b@example.org, card 4111 1111 1111 1111.",
        );
        assert_eq!(out.unwrap(), "mail [EMAIL_ADDRESS], card [CREDIT_CARD].");
        assert_eq!(findings.total(), 2);
    }

    #[test]
    fn every_action() {
        let masker = Masker::builder()
            .action(Builtin::EmailAddress, Action::Hash)
            .action(Builtin::CreditCard, Action::Partial)
            .action(Builtin::PhoneNumber, Action::Pseudonymize)
            .action(Builtin::IpAddress, Action::Log)
            .hash_key(b"k".to_vec())
            .build()
            .unwrap();
        let (out, findings) = mask(
            &masker,
            "a@example.org a@example.org 4111 1111 1111 1111 +1 415-555-0134 10.1.2.3",
        );
        let out = out.unwrap();
        let hashes: Vec<&str> = out.split(' ').take(2).collect();
        assert!(
            hashes[0].starts_with("[EMAIL_ADDRESS:")
                && hashes[0].len() == "[EMAIL_ADDRESS:]".len() + 16
        );
        assert_eq!(hashes[0], hashes[1]);
        assert!(out.ends_with("****1111 <PHONE_NUMBER_1> 10.1.2.3"), "{out}");
        assert_eq!(findings.total(), 5);

        let blocking = Masker::builder()
            .action(Builtin::UsSsn, Action::Block)
            .build()
            .unwrap();
        let (result, findings) = mask(&blocking, "SSN 536-22-1234");
        assert_eq!(result.unwrap_err().kind.name(), "US_SSN");
        assert_eq!(findings.total(), 1);
    }

    /// Values probed by hand that went out as they were (2026-12-07): after a `#` or
    /// in a URL's path, in ranges, IBANs of the registry's newer countries, fields
    /// as code names them.
    #[test]
    fn values_after_a_sign_in_paths_ranges_and_field_names_are_masked() {
        let masker = Masker::default();
        for (text, masked) in [
            ("card #4111 1111 1111 1111", "card #[CREDIT_CARD]"),
            ("Visa #4111111111111111", "Visa #[CREDIT_CARD]"),
            ("SSN #078-05-1120", "SSN #[US_SSN]"),
            (
                "GET /v1/cards/4111111111111111 HTTP/1.1",
                "GET /v1/cards/[CREDIT_CARD] HTTP/1.1",
            ),
            (
                "GET /customers/4111-1111-1111-1111/charges",
                "GET /customers/[CREDIT_CARD]/charges",
            ),
            (
                "https://example.com/ssn/078-05-1120",
                "https://example.com/ssn/[US_SSN]",
            ),
            (
                "https://bank.example/iban/DE89370400440532013000",
                "https://bank.example/iban/[IBAN_CODE]",
            ),
            ("ip #203.0.113.9", "ip #[IP_ADDRESS]"),
            (
                "--src-range 192.168.1.100-192.168.1.200",
                "--src-range [IP_ADDRESS]-[IP_ADDRESS]",
            ),
            ("range 10.0.0.5–10.0.0.9", "range [IP_ADDRESS]–[IP_ADDRESS]"),
            (
                "IBAN: RU1313411763917569714976318074155",
                "IBAN: [IBAN_CODE]",
            ),
            ("IBAN: SD8547501877092486", "IBAN: [IBAN_CODE]"),
            (
                "social_security_number: 123456789",
                "social_security_number: [US_SSN]",
            ),
            (
                "socialSecurityNumber=123456789",
                "socialSecurityNumber=[US_SSN]",
            ),
            ("phone=015123456789", "phone=[PHONE_NUMBER]"),
            ("<phone>61234567</phone>", "<phone>[PHONE_NUMBER]</phone>"),
            (
                "mobile_phone: 8613812345678",
                "mobile_phone: [PHONE_NUMBER]",
            ),
            ("(11) 96123-4567", "[PHONE_NUMBER]"),
            ("Mob. 0151 23456789", "Mob. [PHONE_NUMBER]"),
            (
                "<server><id>nexus</id><password>hunter22</password></server>",
                "<server><id>nexus</id><password>[PASSWORD]</password></server>",
            ),
            (
                "<db:Password>Geheim123</db:Password>",
                "<db:Password>[PASSWORD]</db:Password>",
            ),
            (
                "<apiKey>AbCdEf1234567890GhIjKl</apiKey>",
                "<apiKey>[API_KEY]</apiKey>",
            ),
        ] {
            assert_eq!(mask(&masker, text).0.unwrap(), masked, "{text}");
        }
        // What only a word or the form around it tells stays after a `#` or a `/`.
        for text in [
            "ticket #4521",
            "issue #123456789",
            "GET /users/4155552671",
            "see #415-555-2671",
            "1/4111111111111111",
            "v1.2.3.4-10.0.0.9x",
            "<password>${env.NEXUS_PASSWORD}</password>",
            "<title>password</title>",
            "<password>hunter22</pwd>",
            "<password>\n  hunter22\n</password>",
        ] {
            assert_eq!(mask(&masker, text).0.unwrap(), text, "{text}");
        }
    }

    #[test]
    fn full_width_forms_and_other_scripts_digits_are_read_as_ascii() {
        let masker = Masker::default();
        for (text, masked) in [
            (
                "カード：４１１１ １１１１ １１１１ １１１１です",
                "カード：[CREDIT_CARD]です",
            ),
            ("電話：０９０－１２３４－５６７８", "電話：[PHONE_NUMBER]"),
            (
                "連絡先 ｔａｒｏ＠ｅｘａｍｐｌｅ．ｃｏ．ｊｐ まで",
                "連絡先 [EMAIL_ADDRESS] まで",
            ),
            (
                "call me at ＋８１ ９０－１２３４－５６７８",
                "call me at [PHONE_NUMBER]",
            ),
            ("phone: ٠٥٠١٢٣٤٥٦٧", "phone: [PHONE_NUMBER]"),
            ("mobile ০১৭১২-৩৪৫৬৭৮", "mobile [PHONE_NUMBER]"),
            ("SSN ५३६-२२-१२३४", "SSN [US_SSN]"),
            ("host １０．１．２．３ down", "host [IP_ADDRESS] down"),
        ] {
            assert_eq!(mask(&masker, text).0.unwrap(), masked, "{text}");
        }
        // The way back keeps the original's characters for the actions that show them.
        let partial = Masker::builder()
            .action(Builtin::CreditCard, Action::Partial)
            .action(Builtin::PhoneNumber, Action::Pseudonymize)
            .build()
            .unwrap();
        let mut vault = Vault::default();
        let mut out = String::new();
        mask_text(
            &partial,
            "４１１１ １１１１ １１１１ １１１１ / 電話 ０９０－１２３４－５６７８",
            &mut vault,
            &mut out,
            &mut Findings::default(),
        )
        .unwrap();
        assert_eq!(out, "****１１１１ / 電話 <PHONE_NUMBER_1>");
        assert_eq!(
            vault.original("<PHONE_NUMBER_1>"),
            Some("０９０－１２３４－５６７８")
        );
        // Numbers written in other scripts that are not values stay.
        for text in ["２０２４年１２月６日", "价格：１２３．４５元", "الصفحة ١٢"]
        {
            assert_eq!(mask(&masker, text).0.unwrap(), text);
        }
    }

    #[test]
    fn hash_needs_a_key_and_types_can_be_off() {
        assert_eq!(
            Masker::builder()
                .action(Builtin::Jwt, Action::Hash)
                .build()
                .unwrap_err(),
            MaskerError::NoHashKey("JWT".into())
        );
        let masker = Masker::builder().off(Builtin::IpAddress).build().unwrap();
        assert_eq!(mask(&masker, "from 10.1.2.3").0.unwrap(), "from 10.1.2.3");
    }

    /// An answer that quotes the request's hashes is left as it is: the masker's own
    /// writing is not read as a value again (`[API_KEY:[API_KEY:...]]` before).
    #[test]
    fn hashes_the_masker_wrote_are_not_hashed_again() {
        let masker = Masker::builder()
            .hash_key(b"k".to_vec())
            .action(Builtin::ApiKey, Action::Hash)
            .action(Builtin::EmailAddress, Action::Hash)
            .build()
            .unwrap();
        let text = "API_KEY=sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXyZ4 mail ann@example.org";
        let once = mask(&masker, text).0.unwrap();
        assert!(once.starts_with("API_KEY=[API_KEY:"), "{once}");
        let (twice, findings) = mask(&masker, &once);
        assert_eq!(twice.unwrap(), once);
        assert_eq!(findings.total(), 0);
        // A name written so in other text is still read.
        let (other, _) = mask(&masker, "API_KEY:0123456789abcdef0123456789abcdef");
        assert!(other.unwrap().starts_with("API_KEY:[API_KEY:"));
    }

    #[test]
    fn custom_detectors_merge_with_the_built_in_ones() {
        let masker = Masker::builder()
            .custom(
                CustomSpec::Words {
                    kind: Kind("CODENAME".into()),
                    words: vec!["nightjar".into()],
                    ignore_case: true,
                },
                Action::Redact,
            )
            .custom(
                CustomSpec::Regex {
                    kind: Kind("ORDER".into()),
                    pattern: "ORD-[0-9]{4}-[0-9]{7}".into(),
                    validator: None,
                },
                Action::Redact,
            )
            .build()
            .unwrap();
        let (out, _) = mask(&masker, "Nightjar ships ORD-2024-2476842 to a@example.org");
        assert_eq!(out.unwrap(), "[CODENAME] ships [ORDER] to [EMAIL_ADDRESS]");
    }

    #[test]
    fn any_text_is_masked_without_panics_on_char_boundaries() {
        let masker = Masker::builder()
            .names()
            .custom(
                CustomSpec::Words {
                    kind: Kind("CODENAME".into()),
                    words: vec!["straße".into(), "nightjar".into()],
                    ignore_case: true,
                },
                Action::Redact,
            )
            .build()
            .unwrap();
        let pieces = [
            "é",
            "日本",
            "½",
            " ",
            "\n",
            "-",
            ".",
            ":",
            "@",
            "+",
            "=",
            "1",
            "42",
            "4111",
            "Dr. ",
            "Müller",
            "Straße 5",
            "-----END PRIVATE KEY-----",
            "-----BEGIN PRIVATE KEY-----",
            "a@b.co",
            "10.0.0.1",
            "::",
            "eyJ",
            "sk-",
            "AKIA",
            "Bearer ",
            "key=",
            "0",
        ];
        let mut spans = Vec::new();
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let text = format!("{a}{b}{c}{a}{c}");
                    spans.clear();
                    masker.find(&text, &mut spans);
                    let mut at = 0;
                    for span in &spans {
                        assert!(span.start >= at && span.end > span.start, "{text:?}");
                        assert!(
                            text.is_char_boundary(span.start) && text.is_char_boundary(span.end)
                        );
                        at = span.end;
                    }
                    mask(&masker, &text).0.unwrap();
                }
            }
        }
    }

    #[test]
    fn debug_shows_no_key() {
        let builder = Masker::builder().hash_key(b"secret-key".to_vec());
        assert!(!format!("{builder:?}").contains("secret-key"));
        let masker = builder.build().unwrap();
        assert!(!format!("{masker:?}").contains("secret-key"));
    }

    #[test]
    fn overlaps_keep_the_longer_span() {
        let kind = |n: &str| Kind(n.into());
        let mut spans = vec![
            Span {
                start: 0,
                end: 4,
                kind: kind("A"),
                by_context: false,
            },
            Span {
                start: 6,
                end: 8,
                kind: kind("B"),
                by_context: false,
            },
            Span {
                start: 3,
                end: 12,
                kind: kind("C"),
                by_context: false,
            },
            Span {
                start: 12,
                end: 14,
                kind: kind("D"),
                by_context: false,
            },
        ];
        resolve_overlaps(&mut spans);
        let names: Vec<&str> = spans.iter().map(|s| s.kind.name()).collect();
        assert_eq!(names, vec!["C", "D"]);
    }
}
