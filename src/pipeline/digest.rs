//! Pass-through stages that count bytes and compute sha256 as data streams by.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

/// Size and sha256 of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    pub size: u64,
    pub sha256: String,
}

/// A writer that hashes and counts everything written through it.
pub struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    pub fn finish(self) -> (W, Measured) {
        let sha256 = hex::encode(self.hasher.finalize());
        (
            self.inner,
            Measured {
                size: self.size,
                sha256,
            },
        )
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what it reads and, at end of stream, fails unless size and sha256 equal what is
/// expected. A consumer therefore never sees a clean EOF on corrupted or truncated data.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
    expected: Measured,
    what: String,
    done: bool,
    /// Once corruption is seen, every later read fails the same way: a caller that retries after an
    /// error must never reach a clean end of stream.
    failed: Option<String>,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Measured, what: impl Into<String>) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
            expected,
            what: what.into(),
            done: false,
            failed: None,
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(msg) = &self.failed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, msg.clone()));
        }
        if self.done {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        let problem = if n == 0 {
            let got = hex::encode(std::mem::take(&mut self.hasher).finalize());
            if self.size == self.expected.size && got == self.expected.sha256 {
                self.done = true;
                return Ok(0);
            }
            format!(
                "{} is corrupt: expected {} bytes with sha256 {}, read {} bytes with sha256 {}",
                self.what, self.expected.size, self.expected.sha256, self.size, got
            )
        } else if self.size + n as u64 > self.expected.size {
            format!(
                "{} is corrupt: longer than the {} bytes recorded",
                self.what, self.expected.size
            )
        } else {
            self.hasher.update(&buf[..n]);
            self.size += n as u64;
            return Ok(n);
        };
        self.failed = Some(problem.clone());
        Err(io::Error::new(io::ErrorKind::InvalidData, problem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measure(data: &[u8]) -> Measured {
        let mut w = HashWriter::new(Vec::new());
        w.write_all(data).unwrap();
        w.finish().1
    }

    #[test]
    fn verifying_reader_accepts_intact_and_rejects_flipped() {
        let data = b"some backup bytes".to_vec();
        let m = measure(&data);
        let mut out = Vec::new();
        VerifyingReader::new(&data[..], m.clone(), "x")
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);

        let mut bad = data.clone();
        bad[3] ^= 1;
        let err = VerifyingReader::new(&bad[..], m.clone(), "db/x")
            .read_to_end(&mut out)
            .unwrap_err();
        assert!(err.to_string().contains("db/x is corrupt"), "{err}");

        let err = VerifyingReader::new(&data[..5], m, "t")
            .read_to_end(&mut out)
            .unwrap_err();
        assert!(err.to_string().contains("corrupt"));
    }
}
