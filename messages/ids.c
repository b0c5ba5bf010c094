#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <uuid/uuid.h>

#include "messages/ids.h"

/* Random version-4 UUID bytes. uuid_generate_random() costs five system
 * calls per id (getrandom plus pid/uid probes); the RPC path makes one id per
 * message, so each thread instead seeds a xoshiro256** generator once from
 * getrandom(2) and draws from it. These ids need uniqueness, not secrecy. */
static _Thread_local uint64_t rng[4];
static _Thread_local bool rng_seeded;

static uint64_t rotl(uint64_t x, int k) {
        return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(void) {
        uint64_t result = rotl(rng[1] * 5, 7) * 9, t = rng[1] << 17;
        rng[2] ^= rng[0];
        rng[3] ^= rng[1];
        rng[1] ^= rng[2];
        rng[0] ^= rng[3];
        rng[2] ^= t;
        rng[3] = rotl(rng[3], 45);
        return result;
}

static void random_uuid(uuid_t u) {
        if (!rng_seeded) {
                if (getrandom(rng, sizeof(rng), 0) != (ssize_t)sizeof(rng)) {
                        /* Only before the kernel's pool is ready: fall back to
                         * libuuid, which has its own sources. */
                        uuid_generate_random(u);
                        return;
                }
                rng_seeded = true;
        }
        uint64_t a = rng_next(), b = rng_next();
        memcpy(u, &a, 8);
        memcpy(u + 8, &b, 8);
        u[6] = (u[6] & 0x0f) | 0x40; /* version 4 */
        u[8] = (u[8] & 0x3f) | 0x80; /* RFC 4122 variant */
}

void nst_uuid_hex(char out[NST_UUID_HEX_LEN + 1]) {
        static const char digits[] = "0123456789abcdef";
        uuid_t u;

        random_uuid(u);
        for (size_t i = 0; i < sizeof(u); i++) {
                out[2 * i] = digits[u[i] >> 4];
                out[2 * i + 1] = digits[u[i] & 0xf];
        }
        out[NST_UUID_HEX_LEN] = '\0';
}

void nst_uuid_str(char out[NST_UUID_STR_LEN + 1]) {
        uuid_t u;

        random_uuid(u);
        uuid_unparse_lower(u, out);
}

void nst_timestamp_utc(long long unix_usec, char out[NST_TIMESTAMP_LEN]) {
        /* Floor division, so instants before 1970 still get usec in [0, 1e6). */
        long long sec = unix_usec / 1000000, usec = unix_usec % 1000000;
        if (usec < 0) {
                usec += 1000000;
                sec--;
        }
        time_t t = (time_t)sec;
        struct tm tm;

        if (!gmtime_r(&t, &tm)) {
                snprintf(out, NST_TIMESTAMP_LEN, "1970-01-01 00:00:00");
                return;
        }
        /* Python's str(datetime) pads the year to four digits and prints
         * microseconds only when they are non-zero. */
        int n = snprintf(out, NST_TIMESTAMP_LEN, "%04d-%02d-%02d %02d:%02d:%02d", tm.tm_year + 1900,
                         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        if (usec != 0 && n > 0 && n < NST_TIMESTAMP_LEN)
                snprintf(out + n, NST_TIMESTAMP_LEN - n, ".%06lld", usec);
}
