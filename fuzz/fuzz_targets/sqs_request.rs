//! Fuzz target: arbitrary SQS JSON requests through `sluice_http::sqs::handle_authenticated`
//! (past the signature check, which `auth_verify`-style targets cover) on a two-shard
//! LocalNode over simulated disks. Nothing may panic; every answer is 200 with a JSON
//! object, or an SQS error: 400, 403 or 503 with a JSON body naming its `__type` and an
//! `x-amzn-query-error` header.
//!
//! Input layout: one byte choosing the operation from [`ACTIONS`], then the JSON body, in
//! which `$URL` and `$FIFO` stand for the URLs of a standard and a FIFO queue that exist
//! (made again when a request deleted them).
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use sluice_core::engine::EngineLimits;
use sluice_core::sim_disk::{block_on, SimDisk};
use sluice_http::dms::DmsConfig;
use sluice_http::service::ServiceConfig;
use sluice_http::sqs;
use sluice_node::local::{sim_node, LocalNode, StepClock};
use sluice_node::Node;

/// The operations an input's first byte chooses from (one unknown name among them).
const ACTIONS: [&str; 18] = [
    "CreateQueue",
    "GetQueueUrl",
    "ListQueues",
    "DeleteQueue",
    "GetQueueAttributes",
    "SetQueueAttributes",
    "SendMessage",
    "SendMessageBatch",
    "ReceiveMessage",
    "DeleteMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch",
    "PurgeQueue",
    "TagQueue",
    "UntagQueue",
    "ListQueueTags",
    "",
];
const ENDPOINT: &str = "http://fuzz.example:1";

struct World {
    node: LocalNode<SimDisk, StepClock>,
    config: ServiceConfig,
    project: String,
    requests: u64,
}

fn world() -> World {
    let node = sim_node(2, 2, EngineLimits::dms(), 1_000);
    let tenant = block_on(node.create_tenant("fuzz", None)).expect("tenant");
    let config = ServiceConfig {
        dms: DmsConfig::dms_default(),
        clock_skew_s_max: 900,
        token_ttl_s: 3600,
        token_key: [7; 32],
        admin_ak: "ADMINFUZZ".to_string(),
        admin_sk: "admin-secret".to_string(),
        endpoint: ENDPOINT.to_string(),
        region: "region-1".to_string(),
    };
    let world = World {
        node,
        config,
        project: tenant.project_id,
        requests: 0,
    };
    world.seed();
    world
}

impl World {
    /// Makes the two queues the inputs name, with a message in each.
    fn seed(&self) {
        let create = r#"{"QueueName": "q"}"#;
        let fifo = r#"{"QueueName": "f.fifo", "Attributes": {"FifoQueue": "true", "ContentBasedDeduplication": "true"}}"#;
        self.call("CreateQueue", create.as_bytes());
        self.call("CreateQueue", fifo.as_bytes());
        let send = format!(r#"{{"QueueUrl": "{}", "MessageBody": "m"}}"#, self.url("q"));
        self.call("SendMessage", send.as_bytes());
    }

    fn url(&self, name: &str) -> String {
        format!("{ENDPOINT}/{}/{name}", self.project)
    }

    fn call(&self, action: &str, body: &[u8]) {
        let shard = self.node.shard(body.len() % 2);
        let answer = block_on(sqs::handle_authenticated(
            &**shard,
            &self.config,
            &self.project,
            action,
            body,
        ));
        let status = answer.status().as_u16();
        let json: serde_json::Value =
            serde_json::from_slice(answer.body()).expect("every answer is JSON");
        match status {
            200 => assert!(json.is_object(), "a success is a JSON object"),
            400 | 403 | 503 => {
                assert!(
                    json["__type"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("com.amazonaws.sqs#")),
                    "an error names its type: {json}"
                );
                assert!(answer.headers().contains_key("x-amzn-query-error"));
            }
            other => panic!("status {other} for {action}: {json}"),
        }
    }
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    let action = ACTIONS[usize::from(choice) % ACTIONS.len()];
    WORLD.with(|cell| {
        let mut slot = cell.borrow_mut();
        let world = slot.get_or_insert_with(world);
        world.requests += 1;
        if world.requests % 64 == 0 {
            let clock = &world.node.runtime().0;
            clock.set(clock.get() + 40_000);
            block_on(world.node.tick(clock.get())).expect("tick");
            let named = |name: &str| world.node.queue_named(&world.project, name).is_some();
            if !named("q") || !named("f.fifo") {
                world.seed();
            }
        }
        let body = String::from_utf8_lossy(body)
            .replace("$URL", &world.url("q"))
            .replace("$FIFO", &world.url("f.fifo"));
        world.call(action, body.as_bytes());
    });
});
