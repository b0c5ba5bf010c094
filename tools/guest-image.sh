#!/usr/bin/env bash
# Builds a minimal Linux guest for the tests that need a guest OS: Debian's
# kernel and an initramfs with busybox and Debian's qemu-guest-agent, so that
# quiesce (guest-fsfreeze-freeze/thaw) runs against a real agent, on a
# bootable disk image (FAT with syslinux: BIOS boots it like any disk).
#
# Usage: tools/guest-image.sh OUTDIR
# Writes OUTDIR/boot.img (raw), and the OUTDIR/vmlinuz and OUTDIR/initrd.img
# it holds; kept when already there. Needs syslinux, mtools and dosfstools
# (tools/install-deps.sh) and Debian's package archive.
#
# The guest's init loads the virtio modules, formats its second disk (vdb)
# with ext2 the first time and mounts it on /data, and runs qemu-ga on the
# org.qemu.guest_agent.0 port with a freeze hook, which refuses to freeze
# while /run/nestor-fail-freeze exists in the guest. Lines that mark a step go
# to the first serial port and to /run/nestor-guest.log (read it through
# the agent), each starting "nestor-guest:":
#   nestor-guest: data ext4       /data is mounted
#   nestor-guest: up              the agent is about to start
#   nestor-guest: fsfreeze freeze / thaw   the hook ran (the agent froze
#                                 /data right after "freeze" and thawed it
#                                 right before "thaw")
#   nestor-guest: carrier eth0 N  the first NIC's link state, whenever it
#                                 changes (checked every second)
set -euo pipefail

out=${1:?usage: $0 OUTDIR}
# An image built by another version of this script is built again.
version=$(sha256sum "$0" | cut -c1-16)
[ -s "$out/boot.img" ] && [ "$(cat "$out/version" 2>/dev/null)" = "$version" ] && exit 0
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Debian's packages only: the kernel that linux-image-amd64 names today.
kernel_of_the_day() {
        apt-cache depends linux-image-amd64 2>/dev/null |
                awk '/Depends: linux-image-[0-9]/{print $2; exit}'
}
kernel_pkg=$(kernel_of_the_day)
if [ -z "$kernel_pkg" ]; then
        apt-get update -q >/dev/null
        kernel_pkg=$(kernel_of_the_day)
fi
(cd "$work" && apt-get download -q "$kernel_pkg" busybox-static qemu-guest-agent 2>&1 |
        grep -v '^W: Download is performed unsandboxed' >&2 || true)
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/x"; done
x=$work/x
kver=$(ls "$x/lib/modules")
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,data,tmp,run,var/run,etc/qemu,lib/modules}

cp "$x/bin/busybox" "$root/bin/busybox"
# The agent and the shared libraries it links, from this host (the same
# Debian release): the package's own dependencies.
cp "$x/usr/sbin/qemu-ga" "$root/bin/qemu-ga"
for lib in $(ldd "$x/usr/sbin/qemu-ga" | awk '/=> \//{print $3} /^\t\/lib/{print $1}'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
done

# Modules in an order insmod accepts (dependencies first; computed with
# modprobe --show-depends for virtio_pci, virtio_blk, virtio_console,
# virtio_net and ext4 on Debian 12's 6.1 kernel).
modules="drivers/virtio/virtio_ring.ko drivers/virtio/virtio.ko
drivers/virtio/virtio_pci_modern_dev.ko drivers/virtio/virtio_pci_legacy_dev.ko
drivers/virtio/virtio_pci.ko drivers/block/virtio_blk.ko drivers/char/virtio_console.ko
net/core/failover.ko drivers/net/net_failover.ko drivers/net/virtio_net.ko
arch/x86/crypto/crc32c-intel.ko crypto/crc32c_generic.ko fs/jbd2/jbd2.ko fs/mbcache.ko
lib/crc16.ko fs/ext4/ext4.ko"
for m in $modules; do
        cp "$x/lib/modules/$kver/kernel/$m" "$root/lib/modules/"
        echo "${m##*/}" >>"$root/lib/modules/order"
done

cat >"$root/etc/qemu/fsfreeze-hook" <<'HOOK'
#!/bin/sh
# qemu-ga runs this before freezing ("freeze") and after thawing ("thaw").
echo "nestor-guest: fsfreeze $1" | tee -a /run/nestor-guest.log >/dev/ttyS0
# A failing hook makes qemu-ga refuse the freeze (tests of that path).
if [ "$1" = freeze ] && [ -e /run/nestor-fail-freeze ]; then exit 1; fi
exit 0
HOOK
cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
say() { echo "nestor-guest: $*" | tee -a /run/nestor-guest.log >/dev/ttyS0; }
for m in $(cat /lib/modules/order); do insmod "/lib/modules/$m" 2>/dev/null; done
for _ in $(seq 1 50); do [ -b /dev/vdb ] && break; sleep 0.1; done
if [ -b /dev/vdb ]; then
        mount -t ext4 /dev/vdb /data 2>/dev/null ||
                { mke2fs /dev/vdb >/dev/null 2>&1 && mount -t ext4 /dev/vdb /data; }
        say "data $(grep ' /data ' /proc/mounts | cut -d' ' -f3)"
fi
port=
for _ in $(seq 1 50); do
        for p in /sys/class/virtio-ports/*; do
                [ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/${p##*/}
        done
        [ -n "$port" ] && [ -c "$port" ] && break
        sleep 0.1
done
ip link set lo up 2>/dev/null
ip link set eth0 up 2>/dev/null
(
        last=
        while :; do
                c=$(cat /sys/class/net/eth0/carrier 2>/dev/null || echo none)
                [ "$c" != "$last" ] && say "carrier eth0 $c" && last=$c
                sleep 1
        done
) &
say "up"
while :; do
        qemu-ga -m virtio-serial -p "$port" --fsfreeze-hook=/etc/qemu/fsfreeze-hook \
                -t /run 2>/dev/ttyS0
        sleep 1
done
INIT
chmod 755 "$root/init" "$root/etc/qemu/fsfreeze-hook"

(cd "$root" && find . | "$root/bin/busybox" cpio -o -H newc 2>/dev/null) | gzip -1 >"$work/initrd.img"
cp "$x/boot/vmlinuz-$kver" "$work/vmlinuz"

# A FAT file system on the whole disk (no partition table): its boot sector
# carries syslinux, which BIOS runs like any disk's first sector.
cat >"$work/syslinux.cfg" <<'CFG'
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL vmlinuz
  APPEND initrd=initrd.img console=ttyS0 panic=-1 quiet
CFG
truncate -s 32M "$work/boot.img"
mkfs.fat -n NESTORGUEST "$work/boot.img" >/dev/null
syslinux --install "$work/boot.img"
mcopy -i "$work/boot.img" "$work/syslinux.cfg" "$work/vmlinuz" "$work/initrd.img" ::/
mv "$work/initrd.img" "$out/initrd.img"
mv "$work/vmlinuz" "$out/vmlinuz"
mv "$work/boot.img" "$out/boot.img"
echo "$version" >"$out/version"
echo "guest-image: $out/boot.img (kernel $kver)" >&2
