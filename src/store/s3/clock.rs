//! The S3 server's clock, read from the `Date` header of every response.
//!
//! push dates snapshots by this host's clock. A host whose clock is wrong writes snapshots that
//! sort in the wrong place, so push compares that clock with the store's and says so (see
//! [`crate::push`]). The SDK offers no public way to see response headers across operations; an
//! interceptor sees every response, errors included, at no cost.

use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use aws_smithy_types::date_time::{DateTime, Format};
use time::OffsetDateTime;

use crate::store::ClockReading;

/// Keeps the last reading; shared between the client's interceptor and the store.
#[derive(Debug, Clone, Default)]
pub(super) struct ClockWatch(Arc<Mutex<Option<ClockReading>>>);

impl ClockWatch {
    pub(super) fn last(&self) -> Option<ClockReading> {
        self.0.lock().ok().and_then(|r| *r)
    }

    fn record(&self, date: &str, local: OffsetDateTime) {
        let Some(server) = parse_http_date(date) else {
            tracing::debug!("S3 sent an unreadable Date header {date:?}");
            return;
        };
        if let Ok(mut r) = self.0.lock() {
            *r = Some(ClockReading { server, local });
        }
    }
}

impl Intercept for ClockWatch {
    fn name(&self) -> &'static str {
        "OffsiteClockWatch"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Taken first: the closer to the response's arrival, the smaller the error.
        let local = OffsetDateTime::now_utc();
        if let Some(date) = context.response().headers().get("date") {
            self.record(date, local);
        }
        Ok(())
    }
}

/// `Fri, 04 Dec 2026 16:05:05 GMT` (RFC 9110's IMF-fixdate, what S3 sends).
fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    let t = DateTime::from_str(s.trim(), Format::HttpDate).ok()?;
    OffsetDateTime::from_unix_timestamp(t.secs()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse_and_the_offset_is_host_minus_server() {
        let server = parse_http_date("Fri, 04 Dec 2026 16:05:05 GMT");
        assert_eq!(
            server,
            Some(time::macros::datetime!(2026-12-04 16:05:05 UTC))
        );
        assert_eq!(parse_http_date("yesterday"), None);
        let watch = ClockWatch::default();
        assert_eq!(watch.last(), None);
        watch.record(
            "Fri, 04 Dec 2026 16:05:05 GMT",
            time::macros::datetime!(2026-12-04 16:15:05.400 UTC),
        );
        let r = watch.last().unwrap();
        assert_eq!(r.offset_seconds(), 600);
        watch.record("garbage", time::macros::datetime!(2026-12-04 16:05:05 UTC));
        assert_eq!(
            watch.last(),
            Some(r),
            "an unreadable header keeps the last reading"
        );
        watch.record(
            "Fri, 04 Dec 2026 16:05:05 GMT",
            time::macros::datetime!(2026-12-04 15:55:05.400 UTC),
        );
        assert_eq!(watch.last().unwrap().offset_seconds(), -600);
    }
}
