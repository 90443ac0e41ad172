// The AWS SDK for JavaScript v3 (@aws-sdk/client-sqs) against a running Sluice
// (tests/sqs_clients.rs starts the server). The SDK itself checks the MD5 digests of
// bodies and message attributes on send and receive (its md5 middleware), so a wrong
// digest fails here. Exits non-zero on the first failure; the last line of a passing
// run is a JSON summary. Environment as tests/sqs/clients.py.

import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(process.env.SLUICE_AWS_SDK, 'index.js'));
const sqsSdk = require('@aws-sdk/client-sqs');
const {
  SQSClient, CreateQueueCommand, GetQueueUrlCommand, SendMessageCommand,
  SendMessageBatchCommand, ReceiveMessageCommand, DeleteMessageCommand,
  DeleteMessageBatchCommand, ListQueuesCommand, GetQueueAttributesCommand,
  DeleteQueueCommand, TagQueueCommand, ListQueueTagsCommand, PurgeQueueCommand,
  SetQueueAttributesCommand, ListDeadLetterSourceQueuesCommand, StartMessageMoveTaskCommand,
  ListMessageMoveTasksCommand, CancelMessageMoveTaskCommand, UntagQueueCommand,
  ChangeMessageVisibilityCommand, ChangeMessageVisibilityBatchCommand,
} = sqsSdk;

const ENDPOINT = process.env.SLUICE_ENDPOINT;

function fail(message) {
  console.error('FAIL: ' + message);
  process.exit(1);
}

function check(condition, message) {
  if (!condition) fail(message);
}

function client(ak, sk) {
  return new SQSClient({
    endpoint: ENDPOINT,
    region: 'region-1',
    credentials: { accessKeyId: ak, secretAccessKey: sk },
    maxAttempts: 1,
  });
}

async function errorName(promise) {
  try {
    await promise;
  } catch (error) {
    return error.name;
  }
  fail('the call succeeded');
}

async function receiveAll(sqs, url, expected, extra = {}) {
  const got = [];
  const deadline = Date.now() + 20000;
  while (got.length < expected && Date.now() < deadline) {
    const answer = await sqs.send(new ReceiveMessageCommand({
      QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, ...extra,
    }));
    got.push(...(answer.Messages || []));
  }
  return got;
}

// A redrive policy set after the create, its source listed, and a move task that takes
// the dead-letter queue's messages back to the source.
async function deadLetters(sqs) {
  const { QueueUrl: dlq } = await sqs.send(new CreateQueueCommand({ QueueName: 'js-dlq' }));
  const { QueueUrl: src } = await sqs.send(new CreateQueueCommand({ QueueName: 'js-src' }));
  const { Attributes: { QueueArn: dlqArn } } = await sqs.send(new GetQueueAttributesCommand({
    QueueUrl: dlq, AttributeNames: ['QueueArn'],
  }));
  const policy = JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: 5 });
  await sqs.send(new SetQueueAttributesCommand({ QueueUrl: src, Attributes: { RedrivePolicy: policy } }));
  const { Attributes: { RedrivePolicy: got } } = await sqs.send(new GetQueueAttributesCommand({
    QueueUrl: src, AttributeNames: ['RedrivePolicy'],
  }));
  check(JSON.parse(got).maxReceiveCount === 5, `the policy back: ${got}`);
  const sources = await sqs.send(new ListDeadLetterSourceQueuesCommand({ QueueUrl: dlq }));
  check(JSON.stringify(sources.queueUrls) === JSON.stringify([src]), `sources: ${JSON.stringify(sources)}`);
  await sqs.send(new SendMessageBatchCommand({
    QueueUrl: dlq, Entries: [1, 2, 3].map((i) => ({ Id: `m${i}`, MessageBody: `dead ${i}` })),
  }));
  const { TaskHandle: handle } = await sqs.send(new StartMessageMoveTaskCommand({ SourceArn: dlqArn }));
  check(handle, 'a task handle');
  const deadline = Date.now() + 30000;
  let tasks;
  do {
    ({ Results: tasks } = await sqs.send(new ListMessageMoveTasksCommand({ SourceArn: dlqArn })));
    check(Date.now() < deadline, `the task never completed: ${JSON.stringify(tasks)}`);
  } while (tasks[0].Status !== 'COMPLETED');
  check(tasks[0].ApproximateNumberOfMessagesMoved === 3, `moved: ${JSON.stringify(tasks)}`);
  const back = await receiveAll(sqs, src, 3);
  check(JSON.stringify(back.map((m) => m.Body).sort()) === JSON.stringify(['dead 1', 'dead 2', 'dead 3']),
    `moved back: ${JSON.stringify(back)}`);
  // A slow task (one a second) cancelled at once; then its handle is unknown.
  await sqs.send(new SendMessageBatchCommand({
    QueueUrl: dlq, Entries: [1, 2, 3, 4, 5].map((i) => ({ Id: `s${i}`, MessageBody: `slow ${i}` })),
  }));
  const { TaskHandle: slow } = await sqs.send(new StartMessageMoveTaskCommand({
    SourceArn: dlqArn, MaxNumberOfMessagesPerSecond: 1,
  }));
  const cancelled = await sqs.send(new CancelMessageMoveTaskCommand({ TaskHandle: slow }));
  check(cancelled.ApproximateNumberOfMessagesMoved < 5, `cancelled: ${JSON.stringify(cancelled)}`);
  const { Results: history } = await sqs.send(new ListMessageMoveTasksCommand({
    SourceArn: dlqArn, MaxResults: 10,
  }));
  check(history.map((t) => t.Status).join() === 'CANCELLED,COMPLETED', `tasks: ${JSON.stringify(history)}`);
  const again = await errorName(sqs.send(new CancelMessageMoveTaskCommand({ TaskHandle: slow })));
  check(again === 'ResourceNotFoundException', `a cancelled task's handle: ${again}`);
  await sqs.send(new DeleteQueueCommand({ QueueUrl: src }));
  await sqs.send(new DeleteQueueCommand({ QueueUrl: dlq }));
}

// Visibility: a delivery hidden longer, one made visible again at once (and received
// again), and a batch change with an entry whose delivery is over.
async function visibility(sqs, url) {
  await sqs.send(new SendMessageBatchCommand({
    QueueUrl: url, Entries: [1, 2].map((i) => ({ Id: `v${i}`, MessageBody: `visible ${i}` })),
  }));
  const got = await receiveAll(sqs, url, 2, { VisibilityTimeout: 30 });
  check(got.length === 2, `received ${got.length}`);
  await sqs.send(new ChangeMessageVisibilityCommand({
    QueueUrl: url, ReceiptHandle: got[0].ReceiptHandle, VisibilityTimeout: 0,
  }));
  const back = await receiveAll(sqs, url, 1, { VisibilityTimeout: 30 });
  check(back.length === 1 && back[0].Body === got[0].Body, `back: ${JSON.stringify(back)}`);
  const batch = await sqs.send(new ChangeMessageVisibilityBatchCommand({
    QueueUrl: url,
    Entries: [
      { Id: 'live', ReceiptHandle: got[1].ReceiptHandle, VisibilityTimeout: 60 },
      { Id: 'over', ReceiptHandle: got[0].ReceiptHandle, VisibilityTimeout: 60 },
    ],
  }));
  check(batch.Successful.length === 1 && batch.Successful[0].Id === 'live'
    && batch.Failed.length === 1 && batch.Failed[0].Id === 'over', `batch: ${JSON.stringify(batch)}`);
  await sqs.send(new DeleteMessageBatchCommand({
    QueueUrl: url,
    Entries: [back[0], got[1]].map((m, i) => ({ Id: `d${i}`, ReceiptHandle: m.ReceiptHandle })),
  }));
}

async function main() {
  const sqs = client(process.env.SLUICE_AK, process.env.SLUICE_SK);
  const { QueueUrl: url } = await sqs.send(new CreateQueueCommand({ QueueName: 'js-events' }));
  check(url.endsWith('/js-events'), `queue URL ${url}`);
  const found = await sqs.send(new GetQueueUrlCommand({ QueueName: 'js-events' }));
  check(found.QueueUrl === url, 'GetQueueUrl');
  const listed = await sqs.send(new ListQueuesCommand({ QueueNamePrefix: 'js-' }));
  check(listed.QueueUrls.includes(url), 'ListQueues');

  // Attributes of every type: the SDK checks MD5OfMessageAttributes on the answer.
  const attributes = {
    colour: { DataType: 'String', StringValue: 'green' },
    weight: { DataType: 'Number.kg', StringValue: '7' },
    raw: { DataType: 'Binary', BinaryValue: Uint8Array.from([0, 255, 7]) },
  };
  const sent = await sqs.send(new SendMessageCommand({
    QueueUrl: url, MessageBody: 'from node ✓', MessageAttributes: attributes,
  }));
  check(sent.MessageId && sent.MD5OfMessageAttributes, 'sent with digests');
  const batch = await sqs.send(new SendMessageBatchCommand({
    QueueUrl: url,
    Entries: [1, 2, 3].map((i) => ({
      Id: `e${i}`, MessageBody: `batch ${i}`,
      MessageAttributes: { n: { DataType: 'Number', StringValue: String(i) } },
    })),
  }));
  check(batch.Successful.length === 3, `batch ${JSON.stringify(batch)}`);

  // The SDK checks MD5OfBody and MD5OfMessageAttributes of each received message.
  const got = await receiveAll(sqs, url, 4, {
    MessageAttributeNames: ['All'], MessageSystemAttributeNames: ['All'],
  });
  check(got.length === 4, `received ${got.length}`);
  const first = got.find((m) => m.MessageId === sent.MessageId);
  check(first && first.Body === 'from node ✓', 'the body back');
  check(first.MessageAttributes.weight.DataType === 'Number.kg', 'custom type back');
  check(Buffer.from(first.MessageAttributes.raw.BinaryValue).equals(Buffer.from([0, 255, 7])),
    'binary back');
  check(first.Attributes.ApproximateReceiveCount === '1', 'receive count');
  await sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: first.ReceiptHandle }));
  const rest = got.filter((m) => m !== first);
  const deleted = await sqs.send(new DeleteMessageBatchCommand({
    QueueUrl: url,
    Entries: rest.map((m, i) => ({ Id: `d${i}`, ReceiptHandle: m.ReceiptHandle })),
  }));
  check(deleted.Successful.length === 3, 'batch delete');
  const counts = await sqs.send(new GetQueueAttributesCommand({
    QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages'],
  }));
  check(counts.Attributes.ApproximateNumberOfMessages === '0', 'drained');

  await visibility(sqs, url);

  await sqs.send(new TagQueueCommand({ QueueUrl: url, Tags: { team: 'js', env: 'test' } }));
  const tags = await sqs.send(new ListQueueTagsCommand({ QueueUrl: url }));
  check(JSON.stringify(tags.Tags) === JSON.stringify({ env: 'test', team: 'js' }),
    `tags: ${JSON.stringify(tags.Tags)}`);
  await sqs.send(new UntagQueueCommand({ QueueUrl: url, TagKeys: ['env'] }));
  const left = await sqs.send(new ListQueueTagsCommand({ QueueUrl: url }));
  check(JSON.stringify(left.Tags) === JSON.stringify({ team: 'js' }), `untagged: ${JSON.stringify(left.Tags)}`);
  const badTag = await errorName(sqs.send(new TagQueueCommand({ QueueUrl: url, Tags: { 'a|b': 'v' } })));
  check(badTag === 'InvalidParameterValue', `a bad tag key: ${badTag}`);
  await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'to purge' }));
  await sqs.send(new PurgeQueueCommand({ QueueUrl: url }));
  const again = await errorName(sqs.send(new PurgeQueueCommand({ QueueUrl: url })));
  check(again === 'PurgeQueueInProgress', `a second purge: ${again}`);
  const purged = await sqs.send(new ReceiveMessageCommand({
    QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
  }));
  check(!purged.Messages || purged.Messages.length === 0, 'nothing after the purge');

  await deadLetters(sqs);

  const other = client(process.env.SLUICE_OTHER_AK, process.env.SLUICE_OTHER_SK);
  const name = await errorName(other.send(new GetQueueUrlCommand({ QueueName: 'js-events' })));
  check(name === 'QueueDoesNotExist', `another tenant: ${name}`);
  const wrong = client(process.env.SLUICE_AK, process.env.SLUICE_SK + 'x');
  const refused = await errorName(wrong.send(new ListQueuesCommand({})));
  check(refused === 'SignatureDoesNotMatch', `a wrong secret: ${refused}`);

  await sqs.send(new DeleteQueueCommand({ QueueUrl: url }));
  const gone = await errorName(sqs.send(new GetQueueUrlCommand({ QueueName: 'js-events' })));
  check(gone === 'QueueDoesNotExist', `deleted: ${gone}`);
  console.log(JSON.stringify({ scenario: 'aws-sdk-js', passed: true }));
}

main().catch((error) => fail(error.stack || String(error)));
