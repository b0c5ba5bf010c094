#!/usr/bin/env bash
# The all-in-one nested lab: on this one machine, RabbitMQ, libvirtd with
# QEMU (KVM when /dev/kvm works, else TCG; the in-process test driver when
# neither can run), two Nestor agents playing two sites, and a fake SR-IOV
# card, then the story an operator reads, driven with nestorctl:
#
#   a nested-KVM "compute node" guest and a nested-ESXi guest are spawned on
#   site A, one with an SR-IOV VF; a memory snapshot is estimated and taken;
#   the compute node is replicated to site B: a full then an incremental
#   cycle with their progress; failover is refused while the primary runs,
#   done once it is stopped; the recovered VM starts with its network
#   disconnected, then is connected.
#
# Usage: tools/lab.sh [up|down]   (NESTOR_LAB_DIR, default /tmp/nestor-lab;
#        NESTOR_BUILD_DIR: use that build as is, install and build nothing)
# `up` leaves the lab running; `down` removes every domain, network, file,
# agent and daemon it started.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
build=${NESTOR_BUILD_DIR:-$src/build}
lab=${NESTOR_LAB_DIR:-/tmp/nestor-lab}
cmd=${1:-up}
exchange=nestor_lab
net=nestor-lab
port_a=31041
port_b=31042

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "lab: $*" >&2; exit 1; }

# ---- down ----

lab_down() {
        [ -d "$lab" ] || { echo "lab: nothing to tear down ($lab does not exist)"; return 0; }
        local uri f pid d
        uri=$(cat "$lab/uri" 2>/dev/null || echo test:///default)
        for f in "$lab"/agent-*.pid; do
                [ -f "$f" ] || continue
                pid=$(cat "$f")
                kill -TERM "$pid" 2>/dev/null || true
                for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
                kill -KILL "$pid" 2>/dev/null || true
        done
        if [ "$uri" != test:///default ]; then
                for d in $(virsh -c "$uri" list --all --name 2>/dev/null | grep '^lab-' || true); do
                        virsh -c "$uri" destroy "$d" >/dev/null 2>&1 || true
                        virsh -c "$uri" undefine --checkpoints-metadata --snapshots-metadata \
                                --nvram "$d" >/dev/null 2>&1 ||
                                virsh -c "$uri" undefine "$d" >/dev/null 2>&1 || true
                done
                virsh -c "$uri" net-destroy "$net" >/dev/null 2>&1 || true
        fi
        pkill -f "qemu-nbd.*$lab" 2>/dev/null || true
        if grep -qx libvirtd "$lab/started" 2>/dev/null; then tools/libvirtd.sh stop || true; fi
        if grep -qx broker "$lab/started" 2>/dev/null; then
                tools/broker.sh stop || true
        fi
        rm -rf "$lab"
        echo "lab: torn down"
}

case "$cmd" in
down) lab_down; exit 0 ;;
up) ;;
*) die "usage: tools/lab.sh [up|down]" ;;
esac

[ -e "$lab" ] && die "$lab exists: run 'tools/lab.sh down' first"

# ---- up: parts ----

say "Setting up: packages, build, RabbitMQ, libvirt"
if [ -z "${NESTOR_BUILD_DIR:-}" ]; then
        tools/install-deps.sh
        cmake --preset default >/dev/null
        cmake --build --preset default -j "$(nproc)" >/dev/null
fi
mkdir -p "$lab"
chmod 755 "$lab"
: >"$lab/started"
if ! tools/broker.sh status >/dev/null 2>&1; then
        tools/broker.sh start >/dev/null
        echo broker >>"$lab/started"
fi

uri=test:///default
if command -v libvirtd >/dev/null && command -v qemu-system-x86_64 >/dev/null && [ "$(id -u)" = 0 ]; then
        if tools/libvirtd.sh status; then
                uri=qemu:///system
        elif tools/libvirtd.sh start; then
                echo libvirtd >>"$lab/started"
                uri=qemu:///system
        fi
fi
echo "$uri" >"$lab/uri"
accel=none
if [ "$uri" = qemu:///system ]; then
        accel=tcg
        [ -w /dev/kvm ] && accel=kvm
        virsh -c "$uri" net-create /dev/stdin >/dev/null <<EOF
<network><name>$net</name><bridge name='nstlab0' stp='off'/></network>
EOF
fi
echo "libvirt: $uri (acceleration: $accel)"

# The fake SR-IOV card (2 ports x 4 VFs) of site A: no hardware needed.
/usr/bin/python3 tests/fixtures/mkfakesysfs.py "$lab/fake" --quiet

write_conf() { # write_conf SITE PORT PLUGINS EXTRA
        cat >"$lab/$1.conf" <<EOF
[DEFAULT]
transport_url = rabbit://guest:guest@localhost:5672/
host = lab-$1
control_exchange = $exchange
state_path = $lab/$1
plugin_dir = $build/plugins
enabled_plugins = $3
[libvirt]
uri = $uri
[inventory]
report_interval = 2
initial_report_delay = 1
[replication]
listen_address = 127.0.0.1
listen_port = $2
probe_command =
$4
EOF
}
write_conf site-a $port_a "libvirt, sriov, inventory, snapshot, replication" "[pci]
sysfs_root = $lab/fake/sys
vf_config = record:$lab/vf-settings.jsonl
device_spec = {\"address\": \"0000:03:00.0\", \"physical_network\": \"physnet1\"}"
write_conf site-b $port_b "libvirt, inventory, snapshot, replication" ""

for site in site-a site-b; do
        "$build/nestor-agent" --config-file "$lab/$site.conf" 2>"$lab/agent-$site.log" &
        echo $! >"$lab/agent-$site.pid"
done

# ctl SITE ARGS...: nestorctl against one site, echoing the command.
ctl() {
        local site=$1
        shift
        echo "\$ nestorctl --host lab-$site $*" >&2
        "$build/nestorctl" --config-file "$lab/$site.conf" --host "lab-$site" --timeout 300 "$@"
}
q() { # q SITE METHOD JSON: quiet JSON call
        "$build/nestorctl" --config-file "$lab/$1.conf" --host "lab-$1" --timeout 300 --json \
                call "$2" --args "$3"
}
jget() { /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
for site in site-a site-b; do
        # A call sent before the agent's queues exist is lost: wait for them.
        for _ in $(seq 1 300); do
                grep -q "serving compute" "$lab/agent-$site.log" && break
                kill -0 "$(cat "$lab/agent-$site.pid")" 2>/dev/null ||
                        die "the $site agent exited: $(tail -3 "$lab/agent-$site.log")"
                sleep 0.1
        done
        for _ in $(seq 1 100); do
                "$build/nestorctl" --config-file "$lab/$site.conf" --host "lab-$site" --timeout 2 \
                        call ping >/dev/null 2>&1 && break
                kill -0 "$(cat "$lab/agent-$site.pid")" 2>/dev/null ||
                        die "the $site agent exited: $(tail -3 "$lab/agent-$site.log")"
                sleep 0.2
        done
done

say "1. Two sites are up"
echo "\$ nestorctl services --wait 3"
"$build/nestorctl" --config-file "$lab/site-a.conf" services --wait 3 --state "$lab/services.json" || true

nic=
[ "$uri" = qemu:///system ] && nic=", \"nics\": [{\"network\": \"$net\"}]"
# Where the host cannot nest (no KVM, or a KVM without nested
# virtualization, as under a paravirtual hypervisor) the nested profiles run
# under TCG: slow, but the lab works.
nesting=$(q site-a get_host_capabilities '{}' | jget 'd["nesting"]["usable"]') || nesting=False
if [ "$accel" != kvm ] || [ "$nesting" != True ]; then
        nic="$nic, \"allow_emulated_nesting\": true"
        echo "(this host cannot nest: the nested guests run under TCG)"
fi
say "2. A nested-KVM compute node on site A"
ctl site-a call spawn --args "{\"spec\": {\"name\": \"lab-compute\", \"profile\": \"nested-kvm\", \"vcpus\": 2, \"memory_mb\": 256, \"disks\": [{\"size_gb\": 1}]$nic}}" \
        >"$lab/compute.txt"
uuid=$(q site-a get_info '{"instance": "lab-compute"}' | jget 'd["uuid"]')
q site-a get_info '{"instance": "lab-compute"}' | jget '"lab-compute: " + d["state"] + ", profile " + str(d.get("profile"))'

say "3. A nested-ESXi guest with an SR-IOV VF"
vf='"pci_requests": [{"vnic_type": "direct", "physical_network": "physnet1", "vlan": 100}]'
esxi="\"name\": \"lab-esxi\", \"profile\": \"nested-esxi\", \"vcpus\": 2, \"memory_mb\": 4096, \"disks\": [{\"size_gb\": 1}]$nic"
if ! ctl site-a call spawn --args "{\"spec\": {$esxi, $vf}}" >/dev/null; then
        # QEMU cannot open a VF of the fake card: the spawn failed as a whole
        # and its claim was released; the guest runs without the VF here.
        echo "(no real SR-IOV card on this host: the VF exists only in sysfs; the claim was released)"
        ctl site-a call spawn --args "{\"spec\": {$esxi}}" >/dev/null
fi
ctl site-a call pci_list_devices --args '{"fields": ["address", "type", "state", "owner"], "filter": {"parent": "0000:03:00.0"}}'
ctl site-a call pci_pools
ctl site-a call list_instances

say "4. A memory snapshot of the compute node: estimated, then taken"
ctl site-a call snapshot_estimate --args "{\"instance\": \"$uuid\", \"memory\": true}"
ctl site-a call snapshot_create --args "{\"instance\": \"$uuid\", \"name\": \"before-replication\", \"memory\": true, \"quiesce\": \"off\"}" |
        grep -E 'name|consistency|total_size|duration' || true

if [ "$uri" = test:///default ]; then
        say "Replication needs QEMU (libvirt backups); this host has none: the story ends here"
        exit 0
fi

say "5. Replication of the compute node to site B: a full cycle"
alias=$(virsh -c "$uri" dumpxml lab-compute | /usr/bin/python3 -c '
import sys, xml.etree.ElementTree as ET
print([d.find("alias").get("name") for d in ET.parse(sys.stdin).getroot().iter("disk") if d.get("device") == "disk"][0])')
guest_write() { virsh -c "$uri" qemu-monitor-command lab-compute --hmp "qemu-io -d /machine/peripheral/$alias/virtio-backend \"$1\"" >/dev/null; }
guest_write "write -P 0x5a 0 256M"
q site-a replication_enable "{\"instance\": \"$uuid\", \"target_host\": \"lab-site-b\", \"rpo\": 900, \"quiesce\": \"off\", \"points_in_time\": 24, \"disks\": [\"vda\"]}" >/dev/null
echo "replication_enable: rpo 15 min, disk vda, to lab-site-b"
ctl site-a replication sync "$uuid"

say "6. The guest writes 64 MiB; an incremental cycle ships only that"
for i in $(seq 0 63); do guest_write "write -P 0x6b $((300 + i * 5))M 1M"; done
ctl site-a replication sync "$uuid"
ctl site-a replication status
ctl site-b replication status

say "7. Failover on site B is refused while the primary runs"
ctl site-b call replication_failover --args "{\"replication\": \"$uuid\"}" || true

say "8. The primary stops; failover brings the VM up on site B, network disconnected"
q site-a replication_pause "{\"replication\": \"$uuid\"}" >/dev/null
ctl site-a call power_off --args "{\"instance\": \"$uuid\"}" >/dev/null
ctl site-b call replication_failover --args "{\"replication\": \"$uuid\"}" | tee "$lab/failover.txt"
rvm=$(q site-b replication_status "{\"replication\": \"$uuid\"}" | jget 'd["failover"]["domain_name"]')
echo "\$ virsh domiflist $rvm; domif-getlink"
mac=$(virsh -c "$uri" domiflist "$rvm" | awk 'NR > 2 && $5 {print $5}')
virsh -c "$uri" domif-getlink "$rvm" "$mac"

say "9. The operator connects the recovered VM's network"
ctl site-b call replication_connect_network --args "{\"replication\": \"$uuid\"}"
virsh -c "$uri" domif-getlink "$rvm" "$mac"

say "The lab is up: site A $lab/site-a.conf, site B $lab/site-b.conf; 'tools/lab.sh down' removes it"
