/* Clock readings in milliseconds/microseconds. Modules that schedule take
 * `now` as an argument; only the loops that own them call these. */
#ifndef NESTOR_AGENT_CLOCK_H
#define NESTOR_AGENT_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t nst_now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t nst_realtime_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

#endif
