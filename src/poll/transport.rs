//! One bus's line: opening, timing and reading over Modbus RTU (serial) or Modbus TCP.
//!
//! Owns the connection (a tokio-modbus context on RTU, our own checked client [`super::tcp`] on
//! TCP), the timeout on every request (neither client has one), the silent interval before each
//! request, and reconnecting with backoff. Must never decode values
//! or decide what to poll: it reads what it is asked and says precisely how a read failed.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep_until, timeout, Instant};
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::prelude::{SlaveContext, *};

use crate::config::{Bus, Link, Parity, Rtu, Table};

/// What a read returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

/// Why a read failed. Every variant is retried on the device's next poll.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    /// No reply within the bus's `timeout_ms`; the line is reopened so a late reply is discarded.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The device answered with a Modbus exception; the line is fine.
    #[error("Modbus exception {0:#04x}")]
    Exception(u8),
    /// A reply that does not fit the request (CRC, framing, unit or function mismatch).
    #[error("bad reply: {0}")]
    BadFrame(String),
    /// The line is down (port missing, connection refused or broken); reopened with backoff.
    #[error("line down: {0}")]
    Disconnected(String),
}

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// An open line. On RTU with the count of bytes received (see [`super::heard`]).
enum Conn {
    Rtu(Context, Arc<AtomicU64>),
    Tcp(super::tcp::TcpClient),
}

/// A bus line with its open context, if any.
pub struct Line {
    link: Link,
    timeout: Duration,
    turnaround: Duration,
    /// Silence the protocol demands between frames (3.5 characters on RTU).
    gap: Duration,
    ctx: Option<Conn>,
    /// Bytes found waiting on a TCP connection before a request, not yet reported.
    discarded: u64,
    /// No reopen before this instant (backoff after a failed open).
    retry_at: Option<Instant>,
    backoff: Duration,
    /// End of the last exchange on the wire.
    idle_since: Instant,
}

/// The Modbus RTU silent interval: 3.5 character times, fixed at 1.75 ms above 19,200 baud.
pub fn silent_interval(baud: u32) -> Duration {
    if baud > 19_200 {
        Duration::from_micros(1750)
    } else {
        // 11 bits per character (start, 8 data, parity or second stop, stop)
        Duration::from_micros(3_500_000 * 11 / u64::from(baud.max(1)))
    }
}

impl Line {
    pub fn new(bus: &Bus) -> Self {
        let gap = match &bus.link {
            Link::Rtu(r) => silent_interval(r.baud),
            Link::Tcp { .. } => Duration::ZERO,
        };
        Line {
            link: bus.link.clone(),
            timeout: bus.timeout,
            turnaround: bus.turnaround,
            gap,
            ctx: None,
            discarded: 0,
            retry_at: None,
            backoff: BACKOFF_MIN,
            idle_since: Instant::now(),
        }
    }

    async fn open(&mut self) -> Result<Conn, ReadError> {
        // Every device on the bus shares this line: rather than fail a request without trying
        // (which the breaker would count as a failed probe, backing off further each time),
        // wait until the line may be reopened, then really try.
        if let Some(at) = self.retry_at {
            sleep_until(at).await;
        }
        match dial(&self.link, self.connect_timeout()).await {
            Ok(ctx) => {
                self.retry_at = None;
                self.backoff = BACKOFF_MIN;
                Ok(ctx)
            }
            Err(e) => {
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                Err(ReadError::Disconnected(format!(
                    "cannot open {}: {e}",
                    self.describe()
                )))
            }
        }
    }

    /// Opens the line now if it is not open, and says why not in the system's terms: a serial
    /// port another program holds (the service locks its ports) is
    /// [`io::ErrorKind::ResourceBusy`]. For `plantgate probe`, which must refuse such a port
    /// rather than fight over the bus.
    pub async fn connect(&mut self) -> io::Result<()> {
        if self.ctx.is_none() {
            self.ctx = Some(dial(&self.link, self.connect_timeout()).await?);
        }
        Ok(())
    }

    /// A TCP connect may take longer than one request.
    fn connect_timeout(&self) -> Duration {
        self.timeout.max(Duration::from_secs(1))
    }

    /// The longest wait for one reply on this line.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Where this line goes, for messages.
    pub fn describe(&self) -> String {
        match &self.link {
            Link::Rtu(r) => r.port.clone(),
            Link::Tcp { address } => address.clone(),
        }
    }

    /// Reads `count` registers or bits at `start` from `unit`, one request, bounded by the timeout.
    pub async fn read(
        &mut self,
        unit: u8,
        table: Table,
        start: u16,
        count: u16,
    ) -> Result<Reply, ReadError> {
        // On RTU the quiet first, then (re)open: opening flushes the input, so what a wrong
        // reply still sent during the quiet is dropped instead of read as this request's answer.
        // On TCP the connection is made first and the wait lets a device's unasked bytes arrive,
        // to be discarded (and counted) before the request.
        let quiet = self.idle_since + self.gap + self.turnaround;
        let rtu = matches!(self.link, Link::Rtu(_));
        if rtu {
            wait_until(quiet).await;
        }
        let mut ctx = match self.ctx.take() {
            Some(c) => c,
            None => self.open().await?,
        };
        if !rtu {
            wait_until(quiet).await;
        }
        let result = match &mut ctx {
            Conn::Rtu(c, heard) => {
                let before = heard.load(Ordering::Relaxed);
                let r = timeout(self.timeout, rtu_read(c, unit, table, start, count)).await;
                // Bytes came but no frame: garbage or a broken CRC, not silence.
                match heard.load(Ordering::Relaxed) - before {
                    n if n > 0 && r.is_err() => Ok(Err(ReadError::BadFrame(format!(
                        "{n} bytes within {:?} made no valid frame",
                        self.timeout
                    )))),
                    _ => r,
                }
            }
            Conn::Tcp(c) => {
                let r = timeout(self.timeout, c.read(unit, table, start, count)).await;
                self.discarded += c.take_discarded();
                r
            }
        };
        let outcome = match result.unwrap_or(Err(ReadError::Timeout(self.timeout))) {
            // A reply of the wrong size is wrong data: never pass it on as good.
            Ok(Reply::Words(w)) if w.len() != usize::from(count) => Err(ReadError::BadFrame(
                format!("asked for {count} registers, got {}", w.len()),
            )),
            other => other,
        };
        // After a bad frame more of a wrong reply may still be on its way (the rest of garbage,
        // a late answer, or the answer to a request the device took up late): the line keeps
        // quiet as long again, as a unit gets after its timeout, so the reopen's flush takes it.
        // (TCP needs none: its client checks transaction ids and discards what waits unasked.)
        let quiet =
            matches!(self.link, Link::Rtu(_)) && matches!(outcome, Err(ReadError::BadFrame(_)));
        self.idle_since = Instant::now() + if quiet { self.timeout } else { Duration::ZERO };
        match &outcome {
            Ok(_) | Err(ReadError::Exception(_)) => self.ctx = Some(ctx),
            // After a timeout or a bad frame a late or partial reply may still arrive: drop the
            // context (closing the port or connection) so it can never be read as the answer to
            // the next request. Reopening happens on the next read.
            Err(_) => drop(ctx),
        }
        outcome
    }

    /// Bytes discarded on a TCP connection since the last call: they waited on the socket
    /// before a request was sent, so they answered nothing we asked.
    pub fn take_discarded(&mut self) -> u64 {
        std::mem::take(&mut self.discarded)
    }
}

/// One attempt to open a line, no backoff.
async fn dial(link: &Link, connect_timeout: Duration) -> io::Result<Conn> {
    match link {
        Link::Rtu(r) => open_rtu(r).map(|(c, heard)| Conn::Rtu(c, heard)),
        Link::Tcp { address } => match timeout(
            connect_timeout,
            tokio::net::TcpStream::connect(address.as_str()),
        )
        .await
        {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(Conn::Tcp(super::tcp::TcpClient::new(s)))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        },
    }
}

/// One read through tokio-modbus (RTU), its errors in our terms.
async fn rtu_read(
    ctx: &mut Context,
    unit: u8,
    table: Table,
    start: u16,
    count: u16,
) -> Result<Reply, ReadError> {
    ctx.set_slave(Slave(unit));
    let r = match table {
        Table::Holding => ctx
            .read_holding_registers(start, count)
            .await
            .map(|r| r.map(Reply::Words)),
        Table::Input => ctx
            .read_input_registers(start, count)
            .await
            .map(|r| r.map(Reply::Words)),
        Table::Coil => ctx
            .read_coils(start, count)
            .await
            .map(|r| r.map(|b| Reply::Bits(truncate(b, count)))),
        Table::Discrete => ctx
            .read_discrete_inputs(start, count)
            .await
            .map(|r| r.map(|b| Reply::Bits(truncate(b, count)))),
    };
    match r {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(exc)) => Err(ReadError::Exception(u8::from(exc))),
        Err(tokio_modbus::Error::Protocol(p)) => Err(ReadError::BadFrame(p.to_string())),
        // Framing and PDU errors come back as I/O errors of these kinds (research.md § E).
        Err(tokio_modbus::Error::Transport(e))
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput
            ) =>
        {
            Err(ReadError::BadFrame(e.to_string()))
        }
        Err(tokio_modbus::Error::Transport(e)) => Err(ReadError::Disconnected(e.to_string())),
    }
}

/// Waits until `deadline` with sub-millisecond precision. tokio's timer has millisecond
/// resolution and rounds up, which alone overshoots the 1.75 ms silent interval by 1–2 ms
/// (measured: `cargo bench --bench bus_idle`): sleep to within a millisecond, then yield until
/// the deadline. That costs at most a millisecond of cooperative spinning per request and
/// never blocks the other tasks.
async fn wait_until(deadline: Instant) {
    if let Some(coarse) = deadline.checked_sub(Duration::from_millis(1)) {
        if Instant::now() < coarse {
            sleep_until(coarse).await;
        }
    }
    while Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
}

fn truncate(mut bits: Vec<bool>, count: u16) -> Vec<bool> {
    // Coils come back padded to whole bytes.
    bits.truncate(usize::from(count));
    bits
}

fn open_rtu(r: &Rtu) -> io::Result<(Context, Arc<AtomicU64>)> {
    use tokio_serial::{DataBits, SerialPort, SerialPortBuilderExt, StopBits};
    let parity = match r.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let stream = tokio_serial::new(&r.port, r.baud)
        .parity(parity)
        .data_bits(if r.data_bits == 7 {
            DataBits::Seven
        } else {
            DataBits::Eight
        })
        .stop_bits(if r.stop_bits == 2 {
            StopBits::Two
        } else {
            StopBits::One
        })
        .open_native_async()
        .map_err(open_error)?;
    if let Some(settings) = r.rs485 {
        super::rs485::enable(&stream, super::rs485::SerialRs485::from(settings))?;
    }
    // Whatever sits in the input queue belongs to an earlier exchange.
    let _ = stream.clear(tokio_serial::ClearBuffer::Input);
    let (stream, heard) = super::heard::Heard::new(stream);
    Ok((tokio_modbus::client::rtu::attach(stream), heard))
}

/// serialport opens exclusively (TIOCEXCL and an exclusive `flock`) and reports a port held by
/// another program as `NoDevice`, which its `io::Error` conversion turns into `NotFound`: keep
/// "in use" apart from "missing". (On open, `NoDevice` means only EBUSY or the lock.)
fn open_error(e: tokio_serial::Error) -> io::Error {
    match e.kind {
        tokio_serial::ErrorKind::NoDevice => io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!("in use by another program ({})", e.description),
        ),
        _ => io::Error::from(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_interval_follows_the_spec() {
        // 9600 baud: 11 bits per char → 1.146 ms per char → 3.5 chars ≈ 4.01 ms
        assert_eq!(silent_interval(9600), Duration::from_micros(4010));
        assert_eq!(silent_interval(19_200), Duration::from_micros(2005));
        // above 19,200 baud the spec fixes 1.75 ms
        assert_eq!(silent_interval(115_200), Duration::from_micros(1750));
    }
}
