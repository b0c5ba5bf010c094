#!/usr/bin/env bash
# The fake sysfs generator (tests/fixtures/mkfakesysfs.py) checked against
# lspci's own decoding, so that the sriov plugin's tests run against a tree
# that libpci reads the way it reads real SR-IOV hardware.
#
# For each tree (default; --driver-totalvfs 63 --vfio 2; 4 cards x 256 VFs;
# one FC HBA; --no-iommu --numa-nodes 0; an unbound PF without vfio-pci) it
# runs lspci -A linux-sysfs on it and parses the output.  Every expectation
# is computed here from the generator's arguments, not read back from the
# generator, and compared with both lspci and the sysfs files:
#   - the function list: every function once, with its vendor:device and class;
#   - per PF: SR-IOV Initial/Total VFs, Number of VFs, VF offset, stride and
#     VF Device ID, and the sriov_* files; sriov_totalvfs differs from the
#     config-space TotalVFs exactly when --driver-totalvfs lowers it;
#   - per VF: address = PF RID + offset + i * stride, the PF's virtfn<i> link
#     names it and its physfn link names the PF; config space reads ffff;
#   - Kernel driver in use = driver link = the expected driver;
#   - NUMA node and IOMMU group lines = numa_node file and iommu_group link
#     (absent with --numa-nodes 0 / --no-iommu), groups linked both ways;
#   - netdevs, FC hosts, NUMA/CPU files, vfio-pci presence, no dangling links;
#   - lspci exits 0 and prints nothing on stderr but the libkmod notice.
# It also checks that the generator refuses bad arguments with exit code 2,
# and that the checks catch a corrupted tree (so this test can fail).
# Exit 77 (skip) when lspci is not installed.
set -euo pipefail
shopt -s nullglob

here=$(cd "$(dirname "$0")" && pwd)
gen=$(cd "$here/../../fixtures" && pwd)/mkfakesysfs.py
python=/usr/bin/python3

if ! command -v lspci >/dev/null; then
        echo "SKIP: lspci is not installed (Debian package pciutils)"
        exit 77
fi
if command -v shellcheck >/dev/null; then
        shellcheck "$0"
        echo "shellcheck: clean"
fi

work=$(mktemp -d /tmp/nestor-sriov-fixture.XXXXXX)
trap 'rm -rf "$work"' EXIT

failed=0
declare -A P

# Parameters of one tree: the generator's defaults, then KEY=VALUE overrides.
set_params() {
        P=([nics]=1 [ports]=2 [numvfs]=4 [totalvfs]=64 [dtotal]="" [offset]=128 [stride]=2
           [vfio]=0 [numa]=2 [bus]=03 [fc]=0 [fcnumvfs]=2 [noiommu]=0 [novfio]=0 [unbound]=0)
        local kv
        for kv in "$@"; do
                P[${kv%%=*}]=${kv#*=}
        done
}

generator_args() {
        local -n gen_args_out=$1
        gen_args_out=(--nics "${P[nics]}" --ports "${P[ports]}" --numvfs "${P[numvfs]}"
             --totalvfs "${P[totalvfs]}" --offset "${P[offset]}" --stride "${P[stride]}"
             --vfio "${P[vfio]}" --numa-nodes "${P[numa]}" --bus "${P[bus]}"
             --fc-hbas "${P[fc]}" --fc-numvfs "${P[fcnumvfs]}" --quiet)
        [ -z "${P[dtotal]}" ] || gen_args_out+=(--driver-totalvfs "${P[dtotal]}")
        [ "${P[noiommu]}" = 0 ] || gen_args_out+=(--no-iommu)
        [ "${P[novfio]}" = 0 ] || gen_args_out+=(--no-vfio-driver)
        [ "${P[unbound]}" = 0 ] || gen_args_out+=(--unbound-pf)
}

# Runs lspci on ROOT; fails on a non-zero exit or unexpected stderr.
run_lspci() {
        local root=$1 file=$2
        shift 2
        local rc=0
        lspci -A linux-sysfs -O "sysfs.path=$root/sys/bus/pci" "$@" >"$file" 2>"$file.err" ||
                rc=$?
        if [ "$rc" != 0 ]; then
                echo "FAIL: lspci $* exited $rc: $(head -3 "$file.err")"
                return 1
        fi
        if grep -v 'Unable to load libkmod resources' "$file.err" | grep -q .; then
                echo "FAIL: lspci $* wrote to stderr: $(grep -v libkmod "$file.err" | head -3)"
                return 1
        fi
}

# Everything the checker reads, one fact per line, tagged by its source.
collect_facts() {
        local root=$1 sys=$1/sys
        run_lspci "$root" "$work/n.txt" -D -n || return 1
        run_lspci "$root" "$work/v.txt" -D -vvv -nn || return 1
        run_lspci "$root" "$work/x.txt" -D -x || return 1
        sed 's/^/N /' "$work/n.txt"
        sed 's/^/V /' "$work/v.txt"
        sed 's/^/X /' "$work/x.txt"
        find "$sys/bus/pci/devices" -mindepth 1 -maxdepth 1 -printf 'E %f\n'
        find "$sys/devices" -type l \( -name driver -o -name iommu_group -o -name physfn \
                -o -name 'virtfn*' \) -printf 'L %h %f %l\n'
        find "$sys/kernel/iommu_groups" -mindepth 3 -maxdepth 3 -type l -printf 'G %h %f %l\n'
        find "$sys/class" -mindepth 2 -maxdepth 2 -type l -printf 'C %h %f %l\n'
        find "$sys" -xtype l -printf 'B %p\n'
        [ ! -d "$sys/bus/pci/drivers/vfio-pci" ] || echo "D vfio-pci-driver"
        [ ! -d "$sys/module/vfio_pci" ] || echo "D vfio_pci-module"
}

# The checker: expectations from the parameters, compared with lspci and sysfs.
checker() {
        cat <<'AWK'
function hexbdf(bus, slot, fn) { return sprintf("0000:%02x:%02x.%x", bus, slot, fn) }
function base(path,   n, a) { n = split(path, a, "/"); return a[n] }
function fail(msg) { nfail++; if (nfail <= 25) print "FAIL: " msg }
function readfile(path,   v, r) {
        v = ""; r = (getline v < path); close(path)
        return r < 0 ? "<missing>" : v
}
function field(s, label) {
        if (!match(s, label ": [0-9a-fA-F]+")) return "<none>"
        return substr(s, RSTART + length(label) + 2, RLENGTH - length(label) - 2)
}
function expect(b, cls, vd, drv, node, role) {
        if (b in exp_role) fail("expected " b " twice: bad test parameters")
        exp_cls[b] = cls; exp_vd[b] = vd; exp_drv[b] = drv; exp_node[b] = node
        exp_role[b] = role; nexp++; roles[role]++
}
BEGIN {
        ncards = nics + fc
        host = 0
        for (k = 0; k < ncards; k++) {
                isfc = (k >= nics)
                cb = bus + 2 * k
                node = numa > 0 ? k % numa : -1
                expect(hexbdf(0, 2 + k, 0), "0604", "8086:6f08", "pcieport", node, "bridge")
                np = isfc ? 1 : ports
                for (p = 0; p < np; p++) {
                        pf = hexbdf(cb, 0, p)
                        drv = isfc ? "lpfc" : "ixgbe"
                        n = isfc ? fcnumvfs : numvfs
                        if (unbound && k == 0 && p == 0) { drv = ""; n = 0 }
                        expect(pf, isfc ? "0c04" : "0200", isfc ? "10df:e200" : "8086:10fb",
                               drv, node, "pf")
                        pf_n[pf] = n; pf_vfdid[pf] = isfc ? "e208" : "10ed"
                        if (drv != "" && !isfc) exp_net[pf] = sprintf("enp%ds0f%d", cb, p)
                        if (drv != "" && isfc) exp_host[pf] = "host" (++host)
                        for (i = 0; i < n; i++) {
                                # SR-IOV: VF RID = PF RID + First VF Offset + i * VF Stride
                                rid = cb * 256 + p + offset + i * stride
                                vb = int(rid / 256); vs = int((rid % 256) / 8); vfn = rid % 8
                                vf = hexbdf(vb, vs, vfn)
                                vdrv = i < vfio ? "vfio-pci" : (isfc ? "lpfc" : "ixgbevf")
                                expect(vf, isfc ? "0c04" : "0200",
                                       isfc ? "10df:e208" : "8086:10ed", vdrv, node, "vf")
                                vf_of[pf, i] = vf; vf_pf[vf] = pf
                                if (vdrv == "ixgbevf")
                                        exp_net[vf] = sprintf("enp%ds%df%d", vb, vs, vfn)
                        }
                }
        }
}
$1 == "N" { n_cls[$2] = substr($3, 1, 4); n_vd[$2] = $4; n_count[$2]++; next }
$1 == "V" && $2 ~ /^0000:/ {
        cur = $2; v_seen[cur] = 1
        if (match($0, /\[[0-9a-f]+\]: /)) v_cls[cur] = substr($0, RSTART + 1, 4)
        s = $0
        while (match(s, /\[[0-9a-f]+:[0-9a-f]+\]/)) {
                v_vd[cur] = substr(s, RSTART + 1, RLENGTH - 2); s = substr(s, RSTART + RLENGTH)
        }
        next
}
$1 == "V" && /Kernel driver in use: / { v_drv[cur] = $NF; next }
$1 == "V" && /\tNUMA node: / { v_node[cur] = $NF; next }
$1 == "V" && /\tIOMMU group: / { v_grp[cur] = $NF; next }
$1 == "V" && /Single Root I\/O Virtualization/ { v_sriov[cur]++; next }
$1 == "V" && /Initial VFs: / {
        v_init[cur] = field($0, "Initial VFs"); v_total[cur] = field($0, "Total VFs")
        v_num[cur] = field($0, "Number of VFs"); next
}
$1 == "V" && /VF offset: / {
        v_off[cur] = field($0, "VF offset"); v_stride[cur] = field($0, "stride")
        v_vfdid[cur] = field($0, "Device ID"); next
}
$1 == "X" && $2 ~ /^0000:/ { xcur = $2; next }
$1 == "X" && $2 == "00:" { x_id[xcur] = $4 $3 ":" $6 $5; next }   # little-endian
$1 == "E" { s_ent[$2] = 1; next }
$1 == "L" {
        b = base($2)
        if ($3 == "driver") s_drv[b] = base($4)
        else if ($3 == "iommu_group") s_grp[b] = base($4)
        else if ($3 == "physfn") s_physfn[b] = base($4)
        else { s_virtfn[b, substr($3, 7)] = base($4); s_nvirtfn[b]++ }
        next
}
$1 == "G" {
        n = split($2, a, "/"); g = a[n - 1]
        if (base($4) != $3) fail("iommu_groups/" g "/devices/" $3 " -> " $4)
        g_dev[g, $3] = 1; n_gdev++; next
}
$1 == "C" {
        cls = base($2); target = $4
        if (cls == "net") { c_net[$3] = target; n_net++ }
        else if (cls == "fc_host") { c_fc[$3] = target; n_fc++ }
        else if (cls == "scsi_host") { c_scsi[$3] = target; n_scsi++ }
        next
}
$1 == "B" { fail("dangling symlink " $2); next }
$1 == "D" { have[$2] = 1; next }
END {
        devs = sys "/bus/pci/devices/"
        for (b in n_count)
                if (!(b in exp_role)) fail("lspci lists " b ", which the tree should not have")
        for (b in s_ent)
                if (!(b in exp_role)) fail("sysfs has " b ", which the tree should not have")
        for (b in exp_role) {
                role = exp_role[b]
                if (n_count[b] != 1) {
                        fail(b " listed " n_count[b] + 0 " times by lspci -n")
                        continue
                }
                if (!(b in s_ent)) fail(b " missing from bus/pci/devices")
                # identity: lspci -n, lspci -nn header, sysfs files
                want = exp_cls[b] " " exp_vd[b]
                if (n_cls[b] " " n_vd[b] != want)
                        fail(b " lspci -n: " n_cls[b] " " n_vd[b] ", want " want)
                if (v_cls[b] " " v_vd[b] != want)
                        fail(b " lspci -vvv -nn: " v_cls[b] " " v_vd[b] ", want " want)
                sv = readfile(devs b "/vendor"); sd = readfile(devs b "/device")
                sc = readfile(devs b "/class")
                if (sv ":" sd != "0x" substr(exp_vd[b], 1, 4) ":0x" substr(exp_vd[b], 6))
                        fail(b " sysfs vendor/device " sv ":" sd)
                if (substr(sc, 3, 4) != exp_cls[b]) fail(b " sysfs class " sc)
                want_cfg = role == "vf" ? "ffff:ffff" : exp_vd[b]
                if (x_id[b] != want_cfg) fail(b " config space ids " x_id[b] ", want " want_cfg)
                # driver
                if (v_drv[b] != exp_drv[b] || s_drv[b] != exp_drv[b])
                        fail(b " driver: lspci '" v_drv[b] "', link '" s_drv[b] "', want '" \
                             exp_drv[b] "'")
                else if (exp_drv[b] != "") n_drv++
                # NUMA node
                sn = readfile(devs b "/numa_node")
                if (sn != exp_node[b]) fail(b " numa_node file " sn ", want " exp_node[b])
                if (exp_node[b] < 0 && (b in v_node)) fail(b " lspci shows NUMA node " v_node[b])
                if (exp_node[b] >= 0 && v_node[b] != exp_node[b])
                        fail(b " lspci NUMA node '" v_node[b] "', want " exp_node[b])
                if (b in v_node) n_node++
                want_cpus = exp_node[b] < 0 ? "0-1" : (2 * exp_node[b]) "-" (2 * exp_node[b] + 1)
                if (readfile(devs b "/local_cpulist") != want_cpus)
                        fail(b " local_cpulist, want " want_cpus)
                # IOMMU group
                if (noiommu) {
                        if ((b in v_grp) || (b in s_grp))
                                fail(b " has an IOMMU group with --no-iommu")
                } else if (!(b in s_grp) || v_grp[b] != s_grp[b]) {
                        fail(b " IOMMU group: lspci '" v_grp[b] "', link '" s_grp[b] "'")
                } else if (!((s_grp[b], b) in g_dev)) {
                        fail(b " iommu_groups/" s_grp[b] "/devices has no link back")
                } else {
                        if (s_grp[b] in grp_owner)
                                fail(b " shares group " s_grp[b] " with " grp_owner[s_grp[b]])
                        grp_owner[s_grp[b]] = b; n_grp++
                }
                # netdev (NIC functions bound to ixgbe/ixgbevf only)
                if (b in exp_net) {
                        nm = exp_net[b]
                        if (!(nm in c_net) || index(c_net[nm], "/" b "/net/" nm) == 0)
                                fail(b " netdev " nm ": class/net link '" c_net[nm] "'")
                        else n_netok++
                }
                if (role == "pf") check_pf(b)
                else if (v_sriov[b]) fail(b " (" role ") has an SR-IOV capability")
                if (role == "vf" && s_physfn[b] != vf_pf[b])
                        fail(b " physfn -> '" s_physfn[b] "', want " vf_pf[b])
        }
        for (nm in c_net) n_netall++
        if (n_netall != n_netok) fail("class/net has " n_netall " netdevs, want " n_netok)
        for (b in exp_host) {
                h = exp_host[b]
                if (index(c_fc[h], "/" b "/" h "/fc_host/" h) == 0 ||
                    index(c_scsi[h], "/" b "/" h "/scsi_host/" h) == 0)
                        fail(b " FC host " h ": fc_host '" c_fc[h] "', scsi_host '" c_scsi[h] "'")
                else n_hosts++
                pn = readfile(devs b "/" h "/fc_host/" h "/port_name")
                if (pn !~ /^0x[0-9a-f]+$/ || length(pn) != 18) fail(b " " h " port_name '" pn "'")
        }
        if (n_fc + 0 != n_hosts + 0 || n_scsi + 0 != n_hosts + 0)
                fail("class/fc_host has " n_fc + 0 ", scsi_host " n_scsi + 0 ", want " n_hosts + 0)
        if (have["vfio-pci-driver"] != !novfio || have["vfio_pci-module"] != !novfio)
                fail("vfio-pci driver/module presence wrong for --no-vfio-driver=" novfio)
        for (k = 0; k < numa; k++) {
                cl = readfile(sys "/devices/system/node/node" k "/cpulist")
                if (cl != (2 * k) "-" (2 * k + 1)) fail("node" k "/cpulist '" cl "'")
                for (c = 2 * k; c <= 2 * k + 1; c++)
                        if (readfile(sys "/devices/system/cpu/cpu" c \
                                     "/topology/physical_package_id") != int(c / 4))
                                fail("cpu" c " physical_package_id")
        }
        if (numa == 0 && readfile(sys "/devices/system/node/online") != "<missing>")
                fail("node directory present with --numa-nodes 0")
        if (readfile(root "/proc/cmdline") !~ /intel_iommu=on iommu=pt/) fail("proc/cmdline")

        printf "%s: %d functions (%d root ports, %d PFs, %d VFs); %d SR-IOV blocks, %d drivers, " \
               "%d NUMA lines, %d IOMMU groups (%d group links), %d VF addresses + virtfn links, " \
               "%d PFs with sriov_totalvfs != Total VFs, %d netdevs, %d FC hosts: %s\n",
               name, nexp, roles["bridge"], roles["pf"], roles["vf"], n_sriov, n_drv, n_node,
               n_grp, n_gdev, n_vfaddr, n_tdiff, n_netok, n_hosts, nfail ? nfail " FAILURES" : "OK"
        exit nfail ? 1 : 0
}
function check_pf(b,   n, i, vf, st, diff, want_st) {
        n = pf_n[b]
        if (v_sriov[b] != 1) {
                fail(b " PF: " v_sriov[b] + 0 " SR-IOV capabilities in lspci")
                return
        }
        n_sriov++
        if (v_init[b] != totalvfs || v_total[b] != totalvfs || v_num[b] != n ||
            v_off[b] != offset || v_stride[b] != stride || v_vfdid[b] != pf_vfdid[b])
                fail(b " SR-IOV: Initial " v_init[b] " Total " v_total[b] " Number " v_num[b] \
                     " offset " v_off[b] " stride " v_stride[b] " VF ID " v_vfdid[b] \
                     ", want " totalvfs "/" totalvfs "/" n "/" offset "/" stride "/" pf_vfdid[b])
        st = readfile(devs b "/sriov_totalvfs")
        want_st = dtotal != "" ? dtotal : totalvfs
        if (st != want_st) fail(b " sriov_totalvfs " st ", want " want_st)
        diff = (st != v_total[b])
        if (diff != (dtotal != "" && dtotal != totalvfs))
                fail(b " sriov_totalvfs " st " vs Total VFs " v_total[b] \
                     " with --driver-totalvfs '" dtotal "'")
        n_tdiff += diff
        if (readfile(devs b "/sriov_numvfs") != v_num[b] ||
            readfile(devs b "/sriov_offset") != v_off[b] ||
            readfile(devs b "/sriov_stride") != v_stride[b] ||
            readfile(devs b "/sriov_vf_device") != v_vfdid[b])
                fail(b " sriov_numvfs/offset/stride/vf_device files differ from lspci")
        if (s_nvirtfn[b] + 0 != n) fail(b " has " s_nvirtfn[b] + 0 " virtfn links, want " n)
        for (i = 0; i < n; i++) {
                vf = vf_of[b, i]
                if (s_virtfn[b, i] != vf) fail(b " virtfn" i " -> '" s_virtfn[b, i] "', want " vf)
                else if (n_count[vf] != 1) fail(b " VF " i " at " vf " is not listed by lspci")
                else n_vfaddr++
        }
}
AWK
}

# Checks the tree at ROOT against the parameters in P; prints one summary line.
check_tree() {
        local name=$1 root=$2
        collect_facts "$root" >"$work/facts.txt" || return 1
        awk -v name="$name" -v root="$root" -v sys="$root/sys" \
            -v nics="${P[nics]}" -v ports="${P[ports]}" -v numvfs="${P[numvfs]}" \
            -v totalvfs="${P[totalvfs]}" -v dtotal="${P[dtotal]}" -v offset="${P[offset]}" \
            -v stride="${P[stride]}" -v vfio="${P[vfio]}" -v numa="${P[numa]}" \
            -v bus="$((16#${P[bus]}))" -v fc="${P[fc]}" -v fcnumvfs="${P[fcnumvfs]}" \
            -v noiommu="${P[noiommu]}" -v novfio="${P[novfio]}" -v unbound="${P[unbound]}" \
            -f <(checker) "$work/facts.txt"
}

generate() {
        local root=$1 args
        generator_args args
        "$python" "$gen" "$root" "${args[@]}"
}

scenario() {
        local name=$1
        shift
        set_params "$@"
        local root=$work/$name t0 ms
        t0=$(date +%s%N)
        if ! generate "$root"; then
                echo "FAIL: $name: the generator failed"
                failed=1
                return
        fi
        ms=$((($(date +%s%N) - t0) / 1000000))
        echo "$name: generated in ${ms} ms ($*)"
        check_tree "$name" "$root" || failed=1
        if [ "$name" = big ] && [ "$ms" -gt 30000 ]; then
                echo "FAIL: the 1032-function tree took ${ms} ms to generate"
                failed=1
        fi
        rm -rf "$root"
}

scenario default
scenario driver-totalvfs dtotal=63 vfio=2
scenario big nics=4 ports=1 totalvfs=256 numvfs=256 offset=1 stride=1 bus=10
scenario fc fc=1
scenario no-iommu noiommu=1 numa=0
scenario unbound-pf unbound=1 nics=2 novfio=1 numa=1

# Bad arguments: exit code 2 and a message naming the problem.
refuse() {
        local want=$1 rc=0
        shift
        "$python" "$gen" "$@" >/dev/null 2>"$work/refuse.err" || rc=$?
        if [ "$rc" != 2 ] || ! grep -q -- "$want" "$work/refuse.err"; then
                echo "FAIL: mkfakesysfs.py $* exited $rc: $(tail -1 "$work/refuse.err")"
                failed=1
        fi
        refused=$((refused + 1))
}
refused=0
mkdir "$work/nonempty" && touch "$work/nonempty/x"
refuse "greater than --totalvfs" "$work/r1" --numvfs 65
refuse "greater than --totalvfs" "$work/r2" --driver-totalvfs 65
refuse "greater than sriov_totalvfs" "$work/r3" --driver-totalvfs 3
refuse "past 0xff" "$work/r4" --bus fe --ports 1 --totalvfs 256 --numvfs 256
refuse "past 0xff" "$work/r5" --bus f0 --nics 9
refuse "would be both" "$work/r6" --offset 1 --stride 1
refuse "not an empty directory" "$work/nonempty"
echo "bad arguments: $refused refused with exit code 2"

# The checks must catch a tree that disagrees with its parameters, and say why.
corrupt() {
        local what=$1 want=$2 root=$work/corrupt pf=$work/corrupt/sys/bus/pci/devices/0000:03:00.0
        set_params
        generate "$root"
        case $what in
        numvfs-file) echo 3 >"$pf/sriov_numvfs" ;;
        virtfn-link) ln -sfn ../0000:03:10.4 "$pf/virtfn1" ;;
        vf-driver) ln -sfn ../../../../bus/pci/drivers/vfio-pci \
                "$root/sys/bus/pci/devices/0000:03:10.2/driver" ;;
        config-numvfs) # NumVFs at 0x160 + 0x10 in PF 03:00.1's config space
                printf '\005' | dd of="$root/sys/bus/pci/devices/0000:03:00.1/config" bs=1 \
                        seek=$((0x170)) conv=notrunc status=none ;;
        iommu-link) rm "$root/sys/bus/pci/devices/0000:03:10.1/iommu_group" ;;
        extra-vf) cp -a "$root/sys/bus/pci/devices/0000:03:10.7/." \
                "$root/sys/devices/pci0000:00/0000:00:02.0/0000:03:11.0" &&
                ln -s ../../../devices/pci0000:00/0000:00:02.0/0000:03:11.0 \
                        "$root/sys/bus/pci/devices/0000:03:11.0" ;;
        esac
        if check_tree "corrupt-$what" "$root" >"$work/corrupt.out" 2>&1 ||
           ! grep '^FAIL:' "$work/corrupt.out" | grep -q -- "$want"; then
                echo "FAIL: a tree with a corrupted $what passed the checks:"
                cat "$work/corrupt.out"
                failed=1
        else
                caught=$((caught + 1))
        fi
        rm -rf "$root"
}
caught=0
corrupt numvfs-file "0000:03:00.0 sriov_numvfs"
corrupt virtfn-link "virtfn1 -> '0000:03:10.4'"
corrupt vf-driver "0000:03:10.2 driver: lspci 'vfio-pci'"
corrupt config-numvfs "0000:03:00.1 SR-IOV: .* Number 5"
corrupt iommu-link "0000:03:10.1 IOMMU group"
corrupt extra-vf "lspci lists 0000:03:11.0"
echo "corrupted trees: $caught of 6 caught"

if [ "$failed" != 0 ]; then
        echo "test_fixture_lspci: FAILED"
        exit 1
fi
echo "test_fixture_lspci: all checks passed"
