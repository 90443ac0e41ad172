//! A DMS test harness: a LocalNode (the production node logic, two shards when there
//! are two partitions or more) over simulated disks with a hand-advanced clock, two
//! tenants, and one `call` helper that runs a request through `dms::handle` on the next
//! shard in turn (as connections spread over the server's shards) and parses the answer.
//! No sleeps: the clock's sleep advances it at once.

use std::cell::Cell;
use std::rc::Rc;

use http::{Method, Request, StatusCode};
use serde_json::Value;
use sluice_core::engine::{EngineConfig, EngineLimits};
use sluice_core::log::{LogConfig, VerifyOnOpen};
use sluice_core::sim_disk::{block_on, SimDisk};
use sluice_http::dms::{self, DmsConfig};
use sluice_node::local::{sim_node_on, LocalNode, LocalShard, StepClock};
use sluice_node::tenants::Tenant;
use sluice_node::Node;

pub const START_MS: u64 = 1_764_081_000_000;

pub struct Answer {
    pub status: StatusCode,
    pub json: Value,
    pub raw: Vec<u8>,
    pub headers: http::HeaderMap,
}

impl Answer {
    /// The DMS error code of an error answer, after checking the envelope's shape.
    pub fn code(&self) -> &str {
        let code = self.json["error_code"].as_str().expect("error_code");
        assert_eq!(self.json["error"]["code"], code, "nested code agrees");
        assert_eq!(
            self.json["error"]["message"], self.json["error_msg"],
            "messages agree"
        );
        code
    }
}

pub struct Harness {
    pub node: LocalNode<SimDisk, StepClock>,
    pub clock: Rc<Cell<u64>>,
    pub config: DmsConfig,
    pub tenant: Tenant,
    pub other: Tenant,
    /// The shard the next request enters at.
    entry: Cell<usize>,
}

impl Harness {
    pub fn new(partitions: u16) -> Harness {
        let engine_config = EngineConfig {
            log: LogConfig {
                segment_bytes_max: 256 * 1024,
                index_interval_bytes: 4096,
                preallocate_bytes: 0,
                verify_on_open: VerifyOnOpen::Tail,
                cache_bytes_max: sluice_core::limits::LOG_CACHE_BYTES_DEFAULT,
                recycle_segments_max: sluice_core::limits::LOG_RECYCLE_SEGMENTS_DEFAULT,
            },
            limits: EngineLimits::dms(),
            snapshot_every_records: 100_000,
        };
        let clock = StepClock::starting_at(START_MS);
        let shards = usize::from(partitions).min(2);
        let node = sim_node_on(u32::from(partitions), shards, engine_config, clock.clone());
        let clock = clock.0;
        let tenant = block_on(node.create_tenant("tenant-a", None)).unwrap();
        let other = block_on(node.create_tenant("tenant-b", None)).unwrap();
        let config = DmsConfig {
            ack_wait_s_min: 1,
            ..DmsConfig::dms_default()
        };
        Harness {
            node,
            clock,
            config,
            tenant,
            other,
            entry: Cell::new(0),
        }
    }

    /// The shard the next request enters at: each in turn.
    pub fn entry(&self) -> &LocalShard<SimDisk, StepClock> {
        let index = self.entry.get();
        self.entry.set((index + 1) % self.node.shard_count());
        self.node.shard(index)
    }

    pub fn now(&self) -> u64 {
        self.clock.get()
    }

    pub fn advance(&self, ms: u64) {
        self.clock.set(self.clock.get() + ms);
        block_on(self.node.tick(self.clock.get())).unwrap();
    }

    /// `/v1.0/{project}` + `tail`.
    pub fn v1(&self, tail: &str) -> String {
        format!("/v1.0/{}{tail}", self.tenant.project_id)
    }

    pub fn v2(&self, tail: &str) -> String {
        format!("/v2/{}{tail}", self.tenant.project_id)
    }

    pub fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap());
        self.call_raw(method, path, body.as_deref(), Some("application/json"))
    }

    pub fn call_as(
        &self,
        caller: &Tenant,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let body = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        let (parts, ()) = request(method, path, Some("application/json")).into_parts();
        let response = block_on(dms::handle(
            self.entry(),
            &self.config,
            &caller.project_id,
            &parts,
            &body,
        ));
        answer(response)
    }

    pub fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
        content_type: Option<&str>,
    ) -> Answer {
        let (parts, ()) = request(method, path, content_type).into_parts();
        let response = block_on(dms::handle(
            self.entry(),
            &self.config,
            &self.tenant.project_id,
            &parts,
            body.unwrap_or_default(),
        ));
        answer(response)
    }

    /// Creates a queue from `fields` and returns its id.
    pub fn queue(&self, fields: Value) -> String {
        let answer = self.call(Method::POST, &self.v1("/queues"), Some(fields));
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
        answer.json["id"].as_str().unwrap().to_string()
    }

    /// Creates one group on `queue` and returns its id.
    pub fn group(&self, queue: &str, name: &str) -> String {
        let path = self.v1(&format!("/queues/{queue}/groups"));
        let body = serde_json::json!({"groups": [{"name": name}]});
        let answer = self.call(Method::POST, &path, Some(body));
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
        answer.json["groups"][0]["id"].as_str().unwrap().to_string()
    }

    pub fn send(&self, queue: &str, messages: Value) -> Answer {
        let path = self.v1(&format!("/queues/{queue}/messages"));
        self.call(
            Method::POST,
            &path,
            Some(serde_json::json!({"messages": messages})),
        )
    }

    pub fn consume(&self, queue: &str, group: &str, query: &str) -> Answer {
        let path = self.v1(&format!("/queues/{queue}/groups/{group}/messages?{query}"));
        self.call(Method::GET, &path, None)
    }

    pub fn ack(&self, queue: &str, group: &str, entries: Value) -> Answer {
        let path = self.v1(&format!("/queues/{queue}/groups/{group}/ack"));
        self.call(
            Method::POST,
            &path,
            Some(serde_json::json!({"message": entries})),
        )
    }
}

fn request(method: Method, path: &str, content_type: Option<&str>) -> Request<()> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    builder.body(()).unwrap()
}

fn answer(response: http::Response<bytes::Bytes>) -> Answer {
    let (parts, body) = response.into_parts();
    let json_lines = parts
        .headers
        .get("content-type")
        .is_some_and(|t| t == "application/x-ndjson");
    let json = if body.is_empty() || json_lines {
        Value::Null
    } else {
        serde_json::from_slice(&body).expect("every answer with a body is JSON")
    };
    Answer {
        status: parts.status,
        json,
        raw: body.to_vec(),
        headers: parts.headers,
    }
}
