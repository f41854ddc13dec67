//! Faults: S3 stops answering mid-upload (its process stopped with SIGSTOP, the TCP connections
//! left open). push must fail within `store.s3.stall_timeout` and a margin instead of hanging, commit
//! nothing, name what it left behind, and the next push after the server is back must commit. And a
//! dump that stops writing is killed after `dump_stall_timeout`.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::cli::{bin, Setup};
use crate::common::db::{PgDb, PG_URL};
use crate::common::s3::{raw_client, runtime, PrivateMoto, ACCESS_KEY, SECRET_KEY};

const BUCKET: &str = "offsite-stall";

/// Sends SIGCONT to the server when dropped, so that a failing assertion never leaves it stopped.
struct Stopped(u32);

impl Stopped {
    fn stop(pid: u32) -> Self {
        signal("-STOP", pid);
        Self(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal("-CONT", self.0);
    }
}

fn signal(sig: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid} failed");
}

/// The first pending multipart upload in the bucket: (key, upload id).
fn pending_upload(client: &aws_sdk_s3::Client) -> Option<(String, String)> {
    let uploads = runtime()
        .block_on(client.list_multipart_uploads().bucket(BUCKET).send())
        .ok()?;
    let u = uploads.uploads().first()?;
    Some((u.key()?.to_string(), u.upload_id()?.to_string()))
}

#[test]
fn s3_stopped_mid_upload_fails_the_push_within_the_stall_timeout_and_the_next_push_commits() {
    let moto = PrivateMoto::start();
    let admin = raw_client(&moto.endpoint, ACCESS_KEY, SECRET_KEY);
    runtime()
        .block_on(admin.create_bucket().bucket(BUCKET).send())
        .expect("create bucket");

    let s = Setup::new("stall-host");
    // 48 MiB of random bytes: zstd cannot shrink them, so the volume is ten 5 MiB parts, and the
    // upload is well under way, not finished, when the first part has landed.
    let mut data = vec![0u8; 48 << 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut data))
        .expect("random bytes");
    std::fs::create_dir_all(s.path("www")).unwrap();
    std::fs::write(s.path("www/big.bin"), &data).unwrap();
    let store = format!(
        "store:\n  s3: {{ bucket: {BUCKET}, prefix: prod, region: us-east-1, endpoint: '{}', path_style: true, access_key_id: '{ACCESS_KEY}', secret_access_key: '{SECRET_KEY}', part_size: 5MiB, parts_in_flight: 3, stall_timeout: 3s }}",
        moto.endpoint
    );
    s.config_with_store(&store, "trees: [{ name: www, path: www }]");
    // push reads a config without the office section, as on a production host.
    let push_config = s.write(
        "push.yaml",
        &format!(
            "host: stall-host\n{store}\nstate_dir: state\nencryption:\n  recipients: [keys/office.cert.asc]\n  signing_key: keys/stall-host.secret.asc\ntrees: [{{ name: www, path: www }}]\n"
        ),
    );

    let shown = s.offsite(&["config", "check"]).expect(0);
    assert!(
        shown.stdout.contains("stall_timeout"),
        "config check shows the setting: {}",
        shown.stdout
    );

    let mut push = Command::new(bin())
        .arg("-c")
        .arg(&push_config)
        .args(["push", "--quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting push");

    // Stop the server as soon as the volume's multipart upload has begun: moto takes a 48 MiB
    // volume in about a second, so waiting for a listed part can miss the whole upload.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (key, upload_id) = loop {
        if let Some(found) = pending_upload(&admin) {
            break found;
        }
        if let Ok(Some(status)) = push.try_wait() {
            panic!(
                "push ended ({status}) before its upload could be stopped: the tree is too small"
            );
        }
        assert!(
            Instant::now() < deadline,
            "no multipart upload began in 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let stopped = Stopped::stop(moto.pid());
    let stopped_at = Instant::now();

    // 3 s without progress, up to 3 s for the abort that cannot get through, and a margin.
    let limit = Duration::from_secs(3 + 30);
    let status = loop {
        if let Some(status) = push.try_wait().expect("waiting for push") {
            break status;
        }
        if stopped_at.elapsed() > limit {
            let _ = push.kill();
            panic!("push still runs {limit:?} after S3 stopped answering");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = stopped_at.elapsed();
    let out = push.wait_with_output().expect("push output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    drop(stopped);
    eprintln!("push ended {took:?} after S3 stopped:\n{stderr}");

    assert_eq!(status.code(), Some(1), "push exits 1: {stderr}");
    assert!(
        took >= Duration::from_secs(2),
        "push gave up after {took:?}, before the stall timeout: {stderr}"
    );
    assert!(
        stderr.contains("made no progress for 3s"),
        "the stall is named: {stderr}"
    );
    assert!(
        stderr.contains(moto.endpoint.trim_start_matches("http://")),
        "the message names the endpoint: {stderr}"
    );
    assert!(
        stderr.contains("no snapshot was committed"),
        "and says that nothing was committed: {stderr}"
    );
    // The abort could not reach the stopped server either: the upload is named for the office.
    assert!(
        stderr.contains(&upload_id) && stderr.contains(&key),
        "the upload left behind is named ({upload_id} of {key}): {stderr}"
    );

    // Nothing complete came out of the stopped run.
    let listed = s.offsite(&["snapshots", "--json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).expect("snapshots json");
    let complete = |v: &serde_json::Value| {
        v.as_array()
            .map(|a| a.iter().filter(|s| s["complete"] == true).count())
            .unwrap_or(0)
    };
    assert_eq!(complete(&v), 0, "{}", listed.stdout);

    // The server answers again: the next push commits, and it restores.
    s.offsite(&["push"]).expect(0);
    let listed = s.offsite(&["snapshots", "--json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).expect("snapshots json");
    assert_eq!(complete(&v), 1, "{}", listed.stdout);
    let to = s.path("back");
    let to_str = to.to_string_lossy().into_owned();
    s.offsite(&["restore", "latest", "--tree", "www", "--to", &to_str])
        .expect(0);
    assert!(
        std::fs::read(to.join("big.bin")).expect("restored file") == data,
        "the restored file has the same bytes"
    );
}

/// A dump that stops writing (here a pg_dump stand-in that sends 100 kB and then sleeps) is killed
/// after the source's `dump_stall_timeout`, and the source fails with that; nothing is committed.
#[test]
fn a_dump_that_writes_nothing_for_dump_stall_timeout_is_killed() {
    let pg = PgDb::new("stall");
    pg.exec("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g");
    let s = Setup::new("dumpstall-host");
    let fake = s.path("slow-pg_dump");
    // `exec sleep`: the process offsite started becomes the sleep, so killing it ends the output
    // (pg_dump itself has died of SIGPIPE when head closed the pipe).
    std::fs::write(
        &fake,
        "#!/bin/bash\nif [ \"$1\" = --version ]; then exec pg_dump --version; fi\npg_dump \"$@\" | head -c 100000\nexec sleep 60\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    s.config(&format!(
        "postgres: [{{ url: '{PG_URL}', databases: [{}], pg_dump: '{}', dump_stall_timeout: 2s }}]",
        pg.name,
        fake.display()
    ));
    let started = Instant::now();
    let run = s.offsite(&["push"]).expect(1);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "push took {took:?}: the dump was not killed"
    );
    assert!(
        run.stderr
            .contains("wrote nothing for 2s (dump_stall_timeout) and was killed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("no snapshot was committed"),
        "{}",
        run.stderr
    );
    assert!(
        s.local_snapshots().iter().all(|(_, complete)| !complete),
        "{:?}",
        s.local_snapshots()
    );
}

/// A server that takes connections and requests and then goes quiet: with `headers`, after sending
/// those and the first bytes of a body; without, saying nothing at all. Each connection is held
/// open for a minute, the way a stopped process's would be.
fn quiet_server(headers: Option<&'static str>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                use std::io::Write;
                let mut buf = [0u8; 65536];
                let _ = conn.read(&mut buf);
                if let Some(h) = headers {
                    let _ = conn.write_all(h.as_bytes());
                }
                std::thread::sleep(Duration::from_secs(60));
            });
        }
    });
    format!("http://{addr}")
}

/// Requests without a body are watched too: a listing from a server that never answers fails
/// after stall_timeout, once, not after five attempts of it.
#[test]
fn a_request_that_gets_no_answer_fails_after_the_stall_timeout_without_retries() {
    use offsite::store::Store;
    let endpoint = quiet_server(None);
    let mut cfg = crate::common::s3::config_at(&endpoint, "offsite-quiet", ACCESS_KEY, SECRET_KEY);
    cfg.stall_timeout = Duration::from_secs(1);
    let store = crate::common::s3::store(cfg);
    let started = Instant::now();
    let err = store.list("").expect_err("a server that never answers");
    let took = started.elapsed();
    let msg = format!("{err:#}");
    assert!(msg.contains("made no progress for 1s"), "{msg}");
    assert!(
        msg.contains(endpoint.trim_start_matches("http://")),
        "{msg}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "took {took:?}: {msg}"
    );
}

/// The answer's body is watched: a download whose bytes stop coming fails (after the reader's
/// resumes, each watched the same way) instead of waiting for ever.
#[test]
fn a_download_whose_body_stops_coming_fails() {
    use offsite::store::Store;
    let endpoint = quiet_server(Some(
        "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\nContent-Type: application/octet-stream\r\n\r\nfirst bytes",
    ));
    let mut cfg = crate::common::s3::config_at(&endpoint, "offsite-quiet", ACCESS_KEY, SECRET_KEY);
    cfg.stall_timeout = Duration::from_secs(1);
    let store = crate::common::s3::store(cfg);
    let started = Instant::now();
    let mut reader = store.open("some/object").expect("the headers came");
    let mut got = Vec::new();
    let err = reader.read_to_end(&mut got).expect_err("the body stops");
    let took = started.elapsed();
    assert!(err.to_string().contains("made no progress for 1s"), "{err}");
    assert!(
        err.to_string().contains("the answer stopped coming"),
        "{err}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
}
