/* Logging in oslo.log's default format, so operators read Nestor's lines
 * like any other OpenStack service's:
 *   2026-11-26 18:40:01.123 12345 INFO nestor.config [req-...] message */
#include "agent/log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* A write of at most PIPE_BUF bytes to a pipe is atomic, so lines from several
 * threads (or processes sharing the journal's pipe) never interleave. Longer
 * messages are cut and marked rather than split over several writes. */
#define LINE_MAX_BYTES PIPE_BUF
#define TRUNCATED_MARK "...\n"
#define REQUEST_ID_MAX 128
#define IDENT_MAX 64

static atomic_int log_level = NST_LOG_INFO;
static atomic_bool log_syslog = false;

/* openlog() keeps the ident pointer, so it must live in static storage; the
 * lock keeps nst_log_open from rewriting it while another thread is inside
 * syslog(). Only the syslog path takes it. */
static pthread_rwlock_t syslog_lock = PTHREAD_RWLOCK_INITIALIZER;
static char syslog_ident[IDENT_MAX];

static _Thread_local char request_id[REQUEST_ID_MAX];

void nst_log_open(const char *ident, bool use_syslog, enum nst_log_level level) {
        pthread_rwlock_wrlock(&syslog_lock);
        if (atomic_load(&log_syslog))
                closelog();
        if (use_syslog) {
                snprintf(syslog_ident, sizeof(syslog_ident), "%s", ident ? ident : "nestor");
                openlog(syslog_ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
        }
        atomic_store(&log_syslog, use_syslog);
        pthread_rwlock_unlock(&syslog_lock);
        nst_log_set_level(level);
}

void nst_log_set_level(enum nst_log_level level) {
        atomic_store(&log_level, (int)level);
}

enum nst_log_level nst_log_get_level(void) {
        return (enum nst_log_level)atomic_load(&log_level);
}

void nst_log_close(void) {
        pthread_rwlock_wrlock(&syslog_lock);
        if (atomic_load(&log_syslog))
                closelog();
        /* Anything logged after close (atexit paths) still reaches stderr. */
        atomic_store(&log_syslog, false);
        pthread_rwlock_unlock(&syslog_lock);
}

void nst_log_set_request_id(const char *id) {
        if (!id) {
                request_id[0] = '\0';
                return;
        }
        snprintf(request_id, sizeof(request_id), "%s", id);
}

static const char *level_name(enum nst_log_level level) {
        switch (level) {
        case NST_LOG_ERROR:
                return "ERROR";
        case NST_LOG_WARNING:
                return "WARNING";
        case NST_LOG_INFO:
                return "INFO";
        case NST_LOG_DEBUG:
                return "DEBUG";
        }
        return "NOTSET";
}

static void write_all(int fd, const char *buf, size_t len) {
        while (len > 0) {
                ssize_t n = write(fd, buf, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return; /* nowhere left to report it */
                buf += n;
                len -= (size_t)n;
        }
}

void nst_log(enum nst_log_level level, const char *module, const char *fmt, ...) {
        if ((int)level > atomic_load(&log_level))
                return;

        /* Callers log right after a failing call and expect errno intact; %m
         * also needs the caller's errno, so format the message first. */
        int saved_errno = errno;
        char msg[LINE_MAX_BYTES];
        va_list ap;
        va_start(ap, fmt);
        int mlen = vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (mlen < 0) {
                snprintf(msg, sizeof(msg), "(unformattable log message: %s)", fmt);
                mlen = (int)strlen(msg);
        }
        bool cut = (size_t)mlen >= sizeof(msg);
        size_t len = cut ? sizeof(msg) - 1 : (size_t)mlen;
        while (len > 0 && msg[len - 1] == '\n')
                len--;
        msg[len] = '\0';

        const char *rid = request_id[0] ? request_id : "-";
        if (!module)
                module = "nestor";

        if (atomic_load(&log_syslog)) {
                pthread_rwlock_rdlock(&syslog_lock);
                if (atomic_load(&log_syslog)) {
                        syslog((int)level, "nestor.%s [%s] %s%s", module, rid, msg,
                               cut ? "..." : "");
                        pthread_rwlock_unlock(&syslog_lock);
                        errno = saved_errno;
                        return;
                }
                pthread_rwlock_unlock(&syslog_lock);
        }

        struct timespec ts;
        struct tm tm;
        char stamp[32] = "";
        clock_gettime(CLOCK_REALTIME, &ts);
        if (localtime_r(&ts.tv_sec, &tm))
                strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);

        char line[LINE_MAX_BYTES + 1]; /* + the NUL snprintf always writes */
        int n = snprintf(line, sizeof(line), "%s.%03ld %d %s nestor.%s [%s] %s\n", stamp,
                         ts.tv_nsec / 1000000, (int)getpid(), level_name(level), module, rid, msg);
        size_t total = n < 0 ? 0 : (size_t)n;
        if (cut || total >= sizeof(line)) {
                /* snprintf stopped at sizeof(line) - 1: overwrite the tail. */
                total = sizeof(line) - 1;
                memcpy(line + total - strlen(TRUNCATED_MARK), TRUNCATED_MARK,
                       strlen(TRUNCATED_MARK));
        }
        write_all(STDERR_FILENO, line, total);
        errno = saved_errno;
}
