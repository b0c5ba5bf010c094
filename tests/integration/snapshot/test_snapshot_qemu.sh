#!/usr/bin/env bash
# The snapshot plugin against a real libvirtd + QEMU (qemu:///system),
# driven as an operator would: nestor-agent with enabled_plugins = libvirt,
# snapshot, and nestorctl over the real broker. A guest without an OS (the
# libvirt plugin's spawn with an empty disk) is enough for every check:
#
#   1. disk-only and memory snapshots of a running guest; the sizes reported
#      are the files' (stat); list and get; the notifications;
#   2. every bad input: unknown instance, bad names and arguments, a
#      duplicate name, quiesce "required" without a guest agent, a memory
#      snapshot of a stopped instance, a snapshot of another instance;
#   3. delete commits the overlays back and leaves no file behind;
#   4. revert (disk-only and memory) leaves the guest running on new
#      overlays, and deleting afterwards leaves only the guest's chain;
#   5. estimate shows the free space, and a second agent whose snapshot_dir
#      is a 16 MiB tmpfs refuses a memory snapshot with InsufficientStorage,
#      creating nothing.
#
# Starts virtlogd and libvirtd when they are not running (no systemd here)
# and stops what it started; removes every domain, file and mount it made,
# also on failure. Needs root (qemu:///system); exits 77 (skip) otherwise.
# Usage: test_snapshot_qemu.sh BUILD_DIR
# shellcheck disable=SC2154 # host_S, port_S and pid_S: set by qemu_test_begin
set -euo pipefail

build=$(cd "$1" && pwd)
sites="a b"
mounted=
# shellcheck source=tests/integration/qemu_test.sh
. "$(dirname "$0")/../qemu_test.sh"
CTL_TIMEOUT=300
cleanup_extra() { [ -n "$mounted" ] && umount "$mounted"; }
qemu_test_begin snap qemu-img

mkdir -p "$work/tiny"

write_conf() { # write_conf FILE HOST [EXTRA SNAPSHOT OPTIONS...]
        local file=$1 h=$2
        shift 2
        {
                echo "[DEFAULT]"
                echo "transport_url = rabbit://guest:guest@localhost:5672/"
                echo "host = $h"
                echo "control_exchange = $exchange"
                echo "plugin_dir = $build/plugins"
                echo "enabled_plugins = libvirt, snapshot"
                echo "state_path = $work/state"
                echo "[libvirt]"
                echo "uri = $uri"
                echo "[snapshot]"
                local o
                for o in "$@"; do echo "$o"; done
                echo "[oslo_messaging_rabbit]"
                echo "rabbit_retry_interval = 0.1"
        } >"$file"
}
write_conf "$work/nestor.conf" "$host_a" "reserve_mb = 64" "schedule_check_interval = 5"

# nestorctl against agent CONF (retried while the broker is unreachable
# before the request goes out, as test_qemu.sh does).
ctl() { ctl_conf "$work/nestor.conf" "$host_a" "$@"; }
call() { # call METHOD JSON: the JSON result on stdout
        ctl --json call "$1" --args "$2"
}
# expect_error CLASS TEXT METHOD JSON: the call fails with CLASS and TEXT.
expect_error() {
        local cls=$1 text=$2
        shift 2
        if ctl call "$1" --args "$2" >/dev/null 2>"$work/err"; then
                fail "$1 $2 succeeded; expected $cls"
        fi
        grep -q "$cls" "$work/err" || fail "$1 $2: expected $cls, got: $(cat "$work/err")"
        grep -q -- "$text" "$work/err" || fail "$1 $2: message lacks '$text': $(cat "$work/err")"
}
snap_count() { virsh -c "$uri" snapshot-list --name "$1" | grep -c . || true; }
disk_source() { virsh -c "$uri" domblklist "$1" --details | awk '$2 == "disk" && !f {print $4; f = 1}'; }
# check_sizes JSON_FILE: every file of a snapshot has the size stat gives.
check_sizes() {
        local path size n=0
        while read -r path size; do
                [ -f "$path" ] || fail "reported file $path does not exist"
                [ "$(stat -c %s "$path")" = "$size" ] ||
                        fail "$path: reported $size bytes, stat says $(stat -c %s "$path")"
                n=$((n + 1))
        done < <(py 'import json,sys; [print(f["path"], f["size"]) for f in json.load(open(sys.argv[1]))["files"]]' "$1")
        [ $n -gt 0 ] || fail "no files reported in $1"
}

start_agent() { # start_agent CONF HOST LOG: sets started_pid
        "${agent_env[@]}" "$build/nestor-agent" --config-file "$1" 2>"$3" &
        started_pid=$!
        wait_agent "$started_pid" "$3" 0 "$1" "$2" list_instances
}
start_agent "$work/nestor.conf" "$host_a" "$work/agent.log"
pid_a=$started_pid

# ---- guests ----

spawn() { # spawn NAME MEMORY_MB [EXTRA SPEC]: prints the uuid
        call spawn "{\"spec\": {\"name\": \"$1\", \"vcpus\": 1, \"memory_mb\": $2, \"disks\": [{\"size_gb\": 1}]${3:-}}}" |
                jget 'd["uuid"]'
}
vm="$prefix-a"
uuid=$(spawn "$vm" 256) || fail "spawn $vm"
wait_domstate "$vm" running
idir="$work/state/instances/$uuid"
sdir="$work/state/snapshots/$uuid"
base_disk=$(disk_source "$vm")
[ "$base_disk" = "$idir/disk0.qcow2" ] || fail "unexpected disk $base_disk"
other="$prefix-b"
other_uuid=$(spawn "$other" 128 ', "guest_agent": false') || fail "spawn $other"
log "guests $vm ($uuid) and $other ($other_uuid) running"

# ---- 2. bad input (nothing may change) ----

expect_error InstanceNotFound "not found" snapshot_create '{"instance": "no-such-guest", "name": "x"}'
expect_error InstanceNotFound "not found" snapshot_list '{"instance": "00000000-0000-4000-8000-000000000001"}'
expect_error InvalidInput "snapshot name" snapshot_create "{\"instance\": \"$vm\", \"name\": \"bad/name\"}"
expect_error InvalidInput "snapshot name" snapshot_create "{\"instance\": \"$vm\", \"name\": \"\"}"
expect_error InvalidInput "snapshot name" snapshot_create "{\"instance\": \"$vm\", \"name\": \"$(printf 'x%.0s' $(seq 1 65))\"}"
expect_error InvalidInput "quiesce must be" snapshot_create "{\"instance\": \"$vm\", \"name\": \"q\", \"quiesce\": \"always\"}"
expect_error InvalidInput "unexpected argument 'colour'" snapshot_create "{\"instance\": \"$vm\", \"name\": \"q\", \"colour\": 1}"
expect_error InvalidInput "memory" snapshot_create "{\"instance\": \"$vm\", \"name\": \"q\", \"memory\": \"yes\"}"
expect_error SnapshotNotFound "has no snapshot 'nope'" snapshot_get "{\"instance\": \"$vm\", \"name\": \"nope\"}"
expect_error SnapshotNotFound "has no snapshot 'nope'" snapshot_delete "{\"instance\": \"$vm\", \"name\": \"nope\"}"
expect_error SnapshotNotFound "has no snapshot 'nope'" snapshot_revert "{\"instance\": \"$vm\", \"name\": \"nope\"}"
# A guest without a guest agent cannot be quiesced: "required" fails, nothing made.
expect_error QuiesceFailed "guest agent is not connected" snapshot_create "{\"instance\": \"$vm\", \"name\": \"q1\", \"quiesce\": \"required\"}"
[ "$(snap_count "$vm")" = 0 ] || fail "a failed quiesce left a snapshot"
[ "$(ls "$idir")" = "disk0.qcow2" ] || fail "a failed quiesce left files: $(ls "$idir")"
[ -z "$(ls -A "$sdir" 2>/dev/null)" ] || fail "a failed quiesce left records: $(ls "$sdir")"
# Without a guest agent channel a schedule that requires quiesce would fail
# every run: refused when set.
expect_error InvalidInput "has no guest agent channel" snapshot_schedule_set "{\"instance\": \"$other\", \"schedule\": {\"interval\": \"1h\", \"retention\": {\"keep_last\": 1}, \"quiesce\": \"required\"}}"
expect_error ScheduleNotFound "" snapshot_schedule_get "{\"instance\": \"$other\"}"
log "bad input: ok"

# ---- 1. snapshots of a running guest ----

call snapshot_estimate "{\"instance\": \"$vm\", \"memory\": true}" >"$work/est.json" || fail "estimate"
log "estimate: $(cat "$work/est.json")"
free=$(jget 'd["where"][0]["free_bytes"]' <"$work/est.json")
[ "$free" -gt 0 ] || fail "estimate shows no free space"
mem_est=$(jget 'd["memory_bytes"]' <"$work/est.json")
if [ "$mem_est" -le $((3 * 1024 * 1024)) ] || [ "$mem_est" -gt $(((256 + 3) * 1024 * 1024)) ]; then
        fail "memory estimate $mem_est outside (3 MiB, 259 MiB]"
fi
[ "$(jget 'd["fits"]' <"$work/est.json")" = true ] || fail "estimate says it does not fit"

call snapshot_create "{\"instance\": \"$vm\", \"name\": \"s1\", \"description\": \"first <one> & only\"}" \
        >"$work/s1.json" || fail "create s1"
[ "$(jget 'd["consistency"]' <"$work/s1.json")" = crash ] || fail "s1 consistency: $(cat "$work/s1.json")"
jget 'd["quiesce_note"]' <"$work/s1.json" | grep -q "guest agent is not connected" ||
        fail "s1: no note on the quiesce fallback"
[ "$(jget 'd["memory"]' <"$work/s1.json")" = false ] || fail "s1 memory"
check_sizes "$work/s1.json"
[ "$(disk_source "$vm")" = "$idir/vda.snap-s1.qcow2" ] || fail "s1: disk is $(disk_source "$vm")"
expect_error SnapshotExists "already has a snapshot named 's1'" snapshot_create "{\"instance\": \"$vm\", \"name\": \"s1\"}"

call snapshot_create "{\"instance\": \"$vm\", \"name\": \"m1\", \"memory\": true}" >"$work/m1.json" ||
        fail "create m1"
check_sizes "$work/m1.json"
[ "$(jget 'd["memory"]' <"$work/m1.json")" = true ] || fail "m1 memory"
[ "$(jget 'd["consistency"]' <"$work/m1.json")" = memory ] || fail "m1 consistency"
memfile=$(jget '[f["path"] for f in d["files"] if f["kind"]=="memory"][0]' <"$work/m1.json")
[ "$memfile" = "$sdir/m1.mem" ] || fail "memory file at $memfile"
head -c 16 "$memfile" | grep -q LibvirtQemudSave || fail "$memfile is not a libvirt save image"
[ "$(domstate "$vm")" = running ] || fail "the guest is not running after a live memory snapshot"
log "m1: memory file $(stat -c %s "$memfile") bytes (estimate $mem_est)"

call snapshot_list "{\"instance\": \"$uuid\"}" >"$work/list.json" || fail "list"
[ "$(jget '[s["name"] for s in d]' <"$work/list.json")" = '["s1", "m1"]' ] ||
        fail "list: $(cat "$work/list.json")"
call snapshot_get "{\"instance\": \"$vm\", \"name\": \"s1\"}" >"$work/get.json" || fail "get"
[ "$(jget 'd["description"]' <"$work/get.json")" = "first <one> & only" ] || fail "get description"
[ "$(jget 'd["domain_state"]' <"$work/get.json")" = running ] || fail "get domain_state"
[ "$(jget 'd["images"][0]["path"]' <"$work/get.json")" = "$base_disk" ] || fail "get images"
check_sizes "$work/get.json"
call snapshot_get "{\"instance\": \"$vm\", \"name\": \"m1\"}" >"$work/get.json" || fail "get m1"
[ "$(jget 'd["parent"]' <"$work/get.json")" = s1 ] || fail "m1 parent"
grep -q "($uuid): instance.snapshot.end" "$work/agent.log" || fail "no instance.snapshot.end"
log "create, list, get: ok"

# Another instance's snapshot is not this one's.
call snapshot_create "{\"instance\": \"$other\", \"name\": \"o1\", \"quiesce\": \"off\"}" >/dev/null ||
        fail "create o1"
expect_error SnapshotNotFound "belongs to instance $other_uuid" snapshot_revert "{\"instance\": \"$vm\", \"name\": \"o1\"}"
grep -q "$uuid" "$work/err" || fail "the error does not name $vm: $(cat "$work/err")"

# ---- 3. delete: committed, nothing left ----

call snapshot_delete "{\"instance\": \"$vm\", \"name\": \"m1\"}" >"$work/del.json" || fail "delete m1"
[ ! -e "$memfile" ] || fail "the memory file is left"
call snapshot_delete "{\"instance\": \"$vm\", \"name\": \"s1\"}" >/dev/null || fail "delete s1"
[ "$(ls "$idir")" = "disk0.qcow2" ] || fail "files left after delete: $(ls "$idir")"
[ -z "$(ls -A "$sdir" 2>/dev/null)" ] || fail "records left after delete: $(ls "$sdir")"
[ "$(disk_source "$vm")" = "$base_disk" ] || fail "the disk is $(disk_source "$vm") after delete"
[ "$(snap_count "$vm")" = 0 ] || fail "snapshots left"
[ "$(domstate "$vm")" = running ] || fail "delete stopped the guest"
log "delete: ok"

# ---- 4. revert ----

call snapshot_create "{\"instance\": \"$vm\", \"name\": \"s2\"}" >/dev/null || fail "create s2"
call snapshot_create "{\"instance\": \"$vm\", \"name\": \"s3\"}" >/dev/null || fail "create s3"
call snapshot_revert "{\"instance\": \"$vm\", \"name\": \"s2\"}" >"$work/rev.json" || fail "revert s2"
[ "$(jget 'd["state"]' <"$work/rev.json")" = running ] || fail "revert s2: $(cat "$work/rev.json")"
wait_domstate "$vm" running
src=$(disk_source "$vm")
case $src in "$idir"/vda.revert-s2-*.qcow2) ;; *) fail "after revert the disk is $src" ;; esac
[ "$(qemu-img info --output=json -U "$src" | jget 'd["backing-filename"]')" = "$base_disk" ] ||
        fail "the new overlay is not on s2's image"
call snapshot_create "{\"instance\": \"$vm\", \"name\": \"m2\", \"memory\": true}" >/dev/null ||
        fail "create m2"
call snapshot_revert "{\"instance\": \"$vm\", \"name\": \"m2\"}" >"$work/rev.json" ||
        fail "revert m2"
[ "$(jget 'd["state"]' <"$work/rev.json")" = running ] || fail "revert m2: $(cat "$work/rev.json")"
wait_domstate "$vm" running
log "revert: ok ($(jget 'd["duration_ms"]' <"$work/rev.json") ms for the memory revert)"
# s3 lives on a branch the reverts left; its base is shared: deleting s2 first is refused.
expect_error SnapshotInUse "another branch" snapshot_delete "{\"instance\": \"$vm\", \"name\": \"s2\"}"
for s in s3 m2 s2; do
        call snapshot_delete "{\"instance\": \"$vm\", \"name\": \"$s\"}" >/dev/null || fail "delete $s"
done
[ "$(snap_count "$vm")" = 0 ] || fail "snapshots left after the reverts"
chain=$(qemu-img info -U --backing-chain --output=json "$(disk_source "$vm")" |
        jget '" ".join(sorted(i["filename"] for i in d))')
for f in "$idir"/*; do
        case " $chain " in *" $f "*) ;; *) fail "file left after revert + delete: $f (chain: $chain)" ;; esac
done
[ -z "$(ls -A "$sdir" 2>/dev/null)" ] || fail "records left: $(ls "$sdir")"
log "delete after revert: ok (chain: $chain)"

# A memory snapshot needs a running guest.
call power_off "{\"instance\": \"$vm\", \"timeout\": 0}" >/dev/null || fail "power_off"
wait_domstate "$vm" "shut off"
expect_error InstanceInvalidState "needs a running instance" snapshot_create "{\"instance\": \"$vm\", \"name\": \"mx\", \"memory\": true}"
call snapshot_create "{\"instance\": \"$vm\", \"name\": \"off1\"}" >"$work/off.json" ||
        fail "disk-only snapshot of a stopped guest"
[ "$(jget 'd["consistency"]' <"$work/off.json")" = offline ] || fail "off1 consistency"
call snapshot_delete "{\"instance\": \"$vm\", \"name\": \"off1\"}" >/dev/null || fail "delete off1"
call power_on "{\"instance\": \"$vm\"}" >/dev/null || fail "power_on"
wait_domstate "$vm" running

# ---- 5. the space check on a small filesystem ----

mkdir -p "$work/tiny"
mount -t tmpfs -o size=16m nestor-snap-tiny "$work/tiny"
mounted="$work/tiny"
write_conf "$work/nestor2.conf" "$host_b" "reserve_mb = 0" "snapshot_dir = $work/tiny"
start_agent "$work/nestor2.conf" "$host_b" "$work/agent2.log"
pid_b=$started_pid
ctl_conf "$work/nestor2.conf" "$host_b" --json call snapshot_estimate \
        --args "{\"instance\": \"$vm\", \"memory\": true}" >"$work/est2.json" || fail "estimate (tiny)"
tiny_free=$(jget '[w["free_bytes"] for w in d["where"] if w["what"]=="memory file"][0]' <"$work/est2.json")
if [ "$tiny_free" -gt $((16 * 1024 * 1024)) ] || [ "$tiny_free" -le 0 ]; then
        fail "tmpfs free: $tiny_free"
fi
[ "$(jget 'd["fits"]' <"$work/est2.json")" = false ] || fail "estimate says it fits: $(cat "$work/est2.json")"
if ctl_conf "$work/nestor2.conf" "$host_b" call snapshot_create \
        --args "{\"instance\": \"$vm\", \"name\": \"big\", \"memory\": true}" >/dev/null 2>"$work/err"; then
        fail "a memory snapshot into 16 MiB succeeded"
fi
grep -q InsufficientStorage "$work/err" || fail "expected InsufficientStorage: $(cat "$work/err")"
grep -q "$work/tiny" "$work/err" || fail "the error does not name the directory: $(cat "$work/err")"
[ -z "$(ls -A "$work/tiny")" ] || fail "files created on the small filesystem: $(ls -R "$work/tiny")"
[ "$(snap_count "$vm")" = 0 ] || fail "the refused snapshot exists"
[ "$(domstate "$vm")" = running ] || fail "the refused snapshot touched the guest"
log "space check: ok ($(head -c 300 "$work/err"))"
stop_agent "$pid_b"
pid_b=

# ---- 6. schedules: stored in the instance, fired by the agent, pruned ----

expect_error InvalidInput "at least 1 minute" snapshot_schedule_set "{\"instance\": \"$vm\", \"schedule\": {\"interval\": 30, \"retention\": {\"keep_last\": 1}}}"
expect_error InvalidInput "keep_last must be at least 1" snapshot_schedule_set "{\"instance\": \"$vm\", \"schedule\": {\"interval\": \"1m\", \"retention\": {\"keep_last\": 0}}}"
expect_error InvalidInput "calendar" snapshot_schedule_set "{\"instance\": \"$vm\", \"schedule\": {\"calendar\": \"someday 25:00\", \"retention\": {\"keep_last\": 1}}}"
expect_error ScheduleNotFound "no snapshot schedule" snapshot_schedule_get "{\"instance\": \"$vm\"}"
before=$(snap_count "$vm")
call snapshot_schedule_set "{\"instance\": \"$vm\", \"schedule\": {\"interval\": \"1m\", \"retention\": {\"keep_last\": 1}, \"quiesce\": \"off\"}}" >"$work/sched.json" ||
        fail "snapshot_schedule_set"
meta=$(virsh -c "$uri" metadata "$vm" https://nestor.dev/xmlns/snapshot-schedule/1 --config)
[[ "$meta" == *1m* ]] || fail "the schedule is not in the instance's metadata: $meta"
# Two runs (one per minute): retention keeps only the newest scheduled one.
for _ in $(seq 1 200); do
        [ "$(grep -c "scheduled snapshot auto-.* taken" "$work/agent.log")" -ge 2 ] && break
        sleep 1
done
[ "$(grep -c "scheduled snapshot auto-.* taken" "$work/agent.log")" -ge 2 ] ||
        fail "no two scheduled snapshots within 200 s"
sleep 2
autos=$(virsh -c "$uri" snapshot-list --name "$vm" | grep -c '^auto-' || true)
[ "$autos" = 1 ] || fail "retention keep_last 1 left $autos scheduled snapshots"
grep -q "retention deleted auto-" "$work/agent.log" || fail "retention deleted nothing"
[ "$(snap_count "$vm")" = $((before + 1)) ] || fail "snapshots taken by hand were touched"
ran=$(call snapshot_schedule_get "{\"instance\": \"$vm\"}" | jget 'd["last_run"] is not None')
[ "$ran" = true ] || fail "last_run not recorded"
call snapshot_schedule_delete "{\"instance\": \"$vm\"}" >/dev/null || fail "snapshot_schedule_delete"
auto=$(virsh -c "$uri" snapshot-list --name "$vm" | grep -m1 '^auto-')
call snapshot_delete "{\"instance\": \"$vm\", \"name\": \"$auto\"}" >/dev/null || fail "delete $auto"
log "schedules: ok"

# ---- clean up through the agent ----

call snapshot_delete "{\"instance\": \"$other\", \"name\": \"o1\"}" >/dev/null || fail "delete o1"
had_records=0
[ -d "$sdir" ] && had_records=1
call destroy "{\"instance\": \"$vm\"}" >/dev/null || fail "destroy $vm"
# The periodic check removes the records of an instance that is gone.
if [ $had_records = 1 ]; then
        for _ in $(seq 1 40); do
                [ -d "$sdir" ] || break
                sleep 0.5
        done
        [ ! -d "$sdir" ] || fail "the destroyed instance's snapshot records stay: $(ls "$sdir")"
        log "records of the destroyed instance removed"
fi
call destroy "{\"instance\": \"$other\"}" >/dev/null || fail "destroy $other"
kill -TERM "$pid_a"
set +e
wait "$pid_a"
rc=$?
set -e
pid_a=
[ $rc = 0 ] || fail "agent exit status $rc"
[ -z "$(our_domains)" ] || fail "domains left: $(our_domains)"
echo "snapshot qemu integration checks passed"
