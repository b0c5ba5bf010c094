#!/usr/bin/env bash
# Quiesce with a real guest OS and a real qemu-guest-agent: a Linux guest
# (tools/guest-image.sh: Debian's kernel, busybox, Debian's qemu-ga with a
# freeze hook) spawned by Nestor on site A, replicated to site B (two agents,
# one broker, one libvirtd; QEMU under TCG, which any host has).
#
#   1. the instance Nestor spawns has the agent's port: the guest's agent
#      answers;
#   2. snapshot_create with quiesce "required": the agent froze and thawed
#      /data (the guest's freeze hook ran), consistency "filesystem", and a
#      file the guest wrote without sync just before is in the snapshot's
#      image (the freeze flushed it: read back with debugfs);
#   3. replication with quiesce "required": the same for each cycle; the
#      target's point holds the file the guest wrote without sync;
#  3b. a guest whose freeze hook fails: a required snapshot and a required
#      cycle fail with QuiesceFailed and make nothing (no snapshot, no
#      point), a preferred snapshot falls back to crash consistency with a
#      note, and the guest is never left frozen; fixed, cycles go on;
#   4. test failover on B: the isolated copy boots from the replica, its
#      /data holds the file, and the guest itself sees its link down;
#   5. failover once the primary is stopped: the recovered guest sees no
#      carrier until replication_connect_network, then sees it.
#
# Needs root (qemu:///system) and Debian's package archive (the guest
# image); exits 77 (skip) without libvirtd/QEMU.
# Usage: test_guest_agent_qemu.sh BUILD_DIR
# shellcheck disable=SC2154 # host_S, port_S and pid_S: set by qemu_test_begin
set -euo pipefail

build=$(cd "$1" && pwd)
sites="a b"
net="nstga$$"
# shellcheck source=tests/integration/qemu_test.sh
. "$(dirname "$0")/qemu_test.sh"
cleanup_extra() { virsh -c "$uri" net-destroy "$net" >/dev/null 2>&1; }
qemu_test_begin ga qemu-nbd debugfs
"$(dirname "$0")/../../tools/guest-image.sh" "$build/guest-image" || fail "cannot build the guest image"
mkdir -p "$work/a/images"
cp "$build/guest-image/boot.img" "$work/a/images/boot.img"

virsh -c "$uri" net-create /dev/stdin >/dev/null <<EOF || fail "cannot create network $net"
<network><name>$net</name><bridge name='${net:0:15}' stp='off'/></network>
EOF

for site in a b; do
        site_conf "$site" "libvirt, snapshot, replication" "$uri" <<EOF
[libvirt]
# A Linux guest under KVM would be quicker, but not every host that has
# /dev/kvm runs one (a PVM host does not); TCG runs it everywhere.
virt_type = qemu
[snapshot]
reserve_mb = 0
[replication]
rpc_timeout = 8
primary_check_timeout = 5
EOF
done
call_a() { site_call a "$@"; }
call_b() { site_call b "$@"; }
site_start a
site_start b

# ---- the guest, through its agent ----
agent_cmd() { virsh -c "$uri" qemu-agent-command "$1" "$2" 2>"$work/agent.err"; }
wait_guest() { # wait_guest DOMAIN: until its agent answers (the guest booted)
        for _ in $(seq 1 600); do
                agent_cmd "$1" '{"execute": "guest-ping"}' >/dev/null && return 0
                [ "$(domstate "$1")" = running ] || fail "$1 is $(domstate "$1")"
                sleep 0.5
        done
        fail "the guest agent of $1 never answered: $(cat "$work/agent.err")"
}
# gexec DOMAIN COMMAND: runs COMMAND with the guest's sh; prints its stdout.
gexec() {
        local req pid st
        req=$(py 'import json,sys; print(json.dumps({"execute": "guest-exec", "arguments": {
            "path": "/bin/sh", "arg": ["-c", sys.argv[1]], "capture-output": True}}))' "$2")
        pid=$(agent_cmd "$1" "$req" | jget 'd["return"]["pid"]') ||
                fail "guest-exec on $1: $(cat "$work/agent.err")"
        for _ in $(seq 1 300); do
                st=$(agent_cmd "$1" "{\"execute\": \"guest-exec-status\", \"arguments\": {\"pid\": $pid}}") ||
                        fail "guest-exec-status on $1: $(cat "$work/agent.err")"
                if [ "$(jget 'd["return"]["exited"]' <<<"$st")" = true ]; then
                        [ "$(jget 'd["return"]["exitcode"]' <<<"$st")" = 0 ] ||
                                fail "'$2' in $1 failed: $st"
                        jget 'd["return"].get("out-data", "")' <<<"$st" | base64 -d
                        return 0
                fi
                sleep 0.1
        done
        fail "'$2' in $1 did not finish"
}
freezes() { gexec "$1" 'grep -c "fsfreeze freeze" /run/nestor-guest.log || true'; }
thaws() { gexec "$1" 'grep -c "fsfreeze thaw" /run/nestor-guest.log || true'; }
# froze_and_thawed N: the guest's hook ran N freezes and N thaws so far.
froze_and_thawed() { [ "$(freezes "$vm")" = "$1" ] && [ "$(thaws "$vm")" = "$1" ]; }
carrier() { gexec "$1" 'cat /sys/class/net/eth0/carrier'; }
# boots_from_replica DOMAIN: it boots, its /data holds what the guest wrote
# last, and it sees no carrier (its NIC's link is down).
boots_from_replica() {
        wait_guest "$1"
        [ "$(gexec "$1" 'cat /data/repl-file')" = "$want" ] || fail "$1: /data differs"
        [ "$(carrier "$1")" = 0 ] || fail "$1: the guest sees a carrier"
}
# in_image IMAGE FILE: FILE's content in the guest's ext2 /data disk image.
in_image() {
        rm -f "$work/img.raw"
        qemu-img convert -U -O raw "$1" "$work/img.raw" || fail "cannot read $1"
        debugfs -R "cat /$2" "$work/img.raw" 2>/dev/null
}

vm=$prefix-vm
uuid=$(call_a spawn "{\"spec\": {\"name\": \"$vm\", \"vcpus\": 1, \"memory_mb\": 256,
        \"disks\": [{\"image\": \"$work/a/images/boot.img\"}, {\"size_gb\": 1}],
        \"nics\": [{\"network\": \"$net\"}]}}" | jget 'd["uuid"]') || fail "spawn $vm"
[[ "$(virsh -c "$uri" dumpxml "$vm")" == *"name='org.qemu.guest_agent.0'"* ]] ||
        fail "$vm has no agent port"
wait_guest "$vm"
gexec "$vm" 'grep -q "data ext4" /run/nestor-guest.log' || fail "the guest has no /data"
[ "$(carrier "$vm")" = 1 ] || fail "the source guest has no carrier"
log "1. $vm ($uuid) booted; its agent answers"

# ---- 2. a quiesced snapshot ----
gexec "$vm" 'echo "before the snapshot $$" > /data/snap-file' >/dev/null # no sync
want=$(gexec "$vm" 'cat /data/snap-file')
call_a snapshot_create "{\"instance\": \"$uuid\", \"name\": \"q1\", \"quiesce\": \"required\"}" \
        >"$work/snap.json" || fail "quiesced snapshot"
[ "$(jget 'd["consistency"]' <"$work/snap.json")" = filesystem ] ||
        fail "snapshot consistency: $(cat "$work/snap.json")"
froze_and_thawed 1 ||
        fail "the guest did not freeze and thaw once: $(gexec "$vm" 'cat /run/nestor-guest.log')"
img=$(jget '[i["path"] for i in d["images"] if i["disk"] == "vdb"][0]' <"$work/snap.json")
[ "$(in_image "$img" snap-file)" = "$want" ] ||
        fail "the snapshot's image lacks what the guest wrote before the freeze"
call_a snapshot_delete "{\"instance\": \"$uuid\", \"name\": \"q1\"}" >/dev/null || fail "delete q1"
log "2. quiesced snapshot: frozen and thawed; the unsynced write is in the snapshot"

# ---- 3. quiesced replication cycles ----
status_a() { call_a replication_status "{\"replication\": \"$uuid\"}"; }
wait_cycles() { # wait_cycles N
        local s
        for _ in $(seq 1 900); do
                s=$(status_a) || fail "status"
                [ "$(jget 'd["cycles_total"]' <<<"$s")" -ge "$1" ] &&
                        [ "$(jget 'd["state"]' <<<"$s")" != syncing ] && return 0
                sleep 0.2
        done
        fail "no cycle $1: $s"
}
call_a replication_enable "{\"instance\": \"$uuid\", \"target_host\": \"$host_b\", \"rpo\": 3600,
        \"quiesce\": \"required\", \"points_in_time\": 24}" >/dev/null || fail "enable"
wait_cycles 1
[ "$(status_a | jget 'd["last_point"]["consistency"]')" = filesystem ] ||
        fail "first point not quiesced: $(status_a)"
froze_and_thawed 2 || fail "no freeze for the first cycle"
gexec "$vm" 'echo "replicated $$" > /data/repl-file' >/dev/null # no sync
want=$(gexec "$vm" 'cat /data/repl-file')
call_a replication_sync_now "{\"replication\": \"$uuid\"}" >/dev/null || fail "sync_now"
wait_cycles 2
[ "$(status_a | jget 'd["last_point"]["consistency"]')" = filesystem ] ||
        fail "second point not quiesced"
froze_and_thawed 3 || fail "no freeze for the second cycle"
status_b=$(call_b replication_status "{\"replication\": \"$uuid\"}") || fail "target status"
[ "$(jget 'd["last_point"]["consistency"]' <<<"$status_b")" = filesystem ] ||
        fail "the target's point is not marked quiesced: $status_b"
img=$(jget 'd["last_point"]["images"][1]' <<<"$status_b")
[ "$(in_image "$img" repl-file)" = "$want" ] ||
        fail "the target's point lacks what the guest wrote before the freeze"
log "3. quiesced cycles: frozen and thawed each time; the unsynced write is on the target"

# ---- 3b. a freeze the guest refuses ----
thawed() { [ "$(agent_cmd "$vm" '{"execute": "guest-fsfreeze-status"}' | jget 'd["return"]')" = thawed ]; }
gexec "$vm" 'touch /run/nestor-fail-freeze' >/dev/null
if call_a snapshot_create "{\"instance\": \"$uuid\", \"name\": \"q2\", \"quiesce\": \"required\"}" \
        >/dev/null 2>"$work/err"; then
        fail "a required snapshot succeeded although the guest refused to freeze"
fi
grep -q QuiesceFailed "$work/err" || fail "required snapshot, freeze refused: $(cat "$work/err")"
[ "$(call_a snapshot_list "{\"instance\": \"$uuid\"}" | jget 'len(d)')" = 0 ] ||
        fail "a failed quiesce left a snapshot"
thawed || fail "the guest was left frozen after a refused snapshot freeze"
call_a snapshot_create "{\"instance\": \"$uuid\", \"name\": \"q3\", \"quiesce\": \"preferred\"}" \
        >"$work/snap.json" || fail "preferred snapshot"
[ "$(jget 'd["consistency"] == "crash" and bool(d.get("quiesce_note"))' <"$work/snap.json")" = true ] ||
        fail "a preferred snapshot of a guest that refuses to freeze: $(cat "$work/snap.json")"
call_a snapshot_delete "{\"instance\": \"$uuid\", \"name\": \"q3\"}" >/dev/null || fail "delete q3"
points=$(call_b replication_status "{\"replication\": \"$uuid\"}" | jget '[p["id"] for p in d["points"]]')
call_a replication_sync_now "{\"replication\": \"$uuid\"}" >/dev/null || fail "sync_now"
for _ in $(seq 1 300); do
        s=$(status_a)
        [ "$(jget '(d["last_error"] or {}).get("class")' <<<"$s")" = QuiesceFailed ] && break
        sleep 0.2
done
[ "$(jget '(d["last_error"] or {}).get("class")' <<<"$s")" = QuiesceFailed ] ||
        fail "a required cycle of a guest that refuses to freeze: $s"
[ "$(call_b replication_status "{\"replication\": \"$uuid\"}" | jget '[p["id"] for p in d["points"]]')" = "$points" ] ||
        fail "a cycle that could not quiesce changed the target's points"
thawed || fail "the guest was left frozen after a refused cycle freeze"
gexec "$vm" 'rm /run/nestor-fail-freeze' >/dev/null
n=$(status_a | jget 'd["cycles_total"]')
call_a replication_sync_now "{\"replication\": \"$uuid\"}" >/dev/null || fail "sync_now"
wait_cycles $((n + 1))
[ "$(status_a | jget 'd["last_point"]["consistency"]')" = filesystem ] || fail "the cycle after the fix"
log "3b. a refused freeze: QuiesceFailed, nothing made, the guest thawed; preferred falls back"

# ---- 4. test failover: the copy boots from the replica, link down ----
call_b replication_test_failover "{\"replication\": \"$uuid\"}" >"$work/tf.json" || fail "test failover"
tvm=$(jget 'd["domain_name"]' <"$work/tf.json")
boots_from_replica "$tvm"
call_b replication_test_cleanup "{\"replication\": \"$uuid\"}" >/dev/null || fail "test cleanup"
log "4. test failover: $tvm booted from the replica, /data intact, no carrier"

# ---- 5. failover, then the network ----
virsh -c "$uri" destroy "$vm" >/dev/null || fail "stop the primary"
call_b replication_failover "{\"replication\": \"$uuid\"}" >"$work/f.json" || fail "failover"
rvm=$(jget 'd["domain_name"]' <"$work/f.json")
boots_from_replica "$rvm"
call_b replication_connect_network "{\"replication\": \"$uuid\"}" >/dev/null || fail "connect network"
[ "$(carrier "$rvm")" = 1 ] || fail "the recovered guest sees no carrier after connect_network"
log "5. failover: $rvm booted, no carrier until connect_network, then a carrier"
log "ok"
