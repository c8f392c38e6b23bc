//! Protecting the listeners (`[web]`), end to end: HTTPS with a required client certificate
//! (curl, and a real HAProxy checking with `check-ssl verify required ca-file … crt …`), basic
//! auth with bcrypt hashes and exempt health checks, and `allow_from` for HTTP (403) and the
//! agent (closed at once), each refusal counted in `/metrics`.

mod common;

use common::certs::make_certs;
use common::guard::{instance_block, Guard, FAST};
use common::haproxy::{free_port, Haproxy};
use common::mariadb::MariaDb;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// `curl -s -o /dev/null -w %{http_code}` with `args`; "000" when no HTTP answer came.
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .args(args)
        .output()
        .expect("the curl command (Debian package curl) is needed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_client_certificates_for_curl_and_haproxy() {
    let certs = tempfile::tempdir().unwrap();
    let c = certs.path();
    make_certs(c);
    let db = MariaDb::start("webtls", 1).await;
    let globals = format!(
        "{FAST}[web]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n\
         tls_client_ca_file = \"{}\"\ntls_client_auth = \"require\"\n",
        path(c, "server.crt"),
        path(c, "server.key"),
        path(c, "ca.crt")
    );
    // [web] must come after the top-level keys and before the instance blocks.
    let g = Guard::start(&globals, |dir| {
        instance_block(dir, "db", &db, "primary", "")
    })
    .await;
    let url = format!("https://127.0.0.1:{}/mysqlchk/", g.addr.port());
    let ca = path(c, "ca.crt");
    // A client certificate is required; with one, the check answers.
    assert_eq!(curl(&["--cacert", &ca, &url]), "000");
    let with_cert = [
        "--cacert",
        ca.as_str(),
        "--cert",
        &path(c, "client.crt"),
        "--key",
        &path(c, "client.key"),
    ];
    let mut ok = String::new();
    for _ in 0..50 {
        ok = curl(&[&with_cert[..], &[url.as_str()]].concat());
        if ok == "200" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ok, "200");
    // Plain HTTP is not spoken on a TLS listener.
    assert_eq!(
        curl(&[&format!("http://127.0.0.1:{}/healthz", g.addr.port())]),
        "000"
    );

    // HAProxy checks over TLS, verifying the guard and presenting its certificate; a server
    // checked without a client certificate stays DOWN.
    let front = free_port();
    let h = Haproxy::start(&format!(
        "listen mysql\n    bind 127.0.0.1:{front}\n    option httpchk GET /mysqlchk/\n    \
         http-check expect status 200\n    default-server inter 200 rise 1 fall 1\n    \
         server withcert 127.0.0.1:{p} check port {gp} check-ssl verify required ca-file {ca} crt {pem}\n    \
         server nocert 127.0.0.1:{p} check port {gp} check-ssl verify required ca-file {ca}\n",
        p = db.port(),
        gp = g.addr.port(),
        pem = path(c, "client.pem"),
    ))
    .await;
    let limit = Duration::from_secs(20);
    h.wait_status("mysql", "withcert", "UP", limit).await;
    h.wait_status("mysql", "nocert", "DOWN", limit).await;
    let metrics = curl_body(
        &[
            &with_cert[..],
            &[format!("https://127.0.0.1:{}/metrics", g.addr.port()).as_str()],
        ]
        .concat(),
    );
    assert!(
        metrics.contains("replguard_refused_total{listener=\"http\",reason=\"tls\"}"),
        "{metrics}"
    );
    g.stop().await;
}

/// `curl -s` with `args`: the body.
fn curl_body(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_keeps_checks_open_and_allow_from_refuses_others() {
    let db = MariaDb::start("webauth", 1).await;
    // The hash of "s3cret" (cost 4: this is a test).
    let hash = bcrypt_hash("s3cret");
    let globals = format!("{FAST}[web]\nbasic_auth_users = {{ monitor = \"{hash}\" }}\n");
    let g = Guard::start(&globals, |dir| {
        instance_block(dir, "db", &db, "primary", "")
    })
    .await;
    let base = format!("http://127.0.0.1:{}", g.addr.port());
    g.wait_for("/primary", Duration::from_secs(20), |r| r.status == 200)
        .await;
    // Checks and /healthz stay open; the rest wants credentials.
    assert_eq!(curl(&[&format!("{base}/mysqlchk/")]), "200");
    assert_eq!(curl(&[&format!("{base}/healthz")]), "200");
    for p in ["/status", "/metrics", "/events", "/ui"] {
        assert_eq!(curl(&[&format!("{base}{p}")]), "401", "{p}");
        assert_eq!(
            curl(&["-u", "monitor:wrong", &format!("{base}{p}")]),
            "401",
            "{p}"
        );
        assert_eq!(
            curl(&["-u", "monitor:s3cret", &format!("{base}{p}")]),
            "200",
            "{p}"
        );
    }
    let head = Command::new("curl")
        .args([
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            &format!("{base}/status"),
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&head.stdout)
            .to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"replguard\""),
        "{}",
        String::from_utf8_lossy(&head.stdout)
    );
    g.stop().await;

    // An allowlist that leaves loopback out: HTTP answers 403, the agent closes at once.
    let globals = format!("{FAST}[web]\nallow_from = [\"10.0.0.0/8\"]\n");
    let g = Guard::start(&globals, |dir| {
        instance_block(dir, "db", &db, "primary", "")
    })
    .await;
    assert_eq!(
        curl(&[&format!("http://127.0.0.1:{}/mysqlchk/", g.addr.port())]),
        "403"
    );
    let mut agent = tokio::net::TcpStream::connect(g.agent).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), agent.read_to_end(&mut got))
        .await
        .expect("closed at once")
        .ok();
    assert!(got.is_empty(), "{got:?}");
    g.stop().await;
}

fn bcrypt_hash(password: &str) -> String {
    // The form `htpasswd -nBC 10` makes, at the lowest cost: this is a test.
    bcrypt::hash(password, 4).unwrap()
}

/// SIGHUP re-reads the HTTPS certificates: a renewed certificate (here from another CA) is
/// served to new connections without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_https_certificates() {
    let (old, new, run) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    make_certs(old.path());
    make_certs(new.path());
    let install = |from: &Path| {
        for f in ["server.crt", "server.key"] {
            std::fs::copy(from.join(f), run.path().join(f)).unwrap();
        }
    };
    install(old.path());
    let pw = common::mariadb::write_password_file(run.path(), "pw", "x");
    let port = free_port();
    let cfg = run.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\n[web]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n\
             [[instance]]\nname = \"db\"\nport = {}\nuser = \"u\"\npassword_file = \"{}\"\n",
            path(run.path(), "server.crt"),
            path(run.path(), "server.key"),
            free_port(),
            pw.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_replguard"))
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/healthz");
    let answers_with = |ca: &Path| curl(&["--cacert", &path(ca, "ca.crt"), &url]) == "200";
    let until = |ca: &Path| {
        (0..100).any(|_| {
            let ok = answers_with(ca);
            if !ok {
                std::thread::sleep(Duration::from_millis(100));
            }
            ok
        })
    };
    assert!(until(old.path()), "never served the first certificate");
    install(new.path());
    assert!(
        !answers_with(new.path()),
        "the new certificate before SIGHUP"
    );
    Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(
        until(new.path()),
        "SIGHUP did not bring the new certificate"
    );
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP ended serve");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait();
}
