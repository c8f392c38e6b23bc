//! The systemd unit in `deploy/` as systemd itself judges it: `systemd-analyze verify` accepts
//! it (with the binary it runs), and `systemd-analyze security` rates its exposure at most 2.0.

use std::path::PathBuf;
use std::process::Command;

fn systemd_analyze() -> PathBuf {
    for p in ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"] {
        if std::path::Path::new(p).is_file() {
            return p.into();
        }
    }
    panic!("systemd-analyze not found: apt-get install systemd (deploy/sandbox/install-deps.sh does it)");
}

/// The unit with its `ExecStart`/`ExecStartPre` pointing at the binary under test.
fn unit() -> (tempfile::TempDir, PathBuf) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/replguard.service"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replguard.service");
    std::fs::write(
        &path,
        text.replace("/usr/local/bin/replguard", env!("CARGO_BIN_EXE_replguard")),
    )
    .unwrap();
    (dir, path)
}

#[test]
fn the_unit_verifies() {
    let (_dir, path) = unit();
    let out = Command::new(systemd_analyze())
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("replguard.service"),
        "no complaint about the unit: {err}"
    );
}

#[test]
fn the_unit_exposes_at_most_2_0() {
    let (_dir, path) = unit();
    let out = Command::new(systemd_analyze())
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for replguard.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{text}"));
    assert!(level <= 2.0, "exposure {level} > 2.0:\n{text}");
}
