//! The pause between connection attempts to a peer that is down: exponential, from
//! `backoff_ms_min` doubling to `backoff_ms_max`, back to the minimum after a success.
//! Deterministic (no jitter): the nodes of a cluster are few, so their reconnections
//! cannot flood each other.

/// The state of one peer's back-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    ms_min: u64,
    ms_max: u64,
    next_ms: u64,
}

impl Backoff {
    /// Starts at `ms_min`, never waits longer than `ms_max`.
    pub fn new(ms_min: u64, ms_max: u64) -> Backoff {
        assert!(ms_min > 0, "a back-off of zero would spin");
        assert!(ms_min <= ms_max, "back-off bounds out of order");
        Backoff {
            ms_min,
            ms_max,
            next_ms: ms_min,
        }
    }

    /// The pause after one more failure.
    pub fn next_ms(&mut self) -> u64 {
        let pause_ms = self.next_ms;
        self.next_ms = self.next_ms.saturating_mul(2).min(self.ms_max);
        assert!(pause_ms <= self.ms_max, "pause over the bound");
        pause_ms
    }

    /// After a success: the next failure pauses `ms_min` again.
    pub fn reset(&mut self) {
        self.next_ms = self.ms_min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_bound_and_reset() {
        let mut backoff = Backoff::new(50, 300);
        let pauses: Vec<u64> = (0..6).map(|_| backoff.next_ms()).collect();
        assert_eq!(pauses, [50, 100, 200, 300, 300, 300]);
        backoff.reset();
        assert_eq!(backoff.next_ms(), 50);
        let mut huge = Backoff::new(u64::MAX / 2 + 1, u64::MAX);
        huge.next_ms();
        assert_eq!(huge.next_ms(), u64::MAX, "saturates");
    }
}
