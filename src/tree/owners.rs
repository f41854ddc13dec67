//! User and group names next to the numeric ids, both ways, the way tar records and restores them.
//!
//! Backup records the name of each uid/gid so that a restore on another machine (where `www-data` may
//! have another number) can map by name, as GNU tar does; restore falls back to the number when the
//! name is unknown locally. Lookups go through NSS (`getpwuid_r` and friends) and are cached: a tree
//! has millions of files but a handful of owners.

use std::collections::HashMap;
use std::ffi::{CStr, CString};

/// Cached uid/gid -> name lookups (backup side).
#[derive(Default)]
pub struct Names {
    users: HashMap<u32, Option<Vec<u8>>>,
    groups: HashMap<u32, Option<Vec<u8>>>,
}

impl Names {
    pub fn user(&mut self, uid: u32) -> Option<&[u8]> {
        self.users
            .entry(uid)
            .or_insert_with(|| lookup(Db::UserById(uid)))
            .as_deref()
    }

    pub fn group(&mut self, gid: u32) -> Option<&[u8]> {
        self.groups
            .entry(gid)
            .or_insert_with(|| lookup(Db::GroupById(gid)))
            .as_deref()
    }
}

/// Cached name -> uid/gid lookups (restore side).
#[derive(Default)]
pub struct Ids {
    users: HashMap<String, Option<u32>>,
    groups: HashMap<String, Option<u32>>,
}

impl Ids {
    /// The local uid for `name` if it exists here, else the recorded number.
    pub fn uid(&mut self, name: Option<&str>, recorded: u64) -> u32 {
        let local = name.and_then(|n| {
            *self
                .users
                .entry(n.to_string())
                .or_insert_with(|| lookup_id(Db::UserByName(n)))
        });
        local.unwrap_or(recorded as u32)
    }

    pub fn gid(&mut self, name: Option<&str>, recorded: u64) -> u32 {
        let local = name.and_then(|n| {
            *self
                .groups
                .entry(n.to_string())
                .or_insert_with(|| lookup_id(Db::GroupByName(n)))
        });
        local.unwrap_or(recorded as u32)
    }
}

enum Db<'a> {
    UserById(u32),
    GroupById(u32),
    UserByName(&'a str),
    GroupByName(&'a str),
}

/// What one NSS lookup found: the name and the id of the record.
struct Record {
    name: Vec<u8>,
    id: u32,
}

fn lookup(db: Db<'_>) -> Option<Vec<u8>> {
    query(db).map(|r| r.name)
}

fn lookup_id(db: Db<'_>) -> Option<u32> {
    query(db).map(|r| r.id)
}

fn query(db: Db<'_>) -> Option<Record> {
    let name = match &db {
        Db::UserByName(n) | Db::GroupByName(n) => Some(CString::new(*n).ok()?),
        _ => None,
    };
    // The _r functions want a caller-supplied buffer and report ERANGE when it is too small.
    let mut buf = vec![0u8; 4096];
    loop {
        let rc;
        let mut out: Option<Record> = None;
        // SAFETY: every pointer handed to libc points into `buf`, `pwd`/`grp` or `name`, which outlive
        // the call; the returned strings are copied out before `buf` is reused or dropped.
        unsafe {
            match &db {
                Db::UserById(_) | Db::UserByName(_) => {
                    let mut pwd: libc::passwd = std::mem::zeroed();
                    let mut result: *mut libc::passwd = std::ptr::null_mut();
                    let p = buf.as_mut_ptr().cast();
                    rc = match (&db, &name) {
                        (Db::UserById(uid), _) => {
                            libc::getpwuid_r(*uid, &mut pwd, p, buf.len(), &mut result)
                        }
                        (_, Some(n)) => {
                            libc::getpwnam_r(n.as_ptr(), &mut pwd, p, buf.len(), &mut result)
                        }
                        _ => return None,
                    };
                    if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
                        out = Some(Record {
                            name: CStr::from_ptr(pwd.pw_name).to_bytes().to_vec(),
                            id: pwd.pw_uid,
                        });
                    }
                }
                Db::GroupById(_) | Db::GroupByName(_) => {
                    let mut grp: libc::group = std::mem::zeroed();
                    let mut result: *mut libc::group = std::ptr::null_mut();
                    let p = buf.as_mut_ptr().cast();
                    rc = match (&db, &name) {
                        (Db::GroupById(gid), _) => {
                            libc::getgrgid_r(*gid, &mut grp, p, buf.len(), &mut result)
                        }
                        (_, Some(n)) => {
                            libc::getgrnam_r(n.as_ptr(), &mut grp, p, buf.len(), &mut result)
                        }
                        _ => return None,
                    };
                    if rc == 0 && !result.is_null() && !grp.gr_name.is_null() {
                        out = Some(Record {
                            name: CStr::from_ptr(grp.gr_name).to_bytes().to_vec(),
                            id: grp.gr_gid,
                        });
                    }
                }
            }
        }
        if rc == libc::ERANGE && buf.len() < (1 << 22) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        return out;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_known_both_ways() {
        let mut names = Names::default();
        assert_eq!(names.user(0), Some(&b"root"[..]));
        let mut ids = Ids::default();
        assert_eq!(ids.uid(Some("root"), 12345), 0);
        assert_eq!(ids.uid(Some("no-such-user-offsite"), 12345), 12345);
        assert_eq!(ids.gid(None, 77), 77);
    }
}
