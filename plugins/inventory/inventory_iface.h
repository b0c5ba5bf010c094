/* The "inventory" interface: how plugins make their objects (instances, PCI
 * devices and pools, snapshots, replications) queryable and versioned
 * without owning any of that logic. Header only; find it with
 * nst_host_lookup(host, NST_INVENTORY_IFACE) in start().
 *
 * The model is pull: a plugin registers a collection with its properties'
 * schema and a function returning every object it knows now; the inventory
 * plugin calls it when a report is due or a query asks for that type, and
 * turns the differences into versions and changes: plugins never push. */
#ifndef NESTOR_PLUGINS_INVENTORY_INVENTORY_IFACE_H
#define NESTOR_PLUGINS_INVENTORY_INVENTORY_IFACE_H

#include <json.h>
#include <stddef.h>

#include "messages/error.h"

#define NST_INVENTORY_IFACE "inventory"

enum nst_inventory_kind {
        NST_INV_KIND_STRING,
        NST_INV_KIND_INT,
        NST_INV_KIND_BOOL,
        NST_INV_KIND_FLOAT,
        NST_INV_KIND_OBJECT,
        NST_INV_KIND_ARRAY,
};

struct nst_inventory_field {
        const char *name;
        enum nst_inventory_kind kind;
};

/* Fills *ret with {"<id>": {<property>: value, ...}, ...} (owned): every
 * object of the collection as of now. Called on a worker thread. */
typedef int (*nst_inventory_list_fn)(void *userdata, json_object **ret, struct nst_error *err);

struct nst_inventory_iface {
        void *self;
        /* type: "instance", "pci_device", ...; fields and the strings they
         * point to must outlive the agent's run (static tables). */
        int (*register_collection)(void *self, const char *type,
                                   const struct nst_inventory_field *fields, size_t n_fields,
                                   nst_inventory_list_fn list, void *userdata,
                                   struct nst_error *err);
};

#endif
