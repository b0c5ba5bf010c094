#!/usr/bin/env bash
# Makes sure a local RabbitMQ answers: starts rabbitmq-server (there is no
# systemd here) when it does not, and waits until it is ready.
# Usage: tools/broker.sh start | stop | status
set -euo pipefail

ready() { rabbitmqctl -q status >/dev/null 2>&1; }

case "${1:-start}" in
start)
        if ready; then exit 0; fi
        echo "broker: starting rabbitmq-server" >&2
        rabbitmq-server -detached >/dev/null 2>&1 || true
        for _ in $(seq 1 120); do
                if ready && rabbitmqctl -q await_startup >/dev/null 2>&1; then
                        exit 0
                fi
                sleep 1
        done
        echo "broker: rabbitmq-server did not become ready in 120 s" >&2
        exit 1
        ;;
stop)
        rabbitmqctl -q stop >/dev/null 2>&1 || true
        ;;
status)
        ready
        ;;
*)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac
