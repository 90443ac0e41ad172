//! A slow disk: `SimDisk` with a seeded simulated delay before every operation, so engine
//! calls suspend at their I/O and concurrent requests interleave (and share group commits)
//! as they would on a real device. The operation takes effect when the delay ends; a crash
//! during the delay fails it through `SimDisk`'s stale handles. Latency 0 keeps `SimDisk`'s
//! ready futures (requests then run one at a time).

use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use sluice_core::sim_disk::{SimBuf, SimDisk, SimFile};
use sluice_core::storage::{IoError, Storage, StorageFile};

#[derive(Clone)]
pub struct SlowDisk {
    inner: SimDisk,
    latency_ms_max: u64,
}

pub struct SlowFile {
    inner: SimFile,
    latency_ms_max: u64,
}

async fn pause(latency_ms_max: u64) {
    if latency_ms_max > 0 {
        let ms = thread_rng().gen_range(0..=latency_ms_max);
        madsim::time::sleep(Duration::from_millis(ms)).await;
    }
}

impl SlowDisk {
    pub fn new(inner: SimDisk, latency_ms_max: u64) -> SlowDisk {
        SlowDisk {
            inner,
            latency_ms_max,
        }
    }

    fn wrap(&self, inner: SimFile) -> SlowFile {
        SlowFile {
            inner,
            latency_ms_max: self.latency_ms_max,
        }
    }
}

impl Storage for SlowDisk {
    type File = SlowFile;

    async fn create(&self, name: &str) -> Result<SlowFile, IoError> {
        pause(self.latency_ms_max).await;
        self.inner.create(name).await.map(|file| self.wrap(file))
    }

    async fn open(&self, name: &str) -> Result<SlowFile, IoError> {
        pause(self.latency_ms_max).await;
        self.inner.open(name).await.map(|file| self.wrap(file))
    }

    async fn list(&self) -> Result<Vec<String>, IoError> {
        pause(self.latency_ms_max).await;
        self.inner.list().await
    }

    async fn remove(&self, name: &str) -> Result<(), IoError> {
        pause(self.latency_ms_max).await;
        self.inner.remove(name).await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), IoError> {
        pause(self.latency_ms_max).await;
        self.inner.rename(from, to).await
    }
}

impl StorageFile for SlowFile {
    type Buf = SimBuf;
    type ReadBuf = Vec<u8>;

    fn alloc_buf(&self, bytes: usize) -> SimBuf {
        self.inner.alloc_buf(bytes)
    }

    async fn write_at(&self, buf: SimBuf, position: u64) -> Result<(), IoError> {
        pause(self.latency_ms_max).await;
        self.inner.write_at(buf, position).await
    }

    async fn read_at(&self, position: u64, bytes: usize) -> Result<Vec<u8>, IoError> {
        pause(self.latency_ms_max).await;
        self.inner.read_at(position, bytes).await
    }

    async fn sync(&self) -> Result<(), IoError> {
        pause(self.latency_ms_max).await;
        self.inner.sync().await
    }

    async fn size(&self) -> Result<u64, IoError> {
        pause(self.latency_ms_max).await;
        self.inner.size().await
    }

    async fn truncate(&self, bytes: u64) -> Result<(), IoError> {
        pause(self.latency_ms_max).await;
        self.inner.truncate(bytes).await
    }

    async fn preallocate(&self, bytes: u64) -> Result<(), IoError> {
        pause(self.latency_ms_max).await;
        self.inner.preallocate(bytes).await
    }
}
