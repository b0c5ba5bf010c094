#!/usr/bin/python3
"""RPC benchmark: nestor-agent against a Python oslo.messaging server.

Run by hand (not a CTest test), after building:

    /usr/bin/python3 tests/bench/bench_rpc.py [--calls 3000] [--runs 1] [--json]

In one run, on one broker (a private vhost), with one Python oslo client:
  (a) a Python oslo RPC server (threading executor; no-op ping -> 'pong',
      a `count` cast sink with a counter, `get_counters`), in a subprocess,
      Target(topic='compute', server='bench-py') on its own exchange;
  (b) nestor-agent (host bench-c, the testing plugin), on its own exchange.
For each: 300 warm-up calls, then N sequential call(ctxt, 'ping') timed one
by one (calls/s, p50/p90/p99), the server's CPU time per call (utime+stime
from /proc/<pid>/stat), then N sequential casts of `count`, polling
get_counters until all were processed (casts/s processed, CPU per cast).

Prints a table and the ratios: agent calls/s / python calls/s (target >= 2.0)
and agent CPU per call / python CPU per call (target <= 0.10). --check makes
the exit code 1 when a target is missed. NESTOR_BUILD_DIR selects the build.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "compat"))
import harness  # noqa: E402

WARMUP = 300
TARGET_CALLS_RATIO = 2.0
TARGET_CPU_RATIO = 0.10


# ------------------------------------------------------ python server ----

def python_server(url, exchange, server):
    """The reference: a plain oslo.messaging RPC server, threading executor."""
    import logging
    import oslo_messaging as om
    logging.basicConfig(level=logging.WARNING)

    class Endpoint:
        def __init__(self):
            self.lock = threading.Lock()
            self.casts = 0

        def ping(self, ctxt):
            return "pong"

        def count(self, ctxt):
            with self.lock:
                self.casts += 1

        def get_counters(self, ctxt):
            with self.lock:
                return {"casts": self.casts, "ticks": 0}

    transport = harness.transport(url)
    srv = om.get_rpc_server(transport, om.Target(topic=harness.TOPIC, server=server,
                                                 exchange=exchange),
                            [Endpoint()], executor="threading")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    srv.start()
    print("READY", flush=True)
    while not stop.is_set():
        stop.wait(0.5)
    srv.stop()
    srv.wait()
    harness.cleanup_transport(transport)
    return 0


class PythonServer:
    def __init__(self, url, exchange, server="bench-py"):
        self.url, self.exchange, self.server = url, exchange, server
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--python-server", "--url", self.url,
             "--exchange", self.exchange, "--server", self.server],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=None, text=True,
            start_new_session=True)
        ready = {}
        t = threading.Thread(target=lambda: ready.setdefault("line", self.proc.stdout.readline()),
                             daemon=True)
        t.start()
        t.join(60)
        if ready.get("line", "").strip() != "READY":
            self.__exit__()
            raise RuntimeError("the Python oslo server did not start")
        return self

    @property
    def pid(self):
        return self.proc.pid

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return False


# ---------------------------------------------------------- measuring ----

def pct(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def measure(name, client, pid, n):
    call = client.prepare(timeout=30)
    for _ in range(WARMUP):
        call.call({}, "ping")

    lat = []
    cpu0 = harness.cpu_seconds(pid)
    t0 = time.perf_counter()
    for _ in range(n):
        s = time.perf_counter()
        if call.call({}, "ping") != "pong":
            raise RuntimeError("%s: ping did not return 'pong'" % name)
        lat.append(time.perf_counter() - s)
    wall = time.perf_counter() - t0
    cpu_calls = harness.cpu_seconds(pid) - cpu0
    lat.sort()

    base = call.call({}, "get_counters")["casts"]
    cpu0 = harness.cpu_seconds(pid)
    t0 = time.perf_counter()
    for _ in range(n):
        client.cast({}, "count")
    sent = time.perf_counter() - t0
    deadline = time.monotonic() + 120
    polls = 0
    while True:
        done = call.call({}, "get_counters")["casts"] - base
        polls += 1
        if done >= n:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("%s: only %d of %d casts processed after 120 s" % (name, done, n))
        time.sleep(0.01)
    processed = time.perf_counter() - t0
    cpu_casts = harness.cpu_seconds(pid) - cpu0
    if done != n:
        raise RuntimeError("%s: %d casts processed, %d sent" % (name, done, n))

    return {
        "server": name,
        "calls": n,
        "calls_per_s": n / wall,
        "p50_ms": pct(lat, 50) * 1e3,
        "p90_ms": pct(lat, 90) * 1e3,
        "p99_ms": pct(lat, 99) * 1e3,
        "max_ms": lat[-1] * 1e3,
        "mean_ms": statistics.fmean(lat) * 1e3,
        "cpu_ms_per_call": cpu_calls / n * 1e3,
        "casts": n,
        "casts_sent_per_s": n / sent,
        "casts_processed_per_s": n / processed,
        "cpu_ms_per_cast": cpu_casts / n * 1e3,
        "count_polls": polls,
    }


def run_bench(n, runs):
    harness.ensure_broker()
    results = []
    with harness.Vhost("nestor_bench") as vhost:
        py_exchange = harness.unique_name("nestor_bench_py")
        c_exchange = harness.unique_name("nestor_bench_c")
        agent = harness.AgentProcess(vhost.url, c_exchange, host="bench-c", workers=4)
        with PythonServer(vhost.url, py_exchange) as py, agent:
            trans = harness.transport(vhost.url)
            try:
                py_client = harness.rpc_client(trans, py_exchange, "bench-py")
                c_client = harness.rpc_client(trans, c_exchange, "bench-c")
                harness.ping_until(py_client, 30)
                for r in range(runs):
                    for name, client, pid in (("python-oslo", py_client, py.pid),
                                              ("nestor-agent", c_client, agent.pid)):
                        harness.log("run %d/%d: %s, %d calls and %d casts" % (r + 1, runs, name,
                                                                             n, n))
                        res = measure(name, client, pid, n)
                        res["run"] = r + 1
                        results.append(res)
            finally:
                harness.cleanup_transport(trans)
    return results


def summarize(results):
    def best(name, key, fn):
        vals = [r[key] for r in results if r["server"] == name]
        return fn(vals) if vals else float("nan")

    med = statistics.median
    py_calls = best("python-oslo", "calls_per_s", med)
    c_calls = best("nestor-agent", "calls_per_s", med)
    py_cpu = best("python-oslo", "cpu_ms_per_call", med)
    c_cpu = best("nestor-agent", "cpu_ms_per_call", med)
    py_casts = best("python-oslo", "casts_processed_per_s", med)
    c_casts = best("nestor-agent", "casts_processed_per_s", med)
    calls_ratio = c_calls / py_calls
    cpu_ratio = c_cpu / py_cpu if py_cpu > 0 else float("nan")
    return {
        "calls_per_s_ratio": calls_ratio,
        "cpu_per_call_ratio": cpu_ratio,
        "casts_per_s_ratio": c_casts / py_casts,
        "calls_ratio_target": TARGET_CALLS_RATIO,
        "cpu_ratio_target": TARGET_CPU_RATIO,
        "calls_ratio_ok": calls_ratio >= TARGET_CALLS_RATIO,
        "cpu_ratio_ok": cpu_ratio <= TARGET_CPU_RATIO,
    }


def print_table(results, summary):
    cols = [("server", "%s", "server"), ("run", "%d", "run"),
            ("calls/s", "%8.0f", "calls_per_s"), ("p50 ms", "%7.3f", "p50_ms"),
            ("p90 ms", "%7.3f", "p90_ms"), ("p99 ms", "%7.3f", "p99_ms"),
            ("max ms", "%7.2f", "max_ms"), ("CPU ms/call", "%11.4f", "cpu_ms_per_call"),
            ("casts/s sent", "%12.0f", "casts_sent_per_s"),
            ("casts/s done", "%12.0f", "casts_processed_per_s"),
            ("CPU ms/cast", "%11.4f", "cpu_ms_per_cast")]
    rows = [[f % r[k] for _, f, k in cols] for r in results]
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, (h, _, _) in enumerate(cols)]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    print(line([h for h, _, _ in cols]))
    for row in rows:
        print(line(row))
    print()
    print("agent calls/s / python calls/s      = %.2f  (target >= %.1f)  %s" % (
        summary["calls_per_s_ratio"], TARGET_CALLS_RATIO,
        "ok" if summary["calls_ratio_ok"] else "MISSED"))
    print("agent CPU/call / python CPU/call    = %.3f (target <= %.2f) %s" % (
        summary["cpu_per_call_ratio"], TARGET_CPU_RATIO,
        "ok" if summary["cpu_ratio_ok"] else "MISSED"))
    print("agent casts/s / python casts/s      = %.2f" % summary["casts_per_s_ratio"])


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=3000, help="calls and casts per server (3000)")
    p.add_argument("--runs", type=int, default=1, help="alternating runs per server (1)")
    p.add_argument("--json", action="store_true", help="print machine-readable results")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--python-server", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--exchange", help=argparse.SUPPRESS)
    p.add_argument("--server", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.python_server:
        return python_server(a.url, a.exchange, a.server)

    results = run_bench(a.calls, a.runs)
    summary = summarize(results)
    if a.json:
        print(json.dumps({"results": results, "summary": summary,
                          "warmup_calls": WARMUP, "loadavg": os.getloadavg(),
                          "cpus": os.cpu_count()}, indent=2))
    else:
        print_table(results, summary)
    if a.check and not (summary["calls_ratio_ok"] and summary["cpu_ratio_ok"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
