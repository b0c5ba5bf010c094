#include <stdio.h>
#include <time.h>
#include <uuid/uuid.h>

#include "messages/ids.h"

void nst_uuid_hex(char out[NST_UUID_HEX_LEN + 1]) {
        static const char digits[] = "0123456789abcdef";
        uuid_t u;

        uuid_generate_random(u);
        for (size_t i = 0; i < sizeof(u); i++) {
                out[2 * i] = digits[u[i] >> 4];
                out[2 * i + 1] = digits[u[i] & 0xf];
        }
        out[NST_UUID_HEX_LEN] = '\0';
}

void nst_uuid_str(char out[NST_UUID_STR_LEN + 1]) {
        uuid_t u;

        uuid_generate_random(u);
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
