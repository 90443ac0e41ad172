//! The Kafka adapter at the protocol level: requests encoded as a Kafka client encodes
//! them (the `kafka-protocol` crate's client side) go through `Session::handle` on a
//! two-shard `LocalNode` (the production node layer) over simulated disks, and the
//! answers are decoded as a client would.

use std::cell::Cell;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice_core::engine::EngineLimits;
use sluice_core::sim_disk::{block_on, SimDisk};
use sluice_node::local::{sim_node, LocalNode, StepClock};
use sluice_node::Node;
use sluice_tcp::kafka::{KafkaConfig, Reply, Session};

struct World {
    node: LocalNode<SimDisk, StepClock>,
    ak: String,
    sk: String,
    correlation: Cell<i32>,
}

fn world() -> World {
    let node = sim_node(2, 2, EngineLimits::dms(), 1_000);
    let tenant = block_on(node.create_tenant("kafka", None)).expect("tenant");
    World {
        node,
        ak: tenant.ak,
        sk: tenant.sk,
        correlation: Cell::new(0),
    }
}

fn session() -> Session {
    Session::new(Arc::new(KafkaConfig {
        broker_id: 0,
        advertised_host: "127.0.0.1".to_string(),
        advertised_port: 9092,
        brokers: Vec::new(),
    }))
}

impl World {
    /// Encodes `request` as a client would, runs it, decodes the answer.
    fn call<R: Request>(&self, session: &mut Session, version: i16, request: &R) -> R::Response {
        match self.raw(session, R::KEY, version, request) {
            Reply::Send(frame) => {
                let mut frame = Bytes::from(frame);
                let length = i32::from_be_bytes(frame[..4].try_into().unwrap());
                assert_eq!(length as usize, frame.len() - 4);
                let _ = bytes::Buf::copy_to_bytes(&mut frame, 4);
                let header_version = if R::KEY == ApiKey::ApiVersions as i16 {
                    0
                } else {
                    R::Response::header_version(version)
                };
                let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
                assert_eq!(header.correlation_id, self.correlation.get());
                let response = R::Response::decode(&mut frame, version).unwrap();
                assert!(frame.is_empty(), "the whole response was read");
                response
            }
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    fn raw<R: Request>(&self, session: &mut Session, key: i16, version: i16, request: &R) -> Reply {
        self.correlation.set(self.correlation.get() + 1);
        let mut header = RequestHeader::default();
        header.request_api_key = key;
        header.request_api_version = version;
        header.correlation_id = self.correlation.get();
        header.client_id = Some(StrBytes::from_static_str("test"));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, R::header_version(version)).unwrap();
        request.encode(&mut buf, version).unwrap();
        block_on(session.handle(&**self.node.shard(0), buf.freeze()))
    }

    fn login(&self, session: &mut Session) {
        let handshake =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        let answer: SaslHandshakeResponse = self.call(session, 1, &handshake);
        assert_eq!(answer.error_code, 0);
        let message = format!("\0{}\0{}", self.ak, self.sk);
        let auth = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message));
        let answer: SaslAuthenticateResponse = self.call(session, 2, &auth);
        assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
    }
}

fn batch(values: &[&str]) -> Bytes {
    idempotent_batch(values, -1, -1)
}

/// A batch of an idempotent producer `producer_id` starting at `sequence` (-1: none).
fn idempotent_batch(values: &[&str], producer_id: i64, sequence: i32) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let mut headers = IndexMap::new();
            headers.insert(
                StrBytes::from_static_str("h"),
                Some(Bytes::from(format!("v{i}"))),
            );
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch: if producer_id < 0 { -1 } else { 0 },
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: if sequence < 0 {
                    -1
                } else {
                    sequence + i as i32
                },
                timestamp: 1_700_000_000_000 + i as i64,
                key: Some(Bytes::from(format!("key{i}"))),
                value: Some(Bytes::from(value.to_string())),
                headers,
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.freeze()
}

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

#[test]
fn api_versions_answer_before_authentication_and_requests_before_it_close() {
    let world = world();
    let mut session = session();
    let answer: ApiVersionsResponse = world.call(&mut session, 3, &ApiVersionsRequest::default());
    assert_eq!(answer.error_code, 0);
    let keys: Vec<i16> = answer.api_keys.iter().map(|k| k.api_key).collect();
    assert!(keys.contains(&0) && keys.contains(&1), "{keys:?}");
    let reply = world.raw(&mut session, 3, 12, &MetadataRequest::default());
    assert!(matches!(reply, Reply::Close(_)), "{reply:?}");
}

#[test]
fn a_wrong_secret_is_refused_and_ends_the_session() {
    let world = world();
    let mut session = session();
    let handshake =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    let _: SaslHandshakeResponse = world.call(&mut session, 1, &handshake);
    let message = format!("\0{}\0{}x", world.ak, world.sk);
    let auth = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message));
    let answer: SaslAuthenticateResponse = world.call(&mut session, 2, &auth);
    assert_eq!(answer.error_code, 58);
    let reply = world.raw(&mut session, 3, 12, &MetadataRequest::default());
    assert!(matches!(reply, Reply::Close(_)));
}

#[test]
fn produce_then_fetch_keeps_offsets_keys_headers_and_timestamps() {
    let world = world();
    let mut session = session();
    world.login(&mut session);
    let mut create = CreateTopicsRequest::default();
    let mut wanted = CreatableTopic::default();
    wanted.name = topic("orders.v1");
    wanted.num_partitions = -1;
    wanted.replication_factor = -1;
    create.topics.push(wanted);
    let created: CreateTopicsResponse = world.call(&mut session, 5, &create);
    assert_eq!(
        created.topics[0].error_code, 0,
        "{:?}",
        created.topics[0].error_message
    );
    assert_eq!(created.topics[0].num_partitions, 2);

    let mut metadata = MetadataRequest::default();
    let mut asked = MetadataRequestTopic::default();
    asked.name = Some(topic("orders.v1"));
    metadata.topics = Some(vec![asked]);
    let answer: MetadataResponse = world.call(&mut session, 12, &metadata);
    assert_eq!(answer.topics[0].error_code, 0);
    assert_eq!(answer.topics[0].partitions.len(), 2);
    assert_eq!(answer.brokers[0].port, 9092);

    for (round, values) in [["a", "b", "c"], ["d", "e", "f"]].iter().enumerate() {
        let mut produce = ProduceRequest::default();
        produce.acks = -1;
        produce.timeout_ms = 5_000;
        let mut data = TopicProduceData::default();
        data.name = topic("orders.v1");
        let mut part = PartitionProduceData::default();
        part.index = 1;
        part.records = Some(batch(values));
        data.partition_data.push(part);
        produce.topic_data.push(data);
        let answer: ProduceResponse = world.call(&mut session, 9, &produce);
        let part = &answer.responses[0].partition_responses[0];
        assert_eq!(part.error_code, 0, "{:?}", part.error_message);
        assert_eq!(part.base_offset, 3 * round as i64);
    }

    let mut fetch = FetchRequest::default();
    fetch.max_wait_ms = 0;
    fetch.min_bytes = 1;
    fetch.max_bytes = 1 << 20;
    fetch.session_epoch = -1;
    let mut ft = FetchTopic::default();
    ft.topic = topic("orders.v1");
    let mut fp = FetchPartition::default();
    fp.partition = 1;
    fp.fetch_offset = 2;
    fp.partition_max_bytes = 1 << 20;
    ft.partitions.push(fp);
    fetch.topics.push(ft);
    let answer: FetchResponse = world.call(&mut session, 12, &fetch);
    let data = &answer.responses[0].partitions[0];
    assert_eq!(data.error_code, 0);
    assert_eq!(data.high_watermark, 6);
    assert_eq!(data.log_start_offset, 0);
    let mut records = data.records.clone().unwrap();
    let sets = RecordBatchDecoder::decode_all(&mut records).unwrap();
    let records: Vec<&Record> = sets.iter().flat_map(|s| &s.records).collect();
    let values: Vec<&[u8]> = records
        .iter()
        .map(|r| r.value.as_deref().unwrap())
        .collect();
    assert_eq!(values, [&b"c"[..], b"d", b"e", b"f"]);
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [2, 3, 4, 5]);
    assert_eq!(records[1].key.as_deref(), Some(&b"key0"[..]));
    assert_eq!(records[1].timestamp, 1_700_000_000_000);
    assert_eq!(
        records[2]
            .headers
            .get(&StrBytes::from_static_str("h"))
            .cloned()
            .flatten()
            .as_deref(),
        Some(&b"v1"[..])
    );

    // Past the end: out of range; at the end: empty.
    let mut past = fetch.clone();
    past.topics[0].partitions[0].fetch_offset = 7;
    let answer: FetchResponse = world.call(&mut session, 12, &past);
    assert_eq!(answer.responses[0].partitions[0].error_code, 1);

    let mut offsets = ListOffsetsRequest::default();
    let mut lt = ListOffsetsTopic::default();
    lt.name = topic("orders.v1");
    for timestamp in [-2, -1] {
        let mut lp = ListOffsetsPartition::default();
        lp.partition_index = 1;
        lp.timestamp = timestamp;
        lt.partitions.push(lp);
    }
    offsets.topics.push(lt);
    let answer: ListOffsetsResponse = world.call(&mut session, 7, &offsets);
    let parts = &answer.topics[0].partitions;
    assert_eq!((parts[0].offset, parts[1].offset), (0, 6));
}

#[test]
fn another_tenants_topic_is_invisible() {
    let world = world();
    let mut session = session();
    world.login(&mut session);
    let other = block_on(world.node.create_tenant("other", None)).expect("tenant");
    let node = &**world.node.shard(0);
    let config = sluice_core::engine::types::QueueConfig {
        mode: sluice_core::engine::types::QueueMode::Normal,
        retention_ms: 3_600_000,
        max_consume_count: None,
        retry: sluice_core::engine::types::RetryPolicy::Immediate,
        dedup_window_ms: 0,
        partitions: 0,
    };
    block_on(node.create_queue(&other.project_id, "secret", config, Vec::new())).unwrap();
    let answer: MetadataResponse = world.call(&mut session, 12, &MetadataRequest::default());
    assert!(answer.topics.is_empty());
    let mut metadata = MetadataRequest::default();
    let mut asked = MetadataRequestTopic::default();
    asked.name = Some(topic("secret"));
    metadata.topics = Some(vec![asked]);
    let answer: MetadataResponse = world.call(&mut session, 12, &metadata);
    assert_eq!(answer.topics[0].error_code, 3);
}

impl World {
    fn create_topic(&self, session: &mut Session, name: &str) {
        let mut create = CreateTopicsRequest::default();
        let mut wanted = CreatableTopic::default();
        wanted.name = topic(name);
        wanted.num_partitions = -1;
        wanted.replication_factor = -1;
        create.topics.push(wanted);
        let created: CreateTopicsResponse = self.call(session, 5, &create);
        assert_eq!(
            created.topics[0].error_code, 0,
            "{:?}",
            created.topics[0].error_message
        );
    }

    /// Produces `records` to partition 0 of `name`; answers (error code, base offset).
    fn produce(&self, session: &mut Session, name: &str, records: Bytes) -> (i16, i64) {
        let mut produce = ProduceRequest::default();
        produce.acks = -1;
        produce.timeout_ms = 5_000;
        let mut data = TopicProduceData::default();
        data.name = topic(name);
        let mut part = PartitionProduceData::default();
        part.index = 0;
        part.records = Some(records);
        data.partition_data.push(part);
        produce.topic_data.push(data);
        let answer: ProduceResponse = self.call(session, 9, &produce);
        let part = &answer.responses[0].partition_responses[0];
        (part.error_code, part.base_offset)
    }
}

#[test]
fn a_topic_keeps_the_partition_count_and_replication_factor_it_was_created_with() {
    // The node has 2 partitions and is a cluster of one.
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
    let world = world();
    let mut session = session();
    world.login(&mut session);
    let create = |session: &mut Session, name: &str, partitions: i32, replication: i16| {
        let mut create = CreateTopicsRequest::default();
        let mut wanted = CreatableTopic::default();
        wanted.name = topic(name);
        wanted.num_partitions = partitions;
        wanted.replication_factor = replication;
        create.topics.push(wanted);
        let answer: CreateTopicsResponse = world.call(session, 5, &create);
        answer.topics.into_iter().next().unwrap()
    };
    let one = create(&mut session, "one", 1, 1);
    assert_eq!(
        (one.error_code, one.num_partitions),
        (0, 1),
        "{:?}",
        one.error_message
    );
    assert_eq!(one.replication_factor, 1);
    // More partitions than the node has, none, or a factor above the cluster's size.
    let refused = |session: &mut Session, name, partitions, replication| {
        create(session, name, partitions, replication).error_code
    };
    assert_eq!(
        refused(&mut session, "three", 3, -1),
        37,
        "INVALID_PARTITIONS"
    );
    assert_eq!(
        refused(&mut session, "none", 0, -1),
        37,
        "INVALID_PARTITIONS"
    );
    assert_eq!(
        refused(&mut session, "copies", -1, 2),
        38,
        "INVALID_REPLICATION_FACTOR"
    );

    let mut metadata = MetadataRequest::default();
    let mut asked = MetadataRequestTopic::default();
    asked.name = Some(topic("one"));
    metadata.topics = Some(vec![asked]);
    let answer: MetadataResponse = world.call(&mut session, 12, &metadata);
    assert_eq!(answer.topics[0].partitions.len(), 1);

    let produce = |session: &mut Session, partition: i32| {
        let mut produce = ProduceRequest::default();
        produce.acks = -1;
        produce.timeout_ms = 5_000;
        let mut data = TopicProduceData::default();
        data.name = topic("one");
        let mut part = PartitionProduceData::default();
        part.index = partition;
        part.records = Some(batch(&["x"]));
        data.partition_data.push(part);
        produce.topic_data.push(data);
        let answer: ProduceResponse = world.call(session, 9, &produce);
        answer.responses[0].partition_responses[0].error_code
    };
    assert_eq!(produce(&mut session, 0), 0);
    assert_eq!(produce(&mut session, 1), 3, "UNKNOWN_TOPIC_OR_PARTITION");

    let mut grow = CreatePartitionsRequest::default();
    let mut wanted = CreatePartitionsTopic::default();
    wanted.name = topic("one");
    wanted.count = 2;
    grow.topics.push(wanted);
    grow.validate_only = true;
    let answer: CreatePartitionsResponse = world.call(&mut session, 3, &grow);
    assert_eq!(answer.results[0].error_code, 0, "a valid growth");
    let answer: MetadataResponse = world.call(&mut session, 12, &metadata);
    assert_eq!(answer.topics[0].partitions.len(), 1, "validated only");
    grow.validate_only = false;
    let answer: CreatePartitionsResponse = world.call(&mut session, 3, &grow);
    assert_eq!(answer.results[0].error_code, 0, "grown");
    let answer: MetadataResponse = world.call(&mut session, 12, &metadata);
    assert_eq!(answer.topics[0].partitions.len(), 2, "the grown count");
    assert_eq!(
        produce(&mut session, 1),
        0,
        "the new partition takes records"
    );
    for count in [2, 1, 0, -1, 1000] {
        grow.topics[0].count = count;
        let answer: CreatePartitionsResponse = world.call(&mut session, 3, &grow);
        assert_eq!(
            answer.results[0].error_code, 37,
            "INVALID_PARTITIONS for {count}"
        );
    }
}

#[test]
fn an_idempotent_producers_retry_is_stored_once_and_a_gap_is_refused() {
    use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
    let world = world();
    let mut session = session();
    world.login(&mut session);
    world.create_topic(&mut session, "pay");
    let mut init = InitProducerIdRequest::default();
    init.producer_id = ProducerId(-1);
    init.producer_epoch = -1;
    init.transactional_id = None;
    let producer: InitProducerIdResponse = world.call(&mut session, 4, &init);
    assert_eq!(producer.error_code, 0);
    let id = producer.producer_id.0;
    assert!(id >= 0);
    assert_eq!(
        world.produce(&mut session, "pay", idempotent_batch(&["a", "b"], id, 0)),
        (0, 0)
    );
    assert_eq!(
        world.produce(&mut session, "pay", idempotent_batch(&["c"], id, 2)),
        (0, 2)
    );
    // The retry of the first batch answers its offset and stores nothing.
    assert_eq!(
        world.produce(&mut session, "pay", idempotent_batch(&["a", "b"], id, 0)),
        (0, 0)
    );
    // A batch that skips sequence 3 is refused: OUT_OF_ORDER_SEQUENCE_NUMBER.
    assert_eq!(
        world
            .produce(&mut session, "pay", idempotent_batch(&["x"], id, 5))
            .0,
        45
    );
    // Another producer has its own sequence.
    assert_eq!(
        world.produce(&mut session, "pay", idempotent_batch(&["d"], id + 1, 0)),
        (0, 3)
    );
    let node = &**world.node.shard(0);
    let queue = node.queues_of(&node.tenants().by_ak(&world.ak).unwrap().project_id)[0].id;
    let (start, next, _) = block_on(node.positions(queue, 0, None)).unwrap();
    assert_eq!((start, next), (0, 4), "a, b, c, d: once each");
}

/// Share groups: two members of one share group split a topic's records; a released
/// record comes back to the other member with a higher delivery count, accepted ones
/// never come back.
#[test]
fn share_group_members_split_records_and_a_released_one_comes_back() {
    use kafka_protocol::messages::share_fetch_request::{
        AcknowledgementBatch, FetchPartition as SharePartition, FetchTopic as ShareTopic,
    };
    use kafka_protocol::messages::{
        GroupId, ShareFetchRequest, ShareFetchResponse, ShareGroupHeartbeatRequest,
        ShareGroupHeartbeatResponse,
    };
    let world = world();
    let (mut one, mut two) = (session(), session());
    world.login(&mut one);
    world.login(&mut two);
    world.create_topic(&mut one, "jobs");
    assert_eq!(
        world.produce(&mut one, "jobs", batch(&["a", "b", "c", "d"])),
        (0, 0)
    );
    let mut heartbeat = ShareGroupHeartbeatRequest::default();
    heartbeat.group_id = GroupId(StrBytes::from_static_str("workers"));
    heartbeat.member_epoch = 0;
    heartbeat.subscribed_topic_names = Some(vec![topic("jobs")]);
    let joined: ShareGroupHeartbeatResponse = world.call(&mut one, 1, &heartbeat);
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.member_epoch, 1);
    let assignment = joined.assignment.expect("an assignment");
    let topic_id = assignment.topic_partitions[0].topic_id;
    assert_eq!(assignment.topic_partitions[0].partitions, [0, 1]);

    let fetch = |epoch: i32, acks: Vec<AcknowledgementBatch>, max_records: i32| {
        let mut request = ShareFetchRequest::default();
        request.group_id = Some(GroupId(StrBytes::from_static_str("workers")));
        request.member_id = Some(StrBytes::from_static_str("m"));
        request.share_session_epoch = epoch;
        request.max_wait_ms = 0;
        request.min_bytes = 1;
        request.max_bytes = 1 << 20;
        request.max_records = max_records;
        request.batch_size = 500;
        let mut topic = ShareTopic::default();
        topic.topic_id = topic_id;
        let mut partition = SharePartition::default();
        partition.partition_index = 0;
        partition.partition_max_bytes = 1 << 20;
        partition.acknowledgement_batches = acks;
        topic.partitions.push(partition);
        request.topics.push(topic);
        request
    };
    let acquired = |response: &ShareFetchResponse| -> Vec<(i64, i64, i16)> {
        response
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .flat_map(|p| &p.acquired_records)
            .map(|r| (r.first_offset, r.last_offset, r.delivery_count))
            .collect()
    };
    // Member one takes three of the four records, member two the fourth.
    let got: ShareFetchResponse = world.call(&mut one, 1, &fetch(0, Vec::new(), 3));
    assert_eq!(got.error_code, 0);
    assert_eq!(acquired(&got), [(0, 2, 1)]);
    let got: ShareFetchResponse = world.call(&mut two, 1, &fetch(0, Vec::new(), 10));
    assert_eq!(acquired(&got), [(3, 3, 1)]);
    let got: ShareFetchResponse = world.call(&mut two, 1, &fetch(1, Vec::new(), 10));
    assert!(acquired(&got).is_empty(), "everything is locked");
    // One accepts 0 and 2 and releases 1; two then gets 1 again, its second delivery.
    let mut accept = AcknowledgementBatch::default();
    accept.first_offset = 0;
    accept.last_offset = 2;
    accept.acknowledge_types = vec![1, 2, 1];
    let got: ShareFetchResponse = world.call(&mut one, 1, &fetch(1, vec![accept], 10));
    let ack_codes: Vec<i16> = got
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.acknowledge_error_code)
        .collect();
    assert_eq!(ack_codes, [0]);
    let again: ShareFetchResponse = world.call(&mut two, 1, &fetch(2, Vec::new(), 10));
    let both = [acquired(&got), acquired(&again)].concat();
    assert_eq!(both, [(1, 1, 2)], "only the released record comes back");
    // An acknowledgement of a record this session never acquired is refused.
    let mut stranger = AcknowledgementBatch::default();
    stranger.first_offset = 0;
    stranger.last_offset = 0;
    stranger.acknowledge_types = vec![1];
    let got: ShareFetchResponse = world.call(&mut two, 1, &fetch(3, vec![stranger], 10));
    let ack_codes: Vec<i16> = got
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.acknowledge_error_code)
        .collect();
    assert_eq!(ack_codes, [121]);
}

/// An API Sluice does not serve is answered UNSUPPORTED_VERSION where its response has a
/// top-level error code (EndTxn here), and the session goes on.
#[test]
fn an_unsupported_api_is_answered_unsupported_version() {
    use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};
    let world = world();
    let mut session = session();
    world.login(&mut session);
    let answer: EndTxnResponse = world.call(&mut session, 3, &EndTxnRequest::default());
    assert_eq!(answer.error_code, 35);
    let versions: ApiVersionsResponse = world.call(&mut session, 3, &ApiVersionsRequest::default());
    assert_eq!(versions.error_code, 0);
}
