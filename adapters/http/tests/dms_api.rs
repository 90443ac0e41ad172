//! End-to-end tests of the DMS queue API: every endpoint through `dms::handle` on a
//! LocalNode over simulated disks, with a test clock (no sleeps). Each test states its
//! goal; shapes are compared as whole JSON values where the answer is deterministic.
//! Section numbers (§3.1, §5, ...) are those of docs/dms-api.md.

mod dms_support;

use dms_support::{Harness, START_MS};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use sluice_core::sim_disk::block_on;
use sluice_node::Node as _;

fn handlers(answer: &Value) -> Vec<String> {
    answer
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["handler"].as_str().unwrap().to_string())
        .collect()
}

fn bodies(answer: &Value) -> Vec<Value> {
    answer
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"]["body"].clone())
        .collect()
}

fn acks(handlers: &[String], status: &str) -> Value {
    handlers
        .iter()
        .map(|h| json!({"handler": h, "status": status}))
        .collect()
}

#[test]
fn queue_lifecycle_under_both_prefixes() {
    // Goal: create, show, list and delete answer the §3.1 shapes on /v1.0 and /v2.
    let h = Harness::new(2);
    let created = h.call(
        Method::POST,
        &h.v2("/queues"),
        Some(json!({"name": "billing-events", "queue_mode": "FIFO",
                    "description": "invoices to print", "redrive_policy": "enable",
                    "max_consume_count": 5, "unknown_field": [1, 2]})),
    );
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.json["id"].as_str().unwrap().to_string();
    assert_eq!(created.json, json!({"id": id, "name": "billing-events"}));
    assert_eq!(id.len(), 36);
    assert!(created.headers.contains_key("x-request-id"));
    assert_eq!(created.headers["content-type"], "application/json");

    let show = h.call(
        Method::GET,
        &h.v1(&format!("/queues/{id}?include_deadletter=true")),
        None,
    );
    assert_eq!(show.status, StatusCode::OK);
    assert_eq!(
        show.json,
        json!({"id": id, "name": "billing-events", "description": "invoices to print",
               "queue_mode": "FIFO", "created": START_MS, "eff_date": START_MS,
               "reservation": 4320, "max_msg_size_byte": 524288, "produced_messages": 0,
               "group_count": 0, "redrive_policy": "enable", "max_consume_count": 5,
               "fifo_scope": "queue", "retry_policy": "immediate", "partitions": 1})
    );
    let plain = h.call(Method::GET, &h.v2(&format!("/queues/{id}")), None);
    assert!(plain.json.get("redrive_policy").is_none());
    assert!(plain.json.get("max_consume_count").is_none());

    let second = h.queue(json!({"name": "alpha"}));
    let list = h.call(Method::GET, &h.v1("/queues"), None);
    assert_eq!(list.json["total"], 2);
    let names: Vec<&str> = list.json["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "billing-events"]);
    assert!(list.json["queues"][0].get("produced_messages").is_none());
    assert_eq!(list.json["queues"][0]["queue_mode"], "NORMAL");
    assert!(list.json["queues"][0].get("fifo_scope").is_none());
    let counted = h.call(
        Method::GET,
        &h.v2("/queues?include_messages_num=true&include_deadletter=true"),
        None,
    );
    assert_eq!(counted.json["queues"][0]["produced_messages"], 0);
    assert_eq!(counted.json["queues"][0]["redrive_policy"], "disable");

    let deleted = h.call(Method::DELETE, &h.v2(&format!("/queues/{second}")), None);
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.raw.is_empty());
    assert!(deleted.headers.get("content-type").is_none());
    let gone = h.call(Method::GET, &h.v1(&format!("/queues/{second}")), None);
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.code(), "10249041");
    assert_eq!(
        h.call(Method::DELETE, &h.v1(&format!("/queues/{second}")), None)
            .status,
        404
    );
}

#[test]
fn kafka_queue_keeps_its_mode_topic_and_retention() {
    // Goal: a KAFKA_HA queue is created with its retention_hours, reports the mode, the
    // topic and the retention in minutes, and a message outlives neither that retention
    // nor less than it.
    let h = Harness::new(1);
    let created = h.call(
        Method::POST,
        &h.v2("/queues"),
        Some(json!({"name": "clicks", "queue_mode": "kafka_ha", "retention_hours": 2})),
    );
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let id = created.json["id"].as_str().unwrap().to_string();
    let show = h.call(Method::GET, &h.v1(&format!("/queues/{id}")), None);
    assert_eq!(show.json["queue_mode"], "KAFKA_HA");
    assert_eq!(show.json["kafka_topic"], "clicks");
    assert_eq!(show.json["reservation"], 120);
    let g = h.group(&id, "readers");
    assert_eq!(
        h.send(&id, json!([{"body": "early"}])).status,
        StatusCode::CREATED
    );
    h.advance(3_600_000);
    assert_eq!(
        h.send(&id, json!([{"body": "late"}])).status,
        StatusCode::CREATED
    );
    h.advance(3_600_001);
    let left = h.consume(&id, &g, "max_msgs=10");
    let bodies: Vec<&Value> = left
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["message"]["body"])
        .collect();
    assert_eq!(bodies, [&json!("late")], "{}", left.json);
    let default = h.queue(json!({"name": "views", "queue_mode": "KAFKA_HA"}));
    let show = h.call(Method::GET, &h.v1(&format!("/queues/{default}")), None);
    assert_eq!(show.json["reservation"], 72 * 60);
    let normal = h.queue(json!({"name": "plain"}));
    let show = h.call(Method::GET, &h.v1(&format!("/queues/{normal}")), None);
    assert!(show.json.get("kafka_topic").is_none());
}

#[test]
fn queue_create_rejects_every_bad_field_with_its_code() {
    // Goal: each §3.1 rule answers 400 with the service's code and a precise message.
    let h = Harness::new(1);
    let check = |body: Value| {
        let answer = h.call(Method::POST, &h.v1("/queues"), Some(body));
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.json);
        answer.code().to_string()
    };
    assert_eq!(check(json!({})), "10240011");
    assert_eq!(check(json!({"name": ""})), "10240011");
    assert_eq!(check(json!({"name": "a".repeat(65)})), "10240011");
    assert_eq!(check(json!({"name": "bad name"})), "10240007");
    assert_eq!(check(json!({"name": 7})), "10249001");
    assert_eq!(
        check(json!({"name": "q", "description": "d".repeat(161)})),
        "10240013"
    );
    assert_eq!(
        check(json!({"name": "q", "description": "<script>"})),
        "10240010"
    );
    assert_eq!(
        check(json!({"name": "q", "queue_mode": "KAFKA_HT"})),
        "10249001"
    );
    for hours in [json!(0), json!(73), json!("24"), json!(-1)] {
        assert_eq!(
            check(json!({"name": "q", "queue_mode": "KAFKA_HA", "retention_hours": hours})),
            "10240027"
        );
    }
    assert_eq!(
        check(
            json!({"name": "q", "queue_mode": "KAFKA_HA", "redrive_policy": "enable",
                     "max_consume_count": 3})
        ),
        "10249001"
    );
    assert_eq!(
        check(json!({"name": "q", "queue_mode": "LIFO"})),
        "10249001"
    );
    assert_eq!(
        check(json!({"name": "q", "redrive_policy": "maybe"})),
        "10249001"
    );
    assert_eq!(
        check(json!({"name": "q", "redrive_policy": "enable"})),
        "10240022"
    );
    assert_eq!(
        check(json!({"name": "q", "redrive_policy": "enable", "max_consume_count": 101})),
        "10240022"
    );
    assert_eq!(
        check(json!({"name": "q", "redrive_policy": "enable", "max_consume_count": "3"})),
        "10240022"
    );
    assert_eq!(
        check(json!({"name": "q", "retention_hours": 24})),
        "10240028"
    );
    assert_eq!(
        check(json!({"name": "q", "fifo_scope": "message_group"})),
        "10249001"
    );
    assert_eq!(
        check(json!({"name": "q", "queue_mode": "FIFO", "fifo_scope": "x"})),
        "10249001"
    );
    assert_eq!(
        check(json!({"name": "q", "retry_policy": "never"})),
        "10249001"
    );
    h.queue(json!({"name": "q"}));
    assert_eq!(check(json!({"name": "q"})), "10240017");

    let malformed = h.call_raw(
        Method::POST,
        &h.v1("/queues"),
        Some(b"{\"name\":"),
        Some("application/json"),
    );
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.code(), "10240009");
    assert!(malformed.json["error_msg"]
        .as_str()
        .unwrap()
        .starts_with("The request body is not valid JSON"));
    let array = h.call_raw(
        Method::POST,
        &h.v1("/queues"),
        Some(b"[]"),
        Some("application/json"),
    );
    assert_eq!(
        array.json["error_msg"],
        "The request body must be a JSON object."
    );
    let empty = h.call_raw(
        Method::POST,
        &h.v1("/queues"),
        None,
        Some("application/json"),
    );
    assert_eq!(empty.code(), "10240009");
    let form = h.call_raw(
        Method::POST,
        &h.v1("/queues"),
        Some(b"name=q"),
        Some("application/x-www-form-urlencoded"),
    );
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(form.code(), "10249002");
    let untyped = h.call_raw(
        Method::POST,
        &h.v1("/queues"),
        Some(b"{\"name\":\"z\"}"),
        None,
    );
    assert_eq!(untyped.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let charset = h.call_raw(
        Method::POST,
        &h.v1("/queues"),
        Some(b"{\"name\":\"z\"}"),
        Some("Application/JSON; charset=utf-8"),
    );
    assert_eq!(charset.status, StatusCode::CREATED);
    // GET without a content type is fine: the header is only required with a body.
    assert_eq!(
        h.call_raw(Method::GET, &h.v1("/queues"), None, None).status,
        StatusCode::OK
    );
    let huge = vec![b' '; 2 * 1024 * 1024];
    let too_big = h.call_raw(
        Method::POST,
        &h.v1("/queues"),
        Some(&huge),
        Some("application/json"),
    );
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_big.code(), "10249003");
}

#[test]
fn queue_quota_is_enforced() {
    // Goal: the tenant's queue quota answers 10240020 and shows in /quotas.
    let h = Harness::new(1);
    let quotas = sluice_node::tenants::Quotas {
        queues_max: 2,
        groups_per_queue_max: 3,
    };
    block_on(h.node.set_tenant_quotas(&h.tenant.project_id, quotas)).unwrap();
    let q = h.queue(json!({"name": "a"}));
    h.queue(json!({"name": "b"}));
    let over = h.call(Method::POST, &h.v1("/queues"), Some(json!({"name": "c"})));
    assert_eq!(over.code(), "10240020");
    h.group(&q, "g1");
    h.group(&q, "g2");
    let expected = json!({"quotas": {"resources": [
        {"type": "queue", "quota": 2, "used": 2, "min": 1, "max": 100},
        {"type": "group", "quota": 3, "used": 2}]}});
    assert_eq!(
        h.call(Method::GET, &h.v1("/quotas/dms"), None).json,
        expected
    );
    assert_eq!(h.call(Method::GET, &h.v2("/quotas"), None).json, expected);
    assert_eq!(
        h.call(Method::GET, &h.v1("/quotas"), None).status,
        StatusCode::NOT_FOUND
    );
}

#[test]
fn paths_projects_and_ids_are_checked() {
    // Goal: project mismatch is 401, malformed project/queue/group ids are 400, unknown
    // ids and other tenants' resources are 404, unknown paths 404, wrong methods 405.
    let h = Harness::new(1);
    let q = h.queue(json!({"name": "mine"}));
    let g = h.group(&q, "g");
    let other_path = format!("/v1.0/{}/queues", h.other.project_id);
    let mismatch = h.call(Method::GET, &other_path, None);
    assert_eq!(mismatch.status, StatusCode::UNAUTHORIZED);
    assert_eq!(mismatch.code(), "10240104");
    let bad_project = h.call(Method::GET, "/v1.0/NOT-A-PROJECT/queues", None);
    assert_eq!(bad_project.code(), "10240005");
    assert_eq!(
        h.call(Method::GET, &h.v1("/queues/xyz"), None).code(),
        "10240015"
    );
    let forged = q.replace(&q[0..1], if &q[0..1] == "0" { "1" } else { "0" });
    let forged = h.call(Method::GET, &h.v1(&format!("/queues/{forged}")), None);
    assert_eq!(forged.status, StatusCode::NOT_FOUND);
    let bad_group = h.call(
        Method::DELETE,
        &h.v1(&format!("/queues/{q}/groups/nope")),
        None,
    );
    assert_eq!(bad_group.code(), "10240016");
    let q2 = h.queue(json!({"name": "mine2"}));
    let wrong_queue = h.call(
        Method::DELETE,
        &h.v1(&format!("/queues/{q2}/groups/{g}")),
        None,
    );
    assert_eq!(wrong_queue.status, StatusCode::NOT_FOUND);
    assert_eq!(wrong_queue.code(), "10249042");
    // Another tenant sees none of it, on any endpoint, as if it did not exist.
    let theirs = |tail: &str| format!("/v1.0/{}{tail}", h.other.project_id);
    let other = &h.other;
    for (method, tail, body) in [
        (Method::GET, format!("/queues/{q}"), None),
        (Method::DELETE, format!("/queues/{q}"), None),
        (Method::GET, format!("/queues/{q}/groups"), None),
        (
            Method::POST,
            format!("/queues/{q}/groups"),
            Some(json!({"groups": [{"name": "x"}]})),
        ),
        (
            Method::POST,
            format!("/queues/{q}/messages"),
            Some(json!({"messages": [{"body": 1}]})),
        ),
        (
            Method::GET,
            format!("/queues/{q}/groups/{g}/messages"),
            None,
        ),
        (
            Method::POST,
            format!("/queues/{q}/groups/{g}/ack"),
            Some(json!({"message": []})),
        ),
        (
            Method::GET,
            format!("/queues/{q}/groups/{g}/deadletters"),
            None,
        ),
        (Method::DELETE, format!("/queues/{q}/groups/{g}"), None),
    ] {
        let answer = h.call_as(other, method, &theirs(&tail), body);
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{tail}");
        assert_eq!(answer.code(), "10249041");
    }
    assert_eq!(
        h.call_as(other, Method::GET, &theirs("/queues"), None).json,
        json!({"total": 0, "queues": []})
    );
    let unknown = h.call(Method::GET, &h.v1("/queues/a/b/c/d/e/f/g"), None);
    assert_eq!(unknown.code(), "10249040");
    let not_allowed = h.call(Method::PUT, &h.v1("/queues"), None);
    assert_eq!(not_allowed.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(not_allowed.code(), "10249050");
    assert_eq!(
        h.call(Method::GET, &h.v1(&format!("/queues/{q}/")), None)
            .status,
        StatusCode::OK
    );
}

#[test]
fn groups_create_list_paginate_and_delete() {
    // Goal: §3.2 create (1-3 at once, all or nothing), list with counters, delete.
    let h = Harness::new(2);
    let q = h.queue(json!({"name": "q", "redrive_policy": "enable", "max_consume_count": 3}));
    let path = h.v1(&format!("/queues/{q}/groups"));
    let created = h.call(
        Method::POST,
        &path,
        Some(json!({"groups": [{"name": "printer-a"}, {"name": "audit"}]})),
    );
    assert_eq!(created.status, StatusCode::CREATED);
    let a = created.json["groups"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = created.json["groups"][1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        created.json,
        json!({"groups": [{"id": a, "name": "printer-a"}, {"id": b, "name": "audit"}]})
    );
    let check = |body: Value| h.call(Method::POST, &path, Some(body)).code().to_string();
    assert_eq!(
        check(json!({"groups": [{"name": "x"}, {"name": "y"}]})),
        "10240019"
    );
    assert_eq!(check(json!({"groups": [{"name": "audit"}]})), "10240018");
    assert_eq!(
        check(json!({"groups": [{"name": "g".repeat(33)}]})),
        "10240012"
    );
    assert_eq!(check(json!({"groups": [{"name": "a b"}]})), "10240007");
    assert_eq!(check(json!({"groups": [{}]})), "10240012");
    assert_eq!(check(json!({"groups": []})), "10249001");
    assert_eq!(check(json!({"groups": "x"})), "10249001");
    assert_eq!(check(json!({"groups": [1, 2, 3, 4]})), "10240019");
    h.send(&q, json!([{"body": 1}, {"body": 2}]));
    let list = h.call(Method::GET, &path, None);
    assert_eq!(
        list.json,
        json!({"queue_id": q, "queue_name": "q", "redrive_policy": "enable", "total": 2,
               "groups": [
                 {"id": a, "name": "printer-a", "produced_messages": 2,
                  "consumed_messages": 0, "available_messages": 2, "in_flight_messages": 0,
                  "delivered_messages": 0},
                 {"id": b, "name": "audit", "produced_messages": 2,
                  "consumed_messages": 0, "available_messages": 2, "in_flight_messages": 0,
                  "delivered_messages": 0}]})
    );
    let with_dead = h.call(
        Method::GET,
        &format!("{path}?include_deadletter=true&include_messages_num=false"),
        None,
    );
    assert_eq!(
        with_dead.json["groups"][0],
        json!({"id": a, "name": "printer-a", "produced_deadletters": 0, "available_deadletters": 0})
    );
    let page = h.call(
        Method::GET,
        &format!("{path}?page_size=1&current_page=2"),
        None,
    );
    assert_eq!(page.json["groups"].as_array().unwrap().len(), 1);
    assert_eq!(page.json["groups"][0]["name"], "audit");
    let half = h.call(Method::GET, &format!("{path}?page_size=1"), None);
    assert_eq!(half.json["groups"].as_array().unwrap().len(), 2);
    assert_eq!(
        h.call(
            Method::GET,
            &format!("{path}?page_size=0&current_page=1"),
            None
        )
        .code(),
        "10249001"
    );
    assert_eq!(
        h.call(Method::GET, &format!("{path}?include_deadletter=yes"), None)
            .code(),
        "10249001"
    );
    let deleted = h.call(
        Method::DELETE,
        &h.v2(&format!("/queues/{q}/groups/{a}")),
        None,
    );
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.raw.is_empty());
    assert_eq!(
        h.call(
            Method::DELETE,
            &h.v2(&format!("/queues/{q}/groups/{a}")),
            None
        )
        .status,
        404
    );
    assert_eq!(h.consume(&q, &a, "").status, StatusCode::NOT_FOUND);
    let show = h.call(Method::GET, &h.v1(&format!("/queues/{q}")), None);
    assert_eq!(show.json["group_count"], 1);
    assert_eq!(show.json["produced_messages"], 2);
}

#[test]
fn send_consume_ack_round_trip_keeps_json_bodies() {
    // Goal: bodies of any JSON type come back as JSON, byte for byte, with attributes and
    // tags; ids are returned for return_id and returnId; acks count as §3.5 says.
    let h = Harness::new(3);
    let q = h.queue(json!({"name": "q"}));
    let g = h.group(&q, "g");
    let path = h.v2(&format!("/queues/{q}/messages"));
    let sent = h.call(
        Method::POST,
        &path,
        Some(json!({"returnId": true, "messages": [
            {"body": {"invoice": 4711, "copies": 2}, "attributes": {"priority": 3, "source": "erp"}},
            {"body": "reprint 4702", "attributes": {"source": "desk"}, "tags": ["manual"]}]})),
    );
    assert_eq!(sent.status, StatusCode::CREATED);
    let ids: Vec<&str> = sent.json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(sent.json["messages"][0]["state"], 0);
    assert_eq!(ids.len(), 2);
    let no_ids = h.send(&q, json!([{"body": [1, 2.5, null]}]));
    assert_eq!(no_ids.json, json!({"messages": [{"state": 0}]}));
    let snake = h.call(
        Method::POST,
        &path,
        Some(json!({"return_id": true, "messages": [{"body": 12345678901234567890u64}]})),
    );
    assert!(snake.json["messages"][0]["id"].is_string());
    // Raw bytes are kept: a big integer and odd spacing survive unchanged.
    let raw = br#"{"messages": [{"body": {"n": 123456789012345678901234567890, "s":"x"}}]}"#;
    let raw_sent = h.call_raw(Method::POST, &path, Some(raw), Some("application/json"));
    assert_eq!(raw_sent.status, StatusCode::CREATED);

    let got = h.consume(&q, &g, "max_msgs=10&time_wait=1&ack_wait=30");
    assert_eq!(got.status, StatusCode::OK);
    let list = got.json.as_array().unwrap();
    assert_eq!(list.len(), 5);
    let first = list
        .iter()
        .find(|m| m["message"]["message_id"] == ids[0])
        .unwrap();
    assert_eq!(
        first["message"],
        json!({"body": {"invoice": 4711, "copies": 2}, "attributes": {"priority": 3, "source": "erp"}, "message_id": ids[0], "sent_time": START_MS})
    );
    let second = list
        .iter()
        .find(|m| m["message"]["message_id"] == ids[1])
        .unwrap();
    assert_eq!(second["message"]["tags"], json!(["manual"]));
    assert_eq!(second["message"]["body"], "reprint 4702");
    let text = String::from_utf8(got.raw.clone()).unwrap();
    assert!(
        text.contains(r#"{"n": 123456789012345678901234567890, "s":"x"}"#),
        "{text}"
    );
    let all = handlers(&got.json);
    assert!(all.iter().all(|h| !h.contains(['+', '/', '='])));
    // Ack: the first three succeed, one with status fail (accepted, counted as success).
    let mut entries = acks(&all[..2], "success").as_array().unwrap().clone();
    entries.push(json!({"handler": all[2], "status": "fail"}));
    let acked = h.ack(&q, &g, Value::Array(entries));
    assert_eq!(acked.json, json!({"success": 3, "fail": 0}));
    // The failed one comes back with a new handler; the acked and in-flight ones do not.
    let again = h.consume(&q, &g, "time_wait=1");
    let again_handlers = handlers(&again.json);
    assert_eq!(again_handlers.len(), 1);
    assert!(!all.contains(&again_handlers[0]));
    // The `messages` key is accepted too.
    let path = h.v1(&format!("/queues/{q}/groups/{g}/ack"));
    let mut rest = all[3..].to_vec();
    rest.extend(again_handlers.clone());
    let plural = h.call(
        Method::POST,
        &path,
        Some(json!({"messages": acks(&rest, "success")})),
    );
    assert_eq!(plural.json, json!({"success": 3, "fail": 0}));
    let repeat = h.ack(&q, &g, acks(&again_handlers[..1], "success"));
    assert_eq!(
        repeat.json,
        json!({"success": 1, "fail": 0}),
        "a repeated ack is already done"
    );
    let show = h.call(Method::GET, &h.v1(&format!("/queues/{q}/groups")), None);
    assert_eq!(show.json["groups"][0]["consumed_messages"], 5);
    assert_eq!(show.json["groups"][0]["available_messages"], 0);
}

#[test]
fn ack_stops_at_the_first_invalid_handler() {
    // Goal: entries are applied in order; the first invalid one and all after it count as
    // fail, and the later valid ones are not applied.
    let h = Harness::new(2);
    let q = h.queue(json!({"name": "q"}));
    let g = h.group(&q, "g");
    let g2 = h.group(&q, "g2");
    h.send(&q, json!([{"body": 1}, {"body": 2}, {"body": 3}]));
    let all = handlers(&h.consume(&q, &g, "").json);
    assert_eq!(all.len(), 3);
    let bogus = "not-a-handler".to_string();
    let entries = json!([
        {"handler": all[0], "status": "success"},
        {"handler": bogus, "status": "success"},
        {"handler": all[1], "status": "success"},
    ]);
    assert_eq!(
        h.ack(&q, &g, entries).json,
        json!({"success": 1, "fail": 2})
    );
    // A well-formed handler naming a live message with the wrong nonce is stale.
    let mut forged = sluice_http::dms::ids::handler_decode(&all[1]).unwrap();
    forged.item.nonce ^= 1;
    let forged = sluice_http::dms::ids::handler_encode(&forged);
    let entries = json!([
        {"handler": forged, "status": "success"},
        {"handler": all[2], "status": "success"},
    ]);
    assert_eq!(
        h.ack(&q, &g, entries).json,
        json!({"success": 0, "fail": 2})
    );
    // A handler of another group is invalid for this one.
    let other = handlers(&h.consume(&q, &g2, "max_msgs=1").json);
    let entries = json!([{"handler": other[0], "status": "success"}, {"handler": all[1], "status": "success"}]);
    assert_eq!(
        h.ack(&q, &g, entries).json,
        json!({"success": 0, "fail": 2})
    );
    // The rest are still live and ack now.
    assert_eq!(
        h.ack(&q, &g, acks(&all[1..], "success")).json,
        json!({"success": 2, "fail": 0})
    );
    // Garbage, empty and oversized acks are 400 with precise messages.
    let check = |body: Value| {
        h.call(
            Method::POST,
            &h.v1(&format!("/queues/{q}/groups/{g}/ack")),
            Some(body),
        )
    };
    assert_eq!(
        check(json!({"message": [{"handler": "", "status": "success"}]})).code(),
        "10249005"
    );
    assert_eq!(
        check(json!({"message": [{"handler": 5, "status": "success"}]})).code(),
        "10249005"
    );
    assert_eq!(
        check(json!({"message": [{"handler": "x", "status": "maybe"}]})).code(),
        "10249001"
    );
    assert_eq!(check(json!({"message": []})).code(), "10240014");
    assert_eq!(check(json!({"message": "x"})).code(), "10249001");
    assert_eq!(check(json!({})).code(), "10249001");
    let many: Vec<Value> = (0..101)
        .map(|_| json!({"handler": "x", "status": "success"}))
        .collect();
    assert_eq!(check(json!({"message": many})).code(), "10240014");
}

#[test]
fn send_rejects_bad_messages() {
    // Goal: every §3.3 rule answers 400 with a precise message, and nothing is stored.
    let h = Harness::new(1);
    let q = h.queue(json!({"name": "q"}));
    let check = |messages: Value| {
        let answer = h.send(&q, messages);
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.json);
        answer.code().to_string()
    };
    let eleven: Vec<Value> = (0..11).map(|i| json!({"body": i})).collect();
    assert_eq!(check(Value::Array(eleven)), "10240014");
    assert_eq!(check(json!([])), "10240014");
    assert_eq!(check(json!([{"attributes": {}}])), "10240009");
    assert_eq!(check(json!([{"body": null}])), "10240009");
    assert_eq!(check(json!(["not an object"])), "10249001");
    assert_eq!(check(json!([{"body": "x".repeat(512 * 1024)}])), "10249004");
    let half = "y".repeat(300 * 1024);
    assert_eq!(check(json!([{"body": half}, {"body": half}])), "10249004");
    assert_eq!(check(json!([{"body": 1, "attributes": [1]}])), "10249001");
    assert_eq!(
        check(json!([{"body": 1, "attributes": {"a": {"b": 1}}}])),
        "10249001"
    );
    assert_eq!(
        check(json!([{"body": 1, "tags": ["a", "b", "c", "d"]}])),
        "10240004"
    );
    assert_eq!(
        check(json!([{"body": 1, "tags": ["no spaces"]}])),
        "10240004"
    );
    assert_eq!(check(json!([{"body": 1, "tags": "a"}])), "10249001");
    assert_eq!(check(json!([{"body": 1, "delay_time": -1}])), "10249008");
    assert_eq!(
        check(json!([{"body": 1, "delay_time": 604800001}])),
        "10249008"
    );
    assert_eq!(check(json!([{"body": 1, "delay_level": 19}])), "10249008");
    assert_eq!(
        check(json!([{"body": 1, "delay_level": 1, "delay_time": 5}])),
        "10249008"
    );
    assert_eq!(check(json!([{"body": 1, "fifo_group": ""}])), "10249001");
    assert_eq!(
        check(json!([{"body": 1, "dedup_id": "d".repeat(129)}])),
        "10249001"
    );
    let dup = br#"{"messages": [{"body": 1, "attributes": {"a": 1, "a": 2}}]}"#;
    let path = h.v1(&format!("/queues/{q}/messages"));
    let answer = h.call_raw(Method::POST, &path, Some(dup), Some("application/json"));
    assert_eq!(answer.code(), "10249001");
    assert_eq!(
        h.call(Method::POST, &path, Some(json!({}))).code(),
        "10249001"
    );
    let show = h.call(Method::GET, &h.v1(&format!("/queues/{q}")), None);
    assert_eq!(show.json["produced_messages"], 0);
}

#[test]
fn consume_parameters_and_long_poll() {
    // Goal: parameter ranges answer their codes; an empty consume waits time_wait on the
    // node's clock and answers []; a delayed message appears once its time comes.
    let h = Harness::new(2);
    let q = h.queue(json!({"name": "q"}));
    let g = h.group(&q, "g");
    assert_eq!(h.consume(&q, &g, "max_msgs=11").code(), "10240014");
    assert_eq!(h.consume(&q, &g, "max_msgs=0").code(), "10240014");
    assert_eq!(h.consume(&q, &g, "max_msgs=x").code(), "10240014");
    assert_eq!(h.consume(&q, &g, "time_wait=0").code(), "10240021");
    assert_eq!(h.consume(&q, &g, "time_wait=61").code(), "10240021");
    assert_eq!(h.consume(&q, &g, "ack_wait=301").code(), "10249001");
    assert_eq!(
        h.consume(&q, &g, "tag=a&tag=b&tag=c&tag=d").code(),
        "10240004"
    );
    assert_eq!(h.consume(&q, &g, "tag=a&tag_type=xor").code(), "10249001");
    let before = h.now();
    let empty = h.consume(&q, &g, "");
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.raw, b"[]");
    assert_eq!(h.now() - before, 3_000, "the default time_wait is 3 s");
    let before = h.now();
    assert_eq!(h.consume(&q, &g, "time_wait=60").json, json!([]));
    assert_eq!(h.now() - before, 60_000);
    h.send(&q, json!([{"body": "later", "delay_time": 5000.9}]));
    assert_eq!(h.consume(&q, &g, "time_wait=1").json, json!([]));
    h.advance(5_000);
    assert_eq!(
        bodies(&h.consume(&q, &g, "time_wait=1").json),
        [json!("later")]
    );
}

#[test]
fn ack_wait_expiry_makes_a_handler_stale() {
    // Goal: a delivery not acked within ack_wait comes back with a new handler, and the
    // old handler counts as fail.
    let h = Harness::new(1);
    let q = h.queue(json!({"name": "q"}));
    let g = h.group(&q, "g");
    h.send(&q, json!([{"body": "m"}]));
    let first = handlers(&h.consume(&q, &g, "ack_wait=2").json);
    h.advance(2_001);
    let second = handlers(&h.consume(&q, &g, "ack_wait=30").json);
    assert_eq!(second.len(), 1);
    assert_ne!(first, second);
    assert_eq!(
        h.ack(&q, &g, acks(&first, "success")).json,
        json!({"success": 0, "fail": 1})
    );
    assert_eq!(
        h.ack(&q, &g, acks(&second, "success")).json,
        json!({"success": 1, "fail": 0})
    );
}

#[test]
fn fifo_queues_deliver_in_send_order() {
    // Goal: a FIFO queue hands out messages in send order, holds later ones while earlier
    // ones are in flight, and a failed message is redelivered before anything after it.
    let h = Harness::new(3);
    let q = h.queue(json!({"name": "f", "queue_mode": "FIFO"}));
    let g = h.group(&q, "g");
    for i in 0..6 {
        h.send(&q, json!([{"body": i}]));
    }
    let first = h.consume(&q, &g, "max_msgs=2");
    assert_eq!(bodies(&first.json), [json!(0), json!(1)]);
    assert_eq!(
        h.consume(&q, &g, "time_wait=1").json,
        json!([]),
        "held while in flight"
    );
    let first = handlers(&first.json);
    let entries = json!([{"handler": first[0], "status": "success"}, {"handler": first[1], "status": "fail"}]);
    assert_eq!(
        h.ack(&q, &g, entries).json,
        json!({"success": 2, "fail": 0})
    );
    let mut seen = Vec::new();
    for _ in 0..10 {
        let got = h.consume(&q, &g, "max_msgs=1&time_wait=1");
        if got.json == json!([]) {
            break;
        }
        seen.extend(bodies(&got.json));
        h.ack(&q, &g, acks(&handlers(&got.json), "success"));
    }
    assert_eq!(seen, [json!(1), json!(2), json!(3), json!(4), json!(5)]);
}

#[test]
fn per_message_group_fifo_extension() {
    // Goal: with fifo_scope=message_group, each fifo_group keeps its own order and one
    // blocked group does not hold back another.
    let h = Harness::new(2);
    let q = h.queue(json!({"name": "f", "queue_mode": "FIFO", "fifo_scope": "message_group"}));
    let g = h.group(&q, "g");
    h.send(
        &q,
        json!([{"body": "a1", "fifo_group": "a"}, {"body": "b1", "message_group": "b"},
                      {"body": "a2", "fifo_group": "a"}, {"body": "b2", "message_group": "b"}]),
    );
    let first = h.consume(&q, &g, "max_msgs=1");
    let first_body = bodies(&first.json)[0].clone();
    let second = h.consume(&q, &g, "max_msgs=1");
    let second_body = bodies(&second.json)[0].clone();
    let mut heads = vec![first_body, second_body];
    heads.sort_by_key(|v| v.as_str().unwrap().to_string());
    assert_eq!(heads, [json!("a1"), json!("b1")]);
    let show = h.call(Method::GET, &h.v1(&format!("/queues/{q}")), None);
    assert_eq!(show.json["fifo_scope"], "message_group");
}

#[test]
fn dead_letters_export_as_json_lines_page_by_page_without_leasing() {
    // Goal: GET .../deadletters/export answers the group's dead letters as JSON lines,
    // `limit` a page with X-Next-Cursor while there is more, every dead letter once over
    // the pages (all partitions), and leaves them in place for a dead-letter consume.
    let h = Harness::new(2);
    let q = h.queue(json!({"name": "q", "redrive_policy": "enable", "max_consume_count": 1}));
    let g = h.group(&q, "g");
    let bodies: Vec<Value> = (0..5).map(|i| json!({"n": i})).collect();
    for body in &bodies {
        h.send(
            &q,
            json!([{"body": body, "tags": ["t"], "attributes": {"a": 1}}]),
        );
    }
    let mut failed = 0;
    while failed < 5 {
        let got = handlers(&h.consume(&q, &g, "max_msgs=10").json);
        assert!(!got.is_empty());
        failed += got.len();
        h.ack(&q, &g, acks(&got, "fail"));
    }
    let export = h.v1(&format!("/queues/{q}/groups/{g}/deadletters/export"));
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        assert!(page < 5, "the pages end");
        let query = match &cursor {
            None => "?limit=2".to_string(),
            Some(cursor) => format!("?limit=2&cursor={cursor}"),
        };
        let answer = h.call(Method::GET, &format!("{export}{query}"), None);
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.headers["content-type"], "application/x-ndjson");
        let text = String::from_utf8(answer.raw.clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(lines.len() <= 2);
        for line in &lines {
            assert_eq!(line["tags"], json!(["t"]));
            assert_eq!(line["attributes"], json!({"a": 1}));
            seen.push(line["body"].clone());
        }
        cursor = answer
            .headers
            .get("x-next-cursor")
            .map(|v| v.to_str().unwrap().to_string());
        if cursor.is_none() {
            break;
        }
    }
    seen.sort_by_key(|body| body["n"].as_u64());
    assert_eq!(seen, bodies);
    let dead = h.call(
        Method::GET,
        &h.v1(&format!(
            "/queues/{q}/groups/{g}/deadletters?max_msgs=10&time_wait=1"
        )),
        None,
    );
    assert_eq!(
        dead.json.as_array().unwrap().len(),
        5,
        "still there to consume"
    );
    let bad = h.call(Method::GET, &format!("{export}?cursor=x"), None);
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let plain = h.queue(json!({"name": "plain"}));
    let pg = h.group(&plain, "g");
    let none = h.call(
        Method::GET,
        &h.v1(&format!("/queues/{plain}/groups/{pg}/deadletters/export")),
        None,
    );
    assert_eq!(none.code(), "10249007");
}

#[test]
fn dead_letters_after_max_consume_count() {
    // Goal: with redrive enabled, a message that failed max_consume_count times moves to
    // the group's dead letters (not another group's), which are consumed and acked through
    // their own endpoints and handlers.
    let h = Harness::new(2);
    let q = h.queue(json!({"name": "q", "redrive_policy": "enable", "max_consume_count": 2}));
    let g = h.group(&q, "g");
    let other = h.group(&q, "other");
    h.send(&q, json!([{"body": "poison", "attributes": {"k": "v"}}]));
    for _ in 0..2 {
        let got = handlers(&h.consume(&q, &g, "time_wait=1").json);
        assert_eq!(got.len(), 1);
        assert_eq!(
            h.ack(&q, &g, acks(&got, "fail")).json,
            json!({"success": 1, "fail": 0})
        );
    }
    assert_eq!(h.consume(&q, &g, "time_wait=1").json, json!([]));
    let groups = h.call(
        Method::GET,
        &h.v1(&format!("/queues/{q}/groups?include_deadletter=true")),
        None,
    );
    assert_eq!(groups.json["groups"][0]["available_deadletters"], 1);
    assert_eq!(groups.json["groups"][1]["available_deadletters"], 0);
    let dead_path = h.v1(&format!("/queues/{q}/groups/{g}/deadletters"));
    let dead = h.call(
        Method::GET,
        &format!("{dead_path}?max_msgs=5&time_wait=1&ack_wait=30"),
        None,
    );
    assert_eq!(dead.status, StatusCode::OK);
    assert_eq!(bodies(&dead.json), [json!("poison")]);
    assert_eq!(dead.json[0]["message"]["attributes"], json!({"k": "v"}));
    let dead_handlers = handlers(&dead.json);
    // A dead-letter handler is not valid on the main ack, nor a main one on the dead ack.
    assert_eq!(
        h.ack(&q, &g, acks(&dead_handlers, "success")).json,
        json!({"success": 0, "fail": 1})
    );
    let other_live = handlers(&h.consume(&q, &other, "").json);
    let dead_ack = format!("{dead_path}/ack");
    let wrong = h.call(
        Method::POST,
        &dead_ack,
        Some(json!({"message": acks(&other_live, "success")})),
    );
    assert_eq!(wrong.json, json!({"success": 0, "fail": 1}));
    let acked = h.call(
        Method::POST,
        &dead_ack,
        Some(json!({"message": acks(&dead_handlers, "success")})),
    );
    assert_eq!(acked.json, json!({"success": 1, "fail": 0}));
    let after = h.call(Method::GET, &format!("{dead_path}?time_wait=1"), None);
    assert_eq!(after.json, json!([]));
    // Sluice extension: redrive puts a group's dead letters back in its main lane, with
    // a fresh failure count.
    h.send(&q, json!([{"body": "second"}]));
    for _ in 0..2 {
        let got = handlers(&h.consume(&q, &g, "time_wait=1").json);
        h.ack(&q, &g, acks(&got, "fail"));
    }
    let redrive = h.call(Method::POST, &format!("{dead_path}/redrive"), None);
    assert_eq!(redrive.status, StatusCode::NO_CONTENT);
    let back = h.consume(&q, &g, "time_wait=1").json;
    assert_eq!(bodies(&back), [json!("second")]);
    let wrong_method = h.call(Method::GET, &format!("{dead_path}/redrive"), None);
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    // A queue without redrive has no dead letters.
    let plain = h.queue(json!({"name": "plain"}));
    let pg = h.group(&plain, "g");
    let none = h.call(
        Method::GET,
        &h.v1(&format!("/queues/{plain}/groups/{pg}/deadletters")),
        None,
    );
    assert_eq!(none.code(), "10249007");
    let none = h.call(
        Method::POST,
        &h.v1(&format!("/queues/{plain}/groups/{pg}/deadletters/redrive")),
        None,
    );
    assert_eq!(none.code(), "10249007");
}

#[test]
fn tag_filters_select_messages_and_stick_to_the_group() {
    // Goal: tag (repeatable) and tag_type filter deliveries; a different filter later on
    // the same group is refused.
    let h = Harness::new(1);
    let q = h.queue(json!({"name": "q"}));
    let g = h.group(&q, "g");
    let g2 = h.group(&q, "g2");
    h.send(
        &q,
        json!([{"body": "ab", "tags": ["a", "b"]}, {"body": "a", "tags": ["a"]}, {"body": "none"}]),
    );
    assert_eq!(
        bodies(&h.consume(&q, &g, "tag=a&tag=b&tag_type=and").json),
        [json!("ab")]
    );
    assert_eq!(h.consume(&q, &g, "tag=a").code(), "10249006");
    assert_eq!(
        bodies(&h.consume(&q, &g2, "tag=b&tag=a").json),
        [json!("ab"), json!("a")]
    );
}

#[test]
fn dedup_id_extension_stores_once() {
    // Goal: a repeated dedup_id within the window is accepted and names the original.
    let h = Harness::new(1);
    let q = h.queue(json!({"name": "q"}));
    let first = h.call(
        Method::POST,
        &h.v1(&format!("/queues/{q}/messages")),
        Some(json!({"return_id": true, "messages": [{"body": 1, "dedup_id": "x"}]})),
    );
    let second = h.call(
        Method::POST,
        &h.v1(&format!("/queues/{q}/messages")),
        Some(json!({"return_id": true, "messages": [{"body": 2, "dedup_id": "x"}]})),
    );
    assert_eq!(first.json, second.json);
    let show = h.call(Method::GET, &h.v1(&format!("/queues/{q}")), None);
    assert_eq!(show.json["produced_messages"], 1);
}

#[test]
fn request_ids_are_echoed_or_made() {
    // Goal: X-Request-Id is on every answer, the client's own when it sent a sane one.
    let h = Harness::new(1);
    let parts = http::Request::builder()
        .uri(h.v1("/queues"))
        .header("x-request-id", "abc-123")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let response = sluice_core::sim_disk::block_on(sluice_http::dms::handle(
        h.entry(),
        &h.config,
        &h.tenant.project_id,
        &parts,
        b"",
    ));
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let error = h.call(Method::GET, "/v1.0/x/queues", None);
    assert_eq!(error.headers["x-request-id"].len(), 32);
}

/// Sends `messages` with `return_id` and returns their ids.
fn send_ids(h: &Harness, queue: &str, messages: Value) -> Vec<String> {
    let answer = h.call(
        Method::POST,
        &h.v1(&format!("/queues/{queue}/messages")),
        Some(json!({"return_id": true, "messages": messages})),
    );
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
    answer.json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn transactions_commit_roll_back_and_are_checked() {
    // Goal: a message sent with transaction: true is held until committed through
    // .../messages/{id}/commit (then consumed), dropped by /rollback, and offered for a
    // check through POST .../transactions/checks once its check time comes; a second end
    // answers 409; bad fields answer their codes.
    let h = Harness::new(2);
    let q = h.queue(json!({"name": "tx"}));
    let g = h.group(&q, "g");
    let ids = send_ids(
        &h,
        &q,
        json!([{"body": "pay", "transaction": true},
               {"body": "refund", "transaction": true},
               {"body": "ask", "transaction": true, "transaction_check_after_ms": 2000}]),
    );
    let end = |id: &str, action: &str| {
        h.call(
            Method::POST,
            &h.v2(&format!("/queues/{q}/messages/{id}/{action}")),
            None,
        )
    };
    assert!(h
        .consume(&q, &g, "max_msgs=10")
        .json
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(end(&ids[0], "commit").status, StatusCode::NO_CONTENT);
    assert_eq!(end(&ids[1], "rollback").status, StatusCode::NO_CONTENT);
    assert_eq!(end(&ids[1], "commit").status, StatusCode::CONFLICT);
    assert_eq!(end("nonsense", "commit").status, StatusCode::BAD_REQUEST);
    let got = h.consume(&q, &g, "max_msgs=10");
    let bodies: Vec<&Value> = got
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["message"]["body"])
        .collect();
    assert_eq!(bodies, [&json!("pay")]);
    let checks = |h: &Harness| {
        h.call(
            Method::POST,
            &h.v1(&format!("/queues/{q}/transactions/checks?limit=5")),
            None,
        )
    };
    assert_eq!(checks(&h).json, json!({"checks": []}));
    h.advance(2_000);
    let taken = checks(&h);
    assert_eq!(taken.status, StatusCode::OK);
    assert_eq!(
        taken.json["checks"].as_array().unwrap().len(),
        1,
        "{}",
        taken.json
    );
    assert_eq!(taken.json["checks"][0]["checks"], 1);
    assert_eq!(taken.json["checks"][0]["message"]["body"], "ask");
    assert_eq!(
        taken.json["checks"][0]["message"]["message_id"],
        ids[2].as_str()
    );
    assert_eq!(
        checks(&h).json,
        json!({"checks": []}),
        "a check is taken once"
    );
    assert_eq!(end(&ids[2], "commit").status, StatusCode::NO_CONTENT);
    let send = |fields: Value| {
        let mut message = json!({"body": 1});
        message
            .as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        h.send(&q, json!([message]))
    };
    let refused = send(json!({"transaction": true, "delay_time": 1000}));
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.code(), "10249008");
    assert_eq!(
        send(json!({"transaction_check_after_ms": 5})).code(),
        "10249001"
    );
    assert_eq!(send(json!({"transaction": "yes"})).code(), "10249001");
    let bad_limit = h.call(
        Method::POST,
        &h.v1(&format!("/queues/{q}/transactions/checks?limit=0")),
        None,
    );
    assert_eq!(bad_limit.status, StatusCode::BAD_REQUEST);
}

#[test]
fn a_message_trace_lists_its_steps_with_group_names() {
    // Goal: GET .../messages/{id}/trace answers the message's steps in order: stored,
    // delivered to a group (logged at the next tick), failed, delivered again, acked;
    // a committed transaction's message shows its release; unknown ids answer 404.
    let h = Harness::new(2);
    let q = h.queue(json!({"name": "q"}));
    let g = h.group(&q, "billing");
    let ids = send_ids(&h, &q, json!([{"body": "traced"}]));
    let got = handlers(&h.consume(&q, &g, "max_msgs=1").json);
    h.ack(&q, &g, acks(&got, "fail"));
    let got = handlers(&h.consume(&q, &g, "max_msgs=1").json);
    h.ack(&q, &g, acks(&got, "success"));
    h.advance(1);
    let trace = h.call(
        Method::GET,
        &h.v2(&format!("/queues/{q}/messages/{}/trace", ids[0])),
        None,
    );
    assert_eq!(trace.status, StatusCode::OK, "{}", trace.json);
    assert_eq!(trace.json["complete"], true);
    let steps: Vec<&str> = trace.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps[0], "stored");
    let mut rest = steps[1..].to_vec();
    rest.sort_unstable();
    assert_eq!(rest, ["acked", "delivered", "delivered", "failed"]);
    let failed = trace.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["step"] == "failed")
        .unwrap();
    assert_eq!(failed["group"], "billing");
    assert_eq!(failed["group_id"], g.as_str());
    assert_eq!(failed["failures"], 1);
    let half = send_ids(&h, &q, json!([{"body": "tx", "transaction": true}]));
    h.call(
        Method::POST,
        &h.v2(&format!("/queues/{q}/messages/{}/commit", half[0])),
        None,
    );
    let trace = h.call(
        Method::GET,
        &h.v1(&format!("/queues/{q}/messages/{}/trace", half[0])),
        None,
    );
    let steps: Vec<&Value> = trace.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["step"])
        .collect();
    assert_eq!(steps, [&json!("stored"), &json!("released")]);
    assert_eq!(trace.json["events"][0]["held"], true);
    let unknown = h.call(
        Method::GET,
        &h.v1(&format!("/queues/{q}/messages/00000000000000ffffff/trace")),
        None,
    );
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

fn cancel(h: &Harness, queue: &str, id: &str) -> dms_support::Answer {
    h.call(
        Method::DELETE,
        &h.v2(&format!("/queues/{queue}/messages/{id}")),
        None,
    )
}

/// Consumes what is available now (a non-empty answer does not wait) and acks it.
fn take(h: &Harness, queue: &str, group: &str) -> Vec<Value> {
    let got = h.consume(queue, group, "time_wait=1");
    assert_eq!(got.status, StatusCode::OK, "{}", got.json);
    let taken = handlers(&got.json);
    if !taken.is_empty() {
        assert_eq!(
            h.ack(queue, group, acks(&taken, "success")).json["success"],
            taken.len()
        );
    }
    bodies(&got.json)
}

#[test]
fn deliver_at_holds_a_message_until_its_time() {
    // Goal: the `deliver_at` extension delivers no earlier than the given epoch ms, and a
    // time now or in the past means no delay. Method: an immediate marker message makes
    // the consume one ms before the time return without a long poll (which would move
    // the clock); one tick later, at the time, the scheduled message is there.
    let h = Harness::new(2);
    let q = h.queue(json!({"name": "q"}));
    let g = h.group(&q, "g");
    let at = h.now() + 10_000;
    let now = h.now();
    h.send(
        &q,
        json!([{"body": "scheduled", "deliver_at": at}, {"body": "now", "deliver_at": now},
               {"body": "past", "deliver_at": now - 1}, {"body": "epoch", "deliver_at": 0}]),
    );
    let mut first = take(&h, &q, &g);
    first.sort_by_key(|body| body.to_string());
    assert_eq!(first, [json!("epoch"), json!("now"), json!("past")]);
    h.advance(at - 1 - h.now());
    h.send(&q, json!([{"body": "marker"}]));
    assert_eq!(take(&h, &q, &g), [json!("marker")]);
    assert_eq!(h.now(), at - 1, "the consume did not wait");
    h.advance(1);
    assert_eq!(take(&h, &q, &g), [json!("scheduled")]);
    assert_eq!(h.now(), at, "the consume did not wait");
}

#[test]
fn cancel_stops_a_scheduled_message_on_the_partition_its_id_names() {
    // Goal: DELETE .../messages/{id} cancels a message that waits for its time (204, no
    // body), on the partition the id names; it never arrives. Cancelling again, after
    // release, a message never delayed, or an id naming no partition answers 409. Method:
    // two partitions; sends rotate over them, and two that landed at the same offset on
    // different partitions are kept (partition 0 also holds the tenants' records, so its
    // offsets run ahead), so a cancel sent to the wrong partition would stop the other
    // message. The other sends are cancelled.
    let h = Harness::new(2);
    let q = h.queue(json!({"name": "q"}));
    let g = h.group(&q, "g");
    let at = h.now() + 60_000;
    let sent: Vec<String> = (0..6)
        .map(|i| send_ids(&h, &q, json!([{"body": format!("m{i}"), "deliver_at": at}]))[0].clone())
        .collect();
    let (k, d) = (0..6)
        .flat_map(|a| (0..6).map(move |b| (a, b)))
        .find(|&(a, b)| sent[a][..4] != sent[b][..4] && sent[a][4..] == sent[b][4..])
        .unwrap_or_else(|| panic!("two sends at the same offset on both partitions: {sent:?}"));
    for (i, id) in sent.iter().enumerate() {
        if i != k && i != d {
            assert_eq!(cancel(&h, &q, id).status, StatusCode::NO_CONTENT);
        }
    }
    let (kept, doomed) = (sent[k].clone(), sent[d].clone());
    let delayed = send_ids(&h, &q, json!([{"body": "delayed", "delay_time": 30_000}]))[0].clone();
    let plain = send_ids(&h, &q, json!([{"body": "plain"}]))[0].clone();

    let cancelled = cancel(&h, &q, &doomed);
    assert_eq!(
        cancelled.status,
        StatusCode::NO_CONTENT,
        "{}",
        cancelled.json
    );
    assert!(cancelled.raw.is_empty());
    assert!(cancelled.headers.get("content-type").is_none());
    assert!(cancelled.headers.contains_key("x-request-id"));
    let v1 = h.v1(&format!("/queues/{q}/messages/{delayed}"));
    assert_eq!(
        h.call(Method::DELETE, &v1, None).status,
        StatusCode::NO_CONTENT
    );
    for id in [&doomed, &delayed, &plain] {
        let again = cancel(&h, &q, id);
        assert_eq!(again.status, StatusCode::CONFLICT, "{id}: {}", again.json);
        assert_eq!(again.code(), "10249409");
    }
    let no_partition = format!("0007{}", &kept[4..]);
    assert_eq!(cancel(&h, &q, &no_partition).code(), "10249409");

    assert_eq!(take(&h, &q, &g), [json!("plain")]);
    h.advance(at - h.now());
    assert_eq!(take(&h, &q, &g), [json!(format!("m{k}"))]);
    let late = cancel(&h, &q, &kept);
    assert_eq!(
        (late.status, late.code()),
        (StatusCode::CONFLICT, "10249409")
    );
    h.advance(3_600_000);
    let rest = h.consume(&q, &g, "time_wait=1");
    assert_eq!(rest.json, json!([]), "the cancelled messages never arrive");
    let show = h.call(
        Method::GET,
        &h.v1(&format!("/queues/{q}/groups?include_deadletter=false")),
        None,
    );
    assert_eq!(show.json["groups"][0]["available_messages"], 0);
}

#[test]
fn cancel_is_scoped_to_the_callers_queue() {
    // Goal: another tenant's queue answers 404 as every queue call does, an id from
    // another queue names nothing here (409), and a deleted queue answers 404.
    let h = Harness::new(1);
    let q = h.queue(json!({"name": "q"}));
    let other = h.queue(json!({"name": "other"}));
    let at = h.now() + 60_000;
    let id = send_ids(&h, &q, json!([{"body": 1, "deliver_at": at}]))[0].clone();
    let path = h.v1(&format!("/queues/{q}/messages/{id}"));
    let foreign = h.call_as(
        &h.other,
        Method::DELETE,
        &path.replace(&h.tenant.project_id, &h.other.project_id),
        None,
    );
    assert_eq!(
        (foreign.status, foreign.code()),
        (StatusCode::NOT_FOUND, "10249041")
    );
    assert_eq!(cancel(&h, &other, &id).code(), "10249409");
    assert_eq!(cancel(&h, &q, &id).status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.call(Method::DELETE, &h.v1(&format!("/queues/{q}")), None)
            .status,
        StatusCode::NO_CONTENT
    );
    let gone = cancel(&h, &q, &id);
    assert_eq!(
        (gone.status, gone.code()),
        (StatusCode::NOT_FOUND, "10249041")
    );
}

#[test]
fn scheduled_sends_and_cancels_reject_bad_input() {
    // Goal: at most one of delay_time, delay_level and deliver_at; a deliver_at beyond the
    // horizon; a deliver_at that is not a non-negative integer; a malformed message id or
    // queue id; a method other than DELETE: each answers its error in the §5 envelope,
    // and nothing is stored.
    let h = Harness::new(1);
    let q = h.queue(json!({"name": "q"}));
    let horizon = h.config.schedule_ahead_ms_max;
    assert_eq!(horizon, 365 * 24 * 3_600_000, "one year by default");
    let check = |messages: Value| {
        let answer = h.send(&q, messages);
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.json);
        (
            answer.code().to_string(),
            answer.json["error_msg"].as_str().unwrap().to_string(),
        )
    };
    let at = h.now() + 1_000;
    let (code, message) =
        check(json!([{"body": 1}, {"body": 2, "delay_time": 5, "deliver_at": at}]));
    assert_eq!(code, "10249008");
    assert!(message.starts_with("messages[1] "), "{message}");
    let (code, _) = check(json!([{"body": 1, "delay_level": 1, "deliver_at": at}]));
    assert_eq!(code, "10249008");
    let (code, message) = check(json!([{"body": 1, "deliver_at": h.now() + horizon + 1}]));
    assert_eq!(code, "10249008");
    assert!(message.starts_with("messages[0].deliver_at "), "{message}");
    for bad in [json!("soon"), json!(-1), json!(1.5), json!(true)] {
        assert_eq!(check(json!([{"body": 1, "deliver_at": bad}])).0, "10249001");
    }
    let show = h.call(Method::GET, &h.v1(&format!("/queues/{q}")), None);
    assert_eq!(show.json["produced_messages"], 0);
    // The horizon itself is allowed.
    let edge = h.send(&q, json!([{"body": 1, "deliver_at": h.now() + horizon}]));
    assert_eq!(edge.status, StatusCode::CREATED, "{}", edge.json);

    for id in [
        "xyz",
        "000100000000000000FF",
        "000100000000000000ff0",
        "0001-0000000000000ff",
    ] {
        let answer = cancel(&h, &q, id);
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{id}");
        assert_eq!(answer.code(), "10249001");
    }
    let id = "00000000000000000001";
    assert_eq!(cancel(&h, "not-a-queue", id).code(), "10240015");
    let post = h.call(
        Method::POST,
        &h.v1(&format!("/queues/{q}/messages/{id}")),
        None,
    );
    assert_eq!(
        (post.status, post.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "10249050")
    );
}

/// `depth` nested arrays around `inner`: `[[...inner...]]`.
fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn deeply_nested_message_bodies_are_refused_and_never_stored() {
    // Goal: a message body nested past JSON_DEPTH_MAX (docs/dms-adapter.md, "Limits") is
    // refused with 400 and the invalid-parameter code whether or not it is well-formed,
    // and nothing of the send is stored. Method: send 100,000 `[` (unclosed), then the
    // same balanced, then a body at the limit; a consume must return only the last.
    let h = Harness::new(2);
    let q = h.queue(json!({"name": "q"}));
    let g = h.group(&q, "g");
    let path = h.v1(&format!("/queues/{q}/messages"));
    let send_raw = |body: &str| {
        let request = format!(r#"{{"messages": [{{"body": {body}}}]}}"#);
        h.call_raw(
            Method::POST,
            &path,
            Some(request.as_bytes()),
            Some("application/json"),
        )
    };
    for body in ["[".repeat(100_000), nested(100_000, "")] {
        let refused = send_raw(&body);
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.json);
        assert_eq!(refused.code(), "10249001");
        let text = refused.json["error_msg"].as_str().unwrap();
        assert!(text.contains("nested deeper than 64"), "{text}");
    }
    // The request's own object, array and message object are three levels: a body may
    // nest 61 more, and one more is refused.
    assert_eq!(
        send_raw(&nested(62, "1")).code(),
        "10249001",
        "one level past the limit"
    );
    let at_limit = nested(61, "1");
    let stored = send_raw(&at_limit);
    assert_eq!(stored.status, StatusCode::CREATED, "{}", stored.json);
    let got = h.consume(&q, &g, "time_wait=1");
    let expected: Value = serde_json::from_str(&at_limit).unwrap();
    assert_eq!(bodies(&got.json), std::slice::from_ref(&expected));
    // Brackets inside strings do not count.
    let text_body = format!("\"{}\\\"{}\"", "[".repeat(200), "{".repeat(200));
    assert_eq!(send_raw(&text_body).status, StatusCode::CREATED);
    let got = h.consume(&q, &g, "time_wait=1");
    let text: String = serde_json::from_str(&text_body).unwrap();
    assert_eq!(bodies(&got.json), [Value::String(text)]);
    // A body another protocol stored, nested deeper than a send accepts, comes back as a
    // JSON string of its text, so the answer keeps within the limit; one at the limit
    // comes back as JSON.
    let foreign = |body: &str| sluice_core::engine::types::SendInput {
        body: body.as_bytes().to_vec(),
        attributes: Vec::new(),
        tags: Vec::new(),
        fifo_group: None,
        delay: sluice_core::engine::types::Delay::None,
        dedup_id: None,
    };
    let queue_id = sluice_http::dms::ids::queue_id_decode(&q).unwrap();
    let too_deep = nested(62, "1");
    block_on(h.node.send(queue_id, vec![foreign(&at_limit)])).unwrap();
    block_on(h.node.send(queue_id, vec![foreign(&too_deep)])).unwrap();
    let got = h.consume(&q, &g, "time_wait=1&max_msgs=10");
    let mut got = bodies(&got.json);
    got.sort_by_key(Value::is_string);
    assert_eq!(got, [expected, Value::String(too_deep)]);
}

#[test]
fn deeply_nested_json_is_refused_on_every_endpoint() {
    // Goal: the depth limit holds for every JSON body the DMS API reads (queue and group
    // creation, acks), not only message bodies. Method: a valid-looking body with one
    // field nested 100,000 deep on each endpoint.
    let h = Harness::new(1);
    let q = h.queue(json!({"name": "q"}));
    let g = h.group(&q, "g");
    let deep = nested(100_000, "");
    let cases = [
        (
            h.v1("/queues"),
            format!(r#"{{"name": "x", "extra": {deep}}}"#),
        ),
        (
            h.v1(&format!("/queues/{q}/groups")),
            format!(r#"{{"groups": [{{"name": "y"}}], "extra": {deep}}}"#),
        ),
        (
            h.v1(&format!("/queues/{q}/groups/{g}/ack")),
            format!(r#"{{"message": [{{"handler": "x", "status": "success", "extra": {deep}}}]}}"#),
        ),
    ];
    for (path, body) in cases {
        let answer = h.call_raw(
            Method::POST,
            &path,
            Some(body.as_bytes()),
            Some("application/json"),
        );
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(answer.code(), "10249001", "{path}");
    }
    let list = h.call(Method::GET, &h.v1("/queues"), None);
    assert_eq!(list.json["total"], 1, "no queue was created");
}

#[test]
fn deeply_nested_keystone_and_admin_bodies_are_refused() {
    // Goal: the service's own JSON bodies (the Keystone token request, the admin API)
    // obey the same depth limit, through `service::handle`. Method: 10,000 `[` (within the
    // Keystone body limit) in the body of each; each answers 400 with the invalid-parameter
    // code in the §5 envelope.
    let h = Harness::new(1);
    let config = sluice_http::service::ServiceConfig {
        dms: h.config,
        clock_skew_s_max: 900,
        token_ttl_s: 3600,
        token_key: [7; 32],
        admin_ak: "ADMINAK".to_string(),
        admin_sk: "admin-secret".to_string(),
        endpoint: "http://127.0.0.1:1".to_string(),
        region: "region-1".to_string(),
    };
    let deep = format!(r#"{{"auth": {}}}"#, "[".repeat(10_000));
    for (method, path) in [
        (Method::POST, "/v3/auth/tokens"),
        (Method::POST, "/admin/tenants"),
        (Method::PUT, "/admin/tenants/x/quotas"),
    ] {
        let (parts, ()) = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(())
            .unwrap()
            .into_parts();
        let response = block_on(sluice_http::service::handle(
            h.entry(),
            &config,
            &parts,
            deep.as_bytes(),
        ));
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let json: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(json["error_code"], "10249001", "{path}: {json}");
        assert_eq!(json["error"]["code"], "10249001", "{path}");
    }
}

#[test]
fn a_consume_answer_carries_at_most_512_kib_of_messages() {
    // Goal: §3.4/§4: one consume answer carries at most 512 KiB of messages (bodies and
    // attributes): a consume answers fewer messages rather than more bytes, never a cut
    // message, and nothing it does not answer is leased (the rest comes with the next
    // consume at once, not after ack_wait). Method: five messages of about 200 KiB on a
    // three-partition queue; consumes with max_msgs=10 get two, two and one, each body
    // whole.
    let h = Harness::new(3);
    let q = h.queue(json!({"name": "big"}));
    let g = h.group(&q, "g");
    let body = |i: usize| format!("{i}{}", "x".repeat(200 * 1024));
    for i in 0..5 {
        let sent = h.send(&q, json!([{"body": body(i), "attributes": {"n": i}}]));
        assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.json);
    }
    let mut seen = Vec::new();
    for expected in [2, 2, 1] {
        let got = h.consume(&q, &g, "max_msgs=10&time_wait=1&ack_wait=30");
        assert_eq!(got.status, StatusCode::OK);
        let list = got.json.as_array().unwrap();
        assert_eq!(list.len(), expected, "messages in one answer");
        let bytes: usize = list
            .iter()
            .map(|m| {
                let body = m["message"]["body"].to_string();
                let attributes = m["message"]["attributes"].to_string();
                body.len() + attributes.len()
            })
            .sum();
        assert!(bytes <= 512 * 1024, "{bytes} bytes of messages");
        for m in list {
            let text = m["message"]["body"].as_str().unwrap().to_string();
            let index: usize = text[..1].parse().unwrap();
            assert_eq!(text, body(index), "a whole body");
            assert_eq!(m["message"]["attributes"], json!({"n": index}));
            seen.push(index);
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2, 3, 4]);
    assert_eq!(h.consume(&q, &g, "time_wait=1").json, json!([]));
}

#[test]
fn a_consume_answers_one_message_larger_than_its_cap_alone() {
    // Goal: a message larger than the consume cap on its own (possible when the cap is
    // configured below the message limit, or for another protocol's message) is answered
    // alone rather than never, on the main lane and the dead letters. Method: a cap of
    // 1,000 bytes, messages of 600, 1,500 and 600 bytes sent in that order to a FIFO
    // queue on one partition.
    let mut h = Harness::new(1);
    h.config.consume_bytes_max = 1_000;
    let q = h.queue(
        json!({"name": "q", "queue_mode": "FIFO", "redrive_policy": "enable",
                          "max_consume_count": 1}),
    );
    let g = h.group(&q, "g");
    let text = |n: usize| "y".repeat(n - 2);
    let sent = h.send(
        &q,
        json!([{"body": text(600)}, {"body": text(1_500)}, {"body": text(600)}]),
    );
    assert_eq!(sent.status, StatusCode::CREATED);
    let mut handlers_all = Vec::new();
    for expected in [600, 1_500, 600] {
        let got = h.consume(&q, &g, "max_msgs=10&time_wait=1&ack_wait=30");
        let list = got.json.as_array().unwrap();
        assert_eq!(list.len(), 1, "{expected}");
        assert_eq!(list[0]["message"]["body"], json!(text(expected)));
        handlers_all.extend(handlers(&got.json));
        let acked = h.ack(&q, &g, acks(&handlers(&got.json), "fail"));
        assert_eq!(acked.json, json!({"success": 1, "fail": 0}));
    }
    let dead = h.v1(&format!(
        "/queues/{q}/groups/{g}/deadletters?max_msgs=10&time_wait=1"
    ));
    for expected in [600, 1_500, 600] {
        let got = h.call(Method::GET, &dead, None);
        let list = got.json.as_array().unwrap();
        assert_eq!(list.len(), 1, "dead letter {expected}");
        assert_eq!(list[0]["message"]["body"], json!(text(expected)));
    }
}

/// `POST /v2/{p}/queue/{q}/tags/action` with `action` and `tags`.
fn tag_action(h: &Harness, queue: &str, action: &str, tags: Value) -> dms_support::Answer {
    let path = h.v2(&format!("/queue/{queue}/tags/action"));
    h.call(
        Method::POST,
        &path,
        Some(json!({"action": action, "tags": tags})),
    )
}

fn queue_tags(h: &Harness, queue: &str) -> Value {
    let answer = h.call(Method::GET, &h.v2(&format!("/queue/{queue}/tags")), None);
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    answer.json
}

#[test]
fn queue_tags_are_added_listed_deleted_and_listed_by_project() {
    // Goal: the v2 queue-tag calls of §2 row 14 as huaweicloudsdkdms makes them: batch
    // create (a repeated key takes the new value) and delete through `tags/action` (204),
    // a queue's tags (`{"tags": [{"key", "value"}]}`), the project's tags by key with all
    // values (`{"tags": [{"key", "values"}]}`); the Sluice extensions: tags at queue
    // create, deleting one tag by key, listing the queues that carry a tag. Tags are
    // durable queue fields: they survive and do not disturb the description.
    let h = Harness::new(2);
    let a = h.queue(json!({"name": "a", "description": "first"}));
    let b = h.queue(json!({"name": "b", "tags": [{"key": "env", "value": "test"}]}));
    let c = h.queue(json!({"name": "c"}));
    assert_eq!(queue_tags(&h, &a), json!({"tags": []}));
    assert_eq!(
        queue_tags(&h, &b),
        json!({"tags": [{"key": "env", "value": "test"}]})
    );
    let created = tag_action(
        &h,
        &a,
        "create",
        json!([{"key": "env", "value": "prod"}, {"key": "team", "value": "billing"},
               {"key": "empty", "value": ""}]),
    );
    assert_eq!(created.status, StatusCode::NO_CONTENT, "{}", created.json);
    assert!(created.raw.is_empty());
    let changed = tag_action(&h, &a, "create", json!([{"key": "team", "value": "ops"}]));
    assert_eq!(changed.status, StatusCode::NO_CONTENT);
    assert_eq!(
        queue_tags(&h, &a),
        json!({"tags": [{"key": "empty", "value": ""}, {"key": "env", "value": "prod"},
                        {"key": "team", "value": "ops"}]})
    );
    let show = h.call(Method::GET, &h.v1(&format!("/queues/{a}")), None);
    assert_eq!(show.json["description"], "first");
    let project = h.call(Method::GET, &h.v2("/queue/tags"), None);
    assert_eq!(project.status, StatusCode::OK);
    assert_eq!(
        project.json,
        json!({"tags": [{"key": "empty", "values": [""]},
                        {"key": "env", "values": ["prod", "test"]},
                        {"key": "team", "values": ["ops"]}]})
    );
    // Queues by tag (extension): a key, or a key and a value.
    let names = |query: &str| -> Vec<String> {
        let list = h.call(Method::GET, &h.v2(&format!("/queues?{query}")), None);
        assert_eq!(list.status, StatusCode::OK, "{}", list.json);
        assert_eq!(
            list.json["total"],
            list.json["queues"].as_array().unwrap().len()
        );
        list.json["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("tag_key=env"), ["a", "b"]);
    assert_eq!(names("tag_key=env&tag_value=test"), ["b"]);
    assert_eq!(names("tag_key=none"), Vec::<String>::new());
    assert_eq!(names(""), ["a", "b", "c"]);
    // Delete: by key (a value, if given, must match); absent keys are no error.
    let deleted = tag_action(
        &h,
        &a,
        "delete",
        json!([{"key": "env"}, {"key": "absent"}, {"key": "team", "value": "other"}]),
    );
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.json);
    assert_eq!(
        queue_tags(&h, &a),
        json!({"tags": [{"key": "empty", "value": ""}, {"key": "team", "value": "ops"}]})
    );
    let one = h.call(
        Method::DELETE,
        &h.v2(&format!("/queue/{a}/tags/team")),
        None,
    );
    assert_eq!(one.status, StatusCode::NO_CONTENT, "{}", one.json);
    assert_eq!(
        queue_tags(&h, &a),
        json!({"tags": [{"key": "empty", "value": ""}]})
    );
    let encoded = tag_action(&h, &c, "create", json!([{"key": "a b", "value": "x"}]));
    assert_eq!(encoded.status, StatusCode::NO_CONTENT);
    let path = h.v2(&format!("/queue/{c}/tags/a%20b"));
    assert_eq!(h.call(Method::DELETE, &path, None).status, 204);
    assert_eq!(queue_tags(&h, &c), json!({"tags": []}));
    // The tag calls are /v2 only, and another tenant's queue is unknown.
    let v1 = h.call(Method::GET, &h.v1(&format!("/queue/{a}/tags")), None);
    assert_eq!((v1.status.as_u16(), v1.code()), (404, "10249040"));
    let other = h.call_as(
        &h.other,
        Method::GET,
        &format!("/v2/{}/queue/{a}/tags", h.other.project_id),
        None,
    );
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(
        h.call(Method::PUT, &h.v2(&format!("/queue/{a}/tags")), None)
            .code(),
        "10249050"
    );
}

#[test]
fn queue_tag_rules_answer_the_invalid_tag_code() {
    // Goal: keys of 1-36 and values of 0-43 characters without `=*<>\,|/` or control
    // characters, at most 20 tags a queue and a request, unique keys in a request: each
    // rule answers 400 with 10240004 (invalid tag) and changes nothing; a malformed body
    // answers 10249001. Method: one refused request per rule on a queue with one tag.
    let h = Harness::new(1);
    let q = h.queue(json!({"name": "q"}));
    tag_action(&h, &q, "create", json!([{"key": "keep", "value": "v"}]));
    let refused = |action: &str, tags: Value| {
        let answer = tag_action(&h, &q, action, tags);
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.json);
        answer.code().to_string()
    };
    let tag = |key: &str, value: &str| json!([{"key": key, "value": value}]);
    assert_eq!(refused("create", tag("", "v")), "10240004");
    assert_eq!(refused("create", tag(&"k".repeat(37), "v")), "10240004");
    assert_eq!(refused("create", tag("k", &"v".repeat(44))), "10240004");
    for bad in ["=", "*", "<", ">", "\\", ",", "|", "/", "\u{1}"] {
        assert_eq!(
            refused("create", tag(&format!("k{bad}"), "v")),
            "10240004",
            "{bad}"
        );
        assert_eq!(
            refused("create", tag("k", &format!("v{bad}"))),
            "10240004",
            "{bad}"
        );
    }
    assert_eq!(
        refused("create", json!([{"key": "k"}])),
        "10240004",
        "no value"
    );
    assert_eq!(
        refused(
            "create",
            json!([{"key": "k", "value": "1"}, {"key": "k", "value": "2"}])
        ),
        "10240004"
    );
    let many = |count: usize, prefix: &str| -> Value {
        (0..count)
            .map(|i| json!({"key": format!("{prefix}{i}"), "value": "v"}))
            .collect()
    };
    assert_eq!(refused("create", many(21, "k")), "10240004", "per request");
    // 19 more make 20 with `keep`; one more than that is refused.
    let full = tag_action(&h, &q, "create", many(19, "k"));
    assert_eq!(full.status, StatusCode::NO_CONTENT, "{}", full.json);
    assert_eq!(
        refused("create", tag("one-more", "v")),
        "10240004",
        "per queue"
    );
    let replaced = tag_action(&h, &q, "create", tag("keep", "new"));
    assert_eq!(
        replaced.status,
        StatusCode::NO_CONTENT,
        "a new value is no new tag"
    );
    assert_eq!(
        refused("delete", json!([{"value": "v"}])),
        "10240004",
        "no key"
    );
    assert_eq!(refused("create", json!([])), "10249001");
    assert_eq!(refused("create", json!("x")), "10249001");
    assert_eq!(refused("Create", tag("k", "v")), "10249001");
    assert_eq!(
        refused("create", json!([{"key": 1, "value": "v"}])),
        "10240004"
    );
    let tags = queue_tags(&h, &q);
    assert_eq!(tags["tags"].as_array().unwrap().len(), 20);
    assert_eq!(tags["tags"][0], json!({"key": "k0", "value": "v"}));
    let create = h.call(
        Method::POST,
        &h.v2("/queues"),
        Some(json!({"name": "z", "tags": [{"key": "a/b", "value": "v"}]})),
    );
    assert_eq!((create.status.as_u16(), create.code()), (400, "10240004"));
    let filter = h.call(Method::GET, &h.v2("/queues?tag_key=a%3Db"), None);
    assert_eq!(filter.code(), "10240004");
}

/// An SQS request of `h`'s tenant, past the signature check; its status and JSON answer.
fn sqs_call(h: &Harness, action: &str, body: Value) -> (StatusCode, Value) {
    let config = sluice_http::service::ServiceConfig {
        dms: h.config,
        clock_skew_s_max: 900,
        token_ttl_s: 3600,
        token_key: [7; 32],
        admin_ak: "ADMIN".to_string(),
        admin_sk: "admin-secret".to_string(),
        endpoint: "http://sqs.test".to_string(),
        region: "region-1".to_string(),
    };
    let body = serde_json::to_vec(&body).unwrap();
    let response = block_on(sluice_http::sqs::handle_authenticated(
        h.entry(),
        &config,
        &h.tenant.project_id,
        action,
        &body,
    ));
    let json = serde_json::from_slice(response.body()).unwrap();
    (response.status(), json)
}

#[test]
fn the_dms_and_sqs_apis_share_one_set_of_queue_tags() {
    // Goal: a queue's tags are the same through both APIs, by the same rules, and each
    // API's changes keep what the other keeps in the queue's fields. Method: tags set
    // through DMS listed through SQS, changed through SQS and listed through DMS; a key
    // DMS refuses refused by SQS too; a purge's time (SQS) kept by a DMS tag change.
    let h = Harness::new(2);
    let id = h.queue(json!({"name": "shared", "tags": [{"key": "env", "value": "test"}]}));
    let url = format!("http://sqs.test/{}/shared", h.tenant.project_id);
    let (status, listed) = sqs_call(&h, "ListQueueTags", json!({"QueueUrl": url}));
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed, json!({"Tags": {"env": "test"}}));
    let (status, answer) = sqs_call(
        &h,
        "TagQueue",
        json!({"QueueUrl": url, "Tags": {"team": "ops", "env": "prod"}}),
    );
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        queue_tags(&h, &id),
        json!({"tags": [{"key": "env", "value": "prod"}, {"key": "team", "value": "ops"}]})
    );
    let (status, refused) = sqs_call(
        &h,
        "TagQueue",
        json!({"QueueUrl": url, "Tags": {"a|b": "v"}}),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refused["__type"], "com.amazonaws.sqs#InvalidParameterValue");
    let dms_refused = tag_action(&h, &id, "create", json!([{"key": "a|b", "value": "v"}]));
    assert_eq!(dms_refused.code(), "10240004");

    let (status, answer) = sqs_call(&h, "PurgeQueue", json!({"QueueUrl": url}));
    assert_eq!(status, StatusCode::OK, "{answer}");
    let deleted = tag_action(&h, &id, "delete", json!([{"key": "team"}]));
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.json);
    let (status, again) = sqs_call(&h, "PurgeQueue", json!({"QueueUrl": url}));
    assert_eq!(status, StatusCode::FORBIDDEN, "{again}");
    assert_eq!(again["__type"], "com.amazonaws.sqs#PurgeQueueInProgress");
    h.advance(60_000);
    let (status, answer) = sqs_call(&h, "PurgeQueue", json!({"QueueUrl": url}));
    assert_eq!(status, StatusCode::OK, "a purge 60 s later: {answer}");
    let (_, listed) = sqs_call(&h, "ListQueueTags", json!({"QueueUrl": url}));
    assert_eq!(listed, json!({"Tags": {"env": "prod"}}));
}
