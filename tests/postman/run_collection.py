#!/usr/bin/env python3
"""Runs the seed's Postman collection headless with newman against a real four-node dsm cluster.

  run_collection.py [--bin-dir DIR] [--collection FILE] [--newman CMD] [--timeout S] [--keep]

Starts the seed topology (node1-node3 async, each peering with the two others; node4
sync_quorum --quorum 3, peering with node1-node3) on free 127.0.0.1 ports with short heartbeat
options, then runs the collection folder by folder with `newman run --folder`, doing between
folders what a Postman user does by hand: kill -9 node2 before "3a. Node2 down", start it again
before "3b. Node2 back", kill -9 node2 and node3 before "4b. Quorum refused". The node URLs go
in as environment variables; the values the collection's scripts save (message ids, seqs) land
in that environment too, which newman exports after each folder (--export-environment) and the
next folder run starts from (--environment). Prints newman's report and a summary; exits 0
only when every folder ran and every assertion passed (1 otherwise, also when newman is
missing). Every process it starts is stopped before it exits, also on failure, timeout, SIGINT
or SIGTERM; if it is killed outright, the nodes and newman get SIGKILL from the kernel.

dsm-node comes from --bin-dir, else $DSM_BIN_DIR, else <repo>/build/bin. Standard library only.
"""
import argparse
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_COLLECTION = os.path.join(ROOT, "docs", "postman", "Fault_tolerence.postman_collection.json")
NEWMAN_HINT = "install it with: npm install -g newman@6 (scripts/dev build does)"
NODE_OPTIONS = ["--heartbeat-interval-ms", "200", "--heartbeat-timeout-ms", "1000",
                "--anti-entropy-interval-ms", "1000", "--request-timeout-ms", "2000",
                "--http-threads", "2"]
PR_SET_PDEATHSIG = 1

# (what to do to the cluster first, folder). Actions: ("kill", node) is kill -9, ("start", node)
# starts a stopped node again with the same command line and data directory.
STEPS = [
    ([], "1. Health Check"),
    ([], "2. Basic Operations"),
    ([("kill", "node2")], "3a. Node2 down"),
    ([("start", "node2")], "3b. Node2 back"),
    ([], "4a. Quorum success"),
    ([("kill", "node2"), ("kill", "node3")], "4b. Quorum refused"),
    ([], "5. Direct Replicate"),
]


class Failure(Exception):
    """The run cannot go on (a node does not start, time is up)."""


def log(msg):
    print(f"run_collection: {msg}", flush=True)


def die_with_parent():
    """preexec_fn: the child gets SIGKILL when this runner dies, however it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


# Requests to 127.0.0.1 never go through a proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def answers(url):
    try:
        with _opener.open(url, timeout=1.0) as r:
            return r.status == 200
    except OSError:
        return False


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Node:
    """One dsm-node process of the cluster; its data and log live under `root`/<name>/."""

    def __init__(self, binary, root, name, port, peer_ports, extra):
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.dir = os.path.join(root, name)
        self.log_path = os.path.join(self.dir, "node.log")
        self.argv = [binary, "--port", str(port), "--id", name,
                     "--peers", ",".join(f"http://127.0.0.1:{p}" for p in peer_ports),
                     *extra, "--data-dir", os.path.join(self.dir, "data"), *NODE_OPTIONS]
        self.proc = None

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        with open(self.log_path, "ab") as out:
            out.write(f"===== start: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=out, preexec_fn=die_with_parent)

    def wait_up(self, deadline):
        """Waits until /heartbeat answers 200; raises Failure if the node exits or time is up."""
        while not answers(self.url + "/heartbeat"):
            if self.proc.poll() is not None:
                raise Failure(f"{self.name} exited with {self.proc.returncode}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise Failure(f"{self.name} does not answer on {self.url}\n{self.log_tail()}")
            time.sleep(0.05)

    def kill(self):
        """kill -9, as a Postman user stopping a node in the scenario would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        """SIGTERM, then SIGKILL if the node is not gone within 10 s."""
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines=20):
        try:
            with open(self.log_path, "rb") as f:
                tail = f.readlines()[-lines:]
        except OSError:
            return ""
        return "".join(f"    {self.name}| {line.decode(errors='replace')}" for line in tail)


class Cluster:
    """The seed topology on free ports; start() retries with new ports if one was taken."""

    def __init__(self, binary, root):
        self.binary = binary
        self.root = root
        self.nodes = {}

    def start(self, deadline, attempts=3):
        for attempt in range(1, attempts + 1):
            p = free_ports(4)
            topology = [("node1", p[0], [p[1], p[2]], []),
                        ("node2", p[1], [p[0], p[2]], []),
                        ("node3", p[2], [p[0], p[1]], []),
                        ("node4", p[3], [p[0], p[1], p[2]],
                         ["--replication_mode", "sync_quorum", "--quorum", "3"])]
            shutil.rmtree(self.root, ignore_errors=True)
            self.nodes = {name: Node(self.binary, self.root, name, port, peers, extra)
                          for name, port, peers, extra in topology}
            try:
                # As in the seed README: node4 once node1-node3 answer.
                for name in ("node1", "node2", "node3"):
                    self.nodes[name].start()
                for name in ("node1", "node2", "node3"):
                    self.nodes[name].wait_up(deadline)
                self.nodes["node4"].start()
                self.nodes["node4"].wait_up(deadline)
                return
            except Failure as e:
                self.stop()
                if attempt == attempts or time.monotonic() > deadline:
                    raise
                log(f"cluster did not start (attempt {attempt}), retrying on other ports: {e}")

    def urls(self):
        return {name: node.url for name, node in self.nodes.items()}

    def apply(self, action, name, deadline):
        node = self.nodes[name]
        if action == "kill":
            node.kill()
            log(f"killed {name} (kill -9)")
        else:
            node.start()
            node.wait_up(deadline)
            log(f"started {name} again on {node.url}")

    def stop(self):
        for node in self.nodes.values():
            node.stop()

    def log_tails(self):
        return "\n".join(node.log_tail() for node in self.nodes.values())


def newman_env():
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def run_folder(newman, collection, folder, urls, env_in, env_out, report, deadline):
    """One `newman run --folder`, starting from the environment file env_in (None: empty) and
    exporting the final environment to env_out. Returns (exit code, stats dict or None)."""
    remaining = deadline - time.monotonic()
    if remaining < 5:
        raise Failure(f"out of time before folder '{folder}'")
    argv = [*newman, "run", collection, "--folder", folder,
            *[arg for name, url in sorted(urls.items()) for arg in ("--env-var", f"{name}={url}")],
            *(["--environment", env_in] if env_in else []), "--export-environment", env_out,
            "--reporters", "cli,json", "--reporter-json-export", report,
            "--color", "off",
            "--timeout-request", "10000", "--timeout", str(int(remaining * 1000))]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=newman_env(),
                            preexec_fn=die_with_parent)
    try:
        code = proc.wait(timeout=remaining + 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise Failure(f"newman did not finish folder '{folder}' in time")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    try:
        with open(report) as f:
            run = json.load(f)["run"]
        stats = {"requests": run["stats"]["requests"], "assertions": run["stats"]["assertions"],
                 "failures": len(run.get("failures", []))}
    except (OSError, ValueError, KeyError, TypeError):
        stats = None
    return code, stats


def find_binary(bin_dir):
    for d in (bin_dir, os.environ.get("DSM_BIN_DIR"), os.path.join(ROOT, "build", "bin")):
        if d:
            cand = os.path.join(d, "dsm-node")
            if os.path.isfile(cand) and os.access(cand, os.X_OK):
                return os.path.abspath(cand)
    return None


def on_signal(signum, _frame):
    raise Failure(f"interrupted by signal {signum}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", help="directory holding dsm-node (default $DSM_BIN_DIR, build/bin)")
    ap.add_argument("--collection", default=DEFAULT_COLLECTION, help="the Postman collection")
    ap.add_argument("--newman", default="newman", help="newman command (default: newman on PATH)")
    ap.add_argument("--timeout", type=float, default=240, help="overall limit in seconds")
    ap.add_argument("--keep", action="store_true", help="keep the node data and logs directory")
    args = ap.parse_args()
    deadline = time.monotonic() + args.timeout

    newman_path = shutil.which(args.newman)
    if not newman_path:
        log(f"FAILED: newman not found ({args.newman}); {NEWMAN_HINT}")
        return 1
    binary = find_binary(args.bin_dir)
    if not binary:
        log("FAILED: no dsm-node binary (build it, or pass --bin-dir / set DSM_BIN_DIR)")
        return 1
    if not os.path.isfile(args.collection):
        log(f"FAILED: no collection at {args.collection}")
        return 1

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    work = tempfile.mkdtemp(prefix="dsm-postman-")
    cluster = Cluster(binary, os.path.join(work, "cluster"))
    results = []  # (folder, exit code, stats)
    error = None
    try:
        cluster.start(deadline)
        log("cluster up: " + ", ".join(f"{n}={u}" for n, u in cluster.urls().items()))
        collection = os.path.abspath(args.collection)
        env = None
        for i, (actions, folder) in enumerate(STEPS):
            for action, name in actions:
                cluster.apply(action, name, deadline)
            log(f"newman: folder '{folder}'")
            env_out = os.path.join(work, f"environment-{i}.json")
            report = os.path.join(work, f"report-{i}.json")
            code, stats = run_folder([newman_path], collection, folder, cluster.urls(), env,
                                     env_out, report, deadline)
            results.append((folder, code, stats))
            if os.path.isfile(env_out):  # the saved variables, for the next folder
                env = env_out
    except Failure as e:
        error = str(e)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        cluster.stop()

    failed = error is not None or len(results) != len(STEPS)
    print("\nrun_collection: summary", flush=True)
    print(f"  {'folder':24} {'requests':>8} {'assertions':>10} {'failed':>6}  newman exit")
    for folder, code, stats in results:
        if stats is None:
            print(f"  {folder:24} {'?':>8} {'?':>10} {'?':>6}  {code} (no report)")
            failed = True
            continue
        a = stats["assertions"]
        print(f"  {folder:24} {stats['requests']['total']:>8} {a['total']:>10} {a['failed']:>6}"
              f"  {code}")
        # A folder that ran no assertion tested nothing: that is a failure too.
        if code != 0 or a["failed"] or stats["failures"] or a["total"] == 0:
            failed = True
    return finish(log, failed, error, cluster, work, args.keep, "all folders passed")


def finish(log_fn, failed, error, cluster, work, keep, passed):
    """The end of a run over `cluster`: the error and the nodes' last log lines on failure, the
    work directory kept or removed, the verdict. Returns the exit status."""
    if error:
        log_fn(f"error: {error}")
    if failed:
        log_fn("node logs (last lines):\n" + cluster.log_tails())
    if keep:
        log_fn(f"node data and logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    log_fn("FAILED" if failed else passed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
