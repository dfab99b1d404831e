//! Where a store lives: its file, or a redb storage backend shared with the caller (the
//! power-loss model, an in-memory image), reopened on the same bytes after an error.
//! Owns nothing else; must never decide what is stored.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::StorageBackend;

/// Where a store lives: its file, or (for tests and tools: a power-loss model, an in-memory
/// image) a storage backend shared with the caller, reopened on the same bytes after an error.
#[derive(Clone, Debug)]
pub enum Origin {
    File(PathBuf),
    Backend {
        /// A name for logs and errors; no file is opened there.
        label: PathBuf,
        backend: Arc<dyn StorageBackend>,
    },
}

impl Origin {
    /// The file's path, or the backend's label.
    pub fn path(&self) -> &Path {
        match self {
            Origin::File(p) | Origin::Backend { label: p, .. } => p,
        }
    }

    /// The store's size in bytes (0 when it cannot be told).
    pub fn len(&self) -> u64 {
        match self {
            Origin::File(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            Origin::Backend { backend, .. } => backend.len().unwrap_or(0),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Lends a shared backend to one `Database` (redb takes its backend by value).
#[derive(Debug)]
pub(super) struct Shared(pub(super) Arc<dyn StorageBackend>);

impl StorageBackend for Shared {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write(offset, data)
    }
}
