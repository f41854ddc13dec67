//! `contrib/`: the systemd units pass `systemd-analyze verify` (pointed at the built binary, with
//! the generated man pages their Documentation= names), carry the hardening the README promises,
//! and every scheduler example (units, cron, Kubernetes) runs offsite with arguments it accepts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::cli::bin;

fn contrib(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(rel)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

const UNITS: &[&str] = &[
    "offsite-push.service",
    "offsite-push.timer",
    "offsite-office.service",
    "offsite-office.timer",
    "offsite-office@.service",
    "offsite-office@.timer",
];

/// `key=value` lines of a unit (no sections, no comments).
fn settings(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

/// Runs offsite with `args` as a scheduler would, but with a config that does not exist: clap
/// must accept the arguments, so the run gets as far as reading the config (exit 2, saying so).
fn assert_accepted(args: &[String], from: &str) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let missing = tmp.path().join("missing.yaml");
    let mut args: Vec<String> = args.to_vec();
    if let Some(i) = args.iter().position(|a| a == "-c") {
        args[i + 1] = missing.display().to_string();
    }
    let out = Command::new(bin())
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("running offsite");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{from}: {args:?}: {err}");
    assert!(
        !err.contains("Usage:") && err.contains("missing.yaml"),
        "{from}: offsite does not accept {args:?}:\n{err}"
    );
}

#[test]
fn systemd_units_verify_and_are_hardened() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("units");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for u in UNITS {
        // verify checks that ExecStart's binary exists: point it at the one just built.
        let text = read(&contrib(&format!("systemd/{u}")))
            .replace("/usr/local/bin/offsite", bin().to_str().expect("utf-8"));
        std::fs::write(dir.join(u), text).expect("writing the unit");
    }
    // verify also runs `man` for each Documentation=man:... page: give it ours.
    let man = tmp.path().join("man");
    let out = Command::new(bin())
        .args(["man", "--dir"])
        .arg(man.join("man1"))
        .output()
        .expect("offsite man");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Templates are verified as an instance.
    let verify: Vec<String> = UNITS.iter().map(|u| u.replace("@.", "@web1.")).collect();
    for u in &verify {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(dir.join(u))
            .env("MANPATH", &man)
            .output()
            .expect("systemd-analyze is installed: run scripts/services");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.trim().is_empty(),
            "systemd-analyze verify {u}:\n{err}"
        );
    }

    for u in UNITS {
        let text = read(&contrib(&format!("systemd/{u}")));
        if u.ends_with(".timer") {
            assert_eq!(settings(&text, "Persistent"), ["true"], "{u}");
            assert_eq!(settings(&text, "RandomizedDelaySec").len(), 1, "{u}");
            assert_eq!(settings(&text, "WantedBy"), ["timers.target"], "{u}");
            continue;
        }
        for (key, want) in [
            ("ProtectSystem", "strict"),
            ("PrivateTmp", "yes"),
            ("NoNewPrivileges", "yes"),
            ("User", "offsite"),
            ("Type", "oneshot"),
        ] {
            assert_eq!(settings(&text, key), [want], "{u}: {key}");
        }
        let rw = settings(&text, "ReadWritePaths");
        let want = if u.starts_with("offsite-push") {
            "/var/lib/offsite"
        } else {
            "/srv/offsite"
        };
        assert_eq!(
            rw,
            [want, "-/var/lib/node_exporter/textfile"],
            "{u}: writes only its state_dir / offsite_dir, and the metrics folder if there is one"
        );
        let exec = settings(&text, "ExecStart");
        assert_eq!(exec.len(), 1, "{u}");
        let args: Vec<String> = exec[0]
            .replace("%i", "web1")
            .split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect();
        if u.contains('@') {
            assert!(
                exec[0].ends_with("office --quiet --host %i"),
                "{u}: {}",
                exec[0]
            );
        }
        assert_accepted(&args, u);
    }
}

#[test]
fn cron_and_kubernetes_examples_run_offsite_with_arguments_it_accepts() {
    let cron = read(&contrib("cron/offsite"));
    let mut jobs = 0;
    for line in cron.lines() {
        // Commented-out alternatives are checked too.
        let line = line.trim_start_matches(['#', ' ']);
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 || !fields[0].chars().all(|c| c.is_ascii_digit() || c == '*') {
            continue;
        }
        assert_eq!(fields[5], "offsite", "runs as the offsite user: {line}");
        assert_eq!(fields[6], "offsite", "{line}");
        let args: Vec<String> = fields[7..].iter().map(|s| s.to_string()).collect();
        assert_accepted(&args, "contrib/cron/offsite");
        jobs += 1;
    }
    assert_eq!(jobs, 4, "push, office, and office per host twice:\n{cron}");

    let text = read(&contrib("kubernetes/office-cronjob.yaml"));
    let doc: serde_json::Value = serde_norway::from_str(&text).expect("the CronJob is YAML");
    assert_eq!(doc["kind"], "CronJob");
    assert_eq!(doc["apiVersion"], "batch/v1");
    assert_eq!(doc["spec"]["concurrencyPolicy"], "Forbid");
    let container = &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let host = doc["metadata"]["labels"]["offsite/host"]
        .as_str()
        .expect("host label");
    assert!(
        args.windows(2).any(|w| w[0] == "--host" && w[1] == host),
        "{args:?}"
    );
    assert_accepted(&args, "contrib/kubernetes/office-cronjob.yaml");
}
