//! Hands the compressed stream from the thread that reads and compresses the dump to the thread that
//! encrypts, hashes and stores it.
//!
//! One thread doing both halves serially left the dump process stalled on its full pipe whenever that
//! thread was busy encrypting; with two threads the halves overlap. The channel is bounded, so memory
//! stays flat whatever the size of the object: at most [`DEPTH`] chunks wait in it, plus the one being
//! filled, the one being encrypted and the few spares the encrypting side hands back for reuse.

use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

/// Bytes per chunk: large enough that the per-chunk cost (a channel hand-off, a wake-up) is noise next
/// to encrypting it, small enough that [`DEPTH`] of them stay a few MiB.
pub const CHUNK: usize = 512 * 1024;
/// Chunks that may wait between the two threads: enough to ride out a store write that stalls for a
/// moment without stalling compression.
pub const DEPTH: usize = 8;

pub enum Message {
    Data(Vec<u8>),
    /// Everything was sent. A channel that closes without it was abandoned (an error or a drop on the
    /// sending side), and the object must not be committed.
    End,
}

/// The sending side is gone (the receiving side failed or stopped). The receiving thread's own error
/// says why; [`crate::pipeline::ObjectSink`] recognises this one to go and fetch it.
#[derive(Debug)]
pub struct ReceiverGone;

impl std::fmt::Display for ReceiverGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the encrypting thread stopped")
    }
}

impl std::error::Error for ReceiverGone {}

pub fn is_receiver_gone(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<ReceiverGone>())
}

/// Collects small writes into [`CHUNK`]-sized buffers and sends them.
pub struct ChunkSender {
    tx: SyncSender<Message>,
    /// Emptied buffers coming back, so the steady state allocates nothing.
    spares: Receiver<Vec<u8>>,
    buf: Vec<u8>,
}

/// The receiving end: chunks to consume, and where to return their emptied buffers.
pub struct ChunkReceiver {
    pub rx: Receiver<Message>,
    spares: SyncSender<Vec<u8>>,
}

impl ChunkReceiver {
    /// Hands an emptied buffer back for reuse; dropped if the sender has enough spares already.
    pub fn recycle(&self, mut buf: Vec<u8>) {
        buf.clear();
        match self.spares.try_send(buf) {
            Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

pub fn channel() -> (ChunkSender, ChunkReceiver) {
    let (tx, rx) = sync_channel(DEPTH);
    let (spare_tx, spare_rx) = sync_channel(2);
    (
        ChunkSender {
            tx,
            spares: spare_rx,
            buf: Vec::with_capacity(CHUNK),
        },
        ChunkReceiver {
            rx,
            spares: spare_tx,
        },
    )
}

impl ChunkSender {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self
            .spares
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let full = std::mem::replace(&mut self.buf, next);
        self.tx
            .send(Message::Data(full))
            .map_err(|_| io::Error::other(ReceiverGone))
    }

    /// Sends what is left and the end marker. Dropping the sender without this abandons the stream.
    pub fn finish(mut self) -> io::Result<()> {
        self.send_buf()?;
        self.tx
            .send(Message::End)
            .map_err(|_| io::Error::other(ReceiverGone))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // Writes of a chunk or more (zstd's are 128 KiB at most) still go through the buffer: one
        // extra memcpy of compressed bytes is cheaper than a channel message per small write.
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // The receiving side's own flush happens when it finishes; pushing the partial chunk across is
        // all a flush can usefully do here.
        self.send_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_in_order_in_bounded_chunks_then_end() {
        let (mut tx, rx) = channel();
        let data: Vec<u8> = (0..3 * CHUNK + 12345).map(|i| (i % 251) as u8).collect();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut ended = false;
            while let Ok(m) = rx.rx.recv() {
                match m {
                    Message::Data(d) => {
                        assert!(d.len() <= CHUNK);
                        got.extend_from_slice(&d);
                        rx.recycle(d);
                    }
                    Message::End => ended = true,
                }
            }
            (got, ended)
        });
        for piece in data.chunks(1000) {
            tx.write_all(piece).unwrap();
        }
        tx.finish().unwrap();
        let (got, ended) = reader.join().unwrap();
        assert!(ended);
        assert_eq!(got, data);
    }

    #[test]
    fn gone_receiver_is_recognisable() {
        let (mut tx, rx) = channel();
        drop(rx);
        let err = tx.write_all(&vec![0u8; CHUNK]).unwrap_err();
        assert!(is_receiver_gone(&err), "{err}");
    }
}
