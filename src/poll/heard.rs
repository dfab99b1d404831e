//! A serial stream that counts the bytes it received, so a timed-out RTU request can tell
//! "nothing came" (`timeout`) from "bytes came that made no frame" (`bad_frame`: garbage, a
//! broken CRC), which tokio-modbus's RTU decoder skips silently while it waits.
//!
//! Owns only the count. Must never alter, buffer or drop a byte.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner`, with every byte read added to a shared counter.
pub struct Heard<S> {
    inner: S,
    bytes: Arc<AtomicU64>,
}

impl<S> Heard<S> {
    /// Wraps `inner`; the returned counter grows with every byte read from it.
    pub fn new(inner: S) -> (Self, Arc<AtomicU64>) {
        let bytes = Arc::new(AtomicU64::new(0));
        (
            Heard {
                inner,
                bytes: bytes.clone(),
            },
            bytes,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Heard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let got = buf.filled().len().saturating_sub(before);
        self.bytes.fetch_add(got as u64, Ordering::Relaxed);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Heard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn counts_what_is_read_and_passes_every_byte_through() {
        let (a, mut b) = tokio::io::duplex(64);
        let (mut heard, bytes) = Heard::new(a);
        b.write_all(b"\x01\x04garbage").await.unwrap();
        let mut buf = [0u8; 9];
        heard.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"\x01\x04garbage");
        assert_eq!(bytes.load(Ordering::Relaxed), 9);
        heard.write_all(b"req").await.unwrap();
        let mut out = [0u8; 3];
        b.read_exact(&mut out).await.unwrap();
        assert_eq!((&out, bytes.load(Ordering::Relaxed)), (b"req", 9));
    }
}
