"""SQS client scenarios against a running Sluice (tests/sqs_clients.rs starts the server).

Each scenario checks every answer itself and exits non-zero on the first failure; the
last line of a passing run is a JSON summary. Environment: SLUICE_ENDPOINT (the HTTP
endpoint), SLUICE_AK / SLUICE_SK (a tenant), SLUICE_OTHER_AK / SLUICE_OTHER_SK (another
tenant), SLUICE_PROJECT (the first tenant's project id).
"""

import base64
import hashlib
import json
import os
import struct
import sys
import time

ENDPOINT = os.environ["SLUICE_ENDPOINT"]
PROJECT = os.environ["SLUICE_PROJECT"]
REGION = "region-1"


def fail(message):
    print("FAIL: " + message, file=sys.stderr, flush=True)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def client(ak=None, sk=None):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "sqs",
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id=ak or os.environ["SLUICE_AK"],
        aws_secret_access_key=sk or os.environ["SLUICE_SK"],
        config=Config(retries={"max_attempts": 1}, read_timeout=30),
    )


def error_code(call):
    """The error code a call fails with (fails the scenario when it succeeds)."""
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"]
    fail("the call succeeded")


def attributes_md5(attributes):
    """SQS's digest of message attributes, written here from the published algorithm."""
    encoded = b""
    for name in sorted(attributes):
        value = attributes[name]
        data_type = value["DataType"]
        encoded += struct.pack(">I", len(name.encode())) + name.encode()
        encoded += struct.pack(">I", len(data_type.encode())) + data_type.encode()
        if "BinaryValue" in value:
            raw = value["BinaryValue"]
            encoded += b"\x02" + struct.pack(">I", len(raw)) + raw
        else:
            raw = value["StringValue"].encode()
            encoded += b"\x01" + struct.pack(">I", len(raw)) + raw
    return hashlib.md5(encoded).hexdigest()


def receive_all(sqs, url, expected, **extra):
    """Receives until `expected` messages came (or 20 s passed); answers them."""
    got = []
    deadline = time.time() + 20
    while len(got) < expected and time.time() < deadline:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, **extra)
        got.extend(answer.get("Messages", []))
    return got


def queues(sqs):
    """Queues: create (idempotent; other attributes refused), URL, list with pagination,
    attributes, delete; another tenant's queues invisible; a wrong secret refused."""
    url = sqs.create_queue(QueueName="orders", Attributes={"VisibilityTimeout": "45"})["QueueUrl"]
    check(url == "%s/%s/orders" % (ENDPOINT, PROJECT), "queue URL %r" % url)
    answer = sqs.get_queue_url(QueueName="orders")
    check(len(answer["ResponseMetadata"].get("RequestId", "")) == 20, "a request id: %s" % answer)
    again = sqs.create_queue(QueueName="orders", Attributes={"VisibilityTimeout": "45"})["QueueUrl"]
    check(again == url, "creating the same queue again answers its URL")
    code = error_code(lambda: sqs.create_queue(QueueName="orders", Attributes={"VisibilityTimeout": "5"}))
    check(code in ("QueueAlreadyExists", "QueueNameExists"), "different attributes refused: %s" % code)
    check(sqs.get_queue_url(QueueName="orders")["QueueUrl"] == url, "GetQueueUrl")
    code = error_code(lambda: sqs.create_queue(QueueName="bad name!"))
    check(code == "InvalidParameterValue", "a bad name is refused: %s" % code)
    code = error_code(lambda: sqs.create_queue(QueueName="q", Attributes={"Colour": "blue"}))
    check(code == "InvalidAttributeName", "an unknown attribute is refused: %s" % code)

    for i in range(3):
        sqs.create_queue(QueueName="page-%d" % i)
    first = sqs.list_queues(QueueNamePrefix="page-", MaxResults=2)
    check(len(first["QueueUrls"]) == 2 and "NextToken" in first, "first page: %s" % first)
    rest = sqs.list_queues(QueueNamePrefix="page-", MaxResults=2, NextToken=first["NextToken"])
    names = [u.rsplit("/", 1)[1] for u in first["QueueUrls"] + rest["QueueUrls"]]
    check(names == ["page-0", "page-1", "page-2"], "pages: %s" % names)
    check(url in sqs.list_queues()["QueueUrls"], "ListQueues lists it")

    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    check(attributes["VisibilityTimeout"] == "45", "VisibilityTimeout kept: %s" % attributes)
    check(attributes["ApproximateNumberOfMessages"] == "0", "empty: %s" % attributes)
    check(attributes["QueueArn"].endswith(":%s:orders" % PROJECT), "ARN: %s" % attributes)

    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "60", "DelaySeconds": "0"})
    changed = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
    check(changed["Attributes"] == {"VisibilityTimeout": "60"}, "changed: %s" % changed)
    code = error_code(lambda: sqs.set_queue_attributes(
        QueueUrl=url, Attributes={"MessageRetentionPeriod": "600"}))
    check(code == "InvalidParameterValue", "retention is fixed: %s" % code)
    code = error_code(lambda: sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "-1"}))
    check(code == "InvalidParameterValue", "a bad value: %s" % code)

    other = client(os.environ["SLUICE_OTHER_AK"], os.environ["SLUICE_OTHER_SK"])
    code = error_code(lambda: other.get_queue_url(QueueName="orders"))
    check(code == "AWS.SimpleQueueService.NonExistentQueue", "another tenant: %s" % code)
    code = error_code(lambda: other.send_message(QueueUrl=url, MessageBody="intruder"))
    check(code == "AWS.SimpleQueueService.NonExistentQueue", "another tenant's URL: %s" % code)
    check(url not in other.list_queues().get("QueueUrls", []), "another tenant lists none of it")

    wrong = client(os.environ["SLUICE_AK"], os.environ["SLUICE_SK"] + "x")
    code = error_code(lambda: wrong.list_queues())
    check(code == "SignatureDoesNotMatch", "a wrong secret: %s" % code)
    stranger = client("AKNOBODY", "secret")
    code = error_code(lambda: stranger.list_queues())
    check(code == "InvalidClientTokenId", "an unknown key: %s" % code)

    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName="page-2")["QueueUrl"])
    code = error_code(lambda: sqs.get_queue_url(QueueName="page-2"))
    check(code == "AWS.SimpleQueueService.NonExistentQueue", "deleted: %s" % code)
    print(json.dumps({"scenario": "queues"}), flush=True)


def messages(sqs):
    """Send with attributes (digests checked here), receive with system attributes,
    delete; batches; the batch limit; visibility expiry brings a message back."""
    url = sqs.create_queue(QueueName="events")["QueueUrl"]
    attributes = {
        "colour": {"DataType": "String", "StringValue": "blue"},
        "count": {"DataType": "Number", "StringValue": "42"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe"},
    }
    sent = sqs.send_message(QueueUrl=url, MessageBody="héllo", MessageAttributes=attributes)
    check(sent["MD5OfMessageBody"] == hashlib.md5("héllo".encode()).hexdigest(), "body MD5")
    check(sent["MD5OfMessageAttributes"] == attributes_md5(attributes), "attributes MD5: %s" % sent)
    got = receive_all(sqs, url, 1, MessageAttributeNames=["All"], AttributeNames=["All"])
    check(len(got) == 1, "one message: %s" % got)
    message = got[0]
    check(message["Body"] == "héllo" and message["MessageId"] == sent["MessageId"], "the message")
    check(message["MD5OfBody"] == sent["MD5OfMessageBody"], "MD5OfBody")
    check(message["MessageAttributes"]["blob"]["BinaryValue"] == b"\x00\x01\xfe", "binary back")
    check(message["MessageAttributes"]["count"]["StringValue"] == "42", "number back")
    check(message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"], "MD5 on receive")
    check(message["Attributes"]["ApproximateReceiveCount"] == "1", "receive count")
    check(abs(int(message["Attributes"]["SentTimestamp"]) / 1000 - time.time()) < 60, "sent time")
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    # Deleting again succeeds (SQS's rule), a forged handle is refused.
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    code = error_code(lambda: sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle"))
    check(code == "ReceiptHandleIsInvalid", "a forged handle: %s" % code)

    # Over SQS's 256 KiB: refused by the adapter; over the server's request body bound:
    # refused before it, in SQS's format all the same.
    code = error_code(lambda: sqs.send_message(QueueUrl=url, MessageBody="x" * (300 << 10)))
    check(code == "InvalidParameterValue", "a message over 256 KiB: %s" % code)
    code = error_code(lambda: sqs.send_message(QueueUrl=url, MessageBody="x" * (3 << 20)))
    check(code == "RequestEntityTooLarge", "a body over the server's bound: %s" % code)

    entries = [{"Id": "m%d" % i, "MessageBody": "batch %d" % i} for i in range(10)]
    answer = sqs.send_message_batch(QueueUrl=url, Entries=entries)
    check(len(answer["Successful"]) == 10 and not answer.get("Failed"), "batch: %s" % answer)
    code = error_code(lambda: sqs.send_message_batch(
        QueueUrl=url, Entries=entries + [{"Id": "m10", "MessageBody": "x"}]))
    check(code == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", "11 entries: %s" % code)
    got = receive_all(sqs, url, 10)
    check(sorted(m["Body"] for m in got) == sorted(e["MessageBody"] for e in entries), "batch back")
    deleted = sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[{"Id": "d%d" % i, "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got[:9])]
        + [{"Id": "forged", "ReceiptHandle": "nonsense"}],
    )
    check(len(deleted["Successful"]) == 9, "batch delete: %s" % deleted)
    check([f["Id"] for f in deleted["Failed"]] == ["forged"], "forged entry fails alone")
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[9]["ReceiptHandle"])
    left = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    check("Messages" not in left, "nothing left: %s" % left)

    # Visibility: a received message not deleted comes back after its timeout.
    sqs.send_message(QueueUrl=url, MessageBody="again")
    first = receive_all(sqs, url, 1, VisibilityTimeout=1,
                        AttributeNames=["ApproximateFirstReceiveTimestamp"])
    check(len(first) == 1, "received once")
    first_at = int(first[0]["Attributes"]["ApproximateFirstReceiveTimestamp"])
    check(abs(first_at / 1000 - time.time()) < 60, "first receive time: %s" % first)
    second = receive_all(sqs, url, 1, VisibilityTimeout=30, AttributeNames=[
        "ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp"])
    check(len(second) == 1 and second[0]["Body"] == "again", "back after visibility: %s" % second)
    check(second[0]["Attributes"]["ApproximateReceiveCount"] == "2", "second receive counted")
    check(second[0]["Attributes"]["ApproximateFirstReceiveTimestamp"] == str(first_at),
          "the first receive's time kept: %s" % second)
    # ChangeMessageVisibility: 0 makes it visible again at once (within the server's
    # tick), a batch extends leases, a delivery that is over is not in flight.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=second[0]["ReceiptHandle"], VisibilityTimeout=0)
    third = receive_all(sqs, url, 1, VisibilityTimeout=30)
    check(len(third) == 1 and third[0]["Body"] == "again", "visible after a change to 0: %s" % third)
    code = error_code(lambda: sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=second[0]["ReceiptHandle"], VisibilityTimeout=10))
    check(code == "AWS.SimpleQueueService.MessageNotInflight", "an old delivery: %s" % code)
    changed = sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
        {"Id": "live", "ReceiptHandle": third[0]["ReceiptHandle"], "VisibilityTimeout": 120},
        {"Id": "old", "ReceiptHandle": second[0]["ReceiptHandle"], "VisibilityTimeout": 120},
    ])
    check([e["Id"] for e in changed["Successful"]] == ["live"], "batch change: %s" % changed)
    check([e["Id"] for e in changed["Failed"]] == ["old"], "batch change fails the old one")
    sqs.delete_message(QueueUrl=url, ReceiptHandle=third[0]["ReceiptHandle"])
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    check(attributes["Attributes"]["ApproximateNumberOfMessages"] == "0", "drained: %s" % attributes)
    print(json.dumps({"scenario": "messages"}), flush=True)


def fifo(sqs):
    """FIFO: order within a message group, deduplication by content, MessageGroupId
    required, SequenceNumber answered."""
    url = sqs.create_queue(
        QueueName="jobs.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    code = error_code(lambda: sqs.create_queue(QueueName="plain.fifo"))
    check(code == "InvalidParameterValue", ".fifo without FifoQueue: %s" % code)
    for i in range(5):
        answer = sqs.send_message(QueueUrl=url, MessageBody="job %d" % i, MessageGroupId="g1")
        check("SequenceNumber" in answer, "a sequence number: %s" % answer)
    again = sqs.send_message(QueueUrl=url, MessageBody="job 0", MessageGroupId="g1")
    code = error_code(lambda: sqs.send_message(QueueUrl=url, MessageBody="x"))
    check(code == "MissingParameter", "no MessageGroupId: %s" % code)
    order = []
    deadline = time.time() + 20
    while len(order) < 5 and time.time() < deadline:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                     AttributeNames=["MessageGroupId"],
                                     MessageSystemAttributeNames=["MessageDeduplicationId"])
        for message in answer.get("Messages", []):
            check(message["Attributes"]["MessageGroupId"] == "g1", "group attribute")
            content = hashlib.sha256(message["Body"].encode()).hexdigest()
            check(message["Attributes"]["MessageDeduplicationId"] == content,
                  "the content's dedup id: %s" % message["Attributes"])
            order.append(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    check(order == ["job %d" % i for i in range(5)], "FIFO order, the duplicate dropped: %s" % order)
    check(again["MessageId"] is not None, "the duplicate is answered")

    # ReceiveRequestAttemptId: a retried receive answers the same messages and handles.
    for i in range(2):
        sqs.send_message(QueueUrl=url, MessageBody="retry %d" % i, MessageGroupId="g9")
    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=5,
                                ReceiveRequestAttemptId="attempt-1")["Messages"]
    retried = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                  ReceiveRequestAttemptId="attempt-1")["Messages"]
    check([m["ReceiptHandle"] for m in retried] == [m["ReceiptHandle"] for m in first]
          and [m["Body"] for m in retried] == [m["Body"] for m in first],
          "the retry answers the same: %s %s" % (first, retried))
    check("Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10),
          "without the attempt id, the group stays locked")
    code = error_code(lambda: sqs.receive_message(QueueUrl=url, ReceiveRequestAttemptId="a b"))
    check(code == "InvalidParameterValue", "a bad attempt id: %s" % code)
    for message in retried:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    print(json.dumps({"scenario": "fifo"}), flush=True)


def dedup_scopes(sqs):
    """FIFO deduplication scopes: queue-wide by default (an id repeated in another group is
    the same message), per message group when asked (it is another message); the scope is
    fixed once the queue exists and only FIFO queues have it; group and dedup ids bounded."""
    wide = sqs.create_queue(QueueName="wide.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    narrow = sqs.create_queue(QueueName="narrow.fifo", Attributes={
        "FifoQueue": "true", "DeduplicationScope": "messageGroup",
        "FifoThroughputLimit": "perMessageGroupId"})["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=wide, AttributeNames=["All"])["Attributes"]
    check(attributes["DeduplicationScope"] == "queue"
          and attributes["FifoThroughputLimit"] == "perQueue", "defaults: %s" % attributes)
    attributes = sqs.get_queue_attributes(QueueUrl=narrow, AttributeNames=["All"])["Attributes"]
    check(attributes["DeduplicationScope"] == "messageGroup"
          and attributes["FifoThroughputLimit"] == "perMessageGroupId", "asked: %s" % attributes)
    for url, same in [(wide, True), (narrow, False)]:
        ids = [sqs.send_message(QueueUrl=url, MessageBody="from %s" % group, MessageGroupId=group,
                                MessageDeduplicationId="order-1")["MessageId"]
               for group in ["g1", "g2", "g3", "g4"]]
        check((len(set(ids)) == 1) == same and (len(set(ids)) == 4) != same,
              "the same dedup id in four groups, one message %s: %s" % (same, ids))
        count = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"]
        check(count == ("1" if same else "4"), "messages stored: %s" % count)
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5, MessageSystemAttributeNames=[
            "MessageDeduplicationId"]).get("Messages", [])
        check(len(got) == 1 and got[0]["Attributes"]["MessageDeduplicationId"] == "order-1",
              "the dedup id as sent: %s" % got)
    code = error_code(lambda: sqs.set_queue_attributes(
        QueueUrl=wide, Attributes={"DeduplicationScope": "messageGroup"}))
    check(code == "InvalidParameterValue", "the scope is fixed: %s" % code)
    code = error_code(lambda: sqs.create_queue(
        QueueName="plain-scope", Attributes={"DeduplicationScope": "queue"}))
    check(code == "InvalidAttributeName", "a standard queue has no scope: %s" % code)
    code = error_code(lambda: sqs.create_queue(QueueName="odd.fifo", Attributes={
        "FifoQueue": "true", "FifoThroughputLimit": "perGroup"}))
    check(code == "InvalidParameterValue", "an unknown throughput limit: %s" % code)
    for group, dedup in [("g" * 129, "d"), ("g", "d" * 129), ("has space", "d"), ("g", "")]:
        code = error_code(lambda: sqs.send_message(
            QueueUrl=wide, MessageBody="x", MessageGroupId=group, MessageDeduplicationId=dedup))
        check(code == "InvalidParameterValue", "ids %r %r: %s" % (group[:8], dedup[:8], code))
    sqs.delete_queue(QueueUrl=wide)
    sqs.delete_queue(QueueUrl=narrow)
    print(json.dumps({"scenario": "dedup_scopes"}), flush=True)


def presigned(sqs):
    """A request presigned by botocore's SigV4QueryAuth (the signature in the query
    string, no Authorization header) is served; the same URL changed is refused."""
    import urllib.error
    import urllib.request

    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = sqs.create_queue(QueueName="presigned")["QueueUrl"]
    request = AWSRequest(method="POST", url=ENDPOINT + "/", data=b"", headers={
        "X-Amz-Target": "AmazonSQS.ListQueues",
        "Content-Type": "application/x-amz-json-1.0",
    })
    credentials = Credentials(os.environ["SLUICE_AK"], os.environ["SLUICE_SK"])
    SigV4QueryAuth(credentials, "sqs", REGION, expires=60).add_auth(request)
    check("X-Amz-Signature=" in request.url and "Authorization" not in request.headers,
          "botocore presigned in the query: %s" % request.url)

    def send(target):
        prepared = AWSRequest(method="POST", url=target, data=b"",
                              headers=dict(request.headers)).prepare()
        call = urllib.request.Request(prepared.url, data=b"", method="POST",
                                      headers=dict(prepared.headers))
        try:
            with urllib.request.urlopen(call, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    status, answer = send(request.url)
    check(status == 200 and url in answer.get("QueueUrls", []),
          "a presigned ListQueues: %s %s" % (status, answer))
    status, answer = send(request.url.replace("X-Amz-Expires=60", "X-Amz-Expires=61"))
    check(status == 403 and answer["__type"].endswith("SignatureDoesNotMatch"),
          "a presigned URL changed: %s %s" % (status, answer))

    # The query protocol's presigned GET, as older SDKs make one.
    get = AWSRequest(method="GET", url=ENDPOINT + "/?Action=ListQueues&Version=2012-11-05")
    SigV4QueryAuth(credentials, "sqs", REGION, expires=60).add_auth(get)
    prepared = get.prepare()
    with urllib.request.urlopen(urllib.request.Request(
            prepared.url, headers=dict(prepared.headers)), timeout=30) as answer:
        xml = answer.read().decode()
    check(answer.status == 200 and "<ListQueuesResponse" in xml and url in xml,
          "a presigned query-protocol GET: %s" % xml)
    sqs.delete_queue(QueueUrl=url)
    print(json.dumps({"scenario": "presigned"}), flush=True)
def purge(sqs):
    """PurgeQueue: stored, in-flight and delayed messages go; a second purge within 60 s
    is refused; deleting a purged delivery succeeds and changes nothing; a message sent
    afterwards is delivered, alone."""
    url = sqs.create_queue(QueueName="purged")["QueueUrl"]
    for i in range(5):
        sqs.send_message(QueueUrl=url, MessageBody="old %d" % i)
    sqs.send_message(QueueUrl=url, MessageBody="delayed", DelaySeconds=900)
    in_flight = []
    deadline = time.time() + 20
    while not in_flight and time.time() < deadline:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=1,
                                     VisibilityTimeout=60)
        in_flight = answer.get("Messages", [])
    check(len(in_flight) == 1, "one message in flight: %s" % in_flight)
    sqs.purge_queue(QueueUrl=url)
    code = error_code(lambda: sqs.purge_queue(QueueUrl=url))
    check(code in ("AWS.SimpleQueueService.PurgeQueueInProgress", "PurgeQueueInProgress"),
          "a second purge within 60 s: %s" % code)
    answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    check("Messages" not in answer, "nothing after the purge: %s" % answer)
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    for name in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"):
        check(counts[name] == "0", "%s after the purge: %s" % (name, counts))
    check("sqs_purged_ms" not in json.dumps(counts), "the purge time is no attribute")
    sqs.delete_message(QueueUrl=url, ReceiptHandle=in_flight[0]["ReceiptHandle"])
    sqs.send_message(QueueUrl=url, MessageBody="after")
    got = receive_all(sqs, url, 1)
    check([m["Body"] for m in got] == ["after"], "only the later message: %s" % got)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    check("Messages" not in answer, "nothing else: %s" % answer)
    code = error_code(lambda: sqs.purge_queue(QueueUrl=url.replace("/purged", "/unknown")))
    check(code == "AWS.SimpleQueueService.NonExistentQueue", "an unknown queue: %s" % code)
    print(json.dumps({"scenario": "purge"}), flush=True)


def tags(sqs):
    """Tags: set at create, added, listed, removed; a bad key refused; another tenant's
    queue refused. The queue stays, for tests/sqs_clients.rs to read its tags through the
    DMS API (they are the same tags)."""
    url = sqs.create_queue(QueueName="tagged", tags={"team": "core", "env": "test"})["QueueUrl"]
    listed = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
    check(listed == {"team": "core", "env": "test"}, "tags from the create: %s" % listed)
    sqs.tag_queue(QueueUrl=url, Tags={"env": "prod", "cost": "42"})
    listed = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
    check(listed == {"team": "core", "env": "prod", "cost": "42"}, "tagged: %s" % listed)
    sqs.untag_queue(QueueUrl=url, TagKeys=["team", "absent"])
    listed = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
    check(listed == {"env": "prod", "cost": "42"}, "untagged: %s" % listed)
    for bad in ({"bad/key": "v"}, {"k" * 37: "v"}, {"key": "v" * 44}):
        code = error_code(lambda: sqs.tag_queue(QueueUrl=url, Tags=bad))
        check(code == "InvalidParameterValue", "a bad tag %s: %s" % (bad, code))
    code = error_code(lambda: sqs.create_queue(QueueName="badly-tagged", tags={"a=b": "v"}))
    check(code == "InvalidParameterValue", "a bad tag at create: %s" % code)
    code = error_code(lambda: sqs.get_queue_url(QueueName="badly-tagged"))
    check(code == "AWS.SimpleQueueService.NonExistentQueue", "not created: %s" % code)
    other = client(os.environ["SLUICE_OTHER_AK"], os.environ["SLUICE_OTHER_SK"])
    for call in (lambda: other.list_queue_tags(QueueUrl=url),
                 lambda: other.tag_queue(QueueUrl=url, Tags={"x": "y"}),
                 lambda: other.untag_queue(QueueUrl=url, TagKeys=["env"])):
        code = error_code(call)
        check(code == "AWS.SimpleQueueService.NonExistentQueue", "another tenant: %s" % code)
    listed = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
    check(listed == {"env": "prod", "cost": "42"}, "unchanged by the refusals: %s" % listed)
    print(json.dumps({"scenario": "tags"}), flush=True)


def wait_for_task(sqs, dlq_arn, status):
    """Polls ListMessageMoveTasks until the newest task has `status` (or 30 s passed)."""
    deadline = time.time() + 30
    while True:
        tasks = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=10)["Results"]
        if tasks and tasks[0]["Status"] == status:
            return tasks
        check(time.time() < deadline, "task status %s never came: %s" % (status, tasks))
        time.sleep(0.2)


def dead_letters(sqs):
    dlq = sqs.create_queue(QueueName="dl-target")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    check(dlq_arn == "arn:aws:sqs:%s:%s:dl-target" % (REGION, PROJECT), "the ARN: %s" % dlq_arn)
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})
    src = sqs.create_queue(QueueName="dl-source", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    again = sqs.create_queue(QueueName="dl-source", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    check(again == src, "an idempotent create with the same policy")
    got = sqs.get_queue_attributes(QueueUrl=src, AttributeNames=["All"])["Attributes"]
    check(json.loads(got["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2},
          "the policy back: %s" % got)
    plain = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["All"])["Attributes"]
    check("RedrivePolicy" not in plain and "RedriveAllowPolicy" not in plain, "none unset: %s" % plain)
    sources = sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"]
    check(sources == [src], "the source queues: %s" % sources)

    # Two failed receives (visibility expired), then the message is in the DLQ.
    sqs.send_message(QueueUrl=src, MessageBody="poison",
                     MessageAttributes={"kind": {"DataType": "String", "StringValue": "bad"}})
    for attempt in (1, 2):
        got = receive_all(sqs, src, 1, VisibilityTimeout=1, MessageSystemAttributeNames=["All"])
        check(len(got) == 1 and got[0]["Attributes"]["ApproximateReceiveCount"] == str(attempt),
              "receive %d: %s" % (attempt, got))
    moved = receive_all(sqs, dlq, 1, VisibilityTimeout=30, MessageAttributeNames=["All"])
    check(len(moved) == 1 and moved[0]["Body"] == "poison", "dead-lettered: %s" % moved)
    check(moved[0]["MessageAttributes"]["kind"]["StringValue"] == "bad", "attributes kept: %s" % moved)
    left = sqs.receive_message(QueueUrl=src, MaxNumberOfMessages=10, WaitTimeSeconds=2)
    check(not left.get("Messages"), "gone from the source: %s" % left)
    sqs.change_message_visibility(QueueUrl=dlq, ReceiptHandle=moved[0]["ReceiptHandle"], VisibilityTimeout=0)

    # A move task back to the only source queue.
    sqs.start_message_move_task(SourceArn=dlq_arn)
    tasks = wait_for_task(sqs, dlq_arn, "COMPLETED")
    check(tasks[0]["ApproximateNumberOfMessagesMoved"] == 1, "moved one: %s" % tasks)
    check(tasks[0]["DestinationArn"].endswith(":dl-source") and "TaskHandle" not in tasks[0],
          "the task: %s" % tasks)
    back = receive_all(sqs, src, 1, VisibilityTimeout=30)
    check(len(back) == 1 and back[0]["Body"] == "poison", "moved back: %s" % back)
    sqs.delete_message(QueueUrl=src, ReceiptHandle=back[0]["ReceiptHandle"])

    # A slow task cancelled part-way; its handle is then unknown.
    sqs.send_message_batch(QueueUrl=dlq, Entries=[
        {"Id": str(i), "MessageBody": "slow %d" % i} for i in range(10)])
    sqs.send_message_batch(QueueUrl=dlq, Entries=[
        {"Id": str(i), "MessageBody": "slow %d" % (i + 10)} for i in range(10)])
    handle = sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=dlq_arn.replace(
        "dl-target", "dl-source"), MaxNumberOfMessagesPerSecond=1)["TaskHandle"]
    running = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"]
    check(running[0]["Status"] == "RUNNING" and running[0]["TaskHandle"] == handle,
          "running: %s" % running)
    check(running[0]["ApproximateNumberOfMessagesToMove"] == 20, "to move: %s" % running)
    code = error_code(lambda: sqs.start_message_move_task(SourceArn=dlq_arn))
    check(code == "AWS.SimpleQueueService.UnsupportedOperation", "a second task while one runs: %s" % code)
    cancelled = sqs.cancel_message_move_task(TaskHandle=handle)
    check(cancelled["ApproximateNumberOfMessagesMoved"] < 20, "cancelled early: %s" % cancelled)
    tasks = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=10)["Results"]
    check([t["Status"] for t in tasks] == ["CANCELLED", "COMPLETED"], "history: %s" % tasks)
    code = error_code(lambda: sqs.cancel_message_move_task(TaskHandle=handle))
    check(code == "ResourceNotFoundException", "a finished task's handle: %s" % code)

    # Policies that SQS refuses.
    fifo_dlq = sqs.create_queue(QueueName="dl-fifo.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    fifo_arn = dlq_arn.replace("dl-target", "dl-fifo.fifo")
    bad = json.dumps({"deadLetterTargetArn": fifo_arn, "maxReceiveCount": 3})
    code = error_code(lambda: sqs.set_queue_attributes(QueueUrl=src, Attributes={"RedrivePolicy": bad}))
    check(code == "InvalidParameterValue", "a FIFO DLQ for a standard queue: %s" % code)
    for bad in ('{"maxReceiveCount": 3}', json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 0})):
        code = error_code(lambda: sqs.set_queue_attributes(QueueUrl=src, Attributes={"RedrivePolicy": bad}))
        check(code == "InvalidParameterValue", "policy %s: %s" % (bad, code))
    locked = sqs.create_queue(QueueName="dl-locked", Attributes={
        "RedriveAllowPolicy": json.dumps({"redrivePermission": "denyAll"})})["QueueUrl"]
    locked_arn = dlq_arn.replace("dl-target", "dl-locked")
    to_locked = json.dumps({"deadLetterTargetArn": locked_arn, "maxReceiveCount": 3})
    code = error_code(lambda: sqs.set_queue_attributes(QueueUrl=src, Attributes={"RedrivePolicy": to_locked}))
    check(code == "InvalidParameterValue", "a denyAll DLQ: %s" % code)
    src_arn = dlq_arn.replace("dl-target", "dl-source")
    sqs.set_queue_attributes(QueueUrl=locked, Attributes={"RedriveAllowPolicy": json.dumps(
        {"redrivePermission": "byQueue", "sourceQueueArns": [src_arn]})})
    sqs.set_queue_attributes(QueueUrl=src, Attributes={"RedrivePolicy": to_locked})
    check(sqs.list_dead_letter_source_queues(QueueUrl=locked)["queueUrls"] == [src], "byQueue allows it")
    check(sqs.list_dead_letter_source_queues(QueueUrl=dlq).get("queueUrls") == [], "moved off the first")
    other = client(os.environ["SLUICE_OTHER_AK"], os.environ["SLUICE_OTHER_SK"])
    code = error_code(lambda: other.list_dead_letter_source_queues(QueueUrl=locked))
    check(code == "AWS.SimpleQueueService.NonExistentQueue", "another tenant: %s" % code)
    sqs.set_queue_attributes(QueueUrl=src, Attributes={"RedrivePolicy": ""})
    got = sqs.get_queue_attributes(QueueUrl=src, AttributeNames=["RedrivePolicy"])
    check("Attributes" not in got or "RedrivePolicy" not in got["Attributes"], "removed: %s" % got)
    for url in (src, dlq, fifo_dlq, locked):
        sqs.delete_queue(QueueUrl=url)
    print(json.dumps({"scenario": "dead_letters"}), flush=True)


def boto3_scenario():
    sqs = client()
    queues(sqs)
    messages(sqs)
    fifo(sqs)
    dedup_scopes(sqs)
    presigned(sqs)
    purge(sqs)
    tags(sqs)
    dead_letters(sqs)
    print(json.dumps({"scenario": "boto3", "passed": True}), flush=True)


SCENARIOS = {"boto3": boto3_scenario}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]]()
