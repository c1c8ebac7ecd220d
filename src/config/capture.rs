//! The `capture` table of a route or a listener: which share of flows is recorded,
//! which are kept (a filter expression), how much of each body, and where they go
//! within which disk budget. Validated once at load, every problem named by its key.

use std::path::Path;
use std::sync::Arc;

use super::checks::{Errors, bytes_of};
use super::spec::{CaptureSpec, SizeSpec};
use crate::inspect::{Capture, Filter};

/// Bytes of each body kept unless `max_body` says otherwise.
const DEFAULT_MAX_BODY: u64 = 64 * 1024;
/// The disk a capture directory may fill unless `max_disk` says otherwise.
const DEFAULT_MAX_DISK: u64 = 1 << 30;
/// The largest `max_body`: the HTTP/1.1 engine holds a captured request body whole.
const LARGEST_MAX_BODY: u64 = 16 << 20;

/// Validates a `capture` table (at `path`, e.g. `routes[0].capture`); a relative `dir`
/// is taken from the config file's directory. Nothing is created: the directory is
/// made when the first flow is kept, so it is only checked that it could be.
pub fn compile_capture(
    spec: &CaptureSpec,
    path: &str,
    base: &Path,
    errors: &mut Errors,
) -> Option<Arc<Capture>> {
    let before = errors.len();
    let sample = spec.sample.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample) || sample.is_nan() {
        errors.push((
            format!("{path}.sample"),
            format!("{sample} is not a share between 0 and 1 (0.1 records one flow in ten)"),
        ));
    }
    let filter = spec.filter.as_deref().and_then(|text| {
        Filter::parse(text)
            .map_err(|e| errors.push((format!("{path}.filter"), e.to_string())))
            .ok()
    });
    let mut size = |value: &Option<SizeSpec>, key: &str, default: u64| match value {
        None => Some(default),
        Some(value) => bytes_of(value, &format!("{path}.{key}"), errors),
    };
    let max_body = size(&spec.max_body, "max_body", DEFAULT_MAX_BODY);
    let max_disk = size(&spec.max_disk, "max_disk", DEFAULT_MAX_DISK);
    if max_body.is_some_and(|b| b > LARGEST_MAX_BODY) {
        errors.push((
            format!("{path}.max_body"),
            format!("at most {LARGEST_MAX_BODY} bytes (16MiB) of a body are kept"),
        ));
    }
    if max_disk.is_some_and(|d| d < 1 << 20) {
        errors.push((
            format!("{path}.max_disk"),
            "at least 1MiB: the ring keeps eight segment files".into(),
        ));
    }
    if spec.dir.trim().is_empty() {
        errors.push((
            format!("{path}.dir"),
            "name a directory for the flows".into(),
        ));
    }
    if errors.len() > before {
        return None;
    }
    let (max_body, max_disk) = (max_body?, max_disk?);
    let dir = base.join(&spec.dir);
    if let Err(problem) = could_hold_flows(&dir) {
        errors.push((format!("{path}.dir"), problem));
        return None;
    }
    Some(Arc::new(Capture::new(
        sample,
        filter,
        max_body as usize,
        dir,
        max_disk,
    )))
}

/// A directory there, or one that could be made: its nearest existing ancestor is a
/// directory.
fn could_hold_flows(dir: &Path) -> Result<(), String> {
    let existing = dir.ancestors().find(|a| a.exists());
    match existing {
        Some(found) if found.is_dir() => Ok(()),
        Some(found) => Err(format!(
            "{} cannot hold flows: {} is not a directory",
            dir.display(),
            found.display()
        )),
        None => Err(format!("{} cannot be made", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> CaptureSpec {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_good_table_compiles_with_its_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let mut errors = Vec::new();
        let capture = compile_capture(&spec(r#"dir = "flows""#), "c", dir.path(), &mut errors);
        let capture = capture.expect("compiles");
        assert!(errors.is_empty());
        assert_eq!(capture.sample, 1.0);
        assert_eq!(capture.max_body, 64 * 1024);
        assert!(capture.filter.is_none());
        assert!(
            !dir.path().join("flows").exists(),
            "made at the first flow, not at load"
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let spec = spec(&format!("dir = \"{}\"", file.join("flows").display()));
        assert!(compile_capture(&spec, "c", dir.path(), &mut errors).is_none());
        assert_eq!(errors[0].0, "c.dir");
        assert!(errors[0].1.contains("is not a directory"), "{errors:?}");
    }

    #[test]
    fn every_bad_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut errors = Vec::new();
        let text = r#"
            sample = 1.5
            filter = "~c"
            max_body = "64 KiB of it"
            max_disk = "10KiB"
            dir = " "
        "#;
        assert!(
            compile_capture(&spec(text), "routes[2].capture", dir.path(), &mut errors).is_none()
        );
        let keys: Vec<&str> = errors.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "routes[2].capture.sample",
                "routes[2].capture.filter",
                "routes[2].capture.max_body",
                "routes[2].capture.max_disk",
                "routes[2].capture.dir",
            ]
        );
        assert!(errors[1].1.contains("at byte"), "{:?}", errors[1]);
    }
}
