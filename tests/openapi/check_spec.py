#!/usr/bin/env python3
"""Holds docs/openapi.yaml and the node to each other.

  check_spec.py lint [--spec FILE]
  check_spec.py answers --bin-dir DIR [--spec FILE] [--timeout S] [--keep]

lint: the document is a usable OpenAPI 3.1 document: version 3.1.x, every $ref resolves, every
operation has responses with valid status keys and a unique operationId, and every schema in it
is a valid JSON Schema 2020-12 (Draft202012Validator.check_schema). The official OpenAPI 3.1
meta-schema check is lint_spec.mjs's (npm).

answers: starts a real three-node cluster (with cluster and client tokens, a small
--max-message-bytes) and two single nodes (one sync_quorum, one without tokens), and drives every
operation of the document, ok and error answers alike: bad JSON, missing fields, unknown route,
wrong method, too large, malformed HTTP, missing or wrong tokens, a foreign Origin, quorum refused
with a peer down, gaps and conflicts on /replicate, the durable consumers' life (create, fetch,
ack, nak, redelivery, stale and unknown ack ids, dead letters, delete, the limit of 1000
consumers), and membership changes (a member added, heard of by the others, removed, added
again; a removal the quorum forbids, changes on a node without a cluster token). Each answer
must have the status the case expects, and that status must be one the document gives for the
path and method (or, for a request no operation serves, in x-dsm-route-errors); its
Content-Type must be one the document lists, its JSON body must match the schema - strictly: an
object schema that lists properties admits no other field (the document promises every field
the node sends) - and the headers the document names must be present; a 405's Allow must name
exactly the methods the document gives the path. The body of a request answered 2xx must match
the operation's request schema, and where a case says so the schema must refuse the body the
node refused (e.g. an unknown field of a consumer's definition). Every operation of the
document must have been exercised. Exits 0 when all hold, 1 otherwise.

Needs python3-yaml and python3-jsonschema (Debian 12: 4.10, draft 2020-12).
"""
import argparse
import copy
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.parse

import yaml
from jsonschema import Draft202012Validator, RefResolver
from jsonschema.exceptions import SchemaError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_SPEC = os.path.join(ROOT, "docs", "openapi.yaml")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
CLUSTER_TOKEN = "cluster-secret-for-the-spec-test"
CLIENT_TOKEN = "client-secret-for-the-spec-test"
MAX_MESSAGE_BYTES = 1024
MAX_REQUEST_BYTES = 8 * MAX_MESSAGE_BYTES + 64 * 1024

sys.path.insert(0, os.path.join(ROOT, "tests", "postman"))
import run_collection  # noqa: E402
from run_collection import Failure, Node, find_binary, finish, free_ports  # noqa: E402


def log(msg):
    print(f"check_spec: {msg}", flush=True)


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


# ---- lint -------------------------------------------------------------------------------------

def pointer(doc, ref):
    """The value `ref` ("#/a/b") names in `doc`; raises KeyError when it names nothing."""
    if not ref.startswith("#"):
        raise KeyError(f"{ref}: only references inside the document are used")
    node = doc
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(ref)
    return node


def walk(node, where=""):
    """Every (location, dict) in the document."""
    if isinstance(node, dict):
        yield where, node
        for k, v in node.items():
            yield from walk(v, f"{where}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{where}/{i}")


def deref(doc, node):
    while isinstance(node, dict) and "$ref" in node:
        node = pointer(doc, node["$ref"])
    return node


def schemas_of(doc):
    """(location, schema) of every schema the document holds outside components/schemas."""
    found = [(f"/components/schemas/{k}", v)
             for k, v in doc.get("components", {}).get("schemas", {}).items()]
    for where, node in walk(doc):
        if where.startswith("/components/schemas"):
            continue
        if "schema" in node and isinstance(node["schema"], dict) and (
                "/content/" in where or "/parameters" in where or "/headers/" in where):
            found.append((where + "/schema", node["schema"]))
    return found


def lint(doc):
    problems = []
    if not str(doc.get("openapi", "")).startswith("3.1."):
        problems.append(f"openapi is {doc.get('openapi')!r}, not 3.1.x")
    for key in ("title", "version"):
        if not doc.get("info", {}).get(key):
            problems.append(f"info.{key} is missing")
    for where, node in walk(doc):
        ref = node.get("$ref")
        if isinstance(ref, str):
            try:
                pointer(doc, ref)
            except (KeyError, ValueError, IndexError):
                problems.append(f"{where}: $ref {ref} resolves to nothing")
    operation_ids = {}
    for path, item in doc.get("paths", {}).items():
        if not path.startswith("/"):
            problems.append(f"path {path} does not start with /")
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            name = f"{method.upper()} {path}"
            responses = op.get("responses")
            if not responses:
                problems.append(f"{name}: no responses")
                continue
            for status in responses:
                if not re.fullmatch(r"[1-5][0-9X]{2}|default", str(status)):
                    problems.append(f"{name}: response key {status!r} is not a status")
            op_id = op.get("operationId")
            if not op_id:
                problems.append(f"{name}: no operationId")
            elif op_id in operation_ids:
                problems.append(f"{name}: operationId {op_id} is also {operation_ids[op_id]}'s")
            else:
                operation_ids[op_id] = name
            if not op.get("tags"):
                problems.append(f"{name}: no tags")
    for status, response in doc.get("x-dsm-route-errors", {}).items():
        try:
            deref(doc, response)
        except KeyError:
            problems.append(f"x-dsm-route-errors {status}: resolves to nothing")
    for where, schema in schemas_of(doc):
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as e:
            problems.append(f"{where}: not a valid JSON Schema 2020-12: {e.message}")
    if not problems:
        problems += check_examples(doc)
    return problems, len(operation_ids)


def check_examples(doc):
    """The JSON examples of every media type match its schema (strictly, as answers must)."""
    strict = closed(doc)
    resolver = RefResolver.from_schema(strict)
    problems = []
    for where, node in walk(strict):
        if not where.endswith("/application/json") or "schema" not in node:
            continue
        examples = []
        if "example" in node:
            examples.append(("example", node["example"]))
        for name, ex in node.get("examples", {}).items():
            if "value" in deref(strict, ex):
                examples.append((f"examples/{name}", deref(strict, ex)["value"]))
        validator = Draft202012Validator(node["schema"], resolver=resolver)
        for name, value in examples:
            for e in validator.iter_errors(value):
                problems.append(f"{where}/{name}: does not match its schema: {e.message}")
    return problems


# ---- answers ----------------------------------------------------------------------------------

def closed(schema):
    """`schema` with every object schema that lists properties closed to other fields."""
    schema = copy.deepcopy(schema)

    def close(s):
        if not isinstance(s, dict):
            return
        if "properties" in s and "additionalProperties" not in s:
            s["additionalProperties"] = False
        for key in ("properties", "$defs", "dependentSchemas", "patternProperties"):
            for sub in s.get(key, {}).values():
                close(sub)
        for key in ("items", "additionalProperties", "not", "if", "then", "else", "contains"):
            close(s.get(key))
        for key in ("oneOf", "anyOf", "allOf", "prefixItems"):
            for sub in s.get(key, []):
                close(sub)

    for s in schema.get("components", {}).get("schemas", {}).values():
        close(s)
    for where, node in walk(schema):
        if "/content/" in where and "schema" in node:
            close(node["schema"])
    return schema


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def media_type(self):
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


class Checker:
    """Checks answers against the document and records which operations were exercised."""

    def __init__(self, doc):
        self.original = doc
        self.doc = closed(doc)
        self.resolver = RefResolver.from_schema(self.doc)
        self.open_resolver = RefResolver.from_schema(doc)
        # Where each operation's JSON request schema is, in the document as written.
        self.request_schemas = {
            (p, m): f"/paths/{p.replace('~', '~0').replace('/', '~1')}/{m}/requestBody/content/"
                    "application~1json/schema"
            for p, item in doc["paths"].items() for m in METHODS
            if "requestBody" in item.get(m, {})}
        self.exercised = set()
        self.statuses = set()
        self.failures = []

    def response_for(self, method, path, status):
        item = self.doc["paths"].get(path)
        op = item.get(method.lower()) if item else None
        if op is not None:
            self.exercised.add((path, method.lower()))
            responses = op["responses"]
            where = f"{method} {path}"
        else:
            responses = self.doc.get("x-dsm-route-errors", {})
            where = f"{method} {path} (no operation: x-dsm-route-errors)"
        response = responses.get(str(status), responses.get("default"))
        if response is None:
            return where, None
        return where, deref(self.doc, response)

    def check(self, name, method, path, answer, expect, request_body=None, schema_refuses=False):
        """Checks one answer; `path` is the document's path (no query). The JSON body of a
        request answered 2xx must match the operation's request schema too; with
        `schema_refuses`, the body of a refused request must not (the document gives the rule
        the node applied). A 405's Allow must name the methods the document gives the path."""
        where, response = self.response_for(method, path, answer.status)
        problems = []
        if answer.status != expect:
            problems.append(f"status {answer.status}, the case expects {expect}")
        if response is None:
            problems.append(f"status {answer.status} is not in the document for {where}")
        else:
            self.statuses.add((where, answer.status))
            for header in response.get("headers", {}):
                if header.lower() not in answer.headers:
                    problems.append(f"no {header} header, which the document gives")
            content = response.get("content")
            if method == "HEAD" or not content:
                if answer.body:
                    problems.append(f"a body of {len(answer.body)} bytes where the document gives none")
            elif answer.media_type() not in content:
                problems.append(f"Content-Type {answer.media_type()!r}, the document gives "
                                f"{sorted(content)}")
            elif answer.media_type() == "application/json":
                problems += self.validate(content["application/json"].get("schema"), answer.body)
            elif answer.media_type() == "text/event-stream":
                problems += self.validate_events(content["text/event-stream"], answer.body)
            if 200 <= answer.status < 300 and request_body is not None:
                problems += self.validate_request(method, path, request_body)
            if schema_refuses and not self.validate_request(method, path, request_body):
                problems.append("the document's request schema accepts this body, which the "
                                "node refused")
            if answer.status == 405 and path in self.doc["paths"]:
                documented = {m.upper() for m in METHODS if m in self.doc["paths"][path]}
                allow = {m.strip() for m in answer.headers.get("allow", "").split(",") if m.strip()}
                if allow != documented:
                    problems.append(f"Allow: {sorted(allow)}, the document gives the path "
                                    f"{sorted(documented)}")
        if problems:
            self.failures.append((name, where, answer, problems))
            log(f"FAIL {name}: {where} -> {answer.status}: " + "; ".join(problems))
        else:
            log(f"ok   {name}: {where} -> {answer.status}")
        return answer

    def validate_request(self, method, path, body):
        op = self.doc["paths"].get(path, {}).get(method.lower(), {})
        content = deref(self.doc, op.get("requestBody", {})).get("content", {})
        if "application/json" not in content:
            return ["a body was accepted where the document gives no JSON request body"]
        # Request schemas are used as written, not closed: most endpoints ignore fields they do
        # not know; those that refuse them say so in the document (additionalProperties: false).
        schema = pointer(self.original, "#" + self.request_schemas[(path, method.lower())])
        problems = self.validate(schema, body if isinstance(body, str) else json.dumps(body),
                                 self.open_resolver)
        return [f"request {p}" for p in problems]

    def validate_events(self, media, body):
        """Each complete `data:` line of an event stream against the media type's event schema."""
        schema = media.get("x-dsm-event-data")
        if schema is None:
            return []
        lines = body.split("\n")
        problems = []
        for line in lines[:-1]:  # the last one may be cut short
            if line.startswith("data: "):
                problems += [f"event data: {p}" for p in self.validate(schema, line[6:])]
        return problems

    def validate(self, schema, body, resolver=None):
        try:
            value = json.loads(body)
        except ValueError as e:
            return [f"the body is not JSON ({e}): {body[:200]!r}"]
        if schema is None:
            return []
        validator = Draft202012Validator(schema, resolver=resolver or self.resolver)
        return [f"body does not match the schema at {'/'.join(map(str, e.absolute_path)) or '(top)'}: "
                f"{e.message}" for e in validator.iter_errors(value)]

    def unexercised(self):
        ops = {(p, m) for p, item in self.doc["paths"].items() for m in METHODS if m in item}
        return sorted(ops - self.exercised)


def request(port, method, target, body=None, headers=None, read_events=None, timeout=10):
    """One request on a new connection; returns an Answer. read_events: read an endless event
    stream's body up to its first `read_events` events (blank-line ended blocks), then close."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else (
                body.encode() if isinstance(body, str) else json.dumps(body).encode())
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, target, body=data, headers=hdrs)
        resp = conn.getresponse()
        if method == "HEAD":
            payload = b""
        elif read_events is not None:
            payload = b""
            while payload.count(b"\n\n") < read_events:
                line = resp.readline()
                if not line:
                    break
                payload += line
        else:
            payload = resp.read()
        return Answer(resp.status, resp.getheaders(), payload.decode("utf-8", errors="replace"))
    finally:
        conn.close()


def raw_request(method, target, *lines, body="", token=CLIENT_TOKEN):
    """The bytes of a request with `token` (the client token), the header `lines` and `body`."""
    head = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1",
            f"Authorization: Bearer {token}", *lines]
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode()


def raw(port, data, timeout=10):
    """Sends raw bytes, reads until the node closes, parses the one answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # the node may answer and close before all of it was sent
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (ConnectionResetError, socket.timeout):
            pass
    text = b"".join(chunks).decode("utf-8", errors="replace")
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if not m:
        raise Failure(f"no HTTP answer to a raw request: {text[:200]!r}")
    headers = [tuple(p.strip() for p in line.split(":", 1)) for line in lines[1:] if ":" in line]
    length = dict((k.lower(), v) for k, v in headers).get("content-length")
    if length is not None:
        body = body[:int(length)]
    return Answer(int(m.group(1)), headers, body)


class Cluster(run_collection.Cluster):
    """Three nodes, each peering with the two others, with tokens; `a` is the one driven. Two
    more nodes, each with one peer nobody listens on (`ghost_url`), answer the membership
    changes a and its cluster cannot: `q` (sync_quorum, --quorum 2: removing its one peer
    would leave it too few voters) and `o` (no tokens at all: membership changes are refused).
    The ghost is also the member a adds and removes. Its port stays bound to a socket that
    never listens, so connections to it are refused and nothing else can take it."""

    ghost = None

    def start(self, deadline, attempts=3):
        if self.ghost is None:
            self.ghost = socket.socket()
            self.ghost.bind(("127.0.0.1", 0))
        ghost = self.ghost.getsockname()[1]
        self.ghost_url = f"http://127.0.0.1:{ghost}"
        for attempt in range(1, attempts + 1):
            ports = free_ports(5)
            names = ["a", "b", "c"]
            shutil.rmtree(self.root, ignore_errors=True)
            limits = ["--max-message-bytes", str(MAX_MESSAGE_BYTES)]
            extra = ["--cluster-token", CLUSTER_TOKEN, "--client-token", CLIENT_TOKEN, *limits,
                     "--quorum", "3", "--quorum-timeout-ms", "3000"]
            self.nodes = {name: Node(self.binary, self.root, name, port,
                                     [p for p in ports[:3] if p != port], extra)
                          for name, port in zip(names, ports)}
            self.nodes["q"] = Node(self.binary, self.root, "q", ports[3], [ghost],
                                   ["--cluster-token", CLUSTER_TOKEN, "--client-token",
                                    CLIENT_TOKEN, *limits, "--replication_mode", "sync_quorum",
                                    "--quorum", "2"])
            self.nodes["o"] = Node(self.binary, self.root, "o", ports[4], [ghost], limits)
            try:
                for node in self.nodes.values():
                    node.start()
                for node in self.nodes.values():
                    self.wait_up(node, deadline)
                return
            except Failure as e:
                super().stop()  # the nodes only: the ghost's port stays taken for the next try
                if attempt == attempts or time.monotonic() > deadline:
                    raise
                log(f"cluster did not start (attempt {attempt}), retrying: {e}")

    def stop(self):
        super().stop()
        if self.ghost is not None:
            self.ghost.close()
            self.ghost = None

    @staticmethod
    def wait_up(node, deadline):
        while True:
            try:
                if request(node.port, "GET", "/heartbeat", headers=cluster_auth(),
                           timeout=1).status == 200:
                    return
            except OSError:
                pass
            if node.proc.poll() is not None:
                raise Failure(f"{node.name} exited with {node.proc.returncode}\n{node.log_tail()}")
            if time.monotonic() > deadline:
                raise Failure(f"{node.name} does not answer\n{node.log_tail()}")
            time.sleep(0.05)


def client_auth():
    return {"Authorization": "Bearer " + CLIENT_TOKEN}


def cluster_auth():
    return {"Authorization": "Bearer " + CLUSTER_TOKEN}


def wait_for(what, predicate, deadline):
    while not predicate():
        if time.monotonic() > deadline:
            raise Failure(f"timed out waiting for {what}")
        time.sleep(0.05)


def drive(checker, cluster, deadline):
    """Every case: (name, method, spec path, target, body, headers, expected status)."""
    a, b, c = cluster.nodes["a"], cluster.nodes["b"], cluster.nodes["c"]
    port = a.port
    C, K = client_auth(), cluster_auth()

    def case(name, method, path, expect, target=None, body=None, headers=None,
             schema_refuses=False, on=None, **kw):
        """One request to a (or to the node `on`), checked."""
        answer = request(on.port if on else port, method, target or path, body=body,
                         headers=headers, **kw)
        return checker.check(name, method, path, answer, expect, request_body=body,
                             schema_refuses=schema_refuses)

    def raw_case(name, method, path, expect, data):
        return checker.check(name, method, path, raw(port, data), expect)

    # Replication settles first: every peer known by its node id.
    def peers_known():
        st = json.loads(request(port, "GET", "/status", headers=C).body)
        return all(p["alive"] and p["stream"] for p in st["peer_status"].values())
    wait_for("a to see b and c alive", peers_known, deadline)

    # /send
    sent = json.loads(case("send one", "POST", "/send", 200, headers=C,
                           body={"sender": "s1", "recipient": "bob", "payload": "hello",
                                 "msg_id": "spec-1"}).body)
    case("send duplicate", "POST", "/send", 200, headers=C, body={"msg_id": "spec-1"})
    case("send batch", "POST", "/send", 200, headers=C,
         body={"messages": [{"payload": "a", "recipient": "bob"}, {"payload": "b"}],
               "ack": "local"})
    case("send quorum", "POST", "/send", 200, headers=C, body={"payload": "q", "ack": "quorum"})
    case("send bad JSON", "POST", "/send", 400, headers=C, body='{"payload": ')
    case("send not an object", "POST", "/send", 400, headers=C, body="[1,2]")
    case("send wrong type", "POST", "/send", 400, headers=C, body={"sender": 5})
    case("send empty batch", "POST", "/send", 400, headers=C, body={"messages": []})
    case("send bad ack", "POST", "/send", 400, headers=C, body={"ack": "maybe"})
    case("send payload too large", "POST", "/send", 413, headers=C,
         body={"payload": "x" * (MAX_MESSAGE_BYTES + 1)})
    case("send without token", "POST", "/send", 401, body={"payload": "no"})
    case("send wrong token", "POST", "/send", 401, body={"payload": "no"},
         headers={"X-Dsm-Token": "wrong"})
    case("send cross-site", "POST", "/send", 403, body={"payload": "no"},
         headers={**C, "Origin": "http://evil.example"})

    # /messages
    case("messages", "GET", "/messages", 200, headers=C)
    case("messages page", "GET", "/messages", 200, target="/messages?after=0&limit=2", headers=C)
    case("messages filtered", "GET", "/messages", 200,
         target="/messages?sender=s1&recipient=bob", headers=C)
    case("messages cookie", "GET", "/messages", 200, target="/messages?limit=1",
         headers={"Cookie": "dsm_token=" + CLIENT_TOKEN})
    case("messages long-poll", "GET", "/messages", 200,
         target="/messages?after=0&wait_ms=0", headers=C)
    case("messages long-poll waits", "GET", "/messages", 200,
         target=f"/messages?after={10**6}&wait_ms=50", headers=C)
    resume = "%7B%22" + sent["origin"] + "%22%3A0%7D"
    case("messages resume", "GET", "/messages", 200, target="/messages?resume=" + resume,
         headers=C)
    case("messages bad limit", "GET", "/messages", 400, target="/messages?limit=0", headers=C)
    case("messages bad after", "GET", "/messages", 400, target="/messages?after=-3", headers=C)
    case("messages bad wait_ms", "GET", "/messages", 400, target="/messages?wait_ms=99999",
         headers=C)
    case("messages bad resume", "GET", "/messages", 400, target="/messages?resume=nope",
         headers=C)
    case("messages without token", "GET", "/messages", 401)
    case("messages HEAD", "HEAD", "/messages", 200, headers=C)
    case("messages HEAD bad limit", "HEAD", "/messages", 400, target="/messages?limit=x",
         headers=C)
    case("messages HEAD without token", "HEAD", "/messages", 401)

    # /messages/stream
    stream = case("stream", "GET", "/messages/stream", 200, target="/messages/stream?after=0",
                  headers=C, read_events=2, timeout=10)
    if "\ndata: {" not in stream.body:
        checker.failures.append(("stream", "GET /messages/stream", stream,
                                 [f"no event in the stream's start: {stream.body[:300]!r}"]))
    if not stream.body.startswith("retry:"):
        checker.failures.append(("stream", "GET /messages/stream", stream,
                                 [f"the stream starts with {stream.body!r}"]))
    case("stream Last-Event-ID", "GET", "/messages/stream", 200,
         headers={**C, "Last-Event-ID": "1"}, read_events=1)
    case("stream bad Last-Event-ID", "GET", "/messages/stream", 400,
         headers={**C, "Last-Event-ID": "x"})
    case("stream wait_ms", "GET", "/messages/stream", 400,
         target="/messages/stream?wait_ms=5", headers=C)
    case("stream without token", "GET", "/messages/stream", 401)
    case("stream HEAD", "HEAD", "/messages/stream", 200, headers=C)
    case("stream HEAD without token", "HEAD", "/messages/stream", 401)

    # /status, /metrics
    status = json.loads(case("status", "GET", "/status", 200, headers=C).body)
    names = {p["node_id"] for p in status["peer_status"].values()}
    if names != {"b", "c"}:
        checker.failures.append(("status peer node ids", "GET /status", None,
                                 [f"peer node ids {sorted(names)}, not ['b', 'c']"]))
    case("status HEAD", "HEAD", "/status", 200, headers=C)
    case("status without token", "GET", "/status", 401)
    case("status wrong Host", "GET", "/status", 403, headers={**C, "Host": "evil.example"})
    case("status HEAD without token", "HEAD", "/status", 401)
    case("status HEAD cross-site", "HEAD", "/status", 403,
         headers={**C, "Origin": "http://evil.example"})
    case("metrics", "GET", "/metrics", 200, headers=C)
    case("metrics HEAD", "HEAD", "/metrics", 200, headers=C)
    case("metrics without token", "GET", "/metrics", 401)
    case("metrics HEAD without token", "HEAD", "/metrics", 401)

    # The dashboard: public.
    for path in ("/", "/dashboard", "/dashboard/app.js", "/dashboard/style.css"):
        case(f"dashboard {path}", "GET", path, 200)
        case(f"dashboard {path} HEAD", "HEAD", path, 200)
        case(f"dashboard {path} cross-site", "GET", path, 403,
             headers={"Origin": "http://evil.example"})
        case(f"dashboard {path} HEAD cross-site", "HEAD", path, 403,
             headers={"Origin": "http://evil.example"})

    # /heartbeat
    case("heartbeat", "GET", "/heartbeat", 200, headers=K)
    case("heartbeat HEAD", "HEAD", "/heartbeat", 200, headers=K)
    case("heartbeat without token", "GET", "/heartbeat", 401)
    case("heartbeat client token", "GET", "/heartbeat", 401, headers=C)
    case("heartbeat cross-site", "GET", "/heartbeat", 403,
         headers={**K, "Origin": "http://evil.example"})
    case("heartbeat HEAD without token", "HEAD", "/heartbeat", 401)
    case("heartbeat HEAD cross-site", "HEAD", "/heartbeat", 403,
         headers={**K, "Origin": "http://evil.example"})

    # /replicate
    origin = "spec-origin@0123456789abcdef"
    msg = {"msg_id": "r-1", "sender": "s", "recipient": "r", "payload": "p", "ts": 1.5}
    case("replicate seed", "POST", "/replicate", 200, headers=K, body={"msg": msg})
    case("replicate batch", "POST", "/replicate", 200, headers=K,
         body={"msgs": [{**msg, "msg_id": "r-2", "origin": origin, "origin_seq": 1}]})
    case("replicate gap", "POST", "/replicate", 409, headers=K,
         body={"msgs": [{**msg, "msg_id": "r-9", "origin": origin, "origin_seq": 5}]})
    case("replicate conflict", "POST", "/replicate", 409, headers=K,
         body={"msgs": [{**msg, "msg_id": "r-other", "origin": origin, "origin_seq": 1}]})
    case("replicate bad JSON", "POST", "/replicate", 400, headers=K, body="{")
    case("replicate no msg", "POST", "/replicate", 400, headers=K, body={"other": 1})
    case("replicate missing msg_id", "POST", "/replicate", 400, headers=K,
         body={"msg": {"payload": "p"}})
    case("replicate mixed origins", "POST", "/replicate", 400, headers=K,
         body={"msgs": [{**msg, "msg_id": "m1", "origin": origin, "origin_seq": 2},
                        {**msg, "msg_id": "m2", "origin": "x@1", "origin_seq": 1}]})
    case("replicate payload too large", "POST", "/replicate", 413, headers=K,
         body={"msg": {**msg, "msg_id": "big", "payload": "x" * (MAX_MESSAGE_BYTES + 1)}})
    case("replicate without token", "POST", "/replicate", 401, body={"msg": msg})
    case("replicate client token", "POST", "/replicate", 401, headers=C, body={"msg": msg})
    case("replicate cross-site", "POST", "/replicate", 403, body={"msg": msg},
         headers={**K, "Origin": "http://evil.example"})

    # /sync
    case("sync everything", "POST", "/sync", 200, headers=K, body={"since": 0})
    case("sync page", "POST", "/sync", 200, headers=K, body={"since": 0, "limit": 2})
    case("sync have", "POST", "/sync", 200, headers=K,
         body={"since": 0, "limit": 10, "have": {origin: 1}})
    case("sync origin", "POST", "/sync", 200, headers=K,
         body={"origin": origin, "since": 0, "limit": 10})
    case("sync beyond", "POST", "/sync", 200, headers=K, body={"since": 10**6})
    case("sync bad since", "POST", "/sync", 400, headers=K, body={"since": -1})
    case("sync bad limit", "POST", "/sync", 400, headers=K, body={"limit": 0})
    case("sync bad have", "POST", "/sync", 400, headers=K, body={"have": []})
    case("sync bad JSON", "POST", "/sync", 400, headers=K, body="nope")
    case("sync without token", "POST", "/sync", 401, body={"since": 0})
    case("sync cross-site", "POST", "/sync", 403, body={"since": 0},
         headers={**K, "Origin": "http://evil.example"})

    drive_membership(checker, case, raw_case, cluster, deadline)

    # A heartbeat carrying a membership (what peers send once a change was made): the node's
    # own, sent back to it, changes nothing.
    hb = body_of(case("heartbeat for a membership", "GET", "/heartbeat", 200, headers=K))
    mine = hb.get("membership", {"version": 1, "members": []})
    case("heartbeat with membership", "POST", "/heartbeat", 200, headers=K,
         body={"membership": mine})
    case("heartbeat with membership bad JSON", "POST", "/heartbeat", 400, headers=K, body="{")
    case("heartbeat with membership other field", "POST", "/heartbeat", 400, headers=K,
         body={"membership": mine, "other": 1})
    case("heartbeat with membership bad URL", "POST", "/heartbeat", 400, headers=K,
         body={"membership": {"version": 1, "members": [
             {"url": "ftp://x", "id": "", "added": 1, "removed": 0, "voter": False}]}})
    case("heartbeat with membership without token", "POST", "/heartbeat", 401,
         body={"membership": mine})
    after = body_of(case("heartbeat after its own membership", "GET", "/heartbeat", 200,
                         headers=K))
    if after.get("membership") != hb.get("membership"):
        checker.failures.append(("heartbeat with membership", "POST /heartbeat", None,
                                 [f"its own membership sent back changed it: {hb} -> {after}"]))
    drive_consumers(checker, case, raw_case, port, C, deadline)

    # Requests no operation serves, and the edge's refusals.
    case("unknown route", "GET", "/nope", 404, headers=C)
    case("unknown route POST", "POST", "/nope/deeper", 404, headers=C, body={})
    case("status POST", "POST", "/status", 405, headers=C, body={})
    case("send GET", "GET", "/send", 405, headers=C)
    case("messages DELETE", "DELETE", "/messages", 405, headers=C)
    case("heartbeat PUT", "PUT", "/heartbeat", 405, headers=K, body={})
    case("dashboard POST", "POST", "/dashboard", 405, body={})
    raw_case("malformed request line", "GARBAGE", "/", 400, b"GARBAGE\r\n\r\n")
    raw_case("two Content-Length", "POST", "/send", 400,
             raw_request("POST", "/send", "Content-Length: 2", "Content-Length: 2", body="{}"))
    raw_case("Transfer-Encoding", "POST", "/send", 411,
             raw_request("POST", "/send", "Transfer-Encoding: chunked", body="0\r\n\r\n"))
    raw_case("body over the limit", "POST", "/send", 413,
             raw_request("POST", "/send", f"Content-Length: {MAX_REQUEST_BYTES + 1}"))
    raw_case("head over the limit", "GET", "/status", 431,
             raw_request("GET", "/status", "X-Padding: " + "p" * 20000))

    # Quorum refused: c down, a (quorum 3) knows it. /status says "not alive" as soon as the
    # heartbeat timeout has passed, which can be a moment before a's own loop marks c dead (and
    # a quorum write is refused only then); a failed exchange with c counted after that answer
    # marks c dead, so the wait is for one.
    c.kill()
    failures_when_seen_dead = []

    def c_dead():
        peer = json.loads(request(port, "GET", "/status", headers=C).body)["peer_status"][c.url]
        if peer["alive"]:
            return False
        if not failures_when_seen_dead:
            failures_when_seen_dead.append(peer["consecutive_failures"])
        return peer["consecutive_failures"] > failures_when_seen_dead[0]
    wait_for("a to see c dead", c_dead, deadline)
    case("send quorum refused", "POST", "/send", 503, headers=C,
         body={"payload": "q2", "ack": "quorum"})

    # A node holds at most 1000 durable consumers (DurableConsumersOptions): fill it up.
    listed = json.loads(request(port, "GET", "/consumers", headers=C).body)["consumers"]
    for i in range(1000 - len(listed)):
        if request(port, "PUT", f"/consumers/spec-fill-{i}", headers=C).status != 201:
            raise Failure(f"could not create consumer spec-fill-{i}")
        if time.monotonic() > deadline:
            raise Failure(f"timed out creating consumers ({i + 1} of {1000 - len(listed)})")
    case("consumer too many", "PUT", "/consumers/{name}", 503, target="/consumers/spec-more",
         headers=C)

    # Last, a member removed by its node id (a is async: its --quorum does not forbid it).
    gone = body_of(case("member remove by node id", "DELETE", "/cluster/members/{id}", 200,
                        target="/cluster/members/c", headers=K))
    if gone.get("member") != {"id": "c", "url": c.url, "role": "removed"}:
        checker.failures.append(("member remove by node id", "DELETE /cluster/members/{id}",
                                 None, [f"not c removed: {gone}"]))
    del b  # b only serves the quorum


def body_of(answer):
    return json.loads(answer.body) if answer.body else {}


def expectation(checker, where):
    """expect(name, what, ok): records a failure `what` of the case `name` unless ok."""
    def expect(name, what, ok):
        if not ok:
            checker.failures.append((name, where, None, [what]))
            log(f"FAIL {name}: {what}")
    return expect


def drive_membership(checker, case, raw_case, cluster, deadline):
    """Cluster membership on a: GET /cluster; the ghost (a URL nobody listens on) added, seen in
    a's /heartbeat, /status and /cluster and by b and c, removed, added again and removed again;
    every refusal. On q a removal its quorum forbids, on o (no cluster token) both changes.
    Leaves a, b and c as it found them but for the membership version."""
    a, b, c, q, o = (cluster.nodes[n] for n in ("a", "b", "c", "q", "o"))
    ghost = cluster.ghost_url
    C, K = client_auth(), cluster_auth()
    members, one = "/cluster/members", "/cluster/members/{id}"
    by_url = "/cluster/members/" + urllib.parse.quote(ghost, safe="")
    cross = {"Origin": "http://evil.example"}
    expect = expectation(checker, "membership")

    def status(node):
        return json.loads(request(node.port, "GET", "/status", headers=C).body)

    def member(view, url):
        return next((m for m in view.get("members", []) if m.get("url") == url), None)

    # GET /cluster: a first (its own URL unknown), then its --peers, b and c.
    view = body_of(case("cluster", "GET", "/cluster", 200, headers=C))
    listed = [(m["id"], m["url"], m["role"], m["self"]) for m in view.get("members", [])]
    expect("cluster", f"not version 0 and a, b, c as voters: {view}",
           view.get("version") == 0 and listed == [("a", None, "voter", True),
                                                   ("b", b.url, "voter", False),
                                                   ("c", c.url, "voter", False)])
    case("cluster HEAD", "HEAD", "/cluster", 200, headers=C)
    case("cluster cluster token", "GET", "/cluster", 200, headers=K)
    case("cluster cookie", "GET", "/cluster", 200, headers={"Cookie": "dsm_token=" + CLIENT_TOKEN})
    case("cluster without token", "GET", "/cluster", 401)
    case("cluster HEAD without token", "HEAD", "/cluster", 401)
    case("cluster cross-site", "GET", "/cluster", 403, headers={**C, **cross})
    case("cluster HEAD cross-site", "HEAD", "/cluster", 403, headers={**C, **cross})
    case("cluster of a node without tokens", "GET", "/cluster", 200, on=o)

    # POST /cluster/members: the ghost joins a as a learner (the trailing slash is dropped).
    added = body_of(case("member add", "POST", members, 201, headers=K, body={"url": ghost + "/"}))
    expect("member add", f"not version 1 and the ghost as a learner: {added}",
           added.get("version") == 1 and
           added.get("member") == {"id": "", "url": ghost, "role": "learner"})
    case("member add again", "POST", members, 409, headers=K, body={"url": ghost})
    for name, body, refuses in (("bad JSON", '{"url": ', False),
                                ("not an object", [ghost], True),
                                ("no url", {}, True),
                                ("url not a string", {"url": 8000}, True),
                                ("unknown field", {"url": ghost, "voter": True}, True),
                                ("no scheme", {"url": "127.0.0.1:8000"}, True),
                                ("no port", {"url": "http://127.0.0.1"}, True),
                                ("a path", {"url": "http://127.0.0.1:8000/x"}, True),
                                ("port 0", {"url": "http://127.0.0.1:0"}, False),
                                ("port over 65535", {"url": "http://127.0.0.1:65536"}, False),
                                ("url too long", {"url": f"http://{'h' * 243}.x:8000"}, True),
                                ("this node", {"url": a.url}, False),
                                ("this node as localhost", {"url": f"http://localhost:{a.port}"},
                                 False)):
        case(f"member add {name}", "POST", members, 400, headers=K, body=body,
             schema_refuses=refuses)
    case("member add without token", "POST", members, 401, body={"url": ghost})
    case("member add client token", "POST", members, 401, headers=C, body={"url": ghost})
    case("member add wrong token", "POST", members, 401, headers={"X-Dsm-Token": "wrong"},
         body={"url": ghost})
    case("member add cross-site", "POST", members, 403, headers={**K, **cross},
         body={"url": ghost})
    case("member add without a cluster token", "POST", members, 403, on=o, body={"url": a.url})
    too_long = f"Content-Length: {MAX_REQUEST_BYTES + 1}"
    raw_case("member add body over the limit", "POST", members, 413,
             raw_request("POST", members, too_long, token=CLUSTER_TOKEN))
    raw_case("member add Transfer-Encoding", "POST", members, 411,
             raw_request("POST", members, "Transfer-Encoding: chunked", body="0\r\n\r\n",
                         token=CLUSTER_TOKEN))

    # The change as a tells it: its heartbeat answers carry the membership, /status and
    # /cluster list the learner; b and c hear of it.
    hb = body_of(case("heartbeat after a change", "GET", "/heartbeat", 200, headers=K))
    told = member(hb.get("membership", {}), ghost)
    expect("heartbeat after a change", f"no membership version 1 with the ghost added: {hb}",
           hb.get("membership", {}).get("version") == 1 and
           told == {"url": ghost, "id": "", "added": 1, "removed": 0, "voter": False})
    st = body_of(case("status after a change", "GET", "/status", 200, headers=C))
    peer = st.get("peer_status", {}).get(ghost, {})
    expect("status after a change", f"not version 1 with the ghost a learner peer: {st}",
           st.get("membership_version") == 1 and st.get("role") == "voter" and
           ghost in st.get("peers", []) and peer.get("role") == "learner" and
           peer.get("alive") is False)
    view = body_of(case("cluster after a change", "GET", "/cluster", 200, headers=C))
    expect("cluster after a change", f"not version 1 with the ghost a lagging learner: {view}",
           view.get("version") == 1 and member(view, ghost) is not None and
           {k: v for k, v in member(view, ghost).items() if k != "lag"} ==
           {"id": "", "url": ghost, "role": "learner", "self": False, "alive": False} and
           member(view, ghost)["lag"] > 0)

    def heard(node, version, ghost_member):
        st = status(node)
        return st["membership_version"] >= version and (ghost in st["peers"]) == ghost_member
    wait_for("b and c to hear of the ghost", lambda: heard(b, 1, True) and heard(c, 1, True),
             deadline)
    expect("b hears of the ghost", "b does not list the ghost as a learner",
           status(b)["peer_status"][ghost]["role"] == "learner")
    # b's answers name a's URL by a's node id: a learns its own URL.
    wait_for("a to learn its own URL",
             lambda: json.loads(request(a.port, "GET", "/cluster", headers=C).body)
             ["members"][0]["url"] == a.url, deadline)
    case("cluster once a knows its URL", "GET", "/cluster", 200, headers=C)

    # DELETE /cluster/members/{id}: the refusals first, then the ghost leaves.
    for name, target, want in (("this node", "/cluster/members/a", 409),
                               ("this node by URL",
                                "/cluster/members/" + urllib.parse.quote(a.url, safe=""), 409),
                               ("unknown", "/cluster/members/nobody", 404),
                               ("bad encoding", "/cluster/members/%zz", 400),
                               ("id too long", "/cluster/members/" + "n" * 257, 400)):
        case(f"member remove {name}", "DELETE", one, want, target=target, headers=K)
    case("member remove without token", "DELETE", one, 401, target=by_url)
    case("member remove client token", "DELETE", one, 401, target=by_url, headers=C)
    case("member remove cross-site", "DELETE", one, 403, target=by_url, headers={**K, **cross})
    case("member remove without a cluster token", "DELETE", one, 403, target=by_url, on=o)
    case("member remove under the quorum", "DELETE", one, 409, target=by_url, headers=K, on=q)
    case("member remove q itself", "DELETE", one, 409, target="/cluster/members/q", headers=K,
         on=q)
    longest = f"http://{'h' * 242}.x:8000"  # 256 bytes: the longest id DELETE takes
    case("member add the longest URL", "POST", members, 201, headers=K, on=q,
         body={"url": longest + "/"})
    case("member remove the longest URL", "DELETE", one, 200, headers=K, on=q,
         target="/cluster/members/" + urllib.parse.quote(longest, safe=""))
    raw_case("member remove head over the limit", "DELETE", one, 431,
             raw_request("DELETE", by_url, "X-Padding: " + "p" * 20000, token=CLUSTER_TOKEN))
    removed = body_of(case("member remove", "DELETE", one, 200, target=by_url, headers=K))
    expect("member remove", f"not version 2 and the ghost removed: {removed}",
           removed.get("version") == 2 and
           removed.get("member") == {"id": "", "url": ghost, "role": "removed"})
    case("member remove again", "DELETE", one, 404, target=by_url, headers=K)
    hb = body_of(case("heartbeat after a removal", "GET", "/heartbeat", 200, headers=K))
    told = member(hb.get("membership", {}), ghost) or {}
    expect("heartbeat after a removal", f"no membership version 2 with the ghost removed: {hb}",
           hb.get("membership", {}).get("version") == 2 and
           (told.get("added"), told.get("removed")) == (1, 2))
    st = body_of(case("status after a removal", "GET", "/status", 200, headers=C))
    expect("status after a removal", f"not version 2 without the ghost: {st}",
           st.get("membership_version") == 2 and ghost not in st.get("peers", []) and
           ghost not in st.get("peer_status", {}))
    view = body_of(case("cluster after a removal", "GET", "/cluster", 200, headers=C))
    expect("cluster after a removal", f"not version 2 with a, b and c only: {view}",
           view.get("version") == 2 and
           [m["url"] for m in view.get("members", [])] == [a.url, b.url, c.url])

    # A removed URL may be added again (a newer add), and removed again (its URL spelt with the
    # trailing slash POST accepts).
    again = body_of(case("member add after its removal", "POST", members, 201, headers=K,
                         body={"url": ghost}))
    expect("member add after its removal", f"not version 3: {again}", again.get("version") == 3)
    again = body_of(case("member remove once more", "DELETE", one, 200, target=by_url + "%2F",
                         headers=K))
    expect("member remove once more", f"not version 4: {again}", again.get("version") == 4)
    wait_for("b and c to hear of the last removal",
             lambda: heard(b, 4, False) and heard(c, 4, False), deadline)

    # Methods the paths do not answer.
    for method, path, target in (("PUT", "/cluster", "/cluster"),
                                 ("POST", "/cluster", "/cluster"),
                                 ("GET", members, members), ("DELETE", members, members),
                                 ("GET", one, "/cluster/members/b"),
                                 ("POST", one, "/cluster/members/b")):
        case(f"cluster {method} {path}", method, path, 405, target=target, headers=K,
             body={} if method in ("POST", "PUT") else None)


def drive_consumers(checker, case, raw_case, port, C, deadline):
    """The durable consumers: every operation, its answers and refusals, on node a."""
    one, fetch = "/consumers/{name}", "/consumers/{name}/messages"
    ack, nak, dead = "/consumers/{name}/ack", "/consumers/{name}/nak", "/consumers/{name}/dead"
    cross = {**C, "Origin": "http://evil.example"}
    expect = expectation(checker, "consumers")

    # Messages for the consumers: three to "worker".
    case("consumer messages", "POST", "/send", 200, headers=C,
         body={"messages": [{"recipient": "worker", "payload": f"job {i}"} for i in range(3)]})

    # PUT /consumers/{name}
    case("consumers none", "GET", "/consumers", 200, headers=C)
    worker = {"recipient": "worker", "ack_wait_ms": 60000, "max_in_flight": 10,
              "max_deliveries": 0}
    case("consumer create", "PUT", one, 201, target="/consumers/spec-worker", headers=C,
         body=worker)
    case("consumer create again", "PUT", one, 200, target="/consumers/spec-worker", headers=C,
         body=worker)
    case("consumer other definition", "PUT", one, 409, target="/consumers/spec-worker",
         headers=C, body={**worker, "max_in_flight": 11})
    case("consumer defaults", "PUT", one, 201, target="/consumers/spec_defaults", headers=C)
    case("consumer start new", "PUT", one, 201, target="/consumers/spec-new", headers=C,
         body={"start": "new", "sender": None, "recipient": None, "max_deliveries": None})
    case("consumer start seq", "PUT", one, 201, target="/consumers/spec-seq", headers=C,
         body={"start": 1, "sender": "s1"})
    case("consumer bad name", "PUT", one, 400, target="/consumers/bad.name", headers=C, body={})
    case("consumer name too long", "PUT", one, 400, target="/consumers/" + "n" * 65, headers=C)
    case("consumer unknown field", "PUT", one, 400, target="/consumers/spec-x", headers=C,
         body={"max_delivery": 3}, schema_refuses=True)
    case("consumer bad JSON", "PUT", one, 400, target="/consumers/spec-x", headers=C,
         body='{"start": ')
    case("consumer not an object", "PUT", one, 400, target="/consumers/spec-x", headers=C,
         body=[1], schema_refuses=True)
    case("consumer bad ack_wait_ms", "PUT", one, 400, target="/consumers/spec-x", headers=C,
         body={"ack_wait_ms": 0}, schema_refuses=True)
    case("consumer bad max_in_flight", "PUT", one, 400, target="/consumers/spec-x", headers=C,
         body={"max_in_flight": 100001}, schema_refuses=True)
    case("consumer bad recipient", "PUT", one, 400, target="/consumers/spec-x", headers=C,
         body={"recipient": ""}, schema_refuses=True)
    case("consumer bad start", "PUT", one, 400, target="/consumers/spec-x", headers=C,
         body={"start": "last"}, schema_refuses=True)
    case("consumer start beyond the log", "PUT", one, 400, target="/consumers/spec-x",
         headers=C, body={"start": 10**9})
    case("consumer without token", "PUT", one, 401, target="/consumers/spec-x", body={})
    case("consumer cross-site", "PUT", one, 403, target="/consumers/spec-x", headers=cross,
         body={})
    case("consumer cookie PUT", "PUT", one, 401, target="/consumers/spec-x", body={},
         headers={"Cookie": "dsm_token=" + CLIENT_TOKEN})

    # GET and HEAD /consumers/{name}, GET /consumers
    got = body_of(case("consumer", "GET", one, 200, target="/consumers/spec-worker", headers=C))
    origins = got.get("consumer", {}).get("position", {}).get("origins")
    expect("consumer origins", f"no position.origins: {got}", isinstance(origins, dict))
    case("consumer start origins", "PUT", one, 201, target="/consumers/spec-moved", headers=C,
         body={"recipient": "worker", "start": origins or {}})
    case("consumer cookie", "GET", one, 200, target="/consumers/spec-worker",
         headers={"Cookie": "dsm_token=" + CLIENT_TOKEN})
    case("consumer HEAD", "HEAD", one, 200, target="/consumers/spec-worker", headers=C)
    case("consumer unknown", "GET", one, 404, target="/consumers/nobody", headers=C)
    case("consumer HEAD unknown", "HEAD", one, 404, target="/consumers/nobody", headers=C)
    case("consumer GET bad name", "GET", one, 400, target="/consumers/bad.name", headers=C)
    case("consumer HEAD bad name", "HEAD", one, 400, target="/consumers/bad.name", headers=C)
    case("consumer GET without token", "GET", one, 401, target="/consumers/spec-worker")
    case("consumer HEAD without token", "HEAD", one, 401, target="/consumers/spec-worker")
    case("consumer GET cross-site", "GET", one, 403, target="/consumers/spec-worker",
         headers=cross)
    case("consumer HEAD cross-site", "HEAD", one, 403, target="/consumers/spec-worker",
         headers=cross)
    listed = body_of(case("consumers", "GET", "/consumers", 200, headers=C))
    names = sorted(c["name"] for c in listed.get("consumers", []))
    expect("consumers listed", f"listed {names}",
           names == ["spec-moved", "spec-new", "spec-seq", "spec-worker", "spec_defaults"])
    case("consumers HEAD", "HEAD", "/consumers", 200, headers=C)
    case("consumers without token", "GET", "/consumers", 401)
    case("consumers HEAD without token", "HEAD", "/consumers", 401)
    case("consumers cross-site", "GET", "/consumers", 403, headers=cross)
    case("consumers HEAD cross-site", "HEAD", "/consumers", 403, headers=cross)

    # GET /consumers/{name}/messages
    page = body_of(case("consumer fetch", "GET", fetch, 200,
                        target="/consumers/spec-worker/messages?max=10", headers=C))
    ids = [m["ack_id"] for m in page.get("messages", [])]
    expect("consumer fetch", f"{len(ids)} messages fetched, not 3", len(ids) == 3)
    if len(ids) != 3:
        raise Failure("the consumer scenario needs the three messages to worker")
    case("consumer fetch nothing", "GET", fetch, 200,
         target="/consumers/spec-worker/messages?max=10&wait_ms=0", headers=C)
    case("consumer fetch waits", "GET", fetch, 200,
         target="/consumers/spec-worker/messages?wait_ms=50", headers=C)
    case("consumer fetch cookie", "GET", fetch, 200, target="/consumers/spec-new/messages",
         headers={"Cookie": "dsm_token=" + CLIENT_TOKEN})
    for name, query in (("max 0", "max=0"), ("max over", "max=1001"), ("max text", "max=x"),
                        ("wait_ms over", "wait_ms=30001"), ("wait_ms negative", "wait_ms=-1")):
        case(f"consumer fetch bad {name}", "GET", fetch, 400,
             target="/consumers/spec-worker/messages?" + query, headers=C)
    case("consumer fetch unknown", "GET", fetch, 404, target="/consumers/nobody/messages",
         headers=C)
    case("consumer fetch bad name", "GET", fetch, 400, target="/consumers/bad.name/messages",
         headers=C)
    case("consumer fetch without token", "GET", fetch, 401,
         target="/consumers/spec-worker/messages")
    case("consumer fetch cross-site", "GET", fetch, 403,
         target="/consumers/spec-worker/messages", headers=cross)
    case("consumer fetch HEAD", "HEAD", fetch, 200, target="/consumers/spec-worker/messages",
         headers=C)
    case("consumer fetch HEAD unknown", "HEAD", fetch, 404, target="/consumers/nobody/messages",
         headers=C)
    case("consumer fetch HEAD bad max", "HEAD", fetch, 400,
         target="/consumers/spec-worker/messages?max=0", headers=C)
    case("consumer fetch HEAD bad name", "HEAD", fetch, 400,
         target="/consumers/bad.name/messages", headers=C)
    case("consumer fetch HEAD without token", "HEAD", fetch, 401,
         target="/consumers/spec-worker/messages")
    case("consumer fetch HEAD cross-site", "HEAD", fetch, 403,
         target="/consumers/spec-worker/messages", headers=cross)

    # POST /consumers/{name}/ack and /nak
    def results(answer):
        return [r["result"] for r in body_of(answer).get("results", [])]

    def outcome(name, path, target, body, want):
        answer = case(name, "POST", path, 200, target=target, headers=C, body=body)
        expect(name, f"results {results(answer)}, not {want}", results(answer) == want)

    uid, session = ids[0].split(".")[:2]
    seq, delivery = ids[2].split(".")[2:]
    wack, wnak = "/consumers/spec-worker/ack", "/consumers/spec-worker/nak"
    outcome("consumer ack", ack, wack, {"ack_ids": [ids[0]]}, ["acked"])
    outcome("consumer ack again", ack, wack, {"ack_ids": [ids[0]]}, ["already_acked"])
    outcome("consumer nak", nak, wnak, {"ack_ids": [ids[1]], "delay_ms": 0}, ["naked"])
    again = body_of(case("consumer fetch again", "GET", fetch, 200,
                         target="/consumers/spec-worker/messages?max=10&wait_ms=5000",
                         headers=C))
    redelivered = [m for m in again.get("messages", []) if m["ack_id"] != ids[1]]
    expect("consumer redelivery", f"no second delivery of {ids[1]}: {again}",
           [m["delivery"] for m in redelivered] == [2])
    outcome("consumer ack stale", ack, wack, {"ack_ids": [ids[1]]}, ["stale"])
    outcome("consumer ack redelivered", ack, wack,
            {"ack_ids": [m["ack_id"] for m in redelivered]}, ["acked"] * len(redelivered))
    outcome("consumer nak no delay", nak, wnak, {"ack_ids": [ids[2]]}, ["naked"])
    for name, body, refuses in (
            ("never delivered", {"ack_ids": [f"{uid}.{session}.{10**6}.1"]}, False),
            ("delivery never made", {"ack_ids": [f"{uid}.{session}.{seq}.{int(delivery) + 5}"]},
             False),
            ("of another consumer", {"ack_ids": [f"{'0' * 8}.{session}.{seq}.{delivery}"]}, False),
            ("malformed id", {"ack_ids": ["x"]}, False),
            ("no ids", {"ack_ids": []}, True),
            ("no ack_ids", {}, True),
            ("id too long", {"ack_ids": ["x" * 129]}, True),
            ("unknown field", {"ack_ids": [ids[0]], "delay_ms": 5}, True),
            ("not an object", ["x"], True)):
        case(f"consumer ack {name}", "POST", ack, 400, target=wack, headers=C, body=body,
             schema_refuses=refuses)
    case("consumer ack bad JSON", "POST", ack, 400, target=wack, headers=C, body="{")
    case("consumer nak bad delay_ms", "POST", nak, 400, target=wnak, headers=C,
         body={"ack_ids": [ids[2]], "delay_ms": -1}, schema_refuses=True)
    case("consumer nak unknown field", "POST", nak, 400, target=wnak, headers=C,
         body={"ack_ids": [ids[2]], "after_ms": 5}, schema_refuses=True)
    case("consumer nak never delivered", "POST", nak, 400, target=wnak, headers=C,
         body={"ack_ids": [f"{uid}.{session}.{10**6}.1"]})
    for path, verb in ((ack, "ack"), (nak, "nak")):
        target = f"/consumers/nobody/{verb}"
        case(f"consumer {verb} unknown", "POST", path, 404, target=target, headers=C,
             body={"ack_ids": [ids[0]]})
        case(f"consumer {verb} bad name", "POST", path, 400,
             target=f"/consumers/bad.name/{verb}", headers=C, body={"ack_ids": [ids[0]]})
        case(f"consumer {verb} without token", "POST", path, 401,
             target=f"/consumers/spec-worker/{verb}", body={"ack_ids": [ids[0]]})
        case(f"consumer {verb} cross-site", "POST", path, 403,
             target=f"/consumers/spec-worker/{verb}", headers=cross, body={"ack_ids": [ids[0]]})

    # GET /consumers/{name}/dead: a consumer that gives up after one delivery.
    case("consumer dead-letters", "PUT", one, 201, target="/consumers/spec-dead", headers=C,
         body={"recipient": "worker", "max_deliveries": 1})
    first = body_of(case("consumer dead fetch", "GET", fetch, 200,
                         target="/consumers/spec-dead/messages", headers=C))
    outcome("consumer nak dead-letters", nak, "/consumers/spec-dead/nak",
            {"ack_ids": [m["ack_id"] for m in first.get("messages", [])]}, ["dead_lettered"])
    listing = body_of(case("consumer dead", "GET", dead, 200, target="/consumers/spec-dead/dead",
                           headers=C))
    expect("consumer dead", f"not one dead letter with its message: {listing}",
           len(listing.get("dead", [])) == 1 and listing["dead"][0]["message"] is not None)
    case("consumer dead page", "GET", dead, 200,
         target="/consumers/spec-dead/dead?after=0&limit=1", headers=C)
    case("consumer dead none", "GET", dead, 200, target="/consumers/spec-worker/dead",
         headers=C)
    for name, query in (("limit 0", "limit=0"), ("limit over", "limit=10001"),
                        ("after negative", "after=-1")):
        case(f"consumer dead bad {name}", "GET", dead, 400,
             target="/consumers/spec-dead/dead?" + query, headers=C)
    case("consumer dead unknown", "GET", dead, 404, target="/consumers/nobody/dead", headers=C)
    case("consumer dead bad name", "GET", dead, 400, target="/consumers/bad.name/dead",
         headers=C)
    case("consumer dead without token", "GET", dead, 401, target="/consumers/spec-dead/dead")
    case("consumer dead cross-site", "GET", dead, 403, target="/consumers/spec-dead/dead",
         headers=cross)
    case("consumer dead HEAD", "HEAD", dead, 200, target="/consumers/spec-dead/dead", headers=C)
    case("consumer dead HEAD bad limit", "HEAD", dead, 400,
         target="/consumers/spec-dead/dead?limit=0", headers=C)
    case("consumer dead HEAD unknown", "HEAD", dead, 404, target="/consumers/nobody/dead",
         headers=C)
    case("consumer dead HEAD without token", "HEAD", dead, 401,
         target="/consumers/spec-dead/dead")
    case("consumer dead HEAD cross-site", "HEAD", dead, 403, target="/consumers/spec-dead/dead",
         headers=cross)

    # A fetch waiting on a consumer that is deleted meanwhile gets 404.
    case("consumer doomed", "PUT", one, 201, target="/consumers/spec-doomed", headers=C,
         body={"recipient": "nobody-writes-here"})
    waited = []
    waiter = threading.Thread(target=lambda: waited.append(request(
        port, "GET", "/consumers/spec-doomed/messages?wait_ms=20000", headers=C, timeout=30)))
    waiter.start()

    def fetch_waits():
        metrics = request(port, "GET", "/metrics", headers=C).body
        return re.search(r"^dsm_consumer_waiting_fetches [1-9]", metrics, re.M) is not None
    try:
        wait_for("the fetch of spec-doomed to wait", fetch_waits, deadline)
    finally:
        case("consumer delete while fetched", "DELETE", one, 200, target="/consumers/spec-doomed",
             headers=C)
        waiter.join(timeout=30)
    if not waited:
        raise Failure("the waiting fetch of a deleted consumer got no answer")
    checker.check("consumer deleted while a fetch waits", "GET", fetch, waited[0], 404)

    # DELETE /consumers/{name}; the ids of a deleted consumer are refused by its successor.
    case("consumer delete", "DELETE", one, 200, target="/consumers/spec-worker", headers=C)
    case("consumer delete again", "DELETE", one, 404, target="/consumers/spec-worker",
         headers=C)
    case("consumer delete bad name", "DELETE", one, 400, target="/consumers/bad.name",
         headers=C)
    case("consumer delete without token", "DELETE", one, 401, target="/consumers/spec-new")
    case("consumer delete cross-site", "DELETE", one, 403, target="/consumers/spec-new",
         headers=cross)
    case("consumer recreate", "PUT", one, 201, target="/consumers/spec-worker", headers=C,
         body=worker)
    case("consumer ack of the deleted one", "POST", ack, 400, target=wack, headers=C,
         body={"ack_ids": [ids[2]]})

    # Methods the paths do not answer, and the edge's refusals on consumer requests.
    for method, path, target in (("POST", "/consumers", "/consumers"),
                                 ("POST", one, "/consumers/spec-worker"),
                                 ("PATCH", one, "/consumers/spec-worker"),
                                 ("POST", fetch, "/consumers/spec-worker/messages"),
                                 ("GET", ack, wack), ("PUT", nak, wnak),
                                 ("DELETE", dead, "/consumers/spec-worker/dead")):
        case(f"consumer {method} {path}", method, path, 405, target=target, headers=C,
             body={} if method in ("POST", "PUT", "PATCH") else None)
    too_long = f"Content-Length: {MAX_REQUEST_BYTES + 1}"
    for method, path, target in (("PUT", one, "/consumers/spec-big"), ("POST", ack, wack),
                                 ("POST", nak, wnak)):
        raw_case(f"consumer body over the limit {method} {path}", method, path, 413,
                 raw_request(method, target, too_long))
        raw_case(f"consumer Transfer-Encoding {method} {path}", method, path, 411,
                 raw_request(method, target, "Transfer-Encoding: chunked", body="0\r\n\r\n"))
    raw_case("consumers head over the limit", "GET", "/consumers", 431,
             raw_request("GET", "/consumers", "X-Padding: " + "p" * 20000))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["lint", "answers"])
    ap.add_argument("--spec", default=DEFAULT_SPEC)
    ap.add_argument("--bin-dir", help="directory holding dsm-node (answers)")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--keep", action="store_true", help="keep the nodes' data and logs")
    args = ap.parse_args()
    doc = load(args.spec)

    problems, operations = lint(doc)
    for p in problems:
        log(f"lint: {p}")
    if problems:
        log(f"FAILED: {len(problems)} problems in {args.spec}")
        return 1
    log(f"lint: {operations} operations, every $ref resolves, every schema is valid 2020-12")
    if args.what == "lint":
        return 0

    binary = find_binary(args.bin_dir)
    if not binary:
        log("FAILED: no dsm-node binary (pass --bin-dir)")
        return 1
    deadline = time.monotonic() + args.timeout
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(Failure(f"signal {s}")))
    work = tempfile.mkdtemp(prefix="dsm-openapi-")
    cluster = Cluster(binary, os.path.join(work, "cluster"))
    checker = Checker(doc)
    error = None
    try:
        cluster.start(deadline)
        drive(checker, cluster, deadline)
    except (Failure, OSError, ValueError, KeyError) as e:
        error = f"{type(e).__name__}: {e}"
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cluster.stop()

    missing = checker.unexercised()
    for path, method in missing:
        log(f"FAIL: {method.upper()} {path} was not exercised")
    failed = bool(error or checker.failures or missing)
    log(f"{len(checker.statuses)} (operation, status) pairs checked, "
        f"{len(checker.exercised)} operations exercised, {len(checker.failures)} failures")
    return finish(log, failed, error, cluster, work, args.keep, "every answer matches the document")


if __name__ == "__main__":
    sys.exit(main())
