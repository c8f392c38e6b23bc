//! The `[web]` settings, following the Prometheus exporters' web-config convention: an address
//! allowlist (`allow_from`), HTTP basic auth with bcrypt hashes (`basic_auth_users`, with
//! `auth_exempt` paths left open, by default the health checks), and TLS with optional client
//! certificates; and the TLS acceptor built from them. Plain data and file loading: the rules
//! are applied by [`crate::serve::listen::gate`].

use ipnet::IpNet;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `[web]`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebSettings {
    pub tls: Option<TlsSettings>,
    /// User name → bcrypt hash; empty: no authentication.
    pub users: BTreeMap<String, String>,
    /// Paths left open when users are configured; `checks` stands for every check path.
    pub auth_exempt: Vec<String>,
    /// Networks allowed to connect; empty: everyone.
    pub allow_from: Vec<IpNet>,
}

/// The HTTP listener's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// `tls_client_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    /// A client certificate is verified when one is sent.
    Request,
    /// Connections without a valid client certificate are refused.
    Require,
}

/// What `auth_exempt` is when not set: the health checks and replguard's own liveness stay open,
/// so HAProxy needs no credentials.
pub fn default_auth_exempt() -> Vec<String> {
    vec!["checks".to_string(), "/healthz".to_string()]
}

/// Why the HTTPS listener's certificate, key or client CA cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {why}", path.display())]
    File { path: PathBuf, why: String },
    #[error("{}: no certificate in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("tls_client_auth needs tls_client_ca_file")]
    NoClientCa,
    #[error("{0}")]
    Rustls(String),
}

/// Builds the TLS acceptor for `tls`: certificate chain and key from PEM files, client
/// certificates verified against `client_ca_file` when asked for.
pub fn acceptor(tls: &TlsSettings) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let in_file = |path: &Path| {
        let path = path.to_path_buf();
        move |e: &dyn std::fmt::Display| TlsError::File {
            path,
            why: e.to_string(),
        }
    };
    let certs = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| in_file(&tls.cert_file)(&e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: tls.cert_file.clone(),
        });
    }
    let key =
        PrivateKeyDer::from_pem_file(&tls.key_file).map_err(|e| in_file(&tls.key_file)(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match (tls.client_auth, &tls.client_ca_file) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => return Err(TlsError::NoClientCa),
        (auth, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| in_file(ca)(&e))? {
                let cert = cert.map_err(|e| in_file(ca)(&e))?;
                roots.add(cert).map_err(|e| in_file(ca)(&e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if auth == ClientAuth::Request {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsError::Rustls(e.to_string()))?,
            )
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| in_file(&tls.key_file)(&e))?;
    // HTTP/1.1 only, like the plain listener.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The highest bcrypt cost accepted: each verification at cost 14 takes about a second of CPU.
pub const MAX_COST: u32 = 14;

/// Checks a bcrypt hash's form (`$2b$10$…`) and cost, never showing it.
pub fn valid_hash(hash: &str) -> bool {
    hash.parse::<bcrypt::HashParts>()
        .is_ok_and(|p| p.get_cost() <= MAX_COST)
}

/// A file the `[web]` table names must exist as a regular file.
pub fn check_file(path: &Path) -> Result<(), super::FileError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(super::FileError::NotRegular {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(super::FileError::Unreadable {
            path: path.to_path_buf(),
            why: e.to_string(),
        }),
    }
}
