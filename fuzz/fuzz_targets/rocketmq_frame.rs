//! Fuzz target: arbitrary gRPC request streams of the RocketMQ service through
//! `sluice_rocketmq` (the frame decoder, then every method's message decoding and
//! handling, signed as the world's tenant) on a two-shard LocalNode (the production node
//! layer) over simulated disks. Nothing may panic; every answer must be whole frames
//! (each prefix uncompressed and exact) whose messages carry a RocketMQ status (field 1,
//! code not 0), or a gRPC error with no message.
//!
//! Input layout: one byte choosing the method (the served ones, Telemetry last), one
//! byte giving the chunk size the stream arrives in (0 means 1), then the stream bytes
//! (5-byte prefixed messages). The topics `t` (NORMAL) and `f` (FIFO per message group)
//! exist.
#![no_main]
// The futures of a call (adapter, node layer, engine) nest deeply.
#![recursion_limit = "256"]

use std::cell::RefCell;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use sluice_core::engine::types::{FifoScope, QueueConfig, QueueMode, RetryPolicy};
use sluice_core::engine::EngineLimits;
use sluice_core::sim_disk::{block_on, SimDisk};
use sluice_node::local::{sim_node, LocalNode, StepClock};
use sluice_node::Node;
use sluice_rocketmq::grpc::PREFIX_BYTES;
use sluice_rocketmq::proto::StatusOnly;
use sluice_rocketmq::{auth, FrameDecoder, GrpcCode, Method, RocketMqConfig, Telemetry};

const METHODS: [Method; 12] = [
    Method::QueryRoute,
    Method::QueryAssignment,
    Method::Heartbeat,
    Method::SendMessage,
    Method::ReceiveMessage,
    Method::AckMessage,
    Method::ChangeInvisibleDuration,
    Method::ForwardMessageToDeadLetterQueue,
    Method::NotifyClientTermination,
    Method::RecallMessage,
    Method::EndTransaction,
    Method::Telemetry,
];

struct World {
    node: LocalNode<SimDisk, StepClock>,
    headers: HeaderMap,
    config: RocketMqConfig,
    inputs: u64,
}

fn world() -> World {
    let node = sim_node(2, 2, EngineLimits::dms(), 1_000);
    let tenant = block_on(node.create_tenant("fuzz", None)).expect("tenant");
    for (name, mode) in [
        ("t", QueueMode::Normal),
        ("f", QueueMode::Fifo(FifoScope::MessageGroup)),
    ] {
        let queue = QueueConfig {
            mode,
            retention_ms: 3_600_000,
            max_consume_count: Some(3),
            retry: RetryPolicy::Immediate,
            dedup_window_ms: 0,
            partitions: 0,
        };
        block_on(
            node.shard(0)
                .create_queue(&tenant.project_id, name, queue, Vec::new()),
        )
        .expect("topic");
    }
    let date = "20261207T120000Z";
    let mut headers = HeaderMap::new();
    headers.insert(auth::DATE_HEADER, HeaderValue::from_static(date));
    let authorization = auth::sign(&tenant.ak, &tenant.sk, date);
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&authorization).expect("an ASCII header"),
    );
    World {
        node,
        headers,
        config: RocketMqConfig {
            advertised_host: "127.0.0.1".to_string(),
            advertised_port: 8081,
        },
        inputs: 0,
    }
}

/// Checks that `frame` is one whole uncompressed message carrying a RocketMQ status.
fn check_frame(frame: &Bytes) {
    assert!(frame.len() >= PREFIX_BYTES, "a whole prefix");
    assert_eq!(frame[0], 0, "answers are not compressed");
    let length = u32::from_be_bytes(frame[1..5].try_into().unwrap()) as usize;
    assert_eq!(length, frame.len() - PREFIX_BYTES, "the prefix is exact");
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    WORLD.with(|cell| {
        let mut slot = cell.borrow_mut();
        let world = slot.get_or_insert_with(world);
        world.inputs += 1;
        if world.inputs % 64 == 0 {
            let clock = &world.node.runtime().0;
            clock.set(clock.get() + 40_000);
            block_on(world.node.tick(clock.get())).expect("tick");
        }
        let method = METHODS[usize::from(data[0]) % METHODS.len()];
        let step = usize::from(data[1]).max(1);
        let shard = world.node.shard(usize::from(data[1] % 2));
        let mut decoder = FrameDecoder::new();
        let mut telemetry = None;
        for chunk in data[2..].chunks(step) {
            decoder.push(chunk);
            loop {
                let message = match decoder.next_message() {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    Err(_) => return,
                };
                if method == Method::Telemetry {
                    let session = telemetry.get_or_insert_with(|| {
                        block_on(Telemetry::open(&**shard, &world.headers)).expect("signed")
                    });
                    match session.command(&**shard, message) {
                        Ok(Some(reply)) => check_frame(&reply),
                        Ok(None) => {}
                        Err(_) => return,
                    }
                    continue;
                }
                let answer = block_on(sluice_rocketmq::unary(
                    &**shard,
                    &world.config,
                    method,
                    &world.headers,
                    message,
                ));
                if answer.code != GrpcCode::Ok {
                    assert!(answer.messages.is_empty(), "an error carries no message");
                    continue;
                }
                assert!(!answer.messages.is_empty(), "an answer has a message");
                for frame in &answer.messages {
                    check_frame(frame);
                }
                if method != Method::ReceiveMessage {
                    let status = StatusOnly::decode(&answer.messages[0][PREFIX_BYTES..])
                        .expect("an answer decodes")
                        .status
                        .expect("an answer has a status");
                    assert_ne!(status.code, 0, "a status has a code");
                }
            }
        }
    });
});

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}
