//! Creating special files and applying ownership, mode and mtime to restored entries, through
//! libc calls that do not follow a symlink at the end of the path.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result};

/// Ownership, mode and mtime of one restored entry.
pub struct Attrs {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub mtime: i64,
}

/// Sets ownership (as root), mode (not on symlinks, which have none) and mtime, by path without
/// following a symlink at the end; the caller has checked that no parent is a restored symlink.
pub fn apply(path: &Path, a: &Attrs, is_symlink: bool, chown: bool) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).context("path with a NUL byte")?;
    if chown {
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        let rc = unsafe {
            libc::fchownat(
                libc::AT_FDCWD,
                c.as_ptr(),
                a.uid,
                a.gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            let err = io::Error::last_os_error();
            // EPERM/EINVAL: an id this (possibly namespaced) root cannot map. Keep the data.
            if !matches!(err.raw_os_error(), Some(libc::EPERM | libc::EINVAL)) {
                return Err(err).with_context(|| format!("chown {}:{}", a.uid, a.gid));
            }
        }
    }
    if !is_symlink {
        // SAFETY: as above.
        let rc = unsafe { libc::fchmodat(libc::AT_FDCWD, c.as_ptr(), a.mode as libc::mode_t, 0) };
        if rc != 0 {
            return Err(io::Error::last_os_error()).with_context(|| format!("chmod {:o}", a.mode));
        }
    }
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: a.mtime as libc::time_t,
            tv_nsec: 0,
        },
    ];
    // SAFETY: `c` and `times` (two timespecs, as utimensat requires) outlive the call.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).context("setting the mtime");
    }
    Ok(())
}

pub fn mknod(path: &Path, kind: libc::mode_t, dev: libc::dev_t) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).context("path with a NUL byte")?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::mknod(c.as_ptr(), kind | 0o600, dev) } != 0 {
        return Err(io::Error::last_os_error()).context("creating the special file");
    }
    Ok(())
}
