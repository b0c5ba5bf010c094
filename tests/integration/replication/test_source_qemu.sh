#!/usr/bin/env bash
# The replication source (test_source.c) against a real libvirtd + QEMU on
# qemu:///system: starts virtlogd/libvirtd when they are not running (no
# systemd here) and stops only what it started; removes the test's domains
# and files even when the binary dies before its own cleanup.
# Needs root; exits 77 (skip) without it, libvirtd or qemu-system-x86_64.
# Usage: test_source_qemu.sh BUILD_DIR TEST_BINARY
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 BUILD_DIR TEST_BINARY" >&2; exit 2; }
test_bin=$(realpath "$2")
uri=qemu:///system
work=
test_pid=

log() { echo "test_source_qemu: $*" >&2; }
fail() {
        echo "FAIL: $*" >&2
        exit 1
}

if [ ! -x /usr/sbin/libvirtd ] || ! command -v qemu-system-x86_64 >/dev/null; then
        log "libvirtd or qemu-system-x86_64 missing; skipping"
        exit 77
fi
if [ "$(id -u)" != 0 ]; then
        log "needs root for $uri; skipping"
        exit 77
fi
[ -x "$test_bin" ] || fail "no test binary $test_bin"

# shellcheck source=tests/integration/libvirt/daemons.sh
. "$(dirname "$0")/../libvirt/daemons.sh"

# Domains named after the test process (nestor-src-test-<pid>[-crash]).
our_domains() {
        virsh -c "$uri" list --all --name 2>/dev/null |
                grep -E "^nestor-src-test-$test_pid(-|\$)" || true
}

remove_domains() {
        local d
        [ -n "$test_pid" ] || return 0
        for d in $(our_domains); do
                log "removing leftover domain $d"
                virsh -c "$uri" destroy "$d" >/dev/null 2>&1
                virsh -c "$uri" undefine --checkpoints-metadata "$d" >/dev/null 2>&1 ||
                        virsh -c "$uri" undefine "$d" >/dev/null 2>&1
        done
        return 0
}

cleanup() {
        local rc=$?
        set +e
        if [ -n "$test_pid" ] && kill -0 "$test_pid" 2>/dev/null; then
                kill -KILL "$test_pid" 2>/dev/null
                wait "$test_pid" 2>/dev/null
        fi
        remove_domains
        stop_started_daemons
        [ -n "$work" ] && rm -rf "$work"
        exit $rc
}
trap cleanup EXIT
trap 'exit 143' TERM INT

start_daemons

# The test's files go below this directory, which the QEMU user must traverse.
work=$(mktemp -d /tmp/nestor-src.XXXXXX)
chmod 755 "$work"

set +e
NESTOR_TEST_URI=$uri TMPDIR=$work "$test_bin" &
test_pid=$!
wait "$test_pid"
rc=$?
set -e
[ $rc = 0 ] || fail "$(basename "$test_bin") exited with status $rc"
[ -z "$(our_domains)" ] || fail "the test left domains behind: $(our_domains)"
log "replication source checks passed"
