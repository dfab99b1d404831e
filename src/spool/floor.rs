//! The numbers floor: beside the spool file, the highest number ever reserved, so that a spool
//! started afresh (its file damaged beyond reading, or removed) never numbers below it, even
//! when the clock has stepped back since.
//!
//! Owns `numbers.floor` (one decimal number, rewritten and fsynced at each reservation: one
//! small write per block of numbers). Must never lower it, and never be the only guard: a new
//! store starts at the larger of the floor and `now_ms × 1000`.

use std::io::Write;
use std::path::Path;

use crate::record::{now_ms, Seq};

const FILE: &str = "numbers.floor";

/// The floor recorded in `dir`, if it can be read.
pub fn read(dir: &Path) -> Option<Seq> {
    std::fs::read_to_string(dir.join(FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Records `until` as the floor in `dir` if it is above what is there. Best effort: a failure
/// is logged, the reservation in the spool itself stands.
pub fn raise(dir: &Path, until: Seq) {
    if read(dir).is_some_and(|f| f >= until) {
        return;
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(dir.join(FILE))
        .and_then(|mut f| {
            writeln!(f, "{until}")?;
            f.sync_data()
        });
    if let Err(e) = written {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot record the numbers floor");
    }
}

/// Where a new store in `dir` starts numbering: above every number reserved there before, and
/// at least `now_ms × 1000`.
pub fn first_seq(dir: Option<&Path>) -> Seq {
    let clock = u64::try_from(now_ms()).unwrap_or(0).saturating_mul(1000);
    dir.and_then(read).map_or(clock, |f| f.max(clock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_only_rises_and_a_new_store_starts_above_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        let far = u64::MAX / 2; // above any clock
        raise(dir.path(), far);
        raise(dir.path(), 5);
        assert_eq!(read(dir.path()), Some(far));
        assert_eq!(first_seq(Some(dir.path())), far);
        // without a floor, the clock
        let clock = first_seq(None);
        assert!(clock >= 1_700_000_000_000_000);
        // a torn file counts as none
        std::fs::write(dir.path().join(FILE), "12ab").unwrap();
        assert_eq!(read(dir.path()), None);
    }
}
