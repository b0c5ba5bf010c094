/* What the libvirt plugin remembers about instances between calls, all of it
 * rebuilt from libvirt on every (re)connection, so a restarted agent needs
 * nothing but libvirt:
 *   - MAC addresses in use or used before (a generated MAC is never one of
 *     them), with the instance holding each live one;
 *   - Nestor's instances (facts for notifications about a domain that is
 *     already gone, and to tell Nestor's domains from the others);
 *   - instances an operation is running on (one mutating operation at a
 *     time per instance; a spawn also holds its name);
 *   - lifecycle events an operation is about to cause and reports itself.
 * Thread-safe (one internal mutex); every lookup copies out. */
#ifndef NESTOR_PLUGINS_LIBVIRT_INVENTORY_H
#define NESTOR_PLUGINS_LIBVIRT_INVENTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plugins/libvirt/guest_spec.h"

#define NST_INV_ID_MAX 128 /* user/project ids kept for notifications (longer ones are cut) */

struct nst_inv_instance {
        char uuid[37];
        char name[NST_SPEC_NAME_MAX + 1];
        char profile[NST_SPEC_NAME_MAX + 1];
        char user_id[NST_INV_ID_MAX], project_id[NST_INV_ID_MAX];
        char created_at[32];
        unsigned vcpus;
        uint64_t memory_mb;
};

/* Bits of nst_inv_expect(): libvirt lifecycle events (1 << VIR_DOMAIN_EVENT_*)
 * and the reboot event. */
#define NST_INV_EV(ev) (1u << (ev))
#define NST_INV_EV_REBOOT (1u << 31)

struct nst_inventory;

int nst_inventory_new(struct nst_inventory **ret);
void nst_inventory_free(struct nst_inventory *inv);

/* ---- MACs (lower-case "52:54:00:12:34:56"; invalid strings are ignored) ---- */

/* Records mac as used; owner (a uuid) marks it live for that instance, NULL
 * only remembers it (another domain's, or history). -ENOMEM. */
int nst_inv_mac_add(struct nst_inventory *inv, const char *mac, const char *owner);
/* Records mac as live for owner only when it was never seen: -EEXIST
 * otherwise (how a generated MAC is taken, atomically). */
int nst_inv_mac_reserve(struct nst_inventory *inv, const char *mac, const char *owner);
/* Ever seen (live or not). */
bool nst_inv_mac_used(struct nst_inventory *inv, const char *mac);
/* Live for an instance other than `except` (may be NULL): its uuid into owner. */
bool nst_inv_mac_live(struct nst_inventory *inv, const char *mac, const char *except,
                      char owner[37]);
/* The instance's MACs stay used but are no longer live. */
void nst_inv_mac_release(struct nst_inventory *inv, const char *owner);
size_t nst_inv_mac_count(struct nst_inventory *inv);

/* ---- Nestor's instances ---- */

int nst_inv_put(struct nst_inventory *inv, const struct nst_inv_instance *inst); /* by uuid */
bool nst_inv_get(struct nst_inventory *inv, const char *uuid, struct nst_inv_instance *ret);
void nst_inv_remove(struct nst_inventory *inv, const char *uuid);
size_t nst_inv_count(struct nst_inventory *inv);
/* A rebuild: mark every instance stale, put what libvirt has (which
 * unmarks it), then sweep the rest out one by one (their MACs stop being
 * live). An instance put meanwhile by a spawn is not stale. */
void nst_inv_mark(struct nst_inventory *inv);
bool nst_inv_sweep_one(struct nst_inventory *inv, struct nst_inv_instance *ret);

/* ---- operations in progress ---- */

/* Marks uuid (and name, may be NULL) busy with op. -EBUSY when either is
 * already busy: *ret_op (may be NULL) gets the running operation's name
 * (static storage). -ENOMEM. */
int nst_inv_claim(struct nst_inventory *inv, const char *uuid, const char *name, const char *op,
                  const char **ret_op);
void nst_inv_unclaim(struct nst_inventory *inv, const char *uuid);

/* ---- events an operation reports itself ---- */

/* The next event of each kind in mask for uuid is the operation's own:
 * consume it silently. Counted: two operations expect two. Expectations
 * lapse ttl_ms after the last one was added (an event that never came). */
int nst_inv_expect(struct nst_inventory *inv, const char *uuid, uint32_t mask, int64_t now,
                   int64_t ttl_ms);
/* True (and the bit consumed) when the event was expected. */
bool nst_inv_expected(struct nst_inventory *inv, const char *uuid, uint32_t bit, int64_t now);
/* Takes back one expectation per kind in mask (the operation failed before
 * causing the events). */
void nst_inv_unexpect(struct nst_inventory *inv, const char *uuid, uint32_t mask);

#endif
