//! Reads from partition 0's leader that lookups which missed ask for
//! ([`crate::Node::sync_directory`], [`crate::Node::sync_tenants`]), one at a time per
//! shard: a lookup that missed waits for a read that *started after* its miss, so it sees
//! whatever was committed before it asked, and one read in flight serves every miss that
//! came meanwhile. Made-up ids therefore cost at most one read in flight per shard and
//! kind, however many requests carry them.

use std::cell::{Cell, RefCell};

/// One kind of leader read on one shard.
#[derive(Default)]
pub struct LeaderReads {
    /// Numbers of the reads started and finished (a read's number is `started` + 1 when
    /// it starts).
    started: Cell<u64>,
    finished: Cell<u64>,
    /// What the last finished read answered.
    answer: Cell<bool>,
    /// Closed when the read in flight ends (however it ends).
    running: RefCell<Option<async_channel::Receiver<()>>>,
}

/// The read in flight: when dropped (finished, or its task dropped at an `.await`), no
/// read is in flight any more, and the channel's close wakes every waiter.
struct InFlight<'a> {
    reads: &'a LeaderReads,
    _closes_on_drop: async_channel::Sender<()>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        *self.reads.running.borrow_mut() = None;
    }
}

impl LeaderReads {
    /// The answer of a read that started after this call: the one `read` makes, or one
    /// another caller started meanwhile.
    pub async fn after_now(&self, read: impl AsyncFnOnce() -> bool) -> bool {
        let wanted = self.started.get() + 1;
        let mut read = Some(read);
        // Each pass waits for the read in flight to end or runs one; a read that started
        // before this call is waited out, then one starts (this caller's or another's).
        loop {
            if self.finished.get() >= wanted {
                return self.answer.get();
            }
            let running = self.running.borrow().clone();
            if let Some(done) = running {
                // Err only: nothing is ever sent, the sender's drop closes the channel.
                let _ = done.recv().await;
                continue;
            }
            let Some(reading) = read.take() else {
                // This caller's read ran and was overtaken by none: cannot happen, since
                // its number is at least `wanted`; answer what is known.
                return self.answer.get();
            };
            let (closes, done) = async_channel::bounded(1);
            *self.running.borrow_mut() = Some(done);
            let number = self.started.get() + 1;
            self.started.set(number);
            let in_flight = InFlight {
                reads: self,
                _closes_on_drop: closes,
            };
            let answer = reading().await;
            self.answer.set(answer);
            self.finished.set(number);
            drop(in_flight);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use std::future::Future;

    #[test]
    fn each_call_gets_a_read_that_started_after_it() {
        let reads = LeaderReads::default();
        let count = Cell::new(0);
        let read = async || {
            count.set(count.get() + 1);
            count.get() % 2 == 1
        };
        assert!(block_on(reads.after_now(read)));
        assert!(!block_on(reads.after_now(read)));
        assert_eq!(count.get(), 2, "one read per call when none overlap");
    }

    #[test]
    fn a_dropped_read_leaves_none_in_flight() {
        let reads = LeaderReads::default();
        {
            let pending = reads.after_now(async || {
                futures_lite::future::pending::<()>().await;
                true
            });
            let mut pending = Box::pin(pending);
            let waker = std::task::Waker::noop();
            let mut context = std::task::Context::from_waker(waker);
            assert!(pending.as_mut().poll(&mut context).is_pending());
            assert!(reads.running.borrow().is_some());
        }
        assert!(reads.running.borrow().is_none());
        assert!(block_on(reads.after_now(async || true)));
    }
}
