/* FNV-1a, 64-bit: a quick, stable hash for table keys and short names (not
 * for anything an attacker chooses to collide). Feed pieces in order,
 * starting from NST_FNV64_INIT. */
#ifndef NESTOR_AGENT_FNV_H
#define NESTOR_AGENT_FNV_H

#include <stddef.h>
#include <stdint.h>

#define NST_FNV64_INIT UINT64_C(14695981039346656037)

static inline uint64_t nst_fnv64(uint64_t h, const void *data, size_t len) {
        const uint8_t *p = data;
        for (size_t i = 0; i < len; i++)
                h = (h ^ p[i]) * UINT64_C(1099511628211);
        return h;
}

#endif
