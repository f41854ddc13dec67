//! A `Read` adapter for the filters that rewrite a dump as it streams: each gets the input chunk by
//! chunk and writes what goes on; the adapter hands that out and calls `finish` at the end.

use std::io::{self, Read};

/// A stream rewriter.
pub trait ChunkFilter {
    /// Rewrites `chunk` (any size, any boundary) into `out`.
    fn process(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> io::Result<()>;
    /// The input ended: write what was held back, or fail.
    fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()>;
}

/// `inner`, read through `filter`.
pub struct Filtered<R, F> {
    inner: R,
    filter: F,
    buf: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R, F> Filtered<R, F> {
    pub fn new(inner: R, filter: F) -> Self {
        Self {
            inner,
            filter,
            buf: vec![0; 256 * 1024],
            out: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl<R: Read, F: ChunkFilter> Read for Filtered<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            self.out.clear();
            self.pos = 0;
            if self.done {
                return Ok(0);
            }
            let n = self.inner.read(&mut self.buf)?;
            if n == 0 {
                self.done = true;
                self.filter.finish(&mut self.out)?;
                continue;
            }
            self.filter.process(&self.buf[..n], &mut self.out)?;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
