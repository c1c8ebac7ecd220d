//! The config loader `junction check` runs (src/config: TOML, then the spec, then the
//! checks and compilation into a plan), on any text.
//!
//! Properties:
//! - it never panics;
//! - a config it refuses has at least one error, each with a message and a line
//!   within the text; text that is not TOML gets one error;
//! - every error of a config that is TOML names its key path (`routes[2].pool`);
//! - the same text gives the same answer twice;
//! - a config it takes has at least one listener or egress proxy.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

/// Whether some string in the config could name a file that never ends or blocks
/// (`/dev/zero`, `/proc/...`, a FIFO under `/sys`): the loader reads the files a config
/// names (keys, certificates, address lists), so those inputs are skipped.
fn names_a_special_file(value: &toml::Value) -> bool {
    match value {
        toml::Value::String(text) => ["dev", "proc", "sys"].iter().any(|p| text.contains(p)),
        toml::Value::Array(items) => items.iter().any(names_a_special_file),
        toml::Value::Table(table) => table.values().any(names_a_special_file),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let is_toml = match text.parse::<toml::Table>() {
        Ok(table) => {
            if names_a_special_file(&toml::Value::Table(table)) {
                return;
            }
            true
        }
        Err(_) => false,
    };
    // Relative file names are read from examples/, as `junction check` run on an
    // example reads them: the examples' certificates load and their configs compile.
    let base = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"));
    let first = junction::fuzzing::load_config(text, base);
    let lines = text.lines().count().max(1) + 1;
    match &first {
        Ok(plan) => assert!(!plan.listeners.is_empty(), "a plan with no listener"),
        Err(errors) => {
            assert!(!errors.0.is_empty(), "refused without an error");
            if !is_toml {
                assert_eq!(errors.0.len(), 1, "{errors}");
            }
            for error in &errors.0 {
                assert!(!error.message.trim().is_empty(), "{error:?}");
                let line = error.line.unwrap_or_else(|| panic!("no line: {error:?}"));
                assert!(
                    (1..=lines).contains(&line),
                    "line {line} of {lines}: {error:?}"
                );
                if is_toml {
                    assert!(!error.path.is_empty(), "no key path: {error:?}");
                }
            }
        }
    }
    let again = junction::fuzzing::load_config(text, base);
    match (&first, &again) {
        (Ok(_), Ok(_)) => {}
        (Err(first), Err(again)) => assert_eq!(first.0, again.0),
        _ => panic!("one text, two answers"),
    }
});
