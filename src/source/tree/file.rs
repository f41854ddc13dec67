//! Reading one regular file into a tar entry whose size was fixed before the first byte was read.
//!
//! A live tree changes under the walk. The tar header already promised `size` bytes, so exactly that
//! many are written whatever happens: a file that shrank (or failed mid-read) is padded with zeros, a
//! file that grew is cut at `size`. Either way the caller records a warning, and the sha256 in the
//! index is of what was stored, so restore verifies what the volume really holds.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

const CHUNK: usize = 256 * 1024;

/// Opens a file the walk saw as regular. `O_NOFOLLOW` and the `fstat` check catch a path that was
/// replaced by a symlink or a FIFO since the walk's `lstat` (`O_NONBLOCK` keeps a FIFO from blocking
/// the open). The returned metadata is of the file actually opened.
pub fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("it is no longer a regular file"));
    }
    Ok((file, meta))
}

/// What [`copy_exact`] stored.
pub struct Copied {
    pub sha256: String,
    /// Zero bytes appended because the file ended (or failed) early.
    pub padded: u64,
    /// The read error that ended the copy early, if any.
    pub read_error: Option<io::Error>,
    /// The file had more than `size` bytes.
    pub grew: bool,
}

/// Copies exactly `size` bytes from `src` to `out`, hashing them. Only write errors are returned as
/// errors: they break the volume. Read errors end the copy and are reported in [`Copied`].
pub fn copy_exact(
    src: &mut impl Read,
    size: u64,
    out: &mut impl Write,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> io::Result<Copied> {
    BUFFER.with(|b| copy_with(src, size, out, on_bytes, &mut b.borrow_mut()))
}

thread_local! {
    /// One read buffer per thread, reused for every file: a fresh 256 KiB buffer per file costs a
    /// zeroed allocation (and page faults) for each of a tree's many small files.
    static BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; CHUNK]);
}

fn copy_with(
    src: &mut impl Read,
    size: u64,
    out: &mut impl Write,
    on_bytes: &(dyn Fn(u64) + Sync),
    buf: &mut [u8],
) -> io::Result<Copied> {
    let mut hasher = Sha256::new();
    let mut left = size;
    let mut read_error = None;
    while left > 0 {
        let want = left.min(CHUNK as u64) as usize;
        let n = match src.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                read_error = Some(e);
                break;
            }
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        on_bytes(n as u64);
        left -= n as u64;
    }
    let padded = left;
    if left > 0 {
        buf.fill(0);
    }
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    let grew = read_error.is_none() && padded == 0 && {
        let mut probe = [0u8; 1];
        loop {
            match src.read(&mut probe) {
                Ok(n) => break n > 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break false,
            }
        }
    };
    Ok(Copied {
        sha256: hex::encode(hasher.finalize()),
        padded,
        read_error,
        grew,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    #[test]
    fn exact_short_and_long_sources() -> io::Result<()> {
        let mut out = Vec::new();
        let c = copy_exact(&mut &b"hello"[..], 5, &mut out, &|_| {})?;
        assert_eq!(
            (out.as_slice(), c.padded, c.grew),
            (&b"hello"[..], 0, false)
        );
        assert_eq!(c.sha256, sha(b"hello"));

        out.clear();
        let c = copy_exact(&mut &b"hel"[..], 5, &mut out, &|_| {})?;
        assert_eq!(
            (out.as_slice(), c.padded, c.grew),
            (&b"hel\0\0"[..], 2, false)
        );
        assert_eq!(c.sha256, sha(b"hel\0\0"), "the hash is of what was stored");

        out.clear();
        let c = copy_exact(&mut &b"hello world"[..], 5, &mut out, &|_| {})?;
        assert_eq!((out.as_slice(), c.padded, c.grew), (&b"hello"[..], 0, true));
        Ok(())
    }

    #[test]
    fn read_error_pads_and_reports() -> io::Result<()> {
        struct Failing(u8);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("EIO"));
                }
                self.0 -= 1;
                buf[0] = b'x';
                Ok(1)
            }
        }
        let mut out = Vec::new();
        let c = copy_exact(&mut Failing(2), 4, &mut out, &|_| {})?;
        assert_eq!(out, b"xx\0\0");
        assert_eq!(c.padded, 2);
        assert!(c.read_error.is_some());
        Ok(())
    }
}
