//! Flow filter expressions (src/inspect/filter.rs), which the admin API takes from a
//! query string, and stored flow lines (src/inspect/flow.rs), which `junction flows`,
//! replay and the admin API read back from disk.
//!
//! The input's first line is an expression, the rest a stored flow line. Properties:
//! - parsing never panics; a refusal names a byte offset within the expression and a
//!   message;
//! - an accepted expression is evaluated against the flow (when the line parses, else
//!   against an empty one) without panicking, and `!F` is its exact negation;
//! - a flow line that parses writes a line that parses back to the same flow, and its
//!   HAR export has one entry.

#![no_main]

use junction::inspect::export::har;
use junction::inspect::ring::Line;
use junction::inspect::{Filter, Flow};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let Ok(expression) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let line = data.get(split + 1..).unwrap_or_default();
    let flow = Flow::from_line(line).ok();
    if let Some(flow) = &flow {
        let mut written = Vec::new();
        flow.write_line(&mut written);
        let again = Flow::from_line(&written).expect("a written flow parses");
        assert_eq!(&again, flow);
        let document = har(std::slice::from_ref(flow));
        assert_eq!(document["log"]["entries"].as_array().map(Vec::len), Some(1));
    }
    match Filter::parse(expression) {
        Ok(filter) => {
            let subject = flow.unwrap_or_default();
            let matched = filter.matches(&subject);
            if let Ok(negated) = Filter::parse(&format!("!({expression})")) {
                assert_eq!(negated.matches(&subject), !matched, "{expression:?}");
            }
        }
        Err(error) => {
            assert!(error.offset <= expression.len(), "{error} for {expression:?}");
            assert!(!error.message.is_empty());
        }
    }
});
