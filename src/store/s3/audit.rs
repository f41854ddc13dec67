//! `offsite audit`: what the configured credential can really do to the bucket, proven by trying.
//!
//! A policy document says what an administrator meant; the store decides. So the audit does not read
//! policies, it sends the requests a hacked host would send and records the store's answers. Every
//! probe is harmless whatever the answer:
//! - The object it writes, overwrites and tries to delete is a canary of its own under
//!   `<host>/.audit/` (not a snapshot id: listings, pull and retention never take it for one; the
//!   office's prune removes old canaries).
//! - The bucket-configuration probes (policy, versioning, lifecycle, Object Lock) write back what
//!   they could read; what the credential cannot read they probe with a body that S3 rejects as
//!   malformed *after* authorization: a credential without the permission gets `AccessDenied`, one
//!   with it gets `MalformedPolicy` / `MalformedXML`, and nothing changes either way.
//! - The retention probe shortens only the canary's own lock.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketVersioningStatus, ObjectLockConfiguration,
    ObjectLockRetention, ObjectLockRetentionMode, VersioningConfiguration,
};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{describe, http_status, S3Store};

/// What a probe found, judged against what the push credential should be able to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// As it should be.
    Ok,
    /// Not destructive, but weaker than it could be (the row says why).
    Warn,
    /// The credential can destroy or overwrite, or cannot do what push needs.
    Fail,
    /// The probe could not be made (the row says why).
    Skipped,
}

/// One request the audit sent and what came of it.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// What was tried, in words.
    pub check: &'static str,
    /// The S3 permission it exercises.
    pub action: &'static str,
    /// `allowed` or `denied`: what push's credential should get.
    pub expected: &'static str,
    /// What the store answered.
    pub result: String,
    pub verdict: Verdict,
    /// The policy statement or setting that fixes a `fail` or `warn`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The bucket's protection, as far as this credential can see it.
#[derive(Debug, Clone, Serialize)]
pub struct BucketState {
    pub versioning: String,
    pub object_lock: String,
    pub default_retention: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    pub location: String,
    /// The canary object the audit wrote (relative to the store's prefix).
    pub canary: String,
    pub bucket: BucketState,
    pub probes: Vec<Probe>,
}

impl Audit {
    /// True when nothing failed: the credential can do what push needs and cannot destroy or
    /// overwrite anything.
    pub fn passed(&self) -> bool {
        !self.probes.iter().any(|p| p.verdict == Verdict::Fail)
    }
}

/// How the store answered one request.
enum Answer {
    Done,
    Denied(String),
    /// Authorized, then refused for its content (the malformed configuration probes).
    Malformed(String),
    PreconditionFailed,
    Other(String),
}

fn answer<T, E>(r: Result<T, SdkError<E, HttpResponse>>) -> Answer
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let e = match r {
        Ok(_) => return Answer::Done,
        Err(e) => e,
    };
    let code = e.code().unwrap_or_default();
    match (http_status(&e), code) {
        (Some(412), _) | (_, "PreconditionFailed") => Answer::PreconditionFailed,
        (Some(403), _) | (_, "AccessDenied") => Answer::Denied(describe(&e)),
        (
            _,
            "MalformedXML"
            | "MalformedPolicy"
            | "InvalidArgument"
            | "InvalidRequest"
            | "InvalidBucketState"
            | "InvalidPolicyDocument"
            | "InvalidRetentionPeriod",
        ) => Answer::Malformed(describe(&e)),
        _ => Answer::Other(describe(&e)),
    }
}

impl Answer {
    /// The row for a request push's credential must be refused.
    fn must_be_denied(self, check: &'static str, action: &'static str, fix: String) -> Probe {
        let (result, verdict) = match self {
            Answer::Denied(why) => (format!("denied ({why})"), Verdict::Ok),
            Answer::Done => ("allowed: it was carried out".to_string(), Verdict::Fail),
            Answer::Malformed(why) => (
                format!("allowed: authorized, then refused for the probe's deliberately malformed content ({why})"),
                Verdict::Fail,
            ),
            Answer::PreconditionFailed => {
                ("refused (412 Precondition Failed)".to_string(), Verdict::Ok)
            }
            Answer::Other(why) => (format!("inconclusive: {why}"), Verdict::Fail),
        };
        let fix = (verdict != Verdict::Ok).then_some(fix);
        Probe {
            check,
            action,
            expected: "denied",
            result,
            verdict,
            fix,
        }
    }

    /// The row for a request push needs.
    fn must_be_allowed(self, check: &'static str, action: &'static str, fix: String) -> Probe {
        let (result, verdict) = match self {
            Answer::Done => ("allowed".to_string(), Verdict::Ok),
            Answer::Denied(why) => (format!("denied ({why})"), Verdict::Fail),
            Answer::Malformed(why) | Answer::Other(why) => {
                (format!("failed: {why}"), Verdict::Fail)
            }
            Answer::PreconditionFailed => (
                "refused (412 Precondition Failed): the key exists".to_string(),
                Verdict::Fail,
            ),
        };
        let fix = (verdict != Verdict::Ok).then_some(fix);
        Probe {
            check,
            action,
            expected: "allowed",
            result,
            verdict,
            fix,
        }
    }
}

/// `<host>/.audit/<tag><UTC stamp>-<8 hex>`: the name prune recognises as a canary.
fn canary_key(host: &str, tag: &str, now: OffsetDateTime) -> String {
    let stamp = now
        .format(&time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_default();
    format!("{host}/.audit/{tag}{stamp}-{:08x}", rand::random::<u32>())
}

/// Adds push's lock headers to a PutObject, when push would send them.
fn with_lock(
    req: aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
    lock: &Option<(
        aws_sdk_s3::types::ObjectLockMode,
        aws_smithy_types::DateTime,
    )>,
) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
    match lock {
        Some((mode, until)) => req
            .object_lock_mode(mode.clone())
            .object_lock_retain_until_date(*until),
        None => req,
    }
}

fn skipped(check: &'static str, action: &'static str, expected: &'static str, why: &str) -> Probe {
    Probe {
        check,
        action,
        expected,
        result: format!("not tried: {why}"),
        verdict: Verdict::Skipped,
        fix: None,
    }
}

impl S3Store {
    /// The office's half: its credential must be able to delete, or retention cannot work. Writes
    /// a canary (create-only, without lock headers) under `<host>/.audit/` and deletes it, every
    /// version of it. On a bucket whose default retention locks it anyway, the delete is refused
    /// by that lock, not by the credential: the row says so, and prune removes the canary later.
    pub fn audit_office(&self, host: &str) -> Audit {
        use crate::store::{AdminStore, Store};
        let s = &self.shared;
        let now = OffsetDateTime::now_utc();
        let canary = canary_key(host, "office-", now);
        let object_arn = format!("arn:aws:s3:::{}/{}*", s.bucket, s.full_key(""));
        let allow = |actions: &str| {
            format!(
                "{{ \"Effect\": \"Allow\", \"Action\": [{actions}], \"Resource\": \"{object_arn}\" }} in the office user's policy"
            )
        };
        let mut probes = Vec::new();
        let put = s.block_on(
            s.client
                .put_object()
                .bucket(&s.bucket)
                .key(s.full_key(&canary))
                .if_none_match("*")
                .body(ByteStream::from_static(b"offsite audit canary (office)\n"))
                .send(),
        );
        let wrote = put.is_ok();
        probes.push(answer(put).must_be_allowed(
            "write a canary object",
            "s3:PutObject",
            allow("\"s3:PutObject\""),
        ));
        if wrote {
            let (result, verdict) = match self.delete(&canary) {
                Ok(()) => (
                    "allowed: the canary and its versions are gone".to_string(),
                    Verdict::Ok,
                ),
                Err(e) => {
                    let why = format!("{e:#}");
                    match self.lock_until(&canary) {
                        Ok(Some(until)) if until > now => (
                            format!("refused by the canary's own Object Lock (until {until}), not necessarily by the policy; prune removes it once the lock ends: {why}"),
                            Verdict::Warn,
                        ),
                        _ => (format!("denied: {why}"), Verdict::Fail),
                    }
                }
            };
            let fix = (verdict == Verdict::Fail).then(|| {
                allow("\"s3:DeleteObject\", \"s3:DeleteObjectVersion\", \"s3:ListBucketVersions\"")
            });
            probes.push(Probe {
                check: "delete an object (retention needs it)",
                action: "s3:DeleteObject",
                expected: "allowed",
                result,
                verdict,
                fix,
            });
        } else {
            probes.push(skipped(
                "delete an object (retention needs it)",
                "s3:DeleteObject",
                "allowed",
                "the canary could not be written",
            ));
        }
        Audit {
            location: s.location(),
            canary,
            bucket: self.bucket_state(false),
            probes,
        }
    }

    /// Tries to change the bucket's policy, versioning, lifecycle and Object Lock configuration
    /// without changing them: what the credential can read is written back as it was; what it
    /// cannot read is probed with a body S3 rejects as malformed after authorization (a lax
    /// server that stored such a body anyway would only show that it needs no permission check).
    fn config_probes(&self, host: &str, fix: &str) -> Vec<Probe> {
        let s = &self.shared;
        let b = &s.bucket;
        let c = &s.client;
        let mut out = Vec::new();

        let check = "change the bucket policy";
        let answer_policy = match s.block_on(c.get_bucket_policy().bucket(b).send()) {
            Ok(cur) => answer(
                s.block_on(
                    c.put_bucket_policy()
                        .bucket(b)
                        .policy(cur.policy().unwrap_or_default())
                        .send(),
                ),
            ),
            Err(e) if e.code() == Some("NoSuchBucketPolicy") => {
                // No policy to write back: add a harmless one, and take it away again.
                let harmless = serde_json::json!({
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Sid": "OffsiteAuditProbe", "Effect": "Deny", "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": format!("arn:aws:s3:::{b}/{}", s.full_key(&format!("{host}/.audit/never-written")))
                    }]
                });
                let a = answer(
                    s.block_on(
                        c.put_bucket_policy()
                            .bucket(b)
                            .policy(harmless.to_string())
                            .send(),
                    ),
                );
                if matches!(a, Answer::Done) {
                    let _ = s.block_on(c.delete_bucket_policy().bucket(b).send());
                }
                a
            }
            Err(_) => answer(
                s.block_on(
                    c.put_bucket_policy()
                        .bucket(b)
                        .policy("offsite audit: not a policy")
                        .send(),
                ),
            ),
        };
        out.push(answer_policy.must_be_denied(check, "s3:PutBucketPolicy", fix.to_string()));

        let check = "change bucket versioning";
        let config = match s.block_on(c.get_bucket_versioning().bucket(b).send()) {
            // Written back as it was. A bucket that never had versioning has no status to write
            // back (Suspended would change it for good): it gets the empty, malformed body too.
            Ok(cur) => VersioningConfiguration::builder()
                .set_status(cur.status().cloned())
                .build(),
            Err(_) => VersioningConfiguration::builder().build(),
        };
        let a = answer(
            s.block_on(
                c.put_bucket_versioning()
                    .bucket(b)
                    .versioning_configuration(config)
                    .send(),
            ),
        );
        out.push(a.must_be_denied(check, "s3:PutBucketVersioning", fix.to_string()));

        let check = "change the bucket lifecycle (expiry rules)";
        let action = "s3:PutLifecycleConfiguration";
        let current = s.block_on(c.get_bucket_lifecycle_configuration().bucket(b).send());
        // Written back as it was; when there is none, or it cannot be read, an empty rule list,
        // which S3 rejects as malformed (adding a rule and removing it again could race an
        // administrator's own change).
        let (rules, min_size) = match current {
            Ok(cur) => (
                cur.rules().to_vec(),
                cur.transition_default_minimum_object_size().cloned(),
            ),
            Err(_) => (Vec::new(), None),
        };
        out.push(
            match BucketLifecycleConfiguration::builder()
                .set_rules(Some(rules))
                .build()
            {
                Ok(conf) => {
                    let a = answer(
                        s.block_on(
                            c.put_bucket_lifecycle_configuration()
                                .bucket(b)
                                .lifecycle_configuration(conf)
                                .set_transition_default_minimum_object_size(min_size)
                                .send(),
                        ),
                    );
                    a.must_be_denied(check, action, fix.to_string())
                }
                Err(e) => skipped(check, action, "denied", &e.to_string()),
            },
        );

        let check = "change the Object Lock configuration";
        let action = "s3:PutBucketObjectLockConfiguration";
        match s.block_on(c.get_object_lock_configuration().bucket(b).send()) {
            Ok(cur) => {
                let conf = cur
                    .object_lock_configuration()
                    .cloned()
                    .unwrap_or_else(|| ObjectLockConfiguration::builder().build());
                let a = answer(
                    s.block_on(
                        c.put_object_lock_configuration()
                            .bucket(b)
                            .object_lock_configuration(conf)
                            .send(),
                    ),
                );
                out.push(a.must_be_denied(check, action, fix.to_string()));
            }
            // No configuration, or unreadable: an empty one, which S3 rejects as malformed and
            // which cannot turn Object Lock on.
            Err(_) => {
                let a = answer(
                    s.block_on(
                        c.put_object_lock_configuration()
                            .bucket(b)
                            .object_lock_configuration(ObjectLockConfiguration::builder().build())
                            .send(),
                    ),
                );
                out.push(a.must_be_denied(check, action, fix.to_string()));
            }
        }
        out
    }

    /// Probes what this store's credential can do, writing one canary under `<host>/.audit/`.
    pub fn audit(&self, host: &str) -> Audit {
        let s = &self.shared;
        let now = OffsetDateTime::now_utc();
        let canary = canary_key(host, "", now);
        let full = s.full_key(&canary);
        let object_arn = format!("arn:aws:s3:::{}/{}*", s.bucket, s.full_key(""));
        let bucket_arn = format!("arn:aws:s3:::{}", s.bucket);
        let body = format!(
            "offsite audit canary, written {} by the credential under audit; not a snapshot\n",
            now.format(&Rfc3339).unwrap_or_default()
        );
        let allow = |actions: &str, resource: &str| {
            format!(
                "{{ \"Effect\": \"Allow\", \"Action\": [{actions}], \"Resource\": \"{resource}\" }} in the push user's policy"
            )
        };
        let deny = |actions: &str, resource: &str| {
            format!(
                "remove these actions from the push user's policy, or add {{ \"Effect\": \"Deny\", \"Action\": [{actions}], \"Resource\": \"{resource}\" }}"
            )
        };
        let mut probes = Vec::new();

        // 1. A create-only write: what push does for every object.
        let lock = s.lock_until();
        let put = s.block_on(async {
            let mut req = s
                .client
                .put_object()
                .bucket(&s.bucket)
                .key(&full)
                .if_none_match("*")
                .body(ByteStream::from(body.clone().into_bytes()));
            if let Some((mode, until)) = &lock {
                req = req
                    .object_lock_mode(mode.clone())
                    .object_lock_retain_until_date(*until);
            }
            req.send().await
        });
        let version = put
            .as_ref()
            .ok()
            .and_then(|o| o.version_id().map(str::to_string))
            .filter(|v| v != "null");
        let wrote = put.is_ok();
        probes.push(answer(put).must_be_allowed(
            "write a new object (If-None-Match: *)",
            "s3:PutObject",
            allow("\"s3:PutObject\"", &object_arn),
        ));
        let no_canary = "the canary could not be written";

        // 2, 3. Read back and list: pull-free checks push makes of its own writes.
        if wrote {
            let get = s.block_on(s.client.get_object().bucket(&s.bucket).key(&full).send());
            probes.push(answer(get).must_be_allowed(
                "read an object",
                "s3:GetObject",
                allow("\"s3:GetObject\"", &object_arn),
            ));
        } else {
            probes.push(skipped(
                "read an object",
                "s3:GetObject",
                "allowed",
                no_canary,
            ));
        }
        let list = s.block_on(
            s.client
                .list_objects_v2()
                .bucket(&s.bucket)
                .prefix(s.full_key(&format!("{host}/")))
                .max_keys(1)
                .send(),
        );
        probes.push(answer(list).must_be_allowed(
            "list the host's objects",
            "s3:ListBucket",
            allow("\"s3:ListBucket\"", &bucket_arn),
        ));

        if wrote {
            // 4. The store must honour the create-only condition: push's never-overwrite rests on it.
            // Sent as push sends its writes (with the lock headers), so that a policy requiring
            // them cannot be what refuses it.
            let again = s.block_on(
                with_lock(
                    s.client
                        .put_object()
                        .bucket(&s.bucket)
                        .key(&full)
                        .if_none_match("*"),
                    &lock,
                )
                .body(ByteStream::from_static(
                    b"offsite audit: second create-only write\n",
                ))
                .send(),
            );
            let mut p = answer(again).must_be_denied(
                "create-only write over an existing key",
                "If-None-Match",
                "use a store that honours If-None-Match: * on PutObject (conditional writes); on this one a write can replace an object".to_string(),
            );
            if p.verdict == Verdict::Ok && !p.result.starts_with("refused (412") {
                // Denied by policy is not the store refusing a second write of the key: whether
                // the store honours the condition stays unknown, and a hacked host can send it.
                p.result = format!(
                    "{}: inconclusive, expected 412 Precondition Failed from the store itself",
                    p.result
                );
                p.verdict = Verdict::Warn;
            }
            probes.push(p);

            // 5. A plain overwrite, as a hacked host would send it.
            let over = s.block_on(
                with_lock(s.client.put_object().bucket(&s.bucket).key(&full), &lock)
                    .body(ByteStream::from_static(
                        b"offsite audit: overwrite without If-None-Match\n",
                    ))
                    .send(),
            );
            let overwrite_fix = format!(
                "a bucket policy statement {{ \"Sid\": \"OffsitePushNeverOverwrites\", \"Effect\": \"Deny\", \"Principal\": {{ \"AWS\": \"<the push user's ARN>\" }}, \"Action\": \"s3:PutObject\", \"Resource\": \"{object_arn}\", \"Condition\": {{ \"Null\": {{ \"s3:if-none-match\": \"true\" }} }} }}"
            );
            let mut p = answer(over).must_be_denied(
                "overwrite an object (no If-None-Match)",
                "s3:PutObject",
                overwrite_fix,
            );
            if p.verdict == Verdict::Fail && p.result.starts_with("allowed: it was") {
                if let Some(v) = &version {
                    // Versioning keeps what was overwritten: the original is still there under its
                    // version id, and the office sees the manifest change and quarantines it.
                    p.result = format!(
                        "allowed, but it only added a version: the original stays as version {v} (versioned bucket)"
                    );
                    p.verdict = Verdict::Warn;
                }
            }
            probes.push(p);

            // 6. Shorten the canary's own retention, with the governance bypass.
            if let Some((_, until)) = &lock {
                let shorter = aws_smithy_types::DateTime::from_secs(
                    (now.unix_timestamp() + 3600).min(until.secs()),
                );
                let mut req = s
                    .client
                    .put_object_retention()
                    .bucket(&s.bucket)
                    .key(&full)
                    .bypass_governance_retention(true)
                    .retention(
                        ObjectLockRetention::builder()
                            .set_mode(
                                lock.as_ref()
                                    .map(|(m, _)| ObjectLockRetentionMode::from(m.as_str())),
                            )
                            .retain_until_date(shorter)
                            .build(),
                    );
                if let Some(v) = &version {
                    req = req.version_id(v);
                }
                // MinIO refuses a locked object's change as InvalidRequest, not AccessDenied.
                let shortened = match answer(s.block_on(req.send())) {
                    Answer::Malformed(why) if why.contains("InvalidRequest") => Answer::Denied(why),
                    a => a,
                };
                probes.push(shortened.must_be_denied(
                    "shorten an object's retention (with the governance bypass)",
                    "s3:PutObjectRetention",
                    "use object_lock mode compliance (no credential can shorten it), and deny s3:BypassGovernanceRetention to the push user; a store that lets even a compliance lock be shortened does not enforce Object Lock".to_string(),
                ));
                // Lengthening is the other way to hurt: a hacked host that locks every object for
                // a century makes storage a bill nobody can stop. Two days past push's own lock.
                let days = s.object_lock.map_or(1, |(_, d)| d);
                let longer = aws_smithy_types::DateTime::from_secs(
                    now.unix_timestamp() + (i64::from(days) + 2) * 86_400,
                );
                let mut req = s
                    .client
                    .put_object_retention()
                    .bucket(&s.bucket)
                    .key(&full)
                    .retention(
                        ObjectLockRetention::builder()
                            .set_mode(
                                lock.as_ref()
                                    .map(|(m, _)| ObjectLockRetentionMode::from(m.as_str())),
                            )
                            .retain_until_date(longer)
                            .build(),
                    );
                if let Some(v) = &version {
                    req = req.version_id(v);
                }
                let mut p = answer(s.block_on(req.send())).must_be_denied(
                    "lengthen an object's retention past object_lock.days",
                    "s3:PutObjectRetention",
                    format!(
                        "a bucket policy statement {{ \"Effect\": \"Deny\", \"Principal\": {{ \"AWS\": \"<the push user's ARN>\" }}, \"Action\": [\"s3:PutObject\", \"s3:PutObjectRetention\"], \"Resource\": \"{object_arn}\", \"Condition\": {{ \"NumericGreaterThan\": {{ \"s3:object-lock-remaining-retention-days\": \"{}\" }} }} }}",
                        days + 1
                    ),
                );
                if p.verdict == Verdict::Fail {
                    // It destroys nothing; it costs.
                    p.verdict = Verdict::Warn;
                    p.result = format!(
                        "{}: it could lock objects for years (storage cost)",
                        p.result
                    );
                }
                probes.push(p);
            } else {
                probes.push(skipped(
                    "shorten an object's retention (with the governance bypass)",
                    "s3:PutObjectRetention",
                    "denied",
                    "store.s3.object_lock is not set: objects are written without a retention",
                ));
            }

            // 7. Delete: the hidden-by-a-delete-marker kind, then the real one.
            let del = s.block_on(s.client.delete_object().bucket(&s.bucket).key(&full).send());
            probes.push(answer(del).must_be_denied(
                "delete an object",
                "s3:DeleteObject",
                deny(
                    "\"s3:DeleteObject\", \"s3:DeleteObjectVersion\"",
                    &object_arn,
                ),
            ));
        } else {
            for (check, action) in [
                ("create-only write over an existing key", "If-None-Match"),
                ("overwrite an object (no If-None-Match)", "s3:PutObject"),
                (
                    "shorten an object's retention (with the governance bypass)",
                    "s3:PutObjectRetention",
                ),
                (
                    "lengthen an object's retention past object_lock.days",
                    "s3:PutObjectRetention",
                ),
                ("delete an object", "s3:DeleteObject"),
            ] {
                probes.push(skipped(check, action, "denied", no_canary));
            }
        }
        // A version delete of a key never written: a 403 can only come from the policy
        // (a real version might be refused by its lock alone, which proves nothing once
        // that lock lapses); anything else means the request was allowed.
        let ghost = s.full_key(&format!(
            "{host}/.audit/never-written-{:08x}",
            rand::random::<u32>()
        ));
        let del = s.block_on(
            s.client
                .delete_object()
                .bucket(&s.bucket)
                .key(&ghost)
                .version_id("offsite-audit-no-such-version")
                .bypass_governance_retention(true)
                .send(),
        );
        probes.push(answer(del).must_be_denied(
            "delete an object version (with the governance bypass)",
            "s3:DeleteObjectVersion",
            deny(
                "\"s3:DeleteObjectVersion\", \"s3:BypassGovernanceRetention\"",
                &object_arn,
            ),
        ));

        // 8. Bucket configuration.
        let config_fix = deny(
            "\"s3:PutBucketPolicy\", \"s3:DeleteBucketPolicy\", \"s3:PutBucketVersioning\", \"s3:PutLifecycleConfiguration\", \"s3:PutBucketObjectLockConfiguration\"",
            &bucket_arn,
        );
        probes.extend(self.config_probes(host, &config_fix));

        Audit {
            location: s.location(),
            canary,
            bucket: self.bucket_state(version.is_some()),
            probes,
        }
    }

    /// Versioning and Object Lock as the bucket reports them; `seen_version`: a write of this
    /// audit came back with a version id, which proves versioning even when it cannot be read.
    fn bucket_state(&self, seen_version: bool) -> BucketState {
        let s = &self.shared;
        let versioning = match s.block_on(s.client.get_bucket_versioning().bucket(&s.bucket).send())
        {
            Ok(v) => match v.status() {
                Some(BucketVersioningStatus::Enabled) => "enabled".to_string(),
                Some(other) => other.as_str().to_lowercase(),
                None => "never enabled".to_string(),
            },
            Err(e) if seen_version => format!("enabled (seen on a write; {})", describe(&e)),
            Err(e) => format!("unknown ({})", describe(&e)),
        };
        let (object_lock, default_retention) = match s.block_on(
            s.client
                .get_object_lock_configuration()
                .bucket(&s.bucket)
                .send(),
        ) {
            Ok(out) => {
                let conf = out.object_lock_configuration();
                let enabled = conf
                    .and_then(|c| c.object_lock_enabled())
                    .map_or("off".to_string(), |e| e.as_str().to_lowercase());
                let retention = conf
                    .and_then(|c| c.rule())
                    .and_then(|r| r.default_retention())
                    .map_or("none".to_string(), |d| {
                        let mode = d.mode().map_or("?", |m| m.as_str()).to_lowercase();
                        match (d.days(), d.years()) {
                            (Some(days), _) => format!("{mode}, {days} days"),
                            (_, Some(years)) => format!("{mode}, {years} years"),
                            _ => mode,
                        }
                    });
                (enabled, retention)
            }
            Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => {
                ("off".to_string(), "none".to_string())
            }
            Err(e) => {
                let why = format!("unknown ({})", describe(&e));
                (why.clone(), why)
            }
        };
        BucketState {
            versioning,
            object_lock,
            default_retention,
        }
    }
}
