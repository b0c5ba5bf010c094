/* The built-in English message catalog: one sentence per event type the
 * agent and its plugins publish. Every other language falls back to it, so
 * it must cover every event type (tests/unit/test_catalog.c scans the tree
 * for emitted ones). Placeholders are paths into the payload's versioned
 * data (nova's InstancePayload fields for instance.*; see
 * share/locale/README.md for the fields each family uses). */
#include "messages/catalog.h"

static const struct nst_catalog_entry english[] = {
        /* Instance lifecycle (nova's InstanceActionPayload / InstanceCreatePayload). */
        {"instance.create.start", "Creating instance {display_name} on {host}"},
        {"instance.create.end", "Instance {display_name} was created on {host}"},
        {"instance.create.error",
         "Instance {display_name} could not be created on {host}: {fault.exception_message}"},
        {"instance.delete.start", "Deleting instance {display_name} on {host}"},
        {"instance.delete.end", "Instance {display_name} was deleted on {host}"},
        {"instance.delete.error",
         "Instance {display_name} could not be deleted on {host}: {fault.exception_message}"},
        {"instance.power_on.start", "Powering on instance {display_name} on {host}"},
        {"instance.power_on.end", "Instance {display_name} on {host} is powered on"},
        {"instance.power_on.error",
         "Instance {display_name} on {host} could not be powered on: {fault.exception_message}"},
        {"instance.power_off.start", "Powering off instance {display_name} on {host}"},
        {"instance.power_off.end", "Instance {display_name} on {host} is powered off"},
        {"instance.power_off.error",
         "Instance {display_name} on {host} could not be powered off: "
         "{fault.exception_message}"},
        {"instance.reboot.start", "Rebooting instance {display_name} on {host}"},
        {"instance.reboot.end", "Instance {display_name} on {host} was rebooted"},
        {"instance.reboot.error",
         "Instance {display_name} on {host} could not be rebooted: {fault.exception_message}"},
        {"instance.suspend.start", "Suspending instance {display_name} on {host}"},
        {"instance.suspend.end", "Instance {display_name} on {host} is suspended"},
        {"instance.suspend.error",
         "Instance {display_name} on {host} could not be suspended: {fault.exception_message}"},
        {"instance.resume.start", "Resuming instance {display_name} on {host}"},
        {"instance.resume.end", "Instance {display_name} on {host} was resumed"},
        {"instance.resume.error",
         "Instance {display_name} on {host} could not be resumed: {fault.exception_message}"},

        /* Snapshots (InstanceActionSnapshotPayload). */
        {"instance.snapshot.start", "Taking a snapshot of instance {display_name} on {host}"},
        {"instance.snapshot.end",
         "Snapshot {snapshot_image_id} of instance {display_name} was taken on {host}"},
        {"instance.snapshot.error",
         "The snapshot of instance {display_name} on {host} failed: {fault.exception_message}"},
        {"instance.snapshot_delete.end",
         "A snapshot of instance {display_name} was deleted on {host}"},
        {"instance.snapshot_revert.end",
         "Instance {display_name} was reverted to a snapshot on {host}"},

        /* Replication. */
        {"replication.enable.end",
         "Replication of instance {display_name} to {target_host} is enabled"},
        {"replication.sync.start",
         "Replication of instance {display_name} to {target_host}: synchronization started"},
        {"replication.sync.end",
         "Replication of instance {display_name} to {target_host}: synchronization completed"},
        {"replication.sync.error",
         "Replication of instance {display_name} to {target_host}: synchronization failed: "
         "{fault.exception_message}"},
        {"replication.rpo_violation",
         "Replication of instance {display_name} to {target_host} is behind its RPO of "
         "{rpo_seconds} s"},
        {"replication.rpo_restored",
         "Replication of instance {display_name} to {target_host} is within its RPO of "
         "{rpo_seconds} s again"},
        {"replication.failover.start", "Failing over instance {display_name} to {host}"},
        {"replication.failover.end", "Instance {display_name} was failed over to {host}"},
        {"replication.failover.error",
         "Failover of instance {display_name} to {host} failed: {fault.exception_message}"},
        {"replication.disable.end",
         "Replication of instance {display_name} to {target_host} is disabled"},
        {"replication.chain_broken",
         "Replication of instance {display_name} to {target_host} lost its changed-block "
         "tracking ({reason}); the next cycle compares block hashes"},
        {"replication.instance_unavailable",
         "Replication of instance {display_name} to {target_host} waits for the instance "
         "({presence} on {source_host})"},
        {"replication.instance_available",
         "Instance {display_name} runs on {source_host} again; its replication to "
         "{target_host} resumes"},
        {"replication.source_changed",
         "The replica of instance {display_name} on {host} now comes from {source_host} "
         "(previously {previous_source_host})"},
        {"replication.test_failover.end",
         "A test copy of instance {display_name} was started on {host} from point {point_id}"},
        {"replication.network_connected",
         "The network of recovered instance {display_name} on {host} is connected"},
        {"replication.failover_refused",
         "Failover of instance {display_name} to {host} was refused: {reason}"},

        /* Service, devices and resources. */
        {"service.update", "Service {binary} on {host} reported its status"},
        {"pci.device.claimed", "PCI device {address} on {host} was claimed for instance "
                               "{instance_uuid}"},
        {"pci.device.released", "PCI device {address} on {host} was released by instance "
                                "{instance_uuid}"},
        {"inventory.report", "Host {host} reported its resources"},
};

const struct nst_catalog_entry *nst_catalog_english(size_t *ret_n) {
        *ret_n = NST_ARRAY_SIZE(english);
        return english;
}
