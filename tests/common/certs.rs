//! Throw-away TLS material made with the `openssl` command (Debian package `openssl`): a CA, a
//! server certificate for `db.example` and 127.0.0.1 (not `localhost`), and a client
//! certificate, all signed by the CA.

use std::path::Path;
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command (Debian package openssl) is needed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `ca.crt`, `server.{crt,key}`, `client.{crt,key}` and `client.pem` (certificate and
/// key, as HAProxy's `crt` wants) into `dir`; keys are mode 0600.
pub fn make_certs(dir: &Path) {
    let subj = |cn: &str| format!("/CN={cn}");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            &subj("replguard test CA"),
        ],
    );
    for (name, cn, ext) in [
        (
            "server",
            "db.example",
            "subjectAltName=DNS:db.example,IP:127.0.0.1\n",
        ),
        ("client", "replguard", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &subj(cn),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
    let pem = std::fs::read_to_string(dir.join("client.crt")).unwrap()
        + &std::fs::read_to_string(dir.join("client.key")).unwrap();
    std::fs::write(dir.join("client.pem"), pem).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for key in ["client.key", "server.key", "ca.key"] {
        std::fs::set_permissions(dir.join(key), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}
