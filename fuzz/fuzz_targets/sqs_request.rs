//! Fuzz target: arbitrary SQS requests of both protocols, past the signature check (which
//! `auth_verify`-style targets cover), on a two-shard LocalNode over simulated disks:
//! JSON requests through `sluice_http::sqs::handle_authenticated`, query-protocol requests
//! (form parameters) through `sluice_http::sqs::query::handle_authenticated`, which
//! translates them onto the same operations. Nothing may panic. A JSON answer is 200 with
//! a JSON object, or an SQS error: 400, 403 or 503 with a JSON body naming its `__type`
//! and an `x-amzn-query-error` header. A query answer is XML whose tags balance and whose
//! text has no character XML cannot carry: `<{Action}Response>` with 200, or
//! `<ErrorResponse>` with 400, 403 or 503 and the `x-amzn-query-error` header.
//!
//! Input layout: one byte, then the body, in which `$URL` and `$FIFO` stand for the URLs
//! of a standard and a FIFO queue that exist (made again when a request deleted them).
//! A byte below [`QUERY_FIRST`] chooses the operation from [`ACTIONS`] and the body is
//! JSON; from [`QUERY_FIRST`] on, the byte chooses the method (its lowest bit: `GET` puts
//! the parameters in the query string) and the path from [`QUERY_PATHS`], and the body
//! is the form (`Action=...&...`).
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
/// The first byte from which an input is a query-protocol request.
const QUERY_FIRST: u8 = 128;
/// The paths a query-protocol request is sent to (`$PROJECT` is the tenant's).
const QUERY_PATHS: [&str; 5] = [
    "/",
    "/$PROJECT/q",
    "/$PROJECT/f.fifo",
    "/$PROJECT/gone",
    "/other-project/q",
];

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

impl World {
    /// Serves one query-protocol request and checks its XML answer.
    fn call_query(&self, choice: u8, form: &str) {
        let get = choice % 2 == 1;
        let path = QUERY_PATHS[usize::from(choice / 2) % QUERY_PATHS.len()]
            .replace("$PROJECT", &self.project);
        let mut request = http::Request::builder();
        if get {
            request = request
                .method("GET")
                .uri(format!("{path}?{}", query_text(form)));
        } else {
            request = request
                .method("POST")
                .uri(path)
                .header("content-type", "application/x-www-form-urlencoded");
        }
        let (parts, ()) = request.body(()).expect("a valid request").into_parts();
        let body = if get { &[][..] } else { form.as_bytes() };
        let shard = self.node.shard(form.len() % 2);
        let answer = block_on(sqs::query::handle_authenticated(
            &**shard,
            &self.config,
            &self.project,
            &parts,
            body,
        ));
        let text = std::str::from_utf8(answer.body()).expect("every answer is UTF-8");
        check_xml(text);
        assert_eq!(answer.headers()["content-type"], "text/xml");
        match answer.status().as_u16() {
            200 => assert!(
                text.starts_with('<') && text.contains("Response xmlns="),
                "a success is a response document: {text}"
            ),
            400 | 403 | 503 => {
                assert!(text.starts_with("<ErrorResponse xmlns="), "{text}");
                assert!(answer.headers().contains_key("x-amzn-query-error"));
            }
            other => panic!("status {other}: {text}"),
        }
    }
}

/// `form` as a URL query string: its structure (`=`, `&`, escapes) kept, every other
/// byte a URI may not carry percent-encoded.
fn query_text(form: &str) -> String {
    let mut out = String::with_capacity(form.len());
    for byte in form.bytes() {
        if byte.is_ascii_alphanumeric() || b"=&%+.-_~*/:".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Checks that `text` is XML as the adapter writes it: no character outside XML's, no
/// markup character in text, and tags that open and close in order.
fn check_xml(text: &str) {
    let mut open: Vec<&str> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        let between = &rest[..start];
        assert!(!between.contains('>'), "a bare '>' in text: {text}");
        assert!(
            between
                .chars()
                .all(|c| (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
                    || c == '\t'
                    || c == '\n'),
            "a control character in text: {text:?}"
        );
        let end = rest[start..].find('>').expect("every tag closes") + start;
        let tag = &rest[start + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(name), "tags close in order: {text}");
        } else if !tag.ends_with('/') {
            open.push(tag.split(' ').next().expect("a name"));
        }
        rest = &rest[end + 1..];
    }
    assert!(
        rest.is_empty() && open.is_empty(),
        "unclosed: {open:?} in {text}"
    );
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
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
        if choice >= QUERY_FIRST {
            world.call_query(choice - QUERY_FIRST, &body);
        } else {
            let action = ACTIONS[usize::from(choice) % ACTIONS.len()];
            world.call(action, body.as_bytes());
        }
    });
});
