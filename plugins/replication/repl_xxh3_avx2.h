/* XXH3-64 built for AVX2 (repl_xxh3_avx2.c alone is compiled with -mavx2):
 * the values of libxxhash's baseline (SSE2) build, about three times
 * faster. For repl_wire.c, which calls these only on CPUs with AVX2. */
#ifndef NESTOR_PLUGINS_REPLICATION_REPL_XXH3_AVX2_H
#define NESTOR_PLUGINS_REPLICATION_REPL_XXH3_AVX2_H

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__)
#define NST_RW_HAVE_XXH3_AVX2 1
uint64_t nst_rw_xxh3_avx2(const void *p, size_t n);
/* state: an XXH3_state_t (one layout for every build of one xxhash.h). */
void nst_rw_xxh3_update_avx2(void *state, const void *p, size_t n);
uint64_t nst_rw_xxh3_digest_avx2(const void *state);
#endif

#endif
