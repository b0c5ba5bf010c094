#!/usr/bin/env bash
# devstack/plugin.sh through every phase, in stack.sh's order, against a
# stand-in for devstack's functions (tests/devstack/fake-devstack.sh): the
# configuration it writes and the commands it runs. No root, no devstack.
# Usage: test_plugin.sh [BUILD_DIR] (with a build, the written config is
# also loaded by the real nestor-agent --write-sample-config)
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# run_phases [VAR=VALUE...]: a fresh shell sourcing settings then plugin.sh
# for each phase, as stack.sh, unstack.sh and clean.sh do.
run_phases() {
        rm -rf "$tmp/root" "$tmp/log"
        mkdir -p "$tmp/root"
        # shellcheck disable=SC2016 # expanded by the inner shell
        env FAKE_ROOT="$tmp/root" FAKE_LOG="$tmp/log" NESTOR_DIR="$src" \
                NESTOR_CONF_DIR="$tmp/root/etc/nestor" "$@" bash -c '
                set -euo pipefail
                . "$0/tests/devstack/fake-devstack.sh"
                . "$0/devstack/settings"
                [ -z "${DISABLE:-}" ] || disable_service n-nestor
                for phase in "stack pre-install" "stack install" "stack post-config" \
                        "stack extra" "stack test-config"; do
                        # shellcheck disable=SC2086
                        set -- $phase
                        . "$0/devstack/plugin.sh" "$@"
                        cp "$NESTOR_CONF" "$FAKE_ROOT/after-$2.conf" 2>/dev/null || true
                done
                . "$0/devstack/plugin.sh" unstack
                echo "state exists before clean: $([ -d "$NESTOR_STATE_PATH" ] && echo yes)" >>"$FAKE_LOG"
                . "$0/devstack/plugin.sh" clean
                [ ! -e "$NESTOR_CONF" ] && [ ! -e "$NESTOR_STATE_PATH" ] && echo "clean removed all" >>"$FAKE_LOG"
                ' "$src"
}
conf() { cat "$tmp/root/after-extra.conf"; }
has() { grep -qxF -- "$1" "$2" || fail "expected line '$1' in $2:
$(cat "$2")"; }

# ---- defaults: LIBVIRT_TYPE=kvm ----
run_phases
c=$tmp/root/after-extra.conf
has "define_plugin nestor" "$tmp/log"
grep -q "^install_package build-essential cmake .*libnbd-dev" "$tmp/log" || fail "packages: $(cat "$tmp/log")"
grep -q "^cmake -S $src -B $src/build-devstack -DCMAKE_BUILD_TYPE=Release" "$tmp/log" || fail "no build"
has "sudo cmake --install $src/build-devstack" "$tmp/log"
has "transport_url = rabbit://stackrabbit:secretrabbit@192.0.2.10:5672/" "$c"
has "host = devstack-node" "$c"
has "state_path = $tmp/root/opt/stack/data/nestor" "$c"
has "plugin_dir = /usr/local/lib/nestor/plugins" "$c"
has "enabled_plugins = libvirt, sriov, inventory, snapshot, replication" "$c"
has "uri = qemu:///system" "$c"
has "virt_type = kvm" "$c"
has "listen_address = 192.0.2.10" "$c"
has "listen_port = 31031" "$c"
grep -q "device_spec" "$c" && fail "device_spec written without NESTOR_PCI_DEVICE_SPEC"
has "run_process n-nestor|/usr/local/bin/nestor-agent --config-file $tmp/root/etc/nestor/nestor.conf||root" "$tmp/log"
has "stop_process n-nestor" "$tmp/log"
has "state exists before clean: yes" "$tmp/log"
has "clean removed all" "$tmp/log"
[ "$(stat -c %a "$tmp/root/opt/stack/data" 2>/dev/null || echo gone)" != "" ]
# No phase before post-config writes the config.
[ ! -e "$tmp/root/after-install.conf" ] || fail "the config exists after install"

# ---- qemu, PCI devices, overrides ----
spec1='{"address": "0000:03:00.0", "physical_network": "physnet1"}'
spec2='{"vendor_id": "8086", "product_id": "10ed"}'
run_phases LIBVIRT_TYPE=qemu NESTOR_PCI_DEVICE_SPEC="$spec1
$spec2" NESTOR_PCI_ALIAS='{"name": "vf", "device_type": "type-VF"}' \
        NESTOR_LIBVIRT_URI=test:///default NESTOR_REPLICATION_LISTEN_ADDRESS=10.0.0.5 \
        NESTOR_REPLICATION_PORT=4000 NESTOR_PLUGINS="libvirt, replication"
c=$tmp/root/after-extra.conf
has "virt_type = qemu" "$c"
has "uri = test:///default" "$c"
has "device_spec = $spec1" "$c"
has "device_spec = $spec2" "$c"
has "alias = {\"name\": \"vf\", \"device_type\": \"type-VF\"}" "$c"
has "listen_address = 10.0.0.5" "$c"
has "listen_port = 4000" "$c"
has "enabled_plugins = libvirt, replication" "$c"
[ "$(awk '/^\[pci\]/{p=1; next} /^\[/{p=0} p && /^device_spec/' "$c" | wc -l)" = 2 ] ||
        fail "device_spec lines are not both under [pci]: $(cat "$c")"

# ---- the real agent reads the written config ----
if [ -n "$build" ] && [ -x "$build/nestor-agent" ]; then
        sed -i "s|^plugin_dir = .*|plugin_dir = $build/plugins|" "$c"
        "$build/nestor-agent" --config-file "$c" --write-sample-config >"$tmp/sample" 2>"$tmp/err" ||
                fail "nestor-agent refuses the written config: $(cat "$tmp/err")"
fi

# ---- n-nestor disabled: built and configured, never started ----
run_phases DISABLE=1
grep -q "^run_process" "$tmp/log" && fail "a disabled n-nestor was started"
grep -q "^stop_process" "$tmp/log" && fail "a disabled n-nestor was stopped"
[ -f "$tmp/root/after-post-config.conf" ] || fail "no config written with n-nestor disabled"

echo "devstack plugin: every phase ok"
