# shellcheck shell=bash
# virtlogd and libvirtd for the real-QEMU tests (no systemd here), through
# tools/libvirtd.sh: tools/test.sh starts them once for the whole suite; a
# test run alone starts them itself and stops them again, waiting until
# they have exited, so the next test never finds a daemon on its way out.
# Sourced; the caller defines fail().

libvirtd_sh=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../tools" && pwd)/libvirtd.sh
started_daemons=0

start_daemons() {
        "$libvirtd_sh" status && return 0
        "$libvirtd_sh" start || fail "cannot start virtlogd and libvirtd"
        started_daemons=1
}

# Stops what start_daemons started.
stop_started_daemons() {
        [ "$started_daemons" = 1 ] && "$libvirtd_sh" stop
        return 0
}
