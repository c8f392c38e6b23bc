//! The writer lease as this guard saw it at a poll (plain data): who holds the group's key in
//! etcd, whether this instance does and when etcd last confirmed it, and the settings the
//! `writer_lease` check judges it by. Written by the lease task, copied into each sample like
//! the maintenance file, judged by the policy; nothing here talks to etcd.

use std::time::{Duration, Instant, SystemTime};

/// One instance's view of its writer group's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// The writer group (`writer_group`).
    pub group: String,
    /// The holder named by the key at the last successful read; `None`: nobody holds it, or
    /// it is not known (`etcd` says which).
    pub holder: Option<Holder>,
    /// This instance holds the key.
    pub mine: Option<Held>,
    /// Since when this holder has stopped answering 200 to hand the writes over (a preferred
    /// instance asked for them back); `None`: not handing over.
    pub handing_over: Option<(Instant, SystemTime)>,
    /// The executed position the previous holder recorded when it released the key, which
    /// this instance must have applied before it answers 200; `None`: nothing to wait for.
    pub must_apply: Option<Released>,
    /// The last error talking to etcd, and since when it has lasted; `None`: the last request
    /// succeeded.
    pub etcd_error: Option<(String, SystemTime)>,
    pub lease_ttl: Duration,
    /// How long before the lease can have expired the holder stops answering 200.
    pub fence_margin: Duration,
    /// A new holder answers 200 only this long after it acquired.
    pub handover_delay: Duration,
}

impl Holder {
    /// When it acquired the key.
    pub fn since(&self) -> SystemTime {
        crate::units::from_unix_ms(self.since_unix_ms)
    }
}

/// Who holds a group's key: the value the holder wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    pub guard: String,
    pub instance: String,
    /// When it acquired the key, in Unix milliseconds.
    pub since_unix_ms: u64,
}

/// This instance's hold on the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// When the key was written with this guard's lease.
    pub acquired_at: Instant,
    pub acquired_wall: SystemTime,
    /// When the last keep-alive that etcd acknowledged was *sent*: etcd cannot expire the lease
    /// before this plus the TTL.
    pub confirmed_at: Instant,
}

/// What the previous holder recorded with its release: its executed position.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Released {
    pub guard: String,
    pub instance: String,
    /// `gtid_executed` (MySQL) or `gtid_binlog_pos` (MariaDB) of the released writer.
    pub position: String,
}

impl LeaseView {
    /// The moment this holder must stop answering 200: before etcd can have expired the lease.
    pub fn fenced_at(&self) -> Option<Instant> {
        let held = self.mine.as_ref()?;
        Some(held.confirmed_at + self.lease_ttl.saturating_sub(self.fence_margin))
    }

    /// This instance holds the lease and etcd confirmed it recently enough at `now` (the fence
    /// rule: the check, `/status` and `/metrics` all ask here).
    pub fn confirmed(&self, now: Instant) -> bool {
        self.fenced_at().is_some_and(|t| now < t)
    }
}

#[cfg(test)]
impl LeaseView {
    /// Group `m0` with `mine` as this instance's hold (TTL 10 s, fence 2 s, handover_delay 5 s),
    /// etcd answering, nobody else named: the unit tests' starting view.
    pub fn for_tests(mine: Option<Held>) -> LeaseView {
        LeaseView {
            group: "m0".into(),
            holder: None,
            mine,
            handing_over: None,
            must_apply: None,
            etcd_error: None,
            lease_ttl: Duration::from_secs(10),
            fence_margin: Duration::from_secs(2),
            handover_delay: Duration::from_secs(5),
        }
    }
}
