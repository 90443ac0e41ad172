//! Fetch: reads each asked partition by position (`Node::read_positions`, which waits up
//! to `max_wait_ms` for `min_bytes`), and answers the messages as one uncompressed record
//! batch per partition. Fetch sessions (KIP-227) are not kept: every answer carries
//! session id 0, so clients send full requests.

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;
use sluice_node::{Node, PositionRead};

use super::api::{decode, respond, Context};
use super::records::encode_batch;
use super::topics::{error_code, queue_of, too_many_partitions, topic_index};
use super::{Reply, FETCH_BYTES_MAX, FETCH_WAIT_MS_MAX, TOPICS_PER_REQUEST_MAX};

/// Where each asked partition's answer comes from.
enum Source {
    /// Refused before reading, with this error code.
    Refused(i16),
    /// The read at this index of the node call.
    Read(usize),
}

pub async fn fetch<N: Node>(context: &Context<'_>, node: &N, body: &mut Bytes) -> Reply {
    let request: FetchRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    if request.topics.len() > TOPICS_PER_REQUEST_MAX {
        return Reply::Close(format!(
            "{} topics in one Fetch; at most {TOPICS_PER_REQUEST_MAX}",
            request.topics.len()
        ));
    }
    let tenant = context.tenant.project_id.as_str();
    let names: Vec<&str> = request.topics.iter().map(|t| t.topic.0.as_str()).collect();
    let index = topic_index(node, tenant, &names).await;
    let mut reads = Vec::new();
    let mut sources: Vec<Vec<Source>> = Vec::new();
    for topic in &request.topics {
        if let Some(reply) = too_many_partitions(topic.partitions.len()) {
            return reply;
        }
        let queue = queue_of(&index, topic.topic.0.as_str());
        let mut topic_sources = Vec::new();
        for partition in &topic.partitions {
            let read = match (&queue, u32::try_from(partition.partition)) {
                (Ok(queue), Ok(number)) if partition.fetch_offset >= 0 => PositionRead {
                    queue: *queue,
                    partition: number,
                    from: partition.fetch_offset as u64,
                    bytes_max: u64::try_from(partition.partition_max_bytes.max(1)).unwrap_or(1),
                },
                (Err(code), _) => {
                    topic_sources.push(Source::Refused(*code));
                    continue;
                }
                (Ok(_), Ok(_)) => {
                    topic_sources.push(Source::Refused(ResponseError::OffsetOutOfRange.code()));
                    continue;
                }
                (Ok(_), Err(_)) => {
                    topic_sources.push(Source::Refused(
                        ResponseError::UnknownTopicOrPartition.code(),
                    ));
                    continue;
                }
            };
            topic_sources.push(Source::Read(reads.len()));
            reads.push(read);
        }
        sources.push(topic_sources);
    }
    let bytes_max = u64::try_from(request.max_bytes.max(1))
        .unwrap_or(1)
        .min(FETCH_BYTES_MAX);
    let min_bytes = u64::try_from(request.min_bytes.max(0)).unwrap_or(0);
    let wait_ms = u64::try_from(request.max_wait_ms.max(0))
        .unwrap_or(0)
        .min(FETCH_WAIT_MS_MAX);
    let asked: Vec<u64> = reads.iter().map(|read| read.from).collect();
    let answers = if reads.is_empty() {
        Vec::new()
    } else {
        match node
            .read_positions(reads, bytes_max, min_bytes, wait_ms)
            .await
        {
            Ok(answers) => answers,
            Err(error) => {
                let mut response = FetchResponse::default();
                response.error_code = error_code(&error);
                return respond(context.head, &response);
            }
        }
    };
    let mut response = FetchResponse::default();
    for (topic, topic_sources) in request.topics.iter().zip(sources) {
        let mut answer = FetchableTopicResponse::default();
        answer.topic = topic.topic.clone();
        answer.topic_id = topic.topic_id;
        for (partition, source) in topic.partitions.iter().zip(topic_sources) {
            let mut data = PartitionData::default();
            data.partition_index = partition.partition;
            data.high_watermark = -1;
            data.last_stable_offset = -1;
            data.log_start_offset = -1;
            data.preferred_read_replica = BrokerId(-1);
            match source {
                Source::Refused(code) => data.error_code = code,
                Source::Read(at) => match &answers[at] {
                    Ok(read) => {
                        let to_i64 = |seq: u64| i64::try_from(seq).unwrap_or(i64::MAX);
                        data.high_watermark = to_i64(read.next_seq);
                        data.last_stable_offset = to_i64(read.next_seq);
                        data.log_start_offset = to_i64(read.start_seq);
                        let from = asked[at];
                        if from < read.start_seq || from > read.next_seq {
                            data.error_code = ResponseError::OffsetOutOfRange.code();
                        } else if read.messages.is_empty() {
                            data.records = Some(Bytes::new());
                        } else {
                            match encode_batch(&read.messages) {
                                Ok(batch) => data.records = Some(batch),
                                Err(why) => return Reply::Close(why),
                            }
                        }
                    }
                    Err(error) => data.error_code = error_code(error),
                },
            }
            answer.partitions.push(data);
        }
        response.responses.push(answer);
    }
    respond(context.head, &response)
}
