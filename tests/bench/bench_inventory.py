#!/usr/bin/python3
"""Inventory reports with many instances (issue 6's benchmark).

nestor-agent with the libvirt (test:///default) and inventory plugins,
report_interval 1 s, on a private vhost; an oslo.messaging RPC server
receives the reports. N instances are spawned (no disks: the test driver
needs none), then one is powered off, and the script prints:
  * the bytes of the full snapshot and of the periodic report that carries
    the one change (bus bytes grow with what changed, not with N);
  * the agent's CPU time per periodic report (thread CPU of pulling the
    collections, diffing, building and publishing), as the agent reports it;
  * the agent's resident memory with N instances, next to a Python process
    that only imports nova-compute's manager (a lower bound of nova-compute's
    footprint; nova-compute itself cannot run here without a database).

Usage: bench_inventory.py [N]   (NESTOR_BUILD_DIR: the build directory)
"""
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "compat"))
import harness  # noqa: E402


class Controller:
    def __init__(self):
        self.reports = []
        self.cond = threading.Condition()

    def inventory_report(self, ctxt, report):
        with self.cond:
            self.reports.append(report)
            self.cond.notify_all()

    def wait(self, pred, timeout):
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for r in reversed(self.reports):
                    if pred(r):
                        return r
                left = end - time.monotonic()
                if left <= 0:
                    raise SystemExit("bench_inventory: no matching report")
                self.cond.wait(left)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def nova_rss_kib():
    code = ("import nova.compute.manager, nova.virt.libvirt.driver, time;"
            "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])")
    p = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True)
    return int(p.stdout.strip()) if p.returncode == 0 and p.stdout.strip() else None


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    om = harness._oslo()
    harness.ensure_broker()
    exchange = harness.unique_name("nestor_bench_inv")
    extra = {"libvirt": {"uri": "test:///default"},
             "inventory": {"report_interval": 1, "initial_report_delay": 1}}
    with harness.Vhost("nestor_bench_inv") as vh:
        trans = harness.transport(vh.url, exchange=exchange)
        ctl = Controller()
        server = om.get_rpc_server(trans, om.Target(topic="nestor-inventory", server="bench"),
                                   [ctl], executor="threading")
        server.start()
        try:
            with harness.AgentProcess(vh.url, exchange, host="bench1",
                                      plugins=("libvirt", "inventory"), extra=extra) as agent:
                client = agent.client().prepare(timeout=120)
                t0 = time.monotonic()
                for i in range(n):
                    client.call({}, "spawn", spec={"name": "b%05d" % i, "vcpus": 1,
                                                   "memory_mb": 64})
                spawn_s = time.monotonic() - t0
                ctl.wait(lambda r: r.get("version") and sum(
                    1 for c in r.get("changes", []) if c["type"] == "instance") > 0, 60)
                time.sleep(2.5)  # the reports catch up with the spawns
                full = client.call({}, "inventory_report", full=True)
                full_bytes = len(json.dumps(full, separators=(",", ":")))
                objects = sum(len(v) for v in full["objects"].values())
                victim = "b%05d" % (n // 2)
                client.call({}, "power_off", instance=victim, timeout=1)
                delta = ctl.wait(lambda r: not r.get("full") and any(
                    c.get("op") == "updated" and c.get("type") == "instance"
                    for c in r.get("changes", [])), 30)
                delta_bytes = len(json.dumps(delta, separators=(",", ":")))
                # CPU per periodic report: a few reports with nothing new
                # still pull every collection and diff it.
                cpu = []
                for _ in range(5):
                    time.sleep(1.1)
                    st = client.call({}, "inventory_report", full=False)["stats"]
                    cpu.append(st["last_report_cpu_ms"])
                rss = rss_kib(agent.proc.pid)
        finally:
            server.stop()
            server.wait()
            harness.cleanup_transport(trans)
    nova = nova_rss_kib()
    out = {
        "instances": n, "objects": objects, "spawn_s": round(spawn_s, 1),
        "full_report_bytes": full_bytes, "delta_report_bytes": delta_bytes,
        "delta_changes": len(delta.get("changes", [])),
        "report_cpu_ms": sorted(cpu), "agent_rss_mib": round(rss / 1024, 1),
        "nova_compute_import_rss_mib": round(nova / 1024, 1) if nova else None,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
