#!/usr/bin/python3
"""Scale-out test: echo-cluster nodes behind HAProxy, chat across nodes over Redis.

Starts its own redis-server, three echo nodes, two chat nodes and HAProxy on
free loopback ports (scripts/troupe_cluster.py, with deploy/haproxy.cfg as
shipped), and stops every one of them, whatever happens. It checks:

  1. chat through HAProxy: two members that HAProxy put on different nodes
     hear each other's lines exactly once, over the Redis bus, and each line
     carries the sender's own address (PROXY protocol v2), not HAProxy's;
  2. a rolling drain: while `echo-load --reconnect` runs through HAProxy, one
     node is sent SIGTERM and restarted. HAProxy marks it down while it is
     still alive and accepting (--drain-grace), no connection to it is ever
     refused (HAProxy's econ/wretr for it stay 0), and the client sees 0
     corrupted, 0 lost, 0 incomplete bytes: only clean reconnections;
  3. a crash: a node is SIGKILLed under the same load. Only its own
     connections suffer (lost <= what HAProxy had open on it), they reconnect
     to the others, and no byte anywhere is corrupted.

Usage: scale_out_test.py BIN_DIR   (ctest passes build/bin)
Exit status 0 when every check holds; 1 naming the first that failed.
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "scripts"))
import troupe_cluster  # noqa: E402

LOAD_SECONDS = 8


def check(condition, message):
    if not condition:
        raise AssertionError(message)
    print(f"ok: {message}", flush=True)


def wait_bus_linked(c):
    for name in troupe_cluster.CHAT_NODES:
        troupe_cluster.wait_until(
            f"{name}'s Redis bus",
            lambda n=name: c.metrics(n).get("troupe_bus_subscribed") == 1 and
            c.metrics(n).get("troupe_bus_publisher_up") == 1)


def open_sessions(c, names):
    stat = c.stat()
    return sum(int(stat[c.key(n)]["scur"] or 0) for n in names)


def chat_across_nodes(c):
    wait_bus_linked(c)
    a = c.chat_client()
    troupe_cluster.wait_until("the first member's session",
                              lambda: open_sessions(c, troupe_cluster.CHAT_NODES) == 1)
    b = c.chat_client()  # leastconn: the other node
    troupe_cluster.wait_until(
        "one member on each chat node",
        lambda: all(int(c.stat()[c.key(n)]["scur"] or 0) == 1 for n in troupe_cluster.CHAT_NODES))
    troupe_cluster.await_membership(a, b)
    troupe_cluster.await_membership(b, a)
    a.send("hello from a")
    got = b.read_line()
    check(got == f"{a.name}: hello from a",
          f"a line crosses nodes with the sender's own address ({got!r})")
    b.send("hello from b")
    got = a.read_line()
    check(got == f"{b.name}: hello from b", f"and back ({got!r})")
    extra = a.read_line(timeout=0.5) or b.read_line(timeout=0.5)
    check(extra is None, f"no line arrives twice ({extra!r})")
    a.close()
    b.close()


LOADS = []  # every echo-load started, so that a failure stops them too


def start_load(c, seconds):
    # Open loop at a modest rate: the checks are about what the client sees,
    # and a closed loop would take both cores from HAProxy's checks and this
    # script, which time the drain.
    argv = [os.path.join(c.bin_dir, "echo-load"), "--host", "127.0.0.1",
            "--port", str(c.echo_frontend), "--json", "--reconnect", "--connections", "12",
            "--rate", "3000", "--duration", f"{seconds}s", "--warmup", "0s",
            "--stall-timeout", "5s", "--progress-interval", "0"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    LOADS.append(proc)
    return proc


def finish_load(proc):
    import json
    out, err = proc.communicate(timeout=120)
    try:
        return proc.returncode, json.loads(out)
    except ValueError:
        raise AssertionError(f"echo-load printed no report (exit {proc.returncode}):\n{out}\n{err}")


def summary(report):
    e = report["errors"]
    return (f"{report['messages_per_s']:.0f} msg/s, p99 {report['latency_us']['p99']:.0f} us, "
            f"reconnections {report['reconnections']} ({report['reconnect_failures']} attempts "
            f"failed, {report['unanswered_bytes']} bytes unanswered), errors {e['total']} "
            f"(connect {e['connect']}, verification {e['verification']}, lost {e['lost']}, "
            f"incomplete {e['incomplete']}, stalled {e['stalled']}, down {report['down']})")


def rolling_drain(c):
    before = c.stat()[c.key("echo1")]
    load = start_load(c, LOAD_SECONDS)
    troupe_cluster.wait_until(
        "echo-load's connections",
        lambda: open_sessions(c, troupe_cluster.ECHO_NODES) >= 12 or load.poll() is not None)
    on_echo1 = int(c.stat()[c.key("echo1")]["scur"] or 0)
    check(on_echo1 > 0, f"echo1 serves {on_echo1} of the connections")
    c.term("echo1")
    # HAProxy sees the failing /healthz (or the agent's "drain") and takes
    # echo1 out while it is still up and accepting: the grace is longer.
    status = troupe_cluster.wait_until(
        "HAProxy to take echo1 out of rotation",
        lambda: (lambda s: s if not s.startswith("UP") else None)(c.status("echo1")), timeout=10)
    alive = c.nodes["echo1"].proc.poll() is None
    check(alive and "stopped accepting" not in c.log_of("echo1"),
          f"HAProxy marked echo1 {status} while it was still accepting")
    code = c.wait_exit("echo1")
    check(code == 0, f"echo1 drained and exited 0 (got {code})")
    # Its clients got every echo they were owed: the drain cut nobody (a
    # clean close after dropped echoes would look like a drain to the client).
    check(" 0 cut at the drain deadline" in c.log_of("echo1"),
          "echo1 flushed every connection; none was cut at the drain deadline")
    c.start_node("echo1")
    c.wait_status(["echo1"], "UP")
    code, report = finish_load(load)
    print("rolling drain, client saw:", summary(report), flush=True)
    after = c.stat()[c.key("echo1")]
    for field in ("econ", "wretr", "wredis"):
        check(int(after[field] or 0) == int(before[field] or 0),
              f"no connection to the draining node failed ({field} {after[field]})")
    e = report["errors"]
    check(e["verification"] == 0, "0 corrupted bytes")
    check(e["lost"] == 0, "0 connections lost")
    check(e["incomplete"] == 0 and e["stalled"] == 0 and report["down"] == 0,
          "0 incomplete, stalled or down connections")
    check(e["connect"] == 0 and report["reconnect_failures"] == 0,
          "every connect and reconnect went through")
    # Each of echo1's connections is closed cleanly once and reopened on
    # another node; nobody else is disturbed (a little slack for a client
    # that reconnected onto echo1 in the instant before HAProxy took it out).
    check(on_echo1 <= report["reconnections"] <= on_echo1 + 2,
          f"echo1's {on_echo1} clients reconnected, and only they "
          f"({report['reconnections']} reconnections)")
    check(e["total"] == 0 and code == 0, f"echo-load's verdict: ok (exit {code})")


def crash(c):
    load = start_load(c, LOAD_SECONDS)
    troupe_cluster.wait_until(
        "echo-load's connections",
        lambda: open_sessions(c, troupe_cluster.ECHO_NODES) >= 12 or load.poll() is not None)
    time.sleep(1)  # let traffic flow on every connection before the crash
    on_echo2 = int(c.stat()[c.key("echo2")]["scur"] or 0)
    check(on_echo2 > 0, f"echo2 serves {on_echo2} connections")
    c.kill("echo2")
    c.wait_exit("echo2")
    code, report = finish_load(load)
    print("crash, client saw:", summary(report), flush=True)
    e = report["errors"]
    check(e["verification"] == 0, "0 corrupted bytes after a crash")
    # A connection cut by the crash reconnects once, whether the client saw
    # a reset (also counted as lost) or, as HAProxy usually relays it, a
    # clean close.
    check(e["lost"] <= on_echo2, f"at most echo2's connections were lost ({e['lost']})")
    check(on_echo2 <= report["reconnections"] <= on_echo2 + 2 and report["down"] == 0,
          f"echo2's {on_echo2} connections came back on the others, and only they "
          f"({report['reconnections']} reconnections)")
    check(e["incomplete"] == 0 and e["stalled"] == 0, "0 incomplete or stalled connections")
    check(report["reconnect_failures"] == 0,
          "no reconnect failed: HAProxy sent each to a live node")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with troupe_cluster.Cluster(sys.argv[1]) as c:
        try:
            c.start()
            chat_across_nodes(c)
            rolling_drain(c)
            crash(c)
        except Exception as e:  # noqa: BLE001 - any failure: report with the logs
            print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
            for name in ("haproxy", "echo1", "echo2", "chat1", "chat2"):
                print(f"--- {name}.log (last lines)", file=sys.stderr)
                print("\n".join(c.log_of(name).splitlines()[-15:]), file=sys.stderr)
            return 1
        finally:
            for load in LOADS:
                if load.poll() is None:
                    load.kill()
                    load.wait()
    print("scale-out test: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
