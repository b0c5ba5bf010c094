/* See repl_xxh3_avx2.h. xxHash inlined here picks its AVX2 code path from
 * the compiler flags of this file. */
#include "plugins/replication/repl_xxh3_avx2.h"

#if defined(NST_RW_HAVE_XXH3_AVX2)
#define XXH_INLINE_ALL
#include <xxhash.h>

uint64_t nst_rw_xxh3_avx2(const void *p, size_t n) {
        return XXH3_64bits(p, n);
}

void nst_rw_xxh3_update_avx2(void *state, const void *p, size_t n) {
        XXH3_64bits_update(state, p, n);
}

uint64_t nst_rw_xxh3_digest_avx2(const void *state) {
        return XXH3_64bits_digest(state);
}
#endif
