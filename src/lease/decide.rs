//! What the lease task does next, from what it knows: a pure function, so every rule of the
//! lease (acquire only a free key and only while the policy passes, release after the policy
//! fails on two polls, hand over to the preferred writer only after having stopped answering
//! 200 for `handover_delay`) reads at a glance and is tested without etcd.

use std::time::Duration;

/// The facts of one round.
#[derive(Debug, Clone, Copy)]
pub(super) struct Facts {
    /// This instance holds the writer key.
    pub mine: bool,
    /// Someone (this instance included) holds the writer key.
    pub holder_present: bool,
    /// The instance's own policy passes, the lease left out.
    pub passes: bool,
    /// Consecutive polls on which it failed.
    pub failing_polls: u32,
    /// `writer_preferred`.
    pub preferred: bool,
    /// A preferred instance has asked for the writes back.
    pub handover_asked: bool,
    /// An operator (`replguard lease handover`) asked to move the writes off this instance.
    pub moved_off: bool,
    /// An operator asked to move the writes off another instance, which is handing over.
    pub operator_asked: bool,
    /// This (preferred) instance is asking.
    pub asking: bool,
    /// How long this holder has stopped answering 200 to hand over; `None`: it has not.
    pub handing_over_for: Option<Duration>,
    /// How long a holder handing over waits after it stopped answering 200.
    pub handover_wait: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Nothing,
    Acquire,
    Release,
    /// Stop answering 200; release after `handover_wait`.
    StartHandover,
    /// Release, recording the executed position for the preferred writer.
    HandOver,
    /// Ask the holder for the writes back (a preferred instance that could take them).
    AskBack,
    /// Withdraw the request (it no longer passes, or it holds the lease now).
    StopAsking,
}

/// Polls a failing policy is given before the lease is released: one sample's blip is not a
/// verdict HAProxy would act on (its `fall` is 2 or more).
pub(super) const RELEASE_AFTER_POLLS: u32 = 2;

pub(super) fn decide(f: &Facts) -> Action {
    if f.mine {
        if !f.passes && f.failing_polls >= RELEASE_AFTER_POLLS {
            return Action::Release;
        }
        if f.asking {
            return Action::StopAsking;
        }
        // A preferred writer never gives the writes to a backup that asks, only to an operator.
        let asked = f.moved_off || (f.handover_asked && !f.preferred);
        return match (asked, f.handing_over_for) {
            (true, None) => Action::StartHandover,
            (_, Some(waited)) if waited >= f.handover_wait => Action::HandOver,
            _ => Action::Nothing,
        };
    }
    if f.asking && (!f.passes || f.operator_asked || f.moved_off) {
        return Action::StopAsking;
    }
    if !f.holder_present {
        // A backup leaves a free key to the preferred writer that asked for it; the instance an
        // operator moved the writes off leaves it to the others.
        let may = if f.operator_asked || f.moved_off {
            !f.moved_off
        } else {
            f.preferred || !f.handover_asked
        };
        return if f.passes && may {
            Action::Acquire
        } else {
            Action::Nothing
        };
    }
    if f.preferred && f.passes && !f.asking && !f.operator_asked && !f.moved_off {
        return Action::AskBack;
    }
    Action::Nothing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            mine: false,
            holder_present: false,
            passes: true,
            failing_polls: 0,
            preferred: false,
            handover_asked: false,
            moved_off: false,
            operator_asked: false,
            asking: false,
            handing_over_for: None,
            handover_wait: Duration::from_secs(6),
        }
    }

    #[test]
    fn a_free_key_is_taken_only_by_a_passing_instance() {
        assert_eq!(decide(&facts()), Action::Acquire);
        let failing = Facts {
            passes: false,
            failing_polls: 1,
            ..facts()
        };
        assert_eq!(decide(&failing), Action::Nothing);
        let held = Facts {
            holder_present: true,
            ..facts()
        };
        assert_eq!(decide(&held), Action::Nothing, "never two holders");
        // A backup leaves a free key to the preferred writer that asked for it.
        let asked = Facts {
            handover_asked: true,
            ..facts()
        };
        assert_eq!(decide(&asked), Action::Nothing);
        let preferred = Facts {
            preferred: true,
            ..asked
        };
        assert_eq!(decide(&preferred), Action::Acquire);
    }

    #[test]
    fn a_holder_releases_after_two_failing_polls_not_one() {
        let mine = Facts {
            mine: true,
            holder_present: true,
            ..facts()
        };
        assert_eq!(decide(&mine), Action::Nothing);
        let blip = Facts {
            passes: false,
            failing_polls: 1,
            ..mine
        };
        assert_eq!(decide(&blip), Action::Nothing);
        let failed = Facts {
            failing_polls: 2,
            ..blip
        };
        assert_eq!(decide(&failed), Action::Release);
    }

    #[test]
    fn the_handover_stops_answering_first_and_releases_after_the_wait() {
        let holder = Facts {
            mine: true,
            holder_present: true,
            handover_asked: true,
            ..facts()
        };
        assert_eq!(decide(&holder), Action::StartHandover);
        let waiting = Facts {
            handing_over_for: Some(Duration::from_secs(5)),
            ..holder
        };
        assert_eq!(decide(&waiting), Action::Nothing);
        let done = Facts {
            handing_over_for: Some(Duration::from_secs(6)),
            ..holder
        };
        assert_eq!(decide(&done), Action::HandOver);
        // The preferred writer never hands over to anyone.
        let preferred = Facts {
            preferred: true,
            ..holder
        };
        assert_eq!(decide(&preferred), Action::Nothing);
        // A preferred writer that passes asks for the writes back, once; withdraws when it
        // fails, or once it holds the lease.
        let back = Facts {
            holder_present: true,
            preferred: true,
            ..facts()
        };
        assert_eq!(decide(&back), Action::AskBack);
        let asking = Facts {
            asking: true,
            ..back
        };
        assert_eq!(decide(&asking), Action::Nothing);
        let failing = Facts {
            passes: false,
            ..asking
        };
        assert_eq!(decide(&failing), Action::StopAsking);
        let got_it = Facts {
            mine: true,
            ..asking
        };
        assert_eq!(decide(&got_it), Action::StopAsking);
    }

    #[test]
    fn an_operator_moves_the_writes_off_even_the_preferred_writer_and_it_stays_off() {
        let preferred_holder = Facts {
            mine: true,
            holder_present: true,
            preferred: true,
            handover_asked: true,
            moved_off: true,
            ..facts()
        };
        assert_eq!(decide(&preferred_holder), Action::StartHandover);
        let waited = Facts {
            handing_over_for: Some(Duration::from_secs(6)),
            ..preferred_holder
        };
        assert_eq!(decide(&waited), Action::HandOver);
        // Released: it neither takes the free key again nor asks for it back.
        let after = Facts {
            mine: false,
            holder_present: false,
            handing_over_for: None,
            ..preferred_holder
        };
        assert_eq!(decide(&after), Action::Nothing);
        let backup_holds = Facts {
            holder_present: true,
            ..after
        };
        assert_eq!(decide(&backup_holds), Action::Nothing, "no ask-back");
        // The backup takes the free key although a request is pending: it is the operator's.
        let backup = Facts {
            preferred: false,
            moved_off: false,
            operator_asked: true,
            handover_asked: true,
            ..facts()
        };
        assert_eq!(decide(&backup), Action::Acquire);
    }
}
