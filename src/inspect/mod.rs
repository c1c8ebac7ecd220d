//! Traffic inspection (issue #14): the flow filter expressions shared by capture, the
//! admin flow API and `junction flows`, and the on-disk ring captured flows go to.
//! Capture in the proxy, replay and the anomaly detectors build on them.

pub mod filter;
pub mod ring;

pub use filter::{Filter, FilterError, FlowFacts};
