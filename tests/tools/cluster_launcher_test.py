#!/usr/bin/env python3
"""End-to-end test of tools/dsm-cluster, the four-node launcher behind `scripts/dev run`.

  cluster_launcher_test.py --bin PATH/dsm-node [--launcher tools/dsm-cluster] [--keep]

Drives the launcher as a user does, against real dsm-node processes on 127.0.0.1, and checks
what the user sees at every step:

  0. Before any start, `stop`, `status`, `stop NODE`, `kill NODE` and `restart NODE` on the
     empty directory exit 1 saying that no cluster is there.
  1. `start --detach` on a free base port (another one if a port was taken meanwhile) returns
     once all four nodes answer /heartbeat; its table lists them (node4 sync_quorum q=3), it
     prints the exact command that stops them (with the --dir used), and a second `start`
     refuses to run over them.
  2. `status` prints one row per node, all up, every peer alive, lag 0 (also with a dead
     http_proxy in the environment: the launcher talks to 127.0.0.1 directly).
  3. Messages sent to node1 reach node2..node4.
  3b. a durable consumer created on node1 shows in `status`'s consumers table (3 pending).
  4. `kill node2` ends the process; `status` shows node2 down, then (after the heartbeat timeout)
     node1..node4 counting one dead peer, and node1's lag towards node2 growing with the
     messages sent meanwhile; node1's /metrics says dsm_peer_alive 0 for node2.
  5. `restart node2` brings it back: every row up, last_seq equal to node1's, lag 0; node1's
     /metrics says node2 is alive with no lag; node2's /messages holds every message once.
     `stop node3` ends node3 with SIGTERM (a clean stop: its log says so, its pid file is
     removed), a second `stop node3` says it is not running, `restart node3` brings it back.
  6. The stop command `start` printed, run as printed, ends every node it started: the pids are
     gone, the pid files removed, the ports free. A second `stop` says nothing runs there.
  7. `start` in the foreground (no --detach), this time with DSM_CLUSTER_TOKEN and
     DSM_CLIENT_TOKEN in the environment (the nodes require them, the launcher sends them):
     every node is up in `status`, a request without a token gets 401; SIGINT ends it with exit
     0 and no dsm-node behind; the data of the first run is still there.

The launcher is given --dir after the command's name (`dsm-cluster stop --dir D`), except for
the foreground start and the cleanup, which give it first (`dsm-cluster --dir D start`).

Polls with generous deadlines, never sleeps as synchronisation; the whole run is bounded
(--timeout). Whatever happens, it ends with `dsm-cluster stop` and SIGKILL to any node left in
the pid files, and removes its directory (unless --keep). Exits 0 when every check passed, 1
otherwise, printing the failed check with the last status table and the node logs.
Standard library only.
"""
import argparse
import ctypes
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODES = ["node1", "node2", "node3", "node4"]
# Short failure-detector and catch-up periods, so that a death and a recovery show in seconds.
NODE_OPTIONS = ["--heartbeat-interval-ms", "200", "--heartbeat-timeout-ms", "2000",
                "--anti-entropy-interval-ms", "500", "--request-timeout-ms", "1000",
                "--http-threads", "2"]
WAIT = 30.0  # deadline of one awaited condition, seconds
PR_SET_CHILD_SUBREAPER = 36

# Requests to 127.0.0.1 never go through a proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class TestFailure(Exception):
    """A check failed; the message says which and what was seen."""


def log(msg):
    print(f"cluster_launcher_test: {msg}", flush=True)


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


class Deadline:
    """The overall time limit of the run."""

    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self):
        return self.end - time.monotonic()


DEADLINE = Deadline(0)


def wait_for(what, cond, describe=lambda: "", timeout=WAIT, interval=0.1):
    """Polls cond() until it returns a true value, which is returned; fails after `timeout`."""
    end = min(time.monotonic() + timeout, DEADLINE.end)
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            raise TestFailure(f"timed out after {timeout:.0f} s waiting until {what}\n{describe()}")
        time.sleep(interval)


# --- processes and ports --------------------------------------------------------------------

def reap(pid):
    """Collects pid if it is an exited child of this process (the detached nodes are: this
    process is their subreaper)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def running(pid):
    """True while pid is a live (not zombie) process."""
    reap(pid)
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def is_node_of(pid, root):
    """True when pid is a live dsm-node whose data directory lies under root."""
    if not running(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    return (os.path.basename(args[0]) == b"dsm-node"
            and any(a.startswith(os.fsencode(root) + b"/") for a in args))


def port_free(port):
    """True when a server could listen on 127.0.0.1:port now (SO_REUSEADDR, as dsm-node)."""
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(1)
        return True
    except OSError:
        return False
    finally:
        s.close()


def pick_base_port():
    """A random base whose four consecutive ports are free, below the ephemeral range when it
    leaves room (there, outgoing connections do not take them meanwhile)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    top = low - 4 if low - 4 > 12000 else 65531
    for _ in range(200):
        base = random.randint(10000, top)
        if all(port_free(base + i) for i in range(4)):
            return base
    raise TestFailure("found no four consecutive free ports on 127.0.0.1")


# --- HTTP -----------------------------------------------------------------------------------

# The bearer token the test's own requests send (None: none). The cluster token opens every
# endpoint of a node.
TOKEN = None
CLUSTER_TOKEN = "launcher-test-cluster-token"
CLIENT_TOKEN = "launcher-test-client-token"


def http(method, url, body=None, timeout=5.0, token=...):
    """(status, parsed JSON or text, raw text); status 0 when the node does not answer. Sends
    `token` (default: TOKEN) as a bearer token."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    token = TOKEN if token is ... else token
    if token:
        headers["Authorization"] = "Bearer " + token
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _opener.open(req, timeout=timeout) as r:
            status, raw = r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read().decode(errors="replace")
    except OSError:
        return 0, None, ""
    try:
        return status, json.loads(raw), raw
    except ValueError:
        return status, raw, raw


def answers_heartbeat(url):
    status, js, _ = http("GET", url + "/heartbeat", timeout=2.0)
    return status == 200 and isinstance(js, dict) and js.get("status") == "ok"


def messages_of(url):
    """The msg_ids of the node's log in seq order, or None when it does not answer."""
    status, js, _ = http("GET", url + "/messages")
    if status != 200 or not isinstance(js, dict):
        return None
    return [m["msg_id"] for m in js.get("messages", [])]


METRIC_LINE = re.compile(r'^(dsm_peer_\w+)\{peer="([^"]+)"\}\s+(\S+)$')


def peer_metrics(url):
    """{(metric, peer url): value} of the node's dsm_peer_* gauges, and the raw text."""
    status, _, raw = http("GET", url + "/metrics")
    if status != 200:
        return {}, f"GET {url}/metrics answered {status}"
    out = {}
    for line in raw.splitlines():
        m = METRIC_LINE.match(line.strip())
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out, raw


# --- the launcher ---------------------------------------------------------------------------

def launcher_env(**extra):
    """The environment for dsm-cluster and its nodes: no proxy, no tokens but those in `extra`,
    unbuffered output."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
           and k not in ("DSM_CLUSTER_TOKEN", "DSM_CLIENT_TOKEN", "DSM_NODE")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class StatusTable:
    """`dsm-cluster status` output: node, up, last_seq, alive peers, lag per peer; then, after a
    blank line when some node has durable consumers, node, consumer, pending, in_flight, dead."""

    def __init__(self, text):
        self.text = text
        self.rows = {}
        self.consumers = {}
        nodes_part, _, consumers_part = text.strip().partition("\n\n")
        lines = [line for line in nodes_part.splitlines() if line.strip()]
        clines = [line for line in consumers_part.splitlines() if line.strip()]
        if clines:
            check(clines[0].split() == ["node", "consumer", "pending", "in_flight", "dead"],
                  f"status: unexpected consumers header in\n{text}")
            for line in clines[1:]:
                t = line.split()
                check(len(t) == 5 and t[0] in NODES, f"status: unexpected consumer row '{line}'")
                self.consumers[(t[0], t[1])] = {"pending": t[2], "in_flight": t[3], "dead": t[4]}
        check(lines and lines[0].split()[:3] == ["node", "up", "last_seq"],
              f"status: unexpected header in\n{text}")
        for line in lines[1:]:
            t = line.split()
            check(len(t) >= 4 and t[0] in NODES, f"status: unexpected row '{line}' in\n{text}")
            lags = {}
            for tok in t[4:]:
                port, eq, lag = tok.partition("=")
                if eq and port.isdigit():
                    lags[int(port)] = lag
            self.rows[t[0]] = {"up": t[1], "last_seq": t[2], "alive": t[3], "lags": lags}
        check(list(self.rows) == NODES, f"status: expected one row per node {NODES} in\n{text}")

    def row(self, node):
        return self.rows[node]


class Cluster:
    """One --dir of dsm-cluster and what it said."""

    def __init__(self, launcher, binary, root):
        self.launcher = launcher
        self.binary = binary
        self.root = root
        self.base = None
        self.last_status = "(no status yet)"
        self.transcript = []  # (argv, rc, stdout, stderr) of every launcher run

    def run(self, *args, timeout=90, env=None):
        # --dir after the command's name (before the name is what the foreground start does).
        argv = [sys.executable, self.launcher, *args[:1], "--dir", self.root, *args[1:]]
        t = min(timeout, max(DEADLINE.left(), 5))
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=t, env=env or launcher_env())
        except subprocess.TimeoutExpired as e:
            raise TestFailure(f"`dsm-cluster {' '.join(args)}` did not return within {t:.0f} s;"
                              f" output so far:\n{e.stdout or ''}{e.stderr or ''}")
        self.transcript.append((args, r.returncode, r.stdout, r.stderr))
        return r

    def run_ok(self, *args, **kw):
        r = self.run(*args, **kw)
        check(r.returncode == 0, f"`dsm-cluster {' '.join(args)}` exited with {r.returncode}:\n"
                                 f"{r.stdout}{r.stderr}")
        return r

    # Ports and peers of the seed topology.
    def port(self, node):
        return self.base + NODES.index(node)

    def url(self, node):
        return f"http://127.0.0.1:{self.port(node)}"

    def peers(self, node):
        if node == "node4":
            return [self.port(n) for n in NODES[:3]]
        return [self.port(n) for n in NODES[:3] if n != node]

    def pid_file(self, node):
        return os.path.join(self.root, node, "pid")

    def pid_from_file(self, node):
        try:
            with open(self.pid_file(node)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def status(self, env=None):
        r = self.run_ok("status", timeout=30, env=env)
        self.last_status = r.stdout
        return StatusTable(r.stdout)

    def wait_status(self, what, pred, env=None):
        """Polls `status` until pred(table) holds; returns that table."""
        def cond():
            table = self.status(env=env)
            return table if pred(table) else None
        # Each poll runs the launcher (a Python start-up): not too often on a shared machine.
        return wait_for(what, cond, lambda: f"last `dsm-cluster status`:\n{self.last_status}",
                        interval=0.3)

    def healthy(self, table, last_seq=None):
        """Every node up, every peer alive, no lag; every last_seq equal (to last_seq if given)."""
        seqs = set()
        for node in NODES:
            row = table.row(node)
            n = len(self.peers(node))
            if (row["up"] != "up" or row["alive"] != f"{n}/{n}"
                    or row["lags"] != {p: "0" for p in self.peers(node)}):
                return False
            seqs.add(row["last_seq"])
        return len(seqs) == 1 and (last_seq is None or seqs == {str(last_seq)})

    def start_table(self, out):
        """The rows of `start`'s table: {node: (url, pid, mode)}."""
        rows = {}
        for line in out.splitlines():
            m = re.match(r"^(node\d)\s+(http://\S+)\s+(\d+)\s+\S+\s+\((.+)\)$", line)
            if m:
                rows[m.group(1)] = (m.group(2), int(m.group(3)), m.group(4))
        check(list(rows) == NODES, f"`start` should list {NODES} with url, pid and mode:\n{out}")
        for node in NODES:
            url, pid, mode = rows[node]
            check(url == self.url(node), f"`start` lists {node} at {url}, expected "
                                         f"{self.url(node)}:\n{out}")
            want = "sync_quorum q=3" if node == "node4" else "async"
            check(mode == want, f"`start` lists {node} as '{mode}', expected '{want}':\n{out}")
        return rows

    def start_args(self, base):
        return ["start", "--base-port", str(base), "--bin", self.binary, "--", *NODE_OPTIONS]

    def start_detached(self, attempts=4):
        """`start --detach` on a free base port; another base if a port was taken meanwhile."""
        for attempt in range(1, attempts + 1):
            self.base = pick_base_port()
            args = self.start_args(self.base)
            r = self.run(args[0], "--detach", *args[1:])
            if r.returncode == 0:
                return r.stdout
            if "Address already in use" in r.stderr and attempt < attempts:
                log(f"base port {self.base} was taken meanwhile; trying another")
                continue
            raise TestFailure(f"`dsm-cluster start --detach` exited with {r.returncode}:\n"
                              f"{r.stdout}{r.stderr}")
        raise AssertionError("unreachable")

    def log_tails(self, lines=15):
        out = []
        for node in NODES:
            try:
                with open(os.path.join(self.root, node, "node.log"), "rb") as f:
                    tail = f.readlines()[-lines:]
            except OSError:
                continue
            out += [f"    {node}| {line.decode(errors='replace').rstrip()}" for line in tail]
        return "\n".join(out)


# --- the scenario ---------------------------------------------------------------------------

def send(cluster, node, msg_id):
    body = {"sender": "launcher-test", "recipient": "all", "payload": f"payload of {msg_id}",
            "msg_id": msg_id}
    status, js, raw = http("POST", cluster.url(node) + "/send", body)
    check(status == 200 and isinstance(js, dict) and js.get("status") == "ok"
          and js.get("msg_id") == msg_id and js.get("duplicate") is False,
          f"POST {cluster.url(node)}/send {body} answered {status}: {raw}")
    return js["seq"]


def wait_holds(cluster, node, sent):
    """Waits until node's /messages lists every msg_id of `sent`, then checks each is there once
    and nothing else is."""
    url = cluster.url(node)
    seen = {"ids": None}

    def cond():
        seen["ids"] = messages_of(url)
        return seen["ids"] is not None and set(sent) <= set(seen["ids"])
    wait_for(f"{node} holds the {len(sent)} messages sent", cond,
             lambda: f"{node}'s /messages: {seen['ids']}\nsent: {sent}")
    ids = seen["ids"]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    check(not dup, f"{node} holds these messages more than once: {dup}\n/messages: {ids}")
    check(sorted(ids) == sorted(sent), f"{node} holds {ids}, expected exactly {sent}")


def gone(cluster, pids, what):
    """Waits until every pid is gone and every port of the cluster is free."""
    wait_for(f"{what}: no node process left (pids {sorted(pids.values())})",
             lambda: not any(running(p) for p in pids.values()),
             lambda: "still running: " + ", ".join(f"{n} (pid {p})" for n, p in pids.items()
                                                   if running(p)))
    wait_for(f"{what}: ports {cluster.base}..{cluster.base + 3} free again",
             lambda: all(port_free(cluster.port(n)) for n in NODES),
             lambda: "in use: " + ", ".join(str(cluster.port(n)) for n in NODES
                                            if not port_free(cluster.port(n))))


def no_cluster_yet(cluster):
    """Every command but `start` on a directory where no cluster was started: exit 1, and a
    message that says so."""
    for args in (["stop"], ["status"], ["stop", "node2"], ["kill", "node2"], ["restart", "node2"]):
        r = cluster.run(*args, timeout=30)
        check(r.returncode == 1 and f"no cluster in {cluster.root}" in r.stderr,
              f"`dsm-cluster {' '.join(args)}` on an empty directory should exit 1 saying "
              f"'no cluster in {cluster.root}'; exit {r.returncode}:\n{r.stdout}{r.stderr}")
    log("stop, status, stop/kill/restart NODE on an empty directory: exit 1, 'no cluster in ...'")


def printed_stop_command(cluster, out):
    """The stop command `start --detach` printed: the launcher and --dir with this directory."""
    m = re.search(r"stop it with: (.+)$", out, re.M)
    check(m, f"`start --detach` should print the command that stops the cluster:\n{out}")
    argv = shlex.split(m.group(1))
    want = [cluster.launcher, "stop", "--dir", cluster.root]
    check(argv == want, f"`start --detach` printed the stop command {argv}, expected {want}")
    return argv


def scenario(cluster):
    # 0. Nothing started yet.
    no_cluster_yet(cluster)

    # 1. start --detach: returns once every node answers.
    out = cluster.start_detached()
    log(f"started detached on ports {cluster.base}..{cluster.base + 3}:\n{out.rstrip()}")
    stop_argv = printed_stop_command(cluster, out)
    rows = cluster.start_table(out)
    pids = {node: rows[node][1] for node in NODES}
    for node in NODES:
        check(cluster.pid_from_file(node) == pids[node],
              f"{node}: pid file says {cluster.pid_from_file(node)}, `start` said {pids[node]}")
        check(running(pids[node]), f"{node} (pid {pids[node]}) is not running after `start`")
        check(answers_heartbeat(cluster.url(node)),
              f"{node} does not answer GET {cluster.url(node)}/heartbeat after `start` returned")
        with open(f"/proc/{pids[node]}/cmdline", "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0")]
        check(all(o in argv for o in NODE_OPTIONS[:2]),
              f"{node} does not run with the options given after --: {argv}")
    status, js, raw = http("GET", cluster.url("node4") + "/status")
    check(status == 200 and isinstance(js, dict)
          and js.get("replication_mode") == "sync_quorum" and js.get("quorum") == 3,
          f"node4 should run sync_quorum with quorum 3; /status answered {status}: {raw}")
    args = cluster.start_args(cluster.base)
    r = cluster.run(args[0], "--detach", *args[1:])
    check(r.returncode != 0 and "already running: node1, node2, node3, node4" in r.stderr
          and shlex.join(stop_argv) in r.stderr,
          f"a second `start` over a running cluster should refuse; exit {r.returncode}:\n"
          f"{r.stdout}{r.stderr}")

    # 2. status: one row per node, all up, peers alive, no lag.
    table = cluster.wait_status("every node is up with every peer alive and lag 0",
                                lambda t: cluster.healthy(t, last_seq=0))
    log(f"status:\n{table.text.rstrip()}")
    # The launcher's own requests ignore a proxy from the environment (here one that is down).
    dead_proxy = f"http://127.0.0.1:{pick_base_port()}"
    env = launcher_env(http_proxy=dead_proxy, HTTP_PROXY=dead_proxy)
    table = cluster.status(env=env)
    check(all(table.row(n)["up"] == "up" for n in NODES),
          f"with http_proxy={dead_proxy} set, `status` should still reach the nodes:\n{table.text}")

    # 3. Messages sent to node1 reach node2..node4.
    sent = [f"launcher-test-{i}" for i in range(1, 4)]
    for i, msg_id in enumerate(sent, 1):
        check(send(cluster, "node1", msg_id) == i, f"node1 should store message {i} at seq {i}")
    for node in NODES[1:]:
        wait_holds(cluster, node, sent)
    cluster.wait_status(f"every node has last_seq {len(sent)}, peers alive, lag 0",
                        lambda t: cluster.healthy(t, last_seq=len(sent)))
    log(f"{len(sent)} messages sent to node1 reached node2..node4")

    # 3b. A durable consumer on node1 shows in the status table's consumers part.
    status, _, raw = http("PUT", cluster.url("node1") + "/consumers/launcher", {"recipient": "all"})
    check(status == 201, f"PUT /consumers/launcher on node1 answered {status}: {raw}")
    table = cluster.wait_status("node1 shows its consumer with 3 pending",
                                lambda t: t.consumers.get(("node1", "launcher"), {}).get("pending")
                                == "3")
    check(table.consumers[("node1", "launcher")] == {"pending": "3", "in_flight": "0", "dead": "0"},
          f"status: unexpected consumer row in\n{table.text}")
    log("the status table shows node1's durable consumer")

    # 4. kill node2.
    old_pid = pids["node2"]
    r = cluster.run_ok("kill", "node2")
    check(f"killed node2 (pid {old_pid})" in r.stdout, f"`kill node2` said:\n{r.stdout}{r.stderr}")
    check(not running(old_pid), f"node2 (pid {old_pid}) still runs after `kill node2` returned")
    r = cluster.run("kill", "node2")
    check(r.returncode == 1 and "node2 is not running" in r.stdout,
          f"a second `kill node2` should say it is not running; exit {r.returncode}:\n"
          f"{r.stdout}{r.stderr}")
    cluster.wait_status("node2 is down", lambda t: t.row("node2")["up"] == "down")
    table = cluster.wait_status(
        "node1, node3 and node4 count node2 dead (1/2, 1/2, 2/3 peers alive)",
        lambda t: [t.row(n)["alive"] for n in ("node1", "node3", "node4")] == ["1/2", "1/2", "2/3"])
    log(f"after `kill node2`:\n{table.text.rstrip()}")
    node2_url = cluster.url("node2")
    metrics = {}

    def node1_sees(alive, lag):
        metrics["m"], metrics["raw"] = peer_metrics(cluster.url("node1"))
        return (metrics["m"].get(("dsm_peer_alive", node2_url)) == alive
                and (lag is None or metrics["m"].get(("dsm_peer_lag_messages", node2_url)) == lag))
    wait_for("node1's /metrics shows dsm_peer_alive 0 for node2", lambda: node1_sees(0, None),
             lambda: f"node1's /metrics:\n{metrics.get('raw')}")
    more = [f"launcher-test-{i}" for i in range(4, 9)]
    for i, msg_id in enumerate(more, len(sent) + 1):
        check(send(cluster, "node1", msg_id) == i, f"node1 should store message {i} at seq {i}")
    sent += more
    table = cluster.wait_status(
        f"node1's lag towards node2 (port {cluster.port('node2')}) is {len(more)}",
        lambda t: t.row("node1")["lags"].get(cluster.port("node2")) == str(len(more))
        and t.row("node1")["last_seq"] == str(len(sent)))
    log(f"{len(more)} more messages sent with node2 down:\n{table.text.rstrip()}")
    for node in ("node3", "node4"):
        wait_holds(cluster, node, sent)

    # 5. restart node2: it catches up.
    r = cluster.run_ok("restart", "node2")
    m = re.search(r"restarted node2 \(pid (\d+)\) on (\S+)", r.stdout)
    check(m and m.group(2) == node2_url, f"`restart node2` said:\n{r.stdout}{r.stderr}")
    pids["node2"] = int(m.group(1))
    check(pids["node2"] != old_pid and running(pids["node2"])
          and cluster.pid_from_file("node2") == pids["node2"],
          f"node2 should run as a new process (pid {pids['node2']}, pid file "
          f"{cluster.pid_from_file('node2')}, old pid {old_pid})")
    check(answers_heartbeat(node2_url), "node2 does not answer /heartbeat after `restart`")
    table = cluster.wait_status(
        f"node2 is back and caught up: every node up, last_seq {len(sent)}, peers alive, lag 0",
        lambda t: cluster.healthy(t, last_seq=len(sent)))
    log(f"after `restart node2`:\n{table.text.rstrip()}")
    wait_for("node1's /metrics shows node2 alive with dsm_peer_lag_messages 0",
             lambda: node1_sees(1, 0), lambda: f"node1's /metrics:\n{metrics.get('raw')}")
    wait_holds(cluster, "node2", sent)
    log(f"node2 holds all {len(sent)} messages, each once")

    # 5b. stop node3: a clean stop of one node (SIGTERM), then back.
    old_pid = pids["node3"]
    r = cluster.run_ok("stop", "node3")
    check(f"stopped node3 (pid {old_pid})" in r.stdout, f"`stop node3` said:\n{r.stdout}{r.stderr}")
    check(not running(old_pid), f"node3 (pid {old_pid}) still runs after `stop node3` returned")
    check(not os.path.exists(cluster.pid_file("node3")), "`stop node3` left its pid file")
    with open(os.path.join(cluster.root, "node3", "node.log"), errors="replace") as f:
        node3_log = f.read()
    check("received SIGTERM, shutting down" in node3_log and node3_log.rstrip().endswith("stopped"),
          f"node3's log should show a clean stop on SIGTERM:\n{node3_log[-2000:]}")
    for node in ("node1", "node2", "node4"):
        check(running(pids[node]), f"`stop node3` also ended {node} (pid {pids[node]})")
    r = cluster.run("stop", "node3")
    check(r.returncode == 1 and "node3 is not running" in r.stdout,
          f"a second `stop node3` should say it is not running; exit {r.returncode}:\n"
          f"{r.stdout}{r.stderr}")
    cluster.wait_status("node3 is down", lambda t: t.row("node3")["up"] == "down")
    r = cluster.run_ok("restart", "node3")
    m = re.search(r"restarted node3 \(pid (\d+)\)", r.stdout)
    check(m, f"`restart node3` said:\n{r.stdout}{r.stderr}")
    pids["node3"] = int(m.group(1))
    cluster.wait_status(f"node3 is back: every node up, last_seq {len(sent)}, peers alive, lag 0",
                        lambda t: cluster.healthy(t, last_seq=len(sent)))
    log("`stop node3` stopped node3 cleanly (SIGTERM) and `restart node3` brought it back")

    # 6. stop, with the command `start` printed: every node ends.
    r = subprocess.run(stop_argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=min(90, max(DEADLINE.left(), 5)), env=launcher_env())
    cluster.transcript.append((stop_argv[1:], r.returncode, r.stdout, r.stderr))
    check(r.returncode == 0, f"`{shlex.join(stop_argv)}` exited with {r.returncode}:\n"
                             f"{r.stdout}{r.stderr}")
    for node in NODES:
        check(f"stopped {node} (pid {pids[node]})" in r.stdout,
              f"`stop` should report {node} (pid {pids[node]}) stopped:\n{r.stdout}{r.stderr}")
        check(not os.path.exists(cluster.pid_file(node)), f"`stop` left {cluster.pid_file(node)}")
    gone(cluster, pids, "after `stop`")
    r = cluster.run_ok("stop")
    check("nothing to stop" in r.stdout, f"a second `stop` should say nothing runs:\n{r.stdout}")
    table = cluster.status()
    check(all(table.row(n)["up"] == "down" for n in NODES),
          f"after `stop`, status should show every node down:\n{table.text}")
    log("`stop` ended every node; ports free")

    # 7. Foreground start, ended by SIGINT.
    foreground(cluster, total=len(sent))


def foreground(cluster, total, attempts=4):
    global TOKEN
    TOKEN = CLUSTER_TOKEN
    env = launcher_env(DSM_CLUSTER_TOKEN=CLUSTER_TOKEN, DSM_CLIENT_TOKEN=CLIENT_TOKEN)
    out_path = os.path.join(cluster.root, "foreground.out")
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            cluster.base = pick_base_port()
        with open(out_path, "w") as out:
            proc = subprocess.Popen([sys.executable, cluster.launcher, "--dir", cluster.root,
                                     *cluster.start_args(cluster.base)],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env=env)
        cluster.foreground_proc = proc

        def text():
            with open(out_path, errors="replace") as f:
                return f.read()

        def up_or_exited():
            return proc.poll() is not None or ("cluster running" in text() and all(
                answers_heartbeat(cluster.url(n)) for n in NODES))
        wait_for("the foreground `start` says the cluster runs and every node answers",
                 up_or_exited, lambda: f"launcher output:\n{text()}")
        if proc.poll() is None:
            break
        if "Address already in use" in text() and attempt < attempts:
            log(f"base port {cluster.base} was taken meanwhile; trying another")
            continue
        raise TestFailure(f"foreground `start` exited with {proc.returncode}:\n{text()}")
    rows = cluster.start_table(text())
    pids = {node: rows[node][1] for node in NODES}
    log(f"foreground start on ports {cluster.base}..{cluster.base + 3}, pids {pids}")
    # The data directories of the first run are kept: node2 restarts with every message.
    wait_holds(cluster, "node2", [f"launcher-test-{i}" for i in range(1, total + 1)])
    # The nodes require the tokens of the environment, and the launcher's status sends them.
    status, _, raw = http("GET", cluster.url("node1") + "/status", token=None)
    check(status == 401, f"node1 answered {status} to /status without a token: {raw}")
    table = cluster.wait_status("every node up in `status` with the tokens",
                                lambda t: cluster.healthy(t, last_seq=total), env=env)
    check(table is not None, "`status` with the tokens")
    log("the nodes require the environment's tokens (401 without) and `status` sends them")

    proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(timeout=min(WAIT + 15, max(DEADLINE.left(), 5)))
    except subprocess.TimeoutExpired:
        raise TestFailure(f"the foreground launcher did not exit after SIGINT:\n{text()}")
    out = text()
    check(rc == 0, f"the foreground launcher exited with {rc} after SIGINT:\n{out}")
    for node in NODES:
        check(f"stopped {node} (pid {pids[node]})" in out,
              f"after SIGINT the launcher should report {node} stopped:\n{out}")
        check(not os.path.exists(cluster.pid_file(node)),
              f"the foreground launcher left {cluster.pid_file(node)}")
    gone(cluster, pids, "after SIGINT to the foreground launcher")
    log("SIGINT stopped the foreground launcher and every node")


# --- cleanup --------------------------------------------------------------------------------

def cleanup(cluster):
    """`stop`, then SIGKILL whatever node of this directory is left."""
    proc = getattr(cluster, "foreground_proc", None)
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()  # its nodes get SIGKILL from the kernel (PR_SET_PDEATHSIG)
            proc.wait()
    try:
        subprocess.run([sys.executable, cluster.launcher, "--dir", cluster.root, "stop"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                       env=launcher_env())
    except (subprocess.TimeoutExpired, OSError) as e:
        log(f"cleanup: `dsm-cluster stop` failed: {e}")
    left = set()
    for node in NODES:
        pid = cluster.pid_from_file(node)
        if pid and is_node_of(pid, cluster.root):
            left.add(pid)
    for entry in os.listdir("/proc"):  # also nodes whose pid file was lost
        if entry.isdigit() and is_node_of(int(entry), cluster.root):
            left.add(int(entry))
    for pid in left:
        log(f"cleanup: killing leftover dsm-node pid {pid}")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in left:
        wait_for(f"leftover pid {pid} is gone", lambda: not running(pid), timeout=10)


def on_signal(signum, _frame):
    raise TestFailure(f"interrupted by signal {signum}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="the dsm-node binary")
    ap.add_argument("--launcher", default=os.path.join(ROOT, "tools", "dsm-cluster"),
                    help="tools/dsm-cluster")
    ap.add_argument("--timeout", type=float, default=200, help="overall limit in seconds")
    ap.add_argument("--keep", action="store_true", help="keep the cluster directory")
    args = ap.parse_args()
    global DEADLINE
    DEADLINE = Deadline(args.timeout)
    binary = os.path.abspath(args.bin)
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        log(f"FAILED: no dsm-node binary at {binary}")
        return 1
    if not os.path.isfile(args.launcher):
        log(f"FAILED: no launcher at {args.launcher}")
        return 1
    # The detached nodes outlive the launcher: as their subreaper this process collects them
    # when they exit (and a test runner killing this process tree finds them).
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    root = tempfile.mkdtemp(prefix="dsm-cluster-test-")
    cluster = Cluster(os.path.abspath(args.launcher), binary, root)
    failure = None
    started = time.monotonic()
    try:
        scenario(cluster)
    except TestFailure as e:
        failure = str(e)
    except Exception:  # a bug of the test or an answer of an unexpected shape: fail loudly too
        failure = traceback.format_exc()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            cleanup(cluster)
        except TestFailure as e:
            failure = failure or f"cleanup: {e}"
    if failure:
        log(f"FAILED: {failure}")
        log(f"last `dsm-cluster status`:\n{cluster.last_status}")
        for cmd, rc, out, err in cluster.transcript[-6:]:
            log(f"`dsm-cluster {' '.join(cmd)}` -> {rc}\n{out}{err}".rstrip())
        log(f"node logs (last lines):\n{cluster.log_tails()}")
    if args.keep:
        log(f"cluster directory kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    log(f"{'FAILED' if failure else 'passed'} in {time.monotonic() - started:.1f} s")
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
