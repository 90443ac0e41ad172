//! The fuzz seed corpus, built from real encodings at fuzz time so it always matches the
//! current formats (nothing binary is committed).
//!
//! Each target's input layout is described in its file under `fuzz/fuzz_targets/`; the
//! `segment_scan` layout is repeated here: 8 bytes of little-endian base offset, one byte
//! choosing the index interval, then the segment bytes.

use sluice_core::frame::encode_frame;
use sluice_core::offset_index::{OffsetIndex, SegmentSummary};
use sluice_core::record::{encode_batch, RecordInput};
use sluice_core::term_runs::TermRuns;
use sluice_core::Offset;

/// The seeds of one fuzz target.
pub fn for_target(target: &str) -> Vec<Vec<u8>> {
    match target {
        "record_decode" => record_seeds(),
        "segment_scan" => segment_seeds(),
        "index_decode" => index_seeds(),
        "auth_verify" => auth_seeds(),
        "dms_request" => dms_seeds(),
        "http_service" => http_service_seeds(),
        "cluster_frame" => cluster_frame_seeds(),
        "kafka_frame" => kafka_frame_seeds(),
        "sqs_request" => sqs_request_seeds(),
        "rocketmq_frame" => rocketmq_frame_seeds(),
        _ => unreachable!("unknown fuzz target {target}, checked by the caller"),
    }
}

/// A batch in term 7 (any term: the decoders do not interpret it).
fn batch(base_offset: u64, durable_position: u64, records: &[RecordInput<'_>]) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_batch(
        &mut bytes,
        Offset(base_offset),
        sluice_core::segment::segment_epoch(Offset(base_offset)),
        7,
        durable_position,
        records,
    )
    .expect("seed batches are within limits");
    bytes
}

fn record(
    timestamp_ms: u64,
    attributes: &'static [u8],
    payload: &'static [u8],
) -> RecordInput<'static> {
    RecordInput {
        timestamp_ms,
        attributes,
        payload,
    }
}

fn record_seeds() -> Vec<Vec<u8>> {
    let single = batch(0, 0, &[record(1, b"", b"x")]);
    let mixed = batch(
        1000,
        4096,
        &[
            record(5, b"tag=a", b"hello"),
            record(3, b"", b""),
            record(9, b"k", b"world!!"),
        ],
    );
    let payloads: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; usize::from(i)]).collect();
    let many: Vec<RecordInput<'_>> = payloads
        .iter()
        .enumerate()
        .map(|(i, payload)| RecordInput {
            timestamp_ms: 100 + u64::try_from(i).expect("small"),
            attributes: b"",
            payload,
        })
        .collect();
    let many = batch(u64::MAX / 2, 64, &many);
    let truncated = mixed[..mixed.len() - 12].to_vec();
    vec![single, mixed, many, vec![0; 64], truncated]
}

/// `count` one-record batches from `base`; each claims its own start durable when
/// `synced`, as if every batch was synced before the next was encoded.
fn segment(base: u64, count: u64, synced: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    for i in 0..count {
        let start = u64::try_from(bytes.len()).expect("small");
        let claim = if synced { start } else { 0 };
        // 37 to 41 bytes: most batches end unaligned and carry padding.
        let payload_bytes = 37 + usize::try_from(i % 5).expect("small");
        let payload = vec![u8::try_from(i % 256).expect("bounded"); payload_bytes];
        encode_batch(
            &mut bytes,
            Offset(base + i),
            sluice_core::segment::segment_epoch(Offset(base)),
            i / 3,
            claim,
            &[RecordInput {
                timestamp_ms: i,
                attributes: b"",
                payload: &payload,
            }],
        )
        .expect("seed batches are within limits");
    }
    bytes
}

fn segment_input(base: u64, interval_selector: u8, segment: &[u8]) -> Vec<u8> {
    let mut input = base.to_le_bytes().to_vec();
    input.push(interval_selector);
    input.extend_from_slice(segment);
    input
}

fn segment_seeds() -> Vec<Vec<u8>> {
    let mut clean = segment(0, 4, true);
    clean.extend_from_slice(&[0; 64]);
    let torn = segment(7, 5, false);
    let torn = &torn[..torn.len() - 20];
    let mut corrupt = segment(3, 5, true);
    // Batches are 128 to 136 bytes: byte 300 lies in the third one, past its header.
    corrupt[300] ^= 4;
    // The last batch is 125 bytes plus 3 of padding; the file ends inside the padding.
    let padding_cut = segment(11, 1, true);
    let padding_cut = &padding_cut[..padding_cut.len() - 2];
    vec![
        segment_input(0, 0, &clean),
        segment_input(7, 1, torn),
        segment_input(3, 0, &corrupt),
        segment_input(42, 3, &segment(42, 30, true)),
        segment_input(11, 0, padding_cut),
        segment_input(
            u64::MAX - (1 << 32),
            0,
            &segment(u64::MAX - (1 << 32), 3, true),
        ),
    ]
}

fn index_seeds() -> Vec<Vec<u8>> {
    let base = Offset(100);
    let mut index = OffsetIndex::default();
    for i in 0..10u64 {
        index.observe(base, Offset(100 + i * 3), i * 1000, 2000);
    }
    let summary = SegmentSummary {
        base_offset: base,
        next_offset: Offset(130),
        data_bytes: 10_000,
        timestamp_ms_max: 77,
        epoch_tagged: true,
    };
    let empty_summary = SegmentSummary {
        base_offset: Offset(5),
        next_offset: Offset(5),
        data_bytes: 0,
        timestamp_ms_max: 0,
        epoch_tagged: false,
    };
    let mut terms = TermRuns::default();
    terms.observe(base, 1);
    terms.observe(Offset(112), 2);
    vec![
        index.encode_file(&summary, &terms, 8),
        index.encode_file(&summary, &terms, 4096),
        OffsetIndex::default().encode_file(&empty_summary, &TermRuns::default(), 8),
    ]
}

/// Requests split by NUL: method, path, query, headers, body, Authorization, token.
fn auth_seeds() -> Vec<Vec<u8>> {
    let headers = "host:127.0.0.1:8080\ncontent-type:application/json\nx-sdk-date:20261125T000000Z";
    let authorization = "SDK-HMAC-SHA256 Access=FUZZAK, SignedHeaders=content-type;host;x-sdk-date, \
                         Signature=0000000000000000000000000000000000000000000000000000000000000000";
    let legacy = "SDK-HMAC-SHA256 Credential=FUZZAK/20261125/region-1/dms/sdk_request, \
                  SignedHeaders=host;x-sdk-date, Signature=00";
    [
        format!("GET\0/v1.0/p/queues\0include_deadletter=true\0{headers}\0\0{authorization}\0"),
        format!("POST\0/v2/p/queues/q/messages\0!\0{headers}\0{{\"messages\":[]}}\0{legacy}\0"),
        "GET\0/v1.0/p/queues\0\0host:x\0\0\0AQAAAAAAAAAAAAAAAAA".to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

/// Method selector, flags, then path, query and body split by NUL (`$Q`/`$G`: live ids).
fn dms_seeds() -> Vec<Vec<u8>> {
    let requests: [(u8, u8, &str); 6] = [
        (1, 0, "queues\0\0{\"name\":\"n\",\"queue_mode\":\"FIFO\"}"),
        (0, 0, "queues/$Q\0include_deadletter=true\0"),
        (
            1,
            2,
            "queues/$Q/messages\0\0{\"messages\":[{\"body\":{\"a\":1},\"tags\":[\"t\"]}]}",
        ),
        (
            0,
            0,
            "queues/$Q/groups/$G/messages\0max_msgs=10&time_wait=1&ack_wait=15\0",
        ),
        (
            1,
            0,
            "queues/$Q/groups/$G/ack\0\0{\"message\":[{\"handler\":\"AA\",\"status\":\"fail\"}]}",
        ),
        (2, 4, "queues/$Q/groups/$G\0\0"),
    ];
    requests
        .iter()
        .map(|(method, flags, rest)| {
            let mut seed = vec![*method, *flags];
            seed.extend_from_slice(rest.as_bytes());
            seed
        })
        .collect()
}

/// Requests as `fuzz_targets/http_service.rs` reads them: method, flags (credentials in
/// bits 0-1, JSON content type in bit 2, `X-Project-Id` in bit 3), then path, query,
/// headers and body separated by NUL.
fn http_service_seeds() -> Vec<Vec<u8>> {
    let requests: [(u8, u8, &str); 12] = [
        (
            1,
            4,
            "/v2/$P/queues\0\0\0{\"name\":\"n\",\"tags\":[{\"key\":\"a\",\"value\":\"b\"}]}",
        ),
        (0, 1, "/v1.0/$P/queues/$Q\0include_deadletter=true\0\0"),
        (
            1,
            4,
            "/v2/$P/queues/$Q/messages\0\0user-agent:fuzz\0{\"messages\":[{\"body\":[1,{\"a\":null}]}]}",
        ),
        (
            0,
            12,
            "/v2/$P/queues/$Q/groups/$G/messages\0max_msgs=10&time_wait=1&ack_wait=15\0\0",
        ),
        (
            1,
            5,
            "/v2/$P/queue/$Q/tags/action\0\0\0{\"action\":\"create\",\"tags\":[{\"key\":\"k\",\"value\":\"v\"}]}",
        ),
        (0, 0, "/v2/$P/queue/tags\0\0\0"),
        (1, 0, "/v3/auth/tokens\0\0\0{\"auth\":{}}"),
        (0, 3, "/admin/tenants\0\0\0"),
        (
            1,
            2,
            "/\0\0x-amz-target:AmazonSQS.ListQueues\nx-amz-date:20261126T000000Z\nauthorization:AWS4-HMAC-SHA256 Credential=AK/20261126/r/sqs/aws4_request, SignedHeaders=host;x-amz-date, Signature=00\0{}",
        ),
        (
            0,
            2,
            "/v2/$P/quotas\0\0authorization:SDK-HMAC-SHA256 Access=x, SignedHeaders=host, Signature=00\nx-sdk-date:20261126T000000Z\0",
        ),
        // SQS's query protocol: a form POST to a queue's path, a GET with Action.
        (
            1,
            2,
            "/$P/q\0\0content-type:application/x-www-form-urlencoded\0Action=SendMessage&MessageBody=m&MessageAttribute.1.Name=a&MessageAttribute.1.Value.DataType=String&MessageAttribute.1.Value.StringValue=v",
        ),
        (0, 2, "/\0Action=ListQueues&QueueNamePrefix=q\0\0"),
    ];
    requests
        .iter()
        .map(|(method, flags, rest)| {
            let mut seed = vec![*method, *flags];
            seed.extend_from_slice(rest.as_bytes());
            seed
        })
        .collect()
}

/// Streams as `fuzz_targets/cluster_frame.rs` reads them: the read-size byte, the
/// payload-limit byte (in units of 64 bytes), then frames.
fn cluster_frame_seeds() -> Vec<Vec<u8>> {
    let stream = |chunk: u8, limit: u8, frames: &[(u16, u8, &[u8])]| {
        let mut seed = vec![chunk, limit];
        for (channel, kind, payload) in frames {
            encode_frame(&mut seed, *channel, *kind, payload).expect("small payloads");
        }
        seed
    };
    let hello: &[u8] = &[7; 28];
    let several = stream(
        15,
        4,
        &[
            (0, 0, hello),
            (0, 1, b"vote"),
            (1, 2, b""),
            (3, 255, &[9; 200]),
        ],
    );
    let mut truncated = several.clone();
    truncated.truncate(several.len() - 5);
    vec![
        stream(0, 1, &[(0, 1, b"x")]),
        several,
        stream(255, 255, &[(65_535, 9, &[1; 4000]), (2, 3, b"after")]),
        // The second frame's payload (200 bytes) is over a limit of 192.
        stream(31, 3, &[(0, 1, b"ok"), (0, 1, &[2; 200])]),
        truncated,
    ]
}

/// Kafka requests as a client encodes them (the `kafka-protocol` crate's client side),
/// each behind the target's u16 length: one seed per API, and one with all of them.
fn kafka_frame_seeds() -> Vec<Vec<u8>> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        ApiVersionsRequest, FetchRequest, InitProducerIdRequest, ListOffsetsRequest,
        MetadataRequest, ProduceRequest, ProducerId, RequestHeader, TopicName,
    };
    use kafka_protocol::protocol::{Encodable, Request, StrBytes};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn frame<R: Request>(version: i16, request: &R) -> Vec<u8> {
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = 9;
        header.client_id = Some(StrBytes::from_static_str("seed"));
        let mut body = bytes::BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .expect("encodes");
        request.encode(&mut body, version).expect("encodes");
        let mut seed = u16::try_from(body.len())
            .expect("small")
            .to_be_bytes()
            .to_vec();
        seed.extend_from_slice(&body);
        seed
    }
    let topic = || TopicName(StrBytes::from_static_str("t"));
    let mut metadata = MetadataRequest::default();
    let mut wanted = MetadataRequestTopic::default();
    wanted.name = Some(topic());
    metadata.topics = Some(vec![wanted]);
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: 5,
        producer_epoch: 0,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: 0,
        timestamp: 1_700_000_000_000,
        key: Some(bytes::Bytes::from_static(b"k")),
        value: Some(bytes::Bytes::from_static(b"value")),
        headers: Default::default(),
    };
    let mut records = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut records, [&record, &record], &options).expect("encodes");
    let mut produce = ProduceRequest::default();
    produce.acks = -1;
    let mut data = TopicProduceData::default();
    data.name = topic();
    let mut part = PartitionProduceData::default();
    part.records = Some(records.freeze());
    data.partition_data.push(part);
    produce.topic_data.push(data);
    let mut fetch = FetchRequest::default();
    fetch.max_bytes = 1 << 20;
    fetch.min_bytes = 1;
    let mut ft = FetchTopic::default();
    ft.topic = topic();
    let mut fp = FetchPartition::default();
    fp.partition_max_bytes = 1 << 20;
    ft.partitions.push(fp);
    fetch.topics.push(ft);
    let mut offsets = ListOffsetsRequest::default();
    let mut lt = ListOffsetsTopic::default();
    lt.name = topic();
    let mut lp = ListOffsetsPartition::default();
    lp.timestamp = -2;
    lt.partitions.push(lp);
    offsets.topics.push(lt);
    let mut init = InitProducerIdRequest::default();
    init.transactional_id = None;
    init.producer_id = ProducerId(-1);
    init.producer_epoch = -1;
    let seeds = vec![
        frame(3, &ApiVersionsRequest::default()),
        frame(12, &metadata),
        frame(9, &produce),
        frame(12, &fetch),
        frame(7, &offsets),
        frame(4, &init),
    ];
    let mut all = seeds.concat();
    all.extend(frame(12, &fetch));
    let mut seeds = seeds;
    seeds.push(all);
    seeds
}

/// gRPC streams as `fuzz_targets/rocketmq_frame.rs` reads them: the method's index, the
/// chunk size, then 5-byte prefixed messages, each protobuf encoded by hand here (field
/// numbers from adapters/rocketmq/proto/apache/rocketmq/v2).
fn rocketmq_frame_seeds() -> Vec<Vec<u8>> {
    fn varint(out: &mut Vec<u8>, mut value: u64) {
        // Bounded: a u64 has at most 10 groups of 7 bits.
        while value >= 0x80 {
            out.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }
    fn bytes_field(tag: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(&mut out, tag << 3 | 2);
        varint(&mut out, bytes.len() as u64);
        out.extend_from_slice(bytes);
        out
    }
    fn number_field(tag: u64, value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(&mut out, tag << 3);
        varint(&mut out, value);
        out
    }
    fn seed(method: u8, step: u8, messages: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![method, step];
        for message in messages {
            out.push(0);
            out.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
            out.extend_from_slice(message);
        }
        out
    }
    let topic = |name: &str| bytes_field(2, name.as_bytes());
    let group = bytes_field(1, &bytes_field(2, b"g"));
    let seconds = |s: u64| number_field(1, s);
    let normal = [
        bytes_field(1, &topic("t")),
        bytes_field(
            3,
            &[
                bytes_field(1, b"a"),
                bytes_field(2, b"k"),
                bytes_field(3, b"ID1"),
                number_field(5, 1),
                number_field(6, 1),
            ]
            .concat(),
        ),
        bytes_field(4, b"hello"),
    ]
    .concat();
    let fifo = [
        bytes_field(1, &topic("f")),
        bytes_field(3, &[number_field(6, 2), bytes_field(17, b"g1")].concat()),
        bytes_field(4, b"first"),
    ]
    .concat();
    let delayed = [
        bytes_field(1, &topic("t")),
        bytes_field(
            3,
            &[number_field(6, 3), bytes_field(11, &seconds(1_000_000))].concat(),
        ),
        bytes_field(4, b"later"),
    ]
    .concat();
    let receive = [
        group.clone(),
        bytes_field(2, &bytes_field(1, &topic("t"))),
        bytes_field(3, &[number_field(1, 1), bytes_field(2, b"a || b")].concat()),
        number_field(4, 4),
        bytes_field(5, &seconds(30)),
        bytes_field(7, &seconds(1)),
    ]
    .concat();
    let handle = "0000".to_string() + &"00".repeat(25);
    let ack = [
        group.clone(),
        bytes_field(2, &topic("t")),
        bytes_field(
            3,
            &[bytes_field(1, b"ID1"), bytes_field(2, handle.as_bytes())].concat(),
        ),
    ]
    .concat();
    let change = [
        group.clone(),
        bytes_field(2, &topic("t")),
        bytes_field(3, handle.as_bytes()),
        bytes_field(4, &seconds(5)),
    ]
    .concat();
    let settings = bytes_field(
        2,
        &[
            number_field(1, 1),
            bytes_field(5, &bytes_field(1, &topic("t"))),
        ]
        .concat(),
    );
    vec![
        seed(0, 64, &[bytes_field(1, &topic("t"))]),
        seed(
            1,
            7,
            &[[bytes_field(1, &topic("t")), group.clone()].concat()],
        ),
        seed(2, 64, &[number_field(2, 1)]),
        seed(3, 64, &[bytes_field(1, &normal)]),
        seed(3, 3, &[bytes_field(1, &fifo)]),
        seed(3, 64, &[bytes_field(1, &delayed)]),
        seed(4, 64, &[receive]),
        seed(5, 64, &[ack]),
        seed(6, 64, std::slice::from_ref(&change)),
        seed(7, 64, &[change]),
        seed(8, 64, &[group]),
        seed(
            9,
            64,
            &[[bytes_field(1, &topic("t")), bytes_field(2, b"00")].concat()],
        ),
        seed(
            10,
            64,
            &[[
                bytes_field(1, &topic("t")),
                bytes_field(3, b"00000000000000000000"),
                number_field(4, 1),
            ]
            .concat()],
        ),
        seed(11, 5, &[settings.clone(), settings]),
    ]
}

/// Requests as `fuzz_targets/sqs_request.rs` reads them: the operation's index in its
/// `ACTIONS`, then the JSON body (`$URL` and `$FIFO` name its two queues); and
/// query-protocol requests: a byte from 128 on choosing the method and path, then the
/// form.
fn sqs_request_seeds() -> Vec<Vec<u8>> {
    let requests: [(u8, &str); 14] = [
        (
            0,
            r#"{"QueueName":"n1","Attributes":{"VisibilityTimeout":"5","DelaySeconds":"1"}}"#,
        ),
        (1, r#"{"QueueName":"q"}"#),
        (2, r#"{"QueueNamePrefix":"","MaxResults":1}"#),
        (3, r#"{"QueueUrl":"$URL"}"#),
        (4, r#"{"QueueUrl":"$FIFO","AttributeNames":["All"]}"#),
        (
            5,
            r#"{"QueueUrl":"$URL","Attributes":{"VisibilityTimeout":"60"}}"#,
        ),
        (
            6,
            r#"{"QueueUrl":"$URL","MessageBody":"b","MessageAttributes":{"a":{"DataType":"Binary","BinaryValue":"AAE="},"n":{"DataType":"Number","StringValue":"1"}}}"#,
        ),
        (
            6,
            r#"{"QueueUrl":"$FIFO","MessageBody":"b","MessageGroupId":"g"}"#,
        ),
        (
            7,
            r#"{"QueueUrl":"$URL","Entries":[{"Id":"a","MessageBody":"x"},{"Id":"b","MessageBody":"y","DelaySeconds":2}]}"#,
        ),
        (
            8,
            r#"{"QueueUrl":"$URL","MaxNumberOfMessages":10,"VisibilityTimeout":0,"AttributeNames":["All"],"MessageAttributeNames":["All"]}"#,
        ),
        (9, r#"{"QueueUrl":"$URL","ReceiptHandle":"00"}"#),
        (
            10,
            r#"{"QueueUrl":"$URL","Entries":[{"Id":"a","ReceiptHandle":"x"}]}"#,
        ),
        (
            11,
            r#"{"QueueUrl":"$URL","ReceiptHandle":"00","VisibilityTimeout":0}"#,
        ),
        (
            12,
            r#"{"QueueUrl":"$URL","Entries":[{"Id":"a","ReceiptHandle":"x","VisibilityTimeout":5}]}"#,
        ),
    ];
    // Query-protocol requests: from 128 on, the byte's lowest bit chooses GET and the
    // rest the path (0 `/`, 1 the standard queue's, 2 the FIFO queue's).
    let queries: [(u8, &str); 14] = [
        (
            128,
            "Action=CreateQueue&QueueName=n2&Attribute.1.Name=VisibilityTimeout\
             &Attribute.1.Value=5&Tag.1.Key=team&Tag.1.Value=core",
        ),
        (129, "Action=GetQueueUrl&QueueName=q"),
        (129, "Action=ListQueues&QueueNamePrefix=&MaxResults=2"),
        (
            132,
            "Action=GetQueueAttributes&AttributeName.1=All&AttributeName.2=QueueArn",
        ),
        (
            130,
            "Action=SetQueueAttributes&Attribute.1.Name=DelaySeconds&Attribute.1.Value=0",
        ),
        (
            130,
            "Action=SendMessage&MessageBody=a%3Cb%26c&MessageAttribute.1.Name=k\
             &MessageAttribute.1.Value.DataType=String&MessageAttribute.1.Value.StringValue=v\
             &MessageAttribute.2.Name=b&MessageAttribute.2.Value.DataType=Binary\
             &MessageAttribute.2.Value.BinaryValue=AAE%3D",
        ),
        (
            128,
            "Action=SendMessage&QueueUrl=$FIFO&MessageBody=f&MessageGroupId=g",
        ),
        (
            130,
            "Action=SendMessageBatch&SendMessageBatchRequestEntry.1.Id=a\
             &SendMessageBatchRequestEntry.1.MessageBody=x&SendMessageBatchRequestEntry.3.Id=b\
             &SendMessageBatchRequestEntry.3.MessageBody=y\
             &SendMessageBatchRequestEntry.3.MessageAttribute.1.Name=n\
             &SendMessageBatchRequestEntry.3.MessageAttribute.1.Value.DataType=Number\
             &SendMessageBatchRequestEntry.3.MessageAttribute.1.Value.StringValue=1",
        ),
        (
            130,
            "Action=ReceiveMessage&MaxNumberOfMessages=10&VisibilityTimeout=0\
             &AttributeName.1=All&MessageAttributeName.1=All&MessageSystemAttributeName.1=SenderId",
        ),
        (130, "Action=DeleteMessage&ReceiptHandle=00"),
        (
            130,
            "Action=DeleteMessageBatch&DeleteMessageBatchRequestEntry.1.Id=a\
             &DeleteMessageBatchRequestEntry.1.ReceiptHandle=x",
        ),
        (
            130,
            "Action=ChangeMessageVisibilityBatch&ChangeMessageVisibilityBatchRequestEntry.1.Id=a\
             &ChangeMessageVisibilityBatchRequestEntry.1.ReceiptHandle=x\
             &ChangeMessageVisibilityBatchRequestEntry.1.VisibilityTimeout=5",
        ),
        (134, "Action=DeleteQueue"),
        (
            128,
            "Action=TagQueue&QueueUrl=$URL&Tag.1.Key=k&Tag.1.Value=v&TagKey.1=k",
        ),
    ];
    requests
        .iter()
        .chain(queries.iter())
        .map(|(action, body)| {
            let mut seed = vec![*action];
            seed.extend_from_slice(body.as_bytes());
            seed
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use sluice_core::frame::decode_frame;
    use sluice_core::record::decode_batch;
    use sluice_core::segment::{scan_segment, ScanEnd};

    use super::*;

    #[test]
    fn seeds_reach_the_interesting_paths() {
        // Goal: the seeds start the fuzzer past the checksums. Method: decode each seed
        // the way its fuzz target does and expect the outcome it was built for.
        let records = record_seeds();
        assert!(records[..3].iter().all(|seed| decode_batch(seed).is_ok()));
        assert!(records[3..].iter().all(|seed| decode_batch(seed).is_err()));
        let ends: Vec<ScanEnd> = segment_seeds()
            .iter()
            .map(|seed| {
                let base = u64::from_le_bytes(seed[..8].try_into().unwrap());
                scan_segment(&seed[9..], Offset(base), 512).end
            })
            .collect();
        assert_eq!(ends[0], ScanEnd::Clean);
        assert!(matches!(ends[1], ScanEnd::Torn { .. }), "{:?}", ends[1]);
        assert!(matches!(ends[2], ScanEnd::Corrupt { .. }), "{:?}", ends[2]);
        assert_eq!(ends[3], ScanEnd::Clean);
        assert_eq!(ends[4], ScanEnd::Clean);
        assert_eq!(ends[5], ScanEnd::Clean);
        for seed in index_seeds() {
            assert!(OffsetIndex::decode_file(&seed).is_some());
        }
        for seed in http_service_seeds() {
            // Path, query, headers and body: the target splits the rest into four fields.
            let fields = seed[2..].splitn(4, |b| *b == 0).count();
            assert_eq!(fields, 4, "{:?}", String::from_utf8_lossy(&seed));
            assert!(seed[2] == b'/', "a path");
        }
        assert!(for_target("http_service").len() >= 9);
        let frames: Vec<usize> = cluster_frame_seeds()
            .iter()
            .map(|seed| {
                let payload_bytes_max = u32::from(seed[1]) * 64;
                let mut rest = &seed[2..];
                let mut frame_count = 0;
                while let Ok(view) = decode_frame(rest, payload_bytes_max) {
                    rest = &rest[view.encoded_bytes()..];
                    frame_count += 1;
                }
                frame_count
            })
            .collect();
        assert_eq!(frames, [1, 4, 2, 1, 3]);
    }
}
