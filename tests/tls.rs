//! TLS to MySQL on a real MariaDB that has its own CA and certificates (made here with the
//! `openssl` command) and `require_secure_transport = ON`: VERIFY_CA passes whatever name the
//! certificate holds and fails for another CA, DISABLED is refused (1045 with a hint on
//! MariaDB), VERIFY_IDENTITY against a certificate for another name fails naming TLS,
//! a user that REQUIREs X509 is served with a client certificate, and the MySQL client's
//! option-file names (`ssl-mode`, `ssl-ca`) are read.

mod common;

use common::certs::make_certs;
use common::mariadb::{write_password_file, MariaDb, GUARD_PASSWORD};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `replguard check --policy primary` against `db` at 127.0.0.1 with `tls` keys in the
/// instance block; exit code and output.
fn check(dir: &Path, db: &MariaDb, tls: &str) -> (Option<i32>, String) {
    check_as(dir, "127.0.0.1", "replguard", db, tls)
}

/// The same, connecting to `host` as `user` (whose password is the guard user's).
fn check_as(dir: &Path, host: &str, user: &str, db: &MariaDb, tls: &str) -> (Option<i32>, String) {
    let pw = write_password_file(dir, "pw", GUARD_PASSWORD);
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[instance]]\nname = \"db\"\nhost = \"{host}\"\nport = {}\nuser = \"{user}\"\n\
             password_file = \"{}\"\n{tls}\n",
            db.port(),
            pw.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_replguard"))
        .args([
            "check",
            "--policy",
            "primary",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_server_that_requires_it() {
    let certs = tempfile::tempdir().unwrap();
    let c = certs.path();
    make_certs(c);
    let file = |n: &str| -> PathBuf { c.join(n) };
    let db = MariaDb::start_with(
        "tls",
        1,
        &[
            format!("--ssl-ca={}", file("ca.crt").display()),
            format!("--ssl-cert={}", file("server.crt").display()),
            format!("--ssl-key={}", file("server.key").display()),
        ],
    )
    .await;
    // A user that must present a client certificate (made while plain connections still work).
    db.exec(&format!(
        "CREATE USER 'x509'@'%' IDENTIFIED BY '{GUARD_PASSWORD}' REQUIRE X509"
    ))
    .await;
    db.exec("GRANT SLAVE MONITOR ON *.* TO 'x509'@'%'").await;
    db.exec("SET GLOBAL require_secure_transport = ON").await;
    let ca = file("ca.crt").display().to_string();

    let (code, out) = check(
        c,
        &db,
        &format!("ssl_mode = \"VERIFY_CA\"\nssl_ca = \"{ca}\""),
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ok reachable MariaDB"), "{out}");

    let (code, out) = check(c, &db, "ssl_mode = \"DISABLED\"");
    assert_eq!(code, Some(1), "{out}");
    // MySQL answers 3159 ("server requires secure transport"); MariaDB answers 1045 as for a
    // wrong password, so the guard says what else it may be.
    assert!(
        out.contains("FAIL reachable check user refused: 1045")
            && out.contains("require_secure_transport refuses plain connections"),
        "{out}"
    );

    let verify_identity = format!("ssl_mode = \"VERIFY_IDENTITY\"\nssl_ca = \"{ca}\"");
    let (code, out) = check(c, &db, &verify_identity);
    assert_eq!(code, Some(0), "{out}");
    // The certificate is not for `localhost`.
    let (code, out) = check_as(c, "localhost", "replguard", &db, &verify_identity);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL reachable TLS: "), "{out}");
    assert!(out.to_lowercase().contains("certificate"), "{out}");

    // VERIFY_CA does not care which name the certificate holds, only who signed it.
    let (code, out) = check_as(
        c,
        "localhost",
        "replguard",
        &db,
        &format!("ssl_mode = \"VERIFY_CA\"\nssl_ca = \"{ca}\""),
    );
    assert_eq!(code, Some(0), "{out}");
    // A CA that did not sign it: refused, naming TLS.
    let (code, out) = check(
        c,
        &db,
        &format!(
            "ssl_mode = \"VERIFY_CA\"\nssl_ca = \"{}\"",
            file("client.crt").display()
        ),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL reachable TLS: "), "{out}");

    // REQUIRED encrypts without verifying: passes against any certificate.
    let (code, out) = check(c, &db, "ssl_mode = \"REQUIRED\"");
    assert_eq!(code, Some(0), "{out}");

    // The user that must present a client certificate: refused without, served with one.
    let verify_ca = format!("ssl_mode = \"VERIFY_CA\"\nssl_ca = \"{ca}\"");
    let (code, out) = check_as(c, "127.0.0.1", "x509", &db, &verify_ca);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL reachable check user refused: 1045"),
        "{out}"
    );
    let (code, out) = check_as(
        c,
        "127.0.0.1",
        "x509",
        &db,
        &format!(
            "ssl_mode = \"VERIFY_CA\"\nssl_ca = \"{ca}\"\nssl_cert = \"{}\"\nssl_key = \"{}\"",
            file("client.crt").display(),
            file("client.key").display()
        ),
    );
    assert_eq!(code, Some(0), "{out}");

    // The MySQL client's option-file names.
    let cnf = c.join("client.cnf");
    std::fs::write(
        &cnf,
        format!(
            "[client]\nssl-mode = VERIFY_CA\nssl-ca = {ca}\nssl-cert = {}\nssl-key = {}\n",
            file("client.crt").display(),
            file("client.key").display()
        ),
    )
    .unwrap();
    let (code, out) = check_as(
        c,
        "127.0.0.1",
        "x509",
        &db,
        &format!("defaults_file = \"{}\"", cnf.display()),
    );
    assert_eq!(code, Some(0), "{out}");
}
