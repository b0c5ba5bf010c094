/* The inventory's versioned object store: every object the node knows
 * (instances, PCI devices and pools, snapshots, replications, host
 * sections), each a JSON object of properties under a (type, id) key, with
 * property queries and a change feed, so that a client asks only for what
 * it shows and learns what changed without reading everything again.
 *
 * Versions. One uint64 counter for the whole store; every change (create,
 * update, delete) takes the next version and leaves one entry in a bounded
 * change log. A put that changes nothing takes no version. Versions never go
 * backwards across agent restarts: the store reserves them in blocks and
 * writes the end of the block to a small state file (write, fsync, rename)
 * only when a block is used up, so a put is not a disk write. A re-opened
 * store starts one past the reserved mark, so any `since` handed out by a
 * previous run is below the new store's oldest retained version and is
 * answered ChangesExpired (a restart is detectable by number alone; the
 * epoch covers a client that switched between stores of different nodes).
 *
 * Schema. A type is declared with its queryable properties and their kinds.
 * Objects may carry other properties: they are stored, compared, reported in
 * snapshots and in the change feed, but they cannot be queried or filtered
 * on. The kind of a declared property is checked at put (null is allowed for
 * every kind: an unknown fact).
 *
 * Not thread-safe: the caller serializes every call. Results are owned by
 * the caller and share nothing with the store.
 *
 * Errors: InvalidInput (bad arguments, naming what is wrong), ObjectNotFound,
 * ChangesExpired (the client must take a full snapshot with a query),
 * StateFileError (naming the path), MemoryError. */
#ifndef NESTOR_PLUGINS_INVENTORY_STORE_H
#define NESTOR_PLUGINS_INVENTORY_STORE_H

#include <json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "messages/error.h"

#define NST_STORE_ID_MAX 255            /* bytes in an object id */
#define NST_STORE_NAME_MAX 64           /* bytes in a type or property name */
#define NST_STORE_QUERY_LIMIT_MAX 1000
#define NST_STORE_QUERY_LIMIT_DEFAULT 100
#define NST_STORE_CHANGES_LIMIT_MAX 10000
#define NST_STORE_CHANGES_LIMIT_DEFAULT 1000
#define NST_STORE_CHANGE_LOG_DEFAULT 65536
#define NST_STORE_VERSION_BLOCK_DEFAULT 1000
#define NST_STORE_EPOCH_LEN 32          /* hex digits */

enum nst_store_kind {
        NST_STORE_STRING,
        NST_STORE_INT,
        NST_STORE_BOOL,
        NST_STORE_FLOAT,                /* JSON int or double */
        NST_STORE_OBJECT,
        NST_STORE_ARRAY,
};

struct nst_store_field {
        const char *name;
        enum nst_store_kind kind;
};

struct nst_store_options {
        size_t change_log_size;         /* entries kept; 0: NST_STORE_CHANGE_LOG_DEFAULT */
        uint64_t version_block;         /* versions reserved per state file write; 0: default */
};

struct nst_store;

/* "string", "int", ... */
const char *nst_store_kind_name(enum nst_store_kind kind);

/* state_path: the file holding the version high-water mark, created when
 * missing (NULL: in memory only, versions start at 0). The file is read and
 * rewritten here, so a corrupt or unwritable one fails now with
 * StateFileError. opts may be NULL (defaults). */
int nst_store_open(const char *state_path, const struct nst_store_options *opts,
                   struct nst_store **ret, struct nst_error *err);
void nst_store_free(struct nst_store *s);

/* Declares a type and its queryable properties. Declaring a known type again
 * adds the new fields (a plugin extending the host type); a field declared
 * again must keep its kind. "id" is reserved (always queryable, a string). */
int nst_store_define(struct nst_store *s, const char *type, const struct nst_store_field *fields,
                     size_t n, struct nst_error *err);

/* Creates or updates one object. props is taken on every path (freed on
 * failure; the store may modify it; do not use it afterwards). A property
 * "id" in props must equal id and is not stored as a property. A new version
 * is taken only when a top-level property was added, removed or changed
 * (json_object_equal); *ret_changed (may be NULL) says whether it was. */
int nst_store_put(struct nst_store *s, const char *type, const char *id, json_object *props,
                  bool *ret_changed, struct nst_error *err);

/* Deletes one object: ObjectNotFound (-ENOENT) when there is none. */
int nst_store_remove(struct nst_store *s, const char *type, const char *id,
                     struct nst_error *err);

/* Replaces the whole set of a type with what a provider reports now: puts
 * each object, removes the objects it does not list. objects is taken, and
 * is either {id: props, ...} or [{"id": id, <props>}, ...]. Everything is
 * checked before anything changes, so a bad entry leaves the store as it
 * was. Returns the number of objects created, updated or removed. */
int nst_store_sync(struct nst_store *s, const char *type, json_object *objects,
                   struct nst_error *err);

uint64_t nst_store_version(const struct nst_store *s);
/* The oldest `since` nst_store_changes() accepts. */
uint64_t nst_store_oldest(const struct nst_store *s);
/* A random id of this store instance: changes at every open. */
const char *nst_store_epoch(const struct nst_store *s);
/* Objects of a type (0 for an unknown type). */
size_t nst_store_count(const struct nst_store *s, const char *type);
/* The properties of one object, borrowed: valid until the next change to
 * the store; NULL when there is no such object. */
json_object *nst_store_get(const struct nst_store *s, const char *type, const char *id);

/* Objects of a type in id order, owned result:
 *   {"type": t, "version": V, "objects": [{"id": id, <field>: value|null, ...}],
 *    "next_marker": "..." | null}
 * fields: a JSON array of property names (NULL: every declared field; []: ids
 * only); each object carries exactly those (null when it lacks one).
 * filter: NULL or {"field": value | [value, ...]}: equality, or membership
 * in the list; only string, int, bool and float fields (and "id") can be
 * filtered; an absent property equals null.
 * limit: 0..NST_STORE_QUERY_LIMIT_MAX, 0 for the default.
 * marker: NULL, or next_marker of the previous page of the same query (same
 * type, fields and filter; the limit may change); a marker of another query
 * is refused. next_marker is null when no further object matches.
 * Paging guarantee: pages are cut by id, so an object that exists during the
 * whole paging is returned exactly once, and ids come in increasing order
 * across pages; an object added or removed meanwhile appears at most once
 * (when its id is after the marker at the time the page is read). */
int nst_store_query(struct nst_store *s, const char *type, json_object *fields,
                    json_object *filter, int64_t limit, const char *marker, json_object **ret,
                    struct nst_error *err);

/* What changed after version `since`, owned result:
 *   {"version": V, "epoch": E, "more": bool,
 *    "changes": [{"type": t, "id": id, "op": "created"|"updated"|"deleted",
 *                 "version": v, "properties": {...}, "removed": [names]}]}
 * One entry per object, coalesced over the window, in order of their last
 * change (v):
 *   created: the full object; it replaces whatever the client holds under
 *            that id (also used for an object deleted and created again);
 *   updated: only the properties that changed (current values), plus
 *            "removed" (when not empty) naming properties that are gone;
 *   deleted: no properties.
 * An object created and deleted within the window produces no entry.
 * V is the `since` for the next call: the current version, or when "more" is
 * true (the limit cut the window) the last version covered; the properties
 * reported are always current ones, so a later page may repeat a value.
 * since must be in [nst_store_oldest, nst_store_version]: older, or an epoch
 * (may be NULL) other than this store's, fail with ChangesExpired; a future
 * since with InvalidInput. type NULL: every type. limit:
 * 0..NST_STORE_CHANGES_LIMIT_MAX entries, 0 for the default.
 * Cost: O(changes in the window), not O(objects). */
int nst_store_changes(struct nst_store *s, uint64_t since, const char *epoch, const char *type,
                      int64_t limit, json_object **ret, struct nst_error *err);

/* Everything, for full reports, owned result:
 *   {"version": V, "epoch": E, "objects": {type: {id: props, ...}, ...}}
 * ids in id order. type NULL: every type. */
int nst_store_snapshot(const struct nst_store *s, const char *type, json_object **ret,
                       struct nst_error *err);

#endif
