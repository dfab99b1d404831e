//! A spool file opened so that nothing can change it: the file descriptor is read-only, every
//! write redb makes (the repair after an unclean stop, an integrity check's commit, the close)
//! lands in memory, and the locks a writer would take exclusively are taken shared.
//!
//! Owns that backend, for the forensic commands (`plantgate spool stats|export|verify`). The
//! shared locks conflict with the exclusive ones of a running gateway (redb's whole-file lock in
//! its default `ExclusiveWriter` mode), so an open beside it fails with `DatabaseAlreadyOpen`
//! instead of reading pages the gateway is rewriting; a gateway that starts meanwhile is refused
//! the same way until the command ends. Must never open the file for writing, and never hold a
//! page in memory that redb did not write (reads of unwritten pages go to the file).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

const BLOCK: u64 = 4096;

/// The file, read-only, with redb's writes kept in memory by 4 KiB block.
#[derive(Debug)]
pub(super) struct ReadOnlyFile {
    file: File,
    /// Takes the locks, on a second read-only descriptor of the same file.
    locks: FileBackend,
    written: Mutex<Written>,
}

#[derive(Debug)]
struct Written {
    blocks: BTreeMap<u64, Box<[u8]>>,
    /// The length redb set; the file's own until it sets one.
    len: u64,
    /// How much of the file still shows: a shorter length set once hides the rest for good.
    visible: u64,
}

impl ReadOnlyFile {
    pub(super) fn open(path: &Path) -> io::Result<ReadOnlyFile> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let locks = FileBackend::new(File::open(path)?).map_err(io::Error::other)?;
        Ok(ReadOnlyFile {
            file,
            locks,
            written: Mutex::new(Written {
                blocks: BTreeMap::new(),
                len,
                visible: len,
            }),
        })
    }

    fn written(&self) -> std::sync::MutexGuard<'_, Written> {
        self.written.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fills `out` with what lies at `offset` below redb's writes: the file up to `visible`,
    /// zeros past it.
    fn base(&self, visible: u64, offset: u64, out: &mut [u8]) -> io::Result<()> {
        out.fill(0);
        let shown = visible.saturating_sub(offset).min(out.len() as u64) as usize;
        let mut done = 0;
        while done < shown {
            match self
                .file
                .read_at(&mut out[done..shown], offset + done as u64)?
            {
                0 => break,
                n => done += n,
            }
        }
        Ok(())
    }
}

impl StorageBackend for ReadOnlyFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.written().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let w = self.written();
        if offset + out.len() as u64 > w.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the storage",
            ));
        }
        let mut at = 0usize;
        while at < out.len() {
            let pos = offset + at as u64;
            let (block, within) = (pos / BLOCK, (pos % BLOCK) as usize);
            let n = (BLOCK as usize - within).min(out.len() - at);
            match w.blocks.get(&block) {
                Some(b) => out[at..at + n].copy_from_slice(&b[within..within + n]),
                None => self.base(w.visible, pos, &mut out[at..at + n])?,
            }
            at += n;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut w = self.written();
        // What lies past the new end reads as zeros if the storage grows again.
        w.blocks.split_off(&len.div_ceil(BLOCK));
        if let Some(b) = w.blocks.get_mut(&(len / BLOCK)) {
            b[(len % BLOCK) as usize..].fill(0);
        }
        w.visible = w.visible.min(len);
        w.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut w = self.written();
        let mut at = 0usize;
        while at < data.len() {
            let pos = offset + at as u64;
            let (block, within) = (pos / BLOCK, (pos % BLOCK) as usize);
            let n = (BLOCK as usize - within).min(data.len() - at);
            if !w.blocks.contains_key(&block) {
                let mut b = vec![0u8; BLOCK as usize].into_boxed_slice();
                self.base(w.visible, block * BLOCK, &mut b)?;
                w.blocks.insert(block, b);
            }
            if let Some(b) = w.blocks.get_mut(&block) {
                b[within..within + n].copy_from_slice(&data[at..at + n]);
            }
            at += n;
        }
        w.len = w.len.max(offset + data.len() as u64);
        Ok(())
    }

    fn close(&self) -> io::Result<()> {
        self.locks.close()
    }

    // A writer's exclusive locks, taken shared: they still conflict with a writer elsewhere.
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.locks.try_lock_shared_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.locks.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.locks.lock_shared_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.locks.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.locks.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.locks.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    fn read(b: &ReadOnlyFile, offset: u64, n: usize) -> Vec<u8> {
        let mut out = vec![0xAA; n];
        b.read(offset, &mut out).unwrap();
        out
    }

    #[test]
    fn writes_are_read_back_and_never_reach_the_file() {
        let original: Vec<u8> = (0..3 * BLOCK).map(|i| (i % 251) as u8).collect();
        let (_d, path) = file(&original);
        let b = ReadOnlyFile::open(&path).unwrap();
        b.write(BLOCK - 2, &[1, 2, 3, 4]).unwrap();
        b.sync_data().unwrap();
        assert_eq!(
            read(&b, BLOCK - 3, 6),
            [
                original[BLOCK as usize - 3],
                1,
                2,
                3,
                4,
                original[BLOCK as usize + 2]
            ]
        );
        b.write(3 * BLOCK + 10, &[9]).unwrap();
        assert_eq!(b.len().unwrap(), 3 * BLOCK + 11);
        assert_eq!(read(&b, 3 * BLOCK, 11), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(std::fs::read(&path).unwrap(), original, "the file changed");
    }

    #[test]
    fn a_shorter_length_hides_the_rest_of_the_file_for_good() {
        let (_d, path) = file(&vec![7u8; 2 * BLOCK as usize]);
        let b = ReadOnlyFile::open(&path).unwrap();
        b.set_len(100).unwrap();
        let mut past = [0u8; 1];
        assert!(
            b.read(100, &mut past).is_err(),
            "a read past the end must fail"
        );
        b.set_len(2 * BLOCK).unwrap();
        assert_eq!(read(&b, 98, 4), [7, 7, 0, 0]);
        assert_eq!(read(&b, BLOCK, 4), [0, 0, 0, 0]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * BLOCK);
    }

    #[test]
    fn a_writer_elsewhere_refuses_the_open_and_readers_share() {
        let (_d, path) = file(b"");
        let writer = redb::Database::create(&path).unwrap();
        let refused = redb::Database::builder()
            .create_with_backend(ReadOnlyFile::open(&path).unwrap())
            .err();
        assert!(
            matches!(refused, Some(redb::DatabaseError::DatabaseAlreadyOpen)),
            "{refused:?}"
        );
        drop(writer);
        let a = redb::Database::builder()
            .create_with_backend(ReadOnlyFile::open(&path).unwrap())
            .unwrap();
        let b = redb::Database::builder()
            .create_with_backend(ReadOnlyFile::open(&path).unwrap())
            .unwrap();
        assert!(
            matches!(
                redb::Database::create(&path).err(),
                Some(redb::DatabaseError::DatabaseAlreadyOpen)
            ),
            "a gateway starting meanwhile is refused until the readers close"
        );
        drop((a, b));
        redb::Database::create(&path).unwrap();
    }
}
