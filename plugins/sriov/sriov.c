/* The sriov plugin's state: life cycle, rescans and the claims table. */
#define NST_LOG_MODULE "sriov"

#include "plugins/sriov/sriov.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "agent/log.h"
#include "plugins/sriov/pci_scan.h"

static int system_random(void *userdata, void *buf, size_t n) {
        return getrandom(buf, n, 0) == (ssize_t)n ? 0 : -EIO;
}

int nst_sriov_init(struct sriov *s, struct nst_error *err) {
        int r = pthread_mutex_init(&s->lock, NULL);
        if (r != 0)
                return nst_error_set(err, -r, "RuntimeError", "cannot create a mutex");
        if (!s->random)
                s->random = system_random;
        return nst_pci_alloc_new(&s->alloc, err);
}

static void owner_free(struct sriov_owner *o) {
        free(o->claims);
        o->claims = NULL;
        o->n = 0;
}

void nst_sriov_done(struct sriov *s) {
        for (size_t i = 0; i < s->n_owners; i++)
                owner_free(&s->owners[i]);
        free(s->owners);
        nst_pci_alloc_free(s->alloc);
        nst_pci_inventory_free(s->inv);
        free(s->tags);
        free(s->spec_matches);
        nst_pci_spec_set_free(s->specs);
        nst_pci_alias_set_free(s->aliases);
        nst_vf_backend_free(s->vf);
        pthread_mutex_destroy(&s->lock);
}

/* ---- rescans ---- */

static size_t count_type(const struct nst_pci_inventory *inv, enum nst_pci_type t) {
        size_t n = 0;
        for (size_t i = 0; i < inv->n; i++)
                n += inv->fns[i].type == t;
        return n;
}

/* Devices in a but not in b. */
static size_t count_gone(const struct nst_pci_inventory *a, const struct nst_pci_inventory *b) {
        size_t n = 0;
        for (size_t i = 0; a && i < a->n; i++)
                n += nst_pci_inventory_find(b, a->fns[i].addr) == NST_PCI_NONE;
        return n;
}

int nst_sriov_rescan(struct sriov *s, json_object **ret_summary, struct nst_error *err) {
        const struct nst_pci_scan_options o = {
                .sysfs_root = s->cfg.sysfs_root,
                .cmdline_path = s->cfg.cmdline_path[0] ? s->cfg.cmdline_path : NULL,
        };
        _cleanup_(nst_pci_inventory_freep) struct nst_pci_inventory *inv = NULL;
        int r = nst_pci_scan(&o, &inv, err);
        if (r < 0) {
                pthread_mutex_lock(&s->lock);
                snprintf(s->last_scan_error, sizeof(s->last_scan_error), "%s", err->message);
                pthread_mutex_unlock(&s->lock);
                return r;
        }
        size_t n_specs = nst_pci_spec_set_count(s->specs);
        _cleanup_free_ const struct nst_pci_tags **tags = calloc(inv->n ? inv->n : 1,
                                                                 sizeof(*tags));
        _cleanup_free_ size_t *matches = calloc(n_specs ? n_specs : 1, sizeof(*matches));
        if (!tags || !matches)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        nst_pci_spec_set_apply(s->specs, inv, tags, matches);

        pthread_mutex_lock(&s->lock);
        r = nst_pci_alloc_sync(s->alloc, inv, tags, err);
        if (r < 0) {
                pthread_mutex_unlock(&s->lock);
                return r;
        }
        size_t added = count_gone(inv, s->inv), removed = count_gone(s->inv, inv);
        bool first = s->scans == 0;
        /* Say once which device_spec entries match nothing (and again if a
         * rescan changes that): a typo there silently hides devices. */
        for (size_t i = 0; i < n_specs; i++)
                if (matches[i] == 0 && (first || (s->spec_matches && s->spec_matches[i] != 0)))
                        log_warning("%s: [pci] device_spec matches no device on this host",
                                    nst_pci_spec_describe(s->specs, i));
        if (first || added || removed)
                for (size_t i = 0; i < inv->n_warnings; i++)
                        log_warning("PCI scan: %s", inv->warnings[i]);
        struct nst_pci_alloc_stats st;
        nst_pci_alloc_stats(s->alloc, &st);
        if (st.missing)
                log_warning("%zu claimed PCI device(s) are no longer seen on the host (a VF count "
                            "changed?): they stay reserved until their instance is destroyed",
                            st.missing);
        if (ret_summary) {
                json_object *o2 = json_object_new_object();
                json_object_object_add(o2, "devices", json_object_new_int64((int64_t)inv->n));
                json_object_object_add(o2, "pfs", json_object_new_int64(
                                                          (int64_t)count_type(inv, NST_PCI_TYPE_PF)));
                json_object_object_add(o2, "vfs", json_object_new_int64(
                                                          (int64_t)count_type(inv, NST_PCI_TYPE_VF)));
                json_object_object_add(o2, "added", json_object_new_int64((int64_t)added));
                json_object_object_add(o2, "removed", json_object_new_int64((int64_t)removed));
                json_object_object_add(o2, "missing_claimed", json_object_new_int64(
                                                                      (int64_t)st.missing));
                json_object *w = json_object_new_array();
                for (size_t i = 0; i < inv->n_warnings; i++)
                        json_object_array_add(w, json_object_new_string(inv->warnings[i]));
                json_object_object_add(o2, "warnings", w);
                *ret_summary = o2;
        }
        if (added || removed || first)
                log_info("PCI scan: %zu device(s), %zu assignable in %zu pool(s)%s", inv->n,
                         st.devices, st.pools, first ? "" : " (changed)");
        nst_pci_inventory_free(s->inv);
        free(s->tags);
        free(s->spec_matches);
        s->inv = nst_steal(&inv);
        s->tags = nst_steal(&tags);
        s->spec_matches = nst_steal(&matches);
        s->scans++;
        s->last_scan_error[0] = '\0';
        pthread_mutex_unlock(&s->lock);
        return 0;
}

/* ---- the claims table ---- */

struct sriov_owner *nst_sriov_owner(struct sriov *s, const char *owner) {
        for (size_t i = 0; i < s->n_owners; i++)
                if (strcmp(s->owners[i].uuid, owner) == 0)
                        return &s->owners[i];
        return NULL;
}

int nst_sriov_owner_set(struct sriov *s, const char *owner, const struct sriov_claim *claims,
                        size_t n) {
        struct sriov_claim *copy = malloc((n ? n : 1) * sizeof(*copy));
        if (!copy)
                return -ENOMEM;
        memcpy(copy, claims, n * sizeof(*copy));
        struct sriov_owner *o = nst_sriov_owner(s, owner);
        if (!o) {
                if (s->n_owners == s->cap_owners) {
                        size_t cap = s->cap_owners ? s->cap_owners * 2 : 16;
                        struct sriov_owner *grown = realloc(s->owners, cap * sizeof(*grown));
                        if (!grown) {
                                free(copy);
                                return -ENOMEM;
                        }
                        s->owners = grown;
                        s->cap_owners = cap;
                }
                o = &s->owners[s->n_owners++];
                memset(o, 0, sizeof(*o));
                snprintf(o->uuid, sizeof(o->uuid), "%s", owner);
        }
        owner_free(o);
        o->claims = copy;
        o->n = n;
        return 0;
}

void nst_sriov_owner_drop(struct sriov *s, const char *owner) {
        struct sriov_owner *o = nst_sriov_owner(s, owner);
        if (!o)
                return;
        owner_free(o);
        *o = s->owners[--s->n_owners];
}

typedef bool (*claim_pred)(const struct sriov_claim *c, const char *key);

static const struct sriov_claim *find_claim(const struct sriov *s, claim_pred pred,
                                            const char *key, const char **owner) {
        for (size_t i = 0; i < s->n_owners; i++)
                for (size_t j = 0; j < s->owners[i].n; j++)
                        if (pred(&s->owners[i].claims[j], key)) {
                                if (owner)
                                        *owner = s->owners[i].uuid;
                                return &s->owners[i].claims[j];
                        }
        return NULL;
}

static bool has_mac(const struct sriov_claim *c, const char *mac) {
        return c->c.mac[0] && strcasecmp(c->c.mac, mac) == 0;
}

static bool has_wwpn(const struct sriov_claim *c, const char *wwpn) {
        return c->c.wwpn[0] && strcasecmp(c->c.wwpn, wwpn) == 0;
}

static bool has_address(const struct sriov_claim *c, const char *address) {
        return strcasecmp(c->c.address, address) == 0;
}

const struct sriov_claim *nst_sriov_find_mac(const struct sriov *s, const char *mac,
                                             const char **owner) {
        return find_claim(s, has_mac, mac, owner);
}

const struct sriov_claim *nst_sriov_find_wwpn(const struct sriov *s, const char *wwpn,
                                              const char **owner) {
        return find_claim(s, has_wwpn, wwpn, owner);
}

const struct sriov_claim *nst_sriov_find_address(const struct sriov *s, const char *address,
                                                 const char **owner) {
        return find_claim(s, has_address, address, owner);
}
