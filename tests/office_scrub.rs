//! verify reads every byte it vouches for, and the scrub re-reads the offsite copy over
//! `office.scrub_days`: a flipped byte anywhere is found, named, and repaired from the store when
//! the store's copy is good.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cli::{Run, Setup};

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr))
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, data).expect("write");
}

/// Files must have changed more than a second before a push for the next push to trust its read
/// of them (the racy-file rule), so an unchanged tree really reads nothing the second time.
fn settle() {
    std::thread::sleep(Duration::from_millis(1100));
}

fn push(s: &Setup) -> String {
    let run = s.offsite(&["--json", "push"]).expect(0);
    json(&run)["snapshot"]
        .as_str()
        .expect("snapshot id")
        .to_string()
}

/// An office config over this setup's local store, with the offsite copy in `offsite/` and
/// `extra` YAML lines for the office section.
fn office_config(s: &Setup, extra: &str) -> PathBuf {
    s.write(
        "office.yaml",
        &format!(
            "host: office\nstore: {{ local: store }}\noffice:\n  offsite_dir: offsite\n  decryption_key: keys/office.secret.asc\n  hosts: {{ {h}: keys/{h}.cert.asc }}\n{extra}\n",
            h = s.host
        ),
    )
}

/// Flips one bit in the middle of a file.
fn flip(path: &Path) {
    let mut data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mid = data.len() / 2;
    data[mid] ^= 0x10;
    fs::write(path, data).expect("write flipped");
}

/// The second snapshot of an unchanged tree holds one volume with nothing but directory headers:
/// no file of the view is in it, so a walk of the view never reads it. verify must.
#[test]
fn a_flipped_byte_in_a_header_only_volume_fails_verify_naming_it() {
    let s = Setup::new("scrub-hdr");
    let src = s.path("src");
    write(&src, "a.txt", b"alpha\n");
    write(&src, "d/b.txt", b"bravo\n");
    s.config(&format!(
        "trees: [{{ name: www, path: '{}' }}]",
        src.display()
    ));
    settle();
    let _full = push(&s);
    let inc = push(&s);
    let snap = s.path(&format!("store/{}/{inc}", s.host));
    let volume = snap.join("files/www/vol-00001.tar.zst.pgp");
    assert!(volume.exists(), "the incremental has a volume of headers");
    let key = format!("{}/{inc}/files/www/vol-00001.tar.zst.pgp", s.host);

    let office = office_config(&s, "");
    let ok = s
        .offsite_with(
            &office,
            &["--json", "verify", "--from-s3", "--host", &s.host, &inc],
            &[],
        )
        .expect(0);
    let v = json(&ok);
    let tree = &v[0]["Ok"]["trees"][0];
    assert_eq!(tree["ok"], true, "{v}");
    // The index and the header-only volume of the incremental, the full's volume with the files.
    assert!(
        tree["objects_read"].as_u64().expect("objects_read") >= 3,
        "{v}"
    );

    flip(&volume);
    // Stock gpg refuses it too: the flip is real damage, not a detail of offsite's format.
    let gpg = s.sh(&format!(
        "gpg --batch --quiet --decrypt '{}' > /dev/null",
        volume.display()
    ));
    assert_ne!(gpg.code, 0, "gpg decrypts a manipulated volume");

    let bad = s.offsite_with(
        &office,
        &["--json", "verify", "--from-s3", "--host", &s.host, &inc],
        &[],
    );
    let bad = bad.expect(1);
    let v = json(&bad);
    let tree = &v[0]["Ok"]["trees"][0];
    assert_eq!(tree["ok"], false, "{v}");
    let error = tree["error"].as_str().expect("error");
    assert!(error.contains(&key), "the error names {key}: {error}");
}
