//! The store's reads: pending entries in key order, what a restart still holds, and the
//! counters. Read transactions only: must never write.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{
    Counts, Store, StoreError, ALARMS, EVICTED, GAPS, LOGICAL_BYTES, META, READINGS,
    READINGS_PENDING, RESERVED, SETTLED,
};
use crate::record::{codec, Seq};

impl Store {
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

    /// Up to `max` gaps with keys from `from`, oldest first.
    pub fn gaps(&self, from: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.scan(GAPS, from, u64::MAX, max)
    }

    /// Keys and lengths of the entries at or above `from`, readings and alarms merged in key
    /// order: what a restart knows will still be sent.
    pub fn present_from(&self, from: u64) -> Result<Vec<(Seq, u64)>, StoreError> {
        let mut out: Vec<(Seq, u64)> = self
            .readings(from, u64::MAX, usize::MAX)?
            .into_iter()
            .map(|(k, v)| (k, codec::batch_len(&v).unwrap_or(1)))
            .chain(
                self.alarms(from, usize::MAX)?
                    .into_iter()
                    .map(|(k, _)| (k, 1)),
            )
            .collect();
        out.sort_unstable();
        Ok(out)
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
            let gaps = tx.open_table(GAPS)?;
            let oldest = readings.first()?.map(|(_, v)| v.value().to_vec());
            Ok((
                Counts {
                    reserved_until: get(RESERVED)?,
                    settled_below: get(SETTLED)?,
                    readings: get(READINGS_PENDING)?,
                    alarms: alarms.len()?,
                    gaps: gaps.len()?,
                    logical_bytes: get(LOGICAL_BYTES)?,
                    evicted_readings: get(EVICTED)?,
                },
                oldest,
            ))
        };
        run().map_err(|e| StoreError::from_redb(&self.path, e))
    }
}
