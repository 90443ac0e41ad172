//! One metadata change at a time, and the flag that makes the next change repair first
//! after one may have left the partitions apart. Single-threaded, no runtime: it only
//! stores wakers and wakes them.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::task::{Poll, Waker};

use super::repair::{reconcile, Repair, RepairError};
use super::{
    create_group, create_queue, delete_group, delete_queue, set_dead_letter, set_partitions,
    set_queue_meta, ChangeError, DeadLetterPolicy, MetadataPartitions, NewQueue,
};
use crate::engine::types::{GroupId, QueueId};

/// Serialises a node's metadata changes and remembers when one may have left the
/// partitions apart, so that the next change repairs first.
///
/// The lock is a plain single-threaded one (no runtime): a waiter registers its waker and
/// every waiter is woken when the holder lets go. That is not FIFO-fair, but cancelling
/// a waiting change (its future dropped) can never leave the lock stuck. Metadata changes
/// are rare; the waiters list holds at most one entry per change waiting.
pub struct MetadataGate {
    held: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
    needs_repair: Cell<bool>,
}

impl MetadataGate {
    /// `needs_repair`: whether the partitions are not yet known to agree (a node that
    /// just opened its engines has not checked; its first change, or an explicit
    /// [`MetadataPermit::reconcile`], repairs them).
    pub fn new(needs_repair: bool) -> MetadataGate {
        MetadataGate {
            held: Cell::new(false),
            waiters: RefCell::new(Vec::new()),
            needs_repair: Cell::new(needs_repair),
        }
    }

    pub fn needs_repair(&self) -> bool {
        self.needs_repair.get()
    }

    /// Waits until no other change is running and takes the turn.
    pub async fn lock(&self) -> MetadataPermit<'_> {
        std::future::poll_fn(|context| {
            if !self.held.get() {
                self.held.set(true);
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(context.waker())) {
                waiters.push(context.waker().clone());
            }
            Poll::Pending
        })
        .await;
        assert!(self.held.get(), "the permit holds the lock");
        MetadataPermit { gate: self }
    }
}

/// The turn to change metadata; dropping it lets the next change run. Every change made
/// through it updates the gate's repair flag: set while a change runs (so that a change
/// whose future is dropped half-way counts as part-way), cleared again only if the change
/// did not leave the partitions apart.
pub struct MetadataPermit<'a> {
    gate: &'a MetadataGate,
}

impl Drop for MetadataPermit<'_> {
    fn drop(&mut self) {
        assert!(self.gate.held.get(), "a permit releases the lock it holds");
        self.gate.held.set(false);
        for waker in self.gate.waiters.take() {
            waker.wake();
        }
    }
}

impl MetadataPermit<'_> {
    /// Repairs the partitions if an earlier change may have left them apart; the caller
    /// refuses its change when this fails (the flag stays set, the next change retries).
    pub async fn repair_if_needed<P: MetadataPartitions>(
        &self,
        partitions: &P,
    ) -> Result<Vec<Repair>, RepairError<P::Error>> {
        if !self.gate.needs_repair.get() {
            return Ok(Vec::new());
        }
        self.reconcile(partitions).await
    }

    /// Repairs the partitions unconditionally (start-up, a node's boot).
    pub async fn reconcile<P: MetadataPartitions>(
        &self,
        partitions: &P,
    ) -> Result<Vec<Repair>, RepairError<P::Error>> {
        self.gate.needs_repair.set(true);
        let repaired = reconcile(partitions).await?;
        self.gate.needs_repair.set(false);
        Ok(repaired)
    }

    pub async fn create_queue<P: MetadataPartitions>(
        &self,
        partitions: &P,
        queue: &NewQueue<'_>,
    ) -> Result<QueueId, ChangeError<P::Error>> {
        self.guard(create_queue(partitions, queue)).await
    }

    pub async fn delete_queue<P: MetadataPartitions>(
        &self,
        partitions: &P,
        queue: QueueId,
    ) -> Result<(), ChangeError<P::Error>> {
        self.guard(delete_queue(partitions, queue)).await
    }

    pub async fn set_queue_meta<P: MetadataPartitions>(
        &self,
        partitions: &P,
        queue: QueueId,
        meta: &[u8],
    ) -> Result<(), ChangeError<P::Error>> {
        self.guard(set_queue_meta(partitions, queue, meta)).await
    }

    pub async fn set_dead_letter<P: MetadataPartitions>(
        &self,
        partitions: &P,
        queue: QueueId,
        policy: DeadLetterPolicy,
    ) -> Result<(), ChangeError<P::Error>> {
        self.guard(set_dead_letter(partitions, queue, policy)).await
    }

    pub async fn set_partitions<P: MetadataPartitions>(
        &self,
        partitions: &P,
        queue: QueueId,
        count: u16,
    ) -> Result<(), ChangeError<P::Error>> {
        self.guard(set_partitions(partitions, queue, count)).await
    }

    pub async fn create_group<P: MetadataPartitions>(
        &self,
        partitions: &P,
        queue: QueueId,
        name: &str,
    ) -> Result<GroupId, ChangeError<P::Error>> {
        self.guard(create_group(partitions, queue, name)).await
    }

    pub async fn delete_group<P: MetadataPartitions>(
        &self,
        partitions: &P,
        queue: QueueId,
        group: GroupId,
    ) -> Result<(), ChangeError<P::Error>> {
        self.guard(delete_group(partitions, queue, group)).await
    }

    async fn guard<T, E>(
        &self,
        change: impl Future<Output = Result<T, ChangeError<E>>>,
    ) -> Result<T, ChangeError<E>> {
        let before = self.gate.needs_repair.get();
        self.gate.needs_repair.set(true);
        let result = change.await;
        let apart = matches!(&result, Err(failure) if failure.part_way);
        self.gate.needs_repair.set(before || apart);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::types::EngineError;
    use crate::sim_disk::block_on;

    #[test]
    fn changes_take_turns_and_an_abandoned_change_asks_for_repair() {
        // Goal: the gate lets one change run at a time, and a change whose future is
        // dropped half-way counts as part-way. Method: poll by hand with a no-op waker.
        let gate = MetadataGate::new(false);
        let mut context = std::task::Context::from_waker(Waker::noop());
        let first = block_on(gate.lock());
        let mut second = std::pin::pin!(gate.lock());
        assert!(second.as_mut().poll(&mut context).is_pending());
        {
            let mut abandoned = std::pin::pin!(
                first.guard(std::future::pending::<Result<(), ChangeError<EngineError>>>())
            );
            assert!(abandoned.as_mut().poll(&mut context).is_pending());
        }
        assert!(gate.needs_repair());
        drop(first);
        assert!(second.as_mut().poll(&mut context).is_ready());
    }
}
