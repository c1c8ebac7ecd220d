//! The `storage` directory: the account's credentials (one file per ACME directory) and
//! the certificate chain and key (one pair per first domain). Files are written whole
//! (temporary file, then rename) with mode 0600, in a directory made 0700. A `.lock`
//! file (flock) lets one issuer at a time, of any process, order and write.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use instant_acme::AccountCredentials;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AcmeError;

/// What the account file holds: the credentials, and what they were made for.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredAccount {
    pub directory: String,
    pub contact: Vec<String>,
    pub credentials: AccountCredentials,
}

#[derive(Debug, Clone)]
pub(super) struct Storage {
    dir: PathBuf,
    /// File stem of the certificate files: the first domain (`*` spelt `_`).
    stem: String,
}

impl Storage {
    pub fn new(dir: &Path, domains: &[String]) -> Self {
        let first = domains.first().map(String::as_str).unwrap_or("certificate");
        Self {
            dir: dir.to_path_buf(),
            stem: first.replace('*', "_"),
        }
    }

    /// Waits for the directory's lock: held while an issuer looks at what is stored,
    /// orders and writes, so two processes (or two listeners) sharing the directory
    /// never order at once and the second finds what the first stored. The lock is
    /// the kernel's (flock): a process that dies releases it.
    pub async fn lock(&self) -> Result<StorageLock, AcmeError> {
        self.create_dir()?;
        let path = self.dir.join(".lock");
        let failed = {
            let path = path.clone();
            move |e: std::io::Error| AcmeError::Storage(path.clone(), e.to_string())
        };
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(&failed)?;
        // flock blocks: on a blocking thread, so the runtime keeps serving.
        let locked = tokio::task::spawn_blocking(move || {
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map(|()| file)
        })
        .await
        .map_err(|e| failed(std::io::Error::other(e)))?
        .map_err(|e| failed(e.into()))?;
        Ok(StorageLock { _file: locked })
    }

    fn create_dir(&self) -> Result<(), AcmeError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| AcmeError::Storage(self.dir.clone(), e.to_string()))
    }

    pub fn account_path(&self, directory: &str) -> PathBuf {
        let digest = Sha256::digest(directory.as_bytes());
        let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("account-{short}.json"))
    }

    pub fn chain_path(&self) -> PathBuf {
        self.dir.join(format!("{}.chain.pem", self.stem))
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join(format!("{}.key.pem", self.stem))
    }

    /// The stored account for `directory`, if there is one and it was made for it.
    pub fn load_account(&self, directory: &str) -> Result<Option<StoredAccount>, AcmeError> {
        let path = self.account_path(directory);
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        let stored: StoredAccount = serde_json::from_str(&text)
            .map_err(|e| AcmeError::Storage(path.clone(), e.to_string()))?;
        Ok((stored.directory == directory).then_some(stored))
    }

    pub fn save_account(&self, account: &StoredAccount) -> Result<(), AcmeError> {
        let path = self.account_path(&account.directory);
        let text = serde_json::to_vec_pretty(account)
            .map_err(|e| AcmeError::Storage(path.clone(), e.to_string()))?;
        self.write_private(&path, &text)
    }

    /// The stored chain and key, both PEM, when both files are there.
    pub fn load_certificate(&self) -> Result<Option<(String, String)>, AcmeError> {
        let chain = read_optional(&self.chain_path())?;
        let key = read_optional(&self.key_path())?;
        Ok(chain.zip(key))
    }

    /// Writes the key first: a chain on disk always has its key beside it.
    pub fn save_certificate(&self, chain_pem: &str, key_pem: &str) -> Result<(), AcmeError> {
        self.write_private(&self.key_path(), key_pem.as_bytes())?;
        self.write_private(&self.chain_path(), chain_pem.as_bytes())
    }

    fn write_private(&self, path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
        let failed = |e: std::io::Error| AcmeError::Storage(path.to_path_buf(), e.to_string());
        self.create_dir()?;
        // A name no other writer uses (process and sequence), so a writer that does not
        // hold the lock still cannot clobber another's half-written file.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(format!(
            ".new.{}.{}",
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        let temporary = PathBuf::from(temporary);
        let written = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| {
                file.write_all(bytes)?;
                file.sync_all()
            })
            .and_then(|()| fs::rename(&temporary, path));
        if written.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        written.map_err(failed)
    }
}

/// The storage directory's lock, released when dropped (the file is closed).
#[derive(Debug)]
pub(super) struct StorageLock {
    _file: fs::File,
}

fn read_optional(path: &Path) -> Result<Option<String>, AcmeError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AcmeError::Storage(path.to_path_buf(), e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    #[test]
    fn files_are_private_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::new(&dir.path().join("acme"), &["*.example.com".into()]);
        assert_eq!(storage.load_certificate().unwrap(), None);
        storage.save_certificate("chain 1", "key 1").unwrap();
        storage.save_certificate("chain 2", "key 2").unwrap();
        assert_eq!(
            storage.load_certificate().unwrap(),
            Some(("chain 2".into(), "key 2".into()))
        );
        for path in [storage.chain_path(), storage.key_path()] {
            assert!(path.to_string_lossy().contains("_.example.com"));
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{path:?}");
        }
        let mode = fs::metadata(dir.path().join("acme"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let names: Vec<_> = fs::read_dir(dir.path().join("acme"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "temporary files left: {names:?}");
    }

    #[tokio::test]
    async fn the_lock_is_held_by_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::new(&dir.path().join("acme"), &["a.example.com".into()]);
        let held = storage.lock().await.unwrap();
        // Another open file of the lock, as another process has, waits for it.
        let other = storage.clone();
        let mut waiting = tokio::spawn(async move { other.lock().await.map(drop) });
        let early = tokio::time::timeout(Duration::from_millis(300), &mut waiting).await;
        assert!(early.is_err(), "locked twice at once");
        drop(held);
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the lock is free once dropped")
            .unwrap()
            .unwrap();
    }
}
