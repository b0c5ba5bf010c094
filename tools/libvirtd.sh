#!/usr/bin/env bash
# Makes sure the host's virtlogd and libvirtd run (there is no systemd here):
# starts whichever does not and waits until qemu:///system answers; stops
# them again and waits until they have exited, so that whatever starts next
# never finds one on its way out (it would look alive, then take its socket
# with it).
# The daemons are the host's: found by their pid files in /run, not by name
# (a test's second libvirtd in its own namespace has the same name).
# Usage: tools/libvirtd.sh start | stop [libvirtd|virtlogd ...] | status | pid NAME
set -euo pipefail

uri=qemu:///system

pid_of() { # the host daemon's pid, if it runs
        local f=/run/$1.pid
        [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"
}

answers() { virsh -c "$uri" version >/dev/null 2>&1; }

start_one() {
        pid_of "$1" >/dev/null && return 0
        echo "libvirtd.sh: starting $1" >&2
        # Retried: one stopped just before may still hold its pid file lock.
        for _ in $(seq 1 50); do
                "$1" -d 2>/dev/null && return 0
                sleep 0.2
        done
        echo "libvirtd.sh: $1 -d keeps failing: $("$1" -d 2>&1 | tail -1)" >&2
        return 1
}

stop_one() {
        local pid
        pid=$(pid_of "$1") || return 0
        kill -TERM "$pid" 2>/dev/null || return 0
        for _ in $(seq 1 100); do
                kill -0 "$pid" 2>/dev/null || return 0
                sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 1 20); do
                kill -0 "$pid" 2>/dev/null || return 0
                sleep 0.1
        done
        echo "libvirtd.sh: $1 ($pid) does not exit" >&2
        return 1
}

case "${1:-start}" in
start)
        if [ "$(id -u)" != 0 ] || ! command -v libvirtd >/dev/null; then
                echo "libvirtd.sh: needs root and libvirtd" >&2
                exit 1
        fi
        start_one virtlogd
        start_one libvirtd
        for _ in $(seq 1 120); do
                answers && exit 0
                sleep 0.5
        done
        echo "libvirtd.sh: libvirtd does not answer on $uri after 60 s" >&2
        exit 1
        ;;
stop)
        shift
        [ $# -gt 0 ] || set -- libvirtd virtlogd
        for d in "$@"; do
                case "$d" in
                libvirtd | virtlogd) stop_one "$d" ;;
                *)
                        echo "libvirtd.sh: stop libvirtd or virtlogd, not '$d'" >&2
                        exit 2
                        ;;
                esac
        done
        ;;
status)
        pid_of virtlogd >/dev/null && pid_of libvirtd >/dev/null && answers
        ;;
pid)
        pid_of "${2:?pid needs a daemon name}"
        ;;
*)
        echo "usage: $0 start|stop [NAME...]|status|pid NAME" >&2
        exit 2
        ;;
esac
