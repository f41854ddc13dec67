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

/// A [`HashWriter`] whose sha256 runs on a thread of its own.
///
/// Writes are copied into 1 MiB blocks that the hashing thread consumes, so the writer's thread (which
/// also reads the source and feeds the compressor: the critical path of a push) only pays a memcpy.
/// At most [`IN_FLIGHT`] blocks wait, which bounds the memory and makes a slow hasher hold back the
/// writer rather than let data pile up. Dropping it unfinished closes the channel, which ends the
/// thread.
pub struct OffloadedHashWriter<W> {
    inner: W,
    block: Vec<u8>,
    to_hasher: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    recycled: std::sync::mpsc::Receiver<Vec<u8>>,
    hasher: Option<std::thread::JoinHandle<String>>,
    size: u64,
}

const BLOCK: usize = 1 << 20;
const IN_FLIGHT: usize = 3;

impl<W: Write> OffloadedHashWriter<W> {
    /// Counts without hashing: `finish` reports an empty sha256.
    pub fn counting(inner: W) -> Self {
        let (_, recycled) = std::sync::mpsc::sync_channel::<Vec<u8>>(0);
        Self {
            inner,
            block: Vec::new(),
            to_hasher: None,
            recycled,
            hasher: None,
            size: 0,
        }
    }

    pub fn new(inner: W) -> io::Result<Self> {
        let (to_hasher, blocks) = std::sync::mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT);
        let (give_back, recycled) = std::sync::mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT + 1);
        let hasher = std::thread::Builder::new()
            .name("offsite-sha256".into())
            .spawn(move || {
                let mut h = Sha256::new();
                for mut block in blocks {
                    h.update(&block);
                    block.clear();
                    let _ = give_back.try_send(block);
                }
                hex::encode(h.finalize())
            })?;
        Ok(Self {
            inner,
            block: Vec::with_capacity(BLOCK),
            to_hasher: Some(to_hasher),
            recycled,
            hasher: Some(hasher),
            size: 0,
        })
    }

    fn send_block(&mut self) -> io::Result<()> {
        let next = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BLOCK));
        let full = std::mem::replace(&mut self.block, next);
        self.to_hasher
            .as_ref()
            .and_then(|tx| tx.send(full).ok())
            .ok_or_else(|| io::Error::other("the sha256 thread stopped"))
    }

    pub fn finish(mut self) -> io::Result<(W, Measured)> {
        if self.to_hasher.is_none() {
            return Ok((
                self.inner,
                Measured {
                    size: self.size,
                    sha256: String::new(),
                },
            ));
        }
        if !self.block.is_empty() {
            self.send_block()?;
        }
        drop(self.to_hasher.take());
        let sha256 = self
            .hasher
            .take()
            .ok_or_else(|| io::Error::other("the sha256 thread is gone"))?
            .join()
            .map_err(|_| io::Error::other("the sha256 thread panicked"))?;
        Ok((
            self.inner,
            Measured {
                size: self.size,
                sha256,
            },
        ))
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

impl<W: Write> Write for OffloadedHashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let mut rest = if self.to_hasher.is_some() {
            &buf[..n]
        } else {
            &[]
        };
        while !rest.is_empty() {
            let k = rest.len().min(BLOCK - self.block.len());
            self.block.extend_from_slice(&rest[..k]);
            rest = &rest[k..];
            if self.block.len() == BLOCK {
                self.send_block()?;
            }
        }
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
            // No recorded sha256 (tree volumes): the size is what is checked here.
            let hash_ok = self.expected.sha256.is_empty() || got == self.expected.sha256;
            if self.size == self.expected.size && hash_ok {
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
            if !self.expected.sha256.is_empty() {
                self.hasher.update(&buf[..n]);
            }
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

    #[test]
    fn the_offloaded_hash_equals_the_inline_one() -> io::Result<()> {
        let data: Vec<u8> = (0..3 * BLOCK + 12345).map(|i| (i % 251) as u8).collect();
        let mut a = HashWriter::new(Vec::new());
        let mut b = OffloadedHashWriter::new(Vec::new())?;
        for chunk in data.chunks(70_000) {
            a.write_all(chunk)?;
            b.write_all(chunk)?;
        }
        let (out_a, ma) = a.finish();
        let (out_b, mb) = b.finish()?;
        assert_eq!((out_a, ma), (out_b, mb));
        let (_, empty) = OffloadedHashWriter::new(Vec::new())?.finish()?;
        assert_eq!(empty.sha256, hex::encode(Sha256::digest(b"")));
        Ok(())
    }

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
