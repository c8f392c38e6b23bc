//! Connection plumbing: deadlines on every operation, TLS options, and the classification of
//! mysql_async errors into [`ProbeError`] kinds.

use super::*;

pub(super) fn protocol(message: &str) -> ProbeError {
    ProbeError {
        kind: ProbeErrorKind::Protocol,
        errno: None,
        message: message.to_string(),
    }
}

/// Runs one MySQL operation with a deadline, turning every failure into a [`ProbeError`].
pub(super) async fn bounded<T>(
    timeout: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, mysql_async::Error>>,
) -> Result<T, ProbeError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(e)),
        Err(_) => Err(ProbeError {
            kind: ProbeErrorKind::Timeout,
            errno: None,
            message: format!(
                "{what} took longer than {}",
                crate::units::fmt_duration(timeout)
            ),
        }),
    }
}

/// mysql_async's TLS options for `tls` (`None`: no TLS), with the MySQL client's meanings.
pub(super) fn ssl_opts(tls: &Tls) -> Option<mysql_async::SslOpts> {
    use mysql_async::{ClientIdentity, SslOpts};
    let mut o = SslOpts::default();
    o = match tls.mode {
        SslMode::Disabled => return None,
        // Encrypted, not authenticated (as the MySQL client's REQUIRED).
        SslMode::Preferred | SslMode::Required => o
            .with_danger_accept_invalid_certs(true)
            .with_danger_skip_domain_validation(true),
        // The name is checked too, against the one the certificate holds (see tlsname).
        SslMode::VerifyCa => o,
        SslMode::VerifyIdentity => o,
    };
    if let Some(ca) = &tls.ca {
        o = o
            .with_root_certs(vec![ca.clone().into()])
            .with_disable_built_in_roots(true);
    }
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        o = o.with_client_identity(Some(ClientIdentity::new(
            cert.clone().into(),
            key.clone().into(),
        )));
    }
    Some(o)
}

pub(super) fn classify(e: mysql_async::Error) -> ProbeError {
    use mysql_async::{DriverError, Error, IoError};
    match e {
        Error::Server(s) => ProbeError {
            kind: match s.code {
                1045 => ProbeErrorKind::AccessDenied,
                1040 | 1203 => ProbeErrorKind::TooManyConnections,
                1227 | 1142 | 1044 => ProbeErrorKind::NotPermitted,
                // require_secure_transport (MariaDB answers 1045 with this text on some paths).
                3159 => ProbeErrorKind::InsecureTransport,
                _ => ProbeErrorKind::Server,
            },
            errno: Some(s.code),
            message: s.message,
        },
        Error::Driver(DriverError::NoClientSslFlagFromServer) => ProbeError {
            kind: ProbeErrorKind::NoTlsOffered,
            errno: None,
            message: "the server offers no TLS, and ssl_mode requires it".to_string(),
        },
        Error::Io(IoError::Tls(t)) => ProbeError {
            kind: ProbeErrorKind::Tls,
            errno: None,
            message: t.to_string(),
        },
        // rustls reports handshake failures (an unknown issuer, another host's certificate) as
        // I/O errors wrapping its own.
        Error::Io(IoError::Io(io))
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) =>
        {
            ProbeError {
                kind: ProbeErrorKind::Tls,
                errno: None,
                message: io
                    .get_ref()
                    .map(|inner| inner.to_string())
                    .unwrap_or_else(|| io.to_string()),
            }
        }
        Error::Io(IoError::Io(io)) => ProbeError {
            kind: match io.kind() {
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => {
                    ProbeErrorKind::Refused
                }
                std::io::ErrorKind::TimedOut => ProbeErrorKind::Timeout,
                _ => ProbeErrorKind::Network,
            },
            errno: None,
            message: io.to_string(),
        },
        Error::Driver(d) => ProbeError {
            kind: ProbeErrorKind::Network,
            errno: None,
            message: d.to_string(),
        },
        other => ProbeError {
            kind: ProbeErrorKind::Network,
            errno: None,
            message: other.to_string(),
        },
    }
}
