//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing` only): the parsers
//! of private modules re-exported as they are, and the config loader called the way
//! `junction check` calls it. Nothing here changes what a parser does.

use std::path::Path;

pub use crate::fastpath::fuzzing::*;
pub use crate::normalize::path::{NormalPath, normalize as normalize_path};
pub use crate::normalize::response::{ContentLength, framing};
pub use crate::pipeline::include_usage::{Asked, with_include_usage};

use crate::config::{ConfigErrors, Plan};

/// Validates and compiles config text as `junction check` does, relative paths inside
/// it taken from `base`.
pub fn load_config(text: &str, base: &Path) -> Result<Plan, ConfigErrors> {
    crate::config::checking(|context| crate::config::load_str(text, base, context))
}

/// The IPv6 check of the masking detectors: the groups written out in `text` when it is
/// an address (`masking::network`).
pub fn ipv6_groups(text: &[u8]) -> Option<usize> {
    crate::masking::network::ipv6_groups(text)
}
