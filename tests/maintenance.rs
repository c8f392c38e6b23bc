//! `replguard maintenance on|off` as an operator runs it next to a running daemon: no database
//! password needed, `--instance` optional with one instance, and the daemon's confirmation
//! (exit 0) or its absence (exit 3).

mod common;

use common::guard::{instance_block, Guard, FAST};
use common::mariadb::MariaDb;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

/// Runs `replguard maintenance ARGS --config CONFIG` off the async threads: exit code, stdout
/// and stderr.
async fn maintenance(config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_replguard"));
    cmd.arg("maintenance")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn");
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run replguard"))
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_needs_no_password_and_says_whether_the_daemon_saw_it() {
    let db = MariaDb::start("maint", 1).await;
    let block = |dir: &Path| {
        let file = dir.join("maint-db");
        instance_block(
            dir,
            "db",
            &db,
            "primary",
            &format!("maintenance_file = \"{}\"", file.display()),
        )
    };
    let g = Guard::start(FAST, block).await;
    g.wait_for("/primary", LIMIT, |r| r.status == 200).await;
    let config = g.config.path.clone();

    // The operator cannot read the database password: here it is gone altogether.
    std::fs::remove_file(g.dir().join("db.password")).expect("remove the password file");

    let (code, out, err) = maintenance(&config, &["on", "--reason", "kernel upgrade"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("db: maintenance on") && out.contains("daemon confirms"),
        "{out}"
    );
    let r = g.get("/primary").await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (503, "maintenance: kernel upgrade")
    );

    let (code, out, err) = maintenance(&config, &["off"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("db: maintenance off; daemon confirms"),
        "{out}"
    );
    g.wait_for("/primary", LIMIT, |r| r.status == 200).await;

    // A config the daemon does not run (another maintenance file for the same instance): the
    // file is written, but the daemon never sees it.
    let other_file = g.dir().join("elsewhere");
    let other: PathBuf = g.dir().join("other.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &g.dir().join("maint-db").display().to_string(),
        &other_file.display().to_string(),
    );
    std::fs::write(&other, text).unwrap();
    let (code, out, _) = maintenance(&other, &["on", "--reason", "x"]).await;
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("written, but the daemon at") && out.contains("has not seen it"),
        "{out}"
    );
    assert!(other_file.exists(), "the file was written all the same");
    assert_eq!(g.get("/primary").await.status, 200);
    // The same config once the daemon is gone (the guard's directory goes with it).
    let keep = tempfile::tempdir().unwrap();
    let orphan = keep.path().join("replguard.toml");
    std::fs::copy(&config, &orphan).unwrap();
    g.stop().await;

    // No daemon at all: exit 3, saying it could not ask.
    let (code, out, _) = maintenance(&orphan, &["off"]).await;
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("cannot ask it"), "{out}");
}

#[test]
fn maintenance_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let two = format!(
        "maintenance_file = \"{}/m-{{instance}}\"\n\
         [[instance]]\nname = \"a\"\nport = 3307\nuser = \"u\"\npassword_file = \"missing\"\n\
         [[instance]]\nname = \"b\"\nport = 3308\nuser = \"u\"\npassword_file = \"missing\"\n",
        dir.path().display()
    );
    std::fs::write(&config, two).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_replguard"))
            .arg("maintenance")
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = run(&["on"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("name an instance with --instance"));
    let out = run(&["on", "--instance", "c"]);
    assert_eq!(out.status.code(), Some(2));
    // The missing password files do not matter to maintenance (they would to `check`).
    let out = run(&["on", "--instance", "a"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("m-a").exists());
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_replguard"))
        .args(["check", "--instance", "a", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        check.status.code(),
        Some(2),
        "check needs the password file"
    );
}
