//! Reading a file a person named (the configuration, a certificate, a key) without trusting
//! what it is: regular files only, and at most a bounded number of bytes.
//!
//! Owns that rule. A FIFO would block `open` until a writer comes (so `check-config` would hang
//! forever), `/dev/zero` would be read without end, and a directory or a huge log given by
//! mistake would fail late and unclearly. Must never block: the file is opened non-blocking and
//! its type is checked on the open descriptor, before the first read.

use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Largest configuration file read.
pub const CONFIG_MAX: u64 = 4 << 20;
/// Largest PEM file (CA bundle, certificate chain, key) read.
pub const PEM_MAX: u64 = 1 << 20;

/// The bytes of the regular file at `path`, refused if it is anything else or over `limit`.
pub fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    let t = meta.file_type();
    let kind = if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a named pipe (FIFO)")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    };
    if let Some(kind) = kind {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {kind}, not a regular file"),
        ));
    }
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "it is over {} KiB, more than such a file can be",
                limit >> 10
            ),
        )
    };
    if meta.len() > limit {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    // The file may grow between the check and the read: never read more than the limit.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(path: &Path, limit: u64) -> String {
        read_regular(path, limit).unwrap_err().to_string()
    }

    #[test]
    fn a_regular_file_within_the_limit_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read_regular(&p, 5).unwrap(), b"12345");
        assert_eq!(
            refused(&p, 4),
            "it is over 0 KiB, more than such a file can be"
        );
    }

    #[test]
    fn devices_directories_and_fifos_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            refused(Path::new("/dev/zero"), CONFIG_MAX),
            "it is a character device, not a regular file"
        );
        assert_eq!(
            refused(dir.path(), CONFIG_MAX),
            "it is a directory, not a regular file"
        );
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        // No writer: a blocking open would never return.
        assert_eq!(
            refused(&fifo, CONFIG_MAX),
            "it is a named pipe (FIFO), not a regular file"
        );
    }
}
