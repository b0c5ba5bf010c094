/* A linear scan over 256 short strings costs less than keeping a hash index
 * in step with the ring, and runs once per incoming message. */
#include <string.h>

#include "agent/dedup.h"

void nst_dedup_init(struct nst_dedup *d) {
        memset(d, 0, sizeof(*d));
}

bool nst_dedup_seen(struct nst_dedup *d, const char *id) {
        if (!id)
                return false;
        for (unsigned i = 0; i < d->used; i++)
                if (strncmp(d->ids[i], id, NST_UUID_HEX_LEN) == 0)
                        return true;

        size_t n = strnlen(id, NST_UUID_HEX_LEN);
        memcpy(d->ids[d->next], id, n);
        d->ids[d->next][n] = '\0';
        d->next = (d->next + 1) % NST_DEDUP_SIZE;
        if (d->used < NST_DEDUP_SIZE)
                d->used++;
        return false;
}
