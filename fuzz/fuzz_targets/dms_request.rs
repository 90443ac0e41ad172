//! Fuzz target: arbitrary DMS requests through `sluice_http::dms::handle` on a two-shard
//! LocalNode (the production node layer) over simulated disks must never panic, and every answer must carry a valid status
//! and a JSON body (or none for 204).
//!
//! Input layout: byte 0 picks the method, byte 1 flags (content type, prefix, caller),
//! then three fields separated by 0x00: the path after the project, the query, the body.
//! In the path and body, `$Q` and `$G` become the ids of a queue and group that exist, so
//! the fuzzer reaches the handlers behind id resolution.
#![no_main]

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use libfuzzer_sys::fuzz_target;
use sluice_core::engine::EngineLimits;
use sluice_core::sim_disk::{block_on, SimDisk};
use sluice_http::dms::{self, DmsConfig};
use sluice_node::local::{sim_node_on, test_engine_config, LocalNode, StepClock};
use sluice_node::Node;

struct World {
    node: LocalNode<SimDisk, StepClock>,
    clock: Rc<Cell<u64>>,
    project: String,
    queue: String,
    group: String,
    requests: u64,
}

fn world() -> World {
    let clock = StepClock::starting_at(1_000);
    let config = test_engine_config(EngineLimits::dms());
    let node = sim_node_on(2, 2, config, clock.clone());
    let clock = clock.0;
    let tenant = block_on(node.create_tenant("fuzz", None)).expect("tenant");
    let mut world = World {
        node,
        clock,
        project: tenant.project_id,
        queue: String::new(),
        group: String::new(),
        requests: 0,
    };
    world.seed();
    world
}

impl World {
    /// (Re)creates the queue and group that `$Q` and `$G` name, with a message in it.
    fn seed(&mut self) {
        let config = DmsConfig::dms_default();
        let path = format!("/v1.0/{}/queues", self.project);
        let name = format!("q{}", self.requests);
        let body = format!(
            r#"{{"name":"{name}","queue_mode":"FIFO","redrive_policy":"enable","max_consume_count":1}}"#
        );
        let created = self.call(&config, "POST", &path, body.as_bytes(), true);
        let Some(id) = created.get("id").and_then(|v| v.as_str()) else {
            return;
        };
        self.queue = id.to_string();
        let groups = format!("{path}/{}/groups", self.queue);
        let created = self.call(
            &config,
            "POST",
            &groups,
            br#"{"groups":[{"name":"g"}]}"#,
            true,
        );
        if let Some(id) = created["groups"][0]["id"].as_str() {
            self.group = id.to_string();
        }
        let messages = format!("{path}/{}/messages", self.queue);
        self.call(
            &config,
            "POST",
            &messages,
            br#"{"messages":[{"body":{"a":1}}]}"#,
            true,
        );
    }

    fn call(
        &self,
        config: &DmsConfig,
        method: &str,
        uri: &str,
        body: &[u8],
        json: bool,
    ) -> serde_json::Value {
        let mut builder = http::Request::builder().method(method).uri(uri);
        if json {
            builder = builder.header("content-type", "application/json");
        }
        let Ok(request) = builder.body(()) else {
            return serde_json::Value::Null;
        };
        let (parts, ()) = request.into_parts();
        let _ = dms::route_label(&parts);
        let response = block_on(dms::handle(
            self.node
                .shard(usize::from(self.requests % 2 == 1))
                .as_ref(),
            config,
            &self.project,
            &parts,
            body,
        ));
        let status = response.status().as_u16();
        assert!((200..600).contains(&status), "status {status}");
        if response.body().is_empty() {
            assert_eq!(status, 204, "only 204 has no body");
            return serde_json::Value::Null;
        }
        serde_json::from_slice(response.body()).expect("every body is JSON")
    }
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

const METHODS: [&str; 6] = ["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD"];

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let method = METHODS[usize::from(data[0]) % METHODS.len()];
    let flags = data[1];
    let mut fields = data[2..].splitn(3, |b| *b == 0);
    let path = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let query = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let body = fields.next().unwrap_or_default();
    WORLD.with(|cell| {
        let mut slot = cell.borrow_mut();
        let world = slot.get_or_insert_with(world);
        world.requests += 1;
        if world.requests % 64 == 0 {
            world.clock.set(world.clock.get() + 40_000);
            block_on(world.node.tick(world.clock.get())).expect("tick");
            if world.node.queues_of(&world.project).len() < 20 {
                world.seed();
            }
        }
        let substitute = |text: &str| text.replace("$Q", &world.queue).replace("$G", &world.group);
        let prefix = if flags & 2 == 0 { "/v1.0" } else { "/v2" };
        let project = if flags & 4 == 0 {
            world.project.as_str()
        } else {
            "0123456789abcdef0123456789abcdef"
        };
        let mut uri = format!("{prefix}/{project}{}", substitute(&path));
        if !query.is_empty() {
            uri.push('?');
            uri.push_str(&query);
        }
        let body = substitute(&String::from_utf8_lossy(body)).into_bytes();
        let mut config = DmsConfig::dms_default();
        config.ack_wait_s_min = 1;
        world.call(&config, method, &uri, &body, flags & 1 == 0);
    });
});
