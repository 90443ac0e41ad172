//! Sluice over its Kafka listener: the same release `sluice server` as `sluice.rs`, started
//! with `--kafka-listen 127.0.0.1:0`, and a hand-rolled client of the Kafka wire protocol
//! (requests and answers encoded by the `kafka-protocol` crate, one request in flight per
//! connection over tokio TCP, every read bounded by [`READ_TIMEOUT`]).
//!
//! Each connection logs in with SASL PLAIN (SaslHandshake v1, SaslAuthenticate v2) as the
//! default tenant (AK as user name, SK as password). A row's queue is a topic created
//! with CreateTopics v5 (the node's partition count, learned once with Metadata v12). A
//! send is one Produce v9 with acks -1 of one uncompressed record batch v2 to partition
//! `producer % partitions`, counted when the partition answers error 0 (the records are
//! then fdatasync'ed). A receive is one Fetch v12 of the consumer's partitions (consumer
//! `i` of `C` takes every partition `p` with `p % C == i`) from its next offsets, long
//! polling 100 ms. There is no ack: a Kafka consumer only commits offsets, so the consume
//! row measures fetches alone (Sluice's and the peers' consume rows include a durable or
//! broker-side ack).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, FetchRequest, MetadataRequest, ProduceRequest, RequestHeader,
    ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice_benches::dms::{read_tenant, spawn_server_kafka, unix_now, Spawned, Tenant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::driver::{Consumer, Driver, Producer, RECEIVE_WAIT_MS};

/// A bound on connecting, on writing a request and on reading its whole answer.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer frame accepted (the server's Fetch answers are at most 8 MiB).
const RESPONSE_BYTES_MAX: usize = 16 << 20;
/// Largest record batch a producer sends (the server's per-partition limit).
const BATCH_BYTES_MAX: usize = 8 << 20;
/// What a Fetch asks for at most (the server answers at most 8 MiB whatever it is asked).
const FETCH_BYTES_MAX: usize = 8 << 20;
/// A record's framing in a batch beside its value, with slack (varints, headers count),
/// and a batch's header: how many bytes `max` records of `size` bytes take.
const RECORD_OVERHEAD_BYTES: usize = 32;
const BATCH_OVERHEAD_BYTES: usize = 128;
/// The server's produce wait for acks -1.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;
const METADATA_VERSION: i16 = 12;
const CREATE_TOPICS_VERSION: i16 = 5;
const SASL_HANDSHAKE_VERSION: i16 = 1;
const SASL_AUTHENTICATE_VERSION: i16 = 2;

pub struct Kafka {
    address: SocketAddr,
    tenant: Tenant,
    /// Body bytes per message: sizes the Fetch byte limits.
    size_bytes: usize,
    /// For CreateTopics and Metadata.
    admin: Option<Conn>,
    /// The current row's topic.
    topic: Option<TopicName>,
    /// The topics' partition count (the node's), from Metadata after the first create.
    partition_count: Option<i32>,
    rows_started: u32,
    /// Dropped last: stops the server and removes its data directory.
    _server: Spawned,
}

impl Kafka {
    /// Starts `binary server --kafka-listen 127.0.0.1:0` on a fresh data directory under
    /// `parent`.
    pub fn start(binary: &Path, parent: &Path, size_bytes: u32) -> Result<Kafka, String> {
        let (server, _http, address) = spawn_server_kafka(binary, parent, "mq-compare-kafka")?;
        let tenant = read_tenant(&server.data_dir)?;
        Ok(Kafka {
            address,
            tenant,
            size_bytes: usize::try_from(size_bytes).expect("fits"),
            admin: None,
            topic: None,
            partition_count: None,
            rows_started: 0,
            _server: server,
        })
    }

    fn topic(&self) -> Result<(TopicName, i32), String> {
        match (&self.topic, self.partition_count) {
            (Some(topic), Some(count)) => Ok((topic.clone(), count)),
            _ => Err("no topic: reset first".to_string()),
        }
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        // The server's stderr log sits beside its data directory, which `Spawned` removes.
        let _ = std::fs::remove_file(self._server.data_dir.with_extension("log"));
    }
}

impl Driver for Kafka {
    type Producer = KafkaProducer;
    type Consumer = KafkaConsumer;

    /// A fresh topic per row; the previous rows' topics stay (the server is discarded
    /// with its data directory at the end).
    async fn reset(&mut self) -> Result<(), String> {
        if self.admin.is_none() {
            self.admin = Some(Conn::open(self.address, &self.tenant).await?);
        }
        let admin = self.admin.as_mut().expect("opened above");
        self.rows_started += 1;
        let name = format!("cmp-{}-{}", unix_now().as_millis(), self.rows_started);
        let topic = TopicName(StrBytes::from_string(name));
        let mut create = CreateTopicsRequest::default();
        create.timeout_ms = 30_000;
        let mut wanted = CreatableTopic::default();
        wanted.name = topic.clone();
        wanted.num_partitions = -1;
        wanted.replication_factor = -1;
        create.topics.push(wanted);
        let created = admin.call(CREATE_TOPICS_VERSION, &create).await?;
        let answer = created
            .topics
            .first()
            .ok_or("CreateTopics: no topic answered")?;
        if answer.error_code != 0 {
            return Err(format!(
                "CreateTopics: error {} {:?}",
                answer.error_code, answer.error_message
            ));
        }
        if self.partition_count.is_none() {
            let mut metadata = MetadataRequest::default();
            let mut asked = MetadataRequestTopic::default();
            asked.name = Some(topic.clone());
            metadata.topics = Some(vec![asked]);
            let answer = admin.call(METADATA_VERSION, &metadata).await?;
            let described = answer.topics.first().ok_or("Metadata: no topic answered")?;
            if described.error_code != 0 || described.partitions.is_empty() {
                return Err(format!(
                    "Metadata: error {} with {} partitions",
                    described.error_code,
                    described.partitions.len()
                ));
            }
            let count = i32::try_from(described.partitions.len()).expect("bounded by the frame");
            self.partition_count = Some(count);
        }
        self.topic = Some(topic);
        Ok(())
    }

    async fn producer(&self, index: u32) -> Result<KafkaProducer, String> {
        let (topic, partition_count) = self.topic()?;
        let index = i32::try_from(index).expect("bounded by --concurrency");
        Ok(KafkaProducer {
            conn: Conn::open(self.address, &self.tenant).await?,
            topic,
            partition: index % partition_count,
            batch: BytesMut::new(),
        })
    }

    async fn consumer(&self, index: u32, count: u32, batch: u32) -> Result<KafkaConsumer, String> {
        let (topic, partition_count) = self.topic()?;
        let index = i32::try_from(index).expect("bounded by --concurrency");
        let count = i32::try_from(count).expect("bounded by --concurrency");
        // Partitions p with p % count == index, each read from offset 0 (a fresh topic).
        let offsets = (0..partition_count)
            .filter(|partition| partition % count == index)
            .map(|partition| (partition, 0))
            .collect();
        let record_bytes = self.size_bytes + RECORD_OVERHEAD_BYTES;
        let batch = usize::try_from(batch).expect("fits");
        let fetch_bytes = (batch * record_bytes + BATCH_OVERHEAD_BYTES).min(FETCH_BYTES_MAX);
        Ok(KafkaConsumer {
            conn: Conn::open(self.address, &self.tenant).await?,
            topic,
            offsets,
            fetch_bytes: i32::try_from(fetch_bytes).expect("at most 8 MiB"),
            pending: VecDeque::new(),
        })
    }
}

/// One authenticated connection with one request in flight.
struct Conn {
    stream: TcpStream,
    correlation_id: i32,
    frame: BytesMut,
}

impl Conn {
    async fn open(address: SocketAddr, tenant: &Tenant) -> Result<Conn, String> {
        let stream = tokio::time::timeout(READ_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| "connect: timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("nodelay: {e}"))?;
        let mut conn = Conn {
            stream,
            correlation_id: 0,
            frame: BytesMut::new(),
        };
        let handshake =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        let answer = conn.call(SASL_HANDSHAKE_VERSION, &handshake).await?;
        if answer.error_code != 0 {
            return Err(format!("SaslHandshake: error {}", answer.error_code));
        }
        let message = format!("\0{}\0{}", tenant.ak, tenant.sk);
        let auth = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message));
        let answer = conn.call(SASL_AUTHENTICATE_VERSION, &auth).await?;
        if answer.error_code != 0 {
            return Err(format!(
                "SaslAuthenticate: error {} {:?}",
                answer.error_code, answer.error_message
            ));
        }
        Ok(conn)
    }

    /// Sends `request` as `version` and decodes its answer, within [`READ_TIMEOUT`].
    async fn call<R: Request>(&mut self, version: i16, request: &R) -> Result<R::Response, String> {
        let api = R::KEY;
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(api)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("mq-compare")));
        self.frame.clear();
        self.frame.extend_from_slice(&[0; 4]);
        header
            .encode(&mut self.frame, R::header_version(version))
            .map_err(|e| format!("API {api}: encoding the header: {e}"))?;
        request
            .encode(&mut self.frame, version)
            .map_err(|e| format!("API {api}: encoding the request: {e}"))?;
        let length = i32::try_from(self.frame.len() - 4).map_err(|_| "request too large")?;
        self.frame[..4].copy_from_slice(&length.to_be_bytes());
        let exchange = async {
            self.stream
                .write_all(&self.frame)
                .await
                .map_err(|e| format!("write: {e}"))?;
            let mut prefix = [0; 4];
            self.stream
                .read_exact(&mut prefix)
                .await
                .map_err(|e| format!("read: {e}"))?;
            let length = usize::try_from(i32::from_be_bytes(prefix))
                .ok()
                .filter(|length| *length <= RESPONSE_BYTES_MAX)
                .ok_or_else(|| {
                    format!("answer length {} out of bounds", i32::from_be_bytes(prefix))
                })?;
            let mut body = vec![0; length];
            self.stream
                .read_exact(&mut body)
                .await
                .map_err(|e| format!("read: {e}"))?;
            Ok::<_, String>(Bytes::from(body))
        };
        let mut answer = tokio::time::timeout(READ_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("API {api}: no answer within {READ_TIMEOUT:?}"))?
            .map_err(|e| format!("API {api}: {e}"))?;
        let header = ResponseHeader::decode(&mut answer, R::Response::header_version(version))
            .map_err(|e| format!("API {api}: bad answer header: {e}"))?;
        if header.correlation_id != self.correlation_id {
            return Err(format!(
                "API {api}: answer to request {} instead of {}",
                header.correlation_id, self.correlation_id
            ));
        }
        R::Response::decode(&mut answer, version).map_err(|e| format!("API {api}: bad answer: {e}"))
    }
}

fn now_ms() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(now.as_millis()).expect("fits i64")
}

pub struct KafkaProducer {
    conn: Conn,
    topic: TopicName,
    partition: i32,
    batch: BytesMut,
}

impl Producer for KafkaProducer {
    async fn send(&mut self, bodies: &[Vec<u8>]) -> Result<(), String> {
        let timestamp = now_ms();
        let records: Vec<Record> = bodies
            .iter()
            .zip(0..)
            .map(|(body, offset)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset,
                sequence: -1,
                timestamp,
                key: None,
                value: Some(Bytes::copy_from_slice(body)),
                headers: IndexMap::new(),
            })
            .collect();
        self.batch.clear();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut self.batch, &records, &options)
            .map_err(|e| format!("encoding the record batch: {e}"))?;
        if self.batch.len() > BATCH_BYTES_MAX {
            return Err(format!(
                "a batch of {} records is {} bytes, over the server's {BATCH_BYTES_MAX}",
                bodies.len(),
                self.batch.len()
            ));
        }
        let mut partition = PartitionProduceData::default();
        partition.index = self.partition;
        partition.records = Some(self.batch.split().freeze());
        let mut topic = TopicProduceData::default();
        topic.name = self.topic.clone();
        topic.partition_data.push(partition);
        let mut produce = ProduceRequest::default();
        produce.acks = -1;
        produce.timeout_ms = PRODUCE_TIMEOUT_MS;
        produce.topic_data.push(topic);
        let answer = self.conn.call(PRODUCE_VERSION, &produce).await?;
        let partition = answer
            .responses
            .first()
            .and_then(|topic| topic.partition_responses.first())
            .ok_or("Produce: no partition answered")?;
        if partition.index != self.partition || partition.error_code != 0 {
            return Err(format!(
                "Produce: partition {} error {} {:?}",
                partition.index, partition.error_code, partition.error_message
            ));
        }
        Ok(())
    }
}

pub struct KafkaConsumer {
    conn: Conn,
    topic: TopicName,
    /// (partition, next offset) of every partition this consumer reads.
    offsets: Vec<(i32, i64)>,
    /// Each partition's `partition_max_bytes`, and the Fetch's `max_bytes`: `max` records.
    fetch_bytes: i32,
    /// Values fetched beyond what a receive took (a Fetch is bounded in bytes, not
    /// records): at most one Fetch answer.
    pending: VecDeque<Bytes>,
}

impl Consumer for KafkaConsumer {
    async fn receive(&mut self, max: u32, out: &mut Vec<Vec<u8>>) -> Result<(), String> {
        let max = usize::try_from(max).expect("fits");
        if self.pending.is_empty() {
            self.fetch().await?;
        }
        let take = self.pending.len().min(max);
        out.extend(self.pending.drain(..take).map(|value| value.to_vec()));
        Ok(())
    }

    /// Nothing: a Kafka consumer only commits offsets (not measured here).
    async fn ack(&mut self) -> Result<(), String> {
        Ok(())
    }
}

impl KafkaConsumer {
    /// One Fetch of every assigned partition from its next offset into `pending`.
    async fn fetch(&mut self) -> Result<(), String> {
        if self.offsets.is_empty() {
            // More consumers than partitions: this one reads nothing.
            tokio::time::sleep(Duration::from_millis(RECEIVE_WAIT_MS)).await;
            return Ok(());
        }
        let mut fetch = FetchRequest::default();
        fetch.replica_id = (-1).into();
        fetch.max_wait_ms = i32::try_from(RECEIVE_WAIT_MS).expect("fits");
        fetch.min_bytes = 1;
        fetch.max_bytes = self.fetch_bytes;
        fetch.isolation_level = 0;
        fetch.session_id = 0;
        fetch.session_epoch = -1;
        let mut topic = FetchTopic::default();
        topic.topic = self.topic.clone();
        for &(partition, offset) in &self.offsets {
            let mut asked = FetchPartition::default();
            asked.partition = partition;
            asked.current_leader_epoch = -1;
            asked.fetch_offset = offset;
            asked.last_fetched_epoch = -1;
            asked.log_start_offset = -1;
            asked.partition_max_bytes = self.fetch_bytes;
            topic.partitions.push(asked);
        }
        fetch.topics.push(topic);
        let answer = self.conn.call(FETCH_VERSION, &fetch).await?;
        if answer.error_code != 0 {
            return Err(format!("Fetch: error {}", answer.error_code));
        }
        for topic in &answer.responses {
            for data in &topic.partitions {
                let Some(slot) = self
                    .offsets
                    .iter_mut()
                    .find(|(partition, _)| *partition == data.partition_index)
                else {
                    return Err(format!("Fetch: unasked partition {}", data.partition_index));
                };
                if data.error_code != 0 {
                    return Err(format!(
                        "Fetch: partition {} error {}",
                        data.partition_index, data.error_code
                    ));
                }
                let Some(records) = &data.records else {
                    continue;
                };
                let mut records = records.clone();
                let sets = RecordBatchDecoder::decode_all(&mut records)
                    .map_err(|e| format!("Fetch: bad record batch: {e}"))?;
                for record in sets.into_iter().flat_map(|set| set.records) {
                    // A batch may start before the offset asked for: skip what was read.
                    if record.offset < slot.1 {
                        continue;
                    }
                    slot.1 = record.offset + 1;
                    self.pending.push_back(record.value.unwrap_or_default());
                }
            }
        }
        Ok(())
    }
}
