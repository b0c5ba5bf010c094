/* Duplicate suppression for _unique_id, as oslo does (it keeps the last 16;
 * we keep more so a redelivered burst is still caught). */
#ifndef NESTOR_AGENT_DEDUP_H
#define NESTOR_AGENT_DEDUP_H

#include <stdbool.h>

#include "messages/ids.h"

#define NST_DEDUP_SIZE 256

struct nst_dedup {
        char ids[NST_DEDUP_SIZE][NST_UUID_HEX_LEN + 1];
        unsigned next, used;
};

void nst_dedup_init(struct nst_dedup *d);
/* True when id was seen among the last NST_DEDUP_SIZE ids; otherwise
 * remembers it and returns false. Ids longer than 32 characters are compared
 * on their first 32. */
bool nst_dedup_seen(struct nst_dedup *d, const char *id);

#endif
