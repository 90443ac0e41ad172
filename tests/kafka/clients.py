"""Kafka clients against Sluice's Kafka listener, driven by tests/kafka_clients.rs.

Usage: clients.py SCENARIO, with SLUICE_KAFKA (host:port), SLUICE_AK, SLUICE_SK and, for
some scenarios, SLUICE_OTHER_AK/SLUICE_OTHER_SK (a second tenant) or SLUICE_TOPIC in the
environment. Every scenario checks what it gets and exits non-zero with a message on the
first mismatch; it prints JSON lines the Rust test may read.
"""

import json
import os
import sys
import time

BOOT = os.environ["SLUICE_KAFKA"]
AK = os.environ["SLUICE_AK"]
SK = os.environ["SLUICE_SK"]
# Every wait below is bounded: a hang fails the scenario instead of the test run.
DEADLINE_S = 60


def fail(message):
    print("FAIL: " + message, flush=True)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def kp_common(ak=AK, sk=SK, mechanism="PLAIN"):
    return dict(
        bootstrap_servers=BOOT,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_plain_username=ak,
        sasl_plain_password=sk,
        request_timeout_ms=30000,
    )


def ck_common(ak=AK, sk=SK, mechanism="PLAIN"):
    return {
        "bootstrap.servers": BOOT,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": ak,
        "sasl.password": sk,
    }


def kafka_python():
    """kafka-python: topics, produce with acks 0, 1 and all, keys, headers and timestamps
    back by assignment, ListOffsets, a wrong secret refused, another tenant's topic
    invisible."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewPartitions, NewTopic
    from kafka.errors import InvalidPartitionsError, KafkaError

    admin = KafkaAdminClient(**kp_common())
    admin.create_topics([NewTopic("kp-orders", num_partitions=2, replication_factor=1)])
    check("kp-orders" in admin.list_topics(), "created topic is listed")
    # A topic of one partition: the clients see one, records go there; it grows to two
    # (CreatePartitions), never shrinks, and a new producer stores on the new partition.
    admin.create_topics([NewTopic("kp-single", num_partitions=1, replication_factor=1)])
    single = KafkaProducer(acks="all", **kp_common())
    for i in range(5):
        metadata = single.send("kp-single", value=b"one-%d" % i).get(timeout=DEADLINE_S)
        check(metadata.partition == 0, "a one-partition topic stores on partition 0")
    check(single.partitions_for("kp-single") == {0}, "the producer sees one partition")
    single.close()
    admin.create_partitions({"kp-single": NewPartitions(total_count=2)})
    for count in (2, 1, 1000):
        try:
            admin.create_partitions({"kp-single": NewPartitions(total_count=count)})
            fail("a topic's partition count became %d" % count)
        except InvalidPartitionsError:
            pass
    grown = KafkaProducer(acks="all", **kp_common())
    check(grown.partitions_for("kp-single") == {0, 1}, "the producer sees the grown topic")
    metadata = grown.send("kp-single", value=b"two", partition=1).get(timeout=DEADLINE_S)
    check(metadata.partition == 1 and metadata.offset == 0, "the new partition starts at 0")
    grown.close()
    sent = {}
    for acks in (0, 1, "all"):
        producer = KafkaProducer(acks=acks, **kp_common())
        for i in range(20):
            value = ("acks=%s #%d" % (acks, i)).encode()
            future = producer.send(
                "kp-orders",
                key=b"key-%d" % i,
                value=value,
                headers=[("trace", b"t-%d" % i)],
                partition=i % 2,
                timestamp_ms=1_700_000_000_000 + i,
            )
            if acks != 0:
                metadata = future.get(timeout=DEADLINE_S)
                check(metadata.partition == i % 2, "acked on the asked partition")
            sent[value] = (b"key-%d" % i, b"t-%d" % i, 1_700_000_000_000 + i)
        producer.flush(timeout=DEADLINE_S)
        producer.close()
    consumer = KafkaConsumer(
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
        **kp_common(),
    )
    partitions = [TopicPartition("kp-orders", 0), TopicPartition("kp-orders", 1)]
    consumer.assign(partitions)
    got = {}
    started = time.time()
    while len(got) < len(sent) and time.time() - started < DEADLINE_S:
        for records in consumer.poll(timeout_ms=1000).values():
            for record in records:
                got[record.value] = (record.key, dict(record.headers)["trace"], record.timestamp)
    check(got == sent, "every record back with its key, header and timestamp: %d of %d" % (len(got), len(sent)))
    ends = consumer.end_offsets(partitions)
    check(sum(ends.values()) == 60, "end offsets count 60 records: %s" % ends)
    starts = consumer.beginning_offsets(partitions)
    check(all(v == 0 for v in starts.values()), "beginning offsets are 0: %s" % starts)
    consumer.close()

    # Another tenant sees none of this tenant's topics, and its produce is refused.
    other = dict(kp_common(os.environ["SLUICE_OTHER_AK"], os.environ["SLUICE_OTHER_SK"]))
    other_admin = KafkaAdminClient(**other)
    check("kp-orders" not in other_admin.list_topics(), "another tenant's topic is invisible")
    other_producer = KafkaProducer(acks="all", max_block_ms=3000, **other)
    try:
        other_producer.send("kp-orders", b"intruder").get(timeout=10)
        fail("a produce to another tenant's topic succeeded")
    except KafkaError:
        pass
    other_producer.close()

    # A wrong secret is refused.
    started = time.time()
    try:
        KafkaAdminClient(**{**kp_common(AK, SK + "x"), "request_timeout_ms": 5000})
        fail("a wrong secret was accepted")
    except KafkaError:
        pass
    print(json.dumps({"wrong_secret_refused_s": round(time.time() - started, 1)}), flush=True)
    print(json.dumps({"scenario": "kafka-python", "records": len(got)}), flush=True)


def confluent():
    """confluent-kafka (librdkafka): SCRAM-SHA-256 and -512, an idempotent producer with
    acks=all compressing with snappy, lz4, zstd and gzip, and a read back by assignment."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(ck_common(mechanism="SCRAM-SHA-256"))
    futures = admin.create_topics([NewTopic("ck-events", num_partitions=2)])
    for future in futures.values():
        future.result(timeout=DEADLINE_S)
    delivered = []
    # Both SCRAM mechanisms, and every compression codec librdkafka has (the values
    # repeat themselves, so each batch really is compressed).
    runs = [("SCRAM-SHA-256", "snappy"), ("SCRAM-SHA-256", "lz4"),
            ("SCRAM-SHA-512", "zstd"), ("SCRAM-SHA-512", "gzip")]
    for mechanism, codec in runs:
        producer = Producer(
            {**ck_common(mechanism=mechanism), "acks": "all", "enable.idempotence": True,
             "compression.type": codec, "linger.ms": 5}
        )

        def on_delivery(error, message):
            check(error is None, "delivery failed: %s" % error)
            delivered.append(message.value())

        for i in range(100):
            value = b"%s-%s-%d-%s" % (mechanism.encode(), codec.encode(), i, b"abcd" * 50)
            producer.produce("ck-events", key=b"k%d" % (i % 7), value=value, on_delivery=on_delivery)
            producer.poll(0)
        check(producer.flush(DEADLINE_S) == 0, "everything delivered with %s" % codec)
    check(len(delivered) == 400, "400 deliveries: %d" % len(delivered))
    consumer = Consumer({**ck_common(), "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition("ck-events", p, 0) for p in (0, 1)])
    got = set()
    started = time.time()
    while len(got) < 400 and time.time() - started < DEADLINE_S:
        message = consumer.poll(1.0)
        if message is None:
            continue
        check(not message.error(), "consume error: %s" % message.error())
        got.add(message.value())
    check(got == set(delivered), "every delivered record read back once: %d" % len(got))
    consumer.close()
    print(json.dumps({"scenario": "confluent", "records": len(got)}), flush=True)


def produce_acked():
    """Produces with acks=all until killed, printing each acknowledged value."""
    from confluent_kafka import Producer

    topic = os.environ["SLUICE_TOPIC"]
    producer = Producer({**ck_common(), "acks": "all", "enable.idempotence": True, "linger.ms": 1, "message.timeout.ms": 20000})

    def on_delivery(error, message):
        if error is None:
            print("acked " + message.value().decode(), flush=True)

    i = 0
    started = time.time()
    while time.time() - started < DEADLINE_S:
        producer.produce(topic, value=b"m%d" % i, on_delivery=on_delivery)
        i += 1
        producer.poll(0.002)
    producer.flush(10)


def consume_all():
    """Reads every record of SLUICE_TOPIC from the start and prints their values."""
    from confluent_kafka import Consumer, TopicPartition

    topic = os.environ["SLUICE_TOPIC"]
    partitions = int(os.environ.get("SLUICE_PARTITIONS", "2"))
    consumer = Consumer({**ck_common(), "group.id": "reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    idle = 0
    while idle < 5:
        message = consumer.poll(1.0)
        if message is None:
            idle += 1
            continue
        check(not message.error(), "consume error: %s" % message.error())
        idle = 0
        print("read " + message.value().decode(), flush=True)
    consumer.close()


def create_topic():
    """Creates SLUICE_TOPIC."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(**kp_common())
    admin.create_topics([NewTopic(os.environ["SLUICE_TOPIC"], num_partitions=2, replication_factor=1)])
    admin.close()


def produce_values(topic, values, partitions=2):
    """Produces `values` round-robin over the partitions with acks=all."""
    from confluent_kafka import Producer

    producer = Producer({**ck_common(), "acks": "all"})
    for i, value in enumerate(values):
        producer.produce(topic, value=value, partition=i % partitions)
    check(producer.flush(DEADLINE_S) == 0, "everything delivered")


def group_consumer(group):
    from confluent_kafka import Consumer

    return Consumer(
        {
            **ck_common(),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        }
    )


def groups():
    """librdkafka classic consumer group: one member takes both partitions, commits what
    it read; a second member joins and the partitions are split between them (a
    rebalance); together they read the rest; the committed offsets are what was read."""
    from confluent_kafka import TopicPartition

    topic = os.environ["SLUICE_TOPIC"]
    create_topic()
    produce_values(topic, [b"g%d" % i for i in range(100)])
    first = group_consumer("readers")
    first.subscribe([topic])
    seen = set()
    started = time.time()
    while len(seen) < 40 and time.time() - started < DEADLINE_S:
        message = first.poll(1.0)
        if message is None or message.error():
            continue
        seen.add(message.value())
    check(len(first.assignment()) == 2, "a lone member holds both partitions")
    first.commit(asynchronous=False)
    second = group_consumer("readers")
    second.subscribe([topic])
    started = time.time()
    while time.time() - started < DEADLINE_S:
        for consumer in (first, second):
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                seen.add(message.value())
        if len(first.assignment()) == 1 and len(second.assignment()) == 1 and len(seen) == 100:
            break
    check(len(first.assignment()) == 1 and len(second.assignment()) == 1, "a rebalance split the partitions")
    check(len(seen) == 100, "the two members read every record: %d" % len(seen))
    for consumer in (first, second):
        consumer.commit(asynchronous=False)
    committed = first.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
    check([tp.offset for tp in committed] == [50, 50], "committed offsets: %s" % committed)
    first.close()
    second.close()
    # More records for the resume after a restart.
    produce_values(topic, [b"after-%d" % i for i in range(10)])
    print(json.dumps({"scenario": "groups", "records": len(seen)}), flush=True)


def resume():
    """A member of the group resumes from the committed offsets: it reads exactly the
    records produced after the commit."""
    topic = os.environ["SLUICE_TOPIC"]
    consumer = group_consumer("readers")
    consumer.subscribe([topic])
    got = []
    started = time.time()
    idle = 0
    while idle < 3 and time.time() - started < DEADLINE_S:
        message = consumer.poll(1.0)
        if message is None:
            idle += 1 if got else 0
            continue
        if message.error():
            continue
        got.append(message.value())
    consumer.close()
    check(sorted(got) == sorted(b"after-%d" % i for i in range(10)), "resumed at the commit: %s" % got)
    print(json.dumps({"scenario": "resume", "records": len(got)}), flush=True)


def share():
    """librdkafka share consumer (KIP-932): explicit acknowledgements; released records
    come back with a higher delivery count, accepted ones never."""
    from confluent_kafka import AcknowledgeType, ShareConsumer

    topic = os.environ["SLUICE_TOPIC"]
    create_topic()
    produce_values(topic, [b"s%d" % i for i in range(50)])
    consumer = ShareConsumer({**ck_common(), "group.id": "sharers", "share.acknowledgement.mode": "explicit"})
    consumer.subscribe([topic])
    accepted = set()
    released = set()
    redelivered = {}
    started = time.time()
    while len(accepted) < 50 and time.time() - started < DEADLINE_S:
        for message in consumer.poll(1.0):
            check(not message.error(), "share fetch error: %s" % message.error())
            value = message.value()
            check(value not in accepted, "an accepted record came back: %s" % value)
            if value in released:
                redelivered[value] = message.delivery_count()
            if value.endswith(b"7") and value not in released:
                released.add(value)
                consumer.acknowledge(message, AcknowledgeType.RELEASE)
            else:
                accepted.add(value)
                consumer.acknowledge(message, AcknowledgeType.ACCEPT)
    check(len(accepted) == 50, "every record accepted once: %d" % len(accepted))
    check(set(redelivered) == released, "every released record came back")
    check(all(count >= 2 for count in redelivered.values()), "with a higher delivery count: %s" % redelivered)
    consumer.close()
    print(json.dumps({"scenario": "share", "records": len(accepted), "released": len(released)}), flush=True)


SCENARIOS = {
    "groups": groups,
    "resume": resume,
    "share": share,
    "create-topic": create_topic,
    "kafka-python": kafka_python,
    "confluent": confluent,
    "produce-acked": produce_acked,
    "consume-all": consume_all,
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]]()
