#!/usr/bin/python3
"""Writes every versioned notification on an exchange to a file, one JSON
line each ({"priority", "event_type", "payload"}), with a real
oslo.messaging notification listener, until killed. "ready" goes to stdout
once the listener's queues exist.

Usage: notification_log.py TRANSPORT_URL EXCHANGE FILE
"""
import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "compat"))
import harness  # noqa: E402
import oslo_messaging as om  # noqa: E402


class Endpoint:
    def __init__(self, out):
        self.out = out
        self.lock = threading.Lock()

    def _write(self, priority, event_type, payload):
        with self.lock:
            self.out.write(json.dumps({"priority": priority, "event_type": event_type,
                                       "payload": payload}) + "\n")
            self.out.flush()

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self._write("info", event_type, payload)

    def warn(self, ctxt, publisher_id, event_type, payload, metadata):
        self._write("warn", event_type, payload)

    def error(self, ctxt, publisher_id, event_type, payload, metadata):
        self._write("error", event_type, payload)


def main():
    url, exchange, path = sys.argv[1:4]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with open(path, "a", encoding="utf-8") as out:
        trans = harness.notification_transport(url)
        listener = om.get_notification_listener(
            trans, [om.Target(topic="versioned_notifications", exchange=exchange)],
            [Endpoint(out)], executor="threading")
        listener.start()
        print("ready", flush=True)
        stop.wait()
        listener.stop()
        listener.wait()
        harness.cleanup_transport(trans)


if __name__ == "__main__":
    main()
