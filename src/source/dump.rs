//! Streams a dump child's stdout through a row counter into a pipeline object.

use std::io::{Read, Write};

use anyhow::{bail, Context, Result};

use super::process::Child;
use crate::pipeline::ObjectSink;
use crate::snapshot::manifest::ObjectEntry;

/// What the stream told us besides its bytes.
pub trait DumpCounter {
    fn feed(&mut self, data: &[u8]);
    /// Called once, after the last byte: fails when the stream cannot be a complete dump whatever
    /// its marker says (it ends inside COPY data, or holds structure the restore client would read
    /// differently from the counter).
    fn finish(&mut self) -> Result<()>;
    fn end_marker_seen(&self) -> bool;
}

impl DumpCounter for super::counters::PgCounter {
    fn feed(&mut self, data: &[u8]) {
        super::counters::PgCounter::feed(self, data)
    }
    fn finish(&mut self) -> Result<()> {
        super::counters::PgCounter::finish(self)
    }
    fn end_marker_seen(&self) -> bool {
        self.end_marker
    }
}

impl DumpCounter for super::counters::MysqlCounter {
    fn feed(&mut self, data: &[u8]) {
        super::counters::MysqlCounter::feed(self, data)
    }
    fn finish(&mut self) -> Result<()> {
        super::counters::MysqlCounter::finish(self)
    }
    fn end_marker_seen(&self) -> bool {
        self.end_marker
    }
}

/// Copies the child's stdout into `sink` while counting, then checks, in this order, that the child
/// exited cleanly, that the stream did not end mid-structure and that its end-of-dump marker was the
/// last thing in it, and only then commits the object. Returns
/// the child's stderr (warnings) with the object entry.
pub fn stream_dump(
    name: &str,
    mut child: Child,
    mut sink: ObjectSink,
    counter: &mut dyn DumpCounter,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<(ObjectEntry, String)> {
    let mut out = child.stdout()?;
    let mut buf = vec![0u8; 256 * 1024];
    let copied: Result<()> = (|| loop {
        let n = match out.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading the output of {name}")),
        };
        counter.feed(&buf[..n]);
        sink.write_all(&buf[..n])
            .with_context(|| format!("storing the output of {name}"))?;
        on_bytes(n as u64);
    })();
    if let Err(e) = copied {
        let stderr = child.kill();
        if stderr.is_empty() {
            return Err(e);
        }
        return Err(e.context(format!("{name} said: {stderr}")));
    }
    drop(out);
    let stderr = child.finish()?;
    if let Err(e) = counter.finish() {
        bail!("{name} exited cleanly but its output is not a complete dump, end-of-dump marker or not: {e:#}");
    }
    if !counter.end_marker_seen() {
        bail!("{name} exited cleanly but its output lacks the end-of-dump marker: the dump is incomplete");
    }
    let entry = sink.finish()?;
    Ok((entry, stderr))
}
