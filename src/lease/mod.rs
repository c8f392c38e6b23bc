//! The writer lease in etcd: one task per instance in a writer group (`writer_group`). It asks
//! the judge whether the instance's own policy passes *without* the lease, and from that and
//! what etcd holds it acquires the group's key (only when nobody holds it), keeps it alive,
//! releases it when the policy fails, and hands it to the group's preferred writer when that
//! one asks. What it knows is published as a [`LeaseView`] that the poller copies into each
//! sample, so `writer_lease` is judged like every other check, from memory.
//!
//! Keys, under `<etcd_prefix>/<group>/`: `writer` (the holder, attached to its guard's lease),
//! `handover` (a preferred instance asking for the writes back, attached to its lease) and
//! `released` (the position the last holder handed over at: it stays until a holder has
//! applied it, or an operator waives it with `replguard lease waive`). Safety does not rest on
//! this task being prompt: the check fences by time from the last keep-alive etcd acknowledged.

mod decide;

use crate::config::coordination::Coordination;
use crate::config::InstanceConfig;
use crate::hub::events::{Event, Events, Kind};
use crate::policy::{evidence, Judge, Thresholds};
use crate::snapshot::lease::{Held, Holder, LeaseView, Released};
use crate::snapshot::Snapshot;
use crate::units::unix_ms;
use decide::{decide, Action, Facts};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, Txn, TxnOp, TxnOpResponse,
};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Everything one instance's lease task owns.
pub struct LeaseTask {
    pub instance: InstanceConfig,
    pub coordination: Coordination,
    /// How often the poller samples: the task acts at least this often.
    pub interval: Duration,
    pub judges: watch::Receiver<Arc<Judge>>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// The only sender of this instance's lease view.
    pub tx: watch::Sender<LeaseView>,
    pub events: Arc<Events>,
}

/// The view before anything is known: no holder, not mine, etcd not asked yet.
pub fn initial_view(group: &str, c: &Coordination) -> LeaseView {
    LeaseView {
        group: group.to_string(),
        holder: None,
        mine: None,
        handing_over: None,
        must_apply: None,
        etcd_error: Some(("not asked yet".into(), SystemTime::now())),
        lease_ttl: c.lease_ttl,
        fence_margin: c.fence_margin(),
        handover_delay: c.handover_delay,
    }
}

/// What etcd holds for `group` as one that holds nothing sees it: the holder, or why it is not
/// known. For a one-shot `replguard check`, which holds no lease and so never passes
/// `writer_lease` (only the running guard can take writes for an instance in a writer group).
pub async fn outsider_view(group: &str, c: &Coordination) -> LeaseView {
    let mut view = initial_view(group, c);
    let read = async {
        let mut client = connect_one(c, &mut 0).await?;
        let got = client.get(c.writer_key(group), None).await?;
        Ok::<_, etcd_client::Error>(
            got.kvs()
                .first()
                .and_then(|kv| serde_json::from_slice::<Holder>(kv.value()).ok()),
        )
    };
    match tokio::time::timeout(c.lease_ttl / 2, read).await {
        Ok(Ok(holder)) => {
            view.holder = holder;
            view.etcd_error = None;
        }
        Ok(Err(e)) => view.etcd_error = Some((e.to_string(), SystemTime::now())),
        Err(_) => view.etcd_error = Some(("no answer".into(), SystemTime::now())),
    }
    view
}

/// Who asked for the writes to move (the value of `<prefix>/<group>/handover`): a preferred
/// instance asking for them back (`from` empty), or an operator moving them off `from`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HandoverRequest {
    pub by: String,
    #[serde(default)]
    pub from: Option<String>,
}

/// `by` of a request made with `replguard lease handover`.
pub const OPERATOR: &str = "operator";

/// A lease this task holds in etcd (for the writer key, or for a handover request).
struct Granted {
    id: i64,
    /// The keep-alive stream; `None` once a keep-alive on it failed or went unanswered: a
    /// reply arriving later could be taken for the next request's, so it is never reused.
    stream: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
}

/// What the task carries from tick to tick.
struct State {
    client: Option<Client>,
    writer: Option<Granted>,
    request: Option<Granted>,
    view: LeaseView,
    /// Consecutive new polls on which the policy failed.
    failing_polls: u32,
    last_polls: u64,
    /// etcd rounds failed in a row.
    failures: u32,
    /// `etcd unreachable` was logged and `etcd reachable` has not been since.
    logged_unreachable: bool,
    /// The revision of the `released` key behind `view.must_apply`: the key is deleted at that
    /// revision once applied, and its deletion by anyone else is an operator's waiver.
    released_rev: i64,
    /// The etcd member in use (an index into `etcd_endpoints`), or the next to try.
    endpoint: usize,
}

/// The value this instance writes into the writer key.
fn holder_value(task: &LeaseTask) -> Holder {
    Holder {
        guard: task.coordination.guard.clone(),
        instance: task.instance.name.clone(),
        since_unix_ms: unix_ms(SystemTime::now()),
    }
}

/// Runs until `shutdown`, then releases what it holds (best effort, bounded).
pub async fn run(task: LeaseTask, shutdown: CancellationToken) {
    let group = task
        .instance
        .writer
        .as_ref()
        .map(|w| w.group.clone())
        .unwrap_or_default();
    let mut state = State {
        client: None,
        writer: None,
        request: None,
        view: initial_view(&group, &task.coordination),
        failing_polls: 0,
        last_polls: 0,
        failures: 0,
        logged_unreachable: false,
        released_rev: 0,
        endpoint: 0,
    };
    // Keep-alives three times per TTL at least, and no rarer than the polls.
    let tick = (task.coordination.lease_ttl / 4).min(task.interval.max(Duration::from_millis(100)));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let bound = task.coordination.lease_ttl / 4;
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = tokio::time::timeout(bound, step(&task, &mut state, &group)) => r,
        };
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!(
                "no answer within {}",
                crate::units::fmt_duration(bound)
            )),
        };
        note_etcd(&task, &mut state, error);
        task.tx.send_replace(state.view.clone());
    }
    if state.writer.is_some() {
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            release(&task, &mut state, &group, None),
        )
        .await;
        record(&task, Kind::LeaseReleased, "the guard stops".into());
    }
    task.tx.send_replace(LeaseView {
        mine: None,
        ..state.view.clone()
    });
}

/// Rounds in a row that must fail before etcd counts as unreachable: with a member down, a
/// request now and then lands on it and fails while the others answer.
const UNREACHABLE_AFTER: u32 = 3;

/// Keeps the etcd error in the view and logs its changes, once each: unreachable after
/// [`UNREACHABLE_AFTER`] failed rounds, reachable again at the first success after that.
fn note_etcd(task: &LeaseTask, state: &mut State, error: Option<String>) {
    match error {
        None => {
            state.failures = 0;
            if state.view.etcd_error.take().is_some() && state.logged_unreachable {
                record(task, Kind::EtcdReachable, "etcd answers".into());
            }
            state.logged_unreachable = false;
        }
        Some(e) => {
            // The member in use failed: the next connection starts at the one after it.
            if state.client.take().is_some() {
                state.endpoint = (state.endpoint + 1) % task.coordination.endpoints.len().max(1);
            }
            state.failures += 1;
            if state.failures < UNREACHABLE_AFTER {
                return;
            }
            if !state.logged_unreachable {
                record(task, Kind::EtcdUnreachable, e.clone());
                state.logged_unreachable = true;
            }
            let since = match &state.view.etcd_error {
                Some((_, since)) if state.failures > UNREACHABLE_AFTER => *since,
                _ => SystemTime::now(),
            };
            state.view.etcd_error = Some((e, since));
        }
    }
}

fn record(task: &LeaseTask, kind: Kind, reason: String) {
    task.events.record(Event::new(
        SystemTime::now(),
        &task.instance.name,
        kind,
        reason,
    ));
}

/// One round: read etcd, decide, act.
async fn step(task: &LeaseTask, state: &mut State, group: &str) -> Result<(), etcd_client::Error> {
    if state.client.is_none() {
        state.client = Some(connect_one(&task.coordination, &mut state.endpoint).await?);
    }
    let c = &task.coordination;
    // Renew first: the fence counts from the last acknowledged keep-alive.
    if state.writer.is_some() {
        match renew(state, c.lease_ttl / 8).await? {
            Renewal::Confirmed(sent) => {
                if let Some(held) = state.view.mine.as_mut() {
                    held.confirmed_at = sent;
                }
            }
            Renewal::Expired => {
                state.writer = None;
                state.view.mine = None;
                state.view.handing_over = None;
                record(task, Kind::LeaseLost, "etcd expired the lease".into());
            }
        }
    }
    if let (Some(g), Some(client)) = (state.request.as_mut(), state.client.as_mut()) {
        keep_alive(client, g, c.lease_ttl / 8).await?;
    }
    let client = state.client.as_mut().expect("connected above");
    let writer = client.get(c.writer_key(group), None).await?;
    let holder: Option<Holder> = writer
        .kvs()
        .first()
        .and_then(|kv| serde_json::from_slice(kv.value()).ok());
    let request: Option<HandoverRequest> = client
        .get(c.handover_key(group), None)
        .await?
        .kvs()
        .first()
        .map(|kv| serde_json::from_slice(kv.value()).unwrap_or_default());
    let by_operator = request.as_ref().is_some_and(|r| r.by == OPERATOR);
    // A preferred instance asking for the writes back (an operator's request is told apart).
    let handover_asked = request.is_some() && !by_operator;
    let moved_off = by_operator
        && request.as_ref().and_then(|r| r.from.as_deref()) == Some(task.instance.name.as_str());
    let mine_in_etcd = holder
        .as_ref()
        .is_some_and(|h| h.guard == c.guard && h.instance == task.instance.name);
    if state.view.mine.is_some() && !mine_in_etcd {
        state.writer = None;
        state.view.mine = None;
        state.view.handing_over = None;
        record(
            task,
            Kind::LeaseLost,
            match &holder {
                Some(h) => format!("the key now names {} (guard {})", h.instance, h.guard),
                None => "the key is gone".into(),
            },
        );
    }
    state.view.holder = holder.clone();
    if state.view.mine.is_none() {
        state.view.must_apply = None;
    }

    let snapshot = task.snapshots.borrow().clone();
    if state.view.must_apply.is_some() {
        settle_released(task, state, group, &snapshot).await?;
    }
    let judge = task.judges.borrow().clone();
    let now = Instant::now();
    let subject = crate::policy::Subject {
        judge_lease: false,
        ..task.instance.subject()
    };
    let passes = judge
        .evaluate(subject, &snapshot, None, &Thresholds::default(), now)
        .is_some_and(|v| v.healthy);
    if snapshot.polls != state.last_polls {
        state.last_polls = snapshot.polls;
        state.failing_polls = if passes { 0 } else { state.failing_polls + 1 };
    }
    let preferred = task.instance.writer.as_ref().is_some_and(|w| w.preferred);
    let action = decide(&Facts {
        mine: state.view.mine.is_some(),
        holder_present: holder.is_some(),
        passes,
        failing_polls: state.failing_polls,
        preferred,
        handover_asked,
        moved_off,
        operator_asked: by_operator && !moved_off,
        asking: state.request.is_some(),
        handing_over_for: state
            .view
            .handing_over
            .map(|(at, _)| now.saturating_duration_since(at)),
        handover_wait: c.handover_delay + task.interval,
    });
    match action {
        Action::Nothing => {}
        Action::Acquire => acquire(task, state, group).await?,
        Action::Release => {
            release(task, state, group, None).await?;
            record(
                task,
                Kind::LeaseReleased,
                format!("its policy failed on {} polls", state.failing_polls),
            );
        }
        Action::StartHandover => {
            state.view.handing_over = Some((now, SystemTime::now()));
        }
        Action::HandOver => {
            // A holder still waiting for its predecessor's position took no writes: the
            // `released` key keeps that position for the next holder (overwriting it with this
            // one's would let the next holder skip the predecessor's last writes). Otherwise it
            // records its own; while that is unknown it waits (a failing policy releases it).
            let position = if state.view.must_apply.is_some() {
                None
            } else {
                match snapshot
                    .sample
                    .as_ref()
                    .and_then(|s| s.outcome.as_ref().ok())
                    .and_then(evidence::writer_position)
                {
                    Some(p) => Some(p),
                    None => return Ok(()),
                }
            };
            release(task, state, group, position).await?;
            let why = if moved_off {
                "an operator moved the writes off it (replguard lease handover)"
            } else {
                "the preferred writer asked"
            };
            record(task, Kind::LeaseHandedOver, why.into());
        }
        Action::AskBack => {
            let client = state.client.as_mut().expect("connected");
            let id = client
                .lease_grant(c.lease_ttl.as_secs() as i64, None)
                .await?
                .id();
            client
                .put(
                    c.handover_key(group),
                    serde_json::to_vec(&HandoverRequest {
                        by: task.instance.name.clone(),
                        from: None,
                    })
                    .expect("serialises"),
                    Some(PutOptions::new().with_lease(id)),
                )
                .await?;
            let pair = client.lease_keep_alive(id).await?;
            state.request = Some(Granted {
                id,
                stream: Some(pair),
            });
        }
        Action::StopAsking => drop_request(state).await?,
    }
    Ok(())
}

enum Renewal {
    /// etcd acknowledged a keep-alive sent at this moment.
    Confirmed(Instant),
    /// etcd no longer knows the lease.
    Expired,
}

/// One keep-alive of the writer lease.
async fn renew(state: &mut State, patience: Duration) -> Result<Renewal, etcd_client::Error> {
    let client = state.client.as_mut().expect("connected");
    let g = state.writer.as_mut().expect("holding");
    keep_alive(client, g, patience).await
}

/// One keep-alive of `g`: on its stream, answered within `patience`, or else on a new stream
/// on `client`, whose opening is itself a keep-alive. A stream that failed, ended or did not
/// answer in time is dropped: its connection may be gone, and a late reply on it would be
/// taken for a later request's.
async fn keep_alive(
    client: &mut Client,
    g: &mut Granted,
    patience: Duration,
) -> Result<Renewal, etcd_client::Error> {
    if let Some((keeper, stream)) = g.stream.as_mut() {
        let sent = Instant::now();
        let answer = tokio::time::timeout(patience, async {
            keeper.keep_alive().await?;
            stream.message().await
        })
        .await;
        match answer {
            Ok(Ok(Some(r))) if r.ttl() > 0 => return Ok(Renewal::Confirmed(sent)),
            Ok(Ok(Some(_))) => return Ok(Renewal::Expired),
            _ => g.stream = None,
        }
    }
    let sent = Instant::now();
    match client.lease_keep_alive(g.id).await {
        Ok(pair) => {
            g.stream = Some(pair);
            Ok(Renewal::Confirmed(sent))
        }
        Err(etcd_client::Error::LeaseKeepAliveError(m)) if m.contains("not found") => {
            Ok(Renewal::Expired)
        }
        Err(e) => Err(e),
    }
}

async fn drop_request(state: &mut State) -> Result<(), etcd_client::Error> {
    if let (Some(g), Some(client)) = (state.request.take(), state.client.as_mut()) {
        client.lease_revoke(g.id).await?;
    }
    Ok(())
}

/// Writes the writer key with a new lease if nobody holds it, and takes what the previous
/// holder released at, in one transaction.
async fn acquire(
    task: &LeaseTask,
    state: &mut State,
    group: &str,
) -> Result<(), etcd_client::Error> {
    let c = &task.coordination;
    let client = state.client.as_mut().expect("connected");
    let sent = Instant::now();
    let id = client
        .lease_grant(c.lease_ttl.as_secs() as i64, None)
        .await?
        .id();
    let key = c.writer_key(group);
    let released_key = c.released_key(group);
    let value = serde_json::to_vec(&holder_value(task)).expect("serialises");
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(key, value, Some(PutOptions::new().with_lease(id))),
            TxnOp::get(released_key, None),
        ]);
    let r = client.txn(txn).await?;
    if !r.succeeded() {
        client.lease_revoke(id).await?;
        return Ok(());
    }
    let released: Option<(Released, i64)> = r.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(g) => g
            .kvs()
            .first()
            .and_then(|kv| Some((serde_json::from_slice(kv.value()).ok()?, kv.mod_revision()))),
        _ => None,
    });
    let (released, rev) = match released {
        Some((r, rev)) => (Some(r), rev),
        None => (None, 0),
    };
    state.released_rev = rev;
    let pair = client.lease_keep_alive(id).await?;
    state.writer = Some(Granted {
        id,
        stream: Some(pair),
    });
    state.view.mine = Some(Held {
        acquired_at: sent,
        acquired_wall: SystemTime::now(),
        confirmed_at: sent,
    });
    state.view.handing_over = None;
    state.view.must_apply = released.filter(|r| !r.position.is_empty());
    record(
        task,
        Kind::LeaseAcquired,
        match &state.view.must_apply {
            Some(r) => format!(
                "from {} (guard {}), to apply {}",
                r.instance, r.guard, r.position
            ),
            None => "the key was free".into(),
        },
    );
    drop_request(state).await?;
    Ok(())
}

/// While the holder waits for the position its predecessor released at: once the sample shows
/// it applied, deletes the `released` key (at the revision it took) and stops waiting; when the
/// key is gone or rewritten without it, an operator waived the position
/// (`replguard lease waive`): it stops waiting and records so.
async fn settle_released(
    task: &LeaseTask,
    state: &mut State,
    group: &str,
    snapshot: &Snapshot,
) -> Result<(), etcd_client::Error> {
    let Some(released) = state.view.must_apply.clone() else {
        return Ok(());
    };
    let key = task.coordination.released_key(group);
    let client = state.client.as_mut().expect("connected");
    let applied = snapshot
        .sample
        .as_ref()
        .and_then(|s| s.outcome.as_ref().ok())
        .is_some_and(|s| evidence::has_applied(s, &released.position));
    if applied {
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                state.released_rev,
            )])
            .and_then([TxnOp::delete(key, None)]);
        client.txn(txn).await?;
        state.view.must_apply = None;
        return Ok(());
    }
    let now = client.get(key, None).await?;
    let rev = now.kvs().first().map(|kv| kv.mod_revision());
    if rev != Some(state.released_rev) {
        state.view.must_apply = None;
        record(
            task,
            Kind::LeaseWaived,
            format!(
                "an operator waived {} released by {} (guard {}): answering without it",
                released.position, released.instance, released.guard
            ),
        );
    }
    Ok(())
}

/// Deletes the writer key if it is still this instance's (recording `position` for the
/// successor when handing over), then revokes the lease.
async fn release(
    task: &LeaseTask,
    state: &mut State,
    group: &str,
    position: Option<String>,
) -> Result<(), etcd_client::Error> {
    let c = &task.coordination;
    let Some(g) = state.writer.take() else {
        return Ok(());
    };
    state.view.mine = None;
    state.view.handing_over = None;
    let Some(client) = state.client.as_mut() else {
        return Ok(());
    };
    let key = c.writer_key(group);
    let mut ops = vec![TxnOp::delete(key.clone(), None)];
    if let Some(position) = position {
        let released = Released {
            guard: c.guard.clone(),
            instance: task.instance.name.clone(),
            position,
        };
        ops.push(TxnOp::put(
            c.released_key(group),
            serde_json::to_vec(&released).expect("serialises"),
            None,
        ));
    }
    let txn = Txn::new()
        .when([Compare::lease(key, CompareOp::Equal, g.id)])
        .and_then(ops);
    client.txn(txn).await?;
    client.lease_revoke(g.id).await?;
    Ok(())
}

/// A client for one etcd member: the first, round robin from `next` on, that answers a
/// linearizable read under the prefix (so it is up and in the quorum) within its share of a
/// round. One member at a time, as etcd's own client does: a client balanced over every
/// member sends requests to a dead one now and then (etcd-client #39), and a holder would
/// then miss renewals while two members answer. `next` is left at the member to try after
/// this one, so a round cut short still moves on; on success it names the member in use.
pub(crate) async fn connect_one(
    c: &Coordination,
    next: &mut usize,
) -> Result<Client, etcd_client::Error> {
    let n = c.endpoints.len().max(1);
    let share = c.lease_ttl / 4 / n as u32;
    let mut last = None;
    for i in 0..n {
        let idx = (*next + i) % n;
        *next = (idx + 1) % n;
        let attempt = async {
            let mut client = connect(c, &c.endpoints[idx..=idx]).await?;
            client
                .get(
                    format!("{}/", c.prefix),
                    Some(GetOptions::new().with_prefix().with_count_only()),
                )
                .await?;
            Ok::<_, etcd_client::Error>(client)
        };
        match tokio::time::timeout(share, attempt).await {
            Ok(Ok(client)) => {
                *next = idx;
                return Ok(client);
            }
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(etcd_client::Error::IoError(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "{}: no answer within {}",
                        c.endpoints[idx],
                        crate::units::fmt_duration(share)
                    ),
                )))
            }
        }
    }
    Err(last
        .unwrap_or_else(|| etcd_client::Error::InvalidArgs("no etcd_endpoints configured".into())))
}

/// A client for `endpoints` with the section's timeouts, auth and TLS.
async fn connect(c: &Coordination, endpoints: &[String]) -> Result<Client, etcd_client::Error> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(c.lease_ttl / 4)
        .with_timeout(c.lease_ttl / 4);
    if let Some((user, password)) = &c.auth {
        options = options.with_user(user.clone(), password.expose().to_string());
    }
    if let Some(tls) = &c.tls {
        let ca = std::fs::read(&tls.ca_file).map_err(etcd_client::Error::IoError)?;
        let mut t =
            etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(ca));
        if let Some((cert, key)) = &tls.identity {
            let (cert, key) = (
                std::fs::read(cert).map_err(etcd_client::Error::IoError)?,
                std::fs::read(key).map_err(etcd_client::Error::IoError)?,
            );
            t = t.identity(etcd_client::Identity::from_pem(cert, key));
        }
        options = options.with_tls(t);
    }
    Client::connect(endpoints, Some(options)).await
}
