/* Workers hand messages to the I/O thread through the outbox: nothing may be
 * lost, reordered per producer, or left without a wakeup. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/outbox.h"

static bool readable(const struct nst_outbox *o, int timeout_ms) {
        struct pollfd pfd = {.fd = nst_outbox_fd(o), .events = POLLIN};
        int n = poll(&pfd, 1, timeout_ms);
        assert_true(n >= 0);
        return n == 1 && (pfd.revents & POLLIN);
}

static struct nst_outbox_item *item(const char *key, const char *text) {
        char *body = strdup(text);
        assert_non_null(body);
        struct nst_outbox_item *it = nst_outbox_item_publish("ex", key, body, strlen(text), false);
        assert_non_null(it);
        return it;
}

static void free_list(struct nst_outbox_item *it) {
        while (it) {
                struct nst_outbox_item *next = it->next;
                nst_outbox_item_free(it);
                it = next;
        }
}

static void test_fd_flags(void **state) {
        struct nst_outbox *o;
        assert_int_equal(nst_outbox_new(&o), 0);
        int fd = nst_outbox_fd(o);
        assert_true(fd >= 0);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
        assert_false(readable(o, 0));
        assert_null(nst_outbox_take_all(o));
        nst_outbox_free(o);
        nst_outbox_free(NULL);
}

static void test_item_publish_copies_and_owns(void **state) {
        char ex[] = "nova", key[] = "reply_abc";
        char *body = strdup("{\"oslo.message\": \"{}\"}");
        struct nst_outbox_item *it = nst_outbox_item_publish(ex, key, body, strlen(body), true);

        assert_non_null(it);
        ex[0] = key[0] = 'X';
        assert_int_equal(it->kind, NST_OUT_PUBLISH);
        assert_string_equal(it->exchange, "nova");
        assert_string_equal(it->routing_key, "reply_abc");
        assert_ptr_equal(it->body, body);
        assert_int_equal(it->body_len, strlen(body));
        assert_true(it->mandatory);
        assert_false(it->declare_queue);
        assert_false(it->transient);
        assert_int_equal(it->call_id, 0);
        assert_null(it->next);
        nst_outbox_item_free(it);

        /* NULL exchange is the default exchange. */
        it = nst_outbox_item_publish(NULL, "q", NULL, 0, false);
        assert_non_null(it);
        assert_string_equal(it->exchange, "");
        assert_false(it->mandatory);
        nst_outbox_item_free(it);
        nst_outbox_item_free(NULL);

        /* Items built by hand (call-done markers) free cleanly too. */
        it = calloc(1, sizeof(*it));
        it->kind = NST_OUT_CALL_DONE;
        it->call_id = 7;
        nst_outbox_item_free(it);
}

static void test_fifo_and_eventfd(void **state) {
        struct nst_outbox *o;
        char key[16];

        assert_int_equal(nst_outbox_new(&o), 0);
        nst_outbox_push(o, item("a", "1"));
        assert_true(readable(o, 0));
        for (int i = 0; i < 10; i++) {
                snprintf(key, sizeof(key), "k%d", i);
                nst_outbox_push(o, item(key, "x"));
        }
        nst_outbox_push(o, NULL);
        assert_true(readable(o, 0));

        struct nst_outbox_item *list = nst_outbox_take_all(o);
        assert_false(readable(o, 0));
        assert_null(nst_outbox_take_all(o));
        assert_string_equal(list->routing_key, "a");
        int i = 0;
        for (struct nst_outbox_item *it = list->next; it; it = it->next, i++) {
                snprintf(key, sizeof(key), "k%d", i);
                assert_string_equal(it->routing_key, key);
        }
        assert_int_equal(i, 10);
        free_list(list);

        /* Works again after being emptied. */
        nst_outbox_push(o, item("b", "2"));
        assert_true(readable(o, 0));
        list = nst_outbox_take_all(o);
        assert_non_null(list);
        assert_null(list->next);
        assert_string_equal(list->routing_key, "b");
        assert_false(readable(o, 0));
        free_list(list);
        nst_outbox_free(o);
}

static void test_wake_without_item(void **state) {
        struct nst_outbox *o;
        assert_int_equal(nst_outbox_new(&o), 0);
        nst_outbox_wake(o);
        nst_outbox_wake(o);
        assert_true(readable(o, 0));
        assert_null(nst_outbox_take_all(o));
        assert_false(readable(o, 0));

        /* A wake and an item together: one take gets the item, clears both. */
        nst_outbox_wake(o);
        nst_outbox_push(o, item("c", "3"));
        struct nst_outbox_item *list = nst_outbox_take_all(o);
        assert_non_null(list);
        assert_false(readable(o, 0));
        free_list(list);
        nst_outbox_free(o);
}

static void test_free_releases_queued_items(void **state) {
        struct nst_outbox *o;
        assert_int_equal(nst_outbox_new(&o), 0);
        for (int i = 0; i < 100; i++)
                nst_outbox_push(o, item("k", "queued, never taken"));
        nst_outbox_free(o); /* valgrind checks nothing leaks */
}

#define PRODUCERS 4
#define PER_PRODUCER 10000

struct producer {
        struct nst_outbox *o;
        uint64_t id;
};

static void *produce(void *arg) {
        struct producer *p = arg;
        for (uint64_t seq = 0; seq < PER_PRODUCER; seq++) {
                char *body = malloc(24);
                if (!body)
                        abort();
                int len = snprintf(body, 24, "%llu:%llu", (unsigned long long)p->id,
                                   (unsigned long long)seq);
                struct nst_outbox_item *it =
                        nst_outbox_item_publish("", "rk", body, (size_t)len, false);
                if (!it)
                        abort();
                it->call_id = (p->id << 32) | seq;
                nst_outbox_push(p->o, it);
        }
        return NULL;
}

static void test_many_producers_one_consumer(void **state) {
        struct nst_outbox *o;
        pthread_t threads[PRODUCERS];
        struct producer prod[PRODUCERS];
        uint64_t next_seq[PRODUCERS] = {0};
        size_t total = 0, wakeups = 0;

        assert_int_equal(nst_outbox_new(&o), 0);
        for (uint64_t i = 0; i < PRODUCERS; i++) {
                prod[i] = (struct producer){o, i};
                assert_int_equal(pthread_create(&threads[i], NULL, produce, &prod[i]), 0);
        }
        while (total < PRODUCERS * PER_PRODUCER) {
                /* 10 s without a wakeup while items are due means one was lost. */
                assert_true(readable(o, 10000));
                wakeups++;
                struct nst_outbox_item *list = nst_outbox_take_all(o);
                /* Readable only when something waits: no spurious wakeups. */
                assert_non_null(list);
                for (struct nst_outbox_item *it = list; it; it = it->next) {
                        uint64_t id = it->call_id >> 32, seq = it->call_id & 0xffffffffu;
                        assert_true(id < PRODUCERS);
                        assert_int_equal(seq, next_seq[id]);
                        next_seq[id]++;
                        char expect[24];
                        snprintf(expect, sizeof(expect), "%llu:%llu", (unsigned long long)id,
                                 (unsigned long long)seq);
                        assert_string_equal(it->body, expect);
                        assert_int_equal(it->body_len, strlen(expect));
                        total++;
                }
                free_list(list);
        }
        for (int i = 0; i < PRODUCERS; i++)
                assert_int_equal(pthread_join(threads[i], NULL), 0);
        for (int i = 0; i < PRODUCERS; i++)
                assert_int_equal(next_seq[i], PER_PRODUCER);
        assert_false(readable(o, 0));
        assert_null(nst_outbox_take_all(o));
        assert_true(wakeups >= 1);
        nst_outbox_free(o);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fd_flags),
                cmocka_unit_test(test_item_publish_copies_and_owns),
                cmocka_unit_test(test_fifo_and_eventfd),
                cmocka_unit_test(test_wake_without_item),
                cmocka_unit_test(test_free_releases_queued_items),
                cmocka_unit_test(test_many_producers_one_consumer),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
