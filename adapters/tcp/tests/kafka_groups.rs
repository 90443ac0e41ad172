//! Kafka consumer groups at the protocol level: requests encoded as a client encodes
//! them go through `Session::handle` on a two-shard `LocalNode` over simulated disks.
//! Several sessions' requests run together; the clock only moves when every one of them
//! waits on a timer (no sleeps).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
    SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use sluice_core::engine::{Engine, EngineConfig, EngineLimits};
use sluice_core::log::{LogConfig, VerifyOnOpen};
use sluice_core::sim_disk::{block_on, SimDisk};
use sluice_node::local::{LocalNode, Runtime, TimerClock};
use sluice_node::Node;
use sluice_tcp::kafka::{KafkaConfig, Reply, Session};

struct World {
    disks: Vec<SimDisk>,
    node: LocalNode<SimDisk, TimerClock>,
    clock: TimerClock,
    ak: String,
    sk: String,
}

fn config() -> EngineConfig {
    EngineConfig {
        log: LogConfig {
            segment_bytes_max: 1 << 20,
            index_interval_bytes: 4096,
            preallocate_bytes: 0,
            verify_on_open: VerifyOnOpen::Tail,
            cache_bytes_max: sluice_core::limits::LOG_CACHE_BYTES_DEFAULT,
            recycle_segments_max: sluice_core::limits::LOG_RECYCLE_SEGMENTS_DEFAULT,
        },
        limits: EngineLimits::dms(),
        snapshot_every_records: 1_000,
    }
}

/// A node over `disks` (opened, or reopened with what they hold).
fn open(disks: &[SimDisk], clock: &TimerClock) -> LocalNode<SimDisk, TimerClock> {
    let engines = disks
        .iter()
        .map(|disk| block_on(Engine::open(disk.clone(), config(), clock.now_ms())).unwrap())
        .collect();
    let node = LocalNode::new(engines, clock.clone(), 1, 2);
    block_on(node.reconcile()).unwrap();
    node
}

fn world() -> World {
    let disks: Vec<SimDisk> = (0..2).map(SimDisk::new).collect();
    let clock = TimerClock::starting_at(1_000);
    let node = open(&disks, &clock);
    let tenant = block_on(node.create_tenant("kafka", None)).expect("tenant");
    World {
        disks,
        node,
        clock,
        ak: tenant.ak,
        sk: tenant.sk,
    }
}

fn session() -> Session {
    Session::new(Arc::new(KafkaConfig {
        broker_id: 7,
        advertised_host: "sluice.test".to_string(),
        advertised_port: 9092,
        brokers: Vec::new(),
    }))
}

/// A request frame as a client encodes it (correlation id 1).
fn frame<R: Request>(version: i16, request: &R) -> Bytes {
    let mut header = RequestHeader::default();
    header.request_api_key = R::KEY;
    header.request_api_version = version;
    header.correlation_id = 1;
    header.client_id = Some(StrBytes::from_static_str("test"));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, R::header_version(version)).unwrap();
    request.encode(&mut buf, version).unwrap();
    buf.freeze()
}

/// The response in `reply`, decoded as a client would.
fn answer<R: Request>(version: i16, reply: Reply) -> R::Response {
    let Reply::Send(frame) = reply else {
        panic!("expected an answer, got {reply:?}");
    };
    let mut frame = Bytes::from(frame);
    let _ = bytes::Buf::copy_to_bytes(&mut frame, 4);
    assert_ne!(R::KEY, ApiKey::ApiVersions as i16);
    let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 1);
    let response = R::Response::decode(&mut frame, version).unwrap();
    assert!(frame.is_empty(), "the whole response was read");
    response
}

impl World {
    /// Runs `future` to completion on the world's clock.
    fn run<F: std::future::Future>(&self, future: F) -> F::Output {
        self.clock.run(future)
    }

    /// One request of one session, run alone.
    fn call<R: Request>(&self, session: &mut Session, version: i16, request: &R) -> R::Response {
        let reply = self.run(session.handle(&**self.node.shard(0), frame(version, request)));
        answer::<R>(version, reply)
    }

    fn login(&self, session: &mut Session) {
        self.login_as(session, &self.ak, &self.sk);
    }

    fn login_as(&self, session: &mut Session, ak: &str, sk: &str) {
        let handshake =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        let answer: SaslHandshakeResponse = self.call(session, 1, &handshake);
        assert_eq!(answer.error_code, 0);
        let message = format!("\0{ak}\0{sk}");
        let auth = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message));
        let answer: SaslAuthenticateResponse = self.call(session, 2, &auth);
        assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
    }

    fn logged_in(&self) -> Session {
        let mut session = session();
        self.login(&mut session);
        session
    }
}

fn group() -> GroupId {
    GroupId(StrBytes::from_static_str("billing"))
}

fn join_request(member_id: &str) -> JoinGroupRequest {
    let mut join = JoinGroupRequest::default();
    join.group_id = group();
    join.session_timeout_ms = 10_000;
    join.rebalance_timeout_ms = 5_000;
    join.member_id = StrBytes::from_string(member_id.to_string());
    join.protocol_type = StrBytes::from_static_str("consumer");
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = StrBytes::from_static_str("range");
    protocol.metadata = Bytes::from_static(b"subscription");
    join.protocols.push(protocol);
    join
}

fn sync_request(member_id: &str, generation: i32, assign: &[(&str, &str)]) -> SyncGroupRequest {
    let mut sync = SyncGroupRequest::default();
    sync.group_id = group();
    sync.generation_id = generation;
    sync.member_id = StrBytes::from_string(member_id.to_string());
    sync.protocol_type = Some(StrBytes::from_static_str("consumer"));
    sync.protocol_name = Some(StrBytes::from_static_str("range"));
    sync.assignments = assign
        .iter()
        .map(|(member, assignment)| {
            let mut a = SyncGroupRequestAssignment::default();
            a.member_id = StrBytes::from_string(member.to_string());
            a.assignment = Bytes::from(assignment.to_string());
            a
        })
        .collect();
    sync
}

fn heartbeat(member_id: &str, generation: i32) -> HeartbeatRequest {
    let mut beat = HeartbeatRequest::default();
    beat.group_id = group();
    beat.generation_id = generation;
    beat.member_id = StrBytes::from_string(member_id.to_string());
    beat
}

fn commit(member_id: &str, generation: i32, offsets: &[(i32, i64, &str)]) -> OffsetCommitRequest {
    let mut request = OffsetCommitRequest::default();
    request.group_id = group();
    request.generation_id_or_member_epoch = generation;
    request.member_id = StrBytes::from_string(member_id.to_string());
    let mut topic = OffsetCommitRequestTopic::default();
    topic.name = TopicName(StrBytes::from_static_str("orders"));
    for (partition, offset, metadata) in offsets {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = *partition;
        p.committed_offset = *offset;
        p.committed_metadata = Some(StrBytes::from_string(metadata.to_string()));
        topic.partitions.push(p);
    }
    request.topics.push(topic);
    request
}

fn fetch_offsets(partitions: &[i32]) -> OffsetFetchRequest {
    let mut request = OffsetFetchRequest::default();
    request.group_id = group();
    let mut topic = OffsetFetchRequestTopic::default();
    topic.name = TopicName(StrBytes::from_static_str("orders"));
    topic.partition_indexes = partitions.to_vec();
    request.topics = Some(vec![topic]);
    request
}

fn create_orders(world: &World, session: &mut Session) {
    let mut create = CreateTopicsRequest::default();
    let mut wanted = CreatableTopic::default();
    wanted.name = TopicName(StrBytes::from_static_str("orders"));
    wanted.num_partitions = -1;
    wanted.replication_factor = -1;
    create.topics.push(wanted);
    let created: CreateTopicsResponse = world.call(session, 5, &create);
    assert_eq!(created.topics[0].error_code, 0);
}

#[test]
fn two_members_join_sync_commit_and_a_third_session_reads_the_offsets() {
    // Goal: a consumer group's whole life through the protocol: the coordinator is this
    // node; a first member completes a generation; a second's join waits until the first,
    // told by its heartbeat, rejoins; the leader's sync hands out the assignments both
    // syncs answer; commits are checked against member and generation and read back by
    // another session; describe, list and leave. Method: two sessions' requests run
    // together on the timer clock.
    let world = world();
    let (mut a, mut b, mut c) = (world.logged_in(), world.logged_in(), world.logged_in());
    create_orders(&world, &mut a);

    let mut find = FindCoordinatorRequest::default();
    find.key = StrBytes::from_static_str("billing");
    let found: FindCoordinatorResponse = world.call(&mut a, 3, &find);
    assert_eq!(
        (found.error_code, found.node_id.0, found.port),
        (0, 7, 9092)
    );
    assert_eq!(found.host.as_str(), "sluice.test");
    find.coordinator_keys = vec![find.key.clone(), StrBytes::from_static_str("other")];
    find.key = StrBytes::default();
    let found: FindCoordinatorResponse = world.call(&mut a, 4, &find);
    assert_eq!(found.coordinators.len(), 2);
    assert_eq!(found.coordinators[1].node_id.0, 7);

    // A alone: generation 1.
    let joined: JoinGroupResponse = world.call(&mut a, 7, &join_request(""));
    assert_eq!((joined.error_code, joined.generation_id), (0, 1));
    let a_id = joined.member_id.to_string();
    assert_eq!(joined.leader.as_str(), a_id);
    let synced: SyncGroupResponse =
        world.call(&mut a, 5, &sync_request(&a_id, 1, &[(&a_id, "all")]));
    assert_eq!(
        (synced.error_code, &synced.assignment[..]),
        (0, &b"all"[..])
    );

    // B joins; A's heartbeat says rebalance, A rejoins; both land in generation 2.
    let node = &**world.node.shard(0);
    let other = &**world.node.shard(1);
    let (b_join, a_join) = world.run(futures_lite::future::zip(
        b.handle(other, frame(7, &join_request(""))),
        async {
            let beat = a.handle(node, frame(4, &heartbeat(&a_id, 1))).await;
            assert_eq!(answer::<HeartbeatRequest>(4, beat).error_code, 27);
            a.handle(node, frame(7, &join_request(&a_id))).await
        },
    ));
    let b_join = answer::<JoinGroupRequest>(7, b_join);
    let a_join = answer::<JoinGroupRequest>(7, a_join);
    assert_eq!((a_join.error_code, b_join.error_code), (0, 0));
    assert_eq!((a_join.generation_id, b_join.generation_id), (2, 2));
    assert_eq!(a_join.leader.as_str(), a_id);
    assert_eq!(a_join.members.len(), 2, "the leader sees every member");
    assert_eq!(&a_join.members[0].metadata[..], b"subscription");
    assert!(b_join.members.is_empty());
    assert_eq!(b_join.protocol_name.as_ref().unwrap().as_str(), "range");
    let b_id = b_join.member_id.to_string();

    // B's sync waits for the leader's assignment.
    let assignments = [(a_id.as_str(), "orders-0"), (b_id.as_str(), "orders-1")];
    let (b_sync, a_sync) = world.run(futures_lite::future::zip(
        b.handle(other, frame(5, &sync_request(&b_id, 2, &[]))),
        a.handle(node, frame(5, &sync_request(&a_id, 2, &assignments))),
    ));
    let b_sync = answer::<SyncGroupRequest>(5, b_sync);
    let a_sync = answer::<SyncGroupRequest>(5, a_sync);
    assert_eq!(
        (b_sync.error_code, &b_sync.assignment[..]),
        (0, &b"orders-1"[..])
    );
    assert_eq!(
        (a_sync.error_code, &a_sync.assignment[..]),
        (0, &b"orders-0"[..])
    );
    let beat: HeartbeatResponse = world.call(&mut b, 4, &heartbeat(&b_id, 2));
    assert_eq!(beat.error_code, 0);

    // Commits: by a member of the generation; refused for a stale generation, an
    // unknown member, an unknown topic.
    let committed: OffsetCommitResponse =
        world.call(&mut a, 8, &commit(&a_id, 2, &[(0, 5, "m"), (1, 7, "")]));
    let codes: Vec<i16> = committed.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, [0, 0]);
    let stale: OffsetCommitResponse = world.call(&mut a, 8, &commit(&a_id, 1, &[(0, 9, "")]));
    assert_eq!(stale.topics[0].partitions[0].error_code, 22);
    let stranger: OffsetCommitResponse = world.call(&mut c, 8, &commit("nobody", 2, &[(0, 9, "")]));
    assert_eq!(stranger.topics[0].partitions[0].error_code, 25);
    let mut unknown = commit(&a_id, 2, &[(0, 9, ""), (5, 1, "")]);
    unknown.topics[0].name = TopicName(StrBytes::from_static_str("nope"));
    let unknown: OffsetCommitResponse = world.call(&mut a, 8, &unknown);
    assert_eq!(unknown.topics[0].partitions[0].error_code, 3);

    // A third session reads them back (and -1 for a partition without a commit).
    let fetched: OffsetFetchResponse = world.call(&mut c, 7, &fetch_offsets(&[0, 1]));
    assert_eq!(fetched.error_code, 0);
    let parts = &fetched.topics[0].partitions;
    assert_eq!(
        (parts[0].committed_offset, parts[1].committed_offset),
        (5, 7)
    );
    assert_eq!(parts[0].metadata.as_ref().unwrap().as_str(), "m");
    let mut everything = fetch_offsets(&[]);
    everything.topics = None;
    let all: OffsetFetchResponse = world.call(&mut c, 7, &everything);
    assert_eq!(all.topics.len(), 1);
    assert_eq!(all.topics[0].partitions.len(), 2);
    let old: OffsetFetchResponse = world.call(&mut c, 1, &fetch_offsets(&[1]));
    assert_eq!(old.topics[0].partitions[0].committed_offset, 7);

    // A standalone consumer (generation -1) commits to a group without members.
    let mut simple = commit("", -1, &[(0, 3, "")]);
    simple.group_id = GroupId(StrBytes::from_static_str("standalone"));
    let simple: OffsetCommitResponse = world.call(&mut c, 8, &simple);
    assert_eq!(simple.topics[0].partitions[0].error_code, 0);

    let mut describe = DescribeGroupsRequest::default();
    describe.groups = vec![group(), GroupId(StrBytes::from_static_str("standalone"))];
    let described: DescribeGroupsResponse = world.call(&mut c, 5, &describe);
    assert_eq!(described.groups[0].group_state.as_str(), "Stable");
    assert_eq!(described.groups[0].members.len(), 2);
    assert_eq!(described.groups[1].group_state.as_str(), "Dead");
    let listed: ListGroupsResponse = world.call(&mut c, 4, &ListGroupsRequest::default());
    let names: Vec<&str> = listed
        .groups
        .iter()
        .map(|g| g.group_id.0.as_str())
        .collect();
    assert_eq!(names, ["billing"]);

    // B leaves; A is told to rejoin.
    let mut leave = LeaveGroupRequest::default();
    leave.group_id = group();
    let mut identity = MemberIdentity::default();
    identity.member_id = StrBytes::from_string(b_id.clone());
    leave.members.push(identity);
    let left: LeaveGroupResponse = world.call(&mut b, 5, &leave);
    assert_eq!((left.error_code, left.members[0].error_code), (0, 0));
    let beat: HeartbeatResponse = world.call(&mut a, 4, &heartbeat(&a_id, 2));
    assert_eq!(beat.error_code, 27);
}

#[test]
fn committed_offsets_survive_reopening_the_engines_and_groups_are_the_tenants() {
    // Goal: an answered OffsetCommit is durable: the node's engines reopened over the
    // same disks answer it (the membership, leader-only state, is gone: the member is
    // unknown and must rejoin); another tenant's group of the same name is another
    // group. Method: commit, drop the node, reopen, fetch from a new session.
    let world = world();
    let mut a = world.logged_in();
    create_orders(&world, &mut a);
    let simple = commit("", -1, &[(1, 42, "kept")]);
    let answer: OffsetCommitResponse = world.call(&mut a, 8, &simple);
    assert_eq!(answer.topics[0].partitions[0].error_code, 0);
    let joined: JoinGroupResponse = world.call(&mut a, 7, &join_request(""));
    let a_id = joined.member_id.to_string();

    let World {
        disks,
        node,
        clock,
        ak,
        sk,
    } = world;
    drop(node);
    let world = World {
        node: open(&disks, &clock),
        disks,
        clock,
        ak,
        sk,
    };
    let mut again = world.logged_in();
    let fetched: OffsetFetchResponse = world.call(&mut again, 7, &fetch_offsets(&[1]));
    let part = &fetched.topics[0].partitions[0];
    assert_eq!((part.error_code, part.committed_offset), (0, 42));
    assert_eq!(part.metadata.as_ref().unwrap().as_str(), "kept");
    let beat: HeartbeatResponse = world.call(&mut again, 4, &heartbeat(&a_id, 1));
    assert_eq!(beat.error_code, 25, "membership is not durable");

    let other = block_on(world.node.create_tenant("other", None)).expect("tenant");
    let mut stranger = session();
    world.login_as(&mut stranger, &other.ak, &other.sk);
    create_orders(&world, &mut stranger);
    let theirs: OffsetFetchResponse = world.call(&mut stranger, 7, &fetch_offsets(&[1]));
    let part = &theirs.topics[0].partitions[0];
    assert_eq!((part.error_code, part.committed_offset), (0, -1));
}
