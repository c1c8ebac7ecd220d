//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing` only): the parsers
//! of private modules re-exported as they are, and the config loader called the way
//! `junction check` calls it. Nothing here changes what a parser does.

use std::path::Path;
use std::sync::Arc;

pub use crate::fastpath::fuzzing::*;
pub use crate::normalize::path::{NormalPath, normalize as normalize_path};
pub use crate::normalize::response::{ContentLength, framing};

use crate::balance::SplitMix;
use crate::config::{CompileContext, ConfigErrors, Plan};

/// Validates and compiles config text as `junction check` does, relative paths inside
/// it taken from `base`.
pub fn load_config(text: &str, base: &Path) -> Result<Plan, ConfigErrors> {
    let registry = crate::upstream::Registry::default();
    let telemetry = Arc::new(crate::telemetry::Telemetry::default());
    let audit = Arc::new(crate::security::audit::AuditLog::default());
    let controls = crate::canary::Controls::default();
    let context = CompileContext {
        registry: &registry,
        telemetry: &telemetry,
        audit: &audit,
        controls: &controls,
        rng: Arc::new(SplitMix::with_seed(0)),
    };
    crate::config::load_str(text, base, &context)
}
