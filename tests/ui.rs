//! The `/ui` status page end to end: a real MariaDB primary and replica, an in-process guard, and
//! Debian's headless Chromium loading the page and running its JavaScript. The DOM Chromium dumps
//! is what a person would see.
//!
//! Chromium is required: a missing browser fails the test (deploy/sandbox/install-deps.sh
//! installs it). With `REPLGUARD_UI_SCREENSHOT=path.png` the test also saves a screenshot of the
//! page with the failing replica there (how docs/ui.png is made).

mod common;

use common::guard::{instance_block, Guard, FAST};
use common::mariadb::MariaDb;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;

/// The browser binary: Debian's `chromium`, or a `chromium-browser` elsewhere.
fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        for dir in ["/usr/bin", "/usr/local/bin", "/snap/bin"] {
            let p = PathBuf::from(dir).join(name);
            if p.exists() {
                return p;
            }
        }
    }
    panic!(
        "chromium not found: the /ui test needs a headless browser \
         (apt-get install chromium, or run deploy/sandbox/install-deps.sh)"
    );
}

/// Runs headless Chromium on `url` with `extra` arguments (what to produce), in a fresh profile,
/// bounded in time; returns stdout.
async fn browse(url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        // Lets the page's fetches and its refresh timer run before the DOM is taken.
        "--virtual-time-budget=3000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("chromium finishes within 60s")
        .expect("chromium runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "chromium failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The `<tr>` of `instance` in a dumped DOM.
fn row<'a>(dom: &'a str, instance: &str) -> Option<&'a str> {
    let at = dom.find(&format!("data-instance=\"{instance}\""))?;
    let start = dom[..at].rfind("<tr")?;
    let end = at + dom[at..].find("</tr>")?;
    Some(&dom[start..end])
}

/// The `<li>` of `policy`'s verdict in a row.
fn verdict<'a>(row: &'a str, policy: &str) -> Option<&'a str> {
    let at = row.find(&format!("data-policy=\"{policy}\""))?;
    let start = row[..at].rfind("<li")?;
    let end = at + row[at..].find("</li>")?;
    Some(&row[start..end])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_a_replica_failing() {
    let browser = chromium(); // fail before starting databases when there is no browser
    eprintln!("using {}", browser.display());
    let (primary, replica) =
        tokio::join!(MariaDb::start("uprimary", 1), MariaDb::start("ureplica", 2));
    replica.replicate_from(&primary).await;
    replica.exec("SET GLOBAL read_only = ON").await;
    let g = Guard::start(FAST, |dir| {
        instance_block(dir, "db1", &primary, "primary", "")
            + &instance_block(dir, "db2", &replica, "replica", "")
            + "[[pool]]\nname = \"reads\"\ninstances = [\"db2\"]\nmin_serving = 1\n"
    })
    .await;
    for i in ["db1", "db2"] {
        g.wait_for(
            &format!("/mysqlchk/?instance={i}"),
            Duration::from_secs(20),
            |r| r.status == 200,
        )
        .await;
    }
    // A few polls of lag history for the graph.
    g.wait_polls("db2", 5).await;
    let url = format!("http://{}/ui", g.addr);

    let dom = browse(&url, &["--dump-dom"]).await;
    // The same document redrew itself from /status more than once (its 1.5 s timer ran within
    // the virtual time budget): it refreshes without a reload.
    let refreshes: u32 = dom
        .split_once("data-refreshes=\"")
        .and_then(|(_, rest)| rest.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no data-refreshes in\n{dom}"));
    assert!(refreshes >= 2, "refreshed {refreshes} time(s)");
    let db1 = row(&dom, "db1").unwrap_or_else(|| panic!("no db1 row in\n{dom}"));
    let db2 = row(&dom, "db2").unwrap_or_else(|| panic!("no db2 row in\n{dom}"));
    assert!(db1.contains("data-healthy=\"true\""), "{db1}");
    // The configured policy's verdict leads; the others (which a primary fails by design) are
    // folded away, still in the page for whoever opens them.
    assert!(db1.contains("verdicts own"), "{db1}");
    assert!(
        db1.contains("<details class=\"others\">")
            && !db1.contains("<details class=\"others\" open"),
        "{db1}"
    );
    // Times are UTC, and say so.
    assert!(dom.contains(" UTC"), "{dom}");
    assert!(db1.contains(">primary<"), "role: {db1}");
    assert!(db2.contains("data-healthy=\"true\""), "{db2}");
    assert!(db2.contains(">replica<"), "role: {db2}");
    assert!(db2.contains("connected to 127.0.0.1:"), "source: {db2}");
    assert!(db2.contains("<polyline"), "lag graph: {db2}");
    let ok = verdict(db2, "replica").unwrap_or_else(|| panic!("no replica verdict: {db2}"));
    assert!(ok.contains("verdict ok"), "{ok}");
    // Another policy fails on the replica, with its first failing reason shown.
    let primary_on_replica = verdict(db2, "primary").expect("primary verdict");
    assert!(
        primary_on_replica.contains("verdict fail") && primary_on_replica.contains("read_only"),
        "{primary_on_replica}"
    );

    // The replica's SQL thread stops: within a few seconds the page shows its row failing, with
    // the reason, without a reload (each dump loads the page, then its refresh timer runs).
    replica.exec("STOP SLAVE SQL_THREAD").await;
    let start = Instant::now();
    loop {
        let dom = browse(&url, &["--dump-dom"]).await;
        let db2 = row(&dom, "db2").unwrap_or_else(|| panic!("no db2 row in\n{dom}"));
        let v = verdict(db2, "replica").unwrap_or_default();
        if db2.contains("data-healthy=\"false\"")
            && v.contains("verdict fail")
            && v.contains("sql_thread")
        {
            assert!(v.contains("No, want Yes"), "{v}");
            // The whole failing line, never cut.
            assert!(v.contains("FAIL sql_thread No, want Yes"), "{v}");
            // The primary's row is unaffected, and the transition is listed.
            let db1 = row(&dom, "db1").expect("db1 row");
            assert!(db1.contains("data-healthy=\"true\""), "{db1}");
            assert!(dom.contains("data-kind=\"unhealthy\""), "{dom}");
            // What fails leads: db2's row comes before db1's.
            let (at1, at2) = (
                dom.find("data-instance=\"db1\"").unwrap(),
                dom.find("data-instance=\"db2\"").unwrap(),
            );
            assert!(at2 < at1, "the failing row first");
            // The pool, short of its min_serving (a stopped SQL thread is never admitted).
            assert!(
                dom.contains("data-pool=\"reads\"")
                    && dom.contains("reads: 0 of 1 healthy, 0 serving (min_serving 1)"),
                "{dom}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "db2's row did not turn failing with sql_thread:\n{db2}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Filtered from the address: only what fails, or only what matches.
    let failing = browse(&format!("{url}?failing=1"), &["--dump-dom"]).await;
    assert!(
        row(&failing, "db2").is_some() && row(&failing, "db1").is_none(),
        "{failing}"
    );
    assert!(
        failing.contains("showing 1 of 2 (1 failing, listed first)"),
        "{failing}"
    );
    let matching = browse(&format!("{url}?filter=db1"), &["--dump-dom"]).await;
    assert!(
        row(&matching, "db1").is_some() && row(&matching, "db2").is_none(),
        "{matching}"
    );
    // Usable at 1000 px: the page asks for no more width than that (no horizontal scrolling).
    let narrow = browse(&url, &["--window-size=1000,800", "--dump-dom"]).await;
    let width: u32 = narrow
        .split_once("data-scroll-width=\"")
        .and_then(|(_, rest)| rest.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no data-scroll-width in\n{narrow}"));
    assert!(width <= 1000, "the page is {width} px wide at 1000 px");
    if let Some(path) = std::env::var_os("REPLGUARD_UI_SCREENSHOT") {
        let path = std::path::absolute(PathBuf::from(path)).expect("screenshot path");
        browse(
            &url,
            &[
                &format!("--screenshot={}", path.display()),
                "--window-size=1000,640",
            ],
        )
        .await;
        assert!(path.exists(), "no screenshot at {}", path.display());
    }

    g.stop().await;
}
