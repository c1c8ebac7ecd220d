//! What a route's `include_usage` does to the bytes of an exchange: the request body
//! it adds the field to (src/pipeline/include_usage.rs), the stream it drops the usage
//! chunk from (src/llm/usage_chunk.rs), and the usage read through a content coding
//! (src/llm/usage.rs, src/llm/content_coding.rs), all from bytes a client or an
//! endpoint sent.
//!
//! Properties, for any bytes:
//! - nothing panics;
//! - the stream filter's output is the same however the input is split, never longer
//!   than the input, and the input itself when it dropped nothing;
//! - a body the field was added to parses as JSON equal to the original with
//!   `stream_options.include_usage = true`, and is the original plus at most 40 bytes.

#![no_main]

use junction::fuzzing::{Asked, with_include_usage};
use junction::llm::{ReplyKind, UsageChunkFilter, UsageScanner};
use libfuzzer_sys::fuzz_target;

fn filtered(pieces: &[&[u8]]) -> (Vec<u8>, u32) {
    let mut filter = UsageChunkFilter::default();
    let mut out = Vec::new();
    for piece in pieces {
        filter.push(piece, &mut out);
    }
    filter.finish(&mut out);
    (out, filter.dropped)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let whole = filtered(&[rest]);
    let cut = usize::from(first) * rest.len() / 256;
    assert_eq!(filtered(&[&rest[..cut], &rest[cut..]]), whole);
    let bytewise: Vec<&[u8]> = rest.chunks(1).collect();
    assert_eq!(filtered(&bytewise), whole);
    assert!(whole.0.len() <= rest.len());
    if whole.1 == 0 {
        assert_eq!(whole.0, rest);
    }

    if let Asked::Added(body) = with_include_usage(rest) {
        assert!(body.len() <= rest.len() + 40);
        // The scanner accepts an escaped lone surrogate that serde_json refuses: such a
        // body is only checked for staying what serde_json makes of it.
        let Ok(mut original) = serde_json::from_slice::<serde_json::Value>(rest) else {
            assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());
            return;
        };
        let added: serde_json::Value = serde_json::from_slice(&body).expect("still JSON");
        let options = &mut original["stream_options"];
        if options.is_null() {
            *options = serde_json::json!({});
        }
        options["include_usage"] = serde_json::Value::Bool(true);
        assert_eq!(added, original);
    }

    let coding: &[u8] = match first % 5 {
        0 => b"gzip",
        1 => b"deflate",
        2 => b"br",
        3 => b"zstd",
        _ => b"identity",
    };
    let kind = if first & 0x80 == 0 {
        ReplyKind::EventStream
    } else {
        ReplyKind::Json
    };
    if let Some(mut scanner) = UsageScanner::for_answer(kind, Some(coding)) {
        scanner.feed(&rest[..cut]);
        scanner.feed(&rest[cut..]);
        scanner.finish();
        let _ = (scanner.usage(), scanner.unread(), scanner.answer_text());
    }
});
