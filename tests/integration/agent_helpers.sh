# Shell helpers shared by the integration tests that drive real agents with
# nestorctl (sourced, not run). The caller sets build (the build directory)
# before sourcing, work (its scratch directory), uri (libvirt) and prefix
# (its domains' name prefix), and defines fail MESSAGE. Agents are started
# as "${agent_env[@]}" "$build/nestor-agent" ...
# shellcheck shell=bash disable=SC2154,SC2034 # the caller sets build, work, uri, prefix and uses agent_env

py() { /usr/bin/python3 -c "$@"; }

# jget EXPR < JSON: EXPR over the parsed JSON `d`; objects, lists, booleans
# and null printed as JSON, the rest as they are.
jget() {
        py 'import json,sys; d=json.load(sys.stdin); v=eval(sys.argv[1]); print(json.dumps(v) if isinstance(v,(dict,list,bool)) or v is None else v)' "$1"
}

our_domains() {
        virsh -c "$uri" list --all --name 2>/dev/null | grep "^$prefix-" || true
}

domstate() { virsh -c "$uri" domstate "$1" 2>/dev/null | head -1; }

wait_domstate() { # wait_domstate NAME STATE: up to 20 s
        for _ in $(seq 1 100); do
                [ "$(domstate "$1")" = "$2" ] && return 0
                sleep 0.2
        done
        fail "$1 is '$(domstate "$1")', expected '$2'"
}

stop_agent() { # stop_agent PID
        [ -n "$1" ] || return 0
        kill -KILL "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
}

# ctl_conf CONF HOST ARGS...: nestorctl with that configuration and host;
# retried while the broker refuses the connection or the exchange does not
# exist yet. CTL_TIMEOUT (default 120 s) bounds each call.
ctl_conf() {
        local conf=$1 h=$2 rc out
        shift 2
        for _ in $(seq 1 60); do
                set +e
                out=$("$build/nestorctl" --config-file "$conf" --host "$h" \
                        --timeout "${CTL_TIMEOUT:-120}" "$@" 2>"$work/ctl.err")
                rc=$?
                set -e
                [ $rc = 3 ] && grep -Eq "ConnectionError: (cannot connect to|login to|.*NOT_FOUND - no exchange)" \
                        "$work/ctl.err" && { sleep 1; continue; }
                break
        done
        [ -n "$out" ] && printf '%s\n' "$out"
        cat "$work/ctl.err" >&2
        return $rc
}

# wait_agent PID LOG BEFORE CONF HOST METHOD: until the agent started with
# PID logs one more "serving compute" than BEFORE (a call sent before its
# queues exist is lost and waits out its whole timeout), then answers
# METHOD; fails when the agent exits or never answers.
wait_agent() {
        local pid=$1 logf=$2 before=$3 conf=$4 h=$5 method=$6 n
        for _ in $(seq 1 300); do
                n=$(grep -c "serving compute" "$logf" 2>/dev/null) || n=0 # no log yet
                [ "$n" -gt "$before" ] && break
                kill -0 "$pid" 2>/dev/null || fail "agent $h exited: $(tail -5 "$logf")"
                sleep 0.1
        done
        for _ in $(seq 1 60); do
                "$build/nestorctl" --config-file "$conf" --host "$h" --timeout 3 call "$method" \
                        >/dev/null 2>&1 && return 0
                kill -0 "$pid" 2>/dev/null || fail "agent $h exited: $(tail -5 "$logf")"
                sleep 0.2
        done
        fail "agent $h does not answer"
}

# An ASan agent dlopens libvirt after the sanitizer resolved its xdr_*
# interceptors against a libc without SunRPC: they would call NULL inside
# libvirt's RPC client. Preloading libtirpc lets them find the real ones.
agent_env=()
if grep -q __asan_init "$build/nestor-agent" 2>/dev/null; then
        tirpc=$(ldconfig -p | awk '/libtirpc\.so\.3 / && !f {print $NF; f = 1}')
        if [ -n "$tirpc" ]; then agent_env=(env "LD_PRELOAD=$tirpc"); fi
fi

# dump_agent_logs [LINES]: the last LINES (default 30) of each
# $work/agent-*.log, each line prefixed with its file's name (for fail()).
dump_agent_logs() {
        local f
        for f in "$work"/agent*.log; do
                [ -f "$f" ] && sed "s|^|  $(basename "$f"): |" "$f" | tail -"${1:-30}" >&2
        done
        return 0
}

# remove_our_domains: every domain of $prefix on $uri destroyed and
# undefined with its managed save image and its checkpoint, snapshot and
# NVRAM metadata.
remove_our_domains() {
        local d
        for d in $(our_domains); do
                virsh -c "$uri" destroy "$d" >/dev/null 2>&1
                virsh -c "$uri" undefine --managed-save --checkpoints-metadata \
                        --snapshots-metadata --nvram "$d" >/dev/null 2>&1 ||
                        virsh -c "$uri" undefine "$d" >/dev/null 2>&1
        done
        return 0
}

# Tests with several agents ("sites" a, b, c, ...): site S runs with host
# $host_S, configuration $work/S.conf and log $work/agent-S.log; its pid
# goes to $pid_S.
site_host() { local v="host_$1"; printf '%s\n' "${!v}"; }
# site_call SITE METHOD JSON: the JSON result on stdout.
site_call() { ctl_conf "$work/$1.conf" "$(site_host "$1")" --json call "$2" --args "$3"; }
# site_expect_error SITE CLASS TEXT METHOD JSON: the call fails with CLASS
# and a message containing TEXT.
site_expect_error() {
        if ctl_conf "$work/$1.conf" "$(site_host "$1")" call "$4" --args "$5" >/dev/null \
                2>"$work/err"; then
                fail "$4 $5 on $1 succeeded; expected $2"
        fi
        grep -q "$2" "$work/err" || fail "$4 $5 on $1: expected $2, got: $(cat "$work/err")"
        grep -q -- "$3" "$work/err" || fail "$4 $5 on $1: message lacks '$3': $(cat "$work/err")"
}
# site_start SITE: starts its agent (appending to its log) and waits until
# it answers replication_list.
site_start() {
        local logf=$work/agent-$1.log before pid
        before=$(grep -c "serving compute" "$logf" 2>/dev/null) || before=0 # none yet, or no log
        "${agent_env[@]}" "$build/nestor-agent" --config-file "$work/$1.conf" 2>>"$logf" &
        pid=$!
        printf -v "pid_$1" '%s' "$pid"
        wait_agent "$pid" "$logf" "$before" "$work/$1.conf" "$(site_host "$1")" replication_list
}
# site_conf SITE PLUGINS LIBVIRT_URI: $work/SITE.conf for the site's agent:
# host_SITE, its state in $work/SITE, its data channel on
# 127.0.0.1:port_SITE, quick broker retries; more options, each under its
# section, from standard input (a section named again adds to it).
site_conf() {
        local s=$1 port="port_$1"
        {
                cat <<EOF
[DEFAULT]
transport_url = rabbit://guest:guest@localhost:5672/
host = $(site_host "$s")
control_exchange = $exchange
plugin_dir = $build/plugins
enabled_plugins = $2
state_path = $work/$s
[libvirt]
uri = $3
[replication]
listen_address = 127.0.0.1
listen_port = ${!port}
[oslo_messaging_rabbit]
rabbit_retry_interval = 0.1
EOF
                cat
        } >"$work/$s.conf"
}
# site_stop SITE: kill -9 of its agent.
site_stop() {
        local v="pid_$1"
        stop_agent "${!v}"
        printf -v "pid_$1" '%s' ""
}
