//! Kafka traffic in the simulation, on one node and in the cluster: a producer of record batches through the
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
//! Each exchange is one connection to a random node: a fresh session logs in with SASL
//! PLAIN and sends one request. Nothing reaching a node refuses it (nothing stored); an
//! answer with an error code, or one that was lost, leaves it unknown.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Response;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, FetchRequest, ProduceRequest, ProduceResponse, RequestHeader,
    ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use madsim::rand::{thread_rng, Rng};
use sluice_node::Node;
use sluice_tcp::kafka::{encode_records, plain_record, KafkaConfig, Reply, Session};

use crate::client::Ctx;
use crate::cluster::Reached;

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
    /// Refused UNKNOWN_TOPIC_OR_PARTITION for a partition the topic does not have.
    Outside,
}

/// The Kafka side of a run's history.
#[derive(Default)]
pub struct KafkaHistory {
    pub produced: Vec<Produced>,
    /// Whether setup created the topic.
    pub topic: bool,
    /// The topic's partitions ([`topic_partitions`]), fewer than the node's where it has
    /// more than one, so that a queue of fewer partitions than the node meets the faults.
    pub partitions: u16,
}

/// The partition count the topic is created with on a node of `node_partitions`.
pub fn topic_partitions(node_partitions: u16) -> u16 {
    node_partitions.saturating_sub(1).max(1)
}

/// Kafka's UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

fn config() -> Arc<KafkaConfig> {
    Arc::new(KafkaConfig {
        broker_id: 0,
        advertised_host: "127.0.0.1".to_string(),
        advertised_port: 9092,
        brokers: Vec::new(),
    })
}

/// A whole request frame, length prefix included, for `request` at `version`.
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
    out.freeze()
}

/// The answer to `request` in `reply` (a response frame without its length prefix).
fn answer<R: Request>(version: i16, reply: &Bytes) -> Result<R::Response, String> {
    let key = ApiKey::try_from(R::KEY).expect("a known API");
    let mut body = reply.clone();
    ResponseHeader::decode(&mut body, key.response_header_version(version))
        .map_err(|e| format!("response header: {e}"))?;
    R::Response::decode(&mut body, version).map_err(|e| format!("answer: {e}"))
}

/// The simulator's path for one Kafka connection: the request's body is the client's
/// frames (each with its length prefix), the answer's body the server's replies, up to
/// the first that closes the connection. The simulated network carries HTTP packets;
/// this is how a connection's bytes ride on one (`Node::handle`, `Cluster::serve`).
pub const KAFKA_PATH: &str = "/sim/kafka";

/// Serves one Kafka connection carried by a request to [`KAFKA_PATH`] with the server's
/// Kafka session on `node` (the shard the request entered).
pub async fn serve_connection<N: Node>(node: &N, body: &Bytes) -> Response<Bytes> {
    let mut session = Session::new(config());
    let mut out = Vec::new();
    for frame in frames(body) {
        match session.handle(node, frame).await {
            Reply::Send(bytes) => out.extend_from_slice(&bytes),
            Reply::Nothing => {}
            Reply::Close(_) => break,
        }
    }
    Response::new(Bytes::from(out))
}

/// The frames of `body` (each a big-endian u32 length and its bytes), without their
/// length prefixes; a cut-off last frame is left out. Request bodies carry the client's
/// frames, [`serve_connection`]'s answers the server's.
fn frames(body: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut rest = body.clone();
    while rest.len() >= 4 {
        let length = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes"));
        let length = usize::try_from(length).expect("fits");
        if rest.len() < 4 + length {
            break;
        }
        out.push(rest.slice(4..4 + length));
        rest = rest.slice(4 + length..);
    }
    out
}

/// What became of one Kafka connection's request.
enum Exchange<T> {
    Answered(T),
    /// Nothing reached a node: nothing applied.
    Refused,
    /// Maybe applied: the answer was lost, damaged, or carried an error.
    Unknown(String),
}

/// One connection: log in as tenant 0 and send `request`, through any node.
async fn exchange<R: Request>(ctx: &Ctx, version: i16, request: &R) -> Exchange<R::Response> {
    let credentials = ctx.credentials.borrow()[0].clone();
    let token = format!("\0{}\0{}", credentials.ak, credentials.sk);
    let mut body = BytesMut::new();
    body.extend_from_slice(&frame(
        1,
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
    ));
    body.extend_from_slice(&frame(
        2,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token.into_bytes())),
    ));
    body.extend_from_slice(&frame(3, version, request));
    let (parts, ()) = http::Request::builder()
        .method(http::Method::POST)
        .uri(KAFKA_PATH)
        .body(())
        .expect("a valid request")
        .into_parts();
    match ctx.target.handle(parts, body.freeze()).await {
        Reached::Refused => Exchange::Refused,
        Reached::Lost { .. } => Exchange::Unknown("the answer was lost".into()),
        Reached::Served(served) => {
            let replies = frames(served.response.body());
            match replies.get(2) {
                Some(reply) => match answer::<R>(version, reply) {
                    Ok(answer) => Exchange::Answered(answer),
                    Err(why) => Exchange::Unknown(why),
                },
                None => Exchange::Unknown(format!("{} replies of 3", replies.len())),
            }
        }
    }
}

/// Creates the topic (setup, before faults) with [`topic_partitions`] of the node's
/// `node_partitions`.
pub async fn setup(ctx: &Ctx, node_partitions: u16) {
    let partitions = topic_partitions(node_partitions);
    let request = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_num_partitions(i32::from(partitions))
            .with_replication_factor(-1)])
        .with_timeout_ms(10_000);
    for _ in 0..CREATE_ATTEMPTS_MAX {
        if let Exchange::Answered(answer) = exchange::<CreateTopicsRequest>(ctx, 5, &request).await
        {
            let code = answer.topics.first().map(|t| t.error_code);
            // 0, or TOPIC_ALREADY_EXISTS after an attempt whose answer was lost.
            if matches!(code, Some(0 | 36)) {
                let mut history = ctx.kafka.borrow_mut();
                history.topic = true;
                history.partitions = partitions;
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
/// Produces [`BATCHES`] batches to random partitions of the node's `partitions` (those
/// the topic lacks included: they must be refused).
pub async fn producer(ctx: Rc<Ctx>, partitions: u16) {
    if !ctx.kafka.borrow().topic {
        return;
    }
    let inside = ctx.kafka.borrow().partitions;
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
                Exchange::Refused => Produce::Refused,
                Exchange::Unknown(why) => Produce::Unknown(why),
                Exchange::Answered(answer) => {
                    produce_outcome(&answer, partition >= i32::from(inside))
                }
            };
            let acked = matches!(outcome, Produce::Acked(_) | Produce::Outside);
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

/// What an answer says of one produce; `outside` when its partition is not the topic's.
fn produce_outcome(answer: &ProduceResponse, outside: bool) -> Produce {
    let Some(partition) = answer
        .responses
        .first()
        .and_then(|topic| topic.partition_responses.first())
    else {
        return Produce::Unknown("no partition in the answer".into());
    };
    match partition.error_code {
        0 => Produce::Acked(partition.base_offset),
        UNKNOWN_TOPIC_OR_PARTITION if outside => Produce::Outside,
        code => Produce::Unknown(format!(
            "error {code}: {:?}",
            partition.error_message.as_ref().map(StrBytes::as_str)
        )),
    }
}

/// Fetch attempts at one offset in the final read (an election may be under way), and the
/// pause between them.
const FETCH_ATTEMPTS_MAX: u32 = 30;
const FETCH_RETRY_MS: u64 = 500;

/// A Fetch of `partition` from `offset`, answering at once.
fn fetch_request(partition: i32, offset: i64) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

/// One Fetch of `partition` from `offset`: the partition's answer, retried while the
/// answer is lost or an error (bounded).
async fn fetch(ctx: &Ctx, partition: i32, offset: i64) -> Result<PartitionData, String> {
    fetch_until(ctx, partition, offset, |code| code == 0).await
}

/// A Fetch of `partition` from `offset`, retried (bounded) while the answer is lost or
/// its error code is not one that `settled` accepts; the partition's answer.
async fn fetch_until(
    ctx: &Ctx,
    partition: i32,
    offset: i64,
    settled: impl Fn(i16) -> bool,
) -> Result<PartitionData, String> {
    let request = fetch_request(partition, offset);
    let mut why = String::new();
    for _ in 0..FETCH_ATTEMPTS_MAX {
        match exchange::<FetchRequest>(ctx, 12, &request).await {
            Exchange::Answered(answer) => {
                let data = answer
                    .responses
                    .into_iter()
                    .next()
                    .and_then(|topic| topic.partitions.into_iter().next())
                    .ok_or_else(|| "no partition in the fetch answer".to_string())?;
                if settled(data.error_code) {
                    return Ok(data);
                }
                why = format!("fetch error {}", data.error_code);
            }
            Exchange::Refused => why = "refused".into(),
            Exchange::Unknown(reason) => why = reason,
        }
        madsim::time::sleep(Duration::from_millis(FETCH_RETRY_MS)).await;
    }
    Err(format!(
        "{FETCH_ATTEMPTS_MAX} fetches at {offset} failed; the last: {why}"
    ))
}

/// Checks that a fetch of `partition`, one the topic does not have, is refused
/// UNKNOWN_TOPIC_OR_PARTITION (retried while lost or another error, bounded).
async fn refused_outside(ctx: &Ctx, partition: i32) -> Result<(), String> {
    let settled = |code| code == 0 || code == UNKNOWN_TOPIC_OR_PARTITION;
    match fetch_until(ctx, partition, 0, settled).await?.error_code {
        0 => Err("outside the topic, yet a fetch was answered".into()),
        _ => Ok(()),
    }
}

/// Reads a partition of the topic from offset 0 to its high watermark.
async fn read_partition(ctx: &Ctx, partition: i32) -> Result<Vec<(i64, String)>, String> {
    let mut log = Vec::new();
    let mut next = 0i64;
    for _ in 0..FETCHES_MAX {
        let data = fetch(ctx, partition, next).await?;
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

/// The final read and its checks (after the drain, faults healed); the violations found.
pub async fn verify(ctx: &Ctx, partitions: u16) -> Vec<String> {
    if !ctx.kafka.borrow().topic {
        return Vec::new();
    }
    let mut violations = Vec::new();
    let mut logs = BTreeMap::new();
    let inside = i32::from(ctx.kafka.borrow().partitions);
    for partition in inside..i32::from(partitions) {
        if let Err(why) = refused_outside(ctx, partition).await {
            violations.push(format!("kafka: partition {partition}: {why}"));
        }
    }
    for partition in 0..inside {
        match read_partition(ctx, partition).await {
            Ok(log) => {
                logs.insert(partition, log);
            }
            Err(why) => violations.push(format!("kafka: reading partition {partition}: {why}")),
        }
    }
    let history = ctx.kafka.borrow();
    check(inside, &history.produced, &logs, &mut violations);
    violations
}

/// The checks of the module documentation over the produce history and the fetched logs.
fn check(
    inside: i32,
    produced: &[Produced],
    logs: &BTreeMap<i32, Vec<(i64, String)>>,
    violations: &mut Vec<String>,
) {
    // Per value: its partition and how many attempts may have stored it.
    let mut may_store: BTreeMap<&str, (i32, usize)> = BTreeMap::new();
    for attempt in produced {
        if matches!(attempt.outcome, Produce::Refused | Produce::Outside) {
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
        if attempt.partition >= inside {
            violations.push(format!(
                "kafka: a batch acknowledged at {}.{base}, a partition the topic does not have",
                attempt.partition
            ));
            continue;
        }
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
