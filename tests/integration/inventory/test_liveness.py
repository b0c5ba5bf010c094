#!/usr/bin/python3
"""Integration: liveness reports and `nestorctl services` against a real broker.

    /usr/bin/python3 tests/integration/inventory/test_liveness.py

Agents run the plugin named by NESTOR_LIVENESS_PLUGIN (default "inventory")
with report_interval = 1 s and service_down_time = 3 s, in a private vhost
with a private control exchange and service topic.

  * two agents report; `nestorctl services` shows both up (exit 0), with
    every report field, a disabled host with its reason, a 0600 state file;
  * one agent is killed with SIGKILL: after more than 3 s it is down and the
    other still up (exit 1), in the table and in --json;
  * it is started again: up, with a new started_at and report_count counting
    from 1 again;
  * an agent whose broker connection is cut (rabbitmqctl close_connection;
    a dead second broker host makes the reconnection take seconds) drops
    the reports due meanwhile instead of queueing them: the first report
    after the reconnection has reports_dropped >= 1 and report_count going on;
  * a plain oslo.messaging RPC server, Target(topic=<service_topic>), with an
    endpoint service_report(ctxt, report) receives the reports (fanout).

The shared broker is never stopped.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import warnings
from datetime import datetime

# eventlet and kombu (imported by oslo.messaging) warn on Python 3.11.
warnings.filterwarnings("ignore", category=DeprecationWarning)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "compat"))
import harness  # noqa: E402

PLUGIN = os.environ.get("NESTOR_LIVENESS_PLUGIN", "inventory")
NESTORCTL = os.environ.get("NESTORCTL", os.path.join(harness.BUILD_DIR, "nestorctl"))
REPORT_INTERVAL = 1
DOWN_TIME = 3


def parse_iso(text):
    """'2024-05-01T12:00:00.123456Z' -> aware datetime (fails on anything else)."""
    assert text.endswith("Z"), text
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")


class LivenessCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.ensure_broker()
        cls.vhost = harness.Vhost("nestor_liveness").__enter__()
        cls.exchange = harness.unique_name("nestor_liveness")
        cls.topic = harness.unique_name("services")
        cls.tmp = tempfile.mkdtemp(prefix="nestor-liveness-")
        cls.state = os.path.join(cls.tmp, "state", "services.json")
        cls.ctl_conf = os.path.join(cls.tmp, "nestorctl.conf")
        # No enabled_plugins: nestorctl must not need the plugin.
        with open(cls.ctl_conf, "w") as f:
            f.write("[DEFAULT]\ntransport_url = %s\ncontrol_exchange = %s\n\n"
                    "[inventory]\nservice_topic = %s\nreport_interval = %d\n"
                    "service_down_time = %d\n"
                    % (cls.vhost.url, cls.exchange, cls.topic, REPORT_INTERVAL, DOWN_TIME))
        cls.agents = []

    @classmethod
    def tearDownClass(cls):
        for a in cls.agents:
            a.close(check=False)
        cls.vhost.delete()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def start_agent(self, host, url=None, inventory=None, extra=None):
        sections = {"inventory": {"report_interval": REPORT_INTERVAL,
                                  "initial_report_delay": 0,
                                  "service_down_time": DOWN_TIME,
                                  "service_topic": self.topic}}
        sections["inventory"].update(inventory or {})
        sections.update(extra or {})
        agent = harness.AgentProcess(url or self.vhost.url, self.exchange, host=host,
                                     plugins=(PLUGIN,), extra=sections)
        self.agents.append(agent)
        agent.start()
        return agent

    def services(self, wait, as_json=True, env=None, state=True):
        """Runs nestorctl services; returns (exit code, parsed JSON or text)."""
        cmd = [NESTORCTL, "--config-file", self.ctl_conf, "services", "--wait", str(wait)]
        if state:
            cmd += ["--state", self.state]
        if as_json:
            cmd.append("--json")
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=wait + 30, env=env)
        if r.returncode not in (0, 1):
            self.fail("nestorctl services exited %d: %s" % (r.returncode, r.stderr))
        return r.returncode, (json.loads(r.stdout) if as_json else r.stdout)

    @staticmethod
    def by_host(out):
        return {h["host"]: h for h in out["hosts"]}


class TestLiveness(LivenessCase):
    def test_kill_9_and_restart(self):
        a = self.start_agent("live-a", inventory={"disabled": "true",
                                                  "disabled_reason": "maintenance window"})
        b = self.start_agent("live-b")
        version = a.client().prepare(timeout=5).call({}, "get_service_info")["version"]

        rc, out = self.services(2.5)
        hosts = self.by_host(out)
        self.assertEqual(rc, 0, out)
        self.assertEqual(sorted(hosts), ["live-a", "live-b"])
        self.assertEqual((out["up"], out["down"]), (2, 0))
        for name, h in hosts.items():
            r = h["report"]
            self.assertEqual(h["status"], "up")
            self.assertEqual(r["host"], name)
            self.assertEqual(r["binary"], "nestor-agent")
            self.assertEqual(r["topic"], "compute")
            self.assertEqual(r["version"], version)
            self.assertGreaterEqual(r["report_count"], 2)
            self.assertEqual(r["reports_dropped"], 0)
            self.assertEqual(r["report_interval"], REPORT_INTERVAL)
            self.assertEqual(r["service_down_time"], DOWN_TIME)
            self.assertLessEqual(parse_iso(r["started_at"]), parse_iso(r["timestamp"]))
            self.assertLess(h["seconds_since_seen"], 2.0)
        self.assertIs(hosts["live-a"]["disabled"], True)
        self.assertEqual(hosts["live-a"]["disabled_reason"], "maintenance window")
        self.assertIs(hosts["live-b"]["disabled"], False)
        self.assertIsNone(hosts["live-b"]["report"]["disabled_reason"])
        self.assertEqual(stat.S_IMODE(os.stat(self.state).st_mode), 0o600)
        before = hosts["live-b"]["report"]

        # The table, from the state file alone (--wait 0 does not listen).
        rc, text = self.services(0, as_json=False)
        self.assertEqual(rc, 0, text)
        lines = text.splitlines()
        self.assertEqual(lines[0].split(), ["HOST", "BINARY", "STATUS", "LAST", "SEEN", "REPORTS",
                                            "UPTIME", "DISABLED"])
        row_a = next(line for line in lines if line.startswith("live-a "))
        self.assertEqual(row_a.split()[:3], ["live-a", "nestor-agent", "up"])
        self.assertTrue(row_a.endswith("yes (maintenance window)"), row_a)

        b.kill()
        t_kill = time.monotonic()
        harness.log("killed live-b with SIGKILL")
        rc, out = self.services(DOWN_TIME + 1.0)
        hosts = self.by_host(out)
        self.assertEqual(rc, 1, out)
        self.assertEqual(hosts["live-a"]["status"], "up")
        self.assertEqual(hosts["live-b"]["status"], "down")
        self.assertGreater(hosts["live-b"]["seconds_since_seen"], DOWN_TIME)
        self.assertEqual((out["up"], out["down"]), (1, 1))
        rc, text = self.services(0, as_json=False)
        self.assertEqual(rc, 1)
        row_b = next(line for line in text.splitlines() if line.startswith("live-b "))
        self.assertEqual(row_b.split()[2], "down", text)

        b2 = self.start_agent("live-b")
        t_restart = time.monotonic()
        rc, out = self.services(2.5)
        elapsed = time.monotonic() - t_restart
        hosts = self.by_host(out)
        self.assertEqual(rc, 0, out)
        after = hosts["live-b"]["report"]
        self.assertEqual(hosts["live-b"]["status"], "up")
        self.assertGreater(parse_iso(after["started_at"]), parse_iso(before["started_at"]))
        # Counting from 1 again: about one report a second since the restart.
        self.assertLessEqual(after["uptime_s"], time.monotonic() - t_kill)
        self.assertLessEqual(after["report_count"], after["uptime_s"] + 2)
        self.assertLessEqual(after["report_count"], elapsed + 5)
        self.assertEqual(after["reports_dropped"], 0)
        b2.close()
        a.close()

    def test_default_state_file(self):
        a = self.start_agent("live-x")
        xdg = os.path.join(self.tmp, "xdg")
        env = dict(os.environ, XDG_STATE_HOME=xdg)
        rc, out = self.services(1.5, env=env, state=False)
        self.assertEqual(rc, 0, out)
        self.assertIn("live-x", self.by_host(out))
        path = os.path.join(xdg, "nestor", "services.json")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path) as f:
            saved = json.load(f)
        self.assertEqual(saved["hosts"]["live-x"]["report"]["host"], "live-x")
        a.close()


def connection_pids(name):
    """RabbitMQ pids of the connections whose client named itself `name`."""
    r = harness.rabbitmqctl("list_connections", "pid", "client_properties")
    return [line.split("\t", 1)[0] for line in r.stdout.splitlines()
            if '{"connection_name","%s"}' % name in line]


class TestBrokerAway(LivenessCase):
    def test_reports_dropped_not_queued(self):
        # The first host is the broker; the second one refuses connections,
        # so the reconnection after a cut goes through it and takes seconds.
        host, port = harness.BROKER_HOST, harness.BROKER_PORT
        url = "rabbit://%s:%s@%s:%d,%s:%s@127.0.0.1:1/%s" % (
            harness.BROKER_USER, harness.BROKER_PASSWORD, host, port, harness.BROKER_USER,
            harness.BROKER_PASSWORD, self.vhost.name)
        agent = self.start_agent("live-cut", url=url, extra={
            "oslo_messaging_rabbit": {"rabbit_retry_interval": 3, "rabbit_interval_max": 3}})
        rc, out = self.services(2.0)
        before = self.by_host(out)["live-cut"]["report"]

        pids = connection_pids("nestor-agent:%d:live-cut" % agent.pid)
        self.assertEqual(len(pids), 1, "agent connection not found")
        harness.rabbitmqctl("close_connection", pids[0], "liveness test: broker away")
        client = agent.client()
        end = time.monotonic() + 30
        while True:
            try:
                info = client.prepare(timeout=1).call({}, "get_service_info")
                if info["rpc"]["reconnects"] >= 1:
                    break
            except Exception:
                pass
            self.assertLess(time.monotonic(), end, "the agent did not reconnect")
            time.sleep(0.2)

        rc, out = self.services(2.0)
        after = self.by_host(out)["live-cut"]["report"]
        self.assertEqual(self.by_host(out)["live-cut"]["status"], "up")
        self.assertGreaterEqual(after["reports_dropped"], 1, after)
        self.assertGreater(after["report_count"], before["report_count"] + after["reports_dropped"])
        self.assertEqual(after["started_at"], before["started_at"])
        log = agent.log_text()
        self.assertIn("service reports published again", log)
        agent.close()


class Reports:
    """An oslo endpoint collecting service reports."""

    def __init__(self):
        self.lock = threading.Lock()
        self.got = []

    def service_report(self, ctxt, report):
        with self.lock:
            self.got.append(report)


class TestOsloListener(LivenessCase):
    def test_oslo_rpc_server_receives_reports(self):
        import oslo_messaging
        agent = self.start_agent("live-oslo")
        transport = harness.transport(self.vhost.url, exchange=self.exchange)
        endpoint = Reports()
        target = oslo_messaging.Target(topic=self.topic, server="controller-1")
        server = oslo_messaging.get_rpc_server(transport, target, [endpoint],
                                               executor="threading")
        server.start()
        try:
            end = time.monotonic() + 10
            while time.monotonic() < end:
                with endpoint.lock:
                    if len(endpoint.got) >= 2:
                        break
                time.sleep(0.1)
        finally:
            server.stop()
            server.wait()
            harness.cleanup_transport(transport)
        with endpoint.lock:
            got = list(endpoint.got)
        self.assertGreaterEqual(len(got), 2, "the oslo server got %d reports" % len(got))
        self.assertEqual(got[-1]["host"], "live-oslo")
        self.assertEqual(got[-1]["binary"], "nestor-agent")
        self.assertGreater(got[-1]["report_count"], got[0]["report_count"])
        agent.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
