"""Signs a fixed set of varied requests with the real client libraries and prints them as JSON.

Run by adapters/http/tests/signature_vectors.rs through the venv of `cargo xtask test`
(xtask/src/python.rs). Signers:

* huaweicloudsdkcore 3.1.219: `huaweicloudsdkcore.signer.signer.Signer` on an `SdkRequest`
  (current form, docs/dms-api.md section 7.2);
* apigateway-sdk-python 1.0.0: `apigateway_sdk_python.signer.Signer` on its `HttpRequest`
  (current form);
* huaweicloud-sdk-python 1.0.28: `AkSksignature` from `openstack/aksksession.py` (legacy
  credential-scope form, section 7.3). That package cannot share a venv with openstacksdk, so
  it is installed with --no-deps into a side directory (argument 1) and its class is loaded
  from the unmodified source of that file; the imports the file needs for the rest of its
  session code are not run.

Each vector's path and query are what `requests` puts on the wire (`PreparedRequest`), the
same library every one of these clients sends with. Output: a JSON list of
{signer, method, path, query, headers: [[name, value]], body_b64, ak, sk, date, now_unix_s}.
"""

import ast
import base64
import calendar
import hashlib
import hmac
import json
import os
import sys
import urllib.parse
import urllib.request
from datetime import datetime
from urllib.parse import urlsplit

import requests
from apigateway_sdk_python import signer as apig_signer
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

AK = "SELFTESTAK0000000001"
SK = "selftest-secret-key-0000000000000000000001"
PROJECT = "0123456789abcdef0123456789abcdef"
DATE = "20261125T183824Z"
USER_AGENT = "huaweicloud-usdk-python/3.0"


def unix_s(date):
    return calendar.timegm(datetime.strptime(date, "%Y%m%dT%H%M%SZ").timetuple())


def wire(url):
    """The path and query `requests` sends for `url`."""
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, None)
    parts = urlsplit(prepared.url)
    return parts.path, (parts.query if "?" in prepared.url else None)


def wire_header(value):
    """Header values as bytes on the wire: the signers store UTF-8 re-read as Latin-1."""
    value = str(value)
    try:
        return value.encode("iso-8859-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def vector(signer, method, path, query, headers, body, ak=AK, sk=SK, date=DATE):
    if isinstance(body, str):
        body = body.encode("utf-8")
    return {
        "signer": signer,
        "method": method,
        "path": path,
        "query": query,
        "headers": [[name, wire_header(value)] for name, value in headers.items()],
        "body_b64": base64.b64encode(body or b"").decode("ascii"),
        "ak": ak,
        "sk": sk,
        "date": date,
        "now_unix_s": unix_s(date),
    }


# (method, host, resource path, query params, extra headers, body, ak, sk)
CORE_CASES = [
    ("GET", "127.0.0.1:43175", f"/v1.0/{PROJECT}/queues", [], {}, None),
    ("GET", "127.0.0.1:43175", f"/v2/{PROJECT}/queues",
     [("include_deadletter", True), ("include_messages_num", "true")], {}, None),
    ("POST", "127.0.0.1:43175", f"/v1.0/{PROJECT}/queues", [], {},
     '{"name": "q1", "queue_mode": "FIFO", "description": "caf\u00e9"}'),
    ("DELETE", "dms.example.com", f"/v1.0/{PROJECT}/queues/9a3b-4c", [], {}, None),
    ("GET", "127.0.0.1:8443", f"/v2/{PROJECT}/queues/q/groups",
     [("tag", "b"), ("tag", "a"), ("tag", "a b"), ("limit", 10)], {}, None),
    ("GET", "[::1]:9000", f"/v2/{PROJECT}/queues/q/groups/g/messages",
     [("name", "\u4e2d\u6587 x"), ("q", "a+b/c?d=e&f"), ("empty", ""), ("~t", "*'()!")], {}, None),
    ("POST", "127.0.0.1:43175",
     f"/v1.0/{PROJECT}/queues/a b/\u00fcmlaut/x:y@z(1)'*!~/%2Bplus", [], {}, "{}"),
    ("POST", "127.0.0.1:43175", f"/v2/{PROJECT}/queues/q/messages/", [("return_id", True)],
     {"X-Custom": "  padded value  ", "X_Not_Signed": "skipped by the signer"},
     '{"messages": [{"body": {"k": "v"}, "attributes": {"a": "\u00e9"}}]}'),
    ("PUT", "127.0.0.1:43175", f"/v2/{PROJECT}/objects/blob", [],
     {"Content-Type": "application/octet-stream"}, "raw \x01 bytes"),
    ("GET", "127.0.0.1:43175", f"/v2/{PROJECT}/quotas", [],
     {"Content-Type": "text/plain"}, None),
    ("GET", "localhost", "/", [], {"X-Unicode": "caf\u00e9"}, None),
    ("DELETE", "127.0.0.1:43175", f"/v2/{PROJECT}/queues/q/groups/g", [("a", "1")], {}, "",
     "OTHERAK", "another/secret+key=="),
]


def core_vectors():
    vectors = []
    for case in CORE_CASES:
        method, host, path, query, extra, body = case[:6]
        ak, sk = (case[6], case[7]) if len(case) > 6 else (AK, SK)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   "X-Project-Id": PROJECT, "X-Sdk-Date": DATE}
        headers.update(extra)
        request = SdkRequest(method=method, schema="http", host=host, resource_path=path,
                             query_params=list(query), header_params=headers, body=body or "")
        Signer(BasicCredentials(ak, sk)).sign(request)
        wire_path, wire_query = wire(f"http://{host}{request.uri}")
        vectors.append(vector("huaweicloudsdkcore", method, wire_path, wire_query,
                              request.header_params, body, ak, sk))
    return vectors


# (method, url as the caller writes it, headers, body)
APIG_CASES = [
    ("GET", f"http://127.0.0.1:43175/v1.0/{PROJECT}/queues", {}, ""),
    ("GET", f"http://127.0.0.1:43175/v1.0/{PROJECT}/queues?b=2&a=1&a=0&flag", {}, ""),
    ("POST", f"http://dms.example.com/v1.0/{PROJECT}/queues/q/messages?x=a%20b&y=%E4%B8%AD",
     {"Content-Type": "application/json"}, '{"messages": [{"body": "hello"}]}'),
    ("DELETE", f"https://127.0.0.1:8443/v1.0/{PROJECT}/queues/q%20x/groups/g:1",
     {"X-Project-Id": PROJECT}, ""),
    ("PUT", "http://127.0.0.1:43175/a/b%2Fc/~d/", {"X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"},
     "unsigned body"),
]


def apig_vectors():
    vectors = []
    sig = apig_signer.Signer()
    sig.Key, sig.Secret = AK, SK
    for method, url, headers, body in APIG_CASES:
        headers = dict(headers, **{"X-Sdk-Date": DATE})
        request = apig_signer.HttpRequest(method, url, headers, body)
        sig.Sign(request)
        wire_path, wire_query = wire(f"{request.scheme}://{request.host}{request.uri}")
        vectors.append(vector("apigateway-sdk-python", method, wire_path, wire_query,
                              request.headers, body))
    return vectors


def legacy_signer_class(side_dir):
    """`AkSksignature` and its helper, compiled from the installed file, unmodified."""
    source_path = os.path.join(side_dir, "openstack", "aksksession.py")
    with open(source_path, encoding="utf-8") as source_file:
        module = ast.parse(source_file.read(), source_path)
    keep = {"EMPTYSTRING", "TERMINATORSTRING", "ALGORITHM", "PYTHON2", "UTF8",
            "get_utf8_bytes", "AkSksignature"}
    body = []
    for node in module.body:
        names = {getattr(node, "name", None)}
        if isinstance(node, ast.Assign):
            names = {target.id for target in node.targets if isinstance(target, ast.Name)}
        if names & keep:
            body.append(node)
    assert len(body) == len(keep), "aksksession.py no longer has the expected definitions"
    namespace = {"hashlib": hashlib, "hmac": hmac, "sys": sys, "urllib": urllib}
    exec(compile(ast.Module(body=body, type_ignores=[]), source_path, "exec"), namespace)
    return namespace["AkSksignature"]


# (method, url, params as the SDK passes them to requests, body, region, service)
LEGACY_CASES = [
    ("GET", f"http://127.0.0.1:43175/v1.0/{PROJECT}/queues", {}, None, "eu-de", "dms"),
    ("GET", f"http://127.0.0.1:43175/v1.0/{PROJECT}/queues/q/groups",
     {"include_deadletter": "true", "tag": ["b", "a"], "name": "a b+c"}, None, "eu-de", "dms"),
    ("POST", f"http://dms.example.com/v1.0/{PROJECT}/queues", {},
     '{"name": "q", "description": "caf\u00e9"}', "region-1", "dms"),
    ("DELETE", f"http://127.0.0.1:8443/v1.0/{PROJECT}/queues/q:1/x y", {"k": "\u4e2d"}, None,
     "", "dmsv2"),
]


def legacy_vectors(side_dir):
    signer_class = legacy_signer_class(side_dir)
    vectors = []
    for method, url, params, body, region, service in LEGACY_CASES:
        headers = {"Host": urlsplit(url).netloc, "X-Sdk-Date": DATE,
                   "Content-Type": "application/json", "User-Agent": "openstacksdk/0.9"}
        signer = signer_class(accesskey=AK, secretkey=SK, region=region)
        headers["Authorization"] = signer.signature(url=url, method=method, headers=headers,
                                                    data=body, params=params, svr=service)
        prepared = requests.Request(method, url, params=params, data=body).prepare()
        wire_path, wire_query = wire(prepared.url)
        vectors.append(vector("huaweicloud-sdk-python (legacy)", method, wire_path, wire_query,
                              headers, body))
    return vectors


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: sign_vectors.py <directory holding the legacy huaweicloud-sdk-python>")
    vectors = core_vectors() + apig_vectors() + legacy_vectors(sys.argv[1])
    json.dump(vectors, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
