//! A second io_uring per executor thread, driven directly with the `io-uring` crate, for
//! the log's data writes and fdatasyncs (see [`IoSubmit`]).
//!
//! Why: glommio submits a write and lets the kernel try it inline, inside the
//! `io_uring_enter` call, on the executor thread. An O_DIRECT write that has to wait in
//! the file system (block allocation, the inode lock) then stalls the whole shard for
//! milliseconds: measured as the 2-connection produce p99 of 5.7-8.2 ms against a p50
//! under 1 ms (docs/http-bench.md). glommio offers no way to set `IOSQE_ASYNC`. Here
//! every data write carries `IOSQE_ASYNC`, so the kernel queues it to an io-wq worker at
//! once and the submission returns; and the write and its fdatasync are one linked
//! pair (`IOSQE_IO_LINK`): one submission and one wake-up of the executor for both.
//!
//! How completions reach the executor: the ring signals an eventfd on every completion
//! (`IORING_REGISTER_EVENTFD`); a reaper task on the executor keeps one read of that
//! eventfd pending through glommio's own ring, and when it completes drains this ring's
//! completion queue (shared memory, no system call) and wakes the waiting futures.
//!
//! Memory safety: the kernel reads a write's buffer until its completion is posted, so
//! the buffer is moved into the operation's slot and released only when the completion
//! is reaped, even if the future waiting for it was dropped. The ring's `Drop` waits for
//! every operation still in flight before the ring (and the buffers) go away.
//!
//! Bounds: at most [`RING_ENTRIES`] submissions queue at once (a full queue is submitted
//! before the next push); the completion queue is twice that and the kernel keeps
//! overflowing completions (`IORING_FEAT_NODROP`, Linux 5.5), so none is lost.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::os::unix::io::{AsRawFd, FromRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use glommio::io::{BufferedFile, DmaBuffer, DmaFile};
use io_uring::{opcode, squeue, types, IoUring};

/// Submission queue entries of one thread's ring.
pub const RING_ENTRIES: u32 = 128;

/// How a storage submits the log's data writes and fdatasyncs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoSubmit {
    /// Through the thread's own ring ([`Ring`]): writes never run inline at submission,
    /// and a write followed by a sync is one linked submission.
    #[default]
    Ring,
    /// Through glommio's `DmaFile::write_at` and `fdatasync` (the kernel may run the
    /// write inline inside the submitting system call).
    Glommio,
}

impl std::str::FromStr for IoSubmit {
    type Err = String;
    fn from_str(text: &str) -> Result<IoSubmit, String> {
        match text {
            "ring" => Ok(IoSubmit::Ring),
            "glommio" => Ok(IoSubmit::Glommio),
            other => Err(format!("io_submit must be ring or glommio, not {other:?}")),
        }
    }
}

enum Slot {
    Free,
    /// Submitted; `keep` holds what the kernel may still read.
    Waiting {
        waker: Option<Waker>,
        _keep: Option<Box<dyn Any>>,
    },
    Done(i32),
    /// The future was dropped before the completion: free the slot when it comes.
    Orphan {
        _keep: Option<Box<dyn Any>>,
    },
}

/// One executor thread's directly driven io_uring. Get it with [`Ring::current`].
pub struct Ring {
    uring: RefCell<IoUring>,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<usize>>,
    /// Set when the reaper cannot read the eventfd; it then polls on a timer.
    polling: std::cell::Cell<bool>,
}

thread_local! {
    /// The ring of the executor running on this thread, keyed by executor id: a thread
    /// that runs executors one after another (tests) gets a ring, and a reaper, for each.
    static CURRENT: RefCell<Option<(usize, Rc<Ring>)>> = const { RefCell::new(None) };
}

impl Ring {
    /// This executor's ring, created (with its reaper task) on first use. Must be called
    /// on a glommio executor thread.
    pub fn current() -> std::io::Result<Rc<Ring>> {
        let executor = glommio::executor().id();
        if let Some(ring) = CURRENT.with(|current| {
            current
                .borrow()
                .as_ref()
                .filter(|(id, _)| *id == executor)
                .map(|(_, ring)| ring.clone())
        }) {
            return Ok(ring);
        }
        let ring = Rc::new(Ring::new()?);
        // A blocking eventfd: io_uring answers a read of an O_NONBLOCK file with EAGAIN
        // instead of waiting for it to become readable.
        // SAFETY: plain system call; the result is checked.
        let eventfd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if eventfd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if let Err(error) = ring.uring.borrow().submitter().register_eventfd(eventfd) {
            // SAFETY: the descriptor was just created and is owned here.
            unsafe { libc::close(eventfd) };
            return Err(error);
        }
        glommio::spawn_local(reap(ring.clone(), eventfd)).detach();
        CURRENT.with(|current| *current.borrow_mut() = Some((executor, ring.clone())));
        Ok(ring)
    }

    fn new() -> std::io::Result<Ring> {
        let uring = IoUring::builder()
            .setup_cqsize(RING_ENTRIES * 2)
            .build(RING_ENTRIES)?;
        Ok(Ring {
            uring: RefCell::new(uring),
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            polling: std::cell::Cell::new(false),
        })
    }

    fn take_slot(&self, keep: Option<Box<dyn Any>>) -> usize {
        let slot = Slot::Waiting {
            waker: None,
            _keep: keep,
        };
        let mut slots = self.slots.borrow_mut();
        let index = match self.free.borrow_mut().pop() {
            Some(index) => {
                slots[index] = slot;
                index
            }
            None => {
                slots.push(slot);
                slots.len() - 1
            }
        };
        index
    }

    /// Frees a slot whose completion was reaped.
    fn release(&self, index: usize) {
        self.slots.borrow_mut()[index] = Slot::Free;
        self.free.borrow_mut().push(index);
    }

    /// Queues `entries` (already carrying their flags), each with what must outlive the
    /// kernel's use of it, and submits them without waiting. The entries' `user_data`
    /// are set here, one slot each. All of them are queued in one go (a link chain must
    /// reach the kernel in one submission, or its last entry would run unlinked).
    fn submit(&self, entries: Vec<(squeue::Entry, Box<dyn Any>)>) -> Vec<Op<'_>> {
        assert!(
            entries.len() <= RING_ENTRIES as usize,
            "a group fits the ring"
        );
        let mut uring = self.uring.borrow_mut();
        // Bounded by the kernel's progress: each pass hands the queued entries over, or
        // waits for it to take them by reaping completions first.
        loop {
            let free = {
                let queue = uring.submission();
                queue.capacity() - queue.len()
            };
            if free >= entries.len() {
                break;
            }
            if let Err(error) = uring.submit() {
                assert!(transient(&error), "io_uring submission failed: {error}");
                drop(uring);
                self.drain();
                uring = self.uring.borrow_mut();
            }
        }
        let mut ops = Vec::with_capacity(entries.len());
        for (entry, keep) in entries {
            let index = self.take_slot(Some(keep));
            ops.push(Op {
                ring: self,
                slot: index,
            });
            let entry = entry.user_data(index as u64);
            // SAFETY: every pointer in `entry` stays valid until its completion is
            // reaped: buffers and files live in the slots.
            let pushed = unsafe { uring.submission().push(&entry) };
            assert!(pushed.is_ok(), "room was made above");
        }
        if let Err(error) = uring.submit() {
            // The entries stay queued; the reaper submits them after it drains.
            assert!(transient(&error), "io_uring submission failed: {error}");
        }
        ops
    }

    /// Reaps every posted completion and wakes its future (after the borrows end).
    fn drain(&self) {
        let mut wake = Vec::new();
        {
            let mut uring = self.uring.borrow_mut();
            let completions: Vec<(u64, i32)> = uring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result()))
                .collect();
            let mut slots = self.slots.borrow_mut();
            let mut orphans = Vec::new();
            for (user_data, result) in completions {
                let index = usize::try_from(user_data).expect("slot index");
                match std::mem::replace(&mut slots[index], Slot::Done(result)) {
                    Slot::Waiting { waker, .. } => wake.extend(waker),
                    Slot::Orphan { .. } => orphans.push(index),
                    Slot::Free | Slot::Done(_) => {
                        unreachable!("a completion for slot {index} that was not waiting")
                    }
                }
            }
            drop(slots);
            for index in orphans {
                self.release(index);
            }
            if !uring.submission().is_empty() {
                // Left queued by a busy kernel earlier.
                let _ = uring.submit();
            }
        }
        for waker in wake {
            waker.wake();
        }
    }

    /// Writes all of `buf` at `position` of `file`; the write never runs inline.
    /// Resolves to the byte count or the errno.
    pub async fn write(
        &self,
        file: &Rc<DmaFile>,
        buf: DmaBuffer,
        position: u64,
    ) -> Result<usize, i32> {
        let entry = write_entry(file, &buf, position).flags(squeue::Flags::ASYNC);
        let keep: Box<dyn Any> = Box::new((file.clone(), buf));
        let op = self.submit(vec![(entry, keep)]).pop().expect("one op");
        result_of(op.await)
    }

    /// `fdatasync` of `file`.
    pub async fn sync(&self, file: &Rc<DmaFile>) -> Result<(), i32> {
        let keep: Box<dyn Any> = Box::new(file.clone());
        let op = self
            .submit(vec![(sync_entry(file), keep)])
            .pop()
            .expect("one op");
        result_of(op.await).map(|_| ())
    }

    /// Writes `buf` at `position` of `file` and then fdatasyncs it, as one linked
    /// submission. Resolves to the write's byte count and whether the sync ran, or to
    /// the failing half's errno. A short write cancels the sync: the caller sees the short count
    /// and must not take the data as durable.
    pub async fn write_sync(
        &self,
        file: &Rc<DmaFile>,
        buf: DmaBuffer,
        position: u64,
    ) -> Result<(usize, bool), WriteSyncError> {
        let length = buf.len();
        let write =
            write_entry(file, &buf, position).flags(squeue::Flags::ASYNC | squeue::Flags::IO_LINK);
        let sync = sync_entry(file);
        let keep_write: Box<dyn Any> = Box::new((file.clone(), buf));
        let keep_sync: Box<dyn Any> = Box::new(file.clone());
        let mut ops = self
            .submit(vec![(write, keep_write), (sync, keep_sync)])
            .into_iter();
        let (write, sync) = (ops.next().expect("write"), ops.next().expect("sync"));
        // Both are awaited; a dropped one leaves its slot to the reaper.
        let written = write.await;
        let synced = sync.await;
        let written = result_of(written).map_err(WriteSyncError::Write)?;
        if written < length {
            return Ok((written, false));
        }
        result_of(synced)
            .map(|_| (written, true))
            .map_err(WriteSyncError::Sync)
    }
}

/// Whether a failed `io_uring_enter` leaves the queued entries for a later try.
fn transient(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EBUSY | libc::EAGAIN | libc::EINTR)
    )
}

/// Which half of a linked write and sync failed, with its errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteSyncError {
    Write(i32),
    Sync(i32),
}

/// The write of `buf` to `file`. The entry points into `buf` and names `file`'s
/// descriptor: both go into the operation's slot, so they outlive the kernel's use (an
/// `IOSQE_ASYNC` request resolves its descriptor only when a worker picks it up).
fn write_entry(file: &DmaFile, buf: &DmaBuffer, position: u64) -> squeue::Entry {
    let length = u32::try_from(buf.len()).expect("a write is below 4 GiB");
    opcode::Write::new(types::Fd(file.as_raw_fd()), buf.as_ptr(), length)
        .offset(position)
        .build()
}

fn sync_entry(file: &DmaFile) -> squeue::Entry {
    opcode::Fsync::new(types::Fd(file.as_raw_fd()))
        .flags(types::FsyncFlags::DATASYNC)
        .build()
}

fn result_of(result: i32) -> Result<usize, i32> {
    if result < 0 {
        Err(-result)
    } else {
        Ok(usize::try_from(result).expect("non-negative"))
    }
}

/// One submitted operation: resolves to its completion's result. Dropped before the
/// completion, it leaves the slot (and the buffer in it) to the reaper.
struct Op<'a> {
    ring: &'a Ring,
    /// `usize::MAX` once released.
    slot: usize,
}

impl Future for Op<'_> {
    type Output = i32;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<i32> {
        let this = self.get_mut();
        let index = this.slot;
        let mut slots = this.ring.slots.borrow_mut();
        match &mut slots[index] {
            Slot::Done(result) => {
                let result = *result;
                drop(slots);
                this.ring.release(index);
                this.slot = usize::MAX;
                Poll::Ready(result)
            }
            Slot::Waiting { waker, .. } => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            Slot::Free | Slot::Orphan { .. } => unreachable!("polled a released operation"),
        }
    }
}

impl Drop for Op<'_> {
    fn drop(&mut self) {
        let index = self.slot;
        if index == usize::MAX {
            return;
        }
        let mut slots = self.ring.slots.borrow_mut();
        match std::mem::replace(&mut slots[index], Slot::Free) {
            Slot::Done(_) => {
                drop(slots);
                self.ring.release(index);
            }
            Slot::Waiting { _keep, .. } => slots[index] = Slot::Orphan { _keep },
            Slot::Free | Slot::Orphan { .. } => unreachable!("dropped a released operation"),
        }
    }
}

/// Keeps one read of the eventfd pending and drains the ring each time it completes.
async fn reap(ring: Rc<Ring>, eventfd: RawFd) {
    // SAFETY: the descriptor was just created and nothing else owns it; the file closes
    // it when the reaper ends with its executor.
    let file = unsafe { BufferedFile::from_raw_fd(eventfd) };
    loop {
        if ring.polling.get() {
            glommio::timer::sleep(std::time::Duration::from_micros(100)).await;
        } else if let Err(error) = file.read_at(0, 8).await {
            eprintln!("sluice: io_uring eventfd read failed ({error}); polling instead");
            ring.polling.set(true);
        }
        ring.drain();
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // The kernel may still read buffers held in the slots: wait for every
        // outstanding completion before they are freed. Bounded by the slots' count.
        let uring = self.uring.get_mut();
        let slots = self.slots.get_mut();
        let mut pending = slots
            .iter()
            .filter(|slot| matches!(slot, Slot::Waiting { .. } | Slot::Orphan { .. }))
            .count();
        while pending > 0 {
            if uring.submit_and_wait(1).is_err() {
                break;
            }
            for cqe in uring.completion() {
                let index = usize::try_from(cqe.user_data()).expect("slot index");
                slots[index] = Slot::Free;
                pending -= 1;
            }
        }
    }
}
