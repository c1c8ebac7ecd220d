//! Traffic inspection (issue #14): flow capture (the flow being recorded, the sinks and
//! the on-disk ring flows go to), the stored flow format and its exports (HAR, JSON
//! lines), and the filter expressions shared by capture, the admin flow API and
//! `junction flows`.

pub mod anomaly;
pub mod capture;
pub mod export;
pub mod filter;
pub mod flow;
pub mod ring;

pub use capture::{Capture, Outcome, Recording, RequestHead, Sink};
pub use filter::{Filter, FilterError, FlowFacts};
pub use flow::Flow;
