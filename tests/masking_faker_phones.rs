//! Recall on phone numbers written by another generator: Faker's locales for the
//! masking corpus's regions, each kept only when libphonenumber finds it valid for
//! its region (`tests/data/faker_phones.jsonl`, written by `scripts/faker-phones`).
//! The formats test's phone numbers are this project's own shapes; these are forms it
//! did not choose (`08-49 02 67`, `90-4560-1048`, `22 383 47 01`, `(0131)4960338`).
//!
//! `MASKING_MISSES=1 cargo test --test masking_faker_phones -- --nocapture` lists the
//! misses.

use std::collections::BTreeMap;

use junction::masking::{Findings, Masker, Vault, mask_text};

/// The sentences a number is put in, in turn.
const CONTEXTS: [&str; 5] = [
    "Call me at {} tomorrow.",
    "phone: {}",
    "My number is {}, thanks",
    "{}",
    "电话{}",
];

#[test]
fn phone_numbers_as_fakers_locales_write_them_are_masked() {
    let show_misses = std::env::var_os("MASKING_MISSES").is_some();
    let data = include_str!("data/faker_phones.jsonl");
    let masker = Masker::default();
    // region -> (numbers, masked)
    let mut recall: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut misses = Vec::new();
    for (i, line) in data.lines().enumerate() {
        let row: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let region = row["region"].as_str().expect("a region").to_string();
        let value = row["value"].as_str().expect("a value");
        let text = CONTEXTS[i % CONTEXTS.len()].replace("{}", value);
        let mut out = String::new();
        mask_text(
            &masker,
            &text,
            &mut Vault::default(),
            &mut out,
            &mut Findings::default(),
        )
        .expect("no type blocks");
        let masked = !out.contains(value);
        let entry = recall.entry(region.clone()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(masked);
        if !masked {
            misses.push(format!("{region}: {text:?} -> {out:?}"));
        }
    }
    let (mut all, mut all_masked) = (0, 0);
    let mut failures = Vec::new();
    for (region, (numbers, masked)) in &recall {
        let share = *masked as f64 / *numbers as f64;
        println!("{region}  {share:.4} of {numbers}");
        all += numbers;
        all_masked += masked;
        if share < 0.95 {
            failures.push(format!("{region} {share:.4}"));
        }
    }
    let share = all_masked as f64 / all as f64;
    println!("all {share:.4} of {all}");
    if show_misses {
        for miss in &misses {
            println!("missed {miss}");
        }
    }
    assert!(all >= 3000, "the data file holds {all} numbers");
    assert!(share >= 0.99, "recall {share:.4} under 0.99");
    assert!(failures.is_empty(), "regions under 0.95: {failures:?}");
}
