//! A spool file opened for inspection, never for change: the forensic commands' only way into
//! redb (`plantgate spool stats|export|verify`, in a child process).
//!
//! Owns the read-only open (on `store::overlay`: a read-only descriptor, redb's writes in
//! memory, locks that refuse a running gateway), the walk of every entry in key order and
//! redb's integrity check. Must never change the file, and never run in a process whose death
//! matters: a damaged page can make redb panic.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::overlay::ReadOnlyFile;
use super::{StoreError, ALARMS, GAPS, META, READINGS};
use crate::record::Seq;

/// The table an entry lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lane {
    Alarms,
    Gaps,
    Readings,
}

type Entry<'t> = (
    redb::AccessGuard<'t, u64>,
    redb::AccessGuard<'t, &'static [u8]>,
);

fn table(lane: Lane) -> TableDefinition<'static, u64, &'static [u8]> {
    match lane {
        Lane::Alarms => ALARMS,
        Lane::Gaps => GAPS,
        Lane::Readings => READINGS,
    }
}

/// Every lane, for [`Inspected::walk`].
pub const ALL: [Lane; 3] = [Lane::Alarms, Lane::Gaps, Lane::Readings];

/// A spool file, open read-only.
pub struct Inspected {
    db: Database,
    path: PathBuf,
    repaired: Arc<AtomicBool>,
}

impl Inspected {
    /// Opens `path` without changing it. [`StoreError::Locked`] when a gateway (or any writer)
    /// holds it; a file that needs redb's repair (an unclean stop) is repaired in memory.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Inspected, StoreError> {
        let backend = ReadOnlyFile::open(path).map_err(|e| StoreError::Io(e.to_string()))?;
        let repaired = Arc::new(AtomicBool::new(false));
        let flag = repaired.clone();
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .set_repair_callback(move |_| flag.store(true, Ordering::Relaxed))
            .create_with_backend(backend)
            .map_err(|e| StoreError::from_redb(path, e.into()))?;
        Ok(Inspected {
            db,
            path: path.to_owned(),
            repaired,
        })
    }

    /// Whether the file was not closed cleanly: redb had to repair it (in memory) to open it.
    pub fn needed_repair(&self) -> bool {
        self.repaired.load(Ordering::Relaxed)
    }

    /// redb's full integrity check (every page's checksum): `Ok(true)` sound, `Ok(false)`
    /// sound once redb rebuilt its allocator state (in memory only).
    pub fn check_integrity(&mut self) -> Result<bool, StoreError> {
        self.db
            .check_integrity()
            .map_err(|e| StoreError::from_redb(&self.path, e.into()))
    }

    /// Every counter in `meta`, by name.
    pub fn meta(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let run = || -> Result<BTreeMap<String, u64>, redb::Error> {
            let tx = self.db.begin_read()?;
            let t = tx.open_table(META)?;
            let mut out = BTreeMap::new();
            for item in t.iter()? {
                let (k, v) = item?;
                out.insert(k.value().to_owned(), v.value());
            }
            Ok(out)
        };
        run().map_err(|e| StoreError::from_redb(&self.path, e))
    }

    /// A lane's number of entries and its first and last entry: a descent from the root to
    /// each end, not a walk.
    #[allow(clippy::type_complexity)]
    pub fn ends(
        &self,
        lane: Lane,
    ) -> Result<(u64, Option<(Seq, Vec<u8>)>, Option<(Seq, Vec<u8>)>), StoreError> {
        let run = || -> Result<_, redb::Error> {
            let tx = self.db.begin_read()?;
            let t = tx.open_table(table(lane))?;
            let own = |e: Option<(redb::AccessGuard<u64>, redb::AccessGuard<&[u8]>)>| {
                e.map(|(k, v)| (k.value(), v.value().to_vec()))
            };
            let (len, first, last) = (t.len()?, own(t.first()?), own(t.last()?));
            Ok((len, first, last))
        };
        run().map_err(|e| StoreError::from_redb(&self.path, e))
    }

    /// Calls `f` with every entry of the tables of `lanes`, merged in key order, in one read
    /// transaction, until it breaks. Reads one entry at a time: memory stays flat whatever the
    /// backlog.
    pub fn walk(
        &self,
        lanes: &[Lane],
        f: impl FnMut(Lane, Seq, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.walk_from(lanes, 0, false, f)
    }

    /// [`Inspected::walk`] from key `from` on, or with `backward` from the last key down: a
    /// descent from the root to `from` (or the end) reads only the pages on its way, so it can
    /// start past a damaged page that a walk from the start dies on.
    pub fn walk_from(
        &self,
        lanes: &[Lane],
        from: Seq,
        backward: bool,
        mut f: impl FnMut(Lane, Seq, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let mut run = || -> Result<(), redb::Error> {
            let tx = self.db.begin_read()?;
            let tables = lanes
                .iter()
                .map(|l| Ok((*l, tx.open_table(table(*l))?)))
                .collect::<Result<Vec<_>, redb::Error>>()?;
            type Entries<'t> = Box<dyn Iterator<Item = Result<Entry<'t>, redb::StorageError>> + 't>;
            let mut lanes = tables
                .iter()
                .map(|(l, t)| {
                    let r = t.range(from..)?;
                    let it: Entries = if backward {
                        Box::new(r.rev())
                    } else {
                        Box::new(r)
                    };
                    Ok((*l, it.peekable()))
                })
                .collect::<Result<Vec<_>, redb::Error>>()?;
            loop {
                let mut next: Option<(usize, u64)> = None;
                for (i, (_, it)) in lanes.iter_mut().enumerate() {
                    let key = match it.peek() {
                        None => continue,
                        Some(Ok((k, _))) => k.value(),
                        Some(Err(_)) => match it.next() {
                            Some(Err(e)) => return Err(e.into()),
                            _ => continue,
                        },
                    };
                    if next.is_none_or(|(_, k)| if backward { key > k } else { key < k }) {
                        next = Some((i, key));
                    }
                }
                let Some((i, _)) = next else { return Ok(()) };
                let (lane, it) = &mut lanes[i];
                if let Some(item) = it.next() {
                    let (k, v) = item?;
                    if f(*lane, k.value(), v.value()).is_break() {
                        return Ok(());
                    }
                }
            }
        };
        run().map_err(|e| StoreError::from_redb(&self.path, e))
    }
}
