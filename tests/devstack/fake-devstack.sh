# shellcheck shell=bash
# A small stand-in for the part of devstack's function library that
# devstack/plugin.sh and devstack/settings use (functions-common,
# inc/ini-config, lib/rpc_backend), so the plugin runs through its phases
# without devstack, root or a network. It behaves like devstack where the
# plugin's result depends on it (the INI helpers put new lines right after
# the section header, run_process refuses sudo and relative commands,
# enable_service does not re-enable a disabled service, warn returns the
# status it was called with) and records every call that would change the
# system, one line each, in $FAKE_DEVSTACK_LOG:
#
#   iniset FILE SECTION OPTION VALUE        run_process SERVICE|COMMAND|GROUP|USER
#   stop_process SERVICE                    install_package PKG...
#   add_user_to_group USER GROUP            sudo ARGS...
#   warn MESSAGE                            summary MESSAGE
#
# Source it with FAKE_DEVSTACK_ROOT (a scratch directory) and
# FAKE_DEVSTACK_LOG set; the devstack variables below may be set before.
#
# shellcheck disable=SC2034  # the variables are devstack's, read by the plugin

: "${FAKE_DEVSTACK_ROOT:?the scratch directory}" "${FAKE_DEVSTACK_LOG:?the call log}"

# ---- devstack's variables, with test values ----

DEST=${DEST:-$FAKE_DEVSTACK_ROOT/opt/stack}
DATA_DIR=${DATA_DIR:-$DEST/data}
STACK_USER=${STACK_USER:-$(id -un)}
HOST_IP=${HOST_IP:-192.0.2.10}
SERVICE_HOST=${SERVICE_HOST:-$HOST_IP}
RABBIT_USERID=${RABBIT_USERID:-stackrabbit}
RABBIT_PASSWORD=${RABBIT_PASSWORD-rabbit-secret}
RABBIT_HOST=${RABBIT_HOST-$SERVICE_HOST}
LIBVIRT_TYPE=${LIBVIRT_TYPE:-kvm}
ENABLE_DEBUG_LOG_LEVEL=${ENABLE_DEBUG_LOG_LEVEL:-True}
ENABLED_SERVICES=${ENABLED_SERVICES-rabbit,mysql,key,n-api,n-cpu}
DISABLED_SERVICES=${DISABLED_SERVICES:-}

_fake_record() {
        printf '%s\n' "$*" >>"$FAKE_DEVSTACK_LOG"
}

# ---- messages ----

die() {
        # The status of the command before, as devstack's die exits with.
        # shellcheck disable=SC2319
        local status=$?
        shift # the line number
        echo "[ERROR] $*" >&2
        exit $((status == 0 ? 1 : status))
}

warn() {
        local status=$?
        shift
        echo "[WARNING] $*"
        _fake_record "warn $*"
        return $status
}

echo_summary() {
        echo "$*"
        _fake_record "summary $*"
}

# ---- plugins and services ----

define_plugin() { :; }
plugin_requires() { :; }

is_service_enabled() {
        local service
        for service in "$@"; do
                [[ ,$ENABLED_SERVICES, == *,$service,* ]] && return 0
                # devstack's catch-all: any n-* service counts as nova.
                [[ $service == nova && ,$ENABLED_SERVICES == *,n-* ]] && return 0
        done
        return 1
}

_fake_join_services() { # the words of $1 joined with commas
        local -a words
        read -r -a words <<<"$1"
        local IFS=,
        echo "${words[*]}"
}

enable_service() {
        local service
        for service in "$@"; do
                if [[ ,$DISABLED_SERVICES, == *,$service,* ]]; then
                        warn $LINENO "Attempt to enable_service $service when it has been disabled"
                        continue
                fi
                is_service_enabled "$service" || ENABLED_SERVICES+=,$service
        done
        ENABLED_SERVICES=$(_fake_join_services "${ENABLED_SERVICES//,/ }")
}

disable_service() {
        local service kept=" ${ENABLED_SERVICES//,/ } "
        for service in "$@"; do
                DISABLED_SERVICES+=,$service
                kept=${kept// $service / }
        done
        ENABLED_SERVICES=$(_fake_join_services "$kept")
        DISABLED_SERVICES=${DISABLED_SERVICES#,}
}

# ---- processes and packages ----

run_process() {
        local service=$1 command=$2 group=${3:-} user=${4:-}
        is_service_enabled "$service" || return 0
        # What devstack's _common_systemd_pitfalls refuses.
        [[ $command == *sudo* ]] && die $LINENO "run_process $service: sudo in '$command'"
        [[ $command == /* ]] || die $LINENO "run_process $service: '$command' is not absolute"
        _fake_record "run_process $service|$command|$group|$user"
}

stop_process() {
        is_service_enabled "$1" || return 0
        _fake_record "stop_process $1"
}

install_package() {
        _fake_record "install_package $*"
}

add_user_to_group() {
        _fake_record "add_user_to_group $1 $2"
}

# Runs the command as the caller: the test needs no root. Without root, the
# owner asked of `install` is recorded (above) but not applied.
sudo() {
        _fake_record "sudo $*"
        if [[ $1 == install && $EUID != 0 ]]; then
                local -a args=()
                shift
                while (($#)); do
                        case $1 in
                        -o | -g) shift 2 ;;
                        *) args+=("$1") && shift ;;
                        esac
                done
                command install "${args[@]}"
                return
        fi
        "$@"
}

# ---- RabbitMQ (lib/rpc_backend) ----

get_transport_url() {
        if is_service_enabled rabbit || [[ -n $RABBIT_HOST && -n $RABBIT_PASSWORD ]]; then
                echo "rabbit://$RABBIT_USERID:$RABBIT_PASSWORD@$RABBIT_HOST:5672/${1:-}"
        fi
}

# ---- INI files (inc/ini-config) ----
# Sections and options are matched literally here (devstack uses them as sed
# patterns); values are written as given.

# _fake_ini_edit FILE SECTION OPTION ACTION [VALUE]: ACTION is set (replace
# every line of OPTION, else add one after the header, adding the section at
# the end when missing), add (one line after the header), delete.
_fake_ini_edit() {
        local file=$1 section=$2 option=$3 action=$4 value=${5:-}
        local out
        [[ -e $file ]] || : >"$file"
        # Through the environment: awk -v would interpret backslashes.
        out=$(FAKE_SEC="[$section]" FAKE_OPT=$option FAKE_ACT=$action FAKE_VAL=$value awk '
                BEGIN {
                        sec = ENVIRON["FAKE_SEC"]; opt = ENVIRON["FAKE_OPT"]
                        act = ENVIRON["FAKE_ACT"]; line = opt " = " ENVIRON["FAKE_VAL"]
                }
                function is_opt(text) {
                        return index(text, opt) == 1 &&
                               substr(text, length(opt) + 1) ~ /^[ \t]*=/
                }
                {
                        lines[NR] = $0
                        if ($0 ~ /^\[.*\]/) cur = $0
                        mine[NR] = cur == sec && is_opt($0)
                        if ($0 == sec && !header) header = NR
                        if (mine[NR]) found = 1
                }
                END {
                        for (i = 1; i <= NR; i++) {
                                if (mine[i] && act == "delete") continue
                                if (mine[i] && act == "set") { print line; continue }
                                print lines[i]
                                if (i == header && (act == "add" || (act == "set" && !found)))
                                        print line
                        }
                        if (!header && act != "delete") { print ""; print sec; print line }
                }' "$file") || return
        printf '%s\n' "$out" >"$file"
}

_fake_ini_sudo() { # strips devstack's -sudo flag: the test owns its files
        [[ $1 == -sudo ]]
}

iniset() {
        _fake_ini_sudo "$1" && shift
        _fake_record "iniset $1 $2 $3 $4"
        _fake_ini_edit "$1" "$2" "$3" set "$4"
}

iniadd_literal() {
        _fake_ini_sudo "$1" && shift
        _fake_record "iniadd_literal $1 $2 $3 $4"
        # devstack inserts the value as sed a\ text: a backslash escapes the
        # next character.
        local value
        value=$(printf '%s' "$4" | sed -e 's/\\\(.\)/\1/g')
        _fake_ini_edit "$1" "$2" "$3" add "$value"
}

inidelete() {
        _fake_ini_sudo "$1" && shift
        _fake_record "inidelete $1 $2 $3"
        _fake_ini_edit "$1" "$2" "$3" delete
}

# iniset_multiline FILE SECTION OPTION VALUE...: devstack splits the values
# at white space, as done here.
iniset_multiline() {
        _fake_ini_sudo "$1" && shift
        local file=$1 section=$2 option=$3 i
        shift 3
        # shellcheck disable=SC2206  # devstack's word splitting, on purpose
        local -a values=($*)
        _fake_record "iniset_multiline $file $section $option ${values[*]}"
        _fake_ini_edit "$file" "$section" "$option" delete
        for ((i = ${#values[@]} - 1; i >= 0; i--)); do
                _fake_ini_edit "$file" "$section" "$option" add "${values[i]}"
        done
}

iniget() {
        awk -v sec="[$2]" -v opt="$3" '
                /^\[.*\]/ { inside = ($0 == sec); next }
                inside && index($0, opt) == 1 && substr($0, length(opt) + 1) ~ /^[ \t]*=/ {
                        sub(/^[^=]*=[ \t]*/, ""); print
                }' "$1"
}
