/* A ring of the last ids plus a chained hash index over the ring's slots:
 * O(1) per message at any window size. */
#include <string.h>

#include "agent/dedup.h"

void nst_dedup_init(struct nst_dedup *d) {
        memset(d->ids, 0, sizeof(d->ids));
        for (size_t i = 0; i < NST_DEDUP_BUCKETS; i++)
                d->buckets[i] = -1;
        for (size_t i = 0; i < NST_DEDUP_SIZE; i++)
                d->chain[i] = -1;
        d->next = d->used = 0;
}

/* FNV-1a over the compared prefix. */
static unsigned bucket_of(const char *id) {
        uint32_t h = 2166136261u;
        for (size_t i = 0; i < NST_UUID_HEX_LEN && id[i]; i++)
                h = (h ^ (unsigned char)id[i]) * 16777619u;
        return h % NST_DEDUP_BUCKETS;
}

static void unlink_slot(struct nst_dedup *d, int32_t slot) {
        int32_t *p = &d->buckets[bucket_of(d->ids[slot])];
        while (*p != -1 && *p != slot)
                p = &d->chain[*p];
        if (*p == slot)
                *p = d->chain[slot];
        d->chain[slot] = -1;
}

bool nst_dedup_seen(struct nst_dedup *d, const char *id) {
        if (!id)
                return false;
        unsigned b = bucket_of(id);
        for (int32_t s = d->buckets[b]; s != -1; s = d->chain[s])
                if (strncmp(d->ids[s], id, NST_UUID_HEX_LEN) == 0)
                        return true;

        int32_t slot = (int32_t)d->next;
        if (d->used == NST_DEDUP_SIZE)
                unlink_slot(d, slot); /* forget the oldest */
        size_t n = strnlen(id, NST_UUID_HEX_LEN);
        memcpy(d->ids[slot], id, n);
        d->ids[slot][n] = '\0';
        d->chain[slot] = d->buckets[b];
        d->buckets[b] = slot;
        d->next = (d->next + 1) % NST_DEDUP_SIZE;
        if (d->used < NST_DEDUP_SIZE)
                d->used++;
        return false;
}
