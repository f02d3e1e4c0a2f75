#!/usr/bin/python3
"""A troupe cluster on loopback: redis-server, echo-cluster nodes and HAProxy.

Used by scripts/cluster-demo (make cluster-demo) and the scale-out test
(tests/cluster/scale_out_test.py), so both run exactly what deploy/haproxy.cfg
describes: three echo nodes and two chat nodes (sharing one room through the
Redis bus) behind HAProxy, every address on 127.0.0.1, every port picked free
at start.

    with Cluster("build/bin") as c:
        c.start()                       # redis, 5 nodes, haproxy; waits until all are UP
        c.term("echo1")                 # SIGTERM: the node drains
        c.stat()["echo_nodes/echo1"]    # HAProxy's view: status, scur, econ, ...

Every process is started here and stopped here, by its PID; leaving the
`with` block kills whatever is still running and removes the work folder.
"""

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAPROXY_CFG = os.path.join(ROOT, "deploy", "haproxy.cfg")

ECHO_NODES = ("echo1", "echo2", "echo3")
CHAT_NODES = ("chat1", "chat2")

# --drain-grace for every node: more than HAProxy's inter x fall (500 ms x 2)
# plus one check's latency, so HAProxy has marked the node down before it
# stops accepting (docs/deploy.md); 3 s leaves room for a loaded CI machine.
DRAIN_GRACE = "3s"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_program(name):
    path = os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin"
    for d in path.split(":"):
        p = os.path.join(d, name)
        if d and os.access(p, os.X_OK):
            return p
    raise RuntimeError(f"{name} not found: scripts/install-deps installs it")


def wait_until(what, check, timeout=20.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Node:
    def __init__(self, name, mode):
        self.name = name
        self.mode = mode
        self.port = free_port()
        self.metrics = free_port()
        self.agent = free_port()
        self.proc = None
        self.log = None


class Cluster:
    def __init__(self, bin_dir, workers=1, verbose=False):
        self.bin_dir = os.path.abspath(bin_dir)
        self.workers = workers
        self.verbose = verbose
        self.dir = tempfile.mkdtemp(prefix="troupe-cluster-")
        self.nodes = {n: Node(n, "echo") for n in ECHO_NODES}
        self.nodes.update({n: Node(n, "chat") for n in CHAT_NODES})
        self.redis_port = free_port()
        self.echo_frontend = free_port()
        self.chat_frontend = free_port()
        self.socket_path = os.path.join(self.dir, "haproxy.sock")
        self.redis = None
        self.haproxy = None

    # --- lifecycle ---------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop_all()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _spawn(self, name, argv, env=None):
        log = open(os.path.join(self.dir, name + ".log"), "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)
        log.close()
        return proc

    def log_of(self, name):
        try:
            with open(os.path.join(self.dir, name + ".log"), "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return f"({name} was not started)"

    def start(self):
        self.redis = self._spawn("redis", [
            find_program("redis-server"), "--port", str(self.redis_port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--daemonize", "no"])
        wait_until("redis-server", lambda: self._connectable(self.redis_port))
        for name in self.nodes:
            self.start_node(name)
        env = dict(os.environ)
        env.update(self.haproxy_env())
        self.haproxy = self._spawn("haproxy", [find_program("haproxy"), "-f", HAPROXY_CFG, "-db"],
                                   env=env)
        wait_until("haproxy's runtime API",
                   lambda: os.path.exists(self.socket_path) or self.haproxy.poll() is not None)
        if self.haproxy.poll() is not None:
            raise RuntimeError(f"haproxy exited at start:\n{self.log_of('haproxy')}")
        self.wait_status(list(self.nodes), "UP")

    def haproxy_env(self):
        env = {
            "TROUPE_ECHO_FRONTEND": f"127.0.0.1:{self.echo_frontend}",
            "TROUPE_CHAT_FRONTEND": f"127.0.0.1:{self.chat_frontend}",
            "TROUPE_HAPROXY_SOCKET": self.socket_path,
        }
        for name, n in self.nodes.items():
            key = "TROUPE_" + name.upper()
            env[key] = f"127.0.0.1:{n.port}"
            env[key + "_METRICS"] = str(n.metrics)
            env[key + "_AGENT"] = str(n.agent)
        return env

    def node_argv(self, name, drain_grace=DRAIN_GRACE):
        n = self.nodes[name]
        argv = [os.path.join(self.bin_dir, "echo-cluster"), "--port", str(n.port),
                "--workers", str(self.workers), "--mode", n.mode, "--proxy-protocol",
                "--metrics-port", str(n.metrics), "--agent-port", str(n.agent),
                "--drain-grace", drain_grace, "--drain-timeout", "10s"]
        if n.mode == "chat":
            argv += ["--bus", f"redis://127.0.0.1:{self.redis_port}"]
        return argv

    def start_node(self, name, drain_grace=DRAIN_GRACE):
        n = self.nodes[name]
        n.proc = self._spawn(name, self.node_argv(name, drain_grace))
        # Its first line says it listens (a bare connect would count as a
        # connection with no PROXY header).
        wait_until(f"{name} listening",
                   lambda: n.proc.poll() is not None or "listening on" in self.log_of(name))
        if n.proc.poll() is not None:
            raise RuntimeError(f"{name} exited at start:\n{self.log_of(name)}")

    def metrics(self, name):
        """The node's /metrics as {"family{labels}": value}."""
        url = f"http://127.0.0.1:{self.nodes[name].metrics}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
        return out

    @staticmethod
    def _connectable(port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    def term(self, name):
        """SIGTERM: the node drains (health 503, grace, stop accepting, flush)."""
        self.nodes[name].proc.send_signal(signal.SIGTERM)

    def kill(self, name):
        """SIGKILL: the node vanishes with its connections."""
        self.nodes[name].proc.send_signal(signal.SIGKILL)

    def wait_exit(self, name, timeout=30):
        return self.nodes[name].proc.wait(timeout=timeout)

    def stop_all(self):
        procs = [n.proc for n in self.nodes.values()] + [self.haproxy, self.redis]
        for p in procs:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in procs:
            if p is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            if p.poll() is None:
                p.kill()
                p.wait()

    # --- HAProxy's view ----------------------------------------------------
    def haproxy_command(self, command):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.socket_path)
            s.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        return b"".join(chunks).decode()

    def stat(self):
        """{"backend/server": {"status", "scur", "econ", "wretr", "wredis", ...}}"""
        text = self.haproxy_command("show stat").lstrip("# ")
        out = {}
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("svname") in ("FRONTEND", "BACKEND", None):
                continue
            out[f"{row['pxname']}/{row['svname']}"] = row
        return out

    def key(self, name):
        return f"{self.nodes[name].mode}_nodes/{name}"

    def status(self, name):
        return self.stat()[self.key(name)]["status"]

    def wait_status(self, names, status, timeout=20):
        """Until HAProxy reports exactly `status` for each (not "UP 1/2": going down)."""
        wait_until(f"{', '.join(names)} {status} in HAProxy",
                   lambda: all(self.status(n) == status for n in names), timeout)

    # --- clients -----------------------------------------------------------
    def echo_load(self, *args, timeout=120):
        """echo-load through HAProxy's echo frontend; returns (exit code, report dict)."""
        argv = [os.path.join(self.bin_dir, "echo-load"), "--host", "127.0.0.1",
                "--port", str(self.echo_frontend), "--json", *args]
        r = subprocess.run(argv, capture_output=True, timeout=timeout, text=True)
        try:
            report = json.loads(r.stdout)
        except ValueError:
            raise RuntimeError(f"echo-load printed no report (exit {r.returncode}):\n"
                               f"{r.stdout}\n{r.stderr}")
        return r.returncode, report

    def chat_client(self):
        return ChatClient(self.chat_frontend)


def await_membership(a, b, tries=40):
    """Until b hears a: a member joins the room in its actor's OnOpen, after
    the node has read the PROXY header, which no client can observe; so `a`
    says "sync N" until `b` hears one. Returns the number of tries."""
    for i in range(tries):
        a.send(f"sync {i}")
        if b.read_line(timeout=0.25, skip_sync=False) is not None:
            return i + 1
    raise TimeoutError(f"{b.name} never heard {a.name} in {tries} tries")


class ChatClient:
    """One chat member through HAProxy: send a line, read lines."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.name = "%s:%d" % self.sock.getsockname()
        self.buffer = b""

    def send(self, line):
        self.sock.sendall(line.encode() + b"\n")

    def read_line(self, timeout=10.0, skip_sync=True):
        """The next line (not counting await_membership's), or None if none
        comes within `timeout`."""
        while True:
            line = self._read_line(timeout)
            if line is None or not (skip_sync and line.split(": ", 1)[-1].startswith("sync ")):
                return line

    def _read_line(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                b = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not b:
                return None
            self.buffer += b
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode(errors="replace")

    def close(self):
        self.sock.close()
