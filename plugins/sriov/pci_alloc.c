/* The PCI allocator (pci_alloc.h): pools, claims and PF/VF exclusivity with
 * nova's semantics, built so that a claim touches only the pools and the
 * devices it hands out.
 *
 * Layout. Devices live in one slot array, found by address through an
 * open-addressing index; everything refers to a device by slot number, so
 * the array may grow. A pool owns a free array of slots and every device
 * remembers its position in it, so taking any device out (a VF's PF, a PF's
 * VFs) is a swap with the last entry. A PF counts its claimed VFs; a PF's
 * VFs are a range of one shared array rebuilt at each sync. Owners are
 * records in a chained hash; the devices an owner holds are chained through
 * the devices themselves.
 *
 * Transactions. claim(), supports() and restore() apply their effects as
 * they go (so a later request sees what an earlier one took) and log each
 * change in an undo log sized at sync time; a failure replays the log
 * backwards, which puts every device back in its state and at its exact
 * position in its free array. So a failed claim leaves no trace, and a
 * claim allocates nothing but its grant array.
 *
 * Deviation from nova, on purpose: the PF and remote_managed exclusions are
 * applied before the NUMA filter counts devices (nova counts PF pools when
 * it decides whether the affine pools "hold enough" for a VF request, and
 * then drops them). Pools keep their place once created; nova drops a pool
 * when it drains and re-appends it later. */
#include "plugins/sriov/pci_alloc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NONE32 UINT32_MAX
#define TYPE_UNKNOWN 0xff       /* restored before any sync saw the address */
#define OWNER_MAX 255           /* owners are instance uuids; bound what a peer can store */
#define OWNER_INLINE 40         /* a uuid fits: no allocation for the usual owner */
#define MSG_PF_LIST_MAX 4       /* exclusivity notes per message */

struct kv {
        char *key, *value;
};

struct kvref {
        const char *key, *value;
};

struct pool {
        uint16_t vendor, product;
        int numa;                       /* -1: unknown (nova's None) */
        enum nst_pci_type type;
        struct kv *kv;                  /* tags, parent_ifname, remote_managed; sorted by key */
        size_t n_kv;
        bool remote_managed;
        uint32_t *free;                 /* AVAILABLE members; taken from the end */
        size_t n_free, cap_free;        /* cap_free >= total + pending, always */
        size_t total;                   /* members (any state) */
        size_t claimed;                 /* members CLAIMED or MISSING */
        size_t pending;                 /* claimed devices that join this pool when freed */
        size_t want;                    /* sync scratch: devices that may join */
};

struct dev {
        struct nst_pci_addr addr;
        uint32_t key;
        uint8_t state;                  /* enum nst_pci_dev_state */
        uint8_t type;                   /* enum nst_pci_type or TYPE_UNKNOWN */
        bool live;
        bool known;                     /* a sync saw it once: attributes are valid */
        bool fresh;                     /* sync scratch: first sight of a restored claim */
        bool move_pending;              /* claimed, its key changed: goes to next_pool */
        bool has_parent_key;
        uint16_t vendor, product;
        int numa;
        struct pool *pool, *next_pool;
        uint32_t free_pos;              /* index in pool->free, NONE32 when not free */
        uint32_t parent, parent_key;    /* VF: slot and address key of its PF */
        uint32_t vf_first, n_vfs;       /* PF: its present VFs in a->vf_slots */
        uint32_t claimed_vfs;           /* PF: VFs CLAIMED or MISSING */
        uint32_t owner;                 /* owner record, NONE32 when not (yet) owned */
        uint32_t owner_next;            /* next device of the owner; free-slot chain */
        uint64_t seen;                  /* sync generation that last saw it */
};

struct owner {
        char small[OWNER_INLINE];
        char *big;                      /* names too long for small */
        uint32_t hash;
        uint32_t hnext;                 /* bucket chain; free-record chain */
        uint32_t head;                  /* first device slot */
        size_t count;
};

enum undo_kind { UNDO_TAKE, UNDO_BLOCK, UNDO_CREATE };

struct undo {
        uint32_t slot, free_pos, request;
        uint8_t kind, prev_state;
};

struct nst_pci_alloc {
        struct dev *devs;
        uint32_t n_devs, cap_devs;      /* slots used (high water), allocated */
        uint32_t free_slot;             /* chain through owner_next */
        size_t n_live;

        uint32_t *hkeys, *hvals;        /* address index; hvals NONE32 = empty */
        size_t hcap;

        uint32_t *vf_slots;
        uint32_t *pfs;                  /* every live PF, for error messages */
        size_t n_pfs;

        struct pool **pools;            /* trial order */
        size_t n_pools, cap_pools;
        struct pool **elig, **sel;      /* claim scratch, cap_pools each */

        struct undo *undo;
        size_t n_undo, cap_undo;        /* cap_undo >= live devices */

        struct owner *owners;
        uint32_t n_owners, cap_owners;  /* records used (high water), allocated */
        uint32_t free_owner;
        uint32_t *buckets;              /* power of two >= cap_owners */
        size_t n_buckets;

        struct kvref *kvbuf;            /* sync scratch for pool keys */
        size_t cap_kvbuf;
        uint64_t gen;
};

static const char *const state_names[] = {
        [NST_PCI_AVAILABLE] = "available",     [NST_PCI_CLAIMED] = "claimed",
        [NST_PCI_UNAVAILABLE] = "unavailable", [NST_PCI_UNASSIGNABLE] = "unassignable",
        [NST_PCI_MISSING] = "missing",
};

const char *nst_pci_dev_state_name(enum nst_pci_dev_state s) {
        return (unsigned)s < NST_ARRAY_SIZE(state_names) ? state_names[s] : "unknown";
}

/* Our own names: pci_spec.c is not needed to allocate. */
static const char *policy_name(enum nst_pci_numa_policy p) {
        static const char *const names[] = {
                [NST_PCI_NUMA_LEGACY] = "legacy",
                [NST_PCI_NUMA_REQUIRED] = "required",
                [NST_PCI_NUMA_PREFERRED] = "preferred",
                [NST_PCI_NUMA_SOCKET] = "socket",
        };
        return (unsigned)p < NST_ARRAY_SIZE(names) ? names[p] : "?";
}

/* oslo's strutils.bool_from_string, the rule nova applies to remote_managed. */
static bool truthy(const char *s) {
        static const char *const yes[] = {"1", "t", "true", "on", "y", "yes"};
        for (size_t i = 0; s && i < NST_ARRAY_SIZE(yes); i++)
                if (strcasecmp(s, yes[i]) == 0)
                        return true;
        return false;
}

static bool is_claimed(const struct dev *d) {
        return d->state == NST_PCI_CLAIMED || d->state == NST_PCI_MISSING;
}

/* ---- growable arrays ---- */

static int grow(void **p, size_t *cap, size_t need, size_t size) {
        if (need <= *cap)
                return 0;
        size_t n = *cap ? *cap : 8;
        while (n < need)
                n *= 2;
        void *q = realloc(*p, n * size);
        if (!q)
                return -ENOMEM;
        *p = q;
        *cap = n;
        return 0;
}

static int grow32(void **p, uint32_t *cap, size_t need, size_t size) {
        size_t c = *cap;
        if (need >= NONE32)
                return -ENOMEM;
        int r = grow(p, &c, need, size);
        if (r < 0)
                return r;
        *cap = c >= NONE32 ? NONE32 - 1 : (uint32_t)c;
        return 0;
}

/* ---- the address index ---- */

static size_t home_of(uint32_t key, size_t cap) {
        return (size_t)((key * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & (cap - 1);
}

static uint32_t index_find(const struct nst_pci_alloc *a, uint32_t key) {
        if (a->hcap == 0)
                return NONE32;
        for (size_t s = home_of(key, a->hcap); a->hvals[s] != NONE32; s = (s + 1) & (a->hcap - 1))
                if (a->hkeys[s] == key)
                        return a->hvals[s];
        return NONE32;
}

static void index_put(uint32_t *keys, uint32_t *vals, size_t cap, uint32_t key, uint32_t slot) {
        size_t s = home_of(key, cap);
        while (vals[s] != NONE32)
                s = (s + 1) & (cap - 1);
        keys[s] = key;
        vals[s] = slot;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void index_del(struct nst_pci_alloc *a, uint32_t key) {
        size_t mask = a->hcap - 1, i = home_of(key, a->hcap);
        while (a->hvals[i] != NONE32 && a->hkeys[i] != key)
                i = (i + 1) & mask;
        if (a->hvals[i] == NONE32)
                return;
        for (size_t j = (i + 1) & mask; a->hvals[j] != NONE32; j = (j + 1) & mask) {
                size_t h = home_of(a->hkeys[j], a->hcap);
                /* Entry j may fill hole i unless its home lies cyclically in (i, j]. */
                bool stays = i <= j ? (h > i && h <= j) : (h > i || h <= j);
                if (stays)
                        continue;
                a->hkeys[i] = a->hkeys[j];
                a->hvals[i] = a->hvals[j];
                i = j;
        }
        a->hvals[i] = NONE32;
}

static int index_reserve(struct nst_pci_alloc *a, size_t n) {
        size_t cap = 16;
        while (cap < n * 2)
                cap *= 2;
        if (cap <= a->hcap)
                return 0;
        uint32_t *keys = malloc(cap * sizeof(*keys));
        uint32_t *vals = malloc(cap * sizeof(*vals));
        if (!keys || !vals) {
                free(keys);
                free(vals);
                return -ENOMEM;
        }
        memset(vals, 0xff, cap * sizeof(*vals));
        for (size_t s = 0; s < a->hcap; s++)
                if (a->hvals[s] != NONE32)
                        index_put(keys, vals, cap, a->hkeys[s], a->hvals[s]);
        free(a->hkeys);
        free(a->hvals);
        a->hkeys = keys;
        a->hvals = vals;
        a->hcap = cap;
        return 0;
}

/* ---- owners ---- */

static uint32_t hash_str(const char *s) {
        uint32_t h = 2166136261u;
        for (; *s; s++)
                h = (h ^ (uint8_t)*s) * 16777619u;
        return h;
}

static const char *owner_name(const struct owner *o) {
        return o->big ? o->big : o->small;
}

static uint32_t owner_find(const struct nst_pci_alloc *a, const char *name) {
        if (!name || a->n_buckets == 0)
                return NONE32;
        uint32_t h = hash_str(name);
        for (uint32_t i = a->buckets[h & (a->n_buckets - 1)]; i != NONE32; i = a->owners[i].hnext)
                if (a->owners[i].hash == h && strcmp(owner_name(&a->owners[i]), name) == 0)
                        return i;
        return NONE32;
}

static void bucket_link(struct nst_pci_alloc *a, uint32_t i) {
        uint32_t *b = &a->buckets[a->owners[i].hash & (a->n_buckets - 1)];
        a->owners[i].hnext = *b;
        *b = i;
}

/* Records and buckets for `n` owners: at most one per claimed device, so a
 * claim never grows them. */
static int owners_reserve(struct nst_pci_alloc *a, size_t n) {
        int r = grow32((void **)&a->owners, &a->cap_owners, n, sizeof(*a->owners));
        if (r < 0)
                return r;
        size_t nb = 16;
        while (nb < a->cap_owners)
                nb *= 2;
        if (nb <= a->n_buckets)
                return 0;
        uint32_t *b = malloc(nb * sizeof(*b));
        if (!b)
                return -ENOMEM;
        memset(b, 0xff, nb * sizeof(*b));
        /* Relink live records: a free record has count 0 and is not hashed. */
        uint32_t *old = a->buckets;
        size_t old_n = a->n_buckets;
        a->buckets = b;
        a->n_buckets = nb;
        for (size_t k = 0; k < old_n; k++)
                for (uint32_t i = old[k], next; i != NONE32; i = next) {
                        next = a->owners[i].hnext;
                        bucket_link(a, i);
                }
        free(old);
        return 0;
}

/* Finds or adds `name`; allocates only for names longer than OWNER_INLINE-1
 * or beyond the reserved records. */
static int owner_get(struct nst_pci_alloc *a, const char *name, uint32_t *ret) {
        uint32_t i = owner_find(a, name);
        if (i != NONE32) {
                *ret = i;
                return 0;
        }
        size_t len = strlen(name);
        char *big = NULL;
        if (len >= OWNER_INLINE && !(big = strdup(name)))
                return -ENOMEM;
        if (a->free_owner == NONE32 && a->n_owners >= a->cap_owners &&
            owners_reserve(a, (size_t)a->n_owners + 1) < 0) {
                free(big);
                return -ENOMEM;
        }
        if (a->free_owner != NONE32) {
                i = a->free_owner;
                a->free_owner = a->owners[i].hnext;
        } else
                i = a->n_owners++;
        struct owner *o = &a->owners[i];
        *o = (struct owner){.big = big, .hash = hash_str(name), .head = NONE32};
        if (!big)
                memcpy(o->small, name, len + 1);
        bucket_link(a, i);
        *ret = i;
        return 0;
}

static void owner_drop(struct nst_pci_alloc *a, uint32_t i) {
        uint32_t *p = &a->buckets[a->owners[i].hash & (a->n_buckets - 1)];
        while (*p != i)
                p = &a->owners[*p].hnext;
        *p = a->owners[i].hnext;
        free(a->owners[i].big);
        a->owners[i] = (struct owner){.head = NONE32, .hnext = a->free_owner};
        a->free_owner = i;
}

static void owner_drop_if_empty(struct nst_pci_alloc *a, uint32_t i) {
        if (i != NONE32 && a->owners[i].count == 0)
                owner_drop(a, i);
}

static void owner_link(struct nst_pci_alloc *a, uint32_t o, uint32_t slot) {
        a->devs[slot].owner = o;
        a->devs[slot].owner_next = a->owners[o].head;
        a->owners[o].head = slot;
        a->owners[o].count++;
}

/* ---- pools ---- */

static void pool_free(struct pool *p) {
        if (!p)
                return;
        for (size_t i = 0; i < p->n_kv; i++) {
                free(p->kv[i].key);
                free(p->kv[i].value);
        }
        free(p->kv);
        free(p->free);
        free(p);
}

static size_t pool_n_keys(const struct pool *p) {
        return 4 + p->n_kv;     /* vendor, product, numa_node, dev_type + the strings */
}

static const char *pool_get(const struct pool *p, const char *key) {
        for (size_t i = 0; i < p->n_kv; i++)
                if (strcmp(p->kv[i].key, key) == 0)
                        return p->kv[i].value;
        return NULL;
}

static void free_push(struct nst_pci_alloc *a, uint32_t slot) {
        struct dev *d = &a->devs[slot];
        struct pool *p = d->pool;
        d->free_pos = (uint32_t)p->n_free;
        p->free[p->n_free++] = slot;    /* cap_free >= total: never grows here */
}

static void free_remove(struct nst_pci_alloc *a, uint32_t slot) {
        struct dev *d = &a->devs[slot];
        struct pool *p = d->pool;
        uint32_t pos = d->free_pos, last = p->free[--p->n_free];
        if (last != slot) {
                p->free[pos] = last;
                a->devs[last].free_pos = pos;
        }
        d->free_pos = NONE32;
}

/* Exact inverse of free_remove when replayed in reverse order. */
static void free_reinsert(struct nst_pci_alloc *a, uint32_t slot, uint32_t pos) {
        struct pool *p = a->devs[slot].pool;
        if (pos < p->n_free) {
                uint32_t moved = p->free[pos];
                p->free[p->n_free] = moved;
                a->devs[moved].free_pos = (uint32_t)p->n_free;
        }
        p->n_free++;
        p->free[pos] = slot;
        a->devs[slot].free_pos = pos;
}

static bool pool_has_key(const struct pool *p, const struct dev *d, const struct kvref *kv,
                         size_t n_kv) {
        if (p->vendor != d->vendor || p->product != d->product || p->numa != d->numa ||
            p->type != d->type || p->n_kv != n_kv)
                return false;
        for (size_t i = 0; i < n_kv; i++)
                if (strcmp(p->kv[i].key, kv[i].key) != 0 ||
                    strcmp(p->kv[i].value, kv[i].value) != 0)
                        return false;
        return true;
}

/* The pool array and the claim scratch arrays grow together; cap_pools moves
 * only once all three have room. */
static int pools_reserve(struct nst_pci_alloc *a, size_t n) {
        if (n <= a->cap_pools)
                return 0;
        size_t cap = a->cap_pools ? a->cap_pools * 2 : 8;
        struct pool ***arrays[] = {&a->pools, &a->elig, &a->sel};
        for (size_t k = 0; k < NST_ARRAY_SIZE(arrays); k++) {
                struct pool **q = realloc(*arrays[k], cap * sizeof(**arrays[k]));
                if (!q)
                        return -ENOMEM;
                *arrays[k] = q;
        }
        a->cap_pools = cap;
        return 0;
}

static int pool_create(struct nst_pci_alloc *a, const struct dev *d, const struct kvref *kv,
                       size_t n_kv, struct pool **ret) {
        if (pools_reserve(a, a->n_pools + 1) < 0)
                return -ENOMEM;
        struct pool *p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        *p = (struct pool){.vendor = d->vendor, .product = d->product, .numa = d->numa,
                           .type = (enum nst_pci_type)d->type};
        p->kv = calloc(n_kv ? n_kv : 1, sizeof(*p->kv));
        if (!p->kv) {
                pool_free(p);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_kv; i++, p->n_kv++) {
                p->kv[i].key = strdup(kv[i].key);
                p->kv[i].value = strdup(kv[i].value);
                if (!p->kv[i].key || !p->kv[i].value) {
                        p->n_kv++;
                        pool_free(p);
                        return -ENOMEM;
                }
        }
        p->remote_managed = truthy(pool_get(p, "remote_managed"));
        /* Fewest keys first; among equals, creation order (nova's stable sort). */
        size_t at = a->n_pools;
        while (at > 0 && pool_n_keys(a->pools[at - 1]) > pool_n_keys(p))
                at--;
        memmove(a->pools + at + 1, a->pools + at, (a->n_pools - at) * sizeof(*a->pools));
        a->pools[at] = p;
        a->n_pools++;
        *ret = p;
        return 0;
}

static void pool_drop_if_empty(struct nst_pci_alloc *a, struct pool *p) {
        if (!p || p->total + p->pending > 0)
                return;
        for (size_t i = 0; i < a->n_pools; i++)
                if (a->pools[i] == p) {
                        memmove(a->pools + i, a->pools + i + 1,
                                (a->n_pools - i - 1) * sizeof(*a->pools));
                        a->n_pools--;
                        break;
                }
        pool_free(p);
}

static void drop_empty_pools(struct nst_pci_alloc *a) {
        size_t k = 0;
        for (size_t i = 0; i < a->n_pools; i++) {
                struct pool *p = a->pools[i];
                if (p->total + p->pending > 0)
                        a->pools[k++] = p;
                else
                        pool_free(p);
        }
        a->n_pools = k;
}

/* ---- device slots ---- */

static uint32_t slot_new(struct nst_pci_alloc *a, struct nst_pci_addr addr) {
        uint32_t s;
        if (a->free_slot != NONE32) {
                s = a->free_slot;
                a->free_slot = a->devs[s].owner_next;
        } else
                s = a->n_devs++;        /* capacity reserved by the caller */
        a->devs[s] = (struct dev){.addr = addr, .key = nst_pci_addr_key(addr),
                                  .state = NST_PCI_UNASSIGNABLE, .type = TYPE_UNKNOWN,
                                  .live = true, .numa = -1, .free_pos = NONE32,
                                  .parent = NONE32, .owner = NONE32, .owner_next = NONE32};
        index_put(a->hkeys, a->hvals, a->hcap, a->devs[s].key, s);
        a->n_live++;
        return s;
}

/* Forgets a device: out of its pool, the index and the slot array. */
static void slot_delete(struct nst_pci_alloc *a, uint32_t s) {
        struct dev *d = &a->devs[s];
        if (d->free_pos != NONE32)
                free_remove(a, s);
        if (d->pool) {
                d->pool->total--;
                if (is_claimed(d))
                        d->pool->claimed--;
        }
        if (d->move_pending && d->next_pool)
                d->next_pool->pending--;
        index_del(a, d->key);
        *d = (struct dev){.owner_next = a->free_slot, .owner = NONE32, .parent = NONE32};
        a->free_slot = s;
        a->n_live--;
}

/* Everything that must not allocate later (claim, release) sized for n
 * devices. */
static int reserve_devices(struct nst_pci_alloc *a, size_t n) {
        if (grow32((void **)&a->devs, &a->cap_devs, n, sizeof(*a->devs)) < 0 ||
            index_reserve(a, n) < 0 ||
            grow((void **)&a->undo, &a->cap_undo, n, sizeof(*a->undo)) < 0 ||
            owners_reserve(a, n) < 0)
                return -ENOMEM;
        return 0;
}

/* ---- exclusivity ---- */

static const struct dev *parent_of(const struct nst_pci_alloc *a, const struct dev *d) {
        return d->type == NST_PCI_TYPE_VF && d->parent != NONE32 ? &a->devs[d->parent] : NULL;
}

/* Whether exclusivity keeps an unclaimed device out of its free list. */
static bool blocked(const struct nst_pci_alloc *a, const struct dev *d) {
        const struct dev *pf = parent_of(a, d);
        return (pf && is_claimed(pf)) || (d->type == NST_PCI_TYPE_PF && d->claimed_vfs > 0);
}

/* Puts an unclaimed device in the state its pool and exclusivity give it. */
static void settle(struct nst_pci_alloc *a, uint32_t s) {
        struct dev *d = &a->devs[s];
        enum nst_pci_dev_state want = !d->pool       ? NST_PCI_UNASSIGNABLE
                                      : blocked(a, d) ? NST_PCI_UNAVAILABLE
                                                      : NST_PCI_AVAILABLE;
        if (want == NST_PCI_AVAILABLE && d->free_pos == NONE32)
                free_push(a, s);
        else if (want != NST_PCI_AVAILABLE && d->free_pos != NONE32)
                free_remove(a, s);
        d->state = (uint8_t)want;
}

static void log_change(struct nst_pci_alloc *a, uint32_t s, enum undo_kind kind, size_t request) {
        a->undo[a->n_undo++] = (struct undo){.slot = s, .free_pos = a->devs[s].free_pos,
                                             .request = (uint32_t)request, .kind = (uint8_t)kind,
                                             .prev_state = a->devs[s].state};
}

static void block(struct nst_pci_alloc *a, uint32_t s) {
        struct dev *d = &a->devs[s];
        if (d->state != NST_PCI_AVAILABLE)
                return;         /* UNASSIGNABLE stays so; UNAVAILABLE already is */
        log_change(a, s, UNDO_BLOCK, 0);
        free_remove(a, s);
        d->state = NST_PCI_UNAVAILABLE;
}

/* Claims one device inside a transaction, with its exclusivity effects. The
 * owner is linked at commit. */
static void take(struct nst_pci_alloc *a, uint32_t s, size_t request) {
        struct dev *d = &a->devs[s];
        log_change(a, s, UNDO_TAKE, request);
        if (d->free_pos != NONE32)
                free_remove(a, s);
        d->state = NST_PCI_CLAIMED;
        if (d->pool)
                d->pool->claimed++;
        if (d->type == NST_PCI_TYPE_VF && d->parent != NONE32) {
                a->devs[d->parent].claimed_vfs++;
                block(a, d->parent);
        } else if (d->type == NST_PCI_TYPE_PF) {
                for (uint32_t i = 0; i < d->n_vfs; i++)
                        block(a, a->vf_slots[d->vf_first + i]);
        }
}

static void rollback(struct nst_pci_alloc *a) {
        while (a->n_undo > 0) {
                const struct undo *u = &a->undo[--a->n_undo];
                struct dev *d = &a->devs[u->slot];
                if (u->kind == UNDO_CREATE) {
                        slot_delete(a, u->slot);
                        continue;
                }
                if (u->kind == UNDO_TAKE) {
                        if (d->pool)
                                d->pool->claimed--;
                        if (d->type == NST_PCI_TYPE_VF && d->parent != NONE32)
                                a->devs[d->parent].claimed_vfs--;
                }
                d->state = u->prev_state;
                if (u->free_pos != NONE32)
                        free_reinsert(a, u->slot, u->free_pos);
        }
}

static void commit(struct nst_pci_alloc *a, uint32_t owner) {
        for (size_t i = 0; i < a->n_undo; i++)
                if (a->undo[i].kind != UNDO_BLOCK)
                        owner_link(a, owner, a->undo[i].slot);
        a->n_undo = 0;
}

/* ---- matching and NUMA ---- */

static bool match_pool(const struct nst_pci_match *m, const struct pool *p) {
        if ((m->vendor >= 0 && m->vendor != p->vendor) ||
            (m->product >= 0 && m->product != p->product))
                return false;
        for (size_t i = 0; i < m->tags.n; i++) {
                const char *v = pool_get(p, m->tags.tags[i].key);
                if (!v || strcasecmp(v, m->tags.tags[i].value) != 0)
                        return false;
        }
        return true;
}

static bool asks_remote_managed(const struct nst_pci_request *r) {
        for (size_t i = 0; i < r->n_matches; i++)
                if (truthy(nst_pci_tags_get(&r->matches[i].tags, "remote_managed")))
                        return true;
        return false;
}

static bool pool_eligible(const struct pool *p, const struct nst_pci_request *r, bool rm_ok) {
        if (r->dev_type < 0 ? p->type == NST_PCI_TYPE_PF : (int)p->type != r->dev_type)
                return false;
        if (p->remote_managed && !rm_ok)
                return false;
        if (r->n_matches == 0)
                return true;
        for (size_t i = 0; i < r->n_matches; i++)
                if (match_pool(&r->matches[i], p))
                        return true;
        return false;
}

static bool on_nodes(int numa, const int *nodes, size_t n) {
        for (size_t i = 0; numa >= 0 && i < n; i++)
                if (nodes[i] == numa)
                        return true;
        return false;
}

/* The host nodes sharing a socket with one of the guest's nodes; false when
 * a host node has no socket (nova then gives up on the socket policy). */
static bool socket_allows(const struct nst_pci_placement *pl, int numa) {
        if (!pl->node_socket || pl->n_node_socket == 0)
                return false;
        for (size_t h = 0; h < pl->n_node_socket; h++)
                if (pl->node_socket[h] < 0)
                        return false;
        if (numa < 0 || (size_t)numa >= pl->n_node_socket)
                return false;
        for (size_t i = 0; i < pl->n_numa_nodes; i++) {
                int g = pl->numa_nodes[i];
                if (g >= 0 && (size_t)g < pl->n_node_socket &&
                    pl->node_socket[g] == pl->node_socket[numa])
                        return true;
        }
        return false;
}

enum numa_tier { TIER_AFFINE, TIER_LEGACY, TIER_SOCKET };

static bool in_tier(const struct pool *p, const struct nst_pci_placement *pl, enum numa_tier t) {
        switch (t) {
        case TIER_AFFINE:
                return on_nodes(p->numa, pl->numa_nodes, pl->n_numa_nodes);
        case TIER_LEGACY:
                return p->numa < 0 || on_nodes(p->numa, pl->numa_nodes, pl->n_numa_nodes);
        case TIER_SOCKET:
                return socket_allows(pl, p->numa);
        }
        return false;
}

static size_t filter_tier(struct pool **out, struct pool *const *in, size_t n,
                          const struct nst_pci_placement *pl, enum numa_tier t, size_t *ret_free) {
        size_t k = 0, nfree = 0;
        for (size_t i = 0; i < n; i++)
                if (in_tier(in[i], pl, t)) {
                        out[k++] = in[i];
                        nfree += in[i]->n_free;
                }
        *ret_free = nfree;
        return k;
}

struct selection {
        size_t n_elig, elig_free;       /* a->elig: pools matching the request */
        size_t n_sel, sel_free;         /* a->sel: those the NUMA policy allows, in order */
};

/* The NUMA stage of nova's _filter_pools: a->elig to a->sel, strictest
 * tier first (reference 1.5). */
static void apply_numa_policy(struct nst_pci_alloc *a, const struct nst_pci_request *r,
                              const struct nst_pci_placement *pl, struct selection *s) {
        enum nst_pci_numa_policy pol = r->numa_policy;
        s->n_sel = filter_tier(a->sel, a->elig, s->n_elig, pl, TIER_AFFINE, &s->sel_free);
        if (pol == NST_PCI_NUMA_REQUIRED || s->sel_free >= r->count)
                return;
        if (pol == NST_PCI_NUMA_SOCKET) {
                s->n_sel = filter_tier(a->sel, a->elig, s->n_elig, pl, TIER_SOCKET, &s->sel_free);
                return;
        }
        s->n_sel = filter_tier(a->sel, a->elig, s->n_elig, pl, TIER_LEGACY, &s->sel_free);
        if (pol == NST_PCI_NUMA_LEGACY || s->sel_free >= r->count)
                return;
        /* preferred: anything, affine (and unknown-node, as nova sorts) first. */
        s->n_sel = 0;
        for (int pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < s->n_elig; i++)
                        if (in_tier(a->elig[i], pl, TIER_LEGACY) == (pass == 0))
                                a->sel[s->n_sel++] = a->elig[i];
        s->sel_free = s->elig_free;
}

/* nova's _filter_pools: spec, device type and remote_managed first, then the
 * NUMA policy when the guest has NUMA nodes. */
static void select_pools(struct nst_pci_alloc *a, const struct nst_pci_request *r,
                         const struct nst_pci_placement *pl, struct selection *ret) {
        bool rm_ok = asks_remote_managed(r);
        struct selection s = {0};
        for (size_t i = 0; i < a->n_pools; i++)
                if (pool_eligible(a->pools[i], r, rm_ok)) {
                        a->elig[s.n_elig++] = a->pools[i];
                        s.elig_free += a->pools[i]->n_free;
                }
        if (pl && pl->n_numa_nodes > 0)
                apply_numa_policy(a, r, pl, &s);
        else {
                memcpy(a->sel, a->elig, s.n_elig * sizeof(*a->sel));
                s.n_sel = s.n_elig;
                s.sel_free = s.elig_free;
        }
        *ret = s;
}

/* ---- messages ---- */

struct msg {
        char buf[NST_ERROR_MESSAGE_MAX];
        size_t len;
};

static void _printf_(2, 3) msg_add(struct msg *m, const char *fmt, ...) {
        if (m->len >= sizeof(m->buf) - 1)
                return;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(m->buf + m->len, sizeof(m->buf) - m->len, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        m->len += (size_t)n;
        if (m->len >= sizeof(m->buf)) {
                m->len = sizeof(m->buf) - 1;
                memcpy(m->buf + sizeof(m->buf) - 4, "...", 4);
        }
}

static void msg_pool(struct msg *m, const struct pool *p) {
        msg_add(m, "%04x:%04x %s numa ", p->vendor, p->product, nst_pci_type_name(p->type));
        if (p->numa < 0)
                msg_add(m, "unknown");
        else
                msg_add(m, "%d", p->numa);
        msg_add(m, " {");
        for (size_t i = 0; i < p->n_kv; i++)
                msg_add(m, "%s%s=%s", i ? ", " : "", p->kv[i].key, p->kv[i].value);
        msg_add(m, "}: %zu free", p->n_free);
}

static bool pool_listed(struct pool *const *pools, size_t n, const struct pool *p) {
        for (size_t i = 0; i < n; i++)
                if (pools[i] == p)
                        return true;
        return false;
}

/* Names what exclusivity holds back in the matching pools. */
static void msg_exclusivity(struct msg *m, const struct nst_pci_alloc *a, struct pool *const *pools,
                            size_t n) {
        size_t said = 0;
        for (size_t i = 0; i < a->n_pfs && said < MSG_PF_LIST_MAX; i++) {
                const struct dev *pf = &a->devs[a->pfs[i]];
                char addr[NST_PCI_ADDR_LEN];
                nst_pci_addr_format(pf->addr, addr);
                if (pf->state == NST_PCI_UNAVAILABLE && pool_listed(pools, n, pf->pool)) {
                        msg_add(m, "; PF %s is unavailable: %u of its VFs are claimed", addr,
                                pf->claimed_vfs);
                        said++;
                        continue;
                }
                if (!is_claimed(pf))
                        continue;
                size_t held = 0;
                for (uint32_t k = 0; k < pf->n_vfs; k++) {
                        const struct dev *vf = &a->devs[a->vf_slots[pf->vf_first + k]];
                        held += vf->state == NST_PCI_UNAVAILABLE && pool_listed(pools, n, vf->pool);
                }
                if (held > 0) {
                        msg_add(m, "; %zu VFs are unavailable: their PF %s is claimed", held,
                                addr);
                        said++;
                }
        }
}

static int fail_request(struct nst_pci_alloc *a, size_t ri, const struct nst_pci_request *r,
                        const struct nst_pci_placement *pl, const struct selection *s,
                        struct nst_error *err) {
        struct msg m = {.len = 0};
        char idx[32];
        snprintf(idx, sizeof(idx), "#%zu", ri);
        msg_add(&m, "request %s (count %u, %s) cannot be met: ", r->id ? r->id : idx, r->count,
                r->dev_type < 0 ? "type-VF or type-PCI" : nst_pci_type_name(r->dev_type));
        if (s->n_elig == 0)
                msg_add(&m, "no pool matches it");
        else {
                msg_add(&m, "%zu free in the matching pools: ", s->elig_free);
                for (size_t i = 0; i < s->n_elig; i++) {
                        msg_add(&m, "%s", i ? ", " : "");
                        msg_pool(&m, a->elig[i]);
                }
        }
        if (s->n_elig > 0 && pl && pl->n_numa_nodes > 0) {
                msg_add(&m, "; numa_policy %s on guest node(s) ", policy_name(r->numa_policy));
                for (size_t i = 0; i < pl->n_numa_nodes; i++)
                        msg_add(&m, "%s%d", i ? "," : "", pl->numa_nodes[i]);
                msg_add(&m, " allows %zu", s->sel_free);
        }
        size_t earlier = 0;
        for (size_t i = 0; i < a->n_undo; i++)
                earlier += a->undo[i].kind == UNDO_TAKE;
        if (earlier > 0)
                msg_add(&m, "; earlier requests of this claim took %zu", earlier);
        msg_exclusivity(&m, a, a->elig, s->n_elig);
        return nst_error_set(err, -ENOSPC, "PciAllocationFailed", "%s", m.buf);
}

/* ---- claim / supports ---- */

static int check_requests(const struct nst_pci_request *reqs, size_t n,
                          const struct nst_pci_placement *pl, struct nst_error *err) {
        if (n > 0 && !reqs)
                return nst_error_set(err, -EINVAL, "InvalidInput", "PCI requests: none given");
        for (size_t i = 0; i < n; i++) {
                const struct nst_pci_request *r = &reqs[i];
                const char *id = r->id ? r->id : "(unnamed)";
                if (r->count == 0)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "PCI request %s: count must be >= 1", id);
                if (r->n_matches > 0 && !r->matches)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "PCI request %s: matches missing", id);
                if (r->dev_type < -1 || r->dev_type > NST_PCI_TYPE_VF)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "PCI request %s: unknown dev_type %d", id,
                                             r->dev_type);
                if ((unsigned)r->numa_policy > NST_PCI_NUMA_SOCKET)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "PCI request %s: unknown numa_policy %d", id,
                                             (int)r->numa_policy);
        }
        if (pl && pl->n_numa_nodes > 0 && !pl->numa_nodes)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "PCI placement: numa_nodes missing");
        return 0;
}

/* Applies every request inside the open transaction; on failure the
 * transaction is still open (the caller rolls back). */
static int apply_requests(struct nst_pci_alloc *a, const struct nst_pci_request *reqs, size_t n,
                          const struct nst_pci_placement *pl, struct nst_error *err) {
        for (size_t ri = 0; ri < n; ri++) {
                const struct nst_pci_request *r = &reqs[ri];
                struct selection s;
                select_pools(a, r, pl, &s);
                if (s.sel_free < r->count)
                        return err ? fail_request(a, ri, r, pl, &s, err) : -ENOSPC;
                unsigned need = r->count;
                for (size_t i = 0; i < s.n_sel && need > 0; i++)
                        while (need > 0 && a->sel[i]->n_free > 0) {
                                struct pool *p = a->sel[i];
                                take(a, p->free[p->n_free - 1], ri);
                                need--;
                        }
                if (need > 0)
                        return err ? fail_request(a, ri, r, pl, &s, err) : -ENOSPC;
        }
        return 0;
}

bool nst_pci_alloc_supports(struct nst_pci_alloc *a, const struct nst_pci_request *reqs,
                            size_t n, const struct nst_pci_placement *pl) {
        if (!a || check_requests(reqs, n, pl, NULL) < 0)
                return false;
        a->n_undo = 0;
        int r = apply_requests(a, reqs, n, pl, NULL);
        rollback(a);
        return r == 0;
}

static int check_owner(const char *owner, struct nst_error *err) {
        if (!owner || !owner[0])
                return nst_error_set(err, -EINVAL, "InvalidInput", "PCI claim: empty owner");
        if (strlen(owner) > OWNER_MAX)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "PCI claim: owner longer than %d characters", OWNER_MAX);
        return 0;
}

int nst_pci_alloc_claim(struct nst_pci_alloc *a, const char *owner,
                        const struct nst_pci_request *reqs, size_t n,
                        const struct nst_pci_placement *pl, struct nst_pci_grant **ret_grants,
                        size_t *ret_n, struct nst_error *err) {
        int r;
        if (!a || !ret_grants || !ret_n)
                return nst_error_set(err, -EINVAL, "InvalidInput", "PCI claim: missing argument");
        if ((r = check_owner(owner, err)) < 0 || (r = check_requests(reqs, n, pl, err)) < 0)
                return r;
        uint32_t o;
        if (owner_get(a, owner, &o) < 0)
                return nst_error_set(err, -ENOMEM, "MemoryError", "PCI claim: out of memory");
        a->n_undo = 0;
        r = apply_requests(a, reqs, n, pl, err);
        size_t taken = 0;
        for (size_t i = 0; r == 0 && i < a->n_undo; i++)
                taken += a->undo[i].kind == UNDO_TAKE;
        struct nst_pci_grant *grants = NULL;
        if (r == 0 && taken > 0 && !(grants = malloc(taken * sizeof(*grants))))
                r = nst_error_set(err, -ENOMEM, "MemoryError", "PCI claim: out of memory");
        if (r < 0) {
                rollback(a);
                owner_drop_if_empty(a, o);
                return r;
        }
        for (size_t i = 0, k = 0; i < a->n_undo; i++)
                if (a->undo[i].kind == UNDO_TAKE)
                        grants[k++] = (struct nst_pci_grant){
                                .request = a->undo[i].request,
                                .addr = a->devs[a->undo[i].slot].addr};
        commit(a, o);
        owner_drop_if_empty(a, o);      /* n == 0 */
        *ret_grants = grants;
        *ret_n = taken;
        return 0;
}

/* ---- restore ---- */

static int restore_one(struct nst_pci_alloc *a, uint32_t o, struct nst_pci_addr addr,
                       struct nst_error *err) {
        char text[NST_PCI_ADDR_LEN];
        nst_pci_addr_format(addr, text);
        uint32_t s = index_find(a, nst_pci_addr_key(addr));
        if (s == NONE32) {
                s = slot_new(a, addr);
                a->devs[s].state = NST_PCI_MISSING;
                log_change(a, s, UNDO_CREATE, 0);
                return 0;
        }
        struct dev *d = &a->devs[s];
        if (is_claimed(d)) {
                if (d->owner == o || d->owner == NONE32)    /* NONE32: earlier in this call */
                        return 0;
                return nst_error_set(err, -EBUSY, "PciAllocationFailed",
                                     "restore for %s: %s is claimed by %s",
                                     owner_name(&a->owners[o]), text,
                                     owner_name(&a->owners[d->owner]));
        }
        const struct dev *pf = parent_of(a, d);
        if (pf && is_claimed(pf)) {
                char pft[NST_PCI_ADDR_LEN];
                nst_pci_addr_format(pf->addr, pft);
                return nst_error_set(err, -EBUSY, "PciAllocationFailed",
                                     "restore for %s: VF %s is unavailable: its PF %s is claimed",
                                     owner_name(&a->owners[o]), text, pft);
        }
        if (d->type == NST_PCI_TYPE_PF && d->claimed_vfs > 0)
                return nst_error_set(err, -EBUSY, "PciAllocationFailed",
                                     "restore for %s: PF %s is unavailable: %u of its VFs are "
                                     "claimed",
                                     owner_name(&a->owners[o]), text, d->claimed_vfs);
        take(a, s, 0);
        return 0;
}

int nst_pci_alloc_restore(struct nst_pci_alloc *a, const char *owner,
                          const struct nst_pci_addr *addrs, size_t n, struct nst_error *err) {
        int r;
        if (!a || (n > 0 && !addrs))
                return nst_error_set(err, -EINVAL, "InvalidInput", "PCI restore: no addresses");
        if ((r = check_owner(owner, err)) < 0)
                return r;
        if (n == 0)
                return 0;
        uint32_t o;
        if (n > NONE32 / 2 - a->n_live || reserve_devices(a, a->n_live + n) < 0 ||
            owner_get(a, owner, &o) < 0)
                return nst_error_set(err, -ENOMEM, "MemoryError", "PCI restore: out of memory");
        a->n_undo = 0;
        for (size_t i = 0; i < n; i++)
                if ((r = restore_one(a, o, addrs[i], err)) < 0) {
                        rollback(a);
                        owner_drop_if_empty(a, o);
                        return r;
                }
        commit(a, o);
        owner_drop_if_empty(a, o);
        return 0;
}

/* ---- release ---- */

/* A vanished PF is forgotten: VFs (claimed, MISSING ones) must not point at
 * its slot. Rare, so a scan is fine; a later sync relinks by address. */
static void forget_children(struct nst_pci_alloc *a, uint32_t pf) {
        for (uint32_t s = 0; s < a->n_devs; s++)
                if (a->devs[s].live && a->devs[s].parent == pf)
                        a->devs[s].parent = NONE32;
}

/* The PF of a freed VF comes back when none of its VFs is claimed any more. */
static void unblock_parent(struct nst_pci_alloc *a, uint32_t pf) {
        struct dev *p = &a->devs[pf];
        if (--p->claimed_vfs == 0 && p->state == NST_PCI_UNAVAILABLE)
                settle(a, pf);
}

static void release_one(struct nst_pci_alloc *a, uint32_t s) {
        struct dev *d = &a->devs[s];
        uint32_t pf = d->type == NST_PCI_TYPE_VF ? d->parent : NONE32;
        d->owner = NONE32;
        if (d->state == NST_PCI_MISSING) {
                struct pool *old = d->pool, *next = d->move_pending ? d->next_pool : NULL;
                if (d->type == NST_PCI_TYPE_PF)
                        forget_children(a, s);
                slot_delete(a, s);
                pool_drop_if_empty(a, old);
                pool_drop_if_empty(a, next);
        } else {
                struct pool *old = d->pool;
                if (old)
                        old->claimed--;
                d->state = NST_PCI_UNAVAILABLE;         /* unclaimed; settle() decides */
                if (d->move_pending) {
                        if (d->next_pool) {
                                d->next_pool->total++;
                                d->next_pool->pending--;
                        }
                        if (old)
                                old->total--;
                        d->pool = d->next_pool;
                        d->next_pool = NULL;
                        d->move_pending = false;
                }
                settle(a, s);
                if (d->type == NST_PCI_TYPE_PF)
                        for (uint32_t i = 0; i < d->n_vfs; i++) {
                                uint32_t vf = a->vf_slots[d->vf_first + i];
                                if (a->devs[vf].state == NST_PCI_UNAVAILABLE)
                                        settle(a, vf);
                        }
                if (old != d->pool)
                        pool_drop_if_empty(a, old);
        }
        if (pf != NONE32)
                unblock_parent(a, pf);
}

size_t nst_pci_alloc_release(struct nst_pci_alloc *a, const char *owner) {
        uint32_t o = a ? owner_find(a, owner) : NONE32;
        if (o == NONE32)
                return 0;
        size_t n = 0;
        for (uint32_t s = a->owners[o].head, next; s != NONE32; s = next, n++) {
                next = a->devs[s].owner_next;
                release_one(a, s);
        }
        owner_drop(a, o);
        return n;
}

/* ---- sync ---- */

static void kv_insert(struct kvref *kv, size_t *n, const char *key, const char *value) {
        size_t at = *n;
        while (at > 0 && strcmp(kv[at - 1].key, key) > 0) {
                kv[at] = kv[at - 1];
                at--;
        }
        kv[at] = (struct kvref){key, value};
        (*n)++;
}

/* nova's pool key for one function: its tags, parent_ifname for a VF whose
 * PF has a netdev, remote_managed "false" by default for VFs and PFs. */
static size_t pool_key_of(const struct nst_pci_inventory *inv, size_t k,
                          const struct nst_pci_tags *t, struct kvref *kv) {
        const struct nst_pci_function *fn = &inv->fns[k];
        const char *ifname = NULL;
        if (fn->type == NST_PCI_TYPE_VF && fn->parent < inv->n && inv->fns[fn->parent].netdev[0])
                ifname = inv->fns[fn->parent].netdev;
        size_t n = 0;
        bool has_rm = false;
        for (size_t i = 0; i < t->n; i++) {
                if (ifname && strcmp(t->tags[i].key, "parent_ifname") == 0)
                        continue;
                has_rm |= strcmp(t->tags[i].key, "remote_managed") == 0;
                kv_insert(kv, &n, t->tags[i].key, t->tags[i].value);
        }
        if (ifname)
                kv_insert(kv, &n, "parent_ifname", ifname);
        if (!has_rm && (fn->type == NST_PCI_TYPE_VF || fn->type == NST_PCI_TYPE_PF))
                kv_insert(kv, &n, "remote_managed", "false");
        return n;
}

/* Phase 1 (may fail, changes nothing but adds empty pools): the pool each
 * function belongs to. */
static int resolve_pools(struct nst_pci_alloc *a, const struct nst_pci_inventory *inv,
                         const struct nst_pci_tags *const *tags, struct pool **want) {
        struct pool *last = NULL;
        for (size_t k = 0; k < inv->n; k++) {
                const struct nst_pci_tags *t = tags ? tags[k] : NULL;
                want[k] = NULL;
                if (!t)
                        continue;
                if (t->n > 0 && !t->tags)
                        return -EINVAL;
                if (grow((void **)&a->kvbuf, &a->cap_kvbuf, t->n + 2, sizeof(*a->kvbuf)) < 0)
                        return -ENOMEM;
                const struct nst_pci_function *fn = &inv->fns[k];
                struct dev probe = {.vendor = fn->vendor, .product = fn->device,
                                    .numa = fn->numa_node < 0 ? -1 : fn->numa_node,
                                    .type = (uint8_t)fn->type};
                size_t n_kv = pool_key_of(inv, k, t, a->kvbuf);
                struct pool *p = NULL;
                if (last && pool_has_key(last, &probe, a->kvbuf, n_kv))
                        p = last;
                for (size_t i = 0; !p && i < a->n_pools; i++)
                        if (pool_has_key(a->pools[i], &probe, a->kvbuf, n_kv))
                                p = a->pools[i];
                if (!p && pool_create(a, &probe, a->kvbuf, n_kv, &p) < 0)
                        return -ENOMEM;
                want[k] = last = p;
        }
        return 0;
}

/* Phase 2 (may fail, changes nothing visible): room for every device, VF
 * link and free-array entry the sync may need. */
static int reserve_for_sync(struct nst_pci_alloc *a, const struct nst_pci_inventory *inv,
                            struct pool **want, uint32_t **ret_vf_slots, uint32_t **ret_pfs) {
        size_t n_new = 0, n_vf_links = 0;
        for (size_t k = 0; k < inv->n; k++) {
                n_new += index_find(a, nst_pci_addr_key(inv->fns[k].addr)) == NONE32;
                if (inv->fns[k].type == NST_PCI_TYPE_PF)
                        n_vf_links += inv->fns[k].n_vfs;
        }
        if (reserve_devices(a, a->n_live + n_new) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < a->n_pools; i++)
                a->pools[i]->want = 0;
        for (size_t k = 0; k < inv->n; k++)
                if (want[k])
                        want[k]->want++;
        for (size_t i = 0; i < a->n_pools; i++) {
                struct pool *p = a->pools[i];
                if (grow((void **)&p->free, &p->cap_free, p->total + p->pending + p->want,
                         sizeof(*p->free)) < 0)
                        return -ENOMEM;
        }
        *ret_vf_slots = malloc((n_vf_links ? n_vf_links : 1) * sizeof(**ret_vf_slots));
        *ret_pfs = malloc((a->n_live + n_new + 1) * sizeof(**ret_pfs));
        if (!*ret_vf_slots || !*ret_pfs)
                return -ENOMEM;
        return 0;
}

/* Phase 3 from here on: nothing fails. */

static void map_devices(struct nst_pci_alloc *a, const struct nst_pci_inventory *inv,
                        uint32_t *slot_of) {
        for (size_t k = 0; k < inv->n; k++) {
                const struct nst_pci_function *fn = &inv->fns[k];
                uint32_t s = index_find(a, nst_pci_addr_key(fn->addr));
                if (s == NONE32)
                        s = slot_new(a, fn->addr);
                else if (a->devs[s].seen == a->gen) {
                        slot_of[k] = NONE32;    /* a duplicate address: first one wins */
                        continue;
                }
                struct dev *d = &a->devs[s];
                d->fresh = !d->known;
                d->known = true;
                d->seen = a->gen;
                d->type = (uint8_t)fn->type;
                d->vendor = fn->vendor;
                d->product = fn->device;
                d->numa = fn->numa_node < 0 ? -1 : fn->numa_node;
                if (d->state == NST_PCI_MISSING)
                        d->state = NST_PCI_CLAIMED;
                slot_of[k] = s;
        }
}

/* Free devices the scan no longer sees leave; claimed ones stay, MISSING. */
static void forget_vanished(struct nst_pci_alloc *a) {
        for (uint32_t s = 0; s < a->n_devs; s++) {
                struct dev *d = &a->devs[s];
                if (!d->live || d->seen == a->gen)
                        continue;
                if (is_claimed(d))
                        d->state = NST_PCI_MISSING;
                else
                        slot_delete(a, s);
        }
}

static void link_devices(struct nst_pci_alloc *a, const struct nst_pci_inventory *inv,
                         const uint32_t *slot_of, uint32_t *vf_slots) {
        for (uint32_t s = 0; s < a->n_devs; s++) {
                struct dev *d = &a->devs[s];
                d->n_vfs = 0;
                d->claimed_vfs = 0;
                if (d->live && d->seen != a->gen)       /* MISSING: keep its last PF */
                        d->parent = d->has_parent_key ? index_find(a, d->parent_key) : NONE32;
        }
        size_t used = 0;
        for (size_t k = 0; k < inv->n; k++) {
                if (slot_of[k] == NONE32)
                        continue;
                const struct nst_pci_function *fn = &inv->fns[k];
                struct dev *d = &a->devs[slot_of[k]];
                d->parent = NONE32;
                d->has_parent_key = false;
                if (fn->type == NST_PCI_TYPE_VF && fn->parent < inv->n &&
                    slot_of[fn->parent] != NONE32) {
                        d->parent = slot_of[fn->parent];
                        d->parent_key = a->devs[d->parent].key;
                        d->has_parent_key = true;
                }
                if (fn->type != NST_PCI_TYPE_PF)
                        continue;
                d->vf_first = (uint32_t)used;
                for (size_t i = 0; i < fn->n_vfs; i++) {
                        size_t v = fn->vfs[i];
                        if (v < inv->n && slot_of[v] != NONE32)
                                vf_slots[used++] = slot_of[v];
                }
                d->n_vfs = (uint32_t)(used - d->vf_first);
        }
        for (uint32_t s = 0; s < a->n_devs; s++) {
                const struct dev *d = &a->devs[s];
                if (d->live && is_claimed(d) && parent_of(a, d))
                        a->devs[d->parent].claimed_vfs++;
        }
}

/* A claimed device keeps its pool until freed; a free one follows its key. */
static void place(struct nst_pci_alloc *a, uint32_t s, struct pool *want) {
        struct dev *d = &a->devs[s];
        if (is_claimed(d)) {
                if (d->fresh) {         /* restored before it was seen: joins now */
                        d->pool = want;
                        if (want) {
                                want->total++;
                                want->claimed++;
                        }
                        return;
                }
                if (d->move_pending && d->next_pool)
                        d->next_pool->pending--;
                d->move_pending = want != d->pool;
                d->next_pool = d->move_pending ? want : NULL;
                if (d->next_pool)
                        d->next_pool->pending++;
                return;
        }
        if (want != d->pool) {
                if (d->free_pos != NONE32)
                        free_remove(a, s);
                if (d->pool)
                        d->pool->total--;
                d->pool = want;
                if (want)
                        want->total++;
        }
        settle(a, s);
}

int nst_pci_alloc_sync(struct nst_pci_alloc *a, const struct nst_pci_inventory *inv,
                       const struct nst_pci_tags *const *tags, struct nst_error *err) {
        if (!a || !inv || (inv->n > 0 && !inv->fns))
                return nst_error_set(err, -EINVAL, "InvalidInput", "PCI sync: no inventory");
        if (inv->n >= NONE32 / 4)
                return nst_error_set(err, -E2BIG, "InvalidInput",
                                     "PCI sync: %zu functions is more than supported", inv->n);
        _cleanup_free_ struct pool **want = malloc((inv->n + 1) * sizeof(*want));
        _cleanup_free_ uint32_t *slot_of = malloc((inv->n + 1) * sizeof(*slot_of));
        _cleanup_free_ uint32_t *vf_slots = NULL;
        _cleanup_free_ uint32_t *pfs = NULL;
        if (!want || !slot_of)
                return nst_error_set(err, -ENOMEM, "MemoryError", "PCI sync: out of memory");
        int r = resolve_pools(a, inv, tags, want);
        if (r == 0)
                r = reserve_for_sync(a, inv, want, &vf_slots, &pfs);
        if (r < 0) {
                drop_empty_pools(a);
                return r == -EINVAL ? nst_error_set(err, r, "InvalidInput",
                                                    "PCI sync: tags without entries")
                                    : nst_error_set(err, r, "MemoryError",
                                                    "PCI sync: out of memory");
        }
        a->gen++;
        map_devices(a, inv, slot_of);
        forget_vanished(a);
        link_devices(a, inv, slot_of, vf_slots);
        for (size_t k = 0; k < inv->n; k++)
                if (slot_of[k] != NONE32)
                        place(a, slot_of[k], want[k]);
        a->n_pfs = 0;
        for (uint32_t s = 0; s < a->n_devs; s++) {
                a->devs[s].fresh = false;
                if (a->devs[s].live && a->devs[s].type == NST_PCI_TYPE_PF)
                        pfs[a->n_pfs++] = s;
        }
        drop_empty_pools(a);
        free(a->vf_slots);
        a->vf_slots = nst_steal(&vf_slots);
        free(a->pfs);
        a->pfs = nst_steal(&pfs);
        return 0;
}

/* ---- queries ---- */

int nst_pci_alloc_state(const struct nst_pci_alloc *a, struct nst_pci_addr addr,
                        enum nst_pci_dev_state *ret, const char **owner) {
        uint32_t s = a ? index_find(a, nst_pci_addr_key(addr)) : NONE32;
        if (s == NONE32)
                return -ENOENT;
        const struct dev *d = &a->devs[s];
        if (ret)
                *ret = (enum nst_pci_dev_state)d->state;
        if (owner)
                *owner = d->owner != NONE32 ? owner_name(&a->owners[d->owner]) : NULL;
        return 0;
}

static int addr_cmp(const void *x, const void *y) {
        uint32_t a = nst_pci_addr_key(*(const struct nst_pci_addr *)x);
        uint32_t b = nst_pci_addr_key(*(const struct nst_pci_addr *)y);
        return (a > b) - (a < b);
}

size_t nst_pci_alloc_owned(const struct nst_pci_alloc *a, const char *owner,
                           struct nst_pci_addr **ret) {
        *ret = NULL;
        uint32_t o = a ? owner_find(a, owner) : NONE32;
        if (o == NONE32 || a->owners[o].count == 0)
                return 0;
        struct nst_pci_addr *out = malloc(a->owners[o].count * sizeof(*out));
        if (!out)
                return 0;
        size_t n = 0;
        for (uint32_t s = a->owners[o].head; s != NONE32; s = a->devs[s].owner_next)
                out[n++] = a->devs[s].addr;
        qsort(out, n, sizeof(*out), addr_cmp);
        *ret = out;
        return n;
}

static json_object *pool_json(const struct pool *p) {
        char hex[8];
        json_object *o = json_object_new_object();
        json_object *tags = json_object_new_object();
        if (!o || !tags) {
                json_object_put(o);
                json_object_put(tags);
                return NULL;
        }
        snprintf(hex, sizeof(hex), "%04x", p->vendor);
        json_object_object_add(o, "vendor_id", json_object_new_string(hex));
        snprintf(hex, sizeof(hex), "%04x", p->product);
        json_object_object_add(o, "product_id", json_object_new_string(hex));
        json_object_object_add(o, "numa_node", p->numa < 0 ? NULL : json_object_new_int(p->numa));
        json_object_object_add(o, "dev_type", json_object_new_string(nst_pci_type_name(p->type)));
        for (size_t i = 0; i < p->n_kv; i++)
                if (strcmp(p->kv[i].key, "parent_ifname") != 0 &&
                    strcmp(p->kv[i].key, "remote_managed") != 0)
                        json_object_object_add(tags, p->kv[i].key,
                                               json_object_new_string(p->kv[i].value));
        json_object_object_add(o, "tags", tags);
        static const char *const top_level[] = {"parent_ifname", "remote_managed"};
        for (size_t k = 0; k < NST_ARRAY_SIZE(top_level); k++) {
                const char *v = pool_get(p, top_level[k]);
                if (v)
                        json_object_object_add(o, top_level[k], json_object_new_string(v));
        }
        json_object_object_add(o, "total", json_object_new_int64((int64_t)p->total));
        json_object_object_add(o, "free", json_object_new_int64((int64_t)p->n_free));
        json_object_object_add(o, "claimed", json_object_new_int64((int64_t)p->claimed));
        return o;
}

json_object *nst_pci_alloc_pools_json(const struct nst_pci_alloc *a) {
        json_object *arr = json_object_new_array();
        for (size_t i = 0; arr && a && i < a->n_pools; i++) {
                json_object *o = pool_json(a->pools[i]);
                if (!o || json_object_array_add(arr, o) < 0) {
                        json_object_put(o);
                        json_object_put(arr);
                        return NULL;
                }
        }
        return arr;
}

void nst_pci_alloc_stats(const struct nst_pci_alloc *a, struct nst_pci_alloc_stats *ret) {
        *ret = (struct nst_pci_alloc_stats){.pools = a ? a->n_pools : 0};
        for (uint32_t s = 0; a && s < a->n_devs; s++) {
                const struct dev *d = &a->devs[s];
                if (!d->live || d->state == NST_PCI_UNASSIGNABLE)
                        continue;
                ret->devices++;
                ret->available += d->state == NST_PCI_AVAILABLE;
                ret->claimed += d->state == NST_PCI_CLAIMED;
                ret->unavailable += d->state == NST_PCI_UNAVAILABLE;
                ret->missing += d->state == NST_PCI_MISSING;
        }
}

/* ---- life cycle ---- */

int nst_pci_alloc_new(struct nst_pci_alloc **ret, struct nst_error *err) {
        struct nst_pci_alloc *a = calloc(1, sizeof(*a));
        if (!a)
                return nst_error_set(err, -ENOMEM, "MemoryError", "PCI allocator: out of memory");
        a->free_slot = NONE32;
        a->free_owner = NONE32;
        *ret = a;
        return 0;
}

void nst_pci_alloc_free(struct nst_pci_alloc *a) {
        if (!a)
                return;
        for (size_t i = 0; i < a->n_pools; i++)
                pool_free(a->pools[i]);
        for (uint32_t i = 0; i < a->n_owners; i++)
                free(a->owners[i].big);
        free(a->pools);
        free(a->elig);
        free(a->sel);
        free(a->devs);
        free(a->hkeys);
        free(a->hvals);
        free(a->vf_slots);
        free(a->pfs);
        free(a->undo);
        free(a->owners);
        free(a->buckets);
        free(a->kvbuf);
        free(a);
}
