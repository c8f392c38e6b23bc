//! One-shot evaluation for `replguard check` and `replguard checklist`: one poll with the
//! daemon's own connection setup, the daemon's remembered evidence (its state file, read and
//! never written: the daemon owns it) restored by the poll step as the poller restores it, and
//! the verdict from the config's judge, as HTTP would answer it.

use crate::config::Config;
use crate::config::InstanceConfig;
use crate::policy::siblings::{self, Other};
use crate::policy::{Thresholds, Verdict};
use crate::poll::{self, Carry};
use crate::probe::SourceReads;
use crate::snapshot::sample::Sample;
use crate::snapshot::Snapshot;

/// A one-shot check that cannot run as asked: a usage error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("{config}: name an instance with --instance (configured: {configured})")]
    NoInstance { config: String, configured: String },
    #[error("no policy named {name:?} (known: {known})")]
    NoPolicy { name: String, known: String },
}

/// What one check found: the instance's name and its verdict.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub instance: String,
    pub verdict: Verdict,
}

/// Polls `instance` (or the only one) once and evaluates `policy` (or its own) on it.
pub async fn once(
    config: &Config,
    instance: Option<&str>,
    policy: Option<&str>,
) -> Result<Outcome, CheckError> {
    let Some(inst) = config.named_or_only(instance) else {
        let names: Vec<&str> = config.instances.iter().map(|i| i.name.as_str()).collect();
        return Err(CheckError::NoInstance {
            config: config.path.display().to_string(),
            configured: names.join(", "),
        });
    };
    if let Some(p) = policy {
        if config.policies.get(p).is_none() {
            let known: Vec<&str> = config.policies.names().collect();
            return Err(CheckError::NoPolicy {
                name: p.to_string(),
                known: known.join(", "),
            });
        }
    }
    let (mut probe, mut source) =
        crate::poll::fleet::connections(config, inst, SourceReads::default());
    let mut sample =
        poll::poll_once(&mut probe, &mut source, inst.maintenance_file.as_deref()).await;
    if let (Some(w), Some(c)) = (&inst.writer, &config.coordination) {
        sample.lease = Some(crate::lease::outsider_view(&w.group, c).await);
    }
    probe.close().await;
    source.close().await;
    let pending = config.state_dir.as_deref().and_then(|dir| {
        crate::poll::store::load(&crate::poll::store::file_for(dir, &inst.name))
            .ok()
            .flatten()
    });
    let judge = config.judge();
    let one_shot = Snapshot {
        one_shot: true,
        ..Snapshot::default()
    };
    let mut carry = Carry {
        pending,
        ..Carry::default()
    };
    let now = tokio::time::Instant::now().into_std();
    let step = poll::step(&judge, inst, &one_shot, sample, &mut carry, now);
    // `most_advanced` compares with the other replicas of the same source: poll them too.
    let wants_siblings = judge.policies().uses(
        policy.unwrap_or(&inst.policy),
        crate::policy::Rule::MostAdvanced,
    );
    let others = if wants_siblings {
        poll_others(config, inst).await
    } else {
        Vec::new()
    };
    let others: Vec<Other<'_>> = others
        .iter()
        .map(|(o, sample)| Other {
            name: &o.name,
            state: sample.outcome.as_ref().ok(),
            unusable: None,
            same_configured_source: inst.same_configured_source(o),
        })
        .collect();
    let me = step
        .snapshot
        .sample
        .as_ref()
        .and_then(|s| s.outcome.as_ref().ok());
    let siblings = me.map_or_else(Vec::new, |me| siblings::select(me, &others));
    let verdict = judge
        .evaluate(
            crate::policy::Subject {
                siblings: &siblings,
                ..inst.subject()
            },
            &step.snapshot,
            policy,
            &Thresholds::default(),
            now,
        )
        .expect("the policy was looked up above and the instance's own is validated");
    Ok(Outcome {
        instance: inst.name.clone(),
        verdict,
    })
}

/// Polls every other instance of `config` once (at most [`SIBLING_POLLS`] at a time, each
/// bounded by `timeout` as the daemon's are): the siblings `most_advanced` compares with.
async fn poll_others<'c>(
    config: &'c Config,
    inst: &InstanceConfig,
) -> Vec<(&'c InstanceConfig, Sample)> {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(SIBLING_POLLS));
    let mut set = tokio::task::JoinSet::new();
    for (i, other) in config.instances.iter().enumerate() {
        if other.name == inst.name {
            continue;
        }
        let (mut probe, mut source) =
            crate::poll::fleet::connections(config, other, SourceReads::default());
        let permits = permits.clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let sample = poll::poll_once(&mut probe, &mut source, None).await;
            probe.close().await;
            source.close().await;
            (i, sample)
        });
    }
    let mut out = Vec::new();
    while let Some(done) = set.join_next().await {
        if let Ok((i, sample)) = done {
            out.push((&config.instances[i], sample));
        }
    }
    out.sort_by_key(|(o, _)| config.instances.iter().position(|i| i.name == o.name));
    out
}

/// Siblings `replguard checklist` polls at once.
const SIBLING_POLLS: usize = 16;
