//! Running the real `offsite` binary against a temporary setup: keys made by `offsite keygen`, a
//! config written by the test, a local store inside the temp dir.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_offsite"))
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts the exit code, showing the output when it differs.
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A temp dir with `keys/office.*` and `keys/<host>.*`, and a config file written on demand.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub host: String,
}

impl Setup {
    pub fn new(host: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = Self {
            dir,
            host: host.to_string(),
        };
        let keys = s.path("keys");
        for name in ["office", host] {
            let out = Command::new(bin())
                .args(["keygen", name, "--out"])
                .arg(&keys)
                .output()
                .expect("keygen");
            assert!(
                out.status.success(),
                "keygen: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        s
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("config.yaml")
    }

    /// Writes config.yaml: host, local store `store`, keys, office section, plus `sources` (YAML).
    pub fn config(&self, sources: &str) -> &Self {
        self.config_with_store("store: { local: store }", sources)
    }

    pub fn config_with_store(&self, store: &str, sources: &str) -> &Self {
        let host = &self.host;
        let text = format!(
            "host: {host}\n{store}\nstate_dir: state\nencryption:\n  recipients: [keys/office.cert.asc]\n  signing_key: keys/{host}.secret.asc\noffice:\n  decryption_key: keys/office.secret.asc\n  hosts: {{ {host}: keys/{host}.cert.asc }}\n{sources}\n"
        );
        std::fs::write(self.config_path(), text).expect("writing config");
        self
    }

    /// Runs `offsite -c config.yaml ARGS`.
    pub fn offsite(&self, args: &[&str]) -> Run {
        self.offsite_env(args, &[])
    }

    pub fn offsite_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        self.offsite_with(&self.config_path(), args, env)
    }

    /// Runs `offsite -c CONFIG ARGS` with another config file of this setup.
    ///
    /// push refuses a config that names the office's secret key (production must never hold it),
    /// while many tests keep one config for both roles. So, like a real production host, `push` gets
    /// the config without its `office:` section.
    pub fn offsite_with(&self, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
        self.offsite_wrapped(&[], config, args, env)
    }

    /// Runs `WRAPPER... offsite -c config.yaml ARGS`: e.g. under `faketime -f +10m`.
    pub fn offsite_under(&self, wrapper: &[&str], args: &[&str]) -> Run {
        self.offsite_wrapped(wrapper, &self.config_path(), args, &[])
    }

    fn offsite_wrapped(
        &self,
        wrapper: &[&str],
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Run {
        let production;
        let config = if args.contains(&"push") || args.contains(&"audit") {
            production = production_config(config);
            production.as_path()
        } else {
            config
        };
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        cmd.arg("-c").arg(config).args(args).stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().expect("running offsite"))
    }

    /// Makes another host's signing key in this setup's keys/ (all hosts share the office key).
    pub fn add_host_key(&self, host: &str) {
        self.keygen(host, &[]);
    }

    /// `offsite --json keygen NAME --out keys ARGS`, in this setup's keys/: what it printed.
    pub fn keygen(&self, name: &str, args: &[&str]) -> serde_json::Value {
        let out = Command::new(bin())
            .args(["--json", "keygen", name, "--out"])
            .arg(self.path("keys"))
            .args(args)
            .output()
            .expect("keygen");
        assert!(
            out.status.success(),
            "keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("keygen --json")
    }

    /// Writes a file in the setup's dir and returns its path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }

    /// Snapshot directories in the local store: (id, has manifest).
    pub fn local_snapshots(&self) -> Vec<(String, bool)> {
        let dir = self.path("store").join(&self.host);
        let mut out: Vec<(String, bool)> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| {
                    let id = e.file_name().to_string_lossy().into_owned();
                    let complete = e.path().join("manifest.json.pgp").exists();
                    (id, complete)
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        out.sort();
        out
    }

    /// Every file in the store, relative to it.
    pub fn store_files(&self) -> Vec<PathBuf> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        walk(root, &p, out);
                    } else if let Ok(rel) = p.strip_prefix(root) {
                        out.push(rel.to_path_buf());
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.path("store"), &self.path("store"), &mut out);
        out.sort();
        out
    }

    /// A GNUPGHOME with the office secret key imported, for interop checks with stock gpg.
    pub fn gnupg_home(&self) -> PathBuf {
        self.gnupg_home_with("gnupg", "keys/office.secret.asc")
    }

    /// A GNUPGHOME `name` in the temp dir with `key` (a key file of this setup) imported, made once.
    pub fn gnupg_home_with(&self, name: &str, key: &str) -> PathBuf {
        let home = self.path(name);
        if !home.exists() {
            std::fs::create_dir_all(&home).expect("gnupg home");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
            let out = Command::new("gpg")
                .env("GNUPGHOME", &home)
                .args(["--batch", "--quiet", "--import"])
                .arg(self.path(key))
                .output()
                .expect("gpg --import");
            assert!(
                out.status.success(),
                "gpg import: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        home
    }

    /// Runs a shell pipeline with GNUPGHOME set to [`Setup::gnupg_home`], in the temp dir.
    pub fn sh(&self, script: &str) -> Run {
        let home = self.gnupg_home();
        let out = Command::new("bash")
            .args(["-o", "pipefail", "-c", script])
            .current_dir(self.dir.path())
            .env("GNUPGHOME", home)
            .stdin(Stdio::null())
            .output()
            .expect("bash");
        Run::from(out)
    }
}

/// `config` without its `office:` section, written beside it as `<name>.production.yaml`.
fn production_config(config: &Path) -> PathBuf {
    let text = std::fs::read_to_string(config).expect("reading the config");
    let out = config.with_extension("production.yaml");
    // A config that does not parse is written as it is: the test is about that error.
    let text = match serde_norway::from_str::<serde_norway::Value>(&text) {
        Ok(serde_norway::Value::Mapping(mut m)) => {
            m.remove("office");
            serde_norway::to_string(&m).expect("writing YAML")
        }
        _ => text,
    };
    std::fs::write(&out, text).expect("writing the production config");
    out
}
