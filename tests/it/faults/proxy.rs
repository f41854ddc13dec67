//! A TCP proxy between push and a moto server of the test's own, for faults on the network.
//!
//! It reads each request's head and frames its body by `Content-Length`, so that a fault can act on
//! exactly one request: lose moto's answer to it, write other bytes at its key first, flip one byte
//! of its body, or answer it with an error without passing it on. Everything else is forwarded as
//! it came. HTTP/1.1 without pipelining (the SDK's client): a response on a connection always
//! answers the last request seen on it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::common::s3::{raw_client, runtime, ACCESS_KEY, SECRET_KEY};

/// What the proxy does to a request it picks.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Forward the request, let moto answer, and close the connection without passing the answer on.
    LoseResponse,
    /// Before forwarding, put other bytes at the request's key (straight to moto).
    WriteFirst,
    /// Forward the head unchanged and the body with one byte in its middle flipped, as a faulty
    /// NIC, middlebox or RAM would: the length is right, the bytes are not.
    FlipByte,
    /// Answer `500 InternalError` without passing the request on; every matching request while the
    /// proxy is armed, not only the first.
    Error500,
    /// Forward the request unchanged, and moto's answer with one byte of its body flipped (at
    /// [`FLIP_AT`], or the middle of a shorter body's first read): a download that arrives
    /// changed, the length right.
    FlipResponseByte,
    /// [`Fault::FlipResponseByte`] on every matching request while the proxy is armed.
    FlipEveryResponseByte,
}

/// Where in an answer's body [`Fault::FlipResponseByte`] flips a byte.
pub const FLIP_AT: usize = 100_000;

/// A request as the proxy parsed it from its head.
#[derive(Clone, Debug)]
pub struct Request {
    /// `PUT /bucket/prod/...?partNumber=2&uploadId=... HTTP/1.1`
    pub line: String,
    pub method: String,
    /// The object key (after `/bucket/`), empty for a bucket-level request.
    pub key: String,
    pub query: String,
    /// The `Range` header's value (`bytes=0-1048575`), if any.
    pub range: Option<String>,
}

impl Request {
    pub fn is_upload_part(&self) -> bool {
        self.method == "PUT" && self.query.contains("uploadId=")
    }

    /// A PutObject: a `PUT` of a key that is no part of a multipart upload.
    pub fn is_put_object(&self) -> bool {
        self.method == "PUT" && !self.key.is_empty() && !self.is_upload_part()
    }

    pub fn part_number(&self) -> Option<u32> {
        self.query
            .split('&')
            .find_map(|kv| kv.strip_prefix("partNumber="))
            .and_then(|n| n.parse().ok())
    }
}

type Picker = Box<dyn Fn(&Request) -> bool + Send + Sync>;

struct Rule {
    fault: Fault,
    pick: Picker,
    upstream: String,
    bucket: String,
    /// Whether the fault still applies: a one-shot fault disarms when it fires.
    armed: AtomicBool,
    /// The key the fault hit, once it has.
    key: Mutex<Option<String>>,
    seen: Mutex<Vec<String>>,
    /// Microseconds each forwarded piece of an answer (at most 64 KiB) waits: a slow line.
    delay_us: AtomicU64,
    /// Bytes of answers passed back to clients.
    answered: AtomicU64,
}

pub struct Proxy {
    pub endpoint: String,
    rule: Arc<Rule>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to moto at `upstream` (`http://127.0.0.1:PORT`).
    /// The fault applies to the first request `pick` accepts, or for [`Fault::Error500`], to every
    /// one until [`Proxy::disarm`].
    pub fn start(
        upstream: &str,
        bucket: &str,
        fault: Fault,
        pick: impl Fn(&Request) -> bool + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy listen");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy addr"));
        let rule = Arc::new(Rule {
            fault,
            pick: Box::new(pick),
            upstream: upstream.to_string(),
            bucket: bucket.to_string(),
            armed: AtomicBool::new(true),
            key: Mutex::new(None),
            seen: Mutex::new(Vec::new()),
            delay_us: AtomicU64::new(0),
            answered: AtomicU64::new(0),
        });
        let accept = rule.clone();
        // The accept loop ends with the test process; its threads hold nothing but sockets.
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let rule = accept.clone();
                thread::spawn(move || serve(client, &rule));
            }
        });
        Self { endpoint, rule }
    }

    /// Request line and first response line (`... -> HTTP/1.1 200 OK`) of every request the fault
    /// hit and every other request to the same key, as the proxy saw them: what a test checks to
    /// know the fault really happened.
    pub fn seen(&self) -> Vec<String> {
        self.rule.seen.lock().unwrap().clone()
    }

    /// The key the fault hit, once it has.
    pub fn key(&self) -> Option<String> {
        self.rule.key.lock().unwrap().clone()
    }

    /// From now on every request is forwarded as it came.
    pub fn disarm(&self) {
        self.rule.armed.store(false, Ordering::SeqCst);
    }

    /// From now on the fault applies again (to the next request picked, for a one-shot fault).
    pub fn arm(&self) {
        self.rule.armed.store(true, Ordering::SeqCst);
    }

    /// Every piece of an answer (at most 64 KiB) waits `delay` before it is passed on.
    pub fn slow_down(&self, delay: std::time::Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.rule.delay_us.store(us, Ordering::SeqCst);
    }

    /// Bytes of answers (heads included) passed back to clients so far.
    pub fn answered(&self) -> u64 {
        self.rule.answered.load(Ordering::SeqCst)
    }
}

/// Flips the byte at [`FLIP_AT`] (or the middle of a shorter body) of one answer's body, across
/// the reads it arrives in.
#[derive(Default)]
struct FlipAnswer {
    /// The head so far, until its end is found.
    head: Vec<u8>,
    /// Body bytes before the current read, and the body's byte to flip, once the head has ended.
    body: Option<(usize, usize)>,
}

impl FlipAnswer {
    /// Flips the byte if it is in `piece`; true once it has been flipped.
    fn apply(&mut self, piece: &mut [u8]) -> bool {
        let mut from = 0;
        let (at, target) = match self.body {
            Some(b) => b,
            None => {
                let before = self.head.len();
                self.head.extend_from_slice(piece);
                let Some(end) = find(&self.head, b"\r\n\r\n") else {
                    return false;
                };
                from = end + 4 - before;
                let head = String::from_utf8_lossy(&self.head[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if len == 0 {
                    return true;
                }
                (0, FLIP_AT.min(len / 2))
            }
        };
        let body = &mut piece[from..];
        if let Some(i) = target.checked_sub(at).filter(|&i| i < body.len()) {
            body[i] ^= 0x01;
            return true;
        }
        self.body = Some((at + body.len(), target));
        false
    }
}

/// One client connection: this thread reads requests and passes them on, another passes answers
/// back.
fn serve(client: TcpStream, rule: &Arc<Rule>) {
    let addr = rule.upstream.trim_start_matches("http://");
    let Ok(server) = TcpStream::connect(addr) else {
        return;
    };
    let (Ok(mut client_r), Ok(mut server_w), Ok(mut client_w)) =
        (client.try_clone(), server.try_clone(), client.try_clone())
    else {
        return;
    };
    // Set while the request on this connection is one the test watches.
    let watched = Arc::new(Mutex::new(None::<String>));
    let lose = Arc::new(AtomicBool::new(false));
    // Set when the request just forwarded is one whose answer gets a byte flipped.
    let flip_answer = Arc::new(AtomicBool::new(false));
    let back = {
        let (mut server_r, mut client_w) = (server, client);
        let (watched, lose, rule, flip_answer) = (
            watched.clone(),
            lose.clone(),
            rule.clone(),
            flip_answer.clone(),
        );
        thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut flipping: Option<FlipAnswer> = None;
            loop {
                let n = match server_r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if flip_answer.swap(false, Ordering::SeqCst) {
                    flipping = Some(FlipAnswer::default());
                }
                if flipping.as_mut().is_some_and(|f| f.apply(&mut buf[..n])) {
                    flipping = None;
                }
                let delay = rule.delay_us.load(Ordering::SeqCst);
                if delay > 0 {
                    thread::sleep(std::time::Duration::from_micros(delay));
                }
                rule.answered.fetch_add(n as u64, Ordering::SeqCst);
                if let Some(req) = watched.lock().unwrap().take() {
                    rule.seen
                        .lock()
                        .unwrap()
                        .push(format!("{req} -> {}", status_line(&buf[..n])));
                }
                if lose.load(Ordering::SeqCst) {
                    // moto has acted on the request (it answers only after); the client never hears.
                    break;
                }
                if client_w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = client_w.shutdown(Shutdown::Both);
            let _ = server_r.shutdown(Shutdown::Both);
        })
    };
    let mut conn = Conn {
        stream: &mut client_r,
        buf: Vec::new(),
    };
    while let Some((head, req, body_len)) = conn.head(&rule.bucket) {
        let picked = (rule.pick)(&req)
            && match rule.fault {
                Fault::Error500 | Fault::FlipEveryResponseByte => rule.armed.load(Ordering::SeqCst),
                _ => rule
                    .armed
                    .compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok(),
            };
        if picked {
            *rule.key.lock().unwrap() = Some(req.key.clone());
        }
        let watch = picked || rule.key.lock().unwrap().as_deref() == Some(req.key.as_str());
        let fault = picked.then_some(rule.fault);
        if let Some(Fault::Error500) = fault {
            // Read the body so that the client hears the answer rather than a reset connection.
            if conn.body(body_len, |_| Ok(())).is_err() {
                break;
            }
            let answer = error_500(&req.key);
            rule.seen.lock().unwrap().push(format!(
                "{} -> {}",
                req.line,
                status_line(answer.as_bytes())
            ));
            if client_w.write_all(answer.as_bytes()).is_err() {
                break;
            }
            continue;
        }
        match fault {
            Some(Fault::LoseResponse) => lose.store(true, Ordering::SeqCst),
            Some(Fault::WriteFirst) => put_other_bytes(&rule.upstream, &rule.bucket, &req.key),
            Some(Fault::FlipResponseByte | Fault::FlipEveryResponseByte) => {
                flip_answer.store(true, Ordering::SeqCst);
            }
            _ => {}
        }
        if watch {
            *watched.lock().unwrap() = Some(req.line.clone());
        }
        if server_w.write_all(&head).is_err() {
            break;
        }
        let flip_at = matches!(fault, Some(Fault::FlipByte)).then_some(body_len / 2);
        let mut at = 0usize;
        let sent = conn.body(body_len, |chunk| {
            if let Some(i) = flip_at.filter(|i| (at..at + chunk.len()).contains(i)) {
                chunk[i - at] ^= 0x01;
            }
            at += chunk.len();
            server_w.write_all(chunk)
        });
        if sent.is_err() {
            break;
        }
    }
    let _ = server_w.shutdown(Shutdown::Write);
    let _ = back.join();
}

/// The client side of a connection: what has been read but not yet passed on.
struct Conn<'a> {
    stream: &'a mut TcpStream,
    buf: Vec<u8>,
}

impl Conn<'_> {
    /// The next request's head (raw, up to and with the blank line), parsed, and its body's length.
    /// `None` when the client closed the connection.
    fn head(&mut self, bucket: &str) -> Option<(Vec<u8>, Request, usize)> {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head: Vec<u8> = self.buf.drain(..end).collect();
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.split("\r\n");
        let line = lines.next().unwrap_or_default().to_string();
        let mut body_len = 0;
        let mut range = None;
        for h in lines {
            let Some((name, value)) = h.split_once(':') else {
                continue;
            };
            let name = name.trim().to_ascii_lowercase();
            if name == "content-length" {
                body_len = value.trim().parse().unwrap_or(0);
            }
            if name == "range" {
                range = Some(value.trim().to_string());
            }
            assert!(
                !(name == "transfer-encoding" && value.contains("chunked")),
                "the proxy frames bodies by Content-Length only: {text}"
            );
        }
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let key = path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(bucket))
            .and_then(|p| p.strip_prefix('/'))
            .unwrap_or_default()
            .to_string();
        let req = Request {
            line: line.clone(),
            method,
            key,
            query: query.to_string(),
            range,
        };
        Some((head, req, body_len))
    }

    /// Hands the next `len` bytes, the request's body, to `each` in chunks, which it may change.
    fn body(
        &mut self,
        len: usize,
        mut each: impl FnMut(&mut [u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut left = len;
        let buffered = left.min(self.buf.len());
        if buffered > 0 {
            let mut first: Vec<u8> = self.buf.drain(..buffered).collect();
            each(&mut first)?;
            left -= buffered;
        }
        let mut chunk = vec![0u8; 64 * 1024];
        while left > 0 {
            let want = left.min(chunk.len());
            let n = self.stream.read(&mut chunk[..want])?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            each(&mut chunk[..n])?;
            left -= n;
        }
        Ok(())
    }
}

fn status_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What S3 answers when it fails inside: retryable, so the SDK tries again with backoff.
fn error_500(key: &str) -> String {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message><Key>{key}</Key></Error>"
    );
    format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn put_other_bytes(endpoint: &str, bucket: &str, key: &str) {
    let client = raw_client(endpoint, ACCESS_KEY, SECRET_KEY);
    runtime()
        .block_on(
            client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(b"someone else's bytes".to_vec().into())
                .send(),
        )
        .expect("putting the other writer's object");
}
