//! Stable 64-bit hashing: the same key hashes the same on every instance, platform and
//! Rust version (std's hasher promises none of that), so hash-based affinity agrees
//! across a fleet.

/// FNV-1a over the bytes, finished with a 64-bit mixer for avalanche.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(hash)
}

/// SplitMix64's finaliser: a bijective mix with good avalanche.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
