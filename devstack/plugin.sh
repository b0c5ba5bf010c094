# shellcheck shell=bash
# devstack plugin for Nestor: `enable_plugin nestor <repo> [ref]` in
# local.conf. Phases (devstack's contract, in stack.sh order):
#   stack install      build Nestor with CMake from $NESTOR_DIR, install it
#   stack post-config  write $NESTOR_CONF from devstack's variables
#   stack extra        start nestor-agent as service n-nestor (run_process)
#   unstack            stop it
#   clean              remove its configuration, state and build tree
# Package needs are in devstack/files/debs/nestor.

_XTRACE_NESTOR=$(set +o | grep xtrace)
set +o xtrace

function install_nestor {
        local -a packages
        mapfile -t packages <"$NESTOR_DIR/devstack/files/debs/nestor"
        install_package "${packages[@]}"
        cmake -S "$NESTOR_DIR" -B "$NESTOR_BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
                -DCMAKE_INSTALL_PREFIX="$NESTOR_PREFIX" -DBUILD_TESTING=OFF
        cmake --build "$NESTOR_BUILD_DIR" -j "$(nproc)"
        sudo cmake --install "$NESTOR_BUILD_DIR"
}

# The libvirt options nova's hypervisor-libvirt would use for $LIBVIRT_TYPE.
function _nestor_virt_type {
        case "${LIBVIRT_TYPE:-kvm}" in
        kvm | qemu) echo "$LIBVIRT_TYPE" ;;
        *) echo auto ;;
        esac
}

function configure_nestor {
        sudo install -d -o "$STACK_USER" "$NESTOR_CONF_DIR"
        # 0711: QEMU (another user) reaches the instances' disks below it.
        sudo install -d -o "$STACK_USER" -m 0711 "$NESTOR_STATE_PATH"
        rm -f "$NESTOR_CONF"
        iniset "$NESTOR_CONF" DEFAULT transport_url "$(get_transport_url)"
        iniset "$NESTOR_CONF" DEFAULT host "${NESTOR_HOST:-$(hostname)}"
        iniset "$NESTOR_CONF" DEFAULT state_path "$NESTOR_STATE_PATH"
        iniset "$NESTOR_CONF" DEFAULT plugin_dir "$NESTOR_PREFIX/lib/nestor/plugins"
        iniset "$NESTOR_CONF" DEFAULT enabled_plugins "$NESTOR_PLUGINS"
        iniset "$NESTOR_CONF" libvirt uri "$NESTOR_LIBVIRT_URI"
        iniset "$NESTOR_CONF" libvirt virt_type "$(_nestor_virt_type)"
        if [ -n "$NESTOR_PCI_DEVICE_SPEC" ]; then
                local -a specs
                mapfile -t specs <<<"$NESTOR_PCI_DEVICE_SPEC"
                iniset_multiline "$NESTOR_CONF" pci device_spec "${specs[@]}"
        fi
        if [ -n "$NESTOR_PCI_ALIAS" ]; then
                local -a aliases
                mapfile -t aliases <<<"$NESTOR_PCI_ALIAS"
                iniset_multiline "$NESTOR_CONF" pci alias "${aliases[@]}"
        fi
        iniset "$NESTOR_CONF" replication listen_address "$NESTOR_REPLICATION_LISTEN_ADDRESS"
        iniset "$NESTOR_CONF" replication listen_port "$NESTOR_REPLICATION_PORT"
        if [ -n "${RABBIT_HEARTBEAT_TIMEOUT_THRESHOLD:-}" ]; then
                iniset "$NESTOR_CONF" oslo_messaging_rabbit heartbeat_timeout_threshold \
                        "$RABBIT_HEARTBEAT_TIMEOUT_THRESHOLD"
        fi
}

function start_nestor {
        # The agent manages libvirt domains: it runs as root, like nova's
        # privileged helpers (run_process refuses sudo in the command).
        run_process n-nestor "$NESTOR_BIN_DIR/nestor-agent --config-file $NESTOR_CONF" "" root
}

function stop_nestor {
        stop_process n-nestor
}

function cleanup_nestor {
        sudo rm -rf "$NESTOR_CONF_DIR" "$NESTOR_STATE_PATH" "$NESTOR_BUILD_DIR"
}

# Built and configured whenever the plugin is enabled; the agent runs only
# while service n-nestor is (disable_service n-nestor to keep it stopped).
case "$1" in
stack)
        case "$2" in
        install)
                echo_summary "Building and installing Nestor"
                install_nestor
                ;;
        post-config)
                echo_summary "Configuring Nestor"
                configure_nestor
                ;;
        extra)
                if is_service_enabled n-nestor; then
                        echo_summary "Starting Nestor"
                        start_nestor
                fi
                ;;
        esac
        ;;
unstack)
        if is_service_enabled n-nestor; then
                stop_nestor
        fi
        ;;
clean)
        cleanup_nestor
        ;;
esac

$_XTRACE_NESTOR
