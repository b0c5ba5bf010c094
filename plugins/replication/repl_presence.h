/* Where a replicated instance is, as its source node sees it: running here,
 * stopped here, migrated away, or not defined here at all. Pure (no
 * libvirt calls), fed with libvirt's lifecycle events and domain states,
 * so the rules are tested without a second host to migrate to.
 *
 * It matters beyond the status: a source that answers "not running" for an
 * instance that was migrated away would let the target fail over while the
 * instance runs on its new host. MIGRATED therefore outlives the domain's
 * undefinition on this host (nova migrates with VIR_MIGRATE_UNDEFINE_SOURCE)
 * and only ends when the instance is seen here again. */
#ifndef NESTOR_PLUGINS_REPLICATION_REPL_PRESENCE_H
#define NESTOR_PLUGINS_REPLICATION_REPL_PRESENCE_H

#include <stdbool.h>

enum repl_presence {
        REPL_PRESENCE_HERE,     /* defined here and running (or paused) */
        REPL_PRESENCE_STOPPED,  /* defined here, not running */
        REPL_PRESENCE_MIGRATED, /* libvirt said it migrated away */
        REPL_PRESENCE_MISSING,  /* not defined here (deleted, or moved unseen) */
};

/* "here", "stopped", "migrated", "missing". */
const char *repl_presence_name(enum repl_presence p);
/* -1 for an unknown name. */
int repl_presence_parse(const char *name);

/* After a lifecycle event (VIR_DOMAIN_EVENT_* and its detail). */
enum repl_presence repl_presence_after_event(enum repl_presence cur, int event, int detail);

/* From a lookup: whether the domain exists here and, if so, its state and
 * reason (virDomainGetState). */
enum repl_presence repl_presence_from_state(enum repl_presence cur, bool exists, int state,
                                            int reason);

#endif
