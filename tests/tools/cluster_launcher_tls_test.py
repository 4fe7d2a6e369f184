#!/usr/bin/env python3
"""tools/dsm-cluster over TLS, against real dsm-node processes on 127.0.0.1.

  cluster_launcher_tls_test.py --bin PATH/dsm-node [--launcher tools/dsm-cluster]

Makes a CA and one certificate for 127.0.0.1 with openssl, then, from the certificates'
directory and with relative paths (the launcher makes them absolute for the nodes, which run in
their own directories):
  1. `start --detach -- --tls-cert node.pem --tls-key node.key --tls-ca ca.pem` lists https://
     URLs and returns once every node answers;
  2. `status` shows every node up with all its peers alive (the nodes peer over https://, the
     launcher verifies them with the CA);
  3. node1 answers HTTPS verified with the CA, refuses plain HTTP, and a message sent to it
     reaches node4;
  4. `stop` ends every node.
Exits 0 when every check passed, 1 otherwise. Always ends with `stop`. Standard library only.
"""
import argparse
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

NODES = ["node1", "node2", "node3", "node4"]
WAIT = 30.0


def log(msg):
    print(f"cluster_launcher_tls_test: {msg}", flush=True)


def wait_for(what, cond, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out: {what}")


def free_base_port():
    for _ in range(50):
        base = random.randint(20000, 40000)
        ok = True
        for p in range(base, base + 4):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise AssertionError("no four free ports in a row")


def openssl(cwd, *args):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def get(url, context, body=None):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    req = urllib.request.Request(url, data=body.encode() if body else None)
    with opener.open(req, timeout=5) as r:
        return r.status, json.loads(r.read().decode())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--launcher", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "dsm-cluster"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="dsm-cluster-tls-test-")
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
           and k not in ("DSM_CLUSTER_TOKEN", "DSM_CLIENT_TOKEN")}

    def launcher(*words):
        return subprocess.run([sys.executable, os.path.abspath(args.launcher), "--dir", "cluster",
                               *words], cwd=work, env=env, capture_output=True, text=True,
                              timeout=90, stdin=subprocess.DEVNULL)

    failure = None
    try:
        openssl(work, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
                "-out", "ca.pem", "-days", "2", "-subj", "/CN=launcher-test-ca")
        openssl(work, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out",
                "node.csr", "-subj", "/CN=127.0.0.1")
        with open(os.path.join(work, "node.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\n")
        openssl(work, "x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", "node.pem", "-days", "2", "-extfile", "node.ext")
        context = ssl.create_default_context(cafile=os.path.join(work, "ca.pem"))

        base = free_base_port()
        r = launcher("start", "--detach", "--base-port", str(base), "--bin",
                     os.path.abspath(args.bin), "--", "--tls-cert", "node.pem", "--tls-key",
                     "node.key", "--tls-ca", "ca.pem", "--heartbeat-interval-ms", "200",
                     "--http-threads", "2")
        assert r.returncode == 0, f"start exited with {r.returncode}:\n{r.stdout}{r.stderr}"
        assert f"https://127.0.0.1:{base}" in r.stdout, f"start should list https URLs:\n{r.stdout}"
        log("`start --detach` with TLS options: every node up")

        def all_alive():
            s = launcher("status")
            rows = [line.split() for line in s.stdout.splitlines()[1:] if line.strip()]
            return (s.returncode == 0 and len(rows) == 4
                    and all(row[1] == "up" and row[5] in ("2/2", "3/3") for row in rows))
        wait_for("`status` shows every node up with all its peers alive", all_alive)
        log("`status`: every node up, every peer alive over https")

        url = f"https://127.0.0.1:{base}"
        status, _ = get(url + "/heartbeat", context)
        assert status == 200, f"node1 /heartbeat over HTTPS: {status}"
        try:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"http://127.0.0.1:{base}/heartbeat", timeout=5)
            raise AssertionError("node1 answered plain HTTP")
        except (OSError, ValueError) as e:
            if isinstance(e, AssertionError):
                raise
        status, _ = get(url + "/send", context, '{"msg_id":"launcher-tls-1","payload":"p"}')
        assert status == 200, f"/send over HTTPS: {status}"

        def node4_holds():
            _, page = get(f"https://127.0.0.1:{base + 3}/messages", context)
            return any(m.get("msg_id") == "launcher-tls-1" for m in page.get("messages", []))
        wait_for("node4 holds the message sent to node1", node4_holds)
        log("HTTPS only, verified with the CA; a message sent to node1 reached node4")

        r = launcher("stop")
        assert r.returncode == 0, f"stop exited with {r.returncode}:\n{r.stdout}{r.stderr}"
        log("`stop` ended the cluster")
    except Exception as e:  # a failed check or an unexpected answer
        failure = f"{type(e).__name__}: {e}"
    finally:
        launcher("stop")
        if failure:
            for n in NODES:
                path = os.path.join(work, "cluster", n, "node.log")
                if os.path.exists(path):
                    with open(path, errors="replace") as f:
                        log(f"{n} log tail:\n{''.join(f.readlines()[-8:])}")
        shutil.rmtree(work, ignore_errors=True)
    if failure:
        log(f"FAILED: {failure}")
        return 1
    log("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
