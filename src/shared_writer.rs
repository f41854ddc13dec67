//! A writer shared between a writer stack that owns it and the code that needs it back afterwards.
//!
//! sequoia's `Message` owns its sink and drops it on `finalize`, so the end of a pipeline (hashing,
//! the store object) lives behind an `Arc<Mutex<_>>` and is taken back out once the stack is finished.
//! The lock is never contended: one thread at a time writes through it (a pipeline's encrypting
//! thread), and the value is taken back only after that writing is done.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

pub struct Shared<W>(Arc<Mutex<Option<W>>>);

impl<W> Clone for Shared<W> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<W> Shared<W> {
    pub fn new(inner: W) -> Self {
        Self(Arc::new(Mutex::new(Some(inner))))
    }

    /// Takes the inner writer back. Fails if it was taken already.
    pub fn take(&self) -> io::Result<W> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("pipeline lock poisoned"))?
            .take()
            .ok_or_else(|| io::Error::other("pipeline sink already taken"))
    }
}

impl<W: Write> Write for Shared<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut guard = self
            .0
            .lock()
            .map_err(|_| io::Error::other("pipeline lock poisoned"))?;
        match guard.as_mut() {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("pipeline sink already finished")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        let mut guard = self
            .0
            .lock()
            .map_err(|_| io::Error::other("pipeline lock poisoned"))?;
        match guard.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}
