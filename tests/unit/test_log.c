/* Log lines must look like oslo.log's (operators grep them side by side with
 * nova's), carry the request id, and never interleave between threads. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NST_LOG_MODULE "test"
#include "agent/log.h"

struct capture {
        int saved;
        int read_fd;
};

/* Small outputs only: the pipe must not fill up while nobody reads it. */
static void capture_begin(struct capture *c) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        c->saved = dup(STDERR_FILENO);
        assert_true(c->saved >= 0);
        assert_true(dup2(fds[1], STDERR_FILENO) >= 0);
        close(fds[1]);
        c->read_fd = fds[0];
}

static char *capture_end(struct capture *c) {
        assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
        close(c->saved);
        size_t len = 0, cap = 65536;
        char *out = malloc(cap + 1);
        assert_non_null(out);
        ssize_t n;
        while ((n = read(c->read_fd, out + len, cap - len)) > 0)
                len += (size_t)n;
        close(c->read_fd);
        out[len] = '\0';
        return out;
}

static size_t count_lines(const char *s) {
        size_t n = 0;
        for (; *s; s++)
                n += *s == '\n';
        return n;
}

static int setup(void **state) {
        nst_log_open("test", false, NST_LOG_INFO);
        nst_log_set_request_id(NULL);
        return 0;
}

static void test_format(void **state) {
        struct capture c;
        nst_log_set_request_id("req-0b1c2d3e-aaaa-bbbb-cccc-000011112222");
        capture_begin(&c);
        log_info("hello %d", 42);
        _cleanup_free_ char *out = capture_end(&c);
        nst_log_set_request_id(NULL);

        char pattern[256];
        snprintf(pattern, sizeof(pattern),
                 "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3} %d INFO "
                 "nestor\\.test \\[req-0b1c2d3e-aaaa-bbbb-cccc-000011112222\\] hello 42\n$",
                 (int)getpid());
        regex_t re;
        assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
        int m = regexec(&re, out, 0, NULL, 0);
        regfree(&re);
        if (m != 0)
                fail_msg("unexpected line: %s", out);
}

static void test_levels(void **state) {
        struct capture c;
        nst_log_set_level(NST_LOG_WARNING);
        assert_int_equal(nst_log_get_level(), NST_LOG_WARNING);
        capture_begin(&c);
        log_debug("debug-1");
        log_info("info-1");
        log_warning("warning-1");
        log_error("error-1");
        nst_log_set_level(NST_LOG_DEBUG);
        log_debug("debug-2");
        nst_log_set_level(NST_LOG_ERROR);
        log_warning("warning-2");
        log_error("error-2");
        _cleanup_free_ char *out = capture_end(&c);
        nst_log_set_level(NST_LOG_INFO);

        assert_int_equal(count_lines(out), 4);
        assert_null(strstr(out, "debug-1"));
        assert_null(strstr(out, "info-1"));
        assert_null(strstr(out, "warning-2"));
        assert_non_null(strstr(out, " WARNING nestor.test [-] warning-1\n"));
        assert_non_null(strstr(out, " ERROR nestor.test [-] error-1\n"));
        assert_non_null(strstr(out, " DEBUG nestor.test [-] debug-2\n"));
        assert_non_null(strstr(out, " ERROR nestor.test [-] error-2\n"));
}

static void *other_thread(void *arg) {
        nst_log_set_request_id("req-other");
        log_info("from the other thread");
        return NULL;
}

static void test_request_id_per_thread(void **state) {
        struct capture c;
        capture_begin(&c);
        nst_log_set_request_id("req-main");
        log_info("one");
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, other_thread, NULL), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        log_info("two");
        nst_log_set_request_id(NULL);
        log_info("three");
        _cleanup_free_ char *out = capture_end(&c);

        assert_int_equal(count_lines(out), 4);
        assert_non_null(strstr(out, " [req-main] one\n"));
        assert_non_null(strstr(out, " [req-other] from the other thread\n"));
        assert_non_null(strstr(out, " [req-main] two\n"));
        assert_non_null(strstr(out, " [-] three\n"));
}

static void test_errno_preserved(void **state) {
        struct capture c;
        capture_begin(&c);
        errno = ENOENT;
        log_error("open failed: %m");
        assert_int_equal(errno, ENOENT);
        errno = EACCES;
        log_debug("filtered out"); /* the level check must not clobber it either */
        assert_int_equal(errno, EACCES);
        _cleanup_free_ char *out = capture_end(&c);
        assert_non_null(strstr(out, "open failed: No such file or directory\n"));
}

static void test_long_line_truncated(void **state) {
        size_t len = 3 * PIPE_BUF;
        _cleanup_free_ char *big = malloc(len + 1);
        assert_non_null(big);
        memset(big, 'x', len);
        big[len] = '\0';
        struct capture c;
        capture_begin(&c);
        log_info("%s", big);
        log_info("after");
        _cleanup_free_ char *out = capture_end(&c);

        assert_int_equal(count_lines(out), 2);
        char *nl = strchr(out, '\n');
        assert_int_equal((size_t)(nl - out) + 1, PIPE_BUF);
        assert_memory_equal(nl - 3, "...", 3);
        assert_non_null(strstr(nl + 1, " INFO nestor.test [-] after\n"));
}

#define THREADS 8
#define LINES_PER_THREAD 500

static void *spam(void *arg) {
        char filler[1500];
        memset(filler, 'a' + (int)(intptr_t)arg, sizeof(filler) - 1);
        filler[sizeof(filler) - 1] = '\0';
        for (int i = 0; i < LINES_PER_THREAD; i++)
                log_info("thread=%d i=%d %s end", (int)(intptr_t)arg, i, filler);
        return NULL;
}

/* Lines from concurrent threads must come out whole: one write(2) each. */
static void test_one_line_per_call(void **state) {
        char path[] = "/tmp/test_log_XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        unlink(path);
        assert_int_equal(fcntl(fd, F_SETFL, O_APPEND), 0);
        int saved = dup(STDERR_FILENO);
        assert_true(dup2(fd, STDERR_FILENO) >= 0);

        pthread_t t[THREADS];
        for (intptr_t i = 0; i < THREADS; i++)
                assert_int_equal(pthread_create(&t[i], NULL, spam, (void *)i), 0);
        for (int i = 0; i < THREADS; i++)
                assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_true(dup2(saved, STDERR_FILENO) >= 0);
        close(saved);

        off_t size = lseek(fd, 0, SEEK_END);
        assert_true(size > 0);
        _cleanup_free_ char *out = malloc((size_t)size + 1);
        assert_non_null(out);
        assert_int_equal(pread(fd, out, (size_t)size, 0), size);
        out[size] = '\0';
        close(fd);

        int seen[THREADS] = {0};
        size_t lines = 0;
        for (char *line = out, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
                *nl = '\0';
                lines++;
                int th, i;
                const char *m = strstr(line, " INFO nestor.test [-] thread=");
                assert_non_null(m);
                assert_int_equal(sscanf(m, " INFO nestor.test [-] thread=%d i=%d", &th, &i), 2);
                assert_true(th >= 0 && th < THREADS);
                /* Each thread's lines in its own order, each body intact. */
                assert_int_equal(i, seen[th]);
                seen[th]++;
                const char *body = strchr(strstr(m, " i=") + 1, ' ') + 1;
                assert_int_equal(strspn(body, (char[]){(char)('a' + th), '\0'}), 1499);
                assert_string_equal(body + 1499, " end");
        }
        assert_int_equal(lines, THREADS * LINES_PER_THREAD);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_format, setup),
                cmocka_unit_test_setup(test_levels, setup),
                cmocka_unit_test_setup(test_request_id_per_thread, setup),
                cmocka_unit_test_setup(test_errno_preserved, setup),
                cmocka_unit_test_setup(test_long_line_truncated, setup),
                cmocka_unit_test_setup(test_one_line_per_call, setup),
        };
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        nst_log_close();
        return r;
}
