"""The AWS CLI v1 against a running Sluice, over SQS's query protocol (tests/sqs_clients.rs
starts the server).

The pinned CLI (tests/sqs/requirements-awscli.txt: its botocore serializes SQS requests
as `Action=` forms and parses XML answers) runs as a subprocess for each call, with this
interpreter and `PYTHONPATH=$SLUICE_AWSCLI`. Every answer is checked; the first failure
exits non-zero; the last line of a passing run is a JSON summary. Environment as for
clients.py, plus SLUICE_AWSCLI (the directory the CLI is installed in). A few requests
are also signed by hand (with the venv's botocore) to reach what the CLI does not send:
a GET with the parameters in its query string, a POST to a queue's URL path.
"""

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ElementTree

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clients import attributes_md5, check, fail  # noqa: E402

ENDPOINT = os.environ["SLUICE_ENDPOINT"]
PROJECT = os.environ["SLUICE_PROJECT"]
REGION = "region-1"
# One CLI call finishes well within this (the longest long-polls 2 s).
CALL_TIMEOUT_S = 60


def aws(*args, sk=None, debug=False):
    """Runs `aws sqs ARGS...`; returns (exit code, parsed JSON output or None, stderr)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.environ["SLUICE_AWSCLI"],
        "AWS_ACCESS_KEY_ID": os.environ["SLUICE_AK"],
        "AWS_SECRET_ACCESS_KEY": sk or os.environ["SLUICE_SK"],
        "AWS_DEFAULT_REGION": REGION,
        # No profile, credentials file or instance metadata of the machine.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
    }
    command = [sys.executable, "-m", "awscli", "--endpoint-url", ENDPOINT, "--output", "json"]
    if debug:
        command.append("--debug")
    command += ["sqs", *args]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=CALL_TIMEOUT_S
    )
    output = json.loads(done.stdout) if done.stdout.strip() else None
    return done.returncode, output, done.stderr


def ok(*args):
    """A call that must succeed: its JSON output ({} when it prints nothing)."""
    code, output, stderr = aws(*args)
    check(code == 0, f"aws sqs {' '.join(args)} failed ({code}): {stderr}")
    return output or {}


def refused(*args, sk=None):
    """A call that must fail: its stderr."""
    code, _, stderr = aws(*args, sk=sk)
    check(code != 0, f"aws sqs {' '.join(args)} succeeded")
    return stderr


def md5(text):
    return hashlib.md5(text.encode()).hexdigest()


def receive(url, expected, *extra):
    """Long-polls until `expected` messages came (bounded by a deadline); answers them."""
    got = []
    deadline = time.time() + 30
    while len(got) < expected and time.time() < deadline:
        answer = ok("receive-message", "--queue-url", url, "--max-number-of-messages", "10",
                    "--wait-time-seconds", "2", *extra)
        got.extend(answer.get("Messages", []))
    check(len(got) == expected, f"received {len(got)} of {expected}: {got}")
    return got


def protocol():
    """The CLI speaks the query protocol: a form body with Action=, answered in XML."""
    code, _, stderr = aws("list-queues", debug=True)
    check(code == 0, f"list-queues --debug failed: {stderr}")
    check("'body': {'Action': 'ListQueues', 'Version': '2012-11-05'}" in stderr,
          "the request's parameters are not the query protocol's")
    check("'Content-Type': b'application/x-www-form-urlencoded" in stderr,
          "the request is not a form")
    check("X-Amz-Target" not in stderr, "the request carries the JSON protocol's target")
    check("<ListQueuesResponse" in stderr, "the answer is not XML")


XMLNS = "{http://queue.amazonaws.com/doc/2012-11-05/}"


def raw(method, path, parameters):
    """A query-protocol request signed with SigV4 by the venv's botocore (not the CLI):
    the parameters in the query string of a GET or the form body of a POST. Answers the
    status and the parsed XML document."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    form = urllib.parse.urlencode(parameters)
    url = ENDPOINT + path + ("?" + form if method == "GET" else "")
    headers = {} if method == "GET" else {
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    request = AWSRequest(method=method, url=url, data=None if method == "GET" else form.encode(),
                         headers=headers)
    credentials = Credentials(os.environ["SLUICE_AK"], os.environ["SLUICE_SK"])
    SigV4Auth(credentials, "sqs", REGION).add_auth(request)
    prepared = request.prepare()
    sent = urllib.request.Request(prepared.url, data=prepared.body, method=method,
                                  headers=dict(prepared.headers.items()))
    try:
        with urllib.request.urlopen(sent, timeout=CALL_TIMEOUT_S) as answer:
            status, text = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    return status, ElementTree.fromstring(text)


def raw_requests(url):
    """GET with the parameters in the query string; a POST to the queue's URL path
    naming the queue by its path; an error document."""
    status, listed = raw("GET", "/", {"Action": "ListQueues", "QueueNamePrefix": "cli-"})
    check(status == 200 and listed.tag == XMLNS + "ListQueuesResponse", f"GET {status}")
    urls = [e.text for e in listed.iter(XMLNS + "QueueUrl")]
    check(urls == [url], f"GET list-queues {urls}")
    check(listed.find(f"{XMLNS}ResponseMetadata/{XMLNS}RequestId").text, "a request id")
    path = urllib.parse.urlparse(url).path
    status, read = raw("POST", path, {"Action": "GetQueueAttributes",
                                      "AttributeName.1": "VisibilityTimeout"})
    check(status == 200, f"POST to the queue path {status}")
    attribute = read.find(f"{XMLNS}GetQueueAttributesResult/{XMLNS}Attribute")
    check(attribute.find(XMLNS + "Name").text == "VisibilityTimeout"
          and attribute.find(XMLNS + "Value").text == "7", "the queue named by the path")
    status, error = raw("GET", "/", {"Action": "GetQueueUrl", "QueueName": "no-such"})
    check(status == 400 and error.tag == XMLNS + "ErrorResponse", f"an error {status}")
    check(error.find(f"{XMLNS}Error/{XMLNS}Type").text == "Sender", "the error's type")
    check(error.find(f"{XMLNS}Error/{XMLNS}Code").text
          == "AWS.SimpleQueueService.NonExistentQueue", "the error's code")
    status, error = raw("POST", "/", {"Action": "ListQueues", "AttributeName.0": "x"})
    check(status == 400, f"a bad index {status}")
    check(error.find(f"{XMLNS}Error/{XMLNS}Code").text == "InvalidParameterValue",
          "a bad index's code")


def queues():
    url = ok("create-queue", "--queue-name", "cli-std",
             "--attributes", "VisibilityTimeout=5,DelaySeconds=0")["QueueUrl"]
    check(url == f"{ENDPOINT}/{PROJECT}/cli-std", f"queue url {url}")
    fifo = ok("create-queue", "--queue-name", "cli.fifo",
              "--attributes", "FifoQueue=true,ContentBasedDeduplication=true")["QueueUrl"]
    check(fifo.endswith("/cli.fifo"), f"fifo url {fifo}")
    # Creating again with the same attributes answers the same URL.
    again = ok("create-queue", "--queue-name", "cli-std",
               "--attributes", "VisibilityTimeout=5,DelaySeconds=0")["QueueUrl"]
    check(again == url, "an idempotent create")
    check(ok("get-queue-url", "--queue-name", "cli-std")["QueueUrl"] == url, "get-queue-url")
    listed = ok("list-queues", "--queue-name-prefix", "cli")["QueueUrls"]
    check(sorted(listed) == sorted([url, fifo]), f"list-queues: {listed}")
    listed = ok("list-queues", "--queue-name-prefix", "cli-")["QueueUrls"]
    check(listed == [url], f"list-queues with a longer prefix: {listed}")
    everything = ok("get-queue-attributes", "--queue-url", url, "--attribute-names", "All")
    attributes = everything["Attributes"]
    check(attributes["VisibilityTimeout"] == "5", f"attributes {attributes}")
    check(attributes["QueueArn"].endswith(":cli-std"), f"arn {attributes}")
    check("FifoQueue" not in attributes, "a standard queue has no FifoQueue")
    ok("set-queue-attributes", "--queue-url", url, "--attributes", "VisibilityTimeout=7")
    one = ok("get-queue-attributes", "--queue-url", url,
             "--attribute-names", "VisibilityTimeout")["Attributes"]
    check(one == {"VisibilityTimeout": "7"}, f"set-queue-attributes: {one}")
    fifo_attributes = ok("get-queue-attributes", "--queue-url", fifo,
                         "--attribute-names", "FifoQueue", "ContentBasedDeduplication")
    check(fifo_attributes["Attributes"] == {"FifoQueue": "true",
                                            "ContentBasedDeduplication": "true"},
          f"fifo attributes {fifo_attributes}")
    return url, fifo


def messages(url):
    body = 'hello <&> "world"\n\t\u00e9'
    attributes = {
        "color": {"DataType": "String", "StringValue": "red & <blue>"},
        "n": {"DataType": "Number", "StringValue": "42"},
        "raw": {"DataType": "Binary", "BinaryValue": "raw-bytes"},
    }
    sent = ok("send-message", "--queue-url", url, "--message-body", body,
              "--message-attributes", json.dumps(attributes))
    check(sent["MD5OfMessageBody"] == md5(body), f"body digest {sent}")
    # The CLI sends a Binary value given as text as those text's bytes.
    digest = dict(attributes, raw={"DataType": "Binary", "BinaryValue": b"raw-bytes"})
    check(sent["MD5OfMessageAttributes"] == attributes_md5(digest), f"attributes digest {sent}")
    entries = [
        {"Id": "b1", "MessageBody": "batch one"},
        {"Id": "b2", "MessageBody": "batch two",
         "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}},
    ]
    batch = ok("send-message-batch", "--queue-url", url, "--entries", json.dumps(entries))
    check(sorted(e["Id"] for e in batch["Successful"]) == ["b1", "b2"], f"batch {batch}")
    check(not batch.get("Failed"), f"batch failures {batch}")
    for entry in batch["Successful"]:
        wanted = {"b1": "batch one", "b2": "batch two"}[entry["Id"]]
        check(entry["MD5OfMessageBody"] == md5(wanted), f"batch digest {entry}")
    got = receive(url, 3, "--attribute-names", "All", "--message-attribute-names", "All")
    by_body = {m["Body"]: m for m in got}
    check(set(by_body) == {body, "batch one", "batch two"}, f"bodies {list(by_body)}")
    first = by_body[body]
    check(first["MD5OfBody"] == md5(body), "receive digest")
    check(first["MessageId"] == sent["MessageId"], "message id")
    check(first["Attributes"]["ApproximateReceiveCount"] == "1", f"system {first}")
    check(first["Attributes"]["SentTimestamp"].isdigit(), f"system {first}")
    received = first["MessageAttributes"]
    check(received["color"] == attributes["color"], f"message attributes {received}")
    check(received["n"] == attributes["n"], f"message attributes {received}")
    raw = received["raw"]["BinaryValue"]
    check(raw in ("raw-bytes", base64.b64encode(b"raw-bytes").decode()), f"binary {raw}")
    # Only the names asked for come back.
    check("MessageAttributes" not in by_body["batch one"], "no attributes on batch one")

    # A visibility of 0 makes the message visible again, received a second time.
    ok("change-message-visibility", "--queue-url", url,
       "--receipt-handle", first["ReceiptHandle"], "--visibility-timeout", "0")
    again = receive(url, 1, "--attribute-names", "ApproximateReceiveCount")[0]
    check(again["Body"] == body, f"the visible message {again}")
    check(again["Attributes"] == {"ApproximateReceiveCount": "2"}, f"receive count {again}")
    check("MessageAttributes" not in again, "no message attribute names asked")
    ok("delete-message", "--queue-url", url, "--receipt-handle", again["ReceiptHandle"])

    handles = [{"Id": "one", "ReceiptHandle": by_body["batch one"]["ReceiptHandle"]},
               {"Id": "two", "ReceiptHandle": by_body["batch two"]["ReceiptHandle"]}]
    changed = ok("change-message-visibility-batch", "--queue-url", url, "--entries",
                 json.dumps([dict(h, VisibilityTimeout=60) for h in handles]))
    check(sorted(e["Id"] for e in changed["Successful"]) == ["one", "two"], f"{changed}")
    bad = {"Id": "bad", "ReceiptHandle": "not-a-handle"}
    deleted = ok("delete-message-batch", "--queue-url", url, "--entries",
                 json.dumps(handles + [bad]))
    check(sorted(e["Id"] for e in deleted["Successful"]) == ["one", "two"], f"{deleted}")
    failed = deleted["Failed"]
    check(len(failed) == 1 and failed[0]["Id"] == "bad", f"failed {failed}")
    check(failed[0]["Code"] == "ReceiptHandleIsInvalid" and failed[0]["SenderFault"] is True,
          f"failed entry {failed}")
    count = ok("get-queue-attributes", "--queue-url", url, "--attribute-names",
               "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
    check(count["Attributes"] == {"ApproximateNumberOfMessages": "0",
                                  "ApproximateNumberOfMessagesNotVisible": "0"},
          f"an empty queue {count}")


def fifo_messages(fifo):
    sent = ok("send-message", "--queue-url", fifo, "--message-body", "in order",
              "--message-group-id", "g1")
    check(sent.get("SequenceNumber"), f"a FIFO send has a sequence number {sent}")
    got = receive(fifo, 1, "--attribute-names", "All")[0]
    check(got["Attributes"]["MessageGroupId"] == "g1", f"group {got}")
    check(got["Attributes"]["SequenceNumber"] == sent["SequenceNumber"], f"sequence {got}")
    ok("delete-message", "--queue-url", fifo, "--receipt-handle", got["ReceiptHandle"])
    stderr = refused("send-message", "--queue-url", fifo, "--message-body", "no group")
    check("MissingParameter" in stderr, f"a FIFO send without a group: {stderr}")


def tags_and_purge(url):
    """Tags (TagQueue's and CreateQueue's `Tag.N` forms) and a purge, over the query
    protocol."""
    ok("tag-queue", "--queue-url", url, "--tags", "team=core,tier=gold")
    listed = ok("list-queue-tags", "--queue-url", url)
    check(listed.get("Tags") == {"team": "core", "tier": "gold"}, f"tags {listed}")
    ok("untag-queue", "--queue-url", url, "--tag-keys", "tier")
    listed = ok("list-queue-tags", "--queue-url", url)
    check(listed.get("Tags") == {"team": "core"}, f"untagged {listed}")
    tagged = ok("create-queue", "--queue-name", "cli-tagged", "--tags", "owner=cli")["QueueUrl"]
    listed = ok("list-queue-tags", "--queue-url", tagged)
    check(listed.get("Tags") == {"owner": "cli"}, f"tags at create {listed}")
    ok("delete-queue", "--queue-url", tagged)
    ok("send-message", "--queue-url", url, "--message-body", "to be purged")
    ok("purge-queue", "--queue-url", url)
    stderr = refused("purge-queue", "--queue-url", url)
    check("AWS.SimpleQueueService.PurgeQueueInProgress" in stderr, f"a second purge: {stderr}")
    left = ok("get-queue-attributes", "--queue-url", url, "--attribute-names",
              "ApproximateNumberOfMessages")
    check(left["Attributes"]["ApproximateNumberOfMessages"] == "0", f"purged {left}")


def errors(url):
    stderr = refused("get-queue-url", "--queue-name", "no-such-queue")
    check("AWS.SimpleQueueService.NonExistentQueue" in stderr, f"nonexistent: {stderr}")
    missing = url.rsplit("/", 1)[0] + "/no-such-queue"
    stderr = refused("send-message", "--queue-url", missing, "--message-body", "x")
    check("AWS.SimpleQueueService.NonExistentQueue" in stderr, f"nonexistent url: {stderr}")
    stderr = refused("list-queues", sk="wrong-secret")
    check("SignatureDoesNotMatch" in stderr, f"a wrong secret: {stderr}")
    stderr = refused("create-queue", "--queue-name", "bad name!")
    check("InvalidParameterValue" in stderr, f"a bad name: {stderr}")


def dead_letters():
    """A redrive policy, its source listed, a move task back, over the query protocol
    (the answers' flattened `QueueUrl` and `...ResultEntry` lists)."""
    dlq = ok("create-queue", "--queue-name", "cli-dlq")["QueueUrl"]
    arn = ok("get-queue-attributes", "--queue-url", dlq, "--attribute-names", "QueueArn")
    arn = arn["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "3"})
    src = ok("create-queue", "--queue-name", "cli-src", "--attributes",
             json.dumps({"RedrivePolicy": policy}))["QueueUrl"]
    sources = ok("list-dead-letter-source-queues", "--queue-url", dlq)
    check(sources.get("queueUrls") == [src], f"sources: {sources}")
    for body in ("dead 1", "dead 2"):
        ok("send-message", "--queue-url", dlq, "--message-body", body)
    ok("start-message-move-task", "--source-arn", arn)
    deadline = time.time() + 30
    while True:
        tasks = ok("list-message-move-tasks", "--source-arn", arn)["Results"]
        if tasks[0]["Status"] == "COMPLETED":
            break
        check(time.time() < deadline, f"the move task never completed: {tasks}")
        time.sleep(0.2)
    check(tasks[0]["ApproximateNumberOfMessagesMoved"] == 2, f"moved: {tasks}")
    back = receive(src, 2)
    check(sorted(m["Body"] for m in back) == ["dead 1", "dead 2"], f"moved back: {back}")
    ok("delete-queue", "--queue-url", src)
    ok("delete-queue", "--queue-url", dlq)


def main():
    protocol()
    dead_letters()
    url, fifo = queues()
    raw_requests(url)
    messages(url)
    fifo_messages(fifo)
    tags_and_purge(url)
    errors(url)
    ok("delete-queue", "--queue-url", url)
    ok("delete-queue", "--queue-url", fifo)
    left = ok("list-queues", "--queue-name-prefix", "cli")
    check(not left.get("QueueUrls"), f"deleted queues are gone: {left}")
    stderr = refused("get-queue-url", "--queue-name", "cli-std")
    check("AWS.SimpleQueueService.NonExistentQueue" in stderr, f"after delete: {stderr}")
    print(json.dumps({"scenario": "awscli", "passed": True}), flush=True)


if __name__ == "__main__":
    try:
        main()
    except subprocess.TimeoutExpired as error:
        fail(f"a CLI call did not finish: {error}")
