//! Traffic inspection (issue #14): the flow filter expressions shared by capture, the
//! admin flow API and `junction flows`. Flow capture, replay and the anomaly detectors
//! build on it.

pub mod filter;

pub use filter::{Filter, FilterError, FlowFacts};
