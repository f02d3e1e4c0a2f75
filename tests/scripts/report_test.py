#!/usr/bin/python3
# Debian's python3, as for scripts/bench and scripts/plot: it sees python3-matplotlib.
"""scripts/troupe_report.py, and scripts/plot and scripts/bench through it:
tables and targets from a small results file, the charts, bad input.

    tests/scripts/report_test.py        (also part of make test, through CTest)
"""
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
        ])


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
                                       "idle-memory: B/connection", "180.0k", "300"])
        # python-asyncio is in the legend, but its only record is an error: no bar.
        self.assertIn("python-asyncio", shown)
        self.assertNotIn("py-asyncio", shown)
        # The same results, the same bytes: a redrawn chart shows no diff.
        self.assertEqual(text, report.svg(report.bench_figure(doc["results"], doc["meta"])))

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
                               "troupe (pingpong)", "p99.9", "649.7k"])


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
