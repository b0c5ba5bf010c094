#!/usr/bin/python3
"""Shared helpers for Nestor's compatibility, integration and bench suites.

Run with Debian's interpreter and its python3-oslo.messaging 14:

    /usr/bin/python3 tests/compat/harness.py --ensure-broker

starts RabbitMQ when it is not running (the `fixture.broker` CTest fixture).

What is here:
  * the broker: ensure_broker(), wait_broker_ready(), broker_pid(),
    kill_broker(), start_broker();
  * Vhost: a private RabbitMQ vhost per test class, deleted afterwards, so
    queues ("compute", "compute.node1") never collide with other runs or
    with other engineers' agents on the same broker (queue names are global
    to a vhost, whatever the exchange);
  * AgentProcess: a nestor-agent with its own config file and log, ready
    when a ping succeeds, stopped with SIGTERM and required to exit 0;
  * oslo helpers: transport(), rpc_client(), ping_until();
  * RawAMQP: publish hand-built requests with py-amqp and read replies from
    a private reply queue.

Paths: NESTOR_BUILD_DIR (default /work/main/build) holds nestor-agent and
plugins/testing.so.
"""

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import warnings

# kombu 5.2 on Python 3.11 warns on every import; it is not ours to fix.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"kombu\..*")

BUILD_DIR = os.environ.get("NESTOR_BUILD_DIR", "/work/main/build")
AGENT_BIN = os.environ.get("NESTOR_AGENT", os.path.join(BUILD_DIR, "nestor-agent"))
PLUGIN_DIR = os.environ.get("NESTOR_PLUGIN_DIR", os.path.join(BUILD_DIR, "plugins"))
BROKER_HOST = os.environ.get("NESTOR_BROKER_HOST", "localhost")
BROKER_PORT = int(os.environ.get("NESTOR_BROKER_PORT", "5672"))
BROKER_USER = os.environ.get("NESTOR_BROKER_USER", "guest")
BROKER_PASSWORD = os.environ.get("NESTOR_BROKER_PASSWORD", "guest")
RABBITMQCTL = os.environ.get("NESTOR_RABBITMQCTL", "rabbitmqctl")
RABBITMQ_SERVER = os.environ.get("NESTOR_RABBITMQ_SERVER", "rabbitmq-server")

TOPIC = "compute"

_counter = itertools.count(1)


def log(msg):
    print("[harness %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def unique_name(prefix):
    """A name no other run uses: prefix, pid, a counter and random bits."""
    return "%s_%d_%d_%s" % (prefix, os.getpid(), next(_counter), uuid.uuid4().hex[:6])


# ---------------------------------------------------------------- broker ----

def _run(cmd, timeout=30):
    """Runs a short command; never inherits our stdout (a daemon it forks
    could otherwise hold the pipe open and hang CTest)."""
    try:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout, text=True)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return subprocess.CompletedProcess(cmd, 124, out + "\n(timed out after %ss)" % timeout)
    except FileNotFoundError as e:
        return subprocess.CompletedProcess(cmd, 127, str(e))


def rabbitmqctl(*args, timeout=60, check=True):
    r = _run([RABBITMQCTL, "-q"] + list(args), timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("rabbitmqctl %s failed (%d): %s" % (" ".join(args), r.returncode,
                                                               r.stdout.strip()))
    return r


def broker_running():
    return _run([RABBITMQCTL, "-q", "status"], timeout=30).returncode == 0


def amqp_connect(vhost="/", timeout=2.0):
    """A py-amqp connection (raises when the broker is not accepting)."""
    import amqp
    conn = amqp.Connection(host="%s:%d" % (BROKER_HOST, BROKER_PORT), userid=BROKER_USER,
                           password=BROKER_PASSWORD, virtual_host=vhost,
                           connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout)
    conn.connect()
    return conn


def amqp_accepting(vhost="/"):
    try:
        conn = amqp_connect(vhost, timeout=1.0)
    except Exception:
        return False
    with contextlib.suppress(Exception):
        conn.close()
    return True


def wait_broker_ready(timeout=60.0, vhost="/", poll=0.1):
    """Waits until an AMQP client can log in to vhost. Returns the
    monotonic time at which it first could; raises on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if amqp_accepting(vhost):
            return time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError("RabbitMQ did not accept AMQP logins on %s:%d vhost %s within %.0f s"
                               % (BROKER_HOST, BROKER_PORT, vhost, timeout))
        time.sleep(poll)


def start_broker():
    """`rabbitmq-server -detached`, fully detached from our stdio."""
    log("starting RabbitMQ (%s -detached)" % RABBITMQ_SERVER)
    subprocess.Popen([RABBITMQ_SERVER, "-detached"], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True).wait(timeout=60)


def ensure_broker(timeout=60.0):
    """Starts RabbitMQ when `rabbitmqctl -q status` fails and waits until it
    is ready (await_startup, then an AMQP login). Returns True if we started it."""
    if broker_running() and amqp_accepting():
        return False
    started = False
    if not broker_running():
        start_broker()
        started = True
    deadline = time.monotonic() + timeout
    while True:
        r = _run([RABBITMQCTL, "-q", "await_startup"], timeout=max(5, deadline - time.monotonic()))
        if r.returncode == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("RabbitMQ did not start within %.0f s: %s" % (timeout, r.stdout))
        time.sleep(0.5)
    wait_broker_ready(max(1.0, deadline - time.monotonic()))
    return started


def broker_pid():
    """The OS pid of the broker's Erlang VM (beam.smp)."""
    r = _run([RABBITMQCTL, "-q", "eval", "os:getpid()."], timeout=30)
    if r.returncode == 0:
        text = r.stdout.strip().strip('"')
        if text.isdigit():
            return int(text)
    r = _run(["pgrep", "-f", "beam.smp.*rabbit"], timeout=10)
    pids = [int(p) for p in r.stdout.split() if p.isdigit()]
    if len(pids) == 1:
        return pids[0]
    raise RuntimeError("cannot find the RabbitMQ pid (pgrep: %r)" % r.stdout)


def kill_broker():
    """kill -9 the broker's VM and wait until the process is gone."""
    pid = broker_pid()
    log("kill -9 RabbitMQ beam.smp pid %d" % pid)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while os.path.exists("/proc/%d" % pid):
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    break
        except OSError:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("RabbitMQ pid %d survived SIGKILL for 30 s" % pid)
        time.sleep(0.05)
    return pid


_STALE_VHOST = re.compile(r"^nestor_[a-z]+_(\d+)_\d+_[0-9a-f]{6}$")
_reaped = False


def reap_stale_vhosts():
    """Deletes vhosts our harness created in processes that are gone (a run
    killed by a timeout, or a broker that was down at cleanup)."""
    global _reaped
    if _reaped:
        return
    _reaped = True
    r = rabbitmqctl("list_vhosts", "name", check=False)
    for name in r.stdout.split() if r.returncode == 0 else []:
        m = _STALE_VHOST.match(name)
        if m and int(m.group(1)) != os.getpid() and not os.path.exists("/proc/" + m.group(1)):
            log("deleting stale vhost %s" % name)
            rabbitmqctl("delete_vhost", name, check=False)


class Vhost:
    """A private vhost (guest has full rights), deleted on exit."""

    def __init__(self, prefix="nestor_test"):
        self.name = unique_name(prefix)

    def __enter__(self):
        reap_stale_vhosts()
        rabbitmqctl("add_vhost", self.name)
        rabbitmqctl("set_permissions", "-p", self.name, BROKER_USER, ".*", ".*", ".*")
        return self

    def __exit__(self, *exc):
        self.delete()
        return False

    def delete(self):
        # Right after a broker restart the first attempts can fail.
        for attempt in range(5):
            r = rabbitmqctl("delete_vhost", self.name, check=False)
            if r.returncode == 0 or "does not exist" in r.stdout or "no_such_vhost" in r.stdout:
                return
            time.sleep(2)
        log("could not delete vhost %s: %s" % (self.name, r.stdout.strip()))

    @property
    def url(self):
        return "rabbit://%s:%s@%s:%d/%s" % (BROKER_USER, BROKER_PASSWORD, BROKER_HOST,
                                            BROKER_PORT, self.name)


# ------------------------------------------------------------------ oslo ----

def _oslo():
    import oslo_messaging
    return oslo_messaging


def make_conf(durable=False, exchange=None, response_timeout=30, **rabbit):
    """A private ConfigOpts with every oslo.messaging option registered
    (never reads /etc), so overrides are in place before the driver reads them."""
    from oslo_config import cfg
    from oslo_messaging import opts as om_opts
    conf = cfg.ConfigOpts()
    groups = list(om_opts.list_opts())
    try:  # registered on the global CONF only, but the RPC client reads it
        from oslo_messaging._metrics import client as metrics
        groups.append(("oslo_messaging_metrics", metrics.oslo_messaging_metrics))
    except ImportError:
        pass
    for group, options in groups:
        grp = None if group in (None, "DEFAULT") else group
        with contextlib.suppress(cfg.DuplicateOptError):
            conf.register_opts(options, group=grp)
    conf([], project="nestor-tests", default_config_files=[], default_config_dirs=[])
    conf.set_override("rpc_response_timeout", response_timeout)
    # The metrics sender is a non-daemon thread that otherwise keeps the
    # interpreter alive for 10 s after the tests are done.
    with contextlib.suppress(cfg.NoSuchOptError):
        conf.set_override("metrics_thread_stop_timeout", 0, group="oslo_messaging_metrics")
    if exchange:
        conf.set_override("control_exchange", exchange)
    conf.set_override("amqp_durable_queues", durable, group="oslo_messaging_rabbit")
    for k, v in rabbit.items():
        conf.set_override(k, v, group="oslo_messaging_rabbit")
    return conf


def transport(url, durable=False, exchange=None, **rabbit):
    return _oslo().get_rpc_transport(make_conf(durable, exchange, **rabbit), url=url)


def notification_transport(url, durable=False, exchange=None, **rabbit):
    return _oslo().get_notification_transport(make_conf(durable, exchange, **rabbit), url=url)


def rpc_client(trans, exchange, server="node1", version="1.0", topic=TOPIC, **kw):
    om = _oslo()
    target = om.Target(topic=topic, server=server, exchange=exchange, version=version)
    return om.get_rpc_client(trans, target, **kw)


def ping_until(client, deadline_s, per_call_timeout=1.0, ctxt=None):
    """Pings until one succeeds; returns the monotonic time of that success
    or raises the last error once deadline_s (seconds from now) passed."""
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        try:
            if client.prepare(timeout=per_call_timeout).call(ctxt or {}, "ping") == "pong":
                return time.monotonic()
        except Exception as e:  # MessagingTimeout, connection errors while starting
            last = e
            time.sleep(0.05)
    raise RuntimeError("no successful ping within %.1f s (last error: %r)" % (deadline_s, last))


def cleanup_transport(trans):
    with contextlib.suppress(Exception):
        trans.cleanup()


# ----------------------------------------------------------------- agent ----

class AgentProcess:
    """A nestor-agent with its own config and log file.

        with AgentProcess(vhost.url, exchange, host="node1") as agent:
            agent.client().call({}, "ping")

    On exit it sends SIGTERM, waits up to stop_timeout s, and fails (after
    printing the log) unless the exit code is 0."""

    def __init__(self, url, exchange, host="node1", workers=4, durable=False,
                 plugins=("testing",), extra=None, ready_timeout=30.0, stop_timeout=30.0,
                 debug=False):
        self.url = url
        self.exchange = exchange
        self.host = host
        self.workers = workers
        self.durable = durable
        self.plugins = plugins
        self.extra = extra or {}
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.debug = debug
        self.proc = None
        self.returncode = None
        self.tmpdir = None
        self._transport = None
        self._logf = None
        # Config and log stay behind unless a checked close() saw exit 0.
        self.keep_files = bool(os.environ.get("NESTOR_KEEP_AGENT_FILES"))

    # -- files
    def config_text(self):
        sections = {
            "DEFAULT": {
                "transport_url": self.url,
                "host": self.host,
                "control_exchange": self.exchange,
                "enabled_plugins": ",".join(self.plugins),
                "plugin_dir": PLUGIN_DIR,
                "rpc_workers": str(self.workers),
                "state_path": os.path.join(self.tmpdir, "state"),
                "debug": "true" if self.debug else "false",
            },
            "oslo_messaging_rabbit": {
                "amqp_durable_queues": "true" if self.durable else "false",
            },
        }
        for section, values in self.extra.items():
            sections.setdefault(section, {}).update({k: str(v) for k, v in values.items()})
        lines = []
        for section, values in sections.items():
            lines.append("[%s]" % section)
            lines.extend("%s = %s" % kv for kv in values.items())
            lines.append("")
        return "\n".join(lines)

    @property
    def log_path(self):
        return os.path.join(self.tmpdir, "agent.log")

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    def dump_log(self, why="", max_lines=400):
        lines = self.log_text().splitlines(True)
        skipped = ""
        if len(lines) > max_lines:
            skipped = "(%d earlier lines skipped)\n" % (len(lines) - max_lines)
            lines = lines[-max_lines:]
        print("\n===== nestor-agent %s log%s (%s) =====\n%s%s===== end of log =====" % (
            self.host, " " + why if why else "", self.log_path, skipped, "".join(lines)),
            file=sys.stderr, flush=True)

    # -- lifecycle
    def start(self):
        if not os.access(AGENT_BIN, os.X_OK):
            raise RuntimeError("%s is not built (set NESTOR_BUILD_DIR)" % AGENT_BIN)
        self.tmpdir = tempfile.mkdtemp(prefix="nestor-%s-" % self.host)
        os.makedirs(os.path.join(self.tmpdir, "state"), exist_ok=True)
        conf = os.path.join(self.tmpdir, "nestor.conf")
        with open(conf, "w") as f:
            f.write(self.config_text())
        self._logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen([AGENT_BIN, "--config-file", conf], stdin=subprocess.DEVNULL,
                                     stdout=self._logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            self.wait_ready()
        except BaseException:
            self.dump_log("(not ready)")
            self.kill()
            raise
        return self

    def wait_ready(self):
        client = self.client()
        end = time.monotonic() + self.ready_timeout
        last = None
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("nestor-agent exited with %d while starting"
                                   % self.proc.returncode)
            try:
                if client.prepare(timeout=1).call({}, "ping") == "pong":
                    return
            except Exception as e:
                last = e
                time.sleep(0.1)
        raise RuntimeError("nestor-agent %s not answering ping after %.0f s: %r" % (
            self.host, self.ready_timeout, last))

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def transport(self):
        if self._transport is None:
            self._transport = transport(self.url, durable=self.durable)
        return self._transport

    def client(self, version="1.0", **kw):
        return rpc_client(self.transport(), self.exchange, self.host, version=version, **kw)

    def signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout):
        """Waits for exit; returns the exit code or None on timeout."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self):
        """SIGTERM, wait up to stop_timeout; returns the exit code (SIGKILL and
        -9 if it would not stop)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait(self.stop_timeout) is None:
                log("nestor-agent %s ignored SIGTERM for %.0f s: SIGKILL" % (self.host,
                                                                             self.stop_timeout))
                self.kill()
        self.returncode = self.proc.returncode
        return self.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self.returncode = self.proc.returncode if self.proc else None

    def close(self, check=True):
        """Stops the agent; with check, raises unless it exited 0."""
        try:
            rc = self.stop()
        finally:
            if self._transport is not None:
                cleanup_transport(self._transport)
                self._transport = None
            if self._logf:
                self._logf.close()
                self._logf = None
        if check and rc != 0:
            self.dump_log("(exit code %s)" % rc)
            raise AssertionError("nestor-agent %s exited with %s, expected 0" % (self.host, rc))
        if check and rc == 0 and not self.keep_files:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        return rc

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.dump_log("(test failed: %s)" % (exc_type.__name__,))
            self.close(check=False)
            return False
        self.close(check=True)
        return False


# ---------------------------------------------------------- raw messages ----

def envelope(inner):
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(inner)})


def request(method, args=None, call=True, reply_q=None, version="1.0", context=None,
            unique_id=None, timeout=None, msg_id=None):
    """An oslo request (inner message) as a dict."""
    m = {"method": method, "args": args if args is not None else {}}
    if version is not None:
        m["version"] = version
    if call:
        m["_msg_id"] = msg_id or uuid.uuid4().hex
        m["_reply_q"] = reply_q
        m["_timeout"] = timeout
    m["_unique_id"] = unique_id or uuid.uuid4().hex
    for k, v in (context or {}).items():
        m["_context_" + k] = v
    return m


def decode_body(body):
    """Outer body (bytes or str) -> inner dict; failure decoded to a dict."""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8")
    outer = json.loads(body)
    inner = outer
    if isinstance(outer, dict) and "oslo.version" in outer and "oslo.message" in outer:
        inner = json.loads(outer["oslo.message"])
    if isinstance(inner.get("failure"), str):
        inner["failure_decoded"] = json.loads(inner["failure"])
    return inner


class RawAMQP:
    """A py-amqp connection with a private, exclusive reply queue."""

    def __init__(self, vhost, exchange):
        self.exchange = exchange
        self.conn = amqp_connect(vhost, timeout=10)
        self.ch = self.conn.channel()
        self.reply_q = "reply_raw_" + uuid.uuid4().hex
        self.ch.queue_declare(self.reply_q, durable=False, exclusive=True, auto_delete=True)

    def close(self):
        with contextlib.suppress(Exception):
            self.ch.queue_delete(self.reply_q)
        with contextlib.suppress(Exception):
            self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def publish(self, body, routing_key, exchange=None, content_type="application/json",
                expiration=None):
        import amqp
        props = {"delivery_mode": 2, "priority": 0, "application_headers": {}}
        if content_type is not None:
            props["content_type"] = content_type
            props["content_encoding"] = "utf-8"
        if expiration is not None:
            props["expiration"] = expiration
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.ch.basic_publish(amqp.Message(body, **props),
                              exchange=self.exchange if exchange is None else exchange,
                              routing_key=routing_key)

    def publish_request(self, inner, server="node1", **kw):
        self.publish(envelope(inner), "%s.%s" % (TOPIC, server), **kw)

    def get_replies(self, timeout, want=1, until=None):
        """Collects decoded replies from the reply queue for up to timeout s,
        returning early once `want` arrived (or until(replies) is true)."""
        out = []
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            msg = self.ch.basic_get(self.reply_q, no_ack=True)
            if msg is None:
                time.sleep(0.02)
                continue
            out.append(decode_body(msg.body))
            if until is not None:
                if until(out):
                    break
            elif want is not None and len(out) >= want:
                break
        return out


# -------------------------------------------------------------- /proc ----

def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def main(argv):
    import argparse
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ensure-broker", action="store_true",
                   help="start RabbitMQ if it is not running and wait until it is ready")
    p.add_argument("--timeout", type=float, default=90.0)
    a = p.parse_args(argv)
    if a.ensure_broker:
        started = ensure_broker(a.timeout)
        print("RabbitMQ %s" % ("started" if started else "already running"), flush=True)
        return 0
    p.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
