//! `writer_lease`: a writer policy passes only while this instance holds its group's lease in
//! etcd, was confirmed by etcd recently enough that the lease cannot have expired, has held it
//! for `handover_delay` (every HAProxy has marked the previous writer DOWN by then), is not
//! handing it over, and has applied what the previous holder recorded when it released it.
//! Without a writer group the rule says nothing: the verdict is what it was without
//! `[coordination]`.

use super::verdict::{Check, Input};
use crate::snapshot::lease::LeaseView;
use crate::units::{clock_time, fmt_duration};
use std::time::Instant;

/// The `writer_lease` check, or `None` for an instance in no writer group (or when the
/// evaluation leaves the lease out: the lease task asking whether the policy passes).
pub(super) fn writer_lease_check(input: &Input<'_>) -> Option<Check> {
    if !input.judge_lease {
        return None;
    }
    let sample = input.snapshot.sample.as_ref()?;
    let view = sample.lease.as_ref()?;
    let check = judge(view, input.now, applied(input, view));
    if input.snapshot.one_shot {
        // A one-shot check holds no lease: only the running guard can pass this line.
        return Some(
            Check::fact(
                "writer_lease",
                false,
                format!(
                    "one-shot: only the running guard holds the lease; {}",
                    check.detail
                ),
            )
            .with_fix("ask the running guard (its HTTP check) or replguard lease status"),
        );
    }
    Some(check)
}

/// Whether the position the previous holder released at is applied here (`None`: nothing to
/// wait for, or it cannot be told).
fn applied(input: &Input<'_>, view: &LeaseView) -> Option<bool> {
    let released = view.must_apply.as_ref()?;
    let state = input.state()?;
    Some(crate::policy::evidence::has_applied(
        state,
        &released.position,
    ))
}

fn judge(view: &LeaseView, now: Instant, applied: Option<bool>) -> Check {
    const NAME: &str = "writer_lease";
    let fail = |detail: String| Check::fact(NAME, false, detail);
    let Some(held) = &view.mine else {
        let etcd = match &view.etcd_error {
            Some((e, since)) => format!(" (etcd unreachable since {}: {e})", clock_time(*since)),
            None => String::new(),
        };
        return match &view.holder {
            Some(h) => fail(format!(
                "held by {} (guard {}) since {}{etcd}",
                h.instance,
                h.guard,
                clock_time(h.since())
            )),
            None if view.etcd_error.is_some() => fail(format!("unknown{etcd}")),
            None => fail(format!(
                "free: not acquired yet (group {}; the policy must pass first)",
                view.group
            )),
        }
        .with_fix("only the lease holder takes writes; see /status for the group");
    };
    let renewed = now.saturating_duration_since(held.confirmed_at);
    if let Some((_, since)) = view.handing_over {
        return fail(format!(
            "handing over since {}: the preferred writer asked for the writes back",
            clock_time(since)
        ));
    }
    if !view.confirmed(now) {
        return fail(format!(
            "not renewed for {} (lease_ttl {}, fence {} before): etcd may expire it",
            fmt_duration(renewed),
            fmt_duration(view.lease_ttl),
            fmt_duration(view.fence_margin)
        ));
    }
    let held_for = now.saturating_duration_since(held.acquired_at);
    if held_for < view.handover_delay {
        return fail(format!(
            "acquired {} ago, writes after handover_delay {}",
            fmt_duration(held_for),
            fmt_duration(view.handover_delay)
        ));
    }
    if let (Some(r), Some(false) | None) = (&view.must_apply, applied) {
        return fail(format!(
            "waiting to apply {} released by {} (guard {})",
            r.position, r.instance, r.guard
        ));
    }
    Check::fact(
        NAME,
        true,
        format!(
            "held since {}, renewed {} ago",
            clock_time(held.acquired_wall),
            fmt_duration(renewed)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::lease::{Held, Holder, Released};
    use std::time::{Duration, SystemTime};

    fn view(mine: Option<Held>) -> LeaseView {
        LeaseView::for_tests(mine)
    }

    #[test]
    fn only_a_confirmed_holder_past_the_handover_delay_passes() {
        let t0 = Instant::now();
        let held = Held {
            acquired_at: t0,
            acquired_wall: SystemTime::now(),
            confirmed_at: t0,
        };
        let v = view(Some(held.clone()));
        let at = |s: u64| t0 + Duration::from_secs(s);
        let c = judge(&v, at(1), None);
        assert!(
            !c.ok && c.detail.contains("writes after handover_delay 5s"),
            "{c:?}"
        );
        // Renewed at 5s: fine until 5 + 10 - 2 = 13s.
        let renewed = view(Some(Held {
            confirmed_at: at(5),
            ..held.clone()
        }));
        assert!(judge(&renewed, at(6), None).ok);
        assert!(judge(&renewed, at(12), None).ok);
        let c = judge(&renewed, at(13), None);
        assert!(!c.ok && c.detail.contains("not renewed for 8s"), "{c:?}");
        // Handing over: no 200 whatever the renewal.
        let handing = LeaseView {
            handing_over: Some((at(6), SystemTime::now())),
            ..renewed.clone()
        };
        assert!(!judge(&handing, at(7), None).ok);
        // The released position must be applied first.
        let waiting = LeaseView {
            must_apply: Some(Released {
                guard: "g2".into(),
                instance: "db202".into(),
                position: "0-202-17".into(),
            }),
            ..renewed.clone()
        };
        let c = judge(&waiting, at(7), Some(false));
        assert!(
            !c.ok && c.detail.contains("waiting to apply 0-202-17"),
            "{c:?}"
        );
        assert!(judge(&waiting, at(7), Some(true)).ok);
        assert!(!judge(&waiting, at(7), None).ok, "unknown is not applied");
    }

    #[test]
    fn without_the_key_the_check_names_the_holder_or_why_not() {
        let now = Instant::now();
        let mut v = view(None);
        let c = judge(&v, now, None);
        assert!(!c.ok && c.detail.starts_with("free"), "{c:?}");
        v.holder = Some(Holder {
            guard: "10.0.0.201".into(),
            instance: "db201".into(),
            since_unix_ms: 1_800_000_000_000,
        });
        let c = judge(&v, now, None);
        assert!(
            !c.ok
                && c.detail
                    .starts_with("held by db201 (guard 10.0.0.201) since "),
            "{c:?}"
        );
        v.holder = None;
        v.etcd_error = Some(("connection refused".into(), SystemTime::now()));
        let c = judge(&v, now, None);
        assert!(
            !c.ok && c.detail.starts_with("unknown (etcd unreachable since"),
            "{c:?}"
        );
    }
}
