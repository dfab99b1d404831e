//! Polling: one task per bus reads its devices, one request at a time, each at its `poll_ms`.
//!
//! Owns the bus scheduler, the alarm state of every alarm point, and turning every read outcome
//! into samples with a quality. Must never block on the spool longer than its bounded channel
//! allows, never drop a sample silently, and never let one device's failure skip another's poll.
//!
//! Submodules: [`plan`] (which reads cover which points), [`decode`] (raw → value), [`alarm`]
//! (levels, limits and early warnings), [`transport`] (the line: RTU or TCP, timeouts,
//! reconnects), [`tcp`] (the checked Modbus TCP client).

pub mod alarm;
pub mod breaker;
pub mod budget;
pub mod decode;
mod heard;
pub mod metrics;
pub mod plan;
pub mod rs485;
pub mod status;
pub mod tcp;
pub mod transport;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::config::{Bus, Device, Point};
use crate::record::{now_ms, DevicePoll, Quality, Sample, Value};
use metrics::PollMetrics;
use plan::Block;
use status::BusStatus;
use transport::{Line, ReadError, Reply};

/// A device with its read plan and alarm memory.
struct Polled {
    device: Device,
    /// Index of the device on this bus (for its status).
    index: usize,
    blocks: Vec<Block>,
    /// The reads of the alarm points alone, when they have a faster cadence of their own.
    alarm_blocks: Vec<Block>,
    next_due: Instant,
    /// When the alarm points alone are due next (`None`: no cadence of their own).
    next_alarm_due: Option<Instant>,
    /// The alarm state of each point (unused for points that are not alarm points).
    alarms: Vec<alarm::PointAlarm>,
    breaker: breaker::Breaker,
}

/// The task that owns one bus.
pub struct BusPoller {
    bus: Bus,
    devices: Vec<Polled>,
    out: mpsc::Sender<DevicePoll>,
    status: Arc<BusStatus>,
    metrics: PollMetrics,
}

/// What one poll of one device gave.
struct Outcome {
    poll: DevicePoll,
    /// A read timed out: a late reply may still be on its way.
    timed_out: bool,
    /// The first failed read, in words, for the status page.
    first_error: Option<String>,
}

impl BusPoller {
    /// The poller of `bus` and its `devices`; its status is created here and read through
    /// [`BusPoller::status`].
    pub fn new(
        bus: Bus,
        devices: Vec<Device>,
        out: mpsc::Sender<DevicePoll>,
        metrics: PollMetrics,
    ) -> Self {
        let now = Instant::now();
        let status = BusStatus::new(&bus, &devices);
        for d in &devices {
            metrics.add_device(&bus.name, &d.name);
        }
        let devices = devices
            .into_iter()
            .enumerate()
            .map(|(index, device)| {
                let alarm_blocks = plan::plan_alarm_points(&device.points, bus.max_gap);
                let own_cadence = device.alarm_poll < device.poll && !alarm_blocks.is_empty();
                Polled {
                    blocks: plan::plan(&device.points, bus.max_gap),
                    alarm_blocks,
                    alarms: vec![alarm::PointAlarm::default(); device.points.len()],
                    breaker: breaker::Breaker::default(),
                    device,
                    index,
                    next_due: now,
                    next_alarm_due: own_cadence.then_some(now),
                }
            })
            .collect();
        BusPoller {
            bus,
            devices,
            out,
            status,
            metrics,
        }
    }

    /// This bus's status, for readers (the page, metrics, health).
    pub fn status(&self) -> Arc<BusStatus> {
        self.status.clone()
    }

    /// Polls until `cancel` fires or the spool's input closes.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut line = Line::new(&self.bus);
        tracing::info!(bus = %self.bus.name, line = %line.describe(), devices = self.devices.len(), "bus polling");
        loop {
            let Some(next) = self.devices.iter_mut().min_by_key(|d| d.due()) else {
                cancel.cancelled().await;
                return;
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = sleep_until(next.due()) => {}
            }
            // The whole device when its poll is due, else only its alarm points.
            let full = next.next_due <= Instant::now();
            let started = Instant::now();
            // A poll may wait out the line's reopen backoff: stopping must not wait for it.
            let Outcome {
                mut poll,
                timed_out,
                first_error,
            } = tokio::select! {
                () = cancel.cancelled() => return,
                r = poll_device(&mut line, next, full) => r,
            };
            let elapsed = started.elapsed();
            self.metrics
                .unsolicited(&self.bus.name, line.take_discarded());
            let now = Instant::now();
            let ok = poll.samples.iter().any(|s| s.quality == Quality::Good);
            if let Some(online) = next.breaker.record(ok) {
                if online {
                    tracing::info!(device = %next.device.name, "device answers again: polled at its normal rate");
                } else {
                    tracing::warn!(device = %next.device.name, failures = breaker::OFFLINE_AFTER, "device offline: probed with backoff until it answers");
                }
                poll.alarms.push(breaker::state_change(online, now_ms()));
            }
            if next.breaker.is_offline() {
                for s in &mut poll.samples {
                    s.quality = Quality::Offline;
                    s.value = None;
                }
            }
            next.schedule(full, now, timed_out.then_some(self.bus.timeout));
            let active = next
                .alarms
                .iter()
                .filter_map(alarm::PointAlarm::level)
                .filter(|l| l.is_active())
                .count();
            self.metrics.polled(
                &self.bus.name,
                &poll,
                elapsed,
                !next.breaker.is_offline(),
                active,
            );
            self.status
                .polled(next.index, &poll, elapsed, first_error.as_deref());
            tokio::select! {
                () = cancel.cancelled() => return,
                sent = self.out.send(poll) => if sent.is_err() { return },
            }
        }
    }
}

impl Polled {
    /// When this device needs the line next.
    fn due(&self) -> Instant {
        self.next_alarm_due
            .map_or(self.next_due, |a| a.min(self.next_due))
    }

    /// Plans the next polls after one that ended at `now` (`full`: the whole device, else only
    /// its alarm points). Keeps each cadence without catching up in a burst after a slow poll;
    /// an offline device is only probed, with backoff; after a timeout (`late`: the bus's
    /// timeout) the unit is asked again only after it had as long again to answer, since a late
    /// reply may still be on its way (the line is reopened and flushed before that).
    fn schedule(&mut self, full: bool, now: Instant, late: Option<std::time::Duration>) {
        if self.breaker.is_offline() {
            self.next_due = now
                + self
                    .breaker
                    .probe_delay(self.device.poll, rand::random_range(0.8..1.2));
            self.next_alarm_due = self.next_alarm_due.map(|_| self.next_due);
        } else {
            if full {
                self.next_due = (self.next_due + self.device.poll).max(now);
            }
            let alarm_poll = self.device.alarm_poll;
            self.next_alarm_due = self.next_alarm_due.map(|a| {
                if full {
                    now + alarm_poll
                } else {
                    (a + alarm_poll).max(now)
                }
            });
        }
        if let Some(t) = late {
            self.next_due = self.next_due.max(now + t);
            self.next_alarm_due = self.next_alarm_due.map(|a| a.max(now + t));
        }
    }
}

/// Polls one device, block by block: all of it when `full`, else only its alarm points.
async fn poll_device(line: &mut Line, d: &mut Polled, full: bool) -> Outcome {
    let points = &d.device.points;
    let mut samples: Vec<Option<Sample>> = vec![None; points.len()];
    let mut timed_out = false;
    let mut down: Option<String> = None;
    let mut first_error = None;
    let blocks = if full { &d.blocks } else { &d.alarm_blocks };
    for block in blocks {
        let ts_ms = now_ms();
        // After a timeout the device's late reply could be taken for the answer to the next
        // block (same unit, function and length): the rest of this poll is not sent.
        let reply = if timed_out {
            Err(ReadError::Timeout(std::time::Duration::ZERO))
        } else if let Some(why) = &down {
            // The line is down: the next attempt waits out its reopen backoff (up to 30 s), and
            // one wait per block would keep the device, and the watchdog, without a finished
            // poll for minutes.
            Err(ReadError::Disconnected(why.clone()))
        } else {
            line.read(d.device.unit, block.table, block.start, block.count)
                .await
        };
        timed_out |= matches!(reply, Err(ReadError::Timeout(_)));
        if let Err(ReadError::Disconnected(why)) = &reply {
            down.get_or_insert_with(|| why.clone());
        }
        if let (Err(e), None) = (&reply, &first_error) {
            first_error = Some(format!(
                "{} {}+{}: {e}",
                block.table.as_str(),
                block.start,
                block.count
            ));
        }
        if let Err(e) = &reply {
            tracing::debug!(device = %d.device.name, table = block.table.as_str(), start = block.start, count = block.count, error = %e, "read failed");
        }
        for &(i, off) in &block.points {
            let p = &points[i];
            let (value, quality) = point_of(p, off, &reply);
            samples[i] = Some(Sample {
                point: p.name.clone(),
                ts_ms,
                value,
                quality,
            });
        }
    }
    let alarms = alarm::changes(&d.device.points, &mut d.alarms, &samples);
    let samples: Vec<Sample> = samples.into_iter().flatten().collect();
    Outcome {
        poll: DevicePoll {
            device: d.device.name.clone(),
            samples,
            alarms,
        },
        timed_out,
        first_error,
    }
}

/// The value and quality of point `p` at offset `off` in a block's `reply`.
pub fn point_of(p: &Point, off: u16, reply: &Result<Reply, ReadError>) -> (Option<Value>, Quality) {
    let off = usize::from(off);
    match reply {
        Ok(Reply::Words(w)) => match w
            .get(off..off + usize::from(p.width()))
            .map(|w| decode::decode_words(p, w))
        {
            Some(Some(v)) => (Some(v), Quality::Good),
            Some(None) => (None, Quality::BadValue),
            None => (None, Quality::BadFrame),
        },
        Ok(Reply::Bits(b)) => match b.get(off) {
            Some(&bit) => (Some(decode::decode_bit(bit)), Quality::Good),
            None => (None, Quality::BadFrame),
        },
        Err(e) => (None, quality_of(e)),
    }
}

/// The quality a failed read gives its points.
pub fn quality_of(e: &ReadError) -> Quality {
    match e {
        ReadError::Timeout(_) => Quality::Timeout,
        ReadError::Exception(c) => Quality::Exception(*c),
        ReadError::BadFrame(_) => Quality::BadFrame,
        ReadError::Disconnected(_) => Quality::Disconnected,
    }
}
