#!/usr/bin/env python3
"""Checks packaging/dsm-node.service and packaging/dsm-node.env.example.

  check_unit.py --bin-dir DIR

1. `systemd-analyze verify` accepts the unit without a warning (a misspelt key or value is only
   a warning to systemd: any output fails the check). The unit is checked as installed, with its
   ExecStart pointing at the built dsm-node and its EnvironmentFile at the example. Needs no
   running systemd. Without systemd-analyze this part is skipped with a message.
2. The command line the unit builds from the example's variables (expanded as systemd does:
   ${VAR} is one word, $VAR is split at spaces) starts a real node: dsm-node runs it, with the
   address, port, peers and data directory moved to 127.0.0.1, free ports and a temporary
   directory (nothing but loopback is contacted),
   and its tokens taken from its environment, and the node answers /heartbeat (with the cluster
   token) and refuses it without.

Exit 0 when both pass, 77 (ctest: skipped) when systemd-analyze is absent and the rest passed,
1 otherwise. Standard library only.
"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(ROOT, "packaging", "dsm-node.service")
ENV_EXAMPLE = os.path.join(ROOT, "packaging", "dsm-node.env.example")
INSTALLED_BINARY = "/usr/local/bin/dsm-node"
SKIPPED = 77

sys.path.insert(0, os.path.join(ROOT, "tests", "postman"))
from run_collection import die_with_parent, free_ports  # noqa: E402

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def log(msg):
    print(f"check_unit: {msg}", flush=True)


def unit_value(text, key):
    values = re.findall(rf"^{key}=(.*)$", text, re.M)
    if len(values) != 1:
        raise SystemExit(f"check_unit: the unit must have exactly one {key}= line")
    return values[0]


def read_env(path):
    env = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise SystemExit(f"check_unit: {path}:{n}: not VAR=value")
            env[key] = value
    return env


def expand(command, env):
    """ExecStart's variable expansion (systemd.service(5), "Command lines")."""
    argv = []
    for word in shlex.split(command):
        whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if whole:
            argv.extend(env.get(whole.group(1), "").split())
            continue
        argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""),
                           word))
    return argv


def verify_unit(text, binary, work):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        log("SKIP systemd-analyze verify: systemd-analyze is not installed (Debian: systemd)")
        return None
    unit = os.path.join(work, "dsm-node.service")
    with open(unit, "w") as f:
        f.write(text.replace(INSTALLED_BINARY, binary)
                .replace("EnvironmentFile=/etc/dsm/dsm-node.env", f"EnvironmentFile={ENV_EXAMPLE}"))
    proc = subprocess.run([analyze, "verify", unit], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or output:
        log(f"FAILED: systemd-analyze verify (exit {proc.returncode}):\n{output}")
        return False
    log("systemd-analyze verify: no complaint")
    return True


def heartbeat(url, token):
    req = urllib.request.Request(url + "/heartbeat")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with _opener.open(req, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def start_from_example(text, binary, work):
    env = read_env(ENV_EXAMPLE)
    for key in ("DSM_NODE_ID", "DSM_HOST", "DSM_PORT", "DSM_PEERS", "DSM_CLUSTER_TOKEN",
                "DSM_CLIENT_TOKEN", "DSM_OPTIONS"):
        if key not in env:
            log(f"FAILED: the example sets no {key}")
            return False
    # Only loopback addresses: the example's peers are other machines, never contacted here.
    port, peer1, peer2 = free_ports(3)
    env.update(DSM_HOST="127.0.0.1", DSM_PORT=str(port),
               DSM_PEERS=f"http://127.0.0.1:{peer1},http://127.0.0.1:{peer2}")
    argv = expand(unit_value(text, "ExecStart"), env)
    if argv[0] != INSTALLED_BINARY:
        log(f"FAILED: ExecStart runs {argv[0]}, not {INSTALLED_BINARY}")
        return False
    data_dir = os.path.join(work, "data")
    argv = [binary] + [data_dir if a == "/var/lib/dsm/data" else a for a in argv[1:]]
    tokens = {k: env[k] for k in ("DSM_CLUSTER_TOKEN", "DSM_CLIENT_TOKEN")}
    log("starting " + " ".join(argv))
    with open(os.path.join(work, "node.log"), "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                env={**os.environ, **tokens}, preexec_fn=die_with_parent)
    url = f"http://127.0.0.1:{port}"
    ok = False
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if heartbeat(url, tokens["DSM_CLUSTER_TOKEN"]) == 200:
                ok = True
                break
            time.sleep(0.05)
        if ok and heartbeat(url, None) != 401:
            log("FAILED: the node answers /heartbeat without the cluster token")
            ok = False
        elif ok:
            log("the example's command line starts a node that requires the cluster token")
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if not ok:
        with open(os.path.join(work, "node.log"), errors="replace") as f:
            log(f"FAILED: the node did not come up (exit {proc.returncode}):\n{f.read()[-2000:]}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", required=True, help="directory holding the built dsm-node")
    args = ap.parse_args()
    binary = os.path.abspath(os.path.join(args.bin_dir, "dsm-node"))
    with open(UNIT) as f:
        text = f.read()
    work = tempfile.mkdtemp(prefix="dsm-unit-")
    try:
        verified = verify_unit(text, binary, work)
        started = start_from_example(text, binary, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if verified is False or not started:
        log("FAILED")
        return 1
    if verified is None:
        return SKIPPED
    log("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
