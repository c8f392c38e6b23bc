//! The pure step of a poll: the next snapshot from the previous one and a new sample, the
//! memory an earlier run left in the state file restored into it, and every transition the
//! observer sees. The only caller of [`Snapshot::next`]; no I/O, no clock, no tokio: the loop
//! ([`super::run`]) and the one-shot check call it alike.

use super::observe::Observer;
use super::store::Persisted;
use crate::config::InstanceConfig;
use crate::hub::events::{Event, Kind};
use crate::policy::Judge;
use crate::snapshot::sample::Sample;
use crate::snapshot::Snapshot;

/// What a poll changes, computed without I/O by [`step`].
pub struct Step {
    /// The snapshot to publish.
    pub snapshot: Snapshot,
    /// Transitions for `/events`, in order; `quiet` ones are not logged.
    pub events: Vec<Recorded>,
}

/// One transition and whether it is also a log line.
pub struct Recorded {
    pub event: Event,
    pub quiet: bool,
}

/// What a poller carries from poll to poll besides its published snapshot: the transition
/// detector and the state file's memory not yet restored.
#[derive(Default)]
pub struct Carry {
    pub observer: Observer,
    /// Read from the state file at start; restored at the first successful poll.
    pub pending: Option<Persisted>,
}

/// The pure step of a poll: the next snapshot from `previous` and `sample`, the memory of an
/// earlier run restored into it, and every transition (source, maintenance, restore, each
/// policy's verdict on the new snapshot at `now`).
pub fn step(
    judge: &Judge,
    config: &InstanceConfig,
    previous: &Snapshot,
    sample: Sample,
    carry: &mut Carry,
    now: std::time::Instant,
) -> Step {
    let instance = &config.name;
    let at = sample.taken_at_wall;
    let mut events: Vec<Recorded> = carry
        .observer
        .observe(instance, &sample)
        .into_iter()
        .map(|event| Recorded {
            event,
            quiet: false,
        })
        .collect();
    let mut snapshot = previous.next(sample);
    if let Some(sample) = snapshot.sample.clone() {
        if let (Ok(state), Some(Ok(src))) = (
            &sample.outcome,
            sample.source.as_ref().map(|s| s.outcome.as_ref()),
        ) {
            snapshot.memory.errant_at_last_source =
                crate::policy::evidence::errant_against(state, src);
        }
        if let (Ok(state), Some(p)) = (&sample.outcome, carry.pending.as_ref()) {
            let outcome = p.restore_into(&mut snapshot.memory, &sample, state);
            carry.pending = None;
            events.push(Recorded {
                event: match outcome {
                    Ok(n) => Event::new(
                        at,
                        instance,
                        Kind::MemoryRestored,
                        format!("{n} channel(s) remembered from the state file"),
                    ),
                    Err(why) => Event::new(at, instance, Kind::MemoryVoid, why.to_string()),
                },
                quiet: false,
            });
        }
    }
    // Every policy's verdict changes go to /events ("when did the backup stop being safe?");
    // those of the instance's own policy are also the warn/info log lines.
    let verdicts: Vec<_> = judge.verdicts(config.subject(), &snapshot, now).collect();
    events.extend(
        carry
            .observer
            .verdicts(instance, &config.policy, at, &verdicts)
            .into_iter()
            .map(|(event, quiet)| Recorded { event, quiet }),
    );
    Step { snapshot, events }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::sample::fixtures::{primary, replica};
    use crate::snapshot::sample::{ServerState, ThreadState};
    use std::time::{Duration, SystemTime};

    fn sample(state: ServerState, at: std::time::Instant) -> Sample {
        Sample {
            taken_at: at,
            taken_at_wall: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(2),
            outcome: Ok(state),
            source: None,
            maintenance: None,
            maintenance_error: None,
            lease: None,
        }
    }

    fn judge() -> (Judge, InstanceConfig) {
        (
            Judge::new(crate::policy::PolicySet::builtin(), Duration::from_secs(3)),
            crate::config::fixtures::instance("db2", 3307, "replica"),
        )
    }

    /// (kind, policy, quiet) of each verdict event.
    fn verdict_events(step: &Step) -> Vec<(Kind, String, bool)> {
        step.events
            .iter()
            .filter_map(|r| {
                let policy = r.event.policy.clone()?;
                Some((r.event.kind, policy, r.quiet))
            })
            .collect()
    }

    #[test]
    fn a_step_reports_its_own_policy_loudly_and_others_only_when_they_change() {
        let (judge, w) = judge();
        let w = &w;
        let mut carry = Carry::default();
        let t0 = std::time::Instant::now();
        let first = step(
            &judge,
            w,
            &Snapshot::default(),
            sample(replica(), t0),
            &mut carry,
            t0,
        );
        assert_eq!(first.snapshot.polls, 1);
        assert_eq!(
            verdict_events(&first),
            vec![(Kind::Healthy, "replica".into(), false)],
            "the own policy's first verdict is news; another's first is not"
        );
        let mut stopped = replica();
        stopped.channels[0].sql_thread = ThreadState::No;
        stopped.channels[0].lag = None;
        let t1 = t0 + Duration::from_secs(1);
        let second = step(
            &judge,
            w,
            &first.snapshot,
            sample(stopped.clone(), t1),
            &mut carry,
            t1,
        );
        let events = verdict_events(&second);
        assert!(
            events.contains(&(Kind::Unhealthy, "replica".into(), false)),
            "{events:?}"
        );
        assert!(
            events.contains(&(Kind::Unhealthy, "backup".into(), true)),
            "other policies' changes are recorded quietly: {events:?}"
        );
        let t2 = t1 + Duration::from_secs(1);
        let third = step(
            &judge,
            w,
            &second.snapshot,
            sample(stopped, t2),
            &mut carry,
            t2,
        );
        assert_eq!(verdict_events(&third), vec![], "same cause, no event");
        assert_eq!(third.snapshot.polls, 3);
    }

    #[test]
    fn a_step_restores_the_state_file_once_at_the_first_successful_poll() {
        let (judge, w) = judge();
        let w = &w;
        let t0 = std::time::Instant::now();
        // What an earlier run saw: the channel connected, lag 0.
        let earlier = Snapshot::default().next(sample(replica(), t0));
        let persisted = Persisted::new(&earlier.memory, &replica());
        let mut carry = Carry {
            pending: Some(persisted),
            ..Carry::default()
        };
        let mut lost = replica();
        lost.channels[0].io_thread = ThreadState::Connecting;
        lost.channels[0].last_io_errno = 2003;
        let t1 = t0 + Duration::from_secs(1);
        let s = step(
            &judge,
            w,
            &Snapshot::default(),
            sample(lost.clone(), t1),
            &mut carry,
            t1,
        );
        assert!(carry.pending.is_none(), "restored once");
        assert!(s.snapshot.memory.restored);
        assert!(s.snapshot.memory.io_last_connected.contains_key(""));
        let restores = |st: &Step| {
            st.events
                .iter()
                .filter(|r| r.event.kind == Kind::MemoryRestored)
                .count()
        };
        assert_eq!(restores(&s), 1);
        let t2 = t1 + Duration::from_secs(1);
        let again = step(&judge, w, &s.snapshot, sample(lost, t2), &mut carry, t2);
        assert_eq!(restores(&again), 0);
        // A primary's snapshot never carries a replica's memory it did not see.
        let p = step(
            &judge,
            w,
            &Snapshot::default(),
            sample(primary(), t2),
            &mut Carry::default(),
            t2,
        );
        assert!(p.snapshot.memory.io_last_connected.is_empty());
    }
}
