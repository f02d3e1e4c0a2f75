#!/usr/bin/python3
# Debian's python3, as for scripts/bench and scripts/plot: it sees python3-matplotlib.
"""scripts/troupe_report.py, and scripts/plot and scripts/bench through it:
tables and targets from a small results file, the charts, bad input.

    tests/scripts/report_test.py        (also part of make test, through CTest)
"""
import copy
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.realpath(__file__))
SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(HERE)), "scripts")
sys.path.insert(0, SCRIPTS)
import troupe_report as report  # noqa: E402

report.require_matplotlib("report_test")  # a clear line, not an error per chart test

BENCH = os.path.join(HERE, "bench_small.json")
ECHO_LOAD = os.path.join(HERE, "echo_load.json")
HGRM = os.path.join(HERE, "latency.hgrm")


def load_bench():
    """scripts/bench as a module (it has no .py), for its pure functions."""
    loader = importlib.machinery.SourceFileLoader("bench", os.path.join(SCRIPTS, "bench"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("bench", loader))
    loader.exec_module(module)
    return module


def run_script(name, *args, env=None):
    return subprocess.run([sys.executable, os.path.join(SCRIPTS, name), *args],
                          capture_output=True, text=True, timeout=60, env=env)


class TableTest(unittest.TestCase):
    def setUp(self):
        self.results = report.read_bench(BENCH)["results"]

    def rows(self, workload):
        by = self.results[workload]
        return [(s, by[s]) for s in report.servers_in({workload: by})], by["raw-epoll"]

    def test_traffic_table(self):
        rows, base = self.rows("pingpong")
        self.assertEqual(report.table("pingpong", rows, base, [], "(W=1; pinned) "), [
            "== pingpong: 64 B messages, 100 connections, 1 in flight each (W=1; pinned) ==",
            "server                msgs/s    MiB/s   p50 us   p99 us  RSS MiB CPU us/msg srv CPU "
            "cli CPU msgs/s vs raw CPU/msg vs raw",
            "troupe               180,000     11.0      520    1,200      5.4       5.50     99% "
            "    98%         0.90x          1.10x  ! other processes used 0.25 CPU",
            "raw-epoll            200,000     12.2      500    1,000      2.8       5.00    100% "
            "    97%         1.00x          1.00x",
            "asio                 160,000      9.8      540    1,100      3.3       6.00     96% "
            "    97%         0.80x          1.20x",
            "python-asyncio     FAILED: python-asyncio did not start: boom",
        ])

    def test_idle_table(self):
        rows, base = self.rows("idle-memory")
        excluded = [("python-asyncio", "could not cope: timed out")]
        self.assertEqual(report.table("idle-memory", rows, base, excluded, "(W=1) "), [
            "== idle-memory: 1,000 idle connections (one 64 B echo each); server RSS per "
            "connection (W=1) ==",
            "server             conns  RSS before  RSS after   B/conn  vs raw-epoll",
            "troupe             1,000      5.0 MiB    5.3 MiB      300         6.00x",
            "raw-epoll          1,000      2.9 MiB    2.9 MiB       50         1.00x",
            "python-asyncio     excluded: could not cope: timed out",
        ])

    def test_no_baseline_gives_dashes(self):
        rows, _ = self.rows("pingpong")
        line = report.table("pingpong", rows[:1], None, [], "")[2]
        self.assertTrue(line.endswith("-              -  ! other processes used 0.25 CPU"), line)

    def test_targets(self):
        self.assertEqual(report.check_targets(self.results), [
            "PASS  idle-memory: 300 B per idle connection (target <= 1,024)",
            "MISS  pingpong: msgs/s 0.90x raw-epoll (target >= 0.95x)",
            "PASS  pingpong: server CPU/msg 1.10x raw-epoll (target <= 1.10x)",
            "PASS  pingpong: msgs/s 1.12x asio (target >= 1.00x)",
            "PASS  lines: server CPU/msg 1.03x troupe's on pipe50, the raw codec (target <= "
            "1.05x); 1.08x raw-epoll's with --codec lines",
            "MISS  length: server CPU/msg 1.10x troupe's on pipe50, the raw codec (target <= "
            "1.05x); 1.10x raw-epoll's with --codec length",
            "MISS  chat: deliveries/s per core 0.83x raw-epoll-chat's (troupe on W=1, "
            "raw-epoll-chat on one thread; target >= 0.90x)",
            "PASS  chat: server CPU per delivery 0.120 us (target <= 0.16 us)",
            "PASS  churn: connections/s 0.94x raw-epoll (target >= 0.90x); troupe-reuseport 0.97x",
        ])

    def issue13_lines(self, results, server_threads=1):
        return [line for line in report.check_targets(results, server_threads)
                if line.split()[1].rstrip(":") in ("lines", "length", "chat", "churn")]

    def test_issue13_targets_turn_with_the_figures(self):
        # Each of issue 13's targets pushed to its other side: none is stuck
        # at PASS or at MISS.
        results = copy.deepcopy(self.results)
        results["lines"]["troupe"]["cpu_us_per_msg"] = 2.2   # 1.10x pipe50's 2.00
        results["length"]["troupe"]["cpu_us_per_msg"] = 2.1  # 1.05x: on the line
        results["chat"]["troupe"].update(messages_per_s=1100000.0, cpu_us_per_msg=0.17)
        results["churn"]["troupe"]["messages_per_s"] = 28000.0
        self.assertEqual(self.issue13_lines(results), [
            "MISS  lines: server CPU/msg 1.10x troupe's on pipe50, the raw codec (target <= "
            "1.05x); 1.16x raw-epoll's with --codec lines",
            "PASS  length: server CPU/msg 1.05x troupe's on pipe50, the raw codec (target <= "
            "1.05x); 1.05x raw-epoll's with --codec length",
            "PASS  chat: deliveries/s per core 0.92x raw-epoll-chat's (troupe on W=1, "
            "raw-epoll-chat on one thread; target >= 0.90x)",
            "MISS  chat: server CPU per delivery 0.170 us (target <= 0.16 us)",
            "MISS  churn: connections/s 0.88x raw-epoll (target >= 0.90x); troupe-reuseport 0.97x",
        ])

    def test_chat_compares_per_core(self):
        # Two server threads for troupe, one for raw-epoll-chat: half the
        # ratio. 2.2M deliveries/s on W=2 is 0.92x the peer's 1.2M on one.
        results = copy.deepcopy(self.results)
        results["chat"]["troupe"]["messages_per_s"] = 2200000.0
        self.assertIn("MISS  chat: deliveries/s per core 0.83x raw-epoll-chat's (troupe on W=1, "
                      "raw-epoll-chat on one thread; target >= 0.90x)",
                      report.check_targets(self.results))
        self.assertIn("PASS  chat: deliveries/s per core 0.92x raw-epoll-chat's (troupe on W=2, "
                      "raw-epoll-chat on one thread; target >= 0.90x)",
                      report.check_targets(results, server_threads=2))

    def test_issue13_targets_skip_or_stay_silent_without_their_figures(self):
        results = copy.deepcopy(self.results)
        del results["pipe50"]                    # the codecs' reference
        results["chat"]["raw-epoll"] = {"error": "raw-epoll-chat did not start"}
        del results["churn"]["troupe-reuseport"]
        lines = self.issue13_lines(results)
        self.assertEqual(lines, [
            "SKIP  lines: server CPU/msg against the raw codec needs troupe's on lines and on "
            "pipe50 from the same run",
            "SKIP  length: server CPU/msg against the raw codec needs troupe's on length and on "
            "pipe50 from the same run",
            "PASS  chat: server CPU per delivery 0.120 us (target <= 0.16 us)",
            "PASS  churn: connections/s 0.94x raw-epoll (target >= 0.90x)",
        ])
        # Issue #4's targets are for its own workloads only: pipe50 has none.
        self.assertFalse([line for line in report.check_targets(self.results)
                          if line.split()[1] == "pipe50:"])

    def test_new_workload_tables(self):
        rows, base = self.rows("chat")
        absent = [("asio", "no chat room")]
        self.assertEqual(report.table("chat", rows, base, [], "(W=1) ", absent), [
            "== chat: one room of 200 members, 10 talking, 64 B lines, 4 in flight per talker "
            "(W=1) ==",
            "server            deliveries/s    MiB/s   p50 us   p99 us  RSS MiB CPU us/deliv "
            "srv CPU cli CPU deliveries/s vs raw CPU/deliv vs raw",
            "troupe               1,000,000     61.0    1,100    2,900      6.0         0.12     "
            "12%     99%               0.83x            1.50x",
            "raw-epoll            1,200,000     73.2      900    2,500      2.0         0.08     "
            "10%     99%               1.00x            1.00x",
            "asio               n/a: no chat room",
            "  (a delivery is one line reaching one member; MiB/s = deliveries x 64 B; raw-epoll "
            "here is raw-epoll-chat: single-threaded, --threads 1, whatever W)",
        ])
        rows, base = self.rows("churn")
        self.assertEqual(report.table("churn", rows, base, [], "(W=1) ")[:3], [
            "== churn: 50 connections at a time, each: connect, one 64 B echo, close (W=1) ==",
            "server               conns/s    MiB/s   p50 us   p99 us  RSS MiB CPU us/conn srv CPU "
            "cli CPU conns/s vs raw CPU/conn vs raw",
            "troupe                30,000      1.8    1,500    3,100      5.4       32.00     96% "
            "    99%          0.94x           1.14x",
        ])
        self.assertEqual(rows[1][0], "troupe-reuseport")  # next to troupe, in bench's order
        rows, base = self.rows("length")
        self.assertEqual(report.table("length", rows, base, [], "(W=1) "), [
            "== length: 64 B frames (4 B length + 60 B), 50 connections, 16 in flight each "
            "(W=1) ==",
            "server                msgs/s    MiB/s   p50 us   p99 us  RSS MiB CPU us/msg srv CPU "
            "cli CPU msgs/s vs raw CPU/msg vs raw",
            "troupe               410,000     25.0    1,900    3,500      5.4       2.20     90% "
            "    99%         0.91x          1.10x",
            "raw-epoll            450,000     27.5    1,700    3,200      2.8       2.00     90% "
            "    99%         1.00x          1.00x",
            "  (echo-load --framing length, servers --codec length; pipe50 is the raw codec's run)",
        ])
        # pipe50 is an echo workload: the echo tables' heading, no note.
        rows, base = self.rows("pipe50")
        self.assertEqual(report.table("pipe50", rows, base, [], "")[0],
                         "== pipe50: 64 B messages, 50 connections, 16 in flight each ==")
        self.assertEqual(len(report.table("pipe50", rows, base, [], "")), 4)


class BenchPlanTest(unittest.TestCase):
    """scripts/bench's choices, without running anything: who runs what,
    with which command, and how a report becomes a record."""

    def setUp(self):
        self.bench = load_bench()

    def test_who_runs_what(self):
        b = self.bench
        self.assertEqual(b.workload_servers("pingpong", b.SERVERS, True), (b.SERVERS, []))
        run, absent = b.workload_servers("churn", b.SERVERS, True)
        self.assertEqual(run, ["troupe", "troupe-reuseport", "raw-epoll", "asio"])
        self.assertEqual([s for s, _ in absent], ["python-selectors", "python-asyncio"])
        # Named servers are taken as they are: no troupe-reuseport by default.
        self.assertEqual(b.workload_servers("churn", ["troupe", "raw-epoll"], False),
                         (["troupe", "raw-epoll"], []))
        for w in ("pipe50", "lines", "length", "chat"):
            run, absent = b.workload_servers(w, b.SERVERS, True)
            self.assertEqual(run, ["troupe", "raw-epoll"], w)
            self.assertEqual([s for s, _ in absent],
                             ["asio", "python-selectors", "python-asyncio"], w)
        self.assertEqual(b.workload_servers("lines", ["asio", "troupe-reuseport"], False),
                         (["troupe-reuseport"], [("asio", "no lines codec")]))

    def test_commands(self):
        b = self.bench

        def cmd(name, workload, threads=2):
            c = b.server_command(name, "bin", threads, workload)
            return [os.path.basename(c[0])] + c[1:]

        echo = ["echo-cluster", "--workers", "2", "--port", "0", "--drain_timeout", "2s"]
        # The echo workloads' commands are what they were.
        self.assertEqual(cmd("troupe", "pingpong"), echo)
        self.assertEqual(cmd("troupe-reuseport", "many"), echo + ["--accept_mode", "reuseport"])
        self.assertEqual(cmd("raw-epoll", "pipe50"),
                         ["raw-epoll-server", "--port", "0", "--threads", "2"])
        self.assertEqual(cmd("troupe", "lines"), echo + ["--codec", "lines"])
        self.assertEqual(cmd("raw-epoll", "length"),
                         ["raw-epoll-server", "--port", "0", "--threads", "2", "--codec", "length"])
        self.assertEqual(cmd("troupe", "chat"), echo + ["--mode", "chat"])
        # raw-epoll-chat is single-threaded, whatever W.
        self.assertEqual(cmd("raw-epoll", "chat"),
                         ["raw-epoll-chat", "--port", "0", "--threads", "1"])
        self.assertEqual(cmd("troupe-reuseport", "churn"), echo + ["--accept_mode", "reuseport"])
        self.assertEqual(b.LOAD_FLAGS["chat"], ["--chat", "--talkers", "10"])
        self.assertEqual(b.LOAD_FLAGS["churn"], ["--churn"])
        self.assertEqual(b.LOAD_FLAGS["lines"], ["--framing", "lines"])
        self.assertNotIn("pipe50", b.LOAD_FLAGS)

    def test_load_figures(self):
        with open(ECHO_LOAD, encoding="utf-8") as f:
            echo = json.load(f)
        r = self.bench.load_figures("pingpong", echo)
        self.assertEqual((r["messages_per_s"], r["mib_per_s"], r["connections"], r["errors"]),
                         (649724.7, 39.656, 100, 0))
        churn = dict(echo, churn=True, churn_connections_per_s=31000.0, messages_per_s=31000.0,
                     connections=dict(echo["connections"], established=0))
        r = self.bench.load_figures("churn", churn)
        self.assertEqual((r["messages_per_s"], r["connections"]), (31000.0, 100))
        chat = {"mode": "chat", "members": 200, "talkers": 10, "measured_s": 3.0,
                "deliveries_per_s": 1048576.0, "lines_per_s": 5269.2,
                "latency_us": {"p50": 900.0, "p99": 2500.0, "p99_9": 3000.0},
                "errors": {"total": 2, "lost": 2, "first": ["member 3 lost line 7"]}}
        r = self.bench.load_figures("chat", chat)
        self.assertEqual((r["messages_per_s"], r["mib_per_s"], r["connections"], r["p99_9_us"],
                          r["errors"], r["first_errors"]),
                         (1048576.0, 64.0, 200, 3000.0, 2, ["member 3 lost line 7"]))
        # A chat report read as an echo one is an error, not a quiet zero.
        with self.assertRaises(KeyError):
            self.bench.load_figures("pingpong", chat)


class ChartTest(unittest.TestCase):
    def assert_svg(self, text, labels):
        """Returns the SVG's text elements, having checked that labels are among them."""
        root = ET.fromstring(text)
        self.assertEqual(root.tag, "{http://www.w3.org/2000/svg}svg")
        shown = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
        for label in labels:
            self.assertIn(label, shown)
        return shown

    def test_bench_chart(self):
        doc = report.read_bench(BENCH)
        text = report.svg(report.bench_figure(doc["results"], doc["meta"]))
        shown = self.assert_svg(text, ["troupe", "raw-epoll", "asio", "pingpong: msgs/s",
                                       "pingpong: latency µs", "pingpong: server CPU µs/msg",
                                       "idle-memory: B/connection", "180.0k", "300",
                                       "troupe-reuseport", "pipe50: msgs/s", "lines: msgs/s",
                                       "length: server CPU µs/msg", "chat: deliveries/s",
                                       "chat: server CPU µs/deliv", "churn: conns/s",
                                       "churn: latency µs", "churn: server CPU µs/conn", "1.0M",
                                       "Throughput per workload (messages/s; chat: deliveries/s; "
                                       "churn: conns/s; idle-memory: server bytes per idle "
                                       "connection, lower is better)"])
        # python-asyncio is in the legend, but its only record is an error: no bar.
        self.assertIn("python-asyncio", shown)
        self.assertNotIn("py-asyncio", shown)
        # The same results, the same bytes: a redrawn chart shows no diff.
        self.assertEqual(text, report.svg(report.bench_figure(doc["results"], doc["meta"])))

    def test_bench_chart_of_echo_workloads_only(self):
        # A results file from before issue 13: its chart says nothing of them.
        doc = report.read_bench(BENCH)
        results = {w: doc["results"][w] for w in ("pingpong", "idle-memory")}
        shown = self.assert_svg(report.svg(report.bench_figure(results, doc["meta"])), [
            "pingpong: msgs/s", "Throughput per workload (messages/s; idle-memory: server bytes "
            "per idle connection, lower is better)"])
        self.assertFalse([t for t in shown if "chat" in t or "churn" in t or "reuseport" in t])

    def test_plot_writes_svg(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "chart.svg")
            p = run_script("plot", "--labels", "one-run,hdr-run", "--title", "A title",
                           ECHO_LOAD, HGRM, BENCH, "-o", out)
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(out, encoding="utf-8") as f:
                text = f.read()
        self.assert_svg(text, ["A title", "one-run", "hdr-run", "Latency by percentile",
                               "Throughput", "Throughput per server and workload",
                               "troupe (pingpong)", "p99.9", "649.7k", "chat (deliveries/s)",
                               "churn (conns/s)", "lines", "troupe-reuseport (churn)"])


class BadInputTest(unittest.TestCase):
    def write(self, tmp, name, doc):
        path = os.path.join(tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(doc if isinstance(doc, str) else json.dumps(doc))
        return path

    def bench_with(self, change):
        with open(BENCH, encoding="utf-8") as f:
            doc = json.load(f)
        change(doc)
        return doc

    def test_read_bench_names_the_problem(self):
        cases = [
            ("{not json", "not JSON"),
            ('{"results": {}}', '"meta" lacks'),
            (self.bench_with(lambda d: d.update(results=[])), '"results" is not an object'),
            (self.bench_with(lambda d: d["results"]["pingpong"]["troupe"].pop("p99_us")),
             "results.pingpong.troupe: no p99_us"),
            (self.bench_with(lambda d: d["results"]["pingpong"]["asio"].update(
                messages_per_s="fast")),
             "results.pingpong.asio.messages_per_s: not a number: 'fast'"),
        ]
        with tempfile.TemporaryDirectory() as tmp:
            for i, (doc, message) in enumerate(cases):
                path = self.write(tmp, f"bad{i}.json", doc)
                with self.assertRaises(report.ReportError) as caught:
                    report.read_bench(path)
                self.assertIn(path, str(caught.exception))
                self.assertIn(message, str(caught.exception))

    def test_plot_exits_1_with_one_line(self):
        with tempfile.TemporaryDirectory() as tmp:
            bad = self.bench_with(lambda d: d["results"]["pingpong"]["raw-epoll"].update(
                p50_us=[1]))
            for path, message in [(self.write(tmp, "bad.json", bad), "p50_us: not a number"),
                                  (self.write(tmp, "x.txt", "hello"), "not an echo-load report"),
                                  (os.path.join(tmp, "absent.json"), "No such file")]:
                p = run_script("plot", path, "-o", os.path.join(tmp, "out.svg"))
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertTrue(p.stderr.startswith("plot: ") and message in p.stderr, p.stderr)
                self.assertNotIn("Traceback", p.stderr)

    def test_no_matplotlib(self):
        with tempfile.TemporaryDirectory() as tmp:
            # A matplotlib that cannot be imported, found before the real one.
            os.mkdir(os.path.join(tmp, "matplotlib"))
            self.write(tmp, os.path.join("matplotlib", "__init__.py"),
                       "raise ImportError('No module named matplotlib')\n")
            env = dict(os.environ, PYTHONPATH=tmp)
            for name, args in [("plot", [ECHO_LOAD, "-o", os.path.join(tmp, "out.svg")]),
                               ("bench", ["--build-dir", tmp, "--out-dir", tmp])]:
                p = run_script(name, *args, env=env)
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertIn(f"{name}: needs matplotlib", p.stderr)
                self.assertIn("scripts/install-deps python3-matplotlib", p.stderr)
                self.assertNotIn("Traceback", p.stderr)
            self.assertEqual(os.listdir(tmp), ["matplotlib"])  # nothing written


if __name__ == "__main__":
    unittest.main()
