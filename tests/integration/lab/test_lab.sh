#!/usr/bin/env bash
# The all-in-one lab (tools/lab.sh) as CI runs it: `up` must tell the whole
# story (two sites, the nested guests, the VF, a memory snapshot, a full and
# an incremental replication cycle, failover refused then done, the network
# disconnected then connected), and `down` must leave nothing behind.
# Usage: test_lab.sh BUILD_DIR. Skips (77) without root or under ASan (the
# default build covers it; the lab's agents are not run with the ASan
# preload here).
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/../../.." && pwd)
fail() { echo "FAIL: $*" >&2; [ -f "$out" ] && tail -40 "$out" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root; skipping"; exit 77; }
if grep -q __asan_init "$build/nestor-agent" 2>/dev/null; then
        echo "ASan build: the default build runs the lab; skipping"
        exit 77
fi
tmp=$(mktemp -d /tmp/nestor-lab-test.XXXXXX)
chmod 755 "$tmp" # QEMU (another user) reaches the guests' disks below it
lab=$tmp/lab
out=$tmp/up.log
cleanup() {
        NESTOR_LAB_DIR=$lab "$src/tools/lab.sh" down >/dev/null 2>&1 || true
        rm -rf "$tmp"
}
trap cleanup EXIT

NESTOR_LAB_DIR=$lab NESTOR_BUILD_DIR=$build "$src/tools/lab.sh" up >"$out" 2>&1 ||
        fail "tools/lab.sh up failed"
expect() { grep -q -- "$1" "$out" || fail "the lab did not show: $1"; }
expect "lab-site-a  nestor-agent  up"
expect "lab-site-b  nestor-agent  up"
expect "lab-compute: running, profile nested-kvm"
expect "profile: nested-esxi"
expect "consistency: memory"
if grep -q "libvirt: qemu:///system" "$out"; then
        expect "committed point 1 (full)"
        expect "committed point 2 (incremental): 64.0 MiB shipped"
        expect "PrimaryAlive: the primary instance lab-compute is running"
        expect "network: disconnected"
        expect "down$"
        expect "network: connected"
        expect "up$"
fi
uri=$(cat "$lab/uri")
NESTOR_LAB_DIR=$lab "$src/tools/lab.sh" down >"$tmp/down.log" 2>&1 || fail "tools/lab.sh down failed"
[ ! -e "$lab" ] || fail "down left $lab"
if [ "$uri" != test:///default ]; then
        left=$(virsh -c "$uri" list --all --name | grep '^lab-' || true)
        [ -z "$left" ] || fail "down left domains: $left"
        virsh -c "$uri" net-info nestor-lab >/dev/null 2>&1 && fail "down left the network"
fi
pgrep -f "nestor-agent --config-file $lab" >/dev/null && fail "down left agents running"
pgrep -f "qemu-nbd.*$lab" >/dev/null && fail "down left qemu-nbd running"
echo "lab up and down: ok"
