//! TLS for offsite's own PostgreSQL connections, configured the way libpq is: `sslmode`,
//! `sslrootcert`, `sslcert` and `sslkey` from the URL (or `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`,
//! `PGSSLKEY`), so that the URL pg_dump and psql get means the same to offsite.
//!
//! The modes, as libpq has them:
//! - `disable`: plaintext.
//! - `prefer` (the default) and `require` (and `allow`, taken as `prefer`): encrypted when the
//!   server offers it (`require`: or fail); the certificate is not checked, unless a root
//!   certificate file exists (`sslrootcert`, or libpq's default `~/.postgresql/root.crt`): then its
//!   chain is checked as with `verify-ca`.
//! - `verify-ca`: encrypted, and the server's certificate must chain to `sslrootcert`; its name is
//!   not checked.
//! - `verify-full`: as `verify-ca`, and the certificate must name the host of the URL.
//!
//! `verify-ca`/`verify-full` need roots: `sslrootcert=/path/ca.pem`, `sslrootcert=system` (the
//! system's trusted roots; libpq then insists on `verify-full`, and so do we), or
//! `~/.postgresql/root.crt`. Without any of them the connection is refused before it is tried,
//! as libpq refuses it. A client certificate is sent from `sslcert`/`sslkey` (default
//! `~/.postgresql/postgresql.crt`/`.key` when they exist); the key must not be readable by group
//! or others, as libpq demands. Encrypted keys (`sslpassword`) are not supported. SCRAM's channel
//! binding (`tls-server-end-point`, so `channel_binding=require` works as with libpq) is offered
//! for certificates signed with RSA PKCS#1 or ECDSA; for others (RSA-PSS, Ed25519) it is not, which
//! fails only a URL that requires it.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{Context as _, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use crate::error::usage;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "disable" => Self::Disable,
            // libpq's `allow` tries plaintext first; encrypting when the server can is no weaker.
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(usage(format!(
                    "sslmode={other} is not a libpq sslmode (disable, allow, prefer, require, verify-ca, verify-full)"
                )))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres itself knows: whether to ask for TLS and whether to insist.
    pub fn negotiation(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as T;
        match self {
            Self::Disable => T::Disable,
            Self::Prefer => T::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => T::Require,
        }
    }
}

/// Where the trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// None: the certificate is not checked (prefer/require without a root file).
    Unchecked,
    File(PathBuf),
    System,
}

/// The TLS parameters of one URL, resolved as libpq resolves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub roots: Roots,
    /// Client certificate chain and key.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// The URL query's TLS parameters (already taken out of the URL), before defaults.
#[derive(Debug, Default, Clone)]
pub struct TlsParams {
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
}

/// The query parameters [`TlsParams`] takes; tokio-postgres is given the rest.
pub const PARAMS: &[&str] = &["sslmode", "sslrootcert", "sslcert", "sslkey"];

impl TlsParams {
    pub fn set(&mut self, key: &str, value: String) {
        match key {
            "sslmode" => self.sslmode = Some(value),
            "sslrootcert" => self.sslrootcert = Some(value),
            "sslcert" => self.sslcert = Some(value),
            "sslkey" => self.sslkey = Some(value),
            _ => {}
        }
    }

    /// Fills what the URL left out from libpq's environment variables.
    pub fn with_env(mut self, env: &dyn Fn(&str) -> Option<String>) -> Self {
        let non_empty = |k: &str| env(k).filter(|v| !v.is_empty());
        self.sslmode = self.sslmode.or_else(|| non_empty("PGSSLMODE"));
        self.sslrootcert = self.sslrootcert.or_else(|| non_empty("PGSSLROOTCERT"));
        self.sslcert = self.sslcert.or_else(|| non_empty("PGSSLCERT"));
        self.sslkey = self.sslkey.or_else(|| non_empty("PGSSLKEY"));
        self
    }

    /// Applies libpq's defaults (`home`: where `.postgresql/` is looked for).
    pub fn resolve(self, home: Option<&Path>) -> Result<TlsSettings> {
        let default_file = |name: &str| home.map(|h| h.join(".postgresql").join(name));
        let system = self.sslrootcert.as_deref() == Some("system");
        let mode = match &self.sslmode {
            Some(m) => SslMode::parse(m)?,
            None if system => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        if mode == SslMode::Disable {
            return Ok(TlsSettings {
                mode,
                roots: Roots::Unchecked,
                client: None,
            });
        }
        let verify = mode >= SslMode::VerifyCa;
        let roots = match self.sslrootcert {
            Some(s) if s == "system" => {
                if mode != SslMode::VerifyFull {
                    return Err(usage(format!(
                        "sslmode={} may not be used with sslrootcert=system (use verify-full), as libpq says",
                        mode.as_str()
                    )));
                }
                Roots::System
            }
            Some(path) => {
                let path = PathBuf::from(path);
                if !path.is_file() {
                    return Err(usage(format!(
                        "sslrootcert {} does not exist (sslmode={})",
                        path.display(),
                        mode.as_str()
                    )));
                }
                Roots::File(path)
            }
            None => match default_file("root.crt").filter(|p| p.is_file()) {
                Some(p) => Roots::File(p),
                None if verify => {
                    return Err(usage(format!(
                        "sslmode={} needs the certificate of the CA that signed the server's: add sslrootcert=/path/to/ca.pem to the URL (or sslrootcert=system for the system's trusted roots, with verify-full); ~/.postgresql/root.crt does not exist",
                        mode.as_str()
                    )))
                }
                None => Roots::Unchecked,
            },
        };
        let cert = match self.sslcert {
            Some(c) => {
                let c = PathBuf::from(c);
                if !c.is_file() {
                    return Err(usage(format!("sslcert {} does not exist", c.display())));
                }
                Some(c)
            }
            None => default_file("postgresql.crt").filter(|p| p.is_file()),
        };
        let client = match cert {
            None => None,
            Some(cert) => {
                let key = match self.sslkey {
                    Some(k) => PathBuf::from(k),
                    None => default_file("postgresql.key").ok_or_else(|| {
                        usage(format!(
                            "sslcert {} needs its key: add sslkey=/path/to/key.pem",
                            cert.display()
                        ))
                    })?,
                };
                if !key.is_file() {
                    return Err(usage(format!(
                        "sslkey {} (the key of sslcert {}) does not exist",
                        key.display(),
                        cert.display()
                    )));
                }
                Some((cert, key))
            }
        };
        Ok(TlsSettings {
            mode,
            roots,
            client,
        })
    }
}

impl TlsSettings {
    /// `sslmode=verify-full, sslrootcert=/x/ca.pem`, for messages.
    pub fn describe(&self) -> String {
        let mut s = format!("sslmode={}", self.mode.as_str());
        match &self.roots {
            Roots::Unchecked => {}
            Roots::File(p) => s.push_str(&format!(", sslrootcert={}", p.display())),
            Roots::System => s.push_str(", sslrootcert=system"),
        }
        s
    }

    /// The rustls connector these settings describe (loads the certificate files).
    pub fn connector(&self) -> Result<MakeRustls> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match &self.roots {
            Roots::Unchecked => Arc::new(Unchecked(provider.clone())),
            roots => {
                let mut store = RootCertStore::empty();
                match roots {
                    Roots::File(path) => {
                        let certs = CertificateDer::pem_file_iter(path)
                            .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                            .map_err(|e| {
                                usage(format!("reading sslrootcert {}: {e}", path.display()))
                            })?;
                        let (added, _) = store.add_parsable_certificates(certs);
                        if added == 0 {
                            return Err(usage(format!(
                                "sslrootcert {} holds no usable certificate (PEM expected)",
                                path.display()
                            )));
                        }
                    }
                    _ => {
                        let found = rustls_native_certs::load_native_certs();
                        store.add_parsable_certificates(found.certs);
                        if store.is_empty() {
                            return Err(usage(
                                "sslrootcert=system: no trusted root certificates found on this system (install ca-certificates)",
                            ));
                        }
                    }
                }
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                        .build()
                        .context("building the certificate verifier")?;
                if self.mode == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(ChainOnly(webpki))
                }
            }
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match &self.client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                    .map_err(|e| usage(format!("reading sslcert {}: {e}", cert.display())))?;
                check_key_permissions(key)?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    usage(format!(
                        "reading sslkey {} (an unencrypted PEM key): {e}",
                        key.display()
                    ))
                })?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    usage(format!(
                        "sslcert {} with sslkey {}: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?
            }
        };
        Ok(MakeRustls {
            config: Arc::new(config),
        })
    }
}

/// libpq refuses a key that group or others can read (0640 is allowed for a root-owned key).
fn check_key_permissions(key: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::metadata(key).map_err(|e| usage(format!("sslkey {}: {e}", key.display())))?;
    let mode = meta.mode() & 0o777;
    let ok = if meta.uid() == 0 {
        mode & 0o037 == 0
    } else {
        mode & 0o077 == 0
    };
    if !ok {
        return Err(usage(format!(
            "sslkey {} has group or world access (mode {mode:o}); it must be 0600 or less (0640 if owned by root), as libpq demands",
            key.display()
        )));
    }
    Ok(())
}

/// The server's certificate failed verification (wrapped so that [`super::pg::connect`] can tell
/// it from other TLS failures).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CertificateRejected(pub rustls::Error);

/// prefer/require without roots: encrypted, the certificate taken as it is (libpq does the same),
/// but the handshake's signatures are still checked against it.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// verify-ca: the chain must lead to a trusted root; the name is not looked at. webpki checks the
/// chain (and its validity dates) before the name, so a name mismatch means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// tokio-postgres's connector, backed by rustls.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl MakeTlsConnect<tokio_postgres::Socket> for MakeRustls {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
        // tokio-postgres asks for a connector before it knows whether TLS will be used: for a
        // Unix socket (no TLS) the domain is empty. A name TLS cannot check fails the handshake,
        // if there is one.
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| format!("{domain:?} is not a host name TLS can check: {e}"));
        Ok(RustlsConnect {
            config: self.config.clone(),
            name,
        })
    }
}

pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: std::result::Result<ServerName<'static>, String>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl TlsConnect<tokio_postgres::Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<RustlsStream, BoxError>> + Send>>;

    fn connect(self, stream: tokio_postgres::Socket) -> Self::Future {
        Box::pin(async move {
            let connector = tokio_rustls::TlsConnector::from(self.config);
            let name = self
                .name
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            match connector.connect(name, stream).await {
                Ok(s) => {
                    let binding = s
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| tls_server_end_point(c));
                    Ok(RustlsStream {
                        stream: Box::new(s),
                        binding,
                    })
                }
                Err(e) => {
                    let rejected = e
                        .get_ref()
                        .and_then(|i| i.downcast_ref::<rustls::Error>())
                        .filter(|r| matches!(r, rustls::Error::InvalidCertificate(_)))
                        .cloned();
                    Err(match rejected {
                        Some(r) => Box::new(CertificateRejected(r)) as BoxError,
                        None => Box::new(e),
                    })
                }
            }
        })
    }
}

pub struct RustlsStream {
    stream: Box<tokio_rustls::client::TlsStream<tokio_postgres::Socket>>,
    /// `tls-server-end-point` of the server's certificate, when its hash is known.
    binding: Option<Vec<u8>>,
}

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream).poll_shutdown(cx)
    }
}

impl tokio_postgres::tls::TlsStream for RustlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        match &self.binding {
            Some(b) => ChannelBinding::tls_server_end_point(b.clone()),
            None => ChannelBinding::none(),
        }
    }
}

/// RFC 5929's `tls-server-end-point`: the certificate hashed with the hash of its signature
/// algorithm (MD5 and SHA-1 become SHA-256). `None` for algorithms without one hash (RSA-PSS,
/// Ed25519) or a certificate that does not parse.
fn tls_server_end_point(cert: &[u8]) -> Option<Vec<u8>> {
    use sha2::Digest;
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    let oid = signature_algorithm(cert)?;
    let hash = match oid {
        [p @ .., n] if p == RSA => match n {
            // md5WithRSAEncryption, sha1WithRSAEncryption, sha256WithRSAEncryption
            4 | 5 | 11 => 256,
            12 => 384,
            13 => 512,
            _ => return None,
        },
        o if o == ECDSA_SHA1 => 256,
        [p @ .., n] if p == ECDSA_SHA2 => match n {
            2 => 256,
            3 => 384,
            4 => 512,
            _ => return None,
        },
        _ => return None,
    };
    Some(match hash {
        256 => sha2::Sha256::digest(cert).to_vec(),
        384 => sha2::Sha384::digest(cert).to_vec(),
        _ => sha2::Sha512::digest(cert).to_vec(),
    })
}

/// The OID of `Certificate.signatureAlgorithm` (DER: SEQUENCE { tbs SEQUENCE, alg SEQUENCE { OID
/// ... }, signature }).
fn signature_algorithm(der: &[u8]) -> Option<&[u8]> {
    /// One DER element: (tag, content, the bytes after it).
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
    let (0x30, cert, _) = tlv(der)? else {
        return None;
    };
    let (0x30, _tbs, rest) = tlv(cert)? else {
        return None;
    };
    let (0x30, alg, _) = tlv(rest)? else {
        return None;
    };
    let (0x06, oid, _) = tlv(alg)? else {
        return None;
    };
    Some(oid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> TlsParams {
        let mut p = TlsParams::default();
        for (k, v) in pairs {
            p.set(k, v.to_string());
        }
        p
    }

    #[test]
    fn modes_default_and_resolve_like_libpq() {
        let home = tempfile::tempdir().unwrap();
        let h = Some(home.path());
        let s = params(&[]).resolve(h).unwrap();
        assert_eq!(
            (s.mode, s.roots, s.client),
            (SslMode::Prefer, Roots::Unchecked, None)
        );
        assert_eq!(
            params(&[("sslmode", "allow")]).resolve(h).unwrap().mode,
            SslMode::Prefer
        );
        let err = params(&[("sslmode", "verify-full")])
            .resolve(h)
            .unwrap_err();
        assert!(crate::error::is_usage(&err));
        assert!(format!("{err}").contains("sslrootcert"), "{err}");
        let err = params(&[("sslmode", "bogus")]).resolve(h).unwrap_err();
        assert!(format!("{err}").contains("sslmode=bogus"), "{err}");
        // sslrootcert=system implies verify-full and refuses anything weaker.
        let s = params(&[("sslrootcert", "system")]).resolve(h).unwrap();
        assert_eq!((s.mode, s.roots), (SslMode::VerifyFull, Roots::System));
        assert!(params(&[("sslrootcert", "system"), ("sslmode", "require")])
            .resolve(h)
            .is_err());
        // A root file in ~/.postgresql makes require check the chain, as libpq does.
        std::fs::create_dir(home.path().join(".postgresql")).unwrap();
        let root = home.path().join(".postgresql/root.crt");
        std::fs::write(&root, "x").unwrap();
        let s = params(&[("sslmode", "require")]).resolve(h).unwrap();
        assert_eq!(s.roots, Roots::File(root.clone()));
        assert_eq!(
            params(&[("sslmode", "verify-ca")])
                .resolve(h)
                .unwrap()
                .roots,
            Roots::File(root)
        );
        // disable needs nothing.
        let s = params(&[("sslmode", "disable"), ("sslrootcert", "/nonexistent")])
            .resolve(h)
            .unwrap();
        assert_eq!(s.mode, SslMode::Disable);
        assert!(
            params(&[("sslmode", "require"), ("sslrootcert", "/nonexistent")])
                .resolve(h)
                .is_err()
        );
    }

    /// SEQUENCE { SEQUENCE {} (tbs), SEQUENCE { OID }, BIT STRING }: as much of a certificate as
    /// the binding reads.
    fn cert_signed_with(oid: &[u8]) -> Vec<u8> {
        let mut alg = vec![0x30, oid.len() as u8 + 2, 0x06, oid.len() as u8];
        alg.extend_from_slice(oid);
        let mut body = vec![0x30, 0x00];
        body.extend(alg);
        body.extend([0x03, 0x01, 0x00]);
        let mut cert = vec![0x30, body.len() as u8];
        cert.extend(body);
        cert
    }

    #[test]
    fn end_point_binding_hashes_with_the_signature_s_hash() {
        use sha2::Digest;
        let rsa = |n: u8| [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, n];
        let ecdsa = |n: u8| [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, n];
        for (oid, len) in [
            (rsa(5).to_vec(), 32), // sha1WithRSA: SHA-256, as RFC 5929 says
            (rsa(11).to_vec(), 32),
            (rsa(12).to_vec(), 48),
            (rsa(13).to_vec(), 64),
            (ecdsa(2).to_vec(), 32),
            (ecdsa(3).to_vec(), 48),
            (ecdsa(4).to_vec(), 64),
        ] {
            let cert = cert_signed_with(&oid);
            let b = tls_server_end_point(&cert).expect("a binding");
            assert_eq!(b.len(), len, "{oid:x?}");
            if len == 48 {
                assert_eq!(b, sha2::Sha384::digest(&cert).to_vec());
            }
        }
        // RSA-PSS (its hash is in the parameters) and Ed25519 (no hash): no binding.
        assert_eq!(tls_server_end_point(&cert_signed_with(&rsa(10))), None);
        assert_eq!(
            tls_server_end_point(&cert_signed_with(&[0x2b, 0x65, 0x70])),
            None
        );
        assert_eq!(tls_server_end_point(&[0x30, 0x05, 0x30]), None);
        assert_eq!(tls_server_end_point(&[]), None);
    }

    #[test]
    fn environment_fills_what_the_url_leaves_out() {
        let env = |k: &str| match k {
            "PGSSLMODE" => Some("require".to_string()),
            "PGSSLROOTCERT" => Some(String::new()),
            _ => None,
        };
        let p = params(&[]).with_env(&env);
        assert_eq!(p.sslmode.as_deref(), Some("require"));
        assert_eq!(p.sslrootcert, None);
        let p = params(&[("sslmode", "disable")]).with_env(&env);
        assert_eq!(p.sslmode.as_deref(), Some("disable"));
    }

    #[test]
    fn a_client_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.crt");
        let key = dir.path().join("c.key");
        std::fs::write(&cert, "x").unwrap();
        std::fs::write(&key, "x").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = params(&[
            ("sslmode", "require"),
            ("sslcert", cert.to_str().unwrap()),
            ("sslkey", key.to_str().unwrap()),
        ])
        .resolve(Some(dir.path()))
        .unwrap();
        assert_eq!(s.client, Some((cert, key.clone())));
        // Refused before the files are parsed (0644 is too open for root's keys as well).
        let err = s.connector().err().unwrap();
        assert!(format!("{err}").contains("group or world access"), "{err}");
    }
}
