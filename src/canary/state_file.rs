//! The state file: runtime weights and canary phases as JSON, written atomically
//! (temporary file, then rename) after every change, read at start.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::CanaryPhase;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StateFile {
    pub routes: HashMap<String, SavedRoute>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedRoute {
    /// Target pools, to recognise the same route configuration.
    pub pools: Vec<String>,
    pub configured: Vec<u32>,
    pub weights: Vec<u32>,
    pub canary: Option<CanaryPhase>,
}

impl StateFile {
    /// Reads the file; a missing file is an empty state.
    pub fn read(path: &Path) -> std::io::Result<StateFile> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: not a Junction state file: {e}", path.display()),
                )
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(StateFile::default()),
            Err(error) => Err(error),
        }
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = std::path::PathBuf::from(temporary);
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    }
}
