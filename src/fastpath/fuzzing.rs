//! The fast path's parsers as the fuzz targets in `fuzz/` call them (feature
//! `fuzzing` only): re-exports of the private modules' items, unchanged.

pub use super::chunked::{BadChunk, ChunkedScanner};
pub use super::plain_head::{
    Lines as PlainLines, PlainHead, PlainRequest, read_request as read_plain_request,
    read_response as read_plain_head,
};
pub use super::reply::{ClientHead, Framing, Parsed as ReplyParsed, Reply, parse as parse_reply};
pub use super::request::{
    Forwarding, Kind, Line, Parsed as RequestParsed, RequestHead, RouteView, SentBody,
};
pub use crate::pipeline::HeaderEdits;
