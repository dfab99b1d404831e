//! The spool's store: redb tables and transactions, and nothing else imports redb.
//!
//! Owns the file layout (tables `readings`, `alarms`, `gaps`, `meta`), the durability of each
//! commit and the bookkeeping that must change in the same transaction as the data (reserved
//! numbers, the settled watermark, pending counts, logical bytes, evictions). Must never decide
//! policy: what to write, evict or delete and when is the spool's; this module only does it
//! atomically. Reads are in [`read`].

use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableTable, TableDefinition};

/// What redb stores its pages on; re-exported so tests and tools can supply their own
/// ([`Origin::Backend`]) without importing redb.
pub use redb::StorageBackend;

mod evict;
pub mod inspect;
mod origin;
mod overlay;
mod read;

pub use origin::Origin;
use origin::Shared;

use crate::record::codec;
use crate::record::{Gap, Seq};

/// key = first sequence number of the batch; value = `record::codec` batch
const READINGS: TableDefinition<u64, &[u8]> = TableDefinition::new("readings");
/// key = sequence number; value = `record::codec` alarm
const ALARMS: TableDefinition<u64, &[u8]> = TableDefinition::new("alarms");
/// key = first sequence number of the range; value = `record::codec` gap
const GAPS: TableDefinition<u64, &[u8]> = TableDefinition::new("gaps");
/// counters kept in step with the data
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Written by stores before reservations existed: the next number to hand out.
const NEXT_SEQ: &str = "next_seq";
/// Numbers below this may have been handed out; a restart continues from here.
const RESERVED: &str = "reserved_until";
/// Every record below this is durable here or was acknowledged by the broker.
const SETTLED: &str = "settled_below";
const READINGS_PENDING: &str = "readings_pending";
const LOGICAL_BYTES: &str = "logical_bytes";
const EVICTED: &str = "evicted_readings";
/// When the file was last compacted, ms since the epoch (absent: never, or before this was kept).
const LAST_COMPACTION: &str = "last_compaction_ms";

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

/// One entry to add, under the key its first sequence number gives it.
#[derive(Debug, Clone)]
pub enum NewEntry {
    Readings {
        key: Seq,
        count: u64,
        bytes: Vec<u8>,
    },
    Alarm {
        key: Seq,
        bytes: Vec<u8>,
    },
}

impl NewEntry {
    pub fn key(&self) -> Seq {
        match self {
            NewEntry::Readings { key, .. } | NewEntry::Alarm { key, .. } => *key,
        }
    }

    fn charge(&self) -> u64 {
        match self {
            NewEntry::Readings { bytes, .. } | NewEntry::Alarm { bytes, .. } => {
                bytes.len() as u64 + ENTRY_OVERHEAD
            }
        }
    }
}

/// What one commit writes.
#[derive(Debug, Default)]
pub struct Write {
    pub entries: Vec<NewEntry>,
    /// Largest logical size; the oldest reading batches are evicted to stay below it.
    pub budget: u64,
    /// A new settled watermark.
    pub settled_below: Option<Seq>,
    /// A new reservation limit (or, on a clean stop, the exact end of what was handed out).
    pub reserved_until: Option<Seq>,
    /// Gaps to announce.
    pub gaps: Vec<Gap>,
    /// Now, ms since the epoch, for the gap an eviction announces.
    pub now_ms: i64,
}

/// What a commit did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Committed {
    /// Readings evicted to make room, and the entries they were in.
    pub evicted_readings: u64,
    pub evicted_entries: u64,
}

/// Counters as stored.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    pub reserved_until: u64,
    pub settled_below: u64,
    pub readings: u64,
    pub alarms: u64,
    pub gaps: u64,
    pub logical_bytes: u64,
    pub evicted_readings: u64,
}

pub struct Store {
    db: Database,
    origin: Origin,
    path: PathBuf,
}

type Meta<'t> = redb::Table<'t, &'static str, u64>;

fn get(m: &Meta, k: &str) -> Result<u64, redb::Error> {
    Ok(m.get(k)?.map(|v| v.value()).unwrap_or(0))
}

impl Store {
    /// Opens or creates the store; a new store numbers its first record `first_seq`.
    pub fn open(path: &Path, cache_bytes: usize, first_seq: u64) -> Result<Store, StoreError> {
        Store::open_origin(&Origin::File(path.to_owned()), cache_bytes, first_seq)
    }

    /// [`Store::open`] on a file or a backend.
    pub fn open_origin(
        origin: &Origin,
        cache_bytes: usize,
        first_seq: u64,
    ) -> Result<Store, StoreError> {
        let path = origin.path();
        let mut builder = Database::builder();
        builder.set_cache_size(cache_bytes);
        let db = match origin {
            Origin::File(p) => builder.create(p),
            Origin::Backend { backend, .. } => builder.create_with_backend(Shared(backend.clone())),
        }
        .map_err(|e| StoreError::from_redb(path, e.into()))?;
        let store = Store {
            db,
            origin: origin.clone(),
            path: path.to_owned(),
        };
        store
            .transact(Durability::Immediate, |tx| {
                tx.open_table(READINGS)?;
                tx.open_table(ALARMS)?;
                tx.open_table(GAPS)?;
                let mut meta = tx.open_table(META)?;
                if meta.get(RESERVED)?.is_none() {
                    // A new store, or one from before reservations: continue after its last number.
                    let start = meta.get(NEXT_SEQ)?.map(|v| v.value()).unwrap_or(first_seq);
                    meta.insert(RESERVED, start)?;
                    meta.insert(SETTLED, start)?;
                    meta.remove(NEXT_SEQ)?;
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

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Rewrites the file without its free pages, then records `now_ms` as the last
    /// compaction's time (`meta` `last_compaction_ms`, for `plantgate spool stats`); returns
    /// whether it shrank.
    pub fn compact(&mut self, now_ms: i64) -> Result<bool, StoreError> {
        let shrank = self
            .db
            .compact()
            .map_err(|e| StoreError::Io(format!("compaction: {e}")))?;
        self.transact(Durability::Immediate, |tx| {
            let mut meta = tx.open_table(META)?;
            meta.insert(LAST_COMPACTION, u64::try_from(now_ms).unwrap_or(0))?;
            Ok(())
        })?;
        Ok(shrank)
    }

    fn transact<T>(
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

    /// Writes `w` in one durable transaction (fsync before it returns). Before adding its
    /// entries, while the logical size would exceed the budget, the oldest reading batches are
    /// evicted (never alarms), and the evicted range is announced as a gap.
    pub fn write(&self, w: Write) -> Result<Committed, StoreError> {
        self.transact(Durability::Immediate, |tx| {
            let mut readings = tx.open_table(READINGS)?;
            let mut alarms = tx.open_table(ALARMS)?;
            let mut gaps = tx.open_table(GAPS)?;
            let mut meta = tx.open_table(META)?;
            let mut pending = get(&meta, READINGS_PENDING)?;
            let mut bytes = get(&meta, LOGICAL_BYTES)?;
            let incoming: u64 = w.entries.iter().map(NewEntry::charge).sum();
            let mut out = Committed::default();
            let mut evicted: Option<(Seq, Seq)> = None;
            while bytes + incoming > w.budget {
                let Some((k, v)) = readings.pop_first()? else {
                    break;
                };
                let (k, v) = (k.value(), v.value());
                let n = codec::batch_len(v).unwrap_or(0);
                bytes = bytes.saturating_sub(v.len() as u64 + ENTRY_OVERHEAD);
                pending = pending.saturating_sub(n);
                out.evicted_readings += n;
                out.evicted_entries += 1;
                let last = k + n.max(1) - 1;
                evicted = Some(evicted.map_or((k, last), |(from, _)| (from, last)));
            }
            // Still too much: the stored readings are all gone, so the oldest of the incoming
            // ones go the same way (alarms never do).
            let mut over = (bytes + incoming).saturating_sub(w.budget);
            let mut entries: Vec<&NewEntry> = w.entries.iter().collect();
            entries.sort_by_key(|e| e.key());
            entries.retain(|e| match e {
                NewEntry::Readings { key, count, .. } if over > 0 => {
                    over = over.saturating_sub(e.charge());
                    out.evicted_readings += count;
                    out.evicted_entries += 1;
                    let last = key + count.max(&1) - 1;
                    evicted = Some(evicted.map_or((*key, last), |(from, _)| (from, last)));
                    false
                }
                _ => true,
            });
            if let Some((from, to)) = evicted {
                evict::announce(&mut gaps, from, to, w.now_ms)?;
            }
            for e in entries {
                bytes += e.charge();
                match e {
                    NewEntry::Readings {
                        key,
                        count,
                        bytes: b,
                    } => {
                        readings.insert(*key, b.as_slice())?;
                        pending += count;
                    }
                    NewEntry::Alarm { key, bytes: b } => {
                        alarms.insert(*key, b.as_slice())?;
                    }
                }
            }
            for g in &w.gaps {
                gaps.insert(g.from, codec::encode_gap(g).as_slice())?;
            }
            if let Some(s) = w.settled_below {
                meta.insert(SETTLED, s)?;
            }
            if let Some(r) = w.reserved_until {
                meta.insert(RESERVED, r)?;
            }
            let total_evicted = get(&meta, EVICTED)? + out.evicted_readings;
            meta.insert(READINGS_PENDING, pending)?;
            meta.insert(LOGICAL_BYTES, bytes)?;
            meta.insert(EVICTED, total_evicted)?;
            Ok(out)
        })
    }

    /// Deletes acknowledged entries (missing keys are fine: evicted meanwhile). `gaps` are the
    /// ranges as they were sent: a gap extended since is cut down to its unsent part. Unless
    /// `durable`, not fsynced: a delete lost in a crash only sends those records again, and the
    /// platform drops them by `(gw, seq)`; the next durable commit makes it durable (and only
    /// then can redb reuse the pages it freed).
    pub fn delete(
        &self,
        reading_keys: &[u64],
        alarm_keys: &[u64],
        gaps_sent: &[(Seq, Seq)],
        durable: bool,
    ) -> Result<(), StoreError> {
        let durability = if durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        self.transact(durability, |tx| {
            let mut readings = tx.open_table(READINGS)?;
            let mut alarms = tx.open_table(ALARMS)?;
            let mut gaps = tx.open_table(GAPS)?;
            let mut meta = tx.open_table(META)?;
            let mut pending = get(&meta, READINGS_PENDING)?;
            let mut bytes = get(&meta, LOGICAL_BYTES)?;
            for k in reading_keys {
                if let Some(v) = readings.remove(k)? {
                    let v = v.value();
                    pending = pending.saturating_sub(codec::batch_len(v).unwrap_or(0));
                    bytes = bytes.saturating_sub(v.len() as u64 + ENTRY_OVERHEAD);
                }
            }
            for k in alarm_keys {
                if let Some(v) = alarms.remove(k)? {
                    bytes = bytes.saturating_sub(v.value().len() as u64 + ENTRY_OVERHEAD);
                }
            }
            for &(from, to) in gaps_sent {
                let Some(g) = gaps
                    .remove(from)?
                    .and_then(|v| codec::decode_gap(from, v.value()).ok())
                else {
                    continue;
                };
                if g.to > to {
                    let rest = Gap { from: to + 1, ..g };
                    gaps.insert(rest.from, codec::encode_gap(&rest).as_slice())?;
                }
            }
            meta.insert(READINGS_PENDING, pending)?;
            meta.insert(LOGICAL_BYTES, bytes)?;
            Ok(())
        })
    }
}
