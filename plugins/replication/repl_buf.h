/* Data buffers of 2 MiB or more (the source's read ring, the target's
 * large write buffers) on transparent huge pages where the kernel offers
 * them (THP "madvise" mode, as on Debian): a 4 MiB buffer then costs 2
 * page faults instead of 1024 when first touched, and copying, hashing and
 * encrypting through it takes far fewer TLB misses, which cost most on a
 * nested VM. Smaller buffers are ordinary allocations. Free with free(). */
#ifndef NESTOR_PLUGINS_REPLICATION_REPL_BUF_H
#define NESTOR_PLUGINS_REPLICATION_REPL_BUF_H

#include <stdlib.h>
#include <sys/mman.h>

#define REPL_HUGE_PAGE ((size_t)2 << 20)

/* size bytes aligned to align (a power of two, at least sizeof(void *)),
 * or NULL. */
static inline void *repl_buf_alloc(size_t size, size_t align) {
        if (size >= REPL_HUGE_PAGE && align < REPL_HUGE_PAGE)
                align = REPL_HUGE_PAGE;
        void *p = NULL;
        if (posix_memalign(&p, align, size) != 0)
                return NULL;
        if (align == REPL_HUGE_PAGE)
                (void)madvise(p, size, MADV_HUGEPAGE); /* advice: fine if refused */
        return p;
}

#endif
