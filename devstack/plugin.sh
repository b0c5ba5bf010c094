# shellcheck shell=bash
# devstack/plugin.sh: sets Nestor up on a devstack node. devstack sources it
# as `plugin.sh <mode> [phase]` (devstack/README.md has the local.conf side):
#
#   stack pre-install   check the checkout and the libvirt type before the long steps
#   stack install       build with CMake from $NESTOR_DIR, `sudo cmake --install`
#   stack post-config   write $NESTOR_CONF from devstack's variables
#   stack extra         run nestor-agent as devstack@nestor, wait for its answer
#   stack test-config   nothing (no tempest plugin)
#   unstack             stop the agent
#   clean               remove the config, the state, what was installed, the build
#
# The packages to build and run it are in devstack/files/debs/nestor, which
# devstack installs before any phase. Everything is skipped unless service
# nestor is enabled (devstack/settings enables it).

# devstack runs with xtrace on and expects it back as it was.
_XTRACE_NESTOR=$(set +o | grep xtrace)
set -o xtrace

# ---- install ----

function _nestor_check_checkout {
        if [[ ! -f $NESTOR_DIR/CMakeLists.txt ]]; then
                die $LINENO "NESTOR_DIR=$NESTOR_DIR is not a Nestor checkout (no CMakeLists.txt)"
        fi
}

function install_nestor {
        _nestor_check_checkout
        # LIBDIR pinned so plugin_dir is known whatever GNUInstallDirs picks.
        cmake -S "$NESTOR_DIR" -B "$NESTOR_BUILD_DIR" \
                -DCMAKE_BUILD_TYPE="$NESTOR_BUILD_TYPE" \
                -DCMAKE_INSTALL_PREFIX="$NESTOR_INSTALL_PREFIX" \
                -DCMAKE_INSTALL_LIBDIR=lib -DBUILD_TESTING=OFF
        cmake --build "$NESTOR_BUILD_DIR" -j "$(nproc)"
        sudo cmake --install "$NESTOR_BUILD_DIR"
        # The agent reaches qemu:///system through libvirtd's socket group.
        if [[ $NESTOR_USER != root ]] && getent group libvirt >/dev/null; then
                add_user_to_group "$NESTOR_USER" libvirt
        fi
}

# ---- post-config ----

# Sets _NESTOR_VIRT_TYPE, the [libvirt] virt_type: NESTOR_LIBVIRT_VIRT_TYPE,
# else LIBVIRT_TYPE. Dies on a type Nestor cannot run (lxc, xen...).
function _nestor_resolve_virt_type {
        _NESTOR_VIRT_TYPE=${NESTOR_LIBVIRT_VIRT_TYPE:-${LIBVIRT_TYPE:-kvm}}
        case $_NESTOR_VIRT_TYPE in
        auto | qemu) ;;
        kvm)
                # Without KVM, drop to QEMU (TCG) as devstack does for nova.
                if [[ ! -e $NESTOR_KVM_DEVICE ]]; then
                        warn $LINENO "$NESTOR_KVM_DEVICE is missing: Nestor's virt_type is qemu"
                        _NESTOR_VIRT_TYPE=qemu
                fi
                ;;
        *)
                die $LINENO "LIBVIRT_TYPE=$_NESTOR_VIRT_TYPE: Nestor runs kvm or qemu guests" \
                        "(set NESTOR_LIBVIRT_VIRT_TYPE to kvm, qemu or auto)"
                ;;
        esac
}

# Sets _NESTOR_TRANSPORT_URL: NESTOR_TRANSPORT_URL, else devstack's RabbitMQ.
function _nestor_resolve_transport_url {
        _NESTOR_TRANSPORT_URL=${NESTOR_TRANSPORT_URL:-$(get_transport_url)}
        if [[ -z $_NESTOR_TRANSPORT_URL ]]; then
                die $LINENO "no RabbitMQ for Nestor: enable service rabbit," \
                        "set RABBIT_HOST and RABBIT_PASSWORD, or set NESTOR_TRANSPORT_URL"
        fi
}

# _nestor_iniset_multi FILE SECTION OPTION LINES: one OPTION line per
# non-blank line of LINES (oslo's repeated keys, for multi-valued options),
# replacing the option's previous lines; none when LINES is blank.
# iniset_multiline would split JSON values at their spaces, so the values go
# in with iniadd_literal, which puts each one right after the section header:
# last one first keeps their order.
function _nestor_iniset_multi {
        local file=$1 section=$2 option=$3 text=$4
        local -a values=()
        local line i
        while IFS= read -r line; do
                line=${line#"${line%%[![:space:]]*}"}
                line=${line%"${line##*[![:space:]]}"}
                if [[ -n $line ]]; then
                        values+=("$line")
                fi
        done <<<"$text"
        # iniset makes the section exist; inidelete drops that and older lines.
        iniset "$file" "$section" "$option" placeholder
        inidelete "$file" "$section" "$option"
        for ((i = ${#values[@]} - 1; i >= 0; i--)); do
                # sed's a\ text takes a backslash as an escape: double them.
                iniadd_literal "$file" "$section" "$option" "${values[i]//\\/\\\\}"
        done
}

function configure_nestor {
        _nestor_resolve_virt_type
        _nestor_resolve_transport_url

        sudo install -d -o "$STACK_USER" "$NESTOR_CONF_DIR"
        # 0711 like the systemd unit's StateDirectoryMode: QEMU runs as
        # another user and must reach the disks under instances/.
        sudo install -d -o "$NESTOR_USER" -m 0711 "$NESTOR_STATE_PATH"
        # Written from scratch each time: nothing left from an older stack.
        rm -f "$NESTOR_CONF"
        touch "$NESTOR_CONF"

        iniset "$NESTOR_CONF" DEFAULT transport_url "$_NESTOR_TRANSPORT_URL"
        iniset "$NESTOR_CONF" DEFAULT host "$NESTOR_HOST"
        iniset "$NESTOR_CONF" DEFAULT state_path "$NESTOR_STATE_PATH"
        iniset "$NESTOR_CONF" DEFAULT plugin_dir "$NESTOR_PLUGIN_DIR"
        iniset "$NESTOR_CONF" DEFAULT enabled_plugins "$NESTOR_PLUGINS"
        iniset "$NESTOR_CONF" DEFAULT debug "$NESTOR_DEBUG"
        # stderr goes to the journal: journalctl -u devstack@nestor.
        iniset "$NESTOR_CONF" DEFAULT use_syslog False
        if [[ -n ${RABBIT_HEARTBEAT_TIMEOUT_THRESHOLD:-} ]]; then
                iniset "$NESTOR_CONF" oslo_messaging_rabbit heartbeat_timeout_threshold \
                        "$RABBIT_HEARTBEAT_TIMEOUT_THRESHOLD"
        fi

        iniset "$NESTOR_CONF" libvirt uri "$NESTOR_LIBVIRT_URI"
        iniset "$NESTOR_CONF" libvirt virt_type "$_NESTOR_VIRT_TYPE"

        if [[ -n ${NESTOR_PCI_DEVICE_SPEC//[[:space:]]/} ]]; then
                _nestor_iniset_multi "$NESTOR_CONF" pci device_spec "$NESTOR_PCI_DEVICE_SPEC"
        fi
        if [[ -n ${NESTOR_PCI_ALIAS//[[:space:]]/} ]]; then
                _nestor_iniset_multi "$NESTOR_CONF" pci alias "$NESTOR_PCI_ALIAS"
        fi

        iniset "$NESTOR_CONF" replication listen_address "$NESTOR_REPLICATION_LISTEN_ADDRESS"
        iniset "$NESTOR_CONF" replication listen_port "$NESTOR_REPLICATION_PORT"
}

# ---- extra, unstack ----

function _nestor_wait_for_agent {
        local deadline=$((SECONDS + NESTOR_START_TIMEOUT))
        until "$NESTOR_BIN_DIR/nestorctl" --config-file "$NESTOR_CONF" --host "$NESTOR_HOST" \
                --timeout 5 call ping >/dev/null; do
                if ((SECONDS >= deadline)); then
                        die $LINENO "nestor-agent did not answer a ping within" \
                                "${NESTOR_START_TIMEOUT}s: journalctl -u devstack@nestor"
                fi
                sleep 1
        done
}

function start_nestor {
        # run_process: service, absolute command (no sudo), group, user.
        run_process nestor "$NESTOR_BIN_DIR/nestor-agent --config-file $NESTOR_CONF" \
                "" "$NESTOR_USER"
        if ((NESTOR_START_TIMEOUT > 0)); then
                _nestor_wait_for_agent
        fi
}

function stop_nestor {
        stop_process nestor
}

# ---- clean ----

function cleanup_nestor {
        # What `cmake --install` wrote, as it recorded it.
        local manifest=$NESTOR_BUILD_DIR/install_manifest.txt
        if [[ -f $manifest ]]; then
                tr '\n' '\0' <"$manifest" | sudo xargs -0 -r rm -f --
        fi
        sudo rm -f "$NESTOR_CONF"
        # Kept when the operator put other files (certificates...) there.
        sudo rmdir --ignore-fail-on-non-empty "$NESTOR_CONF_DIR"
        sudo rm -rf "${NESTOR_STATE_PATH:?}" "${NESTOR_BUILD_DIR:?}"
}

# ---- dispatch ----

if is_service_enabled nestor; then
        case $1 in
        stack)
                case $2 in
                pre-install)
                        echo_summary "Checking Nestor's checkout and libvirt type"
                        _nestor_check_checkout
                        _nestor_resolve_virt_type
                        ;;
                install)
                        echo_summary "Building and installing Nestor"
                        install_nestor
                        ;;
                post-config)
                        echo_summary "Configuring Nestor"
                        configure_nestor
                        ;;
                extra)
                        echo_summary "Starting Nestor"
                        start_nestor
                        ;;
                test-config)
                        ;;
                esac
                ;;
        unstack)
                stop_nestor
                ;;
        clean)
                cleanup_nestor
                ;;
        esac
fi

$_XTRACE_NESTOR
