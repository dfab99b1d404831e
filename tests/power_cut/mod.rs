//! A power-loss model for redb: a storage backend that keeps what was written since the last
//! `sync_data` apart from what is durable, and can tell what the disk would hold if the power
//! failed right now.
//!
//! A cut keeps the durable image and then, at random: none of the writes since the last sync,
//! a prefix of them, a prefix and a torn next write (some of its 512-byte sectors, at random),
//! or a random subset (a disk may reorder writes between two barriers). Cuts are taken at random
//! before a write, a resize or a sync, and kept until the test collects them.
#![allow(dead_code, clippy::unwrap_used)]

use std::io;
use std::sync::{Arc, Mutex};

use plantgate::spool::store::StorageBackend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone)]
enum Op {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

fn apply(img: &mut Vec<u8>, op: &Op) {
    match op {
        Op::SetLen(n) => img.resize(*n as usize, 0),
        Op::Write(off, d) => {
            let o = *off as usize;
            if img.len() < o + d.len() {
                img.resize(o + d.len(), 0);
            }
            img[o..o + d.len()].copy_from_slice(d);
        }
    }
}

/// How a cut treats the writes since the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutKind {
    DropAll,
    Prefix,
    Torn,
    Subset,
}

/// What the disk holds after one simulated power cut.
#[derive(Debug, Clone)]
pub struct Cut {
    pub kind: CutKind,
    /// Backend operations (writes, resizes, syncs) before the cut.
    pub at_op: u64,
    /// Syncs before the cut: with none, nothing was ever durable.
    pub syncs: u64,
    pub image: Vec<u8>,
}

#[derive(Debug)]
struct State {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Op>,
    ops: u64,
    syncs: u64,
    rng: StdRng,
    /// Chance of a cut before each operation.
    cut_chance: f64,
    /// Whether cuts may keep a random subset of the pending writes.
    reorder: bool,
    cuts: Vec<Cut>,
}

#[derive(Debug, Clone)]
pub struct PowerCutBackend(Arc<Mutex<State>>);

impl PowerCutBackend {
    /// An empty disk on which a cut happens before each operation with `cut_chance`.
    pub fn new(seed: u64, cut_chance: f64, reorder: bool) -> Self {
        Self::from_image(Vec::new(), seed, cut_chance, reorder)
    }

    /// A disk holding `image`, all of it durable.
    pub fn from_image(image: Vec<u8>, seed: u64, cut_chance: f64, reorder: bool) -> Self {
        PowerCutBackend(Arc::new(Mutex::new(State {
            live: image.clone(),
            durable: image,
            pending: Vec::new(),
            ops: 0,
            syncs: 0,
            rng: StdRng::seed_from_u64(seed),
            cut_chance,
            reorder,
            cuts: Vec::new(),
        })))
    }

    /// The cuts taken since the last call.
    pub fn take_cuts(&self) -> Vec<Cut> {
        std::mem::take(&mut self.0.lock().unwrap().cuts)
    }

    /// The disk after a power cut now, of a random kind.
    pub fn cut_now(&self) -> Cut {
        let mut s = self.0.lock().unwrap();
        cut(&mut s)
    }

    pub fn syncs(&self) -> u64 {
        self.0.lock().unwrap().syncs
    }

    pub fn ops(&self) -> u64 {
        self.0.lock().unwrap().ops
    }

    /// The bytes as they are now (what the page cache holds).
    pub fn live(&self) -> Vec<u8> {
        self.0.lock().unwrap().live.clone()
    }

    pub fn set_cut_chance(&self, chance: f64) {
        self.0.lock().unwrap().cut_chance = chance;
    }
}

impl PowerCutBackend {
    /// The disk after a power cut now that keeps nothing since the last sync.
    pub fn cut_all_unsynced(&self) -> Vec<u8> {
        self.0.lock().unwrap().durable.clone()
    }
}

fn cut(s: &mut State) -> Cut {
    let mut image = s.durable.clone();
    let n = s.pending.len();
    let kinds: &[CutKind] = if s.reorder {
        &[
            CutKind::DropAll,
            CutKind::Prefix,
            CutKind::Torn,
            CutKind::Subset,
        ]
    } else {
        &[CutKind::DropAll, CutKind::Prefix, CutKind::Torn]
    };
    let kind = kinds[s.rng.random_range(0..kinds.len())];
    match kind {
        CutKind::DropAll => {}
        CutKind::Prefix => {
            let k = s.rng.random_range(0..=n);
            for op in &s.pending[..k] {
                apply(&mut image, op);
            }
        }
        CutKind::Torn => {
            let k = s.rng.random_range(0..=n);
            for op in &s.pending[..k] {
                apply(&mut image, op);
            }
            if let Some(Op::Write(off, d)) = s.pending.get(k) {
                for (i, chunk) in d.chunks(512).enumerate() {
                    if s.rng.random_bool(0.5) {
                        apply(
                            &mut image,
                            &Op::Write(off + (i * 512) as u64, chunk.to_vec()),
                        );
                    }
                }
            }
        }
        CutKind::Subset => {
            for op in &s.pending {
                if s.rng.random_bool(0.5) {
                    apply(&mut image, op);
                }
            }
        }
    }
    Cut {
        kind,
        at_op: s.ops,
        syncs: s.syncs,
        image,
    }
}

impl State {
    /// Before each operation: maybe the power fails here.
    fn maybe_cut(&mut self) {
        self.ops += 1;
        if self.cut_chance > 0.0 && self.rng.random_bool(self.cut_chance) {
            let c = cut(self);
            self.cuts.push(c);
        }
    }
}

impl StorageBackend for PowerCutBackend {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.lock().unwrap().live.len() as u64)
    }

    fn read(&self, off: u64, out: &mut [u8]) -> io::Result<()> {
        let s = self.0.lock().unwrap();
        let o = off as usize;
        let src = s
            .live
            .get(o..o + out.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, n: u64) -> io::Result<()> {
        let mut s = self.0.lock().unwrap();
        s.maybe_cut();
        let op = Op::SetLen(n);
        apply(&mut s.live, &op);
        s.pending.push(op);
        Ok(())
    }

    fn write(&self, off: u64, d: &[u8]) -> io::Result<()> {
        let mut s = self.0.lock().unwrap();
        s.maybe_cut();
        let op = Op::Write(off, d.to_vec());
        apply(&mut s.live, &op);
        s.pending.push(op);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.0.lock().unwrap();
        s.maybe_cut();
        s.durable = s.live.clone();
        s.pending.clear();
        s.syncs += 1;
        Ok(())
    }
}
