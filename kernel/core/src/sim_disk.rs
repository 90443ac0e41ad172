//! A simulated disk in memory that fails the way real disks fail, reproducibly.
//!
//! Each file keeps two images: what reads see now (the page cache) and what would survive
//! a power cut (the durable image), plus the list of writes issued since the last sync.
//! [`SimDisk::crash`] throws the volatile state away; according to a [`CrashMode`] drawn
//! from the seeded generator, unsynced writes are lost, a prefix of them survives with
//! the last one torn at a sector boundary, or each of their sectors independently
//! survives (a device that reorders writes). Faults on command: the next call of an
//! operation fails with EIO or ENOSPC ([`SimDisk::fail_next`]), random fault rates
//! ([`FaultRates`]), bits flipped at rest ([`SimDisk::flip_bit`]) or on read.
//!
//! Everything random comes from one `Pcg64Mcg` seeded at construction, so a seed replays
//! exactly. No clock, no threads, no real I/O: all futures are ready at once.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::limits::{BLOCK_BYTES, SECTOR_BYTES};
use crate::storage::{
    is_block_aligned, IoError, IoErrorKind, IoOp, Storage, StorageBuf, StorageFile,
};

/// What a crash does to writes not yet covered by a sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced write is lost.
    LoseUnsynced,
    /// A prefix of the unsynced writes survives; its last write is torn at a sector
    /// boundary (some leading sectors persisted, the rest not).
    TearLast,
    /// Each sector of each unsynced write independently survives or not.
    ScrambleSectors,
}

/// Random fault probabilities, in parts per million per call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultRates {
    pub write_eio_ppm: u32,
    pub write_enospc_ppm: u32,
    pub sync_eio_ppm: u32,
    pub read_eio_ppm: u32,
    /// A read returns one bit flipped (the stored bytes stay intact).
    pub read_bitflip_ppm: u32,
}

#[derive(Default)]
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<(u64, Vec<u8>)>,
}

struct DiskState {
    rng: Pcg64Mcg,
    epoch: u64,
    files: BTreeMap<String, Rc<RefCell<Inode>>>,
    fail_next: VecDeque<(IoOp, IoErrorKind)>,
    /// One-shot failure of the call this many calls from now (1 = the next), whatever
    /// its operation; 0 when none is armed.
    fail_call_in: u32,
    fail_call_kind: IoErrorKind,
    /// One-shot bit flip: the read this many non-empty reads from now (1 = the next)
    /// returns one bit flipped; 0 when none is armed.
    flip_read_in: u32,
    rates: FaultRates,
    /// Total bytes the disk may hold before writes fail with ENOSPC.
    capacity_bytes: u64,
    stats: SimDiskStats,
}

/// Counters for tests and the simulator's trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimDiskStats {
    pub writes: u64,
    pub syncs: u64,
    pub crashes: u64,
    pub faults_injected: u64,
    /// `read_at` calls that returned data, and the bytes they returned.
    pub reads: u64,
    pub read_bytes: u64,
}

/// A simulated disk; clones share the same state.
#[derive(Clone)]
pub struct SimDisk {
    state: Rc<RefCell<DiskState>>,
}

pub struct SimFile {
    disk: SimDisk,
    inode: Rc<RefCell<Inode>>,
    epoch: u64,
}

pub struct SimBuf(Vec<u8>);

impl AsRef<[u8]> for SimBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
impl AsMut<[u8]> for SimBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}
impl StorageBuf for SimBuf {}

impl SimDisk {
    pub fn new(seed: u64) -> SimDisk {
        SimDisk {
            state: Rc::new(RefCell::new(DiskState {
                rng: Pcg64Mcg::seed_from_u64(seed),
                epoch: 0,
                files: BTreeMap::new(),
                fail_next: VecDeque::new(),
                fail_call_in: 0,
                fail_call_kind: IoErrorKind::Io,
                flip_read_in: 0,
                rates: FaultRates::default(),
                capacity_bytes: u64::MAX,
                stats: SimDiskStats::default(),
            })),
        }
    }

    /// Loses power: the durable images, plus whatever `mode` lets survive, become the
    /// files' content. Every handle opened before the crash fails from now on.
    pub fn crash_with(&self, mode: CrashMode) {
        let mut state = self.state.borrow_mut();
        state.epoch += 1;
        state.stats.crashes += 1;
        let DiskState { rng, files, .. } = &mut *state;
        for inode in files.values() {
            let mut inode = inode.borrow_mut();
            let unsynced = std::mem::take(&mut inode.unsynced);
            let survivors = crash_survivors(rng, mode, unsynced);
            for (position, bytes) in survivors {
                apply_write(&mut inode.durable, position, &bytes);
            }
            inode.current = inode.durable.clone();
        }
    }

    /// Crashes with a mode drawn from the seeded generator.
    pub fn crash(&self) -> CrashMode {
        let mode = match self.state.borrow_mut().rng.gen_range(0..3) {
            0 => CrashMode::LoseUnsynced,
            1 => CrashMode::TearLast,
            _ => CrashMode::ScrambleSectors,
        };
        self.crash_with(mode);
        mode
    }

    /// The next call of `op` fails with `kind`.
    pub fn fail_next(&self, op: IoOp, kind: IoErrorKind) {
        self.state.borrow_mut().fail_next.push_back((op, kind));
    }

    /// The `nth` storage call from now (1 = the next), of any operation, fails with
    /// `kind` before doing anything: stops a multi-step operation at any point, as a
    /// crash there would. A sync stopped so leaves its file's writes unsynced (not
    /// dropped, as a failed fsync does), so a crash next may keep any part of them.
    pub fn fail_nth_call(&self, nth: u32, kind: IoErrorKind) {
        let mut state = self.state.borrow_mut();
        state.fail_call_in = nth;
        state.fail_call_kind = kind;
    }

    /// The `nth` non-empty read from now (1 = the next) returns one random bit flipped;
    /// the data on the disk stays intact (a transient read error, as the simulator's
    /// nemesis arms it for the reads of a recovery).
    pub fn flip_read(&self, nth: u32) {
        self.state.borrow_mut().flip_read_in = nth;
    }

    /// Forgets every armed one-shot fault.
    pub fn clear_faults(&self) {
        let mut state = self.state.borrow_mut();
        state.fail_next.clear();
        state.fail_call_in = 0;
        state.flip_read_in = 0;
    }

    pub fn set_fault_rates(&self, rates: FaultRates) {
        self.state.borrow_mut().rates = rates;
    }

    pub fn set_capacity_bytes(&self, capacity_bytes: u64) {
        self.state.borrow_mut().capacity_bytes = capacity_bytes;
    }

    /// Flips one bit of a file at rest, in both the durable and the current image.
    pub fn flip_bit(&self, name: &str, byte_position: u64, bit: u8) {
        let state = self.state.borrow();
        let mut inode = state
            .files
            .get(name)
            .expect("flip_bit: no such file")
            .borrow_mut();
        let index = usize::try_from(byte_position).expect("fits");
        let Inode {
            current, durable, ..
        } = &mut *inode;
        for image in [current, durable] {
            if let Some(byte) = image.get_mut(index) {
                *byte ^= 1 << (bit % 8);
            }
        }
    }

    /// The current size of a file, for tests.
    pub fn file_bytes(&self, name: &str) -> Option<u64> {
        let state = self.state.borrow();
        state
            .files
            .get(name)
            .map(|inode| inode.borrow().current.len() as u64)
    }

    /// Overwrites a file's size (both images), for tests that cut a file mid-record.
    pub fn truncate_at_rest(&self, name: &str, bytes: u64) {
        let state = self.state.borrow();
        let mut inode = state.files.get(name).expect("no such file").borrow_mut();
        let len = usize::try_from(bytes).expect("fits");
        inode.current.resize(len, 0);
        inode.durable.resize(len, 0);
        inode.unsynced.clear();
    }

    pub fn stats(&self) -> SimDiskStats {
        self.state.borrow().stats
    }

    /// Fails the call when a one-shot or random fault is due.
    fn inject(&self, op: IoOp) -> Result<(), IoError> {
        self.stop_point(op)?;
        self.inject_fault(op)
    }

    /// Fails the call armed by [`SimDisk::fail_nth_call`].
    fn stop_point(&self, op: IoOp) -> Result<(), IoError> {
        let mut state = self.state.borrow_mut();
        if state.fail_call_in > 0 {
            state.fail_call_in -= 1;
            if state.fail_call_in == 0 {
                state.stats.faults_injected += 1;
                return Err(IoError::new(state.fail_call_kind, op));
            }
        }
        Ok(())
    }

    fn inject_fault(&self, op: IoOp) -> Result<(), IoError> {
        let mut state = self.state.borrow_mut();
        if let Some(index) = state.fail_next.iter().position(|(o, _)| *o == op) {
            let (_, kind) = state.fail_next.remove(index).expect("index is in range");
            state.stats.faults_injected += 1;
            return Err(IoError::new(kind, op));
        }
        let rates = state.rates;
        let draws: &[(u32, IoErrorKind)] = match op {
            IoOp::Write => &[
                (rates.write_eio_ppm, IoErrorKind::Io),
                (rates.write_enospc_ppm, IoErrorKind::NoSpace),
            ],
            IoOp::Sync => &[(rates.sync_eio_ppm, IoErrorKind::Io)],
            IoOp::Read => &[(rates.read_eio_ppm, IoErrorKind::Io)],
            _ => &[],
        };
        for (ppm, kind) in draws {
            if *ppm > 0 && state.rng.gen_range(0..1_000_000) < *ppm {
                state.stats.faults_injected += 1;
                return Err(IoError::new(*kind, op));
            }
        }
        Ok(())
    }

    fn used_bytes(&self) -> u64 {
        let state = self.state.borrow();
        state
            .files
            .values()
            .map(|inode| inode.borrow().current.len() as u64)
            .sum()
    }
}

fn crash_survivors(
    rng: &mut Pcg64Mcg,
    mode: CrashMode,
    unsynced: Vec<(u64, Vec<u8>)>,
) -> Vec<(u64, Vec<u8>)> {
    match mode {
        CrashMode::LoseUnsynced => Vec::new(),
        CrashMode::TearLast => {
            let kept = rng.gen_range(0..=unsynced.len());
            let mut survivors: Vec<_> = unsynced.into_iter().take(kept).collect();
            if let Some((_, last)) = survivors.last_mut() {
                let sectors = last.len() as u64 / SECTOR_BYTES;
                let sectors_kept = rng.gen_range(0..=sectors);
                last.truncate(usize::try_from(sectors_kept * SECTOR_BYTES).expect("fits"));
            }
            survivors
        }
        CrashMode::ScrambleSectors => {
            let mut survivors = Vec::new();
            for (position, bytes) in unsynced {
                for (index, sector) in bytes.chunks(SECTOR_BYTES as usize).enumerate() {
                    if rng.gen_bool(0.5) {
                        let sector_position = position + index as u64 * SECTOR_BYTES;
                        survivors.push((sector_position, sector.to_vec()));
                    }
                }
            }
            survivors
        }
    }
}

fn apply_write(image: &mut Vec<u8>, position: u64, bytes: &[u8]) {
    let start = usize::try_from(position).expect("fits");
    let end = start + bytes.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(bytes);
}

impl Storage for SimDisk {
    type File = SimFile;

    async fn create(&self, name: &str) -> Result<SimFile, IoError> {
        self.inject(IoOp::Create)?;
        let mut state = self.state.borrow_mut();
        if state.files.contains_key(name) {
            return Err(IoError::new(IoErrorKind::AlreadyExists, IoOp::Create));
        }
        let inode = Rc::new(RefCell::new(Inode::default()));
        state.files.insert(name.to_string(), inode.clone());
        Ok(SimFile {
            disk: self.clone(),
            inode,
            epoch: state.epoch,
        })
    }

    async fn open(&self, name: &str) -> Result<SimFile, IoError> {
        self.inject(IoOp::Open)?;
        let state = self.state.borrow();
        let inode = state
            .files
            .get(name)
            .ok_or(IoError::new(IoErrorKind::NotFound, IoOp::Open))?
            .clone();
        Ok(SimFile {
            disk: self.clone(),
            inode,
            epoch: state.epoch,
        })
    }

    async fn list(&self) -> Result<Vec<String>, IoError> {
        self.inject(IoOp::List)?;
        Ok(self.state.borrow().files.keys().cloned().collect())
    }

    async fn remove(&self, name: &str) -> Result<(), IoError> {
        self.inject(IoOp::Remove)?;
        match self.state.borrow_mut().files.remove(name) {
            Some(_) => Ok(()),
            None => Err(IoError::new(IoErrorKind::NotFound, IoOp::Remove)),
        }
    }

    /// Like `create` and `remove`, atomic and durable at once: a crash before the call
    /// (or a call stopped by an injected fault) leaves the old name, a crash after it the
    /// new one. The inode moves with its unsynced writes, so a crash treats them as it
    /// would have under the old name.
    async fn rename(&self, from: &str, to: &str) -> Result<(), IoError> {
        self.inject(IoOp::Rename)?;
        let mut state = self.state.borrow_mut();
        let inode = state
            .files
            .remove(from)
            .ok_or(IoError::new(IoErrorKind::NotFound, IoOp::Rename))?;
        state.files.insert(to.to_string(), inode);
        Ok(())
    }
}

impl SimFile {
    fn check_live(&self, op: IoOp) -> Result<(), IoError> {
        self.check_epoch(op)?;
        self.disk.inject(op)
    }

    fn check_epoch(&self, op: IoOp) -> Result<(), IoError> {
        if self.epoch != self.disk.state.borrow().epoch {
            // A handle from before a crash: the process that held it is gone.
            return Err(IoError::new(IoErrorKind::Io, op));
        }
        Ok(())
    }
}

impl StorageFile for SimFile {
    type Buf = SimBuf;
    type ReadBuf = Vec<u8>;

    fn alloc_buf(&self, bytes: usize) -> SimBuf {
        assert!(
            is_block_aligned(bytes as u64),
            "buffer of {bytes} bytes is not block aligned"
        );
        SimBuf(vec![0; bytes])
    }

    async fn write_at(&self, buf: SimBuf, position: u64) -> Result<(), IoError> {
        assert!(
            is_block_aligned(position),
            "write at unaligned position {position}"
        );
        assert!(
            is_block_aligned(buf.0.len() as u64),
            "unaligned write length"
        );
        self.check_live(IoOp::Write)?;
        let end = position + buf.0.len() as u64;
        let growth = end.saturating_sub(self.inode.borrow().current.len() as u64);
        if self.disk.used_bytes() + growth > self.disk.state.borrow().capacity_bytes {
            return Err(IoError::new(IoErrorKind::NoSpace, IoOp::Write));
        }
        self.disk.state.borrow_mut().stats.writes += 1;
        let mut inode = self.inode.borrow_mut();
        apply_write(&mut inode.current, position, &buf.0);
        inode.unsynced.push((position, buf.0));
        Ok(())
    }

    async fn read_at(&self, position: u64, bytes: usize) -> Result<Vec<u8>, IoError> {
        self.check_live(IoOp::Read)?;
        let inode = self.inode.borrow();
        let start = usize::try_from(position)
            .expect("fits")
            .min(inode.current.len());
        let end = start.saturating_add(bytes).min(inode.current.len());
        let mut out = inode.current[start..end].to_vec();
        drop(inode);
        let mut state = self.disk.state.borrow_mut();
        state.stats.reads += 1;
        state.stats.read_bytes += out.len() as u64;
        let armed = !out.is_empty() && state.flip_read_in > 0 && {
            state.flip_read_in -= 1;
            state.flip_read_in == 0
        };
        let ppm = state.rates.read_bitflip_ppm;
        if armed || ppm > 0 && !out.is_empty() && state.rng.gen_range(0..1_000_000) < ppm {
            let bit = state.rng.gen_range(0..out.len() * 8);
            out[bit / 8] ^= 1 << (bit % 8);
            state.stats.faults_injected += 1;
        }
        Ok(out)
    }

    async fn sync(&self) -> Result<(), IoError> {
        // A stop before the sync is issued leaves the writes pending.
        self.disk.stop_point(IoOp::Sync)?;
        let result = self
            .check_epoch(IoOp::Sync)
            .and_then(|()| self.disk.inject_fault(IoOp::Sync));
        let mut inode = self.inode.borrow_mut();
        let unsynced = std::mem::take(&mut inode.unsynced);
        // Like Linux after a failed fsync: the pages count as clean, so these writes
        // are visible to reads now but gone after a crash.
        result?;
        self.disk.state.borrow_mut().stats.syncs += 1;
        for (position, bytes) in unsynced {
            apply_write(&mut inode.durable, position, &bytes);
        }
        let len = inode.current.len();
        inode.durable.resize(len, 0);
        Ok(())
    }

    async fn size(&self) -> Result<u64, IoError> {
        self.check_live(IoOp::Size)?;
        Ok(self.inode.borrow().current.len() as u64)
    }

    async fn truncate(&self, bytes: u64) -> Result<(), IoError> {
        self.check_live(IoOp::Truncate)?;
        let len = usize::try_from(bytes).expect("fits");
        let mut inode = self.inode.borrow_mut();
        inode.current.resize(len, 0);
        // Unsynced writes beyond the new end can no longer surface after a crash.
        let unsynced = std::mem::take(&mut inode.unsynced);
        inode.unsynced = unsynced
            .into_iter()
            .filter_map(|(position, mut data)| {
                if position >= bytes {
                    return None;
                }
                data.truncate(usize::try_from(bytes - position).expect("fits"));
                Some((position, data))
            })
            .collect();
        inode.durable.resize(len, 0);
        Ok(())
    }

    async fn preallocate(&self, _bytes: u64) -> Result<(), IoError> {
        self.check_live(IoOp::Preallocate)
    }
}

/// Runs a future that never waits to completion; the simulated disk's futures are
/// always ready, so tests and the proptest need no executor.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    // Bounded: a simulated-disk future is ready at the first poll.
    for _ in 0..1_000_000 {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
    panic!("block_on: future kept pending; it waits on something other than SimDisk");
}

const _: () = assert!(BLOCK_BYTES.is_multiple_of(SECTOR_BYTES));

#[cfg(test)]
mod tests {
    use super::*;

    fn write(file: &SimFile, position: u64, fill: u8) {
        let mut buf = file.alloc_buf(BLOCK_BYTES as usize);
        buf.as_mut().fill(fill);
        block_on(file.write_at(buf, position)).unwrap();
    }

    fn check_crash(mode: CrashMode, seed: u64) -> Vec<u8> {
        let disk = SimDisk::new(seed);
        let file = block_on(disk.create("f")).unwrap();
        write(&file, 0, 1);
        block_on(file.sync()).unwrap();
        write(&file, BLOCK_BYTES, 2);
        write(&file, 2 * BLOCK_BYTES, 3);
        disk.crash_with(mode);
        assert!(
            block_on(file.size()).is_err(),
            "stale handle must fail after a crash"
        );
        let file = block_on(disk.open("f")).unwrap();
        let bytes = block_on(file.read_at(0, 1 << 20)).unwrap();
        assert!(bytes.len() >= BLOCK_BYTES as usize);
        assert!(
            bytes[..BLOCK_BYTES as usize].iter().all(|b| *b == 1),
            "synced data lost"
        );
        bytes
    }

    #[test]
    fn crash_keeps_synced_and_drops_or_tears_unsynced() {
        assert_eq!(
            check_crash(CrashMode::LoseUnsynced, 1).len(),
            BLOCK_BYTES as usize
        );
        for seed in 0..50 {
            let bytes = check_crash(CrashMode::TearLast, seed);
            // A prefix survives: never block 3 without all of block 2.
            if bytes.len() > 2 * BLOCK_BYTES as usize {
                assert!(bytes[BLOCK_BYTES as usize..2 * BLOCK_BYTES as usize]
                    .iter()
                    .all(|b| *b == 2));
            }
            let bytes = check_crash(CrashMode::ScrambleSectors, seed);
            for sector in bytes.chunks(SECTOR_BYTES as usize) {
                let first = sector[0];
                assert!(sector.iter().all(|b| *b == first), "sectors are atomic");
            }
        }
    }

    #[test]
    fn same_seed_same_crash() {
        let run = |seed| {
            let disk = SimDisk::new(seed);
            let file = block_on(disk.create("f")).unwrap();
            for i in 0..8 {
                write(&file, i * BLOCK_BYTES, i as u8 + 1);
            }
            disk.crash();
            block_on(block_on(disk.open("f")).unwrap().read_at(0, 1 << 20)).unwrap()
        };
        assert_eq!(run(42), run(42));
    }

    #[test]
    fn injected_faults() {
        let disk = SimDisk::new(3);
        let file = block_on(disk.create("f")).unwrap();
        disk.fail_next(IoOp::Write, IoErrorKind::NoSpace);
        let err = block_on(file.write_at(file.alloc_buf(4096), 0)).unwrap_err();
        assert_eq!(err.kind, IoErrorKind::NoSpace);
        write(&file, 0, 7);
        disk.fail_next(IoOp::Sync, IoErrorKind::Io);
        assert_eq!(block_on(file.sync()).unwrap_err().kind, IoErrorKind::Io);
        // The failed sync's write is visible but not durable.
        assert_eq!(block_on(file.read_at(0, 1)).unwrap(), vec![7]);
        disk.crash_with(CrashMode::LoseUnsynced);
        let file = block_on(disk.open("f")).unwrap();
        assert_eq!(block_on(file.size()).unwrap(), 0);
        assert!(block_on(disk.create("f")).is_err());
        disk.set_capacity_bytes(4096);
        write(&file, 0, 1);
        let err = block_on(file.write_at(file.alloc_buf(4096), 4096)).unwrap_err();
        assert_eq!(err.kind, IoErrorKind::NoSpace);
    }

    #[test]
    fn rename_moves_the_file_atomically_and_durably() {
        let disk = SimDisk::new(5);
        let file = block_on(disk.create("a")).unwrap();
        write(&file, 0, 4);
        block_on(file.sync()).unwrap();
        let other = block_on(disk.create("b")).unwrap();
        write(&other, 0, 9);
        block_on(disk.rename("a", "b")).unwrap();
        assert_eq!(block_on(disk.list()).unwrap(), vec!["b".to_string()]);
        assert_eq!(block_on(file.read_at(0, 1)).unwrap(), vec![4], "same inode");
        let err = block_on(disk.rename("a", "c")).unwrap_err();
        assert_eq!(err.kind, IoErrorKind::NotFound);
        // Stopped before it does anything: the old name stays, also after a crash.
        disk.fail_nth_call(1, IoErrorKind::Io);
        assert!(block_on(disk.rename("b", "c")).is_err());
        disk.crash_with(CrashMode::LoseUnsynced);
        assert_eq!(block_on(disk.list()).unwrap(), vec!["b".to_string()]);
        block_on(disk.rename("b", "c")).unwrap();
        disk.crash_with(CrashMode::LoseUnsynced);
        assert_eq!(block_on(disk.list()).unwrap(), vec!["c".to_string()]);
        let file = block_on(disk.open("c")).unwrap();
        assert_eq!(block_on(file.read_at(0, 1)).unwrap(), vec![4]);
    }

    #[test]
    fn an_armed_read_flip_hits_the_nth_read_once() {
        let disk = SimDisk::new(4);
        let file = block_on(disk.create("f")).unwrap();
        write(&file, 0, 9);
        block_on(file.sync()).unwrap();
        let clean = block_on(file.read_at(0, 4096)).unwrap();
        disk.flip_read(2);
        assert_eq!(block_on(file.read_at(0, 4096)).unwrap(), clean);
        let flipped = block_on(file.read_at(0, 4096)).unwrap();
        let bits: u32 = clean
            .iter()
            .zip(&flipped)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum();
        assert_eq!(bits, 1, "one bit flipped on the second read");
        assert_eq!(block_on(file.read_at(0, 4096)).unwrap(), clean, "transient");
    }
}
