# shellcheck shell=bash
# A minimal stand-in for devstack's function library (functions-common,
# inc/ini-config, lib/rpc_backend): enough to source devstack/plugin.sh
# through every phase without devstack, root or a network. Every call that
# would change the system is recorded, one line each, in $FAKE_LOG.

DEST=${DEST:-$FAKE_ROOT/opt/stack}
DATA_DIR=${DATA_DIR:-$DEST/data}
STACK_USER=${STACK_USER:-$(id -un)}
HOST_IP=${HOST_IP:-192.0.2.10}
SERVICE_HOST=${SERVICE_HOST:-$HOST_IP}
RABBIT_HOST=${RABBIT_HOST:-$SERVICE_HOST}
RABBIT_USERID=${RABBIT_USERID:-stackrabbit}
RABBIT_PASSWORD=${RABBIT_PASSWORD:-secretrabbit}
LIBVIRT_TYPE=${LIBVIRT_TYPE:-kvm}
ENABLED_SERVICES=${ENABLED_SERVICES:-rabbit,n-cpu}

record() { echo "$*" >>"$FAKE_LOG"; }

define_plugin() { record "define_plugin $1"; }
enable_service() {
        local s
        for s in "$@"; do
                [[ ",$ENABLED_SERVICES," == *",$s,"* ]] || ENABLED_SERVICES+=",$s"
        done
}
disable_service() {
        local s
        for s in "$@"; do
                ENABLED_SERVICES=$(tr ',' '\n' <<<"$ENABLED_SERVICES" | grep -vx "$s" | paste -sd, -)
        done
}
is_service_enabled() { # an OR over the arguments, as devstack's
        local s
        for s in "$@"; do
                [[ ",$ENABLED_SERVICES," == *",$s,"* ]] && return 0
        done
        return 1
}
echo_summary() { record "summary $*"; }
install_package() { record "install_package $*"; }
run_process() { record "run_process $1|$2|${3:-}|${4:-}"; }
stop_process() { record "stop_process $1"; }
get_transport_url() { echo "rabbit://$RABBIT_USERID:$RABBIT_PASSWORD@$RABBIT_HOST:5672/"; }
hostname() { echo devstack-node; }
# sudo: run the command as this user (paths are under $FAKE_ROOT), recorded.
sudo() { record "sudo $*"; "$@"; }
# The build: recorded, not run.
cmake() { record "cmake $*"; }
install() { # install -d [-o USER] [-m MODE] DIR: the owner is recorded, not applied
        local args=() mode=
        while [ $# -gt 0 ]; do
                case "$1" in
                -o) shift ;;
                -m) mode=$2; shift ;;
                *) args+=("$1") ;;
                esac
                shift
        done
        command install "${args[@]}"
        [ -z "$mode" ] || chmod "$mode" "${args[-1]}"
}

# iniset FILE SECTION OPTION VALUE: sets one value, creating file and section.
iniset() {
        local file=$1 section=$2 option=$3 value=$4
        [ "$file" = -sudo ] && { shift; file=$1 section=$2 option=$3 value=$4; }
        touch "$file"
        /usr/bin/python3 - "$file" "$section" "$option" "$value" <<'PY'
import sys
path, section, option, value = sys.argv[1:]
lines = open(path).read().splitlines()
out, cur, done, seen = [], None, False, False
for line in lines:
    s = line.strip()
    if s.startswith("[") and s.endswith("]"):
        if cur == section and not done:
            out.append(f"{option} = {value}"); done = True
        cur = s[1:-1]; seen |= cur == section
        out.append(line); continue
    if cur == section and s.split("=")[0].strip() == option:
        if not done:
            out.append(f"{option} = {value}"); done = True
        continue
    out.append(line)
if not done:
    if not seen:
        out.append(f"[{section}]")
    out.append(f"{option} = {value}")
open(path, "w").write("\n".join(out) + "\n")
PY
}

# iniset_multiline FILE SECTION OPTION VALUE...: one line per value.
iniset_multiline() {
        local file=$1 section=$2 option=$3
        shift 3
        local v first=1
        for v in "$@"; do
                if [ $first = 1 ]; then
                        iniset "$file" "$section" "$option" "$v"
                        first=0
                else
                        /usr/bin/python3 - "$file" "$section" "$option" "$v" <<'PY'
import sys
path, section, option, value = sys.argv[1:]
lines = open(path).read().splitlines()
cur, last = None, None
for i, line in enumerate(lines):
    s = line.strip()
    if s.startswith("["):
        cur = s[1:-1]
    elif cur == section and s.split("=")[0].strip() == option:
        last = i
lines.insert(last + 1, f"{option} = {value}")
open(path, "w").write("\n".join(lines) + "\n")
PY
                fi
        done
}
