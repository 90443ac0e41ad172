// kafkajs against Sluice's Kafka listener, driven by tests/kafka_clients.rs.
// Usage: node clients.js SCENARIO, with SLUICE_KAFKA, SLUICE_AK and SLUICE_SK set and
// kafkajs on NODE_PATH. Exits non-zero with a message on the first mismatch.
'use strict';
const { Kafka, logLevel } = require('kafkajs');

const kafka = new Kafka({
  clientId: 'sluice-test',
  brokers: [process.env.SLUICE_KAFKA],
  sasl: { mechanism: 'scram-sha-512', username: process.env.SLUICE_AK, password: process.env.SLUICE_SK },
  logLevel: logLevel.WARN,
  retry: { retries: 5 },
});

function check(condition, message) {
  if (!condition) {
    throw new Error('FAIL: ' + message);
  }
}

async function produceConsume() {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: 'js-events' }] });
  check((await admin.listTopics()).includes('js-events'), 'the created topic is listed');
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const messages = Array.from({ length: 100 }, (_, i) => ({
    key: 'k' + (i % 10),
    value: 'v' + i,
    headers: { trace: 't' + i },
    timestamp: String(1700000000000 + i),
  }));
  const sent = await producer.send({ topic: 'js-events', acks: -1, messages });
  check(sent.every((r) => r.errorCode === 0), 'every partition acknowledged: ' + JSON.stringify(sent));
  await producer.disconnect();
  const offsets = await admin.fetchTopicOffsets('js-events');
  const total = offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
  check(total === 100, '100 records stored: ' + JSON.stringify(offsets));
  // A consumer group reads them all back with their keys and headers, then commits.
  const consumer = kafka.consumer({ groupId: 'js-readers', sessionTimeout: 10000, heartbeatInterval: 500 });
  await consumer.connect();
  await consumer.subscribe({ topic: 'js-events', fromBeginning: true });
  const seen = new Map();
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('FAIL: read ' + seen.size + ' of 100 in time')), 60000);
    consumer.run({
      eachMessage: async ({ message }) => {
        seen.set(message.value.toString(), [message.key.toString(), message.headers.trace.toString()]);
        if (seen.size === 100) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  for (let i = 0; i < 100; i++) {
    const got = seen.get('v' + i);
    check(got && got[0] === 'k' + (i % 10) && got[1] === 't' + i, 'record v' + i + ' came back whole: ' + got);
  }
  await consumer.disconnect();
  const committed = await admin.fetchOffsets({ groupId: 'js-readers', topics: ['js-events'] });
  const sum = committed[0].partitions.reduce((s, p) => s + Number(p.offset), 0);
  check(sum === 100, 'the group committed every record: ' + JSON.stringify(committed));
  await admin.disconnect();
  console.log(JSON.stringify({ scenario: 'produce-consume', records: seen.size }));
}

const scenarios = { 'produce-consume': produceConsume };

scenarios[process.argv[2]]().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
