//! ListObjectVersions, page by page: what prune's deletes (every version of a key) and its check
//! for others' delete markers both read.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::list_object_versions::ListObjectVersionsError;
use time::OffsetDateTime;

use super::Shared;

/// One version or delete marker, by its full key (prefix included).
pub(super) struct Version {
    pub key: String,
    pub id: Option<String>,
    pub marker: bool,
    pub latest: bool,
    pub modified: Option<OffsetDateTime>,
}

/// Every version and delete marker whose full key starts with `full_prefix`. With `only`, the
/// listing stops once it has passed that key (keys come sorted), for a delete of one key.
pub(super) fn list(
    s: &Shared,
    full_prefix: &str,
    only: Option<&str>,
) -> Result<Vec<Version>, Box<SdkError<ListObjectVersionsError, HttpResponse>>> {
    let time = |t: Option<&aws_smithy_types::DateTime>| {
        t.and_then(|t| OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos()).ok())
    };
    let mut out = Vec::new();
    let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
    loop {
        let page = s
            .block_on(
                s.client
                    .list_object_versions()
                    .bucket(&s.bucket)
                    .prefix(full_prefix)
                    .set_key_marker(key_marker.take())
                    .set_version_id_marker(version_marker.take())
                    .send(),
            )
            .map_err(Box::new)?;
        for v in page.versions() {
            out.push(Version {
                key: v.key().unwrap_or_default().to_string(),
                id: v.version_id().map(str::to_string),
                marker: false,
                latest: v.is_latest() == Some(true),
                modified: time(v.last_modified()),
            });
        }
        for m in page.delete_markers() {
            out.push(Version {
                key: m.key().unwrap_or_default().to_string(),
                id: m.version_id().map(str::to_string),
                marker: true,
                latest: m.is_latest() == Some(true),
                modified: time(m.last_modified()),
            });
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
        let past = matches!((only, key_marker.as_deref()), (Some(k), Some(n)) if n > k);
        if page.is_truncated() != Some(true) || key_marker.is_none() || past {
            return Ok(out);
        }
    }
}
