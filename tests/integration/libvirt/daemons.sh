# shellcheck shell=bash
# virtlogd and libvirtd for the real-QEMU tests (no systemd here): started
# when not running, stopped again -- and waited for -- by the test that
# started them, so the next test never finds a daemon on its way out.
# Sourced; the caller defines uri, log() and fail().

started_libvirtd=0
started_virtlogd=0

pid_of() { # a daemon's pid: from its pid file, else the oldest process of that name
        local f=/run/$1.pid
        if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then
                cat "$f"
                return 0
        fi
        pgrep -xo "$1"
}

# shellcheck disable=SC2154 # uri is the caller's
wait_libvirtd() {
        for _ in $(seq 1 120); do
                virsh -c "$uri" version >/dev/null 2>&1 && return 0
                sleep 0.5
        done
        return 1
}

# start_daemon NAME: started (retried: a daemon stopped just before may
# still hold its pid file lock) unless already running.
start_daemon() {
        local name=$1
        pid_of "$name" >/dev/null && return 0
        for _ in $(seq 1 50); do
                "$name" -d 2>/dev/null && return 0
                sleep 0.2
        done
        fail "$name -d keeps failing: $("$name" -d 2>&1 | tail -1)"
}

start_daemons() {
        if ! pid_of virtlogd >/dev/null; then
                start_daemon virtlogd
                started_virtlogd=1
        fi
        if ! pid_of libvirtd >/dev/null; then
                start_daemon libvirtd
                started_libvirtd=1
        fi
        wait_libvirtd || fail "libvirtd does not answer on $uri"
}

# stop_daemon NAME: SIGTERM and wait until it has exited.
stop_daemon() {
        local pid
        pid=$(pid_of "$1") || return 0
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 100); do
                kill -0 "$pid" 2>/dev/null || return 0
                sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null
}

# Stops what start_daemons started.
stop_started_daemons() {
        [ "$started_libvirtd" = 1 ] && stop_daemon libvirtd
        [ "$started_virtlogd" = 1 ] && stop_daemon virtlogd
        return 0
}
