//! Queue time: the clock a node gives its engines (leases, delays, long polls, retention).
//!
//! A node reads two clocks: the wall clock (epoch time, which an administrator or NTP may
//! step forwards or backwards at any moment) and a monotonic clock (which never jumps).
//! Queue time is the wall clock read once when the node starts, advanced by the monotonic
//! clock from then on. So, while a node runs:
//!
//! - a step of the wall clock changes nothing: a visibility timeout of 30 s lasts 30 s, a
//!   long poll ends on time, a delay of 10 s is 10 s;
//! - queue time never goes backwards.
//!
//! Across a restart queue time follows the wall clock again (nothing else survives a
//! reboot). Delayed and scheduled messages carry absolute release times, so a wall clock
//! that was stepped forwards while the node was down releases them by the new time, and
//! one stepped backwards holds them longer; leases do not survive a restart anyway.
//!
//! Signatures and tokens are checked against the wall clock itself (a client's date is a
//! wall-clock date), not against queue time.
//!
//! Sans-IO: the driver reads both clocks and passes the readings in. The production
//! driver (server) and the simulator (sim) run this same code.

/// Readings of the node's two clocks, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    /// Epoch milliseconds.
    pub wall_ms: u64,
    /// Milliseconds of a monotonic clock since any fixed point (never decreasing).
    pub mono_ms: u64,
}

/// Queue time of one node run: anchored on the wall clock at start, advanced by the
/// monotonic clock.
#[derive(Clone, Copy, Debug)]
pub struct QueueClock {
    anchor_wall_ms: u64,
    anchor_mono_ms: u64,
}

impl QueueClock {
    /// Anchors queue time on `start`, the readings taken when the node starts.
    pub fn start(start: Reading) -> QueueClock {
        QueueClock {
            anchor_wall_ms: start.wall_ms,
            anchor_mono_ms: start.mono_ms,
        }
    }

    /// Queue time at `reading`, epoch milliseconds. Only `reading.mono_ms` moves it; a
    /// monotonic reading older than the anchor counts as the anchor.
    pub fn now_ms(&self, reading: Reading) -> u64 {
        if crate::bugs::enabled(crate::bugs::Bug::FollowWallClock) {
            // The former server rule: the wall clock, never going backwards.
            return reading.wall_ms.max(self.anchor_wall_ms);
        }
        let elapsed = reading.mono_ms.saturating_sub(self.anchor_mono_ms);
        self.anchor_wall_ms.saturating_add(elapsed)
    }
}

/// The queue time of the wall-clock date `at_ms` (a client's scheduled delivery time),
/// with the node's clocks at `queue_ms` and `wall_ms` now: their difference now carries
/// over, so a date now or in the past maps to queue time now or before (no delay). The
/// one conversion every adapter uses; each bounds how far ahead a date may lie.
pub fn queue_time_of(at_ms: u64, queue_ms: u64, wall_ms: u64) -> u64 {
    let ahead_ms = at_ms.saturating_sub(wall_ms);
    let behind_ms = wall_ms.saturating_sub(at_ms);
    queue_ms.saturating_add(ahead_ms).saturating_sub(behind_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(wall_ms: u64, mono_ms: u64) -> Reading {
        Reading { wall_ms, mono_ms }
    }

    #[test]
    fn steps_of_the_wall_clock_do_not_move_queue_time() {
        let clock = QueueClock::start(at(1_000_000, 50));
        assert_eq!(clock.now_ms(at(1_000_000, 50)), 1_000_000);
        // The wall clock jumps an hour ahead: queue time advances by the 10 ms that passed.
        assert_eq!(clock.now_ms(at(4_600_000, 60)), 1_000_010);
        // It jumps back before the start: queue time still advances.
        assert_eq!(clock.now_ms(at(10, 1_050)), 1_001_000);
    }

    #[test]
    fn a_new_run_follows_the_wall_clock_again() {
        let before = QueueClock::start(at(1_000_000, 0));
        let after = QueueClock::start(at(900_000, 7));
        assert_eq!(before.now_ms(at(0, 100)), 1_000_100);
        assert_eq!(after.now_ms(at(0, 107)), 900_100);
    }

    #[test]
    fn a_monotonic_reading_before_the_anchor_is_the_anchor() {
        let clock = QueueClock::start(at(5_000, 100));
        assert_eq!(clock.now_ms(at(5_000, 90)), 5_000);
    }
}
