//! S3 faults between push and the store: a response lost on the way back, a key someone else wrote.
//!
//! A tiny TCP proxy sits between push and a moto server of the test's own. It forwards bytes both
//! ways and, for the one request the test picks, either swallows moto's response after moto has
//! acted on the request (a response lost on the network), or first writes other bytes at the
//! request's key itself (another writer got there first).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::common::cli::Setup;
use crate::common::s3::{raw_client, runtime, PrivateMoto, ACCESS_KEY, SECRET_KEY};
use crate::common::tree::{assert_same, describe};

/// What the proxy does to the first request it picks.
#[derive(Clone)]
enum Fault {
    /// Forward the request, let moto answer, and close the connection without passing the answer on.
    LoseResponse,
    /// Before forwarding, put other bytes at the request's key (straight to moto).
    WriteFirst,
}

struct Proxy {
    endpoint: String,
    /// Request line and first response line of every picked request and every later request to the
    /// same key, as the proxy saw them: what the test checks to know the fault really happened.
    seen: Arc<Mutex<Vec<String>>>,
}

struct Rule {
    fault: Fault,
    /// The request to pick: the first `PUT` whose path contains this and is not an UploadPart.
    path_contains: &'static str,
    upstream: String,
    bucket: String,
    fired: AtomicBool,
    /// The key the fault hit, once it has.
    key: Mutex<Option<String>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to moto at `upstream` (`http://127.0.0.1:PORT`).
    fn start(upstream: &str, bucket: &str, fault: Fault, path_contains: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy listen");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rule = Arc::new(Rule {
            fault,
            path_contains,
            upstream: upstream.to_string(),
            bucket: bucket.to_string(),
            fired: AtomicBool::new(false),
            key: Mutex::new(None),
            seen: seen.clone(),
        });
        // The accept loop ends with the test process; its threads hold nothing but sockets.
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let rule = rule.clone();
                thread::spawn(move || serve(client, &rule));
            }
        });
        Self { endpoint, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// One client connection: a thread per direction. HTTP/1.1 without pipelining (the SDK's client),
/// so a response on the connection always answers the last request seen on it.
fn serve(client: TcpStream, rule: &Arc<Rule>) {
    let addr = rule.upstream.trim_start_matches("http://");
    let Ok(server) = TcpStream::connect(addr) else {
        return;
    };
    let (Ok(mut client_r), Ok(mut server_w)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    // Set while the request on this connection is one the test watches: the fault's, or a retry.
    let watched = Arc::new(Mutex::new(None::<String>));
    let lose = Arc::new(AtomicBool::new(false));
    let back = {
        let (mut server_r, mut client_w) = (server, client);
        let (watched, lose, rule) = (watched.clone(), lose.clone(), rule.clone());
        thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match server_r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if let Some(req) = watched.lock().unwrap().take() {
                    let status = String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    rule.seen.lock().unwrap().push(format!("{req} -> {status}"));
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
    let mut buf = vec![0u8; 64 * 1024];
    // The tail of what came before, so a request line split across reads is still found.
    let mut window: Vec<u8> = Vec::new();
    loop {
        let n = match client_r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        window.extend_from_slice(&buf[..n]);
        let (lines, done) = request_lines(&window);
        window.drain(..done);
        for line in lines {
            let Some(key) = put_key(&line, &rule.bucket) else {
                continue;
            };
            let picked = key.contains(rule.path_contains)
                && rule
                    .fired
                    .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
            if picked {
                *rule.key.lock().unwrap() = Some(key.clone());
                match rule.fault {
                    Fault::LoseResponse => lose.store(true, Ordering::SeqCst),
                    Fault::WriteFirst => put_other_bytes(&rule.upstream, &rule.bucket, &key),
                }
            }
            if picked || rule.key.lock().unwrap().as_deref() == Some(key.as_str()) {
                *watched.lock().unwrap() = Some(line.clone());
            }
        }
        // A request line is far shorter than this; the rest is body.
        let stale = window.len().saturating_sub(4096);
        window.drain(..stale);
        if server_w.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server_w.shutdown(Shutdown::Write);
    let _ = back.join();
}

/// Complete `PUT` request lines in `window`, and how many bytes of it they took up to the end of
/// the last one, so that the caller drops those and sees each line once.
fn request_lines(window: &[u8]) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut done = 0;
    while let Some(at) = find(&window[done..], b"PUT /") {
        let start = done + at;
        let Some(len) = find(&window[start..], b"\r\n") else {
            break;
        };
        out.push(String::from_utf8_lossy(&window[start..start + len]).into_owned());
        done = start + len;
    }
    (out, done)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The key of a PutObject request line (`PUT /bucket/key?x-id=PutObject HTTP/1.1`); `None` for an
/// UploadPart or another bucket.
fn put_key(line: &str, bucket: &str) -> Option<String> {
    let target = line.strip_prefix("PUT /")?.split(' ').next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if query.contains("uploadId=") {
        return None;
    }
    Some(path.strip_prefix(bucket)?.strip_prefix('/')?.to_string())
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

/// A moto server with a bucket, a host set up to push a small tree to it through a proxy.
struct Rig {
    moto: PrivateMoto,
    proxy: Proxy,
    setup: Setup,
    tree: std::path::PathBuf,
}

const BUCKET: &str = "offsite-faults";

fn rig(host: &str, fault: Fault, path_contains: &'static str) -> Rig {
    let moto = PrivateMoto::start();
    let admin = raw_client(&moto.endpoint, ACCESS_KEY, SECRET_KEY);
    runtime()
        .block_on(admin.create_bucket().bucket(BUCKET).send())
        .expect("create bucket");
    let proxy = Proxy::start(&moto.endpoint, BUCKET, fault, path_contains);
    let setup = Setup::new(host);
    let tree = setup.path("www");
    std::fs::create_dir_all(tree.join("html")).unwrap();
    std::fs::write(tree.join("html/index.html"), "<h1>hello</h1>\n").unwrap();
    std::fs::write(tree.join("robots.txt"), "User-agent: *\n").unwrap();
    setup.config_with_store(
        &format!(
            "store:\n  s3: {{ bucket: {BUCKET}, prefix: prod, region: us-east-1, endpoint: '{}', path_style: true, access_key_id: '{ACCESS_KEY}', secret_access_key: '{SECRET_KEY}' }}",
            proxy.endpoint
        ),
        &format!("trees: [{{ name: www, path: '{}' }}]", tree.display()),
    );
    Rig {
        moto,
        proxy,
        setup,
        tree,
    }
}

fn snapshots(s: &Setup) -> Vec<serde_json::Value> {
    let listed = s.offsite(&["snapshots", "--json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).expect("snapshots --json");
    v.as_array().cloned().unwrap_or_default()
}

#[test]
fn a_lost_response_to_the_manifest_put_is_not_a_failure() {
    let r = rig("lost-host", Fault::LoseResponse, "manifest.json.pgp");
    let s = &r.setup;
    s.offsite(&["push"]).expect(0);

    // The fault happened as meant: moto stored the manifest, push never heard, and its retry was
    // refused because the key existed.
    let seen = r.proxy.seen();
    assert!(
        seen.len() >= 2
            && seen[0].contains("manifest.json.pgp")
            && seen[0].ends_with(" 200 OK")
            && seen[1].contains(" 412 "),
        "{seen:#?}"
    );

    let listed = snapshots(s);
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["complete"], true, "{listed:#?}");
    assert_eq!(listed[0]["signature"], "valid", "{listed:#?}");

    let to = s.path("back");
    s.offsite(&["restore", "--tree", "www", "--to", to.to_str().unwrap()])
        .expect(0);
    assert_same(&describe(&r.tree), &describe(&to), "restored tree");
    drop(r.moto);
}

#[test]
fn another_object_at_the_key_still_fails_the_push_naming_the_key() {
    let r = rig("taken-host", Fault::WriteFirst, "/files/");
    let s = &r.setup;
    let run = s.offsite(&["push"]).expect(1);

    let seen = r.proxy.seen();
    assert!(
        seen.first().is_some_and(|l| l.contains(" 412 ")),
        "{seen:#?}"
    );
    let key = seen[0]
        .strip_prefix(&format!("PUT /{BUCKET}/prod/"))
        .and_then(|l| l.split(['?', ' ']).next())
        .expect("the key in the request line")
        .to_string();
    assert!(run.stderr.contains(&key), "names {key}: {}", run.stderr);
    assert!(
        run.stderr.contains("already exists") && run.stderr.contains("never overwrites"),
        "{}",
        run.stderr
    );

    // The snapshot push gave up on is there only as incomplete.
    let listed = snapshots(s);
    assert!(
        listed.iter().all(|snap| snap["complete"] == false),
        "{listed:#?}"
    );
    drop(r.moto);
}
