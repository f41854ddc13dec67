//! Test servers of their own that refuse plaintext: a CA and certificates made with openssl, a free
//! port, and commands that must succeed.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs `cmd` (stdin empty); panics with both outputs unless it succeeds. Returns stdout.
pub fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A CA (`<name>.crt`/`.key`) in `dir`.
pub fn make_ca(dir: &Path, name: &str) -> PathBuf {
    run(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj"])
            .arg(format!("/CN=offsite test {name}"))
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(dir.join(format!("{name}.key")))
            .arg("-out")
            .arg(dir.join(format!("{name}.crt"))),
        "openssl req (CA)",
    );
    dir.join(format!("{name}.crt"))
}

/// A certificate signed by `ca` for `cn` with `ext` (openssl extension lines): (cert, key), as
/// `<file>.crt` and `<file>.key` in `dir`.
pub fn make_leaf(dir: &Path, ca: &str, file: &str, cn: &str, ext: &str) -> (PathBuf, PathBuf) {
    let (crt, key, csr, extfile) = (
        dir.join(format!("{file}.crt")),
        dir.join(format!("{file}.key")),
        dir.join(format!("{file}.csr")),
        dir.join(format!("{file}.ext")),
    );
    run(
        Command::new("openssl")
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-subj"])
            .arg(format!("/CN={cn}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
        "openssl req (leaf)",
    );
    std::fs::write(&extfile, ext).unwrap();
    run(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(dir.join(format!("{ca}.crt")))
            .arg("-CAkey")
            .arg(dir.join(format!("{ca}.key")))
            .args(["-set_serial"])
            .arg(format!("0x{:08x}", rand::random::<u32>()))
            .arg("-extfile")
            .arg(&extfile)
            .arg("-out")
            .arg(&crt),
        "openssl x509 (leaf)",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    (crt, key)
}
