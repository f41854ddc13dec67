//! Faults of `offsite pull` downloading a big object in ranged parts (`download_part_size: 1MiB`,
//! so a 12 MB volume is a dozen parts on three connections), through [`proxy`] in front of the
//! shared moto server: a byte flipped in one part's answer, in every answer of one part, and a pull
//! killed with SIGKILL while the parts arrive. What a user sees: the pull succeeds with the right
//! bytes or fails naming the object, the offsite copy never holds an object with wrong bytes, and
//! the next run finishes what a killed one began.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{spawn, wait_for};
use crate::common::cli::Setup;
use crate::common::s3::{endpoint, runtime, TestBucket};
use crate::faults::proxy::{Fault, Proxy, Request};

/// A host `host` that pushed one tree holding 12 MB of random bytes (one volume, which zstd cannot
/// shrink) straight to moto, and an office config (`office.yaml`) whose store is the proxy.
struct Rig {
    bucket: TestBucket,
    proxy: Proxy,
    setup: Setup,
    office: PathBuf,
    /// The volume's key in the store, without the prefix, and its bytes.
    volume: String,
    stored: Vec<u8>,
}

fn store_yaml(bucket: &str, endpoint: &str) -> String {
    format!(
        "store:\n  s3: {{ bucket: {bucket}, prefix: pullparts, region: us-east-1, endpoint: '{endpoint}', path_style: true, access_key_id: test, secret_access_key: test, part_size: 5MiB }}\n"
    )
}

fn rig(host: &str, fault: Fault, pick: impl Fn(&Request) -> bool + Send + Sync + 'static) -> Rig {
    let bucket = TestBucket::new(host);
    let proxy = Proxy::start(&endpoint(), &bucket.name, fault, pick);
    proxy.disarm();
    let setup = Setup::new(host);
    let mut data = vec![0u8; 12_000_000];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for b in data.iter_mut() {
        // xorshift: incompressible, and the same bytes on every run.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 24) as u8;
    }
    std::fs::create_dir_all(setup.path("tree")).expect("tree dir");
    std::fs::write(setup.path("tree/big.bin"), &data).expect("tree file");
    let push = setup.write(
        "push.yaml",
        &format!(
            "host: {host}\n{}state_dir: state\nencryption: {{ recipients: [keys/office.cert.asc], signing_key: keys/{host}.secret.asc }}\ntrees: [{{ name: t, path: tree, volume_size: 64MiB }}]\n",
            store_yaml(&bucket.name, &endpoint())
        ),
    );
    setup.offsite_with(&push, &["push"], &[]).expect(0);
    let office = setup.write(
        "office.yaml",
        &format!(
            "host: office\n{}office:\n  offsite_dir: offsite\n  decryption_key: keys/office.secret.asc\n  hosts: {{ {host}: keys/{host}.cert.asc }}\n  parallel_downloads: 3\n  download_part_size: 1MiB\n",
            store_yaml(&bucket.name, &proxy.endpoint)
        ),
    );
    let (volume, stored) = runtime().block_on(async {
        let client = bucket.client();
        let listed = client
            .list_objects_v2()
            .bucket(&bucket.name)
            .send()
            .await
            .expect("list");
        let key = listed
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .find(|k| k.contains("vol-"))
            .expect("a volume in the store")
            .to_string();
        let body = client
            .get_object()
            .bucket(&bucket.name)
            .key(&key)
            .send()
            .await
            .expect("get")
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .to_vec();
        (key, body)
    });
    assert!(
        stored.len() > 4 << 20,
        "the volume must be big enough for ranged parts: {} bytes",
        stored.len()
    );
    let volume = volume.trim_start_matches("pullparts/").to_string();
    Rig {
        bucket,
        proxy,
        setup,
        office,
        volume,
        stored,
    }
}

/// A ranged GET of the volume that is not its first part.
fn later_part(r: &Request) -> bool {
    r.method == "GET"
        && r.key.contains("vol-")
        && r.range
            .as_deref()
            .is_some_and(|g| !g.starts_with("bytes=0-"))
}

/// Every file under `dir`, temporary ones included.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[test]
fn a_part_that_arrives_with_a_flipped_byte_is_downloaded_again_and_pull_succeeds() {
    let r = rig("parts-flip", Fault::FlipResponseByte, later_part);
    r.proxy.arm();
    let run = r.setup.offsite_with(&r.office, &["pull"], &[]).expect(0);
    let seen = r.proxy.seen();
    assert!(
        seen.iter()
            .any(|l| l.starts_with("GET") && l.contains("vol-")),
        "the proxy flipped a byte of a ranged GET: {seen:?}"
    );
    assert!(
        run.stderr.contains(&r.volume) && run.stderr.contains("corrupt"),
        "the mismatch is reported, naming the object: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("once more"),
        "and the object downloaded again: {}",
        run.stderr
    );
    let got = std::fs::read(r.setup.path("offsite").join(&r.volume)).expect("pulled volume");
    assert_eq!(
        sha(&got),
        sha(&r.stored),
        "the right bytes in the offsite copy"
    );
    let left: Vec<_> = files(&r.setup.path("offsite"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".partial-"))
        .collect();
    assert!(left.is_empty(), "no temporary file left: {left:?}");
    r.setup.offsite_with(&r.office, &["verify"], &[]).expect(0);
    drop(r.bucket);
}

#[test]
fn a_part_that_arrives_changed_every_time_fails_pull_naming_the_object_and_keeps_nothing() {
    // Every answer to the second part (bytes from 1 MiB) has a byte flipped.
    let r = rig("parts-flip-all", Fault::FlipEveryResponseByte, |r| {
        later_part(r) && r.range.as_deref() == Some("bytes=1048576-2097151")
    });
    r.proxy.arm();
    let run = r.setup.offsite_with(&r.office, &["pull"], &[]).expect(1);
    let flipped = r.proxy.seen().len();
    assert!(
        flipped >= 2,
        "both downloads of the object met the fault: {:?}",
        r.proxy.seen()
    );
    assert!(
        run.stderr.contains(&r.volume) && run.stderr.contains(&r.bucket.name),
        "names the object and the store: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("did not match its manifest twice"),
        "{}",
        run.stderr
    );
    let offsite = r.setup.path("offsite");
    let kept: Vec<_> = files(&offsite)
        .into_iter()
        .filter(|p| !p.starts_with(offsite.join("reports")) && !p.ends_with(".offsite.lock"))
        .filter(|p| {
            let s = p.to_string_lossy();
            s.contains("vol-") || s.contains("manifest") || s.contains(".partial-")
        })
        .collect();
    assert!(
        kept.is_empty(),
        "no volume, temporary file or manifest in the offsite copy: {kept:?}"
    );
    // Once the line is clean again, the next pull copies it whole.
    r.proxy.disarm();
    r.setup.offsite_with(&r.office, &["pull"], &[]).expect(0);
    let got = std::fs::read(offsite.join(&r.volume)).expect("pulled volume");
    assert_eq!(sha(&got), sha(&r.stored));
    r.setup.offsite_with(&r.office, &["verify"], &[]).expect(0);
}

#[test]
fn a_pull_killed_while_parts_arrive_resumes_and_the_snapshot_verifies() {
    let r = rig("parts-kill", Fault::FlipResponseByte, |_| false);
    // About 3 MB/s per connection: the parts take seconds, and the kill lands among them.
    r.proxy.slow_down(Duration::from_millis(20));
    let before = r.proxy.answered();
    let mut pull = spawn(&r.setup, &r.office, &["pull"], "pull-killed");
    let offsite = r.setup.path("offsite");
    wait_for(60, "a temporary file with parts in it", || {
        r.proxy.answered() > before + (3 << 20)
            && files(&offsite)
                .iter()
                .any(|p| p.to_string_lossy().contains(".partial-"))
    });
    assert!(pull.running(), "still downloading: {}", pull.stderr());
    // SAFETY: kill(2) on our own child's pid.
    let killed = unsafe { libc::kill(pull.pid() as i32, libc::SIGKILL) };
    assert_eq!(killed, 0, "kill -9");
    assert_eq!(pull.finish(10), -1, "died of the signal");
    assert!(
        !offsite.join(&r.volume).exists(),
        "the volume was not committed half-downloaded"
    );
    r.proxy.slow_down(Duration::ZERO);
    r.setup.offsite_with(&r.office, &["pull"], &[]).expect(0);
    let got = std::fs::read(offsite.join(&r.volume)).expect("pulled volume");
    assert_eq!(
        sha(&got),
        sha(&r.stored),
        "the right bytes after the resume"
    );
    let left: Vec<_> = files(&offsite)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".partial-"))
        .collect();
    assert!(
        left.is_empty(),
        "the killed pull's temporary file is gone: {left:?}"
    );
    r.setup.offsite_with(&r.office, &["verify"], &[]).expect(0);
}
