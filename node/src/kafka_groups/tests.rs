//! The consumer-group state machine, alone (time as an argument) and through a
//! two-shard [`LocalNode`] whose clock only moves when every call waits on a timer, so
//! that several members' calls run together as they do against a server. No sleeps.

use std::cell::Cell;

use sluice_core::engine::{Engine, EngineLimits};
use sluice_core::sim_disk::{block_on, SimDisk};

use super::*;
use crate::local::{LocalNode, Runtime, TimerClock};
use crate::Node;

const START_MS: u64 = 1_000;

fn join(member_id: &str, protocols: &[&str]) -> Join {
    Join {
        member_id: member_id.to_string(),
        client_id: "client".to_string(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 5_000,
        protocol_type: "consumer".to_string(),
        protocols: protocols
            .iter()
            .map(|name| (name.to_string(), name.as_bytes().to_vec()))
            .collect(),
    }
}

type TestNode = LocalNode<SimDisk, TimerClock>;

fn node() -> (TestNode, TimerClock) {
    let config = crate::tests::engine_config(EngineLimits::dms());
    let engines = (0..2)
        .map(|p| block_on(Engine::open(SimDisk::new(p), config, START_MS)).unwrap())
        .collect();
    let clock = TimerClock::starting_at(START_MS);
    (LocalNode::new(engines, clock.clone(), 3, 2), clock)
}

#[test]
fn two_members_join_sync_and_a_third_triggers_a_rebalance() {
    // Goal: the protocol's happy path through the node: a first member completes a
    // generation alone; a second's join waits until the first rejoins (told by its
    // heartbeat); the leader's sync hands out assignments that the follower's waiting
    // sync receives; a third member's join makes the others' heartbeats answer
    // RebalanceInProgress; a leave does too. Method: run several members' calls
    // together on the timer clock, from both shards.
    let (node, clock) = node();
    let (a_shard, b_shard) = (node.shard(0), node.shard(1));
    let t = "tenant";
    let a = clock
        .run(a_shard.join_group(t, "g", join("", &["range"])))
        .unwrap()
        .unwrap();
    assert_eq!((a.generation, a.leader.as_str()), (1, a.member_id.as_str()));
    assert_eq!(a.members.len(), 1);
    let a_id = a.member_id.clone();
    let own = vec![(a_id.clone(), b"a1".to_vec())];
    let got = clock
        .run(a_shard.sync_group(t, "g", &a_id, 1, own))
        .unwrap();
    assert_eq!(got, Ok(b"a1".to_vec()));

    // B joins; A learns of it by its heartbeat and rejoins.
    let (b, a2) = clock.run(futures_lite::future::zip(
        b_shard.join_group(t, "g", join("", &["range"])),
        async {
            let beat = a_shard.heartbeat_group(t, "g", &a_id, 1).await.unwrap();
            assert_eq!(beat, Err(GroupError::RebalanceInProgress));
            a_shard.join_group(t, "g", join(&a_id, &["range"])).await
        },
    ));
    let (b, a2) = (b.unwrap().unwrap(), a2.unwrap().unwrap());
    assert_eq!((a2.generation, b.generation), (2, 2));
    assert_eq!(a2.leader, a_id, "the leader stays");
    assert_eq!(a2.members.len(), 2, "the leader sees every member");
    assert!(b.members.is_empty());
    let b_id = b.member_id.clone();

    // B's sync waits for the leader's.
    let assignments = vec![
        (a_id.clone(), b"part-0".to_vec()),
        (b_id.clone(), b"part-1".to_vec()),
    ];
    let (b_got, a_got) = clock.run(futures_lite::future::zip(
        b_shard.sync_group(t, "g", &b_id, 2, Vec::new()),
        a_shard.sync_group(t, "g", &a_id, 2, assignments),
    ));
    assert_eq!(b_got.unwrap(), Ok(b"part-1".to_vec()));
    assert_eq!(a_got.unwrap(), Ok(b"part-0".to_vec()));
    let view = clock.run(a_shard.describe_group(t, "g")).unwrap();
    assert_eq!(view.state, "Stable");
    assert_eq!(view.members.len(), 2);

    // A third member: the others are told to rejoin, and all three complete.
    let (c, rest) = clock.run(futures_lite::future::zip(
        a_shard.join_group(t, "g", join("", &["range"])),
        async {
            for (id, shard) in [(&a_id, a_shard), (&b_id, b_shard)] {
                let beat = shard.heartbeat_group(t, "g", id, 2).await.unwrap();
                assert_eq!(beat, Err(GroupError::RebalanceInProgress));
            }
            futures_lite::future::zip(
                a_shard.join_group(t, "g", join(&a_id, &["range"])),
                b_shard.join_group(t, "g", join(&b_id, &["range"])),
            )
            .await
        },
    ));
    let c = c.unwrap().unwrap();
    assert_eq!(c.generation, 3);
    assert_eq!(rest.0.unwrap().unwrap().members.len(), 3);
    assert_eq!(rest.1.unwrap().unwrap().generation, 3);

    // B leaves: the others rebalance; an unknown member is refused.
    let left = clock
        .run(b_shard.leave_group(t, "g", vec![b_id.clone(), "x".into()]))
        .unwrap();
    assert_eq!(left, vec![Ok(()), Err(GroupError::UnknownMember)]);
    let beat = clock
        .run(a_shard.heartbeat_group(t, "g", &a_id, 3))
        .unwrap();
    assert_eq!(beat, Err(GroupError::RebalanceInProgress));
    let listed = clock.run(a_shard.list_groups(t)).unwrap();
    assert_eq!(
        listed,
        vec![(
            "g".to_string(),
            "consumer".to_string(),
            "PreparingRebalance".to_string()
        )]
    );
    assert!(clock.run(a_shard.list_groups("other")).unwrap().is_empty());
}

#[test]
fn a_member_whose_session_ended_is_removed_and_the_group_rebalances() {
    // Goal: session expiry without a background task: the next call on the group after
    // a member's session timeout removes it and starts a rebalance, which the remaining
    // member completes alone; a member that never rejoins a rebalance is dropped at its
    // deadline. Method: two members, time moved by hand between heartbeats.
    let (node, clock) = node();
    let shard = node.shard(0);
    let t = "tenant";
    let a = clock
        .run(shard.join_group(t, "g", join("", &["range"])))
        .unwrap()
        .unwrap();
    let a_id = a.member_id;
    let (b, a2) = clock.run(futures_lite::future::zip(
        shard.join_group(t, "g", join("", &["range"])),
        async {
            let _ = shard.heartbeat_group(t, "g", &a_id, 1).await;
            shard.join_group(t, "g", join(&a_id, &["range"])).await
        },
    ));
    let b_id = b.unwrap().unwrap().member_id;
    assert_eq!(a2.unwrap().unwrap().generation, 2);
    // A keeps its session alive; B (10 s session) does not.
    for _ in 0..3 {
        clock.advance(4_000);
        let beat = clock.run(shard.heartbeat_group(t, "g", &a_id, 2)).unwrap();
        if beat.is_err() {
            assert_eq!(beat, Err(GroupError::RebalanceInProgress));
            break;
        }
    }
    let gone = clock.run(shard.heartbeat_group(t, "g", &b_id, 2)).unwrap();
    assert_eq!(gone, Err(GroupError::UnknownMember));
    let alone = clock
        .run(shard.join_group(t, "g", join(&a_id, &["range"])))
        .unwrap()
        .unwrap();
    assert_eq!((alone.generation, alone.members.len()), (3, 1));

    // A rebalance that a member never rejoins ends at the rebalance timeout without it.
    let before = clock.now_ms();
    let c = clock
        .run(shard.join_group(t, "g", join("", &["range"])))
        .unwrap()
        .unwrap();
    assert_eq!(c.generation, 4);
    assert_eq!(
        clock.now_ms(),
        before + 5_000,
        "waited out the rebalance timeout"
    );
    let dropped = clock.run(shard.heartbeat_group(t, "g", &a_id, 3)).unwrap();
    assert_eq!(dropped, Err(GroupError::UnknownMember));
}

#[test]
fn joins_are_checked_for_protocols_timeouts_and_size() {
    // Goal: the join's refusals, without waiting (time as an argument).
    let mut group = Group::new("consumer");
    let ids = Cell::new(0);
    let new_id = || {
        ids.set(ids.get() + 1);
        format!("m{}", ids.get())
    };
    let (first, answer) = group.join(&join("", &["range", "rr"]), new_id, 0).unwrap();
    assert_eq!(answer, None, "completes, answered by the waiting step");
    assert_eq!(group.generation(), 1);
    let mut other = join("", &["sticky"]);
    assert_eq!(
        group.join(&other, new_id, 0),
        Err(GroupError::InconsistentProtocol)
    );
    other.protocols = vec![("rr".to_string(), Vec::new())];
    other.protocol_type = "connect".to_string();
    assert_eq!(
        group.join(&other, new_id, 0),
        Err(GroupError::InconsistentProtocol)
    );
    let mut short = join("", &["rr"]);
    short.session_timeout_ms = 100;
    assert_eq!(
        group.join(&short, new_id, 0),
        Err(GroupError::InvalidSessionTimeout)
    );
    let mut large = join("", &["rr"]);
    large.protocols[0].1 = vec![0; MEMBER_METADATA_BYTES_MAX + 1];
    assert_eq!(group.join(&large, new_id, 0), Err(GroupError::TooLarge));
    assert_eq!(
        group.join(&join("nobody", &["rr"]), new_id, 0),
        Err(GroupError::UnknownMember)
    );
    // Rejoining as a non-leader is new; the shared protocol is the leader's first
    // that every member supports.
    let (second, _) = group.join(&join("", &["rr"]), new_id, 0).unwrap();
    group
        .join(&join(&first, &["range", "rr"]), new_id, 1)
        .unwrap();
    assert_eq!(group.generation(), 2);
    assert_eq!(group.view().protocol_name, "rr");
    assert_eq!(group.member_count(), 2);
    assert_eq!(
        group.check_commit(&second, 1, 2),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        group.check_commit(&second, 2, 2),
        Err(GroupError::RebalanceInProgress)
    );
    group.sync(&first, 2, &[], 2).unwrap();
    assert_eq!(group.check_commit(&second, 2, 2), Ok(()));
}
