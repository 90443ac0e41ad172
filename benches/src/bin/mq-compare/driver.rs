//! What the workloads need of a system: a fresh queue per row, producers that send a
//! batch and return once it is durable, and consumers that receive a batch and ack it.
//! One implementation per system (`sluice.rs`, `kafka.rs`, `postgres.rs`, `rabbitmq.rs`,
//! `redis.rs`).

/// How long a receive may wait for a first message before it returns none.
pub const RECEIVE_WAIT_MS: u64 = 100;

/// A system with one queue at a time.
#[allow(async_fn_in_trait)]
pub trait Driver {
    type Producer: Producer + 'static;
    type Consumer: Consumer + 'static;
    /// Replaces the queue with a fresh, empty one (each row starts empty).
    async fn reset(&mut self) -> Result<(), String>;
    /// A producer on its own connection.
    async fn producer(&self, index: u32) -> Result<Self::Producer, String>;
    /// A consumer on its own connection, receiving at most `batch` at a time: consumer
    /// `index` of the row's `count`.
    async fn consumer(&self, index: u32, count: u32, batch: u32) -> Result<Self::Consumer, String>;
}

#[allow(async_fn_in_trait)]
pub trait Producer {
    /// Sends the bodies as one batch (one request, transaction, pipeline or window of
    /// publisher confirms) and returns once the system confirmed every one durable.
    async fn send(&mut self, bodies: &[Vec<u8>]) -> Result<(), String>;
}

#[allow(async_fn_in_trait)]
pub trait Consumer {
    /// Appends up to `max` received bodies to `out`, waiting a short while (about
    /// [`RECEIVE_WAIT_MS`], a second for Sluice's long poll) when there are none.
    async fn receive(&mut self, max: u32, out: &mut Vec<Vec<u8>>) -> Result<(), String>;
    /// Acks everything received since the last ack.
    async fn ack(&mut self) -> Result<(), String>;
}
