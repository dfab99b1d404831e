//! The request planner: which reads cover a device's points in as few requests as possible.
//!
//! Owns merging of contiguous (and, within `max_gap`, nearly contiguous) points of one table and
//! the protocol's limits (125 registers, 2000 bits per read). Pure: must never do I/O.

use crate::config::{Point, Table};

/// Most registers one read may return (Modbus application protocol, function 3/4).
pub const MAX_REGISTERS: u16 = 125;
/// Most bits one read may return (function 1/2).
pub const MAX_BITS: u16 = 2000;

/// One read request and the points it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    /// Indices into the device's points, each with its offset inside the block.
    pub points: Vec<(usize, u16)>,
}

/// Plans the reads for `points`. Points of one table whose addresses are at most `max_gap`
/// registers apart share a read, as long as the read stays within the protocol's limit.
pub fn plan(points: &[Point], max_gap: u16) -> Vec<Block> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| (points[i].table, points[i].address));
    let mut blocks: Vec<Block> = Vec::new();
    for i in order {
        let p = &points[i];
        let limit = if p.table.is_bits() {
            MAX_BITS
        } else {
            MAX_REGISTERS
        };
        let end = u32::from(p.address) + u32::from(p.width()); // exclusive
        if let Some(b) = blocks.last_mut() {
            let b_end = u32::from(b.start) + u32::from(b.count);
            let gap = u32::from(p.address).saturating_sub(b_end);
            if b.table == p.table
                && gap <= u32::from(max_gap)
                && end - u32::from(b.start) <= u32::from(limit)
            {
                b.count = (end.max(b_end) - u32::from(b.start)) as u16;
                b.points.push((i, p.address - b.start));
                continue;
            }
        }
        blocks.push(Block {
            table: p.table,
            start: p.address,
            count: p.width(),
            points: vec![(i, 0)],
        });
    }
    blocks
}

/// Plans the reads of the alarm points of `points` alone (for their own cadence); the blocks
/// carry indices into `points`.
pub fn plan_alarm_points(points: &[Point], max_gap: u16) -> Vec<Block> {
    let index: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].alarm.is_some())
        .collect();
    let alarm: Vec<Point> = index.iter().map(|&i| points[i].clone()).collect();
    let mut blocks = plan(&alarm, max_gap);
    for b in &mut blocks {
        for (i, _) in &mut b.points {
            *i = index[*i];
        }
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Kind, WordOrder};

    fn pt(table: Table, address: u16, kind: Kind) -> Point {
        Point {
            name: format!("p{address}").into(),
            table,
            address,
            kind,
            word_order: WordOrder::Big,
            scale: 1.0,
            offset: 0.0,
            unit: None,
            alarm: None,
        }
    }

    #[test]
    fn contiguous_points_share_one_read() {
        let pts: Vec<Point> = (0..16).map(|a| pt(Table::Input, a, Kind::U16)).collect();
        let b = plan(&pts, 0);
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].start, b[0].count), (0, 16));
        assert_eq!(b[0].points[5], (5, 5));
    }

    #[test]
    fn gaps_split_unless_max_gap_allows_them() {
        let pts = vec![
            pt(Table::Holding, 0, Kind::U16),
            pt(Table::Holding, 3, Kind::F32),
        ];
        assert_eq!(plan(&pts, 0).len(), 2); // registers 1, 2 unused
        let merged = plan(&pts, 2);
        assert_eq!(merged.len(), 1);
        assert_eq!((merged[0].start, merged[0].count), (0, 5)); // 0..=4, the f32 takes 3 and 4
        assert_eq!(merged[0].points, vec![(0, 0), (1, 3)]);
    }

    #[test]
    fn tables_never_merge_and_order_is_by_table_then_address() {
        let pts = vec![
            pt(Table::Input, 1, Kind::U16),
            pt(Table::Holding, 0, Kind::U16),
            pt(Table::Input, 0, Kind::U16),
        ];
        let b = plan(&pts, 10);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].table, Table::Holding);
        assert_eq!(b[1].points, vec![(2, 0), (0, 1)]);
    }

    #[test]
    fn register_reads_stop_at_125() {
        let pts: Vec<Point> = (0..130).map(|a| pt(Table::Input, a, Kind::U16)).collect();
        let b = plan(&pts, 0);
        assert_eq!(b.iter().map(|b| b.count).collect::<Vec<_>>(), vec![125, 5]);
        // a 32-bit point never straddles the limit
        let pts: Vec<Point> = (0..63)
            .map(|a| pt(Table::Input, a * 2, Kind::U32))
            .collect();
        let b = plan(&pts, 0);
        assert_eq!(b.iter().map(|b| b.count).collect::<Vec<_>>(), vec![124, 2]);
    }

    #[test]
    fn alarm_points_alone_are_planned_with_their_indices_in_the_device() {
        let mut pts: Vec<Point> = (0..4).map(|a| pt(Table::Input, a, Kind::U16)).collect();
        pts.push(pt(Table::Input, 100, Kind::U16));
        pts.push(pt(Table::Input, 101, Kind::U16));
        for p in &mut pts[4..] {
            p.alarm = Some(crate::config::AlarmMap::Bool);
        }
        let b = plan_alarm_points(&pts, 0);
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].start, b[0].count), (100, 2));
        assert_eq!(b[0].points, vec![(4, 0), (5, 1)]);
        assert!(plan_alarm_points(&pts[..4], 0).is_empty());
    }

    #[test]
    fn bit_reads_stop_at_2000() {
        let pts: Vec<Point> = (0..2001).map(|a| pt(Table::Coil, a, Kind::Bool)).collect();
        let b = plan(&pts, 0);
        assert_eq!(b.iter().map(|b| b.count).collect::<Vec<_>>(), vec![2000, 1]);
    }
}
