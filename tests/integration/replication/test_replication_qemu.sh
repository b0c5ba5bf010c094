#!/usr/bin/env bash
# The replication plugin end to end: two agents on this machine play two
# sites (site A, the source, and site B, the target: different host names,
# state paths and data channel ports, one broker, one libvirtd + QEMU),
# driven with nestorctl as an operator would. Guests have no OS; their
# writes are simulated with QEMU's HMP qemu-io on the running domain.
#
#   1. bad input on enable (nothing is created);
#   2. full sync, then incremental cycles: after each, the target's newest
#      point equals the source disk byte for byte (qemu-img compare), an
#      incremental ships only the changed 64 KiB clusters;
#   3. retention: at most points_in_time points, an older point still equals
#      the copy taken when it was made;
#   4. kill -9 of the target mid-cycle: the source reconnects and the cycle
#      resumes from the target's last mark; kill -9 of the source mid-cycle:
#      the replica stays at its last point, the next cycle is incremental;
#   5. a QEMU crash breaks the checkpoint chain: a hash-compare resync,
#      then incremental again;
#   6. a peer without the right key is refused;
#   7. pre-seeding: a copy carried to the target beforehand, then only the
#      blocks that differ are shipped, compressed;
#   8. test failover and cleanup while replication goes on;
#  8b. the source instance stops behind Nestor's back: status says so at
#      once (libvirt's event), a cycle fails with InstanceInvalidState and
#      backs off; started again, it is retried at once, not after the
#      backoff; replication.instance_unavailable / _available are sent
#      (read with a real oslo.messaging notification listener);
#  8c. the target's agent is down: status says target-unreachable once the
#      reconnections are spent, and the next cycle after it is back works;
#   9. failover refused while the primary runs, refused while the probe
#      answers, done once it is stopped; the recovered VM's NICs are down,
#      then connected; no committed point, force without a reason: errors;
#  10. certificates instead of pre-shared keys: a cycle goes through; a
#      source or a target whose certificate (same CA) names another node
#      is refused, and nothing changes on the target;
#  11. the instance moves to site C (a third agent on the same libvirtd
#      plays its new host): C's replication_enable is refused while site
#      A's agent says the instance runs there, and with A gone it takes the
#      replica over, points kept: the first cycle compares hashes and ships
#      only what changed; A, back, finds its cycle refused, learns from the
#      target that it was replaced and stops, and its disable leaves the
#      replica C now owns.
#
# Needs root; exits 77 (skip) without libvirtd/QEMU.
# Usage: test_replication_qemu.sh BUILD_DIR
# shellcheck disable=SC2154 # host_S, port_S and pid_S: set by qemu_test_begin
set -euo pipefail

build=$(cd "$1" && pwd)
sites="a b c"
net="nstrepl$$"
notes_pid=
# shellcheck source=tests/integration/qemu_test.sh
. "$(dirname "$0")/../qemu_test.sh"
cleanup_extra() {
        [ -n "$notes_pid" ] && kill "$notes_pid" 2>/dev/null
        virsh -c "$uri" net-destroy "$net" >/dev/null 2>&1
}
qemu_test_begin repl qemu-nbd

virsh -c "$uri" net-create /dev/stdin >/dev/null <<EOF || fail "cannot create network $net"
<network><name>$net</name><bridge name='${net:0:15}' stp='off'/></network>
EOF

# The failover probe: "reachable" while $work/primary-up exists.
cat >"$work/probe.sh" <<EOF
#!/bin/sh
test -e "$work/primary-up"
EOF
chmod 755 "$work/probe.sh"

write_conf() { # write_conf SITE [CERT]: CERT = $work/pki/CERT.{pem,key}
        local tls=
        [ -n "${2:-}" ] && tls="cert_file = $work/pki/$2.pem
key_file = $work/pki/$2.key
ca_file = $work/pki/ca.pem"
        site_conf "$1" "libvirt, replication" "$uri" <<EOF
[replication]
mark_interval_mb = 16
mark_interval_s = 0
connect_retries = 5
rpc_timeout = 8
primary_check_timeout = 5
io_timeout = 20
probe_command = $work/probe.sh {address}
$tls
EOF
}
write_conf a
write_conf b

call_a() { site_call a "$@"; }
call_b() { site_call b "$@"; }
call_c() { site_call c "$@"; }
expect_error() { site_expect_error "$@"; } # SITE CLASS TEXT METHOD JSON
start_agent() { site_start "$1"; }         # sets pid_a / pid_b / pid_c
start_agent a
start_agent b

spawn() { # spawn NAME: prints the uuid
        call_a spawn "{\"spec\": {\"name\": \"$1\", \"vcpus\": 1, \"memory_mb\": 128, \"disks\": [{\"size_gb\": 1}, {\"size_gb\": 1}], \"nics\": [{\"network\": \"$net\"}]}}" |
                jget 'd["uuid"]'
}
# qemu_io DOMAIN DEV COMMAND: a guest write through HMP qemu-io.
qemu_io() {
        local alias
        alias=$(virsh -c "$uri" dumpxml "$1" | py '
import sys, xml.etree.ElementTree as ET
d = ET.parse(sys.stdin).getroot()
for disk in d.iter("disk"):
    if disk.find("target").get("dev") == sys.argv[1]:
        print(disk.find("alias").get("name"))' "$2")
        virsh -c "$uri" qemu-monitor-command "$1" --hmp \
                "qemu-io -d /machine/peripheral/$alias/virtio-backend \"$3\"" >"$work/qio.out" ||
                fail "qemu-io $3 on $1: $(cat "$work/qio.out")"
        if grep -qi "error\|fail" "$work/qio.out"; then fail "qemu-io $3: $(cat "$work/qio.out")"; fi
}
status_a() { call_a replication_status "{\"replication\": \"$1\"}"; }
status_b() { call_b replication_status "{\"replication\": \"$1\"}"; }
# wait_cycles UUID N: until the source has committed N cycles and is idle.
wait_cycles() {
        local s
        for _ in $(seq 1 600); do
                s=$(status_a "$1") || fail "status of $1"
                if [ "$(jget 'd["cycles_total"]' <<<"$s")" -ge "$2" ] &&
                        [ "$(jget 'd["state"]' <<<"$s")" != syncing ]; then
                        return 0
                fi
                sleep 0.2
        done
        fail "replication $1 did not reach $2 cycles: $s"
}
sync_and_wait() { # sync_and_wait UUID: one more cycle
        local n
        n=$(status_a "$1" | jget 'd["cycles_total"]')
        call_a replication_sync_now "{\"replication\": \"$1\"}" >/dev/null || fail "sync_now"
        wait_cycles "$1" $((n + 1))
}
src_disk() { echo "$work/a/instances/$1/disk$2.qcow2"; }
latest_image() { # latest_image UUID DISK_INDEX: the target's newest point image
        status_b "$1" | jget "d['last_point']['images'][$2]"
}
# same_as_source UUID: the target's newest point equals the source's vda.
same_as_source() {
        local img
        img=$(latest_image "$1" 0)
        qemu-img compare -U -q "$(src_disk "$1" 0)" "$img" ||
                fail "target point $img differs from the source disk"
}

vm="$prefix-a"
uuid=$(spawn "$vm") || fail "spawn $vm"
wait_domstate "$vm" running
log "guest $vm ($uuid) running on site A"

# ---- 1. bad input ----
expect_error a InstanceNotFound "not found" replication_enable "{\"instance\": \"$prefix-none\", \"target_host\": \"$host_b\"}"
# A domain Nestor did not create (no Nestor metadata) is refused.
printf "<domain type='qemu'><name>%s-foreign</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os></domain>" "$prefix" >"$work/foreign.xml"
virsh -c "$uri" define "$work/foreign.xml" >/dev/null || fail "define a foreign domain"
expect_error a InstanceNotFound "not an instance managed by Nestor" replication_enable "{\"instance\": \"$prefix-foreign\", \"target_host\": \"$host_b\"}"
virsh -c "$uri" undefine "$prefix-foreign" >/dev/null
expect_error a InvalidInput "rpo must be between" replication_enable "{\"instance\": \"$uuid\", \"target_host\": \"$host_b\", \"rpo\": 30}"
expect_error a InvalidInput "rpo must be between" replication_enable "{\"instance\": \"$uuid\", \"target_host\": \"$host_b\", \"rpo\": 90000}"
expect_error a InvalidInput "has no disk 'vdz'" replication_enable "{\"instance\": \"$uuid\", \"target_host\": \"$host_b\", \"disks\": [\"vdz\"]}"
expect_error a InvalidInput "unexpected argument 'colour'" replication_enable "{\"instance\": \"$uuid\", \"target_host\": \"$host_b\", \"colour\": 1}"
expect_error a InvalidInput "quiescing needs an RPO" replication_enable "{\"instance\": \"$uuid\", \"target_host\": \"$host_b\", \"rpo\": 60, \"quiesce\": \"required\"}"
expect_error a InvalidInput "target_host is this host" replication_enable "{\"instance\": \"$uuid\", \"target_host\": \"$host_a\"}"
expect_error a TargetUnreachable "did not answer" replication_enable "{\"instance\": \"$uuid\", \"target_host\": \"$prefix-nowhere\"}"
# Without a guest agent channel the instance cannot be frozen: a required
# quiesce is refused at once rather than failing every cycle.
noagent=$(call_a spawn "{\"spec\": {\"name\": \"$prefix-noagent\", \"vcpus\": 1, \"memory_mb\": 64, \"disks\": [{\"size_gb\": 1}], \"guest_agent\": false}}" |
        jget 'd["uuid"]') || fail "spawn $prefix-noagent"
expect_error a InvalidInput "has no guest agent channel" replication_enable "{\"instance\": \"$noagent\", \"target_host\": \"$host_b\", \"rpo\": 900, \"quiesce\": \"required\"}"
call_a destroy "{\"instance\": \"$noagent\"}" >/dev/null || fail "destroy $prefix-noagent"
[ "$(call_a replication_list '{}' | jget 'len(d["source"])')" = 0 ] || fail "a failed enable left a replication"
[ -z "$(ls "$work/b/replication/target")" ] || fail "a failed enable left a replica"
log "bad input: ok"

# ---- 2. full sync, then incremental ----
qemu_io "$vm" vda "write -P 0x11 0 8M"
qemu_io "$vm" vda "write -P 0x22 100M 1M"
qemu_io "$vm" vda "write -z 200M 4M"
qemu_io "$vm" vdb "write -P 0x33 0 1M"
call_a replication_enable "{\"instance\": \"$uuid\", \"target_host\": \"$host_b\", \"rpo\": 600, \"disks\": [\"vda\"], \"points_in_time\": 3, \"quiesce\": \"off\", \"probe_addresses\": [\"192.0.2.10\"]}" \
        >"$work/enable.json" || fail "enable"
[ "$(jget 'd["target_host"]' <"$work/enable.json")" = "$host_b" ] || fail "enable: $(cat "$work/enable.json")"
expect_error a ReplicationExists "already replicated" replication_enable "{\"instance\": \"$uuid\", \"target_host\": \"$host_b\"}"
wait_cycles "$uuid" 1
status_a "$uuid" >"$work/s1.json"
log "full sync: $(jget '[d["bytes_last_cycle"], d["zero_bytes_last_cycle"], d["wire_bytes_last_cycle"], d["duration_ms_last_cycle"]]' <"$work/s1.json")"
same_as_source "$uuid"
# Only vda is replicated; thin: the 1 GiB disk with 9 MiB written takes little space.
[ "$(status_b "$uuid" | jget 'len(d["disks"])')" = 1 ] || fail "vdb was replicated"
alloc=$(status_b "$uuid" | jget 'd["allocated_bytes"]')
[ "$alloc" -lt $((64 * 1024 * 1024)) ] || fail "target not thin: $alloc bytes allocated"
shipped=$(jget 'd["bytes_last_cycle"]' <"$work/s1.json")
[ "$shipped" = $((9 * 1024 * 1024)) ] || fail "full sync shipped $shipped data bytes, expected 9 MiB"
[ "$(jget 'd["zero_bytes_last_cycle"]' <"$work/s1.json")" = $((1015 * 1024 * 1024)) ] ||
        fail "full sync: the rest of the disk did not go as zero ranges: $(cat "$work/s1.json")"
wire=$(jget 'd["wire_bytes_last_cycle"]' <"$work/s1.json")
[ "$wire" -lt $((16 * 1024 * 1024)) ] || fail "full sync put $wire bytes on the wire for 9 MiB of data"

# Scattered writes: 32 x 64 KiB, one 4 KiB write (ships its 64 KiB cluster).
for i in $(seq 0 31); do qemu_io "$vm" vda "write -P 0x44 $((300 + i * 7))M 64k"; done
qemu_io "$vm" vda "write -P 0x55 700M 4k"
# Before the cycle, libvirt's count of changed bytes reaches the scheduler
# (and status) within a hint pass (5 s).
for _ in $(seq 1 40); do
        pending=$(status_a "$uuid" | jget 'd["pending_changed_bytes"]')
        [ "$pending" = $((33 * 65536)) ] && break
        sleep 0.5
done
[ "$pending" = $((33 * 65536)) ] || fail "pending_changed_bytes is $pending, expected $((33 * 65536))"
sync_and_wait "$uuid"
status_a "$uuid" >"$work/s2.json"
case "$(jget 'd["pending_changed_bytes"]' <"$work/s2.json")" in
null | 0) ;; # not counted since, or counted against the new checkpoint
*) fail "the pending count outlived the cycle: $(cat "$work/s2.json")" ;;
esac
shipped=$(jget 'd["bytes_last_cycle"]' <"$work/s2.json")
wire=$(jget 'd["wire_bytes_last_cycle"]' <"$work/s2.json")
log "incremental: shipped $shipped, wire $wire, $(jget 'd["duration_ms_last_cycle"]' <"$work/s2.json") ms"
[ "$shipped" = $((33 * 65536)) ] || fail "incremental shipped $shipped bytes, expected $((33 * 65536))"
[ "$wire" -lt $((shipped * 105 / 100 + 65536)) ] || fail "incremental wire bytes $wire for $shipped changed"
same_as_source "$uuid"
log "full and incremental: ok"

# ---- 3. retention ----
qemu-img convert -U -O raw "$(src_disk "$uuid" 0)" "$work/copy-p2.raw"
p2=$(status_b "$uuid" | jget 'd["last_point"]["id"]')
for i in 1 2 3; do
        qemu_io "$vm" vda "write -P 0x6$i $((400 + i))M 1M"
        sync_and_wait "$uuid"
done
status_b "$uuid" >"$work/b3.json"
[ "$(jget 'len(d["points"])' <"$work/b3.json")" = 3 ] || fail "retention: $(jget '[p["id"] for p in d["points"]]' <"$work/b3.json")"
same_as_source "$uuid"
old=$(jget "[p['images'][0] for p in d['points'] if p['id'] == $p2 + 1][0]" <"$work/b3.json")
qemu-img convert -U -O raw "$(src_disk "$uuid" 0)" "$work/now.raw"
qemu-img compare -q -f qcow2 -F raw "$old" "$work/now.raw" && fail "an old point equals the newest state"
rm -f "$work/now.raw" "$work/copy-p2.raw"
log "retention: ok ($(jget '[p["id"] for p in d["points"]]' <"$work/b3.json"))"

# nestorctl: a sync with its progress, and the status tables of both sites.
qemu_io "$vm" vda "write -P 0x66 450M 32M"
out=$(ctl_conf "$work/a.conf" "$host_a" replication sync "$uuid") || fail "nestorctl replication sync"
grep -q "committed point [0-9]* (incremental): 32.0 MiB shipped" <<<"$out" || fail "replication sync printed: $out"
out=$(ctl_conf "$work/a.conf" "$host_a" replication status) || fail "nestorctl replication status"
grep -q "^$uuid  source  $vm .* $host_b .* ok " <<<"$out" || fail "source table: $out"
out=$(ctl_conf "$work/b.conf" "$host_b" replication status "$uuid") || fail "status on the target"
grep -q "^$uuid  target  $vm .* $host_a .* 3 point(s)" <<<"$out" || fail "target table: $out"
same_as_source "$uuid"
log "nestorctl replication sync/status: ok"

# Options change on a running replication.
call_a replication_update "{\"replication\": \"$uuid\", \"rpo\": 300, \"compress\": true}" >"$work/u.json" ||
        fail "replication_update"
[ "$(jget '[d["rpo"], d["compress"]]' <"$work/u.json")" = "[300, true]" ] || fail "update: $(cat "$work/u.json")"
expect_error a InvalidInput "rpo must be between" replication_update "{\"replication\": \"$uuid\", \"rpo\": 10}"
expect_error a InvalidInput "quiescing needs an RPO" replication_update "{\"replication\": \"$uuid\", \"quiesce\": \"required\"}"
expect_error a ReplicationNotFound "not the source" replication_update '{"replication": "00000000-0000-4000-8000-000000000001", "rpo": 600}'
[ "$(status_a "$uuid" | jget 'd["rpo"]')" = 300 ] || fail "a refused update changed the rpo"
log "replication_update: ok"

# The bandwidth limit paces the data channel: 8 Mbit/s (1 MB/s), 4 MiB.
call_a replication_update "{\"replication\": \"$uuid\", \"bandwidth_limit\": 8, \"compress\": false}" >/dev/null ||
        fail "update bandwidth_limit"
qemu_io "$vm" vda "write -P 0x5a 600M 4M"
sync_and_wait "$uuid"
ms=$(status_a "$uuid" | jget 'd["duration_ms_last_cycle"]')
wire=$(status_a "$uuid" | jget 'd["wire_bytes_last_cycle"]')
[ "$wire" -ge $((4 * 1024 * 1024)) ] || fail "bandwidth: only $wire bytes on the wire"
# 4 MiB at 1,000,000 B/s is 4.19 s; the token bucket allows a 100 ms burst.
if [ "$ms" -lt 3900 ] || [ "$ms" -ge 30000 ]; then
        fail "bandwidth limit: 4 MiB took $ms ms at 1 MB/s"
fi
same_as_source "$uuid"
call_a replication_update "{\"replication\": \"$uuid\", \"bandwidth_limit\": 0, \"compress\": true}" >/dev/null ||
        fail "update bandwidth_limit 0"
log "bandwidth limit: 4 MiB in $ms ms at 8 Mbit/s, ok"

# ---- 4. kill -9 mid-cycle ----
wait_progress() { # wait_progress UUID BYTES: until the running cycle shipped BYTES
        local s
        for _ in $(seq 1 600); do
                s=$(status_a "$1")
                if [ "$(jget '(d["progress"] or {}).get("bytes_done", 0)' <<<"$s")" -ge "$2" ]; then
                        return 0
                fi
                sleep 0.05
        done
        fail "no cycle progress: $s"
}
points_b=$(status_b "$uuid" | jget '[p["id"] for p in d["points"]]')
qemu_io "$vm" vda "write -P 0x77 0 400M"
call_a replication_sync_now "{\"replication\": \"$uuid\"}" >/dev/null
wait_progress "$uuid" $((40 * 1024 * 1024))
stop_agent "$pid_b"
log "target killed mid-cycle"
start_agent b
n=$(status_a "$uuid" | jget 'd["cycles_total"]')
wait_cycles "$uuid" $((n + 1))
grep -q "resumes at disk 0 offset [1-9]" "$work/agent-b.log" || fail "the cycle did not resume from a mark"
same_as_source "$uuid"
log "target kill -9: resumed, ok"

qemu_io "$vm" vda "write -P 0x78 0 400M"
before=$(status_b "$uuid" | jget '[p["id"] for p in d["points"]]')
call_a replication_sync_now "{\"replication\": \"$uuid\"}" >/dev/null
wait_progress "$uuid" $((40 * 1024 * 1024))
stop_agent "$pid_a"
log "source killed mid-cycle"
sleep 1
[ "$(status_b "$uuid" | jget '[p["id"] for p in d["points"]]')" = "$before" ] ||
        fail "the target's points changed after the source died"
start_agent a
sync_and_wait "$uuid"
status_a "$uuid" >"$work/s4.json"
[ "$(jget 'd["kind_last_cycle"]' <"$work/s4.json")" = incremental ] || fail "after the source's restart: $(cat "$work/s4.json")"
same_as_source "$uuid"
log "source kill -9: incremental from the last point, ok"
: "$points_b"

# ---- 5. QEMU crash ----
qpid=$(cat "/run/libvirt/qemu/$vm.pid")
kill -9 "$qpid"
wait_domstate "$vm" "shut off"
call_a power_on "{\"instance\": \"$uuid\"}" >/dev/null || fail "power_on after the crash"
wait_domstate "$vm" running
qemu_io "$vm" vda "write -P 0x99 600M 2M"
sync_and_wait "$uuid"
status_a "$uuid" >"$work/s5.json"
[ "$(jget 'd["kind_last_cycle"]' <"$work/s5.json")" = resync ] || fail "after a QEMU crash: $(cat "$work/s5.json")"
same_as_source "$uuid"
qemu_io "$vm" vda "write -P 0x9a 610M 64k"
sync_and_wait "$uuid"
[ "$(status_a "$uuid" | jget 'd["kind_last_cycle"]')" = incremental ] || fail "no incremental after the resync"
same_as_source "$uuid"
log "QEMU crash: resync then incremental, ok"

# ---- 6. a peer without the right key ----
points=$(status_b "$uuid" | jget '[p["id"] for p in d["points"]]')
openssl s_client -connect "127.0.0.1:$port_b" -tls1_3 -psk_identity "$uuid" \
        -psk 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff </dev/null \
        >"$work/sclient.out" 2>&1 || true
sleep 0.5
grep -q "TLS handshake from 127.0.0.1:[0-9]* failed.*$uuid" "$work/agent-b.log" ||
        fail "the refused peer was not logged"
[ "$(status_b "$uuid" | jget '[p["id"] for p in d["points"]]')" = "$points" ] || fail "points changed"
log "wrong key refused: ok"

# ---- 7. pre-seeding ----
vm2="$prefix-b"
uuid2=$(spawn "$vm2") || fail "spawn $vm2"
wait_domstate "$vm2" running
call_a power_off "{\"instance\": \"$uuid2\"}" >/dev/null
wait_domstate "$vm2" "shut off"
mkdir -p "$work/seeds"
qemu-io -f qcow2 -c "write -P 0xa1 0 32M" "$(src_disk "$uuid2" 0)" >/dev/null
qemu-img convert -O qcow2 "$(src_disk "$uuid2" 0)" "$work/seeds/vda.qcow2"
chmod 644 "$work/seeds/vda.qcow2"
qemu-io -f qcow2 -c "write -P 0xa2 16M 1M" "$(src_disk "$uuid2" 0)" >/dev/null
call_a replication_enable "{\"instance\": \"$uuid2\", \"target_host\": \"$host_b\", \"rpo\": 600, \"disks\": [\"vda\"], \"compress\": true, \"seeds\": {\"vda\": \"$work/seeds/vda.qcow2\"}}" \
        >/dev/null || fail "enable with a seed"
sleep 1
expect_error b NoCommittedPoint "no committed point" replication_failover "{\"replication\": \"$uuid2\", \"force\": true, \"reason\": \"test\"}"
call_a power_on "{\"instance\": \"$uuid2\"}" >/dev/null
wait_domstate "$vm2" running
call_a replication_sync_now "{\"replication\": \"$uuid2\"}" >/dev/null
wait_cycles "$uuid2" 1
status_a "$uuid2" >"$work/s7.json"
[ "$(jget 'd["kind_last_cycle"]' <"$work/s7.json")" = seed ] || fail "seeded: $(cat "$work/s7.json")"
shipped=$(jget 'd["bytes_last_cycle"]' <"$work/s7.json")
[ "$shipped" -le $((1024 * 1024)) ] || fail "a seeded sync shipped $shipped bytes for 1 MiB of difference"
# compress: the 1 MiB of one repeated byte travels as a few KiB of zstd, so
# the wire carries less than the data (plus the 512 KiB of digests the
# target sent for the 1 GiB disk); uncompressed it would be over 1.5 MiB.
wire=$(jget 'd["wire_bytes_last_cycle"]' <"$work/s7.json")
[ "$wire" -lt "$shipped" ] || fail "compression: $wire bytes on the wire for $shipped shipped"
same_as_source "$uuid2"
log "pre-seed: shipped $shipped bytes, ok"

# ---- 8. test failover ----
call_b replication_test_failover "{\"replication\": \"$uuid\"}" >"$work/t8.json" || fail "test failover"
tvm=$(jget 'd["domain_name"]' <"$work/t8.json")
wait_domstate "$tvm" running
virsh -c "$uri" domif-getlink "$tvm" "$(virsh -c "$uri" domiflist "$tvm" | awk 'NR > 2 && $5 {print $5}')" | grep -q down ||
        fail "the test instance's NIC is not down"
qemu_io "$vm" vda "write -P 0xbb 800M 1M"
sync_and_wait "$uuid"
same_as_source "$uuid"
call_b replication_test_cleanup "{\"replication\": \"$uuid\"}" >/dev/null || fail "test cleanup"
virsh -c "$uri" dominfo "$tvm" >/dev/null 2>&1 && fail "the test instance is still defined"
log "test failover and cleanup: ok"

# ---- 8b. the source instance stops and starts again ----
/usr/bin/python3 "$(dirname "$0")/../notification_log.py" rabbit://guest:guest@localhost:5672/ \
        "$exchange" "$work/notes.jsonl" >"$work/notes.ready" 2>"$work/notes.err" &
notes_pid=$!
for _ in $(seq 1 150); do
        grep -q ready "$work/notes.ready" && break
        sleep 0.1
done
grep -q ready "$work/notes.ready" || fail "notification listener: $(cat "$work/notes.err")"
# wait_status UUID PYEXPR [SECONDS]: until the source's status of UUID
# satisfies PYEXPR (over d), up to SECONDS (20).
wait_status() {
        local s
        for _ in $(seq 1 $((${3:-20} * 5))); do
                s=$(status_a "$1") || fail "status of $1"
                [ "$(jget "$2" <<<"$s")" = true ] && return 0
                sleep 0.2
        done
        fail "replication $1: status never satisfied $2: $s"
}
n=$(status_a "$uuid2" | jget 'd["cycles_total"]')
virsh -c "$uri" destroy "$vm2" >/dev/null
wait_status "$uuid2" 'd["instance_presence"] == "stopped" and d["state"] == "instance-stopped"'
call_a replication_sync_now "{\"replication\": \"$uuid2\"}" >/dev/null || fail "sync_now"
wait_status "$uuid2" '(d["last_error"] or {}).get("class") == "InstanceInvalidState" and d["state"] == "instance-stopped" and d["next_cycle_in_seconds"] >= 20'
virsh -c "$uri" start "$vm2" >/dev/null
# The failed cycle is retried at once, well before the 30 s backoff it left.
wait_status "$uuid2" "d['instance_presence'] == 'here' and d['cycles_total'] > $n and d['state'] == 'ok'"
same_as_source "$uuid2"
# notified NAME PRESENCE: a notification NAME with that presence for uuid2.
notified() {
        py 'import json,sys
for line in open(sys.argv[1]):
    n = json.loads(line)
    d = n["payload"]["nova_object.data"]
    if n["event_type"] == sys.argv[2] and d.get("presence") == sys.argv[3] and d["replication"] == sys.argv[4]:
        sys.exit(0)
sys.exit(1)' "$work/notes.jsonl" "$1" "$2" "$uuid2"
}
for _ in $(seq 1 50); do
        notified replication.instance_available here && break
        sleep 0.2
done
notified replication.instance_unavailable stopped ||
        fail "no replication.instance_unavailable: $(cat "$work/notes.jsonl")"
notified replication.instance_available here ||
        fail "no replication.instance_available: $(cat "$work/notes.jsonl")"
grep -q '"priority": "warn", "event_type": "replication.instance_unavailable"' "$work/notes.jsonl" ||
        fail "replication.instance_unavailable is not a warning"
kill "$notes_pid"
notes_pid=
log "source instance stopped and started: ok"

# ---- 8c. the target is unreachable ----
stop_agent "$pid_b"
call_a replication_sync_now "{\"replication\": \"$uuid2\"}" >/dev/null || fail "sync_now"
# connect_retries (5) with 1-5 s between them, then the cycle fails.
wait_status "$uuid2" 'd["state"] == "target-unreachable" and d["last_error"]["class"] == "ChannelError"' 60
start_agent b
sync_and_wait "$uuid2"
[ "$(status_a "$uuid2" | jget 'd["state"]')" = ok ] || fail "state once the target is back"
same_as_source "$uuid2"
log "target unreachable, then back: ok"

# ---- 9. failover ----
expect_error b PrimaryAlive "is running on $host_a" replication_failover "{\"replication\": \"$uuid\"}"
expect_error b InvalidInput "force needs a reason" replication_failover "{\"replication\": \"$uuid\", \"force\": true}"
expect_error b ReplicationNotFound "no replica" replication_failover '{"replication": "00000000-0000-4000-8000-000000000001"}'
call_a replication_pause "{\"replication\": \"$uuid\"}" >/dev/null
call_a power_off "{\"instance\": \"$uuid\"}" >/dev/null
wait_domstate "$vm" "shut off"
status_a "$uuid" | jget 'd["instance_presence"]' | grep -qx stopped || fail "presence after power_off"
touch "$work/primary-up"
expect_error b PrimaryReachable "reachable at 192.0.2.10" replication_failover "{\"replication\": \"$uuid\"}"
rm -f "$work/primary-up"
call_b replication_failover "{\"replication\": \"$uuid\"}" >"$work/f9.json" || fail "failover"
rvm=$(jget 'd["domain_name"]' <"$work/f9.json")
[ "$(jget 'd["network"]' <"$work/f9.json")" = disconnected ] || fail "failover: $(cat "$work/f9.json")"
wait_domstate "$rvm" running
mac=$(virsh -c "$uri" domiflist "$rvm" | awk 'NR > 2 && $5 {print $5}')
virsh -c "$uri" domif-getlink "$rvm" "$mac" | grep -q down || fail "the recovered NIC is not down"
status_b "$uuid" | jget 'd["state"]' | grep -q failed-over || fail "status after failover"
call_b replication_connect_network "{\"replication\": \"$uuid\"}" >/dev/null || fail "connect network"
virsh -c "$uri" domif-getlink "$rvm" "$mac" | grep -q up || fail "the recovered NIC is not up"
expect_error b ReplicationFailedOver "already failed over" replication_failover "{\"replication\": \"$uuid\"}"
log "failover: ok ($rvm)"

# ---- 10. certificates ----
mkdir -p "$work/pki"
(
        cd "$work/pki"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
                -out ca.pem -subj /CN=nestor-test-ca -days 2
        for n in "$host_a" "$host_b" "$host_c" "$prefix-rogue"; do
                openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$n.key" \
                        -out "$n.csr" -subj "/CN=$n"
                openssl x509 -req -in "$n.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
                        -out "$n.pem" -days 2
        done
) >"$work/pki.out" 2>&1 || fail "making certificates: $(cat "$work/pki.out")"
with_cert() { # with_cert SITE CERT: the site's agent restarted with that certificate
        local pid="pid_$1"
        stop_agent "${!pid}"
        write_conf "$1" "$2"
        start_agent "$1"
}
# refused_cycle UUID TEXT: sync_now fails with AuthenticationFailed saying
# TEXT, and the target's points stay as they were.
refused_cycle() {
        local points s
        points=$(status_b "$1" | jget '[p["id"] for p in d["points"]]')
        call_a replication_sync_now "{\"replication\": \"$1\"}" >/dev/null || fail "sync_now"
        for _ in $(seq 1 300); do
                s=$(status_a "$1")
                [ "$(jget 'bool(d["last_error"]) and d["state"] != "syncing"' <<<"$s")" = true ] && break
                sleep 0.2
        done
        [ "$(jget 'd["last_error"]["class"]' <<<"$s")" = AuthenticationFailed ] ||
                fail "expected AuthenticationFailed: $s"
        jget 'd["last_error"]["message"]' <<<"$s" | grep -qF "$2" || fail "expected '$2': $s"
        [ "$(status_b "$1" | jget '[p["id"] for p in d["points"]]')" = "$points" ] ||
                fail "points changed"
}
with_cert a "$host_a"
with_cert b "$host_b"
qemu_io "$vm2" vda "write -P 0xc1 100M 1M"
sync_and_wait "$uuid2"
same_as_source "$uuid2"
with_cert a "$prefix-rogue"
refused_cycle "$uuid2" "presented a certificate for $prefix-rogue, but replication $uuid2 comes from $host_a"
with_cert a "$host_a"
with_cert b "$prefix-rogue"
refused_cycle "$uuid2" "presented a certificate for $prefix-rogue, but replication $uuid2 goes to $host_b"
with_cert b "$host_b"
sync_and_wait "$uuid2" # nothing changed since the last point: an empty cycle
[ "$(status_a "$uuid2" | jget 'd["bytes_last_cycle"]')" = 0 ] || fail "an empty cycle shipped data"
same_as_source "$uuid2"
log "certificates: cycle between the nodes, a rogue source and a rogue target refused, ok"

# ---- 11. the instance moves to site C ----
write_conf c "$host_c"
start_agent c
enable_c="{\"instance\": \"$uuid2\", \"target_host\": \"$host_b\", \"rpo\": 600, \"disks\": [\"vda\"]}"
expect_error c ReplicationExists "still runs on $host_a" replication_enable "$enable_c"
points=$(status_b "$uuid2" | jget '[p["id"] for p in d["points"]]')
stop_agent "$pid_a" # site A is gone; its agent does not answer
pid_a=
qemu_io "$vm2" vda "write -P 0xc2 300M 1M"
call_c replication_enable "$enable_c" >/dev/null || fail "enable on site C"
for _ in $(seq 1 300); do
        s=$(call_c replication_status "{\"replication\": \"$uuid2\"}")
        [ "$(jget 'd["cycles_total"] >= 1 and d["state"] != "syncing"' <<<"$s")" = true ] && break
        sleep 0.2
done
[ "$(jget 'd["kind_last_cycle"]' <<<"$s")" = resync ] || fail "site C's first cycle: $s"
shipped=$(jget 'd["bytes_last_cycle"]' <<<"$s")
[ "$shipped" -le $((2 * 1024 * 1024)) ] || fail "site C's first cycle shipped $shipped bytes for 1 MiB changed"
same_as_source "$uuid2"
s=$(status_b "$uuid2")
[ "$(jget 'd["source_host"]' <<<"$s")" = "$host_c" ] || fail "the replica's source: $s"
py 'import json,sys; old=json.loads(sys.argv[1]); new=[p["id"] for p in json.loads(sys.argv[2])["points"]]; sys.exit(0 if set(old) <= set(new) and len(new) == len(old) + 1 else 1)' \
        "$points" "$s" || fail "points after the handover: before $points, now $s"
grep -q "handed over from $host_a to $host_c" "$work/agent-b.log" || fail "the handover was not logged"
call_b replication_target_remove "{\"replication\": \"$uuid2\", \"source_host\": \"$host_a\"}" >"$work/r11.json" ||
        fail "target_remove from the old source"
[ "$(jget 'd["removed"]' <"$work/r11.json")" = false ] || fail "the old source removed the replica: $(cat "$work/r11.json")"
status_b "$uuid2" >/dev/null || fail "the replica is gone"
# Site A back (it was down at the handover, nobody told it): its next cycle
# is refused, it asks the target whose the replica is and steps back; its
# disable leaves C's replica.
start_agent a
call_a replication_sync_now "{\"replication\": \"$uuid2\"}" >/dev/null || fail "sync_now on site A"
wait_status "$uuid2" "d['state'] == 'replaced' and d['replaced_by'] == '$host_c'" 30
grep -q "$host_c took the replica over" "$work/agent-a.log" || fail "site A did not log that it was replaced"
# What the target tells an old source that answers at the handover.
call_a replication_source_replaced "{\"replication\": \"$uuid2\", \"source_host\": \"$host_c\"}" >"$work/r11.json" ||
        fail "replication_source_replaced"
[ "$(jget 'd["state"] + " " + d["replaced_by"]' <"$work/r11.json")" = "replaced $host_c" ] ||
        fail "status after replaced: $(cat "$work/r11.json")"
expect_error a ReplicationReplaced "$host_c replicates" replication_sync_now "{\"replication\": \"$uuid2\"}"
expect_error a ReplicationReplaced "$host_c replicates" replication_resume "{\"replication\": \"$uuid2\"}"
call_a replication_disable "{\"replication\": \"$uuid2\"}" >"$work/r11.json" || fail "disable on site A"
[ "$(jget 'str(d["target_removed"]) + " " + d["target_source_host"]' <"$work/r11.json")" = "False $host_c" ] ||
        fail "disable on the replaced source: $(cat "$work/r11.json")"
[ "$(status_b "$uuid2" | jget 'd["source_host"]')" = "$host_c" ] || fail "the replica after A's disable"
log "instance moved: site C took the replica over ($shipped bytes shipped), the old source stepped back, ok"
log "PASS"
