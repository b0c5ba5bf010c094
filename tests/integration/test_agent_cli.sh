#!/usr/bin/env bash
# The operator-facing surface of nestor-agent and nestorctl against a real
# broker: config errors and warnings, failover across transport_url hosts,
# SIGHUP log level reload, nestorctl output and exit codes, clean SIGTERM.
# Usage: test_agent_cli.sh BUILD_DIR
set -euo pipefail
build=$1
work=$(mktemp -d /tmp/nestor-cli.XXXXXX)
agent_pid=
cleanup() {
        if [ -n "$agent_pid" ]; then
                kill -KILL "$agent_pid" 2>/dev/null || true
        fi
        rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$work/agent.log" ] && sed 's/^/  agent: /' "$work/agent.log" >&2; exit 1; }

exchange="nestor_cli_$$"
host="cli-$$"
write_conf() { # extra lines appended to [DEFAULT]
        cat >"$work/nestor.conf" <<CONF
[DEFAULT]
# The first host refuses connections: the agent must fail over to the second.
transport_url = rabbit://guest:guest@127.0.0.1:1,guest:guest@localhost:5672/
host = $host
control_exchange = $exchange
plugin_dir = $build/plugins
enabled_plugins = testing
$1
[oslo_messaging_rabbit]
rabbit_retry_interval = 0.1
CONF
}
ctl() { "$build/nestorctl" --config-file "$work/nestor.conf" --host "$host" "$@"; }

# 1. A bad value is a startup error naming file, line, option and expectation.
write_conf "rpc_workers = lots"
if "$build/nestor-agent" --config-file "$work/nestor.conf" 2>"$work/err"; then
        fail "agent started with rpc_workers = lots"
fi
grep -q "nestor.conf:8: \[DEFAULT\] rpc_workers: invalid value 'lots': expected an integer" "$work/err" ||
        fail "bad value message: $(cat "$work/err")"

# 1b. A client certificate without its key is refused, not silently ignored.
printf '[ssl]\ncert_file = /etc/hostname\n' >"$work/ssl.conf"
set +e
"$build/nestorctl" --config-file "$work/ssl.conf" call ping 2>"$work/err"; rc=$?
set -e
[ $rc = 2 ] || fail "cert_file without key_file: exit status $rc"
grep -q "cert_file and key_file must be set together" "$work/err" || fail "ssl message: $(cat "$work/err")"

# 2. An unknown option is a warning naming file and line; the agent serves.
write_conf "debug = false
no_such_option = 1"
"$build/nestor-agent" --config-file "$work/nestor.conf" 2>"$work/agent.log" &
agent_pid=$!
for _ in $(seq 1 100); do
        ctl --timeout 1 call ping >/dev/null 2>&1 && break
        sleep 0.1
done
[ "$(ctl call ping)" = pong ] || fail "ping after failover"
grep -q "nestor.conf:9: unknown option \[DEFAULT\] no_such_option, ignoring" "$work/agent.log" ||
        fail "no unknown-option warning"
grep -q "127.0.0.1:1" "$work/agent.log" || fail "the refused first host was not logged"

# 3. nestorctl: readable text, --json, remote errors and their exit status.
ctl call get_service_info | grep -q "^host: $host\$" || fail "text output"
ctl --json --rpc-version 1.3 call echo --args '{"x": [1, "\u00e9"]}' >"$work/out"
/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["args"] == {"x": [1, "\u00e9"]}, d' \
        "$work/out" || fail "--json echo"
echo '{"kind": "nestor", "message": "no such thing"}' >"$work/args.json"
set +e
ctl call fail --args @"$work/args.json" 2>"$work/err"; rc=$?
set -e
[ $rc = 1 ] || fail "remote error exit status $rc"
grep -q "InstanceNotFound: no such thing" "$work/err" || fail "remote error text: $(cat "$work/err")"
set +e
ctl call ping --args '[1]' 2>"$work/err"; rc=$?
set -e
[ $rc = 2 ] || fail "bad --args exit status $rc"
set +e
"$build/nestorctl" --config-file "$work/nestor.conf" --host nobody-$$ --timeout 1 call ping 2>"$work/err"; rc=$?
set -e
[ $rc = 3 ] || fail "timeout exit status $rc"
grep -q MessagingTimeout "$work/err" || fail "timeout text: $(cat "$work/err")"
ctl cast count || fail "cast"

# 4. SIGHUP re-reads the log level.
sed -i 's/^debug = false/debug = true/' "$work/nestor.conf"
kill -HUP "$agent_pid"
for _ in $(seq 1 50); do grep -q "log level is now debug" "$work/agent.log" && break; sleep 0.1; done
grep -q "log level is now debug" "$work/agent.log" || fail "SIGHUP did not switch to debug"
ctl call ping >/dev/null
grep -q "DEBUG nestor.rpc .* call ping" "$work/agent.log" || fail "no debug line after SIGHUP"

# 5. SIGTERM: clean exit, status 0.
kill -TERM "$agent_pid"
set +e
wait "$agent_pid"; rc=$?
set -e
agent_pid=
[ $rc = 0 ] || fail "agent exit status $rc after SIGTERM"
grep -q "stopped cleanly" "$work/agent.log" || fail "no clean stop"
echo "agent CLI checks passed"
