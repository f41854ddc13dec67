//! The end of what this run logged, kept in memory so that a ping ([`crate::ping`]) can carry it:
//! whoever gets the failure alert reads why without logging in. The binary's log writer ([`Tee`])
//! copies every line here on its way to stderr; the commands' own lines go through [`say`].

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Mutex;

/// What a ping carries at most: the last lines, and no more bytes than this.
pub const MAX_LINES: usize = 100;
pub const MAX_BYTES: usize = 10 * 1024;

static TAIL: Mutex<Tail> = Mutex::new(Tail {
    lines: VecDeque::new(),
    partial: String::new(),
});

struct Tail {
    lines: VecDeque<String>,
    /// Text after the last newline, until its line ends.
    partial: String,
}

impl Tail {
    fn push(&mut self, text: &str) {
        self.partial.push_str(text);
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            self.lines
                .push_back(strip_ansi(line.trim_end_matches('\n')));
            if self.lines.len() > MAX_LINES {
                self.lines.pop_front();
            }
        }
    }
}

/// Keeps `text` (whole lines or parts of one) in the tail.
pub fn record(text: &str) {
    if let Ok(mut t) = TAIL.lock() {
        t.push(text);
    }
}

/// Prints one line to stderr, as `eprintln!` does, and keeps it in the tail.
pub fn say(line: &str) {
    eprintln!("{line}");
    record(&format!("{line}\n"));
}

/// The last [`MAX_LINES`] lines logged, cut from the front to [`MAX_BYTES`].
pub fn tail() -> String {
    let Ok(t) = TAIL.lock() else {
        return String::new();
    };
    let mut out = String::new();
    for line in t.lines.iter().rev() {
        if out.len() + line.len() + 1 > MAX_BYTES {
            break;
        }
        out.insert_str(0, &format!("{line}\n"));
    }
    out
}

/// Colours are for a terminal, not for a mail or a web page.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters... final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A `tracing_subscriber` writer: stderr, with a copy of every line kept in the tail.
pub struct Tee;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Tee {
    type Writer = TeeWriter;
    fn make_writer(&'a self) -> Self::Writer {
        TeeWriter
    }
}

pub struct TeeWriter;

impl Write for TeeWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = std::io::stderr().write(buf)?;
        record(&String::from_utf8_lossy(&buf[..n]));
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_whole_lines_without_colours_and_at_most_the_limits() {
        let mut t = Tail {
            lines: VecDeque::new(),
            partial: String::new(),
        };
        t.push("\u{1b}[32m INFO\u{1b}[0m one ");
        t.push("line\nsecond\n");
        assert_eq!(t.lines, [" INFO one line", "second"]);
        for i in 0..500 {
            t.push(&format!("line {i}\n"));
        }
        assert_eq!(t.lines.len(), MAX_LINES);
        assert_eq!(t.lines.back().map(String::as_str), Some("line 499"));
    }
}
