//! The fast path's parsers as the fuzz targets in `fuzz/` call them (feature
//! `fuzzing` only): re-exports of the private modules' items, unchanged.

pub use super::chunked::{BadChunk, ChunkedScanner};
pub use super::plain_head::oracle::{
    assert_request_agrees as assert_plain_request_agrees,
    assert_response_agrees as assert_plain_response_agrees,
};
pub use super::reply::{ClientHead, Framing, Parsed as ReplyParsed, Reply, parse as parse_reply};
pub use super::request::{
    Forwarding, Kind, Line, Parsed as RequestParsed, RequestHead, RouteView, SentBody,
};
pub use crate::pipeline::HeaderEdits;
