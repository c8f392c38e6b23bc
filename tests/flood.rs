//! Fair admission under connection floods (issue 22), with real sockets against the real
//! binary (`replguard serve`) watching a real MariaDB: one loopback address (127.0.0.1) keeps
//! thousands of silent, half-header and half-TLS connections open on the HTTP, HTTPS and agent
//! listeners, reconnecting as they are closed, while check clients on another address
//! (127.0.0.2, as HAProxy would be) and on the flooding one ask every 100 ms.

mod common;

use common::certs::make_certs;
use common::free_port;
use common::mariadb::{write_password_file, MariaDb, GUARD_PASSWORD, GUARD_USER};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A `replguard serve` process.
struct Served {
    child: Child,
    http: SocketAddr,
    agent: Option<SocketAddr>,
    stderr: std::path::PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Peak resident memory (`VmHWM`) in bytes.
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmHWM")
            * 1024
    }
}

/// Starts the binary on `db` (policy `primary`), with the agent unless `agent` is false, over
/// TLS with the certificates in `tls`, and `prefix` before the command (e.g. a descriptor
/// limit); waits until `/primary` answers 200.
async fn serve(
    dir: &Path,
    db: &MariaDb,
    agent: bool,
    tls: Option<&Path>,
    prefix: &str,
    tls_client: Option<&tokio_rustls::TlsConnector>,
) -> Served {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let agent_addr: Option<SocketAddr> =
        agent.then(|| format!("127.0.0.1:{}", free_port()).parse().unwrap());
    let pw = write_password_file(dir, "db.pw", GUARD_PASSWORD);
    let web = match tls {
        Some(certs) => format!(
            "[web]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            certs.join("server.crt").display(),
            certs.join("server.key").display()
        ),
        None => String::new(),
    };
    let cfg = dir.join("replguard.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"{http}\"\n{}interval = \"300ms\"\ntimeout = \"250ms\"\n\
             max_sample_age = \"2s\"\n{web}\n[[instance]]\nname = \"db\"\nport = {}\n\
             user = \"{GUARD_USER}\"\npassword_file = \"{}\"\npolicy = \"primary\"\n",
            agent_addr
                .map(|a| format!("agent_listen = \"{a}\"\n"))
                .unwrap_or_default(),
            db.port(),
            pw.display()
        ),
    )
    .unwrap();
    let stderr = dir.join("stderr.log");
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("{prefix} exec \"$0\" serve --config \"$1\""))
        .arg(env!("CARGO_BIN_EXE_replguard"))
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let served = Served {
        child,
        http,
        agent: agent_addr,
        stderr,
    };
    let start = Instant::now();
    while check(&served, "127.0.0.2", Kind::Http(tls_client.cloned()))
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "serve never answered: {}",
            std::fs::read_to_string(&served.stderr).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    served
}

#[derive(Clone)]
enum Kind {
    /// `GET /primary` over HTTP, or HTTPS with this connector.
    Http(Option<tokio_rustls::TlsConnector>),
    Agent,
}

async fn connect_from(ip: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(ip.parse::<IpAddr>().unwrap(), 0))?;
    socket.connect(to).await
}

/// One check from `ip`, answered (200 / an agent line) within 1 s.
async fn check(s: &Served, ip: &str, kind: Kind) -> Result<(), String> {
    let attempt = async {
        let mut got = Vec::new();
        match kind {
            Kind::Agent => {
                // Any whole reply counts (the agent judges by the `replica` policy, which a
                // primary fails: `down #...`).
                let mut c = connect_from(ip, s.agent.unwrap()).await?;
                c.read_to_end(&mut got).await?;
                Ok::<_, std::io::Error>(got.ends_with(b"\n"))
            }
            Kind::Http(tls) => {
                let c = connect_from(ip, s.http).await?;
                let req = b"GET /primary HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n";
                match tls {
                    None => {
                        let mut c = c;
                        c.write_all(req).await?;
                        c.read_to_end(&mut got).await?;
                    }
                    Some(connector) => {
                        let name = rustls::pki_types::ServerName::try_from("db.example").unwrap();
                        let mut c = connector.connect(name, c).await?;
                        c.write_all(req).await?;
                        // A close without close_notify still delivered the answer.
                        let _ = c.read_to_end(&mut got).await;
                    }
                }
                Ok(got.starts_with(b"HTTP/1.1 200"))
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(1), attempt).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err("not a passing answer".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 1s".into()),
    }
}

/// `n` connections from `ip` to `to` that send `payload` and then nothing, reopened as soon as
/// the guard closes them, until `stop`.
fn flood(
    ip: &'static str,
    to: SocketAddr,
    n: usize,
    payload: &'static [u8],
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let (stop, opened) = (stop.clone(), opened.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut c) = connect_from(ip, to).await else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    opened.fetch_add(1, Ordering::Relaxed);
                    if !payload.is_empty() && c.write_all(payload).await.is_err() {
                        continue;
                    }
                    let mut sink = [0u8; 512];
                    // Held until the guard closes it (or the flood ends).
                    loop {
                        tokio::select! {
                            r = c.read(&mut sink) => if !matches!(r, Ok(n) if n > 0) { break },
                            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                                if stop.load(Ordering::Relaxed) { return; }
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

/// Asks every 100 ms until `stop`; returns (answered, asked) and the first failures.
async fn checker(
    s: Arc<Served>,
    ip: &'static str,
    kind: Kind,
    stop: Arc<AtomicBool>,
) -> (u64, u64, Vec<String>) {
    let (mut ok, mut asked, mut why) = (0, 0, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        let next = Instant::now() + Duration::from_millis(100);
        asked += 1;
        match check(&s, ip, kind.clone()).await {
            Ok(()) => ok += 1,
            Err(e) if why.len() < 5 => why.push(e),
            Err(_) => {}
        }
        tokio::time::sleep_until(next.into()).await;
    }
    (ok, asked, why)
}

fn tls_connector(certs: &Path) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(certs.join("ca.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// The first bytes of a TLS ClientHello (record header, handshake header), then nothing.
const HALF_CLIENT_HELLO: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";

fn flood_seconds() -> u64 {
    std::env::var("FLOOD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_are_answered_through_a_flood_of_silent_connections() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let db = MariaDb::start("flood", 1).await;
    let (plain_dir, tls_dir, certs) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    make_certs(certs.path());
    let connector = tls_connector(certs.path());
    let plain = Arc::new(serve(plain_dir.path(), &db, true, None, "", None).await);
    let https = Arc::new(
        serve(
            tls_dir.path(),
            &db,
            false,
            Some(certs.path()),
            "",
            Some(&connector),
        )
        .await,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    // 2000 per listener from 127.0.0.1: silent, half a request head, half a ClientHello.
    let mut flooders = Vec::new();
    flooders.extend(flood(
        "127.0.0.1",
        plain.http,
        1000,
        b"",
        stop.clone(),
        opened.clone(),
    ));
    flooders.extend(flood(
        "127.0.0.1",
        plain.http,
        1000,
        b"GET /primary HTTP/1.1\r\nHost",
        stop.clone(),
        opened.clone(),
    ));
    flooders.extend(flood(
        "127.0.0.1",
        plain.agent.unwrap(),
        2000,
        b"",
        stop.clone(),
        opened.clone(),
    ));
    flooders.extend(flood(
        "127.0.0.1",
        https.http,
        1000,
        b"",
        stop.clone(),
        opened.clone(),
    ));
    flooders.extend(flood(
        "127.0.0.1",
        https.http,
        1000,
        HALF_CLIENT_HELLO,
        stop.clone(),
        opened.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The checkers run on their own thread and runtime, as HAProxy is its own process: the
    // flood's tasks in this process must not starve them of turns.
    let check_stop = Arc::new(AtomicBool::new(false));
    let checkers = {
        let (plain, https, connector, check_stop) = (
            plain.clone(),
            https.clone(),
            connector.clone(),
            check_stop.clone(),
        );
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for (name, served, kind) in [
                    ("http", plain.clone(), Kind::Http(None)),
                    ("agent", plain.clone(), Kind::Agent),
                    ("https", https.clone(), Kind::Http(Some(connector.clone()))),
                ] {
                    for ip in ["127.0.0.2", "127.0.0.1"] {
                        let task = tokio::spawn(checker(
                            served.clone(),
                            ip,
                            kind.clone(),
                            check_stop.clone(),
                        ));
                        tasks.push((name, ip, task));
                    }
                }
                let mut results = Vec::new();
                for (name, ip, task) in tasks {
                    let (ok, asked, why) = task.await.unwrap();
                    results.push((name, ip, ok, asked, why));
                }
                results
            })
        })
    };
    tokio::time::sleep(Duration::from_secs(flood_seconds())).await;
    check_stop.store(true, Ordering::Relaxed);
    let results = checkers.join().unwrap();
    for (name, ip, ok, asked, why) in &results {
        eprintln!("{name} from {ip}: {ok} of {asked} answered within 1s; failures e.g. {why:?}");
    }
    let flood_opened = opened.load(Ordering::Relaxed);
    let metrics = check_metrics(&plain).await;
    let https_metrics = check_metrics_tls(&https, &connector).await;
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        let _ = f.await;
    }
    let (rss_plain, rss_https) = (plain.peak_rss(), https.peak_rss());
    eprintln!(
        "flood: {flood_opened} connections opened; peak RSS {} MB (HTTP + agent), {} MB (HTTPS)",
        rss_plain / 1_000_000,
        rss_https / 1_000_000
    );
    for (name, ip, ok, asked, why) in &results {
        // 99.9 % from the other address, 99 % from the flooding one.
        let need = if *ip == "127.0.0.2" { 0.999 } else { 0.99 };
        assert!(
            *ok as f64 >= need * *asked as f64,
            "{name} from {ip}: {ok} of {asked} answered; e.g. {why:?}"
        );
    }
    assert!(
        rss_plain < 64 << 20,
        "HTTP + agent guard peaked at {rss_plain} bytes"
    );
    assert!(
        rss_https < 64 << 20,
        "HTTPS guard peaked at {rss_https} bytes"
    );
    // Displacements are counted (the single-instance agent answers at accept: no place held).
    let line = "replguard_displaced_total{listener=\"http\",reason=\"per_client\"}";
    assert!(metrics.contains(line), "no {line} in:\n{metrics}");
    assert!(
        https_metrics.contains(line),
        "no {line} in:\n{https_metrics}"
    );
}

async fn check_metrics_tls(s: &Served, connector: &tokio_rustls::TlsConnector) -> String {
    let c = connect_from("127.0.0.2", s.http).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("db.example").unwrap();
    let mut c = connector.connect(name, c).await.unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got).await;
    String::from_utf8_lossy(&got).into_owned()
}

async fn check_metrics(s: &Served) -> String {
    let mut c = connect_from("127.0.0.2", s.http).await.unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).await.unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

/// With 256 descriptors and no agent, the HTTP cap stays useful (the agent's reserve is not
/// taken for an agent that does not exist), and a fresh check is answered while 400
/// connections from sixteen other addresses hold the listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_descriptor_limit_without_agent_still_serves() {
    let db = MariaDb::start("fd256", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &db, false, None, "ulimit -n 256;", None).await;
    let log = std::fs::read_to_string(&s.stderr).unwrap();
    let lowered: usize = log
        .split("lowered_to=")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no lowered_to in the log:\n{log}"));
    assert!(lowered >= 100, "HTTP cap lowered to {lowered}");
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    const ADDRESSES: [&str; 16] = [
        "127.0.0.10",
        "127.0.0.11",
        "127.0.0.12",
        "127.0.0.13",
        "127.0.0.14",
        "127.0.0.15",
        "127.0.0.16",
        "127.0.0.17",
        "127.0.0.18",
        "127.0.0.19",
        "127.0.0.20",
        "127.0.0.21",
        "127.0.0.22",
        "127.0.0.23",
        "127.0.0.24",
        "127.0.0.25",
    ];
    let mut flooders = Vec::new();
    for ip in ADDRESSES {
        flooders.extend(flood(ip, s.http, 25, b"", stop.clone(), opened.clone()));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = Arc::new(s);
    for _ in 0..20 {
        check(&s, "127.0.0.2", Kind::Http(None))
            .await
            .expect("a fresh check is answered during the flood");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        let _ = f.await;
    }
    assert!(opened.load(Ordering::Relaxed) >= 400);
}

/// Too few descriptors to serve: the guard refuses to start and names LimitNOFILE.
#[test]
fn too_few_descriptors_is_an_error_naming_limitnofile() {
    let dir = tempfile::tempdir().unwrap();
    let pw = write_password_file(dir.path(), "db.pw", GUARD_PASSWORD);
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{}\"\nagent_listen = \"127.0.0.1:{}\"\n[[instance]]\n\
             name = \"db\"\nport = {}\nuser = \"u\"\npassword_file = \"{}\"\n",
            free_port(),
            free_port(),
            free_port(),
            pw.display()
        ),
    )
    .unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 256; exec \"$0\" serve --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_replguard"))
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("LimitNOFILE"), "{err}");
}
