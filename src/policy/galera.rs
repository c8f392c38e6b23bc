//! The `galera` rule: is this Galera node fit for traffic? One line per condition, each naming
//! the status variable it judges, so the reason phrase says what failed
//! (`wsrep_cluster_status non-Primary, want Primary`).

use super::limits::Limits;
use super::verdict::{on_off, Check};
use crate::snapshot::sample::{GaleraState, ServerState};

/// `wsrep_local_state` values.
const DONOR_DESYNCED: u32 = 2;
const SYNCED: u32 = 4;

/// The lines of the `galera` rule for `state`; one failing `wsrep_on` line on a server that is
/// not a Galera node.
pub(super) fn galera_checks(state: &ServerState, limits: &Limits) -> Vec<Check> {
    let Some(g) = &state.galera else {
        return vec![Check::fact(
            "wsrep_on",
            false,
            "OFF: not a Galera node (use another policy for it)".to_string(),
        )
        .with_fix("point the galera policy at Galera nodes only")];
    };
    // The component first: a node cut off from the Primary component is the root cause of the
    // rest (not ready, not Synced), and the reason phrase names the first failure.
    let mut out = vec![
        Check::want("wsrep_cluster_status", g.cluster_status.clone(), "Primary").with_fix(
            "the node is in a minority partition: it refuses work until it rejoins the Primary \
             component",
        ),
        local_state(g, limits),
        Check::want("wsrep_ready", on_off(g.ready), "ON")
            .with_fix("the node does not accept queries: see wsrep_cluster_status and the log"),
        Check::want("wsrep_connected", on_off(g.connected), "ON")
            .with_fix("the node has no connection to the group: check the network and gcomm"),
        Check::want("wsrep_reject_queries", g.reject_queries.clone(), "NONE")
            .with_fix("SET GLOBAL wsrep_reject_queries = NONE once the node may serve again"),
    ];
    if let Some(mode) = &g.pxc_maint_mode {
        out.push(
            Check::want("pxc_maint_mode", mode.clone(), "DISABLED")
                .with_fix("SET GLOBAL pxc_maint_mode = DISABLED once maintenance is over"),
        );
    }
    out.push(if limits.available_when_readonly {
        Check::fact(
            "read_only",
            true,
            format!("{} (available_when_readonly)", on_off(state.read_only)),
        )
    } else {
        Check::want("read_only", on_off(state.read_only), "OFF")
            .with_fix("SET GLOBAL read_only = OFF, or available_when_readonly = true")
    });
    if let Some(min) = limits.min_cluster_size {
        let ok = g.cluster_size >= min;
        out.push(Check::fact(
            "wsrep_cluster_size",
            ok,
            format!("{} {} {min}", g.cluster_size, if ok { ">=" } else { "<" }),
        ));
    }
    if let Some(max) = limits.max_recv_queue {
        let ok = g.recv_queue <= max;
        out.push(
            Check::fact(
                "wsrep_local_recv_queue",
                ok,
                format!("{} {} {max}", g.recv_queue, if ok { "<=" } else { ">" }),
            )
            .with_fix("the applier is behind: wait, or find what slows it"),
        );
    }
    if let Some(max) = limits.max_flow_control_paused {
        let ok = g.flow_control_paused <= max.value();
        out.push(Check::fact(
            "wsrep_flow_control_paused",
            ok,
            format!(
                "{:.3} {} {:.3}",
                g.flow_control_paused,
                if ok { "<=" } else { ">" },
                max.value()
            ),
        ));
    }
    out
}

/// `wsrep_local_state`: Synced passes; Donor/Desynced only with `available_when_donor` and when
/// the donor does not reject queries during SST; Joining, Joined and Initialized never.
fn local_state(g: &GaleraState, limits: &Limits) -> Check {
    let measured = format!("{} ({})", g.local_state_comment, g.local_state);
    match g.local_state {
        SYNCED => Check::fact("wsrep_local_state", true, measured),
        DONOR_DESYNCED if limits.available_when_donor && !g.sst_donor_rejects_queries => {
            Check::fact(
                "wsrep_local_state",
                true,
                format!("{measured} (available_when_donor)"),
            )
        }
        DONOR_DESYNCED if limits.available_when_donor => Check::fact(
            "wsrep_local_state",
            false,
            format!("{measured}, and wsrep_sst_donor_rejects_queries is ON"),
        ),
        DONOR_DESYNCED => Check::fact(
            "wsrep_local_state",
            false,
            format!("{measured}, want Synced (4)"),
        )
        .with_fix("SET GLOBAL wsrep_desync = OFF after maintenance, or available_when_donor"),
        _ => Check::fact(
            "wsrep_local_state",
            false,
            format!("{measured}, want Synced (4)"),
        )
        .with_fix("the node is joining or catching up: wait until it is Synced"),
    }
}
