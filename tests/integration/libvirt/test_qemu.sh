#!/usr/bin/env bash
# The libvirt plugin against a real libvirtd + QEMU (qemu:///system), driven
# as an operator would: nestor-agent with enabled_plugins = libvirt, and
# nestorctl over the real broker.
#
#   1. every profile the host allows spawns and runs (KVM where the host
#      can, TCG otherwise: nested profiles with allow_emulated_nesting when
#      the host cannot nest), powers off and on, and destroy removes the
#      domain and its files;
#   2. libvirtd is killed under the running agent: a call meanwhile gets
#      HypervisorUnavailable; once libvirtd is back the agent reconnects,
#      keeps serving and receives domain events again;
#   3. SIGTERM stops the agent cleanly.
#
# Starts virtlogd and libvirtd when they are not running (no systemd here)
# and stops what it started. Removes every domain and file it created, also
# on failure. Needs root (qemu:///system); exits 77 (skip) otherwise.
# Usage: test_qemu.sh BUILD_DIR
set -euo pipefail

build=$(cd "$1" && pwd)
uri=qemu:///system
prefix="nestor-it-$$"
host="lv-it-$$"
exchange="nestor_lv_it_$$"
work=
agent_pid=

log() { echo "test_qemu: $*" >&2; }
fail() {
        echo "FAIL: $*" >&2
        [ -n "$work" ] && [ -f "$work/agent.log" ] && sed 's/^/  agent: /' "$work/agent.log" | tail -60 >&2
        exit 1
}

if [ "$(id -u)" != 0 ]; then
        log "needs root for qemu:///system; skipping"
        exit 77
fi

# ---- packages and daemons ----

ensure_packages() {
        local need=() p
        for p in libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils ovmf swtpm \
                swtpm-tools; do
                dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
                        need+=("$p")
        done
        [ ${#need[@]} -eq 0 ] && return 0
        log "installing ${need[*]}"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                -o Dpkg::Options::=--force-confnew "${need[@]}" >/dev/null
}

# shellcheck source=tests/integration/libvirt/daemons.sh
. "$(dirname "$0")/daemons.sh"
# shellcheck source=tests/integration/agent_helpers.sh
. "$(dirname "$0")/../agent_helpers.sh"

kill_libvirtd() {
        "$libvirtd_sh" pid libvirtd >/dev/null || fail "libvirtd is not running"
        "$libvirtd_sh" stop libvirtd || fail "libvirtd did not exit"
}

our_domains() {
        virsh -c "$uri" list --all --name 2>/dev/null | grep "^$prefix-" || true
}

cleanup() {
        local rc=$?
        set +e
        if [ -n "$agent_pid" ]; then
                kill -KILL "$agent_pid" 2>/dev/null
                wait "$agent_pid" 2>/dev/null
        fi
        # Killed mid-test: libvirtd must come back before anything else.
        "$libvirtd_sh" status || "$libvirtd_sh" start
        local d
        for d in $(our_domains); do
                log "cleaning up domain $d"
                virsh -c "$uri" destroy "$d" >/dev/null 2>&1
                virsh -c "$uri" undefine --managed-save --snapshots-metadata --nvram --tpm "$d" \
                        >/dev/null 2>&1 || virsh -c "$uri" undefine "$d" >/dev/null 2>&1
        done
        stop_started_daemons
        [ -n "$work" ] && rm -rf "$work"
        exit $rc
}
trap cleanup EXIT

ensure_packages
start_daemons

work=$(mktemp -d /tmp/nestor-qemu.XXXXXX)
# QEMU runs as libvirt-qemu and must traverse to the instance disks.
chmod 755 "$work"
mkdir -p "$work/images"
qemu-img create -q -f qcow2 "$work/images/base.qcow2" 64M

cat >"$work/nestor.conf" <<CONF
[DEFAULT]
transport_url = rabbit://guest:guest@localhost:5672/
host = $host
control_exchange = $exchange
plugin_dir = $build/plugins
enabled_plugins = libvirt
state_path = $work/state
[libvirt]
uri = $uri
image_dirs = $work/images
[oslo_messaging_rabbit]
rabbit_retry_interval = 0.1
CONF

# nestorctl (ctl_conf: retried while the broker cannot be reached before
# the request goes out, never once it may have been sent).
ctl() { CTL_TIMEOUT=300 ctl_conf "$work/nestor.conf" "$host" "$@"; }
field() { # field KEY: a top-level field of the JSON result on stdin
        /usr/bin/python3 -c 'import json,sys; v=json.load(sys.stdin)[sys.argv[1]]; print(json.dumps(v) if isinstance(v,(dict,list,bool)) or v is None else v)' "$1"
}

"${agent_env[@]}" "$build/nestor-agent" --config-file "$work/nestor.conf" 2>"$work/agent.log" &
agent_pid=$!
wait_agent "$agent_pid" "$work/agent.log" 0 "$work/nestor.conf" "$host" list_profiles
ctl --json call list_profiles >"$work/profiles.json" || fail "list_profiles"

ctl --json call get_host_capabilities >"$work/caps.json" || fail "get_host_capabilities"
virt_type=$(field virt_type <"$work/caps.json")
nesting=$(/usr/bin/python3 -c 'import json,sys; n=json.load(open(sys.argv[1]))["nesting"]; print("kvm" if n["usable"] else ("tcg" if n.get("emulated_feature") else "none"))' "$work/caps.json")
log "host: virt_type $virt_type, nesting $nesting"

# ---- 1. every profile ----

profile_min() { # profile_min PROFILE KEY
        /usr/bin/python3 -c 'import json,sys; print(next(p for p in json.load(open(sys.argv[1])) if p["name"]==sys.argv[2])[sys.argv[3]])' \
                "$work/profiles.json" "$1" "$2"
}

for profile in plain nested-kvm nested-esxi nested-hyperv; do
        name="$prefix-$profile"
        vcpus=$(profile_min "$profile" min_vcpus)
        memory=$(profile_min "$profile" min_memory_mb)
        [ "$vcpus" -ge 1 ] || vcpus=1
        # Small guests: 256 MiB, or the profile's minimum (ESXi/Hyper-V ask for 4 GiB;
        # QEMU only touches what a guest without an OS uses).
        [ "$memory" -ge 256 ] || memory=256
        extra=""
        expect_type=$virt_type
        disks="[{\"size_gb\": 1}]"
        [ "$profile" = plain ] &&
                disks="[{\"image\": \"$work/images/base.qcow2\"}, {\"size_gb\": 1}]"
        if [ "$profile" != plain ]; then
                case $nesting in
                kvm) ;;
                tcg)
                        extra=', "allow_emulated_nesting": true'
                        expect_type=qemu
                        ;;
                none)
                        ctl call spawn --args "{\"spec\": {\"name\": \"$name\", \"vcpus\": $vcpus, \"memory_mb\": $memory, \"profile\": \"$profile\"}}" \
                                2>"$work/err" && fail "$profile spawned on a host that cannot nest"
                        grep -q NestingUnavailable "$work/err" || fail "$profile: $(cat "$work/err")"
                        log "$profile: NestingUnavailable, as expected on this host"
                        continue
                        ;;
                esac
        fi
        log "$profile: spawn ($vcpus vCPU, $memory MiB, expecting type $expect_type)"
        ctl --json call spawn --args "{\"spec\": {\"name\": \"$name\", \"vcpus\": $vcpus, \"memory_mb\": $memory, \"profile\": \"$profile\", \"disks\": $disks$extra}}" \
                >"$work/spawn.json" || fail "$profile: spawn"
        uuid=$(field uuid <"$work/spawn.json")
        [ "$(field virt_type <"$work/spawn.json")" = "$expect_type" ] ||
                fail "$profile: virt_type $(field virt_type <"$work/spawn.json")"
        wait_domstate "$name" running
        virsh -c "$uri" dumpxml "$name" >"$work/domain.xml"
        grep -q "<domain type='$expect_type'" "$work/domain.xml" || fail "$profile: domain type"
        [ -f "$work/state/instances/$uuid/disk0.qcow2" ] || fail "$profile: no disk"
        ctl --json call list_instances >"$work/list.json" || fail "$profile: list_instances"
        grep -q "\"$uuid\"" "$work/list.json" || fail "$profile: not listed"

        ctl --json call power_off --args "{\"instance\": \"$name\", \"timeout\": 3}" >/dev/null ||
                fail "$profile: power_off"
        wait_domstate "$name" "shut off"
        ctl call power_off --args "{\"instance\": \"$name\"}" 2>"$work/err" &&
                fail "$profile: power_off of a stopped guest"
        grep -q InstanceInvalidState "$work/err" || fail "$profile: $(cat "$work/err")"
        ctl --json call power_on --args "{\"instance\": \"$uuid\"}" >/dev/null ||
                fail "$profile: power_on"
        wait_domstate "$name" running
        ctl --json call get_info --args "{\"instance\": \"$name\"}" >"$work/info.json" ||
                fail "$profile: get_info"
        [ "$(field state <"$work/info.json")" = running ] || fail "$profile: get_info state"

        ctl --json call destroy --args "{\"instance\": \"$name\"}" >/dev/null ||
                fail "$profile: destroy"
        virsh -c "$uri" dominfo "$name" >/dev/null 2>&1 && fail "$profile: domain left"
        [ -e "$work/state/instances/$uuid" ] && fail "$profile: files left"
        log "$profile: ok"
done

# ---- 2. libvirtd restarted under the agent ----

name="$prefix-restart"
ctl --json call spawn --args "{\"spec\": {\"name\": \"$name\", \"vcpus\": 1, \"memory_mb\": 256, \"disks\": [{\"size_gb\": 1}]}}" \
        >"$work/spawn.json" || fail "restart: spawn"
uuid=$(field uuid <"$work/spawn.json")
wait_domstate "$name" running

log "killing libvirtd"
kill_libvirtd
unavailable=0
for _ in $(seq 1 20); do
        if ctl call list_instances >/dev/null 2>"$work/err"; then
                sleep 0.2
                continue
        fi
        grep -q HypervisorUnavailable "$work/err" && { unavailable=1; break; }
        fail "during the outage: $(cat "$work/err")"
done
[ $unavailable = 1 ] || fail "calls kept working without libvirtd"
ctl call get_info --args "{\"instance\": \"$name\"}" 2>"$work/err" && fail "get_info without libvirtd"
grep -q HypervisorUnavailable "$work/err" || fail "get_info during the outage: $(cat "$work/err")"
log "during the outage: $(head -c 200 "$work/err")"

"$libvirtd_sh" start || fail "libvirtd did not come back"
back=0
for _ in $(seq 1 150); do
        if ctl --json call list_instances >"$work/list.json" 2>/dev/null; then
                back=1
                break
        fi
        sleep 0.2
done
[ $back = 1 ] || fail "the agent did not reconnect"
grep -q "\"$uuid\"" "$work/list.json" || fail "the guest is not listed after the reconnect"
grep -q "reconnected to libvirt" "$work/agent.log" || fail "no reconnect in the log"
# Events are registered again: the stop shows up as a lifecycle event.
ctl --json call power_off --args "{\"instance\": \"$name\", \"timeout\": 1}" >/dev/null ||
        fail "power_off after the reconnect"
for _ in $(seq 1 50); do
        grep -q "($uuid): instance.power_off.end" "$work/agent.log" && break
        sleep 0.1
done
grep -q "($uuid): instance.power_off.end" "$work/agent.log" ||
        fail "no lifecycle event after the reconnect"
ctl --json call destroy --args "{\"instance\": \"$uuid\"}" >/dev/null || fail "restart: destroy"
log "libvirtd restart: ok"

# ---- 3. clean stop, nothing left ----

kill -TERM "$agent_pid"
set +e
wait "$agent_pid"
rc=$?
set -e
agent_pid=
[ $rc = 0 ] || fail "agent exit status $rc"
grep -q "stopped cleanly" "$work/agent.log" || fail "no clean stop"
[ -z "$(our_domains)" ] || fail "domains left: $(our_domains)"
[ -z "$(ls -A "$work/state/instances" 2>/dev/null)" ] || fail "instance files left"
echo "libvirt qemu integration checks passed"
