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
