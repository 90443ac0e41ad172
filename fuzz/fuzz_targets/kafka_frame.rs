//! Fuzz target: arbitrary Kafka request frames through `sluice_tcp::kafka::Session` on a
//! two-shard LocalNode (the production node layer) over simulated disks. Nothing may
//! panic; every answer must be a whole frame (its length prefix equal to the bytes that
//! follow) carrying the request's correlation id; a close ends the session and a fresh one
//! takes the next input.
//!
//! Input layout: frames, each a big-endian u16 length and then that many bytes (what a
//! client sends after the 4-byte length prefix). The session logs in with SASL PLAIN as
//! the world's tenant first, so the fuzzer reaches the handlers behind authentication;
//! the topic `t` exists.
#![no_main]

/// A Kafka array count read off the wire may reserve address space, as the server's
/// host lets it (`sluice_fuzz::reserve`).
#[global_allocator]
static ALLOCATOR: sluice_fuzz::reserve::ReserveLarge<std::alloc::System> =
    sluice_fuzz::reserve::ReserveLarge(std::alloc::System);

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_core::engine::types::{QueueConfig, QueueMode, RetryPolicy};
use sluice_core::engine::EngineLimits;
use sluice_core::sim_disk::{block_on, SimDisk};
use sluice_node::local::{sim_node, LocalNode, StepClock};
use sluice_node::Node;
use sluice_tcp::kafka::{KafkaConfig, Reply, Session};

struct World {
    node: LocalNode<SimDisk, StepClock>,
    login: Vec<Vec<u8>>,
    inputs: u64,
}

fn world() -> World {
    let node = sim_node(2, 2, EngineLimits::dms(), 1_000);
    let tenant = block_on(node.create_tenant("fuzz", None)).expect("tenant");
    let queue = QueueConfig {
        mode: QueueMode::Normal,
        retention_ms: 3_600_000,
        max_consume_count: None,
        retry: RetryPolicy::Immediate,
        dedup_window_ms: 0,
        partitions: 0,
    };
    block_on(
        node.shard(0)
            .create_queue(&tenant.project_id, "t", queue, Vec::new()),
    )
    .expect("topic");
    let login = vec![
        sasl_handshake(),
        sasl_authenticate(format!("\0{}\0{}", tenant.ak, tenant.sk).as_bytes()),
    ];
    World {
        node,
        login,
        inputs: 0,
    }
}

/// SaslHandshake v1 for PLAIN, correlation id 1 (header v1: key, version, id, client).
fn sasl_handshake() -> Vec<u8> {
    let mut frame = vec![0, 17, 0, 1, 0, 0, 0, 1, 0xff, 0xff];
    frame.extend_from_slice(&5u16.to_be_bytes());
    frame.extend_from_slice(b"PLAIN");
    frame
}

/// SaslAuthenticate v0 (header v1, bytes with an i32 length), correlation id 2.
fn sasl_authenticate(message: &[u8]) -> Vec<u8> {
    let mut frame = vec![0, 36, 0, 0, 0, 0, 0, 2, 0xff, 0xff];
    frame.extend_from_slice(&(message.len() as i32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

fn session() -> Session {
    Session::new(Arc::new(KafkaConfig {
        broker_id: 0,
        advertised_host: "127.0.0.1".to_string(),
        advertised_port: 9092,
        brokers: Vec::new(),
    }))
}

/// Runs one frame; answers whether the session goes on.
fn run(world: &World, session: &mut Session, frame: &[u8]) -> bool {
    let shard = world.node.shard(usize::from(frame.len() % 2 == 1));
    match block_on(session.handle(&**shard, Bytes::copy_from_slice(frame))) {
        Reply::Send(answer) => {
            assert!(answer.len() >= 8, "a response frame has a length and an id");
            let length = i32::from_be_bytes(answer[..4].try_into().unwrap());
            assert_eq!(
                length as usize,
                answer.len() - 4,
                "the length prefix is exact"
            );
            assert_eq!(answer[4..8], frame[4..8], "the correlation id comes back");
            true
        }
        Reply::Nothing => true,
        Reply::Close(_) => false,
    }
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    WORLD.with(|cell| {
        let mut slot = cell.borrow_mut();
        let world = slot.get_or_insert_with(world);
        world.inputs += 1;
        if world.inputs % 64 == 0 {
            let clock = &world.node.runtime().0;
            clock.set(clock.get() + 40_000);
            block_on(world.node.tick(clock.get())).expect("tick");
        }
        let mut session = session();
        for frame in &world.login {
            assert!(run(world, &mut session, frame), "the login is answered");
        }
        let mut rest = data;
        while rest.len() >= 2 {
            let length = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            let frame = &rest[2..(2 + length).min(rest.len())];
            rest = &rest[(2 + length).min(rest.len())..];
            if !run(world, &mut session, frame) {
                break;
            }
        }
    });
});
