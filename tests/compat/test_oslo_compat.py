#!/usr/bin/python3
"""Compatibility: Debian's python3-oslo.messaging 14 talks to nestor-agent.

    /usr/bin/python3 tests/compat/test_oslo_compat.py            # or
    cd tests/compat && /usr/bin/python3 -m unittest -v test_oslo_compat

NESTOR_BUILD_DIR (default /work/main/build) points at the build. Each test
class runs its agents in a private RabbitMQ vhost with a unique control
exchange, so nothing collides with other runs. The agent log is printed
when a test fails.
"""

import json
import os
import queue
import signal
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import oslo_messaging as om  # noqa: E402

CALL_TIMEOUT = 10


def test_failed(test):
    """Whether test (or one of its subtests) has failed so far."""
    result = getattr(getattr(test, "_outcome", None), "result", None)
    for t, _ in getattr(result, "errors", []) + getattr(result, "failures", []):
        if t is test or getattr(t, "test_case", None) is test:
            return True
    return False


def setUpModule():
    harness.ensure_broker()


class AgentCase(unittest.TestCase):
    """Starts HOSTS agents (one vhost, one exchange) for the class."""

    HOSTS = ("node1",)
    WORKERS = 4
    EXTRA = {}

    @classmethod
    def setUpClass(cls):
        cls.agents = {}
        cls.vhost = harness.Vhost()
        cls.vhost.__enter__()
        try:
            cls.exchange = harness.unique_name("nestor_test")
            for h in cls.HOSTS:
                cls.agents[h] = harness.AgentProcess(cls.vhost.url, cls.exchange, host=h,
                                                     workers=cls.WORKERS,
                                                     extra=cls.EXTRA).start()
            cls.agent = cls.agents[cls.HOSTS[0]]
        except BaseException:
            cls._teardown(check=False)
            raise

    @classmethod
    def tearDownClass(cls):
        cls._teardown(check=True)

    @classmethod
    def _teardown(cls, check):
        errors = []
        for a in cls.agents.values():
            try:
                a.close(check=check)
            except AssertionError as e:
                errors.append(e)
        cls.vhost.delete()
        if errors:
            raise errors[0]

    def tearDown(self):
        if test_failed(self):
            for a in self.agents.values():
                a.dump_log("(after %s failed)" % self.id())

    # -- helpers
    def call(self, method, ctxt=None, version="1.0", timeout=CALL_TIMEOUT, host=None, **kw):
        agent = self.agents[host] if host else self.agent
        return agent.client(version=version).prepare(timeout=timeout).call(ctxt or {}, method,
                                                                           **kw)

    def cast(self, method, ctxt=None, host=None, **kw):
        agent = self.agents[host] if host else self.agent
        agent.client().cast(ctxt or {}, method, **kw)

    def counters(self, host=None):
        return self.call("get_counters", host=host)

    def rpc_stats(self, host=None):
        return self.call("get_service_info", host=host)["rpc"]

    def wait_casts(self, expected, host=None, timeout=10.0):
        """Polls get_counters until casts == expected; returns the last value."""
        end = time.monotonic() + timeout
        while True:
            n = self.counters(host)["casts"]
            if n >= expected or time.monotonic() > end:
                return n
            time.sleep(0.05)

    def assert_serving(self, host=None):
        self.assertEqual(self.call("ping", timeout=5, host=host), "pong")


class TestRPC(AgentCase):
    """One agent, node1, with max_message_bytes = 65536."""

    EXTRA = {"DEFAULT": {"max_message_bytes": 65536}}

    def test_ping(self):
        self.assertEqual(self.call("ping"), "pong")

    def test_service_info(self):
        info = self.call("get_service_info")
        self.assertIsInstance(info["version"], str)
        self.assertTrue(info["version"])
        self.assertEqual(info["host"], "node1")
        self.assertEqual(info["exchange"], self.exchange)
        methods = {m["name"]: m for m in info["methods"]}
        for name in ("ping", "get_service_info", "echo", "fail", "sleep", "count",
                     "get_counters", "reset", "notify"):
            self.assertIn(name, methods)
        self.assertEqual(methods["echo"]["version"], "1.3")
        self.assertTrue(info["rpc"]["connected"])

    def test_echo_roundtrip(self):
        ctxt = {"user_id": "u-1", "project_id": "p-1", "request_id": "req-" + str(uuid.uuid4()),
                "roles": ["admin", "member"], "is_admin": True, "read_only": False,
                "auth_token": None, "user_name": "Zoë 🦊",
                "timestamp": "2026-11-26T17:40:19.036335"}
        args = {
            "text": "héllo wörld — ✓ 日本語 Ελληνικά",
            "emoji": "😀🚀 👩‍👩‍👧 \U0001F9EA",
            "escapes": "quote\" backslash\\ slash/ tab\t newline\n nul-less \u0001 \u2028",
            "ints": [0, 1, -1, 2 ** 31, -(2 ** 31) - 1, 2 ** 53, -(2 ** 62), 2 ** 63 - 1],
            "floats": [0.5, -2.25, 1e-300, 6.02214076e23, 0.1],
            "flags": [True, False, None],
            "empty": {"list": [], "dict": {}, "str": ""},
            "nested": {"a": {"b": {"c": {"d": [1, [2, [3, [4, {"é": "ü"}]]]]}}}},
            "nova_like": {"nova_object.name": "Instance", "nova_object.namespace": "nova",
                          "nova_object.version": "2.7",
                          "nova_object.data": {"uuid": str(uuid.uuid4()), "vcpus": 2,
                                               "metadata": {"ключ": "值"}},
                          "nova_object.changes": ["vcpus"]},
            "ключ ünïcode": "value",
        }
        res = self.call("echo", ctxt=ctxt, version="1.3", **args)
        self.assertEqual(res["args"], args)
        self.assertEqual(res["context"], ctxt)

    def test_echo_empty_args_and_context(self):
        res = self.call("echo", version="1.3")
        self.assertEqual(res, {"args": {}, "context": {}})

    def test_fail_builtin_is_real_valueerror(self):
        msg = "bad value ✗ for disk vda"
        with self.assertRaises(ValueError) as cm:
            self.call("fail", kind="builtin", message=msg)
        self.assertNotIsInstance(cm.exception, om.RemoteError)
        self.assertEqual(type(cm.exception), ValueError)
        self.assertTrue(str(cm.exception).startswith(msg), str(cm.exception))
        self.assert_serving()

    def test_fail_nestor_is_remote_error(self):
        msg = "Instance 4f7c does not exist"
        with self.assertRaises(om.RemoteError) as cm:
            self.call("fail", kind="nestor", message=msg)
        self.assertEqual(cm.exception.exc_type, "InstanceNotFound")
        self.assertEqual(cm.exception.value, msg)

    def test_unknown_method(self):
        with self.assertRaises(om.RemoteError) as cm:
            self.call("no_such_method_" + uuid.uuid4().hex[:6])
        self.assertEqual(cm.exception.exc_type, "NoSuchMethod")

    def test_private_method_name_rejected(self):
        with self.assertRaises(om.RemoteError) as cm:
            self.call("_private")
        self.assertIn(cm.exception.exc_type, ("NoSuchMethod", "UnsupportedVersion"))

    def test_versions(self):
        for v in ("2.0", "1.4", "0.9"):
            with self.subTest(version=v):
                with self.assertRaises(om.RemoteError) as cm:
                    self.call("echo", version=v, x=1)
                self.assertEqual(cm.exception.exc_type, "UnsupportedVersion")
                self.assertIn(v, cm.exception.value)
        for v in ("1.0", "1.2", "1.3"):
            with self.subTest(version=v):
                self.assertEqual(self.call("echo", version=v, x=1)["args"], {"x": 1})

    def test_unknown_namespace(self):
        client = self.agent.client().prepare(namespace="no_such_namespace", timeout=CALL_TIMEOUT)
        with self.assertRaises(om.RemoteError) as cm:
            client.call({}, "ping")
        self.assertEqual(cm.exception.exc_type, "UnsupportedVersion")

    def test_unenveloped_request_answered(self):
        # oslo accepts the 1.0 format (a bare dict); so must the agent.
        with harness.RawAMQP(self.vhost.name, self.exchange) as raw:
            req = harness.request("echo", {"x": "ü"}, reply_q=raw.reply_q, version="1.3",
                                  context={"user_id": "u"})
            raw.publish(json.dumps(req), "compute.node1")
            replies = raw.get_replies(10)
        self.assertEqual(len(replies), 1, replies)
        self.assertIsNone(replies[0]["failure"])
        self.assertEqual(replies[0]["result"], {"args": {"x": "ü"}, "context": {"user_id": "u"}})

    def test_reply_queue_gone(self):
        returned_before = self.rpc_stats()["returned"]
        with harness.RawAMQP(self.vhost.name, self.exchange) as raw:
            raw.publish_request(harness.request("ping", reply_q="reply_gone_" + uuid.uuid4().hex))
        end = time.monotonic() + 10
        while self.rpc_stats()["returned"] == returned_before and time.monotonic() < end:
            time.sleep(0.05)
        self.assertEqual(self.rpc_stats()["returned"], returned_before + 1)
        self.assert_serving()

    def test_cast_then_counters(self):
        before = self.counters()["casts"]
        for _ in range(5):
            self.cast("count")
        self.assertEqual(self.wait_casts(before + 5), before + 5)
        time.sleep(0.3)
        self.assertEqual(self.counters()["casts"], before + 5)

    def test_call_monitor_heartbeats(self):
        # The oslo client gives up after call_monitor_timeout without a
        # heartbeat; the 5 s call succeeds only because the agent sends them.
        client = self.agent.client().prepare(call_monitor_timeout=2, timeout=30)
        t0 = time.monotonic()
        self.assertEqual(client.call({}, "sleep", ms=5000), 5000)
        elapsed = time.monotonic() - t0
        self.assertGreaterEqual(elapsed, 5.0)
        self.assertLess(elapsed, 15.0)

    def test_call_monitor_control_without_heartbeats(self):
        # Control: the same client settings against a server that never
        # answers fail after ~2 s, not after the 30 s timeout.
        client = harness.rpc_client(self.agent.transport(), self.exchange, "nobody-" +
                                    uuid.uuid4().hex[:6]).prepare(call_monitor_timeout=2,
                                                                  timeout=30)
        t0 = time.monotonic()
        with self.assertRaises(om.MessagingTimeout):
            client.call({}, "sleep", ms=5000)
        self.assertLess(time.monotonic() - t0, 5.0)

    def test_call_monitor_heartbeats_on_the_wire(self):
        with harness.RawAMQP(self.vhost.name, self.exchange) as raw:
            req = harness.request("sleep", {"ms": 3500}, reply_q=raw.reply_q, timeout=2)
            raw.publish_request(req)
            replies = raw.get_replies(15, until=lambda r: r[-1].get("ending"))
        self.assertTrue(replies and replies[-1].get("ending"), replies)
        beats = replies[:-1]
        self.assertGreaterEqual(len(beats), 2, replies)
        for b in beats:
            self.assertIs(b["ending"], False)
            self.assertIsNone(b["failure"])
            self.assertIsNone(b.get("result"))
            self.assertEqual(b["_msg_id"], req["_msg_id"])
        self.assertEqual(replies[-1]["result"], 3500)
        self.assertIsNone(replies[-1]["failure"])

    def test_no_heartbeats_without_timeout(self):
        with harness.RawAMQP(self.vhost.name, self.exchange) as raw:
            req = harness.request("sleep", {"ms": 1500}, reply_q=raw.reply_q, timeout=None)
            raw.publish_request(req)
            replies = raw.get_replies(10, until=lambda r: r[-1].get("ending"))
        self.assertEqual(len(replies), 1, replies)
        self.assertIs(replies[0]["ending"], True)

    def test_duplicate_unique_id_dropped(self):
        before = self.counters()["casts"]
        dups_before = self.rpc_stats()["duplicates"]
        with harness.RawAMQP(self.vhost.name, self.exchange) as raw:
            uid = uuid.uuid4().hex
            body = harness.envelope(harness.request("count", call=False, unique_id=uid))
            raw.publish(body, "compute.node1")
            raw.publish(body, "compute.node1")
            # A sentinel with its own id: once both are counted, the
            # duplicate had its chance (dedup happens on receipt, in order).
            raw.publish_request(harness.request("count", call=False))
        self.assertEqual(self.wait_casts(before + 2), before + 2)
        time.sleep(0.5)
        self.assertEqual(self.counters()["casts"], before + 2)
        self.assertEqual(self.rpc_stats()["duplicates"], dups_before + 1)

    def test_no_content_type_answered_with_valueerror(self):
        with harness.RawAMQP(self.vhost.name, self.exchange) as raw:
            req = harness.request("ping", reply_q=raw.reply_q)
            raw.publish_request(req, content_type=None)
            replies = raw.get_replies(5)
        self.assertEqual(len(replies), 1, replies)
        r = replies[0]
        self.assertEqual(r["_msg_id"], req["_msg_id"])
        self.assertIs(r["ending"], True)
        self.assertIsNone(r.get("result"))
        self.assertEqual(r["failure_decoded"]["class"], "ValueError")
        self.assertEqual(r["failure_decoded"]["module"], "builtins")
        self.assert_serving()

    def test_malformed_messages(self):
        """Each bad message: the agent keeps serving; when the reply queue can
        be read from the message a failure reply arrives, otherwise no
        success ever does. Every one is counted as rejected."""
        def req(**over):
            m = harness.request("echo", {"x": 1}, reply_q=None, version="1.3")
            m.update(over)
            return m

        cases = []  # (name, body bytes or callable(reply_q), content_type, reply required)

        def add(name, build, required, content_type="application/json"):
            cases.append((name, build, content_type, required))

        add("truncated json", lambda q: b'{"oslo.version": "2.0", "oslo.message": "{\\"meth', False)
        add("empty body", lambda q: b"", False)
        add("array envelope", lambda q: json.dumps([req(_reply_q=q)]).encode(), False)
        add("string envelope", lambda q: b'"hello"', False)
        add("oslo.message an int",
            lambda q: json.dumps({"oslo.version": "2.0", "oslo.message": 42}).encode(), False)
        add("oslo.message not json",
            lambda q: json.dumps({"oslo.version": "2.0", "oslo.message": "{nope"}).encode(), False)
        add("oslo.message an array",
            lambda q: json.dumps({"oslo.version": "2.0",
                                  "oslo.message": json.dumps([1, 2])}).encode(), False)
        add("envelope version 3.0",
            lambda q: json.dumps({"oslo.version": "3.0",
                                  "oslo.message": json.dumps(req(_reply_q=q))}).encode(), True)

        def without_method(q):
            m = req(_reply_q=q)
            del m["method"]
            return harness.envelope(m).encode()
        add("missing method", without_method, True)
        add("empty method", lambda q: harness.envelope(req(_reply_q=q, method="")).encode(), True)
        add("method an int", lambda q: harness.envelope(req(_reply_q=q, method=5)).encode(), True)
        add("args a list", lambda q: harness.envelope(req(_reply_q=q, args=[1, 2])).encode(), True)
        add("args a string", lambda q: harness.envelope(req(_reply_q=q, args="x")).encode(), True)
        add("version an int", lambda q: harness.envelope(req(_reply_q=q, version=1)).encode(),
            True)
        add("_timeout a string",
            lambda q: harness.envelope(req(_reply_q=q, _timeout="soon")).encode(), True)
        add("wrong content_type", lambda q: harness.envelope(req(_reply_q=q)).encode(), True,
            content_type="text/plain")

        def invalid_utf8(q):
            body = harness.envelope(req(_reply_q=q, args={"x": "@@BAD@@"})).encode()
            return body.replace(b"@@BAD@@", b"\xff\xfe\xc3(")
        # Undecodable bodies: the reply route is salvaged from the raw bytes.
        add("invalid utf-8", invalid_utf8, True)
        add("over max_message_bytes",
            lambda q: harness.envelope(req(_reply_q=q, args={"blob": "x" * 70000})).encode(), True)

        rejected_before = self.rpc_stats()["rejected"]
        with harness.RawAMQP(self.vhost.name, self.exchange) as raw:
            for name, build, ctype, required in cases:
                with self.subTest(case=name):
                    body = build(raw.reply_q)
                    raw.publish(body, "compute.node1", content_type=ctype)
                    replies = raw.get_replies(5 if required else 1.0, want=1)
                    for r in replies:
                        self.assertIsNotNone(r.get("failure"),
                                             "%s: got a success reply %r" % (name, r))
                        self.assertIs(r.get("ending"), True)
                    if required:
                        self.assertEqual(len(replies), 1, "%s: no failure reply" % name)
                        f = replies[0]["failure_decoded"]
                        self.assertEqual((f["module"], f["class"]), ("builtins", "ValueError"),
                                         f)
                        self.assertTrue(f["message"])
                    self.assertTrue(self.agent.alive(), "agent died on %s" % name)
                    self.assert_serving()
            # Nothing late or doubled.
            late = raw.get_replies(0.5, want=None)
            self.assertEqual(late, [])
        self.assertEqual(self.rpc_stats()["rejected"] - rejected_before, len(cases))

    def test_notification_listener(self):
        class Endpoint:
            def __init__(self):
                self.got = queue.Queue()

            def info(self, ctxt, publisher_id, event_type, payload, metadata):
                self.got.put((ctxt, publisher_id, event_type, payload, metadata))

        endpoint = Endpoint()
        trans = harness.notification_transport(self.vhost.url)
        listener = om.get_notification_listener(
            trans, [om.Target(topic="versioned_notifications", exchange=self.exchange)],
            [endpoint], executor="threading")
        listener.start()
        try:
            # The listener's queue exists once start() returned; the agent
            # declares it too, so nothing is lost either way.
            event = "testing.event.%s" % uuid.uuid4().hex[:8]
            rid = "req-" + str(uuid.uuid4())
            data = {"state": "running", "name": "vm-ü 😀", "nested": {"n": [1, 2]}}
            self.call("notify", ctxt={"request_id": rid, "user_id": "u-1"}, event_type=event,
                      payload=data)
            end = time.monotonic() + 15
            found = None
            while found is None and time.monotonic() < end:
                try:
                    item = endpoint.got.get(timeout=0.5)
                except queue.Empty:
                    continue
                if item[2] == event:
                    found = item
            self.assertIsNotNone(found, "no notification %s within 15 s" % event)
            ctxt, publisher_id, event_type, payload, metadata = found
            self.assertEqual(publisher_id, "nestor-compute:node1")
            self.assertEqual(event_type, event)
            self.assertEqual(payload["nova_object.name"], "TestingPayload")
            self.assertEqual(payload["nova_object.namespace"], "nestor")
            self.assertEqual(payload["nova_object.version"], "1.0")
            self.assertEqual(payload["nova_object.data"], data)
            self.assertIn("message_id", metadata)
            self.assertRegex(metadata["timestamp"],
                             r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?$")
            self.assertEqual(ctxt.get("request_id"), rid)
        finally:
            listener.stop()
            listener.wait()
            harness.cleanup_transport(trans)


class TestFanout(AgentCase):
    HOSTS = ("node1", "node2")

    def test_fanout_cast_reaches_both(self):
        before = {h: self.counters(h)["casts"] for h in self.HOSTS}
        fan = harness.rpc_client(self.agent.transport(), self.exchange, server=None).prepare(
            fanout=True)
        fan.cast({}, "count")
        fan.cast({}, "count")
        for h in self.HOSTS:
            self.assertEqual(self.wait_casts(before[h] + 2, host=h), before[h] + 2, h)
        time.sleep(0.3)
        for h in self.HOSTS:
            self.assertEqual(self.counters(h)["casts"], before[h] + 2, h)

    def test_topic_cast_reaches_exactly_one(self):
        before = sum(self.counters(h)["casts"] for h in self.HOSTS)
        topic = harness.rpc_client(self.agent.transport(), self.exchange, server=None)
        for _ in range(10):
            topic.cast({}, "count")
        end = time.monotonic() + 10
        while time.monotonic() < end:
            total = sum(self.counters(h)["casts"] for h in self.HOSTS)
            if total >= before + 10:
                break
            time.sleep(0.05)
        time.sleep(0.3)
        self.assertEqual(sum(self.counters(h)["casts"] for h in self.HOSTS), before + 10)

    def test_topic_call_any_server(self):
        topic = harness.rpc_client(self.agent.transport(), self.exchange, server=None)
        self.assertEqual(topic.prepare(timeout=CALL_TIMEOUT).call({}, "ping"), "pong")


class TestShutdown(AgentCase):
    """SIGTERM while a call is in flight: it is answered, then exit 0."""

    def wait_call_received(self, base, timeout=20):
        """Returns once the agent has received one call besides our polls.
        base: the calls counter read before that call was sent. Each
        get_service_info is itself counted on receipt, so poll i sees
        base + i, plus one once the other call arrived."""
        end = time.monotonic() + timeout
        i = 0
        while time.monotonic() < end:
            i += 1
            if self.rpc_stats()["calls"] - base > i:
                return
            time.sleep(0.05)
        self.fail("the agent never received the call")

    def test_sigterm_during_call(self):
        client = self.agent.client().prepare(timeout=30)
        result = {}

        def run():
            t0 = time.monotonic()
            try:
                result["value"] = client.call({}, "sleep", ms=3000)
            except Exception as e:  # reported below
                result["error"] = e
            result["elapsed"] = time.monotonic() - t0

        base = self.rpc_stats()["calls"]
        th = threading.Thread(target=run, daemon=True)
        th.start()
        self.wait_call_received(base)
        t_term = time.monotonic()
        self.agent.signal(signal.SIGTERM)
        th.join(30)
        self.assertFalse(th.is_alive(), "the in-flight call never returned")
        self.assertNotIn("error", result, result.get("error"))
        self.assertEqual(result["value"], 3000)
        self.assertGreaterEqual(result["elapsed"], 3.0)
        rc = self.agent.wait(30)
        self.assertEqual(rc, 0, "agent exit code %r after SIGTERM" % rc)
        self.assertLess(time.monotonic() - t_term, 30)


class TestExpiry(AgentCase):
    """rpc_workers = 1: requests that expire while queued are not run."""

    WORKERS = 1

    def test_expired_requests_dropped(self):
        before = self.counters()["casts"]
        expired_before = self.rpc_stats()["expired"]
        with harness.RawAMQP(self.vhost.name, self.exchange) as raw:
            # Everything goes over one connection, so the agent receives it
            # in this order: the sleep takes the only worker for 3 s, and
            # the rest waits behind it in the pool.
            sleep = harness.request("sleep", {"ms": 3000}, reply_q=raw.reply_q)
            raw.publish_request(sleep)
            raw.publish_request(harness.request("count", call=False), expiration="1")
            raw.publish_request(harness.request("count", reply_q=raw.reply_q), expiration="1")
            raw.publish_request(harness.request("count", call=False), expiration="1000")
            expired_call = harness.request("count", reply_q=raw.reply_q)
            raw.publish_request(expired_call, expiration="1000")
            # Control: the same cast without expiration runs.
            raw.publish_request(harness.request("count", call=False))
            replies = raw.get_replies(20, want=1)
            self.assertEqual([r.get("result") for r in replies], [3000], replies)
            self.assertEqual(replies[0]["_msg_id"], sleep["_msg_id"])
            self.assertEqual(self.wait_casts(before + 1), before + 1)
            time.sleep(0.5)
            self.assertEqual(self.counters()["casts"], before + 1)
            late = raw.get_replies(0.5, want=None)
            self.assertFalse([r for r in late if r.get("failure") is None], late)
        # The two 1000 ms requests certainly reached the agent (the 1 ms
        # ones may have expired in the broker already).
        self.assertGreaterEqual(self.rpc_stats()["expired"] - expired_before, 2)


class TestNotificationMessages(AgentCase):
    """nestor_event on real notifications: node1 runs with locale fr_FR.UTF-8
    and the shipped catalogs (share/locale), a second agent with locale en.
    fr.json leaves instance.snapshot_revert.end out on purpose."""

    LOCALE_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               "..", "..", "share", "locale"))
    EXTRA = {"DEFAULT": {"locale": "fr_FR.UTF-8", "catalog_dir": LOCALE_DIR}}

    def setUp(self):
        class Endpoint:
            def __init__(self):
                self.got = queue.Queue()

            def info(self, ctxt, publisher_id, event_type, payload, metadata):
                self.got.put((publisher_id, event_type, payload))

        self.endpoint = Endpoint()
        self.trans = harness.notification_transport(self.vhost.url)
        self.listener = om.get_notification_listener(
            self.trans, [om.Target(topic="versioned_notifications", exchange=self.exchange)],
            [self.endpoint], executor="threading")
        self.listener.start()

    def tearDown(self):
        self.listener.stop()
        self.listener.wait()
        harness.cleanup_transport(self.trans)
        super().tearDown()

    def notify(self, agent, event_type, data):
        """Has agent publish event_type with data; returns the payload the
        listener decoded (matched on a unique uuid in data)."""
        data = dict(data, uuid=str(uuid.uuid4()))
        agent.client().prepare(timeout=CALL_TIMEOUT).call({}, "notify", event_type=event_type,
                                                          payload=data)
        end = time.monotonic() + 15
        while time.monotonic() < end:
            try:
                publisher_id, got_type, payload = self.endpoint.got.get(timeout=0.5)
            except queue.Empty:
                continue
            if payload.get("nova_object.data", {}).get("uuid") == data["uuid"]:
                self.assertEqual(got_type, event_type)
                self.assertEqual(publisher_id, "nestor-compute:%s" % agent.host)
                # The block sits next to nova_object.*, the data is untouched.
                self.assertEqual(payload["nova_object.data"], data)
                self.assertEqual(payload["nova_object.name"], "TestingPayload")
                return payload
        self.fail("no %s notification from %s within 15 s" % (event_type, agent.host))

    def test_french_with_english_fallback(self):
        vm = {"display_name": "vm-ü 😀", "host": "node1"}
        self.assertEqual(self.notify(self.agent, "instance.create.end", vm)["nestor_event"],
                         {"key": "instance.create.end",
                          "message": "L'instance vm-ü 😀 a été créée sur node1",
                          "locale": "fr"})
        fault = {"nova_object.name": "ExceptionPayload", "nova_object.namespace": "nova",
                 "nova_object.version": "1.1",
                 "nova_object.data": {"exception": "InvalidInput",
                                      "exception_message": "disque plein"}}
        self.assertEqual(
            self.notify(self.agent, "instance.create.error",
                        dict(vm, fault=fault))["nestor_event"]["message"],
            "L'instance vm-ü 😀 n'a pas pu être créée sur node1 : disque plein")
        # Untranslated key: English.
        self.assertEqual(
            self.notify(self.agent, "instance.snapshot_revert.end", vm)["nestor_event"],
            {"key": "instance.snapshot_revert.end",
             "message": "Instance vm-ü 😀 was reverted to a snapshot on node1", "locale": "en"})
        # A value neither template can use, and an unknown event: the generic
        # sentence, never a placeholder.
        for event, data in (("instance.power_off.end", {"display_name": None}),
                            ("testing.unknown.end", vm)):
            block = self.notify(self.agent, event, data)["nestor_event"]
            self.assertEqual(block, {"key": event, "message": "Event %s on host node1" % event,
                                     "locale": "en"})

    def test_english_agent(self):
        extra = {"DEFAULT": {"locale": "en", "catalog_dir": self.LOCALE_DIR}}
        with harness.AgentProcess(self.vhost.url, self.exchange, host="node2",
                                  extra=extra) as agent:
            payload = self.notify(agent, "instance.create.end",
                                  {"display_name": "vm-2", "host": "node2"})
            self.assertEqual(payload["nestor_event"],
                             {"key": "instance.create.end",
                              "message": "Instance vm-2 was created on node2", "locale": "en"})

    def test_malformed_catalog_stops_startup(self):
        import shutil
        import tempfile
        catalogs = tempfile.mkdtemp(prefix="nestor-catalog-")
        try:
            bad = os.path.join(catalogs, "fr.json")
            with open(bad, "w") as f:
                f.write('{"instance.create.end": "L\'instance {display_name a été créée"}')
            agent = harness.AgentProcess(self.vhost.url, self.exchange, host="node3",
                                         extra={"DEFAULT": {"locale": "fr",
                                                            "catalog_dir": catalogs}},
                                         ready_timeout=10)
            with self.assertRaisesRegex(RuntimeError, "exited"):
                agent.start()
            log = agent.log_text()
            self.assertIn(bad, log)
            self.assertIn("'instance.create.end'", log)
            self.assertIn("unbalanced braces", log)
            agent.close(check=False)
            shutil.rmtree(agent.tmpdir, ignore_errors=True)
        finally:
            shutil.rmtree(catalogs, ignore_errors=True)

if __name__ == "__main__":
    unittest.main(verbosity=2)
