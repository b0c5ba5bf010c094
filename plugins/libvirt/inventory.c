#include "plugins/libvirt/inventory.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Limits: a controller spawning and destroying forever must not grow the
 * agent forever. The oldest MACs that are no longer live go first. */
#define MAX_MACS 65536
#define MAX_INSTANCES 65536
#define MAX_BUSY 4096
#define MAX_EXPECT 4096

struct mac_entry {
        uint64_t mac;
        char owner[37]; /* "" when not live */
};

struct busy_entry {
        char uuid[37];
        char name[NST_SPEC_NAME_MAX + 1];
        const char *op;
};

/* How many of each event (bit) are still expected: operations on the same
 * instance may follow each other faster than their events arrive. */
struct expect_entry {
        char uuid[37];
        uint16_t count[32];
        int64_t deadline;
};

struct inst_entry {
        struct nst_inv_instance i;
        bool stale; /* not seen since nst_inv_mark() */
};

struct nst_inventory {
        pthread_mutex_t lock;
        struct mac_entry *macs; /* oldest first */
        size_t n_macs, cap_macs;
        struct inst_entry *inst;
        size_t n_inst, cap_inst;
        struct busy_entry *busy;
        size_t n_busy, cap_busy;
        struct expect_entry *expect;
        size_t n_expect, cap_expect;
};

static int reserve(void **a, size_t *cap, size_t n, size_t elem) {
        if (n < *cap)
                return 0;
        size_t c = *cap ? *cap * 2 : 16;
        void *p = realloc(*a, c * elem);
        if (!p)
                return -ENOMEM;
        *a = p;
        *cap = c;
        return 0;
}

int nst_inventory_new(struct nst_inventory **ret) {
        struct nst_inventory *inv = calloc(1, sizeof(*inv));
        if (!inv)
                return -ENOMEM;
        pthread_mutex_init(&inv->lock, NULL);
        *ret = inv;
        return 0;
}

void nst_inventory_free(struct nst_inventory *inv) {
        if (!inv)
                return;
        free(inv->macs);
        free(inv->inst);
        free(inv->busy);
        free(inv->expect);
        pthread_mutex_destroy(&inv->lock);
        free(inv);
}

/* ---- MACs ---- */

static bool mac_parse(const char *s, uint64_t *ret) {
        if (!s || !nst_mac_valid(s))
                return false;
        uint64_t v = 0;
        for (int i = 0; i < 6; i++) {
                unsigned b;
                if (sscanf(s + 3 * i, "%2x", &b) != 1)
                        return false;
                v = v << 8 | b;
        }
        *ret = v;
        return true;
}

static struct mac_entry *mac_find(struct nst_inventory *inv, uint64_t mac) {
        for (size_t i = 0; i < inv->n_macs; i++)
                if (inv->macs[i].mac == mac)
                        return &inv->macs[i];
        return NULL;
}

static int mac_add_locked(struct nst_inventory *inv, uint64_t m, const char *owner) {
        struct mac_entry *e = mac_find(inv, m);
        if (!e) {
                if (inv->n_macs >= MAX_MACS) {
                        for (size_t i = 0; i < inv->n_macs; i++)
                                if (!inv->macs[i].owner[0]) {
                                        memmove(&inv->macs[i], &inv->macs[i + 1],
                                                (inv->n_macs - i - 1) * sizeof(*inv->macs));
                                        inv->n_macs--;
                                        break;
                                }
                }
                if (inv->n_macs >= MAX_MACS)
                        return -ENOSPC;
                int r = reserve((void **)&inv->macs, &inv->cap_macs, inv->n_macs,
                                sizeof(*inv->macs));
                if (r < 0)
                        return r;
                e = &inv->macs[inv->n_macs++];
                e->mac = m;
                e->owner[0] = '\0';
        }
        /* Without an owner an existing entry keeps its (live) owner. */
        if (owner)
                snprintf(e->owner, sizeof(e->owner), "%s", owner);
        return 0;
}

int nst_inv_mac_add(struct nst_inventory *inv, const char *mac, const char *owner) {
        uint64_t m;
        if (!mac_parse(mac, &m))
                return 0;
        pthread_mutex_lock(&inv->lock);
        int r = mac_add_locked(inv, m, owner);
        pthread_mutex_unlock(&inv->lock);
        return r;
}

int nst_inv_mac_reserve(struct nst_inventory *inv, const char *mac, const char *owner) {
        uint64_t m;
        if (!mac_parse(mac, &m))
                return -EINVAL;
        pthread_mutex_lock(&inv->lock);
        int r = mac_find(inv, m) ? -EEXIST : mac_add_locked(inv, m, owner);
        pthread_mutex_unlock(&inv->lock);
        return r;
}

bool nst_inv_mac_used(struct nst_inventory *inv, const char *mac) {
        uint64_t m;
        if (!mac_parse(mac, &m))
                return false;
        pthread_mutex_lock(&inv->lock);
        bool used = mac_find(inv, m) != NULL;
        pthread_mutex_unlock(&inv->lock);
        return used;
}

bool nst_inv_mac_live(struct nst_inventory *inv, const char *mac, const char *except,
                      char owner[37]) {
        uint64_t m;
        if (!mac_parse(mac, &m))
                return false;
        pthread_mutex_lock(&inv->lock);
        struct mac_entry *e = mac_find(inv, m);
        bool live = e && e->owner[0] && !(except && strcmp(e->owner, except) == 0);
        if (live && owner)
                memcpy(owner, e->owner, sizeof(e->owner));
        pthread_mutex_unlock(&inv->lock);
        return live;
}

void nst_inv_mac_release(struct nst_inventory *inv, const char *owner) {
        pthread_mutex_lock(&inv->lock);
        for (size_t i = 0; i < inv->n_macs; i++)
                if (strcmp(inv->macs[i].owner, owner) == 0)
                        inv->macs[i].owner[0] = '\0';
        pthread_mutex_unlock(&inv->lock);
}

size_t nst_inv_mac_count(struct nst_inventory *inv) {
        pthread_mutex_lock(&inv->lock);
        size_t n = inv->n_macs;
        pthread_mutex_unlock(&inv->lock);
        return n;
}

/* ---- instances ---- */

static struct inst_entry *inst_find(struct nst_inventory *inv, const char *uuid) {
        for (size_t i = 0; i < inv->n_inst; i++)
                if (strcmp(inv->inst[i].i.uuid, uuid) == 0)
                        return &inv->inst[i];
        return NULL;
}

int nst_inv_put(struct nst_inventory *inv, const struct nst_inv_instance *inst) {
        int r = 0;
        pthread_mutex_lock(&inv->lock);
        struct inst_entry *e = inst_find(inv, inst->uuid);
        if (!e) {
                if (inv->n_inst >= MAX_INSTANCES)
                        r = -ENOSPC;
                else if ((r = reserve((void **)&inv->inst, &inv->cap_inst, inv->n_inst,
                                      sizeof(*inv->inst))) == 0)
                        e = &inv->inst[inv->n_inst++];
        }
        if (e) {
                e->i = *inst;
                e->stale = false;
        }
        pthread_mutex_unlock(&inv->lock);
        return r;
}

bool nst_inv_get(struct nst_inventory *inv, const char *uuid, struct nst_inv_instance *ret) {
        pthread_mutex_lock(&inv->lock);
        struct inst_entry *e = inst_find(inv, uuid);
        if (e && ret)
                *ret = e->i;
        pthread_mutex_unlock(&inv->lock);
        return e != NULL;
}

void nst_inv_remove(struct nst_inventory *inv, const char *uuid) {
        pthread_mutex_lock(&inv->lock);
        struct inst_entry *e = inst_find(inv, uuid);
        if (e)
                *e = inv->inst[--inv->n_inst];
        pthread_mutex_unlock(&inv->lock);
}

size_t nst_inv_count(struct nst_inventory *inv) {
        pthread_mutex_lock(&inv->lock);
        size_t n = inv->n_inst;
        pthread_mutex_unlock(&inv->lock);
        return n;
}

void nst_inv_mark(struct nst_inventory *inv) {
        pthread_mutex_lock(&inv->lock);
        for (size_t i = 0; i < inv->n_inst; i++)
                inv->inst[i].stale = true;
        pthread_mutex_unlock(&inv->lock);
}

bool nst_inv_sweep_one(struct nst_inventory *inv, struct nst_inv_instance *ret) {
        bool found = false;
        pthread_mutex_lock(&inv->lock);
        for (size_t i = 0; i < inv->n_inst && !found; i++) {
                if (!inv->inst[i].stale)
                        continue;
                *ret = inv->inst[i].i;
                inv->inst[i] = inv->inst[--inv->n_inst];
                found = true;
        }
        pthread_mutex_unlock(&inv->lock);
        if (found)
                nst_inv_mac_release(inv, ret->uuid);
        return found;
}

/* ---- busy ---- */

int nst_inv_claim(struct nst_inventory *inv, const char *uuid, const char *name, const char *op,
                  const char **ret_op) {
        int r = 0;
        pthread_mutex_lock(&inv->lock);
        for (size_t i = 0; i < inv->n_busy; i++) {
                struct busy_entry *b = &inv->busy[i];
                if (strcmp(b->uuid, uuid) == 0 ||
                    (name && b->name[0] && strcmp(b->name, name) == 0)) {
                        if (ret_op)
                                *ret_op = b->op;
                        r = -EBUSY;
                        break;
                }
        }
        if (r == 0 && inv->n_busy >= MAX_BUSY)
                r = -ENOSPC;
        if (r == 0 && (r = reserve((void **)&inv->busy, &inv->cap_busy, inv->n_busy,
                                   sizeof(*inv->busy))) == 0) {
                struct busy_entry *b = &inv->busy[inv->n_busy++];
                snprintf(b->uuid, sizeof(b->uuid), "%s", uuid);
                snprintf(b->name, sizeof(b->name), "%s", name ? name : "");
                b->op = op;
        }
        pthread_mutex_unlock(&inv->lock);
        return r;
}

void nst_inv_unclaim(struct nst_inventory *inv, const char *uuid) {
        pthread_mutex_lock(&inv->lock);
        for (size_t i = 0; i < inv->n_busy; i++)
                if (strcmp(inv->busy[i].uuid, uuid) == 0) {
                        inv->busy[i] = inv->busy[--inv->n_busy];
                        break;
                }
        pthread_mutex_unlock(&inv->lock);
}

/* ---- expected events ---- */

static bool expect_empty(const struct expect_entry *e) {
        for (size_t b = 0; b < 32; b++)
                if (e->count[b])
                        return false;
        return true;
}

static void expire(struct nst_inventory *inv, int64_t now) {
        for (size_t i = 0; i < inv->n_expect;) {
                if (inv->expect[i].deadline <= now || expect_empty(&inv->expect[i]))
                        inv->expect[i] = inv->expect[--inv->n_expect];
                else
                        i++;
        }
}

static struct expect_entry *expect_find(struct nst_inventory *inv, const char *uuid) {
        for (size_t i = 0; i < inv->n_expect; i++)
                if (strcmp(inv->expect[i].uuid, uuid) == 0)
                        return &inv->expect[i];
        return NULL;
}

int nst_inv_expect(struct nst_inventory *inv, const char *uuid, uint32_t mask, int64_t now,
                   int64_t ttl_ms) {
        int r = 0;
        pthread_mutex_lock(&inv->lock);
        expire(inv, now);
        struct expect_entry *e = expect_find(inv, uuid);
        if (!e) {
                if (inv->n_expect >= MAX_EXPECT)
                        r = -ENOSPC;
                else if ((r = reserve((void **)&inv->expect, &inv->cap_expect, inv->n_expect,
                                      sizeof(*inv->expect))) == 0) {
                        e = &inv->expect[inv->n_expect++];
                        memset(e, 0, sizeof(*e));
                        snprintf(e->uuid, sizeof(e->uuid), "%s", uuid);
                }
        }
        if (e) {
                for (size_t b = 0; b < 32; b++)
                        if ((mask & (1u << b)) && e->count[b] < UINT16_MAX)
                                e->count[b]++;
                e->deadline = now + ttl_ms;
        }
        pthread_mutex_unlock(&inv->lock);
        return r;
}

static size_t bit_index(uint32_t bit) {
        size_t b = 0;
        while (b < 31 && !(bit & (1u << b)))
                b++;
        return b;
}

bool nst_inv_expected(struct nst_inventory *inv, const char *uuid, uint32_t bit, int64_t now) {
        bool hit = false;
        pthread_mutex_lock(&inv->lock);
        expire(inv, now);
        struct expect_entry *e = expect_find(inv, uuid);
        size_t b = bit_index(bit);
        if (e && e->count[b]) {
                e->count[b]--;
                hit = true;
        }
        pthread_mutex_unlock(&inv->lock);
        return hit;
}

void nst_inv_unexpect(struct nst_inventory *inv, const char *uuid, uint32_t mask) {
        pthread_mutex_lock(&inv->lock);
        struct expect_entry *e = expect_find(inv, uuid);
        for (size_t b = 0; e && b < 32; b++)
                if ((mask & (1u << b)) && e->count[b])
                        e->count[b]--;
        pthread_mutex_unlock(&inv->lock);
}
