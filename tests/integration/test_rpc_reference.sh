#!/usr/bin/env bash
# docs/rpc-reference.md must document exactly the RPC methods an agent
# serves with every shipped plugin enabled: starts nestor-agent (libvirt's
# test driver, libvirt, sriov, inventory, snapshot and replication) against
# the real broker, asks it with `nestorctl --json call get_service_info`,
# and compares the method names it registers with the "### `name`" headings
# of the reference. Fails listing what is missing on either side.
# Usage: test_rpc_reference.sh BUILD_DIR
set -euo pipefail
build=$1
src=$(cd "$(dirname "$0")/../.." && pwd)
doc=$src/docs/rpc-reference.md
work=$(mktemp -d /tmp/nestor-rpcref.XXXXXX)
agent_pid=
cleanup() {
        if [ -n "$agent_pid" ]; then
                kill -KILL "$agent_pid" 2>/dev/null || true
                wait "$agent_pid" 2>/dev/null || true
        fi
        rm -rf "$work"
}
trap cleanup EXIT
fail() {
        echo "FAIL: $*" >&2
        if [ -f "$work/agent.log" ]; then sed 's/^/  agent: /' "$work/agent.log" >&2; fi
        exit 1
}

[ -f "$doc" ] || fail "$doc does not exist"
plugins=(libvirt sriov inventory snapshot replication)
for p in "${plugins[@]}"; do
        [ -f "$build/plugins/$p.so" ] || fail "plugin $build/plugins/$p.so is not built"
done

exchange="nestor_rpcref_$$"
host="rpcref-$$"
# The sriov plugin needs no hardware: on a host without SR-IOV (or with a
# sysfs it cannot read) it starts with nothing assignable.
cat >"$work/nestor.conf" <<CONF
[DEFAULT]
transport_url = rabbit://guest:guest@localhost:5672/
host = $host
control_exchange = $exchange
state_path = $work/state
plugin_dir = $build/plugins
enabled_plugins = libvirt, sriov, inventory, snapshot, replication

[oslo_messaging_rabbit]
rabbit_retry_interval = 0.1

[libvirt]
uri = test:///default

[pci]
rescan_interval = 0
vf_config = record:$work/vf.jsonl

[inventory]
reports = false

[replication]
listen_address = 127.0.0.1
listen_port = 0
CONF
ctl() { "$build/nestorctl" --config-file "$work/nestor.conf" --host "$host" "$@"; }

"$build/nestor-agent" --config-file "$work/nestor.conf" 2>"$work/agent.log" &
agent_pid=$!
for _ in $(seq 1 150); do
        kill -0 "$agent_pid" 2>/dev/null || fail "nestor-agent exited at start"
        ctl --timeout 1 call ping >/dev/null 2>&1 && break
        sleep 0.2
done
[ "$(ctl --timeout 5 call ping)" = pong ] || fail "the agent does not answer ping"

ctl --json --timeout 30 call get_service_info >"$work/info.json" || fail "get_service_info"

# What the agent serves, and which plugins it says it loaded.
/usr/bin/python3 - "$work/info.json" "$work/served" "${plugins[@]}" <<'PY' || fail "get_service_info answer"
import json, sys
info = json.load(open(sys.argv[1]))
loaded = {p["name"] for p in info["plugins"]}
missing = set(sys.argv[3:]) - loaded
if missing:
    sys.exit("plugins not loaded: %s" % ", ".join(sorted(missing)))
names = sorted({m["name"] for m in info["methods"]})
if len(names) < 10:
    sys.exit("only %d methods registered" % len(names))
open(sys.argv[2], "w").write("".join(n + "\n" for n in names))
PY

# What the reference documents: every "### `name`" heading.
# shellcheck disable=SC2016 # the backquotes are literal
sed -n 's/^### `\([A-Za-z0-9_]*\)`[[:space:]]*$/\1/p' "$doc" | sort >"$work/documented.all"
dups=$(uniq -d "$work/documented.all")
[ -z "$dups" ] || fail "documented more than once in $doc: $(echo "$dups" | tr '\n' ' ')"
sort -u "$work/documented.all" >"$work/documented"

comm -23 "$work/served" "$work/documented" >"$work/undocumented"
comm -13 "$work/served" "$work/documented" >"$work/unserved"
if [ -s "$work/undocumented" ] || [ -s "$work/unserved" ]; then
        if [ -s "$work/undocumented" ]; then
                echo "FAIL: served by the agent but missing from docs/rpc-reference.md:" >&2
                sed 's/^/  /' "$work/undocumented" >&2
        fi
        if [ -s "$work/unserved" ]; then
                echo "FAIL: documented in docs/rpc-reference.md but not served by the agent:" >&2
                sed 's/^/  /' "$work/unserved" >&2
        fi
        exit 1
fi

kill -TERM "$agent_pid"
set +e
wait "$agent_pid"
rc=$?
set -e
agent_pid=
[ $rc = 0 ] || fail "agent exit status $rc after SIGTERM"
echo "rpc reference matches the agent: $(wc -l <"$work/served") methods"
