//! What a [`NodeShard`] needs from the program that runs it: time, the engines of the
//! partitions its shard owns, a way to run work on another shard, and somewhere to keep
//! the tenant list. The glommio server, the madsim simulation and the in-process tests
//! each provide one; none of them decides anything about queues.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use sluice_core::engine::types::EngineError;
use sluice_core::engine::Engine;
use sluice_core::storage::Storage;

use crate::guards::AuthEvent;
use crate::password::VerifierBusy;
use crate::tenants::Tenant;
use crate::{NodeError, NodeShard};

/// Work for another shard of the same node: run there, on that shard's thread, with that
/// shard's [`NodeShard`]. A forwarded call is one of these; it carries its typed request
/// and the sender of its typed answer (`crate::requests`), so it is `Send` while the
/// future it makes need not be.
pub type Job<H> = Box<dyn FnOnce(Rc<NodeShard<H>>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// One shard's view of the program around it.
pub trait Host: Sized + 'static {
    type Storage: Storage + Clone + 'static;

    /// Queue time, epoch milliseconds (`sluice_core::clock`): what the engines run on.
    fn now_ms(&self) -> u64;

    /// The wall clock, epoch milliseconds: request signatures and token expiry.
    fn wall_ms(&self) -> u64;

    /// Resolves once `ms` milliseconds of queue time have passed.
    fn sleep_ms(&self, ms: u64) -> impl Future<Output = ()>;

    /// The program is shutting down: long polls end early.
    fn stopping(&self) -> bool {
        false
    }

    /// The engine of `partition`, which this shard owns; `Unavailable` while it is out of
    /// service (reopening after a storage fault).
    fn engine(&self, partition: u32) -> Result<Rc<Engine<Self::Storage>>, NodeError>;

    /// A call on `partition`'s engine failed with a storage fault: the engine must not be
    /// used again until reopened (the host takes it out of service).
    fn storage_fault(&self, partition: u32, error: &EngineError);

    /// Runs `job` on shard `shard` (never this one). Resolves once the job is handed
    /// over, not when it has run; `Unavailable` if the shard cannot be reached.
    fn forward(&self, shard: usize, job: Job<Self>) -> impl Future<Output = Result<(), NodeError>>;

    /// Sends a call forwarded to another node (`crate::forward`'s bytes) to the same
    /// shard of node `node` (its Raft replica id) and resolves with the bytes of its
    /// answer, or `Unavailable` when it cannot be delivered. The node layer bounds how
    /// many are in flight and how long it waits; dropping the future gives the call up,
    /// and the host forgets it. A host of one node (the simulation, the tests) has no
    /// other node: the default answers `Unavailable`.
    fn call_node(
        &self,
        node: u64,
        call: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, NodeError>> {
        let _ = (node, call);
        async { Err(NodeError::Unavailable("no other node is reachable")) }
    }

    /// The ids of every node of the cluster (`--peers`), this one included; empty on a
    /// single node. Membership changes name only these.
    fn cluster_nodes(&self) -> Vec<u64> {
        Vec::new()
    }

    /// Whether other nodes hold replicas of this node's partitions (a cluster): then
    /// this node's directories may trail partition 0's leader by a moment.
    fn replicated(&self) -> bool {
        false
    }

    /// Keeps a local copy of the whole tenant list, as partition 0 holds it, each time
    /// the node republishes it (the server's `tenants.json`, which the CLI reads).
    /// Partition 0 is the durable home; a failure here is only logged.
    fn store_tenants(&self, tenants: &[Tenant]) -> Result<(), String>;

    /// The admin secret this node proposes when partition 0 holds none (the server's
    /// secrets file, opaque to the node layer); `None` for a host without one.
    fn admin_secret(&self) -> Option<Vec<u8>> {
        None
    }

    /// Partition 0's admin secret, as the node learned it (at start and after it
    /// changes): the server writes it into its data directory.
    fn learn_admin_secret(&self, secret: &[u8]) -> Result<(), String> {
        let _ = secret;
        Ok(())
    }

    /// A line for the operator's log (what a metadata repair did, why it failed).
    fn log(&self, line: &str) {
        let _ = line;
    }

    /// Checks `password` against the PHC string `phc` (`crate::password::verify_password`)
    /// without holding up the shard: an argon2id check takes tens of milliseconds of CPU,
    /// which a shard's thread must spend on requests. The server runs it on a bounded pool
    /// of threads and refuses with [`VerifierBusy`] when the pool's queue is full; a host
    /// without threads (the simulation, the tests) checks inline.
    fn verify_password(
        &self,
        password: String,
        phc: String,
    ) -> impl Future<Output = Result<bool, VerifierBusy>>;

    /// Something the login guards saw, for the host's metrics (never names a tenant).
    fn auth_event(&self, event: AuthEvent) {
        let _ = event;
    }

    /// Fills `bytes` with randomness for credentials and password salts (the OS in
    /// production; a seeded generator in the simulation, so a seed replays).
    fn fill_random(&self, bytes: &mut [u8]);

    /// Posts an alarm's change of state (`body`, JSON) to its webhook, off the shard's
    /// thread, with bounded retries (`crate::alarms`); a host without a network drops it.
    fn deliver_webhook(&self, url: &str, body: Vec<u8>) {
        let _ = (url, body);
    }
}
