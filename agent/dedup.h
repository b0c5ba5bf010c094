/* Duplicate suppression for _unique_id. oslo keeps the last 16; a broker
 * crash can redeliver every request that was read but whose ack was lost,
 * which after a backlog is hundreds, so we keep the last 4096 with a hash
 * index (a linear scan of that many would cost more than the request). */
#ifndef NESTOR_AGENT_DEDUP_H
#define NESTOR_AGENT_DEDUP_H

#include <stdbool.h>
#include <stdint.h>

#include "messages/ids.h"

#define NST_DEDUP_SIZE 4096
#define NST_DEDUP_BUCKETS (2 * NST_DEDUP_SIZE)

struct nst_dedup {
        char ids[NST_DEDUP_SIZE][NST_UUID_HEX_LEN + 1];
        int32_t chain[NST_DEDUP_SIZE];      /* next slot in the same bucket, -1 ends */
        int32_t buckets[NST_DEDUP_BUCKETS]; /* first slot of each bucket, -1 if empty */
        unsigned next, used;
};

void nst_dedup_init(struct nst_dedup *d);
/* True when id was seen among the last NST_DEDUP_SIZE ids; otherwise
 * remembers it and returns false. Ids longer than 32 characters are compared
 * on their first 32. NULL is never a duplicate. */
bool nst_dedup_seen(struct nst_dedup *d, const char *id);

#endif
