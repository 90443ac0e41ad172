//! The node layer over [`LocalNode`]: routing, forwarding between shards, long polls,
//! ack runs, quotas, metadata changes and their repair. No sleeps: the test clock's sleep
//! advances it at once.

use std::cell::Cell;
use std::rc::Rc;

use sluice_core::engine::types::{
    AckKind, AckOutcome, Delay, Delivery, EngineError, FifoScope, GroupId, GroupStart, HandleError,
    QueueConfig, QueueId, QueueMode, ReceiptHandle, RetryPolicy, SendInput,
};
use sluice_core::engine::{Engine, EngineConfig, EngineLimits, ReceiveRequest};
use sluice_core::sim_disk::{block_on, CrashMode, SimDisk};
use sluice_core::storage::{IoErrorKind, IoOp};

use crate::local::{LocalNode, StepClock};
use crate::routing::{partition_for_send, Routed};
use crate::tenants::{Quotas, TenantError};
use crate::{Lane, Node, NodeError};

const START_MS: u64 = 1_000;

type TestNode = LocalNode<SimDisk, StepClock>;

/// The engine configuration of the node layer's tests (also `snapshot_transfer`'s).
pub(crate) fn engine_config(limits: EngineLimits) -> EngineConfig {
    crate::local::test_engine_config(limits)
}

/// A node of `shards` shards over engines opened on `disks`, each with its limits.
fn node_over(disks: &[SimDisk], limits: &[EngineLimits], shards: usize) -> TestNode {
    let engines = disks
        .iter()
        .zip(limits)
        .map(|(disk, limits)| {
            block_on(Engine::open(disk.clone(), engine_config(*limits), START_MS)).unwrap()
        })
        .collect();
    LocalNode::new(engines, StepClock(Rc::new(Cell::new(START_MS))), 7, shards)
}

/// DMS limits, but receives and batches of up to 64.
fn wide() -> EngineLimits {
    EngineLimits {
        receive_messages_max: 64,
        batch_messages_max: 64,
        ..EngineLimits::dms()
    }
}

fn check_node(partitions: u16, shards: usize) -> TestNode {
    let disks: Vec<SimDisk> = (0..partitions)
        .map(|p| SimDisk::new(u64::from(p)))
        .collect();
    node_over(&disks, &vec![wide(); disks.len()], shards)
}

/// A node with a tenant "t" (default quotas), its project id.
fn with_tenant(node: &TestNode) -> String {
    block_on(node.create_tenant("t", None)).unwrap().project_id
}

/// A queue as a partition holds it: id, name, groups.
type Held = (QueueId, String, Vec<(GroupId, String)>);

/// Every partition's queues as (id, name, groups), by id, checked to be alike.
fn agreed_queues(node: &TestNode) -> Vec<Held> {
    let held = |partition: u32| {
        let engine = node.engine(partition).unwrap();
        engine
            .queue_ids()
            .into_iter()
            .map(|queue| {
                let info = engine.queue_info(queue).unwrap();
                (info.id, info.name, info.groups)
            })
            .collect::<Vec<_>>()
    };
    for partition in 1..node.partition_count() {
        assert_eq!(held(partition), held(0), "partition {partition}");
    }
    held(0)
}

fn config(mode: QueueMode) -> QueueConfig {
    QueueConfig {
        mode,
        retention_ms: 3_600_000,
        max_consume_count: None,
        retry: RetryPolicy::Immediate,
        dedup_window_ms: 300_000,
        partitions: 0,
    }
}

pub(crate) fn normal() -> QueueConfig {
    config(QueueMode::Normal)
}

fn message(body: &str) -> SendInput {
    SendInput {
        body: body.as_bytes().to_vec(),
        attributes: Vec::new(),
        tags: Vec::new(),
        fifo_group: None,
        delay: Delay::None,
        dedup_id: None,
    }
}

fn receive_request(max: u32) -> ReceiveRequest {
    ReceiveRequest {
        attempt: None,
        max_messages: max,
        bytes_max: u64::MAX,
        oversize_first: true,
        visibility_ms: 30_000,
        filter: None,
    }
}

fn route(delivery: &Routed<Delivery>) -> Routed<ReceiptHandle> {
    Routed {
        partition: delivery.partition,
        item: delivery.item.handle,
    }
}

fn ack_all(got: &[Routed<Delivery>]) -> Vec<(Routed<ReceiptHandle>, AckKind)> {
    got.iter().map(|d| (route(d), AckKind::Success)).collect()
}

/// A queue with one group "g" for tenant `t`.
fn queue_with_group(node: &TestNode, tenant: &str, config: QueueConfig) -> (QueueId, GroupId) {
    let queue = block_on(node.create_queue(tenant, "q", config, Vec::new())).unwrap();
    let group = block_on(node.create_groups(queue, &["g".to_string()])).unwrap()[0];
    (queue, group)
}

#[test]
fn tenants_get_distinct_credentials_password_hashes_and_settable_quotas() {
    // Goal: credentials have the documented shapes, a password is kept as an argon2id
    // hash that verifies, and quotas can be changed and are enforced.
    let node = check_node(1, 1);
    let a = block_on(node.create_tenant("alpha", Some("s3cret"))).unwrap();
    let b = block_on(node.create_tenant("beta", None)).unwrap();
    assert_ne!(a.project_id, b.project_id);
    assert_eq!(a.project_id.len(), 32);
    assert!(a
        .project_id
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(a.ak.len(), 20);
    assert_eq!(a.sk.len(), 40);
    let hash = a.password_hash.as_deref().expect("a password hash");
    assert!(crate::password::verify_password("s3cret", hash));
    assert!(b.password_hash.is_none());
    assert_eq!(
        block_on(node.create_tenant("alpha", None)),
        Err(TenantError::Exists)
    );
    let quotas = Quotas {
        queues_max: 1,
        groups_per_queue_max: 3,
    };
    let updated = block_on(node.set_tenant_quotas(&a.project_id, quotas)).unwrap();
    assert_eq!(updated.quotas, quotas);
    assert_eq!(
        node.tenants().by_project(&a.project_id).unwrap().quotas,
        quotas
    );
    block_on(node.create_queue(&a.project_id, "q1", normal(), Vec::new())).unwrap();
    let over = block_on(node.create_queue(&a.project_id, "q2", normal(), Vec::new()));
    assert_eq!(
        over,
        Err(NodeError::Engine(EngineError::TooManyQueues { limit: 1 }))
    );
    block_on(node.delete_tenant(&a.project_id)).unwrap();
    assert!(node.queues_of(&a.project_id).is_empty());
    assert_eq!(
        block_on(node.set_tenant_quotas(&a.project_id, quotas)),
        Err(TenantError::NotFound)
    );
}

#[test]
fn the_group_limit_is_the_lower_of_quota_and_engine_limit() {
    // Goal: a quota above the engines' group limit does not let a request through that
    // the engines would refuse part-way. Method: engines allow 2 groups, the quota 8.
    let limits = EngineLimits {
        groups_per_queue_max: 2,
        ..EngineLimits::dms()
    };
    let disks = [SimDisk::new(0), SimDisk::new(1)];
    let node = node_over(&disks, &[limits; 2], 2);
    let tenant = with_tenant(&node);
    let quotas = Quotas {
        queues_max: 30,
        groups_per_queue_max: 8,
    };
    block_on(node.set_tenant_quotas(&tenant, quotas)).unwrap();
    let queue = block_on(node.create_queue(&tenant, "q", normal(), Vec::new())).unwrap();
    let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    assert_eq!(
        block_on(node.create_groups(queue, &names)),
        Err(NodeError::Engine(EngineError::TooManyGroups { limit: 2 }))
    );
    assert!(!node.needs_repair(), "refused before any partition changed");
    assert!(agreed_queues(&node)[0].2.is_empty());
}

#[test]
fn group_creation_is_all_or_nothing() {
    // Goal: a request that would pass the group limit or repeats a name creates none.
    let node = check_node(2, 2);
    let tenant = with_tenant(&node);
    let queue = block_on(node.create_queue(&tenant, "q", normal(), Vec::new())).unwrap();
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    block_on(node.create_groups(queue, &names(&["a", "b"]))).unwrap();
    let over = block_on(node.create_groups(queue, &names(&["c", "d"])));
    assert_eq!(
        over,
        Err(NodeError::Engine(EngineError::TooManyGroups { limit: 3 }))
    );
    let repeated = block_on(node.create_groups(queue, &names(&["b"])));
    assert_eq!(repeated, Err(NodeError::Engine(EngineError::GroupExists)));
    let twice = block_on(node.create_groups(queue, &names(&["e", "e"])));
    assert_eq!(twice, Err(NodeError::Engine(EngineError::GroupExists)));
    assert_eq!(node.queue(&tenant, queue).unwrap().groups.len(), 2);
    assert!(node.queue("someone-else", queue).is_none());
}

#[test]
fn a_group_create_refused_part_way_leaves_no_group_behind() {
    // Goal: all or nothing even when a later partition refuses: a request for two groups
    // that partition 1 refuses at the second leaves neither, on any partition. Method:
    // partition 1's engine allows one group per queue, partition 0's three.
    let disks = [SimDisk::new(0), SimDisk::new(1)];
    let tight = EngineLimits {
        groups_per_queue_max: 1,
        ..EngineLimits::dms()
    };
    let node = node_over(&disks, &[EngineLimits::dms(), tight], 1);
    block_on(node.reconcile()).unwrap();
    let tenant = with_tenant(&node);
    let q = block_on(node.create_queue(&tenant, "q", normal(), Vec::new())).unwrap();
    let names = ["a".to_string(), "b".to_string()];
    let refused = block_on(node.create_groups(q, &names));
    assert_eq!(
        refused,
        Err(NodeError::Engine(EngineError::TooManyGroups { limit: 1 }))
    );
    assert!(node.needs_repair(), "the change went part-way");
    assert!(node.queue(&tenant, q).unwrap().groups.is_empty());
    block_on(node.create_queue(&tenant, "r", normal(), Vec::new())).unwrap();
    assert!(!node.needs_repair());
    let queues = agreed_queues(&node);
    assert_eq!(queues.len(), 2);
    assert!(queues[0].2.is_empty(), "no group left: {:?}", queues[0].2);
}

#[test]
fn long_polls_wait_out_the_clock_capped_and_acks_stop_at_the_first_invalid_handle() {
    // Goal: an empty receive waits exactly wait_ms of clock time, at most the node's
    // cap; an ack batch stops at the first bad handle, across partitions and shards.
    let node = check_node(3, 2);
    let tenant = with_tenant(&node);
    let (queue, group) = queue_with_group(&node, &tenant, normal());
    let start = node.now_ms();
    let empty =
        block_on(node.receive(queue, group, Lane::Main, receive_request(10), 5_000)).unwrap();
    assert!(empty.is_empty());
    assert_eq!(node.now_ms(), start + 5_000);
    let cap = node.config().wait_ms_max;
    block_on(node.receive(queue, group, Lane::Main, receive_request(10), 10 * cap)).unwrap();
    assert_eq!(node.now_ms(), start + 5_000 + cap, "capped");
    for body in ["1", "2", "3"] {
        block_on(node.shard(1).send(queue, vec![message(body)])).unwrap();
    }
    let got = block_on(node.receive(queue, group, Lane::Main, receive_request(10), 0)).unwrap();
    assert_eq!(got.len(), 3);
    let mut bogus = got[1].clone();
    bogus.item.handle.nonce ^= 1;
    let acks = vec![
        (route(&got[0]), AckKind::Success),
        (route(&bogus), AckKind::Success),
        (route(&got[2]), AckKind::Success),
    ];
    let results = block_on(node.shard(1).ack(Lane::Main, acks)).unwrap();
    assert_eq!(results[0], Ok(AckOutcome::Applied));
    assert!(results[1].is_err());
    assert_eq!(results[2], Err(HandleError::Stale));
    let counts = block_on(node.queue_counts(queue)).unwrap();
    assert_eq!(counts.sent_total, 3);
    assert_eq!(counts.groups[0].1.acked_total, 1);
}

#[test]
fn a_long_poll_wakes_when_a_message_arrives_on_another_shard() {
    // Goal: a waiting receive returns the message sent meanwhile through another shard,
    // long before its deadline. Method: poll the two futures together; the clock only
    // moves when the poll sleeps, so the send lands while it waits.
    let node = check_node(2, 2);
    let tenant = with_tenant(&node);
    let (queue, group) = queue_with_group(&node, &tenant, normal());
    let start = node.now_ms();
    let poll = node
        .shard(0)
        .receive(queue, group, Lane::Main, receive_request(1), 60_000);
    let send = async {
        node.shard(1)
            .send(queue, vec![message("late")])
            .await
            .unwrap();
        std::future::pending::<()>().await;
    };
    let got = block_on(futures_lite::future::or(poll, async {
        send.await;
        unreachable!("the send never ends")
    }))
    .unwrap();
    assert_eq!(got.len(), 1);
    assert!(node.now_ms() - start < 60_000, "woken before the deadline");
}

#[test]
fn acks_of_the_wrong_lane_are_refused_and_long_runs_are_split() {
    // Goal: a dead-letter handle on the main lane is Unknown (no panic) and stops the
    // rest; a run longer than the engine's batch limit is acked in several calls.
    let limits = EngineLimits {
        batch_messages_max: 4,
        receive_messages_max: 64,
        ..EngineLimits::dms()
    };
    let disks = [SimDisk::new(0)];
    let node = node_over(&disks, &[limits], 1);
    let tenant = with_tenant(&node);
    let (queue, group) = queue_with_group(&node, &tenant, normal());
    for i in 0..3 {
        let batch = (0..4).map(|j| message(&format!("{i}-{j}"))).collect();
        block_on(node.send(queue, batch)).unwrap();
    }
    let got = block_on(node.receive(queue, group, Lane::Main, receive_request(64), 0)).unwrap();
    assert_eq!(got.len(), 12);
    let mut acks = ack_all(&got[..2]);
    let mut wrong = route(&got[2]);
    wrong.item.dead_letter = true;
    acks.push((wrong, AckKind::Success));
    acks.extend(ack_all(&got[3..4]));
    let results = block_on(node.ack(Lane::Main, acks)).unwrap();
    assert_eq!(
        results,
        [
            Ok(AckOutcome::Applied),
            Ok(AckOutcome::Applied),
            Err(HandleError::Unknown),
            Err(HandleError::Stale)
        ]
    );
    let results = block_on(node.ack(Lane::Main, ack_all(&got[2..]))).unwrap();
    assert_eq!(results.len(), 10, "three calls of at most 4");
    assert!(results.iter().all(|r| *r == Ok(AckOutcome::Applied)));
    let dead = ack_all(&got[..1]);
    let results = block_on(node.ack(Lane::DeadLetters, dead)).unwrap();
    assert_eq!(results, [Err(HandleError::Unknown)]);
}

#[test]
fn normal_sends_stay_on_the_entry_shards_partitions_and_receives_drain_all() {
    // Goal: with two shards, a plain NORMAL send entering at a shard is stored on that
    // shard's partitions (no hop), alternating; a receive at either shard drains all.
    let node = check_node(4, 2);
    let tenant = with_tenant(&node);
    let (queue, group) = queue_with_group(&node, &tenant, normal());
    let mut used = [0u32; 4];
    for shard in 0..2 {
        for i in 0..8 {
            let sent = block_on(
                node.shard(shard)
                    .send(queue, vec![message(&format!("m{i}"))]),
            )
            .unwrap();
            let partition = u32::from(sent[0].partition);
            assert!(node.shard(shard).owns(partition));
            used[usize::try_from(partition).unwrap()] += 1;
        }
    }
    assert_eq!(used, [4, 4, 4, 4], "rotating over the owned partitions");
    let got = block_on(
        node.shard(1)
            .receive(queue, group, Lane::Main, receive_request(64), 0),
    )
    .unwrap();
    assert_eq!(got.len(), 16);
    let results = block_on(node.shard(0).ack(Lane::Main, ack_all(&got))).unwrap();
    assert!(results.iter().all(|r| *r == Ok(AckOutcome::Applied)));
    let again = block_on(node.receive(queue, group, Lane::Main, receive_request(64), 0)).unwrap();
    assert!(again.is_empty());
}

#[test]
fn a_queue_of_two_partitions_on_a_node_of_four_uses_only_its_own_after_a_restart_too() {
    // Goal: a Kafka topic created with 2 partitions on a node of 4: sends through any
    // shard, dedup ids and FIFO groups land on partitions 0 and 1 only, receives drain
    // them, the partitions it lacks refuse position sends and reads, and the count
    // survives a restart (it is part of the queue's durable config).
    let disks: Vec<SimDisk> = (0..4).map(SimDisk::new).collect();
    let node = started_over(&disks, 2);
    let tenant = with_tenant(&node);
    let two = QueueConfig {
        partitions: 2,
        ..normal()
    };
    let (queue, group) = queue_with_group(&node, &tenant, two);
    let mut sent = 0;
    for shard in 0..2 {
        for i in 0..6 {
            let mut keyed = message(&format!("k{shard}.{i}"));
            keyed.dedup_id = Some(format!("d{shard}.{i}"));
            let batch = vec![message(&format!("m{shard}.{i}")), keyed];
            for routed in block_on(node.shard(shard).send(queue, batch)).unwrap() {
                assert!(
                    routed.partition < 2,
                    "stored on partition {}",
                    routed.partition
                );
                sent += 1;
            }
        }
    }
    for partition in 2..4 {
        let info = node.engine(partition).unwrap().queue_info(queue).unwrap();
        assert_eq!(info.sent_total, 0, "partition {partition} holds none of it");
    }
    let check_outside = |node: &TestNode| {
        let refused = block_on(node.send_to(queue, 2, vec![message("x")], None));
        assert_eq!(
            refused.unwrap_err(),
            NodeError::Engine(EngineError::QueueNotFound)
        );
        let refused = block_on(node.positions(queue, 3, None));
        assert_eq!(
            refused.unwrap_err(),
            NodeError::Engine(EngineError::QueueNotFound)
        );
        let read = crate::PositionRead {
            queue,
            partition: 3,
            from: 0,
            bytes_max: 1 << 20,
        };
        let answers = block_on(node.read_positions(vec![read], 1 << 20, 0, 0)).unwrap();
        assert_eq!(
            answers[0].as_ref().unwrap_err(),
            &NodeError::Engine(EngineError::QueueNotFound)
        );
    };
    check_outside(&node);
    assert!(block_on(node.send_to(queue, 1, vec![message("p1")], None)).is_ok());
    sent += 1;
    drop(node);
    let node = started_over(&disks, 2);
    let view = node.queue(&tenant, queue).unwrap();
    assert_eq!(view.config.partitions, 2, "the count outlives a restart");
    check_outside(&node);
    let got = block_on(node.receive(queue, group, Lane::Main, receive_request(64), 0)).unwrap();
    assert_eq!(got.len(), sent);
    assert!(got.iter().all(|d| d.partition < 2));
}

#[test]
fn visibility_changes_reach_the_owning_shard_and_zero_makes_a_message_due_at_once() {
    let node = check_node(2, 2);
    let tenant = with_tenant(&node);
    let (queue, group) = queue_with_group(&node, &tenant, normal());
    block_on(node.send(queue, vec![message("m")])).unwrap();
    let got = block_on(node.receive(queue, group, Lane::Main, receive_request(1), 0)).unwrap();
    assert_eq!(got.len(), 1);
    let handle = route(&got[0]);
    // Through the shard that does not own the partition (a hop), and through the owner.
    for shard in 0..2 {
        let extended = block_on(node.shard(shard).change_visibility(handle.clone(), 60_000));
        assert_eq!(extended, Ok(Ok(())));
    }
    let hidden = block_on(node.receive(queue, group, Lane::Main, receive_request(1), 0)).unwrap();
    assert!(hidden.is_empty(), "still in flight");
    assert_eq!(
        block_on(node.change_visibility(handle.clone(), 0)),
        Ok(Ok(()))
    );
    // Due now: the next tick ends the lease (the server ticks on its own).
    block_on(node.tick(node.runtime().0.get())).unwrap();
    let again = block_on(node.receive(queue, group, Lane::Main, receive_request(1), 0)).unwrap();
    assert_eq!(again.len(), 1, "visible at once");
    assert_eq!(again[0].item.delivery_count, 2);
    // The old delivery is over; a partition the node lacks names nothing.
    assert_eq!(
        block_on(node.change_visibility(handle.clone(), 1_000)),
        Ok(Err(HandleError::Stale))
    );
    let elsewhere = Routed {
        partition: 9,
        item: handle.item,
    };
    assert_eq!(
        block_on(node.change_visibility(elsewhere, 1_000)),
        Ok(Err(HandleError::Unknown))
    );
}

#[test]
fn a_retried_send_with_a_dedup_id_is_stored_once_whichever_shard_it_enters() {
    // Goal: dedup holds for a partitioned NORMAL queue: the id decides the partition, so
    // a retry entering at another shard meets the original.
    let node = check_node(4, 2);
    let tenant = with_tenant(&node);
    let (queue, group) = queue_with_group(&node, &tenant, normal());
    let retry = SendInput {
        dedup_id: Some("order-4711".into()),
        ..message("once")
    };
    let first = block_on(node.send(queue, vec![retry.clone()])).unwrap();
    for attempt in 0..8 {
        let again = block_on(node.shard(attempt % 2).send(queue, vec![retry.clone()])).unwrap();
        assert!(again[0].item.duplicate);
        assert_eq!(again[0].item.message_id, first[0].item.message_id);
        assert_eq!(again[0].partition, first[0].partition);
    }
    let got = block_on(node.receive(queue, group, Lane::Main, receive_request(64), 0)).unwrap();
    assert_eq!(got.len(), 1, "stored once");
}

#[test]
fn fifo_message_groups_stay_in_one_partition_in_order() {
    let node = check_node(3, 2);
    let tenant = with_tenant(&node);
    let mode = QueueMode::Fifo(FifoScope::MessageGroup);
    let (queue, group) = queue_with_group(&node, &tenant, config(mode));
    let groups = ["a", "b", "c", "d", "e"];
    let batch: Vec<SendInput> = (0..25)
        .map(|i| SendInput {
            fifo_group: Some(groups[i % 5].to_string()),
            ..message(&format!("{}{}", groups[i % 5], i / 5))
        })
        .collect();
    let sent = block_on(node.shard(1).send(queue, batch.clone())).unwrap();
    for (i, outcome) in sent.iter().enumerate() {
        let expected = partition_for_send(mode, 3, &[], &batch[i], 0);
        assert_eq!(u32::from(outcome.partition), expected, "message {i}");
    }
    // Drain with acks: each group's messages arrive in send order.
    let mut seen: Vec<String> = Vec::new();
    for round in 0..50 {
        let shard = node.shard(round % 2);
        let got =
            block_on(shard.receive(queue, group, Lane::Main, receive_request(64), 0)).unwrap();
        seen.extend(
            got.iter()
                .map(|d| String::from_utf8(d.item.body.to_vec()).unwrap()),
        );
        block_on(shard.ack(Lane::Main, ack_all(&got))).unwrap();
    }
    assert_eq!(seen.len(), 25);
    for name in groups {
        let order: Vec<&String> = seen.iter().filter(|b| b.starts_with(name)).collect();
        let expected: Vec<String> = (0..5).map(|i| format!("{name}{i}")).collect();
        assert_eq!(order, expected.iter().collect::<Vec<_>>(), "group {name}");
    }
}

#[test]
fn whole_queue_fifo_lives_in_partition_zero() {
    let node = check_node(4, 2);
    let tenant = with_tenant(&node);
    let (queue, _) = queue_with_group(&node, &tenant, config(QueueMode::Fifo(FifoScope::Queue)));
    for shard in 0..2 {
        let sent = block_on(node.shard(shard).send(queue, vec![message("m")])).unwrap();
        assert_eq!(sent[0].partition, 0);
    }
}

#[test]
fn cancels_and_counts_reach_every_partition_through_any_shard() {
    // Goal: a cancel entering at a shard that does not own the message's partition is
    // forwarded; counts sum every partition; an id naming no partition is NotScheduled.
    let node = check_node(2, 2);
    let tenant = with_tenant(&node);
    let (queue, _) = queue_with_group(&node, &tenant, normal());
    let delayed = SendInput {
        delay: Delay::Ms(60_000),
        ..message("later")
    };
    let sent = block_on(node.shard(1).send(queue, vec![delayed])).unwrap();
    assert_eq!(sent[0].partition, 1, "shard 1 owns partition 1");
    let id = sent[0].item.message_id;
    block_on(node.shard(0).cancel(queue, 1, id)).unwrap();
    assert_eq!(
        block_on(node.shard(0).cancel(queue, 1, id)),
        Err(NodeError::Engine(EngineError::NotScheduled))
    );
    assert_eq!(
        block_on(node.cancel(queue, 9, id)),
        Err(NodeError::Engine(EngineError::NotScheduled))
    );
    block_on(node.shard(0).send(queue, vec![message("now")])).unwrap();
    let counts = block_on(node.shard(1).queue_counts(queue)).unwrap();
    assert_eq!(counts.sent_total, 2);
}

#[test]
fn transactions_end_and_checks_are_taken_through_any_shard() {
    // Goal: a half message sent through one shard is committed through another (the
    // request forwarded to its partition), another's check is taken through any shard
    // with its body, and an ended transaction or a partition the node lacks is
    // NotScheduled.
    let node = check_node(2, 2);
    let tenant = with_tenant(&node);
    let (queue, group) = queue_with_group(&node, &tenant, normal());
    let half = |body: &str| SendInput {
        delay: Delay::Half {
            check_after_ms: 1_000,
        },
        ..message(body)
    };
    let sent = block_on(
        node.shard(1)
            .send(queue, vec![half("commit me"), half("ask me")]),
    )
    .unwrap();
    let (partition, commit_id) = (sent[0].partition, sent[0].item.message_id);
    let asked = (sent[1].partition, sent[1].item.message_id);
    let other = 1 - usize::from(partition);
    block_on(
        node.shard(other)
            .end_transaction(queue, partition, commit_id, true),
    )
    .unwrap();
    assert_eq!(
        block_on(
            node.shard(other)
                .end_transaction(queue, partition, commit_id, false)
        ),
        Err(NodeError::Engine(EngineError::NotScheduled))
    );
    assert_eq!(
        block_on(node.end_transaction(queue, 9, commit_id, true)),
        Err(NodeError::Engine(EngineError::NotScheduled))
    );
    let got = block_on(
        node.shard(0)
            .receive(queue, group, Lane::Main, receive_request(10), 0),
    )
    .unwrap();
    assert_eq!(got.len(), 1, "only the committed message is available");
    let clock = &node.runtime().0;
    clock.set(clock.get() + 1_000);
    block_on(node.tick(clock.get())).unwrap();
    let checks = block_on(node.shard(other).take_transaction_checks(
        u32::from(asked.0),
        vec![queue],
        10,
    ))
    .unwrap();
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].check.message, asked.1);
    assert_eq!(&checks[0].body[..], b"ask me");
}

#[test]
fn the_first_change_repairs_engines_left_apart_by_a_crash() {
    // Goal: a node built over engines that a crash left apart (partition 0 holds a
    // queue and group the others lack) repairs them before its first change. Method:
    // create on partition 0's engine directly, then build the node and create.
    let disks = [SimDisk::new(0), SimDisk::new(1), SimDisk::new(2)];
    let engine = block_on(Engine::open(
        disks[0].clone(),
        engine_config(EngineLimits::dms()),
        START_MS,
    ))
    .unwrap();
    let a = block_on(engine.create_queue("t", "a", normal(), START_MS)).unwrap();
    let g = block_on(engine.create_group(a, "g", GroupStart::Oldest, START_MS)).unwrap();
    drop(engine);
    let node = node_over(&disks, &[EngineLimits::dms(); 3], 2);
    assert!(node.needs_repair());
    let tenant = with_tenant(&node);
    let b = block_on(node.create_queue(&tenant, "b", normal(), Vec::new())).unwrap();
    assert!(!node.needs_repair());
    let queues = agreed_queues(&node);
    assert_eq!(queues.len(), 2);
    assert_eq!(queues[0], (a, "a".to_string(), vec![(g, "g".to_string())]));
    assert_eq!(queues[1].0, b);
}

#[test]
fn a_storage_fault_part_way_refuses_changes_until_a_reboot_repairs() {
    // Goal: after a create fails on partition 1 with fsync EIO, the partition is out of
    // service and the next change is refused, changing nothing; a new node over the
    // reopened engines repairs at boot.
    let disks = [SimDisk::new(0), SimDisk::new(1), SimDisk::new(2)];
    let node = node_over(&disks, &[EngineLimits::dms(); 3], 2);
    let tenant = with_tenant(&node);
    disks[1].fail_next(IoOp::Sync, IoErrorKind::Io);
    let failed = block_on(node.create_queue(&tenant, "a", normal(), Vec::new()));
    assert!(matches!(
        failed,
        Err(NodeError::Engine(EngineError::Storage(_)))
    ));
    assert!(node.needs_repair());
    assert_eq!(node.faults(), 1);
    assert!(node.engine(1).is_none(), "out of service");
    let refused = block_on(node.create_queue(&tenant, "b", normal(), Vec::new()));
    assert!(refused.is_err());
    assert_eq!(
        node.engine(0).unwrap().queue_ids().len(),
        1,
        "b was never created"
    );
    drop(node);
    disks[1].crash_with(CrashMode::LoseUnsynced);
    let node = node_over(&disks, &[EngineLimits::dms(); 3], 2);
    block_on(node.reconcile()).unwrap();
    assert!(!node.needs_repair());
    // The tenant is durable in partition 0: the reopened node still has it.
    assert!(node.tenants().by_project(&tenant).is_some());
    block_on(node.create_queue(&tenant, "b", normal(), Vec::new())).unwrap();
    let names: Vec<String> = agreed_queues(&node).into_iter().map(|q| q.1).collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn a_batch_split_over_partitions_is_refused_whole_or_answered_as_retriable() {
    // Goal: a batch whose messages go to several partitions is refused before anything is
    // stored when a message breaks a limit; and when a later partition refuses its part
    // after an earlier one stored its own, the answer is a retriable Unavailable, never a
    // refusal that reads as "nothing stored". Method: dedup ids that hash to partitions 0
    // and 1; the queue deleted on partition 1's engine alone.
    let node = check_node(2, 1);
    let tenant = with_tenant(&node);
    let (queue, group) = queue_with_group(&node, &tenant, normal());
    let keyed = |partition: u32| {
        (0..)
            .map(|i| SendInput {
                dedup_id: Some(format!("id-{i}")),
                ..message(&format!("to p{partition}"))
            })
            .find(|m| partition_for_send(QueueMode::Normal, 2, &[0, 1], m, 0) == partition)
            .unwrap()
    };
    let too_big = SendInput {
        body: vec![b'x'; usize::try_from(wide().message_bytes_max).unwrap() + 1],
        ..keyed(1)
    };
    let refused = block_on(node.send(queue, vec![keyed(0), too_big]));
    assert!(matches!(
        refused,
        Err(NodeError::Engine(EngineError::MessageTooLarge { .. }))
    ));
    let nothing = block_on(node.receive(queue, group, Lane::Main, receive_request(10), 0)).unwrap();
    assert!(nothing.is_empty(), "refused whole");
    block_on(node.engine(1).unwrap().delete_queue(queue, START_MS)).unwrap();
    let partial = block_on(node.send(queue, vec![keyed(0), keyed(1)]));
    assert!(
        matches!(partial, Err(NodeError::Unavailable(_))),
        "{partial:?}"
    );
    let info = node.engine(0).unwrap().queue_info(queue).unwrap();
    assert_eq!(info.sent_total, 1, "partition 0's part was stored");
}

#[test]
fn a_receive_spreads_one_byte_budget_over_the_partitions() {
    // Goal: a receive's byte budget holds for its whole answer, not per partition: the
    // partitions visited later get what the earlier ones left, and only the answer's first
    // message may exceed the budget (alone). Method: four partitions each hold one message
    // of 300 bytes (body and attributes); receives with budgets of 700 and 250 bytes.
    let node = check_node(4, 2);
    let tenant = with_tenant(&node);
    let (queue, group) = queue_with_group(&node, &tenant, normal());
    let sized = SendInput {
        body: vec![b'b'; 290],
        attributes: vec![b'a'; 10],
        ..message("")
    };
    let mut partitions = Vec::new();
    for entry in [0, 0, 1, 1] {
        let sent = block_on(node.shard(entry).send(queue, vec![sized.clone()])).unwrap();
        partitions.push(sent[0].partition);
    }
    partitions.sort_unstable();
    assert_eq!(partitions, [0, 1, 2, 3], "one message a partition");
    let budget = |bytes_max: u64| ReceiveRequest {
        bytes_max,
        ..receive_request(64)
    };
    let bytes = |got: &[Routed<Delivery>]| -> usize {
        got.iter()
            .map(|d| d.item.body.len() + d.item.attributes.len())
            .sum()
    };
    let first = block_on(node.receive(queue, group, Lane::Main, budget(700), 0)).unwrap();
    assert_eq!(first.len(), 2, "two of 300 bytes fit 700, a third does not");
    assert_eq!(bytes(&first), 600);
    let second = block_on(node.receive(queue, group, Lane::Main, budget(250), 0)).unwrap();
    assert_eq!(
        second.len(),
        1,
        "the first alone, though larger than the budget"
    );
    let closed = ReceiveRequest {
        oversize_first: false,
        ..budget(250)
    };
    let none = block_on(node.receive(queue, group, Lane::Main, closed, 0)).unwrap();
    assert!(none.is_empty(), "no oversize message where none is allowed");
    let last = block_on(node.receive(queue, group, Lane::Main, budget(u64::MAX), 0)).unwrap();
    assert_eq!(last.len(), 1);
}

#[test]
fn queue_meta_changes_reach_every_partition_and_refuse_a_stale_read() {
    // Goal: `set_queue_meta` replaces a queue's fields on every partition through any
    // shard, the directory shows them at once, and a change based on fields that another
    // change replaced meanwhile is refused (nothing written) rather than undoing it.
    // Method: two changes from the same read; the second answers MetaChanged.
    let node = check_node(3, 2);
    let tenant = with_tenant(&node);
    let queue = block_on(node.create_queue(&tenant, "q", normal(), b"v0".to_vec())).unwrap();
    block_on(node.shard(1).set_queue_meta(queue, b"v0", b"v1".to_vec())).unwrap();
    assert_eq!(*node.shard(1).queue(&tenant, queue).unwrap().meta, *b"v1");
    for partition in 0..node.partition_count() {
        let engine = node.engine(partition).unwrap();
        assert_eq!(engine.queue_info(queue).unwrap().meta, b"v1", "{partition}");
    }
    let stale = block_on(node.set_queue_meta(queue, b"v0", b"v2".to_vec()));
    assert_eq!(stale, Err(NodeError::MetaChanged));
    assert_eq!(*node.queue(&tenant, queue).unwrap().meta, *b"v1");
    let missing = block_on(node.set_queue_meta(QueueId(999), b"", Vec::new()));
    assert_eq!(missing, Err(NodeError::Engine(EngineError::QueueNotFound)));
    assert!(!node.needs_repair());
}

#[test]
fn dead_letters_move_to_the_target_queue_on_every_partition() {
    // Goal: `set_dead_letter`, through any shard, gives every partition the policy, the
    // directory shows the target, and messages failing on any partition arrive in the
    // target queue; a target that spreads over fewer partitions is refused.
    let node = check_node(4, 2);
    let tenant = with_tenant(&node);
    let (source, group) = queue_with_group(&node, &tenant, normal());
    let dlq = block_on(node.create_queue(&tenant, "dlq", normal(), Vec::new())).unwrap();
    let dlq_group = block_on(node.create_groups(dlq, &["g".to_string()])).unwrap()[0];
    let narrow = QueueConfig {
        partitions: 1,
        ..normal()
    };
    let small = block_on(node.create_queue(&tenant, "small", narrow, Vec::new())).unwrap();
    let refused = block_on(node.set_dead_letter(source, Some(1), Some(small)));
    assert_eq!(
        refused,
        Err(NodeError::Engine(EngineError::InvalidConfig(
            "dead_letter_target"
        )))
    );
    block_on(node.shard(1).set_dead_letter(source, Some(1), Some(dlq))).unwrap();
    assert_eq!(
        node.queue(&tenant, source).unwrap().dead_letter_to,
        Some(dlq)
    );
    for partition in 0..node.partition_count() {
        let info = node.engine(partition).unwrap().queue_info(source).unwrap();
        assert_eq!(info.dead_letter_to, Some(dlq), "{partition}");
    }
    for shard in 0..2 {
        for i in 0..4 {
            let body = format!("s{shard}m{i}");
            block_on(node.shard(shard).send(source, vec![message(&body)])).unwrap();
        }
    }
    let got = block_on(node.receive(source, group, Lane::Main, receive_request(64), 0)).unwrap();
    assert_eq!(got.len(), 8);
    let fails = got.iter().map(|d| (route(d), AckKind::Fail)).collect();
    block_on(node.ack(Lane::Main, fails)).unwrap();
    let moved = block_on(node.receive(dlq, dlq_group, Lane::Main, receive_request(64), 0));
    let mut bodies: Vec<Vec<u8>> = moved
        .unwrap()
        .iter()
        .map(|d| d.item.body.to_vec())
        .collect();
    let mut sent: Vec<Vec<u8>> = got.iter().map(|d| d.item.body.to_vec()).collect();
    bodies.sort();
    sent.sort();
    assert_eq!(bodies, sent);
    assert!(!node.needs_repair());
}

/// A node over `disks` (reopened: a new node, as after a restart), repaired and with its
/// tenants published, as the server starts one.
fn started_over(disks: &[SimDisk], shards: usize) -> TestNode {
    let node = node_over(disks, &vec![wide(); disks.len()], shards);
    block_on(node.reconcile()).unwrap();
    node
}

/// Every shard's directory, as (name, project id, ak, quotas), checked to be one.
fn shared_tenants(node: &TestNode) -> Vec<(String, String, String, Quotas)> {
    let of = |shard: usize| {
        let directory = node.shard(shard).tenants();
        let mut all: Vec<_> = directory
            .all()
            .iter()
            .map(|t| (t.name.clone(), t.project_id.clone(), t.ak.clone(), t.quotas))
            .collect();
        all.sort_by(|x, y| x.0.cmp(&y.0));
        all
    };
    let first = of(0);
    for shard in 1..node.shard_count() {
        assert_eq!(of(shard), first, "shard {shard} publishes the same tenants");
    }
    first
}

#[test]
fn tenants_survive_a_reopen_from_partition_zero_alone() {
    // Goal: tenants, their quotas and deletions are durable in partition 0: a node
    // reopened over the same disks with no stored tenant list (LocalNode keeps none)
    // publishes them again, password hashes included. Method: create, change, delete;
    // reopen; compare.
    let disks: Vec<SimDisk> = (0..3).map(SimDisk::new).collect();
    let node = started_over(&disks, 2);
    let a = block_on(node.create_tenant("alpha", Some("pw"))).unwrap();
    let b = block_on(node.create_tenant("beta", None)).unwrap();
    let quotas = Quotas {
        queues_max: 2,
        groups_per_queue_max: 1,
    };
    block_on(node.set_tenant_quotas(&a.project_id, quotas)).unwrap();
    block_on(node.delete_tenant(&b.project_id)).unwrap();
    let before = shared_tenants(&node);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].3, quotas);
    drop(node);
    let reopened = started_over(&disks, 3);
    assert_eq!(shared_tenants(&reopened), before);
    let kept = reopened
        .tenants()
        .by_project(&a.project_id)
        .cloned()
        .unwrap();
    assert_eq!(kept.sk, a.sk);
    assert!(crate::password::verify_password(
        "pw",
        kept.password_hash.as_deref().unwrap()
    ));
    assert_eq!(
        block_on(reopened.create_tenant("alpha", None)),
        Err(TenantError::Exists)
    );
}

#[test]
fn a_tenant_created_through_any_shard_is_in_partition_zero_and_every_shard() {
    // Goal: a tenant created through a shard that does not own partition 0 is written
    // there (forwarded) and every shard's directory shows it at once.
    let disks: Vec<SimDisk> = (0..4).map(SimDisk::new).collect();
    let node = started_over(&disks, 3);
    let tenant = block_on(node.shard(2).create_tenant("gamma", None)).unwrap();
    let names: Vec<String> = node
        .engine(0)
        .unwrap()
        .tenants()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, ["gamma"]);
    for shard in 0..3 {
        let directory = node.shard(shard).tenants();
        assert_eq!(directory.by_ak(&tenant.ak).unwrap().name, "gamma");
    }
    assert_eq!(shared_tenants(&node).len(), 1);
}

#[test]
fn a_stored_tenant_list_moves_into_partition_zero_once() {
    // Goal: on start, a host's stored tenants (an existing data directory's list) are
    // written into a partition 0 that never held tenants; once partition 0 has held any,
    // a stored list no longer matters (deleting every tenant does not bring them back).
    let disks: Vec<SimDisk> = (0..2).map(SimDisk::new).collect();
    let stored = crate::tenants::new_tenant("old", None, Quotas::dms_default(), 5, |b| {
        b.fill(3);
    });
    let store = |node: &TestNode| {
        let directory = crate::tenants::TenantDirectory::new(vec![stored.clone()]);
        node.directories()
            .tenants
            .store(std::sync::Arc::new(directory));
    };
    let node = node_over(&disks, &[wide(); 2], 2);
    store(&node);
    block_on(node.reconcile()).unwrap();
    assert_eq!(node.engine(0).unwrap().tenants().len(), 1);
    assert_eq!(node.tenants().by_ak(&stored.ak).unwrap().name, "old");
    block_on(node.delete_tenant(&stored.project_id)).unwrap();
    drop(node);
    let again = node_over(&disks, &[wide(); 2], 2);
    store(&again);
    block_on(again.reconcile()).unwrap();
    assert!(again.engine(0).unwrap().tenants().is_empty());
    assert!(again.tenants().all().is_empty(), "partition 0 is the truth");
}

#[test]
fn tenants_applied_to_partition_zero_by_others_are_republished() {
    // Goal: a tenant change the metadata shard did not make (a follower replica applying
    // the leader's write) reaches every shard's directory: the owner of partition 0
    // notices `tenant_changes` move. Method: write a record straight into partition 0's
    // engine, then tick.
    let disks: Vec<SimDisk> = (0..2).map(SimDisk::new).collect();
    let node = started_over(&disks, 2);
    let tenant = crate::tenants::new_tenant("delta", None, Quotas::dms_default(), 5, |b| {
        b.fill(9);
    });
    let record = crate::tenants::encode_tenant(&tenant);
    block_on(
        node.engine(0)
            .unwrap()
            .put_tenant("delta", record, START_MS),
    )
    .unwrap();
    assert!(node.tenants().by_name("delta").is_none(), "not yet noticed");
    block_on(node.tick(START_MS)).unwrap();
    for shard in 0..2 {
        assert_eq!(node.shard(shard).tenants().by_name("delta"), Some(&tenant));
    }
}

#[test]
fn the_admin_secret_is_created_once_and_learned_on_every_start() {
    // Goal: the first start puts the host's admin secret into partition 0 and learns
    // it; a later start whose host would propose another learns the first instead.
    let disks: Vec<SimDisk> = (0..2).map(SimDisk::new).collect();
    let node = node_over(&disks, &[wide(); 2], 2);
    node.propose_admin_secret(b"first".to_vec());
    block_on(node.reconcile()).unwrap();
    assert_eq!(node.learned_admin_secret().as_deref(), Some(&b"first"[..]));
    drop(node);
    let again = node_over(&disks, &[wide(); 2], 2);
    again.propose_admin_secret(b"second".to_vec());
    block_on(again.reconcile()).unwrap();
    assert_eq!(again.learned_admin_secret().as_deref(), Some(&b"first"[..]));
    assert_eq!(
        again.engine(0).unwrap().admin_secret().as_deref(),
        Some(&b"first"[..])
    );
}

#[test]
fn a_purge_reaches_every_partition_of_the_queue_through_any_shard() {
    // Goal: a purge entering at one shard empties the queue on every partition, those
    // another shard owns included (a hop), delayed messages too; later sends are
    // delivered. Method: messages on all four partitions (sends entering at both shards)
    // and one delayed; purge through shard 1; count and receive.
    let node = check_node(4, 2);
    let tenant = with_tenant(&node);
    let (queue, group) = queue_with_group(&node, &tenant, normal());
    for shard in 0..2 {
        let batch = (0..4).map(|i| message(&format!("m{shard}{i}"))).collect();
        block_on(node.shard(shard).send(queue, batch)).unwrap();
    }
    let delayed = SendInput {
        delay: Delay::Ms(60_000),
        ..message("later")
    };
    block_on(node.send(queue, vec![delayed])).unwrap();
    let in_flight =
        block_on(node.receive(queue, group, Lane::Main, receive_request(1), 0)).unwrap();
    assert_eq!(in_flight.len(), 1);
    let before = block_on(node.queue_counts(queue)).unwrap();
    assert_eq!((before.stored, before.delayed), (8, 1));

    block_on(node.shard(1).purge_queue(queue)).unwrap();
    let after = block_on(node.queue_counts(queue)).unwrap();
    assert_eq!((after.stored, after.delayed), (0, 0));
    assert_eq!(after.groups[0].1.backlog, 0);
    let got = block_on(node.receive(queue, group, Lane::Main, receive_request(10), 0)).unwrap();
    assert!(got.is_empty());
    let acked = block_on(node.ack(Lane::Main, vec![(route(&in_flight[0]), AckKind::Success)]));
    assert_eq!(acked, Ok(vec![Err(HandleError::Unknown)]));

    block_on(node.shard(0).send(queue, vec![message("after")])).unwrap();
    let got = block_on(node.receive(queue, group, Lane::Main, receive_request(10), 0)).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].item.body[..], b"after");
    assert_eq!(
        block_on(node.purge_queue(QueueId(999))),
        Err(NodeError::Engine(EngineError::QueueNotFound))
    );
}
