//! A central guard for a fleet (issue 26), on real MariaDB: a few hundred instances over two
//! replicas, each instance its own poller and connection. Behaviour only, never speed: every
//! instance gets a sample and keeps it fresh, every check is answered from it, polls are spread
//! over the interval rather than in one burst, and the instances of a server that dies fail
//! while the others stay healthy.

mod common;

use common::guard::{Guard, FAST};
use common::mariadb::{write_password_file, MariaDb, GUARD_PASSWORD, GUARD_USER};
use std::time::{Duration, Instant};

/// Instances per replica.
const PER_SERVER: usize = 150;

fn blocks(dir: &std::path::Path, servers: &[&MariaDb]) -> String {
    let pw = write_password_file(dir, "guard.password", GUARD_PASSWORD);
    let mut out = String::new();
    for i in 0..PER_SERVER * servers.len() {
        let db = servers[i % servers.len()];
        out.push_str(&format!(
            "[[instance]]\nname = \"s{i:03}\"\nsocket = \"{}\"\nuser = \"{GUARD_USER}\"\n\
             password_file = \"{}\"\npolicy = \"replica\"\n\n",
            db.socket_path().display(),
            pw.display()
        ));
    }
    out
}

/// Every instance of `/status` as (name, sample age, polls, whether its own policy passes).
fn instances(status: &serde_json::Value) -> Vec<(String, Option<u64>, u64, bool)> {
    status["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["sample_age_ms"].as_u64(),
                i["polls"].as_u64().unwrap(),
                i["verdicts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|v| v["policy"] == "replica" && v["healthy"] == true),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_keeps_hundreds_of_instances_fresh_and_spread_over_the_interval() {
    // Each replica holds its share of persistent check connections and the harness's own.
    let room = [format!("--max-connections={}", PER_SERVER + 50)];
    let (primary, a, mut b) = tokio::join!(
        MariaDb::start("scp", 1),
        MariaDb::start_with("sca", 2, &room),
        MariaDb::start_with("scb", 3, &room)
    );
    tokio::join!(a.replicate_from(&primary), b.replicate_from(&primary));
    primary.create_app_table().await;
    tokio::join!(a.wait_caught_up(&primary), b.wait_caught_up(&primary));

    let g = Guard::start(FAST, |dir| blocks(dir, &[&a, &b])).await;
    let n = PER_SERVER * 2;
    let max_age = g.config.max_sample_age.as_millis() as u64;
    let interval = g.config.interval.as_millis() as u64;

    // Every instance polled and healthy.
    let start = Instant::now();
    loop {
        let all = instances(&g.status().await);
        assert_eq!(all.len(), n);
        if all
            .iter()
            .all(|(_, age, _, healthy)| age.is_some() && *healthy)
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not every instance became healthy: {:?}",
            all.iter().filter(|i| !i.3).take(5).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Over several intervals: no sample missing or stale, every instance polled again, and in
    // each reading the phases (sample age mod interval) spread over the interval: no tenth of
    // it holds most of the fleet (all polls together would put every one in a single tenth).
    let first = instances(&g.status().await);
    let mut busiest_seen = 0.0f64;
    for _ in 0..6 {
        tokio::time::sleep(g.config.interval).await;
        let all = instances(&g.status().await);
        let ages: Vec<u64> = all
            .iter()
            .map(|(name, age, _, _)| age.unwrap_or_else(|| panic!("{name} lost its sample")))
            .collect();
        let stale: Vec<_> = all
            .iter()
            .filter(|(_, age, _, healthy)| age.unwrap() > max_age || !healthy)
            .collect();
        assert!(stale.is_empty(), "stale or unhealthy: {stale:?}");
        let phases: Vec<u64> = ages.iter().map(|a| a % interval).collect();
        let tenth = interval / 10;
        let busiest = phases
            .iter()
            .map(|s| {
                phases
                    .iter()
                    .filter(|p| (**p + interval - s) % interval < tenth)
                    .count()
            })
            .max()
            .unwrap();
        busiest_seen = busiest_seen.max(busiest as f64 / n as f64);
    }
    assert!(
        busiest_seen < 0.4,
        "polls bunch up: {:.0}% of the fleet in one tenth of the interval",
        busiest_seen * 100.0
    );
    let last = instances(&g.status().await);
    for ((name, _, before, _), (_, _, after, _)) in first.iter().zip(&last) {
        assert!(after > before, "{name} was not polled again");
    }

    // Checks are answered from the samples, by name, for any instance of the fleet.
    for i in [0, 1, n / 2, n - 1] {
        let r = g.get(&format!("/replica?instance=s{i:03}")).await;
        assert_eq!(r.status, 200, "s{i:03}: {}", r.body);
    }

    // One server dies: its instances fail closed, the other server's stay healthy.
    b.kill();
    let start = Instant::now();
    loop {
        let all = instances(&g.status().await);
        let (on_b, on_a): (Vec<_>, Vec<_>) = all.iter().enumerate().partition(|(i, _)| i % 2 == 1);
        assert!(
            on_a.iter().all(|(_, i)| i.3),
            "an instance of the live server failed: {:?}",
            on_a.iter().find(|(_, i)| !i.3)
        );
        if on_b.iter().all(|(_, i)| !i.3) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "instances of the dead server still pass: {}",
            on_b.iter().filter(|(_, i)| i.3).count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = g.get("/replica?instance=s001").await;
    assert_eq!(r.status, 503, "{}", r.body);
    let r = g.get("/replica?instance=s000").await;
    assert_eq!(r.status, 200, "{}", r.body);
    g.stop().await;
}

/// Spreading polls over the interval never delays an instance's first sample by the
/// interval: with a one-hour interval the first sample still comes within about a second, and
/// checks answer from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_interval_does_not_delay_the_first_sample() {
    let db = MariaDb::start("slong", 1).await;
    let started = Instant::now();
    let g = Guard::start(
        "interval = \"1h\"\ntimeout = \"1s\"\nmax_sample_age = \"2h\"\n",
        |dir| common::guard::instance_block(dir, "db", &db, "primary", ""),
    )
    .await;
    let r = g
        .wait_for("/primary", Duration::from_secs(10), |r| r.status == 200)
        .await;
    assert!(r.body.contains("ok reachable"), "{}", r.body);
    eprintln!("first sample after {:?}", started.elapsed());
    g.stop().await;
}
