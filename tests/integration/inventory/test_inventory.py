#!/usr/bin/python3
"""The inventory plugin through a real oslo.messaging client and server.

nestor-agent with the libvirt (test:///default) and inventory plugins on a
private vhost; Debian's python3-oslo.messaging plays the controller:
  * an RPC server on the report topic (fanout) receives the periodic
    reports: a full snapshot first, then only what changed;
  * inventory_query returns exactly the requested fields, filtered and
    paged; bad queries fail with clear errors;
  * inventory_changes returns an instance's changed properties only;
  * after a restart of the agent (same state_path) versions keep growing
    and a `since` from the previous run is refused (ChangesExpired).

Usage: test_inventory.py   (NESTOR_BUILD_DIR: the build directory)
"""
import json
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "compat"))
import harness  # noqa: E402

checks = 0


def check(cond, msg):
    global checks
    checks += 1
    if not cond:
        raise AssertionError(msg)


class Controller:
    """Receives the agent's inventory reports (fanout casts)."""

    def __init__(self):
        self.reports = []
        self.cond = threading.Condition()

    def inventory_report(self, ctxt, report):
        with self.cond:
            self.reports.append(report)
            self.cond.notify_all()

    def wait(self, pred, timeout, what):
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for r in self.reports:
                    if pred(r):
                        return r
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("no report %s within %.0f s (got %d)" % (
                        what, timeout, len(self.reports)))
                self.cond.wait(left)


def remote_error(fn, cls, part):
    om = harness._oslo()
    try:
        fn()
    except om.RemoteError as e:
        check(e.exc_type == cls, "expected %s, got %s: %s" % (cls, e.exc_type, e.value))
        check(part in e.value, "expected '%s' in: %s" % (part, e.value))
        return
    raise AssertionError("expected %s (%s), the call succeeded" % (cls, part))


def spec(name):
    return {"spec": {"name": name, "vcpus": 1, "memory_mb": 64, "disks": [{"size_gb": 1}]}}


def main():
    om = harness._oslo()
    harness.ensure_broker()
    state = tempfile.mkdtemp(prefix="nestor-inv-state-")
    exchange = harness.unique_name("nestor_inv")
    extra = {"DEFAULT": {"state_path": state},
             "libvirt": {"uri": "test:///default"},
             "inventory": {"report_interval": 1, "initial_report_delay": 1}}
    with harness.Vhost("nestor_inv") as vh:
        trans = harness.transport(vh.url, exchange=exchange)
        ctl = Controller()
        server = om.get_rpc_server(trans, om.Target(topic="nestor-inventory", server="ctl"),
                                   [ctl], executor="threading")
        server.start()
        try:
            agent = harness.AgentProcess(vh.url, exchange, host="inv1",
                                         plugins=("libvirt", "inventory"), extra=extra)
            with agent:
                client = agent.client().prepare(timeout=60)
                first = ctl.wait(lambda r: r.get("full"), 30, "with a full snapshot")
                check("host" in first["objects"] and "topology" in first["objects"]["host"],
                      "the full report has the host's topology: %s" % list(first["objects"]))
                topo = first["objects"]["host"]["topology"]
                check(topo["threads"] >= 1 and topo["sockets"] >= 1, "topology: %s" % topo)
                for name in ("a1", "a2", "a3"):
                    client.call({}, "spawn", **spec(name))
                delta = ctl.wait(lambda r: not r.get("full") and sum(
                    1 for c in r["changes"] if c["type"] == "instance" and c["op"] == "created")
                    == 3, 30, "with the three new instances")
                full = client.call({}, "inventory_report", full=True)
                full_bytes = len(json.dumps(full))
                usage = full["objects"]["host"]["usage"]
                check(usage["vcpus_used"] == 3 and usage["memory_mb_used"] == 3 * 64 and
                      usage["instances"] == 3 and usage["vcpus_total"] >= 1,
                      "usage: %s" % usage)

                # Queries: exactly the fields asked for, paged.
                page = client.call({}, "inventory_query", type="instance",
                                   fields=["name", "power_state"], limit=2)
                check(len(page["objects"]) == 2 and page["next_marker"], "page 1: %s" % page)
                for o in page["objects"]:
                    check(set(o) == {"id", "name", "power_state"}, "fields: %s" % o)
                rest = client.call({}, "inventory_query", type="instance",
                                   fields=["name", "power_state"], limit=2,
                                   marker=page["next_marker"])
                names = [o["name"] for o in page["objects"] + rest["objects"]]
                check(sorted(names) == ["a1", "a2", "a3"] and rest["next_marker"] is None,
                      "paging returns each once: %s" % names)
                one = client.call({}, "inventory_query", type="instance", fields=["name"],
                                  filter={"name": "a2"})
                check([o["name"] for o in one["objects"]] == ["a2"], "filter: %s" % one)
                remote_error(lambda: client.call({}, "inventory_query", type="instance",
                                                 fields=["name"], filter={"name": "a1"},
                                                 marker=page["next_marker"]),
                             "InvalidInput", "marker")
                remote_error(lambda: client.call({}, "inventory_query", type="volcano"),
                             "InvalidInput", "unknown type 'volcano'")
                remote_error(lambda: client.call({}, "inventory_query", type="instance",
                                                 fields=["colour"]), "InvalidInput", "colour")
                remote_error(lambda: client.call({}, "inventory_query", type="instance",
                                                 filter={"colour": "red"}),
                             "InvalidInput", "colour")
                remote_error(lambda: client.call({}, "inventory_query", type="instance",
                                                 limit=-1), "InvalidInput", "limit")

                # Changes: only what changed.
                version = client.call({}, "inventory_query", type="instance",
                                      fields=[])["version"]
                uuid_a2 = one["objects"][0]["id"]
                client.call({}, "power_off", instance="a2", timeout=1)
                ch = client.call({}, "inventory_changes", since=version, type="instance")
                ours = [c for c in ch["changes"] if c["id"] == uuid_a2]
                check(len(ours) == 1 and ours[0]["op"] == "updated", "one update: %s" % ch)
                props = ours[0]["properties"]
                check(props.get("power_state") == "shutdown" and "name" not in props,
                      "only the changed properties: %s" % props)
                remote_error(lambda: client.call({}, "inventory_changes",
                                                 since=ch["version"] + 1000),
                             "InvalidInput", "future")
                remote_error(lambda: client.call({}, "inventory_changes", since=0,
                                                 epoch="0" * 32), "ChangesExpired", "")
                small = ctl.wait(lambda r: not r.get("full") and any(
                    c["id"] == uuid_a2 and c["op"] == "updated" for c in r["changes"]), 30,
                    "with the power-off")
                small_bytes = len(json.dumps(small))
                inst = [c for c in small["changes"] if c["type"] == "instance"]
                check(len(inst) == 1 and set(inst[0]["properties"]) <= {"state", "power_state"},
                      "the report carries the one instance's change: %s" % inst)
                check(small_bytes * 2 < full_bytes, "a delta report (%d bytes) is smaller "
                      "than a full one (%d bytes)" % (small_bytes, full_bytes))
                epoch = ch["epoch"]
                last = ch["version"]
            # A restart on the same state_path: versions never go back.
            agent = harness.AgentProcess(vh.url, exchange, host="inv1",
                                         plugins=("libvirt", "inventory"), extra=extra)
            with agent:
                client = agent.client().prepare(timeout=60)
                v2 = client.call({}, "inventory_query", type="host", fields=[])["version"]
                check(v2 > last, "after a restart the version grew: %d > %d" % (v2, last))
                remote_error(lambda: client.call({}, "inventory_changes", since=last,
                                                 epoch=epoch), "ChangesExpired", "")
        finally:
            server.stop()
            server.wait()
            harness.cleanup_transport(trans)
            shutil.rmtree(state, ignore_errors=True)
    print("test_inventory: %d checks passed (full report %d bytes, delta %d bytes)" % (
        checks, full_bytes, small_bytes), file=sys.stderr)


if __name__ == "__main__":
    main()
