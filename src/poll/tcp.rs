//! The Modbus TCP client: one MBAP exchange at a time on one connection, checked byte by byte.
//!
//! Owns the wire of a TCP bus: discarding (and counting) bytes that wait on the socket before a
//! request is sent, the transaction ids, and the rule that a reply must match its request's
//! transaction, unit, function and register count, with an MBAP length and a byte count that
//! agree. tokio-modbus 0.17 takes a frame already waiting as the reply, checks no register count
//! in release builds and reports oversized or lying frames as I/O errors (research.md § E), so
//! TCP does not go through it. Must never time a request (the caller bounds every exchange) nor
//! keep a connection after a bad frame: the caller drops this client on any error but an
//! exception.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::transport::{ReadError, Reply};
use crate::config::Table;

/// The largest MBAP length field a reply may have: unit id + a 253-byte PDU (Modbus spec).
const MAX_MBAP_LEN: usize = 1 + 253;
/// Most stale bytes drained before a request; a device that keeps talking faster is broken.
const MAX_DRAIN: usize = 64 * 1024;

/// One open Modbus TCP connection.
pub struct TcpClient {
    stream: TcpStream,
    /// The transaction id of the last request sent.
    last_tid: u16,
    /// Bytes found waiting before a request since the last [`TcpClient::take_discarded`].
    discarded: u64,
}

impl TcpClient {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> Self {
        TcpClient {
            stream,
            last_tid: rand::random(),
            discarded: 0,
        }
    }

    /// Bytes discarded since the last call (for the bus's metric).
    pub fn take_discarded(&mut self) -> u64 {
        std::mem::take(&mut self.discarded)
    }

    /// One read request and its checked reply.
    pub async fn read(
        &mut self,
        unit: u8,
        table: Table,
        start: u16,
        count: u16,
    ) -> Result<Reply, ReadError> {
        self.drain()?;
        let tid = next_tid(self.last_tid);
        self.last_tid = tid;
        let function = function_of(table);
        let mut req = [0u8; 12];
        req[0..2].copy_from_slice(&tid.to_be_bytes());
        req[4..6].copy_from_slice(&6u16.to_be_bytes());
        req[6] = unit;
        req[7] = function;
        req[8..10].copy_from_slice(&start.to_be_bytes());
        req[10..12].copy_from_slice(&count.to_be_bytes());
        self.stream.write_all(&req).await.map_err(down)?;

        let mut head = [0u8; 7];
        self.stream.read_exact(&mut head).await.map_err(down)?;
        let got_tid = u16::from_be_bytes([head[0], head[1]]);
        let protocol = u16::from_be_bytes([head[2], head[3]]);
        let len = usize::from(u16::from_be_bytes([head[4], head[5]]));
        if got_tid != tid || protocol != 0 || head[6] != unit {
            return Err(bad(format!(
                "reply is for transaction {got_tid} unit {} protocol {protocol}, asked transaction {tid} unit {unit}",
                head[6]
            )));
        }
        if !(2..=MAX_MBAP_LEN).contains(&len) {
            return Err(bad(format!(
                "MBAP length {len}: expected 2..={MAX_MBAP_LEN}"
            )));
        }
        let mut pdu = vec![0u8; len - 1];
        self.stream.read_exact(&mut pdu).await.map_err(down)?;
        check_pdu(function, table, count, &pdu)
    }

    /// Reads and discards whatever is already waiting: it answers no request of ours.
    fn drain(&mut self) -> Result<(), ReadError> {
        let mut buf = [0u8; 4096];
        let mut total = 0usize;
        loop {
            match self.stream.try_read(&mut buf) {
                Ok(0) => return Err(ReadError::Disconnected("closed by the device".into())),
                Ok(n) => {
                    total += n;
                    self.discarded += n as u64;
                    if total > MAX_DRAIN {
                        return Err(bad(format!(
                            "the device sent over {MAX_DRAIN} bytes unasked"
                        )));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(down(e)),
            }
        }
        if total > 0 {
            // A frame sent unasked may be a reply to a request we gave up on, or a forgery
            // timed to be taken for the next answer: the connection's state is unknown.
            return Err(bad(format!(
                "{total} bytes were waiting before the request (discarded)"
            )));
        }
        Ok(())
    }
}

/// A fresh random transaction id, never the last one. Drained bytes only cover frames that
/// arrived before the request; one sent before it but landing just after (a slow or busy line)
/// would be taken as the reply if its id could be guessed, as the previous id + 1 can. A
/// random id leaves such a frame about one chance in 65,536, and a late reply to the previous
/// request none.
fn next_tid(last: u16) -> u16 {
    loop {
        // Drawn again, not `last + 1`: that is the very id a forger would guess.
        let tid: u16 = rand::random();
        if tid != last {
            return tid;
        }
    }
}

fn function_of(table: Table) -> u8 {
    match table {
        Table::Coil => 0x01,
        Table::Discrete => 0x02,
        Table::Holding => 0x03,
        Table::Input => 0x04,
    }
}

/// Checks a reply PDU (function code onwards) against its request.
fn check_pdu(function: u8, table: Table, count: u16, pdu: &[u8]) -> Result<Reply, ReadError> {
    let fc = pdu[0];
    if fc == function | 0x80 {
        return match pdu {
            [_, code] => Err(ReadError::Exception(*code)),
            _ => Err(bad(format!(
                "exception reply of {} bytes, expected 2",
                pdu.len()
            ))),
        };
    }
    if fc != function {
        return Err(bad(format!(
            "reply has function {fc:#04x}, asked {function:#04x}"
        )));
    }
    let expected = if table.is_bits() {
        usize::from(count).div_ceil(8)
    } else {
        usize::from(count) * 2
    };
    let byte_count = pdu.get(1).map(|b| usize::from(*b));
    let data = pdu.get(2..).unwrap_or_default();
    if byte_count != Some(data.len()) {
        return Err(bad(format!(
            "byte count {} but {} data bytes",
            byte_count.unwrap_or(0),
            data.len()
        )));
    }
    if data.len() != expected {
        let what = if table.is_bits() { "bits" } else { "registers" };
        return Err(bad(format!(
            "asked for {count} {what}, got {} bytes (expected {expected})",
            data.len()
        )));
    }
    Ok(if table.is_bits() {
        Reply::Bits(
            (0..usize::from(count))
                .map(|i| data[i / 8] & (1 << (i % 8)) != 0)
                .collect(),
        )
    } else {
        Reply::Words(
            data.chunks_exact(2)
                .map(|w| u16::from_be_bytes([w[0], w[1]]))
                .collect(),
        )
    })
}

fn bad(msg: String) -> ReadError {
    ReadError::BadFrame(msg)
}

fn down(e: io::Error) -> ReadError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => ReadError::Disconnected("closed by the device".into()),
        _ => ReadError::Disconnected(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_id_is_never_the_last_one_nor_simply_the_next() {
        let mut last = 0u16;
        let mut steps = 0;
        for _ in 0..10_000 {
            let tid = next_tid(last);
            assert_ne!(tid, last);
            steps += usize::from(tid == last.wrapping_add(1));
            last = tid;
        }
        // sequential ids would make all 10,000 steps +1; random ones make about 0.15 of them
        assert!(steps < 10, "{steps} of 10,000 ids were the last + 1");
    }

    #[test]
    fn registers_are_big_endian_words_of_the_asked_count() {
        // fc 3, 4 bytes: 0x0102, 0xFFFF
        assert_eq!(
            check_pdu(3, Table::Holding, 2, &[3, 4, 1, 2, 0xFF, 0xFF]),
            Ok(Reply::Words(vec![0x0102, 0xFFFF]))
        );
        // one register short, but byte count honest: still the wrong size
        assert_eq!(
            check_pdu(3, Table::Holding, 2, &[3, 2, 1, 2]),
            Err(bad("asked for 2 registers, got 2 bytes (expected 4)".into()))
        );
    }

    #[test]
    fn bits_come_least_significant_first() {
        // fc 2, 10 inputs in 2 bytes: 0b0000_0101, 0b10
        assert_eq!(
            check_pdu(2, Table::Discrete, 10, &[2, 2, 0b101, 0b10]),
            Ok(Reply::Bits(vec![
                true, false, true, false, false, false, false, false, false, true
            ]))
        );
    }

    #[test]
    fn a_byte_count_that_lies_is_a_bad_frame() {
        // says 4 data bytes, carries 2
        assert_eq!(
            check_pdu(4, Table::Input, 2, &[4, 4, 0, 1]),
            Err(bad("byte count 4 but 2 data bytes".into()))
        );
        // says 2, carries 4
        assert_eq!(
            check_pdu(4, Table::Input, 1, &[4, 2, 0, 1, 0, 2]),
            Err(bad("byte count 2 but 4 data bytes".into()))
        );
        assert!(matches!(
            check_pdu(4, Table::Input, 1, &[4]),
            Err(ReadError::BadFrame(_))
        ));
    }

    #[test]
    fn the_function_must_match_and_exceptions_carry_their_code() {
        assert_eq!(
            check_pdu(3, Table::Holding, 1, &[4, 2, 0, 1]),
            Err(bad("reply has function 0x04, asked 0x03".into()))
        );
        assert_eq!(
            check_pdu(3, Table::Holding, 1, &[0x83, 2]),
            Err(ReadError::Exception(2))
        );
        assert!(matches!(
            check_pdu(3, Table::Holding, 1, &[0x83, 2, 0]),
            Err(ReadError::BadFrame(_))
        ));
    }
}
