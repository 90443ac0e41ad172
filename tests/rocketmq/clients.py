"""RocketMQ 5 scenarios for tests/rocketmq_clients.rs, run with the official
rocketmq-python-client, unmodified, against the real server's --rocketmq-listen port.

Usage: clients.py SCENARIO, with SLUICE_ROCKETMQ (host:port), SLUICE_AK and SLUICE_SK
(the tenant), and per scenario SLUICE_TOPIC, SLUICE_OTHER_AK/SK. Each scenario checks
every answer itself and exits non-zero on the first surprise; it waits only by polling
with a deadline (a receive's long poll), never by sleeping for correctness. It ends by
printing one JSON line with what it counted.
"""

import json
import os
import sys
import time

from rocketmq import (ClientConfiguration, ConsumeResult, Credentials, FilterExpression,
                      Message, MessageListener, Producer, PushConsumer, SimpleConsumer,
                      TransactionChecker, TransactionResolution)

ENDPOINT = os.environ["SLUICE_ROCKETMQ"]
DEADLINE_S = 20


def config(ak=None, sk=None):
    return ClientConfiguration(
        ENDPOINT,
        Credentials(ak or os.environ["SLUICE_AK"], sk or os.environ["SLUICE_SK"]),
        request_timeout=5,
    )


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}", flush=True)
        sys.exit(1)


def producer(topic, ak=None, sk=None):
    p = Producer(config(ak, sk), (topic,))
    p.startup()
    return p


def consumer(topic, group, expression="*", await_s=1):
    c = SimpleConsumer(config(), group, {topic: FilterExpression(expression)},
                       await_duration=await_s)
    c.startup()
    return c


def message(topic, body, tag=None, keys=None, properties=None, group=None, at_s=None):
    m = Message()
    m.topic = topic
    m.body = body
    if tag:
        m.tag = tag
    if keys:
        m.keys = keys
    for name, value in (properties or {}).items():
        m.add_property(name, value)
    if group:
        m.message_group = group
    if at_s is not None:
        m.delivery_timestamp = at_s
    return m


def receive_until(c, want, invisible_s=15, deadline_s=DEADLINE_S, ack=True):
    """Receives until `want` messages came or the deadline passed; acks each when asked."""
    got = []
    end = time.monotonic() + deadline_s
    while len(got) < want and time.monotonic() < end:
        for m in c.receive(32, invisible_s):
            got.append(m)
            if ack:
                c.ack(m)
    return got


def roundtrip():
    """Normal messages with tags, keys and properties; a tag filter; a change of the
    invisible duration that makes a message come back with its attempt counted."""
    topic = os.environ["SLUICE_TOPIC"]
    p = producer(topic)
    sent = {}
    for i in range(6):
        tag = "TagA" if i % 2 == 0 else "TagB"
        body = f"body-{i}".encode()
        receipt = p.send(message(topic, body, tag=tag, keys=f"key-{i}",
                                 properties={"index": str(i), "kind": "roundtrip"}))
        check(receipt.message_id, "a send answers a message id")
        sent[receipt.message_id] = (body, tag, i)
    everything = consumer(topic, "all-tags")
    got = receive_until(everything, len(sent))
    check(len(got) == len(sent), f"every message arrives: {len(got)} of {len(sent)}")
    for m in got:
        body, tag, i = sent[m.message_id]
        check(m.body == body, f"the body of {m.message_id}")
        check(m.tag == tag, f"the tag of {m.message_id}: {m.tag}")
        check(m.keys == {f"key-{i}"}, f"the keys of {m.message_id}: {m.keys}")
        check(m.properties == {"index": str(i), "kind": "roundtrip"},
              f"the properties of {m.message_id}: {m.properties}")
        check(m.delivery_attempt == 1, f"a first delivery: {m.delivery_attempt}")
        check(not m.corrupted, "the body digest matches")
        check(m.topic == topic, "the topic")
    only_a = consumer(topic, "tag-a", "TagA")
    got_a = receive_until(only_a, 3)
    check(sorted(m.body for m in got_a) == [b"body-0", b"body-2", b"body-4"],
          f"a TagA filter gets the TagA messages: {[m.body for m in got_a]}")
    check(not only_a.receive(32, 15), "and nothing else")
    # Change the invisible duration: hide a message for 60 s, then make it visible in 1 s.
    receipt = p.send(message(topic, b"invisible", tag="TagC"))
    slow = consumer(topic, "slow", "TagC")
    first = receive_until(slow, 1, invisible_s=60, ack=False)
    check(len(first) == 1 and first[0].message_id == receipt.message_id, "the TagC message")
    handle = first[0].receipt_handle
    slow.change_invisible_duration(first[0], 1)
    check(first[0].receipt_handle, "a receipt handle after the change")
    again = receive_until(slow, 1, invisible_s=60, ack=False)
    check(len(again) == 1 and again[0].message_id == receipt.message_id,
          "the message comes back once its new invisible duration is over")
    check(again[0].delivery_attempt == 2, f"its second attempt: {again[0].delivery_attempt}")
    check(again[0].receipt_handle != handle, "a new delivery has a new receipt handle")
    slow.ack(again[0])
    check(not slow.receive(32, 15), "an acked message does not come back")
    for c in (everything, only_a, slow):
        c.shutdown()
    p.shutdown()
    print(json.dumps({"received": len(got), "tagged": len(got_a)}), flush=True)


def fifo():
    """FIFO messages of three message groups, interleaved, arrive in order per group."""
    topic = os.environ["SLUICE_TOPIC"]
    p = producer(topic)
    groups = ["g1", "g2", "g3"]
    per_group = 5
    for i in range(per_group):
        for g in groups:
            p.send(message(topic, f"{g}:{i}".encode(), group=g))
    c = consumer(topic, "fifo-readers")
    got = receive_until(c, per_group * len(groups))
    check(len(got) == per_group * len(groups), f"every FIFO message arrives: {len(got)}")
    for g in groups:
        order = [int(m.body.decode().split(":")[1]) for m in got if m.message_group == g]
        check(order == list(range(per_group)), f"group {g} in order: {order}")
    c.shutdown()
    p.shutdown()
    print(json.dumps({"received": len(got)}), flush=True)


def delay():
    """A scheduled message is not delivered before its time; a recalled one never is."""
    topic = os.environ["SLUICE_TOPIC"]
    p = producer(topic)
    c = consumer(topic, "delayed-readers")
    at_s = int(time.time()) + 3
    kept = p.send(message(topic, b"scheduled", at_s=at_s))
    recalled = p.send(message(topic, b"recalled", at_s=at_s))
    check(recalled.recall_handle, "a scheduled message has a recall handle")
    check(p.recall_message(topic, recalled.recall_handle) == recalled.message_id,
          "a recall answers the message id")
    got = []
    end = time.monotonic() + DEADLINE_S
    while not got and time.monotonic() < end:
        got = c.receive(32, 15)
        # The delivery time is on the client's clock; the server's may differ by a little.
        check(not got or time.time() >= at_s - 0.5,
              f"nothing arrives before the delivery time ({time.time()} < {at_s})")
    check([m.message_id for m in got] == [kept.message_id],
          f"the scheduled message arrives, the recalled one does not: {[m.body for m in got]}")
    c.ack(got[0])
    check(not c.receive(32, 15), "the recalled message never arrives")
    try:
        p.recall_message(topic, recalled.recall_handle)
        check(False, "a second recall is refused")
    except Exception as error:  # the client raises NotFoundException
        check("NotFound" in type(error).__name__, f"a second recall: {error!r}")
    c.shutdown()
    p.shutdown()
    print(json.dumps({"delivered": len(got)}), flush=True)


def query_route(topic, ak, sk):
    """The status code of a QueryRoute signed as the client signs (its own Signature and
    generated stub), to see the server's code behind a refused client call."""
    import grpc
    from rocketmq.grpc_protocol import MessagingServiceStub, QueryRouteRequest, Resource
    from rocketmq.v5.util.client_id import ClientId
    from rocketmq.v5.util.signature import Signature
    metadata = Signature.metadata(config(ak, sk), ClientId().client_id)
    with grpc.insecure_channel(ENDPOINT) as channel:
        answer = MessagingServiceStub(channel).QueryRoute(
            QueryRouteRequest(topic=Resource(name=topic)), metadata=metadata, timeout=5)
    return answer.status.code


def raw_call(method, payload, ak, sk):
    """A call of `method` with `payload` as the request's bytes, signed as the client
    signs: the gRPC status code it ends with."""
    import grpc
    from rocketmq.v5.util.client_id import ClientId
    from rocketmq.v5.util.signature import Signature
    metadata = Signature.metadata(config(ak, sk), ClientId().client_id)
    with grpc.insecure_channel(ENDPOINT) as channel:
        call = channel.unary_unary(f"/apache.rocketmq.v2.MessagingService/{method}",
                                   request_serializer=lambda x: x,
                                   response_deserializer=lambda x: x)
        try:
            call(payload, metadata=metadata, timeout=5)
            return grpc.StatusCode.OK
        except grpc.RpcError as error:
            return error.code()


def refused():
    """A wrong secret is refused (UNAUTHORIZED), and another tenant's topic does not
    exist for it (TOPIC_NOT_FOUND); the client's sends fail."""
    topic = os.environ["SLUICE_TOPIC"]
    ak, sk = os.environ["SLUICE_AK"], os.environ["SLUICE_SK"]
    other_ak, other_sk = os.environ["SLUICE_OTHER_AK"], os.environ["SLUICE_OTHER_SK"]
    check(query_route(topic, ak, sk) == 20000, "the owner finds its topic")
    check(query_route(topic, ak, "not-the-secret") == 40100, "a wrong secret: UNAUTHORIZED")
    check(query_route(topic, "NO-SUCH-AK", sk) == 40100, "an unknown AK: UNAUTHORIZED")
    check(query_route(topic, other_ak, other_sk) == 40402,
          "another tenant's topic: TOPIC_NOT_FOUND")
    for (a, s) in ((ak, "not-the-secret"), (other_ak, other_sk)):
        p = Producer(config(a, s), (topic,))
        p.startup()
        try:
            p.send(message(topic, b"x"))
            check(False, "the send is refused")
        except Exception as error:  # the client reports a route it could not fetch
            check("route" in str(error) or "40" in str(error), f"refused: {error!r}")
        p.shutdown()
    import grpc
    check(raw_call("PullMessage", b"", ak, sk) == grpc.StatusCode.UNIMPLEMENTED,
          "an RPC not served answers UNIMPLEMENTED")
    check(raw_call("SendMessage", b"\xff\xff\xff", ak, sk) == grpc.StatusCode.INVALID_ARGUMENT,
          "a request that does not decode ends with INVALID_ARGUMENT")
    check(raw_call("SendMessage", bytes(2 << 20), ak, sk) == grpc.StatusCode.RESOURCE_EXHAUSTED,
          "a request message over the server's limit ends with RESOURCE_EXHAUSTED")
    owner = producer(topic)
    check(owner.send(message(topic, b"mine")).message_id, "the owner still sends")
    owner.shutdown()
    print(json.dumps({"refused": 2}), flush=True)


class Checker(TransactionChecker):
    """Commits the orphaned transaction the server asks about; counts the checks."""

    def __init__(self):
        self.checked = []

    def check(self, message):
        self.checked.append(message.body)
        if message.body == b"orphan-commit":
            return TransactionResolution.COMMIT
        return TransactionResolution.ROLLBACK


def transaction():
    """A committed transaction's message is delivered after the commit, a rolled-back
    one never; an open one is checked through Telemetry and its producer's answer
    (commit) delivers it."""
    topic = os.environ["SLUICE_TOPIC"]
    checker = Checker()
    p = Producer(config(), (topic,), checker=checker)
    p.startup()
    c = consumer(topic, "tx-readers")
    committed = p.begin_transaction()
    sent = p.send(message(topic, b"committed"), committed)
    check(sent.transaction_id, "a transactional send answers a transaction id")
    check(not c.receive(32, 15), "a half message is not delivered before its commit")
    committed.commit()
    rolled_back = p.begin_transaction()
    p.send(message(topic, b"rolled-back"), rolled_back)
    rolled_back.rollback()
    orphan = p.begin_transaction()
    p.send(message(topic, b"orphan-commit"), orphan)
    got = receive_until(c, 2)
    bodies = sorted(m.body for m in got)
    check(bodies == [b"committed", b"orphan-commit"],
          f"the committed and the checked-then-committed messages arrive: {bodies}")
    check(checker.checked == [b"orphan-commit"],
          f"only the open transaction was checked: {checker.checked}")
    check(not c.receive(32, 15), "the rolled-back message never arrives")
    c.shutdown()
    p.shutdown()
    print(json.dumps({"delivered": len(got), "checked": len(checker.checked)}), flush=True)


class Listener(MessageListener):
    """Fails the first delivery of `fail-once`, consumes everything else; counts."""

    def __init__(self):
        self.attempts = {}

    def consume(self, m):
        self.attempts.setdefault(m.body, []).append(m.delivery_attempt)
        if m.body == b"fail-once" and m.delivery_attempt == 1:
            return ConsumeResult.FAILURE
        return ConsumeResult.SUCCESS


def push():
    """A push consumer (assignment, long polls with auto-renewed leases) consumes every
    message, and one it failed comes back as the next attempt."""
    topic = os.environ["SLUICE_TOPIC"]
    p = producer(topic)
    bodies = [b"one", b"two", b"fail-once"]
    for body in bodies:
        p.send(message(topic, body))
    listener = Listener()
    c = PushConsumer(config(), "pushers", listener, {topic: FilterExpression("*")})
    c.startup()
    end = time.monotonic() + DEADLINE_S
    # Polls the listener's record (the client consumes on its own threads).
    while time.monotonic() < end and len(listener.attempts.get(b"fail-once", [])) < 2:
        time.sleep(0.1)
    attempts = dict(listener.attempts)
    check(attempts.get(b"one") == [1] and attempts.get(b"two") == [1],
          f"each message is consumed once: {attempts}")
    check(attempts.get(b"fail-once") == [1, 2],
          f"a failed message comes back as attempt 2: {attempts}")
    p.shutdown()
    print(json.dumps({"consumed": sum(len(a) for a in attempts.values())}), flush=True)
    # The client's push consumer keeps threads that its shutdown does not always end (it
    # also logs a client-side metrics error on its Telemetry stream): exit at once.
    os._exit(0)


if __name__ == "__main__":
    {"roundtrip": roundtrip, "fifo": fifo, "delay": delay, "refused": refused,
     "transaction": transaction, "push": push}[sys.argv[1]]()
