#!/usr/bin/env bash
# Quick start: installs what is missing, builds, starts a local RabbitMQ,
# runs nestor-agent in the foreground-like way an operator would, and shows
# a short nestorctl session against it. The agent keeps running until you
# press Ctrl-C (or pass --once to stop after the session).
set -euo pipefail
cd "$(dirname "$0")/.."

once=0
[ "${1:-}" = "--once" ] && once=1

tools/install-deps.sh
tools/broker.sh start
cmake --preset default >/dev/null
cmake --build --preset default -j "$(nproc)" >/dev/null

work=$(mktemp -d /tmp/nestor-demo.XXXXXX)
# A fake dual-port SR-IOV NIC (4 VFs per port): no hardware needed.
/usr/bin/python3 tests/fixtures/mkfakesysfs.py "$work/fake" --quiet
cat >"$work/nestor.conf" <<CONF
[DEFAULT]
transport_url = rabbit://guest:guest@localhost:5672/
host = demo-node
state_path = $work/state
plugin_dir = $PWD/build/plugins
enabled_plugins = libvirt, sriov, inventory

[libvirt]
# The in-process test driver: no libvirtd needed. qemu:///system on a real node.
uri = test:///default

[pci]
# The fake card instead of /sys; VF settings written to a file, not the kernel.
sysfs_root = $work/fake/sys
vf_config = record:$work/vf-settings.jsonl
device_spec = {"address": "0000:03:00.0", "physical_network": "physnet1"}
alias = {"name": "vf", "vendor_id": "8086", "product_id": "10ed", "device_type": "type-VF"}

[inventory]
# Liveness and inventory reports every 2 s (10 s by default).
report_interval = 2
initial_report_delay = 1
CONF

build/nestor-agent --config-file "$work/nestor.conf" 2>"$work/agent.log" &
agent=$!
stop() {
        kill -TERM "$agent" 2>/dev/null || true
        wait "$agent" 2>/dev/null || true
        echo "--- agent log ($work/agent.log) ---"
        cat "$work/agent.log"
}
trap stop EXIT

ctl() {
        echo "\$ nestorctl $*"
        build/nestorctl --config-file "$work/nestor.conf" "$@" || echo "(exit status $?)"
        echo
}
for _ in $(seq 1 50); do
        build/nestorctl --config-file "$work/nestor.conf" --host demo-node --timeout 1 \
                call ping >/dev/null 2>&1 && break
        sleep 0.2
done

ctl --host demo-node call ping
ctl --host demo-node --json call ping
ctl --host demo-node call get_host_capabilities
ctl --host demo-node call pci_pools
ctl --host demo-node call pci_diagnose
ctl --host demo-node call spawn --args '{"spec": {"name": "demo-vm", "vcpus": 2, "memory_mb": 512,
        "disks": [{"size_gb": 1}], "nics": [{"network": "default"}],
        "pci_requests": [{"vnic_type": "direct", "physical_network": "physnet1", "vlan": 100}]}}'
ctl --host demo-node call list_instances
ctl --host demo-node call pci_list_devices --args '{"fields": ["address", "type", "state", "owner"],
        "filter": {"parent": "0000:03:00.0"}}'
ctl --host demo-node call inventory_query --args '{"type": "instance",
        "fields": ["name", "power_state", "vcpus", "memory_mb"]}'
ctl services --wait 3 --state "$work/services.json"
ctl --host demo-node call power_off --args '{"instance": "demo-vm", "timeout": 1}'
ctl --host demo-node call get_info --args '{"instance": "demo-vm"}'
ctl --host demo-node call destroy --args '{"instance": "demo-vm"}'
ctl --host demo-node call spawn --args '{"spec": {"name": "bad", "vcpus": 0, "memory_mb": 512}}'
ctl --host demo-node call no_such_method
ctl --host demo-node --rpc-version 2.0 call ping

if [ "$once" = 0 ]; then
        echo "nestor-agent is running (pid $agent, config $work/nestor.conf); Ctrl-C stops it."
        wait "$agent"
fi
