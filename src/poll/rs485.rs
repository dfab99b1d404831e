//! Kernel RS-485 mode for a serial port: the UART driver drives RTS as the transceiver's
//! direction line (`TIOCSRS485`), for adapters without automatic direction control.
//!
//! Owns the one `unsafe` call in plantgate: an ioctl on the port's file descriptor, with a
//! struct of eight `u32` laid out as the kernel's `struct serial_rs485`. Must never be used on
//! anything but an open serial port, and never silently: a driver without RS-485 support
//! (a pty, many USB adapters) answers ENOTTY, which becomes a clear error.

use std::io;
use std::os::fd::AsRawFd;

use crate::config::Rs485;

/// `struct serial_rs485` from linux/serial.h: flags, two delays in ms, five reserved words.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SerialRs485 {
    pub flags: u32,
    pub delay_rts_before_send: u32,
    pub delay_rts_after_send: u32,
    padding: [u32; 5],
}

/// linux/serial.h
const SER_RS485_ENABLED: u32 = 1 << 0;
const SER_RS485_RTS_ON_SEND: u32 = 1 << 1;
const SER_RS485_RTS_AFTER_SEND: u32 = 1 << 2;

impl SerialRs485 {
    /// RS-485 on, RTS active while sending (or while receiving when `rts_on_send` is false).
    pub fn new(rts_on_send: bool, delay_before_ms: u32, delay_after_ms: u32) -> Self {
        let rts = if rts_on_send {
            SER_RS485_RTS_ON_SEND
        } else {
            SER_RS485_RTS_AFTER_SEND
        };
        SerialRs485 {
            flags: SER_RS485_ENABLED | rts,
            delay_rts_before_send: delay_before_ms,
            delay_rts_after_send: delay_after_ms,
            padding: [0; 5],
        }
    }
}

impl From<Rs485> for SerialRs485 {
    fn from(c: Rs485) -> Self {
        SerialRs485::new(c.rts_on_send, c.delay_before_send_ms, c.delay_after_send_ms)
    }
}

/// Puts the port into kernel RS-485 mode.
pub fn enable(port: &impl AsRawFd, settings: SerialRs485) -> io::Result<()> {
    set(port.as_raw_fd(), settings).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENOTTY) {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "the serial driver does not support kernel RS-485 mode (ENOTTY): remove `rs485` from this bus if the adapter switches direction by itself",
            )
        } else {
            io::Error::new(e.kind(), format!("RS-485 mode (TIOCSRS485): {e}"))
        }
    })
}

// The documented exception to `unsafe_code = "deny"` (Cargo.toml).
#[allow(unsafe_code)]
fn set(fd: std::os::fd::RawFd, mut settings: SerialRs485) -> io::Result<()> {
    // SAFETY: `fd` is an open descriptor borrowed from a live port for the duration of the
    // call; TIOCSRS485 reads (and may write back) exactly one `struct serial_rs485`, which
    // `SerialRs485` matches (repr(C), eight u32, checked by a unit test), and the pointer is to
    // a local that outlives the call.
    let r = unsafe { libc::ioctl(fd, libc::TIOCSRS485 as _, &mut settings as *mut SerialRs485) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_struct_matches_the_kernels() {
        assert_eq!(std::mem::size_of::<SerialRs485>(), 32);
        let s = SerialRs485::new(true, 1, 2);
        assert_eq!(
            (s.flags, s.delay_rts_before_send, s.delay_rts_after_send),
            (0b011, 1, 2)
        );
        assert_eq!(SerialRs485::new(false, 0, 0).flags, 0b101);
    }

    #[test]
    fn the_configured_mode_maps_field_by_field() {
        let s = SerialRs485::from(Rs485 {
            rts_on_send: false,
            delay_before_send_ms: 3,
            delay_after_send_ms: 7,
        });
        assert_eq!(
            (s.flags, s.delay_rts_before_send, s.delay_rts_after_send),
            (0b101, 3, 7)
        );
    }

    #[tokio::test]
    async fn a_pty_says_clearly_that_it_has_no_rs485_mode() {
        let (master, _slave) = tokio_serial::SerialStream::pair().unwrap();
        let e = enable(&master, SerialRs485::new(true, 0, 0)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert!(
            e.to_string()
                .contains("does not support kernel RS-485 mode"),
            "{e}"
        );
    }
}
