//! Kafka traffic in the single-node simulation: a producer of record batches through the
//! server's Kafka adapter (`sluice_tcp::kafka::Session` over the same node layer the DMS
//! clients use), under the same crashes, disk faults and clock jumps, and after the drain
//! a reader that fetches every partition of the topic from offset 0 and checks it against
//! what was acknowledged:
//!
//! - offsets are dense: the fetched log of a partition runs from 0 to its high watermark
//!   with no gap and no repeat;
//! - every acknowledged batch is there at the offsets its answer gave, record for record
//!   (offsets survive crashes, restarts and recovery);
//! - nothing appears that no produce sent, and a record appears at most once per attempt
//!   that may have stored it (duplicates come only from retries).
//!
//! Each exchange is one connection: a fresh session logs in with SASL PLAIN and sends one
//! request. The node being down refuses it (nothing stored); an answer with an error
//! code, or a node that restarts while serving it, leaves it unknown.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use madsim::rand::{thread_rng, Rng};
use sluice_tcp::kafka::{encode_records, plain_record, KafkaConfig, Reply, Session};

use crate::client::{Ctx, Target};

/// The topic the producer writes (tenant 0's).
const TOPIC: &str = "kstream";
/// Produce requests of one run.
const BATCHES: u32 = 30;
/// Attempts at one batch while its outcome stays unknown.
const ATTEMPTS_MAX: u32 = 3;
/// Records of one batch, at most.
const RECORDS_MAX: usize = 4;
/// Fetch requests per partition in the final read, at most (each answers what exists).
const FETCHES_MAX: usize = 1_000;
/// CreateTopics attempts in setup, at most.
const CREATE_ATTEMPTS_MAX: u32 = 50;

/// One produce attempt and what became of it.
#[derive(Clone, Debug)]
pub struct Produced {
    pub partition: i32,
    pub values: Vec<String>,
    pub outcome: Produce,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Produce {
    /// Answered without error: stored from this offset on.
    Acked(i64),
    /// Not stored: the node was down.
    Refused,
    /// Maybe stored: an error code, or the node restarted while serving it.
    Unknown(String),
}

/// The Kafka side of a run's history.
#[derive(Default)]
pub struct KafkaHistory {
    pub produced: Vec<Produced>,
    /// Whether setup created the topic (the cluster simulation runs no Kafka traffic).
    pub topic: bool,
}

fn config() -> Arc<KafkaConfig> {
    Arc::new(KafkaConfig {
        broker_id: 0,
        advertised_host: "127.0.0.1".to_string(),
        advertised_port: 9092,
        brokers: Vec::new(),
    })
}

/// A whole request frame (length prefix included) for `request` at `version`.
fn frame<R: Request>(correlation_id: i32, version: i16, request: &R) -> Bytes {
    let key = ApiKey::try_from(R::KEY).expect("a known API");
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("sluice-sim")));
    let mut out = BytesMut::new();
    out.extend_from_slice(&[0; 4]);
    header
        .encode(&mut out, key.request_header_version(version))
        .expect("encodes");
    request.encode(&mut out, version).expect("encodes");
    let length = i32::try_from(out.len() - 4).expect("small");
    out[..4].copy_from_slice(&length.to_be_bytes());
    // The session takes a frame without its length prefix.
    out.freeze().slice(4..)
}

/// The answer to `request` in `reply`, or why there is none.
fn answer<R: Request>(version: i16, reply: &Reply) -> Result<R::Response, String> {
    let Reply::Send(bytes) = reply else {
        return Err(format!("no answer: {reply:?}"));
    };
    let key = ApiKey::try_from(R::KEY).expect("a known API");
    let mut body = Bytes::copy_from_slice(&bytes[4..]);
    ResponseHeader::decode(&mut body, key.response_header_version(version))
        .map_err(|e| format!("response header: {e}"))?;
    R::Response::decode(&mut body, version).map_err(|e| format!("answer: {e}"))
}

/// One connection: log in as tenant 0 and send `request`; `None` when the node is down,
/// `Err` when it restarted while serving (the answer is then unknown).
async fn exchange<R: Request>(
    ctx: &Ctx,
    version: i16,
    request: &R,
) -> Option<Result<R::Response, String>> {
    let Target::Single(node) = &ctx.target else {
        panic!("Kafka traffic runs in the single-node simulation");
    };
    let credentials = ctx.credentials.borrow()[0].clone();
    let token = format!("\0{}\0{}", credentials.ak, credentials.sk);
    let frames = vec![
        frame(
            1,
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        ),
        frame(
            2,
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token.into_bytes())),
        ),
        frame(3, version, request),
    ];
    let mut session = Session::new(config());
    let replies = node.kafka(&mut session, frames).await?;
    Some(match replies.last() {
        Some(reply) if replies.len() == 3 => answer::<R>(version, reply),
        _ => Err(format!("the session ended early: {replies:?}")),
    })
}

/// Creates the topic (setup, before faults).
pub async fn setup(ctx: &Ctx) {
    let request = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_num_partitions(-1)
            .with_replication_factor(-1)])
        .with_timeout_ms(10_000);
    for _ in 0..CREATE_ATTEMPTS_MAX {
        if let Some(Ok(answer)) = exchange::<CreateTopicsRequest>(ctx, 5, &request).await {
            let code = answer.topics.first().map(|t| t.error_code);
            // 0, or TOPIC_ALREADY_EXISTS after an attempt whose answer was lost.
            if matches!(code, Some(0 | 36)) {
                ctx.kafka.borrow_mut().topic = true;
                return;
            }
        }
        madsim::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the Kafka topic was not created in {CREATE_ATTEMPTS_MAX} attempts before faults");
}

fn batch(values: &[String]) -> Bytes {
    let records: Vec<_> = (0i64..)
        .zip(values)
        .map(|(offset, value)| plain_record(offset, Some(Bytes::from(value.clone()))))
        .collect();
    encode_records(&records).expect("encodes")
}

/// Produces `BATCHES` batches of new records to random partitions with acks=all,
/// retrying a batch whose outcome is unknown.
pub async fn producer(ctx: Rc<Ctx>, partitions: u16) {
    if !ctx.kafka.borrow().topic {
        return;
    }
    let mut serial = 0u32;
    for _ in 0..BATCHES {
        let partition = i32::from(thread_rng().gen_range(0..partitions));
        let count = thread_rng().gen_range(1..=RECORDS_MAX);
        let values: Vec<String> = (0..count)
            .map(|_| {
                serial += 1;
                format!("k{serial}")
            })
            .collect();
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch(&values)))])]);
        for _ in 0..ATTEMPTS_MAX {
            let outcome = match exchange::<ProduceRequest>(&ctx, 9, &request).await {
                None => Produce::Refused,
                Some(Err(why)) => Produce::Unknown(why),
                Some(Ok(answer)) => produce_outcome(&answer),
            };
            let acked = matches!(outcome, Produce::Acked(_));
            ctx.kafka.borrow_mut().produced.push(Produced {
                partition,
                values: values.clone(),
                outcome,
            });
            if acked {
                break;
            }
            madsim::time::sleep(Duration::from_millis(thread_rng().gen_range(50..=500))).await;
        }
        madsim::time::sleep(Duration::from_millis(thread_rng().gen_range(0..=1_000))).await;
    }
}

fn produce_outcome(answer: &ProduceResponse) -> Produce {
    let Some(partition) = answer
        .responses
        .first()
        .and_then(|topic| topic.partition_responses.first())
    else {
        return Produce::Unknown("no partition in the answer".into());
    };
    match partition.error_code {
        0 => Produce::Acked(partition.base_offset),
        code => Produce::Unknown(format!(
            "error {code}: {:?}",
            partition.error_message.as_ref().map(StrBytes::as_str)
        )),
    }
}

/// Reads each partition of the topic from offset 0 to its high watermark; `Err` when the
/// node does not answer.
async fn read_partition(ctx: &Ctx, partition: i32) -> Result<Vec<(i64, String)>, String> {
    let mut log = Vec::new();
    let mut next = 0i64;
    for _ in 0..FETCHES_MAX {
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(next)
                    .with_partition_max_bytes(1 << 20)])]);
        let answer = match exchange::<FetchRequest>(ctx, 12, &request).await {
            Some(Ok(answer)) => answer,
            Some(Err(why)) => return Err(why),
            None => return Err("the node is down".into()),
        };
        let data = first_partition(&answer)?;
        if data.error_code != 0 {
            return Err(format!("fetch error {}", data.error_code));
        }
        let mut records = data.records.clone().unwrap_or_default();
        let mut fetched = 0;
        while !records.is_empty() {
            let set = RecordBatchDecoder::decode(&mut records)
                .map_err(|e| format!("a fetched batch: {e}"))?;
            for record in set.records {
                let value = record.value.unwrap_or_default();
                log.push((record.offset, String::from_utf8_lossy(&value).into_owned()));
                next = record.offset + 1;
                fetched += 1;
            }
        }
        if fetched == 0 || next >= data.high_watermark {
            if next < data.high_watermark {
                return Err(format!(
                    "fetch at {next} answered nothing below the high watermark {}",
                    data.high_watermark
                ));
            }
            return Ok(log);
        }
    }
    Err(format!("more than {FETCHES_MAX} fetches"))
}

fn first_partition(
    answer: &FetchResponse,
) -> Result<&kafka_protocol::messages::fetch_response::PartitionData, String> {
    answer
        .responses
        .first()
        .and_then(|topic| topic.partitions.first())
        .ok_or_else(|| "no partition in the fetch answer".to_string())
}

/// The final read and its checks (after the drain, faults healed); the violations found.
pub async fn verify(ctx: &Ctx, partitions: u16) -> Vec<String> {
    if !ctx.kafka.borrow().topic {
        return Vec::new();
    }
    let mut violations = Vec::new();
    let mut logs = BTreeMap::new();
    for partition in 0..i32::from(partitions) {
        match read_partition(ctx, partition).await {
            Ok(log) => {
                logs.insert(partition, log);
            }
            Err(why) => violations.push(format!("kafka: reading partition {partition}: {why}")),
        }
    }
    let history = ctx.kafka.borrow();
    check(&history.produced, &logs, &mut violations);
    violations
}

/// The checks of the module documentation over the produce history and the fetched logs.
fn check(
    produced: &[Produced],
    logs: &BTreeMap<i32, Vec<(i64, String)>>,
    violations: &mut Vec<String>,
) {
    // Per value: its partition and how many attempts may have stored it.
    let mut may_store: BTreeMap<&str, (i32, usize)> = BTreeMap::new();
    for attempt in produced {
        if attempt.outcome == Produce::Refused {
            continue;
        }
        for value in &attempt.values {
            let entry = may_store.entry(value).or_insert((attempt.partition, 0));
            entry.1 += 1;
        }
    }
    for (partition, log) in logs {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (position, (offset, value)) in log.iter().enumerate() {
            let expected = i64::try_from(position).expect("fits");
            if *offset != expected {
                violations.push(format!(
                    "kafka: partition {partition}: offset {offset} where {expected} was due (not dense)"
                ));
                break;
            }
            match may_store.get(value.as_str()) {
                Some((home, _)) if home != partition => violations.push(format!(
                    "kafka: {value} at {partition}.{offset}, produced to partition {home}"
                )),
                Some((_, attempts)) => {
                    let count = seen.entry(value).or_insert(0);
                    *count += 1;
                    if *count > *attempts {
                        violations.push(format!(
                            "kafka: {value} stored {count} times by {attempts} attempts"
                        ));
                    }
                }
                None => violations.push(format!(
                    "kafka: {value} at {partition}.{offset} was never produced"
                )),
            }
        }
    }
    for attempt in produced {
        let Produce::Acked(base) = attempt.outcome else {
            continue;
        };
        let Some(log) = logs.get(&attempt.partition) else {
            continue; // Its partition could not be read: reported above.
        };
        for (i, value) in attempt.values.iter().enumerate() {
            let offset = base + i64::try_from(i).expect("small");
            let stored = usize::try_from(offset)
                .ok()
                .and_then(|at| log.get(at))
                .map(|(_, stored)| stored.as_str());
            if stored != Some(value.as_str()) {
                violations.push(format!(
                    "kafka: {value} acknowledged at {}.{offset}, which holds {stored:?}",
                    attempt.partition
                ));
            }
        }
    }
}

/// The trace lines of the Kafka history, for a failing seed's report.
pub fn trace(history: &RefCell<KafkaHistory>) -> String {
    history
        .borrow()
        .produced
        .iter()
        .map(|p| {
            format!(
                "kafka produce {} {:?}: {:?}\n",
                p.partition, p.values, p.outcome
            )
        })
        .collect()
}
