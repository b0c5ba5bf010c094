#!/usr/bin/env bash
# Installs the Debian 12 packages Nestor builds and tests with, only those
# missing. Runs as root (or through sudo when available).
set -euo pipefail

packages=(
        build-essential cmake pkg-config clang libclang-rt-14-dev valgrind
        librabbitmq-dev libjson-c-dev uuid-dev libcmocka-dev libvirt-dev libxml2-dev
        libssl-dev openssl libpci-dev pciutils libnbd-dev libzstd-dev libxxhash-dev
        rabbitmq-server amqp-tools python3-oslo.messaging
        libvirt-daemon-system qemu-system-x86 qemu-utils
        syslinux syslinux-common mtools dosfstools
)

missing=()
for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
                missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q \
        -o Dpkg::Options::=--force-confnew "${missing[@]}"
