#!/usr/bin/env bash
# The devstack plugin (devstack/settings, devstack/plugin.sh) run through
# every phase in devstack's order against a stand-in for devstack's function
# library (fake-devstack.sh), in a scratch directory: no root, no devstack,
# nothing installed (cmake is a fake on PATH that records its arguments and
# "installs" under the scratch directory). Checks the written nestor.conf,
# the recorded commands and what clean leaves behind.
# Usage: tests/devstack/test_plugin.sh [BUILD_DIR]
# (BUILD_DIR, which ctest passes, is not needed; NESTOR_TEST_KEEP=1 keeps
# the scratch tree to look at.)
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nestor-devstack.XXXXXX")
if [[ -z ${NESTOR_TEST_KEEP:-} ]]; then trap 'rm -rf "$tmp"' EXIT; fi
failures=0
case_name=

fail() {
        echo "FAIL [$case_name]: $*" >&2
        failures=$((failures + 1))
}

# ---- the fakes on PATH ----

mkdir -p "$tmp/bin"
# cmake: records its arguments. --install "installs" a nestor-agent and a
# nestorctl under $FAKE_PREFIX and writes install_manifest.txt like cmake.
cat >"$tmp/bin/cmake" <<'EOF'
#!/usr/bin/env bash
set -euo pipefail
printf 'cmake %s\n' "$*" >>"$FAKE_DEVSTACK_LOG"
case "$1" in
-S) mkdir -p "$4" && : >"$4/CMakeCache.txt" ;;
--build) : >"$2/nestor-agent" ;;
--install)
        mkdir -p "$FAKE_PREFIX/bin" "$FAKE_PREFIX/lib/nestor/plugins"
        for tool in nestor-agent nestorctl; do
                printf '#!/bin/sh\nprintf "%s %%s\\n" "$*" >>"%s"\n%s\n' "$tool" \
                        "$FAKE_DEVSTACK_LOG" 'exit ${FAKE_NESTORCTL_STATUS:-0}' \
                        >"$FAKE_PREFIX/bin/$tool"
                chmod +x "$FAKE_PREFIX/bin/$tool"
        done
        : >"$FAKE_PREFIX/lib/nestor/plugins/libvirt.so"
        printf '%s\n' "$FAKE_PREFIX/bin/nestor-agent" "$FAKE_PREFIX/bin/nestorctl" \
                "$FAKE_PREFIX/lib/nestor/plugins/libvirt.so" >"$2/install_manifest.txt"
        ;;
esac
EOF
chmod +x "$tmp/bin/cmake"

# ---- running devstack's scripts ----

# new_case NAME: a fresh scratch tree for one scenario.
new_case() {
        case_name=$1
        root=$tmp/$1
        log=$root/calls.log
        mkdir -p "$root"
        : >"$log"
        : >"$root/kvm"
}

# devstack SCRIPT [VAR=VALUE...]: one devstack script as a fresh shell:
# stack (stack.sh: every stack phase in order, with errexit), unstack or
# clean (clean.sh runs unstack.sh first), with xtrace on unless
# FAKE_XTRACE=off, and at most 60 s. Each sources the fake library,
# then local.conf's localrc ($LOCALRC), then devstack/settings, as devstack
# does. Output and xtrace go to $root/SCRIPT.out.
devstack() {
        local script=$1
        shift
        # shellcheck disable=SC2016  # expanded by the inner shell
        timeout 60 env PATH="$tmp/bin:$PATH" FAKE_DEVSTACK_ROOT="$root" FAKE_DEVSTACK_LOG="$log" \
                FAKE_PREFIX="$root/usr/local" NESTOR_DIR="$src" \
                NESTOR_BUILD_DIR="$root/build" NESTOR_INSTALL_PREFIX="$root/usr/local" \
                NESTOR_CONF_DIR="$root/etc/nestor" NESTOR_KVM_DEVICE="$root/kvm" \
                NESTOR_START_TIMEOUT=2 LOCALRC="${LOCALRC:-}" "$@" \
                bash -c '
                        script=$1 plugin=$2/devstack
                        # devstack runs its scripts with xtrace on.
                        if [[ ${FAKE_XTRACE:-on} == on ]]; then set -o xtrace; fi
                        echo "xtrace before: $(set +o | grep xtrace)" >>"$FAKE_DEVSTACK_LOG"
                        source "$2/tests/devstack/fake-devstack.sh"
                        eval "$LOCALRC"
                        source "$plugin/settings"
                        # devstack counts any n-* service as nova.
                        if is_service_enabled nova; then
                                echo "settings: nova counts as enabled" >>"$FAKE_DEVSTACK_LOG"
                        fi
                        case $script in
                        stack)
                                set -o errexit
                                for phase in pre-install install post-config extra test-config; do
                                        echo "phase stack $phase" >>"$FAKE_DEVSTACK_LOG"
                                        source "$plugin/plugin.sh" stack "$phase"
                                done
                                ;;
                        unstack | clean)
                                echo "phase $script" >>"$FAKE_DEVSTACK_LOG"
                                source "$plugin/plugin.sh" "$script"
                                ;;
                        esac
                        echo "xtrace after: $(set +o | grep xtrace)" >>"$FAKE_DEVSTACK_LOG"
                ' devstack "$script" "$src" >"$root/$script.out" 2>&1
}

# ---- reading the results ----

conf() { echo "$root/etc/nestor/nestor.conf"; }

# values SECTION OPTION: every value of OPTION in SECTION, in file order,
# read the way oslo.config (and Nestor) read repeated keys.
values() {
        [[ -f $(conf) ]] || return 0
        awk -v sec="[$1]" -v opt="$2" '
                /^\[.*\]$/ { inside = ($0 == sec); next }
                inside && index($0, opt) == 1 && substr($0, length(opt) + 1) ~ /^[ \t]*=/ {
                        sub(/^[^=]*=[ \t]*/, ""); print
                }' "$(conf)"
}

expect_value() { # SECTION OPTION EXPECTED (the only value)
        local got
        got=$(values "$1" "$2")
        [[ $got == "$3" ]] || fail "[$1] $2 is '$got', expected '$3'"
}

expect_call() { # a line of the call log, exactly
        grep -qxF -- "$1" "$log" || fail "no call '$1'; the calls were:
$(cat "$log")"
}

expect_no_call() { # no line of the call log starts with this
        if grep -q -- "^$1" "$log"; then
                fail "unexpected call: $(grep -- "^$1" "$log" | head -3)"
        fi
}

# Every section and option written must be one the sample documents:
# catches a misspelt option that the agent would only warn about.
expect_documented_options() {
        local sample=$src/etc/nestor.conf.sample section="" line option
        while IFS= read -r line; do
                case $line in
                \[*\]) section=${line:1:-1} ;;
                *=*)
                        option=${line%%=*}
                        option=${option%"${option##*[! ]}"}
                        if ! awk -v sec="[$section]" -v opt="#$option = " '
                                /^\[.*\]$/ { inside = ($0 == sec); next }
                                inside && index($0, opt) == 1 { found = 1 }
                                END { exit !found }' "$sample"; then
                                fail "[$section] $option is not an option of etc/nestor.conf.sample"
                        fi
                        ;;
                esac
        done <"$(conf)"
}

# ---- the scenarios ----

# Defaults: LIBVIRT_TYPE=kvm with KVM present, devstack's RabbitMQ.
new_case defaults
devstack stack || fail "stack failed: $(tail -5 "$root/stack.out")"
expect_call "cmake -S $src -B $root/build -DCMAKE_BUILD_TYPE=Release \
-DCMAKE_INSTALL_PREFIX=$root/usr/local -DCMAKE_INSTALL_LIBDIR=lib -DBUILD_TESTING=OFF"
expect_call "cmake --build $root/build -j $(nproc)"
expect_call "sudo cmake --install $root/build"
expect_call "cmake --install $root/build"
# The build comes before the config, the config before the start.
order=$(grep -n -e '^cmake --install' -e '^iniset .* transport_url' -e '^run_process' "$log" |
        cut -d: -f2- | cut -d' ' -f1 | paste -sd' ')
[[ $order == "cmake iniset run_process" ]] || fail "install, config, start in the order: $order"
expect_value DEFAULT transport_url "rabbit://stackrabbit:rabbit-secret@192.0.2.10:5672/"
expect_value DEFAULT host "$(hostname)"
expect_value DEFAULT state_path "$root/opt/stack/data/nestor"
expect_value DEFAULT plugin_dir "$root/usr/local/lib/nestor/plugins"
expect_value DEFAULT enabled_plugins "libvirt, sriov, inventory, snapshot, replication"
expect_value DEFAULT debug True
expect_value DEFAULT use_syslog False
expect_value libvirt uri "qemu:///system"
expect_value libvirt virt_type kvm
expect_value replication listen_address 192.0.2.10
expect_value replication listen_port 31031
[[ -z $(values pci device_spec)$(values pci alias) ]] || fail "[pci] written without NESTOR_PCI_*"
[[ -z $(values oslo_messaging_rabbit heartbeat_timeout_threshold) ]] ||
        fail "heartbeat_timeout_threshold written without RABBIT_HEARTBEAT_TIMEOUT_THRESHOLD"
expect_documented_options
[[ -d $root/opt/stack/data/nestor ]] || fail "no state directory"
[[ $(stat -c %a "$root/opt/stack/data/nestor" 2>/dev/null) == 711 ]] ||
        fail "the state directory is not 0711"
expect_call "sudo install -d -o $(id -un) -m 0711 $root/opt/stack/data/nestor"
expect_call "run_process nestor|$root/usr/local/bin/nestor-agent --config-file $(conf)||$(id -un)"
expect_call "nestorctl --config-file $(conf) --host $(hostname) --timeout 5 call ping"
if [[ $(id -un) != root ]] && getent group libvirt >/dev/null; then
        expect_call "add_user_to_group $(id -un) libvirt"
else
        expect_no_call add_user_to_group
fi
expect_no_call warn
expect_no_call install_package # devstack installs files/debs/nestor itself
expect_call "xtrace after: set -o xtrace"
grep -q '^+.*configure_nestor' "$root/stack.out" || fail "the phases did not run with xtrace on"
# The config is devstack's to merge [[post-config|...]] into: owned by stack.
[[ $(stat -c %U "$(conf)") == "$(id -un)" ]] || fail "the config is not owned by STACK_USER"

devstack unstack || fail "unstack failed: $(tail -5 "$root/unstack.out")"
expect_call "stop_process nestor"
[[ -f $(conf) ]] || fail "unstack removed the config"

mkdir -p "$root/opt/stack/data/nestor/instances/x"
devstack clean || fail "clean failed: $(tail -5 "$root/clean.out")"
[[ ! -e $(conf) && ! -e $root/etc/nestor ]] || fail "clean left the config"
[[ ! -e $root/opt/stack/data/nestor ]] || fail "clean left the state directory"
[[ ! -e $root/build ]] || fail "clean left the build directory"
[[ -z $(find "$root/usr/local" -type f) ]] || fail "clean left installed files: \
$(find "$root/usr/local" -type f)"
[[ -d $root/opt/stack/data ]] || fail "clean removed more than Nestor's state"

# qemu, the PCI lists, every override, RabbitMQ heartbeat.
new_case overrides
spec1='{"address": "0000:03:00.0", "physical_network": "physnet1", "trusted": "true"}'
spec2='[{"vendor_id": "8086", "product_id": "10ed"}, {"address": "0000:81:*.*"}]'
spec3='{"address": {"domain": ".*", "bus": "0[2-3]", "slot": "\\d+"}}'
alias1='{"name": "vf", "vendor_id": "8086", "product_id": "10ed", "device_type": "type-VF"}'
alias2='{"name": "fc", "vendor_id": "10df", "product_id": "e208"}'
devstack stack LIBVIRT_TYPE=qemu RABBIT_HEARTBEAT_TIMEOUT_THRESHOLD=30 \
        NESTOR_PCI_DEVICE_SPEC="$spec1
  $spec2

$spec3" NESTOR_PCI_ALIAS="$alias1
$alias2" NESTOR_LIBVIRT_URI=qemu+tcp://node2/system NESTOR_REPLICATION_LISTEN_ADDRESS=10.1.2.3 \
        NESTOR_REPLICATION_PORT=4000 NESTOR_PLUGINS="libvirt, replication" \
        NESTOR_HOST=compute-7 NESTOR_DEBUG=False NESTOR_USER=nobody ||
        fail "stack failed: $(tail -5 "$root/stack.out")"
expect_value libvirt virt_type qemu
expect_value libvirt uri qemu+tcp://node2/system
[[ $(values pci device_spec) == "$spec1"$'\n'"$spec2"$'\n'"$spec3" ]] ||
        fail "[pci] device_spec is not the three values in order: $(values pci device_spec)"
[[ $(values pci alias) == "$alias1"$'\n'"$alias2" ]] ||
        fail "[pci] alias is not the two values in order: $(values pci alias)"
expect_value replication listen_address 10.1.2.3
expect_value replication listen_port 4000
expect_value DEFAULT enabled_plugins "libvirt, replication"
expect_value DEFAULT host compute-7
expect_value DEFAULT debug False
expect_value oslo_messaging_rabbit heartbeat_timeout_threshold 30
expect_documented_options
expect_call "nestorctl --config-file $(conf) --host compute-7 --timeout 5 call ping"
expect_call "run_process nestor|$root/usr/local/bin/nestor-agent --config-file $(conf)||nobody"
expect_call "sudo install -d -o nobody -m 0711 $root/opt/stack/data/nestor"
expect_call "sudo install -d -o $(id -un) $root/etc/nestor"
if getent group libvirt >/dev/null; then
        expect_call "add_user_to_group nobody libvirt"
fi
# post-config again (a second stack.sh) with one value each: replaced, not added.
devstack stack LIBVIRT_TYPE=qemu NESTOR_PCI_DEVICE_SPEC="$spec1" NESTOR_PCI_ALIAS="$alias2" ||
        fail "second stack failed: $(tail -5 "$root/stack.out")"
[[ $(values pci device_spec) == "$spec1" ]] || fail "restack: device_spec $(values pci device_spec)"
[[ $(values pci alias) == "$alias2" ]] || fail "restack: alias $(values pci alias)"
expect_value libvirt uri "qemu:///system"

# kvm asked, no KVM on the host: QEMU, as devstack does for nova.
new_case no-kvm
rm -f "$root/kvm"
devstack stack || fail "stack failed: $(tail -5 "$root/stack.out")"
expect_value libvirt virt_type qemu
grep -q "^warn .*kvm is missing" "$log" || fail "no warning about the missing KVM"
# ...unless the operator says otherwise.
devstack stack NESTOR_LIBVIRT_VIRT_TYPE=auto || fail "stack failed: $(tail -5 "$root/stack.out")"
expect_value libvirt virt_type auto

# A libvirt type Nestor cannot run: stack stops before building anything.
new_case lxc
if devstack stack LIBVIRT_TYPE=lxc; then
        fail "stack succeeded with LIBVIRT_TYPE=lxc"
fi
grep -q "LIBVIRT_TYPE=lxc: Nestor runs kvm or qemu" "$root/stack.out" || fail "no reason given"
expect_no_call cmake

# No RabbitMQ in this devstack: stack fails at post-config and says why...
new_case no-rabbit
if devstack stack ENABLED_SERVICES=n-cpu RABBIT_HOST= RABBIT_PASSWORD=; then
        fail "stack succeeded without a broker"
fi
grep -q "no RabbitMQ for Nestor" "$root/stack.out" || fail "no reason given"
expect_no_call run_process
# ...and NESTOR_TRANSPORT_URL is the way out.
devstack stack ENABLED_SERVICES=n-cpu RABBIT_HOST= RABBIT_PASSWORD= \
        NESTOR_TRANSPORT_URL=rabbit://u:p@broker:5672/ ||
        fail "stack failed: $(tail -5 "$root/stack.out")"
expect_value DEFAULT transport_url rabbit://u:p@broker:5672/

# A node with Nestor and a broker but no nova: enabling Nestor must not make
# devstack count nova as enabled (it does so for any n-* service).
new_case without-nova
devstack stack ENABLED_SERVICES=rabbit || fail "stack failed: $(tail -5 "$root/stack.out")"
expect_call "run_process nestor|$root/usr/local/bin/nestor-agent --config-file $(conf)||$(id -un)"
if grep -q "nova counts as enabled" "$log"; then
        fail "enabling nestor made devstack think nova is enabled"
fi

# A RabbitMQ on another node (a multi-node compute): RABBIT_HOST names it.
new_case remote-rabbit
devstack stack ENABLED_SERVICES=n-cpu RABBIT_HOST=192.0.2.1 RABBIT_PASSWORD=pw ||
        fail "stack failed: $(tail -5 "$root/stack.out")"
expect_value DEFAULT transport_url "rabbit://stackrabbit:pw@192.0.2.1:5672/"

# The agent never answers: stack extra fails and says where to look.
new_case no-answer
if devstack stack FAKE_NESTORCTL_STATUS=3 NESTOR_START_TIMEOUT=1; then
        fail "stack succeeded with an agent that does not answer"
fi
grep -q "did not answer a ping within 1s: journalctl -u devstack@nestor" "$root/stack.out" ||
        fail "no reason given"
devstack stack FAKE_NESTORCTL_STATUS=3 NESTOR_START_TIMEOUT=0 ||
        fail "NESTOR_START_TIMEOUT=0 still waits"

# nestor disabled in local.conf: settings cannot enable it again, and
# no phase does anything.
new_case disabled
mkdir -p "$root/etc/nestor"
echo "[DEFAULT]" >"$root/etc/nestor/nestor.conf"
LOCALRC="disable_service nestor" devstack stack ||
        fail "stack failed: $(tail -5 "$root/stack.out")"
LOCALRC="disable_service nestor" devstack unstack || fail "unstack failed"
LOCALRC="disable_service nestor" devstack clean || fail "clean failed"
for call in cmake sudo iniset run_process nestorctl stop_process summary; do
        expect_no_call "$call"
done
[[ $(cat "$(conf)") == "[DEFAULT]" ]] || fail "a disabled plugin touched the config"
grep -q "^warn Attempt to enable_service nestor when it has been disabled" "$log" ||
        fail "settings did not try (and fail) to enable nestor"

# Sourced with xtrace off, the plugin traces its own commands and turns
# xtrace off again.
new_case xtrace-off
FAKE_XTRACE=off devstack unstack || fail "unstack failed"
expect_call "xtrace before: set +o xtrace"
expect_call "xtrace after: set +o xtrace"
grep -q '^+.*stop_process nestor' "$root/unstack.out" || fail "the plugin did not trace itself"

if ((failures)); then
        echo "devstack plugin: $failures failure(s)" >&2
        exit 1
fi
echo "devstack plugin: every phase and scenario ok"
