//! Work one shard asks of another: a call on a partition the other shard owns, or a
//! metadata change for shard 0 (which serialises them). Plain data, `Send`, carried over
//! glommio's channel mesh; the answer comes back the same way, matched by call number.

use sluice_core::engine::metadata::ChangeError;
use sluice_core::engine::types::{
    AckKind, AckOutcome, Delivery, EngineError, GroupId, GroupStart, GroupStats, HandleError,
    MessageId, QueueConfig, QueueId, ReceiptHandle, SendInput, SendOutcome,
};
use sluice_core::engine::{QueueInfo, ReceiveRequest};
use sluice_node::{Lane, NodeError};
use sluice_node::tenants::{Tenant, TenantError};

/// A call on one partition's engine.
#[derive(Debug)]
pub enum PartitionCall {
    CreateQueue {
        /// Partition 0's id for it (later partitions and repair), or `None`: the next.
        id: Option<QueueId>,
        tenant: String,
        name: String,
        config: QueueConfig,
        meta: Vec<u8>,
    },
    DeleteQueue {
        queue: QueueId,
    },
    CreateGroup {
        /// As `CreateQueue::id`.
        id: Option<GroupId>,
        queue: QueueId,
        name: String,
    },
    DeleteGroup {
        queue: QueueId,
        group: GroupId,
    },
    Send {
        queue: QueueId,
        messages: Vec<SendInput>,
    },
    /// Cancels a scheduled message not yet released; answers `Done`.
    Cancel {
        queue: QueueId,
        message: MessageId,
    },
    Receive {
        queue: QueueId,
        group: GroupId,
        lane: Lane,
        request: ReceiveRequest,
    },
    Ack {
        lane: Lane,
        acks: Vec<(ReceiptHandle, AckKind)>,
    },
    /// Answers once the partition changed after `seen`, or after `wait_ms`.
    WaitChange {
        seen: u64,
        wait_ms: u64,
    },
    Counts {
        queue: QueueId,
    },
    /// Everything the directory needs: every queue with its groups.
    ListQueues,
}

#[derive(Debug)]
pub enum PartitionReply {
    Queue(QueueId),
    Group(GroupId),
    Done,
    Sent(Vec<SendOutcome>),
    /// Deliveries and the partition's change count when they were picked.
    Received(Vec<Delivery>, u64),
    Acked(Vec<Result<AckOutcome, HandleError>>),
    Changed,
    Counts(QueueInfo, Vec<(GroupId, GroupStats)>),
    Queues(Vec<QueueInfo>),
}

/// A metadata change, executed by shard 0 one at a time.
#[derive(Debug)]
pub enum MetaCall {
    CreateQueue {
        tenant: String,
        name: String,
        config: QueueConfig,
        meta: Vec<u8>,
    },
    DeleteQueue {
        queue: QueueId,
    },
    CreateGroups {
        queue: QueueId,
        names: Vec<String>,
        start: GroupStart,
    },
    DeleteGroup {
        queue: QueueId,
        group: GroupId,
    },
    CreateTenant {
        name: String,
        password: Option<String>,
    },
    DeleteTenant {
        project_id: String,
    },
    SetQuotas {
        project_id: String,
        quotas: sluice_node::tenants::Quotas,
    },
}

#[derive(Debug)]
pub enum MetaReply {
    Queue(QueueId),
    Groups(Vec<GroupId>),
    Done,
    Tenant(Box<Tenant>),
}

#[derive(Debug)]
pub enum Call {
    Partition { partition: u32, call: PartitionCall },
    Meta(MetaCall),
}

#[derive(Debug)]
pub enum Reply {
    Partition(Result<PartitionReply, NodeError>),
    Meta(Result<MetaReply, MetaError>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaError {
    Node(NodeError),
    Tenant(TenantError),
}

impl From<NodeError> for MetaError {
    fn from(error: NodeError) -> MetaError {
        MetaError::Node(error)
    }
}

/// A metadata change that failed on some partition; the gate has already noted whether it
/// may have left the partitions apart.
impl From<ChangeError<NodeError>> for MetaError {
    fn from(failure: ChangeError<NodeError>) -> MetaError {
        MetaError::Node(failure.error)
    }
}

impl From<EngineError> for MetaError {
    fn from(error: EngineError) -> MetaError {
        MetaError::Node(NodeError::Engine(error))
    }
}

/// What travels on the mesh.
#[derive(Debug)]
pub enum Envelope {
    Request { id: u64, call: Call },
    Response { id: u64, reply: Reply },
}
