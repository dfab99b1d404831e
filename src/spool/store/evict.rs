//! Announcing evictions inside the transaction that makes them: one growing `evicted` gap
//! rather than one per commit. Must never announce fewer numbers than were evicted.

use redb::ReadableTable;

use crate::record::{codec, Gap, GapReason, Seq};

/// Announces evicted readings `from..=to`: extends the newest gap when it is an eviction not
/// yet acknowledged (so a long full disk leaves one growing range, not one per commit),
/// otherwise adds one. Between the two ranges lie only alarms (kept, and sent) and records
/// already acknowledged, so the extended range keeps the gap's meaning.
pub(super) fn announce(
    gaps: &mut redb::Table<u64, &[u8]>,
    from: Seq,
    to: Seq,
    now_ms: i64,
) -> Result<(), redb::Error> {
    // The newest eviction gap still waiting to be sent (unclean-stop gaps may lie above it).
    let mut last = None;
    for item in gaps.iter()?.rev().take(16) {
        let (k, v) = item?;
        if let Ok(g) = codec::decode_gap(k.value(), v.value()) {
            if g.reason == GapReason::Evicted {
                last = Some(g);
                break;
            }
        }
    }
    let gap = match last {
        Some(g) if g.to < from => Gap { to, ..g },
        _ => Gap {
            from,
            to,
            reason: GapReason::Evicted,
            ts_ms: now_ms,
        },
    };
    gaps.insert(gap.from, codec::encode_gap(&gap).as_slice())?;
    Ok(())
}
