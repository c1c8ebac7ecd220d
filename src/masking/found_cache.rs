//! What a masker found in a text it read before, by a keyed 128-bit hash of the text:
//! a chat resends its system prompt and every earlier turn whole with each request, and
//! an agent its whole context at each step, so most of a request's text was read before.
//! Holds no text and no value: only the hash, and the found values' offsets and types.
//! Each client's texts are hashed apart ([`Partition`]), unless a route shares them.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use super::Span;

/// Texts shorter than this are read again: hashing and a set's lock cost about what
/// reading a few dozen bytes does, and short texts would push longer ones out.
pub const MIN_TEXT: usize = 64;

/// An answer with more values than this is not kept, which bounds what one entry holds
/// (a span is 40 bytes: 8 192 entries hold at most 5 MiB of spans).
pub const MAX_SPANS: usize = 16;

/// The most entries a route may ask for (`cache_entries`).
pub const MAX_ENTRIES: usize = 1 << 20;

/// Entries of one set: a text's hash picks its set, and the set keeps the texts read
/// last. One slot per text (a set of one) made texts that share a slot push each other
/// out at every turn: half of them, for 3 100 texts in 4 096 slots.
const WAYS: usize = 4;

/// Whose texts a lookup is among: a text is answered only from what was found in the
/// same text sent by the same client. A hit is answered sooner than a text read anew,
/// so a cache shared by every client of a route would let one client tell, by timing,
/// that another sent a text it guessed byte for byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition(u64);

/// Whose texts a route's cache answers from (`cache_scope`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheScope {
    /// Each client's own (the default): no client can learn, by timing, what another
    /// sent. A system prompt every client sends is read once per client.
    #[default]
    Client,
    /// Every client's, for routes whose clients are one party (an internal service):
    /// a system prompt is read once for all of them.
    Route,
}

/// Keys a client's identity into a [`Partition`]: random per process, so which
/// identities share a partition cannot be worked out (or chosen) from outside.
static PARTITIONS: LazyLock<RandomState> = LazyLock::new(RandomState::new);

impl Partition {
    /// One partition for every client: `cache_scope = "route"`, and `junction mask`.
    pub const SHARED: Partition = Partition(0);

    /// The partition of a client known by `identity` (its API key's name, or its
    /// address).
    pub fn of(identity: impl Hash) -> Partition {
        Partition(PARTITIONS.hash_one(identity))
    }
}

/// A fixed number of entries in sets of [`WAYS`], each set under its own lock, held for
/// a copy of a few spans. A set keeps its entries in the order they were last used, and
/// a new text takes the place of the one used longest ago: nothing grows.
pub struct FoundCache {
    /// The hash's seed, random per masker (and so per process and per reload): which
    /// texts share a hash cannot be worked out from outside.
    seed: u64,
    sets: Box<[Mutex<Set>]>,
}

/// A set's entries, most recently used first, and what was asked of it (counted under
/// its lock: no counter shared by every request).
#[derive(Default)]
struct Set {
    entries: [Option<Entry>; WAYS],
    hits: u64,
    misses: u64,
}

struct Entry {
    hash: u128,
    spans: Box<[Span]>,
}

impl FoundCache {
    /// A cache of about `entries` entries (rounded up to sets of [`WAYS`], a power of
    /// two of them), or `None` for 0.
    pub fn new(entries: usize) -> Option<FoundCache> {
        if entries == 0 {
            return None;
        }
        let sets = entries.min(MAX_ENTRIES).div_ceil(WAYS).next_power_of_two();
        Some(FoundCache {
            seed: RandomState::new().hash_one(0u64),
            sets: (0..sets).map(|_| Mutex::new(Default::default())).collect(),
        })
    }

    /// How many entries there are.
    pub fn entries(&self) -> usize {
        self.sets.len() * WAYS
    }

    /// The key of `text` sent in `partition`, when it is long enough to be kept. The
    /// partition changes the hash's seed: the same text in two partitions has two keys.
    pub fn key(&self, text: &str, partition: Partition) -> Option<u128> {
        (text.len() >= MIN_TEXT).then(|| {
            xxhash_rust::xxh3::xxh3_128_with_seed(text.as_bytes(), self.seed ^ partition.0)
        })
    }

    fn set(&self, key: u128) -> MutexGuard<'_, Set> {
        // The low bits pick the set; all 128 are compared.
        self.sets[key as usize & (self.sets.len() - 1)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends what was found in the text of `key` to `spans`; false when that text is
    /// not known.
    pub fn get(&self, key: u128, spans: &mut Vec<Span>) -> bool {
        let mut set = self.set(key);
        let Some(at) = set
            .entries
            .iter()
            .position(|entry| entry.as_ref().is_some_and(|e| e.hash == key))
        else {
            set.misses += 1;
            return false;
        };
        set.hits += 1;
        set.entries[..=at].rotate_right(1);
        if let Some(entry) = &set.entries[0] {
            spans.extend_from_slice(&entry.spans);
        }
        true
    }

    /// Texts answered from the cache and texts read, since it was made.
    pub fn lookups(&self) -> (u64, u64) {
        self.sets.iter().fold((0, 0), |(hits, misses), set| {
            let set = set.lock().unwrap_or_else(PoisonError::into_inner);
            (hits + set.hits, misses + set.misses)
        })
    }

    /// Keeps `found`, what was found in the text of `key`, unless it has more than
    /// [`MAX_SPANS`] values.
    pub fn put(&self, key: u128, found: &[Span]) {
        if found.len() > MAX_SPANS {
            return;
        }
        let entry = Entry {
            hash: key,
            spans: found.into(),
        };
        let mut set = self.set(key);
        // The same text, put by another request between its `get` and this, or the
        // entry used longest ago, makes room.
        let at = set
            .entries
            .iter()
            .position(|e| e.as_ref().is_none_or(|e| e.hash == key))
            .unwrap_or(WAYS - 1);
        set.entries[..=at].rotate_right(1);
        let _old = set.entries[0].replace(entry);
        drop(set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masking::Kind;

    fn span(start: usize) -> Span {
        Span {
            start,
            end: start + 4,
            kind: Kind("EMAIL_ADDRESS".into()),
            by_context: false,
        }
    }

    #[test]
    fn a_text_kept_is_answered_and_others_are_not() {
        let cache = FoundCache::new(8).unwrap();
        let text = "a system prompt long enough to be kept, read once and then again";
        let other = "a system prompt long enough to be kept, read once and then agaim";
        let key = cache.key(text, Partition::SHARED).unwrap();
        let mut spans = Vec::new();
        assert!(!cache.get(key, &mut spans));
        cache.put(key, &[span(2), span(10)]);
        assert!(cache.get(key, &mut spans));
        assert_eq!(spans, vec![span(2), span(10)]);
        // One byte apart: another key, not answered.
        let other_key = cache.key(other, Partition::SHARED).unwrap();
        assert_ne!(other_key, key);
        spans.clear();
        assert!(!cache.get(other_key, &mut spans));
        assert!(spans.is_empty());
        // An answer with nothing found is an answer too.
        cache.put(other_key, &[]);
        assert!(cache.get(other_key, &mut spans));
        assert!(spans.is_empty());
    }

    #[test]
    fn short_texts_and_long_answers_are_not_kept() {
        let cache = FoundCache::new(8).unwrap();
        assert_eq!(
            cache.key(&"x".repeat(MIN_TEXT - 1), Partition::SHARED),
            None
        );
        let key = cache.key(&"x".repeat(MIN_TEXT), Partition::SHARED).unwrap();
        let many: Vec<Span> = (0..=MAX_SPANS).map(|i| span(i * 8)).collect();
        cache.put(key, &many);
        assert!(!cache.get(key, &mut Vec::new()));
        cache.put(key, &many[..MAX_SPANS]);
        assert!(cache.get(key, &mut Vec::new()));
    }

    #[test]
    fn a_new_text_takes_the_place_of_the_one_used_longest_ago() {
        // One set: every text shares it.
        let cache = FoundCache::new(1).unwrap();
        assert_eq!(cache.entries(), WAYS);
        let keys: Vec<u128> = (0..=WAYS)
            .map(|i| {
                cache
                    .key(&format!("text number {i} ").repeat(8), Partition::SHARED)
                    .unwrap()
            })
            .collect();
        for (i, key) in keys[..WAYS].iter().enumerate() {
            cache.put(*key, &[span(i)]);
        }
        // The first is used again: the second is now the one used longest ago.
        assert!(cache.get(keys[0], &mut Vec::new()));
        cache.put(keys[WAYS], &[span(WAYS)]);
        assert!(!cache.get(keys[1], &mut Vec::new()));
        for (i, key) in keys.iter().enumerate().filter(|(i, _)| *i != 1) {
            let mut spans = Vec::new();
            assert!(cache.get(*key, &mut spans), "text {i}");
            assert_eq!(spans, vec![span(i)]);
        }
        // A text put twice takes one entry.
        cache.put(keys[0], &[span(0)]);
        cache.put(keys[0], &[span(0)]);
        assert!((2..=WAYS).all(|i| cache.get(keys[i], &mut Vec::new())));
        // Every `get` above is counted: one of them missed.
        assert_eq!(cache.lookups(), (1 + 4 + 3, 1));
    }

    #[test]
    fn sizes_round_up_and_zero_is_none() {
        assert!(FoundCache::new(0).is_none());
        assert_eq!(FoundCache::new(3).unwrap().entries(), 4);
        assert_eq!(FoundCache::new(4096).unwrap().entries(), 4096);
        assert_eq!(FoundCache::new(5000).unwrap().entries(), 8192);
        assert_eq!(FoundCache::new(usize::MAX).unwrap().entries(), MAX_ENTRIES);
    }

    #[test]
    fn a_text_kept_for_one_client_is_not_answered_for_another() {
        let cache = FoundCache::new(8).unwrap();
        let text = "the same chat history, sent by two clients of one route, one after the other";
        let (alice, bob) = (Partition::of("alice"), Partition::of("bob"));
        assert_ne!(alice, bob);
        assert_eq!(alice, Partition::of("alice"));
        let key = cache.key(text, alice).unwrap();
        cache.put(key, &[span(3)]);
        let mut spans = Vec::new();
        assert!(cache.get(cache.key(text, alice).unwrap(), &mut spans));
        assert_eq!(spans, vec![span(3)]);
        for other in [bob, Partition::SHARED] {
            let other_key = cache.key(text, other).unwrap();
            assert_ne!(other_key, key);
            assert!(!cache.get(other_key, &mut Vec::new()));
        }
    }

    #[test]
    fn two_caches_hash_the_same_text_apart() {
        let text = "the same text, read by two maskers, each with a seed of its own for the hash";
        let a = FoundCache::new(8)
            .unwrap()
            .key(text, Partition::SHARED)
            .unwrap();
        let b = FoundCache::new(8)
            .unwrap()
            .key(text, Partition::SHARED)
            .unwrap();
        assert_ne!(a, b);
    }
}
