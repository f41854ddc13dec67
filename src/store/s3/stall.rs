//! The stall detector: every request to S3 fails once it has moved no byte, in either direction, for
//! `stall_timeout`.
//!
//! Why not the SDK's own timeouts alone: its read timeout runs from the start of a request to the
//! response's headers, and that includes sending the body. An upload part of 8 MiB to 5 GiB on a slow
//! line may take minutes and is fine as long as bytes move; a server that stopped (SIGSTOP, a hung
//! proxy, a dead NAT mapping) moves none, and the TCP connection stays open, so without this a push
//! waits for ever. A byte-progress clock tells the two apart with one setting, for every request.
//!
//! How: the HTTP client the SDK uses is wrapped. Each attempt's request body counts the bytes the
//! transport takes from it, and the attempt fails when nothing was taken and no response came for
//! `stall_timeout`. The response body fails the same way when no chunk arrives for that long. The
//! error is not retryable: a server that stopped answering for a minute is not a blip that a retry
//! within the same run should wait out again (and again) before the push may report it.

use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The default HTTPS client of the SDK (hyper 1, rustls with aws-lc, proxy from the environment),
/// built the way `aws-smithy-runtime` builds it, so that it can be wrapped.
pub(super) fn default_client() -> SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    use aws_smithy_http_client::{Builder, ConnectorBuilder};
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut conn =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
        conn.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            conn.set_sleep_impl(components.sleep_impl());
        }
        conn.set_proxy_config(Some(ProxyConfig::from_env()));
        conn.build()
    })
}

/// An HTTP client whose requests fail after `stall` without a byte of progress.
#[derive(Debug, Clone)]
pub(super) struct StallClient {
    inner: SharedHttpClient,
    stall: Duration,
}

impl StallClient {
    pub(super) fn new(inner: SharedHttpClient, stall: Duration) -> Self {
        Self { inner, stall }
    }
}

impl HttpClient for StallClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(StallConnector {
            inner: self.inner.http_connector(settings, components),
            stall: self.stall,
        })
    }

    fn validate_base_client_config(
        &self,
        components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.validate_base_client_config(components, cfg)
    }

    fn validate_final_config(
        &self,
        components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.validate_final_config(components, cfg)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

#[derive(Debug)]
struct StallConnector {
    inner: SharedHttpConnector,
    stall: Duration,
}

/// How often an attempt looks at its progress clock: a tenth of the timeout, within 0.1 to 1 s.
fn check_every(stall: Duration) -> Duration {
    (stall / 10).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

impl HttpConnector for StallConnector {
    fn call(&self, mut request: HttpRequest) -> HttpConnectorFuture {
        let stall = self.stall;
        let progress = Arc::new(Progress::new());
        let what = Request::of(&request);
        let body = std::mem::replace(request.body_mut(), SdkBody::taken());
        *request.body_mut() = SdkBody::from_body_1_x(CountingBody {
            inner: body,
            progress: progress.clone(),
        });
        let sent = self.inner.call(request);
        HttpConnectorFuture::new(async move {
            tokio::pin!(sent);
            let mut check = tokio::time::interval(check_every(stall));
            loop {
                tokio::select! {
                    res = &mut sent => {
                        let mut response = res?;
                        let body = std::mem::replace(response.body_mut(), SdkBody::taken());
                        *response.body_mut() = SdkBody::from_body_1_x(IdleBody {
                            inner: body,
                            stall,
                            deadline: Box::pin(tokio::time::sleep(stall)),
                            waiting: false,
                            what: Some(what),
                        });
                        return Ok(response);
                    }
                    _ = check.tick() => {
                        if progress.idle() >= stall {
                            return Err(ConnectorError::other(
                                Box::new(Stalled {
                                    request: what,
                                    stall,
                                    sent: progress.sent(),
                                    answering: false,
                                }),
                                None,
                            ));
                        }
                    }
                }
            }
        })
    }
}

/// When the transport last took a byte of the request body, and how many it took.
struct Progress {
    start: Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
    sent: AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        }
    }

    fn tick(&self, bytes: usize) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
        self.sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        self.start
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// What a stalled request was, for the message: no query string but the part number, no headers, so
/// nothing secret (presigned URLs are not used here anyway).
#[derive(Debug, Clone)]
struct Request {
    endpoint: String,
    method: String,
    path: String,
    part: Option<String>,
    len: Option<u64>,
}

impl Request {
    fn of(request: &HttpRequest) -> Self {
        let (endpoint, path, part) = match url::Url::parse(request.uri()) {
            Ok(uri) => (
                match (uri.host_str(), uri.port()) {
                    (Some(h), Some(p)) => format!("{h}:{p}"),
                    (Some(h), None) => h.to_string(),
                    _ => String::new(),
                },
                uri.path().to_string(),
                uri.query_pairs()
                    .find(|(k, _)| k == "partNumber")
                    .map(|(_, v)| v.into_owned()),
            ),
            Err(_) => (String::new(), String::new(), None),
        };
        Self {
            endpoint,
            method: request.method().to_string(),
            path,
            part,
            len: request.body().content_length(),
        }
    }
}

/// The error of a request that stopped moving.
#[derive(Debug)]
pub(super) struct Stalled {
    request: Request,
    stall: Duration,
    sent: u64,
    /// The response had begun, and its body stopped.
    answering: bool,
}

impl Stalled {
    pub(super) fn endpoint(&self) -> &str {
        &self.request.endpoint
    }

    pub(super) fn stall(&self) -> Duration {
        self.stall
    }
}

impl fmt::Display for Stalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.request;
        write!(
            f,
            "S3 at {} made no progress for {} ({} {}",
            r.endpoint,
            crate::config::human_duration(self.stall),
            r.method,
            r.path
        )?;
        if let Some(part) = &r.part {
            write!(f, " part {part}")?;
        }
        if self.answering {
            write!(f, ": the answer stopped coming)")
        } else {
            match r.len {
                Some(len) if len > 0 => {
                    write!(f, ": {} of {len} bytes sent, no answer)", self.sent)
                }
                _ => write!(f, ": no answer)"),
            }
        }
    }
}

impl std::error::Error for Stalled {}

/// The first [`Stalled`] in an error's chain of sources.
pub(super) fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Stalled> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(s) = err.downcast_ref::<Stalled>() {
            return Some(s);
        }
        cur = err.source();
    }
    None
}

/// A request body that tells [`Progress`] about every chunk the transport takes.
struct CountingBody {
    inner: SdkBody,
    progress: Arc<Progress>,
}

impl Body for CountingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let res = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &res {
            self.progress.tick(frame.data_ref().map_or(0, |d| d.len()));
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        Body::size_hint(&self.inner)
    }
}

/// A response body that fails when no chunk arrives for `stall` while its reader waits for one.
/// Time the reader spends elsewhere (writing the last chunk to disk) does not count.
struct IdleBody {
    inner: SdkBody,
    stall: Duration,
    deadline: Pin<Box<Sleep>>,
    /// The reader is waiting: the last poll returned `Pending`.
    waiting: bool,
    what: Option<Request>,
}

impl Body for IdleBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if !this.waiting {
            let next = Instant::now() + this.stall;
            this.deadline.as_mut().reset(next);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => this.waiting = true,
            ready => {
                this.waiting = false;
                return ready;
            }
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            if let Some(request) = this.what.take() {
                return Poll::Ready(Some(Err(Box::new(Stalled {
                    request,
                    stall: this.stall,
                    sent: 0,
                    answering: true,
                }))));
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        Body::size_hint(&self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_often_enough_but_not_too_often() {
        assert_eq!(check_every(Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(
            check_every(Duration::from_secs(3)),
            Duration::from_millis(300)
        );
        assert_eq!(
            check_every(Duration::from_millis(200)),
            Duration::from_millis(100)
        );
    }
}
