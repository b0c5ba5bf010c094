#!/usr/bin/env bash
# TLS to the broker (amqps://) end to end: nestor-agent and nestorctl against
# a private RabbitMQ node with a TLS listener, using throw-away certificates.
#   1. [ssl] ca_file = the right CA: ping answers pong; the broker sees TLS.
#   2. plus cert_file/key_file: works, and the broker sees our client cert.
#   3. ca_file = another CA: the agent logs the verification failure naming
#      the broker's host:port and keeps running; nestorctl exits 3.
#   4. The server certificate names only DNS:localhost: amqps://...@127.0.0.1
#      fails with verify_hostname = true and works with verify_hostname = false.
#   5. A client certificate from another CA is refused (nestorctl exits 3);
#      an unreadable ca_file is a configuration error (nestorctl exits 2).
# The shared broker (rabbit@<host>, port 5672) is not touched: this starts its
# own node on free ports with its own data directory, and stops it on exit.
# Usage: test_tls.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
t0=$SECONDS
for tool in rabbitmq-server rabbitmqctl openssl; do
        if ! command -v $tool >/dev/null; then
                echo "SKIP: $tool is not installed"
                exit 77
        fi
done

work=$(mktemp -d /tmp/nestor-tls.XXXXXX)
# Debian's rabbitmq-server/rabbitmqctl wrappers re-exec as the rabbitmq user
# (su rabbitmq) when run as root: that user must write the node's directories
# and read the server's key.
chmod 755 "$work"
rmq_user=
if [ "$(id -u)" = 0 ] && id -u rabbitmq >/dev/null 2>&1; then
        rmq_user=rabbitmq
fi

node="nestortls_$$@localhost"
node_started=
agent_pid=
log() { echo "[$((SECONDS - t0))s] $*"; }

stop_agent() {
        [ -n "$agent_pid" ] || return 0
        kill -TERM "$agent_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$agent_pid" 2>/dev/null || true
        wait "$agent_pid" 2>/dev/null || true
        agent_pid=
}
cleanup() {
        local rc=$?
        stop_agent
        if [ -n "$node_started" ]; then
                # The node's own pid (we started it); a clean stop removes the file.
                local pid=
                [ -s "$work/rabbit.pid" ] && pid=$(cat "$work/rabbit.pid")
                timeout 60 rabbitmqctl -q -n "$node" stop >/dev/null 2>&1 || true
                if [ -n "$pid" ]; then
                        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
                        kill -KILL "$pid" 2>/dev/null || true
                fi
        fi
        rm -rf "$work"
        exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() {
        echo "FAIL: $*" >&2
        [ -f "$work/agent.log" ] && sed 's/^/  agent: /' "$work/agent.log" | tail -40 >&2
        exit 1
}

free_port() {
        /usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'
}

# ---- certificates -------------------------------------------------------
pki=$work/pki
mkdir -p "$pki"
gen_ca() { # NAME CN
        openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
                -keyout "$pki/$1.key" -out "$pki/$1.pem" -days 2 -subj "/CN=$2" \
                -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
                2>/dev/null
}
gen_cert() { # NAME CN CA EXTFILE
        openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
                -keyout "$pki/$1.key" -out "$pki/$1.csr" -subj "/CN=$2" 2>/dev/null
        openssl x509 -req -in "$pki/$1.csr" -CA "$pki/$3.pem" -CAkey "$pki/$3.key" \
                -CAcreateserial -days 2 -out "$pki/$1.pem" -extfile "$4" 2>/dev/null
}
# Only DNS:localhost, on purpose: case 4 connects to 127.0.0.1 to check that
# verify_hostname is enforced (librabbitmq 0.11 only matches DNS names anyway).
cat >"$pki/server.ext" <<EOF
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
EOF
cat >"$pki/client.ext" <<EOF
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
EOF
gen_ca ca "Nestor test CA $$"
gen_ca wrongca "Nestor wrong CA $$"
gen_cert server localhost ca "$pki/server.ext"
gen_cert client nestor-client-$$ ca "$pki/client.ext"
gen_cert rogue nestor-rogue-$$ wrongca "$pki/client.ext"
chmod 644 "$pki"/*
log "certificates ready"

# ---- a private RabbitMQ node with a TLS listener ------------------------
amqp_port=$(free_port)
tls_port=$(free_port)
dist_port=$(free_port)
while [ "$tls_port" = "$amqp_port" ]; do tls_port=$(free_port); done
while [ "$dist_port" = "$amqp_port" ] || [ "$dist_port" = "$tls_port" ]; do dist_port=$(free_port); done
mkdir -p "$work/mnesia" "$work/log"
cat >"$work/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$amqp_port
listeners.ssl.default = $tls_port
ssl_options.cacertfile = $pki/ca.pem
ssl_options.certfile = $pki/server.pem
ssl_options.keyfile = $pki/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
log.file.level = info
EOF
echo '[].' >"$work/enabled_plugins" # no management listener to collide with the shared node
: >"$work/rabbitmq-env.conf"
[ -n "$rmq_user" ] && chown -R "$rmq_user" "$work/mnesia" "$work/log" "$work"
log "starting $node: amqp $amqp_port, amqps $tls_port, dist $dist_port"
node_started=1
env RABBITMQ_NODENAME="$node" RABBITMQ_NODE_PORT="$amqp_port" RABBITMQ_DIST_PORT="$dist_port" \
        RABBITMQ_CONFIG_FILE="$work/rabbitmq.conf" \
        RABBITMQ_ADVANCED_CONFIG_FILE="$work/advanced.config" \
        RABBITMQ_CONF_ENV_FILE="$work/rabbitmq-env.conf" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$work/enabled_plugins" \
        RABBITMQ_MNESIA_BASE="$work/mnesia" RABBITMQ_LOG_BASE="$work/log" \
        RABBITMQ_PID_FILE="$work/rabbit.pid" \
        timeout 60 rabbitmq-server -detached >"$work/server.out" 2>&1 ||
        { cat "$work/server.out" >&2; fail "rabbitmq-server -detached failed"; }
ready=
deadline=$((SECONDS + 120))
while [ $SECONDS -lt $deadline ]; do
        if timeout 30 rabbitmqctl -q -n "$node" await_startup --timeout 20 >/dev/null 2>&1; then
                ready=1
                break
        fi
        sleep 1
done
if [ -z "$ready" ]; then
        cat "$work/server.out" "$work"/log/*.log 2>/dev/null | tail -40 >&2
        fail "$node did not start"
fi
log "$node is up"

# ---- agent and nestorctl ------------------------------------------------
host="tls-$$"
write_conf() { # URL, then [ssl] lines
        cat >"$work/nestor.conf" <<CONF
[DEFAULT]
transport_url = $1
host = $host
control_exchange = nestor_tls_$$
plugin_dir = $build/plugins
enabled_plugins = testing
[oslo_messaging_rabbit]
rabbit_retry_interval = 0.1
rabbit_interval_max = 1
[ssl]
$2
CONF
}
ctl() { timeout 60 "$build/nestorctl" --config-file "$work/nestor.conf" --host "$host" "$@"; }
start_agent() {
        : >"$work/agent.log"
        "$build/nestor-agent" --config-file "$work/nestor.conf" 2>"$work/agent.log" &
        agent_pid=$!
}
wait_pong() {
        for _ in $(seq 1 100); do
                [ "$(ctl --timeout 1 call ping 2>/dev/null)" = pong ] && return 0
                kill -0 "$agent_pid" 2>/dev/null || fail "the agent exited"
                sleep 0.2
        done
        fail "no pong over TLS: $(ctl --timeout 2 call ping 2>&1)"
}
wait_log() { # PATTERN
        for _ in $(seq 1 100); do
                if grep -qE "$1" "$work/agent.log"; then
                        log "  agent: $(grep -m1 -E "$1" "$work/agent.log" | head -c 300)"
                        return 0
                fi
                sleep 0.1
        done
        fail "the agent did not log /$1/"
}
broker_sees() { # PATTERN: a line of the broker's connection list (ssl, protocol, client cert)
        for _ in $(seq 1 20); do
                timeout 30 rabbitmqctl -s -n "$node" list_connections ssl ssl_protocol \
                        peer_cert_subject >"$work/conns" 2>&1 || true
                if grep -qE "$1" "$work/conns"; then
                        log "  broker: $(grep -m1 -E "$1" "$work/conns")"
                        return 0
                fi
                sleep 0.5
        done
        fail "the broker's connections do not match /$1/: $(cat "$work/conns")"
}
expect_ctl_rc() { # RC PATTERN
        local rc=0
        ctl --timeout 5 call ping >"$work/out" 2>"$work/err" || rc=$?
        [ "$rc" = "$1" ] || fail "nestorctl exit status $rc, expected $1: $(cat "$work/out" "$work/err")"
        grep -qE "$2" "$work/err" || fail "nestorctl error text: $(cat "$work/err")"
        log "  nestorctl (exit $rc): $(head -c 300 "$work/err")"
}
stop_agent_cleanly() {
        kill -TERM "$agent_pid"
        local rc=0
        for _ in $(seq 1 300); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$agent_pid" 2>/dev/null && fail "the agent did not stop on SIGTERM within 30 s"
        wait "$agent_pid" || rc=$?
        agent_pid=
        [ "$rc" = 0 ] || fail "agent exit status $rc after SIGTERM"
}
url="amqps://guest:guest@localhost:$tls_port/"

# 1. Server authentication only.
write_conf "$url" "ca_file = $pki/ca.pem"
start_agent
wait_pong
wait_log "connected to localhost:$tls_port"
# A body much larger than a TLS record (16 KiB) and a burst of calls.
big=$(head -c 300000 /dev/zero | tr '\0' x)
printf '{"blob": "%s"}' "$big" >"$work/big.json"
ctl --json call echo --args @"$work/big.json" >"$work/out" || fail "large echo over TLS"
/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["args"]["blob"]) == 300000' \
        "$work/out" || fail "large echo over TLS: wrong reply"
for i in $(seq 1 20); do
        ctl --timeout 5 call ping >"$work/out" 2>&1 || true
        [ "$(cat "$work/out")" = pong ] || fail "ping $i of 20: $(cat "$work/out")"
done
broker_sees "^true\s"
stop_agent_cleanly
log "case 1 (ca_file): pong"

# 2. Mutual TLS: the client certificate is presented and accepted.
write_conf "$url" "ca_file = $pki/ca.pem
cert_file = $pki/client.pem
key_file = $pki/client.key"
start_agent
wait_pong
broker_sees "^true\s.*CN=nestor-client-$$"
stop_agent_cleanly
log "case 2 (client certificate): pong"

# 3. The broker's certificate is not signed by ca_file.
write_conf "$url" "ca_file = $pki/wrongca.pem"
start_agent
wait_log "localhost:$tls_port.*SSL peer cert verification failed"
expect_ctl_rc 3 "localhost:$tls_port.*SSL peer cert verification failed"
kill -0 "$agent_pid" 2>/dev/null || fail "the agent gave up instead of retrying"
grep -q "connected to" "$work/agent.log" && fail "the agent connected with the wrong CA"
stop_agent_cleanly
# verify_hostname = false does not turn chain verification off.
write_conf "$url" "ca_file = $pki/wrongca.pem
verify_hostname = false"
expect_ctl_rc 3 "SSL peer cert verification failed"
log "case 3 (wrong CA): refused, logged"

# 4. The certificate names localhost, not 127.0.0.1.
ip_url="amqps://guest:guest@127.0.0.1:$tls_port/"
write_conf "$ip_url" "ca_file = $pki/ca.pem
verify_hostname = true"
start_agent
wait_log "127.0.0.1:$tls_port.*SSL hostname verification failed"
expect_ctl_rc 3 "127.0.0.1:$tls_port.*SSL hostname verification failed"
stop_agent_cleanly
write_conf "$ip_url" "ca_file = $pki/ca.pem
verify_hostname = false"
start_agent
wait_pong
stop_agent_cleanly
log "case 4 (verify_hostname): enforced, and can be turned off"

# 5. The broker refuses a client certificate from another CA (verify_peer);
#    an unreadable ca_file is a configuration error.
write_conf "$url" "ca_file = $pki/ca.pem
cert_file = $pki/rogue.pem
key_file = $pki/rogue.key"
expect_ctl_rc 3 "localhost:$tls_port"
write_conf "$url" "ca_file = $work/no-such-ca.pem"
expect_ctl_rc 2 "ca_file $work/no-such-ca.pem cannot be loaded"
log "case 5 (rogue client certificate, missing ca_file): refused"

echo "TLS checks passed in $((SECONDS - t0)) s"
