//! Transactional messages: EndTransaction, and the checks of open transactions that the
//! server writes on a producer's Telemetry stream.
//!
//! A TRANSACTION message is stored as a half message (send.rs); its transaction id names
//! the partition and id of that half message. EndTransaction commits it (it becomes
//! available) or rolls it back (it is dropped) through `Node::end_transaction`; an
//! UNSPECIFIED resolution (a checker that could not tell) leaves it open for the next
//! check. Once a half message has waited its check time, the partition's leader queues a
//! check; a producer's Telemetry stream takes the checks of the topics it publishes
//! (`Node::take_transaction_checks`, each check taken once) and writes each as a
//! `RecoverOrphanedTransactionCommand` with the half message, which the client answers
//! with EndTransaction.

use bytes::Bytes;
use sluice_core::engine::types::EngineError;
use sluice_node::{Node, NodeError, QueueView};

use crate::limits::TRANSACTION_CHECKS_PER_PASS_MAX;
use crate::proto::telemetry_command::Command;
use crate::proto::{
    Code, EndTransactionRequest, EndTransactionResponse, RecoverOrphanedTransactionCommand,
    Resource, TelemetryCommand, TransactionResolution,
};
use crate::receive::{message_of, Stored};
use crate::service::{framed, ok, refusal_of, Call, Refusal};
use crate::wire::{message_ref_decode, message_ref_encode};

pub(crate) async fn end_transaction<N: Node>(
    call: &Call<'_, N>,
    request: EndTransactionRequest,
) -> Result<Vec<Bytes>, Refusal> {
    let view = call.topic(request.topic.as_ref()).await?;
    let Some((partition, message)) = message_ref_decode(&request.transaction_id) else {
        return Err(Refusal::new(
            Code::InvalidTransactionId,
            "the transaction id is not one this server gave",
        ));
    };
    let commit = match TransactionResolution::try_from(request.resolution) {
        Ok(TransactionResolution::Commit) => true,
        Ok(TransactionResolution::Rollback) => false,
        // The producer could not tell: the transaction stays open and is checked again.
        Ok(TransactionResolution::Unspecified) | Err(_) => {
            return Ok(framed(&EndTransactionResponse { status: ok() }));
        }
    };
    match call
        .node
        .end_transaction(view.id, partition, message, commit)
        .await
    {
        Ok(()) => Ok(framed(&EndTransactionResponse { status: ok() })),
        Err(NodeError::Engine(EngineError::NotScheduled)) => Err(Refusal::new(
            Code::InvalidTransactionId,
            "no open transaction has this id: it was ended, or dropped after its last check",
        )),
        Err(error) => Err(refusal_of(error)),
    }
}

/// Takes the due checks of `topics` (the queues a producer publishes to) from every
/// partition, at most [`TRANSACTION_CHECKS_PER_PASS_MAX`] per partition, as the commands
/// to write on the producer's stream. A failure of one partition skips it this pass.
pub(crate) async fn take_checks<N: Node>(node: &N, topics: &[QueueView]) -> Vec<Bytes> {
    let mut commands = Vec::new();
    if topics.is_empty() {
        return commands;
    }
    let ids: Vec<_> = topics.iter().map(|view| view.id).collect();
    for partition in 0..node.partition_count() {
        let Ok(taken) = node
            .take_transaction_checks(partition, ids.clone(), TRANSACTION_CHECKS_PER_PASS_MAX)
            .await
        else {
            continue;
        };
        let partition = u16::try_from(partition).expect("partitions fit u16");
        for half in taken {
            let Some(view) = topics.iter().find(|view| view.id == half.check.queue) else {
                continue;
            };
            let topic = Resource {
                resource_namespace: String::new(),
                name: view.name.to_string(),
            };
            let stored = Stored {
                partition,
                message_id: half.check.message,
                body: &half.body,
                attributes: &half.attributes,
                tags: &half.tags,
                fifo_group: None,
                sent_ms: half.sent_ms,
            };
            let command = RecoverOrphanedTransactionCommand {
                message: Some(message_of(&topic, &stored, None)),
                transaction_id: message_ref_encode(partition, half.check.message),
            };
            commands.push(crate::grpc::frame(&TelemetryCommand {
                status: ok(),
                command: Some(Command::RecoverOrphanedTransactionCommand(command)),
            }));
        }
    }
    commands
}
