//! The spool's store: redb tables and transactions, and nothing else imports redb.
//!
//! Owns the file layout (tables `readings`, `alarms`, `meta`), the durability of each commit and
//! the bookkeeping that must change in the same transaction as the data (next sequence number,
//! pending counts, logical bytes). Must never decide policy: what to evict and when is the
//! spool's; this module only does it atomically.

use std::path::{Path, PathBuf};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

/// key = first sequence number of the batch; value = `record::codec` batch
const READINGS: TableDefinition<u64, &[u8]> = TableDefinition::new("readings");
/// key = sequence number; value = `record::codec` alarm
const ALARMS: TableDefinition<u64, &[u8]> = TableDefinition::new("alarms");
/// counters kept in step with the data
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const NEXT_SEQ: &str = "next_seq";
const READINGS_PENDING: &str = "readings_pending";
const LOGICAL_BYTES: &str = "logical_bytes";
const EVICTED: &str = "evicted_readings";

/// Bytes a stored entry is charged beyond its value: key, B-tree slot and page slack.
pub const ENTRY_OVERHEAD: u64 = 24;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the file: a second plantgate on the same data_dir. Not retried.
    #[error("the spool {0} is in use by another process")]
    Locked(PathBuf),
    /// The file is damaged or not a spool; the spool moves it aside. Not retried.
    #[error("the spool {path} is damaged: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    /// Disk full or an I/O failure; the spool evicts or reopens and retries.
    #[error("spool I/O error: {0}")]
    Io(String),
}

impl StoreError {
    fn from_redb(path: &Path, e: redb::Error) -> Self {
        match e {
            redb::Error::DatabaseAlreadyOpen => StoreError::Locked(path.to_owned()),
            redb::Error::Corrupted(detail) => StoreError::Corrupt {
                path: path.to_owned(),
                detail,
            },
            redb::Error::UpgradeRequired(v) => StoreError::Corrupt {
                path: path.to_owned(),
                detail: format!("file format {v} needs an upgrade"),
            },
            // redb reports a file that is not (or no longer) a database as invalid data.
            redb::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
                StoreError::Corrupt {
                    path: path.to_owned(),
                    detail: io.to_string(),
                }
            }
            other => StoreError::Io(other.to_string()),
        }
    }
}

/// One entry to add: readings batch (with its reading count) or alarm.
pub enum NewEntry {
    Readings { count: u64, bytes: Vec<u8> },
    Alarm { bytes: Vec<u8> },
}

/// What a commit did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Committed {
    /// Key given to each new entry, in input order.
    pub keys: Vec<u64>,
    /// Readings evicted to make room, and the entries they were in.
    pub evicted_readings: u64,
    pub evicted_entries: u64,
}

/// Counters as stored.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    pub next_seq: u64,
    pub readings: u64,
    pub alarms: u64,
    pub logical_bytes: u64,
    pub evicted_readings: u64,
}

pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens or creates the store; a new store numbers its first record `first_seq`.
    pub fn open(path: &Path, cache_bytes: usize, first_seq: u64) -> Result<Store, StoreError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| StoreError::from_redb(path, e.into()))?;
        let store = Store {
            db,
            path: path.to_owned(),
        };
        store
            .write(Durability::Immediate, |tx| {
                tx.open_table(READINGS)?;
                tx.open_table(ALARMS)?;
                let mut meta = tx.open_table(META)?;
                if meta.get(NEXT_SEQ)?.is_none() {
                    meta.insert(NEXT_SEQ, first_seq)?;
                }
                Ok(())
            })
            .map_err(|e| match e {
                StoreError::Io(detail) => StoreError::Corrupt {
                    path: path.to_owned(),
                    detail,
                },
                e => e,
            })?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rewrites the file without its free pages; returns whether it shrank.
    pub fn compact(&mut self) -> Result<bool, StoreError> {
        self.db
            .compact()
            .map_err(|e| StoreError::Io(format!("compaction: {e}")))
    }

    fn write<T>(
        &self,
        durability: Durability,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let run = || -> Result<T, redb::Error> {
            let mut tx = self.db.begin_write()?;
            tx.set_durability(durability)
                .map_err(|e| redb::Error::Io(std::io::Error::other(e.to_string())))?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        };
        run().map_err(|e| StoreError::from_redb(&self.path, e))
    }

    /// Appends entries in one durable transaction, numbering them from `next_seq`. Before that,
    /// while the logical size would exceed `budget`, the oldest reading batches are evicted
    /// (never alarms).
    pub fn append(&self, entries: Vec<NewEntry>, budget: u64) -> Result<Committed, StoreError> {
        self.write(Durability::Immediate, |tx| {
            let mut readings = tx.open_table(READINGS)?;
            let mut alarms = tx.open_table(ALARMS)?;
            let mut meta = tx.open_table(META)?;
            let get = |m: &redb::Table<&str, u64>, k: &str| -> Result<u64, redb::Error> {
                Ok(m.get(k)?.map(|v| v.value()).unwrap_or(0))
            };
            let mut next = get(&meta, NEXT_SEQ)?;
            let mut pending = get(&meta, READINGS_PENDING)?;
            let mut bytes = get(&meta, LOGICAL_BYTES)?;
            let incoming: u64 = entries
                .iter()
                .map(|e| match e {
                    NewEntry::Readings { bytes, .. } | NewEntry::Alarm { bytes } => {
                        bytes.len() as u64 + ENTRY_OVERHEAD
                    }
                })
                .sum();
            let mut out = Committed::default();
            while bytes + incoming > budget {
                let Some((_, v)) = readings.pop_first()? else {
                    break;
                };
                let v = v.value();
                let n = crate::record::codec::batch_len(v).unwrap_or(0);
                bytes = bytes.saturating_sub(v.len() as u64 + ENTRY_OVERHEAD);
                pending = pending.saturating_sub(n);
                out.evicted_readings += n;
                out.evicted_entries += 1;
            }
            for e in entries {
                out.keys.push(next);
                match e {
                    NewEntry::Readings { count, bytes: b } => {
                        bytes += b.len() as u64 + ENTRY_OVERHEAD;
                        readings.insert(next, b.as_slice())?;
                        pending += count;
                        next += count.max(1);
                    }
                    NewEntry::Alarm { bytes: b } => {
                        bytes += b.len() as u64 + ENTRY_OVERHEAD;
                        alarms.insert(next, b.as_slice())?;
                        next += 1;
                    }
                }
            }
            let evicted = get(&meta, EVICTED)? + out.evicted_readings;
            meta.insert(NEXT_SEQ, next)?;
            meta.insert(READINGS_PENDING, pending)?;
            meta.insert(LOGICAL_BYTES, bytes)?;
            meta.insert(EVICTED, evicted)?;
            Ok(out)
        })
    }

    /// Deletes acknowledged entries (missing keys are fine: evicted meanwhile). Durable.
    pub fn delete(&self, reading_keys: &[u64], alarm_keys: &[u64]) -> Result<(), StoreError> {
        self.write(Durability::Immediate, |tx| {
            let mut readings = tx.open_table(READINGS)?;
            let mut alarms = tx.open_table(ALARMS)?;
            let mut meta = tx.open_table(META)?;
            let mut pending = meta.get(READINGS_PENDING)?.map(|v| v.value()).unwrap_or(0);
            let mut bytes = meta.get(LOGICAL_BYTES)?.map(|v| v.value()).unwrap_or(0);
            for k in reading_keys {
                if let Some(v) = readings.remove(k)? {
                    let v = v.value();
                    pending =
                        pending.saturating_sub(crate::record::codec::batch_len(v).unwrap_or(0));
                    bytes = bytes.saturating_sub(v.len() as u64 + ENTRY_OVERHEAD);
                }
            }
            for k in alarm_keys {
                if let Some(v) = alarms.remove(k)? {
                    bytes = bytes.saturating_sub(v.value().len() as u64 + ENTRY_OVERHEAD);
                }
            }
            meta.insert(READINGS_PENDING, pending)?;
            meta.insert(LOGICAL_BYTES, bytes)?;
            Ok(())
        })
    }

    fn scan(
        &self,
        table: TableDefinition<u64, &[u8]>,
        from: u64,
        below: u64,
        max: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let run = || -> Result<Vec<(u64, Vec<u8>)>, redb::Error> {
            let tx = self.db.begin_read()?;
            let t = tx.open_table(table)?;
            let mut out = Vec::new();
            if from >= below {
                return Ok(out);
            }
            for item in t.range(from..below)?.take(max) {
                let (k, v) = item?;
                out.push((k.value(), v.value().to_vec()));
            }
            Ok(out)
        };
        run().map_err(|e| StoreError::from_redb(&self.path, e))
    }

    /// Up to `max` reading batches with keys in `from..below`, oldest first.
    pub fn readings(
        &self,
        from: u64,
        below: u64,
        max: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.scan(READINGS, from, below, max)
    }

    /// Up to `max` alarms with keys from `from`, oldest first.
    pub fn alarms(&self, from: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.scan(ALARMS, from, u64::MAX, max)
    }

    /// Counters, and the oldest reading batch (for its age).
    pub fn counts(&self) -> Result<(Counts, Option<Vec<u8>>), StoreError> {
        let run = || -> Result<(Counts, Option<Vec<u8>>), redb::Error> {
            let tx = self.db.begin_read()?;
            let meta = tx.open_table(META)?;
            let get = |k: &str| -> Result<u64, redb::Error> {
                Ok(meta.get(k)?.map(|v| v.value()).unwrap_or(0))
            };
            let readings = tx.open_table(READINGS)?;
            let alarms = tx.open_table(ALARMS)?;
            let oldest = readings.first()?.map(|(_, v)| v.value().to_vec());
            Ok((
                Counts {
                    next_seq: get(NEXT_SEQ)?,
                    readings: get(READINGS_PENDING)?,
                    alarms: alarms.len()?,
                    logical_bytes: get(LOGICAL_BYTES)?,
                    evicted_readings: get(EVICTED)?,
                },
                oldest,
            ))
        };
        run().map_err(|e| StoreError::from_redb(&self.path, e))
    }
}
