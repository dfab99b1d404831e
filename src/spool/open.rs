//! Opening a spool: its file (a damaged one moved aside) or a backend, where numbering
//! continues, and the gaps an unclean stop leaves to announce.
//!
//! Owns the start of a spool's life. Must never hand out a number below the last reservation,
//! or start without announcing what the last run may have lost.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::watch;

use super::numbers::{self, Numbers};
use super::status::SpoolMetrics;
use super::store::{self, Store, StoreError, Write};
use super::{Spool, SpoolError, FILE, MAX_CHUNK};
use crate::config::SpoolSettings;
use crate::record::{now_ms, Gap, GapReason};

impl Spool {
    /// Opens the spool in `dir`, moving a damaged file aside, announcing what an unclean stop
    /// may have lost, and reserving the first block of numbers. Blocking.
    pub fn open(dir: &Path, settings: &SpoolSettings) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(|source| SpoolError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE);
        let first_seq = super::floor::first_seq(Some(dir));
        let store = match Store::open(&path, settings.cache_bytes, first_seq) {
            Ok(s) => s,
            Err(StoreError::Corrupt { detail, .. }) => {
                let aside = dir.join(format!("{FILE}.damaged-{}", now_ms()));
                tracing::error!(spool = %path.display(), moved_to = %aside.display(), %detail,
                    "the spool file is damaged: it is kept for inspection and a new spool is started; records in it are not forwarded");
                std::fs::rename(&path, &aside).map_err(|source| SpoolError::Dir {
                    path: dir.to_owned(),
                    source,
                })?;
                Store::open(&path, settings.cache_bytes, first_seq)?
            }
            Err(e) => return Err(e.into()),
        };
        let spool = Spool::with_store(store, settings)?;
        super::floor::raise(dir, super::lock(&spool.numbers).reserved_until());
        Ok(spool)
    }

    /// Opens a spool kept on `backend` instead of a file: for tests (a power-loss model) and
    /// tools (an image in memory). `label` names it in logs. A damaged image is an error here:
    /// there is no file to move aside. Blocking.
    pub fn open_with_backend(
        backend: std::sync::Arc<dyn store::StorageBackend>,
        label: &Path,
        settings: &SpoolSettings,
    ) -> Result<Spool, SpoolError> {
        let origin = store::Origin::Backend {
            label: label.to_owned(),
            backend,
        };
        let store =
            Store::open_origin(&origin, settings.cache_bytes, super::floor::first_seq(None))?;
        Spool::with_store(store, settings)
    }

    fn with_store(store: Store, settings: &SpoolSettings) -> Result<Spool, SpoolError> {
        let origin = store.origin().clone();
        let start = start_numbers(&store)?;
        let (captured, _) = watch::channel(start.next());
        let spool = Spool {
            store: RwLock::new(Some(Arc::new(store))),
            origin,
            settings: settings.clone(),
            head: Mutex::default(),
            numbers: Mutex::new(start),
            state: Arc::default(),
            metrics: SpoolMetrics::default(),
            captured,
            budget: AtomicU64::new(settings.max_bytes / 100 * 45),
            chunk: AtomicU64::new(MAX_CHUNK),
            undurable_deletes: AtomicU64::new(0),
            failing: Default::default(),
            evictions_said: Default::default(),
            partial_reads: Default::default(),
            reads_healed: Default::default(),
            read_failure_said: Default::default(),
            uncaptured_said: Default::default(),
            settled: Mutex::new((Instant::now(), start.next())),
            last_compaction: Mutex::new(None),
            last_lowered: Mutex::new(None),
        };
        spool.refresh_status()?;
        Ok(spool)
    }

    /// A salvage replaced the file this spool was opened on: shown and counted.
    pub(crate) fn note_salvaged(&self, s: &super::salvage::Salvaged) {
        self.metrics.damaged_files.inc();
        self.metrics
            .damaged_lost
            .inc_by(s.lost.iter().map(|(a, b)| b - a + 1).sum());
        self.state.update(|st| {
            st.damaged_files += 1;
            st.last_damage = Some(s.reason.clone());
        });
    }
}

/// Where numbering continues, after announcing what an unclean stop may have lost.
fn start_numbers(store: &Store) -> Result<Numbers, StoreError> {
    let (c, _) = store.counts()?;
    let mut gaps = Vec::new();
    if c.settled_below < c.reserved_until {
        let present = store.present_from(c.settled_below)?;
        for (from, to) in numbers::unvouched(c.settled_below, c.reserved_until, present) {
            tracing::warn!(
                from,
                to,
                "the last run stopped uncleanly: records numbered in this range that the platform has not received are lost (announced as a gap)"
            );
            gaps.push(Gap {
                from,
                to,
                reason: GapReason::UncleanStop,
                ts_ms: now_ms(),
            });
        }
    }
    let mut n = Numbers::new(c.reserved_until, c.reserved_until);
    let until = n.wants_reserve(0).unwrap_or(c.reserved_until);
    store.write(Write {
        reserved_until: Some(until),
        settled_below: Some(c.reserved_until),
        gaps,
        budget: u64::MAX,
        now_ms: now_ms(),
        ..Write::default()
    })?;
    n.reserved(until);
    Ok(n)
}
