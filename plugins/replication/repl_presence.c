/* Where a replicated instance is (repl_presence.h). */
#include "plugins/replication/repl_presence.h"

#include <libvirt/libvirt.h>
#include <string.h>

static const char *const names[] = {
        [REPL_PRESENCE_HERE] = "here",
        [REPL_PRESENCE_STOPPED] = "stopped",
        [REPL_PRESENCE_MIGRATED] = "migrated",
        [REPL_PRESENCE_MISSING] = "missing",
};

const char *repl_presence_name(enum repl_presence p) {
        return (unsigned)p < sizeof(names) / sizeof(names[0]) ? names[p] : "unknown";
}

int repl_presence_parse(const char *name) {
        for (unsigned i = 0; name && i < sizeof(names) / sizeof(names[0]); i++)
                if (strcmp(names[i], name) == 0)
                        return (int)i;
        return -1;
}

enum repl_presence repl_presence_after_event(enum repl_presence cur, int event, int detail) {
        switch (event) {
        case VIR_DOMAIN_EVENT_STARTED:
        case VIR_DOMAIN_EVENT_RESUMED:
                return REPL_PRESENCE_HERE;
        case VIR_DOMAIN_EVENT_STOPPED:
                return detail == VIR_DOMAIN_EVENT_STOPPED_MIGRATED ? REPL_PRESENCE_MIGRATED
                                                                   : REPL_PRESENCE_STOPPED;
        case VIR_DOMAIN_EVENT_UNDEFINED:
                /* The undefinition that ends an outgoing migration. */
                return cur == REPL_PRESENCE_MIGRATED ? REPL_PRESENCE_MIGRATED
                                                     : REPL_PRESENCE_MISSING;
        case VIR_DOMAIN_EVENT_DEFINED:
                /* Defined again (not running: STARTED would follow). */
                return cur == REPL_PRESENCE_MISSING ? REPL_PRESENCE_STOPPED : cur;
        default:
                /* SUSPENDED and PMSUSPENDED keep QEMU (and the backup
                 * job's source) alive; SHUTDOWN and CRASHED precede a
                 * STOPPED. */
                return cur;
        }
}

enum repl_presence repl_presence_from_state(enum repl_presence cur, bool exists, int state,
                                            int reason) {
        if (!exists)
                return cur == REPL_PRESENCE_MIGRATED ? REPL_PRESENCE_MIGRATED
                                                     : REPL_PRESENCE_MISSING;
        switch (state) {
        case VIR_DOMAIN_SHUTOFF:
                return reason == VIR_DOMAIN_SHUTOFF_MIGRATED ? REPL_PRESENCE_MIGRATED
                                                             : REPL_PRESENCE_STOPPED;
        case VIR_DOMAIN_CRASHED:
                return REPL_PRESENCE_STOPPED;
        default:
                /* RUNNING, BLOCKED, PAUSED, SHUTDOWN (in progress),
                 * PMSUSPENDED: a QEMU process runs here. */
                return REPL_PRESENCE_HERE;
        }
}
