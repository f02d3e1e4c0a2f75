"""Reading, reporting and charting benchmark results: what scripts/bench and
scripts/plot share.

The tables need only the standard library. The charts are drawn with
matplotlib (Debian's python3-matplotlib), which took the place of two
hand-written SVG writers; require_matplotlib() turns its absence into a one-line
error instead of a traceback.
"""
import io
import json
import math
import os
import sys

try:
    import matplotlib
    matplotlib.use("Agg")  # the charts are files; never open a display
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter
except ImportError:
    matplotlib = None

WORKLOADS = {
    # name: (message bytes, connections, messages in flight per connection)
    "pingpong": (64, 100, 1),
    "pipelined": (64, 100, 16),
    "stream": (16384, 50, 4),  # 64 KiB in flight on each connection
    "pingpong-4k": (4096, 100, 1),
    "many": (64, 5000, 1),
    "idle-memory": (64, 15000, 0),  # idle connections, after one echo each
    # Issue 13. pipe50 is the raw codec on the traffic that lines and length
    # frame; chat: members of one room, lines in flight per talker; churn:
    # connections at a time, each closed after one echo.
    "pipe50": (64, 50, 16),
    "lines": (64, 50, 16),
    "length": (64, 50, 16),
    "chat": (64, 200, 4),
    "churn": (64, 50, 1),
}
# Issue #4's targets are for its workloads, the ones above issue 13's.
ECHO_TARGET_WORKLOADS = ("pingpong", "pipelined", "stream", "pingpong-4k", "many", "idle-memory")
CHAT_TALKERS = 10  # chat: the members that send lines; every member receives
# What a workload's "message" is where it is not one echo: (rate, per-unit)
# names for its table and chart; echo-load's per-second figure is the rate.
UNITS = {"chat": ("deliveries", "deliv"), "churn": ("conns", "conn")}
OTHER_CPU_FLAG = 0.10  # other processes busier than this (in CPUs) flag a run
SERVER_COLORS = {"troupe": "#1f77b4", "troupe-reuseport": "#17becf", "raw-epoll": "#444444",
                 "asio": "#ff7f0e", "python-selectors": "#2ca02c", "python-asyncio": "#9467bd"}
PLOT_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
               "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
LEGEND_CHARS = 32  # longer labels are cut, with an ellipsis

# echo-load's latency_us keys, as (percentile, key); "max" is drawn at 99.999.
ECHO_LOAD_PERCENTILES = [(0, "min"), (50, "p50"), (75, "p75"), (90, "p90"), (95, "p95"),
                         (99, "p99"), (99.9, "p99_9"), (99.99, "p99_99")]
MAX_AT = 99.999
BENCH_PERCENTILES = [(50, "p50_us"), (99, "p99_us"), (99.9, "p99_9_us")]

# The figures of a bench record, and those its table row cannot do without.
IDLE_FIGURES = ("connections", "rss_before_kib", "rss_after_kib", "bytes_per_conn")
TRAFFIC_FIGURES = ("messages_per_s", "mib_per_s", "p50_us", "p99_us")
OTHER_FIGURES = ("p99_9_us", "cpu_us_per_msg", "server_cpu", "client_cpu", "other_cpu",
                 "steal_cpu", "server_rss_kib", "errors")


class ReportError(Exception):
    """Input that cannot be reported or charted; the message names the file."""


def require_matplotlib(prog):
    if matplotlib is None:
        sys.exit(f"{prog}: needs matplotlib, which {sys.executable} cannot import; install "
                 "Debian's python3-matplotlib: scripts/install-deps python3-matplotlib")


# ---- reading ------------------------------------------------------------------

def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate_bench(doc, where, complete=False):
    """Checks scripts/bench's {"results": {workload: {server: record}}}: each
    figure present is a number and, with complete, the table's are all there."""
    results = doc.get("results")
    if not isinstance(results, dict):
        raise ReportError(f'{where}: "results" is not an object of workloads')
    for workload, by_server in results.items():
        if not isinstance(by_server, dict):
            raise ReportError(f"{where}: results.{workload} is not an object of servers")
        for server, r in by_server.items():
            at = f"{where}: results.{workload}.{server}"
            if not isinstance(r, dict):
                raise ReportError(f"{at} is not an object")
            if "error" in r:
                continue
            needed = IDLE_FIGURES if workload == "idle-memory" else TRAFFIC_FIGURES
            for key in IDLE_FIGURES + TRAFFIC_FIGURES + OTHER_FIGURES:
                required = complete and key in needed
                if required and key not in r:
                    raise ReportError(f"{at}: no {key}")
                if (required or r.get(key) is not None) and not is_number(r[key]):
                    raise ReportError(f"{at}.{key}: not a number: {r[key]!r}")
    return doc


def read_bench(path):
    """A scripts/bench results file, checked for everything its tables and
    chart use."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise ReportError(f"{path}: {e.strerror}")
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not JSON: {e}")
    if not isinstance(doc, dict):
        raise ReportError(f"{path}: not an object with meta and results")
    meta = doc.get("meta")
    machine = meta.get("machine") if isinstance(meta, dict) else None
    if not isinstance(machine, dict) or not all(k in meta for k in ("date", "pinning")) \
            or not all(k in machine for k in ("cpu_model", "cpus")):
        raise ReportError(f'{path}: "meta" lacks date, pinning, machine.cpu_model or '
                          "machine.cpus")
    return validate_bench(doc, path, complete=True)


def read_hgrm(text):
    """(percentile, microseconds) points of an HdrHistogram distribution."""
    points = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 3 or line.startswith("#"):
            continue
        try:
            value, fraction = float(cols[0]), float(cols[1])
        except ValueError:
            continue  # the header
        points.append((MAX_AT if fraction >= 1.0 else fraction * 100.0, value))
    return points


def echo_load_series(report):
    lat = report.get("latency_us") or {}
    points = [(p, lat[k]) for p, k in ECHO_LOAD_PERCENTILES if k in lat]
    if "max" in lat:
        points.append((MAX_AT, lat["max"]))
    return points


def bench_records(doc):
    """(workload, server, record) triples from the bench formats we know."""
    results = doc.get("results", doc.get("workloads"))
    out = []
    if isinstance(results, dict):
        for workload, by_server in results.items():
            if isinstance(by_server, dict):
                for server, record in by_server.items():
                    if isinstance(record, dict):
                        out.append((str(workload), str(server), record))
    elif isinstance(results, list):
        for record in results:
            if isinstance(record, dict):
                out.append((str(record.get("workload", "")),
                            str(record.get("server", record.get("name", "?"))),
                            record))
    return out


def load_inputs(paths, labels):
    """scripts/plot's inputs, recognised by their content."""
    runs = []       # (label, messages_per_s, [(percentile, us)], report)
    curves = []     # (label, [(percentile, us)]) from .hgrm files
    bench = []      # (workload, server, record)
    for i, path in enumerate(paths):
        label = labels[i] if i < len(labels) else os.path.splitext(os.path.basename(path))[0]
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ReportError(f"{path}: {e.strerror}")
        if text.lstrip().startswith("{"):
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as e:
                raise ReportError(f"{path}: not JSON: {e}")
            if "latency_us" in doc and "messages_per_s" in doc:
                if not is_number(doc["messages_per_s"]):
                    raise ReportError(f"{path}: messages_per_s: not a number")
                runs.append((label, doc["messages_per_s"], echo_load_series(doc), doc))
            elif "results" in doc or "workloads" in doc:
                if isinstance(doc.get("results"), dict):
                    validate_bench(doc, path)
                bench.extend(bench_records(doc))
            else:
                raise ReportError(f"{path}: neither an echo-load report nor bench results")
        elif "Percentile" in text and "TotalCount" in text:
            curves.append((label, read_hgrm(text)))
        else:
            raise ReportError(f"{path}: not an echo-load report, histogram or bench results")
    return runs, curves, bench


# ---- tables -------------------------------------------------------------------

def fmt(v, spec=",.0f"):
    return "-" if v is None else format(v, spec)


def ratio(v, base, spec=".2f"):
    if v is None or not base:
        return "-"
    return format(v / base, spec) + "x"


def describe(workload):
    """A traffic workload's table heading (after its name) and the note below
    its rows (None for the echo workloads)."""
    size, connections, pipeline = WORKLOADS[workload]
    if workload == "chat":
        return (f"one room of {connections:,} members, {CHAT_TALKERS} talking, {size:,} B lines, "
                f"{pipeline} in flight per talker",
                f"a delivery is one line reaching one member; MiB/s = deliveries x {size} B; "
                "raw-epoll here is raw-epoll-chat: single-threaded, --threads 1, whatever W")
    if workload == "churn":
        return (f"{connections:,} connections at a time, each: connect, one {size:,} B echo, close",
                "conns/s: whole cycles a second; CPU us/conn: server CPU per cycle")
    heading = f"{size:,} B messages, {connections:,} connections, {pipeline} in flight each"
    if workload == "lines":
        return (heading.replace("messages", "lines"),
                "echo-load --framing lines, servers --codec lines; pipe50 is the raw codec's run")
    if workload == "length":
        return (heading.replace("messages", f"frames (4 B length + {size - 4:,} B)"),
                "echo-load --framing length, servers --codec length; pipe50 is the raw codec's run")
    return heading, None


def table(workload, rows, base, excluded, note, absent=()):
    """scripts/bench's table of one workload, as lines: rows are (server,
    record), base raw-epoll's record (or None), excluded (server, why) for
    servers that could not cope, absent (server, why) for those that sat the
    workload out."""
    size, connections, pipeline = WORKLOADS[workload]
    lines, footnote = [], None
    if workload == "idle-memory":
        connections = rows[0][1].get("connections", connections) if rows else connections
        lines.append(f"== idle-memory: {connections:,} idle connections (one 64 B echo each); "
                     f"server RSS per connection {note}==")
        lines.append(f"{'server':<17}{'conns':>7}{'RSS before':>12}{'RSS after':>11}"
                     f"{'B/conn':>9}{'vs raw-epoll':>14}")
        for name, r in rows:
            if "error" in r:
                lines.append(f"{name:<17}  FAILED: {r['error']}")
                continue
            lines.append(f"{name:<17}{r['connections']:>7,}{r['rss_before_kib'] / 1024:>9.1f} MiB"
                         f"{r['rss_after_kib'] / 1024:>7.1f} MiB{r['bytes_per_conn']:>9,.0f}"
                         f"{ratio(r['bytes_per_conn'], base and base.get('bytes_per_conn')):>14}")
    else:
        rate, per = UNITS.get(workload, ("msgs", "msg"))
        heading, footnote = describe(workload)
        lines.append(f"== {workload}: {heading} {note}==")
        # (label, width): a column is one wider than its label at least.
        columns = [(f"{rate}/s", 11), ("MiB/s", 9), ("p50 us", 9), ("p99 us", 9), ("RSS MiB", 9),
                   (f"CPU us/{per}", 11), ("srv CPU", 8), ("cli CPU", 8),
                   (f"{rate}/s vs raw", 14), (f"CPU/{per} vs raw", 15)]
        widths = [max(width, len(label) + 1) for label, width in columns]
        lines.append(f"{'server':<17}" + "".join(f"{label:>{w}}" for (label, _), w
                                                 in zip(columns, widths)))
        for name, r in rows:
            if "error" in r:
                lines.append(f"{name:<17}  FAILED: {r['error']}")
                continue
            flag = ""
            if r.get("errors"):
                flag += f"  ! {r['errors']} {'chat' if workload == 'chat' else 'echo'} errors"
            if r.get("runs_failed"):
                flag += f"  ! {r['runs_failed']} of {r['runs']} runs failed"
            if (r.get("other_cpu") or 0) > OTHER_CPU_FLAG:
                flag += f"  ! other processes used {r['other_cpu']:.2f} CPU"
            if (r.get("steal_cpu") or 0) > OTHER_CPU_FLAG:
                flag += f"  ! hypervisor steal {r['steal_cpu']:.2f} CPU"
            if r.get("runs_disturbed") and r.get("runs_used", 0) < r.get("runs", 0):
                flag += f"  ({r['runs_disturbed']} disturbed run(s) left out)"
            rss = r.get("server_rss_kib")
            cells = [fmt(r["messages_per_s"]), fmt(r["mib_per_s"], ",.1f"),
                     fmt(r["p50_us"], ",.0f"), fmt(r["p99_us"], ",.0f"),
                     fmt(rss and rss / 1024, ".1f"), fmt(r.get("cpu_us_per_msg"), ".2f"),
                     fmt(r.get("server_cpu") and r["server_cpu"] * 100, ".0f") + "%",
                     fmt(r.get("client_cpu") and r["client_cpu"] * 100, ".0f") + "%",
                     ratio(r["messages_per_s"], base and base.get("messages_per_s")),
                     ratio(r.get("cpu_us_per_msg"), base and base.get("cpu_us_per_msg"))]
            lines.append(f"{name:<17}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths))
                         + flag)
    for name, why in excluded:
        lines.append(f"{name:<17}  excluded: {why}")
    for name, why in absent:
        lines.append(f"{name:<17}  n/a: {why}")
    if footnote:
        lines.append(f"  ({footnote})")
    return lines


def check_targets(results, server_threads=1):
    """The targets of issues #4 and #13, as PASS/MISS lines (figures, not
    tests); SKIP where a figure a target needs is missing. server_threads:
    W, for chat's per-core comparison with the single-threaded raw-epoll-chat."""
    lines = []
    for workload, by_server in results.items():
        if workload not in ECHO_TARGET_WORKLOADS:
            continue
        t, raw, asio = by_server.get("troupe"), by_server.get("raw-epoll"), by_server.get("asio")
        if not t or "error" in t or not raw or "error" in raw:
            continue
        if workload == "idle-memory":
            ok = t["bytes_per_conn"] <= 1024
            lines.append(f"{'PASS' if ok else 'MISS'}  idle-memory: {t['bytes_per_conn']:,.0f} B "
                         f"per idle connection (target <= 1,024)")
            continue
        m = t["messages_per_s"] / raw["messages_per_s"]
        lines.append(f"{'PASS' if m >= 0.95 else 'MISS'}  {workload}: msgs/s {m:.2f}x raw-epoll "
                     f"(target >= 0.95x)")
        if t.get("cpu_us_per_msg") and raw.get("cpu_us_per_msg"):
            c = t["cpu_us_per_msg"] / raw["cpu_us_per_msg"]
            lines.append(f"{'PASS' if c <= 1.10 else 'MISS'}  {workload}: server CPU/msg "
                         f"{c:.2f}x raw-epoll (target <= 1.10x)")
        if asio and "error" not in asio:
            a = t["messages_per_s"] / asio["messages_per_s"]
            lines.append(f"{'PASS' if a >= 1.0 else 'MISS'}  {workload}: msgs/s {a:.2f}x asio "
                         f"(target >= 1.00x)")
    return lines + issue13_targets(results, server_threads)


def _good(results, workload, server):
    """A server's record of a workload, or None when it is missing or failed."""
    r = results.get(workload, {}).get(server)
    return r if r and "error" not in r else None


def issue13_targets(results, server_threads):
    """Issue #13's targets: a codec costs troupe at most 5% server CPU per
    message over the raw codec on the same traffic (pipe50); a chat room
    delivers at least 0.9x raw-epoll-chat's per core, at most 0.16 us of
    server CPU per delivery; churn reaches 0.9x raw-epoll's connections/s."""
    lines = []
    ref = _good(results, "pipe50", "troupe")
    for codec in ("lines", "length"):
        t, raw = _good(results, codec, "troupe"), _good(results, codec, "raw-epoll")
        if not t:
            continue
        if not (t.get("cpu_us_per_msg") and ref and ref.get("cpu_us_per_msg")):
            lines.append(f"SKIP  {codec}: server CPU/msg against the raw codec needs troupe's "
                         f"on {codec} and on pipe50 from the same run")
            continue
        c = t["cpu_us_per_msg"] / ref["cpu_us_per_msg"]
        vs_raw = ratio(t["cpu_us_per_msg"], raw and raw.get("cpu_us_per_msg"))
        lines.append(f"{'PASS' if c <= 1.05 else 'MISS'}  {codec}: server CPU/msg {c:.2f}x "
                     f"troupe's on pipe50, the raw codec (target <= 1.05x); {vs_raw} "
                     f"raw-epoll's with --codec {codec}")
    t, raw = _good(results, "chat", "troupe"), _good(results, "chat", "raw-epoll")
    if t and raw and raw["messages_per_s"]:
        d = t["messages_per_s"] / server_threads / raw["messages_per_s"]
        lines.append(f"{'PASS' if d >= 0.9 else 'MISS'}  chat: deliveries/s per core {d:.2f}x "
                     f"raw-epoll-chat's (troupe on W={server_threads}, raw-epoll-chat on one "
                     f"thread; target >= 0.90x)")
    if t and t.get("cpu_us_per_msg") is not None:
        c = t["cpu_us_per_msg"]
        lines.append(f"{'PASS' if c <= 0.16 else 'MISS'}  chat: server CPU per delivery "
                     f"{c:.3f} us (target <= 0.16 us)")
    t, raw = _good(results, "churn", "troupe"), _good(results, "churn", "raw-epoll")
    if t and raw and raw["messages_per_s"]:
        m = t["messages_per_s"] / raw["messages_per_s"]
        reuseport = _good(results, "churn", "troupe-reuseport")
        also = (f"; troupe-reuseport {reuseport['messages_per_s'] / raw['messages_per_s']:.2f}x"
                if reuseport else "")
        lines.append(f"{'PASS' if m >= 0.9 else 'MISS'}  churn: connections/s {m:.2f}x raw-epoll "
                     f"(target >= 0.90x){also}")
    return lines


# ---- charts -------------------------------------------------------------------

def svg(fig):
    """The figure as SVG text, the same bytes for the same figure: a fixed
    hash salt for its ids and no date, so a redrawn chart shows no diff. Text
    stays text (searchable, and small with few font names, which every text
    element repeats)."""
    out = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "troupe", "svg.fonttype": "none",
                                "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"]}):
        fig.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


def scaled(v, units, spec):
    """`v` in the largest of `units` ((divisor, suffix), largest first) it
    reaches, formatted with `spec`; the last unit must have divisor 1."""
    for div, suffix in units:
        if v >= div or div == 1:
            return f"{v / div:{spec}}{suffix}"


def short(v):
    return scaled(v, ((1e6, "M"), (1e3, "k"), (1, "")), ".1f") if v >= 1e3 else f"{v:.0f}"


def fmt_num(v):
    return scaled(v, ((1e6, "M"), (1e3, "k"), (1, "")), "g")


def fmt_us(v):
    return scaled(v, ((1e6, " s"), (1e3, " ms"), (1, " us")), "g")


def servers_in(results):
    """The servers of some results, in scripts/bench's order."""
    found = {s for by_server in results.values() for s in by_server}
    return [s for s in SERVER_COLORS if s in found] + sorted(found - set(SERVER_COLORS))


def _server_bars(ax, title, by, servers, keys, label, log=False):
    """One bar per server, or with two keys (p50, p99) a light and a dark one."""
    ax.set_title(title, loc="left", fontsize=9, fontweight="bold")
    shown = [s for s in servers if s in by and "error" not in by[s]]
    if not any(by[s].get(key) for s in shown for key in keys):
        return ax.set_axis_off()  # every server failed here: the title alone says so
    width = 0.8 / len(keys)
    for j, key in enumerate(keys):
        values = [by[s].get(key) or 0 for s in shown]
        xs = [i + (j - (len(keys) - 1) / 2) * width for i in range(len(shown))]
        bars = ax.bar(xs, values, width * 0.92, alpha=0.45 if len(keys) > 1 and j == 0 else 1,
                      color=[SERVER_COLORS.get(s, "#888888") for s in shown])
        ax.bar_label(bars, [label(v) if v else "" for v in values], fontsize=6.5, padding=1)
    ax.set_xticks(range(len(shown)), [s.replace("python-", "py-") for s in shown],
                  fontsize=7, rotation=20)
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: short(v) if v > 0 else "0"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="y", labelsize=7)
    ax.margins(y=0.18)
    ax.spines[["top", "right"]].set_visible(False)


def bench_figure(results, meta, servers=None):
    """scripts/bench's chart: per workload, throughput (idle-memory: bytes per
    idle connection), p50/p99 latency and server CPU per message (chat: per
    delivery, churn: per connection)."""
    servers = servers or servers_in(results)
    # In scripts/bench's order: a file's results come back sorted by name.
    traffic = [w for w in WORKLOADS if w in results and w != "idle-memory"]
    traffic += sorted(w for w in results if w not in WORKLOADS)
    first = traffic + (["idle-memory"] if "idle-memory" in results else [])
    units = "".join(f"; {w}: {UNITS[w][0]}/s" for w in traffic if w in UNITS)
    sections = [(f"Throughput per workload (messages/s{units}; idle-memory: server bytes per idle "
                 "connection, lower is better)", first)]
    if traffic:
        sections += [("Latency per workload (µs, log scale; light: p50, dark: p99)", traffic),
                     ("Server CPU time per message (µs; lower is better; the fairer figure "
                      "when the client saturates first)", traffic)]
    cols, row_in = 3, 2.2
    rows = [max(1, math.ceil(len(ws) / cols)) for _, ws in sections]
    fig = Figure(figsize=(10, 0.9 + sum(r * row_in + 0.3 for r in rows)), layout="constrained")
    m = meta["machine"]
    fig.suptitle(f"troupe vs peers: {meta['date']}, {m['cpu_model']}, {m['cpus']} CPUs, "
                 f"{meta['pinning']}", fontweight="bold", x=0.01, ha="left")
    subs = fig.subfigures(len(sections) + 1, 1,
                          height_ratios=[r * row_in + 0.3 for r in rows] + [0.35])
    for k, (sub, (heading, panels)) in enumerate(zip(subs, sections)):
        sub.suptitle(heading, fontsize=9, x=0.01, ha="left")
        axes = list(sub.subplots(rows[k], cols, squeeze=False).flat)
        for ax, w in zip(axes, panels):
            by = results[w]
            rate, per = UNITS.get(w, ("msgs", "msg"))
            if k == 1:
                _server_bars(ax, f"{w}: latency µs", by, servers, ("p50_us", "p99_us"), short,
                             log=True)
            elif k == 2:
                _server_bars(ax, f"{w}: server CPU µs/{per}", by, servers, ("cpu_us_per_msg",),
                             lambda v: f"{v:.2f}")
            elif w == "idle-memory":
                _server_bars(ax, "idle-memory: B/connection", by, servers, ("bytes_per_conn",),
                             lambda v: f"{v:,.0f}")
            else:
                _server_bars(ax, f"{w}: {rate}/s", by, servers, ("messages_per_s",), short)
        for ax in axes[len(panels):]:  # the empty end of the last row
            ax.set_axis_off()
    subs[-1].legend(handles=[Patch(color=SERVER_COLORS.get(s, "#888888"), label=s)
                             for s in servers], loc="center", ncol=len(servers), frameon=False)
    return fig


def _cut(label):
    return label if len(label) <= LEGEND_CHARS else label[:LEGEND_CHARS - 1] + "\u2026"


def _nines(pct):
    """The latency chart's x: log of 1/(1-percentile), so p99 and p99.9 get as
    much room as p50 and p90."""
    return math.log10(100.0 / (100.0 - min(pct, MAX_AT)))


def nice_log_ticks(lo, hi):
    """1-2-5 ticks spanning [lo, hi] (both > 0); decades only when that is too dense."""
    ticks = []
    e = math.floor(math.log10(lo))
    while True:
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo / 1.0001 <= v <= hi * 1.0001:
                ticks.append(v)
        if 10 ** e > hi:
            break
        e += 1
    if len(ticks) > 9:
        ticks = [t for t in ticks if str(t).lstrip("0.").startswith("1")]
    return ticks


def _no_data(ax, what):
    ax.text(0.5, 0.5, f"no {what} data", transform=ax.transAxes, ha="center", color="#666666")
    ax.set_xticks([])
    ax.set_yticks([])


def _latency_panel(ax, series, title):
    """series: [(label, [(percentile, us)])], drawn as lines."""
    ax.set_title(title, fontweight="bold")
    values = [v for _, pts in series for _, v in pts if v > 0]
    if not values:
        return _no_data(ax, "latency")
    for i, (label, pts) in enumerate(series):
        pts = sorted((pc, v) for pc, v in pts if v > 0)
        if pts:
            ax.plot([_nines(pc) for pc, _ in pts], [v for _, v in pts], lw=2, label=_cut(label),
                    color=PLOT_COLORS[i % len(PLOT_COLORS)], marker="o" if len(pts) <= 12 else "",
                    markersize=4)
    ax.set_yscale("log")
    ax.set_ylim(min(values) / 1.3, max(values) * 1.3)
    ax.yaxis.set_major_locator(FixedLocator(nice_log_ticks(min(values) / 1.3, max(values) * 1.3)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_us(v)))
    ax.yaxis.set_minor_formatter(NullFormatter())
    named = [(0, "min"), (50, "p50"), (90, "p90"), (99, "p99"), (99.9, "p99.9"),
             (99.99, "p99.99"), (MAX_AT, "max")]
    ax.set_xticks([_nines(pc) for pc, _ in named], [name for _, name in named])
    ax.set_xlim(0, _nines(MAX_AT))
    ax.grid(color="#dddddd")
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (log scale)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False, fontsize=8)


def _bar_panel(ax, groups, names, title, y_label):
    """groups: [(group, {series: value})]; one bar per series in each group."""
    ax.set_title(title, fontweight="bold")
    values = [v for _, by in groups for v in by.values() if v is not None]
    if not values:
        return _no_data(ax, "throughput")
    width = min(0.3, 0.8 / max(1, len(names)))
    crowded = len(names) > 3  # upright value labels would overlap
    for gi, (_, by) in enumerate(groups):
        used = [s for s in names if by.get(s) is not None]
        for bi, s in enumerate(used):
            v = by[s]
            bars = ax.bar(gi + (bi - (len(used) - 1) / 2) * width, v, width * 0.95,
                          color=PLOT_COLORS[names.index(s) % len(PLOT_COLORS)])
            ax.bar_label(bars, [fmt_num(round(v, -2) if v >= 1000 else v)], fontsize=7,
                         rotation=90 if crowded else 0, padding=2)
    ax.set_xticks(range(len(groups)), [g for g, _ in groups])
    ax.set_xlim(-0.5, len(groups) - 0.5)
    ax.set_ylim(0, max(values) * (1.3 if crowded else 1.12) or 1.0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_num(v)))
    ax.grid(axis="y", color="#dddddd")
    ax.set_axisbelow(True)
    ax.set_ylabel(y_label)
    ax.legend(handles=[Patch(color=PLOT_COLORS[i % len(PLOT_COLORS)], label=_cut(s))
                       for i, s in enumerate(names)],
              loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False, fontsize=8)


def plot_figure(runs, curves, bench, title):
    """scripts/plot's chart: a latency-percentile panel for echo-load runs and
    histograms, throughput bars, and for bench results throughput per
    workload and their p50/p99/p99.9 lines."""
    panels = []  # (draw, its arguments after ax, legend entries)
    if runs or curves:
        series = [(label, pts) for label, _, pts, _ in runs] + curves
        panels.append((_latency_panel, (series, "Latency by percentile"), len(series)))
    if runs:
        names = [label for label, _, _, _ in runs]
        groups = [("", {label: mps for label, mps, _, _ in runs})]
        panels.append((_bar_panel, (groups, names, "Throughput", "messages/s"), len(names)))
    if bench:
        workloads, servers = [], []
        for w, s, r in bench:
            if r.get("messages_per_s") is None:
                continue
            if w not in workloads:
                workloads.append(w)
            if s not in servers:
                servers.append(s)
        # chat's figure is deliveries/s, churn's connections/s: the label says so.
        groups = [(f"{w} ({UNITS[w][0]}/s)" if w in UNITS else w,
                   {s: r.get("messages_per_s") for ww, s, r in bench if ww == w})
                  for w in workloads]
        panels.append((_bar_panel, (groups, servers, "Throughput per server and workload",
                                    "messages/s"), len(servers)))
        if any(any(k in r for _, k in BENCH_PERCENTILES) for _, _, r in bench):
            series = []
            for w, s, r in bench:
                pts = [(p, r[k]) for p, k in BENCH_PERCENTILES if is_number(r.get(k))]
                if pts:
                    series.append((f"{s} ({w})" if w else s, pts))
            panels.append((_latency_panel, (series, "Latency by percentile (bench)"),
                           len(series)))
    if not panels:
        raise ReportError("nothing to plot")
    # A panel grows with its legend (a whole bench file has one line per
    # server and workload), so the legend never squeezes the plot.
    heights = [max(3.6, 0.8 + 0.16 * n) for _, _, n in panels]
    fig = Figure(figsize=(9.6, 0.4 + sum(heights)), layout="constrained")
    if title:
        fig.suptitle(title, fontweight="bold")
    axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, (draw, args, _) in zip(axes[:, 0], panels):
        draw(ax, *args)
    return fig
