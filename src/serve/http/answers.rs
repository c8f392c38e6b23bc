//! The HTTP check answers reused under load: one [`AnswerCache`] per instance, owned by the
//! HTTP routes (the hub knows nothing of HTTP).

use crate::policy::{Freshness, Thresholds};
use crate::snapshot::Snapshot;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One instance's rendered check answers, reused while its snapshot is the same one and for at
/// most [`AnswerCache::TTL`]: under load, HAProxies asking the same question share one
/// evaluation. An answer whose sample could turn stale within the TTL is never cached, so caching
/// cannot turn a failing answer into a passing one; the age shown may lag by up to the TTL.
///
/// A short list, not a map: an instance is asked a handful of distinct questions (policy, format,
/// request thresholds), and comparing a few keys costs less than hashing one. A std `Mutex` is
/// fine: it is held only to look up or insert, never across an `.await`.
#[derive(Default)]
pub struct AnswerCache {
    entries: std::sync::Mutex<Vec<(AnswerKey, Answer)>>,
}

/// Everything an answer depends on besides the instance, the snapshot and the clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerKey {
    /// The policy asked for, by its position among the known policies; `None`: the instance's
    /// own. (An unknown policy is a 404 and never cached.)
    pub policy: Option<usize>,
    pub json: bool,
    /// Compared last (field order is comparison order): the cheap fields rule out most entries.
    pub thresholds: Thresholds,
}

/// What a request reuses from a cached answer.
#[derive(Clone)]
pub struct Rendered {
    pub status: warp::http::StatusCode,
    pub reason: Option<hyper::ext::ReasonPhrase>,
    /// Shared, not copied, by every request that reuses it.
    pub body: warp::hyper::body::Bytes,
}

/// A rendered answer and what it was computed from.
pub struct Answer {
    /// The snapshot it judged: a new poll makes it obsolete.
    pub snapshot: Arc<Snapshot>,
    pub at: Instant,
    pub rendered: Rendered,
}

impl AnswerCache {
    /// One empty cache for each of `n` instances, by [`crate::hub::Watched::index`].
    pub fn per_instance(n: usize) -> Arc<[AnswerCache]> {
        (0..n).map(|_| AnswerCache::default()).collect()
    }

    /// How long an answer is reused at most.
    pub const TTL: Duration = Duration::from_millis(100);
    /// Request thresholds are chosen by clients: bound the number of distinct answers kept.
    const MAX_ENTRIES: usize = 16;

    /// The cached answer for `key`, if it judged `snapshot` less than the TTL before `now`.
    pub fn get(&self, key: &AnswerKey, snapshot: &Arc<Snapshot>, now: Instant) -> Option<Rendered> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, a)| a)
            .filter(|a| Arc::ptr_eq(&a.snapshot, snapshot))
            .filter(|a| now.saturating_duration_since(a.at) < Self::TTL)
            .map(|a| a.rendered.clone())
    }

    /// Keeps `answer` unless its sample could turn stale before the TTL runs out. When full,
    /// the oldest answer makes room.
    pub fn put(&self, key: AnswerKey, answer: Answer, freshness: Freshness) {
        if freshness.remaining().is_none_or(|left| left <= Self::TTL) {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(same) = entries.iter_mut().find(|(k, _)| *k == key) {
            same.1 = answer;
        } else if entries.len() < Self::MAX_ENTRIES {
            entries.push((key, answer));
        } else if let Some(oldest) = entries.iter_mut().min_by_key(|(_, a)| a.at) {
            *oldest = (key, answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Judge, PolicySet};
    use crate::snapshot::sample::fixtures::{replica, snap};

    fn answer(snapshot: &Arc<Snapshot>, at: Instant) -> Answer {
        Answer {
            snapshot: snapshot.clone(),
            at,
            rendered: Rendered {
                status: warp::http::StatusCode::OK,
                reason: None,
                body: warp::hyper::body::Bytes::from_static(b"ok\n"),
            },
        }
    }

    #[test]
    fn answers_are_reused_only_for_the_same_snapshot_within_the_ttl() {
        let now = Instant::now() + Duration::from_secs(60);
        let judge = Judge::new(PolicySet::builtin(), Duration::from_secs(3));
        let key = AnswerKey {
            policy: None,
            json: false,
            thresholds: Thresholds::default(),
        };
        let cache = AnswerCache::default();
        let s1 = Arc::new(snap(Ok(replica()), now, Duration::from_millis(100)));
        cache.put(key.clone(), answer(&s1, now), judge.freshness(&s1, now));
        assert!(cache
            .get(&key, &s1, now + Duration::from_millis(50))
            .is_some());
        assert!(
            cache.get(&key, &s1, now + AnswerCache::TTL).is_none(),
            "expired"
        );
        let s2 = Arc::new(snap(Ok(replica()), now, Duration::ZERO));
        assert!(
            cache.get(&key, &s2, now).is_none(),
            "a new poll makes it obsolete"
        );
        let other = AnswerKey {
            json: true,
            ..key.clone()
        };
        assert!(cache.get(&other, &s1, now).is_none());
        // A sample that could turn stale within the TTL is never cached.
        let old = Arc::new(snap(Ok(replica()), now, Duration::from_millis(2950)));
        cache.put(key.clone(), answer(&old, now), judge.freshness(&old, now));
        assert!(cache.get(&key, &old, now).is_none());
    }

    #[test]
    fn a_full_cache_drops_its_oldest_answer() {
        let now = Instant::now() + Duration::from_secs(60);
        let judge = Judge::new(PolicySet::builtin(), Duration::from_secs(3));
        let s = Arc::new(snap(Ok(replica()), now, Duration::from_millis(100)));
        // Clients choose thresholds: each distinct max_lag is a distinct question.
        let key = |secs: u64| AnswerKey {
            policy: Some(0),
            json: false,
            thresholds: Thresholds {
                max_lag: Some(Duration::from_secs(secs)),
                ..Thresholds::default()
            },
        };
        let cache = AnswerCache::default();
        let n = AnswerCache::MAX_ENTRIES as u64;
        for i in 0..=n {
            let at = now + Duration::from_millis(i);
            cache.put(key(i), answer(&s, at), judge.freshness(&s, at));
        }
        let at = now + Duration::from_millis(n);
        assert!(cache.get(&key(0), &s, at).is_none(), "the oldest made room");
        for i in 1..=n {
            assert!(cache.get(&key(i), &s, at).is_some(), "max_lag {i}s kept");
        }
        // Asking the same question again replaces its answer rather than adding one.
        cache.put(key(n), answer(&s, at), judge.freshness(&s, at));
        assert!(cache.get(&key(1), &s, at).is_some());
    }
}
