#!/usr/bin/env bash
# A replicated instance live-migrated to another host, for real: a second
# libvirtd with its own host UUID plays site C's hypervisor
# (tests/integration/libvirt/second_libvirtd.sh; the disks stay where they
# are, as on shared storage), three agents (A the source, B the target, C
# the instance's new host), one broker. Guests have no OS and run under
# TCG (migratable everywhere); their writes are HMP qemu-io.
#
#   1. A replicates the instance to B; the point equals the disk;
#  1b. a long cycle (bandwidth-limited) would hold the domain's job and
#      keep a migration out: replication_pause abandons it at once (no job
#      left, not a failure, the target's points unchanged and its log says
#      why); resumed, the next cycle commits;
#   2. `virsh migrate --live --persistent --undefinesource` to C: A's status
#      says instance-migrated from libvirt's events alone, and B refuses a
#      failover with PrimaryMigrated (A says the instance may run elsewhere);
#   3. C's replication_enable takes the replica over while A's agent is up:
#      B asks A, which says the instance is not running there, and tells A
#      it was replaced (A's status says so at once); the points are kept and
#      C's first cycle compares hashes and ships only what changed;
#   4. C's next cycle is incremental on the migrated disk, the point equals
#      it, and no bitmap of A's checkpoints is left in the disk's qcow2
#      (libvirt does not migrate checkpoint metadata; QEMU carries the
#      bitmaps along);
#   5. A refuses sync_now (ReplicationReplaced), and its disable leaves the
#      replica C now owns;
#   6. migrated back to A and enabled there again: C steps back, A's first
#      cycle is a hash compare of what changed, one bitmap is left;
#   7. disable while a slow cycle runs: the cycle stops, the replica and
#      the checkpoints go, no job is left.
#
# Needs root and unshare; exits 77 (skip) without libvirtd/QEMU.
# Usage: test_replication_migration.sh BUILD_DIR
# shellcheck disable=SC2154 # host_S, port_S and pid_S: set by qemu_test_begin
set -euo pipefail

build=$(cd "$1" && pwd)
sites="a b c"
second_uri=
# shellcheck source=tests/integration/qemu_test.sh
. "$(dirname "$0")/../qemu_test.sh"
# shellcheck source=tests/integration/libvirt/second_libvirtd.sh
. "$(dirname "$0")/../libvirt/second_libvirtd.sh"
cleanup_extra() { [ -n "$work" ] && stop_second_libvirtd "$work/libvirtd-c"; }
qemu_test_begin mig qemu-nbd unshare
start_second_libvirtd "$work/libvirtd-c" "$(cat /proc/sys/kernel/random/uuid)"
log "site C's libvirtd: $second_uri"

for site in a b c; do
        site_uri=$uri
        [ "$site" = c ] && site_uri=$second_uri
        site_conf "$site" "libvirt, replication" "$site_uri" <<EOF
[libvirt]
virt_type = qemu
[replication]
connect_retries = 5
rpc_timeout = 8
primary_check_timeout = 5
EOF
done
call() { site_call "$@"; }                 # SITE METHOD JSON
expect_error() { site_expect_error "$@"; } # SITE CLASS TEXT METHOD JSON
site_start a
site_start b
site_start c

# wait_status SITE EXPR [SECONDS]: until EXPR holds on SITE's status.
wait_status() {
        local s
        for _ in $(seq 1 $((${3:-30} * 5))); do
                s=$(call "$1" replication_status "{\"replication\": \"$uuid\"}") || fail "status on $1"
                [ "$(jget "$2" <<<"$s")" = true ] && return 0
                sleep 0.2
        done
        fail "status on $1 never satisfied $2: $s"
}
cycles() { call "$1" replication_status "{\"replication\": \"$uuid\"}" | jget 'd["cycles_total"]'; }
# qemu_io URI DOMAIN COMMAND: a guest write through HMP qemu-io.
qemu_io() {
        local alias
        alias=$(virsh -c "$1" dumpxml "$2" | py '
import sys, xml.etree.ElementTree as ET
print([d.find("alias").get("name") for d in ET.parse(sys.stdin).getroot().iter("disk")][0])')
        virsh -c "$1" qemu-monitor-command "$2" --hmp \
                "qemu-io -d /machine/peripheral/$alias/virtio-backend \"$3\"" >"$work/qio.out" ||
                fail "qemu-io $3: $(cat "$work/qio.out")"
        if grep -qi "error\|fail" "$work/qio.out"; then fail "qemu-io $3: $(cat "$work/qio.out")"; fi
}
# same_as_source: the target's newest point equals the disk. QEMU keeps
# the qcow2's new cluster mappings in memory until a flush: flush first, or
# qemu-img may read the live image without the latest writes.
same_as_source() {
        local img
        qemu_io "$vm_uri" "$vm" flush
        img=$(call b replication_status "{\"replication\": \"$uuid\"}" | jget 'd["last_point"]["images"][0]')
        qemu-img compare -U -q "$disk" "$img" || fail "the target's point $img differs from $disk"
}

# live_bitmaps: the dirty bitmaps of the instance's running QEMU, sorted
# (the qcow2 header only has them once QEMU closes the image).
live_bitmaps() {
        virsh -c "$vm_uri" qemu-monitor-command "$vm" \
                '{"execute": "query-named-block-nodes", "arguments": {"flat": true}}' |
                jget '" ".join(sorted({b["name"] for n in d["return"] for b in n.get("dirty-bitmaps", [])}))'
}

# ---- 1. replication from site A ----
vm=$prefix-vm
uuid=$(call a spawn "{\"spec\": {\"name\": \"$vm\", \"vcpus\": 1, \"memory_mb\": 128, \"disks\": [{\"size_gb\": 1}]}}" |
        jget 'd["uuid"]') || fail "spawn $vm"
wait_domstate "$vm" running
vm_uri=$uri # where the instance runs
disk=$work/a/instances/$uuid/disk0.qcow2
qemu_io "$uri" "$vm" "write -P 0xa1 0 8M"
enable="{\"instance\": \"$uuid\", \"target_host\": \"$host_b\", \"rpo\": 600, \"quiesce\": \"off\"}"
call a replication_enable "$enable" >/dev/null || fail "enable on site A"
wait_status a 'd["cycles_total"] >= 1 and d["state"] != "syncing"'
same_as_source
points=$(call b replication_status "{\"replication\": \"$uuid\"}" | jget '[p["id"] for p in d["points"]]')
log "1. site A replicates $vm ($uuid) to site B"

# ---- 1b. a long cycle is in the way of a migration: pause abandons it ----
# (libvirt refuses to migrate while the backup job holds the domain.)
call a replication_update "{\"replication\": \"$uuid\", \"bandwidth_limit\": 8}" >/dev/null ||
        fail "bandwidth limit"
qemu_io "$uri" "$vm" "write -P 0xb1 400M 16M" # 16 s at 8 Mbit/s
call a replication_sync_now "{\"replication\": \"$uuid\"}" >/dev/null || fail "sync_now"
wait_status a '(d.get("progress") or {}).get("bytes_done", 0) > 0' 30
t0=$(date +%s%N)
call a replication_pause "{\"replication\": \"$uuid\"}" >/dev/null || fail "pause"
wait_status a 'd["state"] == "paused" and not d.get("progress")' 10
[ "$(virsh -c "$uri" domjobinfo "$vm" | awk '/Job type/ {print $3}')" = None ] ||
        fail "a job is left on $vm after the pause: $(virsh -c "$uri" domjobinfo "$vm")"
log "1b. pause abandoned the running cycle in $((($(date +%s%N) - t0) / 1000000)) ms"
s=$(call a replication_status "{\"replication\": \"$uuid\"}")
[ "$(jget 'd["cycles_total"]' <<<"$s") $(jget 'd["last_error"]' <<<"$s")" = "1 null" ] ||
        fail "a cancelled cycle counted or failed: $s"
[ "$(call b replication_status "{\"replication\": \"$uuid\"}" | jget '[p["id"] for p in d["points"]]')" = "$points" ] ||
        fail "a cancelled cycle changed the target's points"
grep -q "the source abandoned the cycle: .*the replication was paused" "$work/agent-b.log" ||
        fail "the target did not log why the cycle was abandoned"
call a replication_update "{\"replication\": \"$uuid\", \"bandwidth_limit\": 0}" >/dev/null ||
        fail "bandwidth limit off"
call a replication_resume "{\"replication\": \"$uuid\"}" >/dev/null || fail "resume"
call a replication_sync_now "{\"replication\": \"$uuid\"}" >/dev/null || fail "sync_now after resume"
wait_status a 'd["cycles_total"] >= 2 and d["state"] != "syncing"' 30
same_as_source
points=$(call b replication_status "{\"replication\": \"$uuid\"}" | jget '[p["id"] for p in d["points"]]')

# ---- 2. live migration to site C ----
qemu_io "$uri" "$vm" "write -P 0xa2 100M 1M"
virsh -c "$uri" migrate --live --persistent --undefinesource --unsafe "$vm" \
        "qemu+unix:///system?socket=$work/libvirtd-c/run/libvirt-sock" >"$work/migrate.out" 2>&1 ||
        fail "virsh migrate: $(cat "$work/migrate.out")"
[ "$(virsh -c "$second_uri" domstate "$vm" 2>/dev/null | head -1)" = running ] || fail "$vm does not run on C"
vm_uri=$second_uri
wait_status a 'd["state"] == "instance-migrated" and d["instance_presence"] == "migrated"'
expect_error b PrimaryMigrated "$host_a" replication_failover "{\"replication\": \"$uuid\"}"
log "2. migrated to site C: A says instance-migrated, B refuses a failover"

# ---- 3. site C takes the replica over, A told at once ----
call c replication_enable "$enable" >/dev/null || fail "enable on site C"
wait_status a "d['state'] == 'replaced' and d['replaced_by'] == '$host_c'" 10
grep -q "handed over from $host_a to $host_c" "$work/agent-b.log" || fail "the handover was not logged"
wait_status c 'd["cycles_total"] >= 1 and d["state"] != "syncing"' 60
s=$(call c replication_status "{\"replication\": \"$uuid\"}")
[ "$(jget 'd["kind_last_cycle"]' <<<"$s")" = resync ] || fail "site C's first cycle: $s"
shipped=$(jget 'd["bytes_last_cycle"]' <<<"$s")
[ "$shipped" -le $((2 * 1024 * 1024)) ] || fail "site C's first cycle shipped $shipped bytes for 1 MiB changed"
same_as_source
s=$(call b replication_status "{\"replication\": \"$uuid\"}")
[ "$(jget 'd["source_host"]' <<<"$s")" = "$host_c" ] || fail "the replica's source: $s"
py 'import json,sys; old=json.loads(sys.argv[1]); new=[p["id"] for p in json.loads(sys.argv[2])["points"]]; sys.exit(0 if set(old) <= set(new) and len(new) == len(old) + 1 else 1)' \
        "$points" "$s" || fail "points after the handover: before $points, now $s"
log "3. site C took the replica over ($shipped bytes in a hash-compare cycle); A was told"

# ---- 4. incremental on the migrated disk; no bitmap of A's left ----
qemu_io "$second_uri" "$vm" "write -P 0xc1 200M 2M"
n=$(cycles c)
call c replication_sync_now "{\"replication\": \"$uuid\"}" >/dev/null || fail "sync_now on C"
wait_status c "d['cycles_total'] > $n and d['state'] != 'syncing'" 60
s=$(call c replication_status "{\"replication\": \"$uuid\"}")
[ "$(jget 'd["kind_last_cycle"] + " " + str(d["bytes_last_cycle"])' <<<"$s")" = "incremental 2097152" ] ||
        fail "site C's second cycle: $s"
same_as_source
cp=$(jget 'd["last_point"]["checkpoint"]' <<<"$s")
bitmaps=$(live_bitmaps)
[ "$bitmaps" = "$cp" ] || fail "the disk's bitmaps are '$bitmaps'; only C's checkpoint $cp should be left"
log "4. C's incremental cycle shipped 2 MiB; the disk holds only C's bitmap ($cp)"

# ---- 5. the old source stands back ----
expect_error a ReplicationReplaced "$host_c replicates" replication_sync_now "{\"replication\": \"$uuid\"}"
call a replication_disable "{\"replication\": \"$uuid\"}" >"$work/d.json" || fail "disable on site A"
[ "$(jget 'str(d["target_removed"]) + " " + d["target_source_host"]' <"$work/d.json")" = "False $host_c" ] ||
        fail "disable on the replaced source: $(cat "$work/d.json")"
[ "$(call b replication_status "{\"replication\": \"$uuid\"}" | jget 'd["source_host"]')" = "$host_c" ] ||
        fail "the replica after A's disable"
log "5. site A refuses to sync and its disable leaves C's replica"

# ---- 6. back to site A, which takes the replica back ----
qemu_io "$second_uri" "$vm" "write -P 0xa3 300M 1M"
virsh -c "$second_uri" migrate --live --persistent --undefinesource --unsafe "$vm" "$uri" \
        >"$work/migrate.out" 2>&1 || fail "virsh migrate back: $(cat "$work/migrate.out")"
vm_uri=$uri
wait_status c 'd["state"] == "instance-migrated"'
call a replication_enable "$enable" >/dev/null || fail "enable on site A again"
wait_status c "d['state'] == 'replaced' and d['replaced_by'] == '$host_a'" 10
wait_status a 'd["cycles_total"] >= 1 and d["state"] != "syncing"' 60
s=$(call a replication_status "{\"replication\": \"$uuid\"}")
[ "$(jget 'd["kind_last_cycle"]' <<<"$s")" = resync ] || fail "site A's first cycle back: $s"
[ "$(jget 'd["bytes_last_cycle"]' <<<"$s")" -le $((2 * 1024 * 1024)) ] || fail "site A's first cycle back: $s"
same_as_source
cp=$(jget 'd["last_point"]["checkpoint"]' <<<"$s")
bitmaps=$(live_bitmaps)
[ "$bitmaps" = "$cp" ] || fail "back on A the disk's bitmaps are '$bitmaps'; only $cp should be left"
log "6. migrated back: site A took the replica back, C stepped back, one bitmap left"

# ---- 7. disable while a (slow) cycle runs ----
call a replication_update "{\"replication\": \"$uuid\", \"bandwidth_limit\": 8}" >/dev/null ||
        fail "bandwidth limit"
qemu_io "$uri" "$vm" "write -P 0xb2 500M 16M"
call a replication_sync_now "{\"replication\": \"$uuid\"}" >/dev/null || fail "sync_now"
wait_status a '(d.get("progress") or {}).get("bytes_done", 0) > 0' 30
t0=$(date +%s%N)
call a replication_disable "{\"replication\": \"$uuid\"}" >"$work/d.json" || fail "disable during a cycle"
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$ms" -lt 5000 ] || fail "disable waited $ms ms for the cycle"
[ "$(jget 'd["target_removed"]' <"$work/d.json")" = true ] ||
        fail "disable during a cycle left the replica: $(cat "$work/d.json")"
[ "$(virsh -c "$uri" domjobinfo "$vm" | awk '/Job type/ {print $3}')" = None ] ||
        fail "a job is left on $vm after the disable"
[ -z "$(virsh -c "$uri" checkpoint-list --name "$vm" | grep -v '^$' || true)" ] ||
        fail "checkpoints left after the disable: $(virsh -c "$uri" checkpoint-list --name "$vm")"
log "7. disable during a cycle: done in $ms ms, the replica removed, no job or checkpoint left"
log "PASS"
