/* Small building blocks shared by every Nestor module: cleanup attributes,
 * ownership transfer and array sizing. Header-only on purpose. */
#ifndef NESTOR_MESSAGES_UTIL_H
#define NESTOR_MESSAGES_UTIL_H

#include <stdlib.h>
#include <unistd.h>

#define NST_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _warn_unused_ __attribute__((warn_unused_result))

/* The value of one hex digit (either case), -1 for anything else. */
static inline int nst_hex_digit(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

static inline void nst_freep(void *p) {
        free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(nst_freep)

static inline void nst_closep(int *fd) {
        if (*fd >= 0)
                close(*fd);
}
#define _cleanup_close_ _cleanup_(nst_closep)

/* Take ownership out of a cleanup-managed variable: the variable is reset so
 * its cleanup handler becomes a no-op. */
#define nst_steal(pp)                                                          \
        ({                                                                     \
                __typeof__(*(pp)) _tmp = *(pp);                                \
                *(pp) = NULL;                                                  \
                _tmp;                                                          \
        })

/* Declares typep(T **) calling func(T *) when non-NULL, for _cleanup_. */
#define NST_DEFINE_CLEANUP(type, func)                                         \
        static inline void func##p(type **p) {                                 \
                if (*p)                                                        \
                        func(*p);                                              \
        }

#endif
