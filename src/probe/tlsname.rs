//! `ssl_mode = VERIFY_CA` on mysql_async's rustls stack: the certificate must be signed by
//! `ssl_ca`, whatever name it holds. mysql_async 0.37.1 cannot skip the name check (its
//! `skip_domain_validation` looks for a text rustls no longer prints: mysql_async issue #404,
//! fixed upstream, unreleased), so the probe first learns a name the server's certificate
//! holds, from a TLS handshake of its own whose verifier checks the chain against `ssl_ca` and
//! records the names; the real connection then verifies chain *and* that name in full.
//!
//! The handshake speaks just enough MySQL protocol to get there: read the server's greeting,
//! send an SSL request, start TLS. It never authenticates and aborts once the certificate is
//! seen. Only the probe uses this.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, SignatureScheme};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A name (DNS name or IP address) the server's certificate holds, once its chain has been
/// verified against `ca`; or why not (a TLS error names the verification failure).
pub async fn certificate_name(
    host: &str,
    port: u16,
    ca: &Path,
    timeout: Duration,
) -> Result<String, NameError> {
    tokio::time::timeout(timeout, learn(host, port, ca))
        .await
        .map_err(|_| NameError::Timeout)?
}

/// Why the name of a server's certificate could not be learnt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("TLS: the certificate check took too long")]
    Timeout,
    #[error("{}: {why}", path.display())]
    Ca {
        path: std::path::PathBuf,
        why: String,
    },
    /// The TLS library refused a setting or the handshake (its own words).
    #[error("{0}")]
    Tls(String),
    /// The connection failed before TLS (the OS's words).
    #[error("{0}")]
    Io(String),
    #[error("the server's greeting is too large")]
    GreetingTooLarge,
    #[error("the server refused the connection before TLS")]
    Refused,
    #[error("TLS: the certificate holds no usable name")]
    NoName,
}

async fn learn(host: &str, port: u16, ca: &Path) -> Result<String, NameError> {
    use rustls::pki_types::pem::PemObject;
    let bad_ca = |e: &dyn std::fmt::Display| NameError::Ca {
        path: ca.to_path_buf(),
        why: e.to_string(),
    };
    let io = |e: std::io::Error| NameError::Io(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad_ca(&e))? {
        roots
            .add(cert.map_err(|e| bad_ca(&e))?)
            .map_err(|e| bad_ca(&e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| NameError::Tls(e.to_string()))?;
    let names = Arc::new(Mutex::new(None));
    let verifier = Arc::new(NameRecorder {
        inner,
        names: names.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NameError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();

    let mut stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(io)?;
    // The server's greeting: 3-byte length, sequence id, then the handshake packet.
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await.map_err(io)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    if len > 64 * 1024 {
        return Err(NameError::GreetingTooLarge);
    }
    let mut greeting = vec![0u8; len];
    stream.read_exact(&mut greeting).await.map_err(io)?;
    if greeting.first() == Some(&0xff) {
        return Err(NameError::Refused);
    }
    // SSL request: capabilities (SSL, protocol 4.1, secure connection, long password),
    // max packet size, character set, 23 zero bytes; sequence id 1.
    const CAPABILITIES: u32 = 0x0800 | 0x0200 | 0x8000 | 0x0001;
    let mut request = vec![32, 0, 0, 1];
    request.extend_from_slice(&CAPABILITIES.to_le_bytes());
    request.extend_from_slice(&(16u32 << 20).to_le_bytes());
    request.push(45); // utf8mb4_general_ci
    request.extend_from_slice(&[0u8; 23]);
    stream.write_all(&request).await.map_err(io)?;
    // Any name will do: the verifier records the certificate's own and aborts.
    let probe_name = ServerName::try_from("replguard.invalid").expect("a valid DNS name");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = connector.connect(probe_name, stream).await;
    if let Some(name) = names.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Ok(name);
    }
    match handshake {
        Ok(_) => Err(NameError::NoName),
        Err(e) => Err(NameError::Tls(
            e.get_ref()
                .map(|inner| inner.to_string())
                .unwrap_or_else(|| e.to_string()),
        )),
    }
}

/// Verifies the chain against the CA (through a name that cannot match) and keeps the names
/// the certificate holds; then refuses, which ends the handshake.
#[derive(Debug)]
struct NameRecorder {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    names: Arc<Mutex<Option<String>>>,
}

impl ServerCertVerifier for NameRecorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            // The chain is good (names are checked after it): keep a name it holds.
            Err(TlsError::InvalidCertificate(CertificateError::NotValidForNameContext {
                presented,
                ..
            })) => {
                let name = presented.iter().find_map(|p| usable_name(p));
                *self.names.lock().unwrap_or_else(|p| p.into_inner()) = name;
                Err(TlsError::General("certificate name recorded".into()))
            }
            Err(e) => Err(e),
            Ok(_) => Err(TlsError::General("unexpected name match".into())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A name to verify against, from webpki's rendering of a presented one: `DnsName("a.b")`
/// (a wildcard's `*` becomes a label it matches) or `IpAddress(1.2.3.4)`.
fn usable_name(presented: &str) -> Option<String> {
    let name = if let Some(dns) = presented
        .strip_prefix("DnsName(\"")
        .and_then(|r| r.strip_suffix("\")"))
    {
        dns.replacen("*.", "replguard.", 1)
    } else {
        presented
            .strip_prefix("IpAddress(")
            .and_then(|r| r.strip_suffix(')'))?
            .to_string()
    };
    ServerName::try_from(name.clone()).ok().map(|_| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_webpki_renderings() {
        assert_eq!(
            usable_name("DnsName(\"db.example\")").as_deref(),
            Some("db.example")
        );
        assert_eq!(
            usable_name("DnsName(\"*.db.example\")").as_deref(),
            Some("replguard.db.example")
        );
        assert_eq!(
            usable_name("IpAddress(127.0.0.1)").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(usable_name("DirectoryName"), None);
        assert_eq!(usable_name("DnsName(\"not a name\")"), None);
    }
}
