#!/usr/bin/env bash
# Replication benchmark (issue 7): a guest with a 1 GiB disk full of data is
# replicated between two agents on this machine (one broker, one libvirtd +
# QEMU), and each cycle is compared with simply reading the same data over
# NBD (bench_repl_read, the plugin's own reader without shipping), in the
# same run:
#   - full initial sync: speed relative to reading the whole disk (>= 70%);
#   - incremental after 1024 scattered 64 KiB writes (64 MiB): bytes on the
#     wire / changed bytes (<= 1.05) and cycle time / read time (<= 2).
# Needs rabbitmq-server running and root. Results go to docs/benchmarks.md.
# Usage: bench_replication.sh BUILD_DIR [ROUNDS]
set -euo pipefail

build=$(cd "$1" && pwd)
rounds=${2:-3}
uri=qemu:///system
prefix="nestor-bench-$$"
exchange="nestor_bench_$$"
read -r port_a port_b <<<"$(/usr/bin/python3 "$(dirname "$0")/../free_ports.py" 2)"
work=$(mktemp -d /tmp/nestor-bench.XXXXXX)
chmod 755 "$work"
pids=()

log() { echo "bench_replication: $*" >&2; }
fail() { echo "FAIL: $*" >&2; exit 1; }
uri_ok() { virsh -c "$uri" version >/dev/null 2>&1; }
cleanup() {
        set +e
        for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
        for d in $(virsh -c "$uri" list --all --name | grep "^$prefix-"); do
                virsh -c "$uri" destroy "$d" >/dev/null 2>&1
                virsh -c "$uri" undefine --checkpoints-metadata --nvram "$d" >/dev/null 2>&1
        done
        pkill -f "qemu-nbd.*$work" 2>/dev/null
        cp "$work/a.log" /tmp/bench_replication-a.log 2>/dev/null
        cp "$work/b.log" /tmp/bench_replication-b.log 2>/dev/null
        rm -rf "$work"
}
trap cleanup EXIT
uri_ok || { pgrep -x virtlogd >/dev/null || virtlogd -d; pgrep -x libvirtd >/dev/null || libvirtd -d; }
for _ in $(seq 1 60); do uri_ok && break; sleep 0.5; done

for site in a b; do
        port=$port_b
        [ $site = a ] && port=$port_a
        cat >"$work/$site.conf" <<EOF
[DEFAULT]
transport_url = rabbit://guest:guest@localhost:5672/
host = $prefix-$site
control_exchange = $exchange
plugin_dir = $build/plugins
enabled_plugins = libvirt, replication
state_path = $work/$site
[libvirt]
uri = $uri
[replication]
listen_address = 127.0.0.1
listen_port = $port
EOF
        "$build/nestor-agent" --config-file "$work/$site.conf" 2>"$work/$site.log" &
        pids+=($!)
done
ctl() { # ctl SITE METHOD JSON
        local out
        for _ in $(seq 1 100); do
                if out=$("$build/nestorctl" --config-file "$work/$1.conf" --host "$prefix-$1" \
                        --timeout 300 --json call "$2" --args "$3" 2>"$work/ctl.err"); then
                        printf '%s\n' "$out"
                        return 0
                fi
                grep -q "ConnectionError\|MessagingTimeout" "$work/ctl.err" || break
                sleep 0.3
        done
        cat "$work/ctl.err" >&2
        return 1
}
jget() { /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
for site in a b; do
        for _ in $(seq 1 300); do grep -q "serving compute" "$work/$site.log" && break; sleep 0.1; done
done
ctl a list_instances '{}' >/dev/null && ctl b list_instances '{}' >/dev/null || fail "agents do not answer"

vm=$prefix-vm
uuid=$(ctl a spawn "{\"spec\": {\"name\": \"$vm\", \"vcpus\": 1, \"memory_mb\": 128, \"disks\": [{\"size_gb\": 1}]}}" | jget 'd["uuid"]')
alias=$(virsh -c "$uri" dumpxml "$vm" | /usr/bin/python3 -c '
import sys, xml.etree.ElementTree as ET
print([d.find("alias").get("name") for d in ET.parse(sys.stdin).getroot().iter("disk")][0])')
qio() { virsh -c "$uri" qemu-monitor-command "$vm" --hmp "qemu-io -d /machine/peripheral/$alias/virtio-backend \"$1\"" >/dev/null; }
fill_mb=${BENCH_FILL_MB:-1024} # how much of the disk holds data for the full sync
log "filling $fill_mb MiB of the 1 GiB disk"
for i in $(seq 0 $((fill_mb / 64 - 1))); do qio "write -P $((i + 1)) $((i * 64))M 64M"; done
# Both "nodes" share this machine's disk: the fill's dirty pages would be
# written back during the full sync, competing with the target's writes.
sync

status() { ctl a replication_status "{\"replication\": \"$uuid\"}"; }
# Waits for the source agent's log to say the n-th cycle committed: a poll
# through nestorctl and Python took CPU from the cycle being measured (the
# cycle's duration is the agent's own figure either way).
wait_cycles() {
        for _ in $(seq 1 1200); do
                [ "$(grep -c 'cycle committed point' "$work/a.log")" -ge "$1" ] && return 0
                sleep 0.2
        done
        fail "no cycle $1: $(status)"
}
run_dir=$work/read
mkdir -p "$run_dir"
chown libvirt-qemu:kvm "$run_dir" 2>/dev/null || true

# CPU seconds (user + system) a process and its reaped children (the
# target's qemu-nbd, qemu-img) have used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15 + $16 + $17) / hz}' "/proc/$1/stat"; }
qemu_pid=$(pgrep -f "guest=$vm," | head -1)
# The guest has no OS: its firmware boots, fails to find one and waits.
# Where KVM cannot run real mode natively (a PVM host) that boot is
# emulated instruction by instruction: 2-3 CPU-seconds, which used to
# overlap the full sync (half of QEMU's samples in it were the vCPU) but
# not the read after it. Wait until QEMU is idle (under 5 % of a core over
# half a second; at most 30 s).
settle_ms=0
for _ in $(seq 1 60); do
        q0=$(cpu_s "$qemu_pid")
        sleep 0.5
        settle_ms=$((settle_ms + 500))
        /usr/bin/python3 -c "import sys; sys.exit(0 if $(cpu_s "$qemu_pid") - $q0 < 0.025 else 1)" && break
done
log "guest idle after ${settle_ms} ms"
cpu0_a=$(cpu_s "${pids[0]}") cpu0_b=$(cpu_s "${pids[1]}") cpu0_q=$(cpu_s "$qemu_pid")
ctl a replication_enable "{\"instance\": \"$uuid\", \"target_host\": \"$prefix-b\", \"rpo\": 3600, \"disks\": [\"vda\"], \"quiesce\": \"off\"}" >/dev/null
wait_cycles 1
cpu1_a=$(cpu_s "${pids[0]}") cpu1_b=$(cpu_s "${pids[1]}") cpu1_q=$(cpu_s "$qemu_pid")
s=$(status)
full_ms=$(jget 'd["duration_ms_last_cycle"]' <<<"$s")
full_bytes=$(jget 'd["bytes_last_cycle"]' <<<"$s")
read_full=$(/usr/bin/time -f "%U %S" -o "$work/reader.cpu" "$build/bench/bench_repl_read" "$uri" "$vm" vda "$run_dir" --full)
cpu2_q=$(cpu_s "$qemu_pid")
read_full_s=$(sed 's/.*: \([0-9.]*\) s .*/\1/' <<<"$read_full")
echo "full sync: cycle $full_ms ms for $full_bytes bytes; NBD read of the whole disk: $read_full"
/usr/bin/python3 -c "import sys; c=$full_ms/1000; r=$read_full_s; print(f'  full sync speed = {r/c*100:.0f}% of the NBD read speed (target >= 70%)')"
# The other bound of a full sync: the target writes the whole disk and makes
# it durable, so it cannot be quicker than the target's file system takes
# 1 GiB written the way the target writes a first point (O_DIRECT).
dd_s=$(dd if=/dev/zero of="$work/b/ddtest" bs=4M count=256 oflag=direct conv=fsync 2>&1 |
        sed -n 's/.* copied, \([0-9.]*\) s.*/\1/p')
rm -f "$work/b/ddtest"
/usr/bin/python3 -c "d=$dd_s; c=$full_ms/1000; print(f'  the target file system writes 1 GiB (dd, O_DIRECT + fsync) in {d:.2f} s: the full sync runs at {d/c*100:.0f}% of that')"
# Where the CPU goes on this machine's cores: QEMU's NBD export costs the
# same in both; the agents' work comes on top.
/usr/bin/python3 -c "
qs, qr = $cpu1_q - $cpu0_q, $cpu2_q - $cpu1_q
src, tgt = $cpu1_a - $cpu0_a, $cpu1_b - $cpu0_b
rd = sum(map(float, open('$work/reader.cpu').read().split()))
print(f'  CPU seconds: sync = QEMU {qs:.1f} + source agent {src:.1f} + target agent {tgt:.1f} (agents with their reaped qemu-img and qemu-nbd) = {qs + src + tgt:.1f}; read = QEMU {qr:.1f} + reader {rd:.1f} = {qr + rd:.1f} (on $(nproc) cores)')"

ratios_bare=() ratios_job=() cycles=()
for round in $(seq 1 "$rounds"); do
        /usr/bin/python3 -c "import random; random.seed($round); [print(o*65536) for o in random.sample(range(16384), 1024)]" |
                while read -r off; do
                        echo "qemu-monitor-command $vm --hmp 'qemu-io -d /machine/peripheral/$alias/virtio-backend \"write -P $((0x40 + round)) $off 64k\"'"
                done | virsh -c "$uri" >/dev/null # one connection for the 1024 writes
        cp=$(jget 'd["last_point"]["checkpoint"]' <<<"$(status)")
        read_inc=$("$build/bench/bench_repl_read" "$uri" "$vm" vda "$run_dir" "$cp")
        read_inc_s=$(sed 's/.*: \([0-9.]*\) s .*/\1/' <<<"$read_inc")
        read_job_s=$(sed 's/.*(\([0-9.]*\) s with.*/\1/' <<<"$read_inc")
        n=$(jget 'd["cycles_total"]' <<<"$(status)")
        c0_a=$(cpu_s "${pids[0]}") c0_b=$(cpu_s "${pids[1]}") c0_q=$(cpu_s "$qemu_pid")
        ctl a replication_sync_now "{\"replication\": \"$uuid\"}" >/dev/null
        wait_cycles $((n + 1))
        c1_a=$(cpu_s "${pids[0]}") c1_b=$(cpu_s "${pids[1]}") c1_q=$(cpu_s "$qemu_pid")
        s=$(status)
        ms=$(jget 'd["duration_ms_last_cycle"]' <<<"$s")
        shipped=$(jget 'd["bytes_last_cycle"]' <<<"$s")
        wire=$(jget 'd["wire_bytes_last_cycle"]' <<<"$s")
        echo "incremental $round: NBD read of the dirty extents: $read_inc; cycle $ms ms, shipped $shipped, wire $wire"
        /usr/bin/python3 -c "print(f'  wire/changed = {$wire/67108864:.4f} (target <= 1.05); cycle/read = {$ms/1000/$read_inc_s:.2f} (target <= 2); cycle/(read with the job start and end) = {$ms/1000/$read_job_s:.2f}')"
        /usr/bin/python3 -c "print(f'  CPU seconds: QEMU {$c1_q - $c0_q:.2f} + source agent {$c1_a - $c0_a:.2f} + target agent with its qemu-nbd {$c1_b - $c0_b:.2f}')"
        cycles+=("$ms") ratios_bare+=("$ms/1000/$read_inc_s") ratios_job+=("$ms/1000/$read_job_s")
done
# Rounds vary (this machine's two cores are shared with QEMU's TCG guest
# and libvirtd): the median and the range say more than any one round.
/usr/bin/python3 -c "
import statistics as st
c, b, j = [${cycles[*]/%/,}], [${ratios_bare[*]/%/,}], [${ratios_job[*]/%/,}]
f = lambda v: f'median {st.median(v):.2f} (min {min(v):.2f}, max {max(v):.2f})'
print(f'incremental, {len(c)} rounds: cycle ms median {st.median(c):.0f} (min {min(c)}, max {max(c)}); cycle/read {f(b)}; cycle/(read with the job) {f(j)}')"
