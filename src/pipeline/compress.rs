//! Compression stage: zstd (multi-threaded, default) or gzip.

use std::io::{self, Read, Write};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Zstd,
    Gzip,
}

impl Algorithm {
    /// The file-name extension, so that `zstd -d` / `gunzip` is the obvious tool.
    pub fn extension(self) -> &'static str {
        match self {
            Algorithm::Zstd => "zst",
            Algorithm::Gzip => "gz",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    pub algorithm: Algorithm,
    pub level: i32,
    /// zstd worker threads; 0 compresses on the calling thread.
    pub threads: u32,
}

impl Default for Compression {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Zstd,
            level: 3,
            threads: default_threads(),
        }
    }
}

/// zstd workers: one per core, at least one so compression overlaps reading the dump.
pub fn default_threads() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
        .max(1)
}

pub enum Compressor<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Gzip(flate2::write::GzEncoder<W>),
}

impl<W: Write> Compressor<W> {
    pub fn new(inner: W, c: &Compression) -> Result<Self> {
        Ok(match c.algorithm {
            Algorithm::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(inner, c.level)
                    .context("starting zstd compression")?;
                if c.threads > 0 {
                    enc.multithread(c.threads)
                        .context("starting zstd worker threads")?;
                }
                enc.include_checksum(true).context("configuring zstd")?;
                Compressor::Zstd(enc)
            }
            Algorithm::Gzip => {
                let level = c.level.clamp(0, 9) as u32;
                Compressor::Gzip(flate2::write::GzEncoder::new(
                    inner,
                    flate2::Compression::new(level),
                ))
            }
        })
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Zstd(e) => e.finish(),
            Compressor::Gzip(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Zstd(e) => e.write(buf),
            Compressor::Gzip(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Zstd(e) => e.flush(),
            Compressor::Gzip(e) => e.flush(),
        }
    }
}

/// The matching decompressor for reading an object back.
pub fn decompressor<'a, R: Read + Send + 'a>(
    inner: R,
    algorithm: Algorithm,
) -> Result<Box<dyn Read + Send + 'a>> {
    Ok(match algorithm {
        Algorithm::Zstd => Box::new(
            zstd::stream::read::Decoder::new(inner).context("starting zstd decompression")?,
        ),
        Algorithm::Gzip => Box::new(flate2::read::MultiGzDecoder::new(inner)),
    })
}
