//! Forwarding a call to the node that leads its partition.
//!
//! In a cluster every node holds a replica of every partition, on the same shard index,
//! but only the replica that leads a partition's Raft group takes its writes and
//! receives. [`NodeShard::call`] brings a request to the shard that owns its partition;
//! there, when the partition's engine names another node as leader (for a metadata
//! change: partition 0's leader, so that changes stay serialised on one metadata shard),
//! the request goes to that node's same shard through [`Host::call_node`] and its answer
//! is this call's answer. The hop rule:
//!
//! - At most one hop. A forwarded call runs on the receiving node
//!   ([`NodeShard::serve_forwarded`]) and is never forwarded again: if that node no longer
//!   leads, the engine's `NotLeader` comes back (HTTP 503, retriable). A metadata change
//!   run there reaches the other partitions with calls of its own, each again at most one
//!   hop.
//! - The decision is taken before anything runs here (the engine's view of the leader),
//!   never after a local attempt: a write refused here as `NotLeader` after it was
//!   proposed may still commit, and is not sent again.
//! - A leader from the peers: when this node's replica knows no leader, the node asks
//!   its peers which node they take for the partition's leader
//!   ([`requests::LeaderHint`], [`LEADER_HINT_TIMEOUT_MS`] each) and forwards to the
//!   first one named. Without it a replica removed from its group, which never hears of
//!   its removal (a Raft leader sends nothing to non-members), would answer `NotLeader`
//!   for that partition for ever; an election in progress costs a round of asks.
//! - Bounds: [`FORWARD_INFLIGHT_MAX`] calls out and [`FORWARD_SERVING_MAX`] calls in per
//!   shard (503 beyond), [`FORWARD_TIMEOUT_MS`] per call (503 at expiry: the call may
//!   still have taken effect, as with any 503 of a write), a forwarded long-poll wait cut
//!   to [`FORWARD_WAIT_MS_MAX`], and [`FORWARD_BYTES_MAX`] per encoded call or answer.
//!
//! The bytes: a version byte ([`FORWARD_VERSION`]) then the bincode encoding (varints,
//! size-limited decode, no trailing bytes) of a [`Call`] (its variant is the request
//! kind) or of an answer, `Result<Answer, NodeError>`. Bytes that do not decode are an
//! error, never a panic. The host adds the correlation id that pairs a reply with its
//! call (the server: `server/src/forwarding.rs`).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;

use bincode::Options;
use serde::{Deserialize, Serialize};
use sluice_core::engine::types::EngineError;
use sluice_core::limits::CLUSTER_FRAME_BYTES_MAX;

use crate::requests::{self, ShardRequest};
use crate::{Host, NodeError, NodeShard};

/// The format of a forwarded call and its answer; bytes of another version are refused.
pub const FORWARD_VERSION: u8 = 1;
/// Forwarded calls one shard waits on at once; more answer 503 at once.
pub const FORWARD_INFLIGHT_MAX: usize = 256;
/// Forwarded calls one shard serves at once; more answer 503 at once.
pub const FORWARD_SERVING_MAX: usize = 256;
/// Longest wait for a forwarded call's answer.
pub const FORWARD_TIMEOUT_MS: u64 = 10_000;
/// Longest wait for one peer's [`requests::LeaderHint`]: a peer that does not answer
/// by then is skipped (a partitioned peer must not hold a request for the full
/// [`FORWARD_TIMEOUT_MS`]).
pub const LEADER_HINT_TIMEOUT_MS: u64 = 500;
/// Longest wait of a forwarded [`requests::WaitChange`] (a long poll waits in rounds of
/// at most this, well within [`FORWARD_TIMEOUT_MS`]).
pub const FORWARD_WAIT_MS_MAX: u64 = 1_000;
/// Largest encoded call or answer: a cluster frame, less room for the host's header.
pub const FORWARD_BYTES_MAX: u64 = CLUSTER_FRAME_BYTES_MAX as u64 - 64;

const _: () = assert!(FORWARD_WAIT_MS_MAX < FORWARD_TIMEOUT_MS);

/// Declares the forwarded-call enum and its answers: one variant per request type.
macro_rules! forwardable {
    ($($name:ident),* $(,)?) => {
        /// A request forwarded to another node; the variant is its kind.
        #[derive(Debug, Serialize, Deserialize)]
        pub enum Call {
            $($name(requests::$name),)*
        }

        /// The reply of a [`Call`], of the same variant.
        #[derive(Debug, Serialize, Deserialize)]
        pub enum Answer {
            $($name(<requests::$name as ShardRequest>::Reply),)*
        }

        impl Call {
            /// Runs it here, as a call forwarded to this node.
            async fn serve<H: Host>(self, shard: &NodeShard<H>) -> Result<Answer, NodeError> {
                match self {
                    $(Call::$name(request) => shard.serve_one(request).await.map(Answer::$name),)*
                }
            }
        }
    };
}

forwardable! {
    ReadDirectory, ReadDirectoryChanges, ReadTenants, PutTenant, RemoveTenant, SetAdminSecret,
    CreateQueue, DeleteQueue, SetQueueMeta, SetDeadLetter, SetPartitions, CreateGroup, DeleteGroup, SendBatch, SendTo, ReadPositions,
    Positions, Cancel, EndTransaction, TakeTransactionChecks, ReadDeadLetters,
    TraceMessage,
    Receive, Ack, ChangeVisibility, WaitChange, Counts, MetaCreateQueue, MetaDeleteQueue, MetaSetQueueMeta,
    MetaSetDeadLetter, MetaSetPartitions,
    MetaCreateGroups, MetaDeleteGroup, MetaCreateTenant, MetaDeleteTenant, MetaSetQuotas,
    ReadMembership, ChangeMembership, TransferLead, LeaderHint,
    KafkaJoinGroup, KafkaSyncGroup, KafkaHeartbeat, KafkaLeaveGroup, KafkaCommitOffsets,
    KafkaFetchOffsets, KafkaDescribeGroup, KafkaListGroups, Purge, StartMove, StopMove, Redrive,
}

impl Call {
    /// The call with its wait cut to [`FORWARD_WAIT_MS_MAX`] (applied when sending and
    /// again when serving).
    fn bounded(self) -> Call {
        match self {
            Call::WaitChange(mut wait) => {
                wait.wait_ms = wait.wait_ms.min(FORWARD_WAIT_MS_MAX);
                Call::WaitChange(wait)
            }
            other => other,
        }
    }
}

/// [`NodeError`] between nodes. A storage or encoding fault stays with the node that met
/// it (its host takes the engine out of service); the caller sees it as unavailable.
#[derive(Serialize, Deserialize)]
pub enum WireNodeError {
    Engine(EngineError),
    Unavailable(String),
    MetaChanged,
}

impl From<NodeError> for WireNodeError {
    fn from(error: NodeError) -> WireNodeError {
        match error {
            NodeError::Engine(EngineError::Storage(_) | EngineError::Encode(_)) => {
                WireNodeError::Unavailable("storage fault".to_string())
            }
            NodeError::Engine(engine) => WireNodeError::Engine(engine),
            NodeError::Unavailable(why) => WireNodeError::Unavailable(why.to_string()),
            NodeError::MetaChanged => WireNodeError::MetaChanged,
        }
    }
}

impl From<WireNodeError> for NodeError {
    fn from(error: WireNodeError) -> NodeError {
        match error {
            WireNodeError::Engine(engine) => NodeError::Engine(engine),
            // The leader's reason is its own; the caller's is that the leader refused.
            WireNodeError::Unavailable(_) => {
                NodeError::Unavailable("the node leading the partition could not serve it")
            }
            WireNodeError::MetaChanged => NodeError::MetaChanged,
        }
    }
}

impl Serialize for NodeError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireNodeError::from(self.clone()).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for NodeError {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<NodeError, D::Error> {
        WireNodeError::deserialize(deserializer).map(NodeError::from)
    }
}

fn options() -> impl Options {
    bincode::DefaultOptions::new().with_limit(FORWARD_BYTES_MAX)
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, NodeError> {
    let mut bytes = vec![FORWARD_VERSION];
    options()
        .serialize_into(&mut bytes, value)
        .map_err(|_| NodeError::Unavailable("a forwarded call does not encode"))?;
    Ok(bytes)
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, NodeError> {
    match bytes.split_first() {
        Some((&FORWARD_VERSION, body)) => options()
            .deserialize(body)
            .map_err(|_| NodeError::Unavailable("a forwarded call does not decode")),
        Some(_) => Err(NodeError::Unavailable(
            "a forwarded call of another version",
        )),
        None => Err(NodeError::Unavailable("an empty forwarded call")),
    }
}

/// A call's bytes (its wait bounded).
pub fn encode_call(call: Call) -> Result<Vec<u8>, NodeError> {
    encode(&call.bounded())
}

/// A call from its bytes (its wait bounded); an error for bytes that are not one.
pub fn decode_call(bytes: &[u8]) -> Result<Call, NodeError> {
    decode::<Call>(bytes).map(Call::bounded)
}

/// An answer's bytes; an answer that does not encode (too large) becomes an error's.
pub fn encode_answer(answer: Result<Answer, NodeError>) -> Vec<u8> {
    encode(&answer).unwrap_or_else(|error| {
        let refused: Result<Answer, NodeError> = Err(error);
        encode(&refused).expect("an error encodes")
    })
}

/// An answer from its bytes: the outer error when the bytes are not one.
pub fn decode_answer(bytes: &[u8]) -> Result<Result<Answer, NodeError>, NodeError> {
    decode(bytes)
}

/// What one shard's forwarding did since it started, for the host's log and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardStats {
    /// Calls sent to another node.
    pub sent: u64,
    /// Of those, the ones that timed out or whose answer did not arrive or decode.
    pub failed: u64,
    /// Calls refused before sending: [`FORWARD_INFLIGHT_MAX`] already in flight.
    pub refused: u64,
    /// Calls served for another node.
    pub served: u64,
    /// Calls from another node refused: busy ([`FORWARD_SERVING_MAX`]) or undecodable.
    pub serve_refused: u64,
}

/// A shard's forwarding state: how many calls are in flight each way, and its counters.
#[derive(Default)]
pub struct Forwarding {
    outgoing: Cell<usize>,
    serving: Cell<usize>,
    stats: Cell<ForwardStats>,
}

impl Forwarding {
    pub fn stats(&self) -> ForwardStats {
        self.stats.get()
    }

    fn count(&self, change: impl FnOnce(&mut ForwardStats)) {
        let mut stats = self.stats.get();
        change(&mut stats);
        self.stats.set(stats);
    }
}

/// One place taken in a bounded count, given back on drop (a call given up included).
struct Slot<'a>(&'a Cell<usize>);

impl<'a> Slot<'a> {
    fn take(count: &'a Cell<usize>, max: usize) -> Option<Slot<'a>> {
        (count.get() < max).then(|| {
            count.set(count.get() + 1);
            Slot(count)
        })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        assert!(self.0.get() > 0, "a slot was taken");
        self.0.set(self.0.get() - 1);
    }
}

impl<H: Host> NodeShard<H> {
    /// The node leading `partition` (which this shard owns) when it is not this one and
    /// the engine knows it; `None` means run here.
    pub(crate) fn leader_elsewhere(&self, partition: u32) -> Option<u64> {
        let engine = self.host().engine(partition).ok()?;
        engine
            .leader_id()
            .filter(|leader| *leader != engine.replica_id())
    }

    /// The leader of `partition` (owned here) as the first peer that knows one names it,
    /// asked only when this node's replica knows none (see the module documentation);
    /// `None` when no peer names another node within [`LEADER_HINT_TIMEOUT_MS`] each.
    pub(crate) async fn leader_from_peers(&self, partition: u32) -> Option<u64> {
        let engine = self.host().engine(partition).ok()?;
        if engine.leader_id().is_some() {
            return None;
        }
        let me = engine.replica_id();
        // Bounded by the cluster's size, each ask by its timeout.
        for peer in self.host().cluster_nodes() {
            if peer == me {
                continue;
            }
            let call = requests::LeaderHint { partition }.into_call();
            let answer = self.exchange(peer, call, LEADER_HINT_TIMEOUT_MS).await;
            let hint = answer
                .ok()
                .and_then(requests::LeaderHint::from_answer)
                .flatten();
            if let Some(leader) = hint.filter(|leader| *leader != me) {
                return Some(leader);
            }
        }
        None
    }

    /// Whether this node's replica of `partition` (owned here) serves as its leader.
    pub(crate) fn leads(&self, partition: u32) -> bool {
        self.host()
            .engine(partition)
            .is_ok_and(|engine| engine.is_serving_leader())
    }

    /// Sends `request` to the same shard of `node` and answers its reply; after a
    /// metadata change, refreshes this node's directories from the leader (read your
    /// writes through any node).
    pub(crate) async fn call_remote<R: ShardRequest>(
        &self,
        node: u64,
        request: R,
    ) -> Result<R::Reply, NodeError> {
        let answer = self
            .exchange(node, request.into_call(), FORWARD_TIMEOUT_MS)
            .await;
        if R::META {
            self.refresh_after_change().await;
        }
        R::from_answer(answer?).ok_or(NodeError::Unavailable(
            "a forwarded call's answer is of another kind",
        ))
    }

    /// Both directories from partition 0's leader, after a forwarded metadata change
    /// (boxed: the reads are calls, which may forward in turn).
    fn refresh_after_change(&self) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        Box::pin(async move {
            if let Err(error) = self.refresh_directory().await {
                self.host().log(&format!(
                    "directory refresh after a forwarded change: {error}"
                ));
            }
            if let Err(error) = self.refresh_tenants().await {
                self.host()
                    .log(&format!("tenant refresh after a forwarded change: {error}"));
            }
        })
    }

    /// One call to `node` and its decoded answer, within the bounds.
    async fn exchange(&self, node: u64, call: Call, timeout_ms: u64) -> Result<Answer, NodeError> {
        let forwarding = self.forwarding();
        let Some(_slot) = Slot::take(&forwarding.outgoing, FORWARD_INFLIGHT_MAX) else {
            forwarding.count(|stats| stats.refused += 1);
            return Err(NodeError::Unavailable("too many forwarded calls in flight"));
        };
        let bytes = encode_call(call)?;
        forwarding.count(|stats| stats.sent += 1);
        let timeout = async {
            self.host().sleep_ms(timeout_ms).await;
            Err(NodeError::Unavailable("a forwarded call timed out"))
        };
        let reply = futures_lite::future::or(self.host().call_node(node, bytes), timeout).await;
        let answer = reply.and_then(|bytes| decode_answer(&bytes));
        if answer.is_err() {
            forwarding.count(|stats| stats.failed += 1);
        }
        answer?
    }

    /// Serves a call another node forwarded to this shard (the same shard index there):
    /// runs it here, never forwarding it again, and answers the bytes of its reply.
    pub async fn serve_forwarded(&self, bytes: &[u8]) -> Vec<u8> {
        let forwarding = self.forwarding();
        let Some(_slot) = Slot::take(&forwarding.serving, FORWARD_SERVING_MAX) else {
            forwarding.count(|stats| stats.serve_refused += 1);
            return encode_answer(Err(NodeError::Unavailable("too many forwarded calls")));
        };
        let answer = match decode_call(bytes) {
            Ok(call) => {
                forwarding.count(|stats| stats.served += 1);
                call.serve(self).await
            }
            Err(error) => {
                forwarding.count(|stats| stats.serve_refused += 1);
                Err(error)
            }
        };
        encode_answer(answer)
    }

    /// Runs one forwarded request here, if it is for this shard and a partition the node
    /// has (a peer's bytes are checked, not trusted).
    async fn serve_one<R: ShardRequest>(&self, request: R) -> Result<R::Reply, NodeError> {
        let here = request.target(self.config().shard_count) == self.index();
        if !here || request.led_by() >= self.config().partition_count {
            return Err(NodeError::Unavailable("a forwarded call for another shard"));
        }
        request.execute(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::engine::types::{Delay, MessageId, QueueId, SendInput, SendOutcome};

    fn send_call() -> Call {
        Call::SendBatch(requests::SendBatch {
            partition: 3,
            queue: QueueId(7),
            messages: vec![SendInput {
                body: b"hello".to_vec(),
                attributes: vec![1, 2],
                tags: vec!["t".to_string()],
                fifo_group: None,
                delay: Delay::Ms(5),
                dedup_id: Some("d".to_string()),
            }],
        })
    }

    #[test]
    fn calls_and_answers_round_trip() {
        let bytes = encode_call(send_call()).expect("encodes");
        match decode_call(&bytes).expect("decodes") {
            Call::SendBatch(batch) => {
                assert_eq!(batch.partition, 3);
                assert_eq!(batch.queue, QueueId(7));
                assert_eq!(batch.messages[0].body, b"hello");
                assert_eq!(batch.messages[0].dedup_id.as_deref(), Some("d"));
            }
            other => panic!("another kind: {other:?}"),
        }
        let outcome = SendOutcome {
            message_id: MessageId(42),
            duplicate: false,
        };
        let bytes = encode_answer(Ok(Answer::SendBatch(vec![outcome])));
        let answer = decode_answer(&bytes).expect("decodes").expect("ok");
        assert_eq!(
            requests::SendBatch::from_answer(answer),
            Some(vec![outcome])
        );
        let refused = NodeError::Engine(EngineError::NotLeader { leader: Some(2) });
        let bytes = encode_answer(Err(refused.clone()));
        assert_eq!(
            decode_answer(&bytes).expect("decodes").unwrap_err(),
            refused
        );
        let config = NodeError::Engine(EngineError::InvalidConfig("meta"));
        let bytes = encode_answer(Err(config.clone()));
        assert_eq!(decode_answer(&bytes).expect("decodes").unwrap_err(), config);
    }

    #[test]
    fn a_forwarded_wait_is_cut_to_the_bound() {
        let call = Call::WaitChange(requests::WaitChange {
            partition: 0,
            seen: 1,
            wait_ms: 60_000,
        });
        match decode_call(&encode_call(call).expect("encodes")).expect("decodes") {
            Call::WaitChange(wait) => assert_eq!(wait.wait_ms, FORWARD_WAIT_MS_MAX),
            other => panic!("another kind: {other:?}"),
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let good = encode_call(send_call()).expect("encodes");
        assert!(decode_call(&[]).is_err());
        assert!(
            decode_call(&[FORWARD_VERSION + 1, 0]).is_err(),
            "another version"
        );
        assert!(decode_call(&good[..good.len() - 1]).is_err(), "truncated");
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode_call(&trailing).is_err(), "trailing bytes");
        // A length claiming far more than the limit is refused before allocating it.
        let huge = [
            FORWARD_VERSION,
            11,
            3,
            7,
            1,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0x0f,
        ];
        assert!(decode_call(&huge).is_err());
        // Every prefix and a sweep of flipped bytes: errors or values, never a panic.
        for end in 0..good.len() {
            let _ = decode_call(&good[..end]);
        }
        for index in 1..good.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[index] ^= flip;
                let _ = decode_call(&bad);
            }
        }
        assert!(
            decode_answer(&[FORWARD_VERSION, 200]).is_err(),
            "no such variant"
        );
    }
}
