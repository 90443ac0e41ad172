//! The replay cache of signed token requests: the signature of every signed
//! `POST /v3/auth/tokens` the node accepted, kept until the request's date has left the skew
//! window, so that one signed request yields one token however often it is sent and
//! whichever shard it reaches (docs/auth.md, "Replay").
//!
//! Bounded by `entries_max` (docs/style.md §4): the map is allocated to it at construction,
//! and a full cache refuses with the time until its oldest entry may go, rather than forget
//! an entry early (which would re-open a replay) or grow. Times are parameters (wall-clock
//! milliseconds, the clock signatures are checked against); this module reads no clock.

use std::collections::{BTreeSet, HashMap};

/// Why a signed token request was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayRefusal {
    /// The same signature was admitted before and is still inside its window.
    Seen,
    /// The request is dated before this node started: a previous run may have admitted it,
    /// and that run's cache is gone.
    BeforeStart,
    /// The cache holds `entries_max` live signatures; one may go in `retry_after_ms`.
    Full { retry_after_ms: u64 },
}

pub struct ReplayCache {
    entries_max: usize,
    /// Signature → when it may be forgotten (wall ms).
    forget_at_ms: HashMap<[u8; 32], u64>,
    /// The same entries in the order they may be forgotten.
    by_forget_ms: BTreeSet<(u64, [u8; 32])>,
    /// Requests dated before this second are refused (`ReplayRefusal::BeforeStart`).
    started_unix_s: i64,
}

impl ReplayCache {
    pub fn new(entries_max: usize, started_wall_ms: u64) -> ReplayCache {
        assert!(entries_max > 0, "a replay cache holds at least one entry");
        let started_unix_s = i64::try_from(started_wall_ms / 1000).expect("seconds fit i64");
        ReplayCache {
            entries_max,
            forget_at_ms: HashMap::with_capacity(entries_max),
            by_forget_ms: BTreeSet::new(),
            started_unix_s,
        }
    }

    /// Admits the request with `signature`, dated `dated_unix_s`, accepted while the wall
    /// clock is within `window_s` of its date; refuses a signature already admitted.
    pub fn admit(
        &mut self,
        signature: [u8; 32],
        dated_unix_s: i64,
        window_s: i64,
        now_wall_ms: u64,
    ) -> Result<(), ReplayRefusal> {
        assert!(window_s >= 0, "negative skew window {window_s}");
        self.forget_expired(now_wall_ms);
        if dated_unix_s < self.started_unix_s {
            return Err(ReplayRefusal::BeforeStart);
        }
        if self.forget_at_ms.contains_key(&signature) {
            return Err(ReplayRefusal::Seen);
        }
        if self.forget_at_ms.len() >= self.entries_max {
            let (oldest_ms, _) = self.by_forget_ms.first().expect("a full cache has entries");
            return Err(ReplayRefusal::Full {
                retry_after_ms: oldest_ms.saturating_sub(now_wall_ms).max(1),
            });
        }
        // The verifier accepts the request while now <= date + window (whole seconds), so
        // it is remembered until the second after that has begun.
        let last_s = dated_unix_s.saturating_add(window_s).saturating_add(1);
        let forget_ms = u64::try_from(last_s.max(0))
            .expect("non-negative")
            .saturating_mul(1000);
        self.forget_at_ms.insert(signature, forget_ms);
        self.by_forget_ms.insert((forget_ms, signature));
        assert_eq!(
            self.forget_at_ms.len(),
            self.by_forget_ms.len(),
            "both views agree"
        );
        Ok(())
    }

    /// Live entries (tests and metrics).
    pub fn len(&self) -> usize {
        self.forget_at_ms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.forget_at_ms.is_empty()
    }

    fn forget_expired(&mut self, now_wall_ms: u64) {
        // Bounded by the entries present.
        while let Some(&(forget_ms, signature)) = self.by_forget_ms.first() {
            if forget_ms > now_wall_ms {
                break;
            }
            self.by_forget_ms.pop_first();
            self.forget_at_ms.remove(&signature);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START_MS: u64 = 1_800_000_000_000;
    const START_S: i64 = 1_800_000_000;
    const WINDOW_S: i64 = 300;

    /// Admits signature `byte` (32 copies) dated `dated_s` at `now_ms` and compares.
    fn check(
        cache: &mut ReplayCache,
        byte: u8,
        dated_s: i64,
        now_ms: u64,
        expected: Result<(), ReplayRefusal>,
    ) {
        let got = cache.admit([byte; 32], dated_s, WINDOW_S, now_ms);
        assert_eq!(
            got, expected,
            "signature {byte} dated {dated_s} at {now_ms}"
        );
    }

    #[test]
    fn a_signature_is_admitted_once_until_its_window_ends() {
        let mut cache = ReplayCache::new(4, START_MS);
        check(&mut cache, 1, START_S, START_MS, Ok(()));
        check(
            &mut cache,
            1,
            START_S,
            START_MS + 5,
            Err(ReplayRefusal::Seen),
        );
        // Still refused at the last second the verifier would accept the date in.
        let last_ms = (START_S as u64 + WINDOW_S as u64) * 1000 + 999;
        check(&mut cache, 1, START_S, last_ms, Err(ReplayRefusal::Seen));
        assert_eq!(cache.len(), 1);
        // Afterwards the verifier refuses the date itself, and the entry is gone.
        check(&mut cache, 2, START_S + 400, last_ms + 1, Ok(()));
        assert_eq!(cache.len(), 1, "the expired entry was forgotten");
    }

    #[test]
    fn a_full_cache_refuses_with_the_time_until_room() {
        // Goal: the bound holds and no entry is dropped early. Method: fill a cache of two,
        // ask for a third, then retry after the advised time.
        let mut cache = ReplayCache::new(2, START_MS);
        check(&mut cache, 1, START_S, START_MS, Ok(()));
        check(&mut cache, 2, START_S + 10, START_MS, Ok(()));
        let oldest_ms = (START_S as u64 + WINDOW_S as u64 + 1) * 1000;
        let refused = Err(ReplayRefusal::Full {
            retry_after_ms: oldest_ms - START_MS,
        });
        check(&mut cache, 3, START_S, START_MS, refused);
        check(&mut cache, 1, START_S, START_MS, Err(ReplayRefusal::Seen));
        check(&mut cache, 3, START_S + 300, oldest_ms, Ok(()));
        check(
            &mut cache,
            2,
            START_S + 10,
            oldest_ms,
            Err(ReplayRefusal::Seen),
        );
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn requests_dated_before_the_start_are_refused() {
        // Goal: a request a previous run admitted (its cache is lost) is not admitted again.
        let mut cache = ReplayCache::new(2, START_MS + 999);
        check(
            &mut cache,
            1,
            START_S - 1,
            START_MS + 999,
            Err(ReplayRefusal::BeforeStart),
        );
        check(&mut cache, 1, START_S, START_MS + 999, Ok(()));
    }
}
