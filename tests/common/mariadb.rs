//! Test harness that runs real, throw-away `mariadbd` instances.
//!
//! * A template data directory (system tables + test users) is built once per
//!   machine and MariaDB version under `std::env::temp_dir()`, e.g.
//!   `/tmp/replguard-template-10.11.19-h1`. It is built in a sibling temporary
//!   directory and atomically renamed into place, so concurrent test
//!   processes never observe a half-built template.
//! * [`MariaDb::start`] (async) copies the template into a fresh temp dir,
//!   picks a free loopback port and starts `mariadbd` with binary logging and
//!   GTIDs enabled, then waits until the `admin` user can connect.
//! * Dropping a [`MariaDb`] always SIGKILLs the server (after SIGCONT if it was
//!   paused) and removes its data directory, also when a test panics.
//!
//! Users present in every instance:
//!
//! | user                                  | password  | privileges                          |
//! |---------------------------------------|-----------|-------------------------------------|
//! | `admin`@`%`, `admin`@`localhost`      | `admin`   | ALL PRIVILEGES WITH GRANT OPTION    |
//! | `repl`@`%`                            | `repl`    | REPLICATION SLAVE                   |
//! | `replguard`@`%`, `replguard`@`localhost` | `guardpw` | SLAVE MONITOR only (least privilege) |
//!
//! Sync vs async: `start`, `restart`, `stop`, `exec`, `query*`,
//! `replicate_from` and `wait_caught_up` are `async` (they wait on the server);
//! `kill`, `pause` and `resume` are sync (signals are instant).
//!
//! If `mariadbd` is not installed the harness panics loudly; it never skips.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, Row, Value};

pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin";
pub const REPL_USER: &str = "repl";
pub const REPL_PASSWORD: &str = "repl";
pub const GUARD_USER: &str = "replguard";
pub const GUARD_PASSWORD: &str = "guardpw";

/// Bump when the template contents (users, install flags) change so that a
/// stale template from an older harness is not reused.
const TEMPLATE_LAYOUT: &str = "h1";
/// Must be identical for template creation and every instance start.
const INNODB_LOG_FILE_SIZE: &str = "--innodb-log-file-size=8M";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);
const TEMPLATE_MARKER: &str = ".replguard-template-ok";

const USERS_SQL: &str = "\
FLUSH PRIVILEGES;
CREATE USER 'admin'@'%' IDENTIFIED BY 'admin';
GRANT ALL PRIVILEGES ON *.* TO 'admin'@'%' WITH GRANT OPTION;
CREATE USER 'admin'@'localhost' IDENTIFIED BY 'admin';
GRANT ALL PRIVILEGES ON *.* TO 'admin'@'localhost' WITH GRANT OPTION;
CREATE USER 'repl'@'%' IDENTIFIED BY 'repl';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
CREATE USER 'replguard'@'%' IDENTIFIED BY 'guardpw';
GRANT SLAVE MONITOR ON *.* TO 'replguard'@'%';
CREATE USER 'replguard'@'localhost' IDENTIFIED BY 'guardpw';
GRANT SLAVE MONITOR ON *.* TO 'replguard'@'localhost';
";

// ---------------------------------------------------------------------------
// binaries / environment
// ---------------------------------------------------------------------------

fn find_binary(name: &str, preferred: &[&str]) -> Option<PathBuf> {
    for p in preferred {
        let p = Path::new(p);
        if p.is_file() {
            return Some(p.to_path_buf());
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Path of `mariadbd`; panics loudly if it is not installed.
pub fn mariadbd_path() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        find_binary("mariadbd", &["/usr/sbin/mariadbd"]).unwrap_or_else(|| {
            panic!(
                "\n\n*** mariadbd not found (looked at /usr/sbin/mariadbd and $PATH): \
                 apt-get install mariadb-server ***\n\n"
            )
        })
    })
    .clone()
}

fn install_db_path() -> PathBuf {
    find_binary(
        "mariadb-install-db",
        &["/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db"],
    )
    .unwrap_or_else(|| {
        panic!("\n\n*** mariadb-install-db not found: apt-get install mariadb-server ***\n\n")
    })
}

/// `10.11.19` from `mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for ...`.
pub fn mariadbd_version() -> String {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let out = Command::new(mariadbd_path())
            .arg("--version")
            .output()
            .expect("running mariadbd --version");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut words = text.split_whitespace();
        words
            .find(|w| *w == "Ver")
            .and_then(|_| words.next())
            .map(|v| v.split('-').next().unwrap_or(v).to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| panic!("cannot parse mariadbd --version output: {text:?}"))
    })
    .clone()
}

/// A shell that SIGKILLs `pid` (after SIGCONT: it may be paused) once this test process is
/// gone: a test that dies never leaves a server behind.
pub fn watchdog(pid: u32) -> Option<Child> {
    let script = format!(
        "while kill -0 {tp} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         kill -CONT {pid} 2>/dev/null; kill -KILL {pid} 2>/dev/null",
        tp = std::process::id(),
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

pub fn running_as_root() -> bool {
    static R: OnceLock<bool> = OnceLock::new();
    *R.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
    })
}

fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(s) => {
            let v: Vec<&str> = s.lines().collect();
            v[v.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

use super::free_port;

pub fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dst)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let to = dst.join(entry.file_name());
        if ty.is_dir() {
            copy_dir(&entry.path(), &to)?;
        } else if ty.is_file() {
            fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// template
// ---------------------------------------------------------------------------

/// Returns the template data directory, building it if needed (once per
/// machine + MariaDB version; safe against concurrent test processes).
pub fn template_dir() -> PathBuf {
    static T: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut guard = T.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = guard.as_ref() {
        return p.clone();
    }
    let final_dir = std::env::temp_dir().join(format!(
        "replguard-template-{}-{TEMPLATE_LAYOUT}",
        mariadbd_version()
    ));
    if !final_dir.join(TEMPLATE_MARKER).is_file() {
        let started = Instant::now();
        build_template(&final_dir);
        eprintln!(
            "[mariadb harness] template {} ready in {:?}",
            final_dir.display(),
            started.elapsed()
        );
    }
    assert!(
        final_dir.join(TEMPLATE_MARKER).is_file(),
        "template {} exists but is incomplete; delete it and retry",
        final_dir.display()
    );
    *guard = Some(final_dir.clone());
    final_dir
}

fn build_template(final_dir: &Path) {
    let parent = final_dir.parent().expect("template has a parent dir");
    let work = tempfile::Builder::new()
        .prefix(".replguard-template-build-")
        .tempdir_in(parent)
        .expect("creating template build dir");
    let data = work.path().join("data");
    let log = work.path().join("install.log");

    let mut install = Command::new(install_db_path());
    install
        .arg("--no-defaults")
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .arg(format!("--datadir={}", data.display()))
        // private tmpdir: concurrent installs sharing /tmp collide on
        // temporary-table files ("Unknown table 'mysql.tmp_user_sys'")
        .arg(format!("--tmpdir={}", work.path().display()))
        .arg(INNODB_LOG_FILE_SIZE);
    if running_as_root() {
        install.arg("--user=root");
    }
    let out = install
        .stdin(Stdio::null())
        .output()
        .expect("running mariadb-install-db");
    fs::write(&log, [&out.stdout[..], &out.stderr[..]].concat()).ok();
    assert!(
        out.status.success(),
        "mariadb-install-db failed ({}):\n{}",
        out.status,
        tail(&log, 40)
    );

    // Create the test users with a bootstrap run (no networking, reads SQL
    // from stdin). FLUSH PRIVILEGES first enables account-management
    // statements in bootstrap mode.
    let boot_log = work.path().join("bootstrap.log");
    let mut boot = Command::new(mariadbd_path());
    boot.arg("--no-defaults")
        .arg("--bootstrap")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--log-error={}", boot_log.display()))
        .arg(format!("--tmpdir={}", work.path().display()))
        .arg(INNODB_LOG_FILE_SIZE)
        .arg("--innodb-buffer-pool-size=16M");
    if running_as_root() {
        boot.arg("--user=root");
    }
    let mut child = boot
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning mariadbd --bootstrap");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(USERS_SQL.as_bytes())
        .expect("writing bootstrap SQL");
    let status = child.wait().expect("waiting for mariadbd --bootstrap");
    assert!(
        status.success(),
        "mariadbd --bootstrap (creating users) failed ({status}):\n{}",
        tail(&boot_log, 40)
    );
    fs::write(data.join(TEMPLATE_MARKER), mariadbd_version()).expect("writing marker");

    // Atomic publish. If another process won the race the rename fails
    // (target exists and is non-empty): just use the winner's template.
    match fs::rename(&data, final_dir) {
        Ok(()) => {}
        Err(e) if final_dir.join(TEMPLATE_MARKER).is_file() => {
            eprintln!("[mariadb harness] lost template race ({e}); using existing template");
        }
        Err(e) => panic!("cannot move template into {}: {e}", final_dir.display()),
    }
    // `work` (and whatever remains in it) is removed on drop.
}

// ---------------------------------------------------------------------------
// password file
// ---------------------------------------------------------------------------

/// Writes `password` (no trailing newline) to `dir/name` with mode 0600.
pub fn write_password_file(dir: &Path, name: &str, password: &str) -> PathBuf {
    let path = dir.join(name);
    let _ = fs::remove_file(&path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap_or_else(|e| panic!("creating password file {}: {e}", path.display()));
    f.write_all(password.as_bytes())
        .expect("writing password file");
    path
}

// ---------------------------------------------------------------------------
// instance
// ---------------------------------------------------------------------------

/// A running throw-away MariaDB server. See the module docs.
pub struct MariaDb {
    name: String,
    server_id: u32,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// `sh` loop that SIGKILLs mariadbd if the test process disappears
    /// without running destructors (e.g. `cargo test` killed by a timeout).
    watchdog: Option<Child>,
    paused: bool,
    /// More `mariadbd` options (e.g. TLS certificates), given at every start.
    extra_args: Vec<String>,
}

enum SpawnError {
    PortInUse,
}

fn value_to_string(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

impl MariaDb {
    /// Starts a fresh instance from the template (builds the template on
    /// first use). `name` is only used in diagnostics and the temp dir name.
    pub async fn start(name: &str, server_id: u32) -> MariaDb {
        MariaDb::start_with(name, server_id, &[]).await
    }

    /// Like [`start`](Self::start), with more `mariadbd` options.
    pub async fn start_with(name: &str, server_id: u32, extra_args: &[String]) -> MariaDb {
        let template = template_dir();
        let short: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(12)
            .collect();
        let dir = tempfile::Builder::new()
            .prefix(&format!("rg-{short}-"))
            .tempdir()
            .expect("creating instance temp dir");
        copy_dir(&template, dir.path()).expect("copying template datadir");
        let socket = dir.path().join("s.sock");
        assert!(
            socket.as_os_str().len() < 100,
            "socket path too long for a unix socket: {}",
            socket.display()
        );
        let mut db = MariaDb {
            name: name.to_string(),
            server_id,
            port: 0,
            dir,
            child: None,
            watchdog: None,
            paused: false,
            extra_args: extra_args.to_vec(),
        };
        for attempt in 1..=10 {
            db.port = free_port();
            match db.spawn_and_wait().await {
                Ok(()) => return db,
                Err(SpawnError::PortInUse) => {
                    eprintln!(
                        "[mariadb harness] {}: port {} taken (attempt {attempt}), retrying",
                        db.name, db.port
                    );
                    // the failed log would confuse later diagnostics
                    let _ = fs::rename(db.error_log(), db.dir.path().join("error.log.bindfail"));
                }
            }
        }
        panic!("{}: could not find a free port after 10 attempts", db.name);
    }

    /// Starts the server again on the same datadir and port (after
    /// [`stop`](Self::stop) or [`kill`](Self::kill)) and waits until ready.
    pub async fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "{}: restart() while the server is still running; stop() or kill() it first",
            self.name
        );
        if self.spawn_and_wait().await.is_err() {
            panic!(
                "{}: cannot restart, port {} is in use:\n{}",
                self.name,
                self.port,
                tail(&self.error_log(), 30)
            );
        }
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let mut cmd = Command::new(mariadbd_path());
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", d.display()))
            .arg(format!("--socket={}", self.socket_path().display()))
            .arg(format!("--tmpdir={}", d.display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--server-id={}", self.server_id))
            .arg("--log-bin=mysql-bin")
            .arg("--log-slave-updates")
            .arg("--binlog-format=ROW")
            .arg("--gtid-domain-id=0")
            .arg("--skip-name-resolve")
            .arg(format!("--pid-file={}", d.join("mariadbd.pid").display()))
            .arg(format!("--log-error={}", self.error_log().display()))
            .arg("--innodb-buffer-pool-size=16M")
            .arg(INNODB_LOG_FILE_SIZE)
            // survives SIGKILL of the process (only an OS crash loses data)
            .arg("--innodb-flush-log-at-trx-commit=2")
            .arg("--innodb-doublewrite=0")
            .arg("--max-connections=100")
            .arg("--performance-schema=OFF")
            .arg("--skip-slave-start")
            .args(&self.extra_args);
        if running_as_root() {
            cmd.arg("--user=root");
        }
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("stderr.log"))
            .expect("opening stderr.log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: spawning mariadbd: {e}", self.name));

        self.watchdog = watchdog(child.id());
        self.child = Some(child);
        self.paused = false;
    }

    async fn spawn_and_wait(&mut self) -> Result<(), SpawnError> {
        self.spawn();
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_err;
        loop {
            let exited = self
                .child
                .as_mut()
                .unwrap()
                .try_wait()
                .expect("try_wait on mariadbd");
            if let Some(status) = exited {
                self.child = None;
                self.reap_watchdog();
                let log = tail(&self.error_log(), 30);
                if log.contains("Address already in use") || log.contains("Bind on TCP/IP port") {
                    return Err(SpawnError::PortInUse);
                }
                panic!(
                    "{}: mariadbd exited during startup ({status}); error.log tail:\n{log}\nstderr:\n{}",
                    self.name,
                    tail(&self.dir.path().join("stderr.log"), 10)
                );
            }
            match Conn::new(self.admin_opts()).await {
                Ok(mut conn) => {
                    // Another test's server may have taken the port between free_port() and
                    // our bind: only our own datadir counts as ready.
                    let datadir: Option<String> =
                        conn.query_first("SELECT @@datadir").await.unwrap_or(None);
                    let _ = conn.disconnect().await;
                    let ours = datadir
                        .is_some_and(|d| Path::new(d.trim_end_matches('/')) == self.dir.path());
                    if ours {
                        return Ok(());
                    }
                    self.kill();
                    let _ = fs::rename(
                        self.error_log(),
                        self.dir.path().join("error.log.portstolen"),
                    );
                    return Err(SpawnError::PortInUse);
                }
                Err(e) => last_err = e.to_string(),
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "{}: mariadbd on port {} not ready after {:?} (last error: {last_err}); \
                     error.log tail:\n{}",
                    self.name,
                    self.port,
                    READY_TIMEOUT,
                    tail(&self.error_log(), 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn reap_watchdog(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    // -- accessors ---------------------------------------------------------

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn server_id(&self) -> u32 {
        self.server_id
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn datadir(&self) -> &Path {
        self.dir.path()
    }
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("s.sock")
    }
    pub fn error_log(&self) -> PathBuf {
        self.dir.path().join("error.log")
    }
    /// Pid of the running server (panics if it is stopped/killed).
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .unwrap_or_else(|| panic!("{}: not running", self.name))
            .id()
    }
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// TCP 127.0.0.1:port as `admin`/`admin`, never via the unix socket.
    pub fn admin_opts(&self) -> Opts {
        self.opts_for(ADMIN_USER, ADMIN_PASSWORD)
    }
    /// Opts for the least-privilege check user `replguard`/`guardpw`.
    pub fn guard_opts(&self) -> Opts {
        self.opts_for(GUARD_USER, GUARD_PASSWORD)
    }
    pub fn opts_for(&self, user: &str, password: &str) -> Opts {
        OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some(user))
            .pass(Some(password))
            .prefer_socket(false)
            .into()
    }

    // -- SQL ---------------------------------------------------------------

    async fn conn(&self, opts: Opts) -> Conn {
        Conn::new(opts)
            .await
            .unwrap_or_else(|e| panic!("{}: connecting to 127.0.0.1:{}: {e}", self.name, self.port))
    }

    /// Runs `sql` as admin (may contain several `;`-separated statements);
    /// panics with the SQL and the error on failure.
    pub async fn exec(&self, sql: &str) {
        let mut c = self.conn(self.admin_opts()).await;
        if let Err(e) = c.query_drop(sql).await {
            panic!("{}: SQL failed: {sql}\nerror: {e}", self.name);
        }
        let _ = c.disconnect().await;
    }

    /// Runs `sql` as admin and returns all rows as strings (NULL -> None).
    pub async fn query_strings(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.query_with_columns(sql).await.1
    }

    /// First column of the first row (None if no row or NULL).
    pub async fn query_value(&self, sql: &str) -> Option<String> {
        self.query_strings(sql)
            .await
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten())
    }

    /// Runs `sql` as admin; returns (column names, rows).
    pub async fn query_with_columns(&self, sql: &str) -> (Vec<String>, Vec<Vec<Option<String>>>) {
        self.query_as(self.admin_opts(), sql)
            .await
            .unwrap_or_else(|e| panic!("{}: SQL failed: {sql}\nerror: {e}", self.name))
    }

    /// Runs `sql` with arbitrary credentials; returns the error instead of
    /// panicking (useful for privilege checks).
    pub async fn query_as(
        &self,
        opts: Opts,
        sql: &str,
    ) -> Result<(Vec<String>, Vec<Vec<Option<String>>>), mysql_async::Error> {
        let mut c = Conn::new(opts).await?;
        let res = async {
            let mut result = c.query_iter(sql).await?;
            let cols: Vec<String> = result
                .columns()
                .map(|cs| cs.iter().map(|c| c.name_str().into_owned()).collect())
                .unwrap_or_default();
            let rows: Vec<Row> = result.collect().await?;
            let rows = rows
                .into_iter()
                .map(|r| r.unwrap().iter().map(value_to_string).collect())
                .collect();
            Ok::<_, mysql_async::Error>((cols, rows))
        }
        .await;
        let _ = c.disconnect().await;
        res
    }

    /// `SHOW ALL SLAVES STATUS` as a list of column-name -> value maps.
    pub async fn slave_status(&self) -> Vec<std::collections::HashMap<String, Option<String>>> {
        let (cols, rows) = self.query_with_columns("SHOW ALL SLAVES STATUS").await;
        rows.into_iter()
            .map(|r| cols.iter().cloned().zip(r).collect())
            .collect()
    }

    // -- replication -------------------------------------------------------

    /// Makes this server a GTID replica of `primary` (default connection
    /// name) and waits until both replication threads run.
    pub async fn replicate_from(&self, primary: &MariaDb) {
        self.replicate_via(primary, primary.port()).await
    }

    /// Like [`replicate_from`](Self::replicate_from), connecting to `port` on loopback (a
    /// relay in front of `primary`) instead of `primary`'s own port.
    pub async fn replicate_via(&self, primary: &MariaDb, port: u16) {
        self.exec(&format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={port}, \
             MASTER_USER='{REPL_USER}', MASTER_PASSWORD='{REPL_PASSWORD}', \
             MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1"
        ))
        .await;
        self.exec("START SLAVE").await;
        let deadline = Instant::now() + REPLICATION_TIMEOUT;
        loop {
            let status = self.slave_status().await;
            let get = |k: &str| {
                status
                    .first()
                    .and_then(|r| r.get(k).cloned().flatten())
                    .unwrap_or_default()
            };
            if get("Slave_IO_Running") == "Yes" && get("Slave_SQL_Running") == "Yes" {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: replication from {} not running after {:?}: {:?}",
                    self.name, primary.name, REPLICATION_TIMEOUT, status
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates the tests' table `app.t (id INT PRIMARY KEY)` (on a primary: its replicas get
    /// it by replication).
    pub async fn create_app_table(&self) {
        self.exec("CREATE DATABASE app").await;
        self.exec("CREATE TABLE app.t (id INT PRIMARY KEY)").await;
    }

    /// Waits (bounded) until everything in `primary`'s binlog
    /// (`@@gtid_binlog_pos`) has been applied here.
    pub async fn wait_caught_up(&self, primary: &MariaDb) {
        let pos = primary
            .query_value("SELECT @@GLOBAL.gtid_binlog_pos")
            .await
            .unwrap_or_default();
        if pos.is_empty() {
            return;
        }
        let secs = REPLICATION_TIMEOUT.as_secs();
        let r = self
            .query_value(&format!("SELECT MASTER_GTID_WAIT('{pos}', {secs})"))
            .await;
        if r.as_deref() != Some("0") {
            panic!(
                "{}: did not catch up with {} (gtid {pos}) within {secs}s (MASTER_GTID_WAIT={r:?}); \
                 slave status: {:?}",
                self.name,
                primary.name,
                self.slave_status().await
            );
        }
    }

    // -- process control ---------------------------------------------------

    /// SIGKILL and reap. No-op if not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "KILL");
            let _ = child.wait();
        }
        self.paused = false;
        self.reap_watchdog();
    }

    /// SIGTERM, wait up to 20 s for a clean shutdown, then SIGKILL.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if self.paused {
            signal(child.id(), "CONT");
            self.paused = false;
        }
        signal(child.id(), "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "[mariadb harness] {}: no clean shutdown after {:?}, SIGKILL",
                    self.name, STOP_TIMEOUT
                );
                signal(child.id(), "KILL");
                let _ = child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.reap_watchdog();
    }

    /// SIGSTOP: the server keeps its sockets open but stops responding.
    pub fn pause(&mut self) {
        let pid = self.pid();
        assert!(
            signal(pid, "STOP"),
            "{}: kill -STOP {pid} failed",
            self.name
        );
        self.paused = true;
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&mut self) {
        let pid = self.pid();
        assert!(
            signal(pid, "CONT"),
            "{}: kill -CONT {pid} failed",
            self.name
        );
        self.paused = false;
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_ref() {
            if self.paused {
                signal(child.id(), "CONT");
            }
        }
        self.kill();
        // `dir` (TempDir) is removed after this.
    }
}
