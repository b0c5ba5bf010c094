# shellcheck shell=bash
# The frame of an end-to-end test whose agents drive a real libvirtd + QEMU
# on qemu:///system (sourced, then qemu_test_begin): it skips where it
# cannot run, starts the daemons it needs, gives the test a scratch
# directory, and on any exit stops and removes what the test started, also
# when a check failed halfway.
#
# The caller sets build (its BUILD_DIR) and sites ("a b c": agents whose
# pids it keeps in pid_a, pid_b, ...) before qemu_test_begin, and may
# define cleanup_extra for more to undo (networks, mounts, listeners); it
# runs once the sites' agents are stopped and the test's domains removed.
# shellcheck disable=SC2034 # uri, prefix, work, host_S, port_S are the caller's
# shellcheck disable=SC2154 # build and sites are the caller's

here_qemu_test=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=tests/integration/libvirt/daemons.sh
. "$here_qemu_test/libvirt/daemons.sh"
# shellcheck source=tests/integration/agent_helpers.sh
. "$here_qemu_test/agent_helpers.sh"

test_name=$(basename "$0" .sh)
uri=qemu:///system
work=

log() { echo "$test_name: $*" >&2; }
fail() {
        echo "FAIL: $*" >&2
        [ -n "$work" ] && dump_agent_logs 40
        exit 1
}

# qemu_test_begin TAG [COMMAND...]: exits 77 (skip) unless this runs as
# root (qemu:///system) with libvirtd and every COMMAND installed. TAG
# names what the test makes: domains nestor-TAG-<pid>-*, hosts
# TAG-<site>-<pid>, exchange nestor_TAG_it_<pid>, a free port per site
# (port_<site>), $work in /tmp/nestor-TAG.XXXXXX (open to the QEMU user).
qemu_test_begin() {
        local tag=$1 c s missing=()
        shift
        if [ "$(id -u)" != 0 ]; then
                log "needs root for $uri; skipping"
                exit 77
        fi
        for c in libvirtd "$@"; do
                command -v "$c" >/dev/null || missing+=("$c")
        done
        if [ ${#missing[@]} -gt 0 ]; then
                log "${missing[*]} missing; skipping"
                exit 77
        fi
        prefix="nestor-$tag-$$"
        exchange="nestor_${tag}_it_$$"
        local ports=() i=0
        [ -n "$sites" ] && read -r -a ports <<<"$(/usr/bin/python3 \
                "$here_qemu_test/../free_ports.py" "$(wc -w <<<"$sites")")"
        for s in $sites; do
                printf -v "host_$s" '%s' "$tag-$s-$$"
                printf -v "port_$s" '%s' "${ports[$i]}"
                printf -v "pid_$s" '%s' ""
                i=$((i + 1))
        done
        trap qemu_test_cleanup EXIT
        trap 'exit 143' TERM INT
        start_daemons
        work=$(mktemp -d "/tmp/nestor-$tag.XXXXXX")
        chmod 755 "$work"
}

qemu_test_cleanup() {
        local rc=$? s pid
        set +e
        for s in $sites; do
                pid="pid_$s"
                stop_agent "${!pid}"
        done
        remove_our_domains
        declare -F cleanup_extra >/dev/null && cleanup_extra
        [ -n "$work" ] && pkill -f "qemu-nbd.*$work" 2>/dev/null
        stop_started_daemons
        [ -n "$work" ] && rm -rf "$work"
        exit $rc
}
