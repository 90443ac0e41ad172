//! Produce: each partition's record batches become one `Node::send_to` of that
//! partition, one message per record, answered once durable (every `acks` but 0, which
//! answers nothing at all).

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sluice_core::engine::types::{Delay, SendInput};
use sluice_node::idempotence::{ProducerBatch, SequenceRefusal};
use sluice_node::Node;

use super::api::{decode, respond, Context};
use super::records::{attributes_of, decode_batches, BatchError};
use super::topics::{error_code, queue_of, too_many_partitions, topic_index};
use super::{Reply, TOPICS_PER_REQUEST_MAX};

pub async fn produce<N: Node>(context: &Context<'_>, node: &N, body: &mut Bytes) -> Reply {
    let request: ProduceRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    if request.topic_data.len() > TOPICS_PER_REQUEST_MAX {
        return Reply::Close(format!(
            "{} topics in one Produce; at most {TOPICS_PER_REQUEST_MAX}",
            request.topic_data.len()
        ));
    }
    if request.transactional_id.is_some() {
        return Reply::Close("transactional producers are not served".to_string());
    }
    let tenant = context.tenant.project_id.as_str();
    let names: Vec<&str> = request
        .topic_data
        .iter()
        .map(|t| t.name.0.as_str())
        .collect();
    let index = topic_index(node, tenant, &names).await;
    let mut response = ProduceResponse::default();
    for topic in &request.topic_data {
        if let Some(reply) = too_many_partitions(topic.partition_data.len()) {
            return reply;
        }
        let mut answer = TopicProduceResponse::default();
        answer.name = topic.name.clone();
        for data in &topic.partition_data {
            let mut part = PartitionProduceResponse::default();
            part.index = data.index;
            part.base_offset = -1;
            part.log_append_time_ms = -1;
            part.log_start_offset = -1;
            let outcome = match (
                queue_of(&index, topic.name.0.as_str()),
                u32::try_from(data.index),
            ) {
                (Ok(queue), Ok(partition)) => {
                    produce_partition(node, queue, partition, data.records.as_ref()).await
                }
                _ => Err((ResponseError::UnknownTopicOrPartition.code(), None)),
            };
            match outcome {
                Ok(base_offset) => part.base_offset = base_offset,
                Err((code, message)) => {
                    part.error_code = code;
                    part.error_message = message.map(StrBytes::from_string);
                }
            }
            answer.partition_responses.push(part);
        }
        response.responses.push(answer);
    }
    if request.acks == 0 {
        return Reply::Nothing;
    }
    respond(context.head, &response)
}

/// Stores one partition's records; answers the offset of the first.
async fn produce_partition<N: Node>(
    node: &N,
    queue: sluice_core::engine::types::QueueId,
    partition: u32,
    records: Option<&Bytes>,
) -> Result<i64, (i16, Option<String>)> {
    let Some(records) = records else {
        return Err((
            ResponseError::CorruptMessage.code(),
            Some("no records".into()),
        ));
    };
    let (records, producer) = decode_batches(records).map_err(|error| match error {
        BatchError::Corrupt(why) => (ResponseError::CorruptMessage.code(), Some(why)),
        BatchError::TooLarge(why) => (ResponseError::RecordListTooLarge.code(), Some(why)),
    })?;
    if records.is_empty() {
        return Err((
            ResponseError::CorruptMessage.code(),
            Some("an empty batch".into()),
        ));
    }
    let producer = producer.map(|producer| ProducerBatch {
        id: producer.id,
        epoch: producer.epoch,
        base_sequence: producer.base_sequence,
        count: i32::try_from(records.len()).expect("bounded by RECORDS_PER_BATCH_MAX"),
    });
    let messages: Vec<SendInput> = records
        .iter()
        .map(|record| SendInput {
            body: record
                .value
                .as_ref()
                .map_or_else(Vec::new, |value| value.to_vec()),
            attributes: attributes_of(record),
            tags: Vec::new(),
            fifo_group: None,
            delay: Delay::None,
            dedup_id: None,
        })
        .collect();
    match node.send_to(queue, partition, messages, producer).await {
        Ok(reply) => match reply.refused {
            Some(SequenceRefusal::OutOfOrder) => Err((
                ResponseError::OutOfOrderSequenceNumber.code(),
                Some("the batch skips sequence numbers".into()),
            )),
            Some(SequenceRefusal::StaleEpoch) => Err((
                ResponseError::InvalidProducerEpoch.code(),
                Some("a newer epoch of this producer exists".into()),
            )),
            None => Ok(reply
                .first_seq
                .map_or(-1, |first| i64::try_from(first).unwrap_or(i64::MAX))),
        },
        Err(error) => Err((error_code(&error), Some(error.to_string()))),
    }
}

/// InitProducerId for idempotent producers (no transactions): a fresh random producer
/// id with epoch 0, or, when the client names its id and epoch (KIP-360, after a fatal
/// sequence error), the same id with the next epoch, which fences the old one.
pub fn init_producer_id(context: &Context<'_>, body: &mut Bytes) -> Reply {
    let request: InitProducerIdRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let mut response = InitProducerIdResponse::default();
    response.ongoing_txn_producer_id = ProducerId(-1);
    response.ongoing_txn_producer_epoch = -1;
    if request.transactional_id.is_some() {
        response.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        response.producer_id = ProducerId(-1);
        response.producer_epoch = -1;
        return respond(context.head, &response);
    }
    if request.producer_id.0 >= 0 && request.producer_epoch >= 0 {
        response.producer_id = request.producer_id;
        response.producer_epoch = request.producer_epoch.checked_add(1).unwrap_or(0);
    } else {
        let mut bytes = [0u8; 8];
        getrandom::getrandom(&mut bytes).expect("the OS random source works");
        response.producer_id = ProducerId(i64::from_le_bytes(bytes) & i64::MAX);
        response.producer_epoch = 0;
    }
    respond(context.head, &response)
}
