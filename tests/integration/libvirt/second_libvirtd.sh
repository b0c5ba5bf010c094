# shellcheck shell=bash
# A second libvirtd on this machine, for tests that need another "host"
# (a live migration between two hosts): libvirtd and virtlogd in their own
# mount namespace, where /run/libvirt, /var/lib/libvirt, /etc/libvirt,
# /var/log/libvirt and /var/cache/libvirt are directories of the test's, so
# nothing of the first libvirtd is shared but the file systems the guests'
# disks are on (shared storage, as between two compute nodes on NFS). It
# has its own host UUID and no cgroups (the first libvirtd's cgroup names
# could collide). Reached at qemu:///system?socket=DIR/run/libvirt-sock.
# Sourced; the caller defines fail().

# start_second_libvirtd DIR HOST_UUID: sets second_uri.
start_second_libvirtd() {
        local dir=$1 host_uuid=$2 d
        mkdir -p "$dir"/{run,lib/qemu,lib/images,lib/network,lib/dnsmasq,etc,log/qemu,cache}
        cp -a /etc/libvirt/. "$dir/etc/"
        # No network of the first daemon's (the default one would start).
        rm -rf "$dir/etc/qemu/networks" "$dir/etc/qemu/"*.xml
        echo "host_uuid = \"$host_uuid\"" >>"$dir/etc/libvirtd.conf"
        echo "cgroup_controllers = [ ]" >>"$dir/etc/qemu.conf"
        chown libvirt-qemu:kvm "$dir/lib/qemu" 2>/dev/null || true
        cat >"$dir/start.sh" <<EOF
#!/bin/sh
set -e
for d in run:/run/libvirt lib:/var/lib/libvirt etc:/etc/libvirt log:/var/log/libvirt cache:/var/cache/libvirt; do
        mkdir -p "\${d#*:}"
        mount --bind "$dir/\${d%%:*}" "\${d#*:}"
done
virtlogd -d --pid-file "$dir/virtlogd.pid"
exec libvirtd -d --pid-file "$dir/libvirtd.pid"
EOF
        chmod 755 "$dir/start.sh"
        unshare --mount --propagation private "$dir/start.sh" ||
                fail "cannot start a second libvirtd (unshare --mount)"
        second_uri="qemu:///system?socket=$dir/run/libvirt-sock"
        for _ in $(seq 1 100); do
                d=$(virsh -c "$second_uri" capabilities 2>/dev/null) && break
                sleep 0.2
        done
        [[ "$d" == *"<uuid>$host_uuid</uuid>"* ]] || fail "the second libvirtd does not answer"
}

# stop_second_libvirtd DIR: its guests destroyed, libvirtd and virtlogd
# stopped and waited for (the namespace and its mounts go with them).
stop_second_libvirtd() {
        local dir=$1 d f pid
        [ -f "$dir/libvirtd.pid" ] || return 0
        for d in $(virsh -c "$second_uri" list --name 2>/dev/null); do
                virsh -c "$second_uri" destroy "$d" >/dev/null 2>&1
        done
        for d in $(virsh -c "$second_uri" list --all --name 2>/dev/null); do
                virsh -c "$second_uri" undefine --checkpoints-metadata "$d" >/dev/null 2>&1
        done
        for f in libvirtd virtlogd; do
                pid=$(cat "$dir/$f.pid" 2>/dev/null) || continue
                kill "$pid" 2>/dev/null || continue
                for _ in $(seq 1 100); do
                        kill -0 "$pid" 2>/dev/null || break
                        sleep 0.1
                done
        done
}
