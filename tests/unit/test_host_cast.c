/* nst_host_cast() and nst_host_connection_generation(): what a plugin's cast
 * becomes on the outbox (exchange, routing key, envelope, best-effort and
 * declare flags), when it is refused, and that it is safe from many threads
 * while the connection comes and goes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/config.h"
#include "agent/host.h"
#include "agent/outbox.h"
#include "messages/envelope.h"
#include "messages/json_util.h"
#include "messages/rpc_message.h"

struct fixture {
        struct nst_config *cfg;
        struct nst_host *host;
        struct nst_outbox *outbox;
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        assert_int_equal(nst_config_new(&f->cfg), 0);
        assert_int_equal(nst_host_new(f->cfg, "node1", &f->host), 0);
        assert_int_equal(nst_outbox_new(&f->outbox), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        nst_host_detach_transport(f->host, f->outbox);
        nst_host_free(f->host);
        nst_outbox_free(f->outbox);
        nst_config_free(f->cfg);
        free(f);
        return 0;
}

static void attach(struct fixture *f, bool connected) {
        assert_int_equal(nst_host_attach_transport(f->host, f->outbox, "nestor_ex"), 0);
        nst_host_set_connected(f->host, connected);
}

static json_object *args_with(const char *key, int value) {
        json_object *a = json_object_new_object();
        json_object_object_add(a, key, json_object_new_int(value));
        return a;
}

static size_t count_items(struct nst_outbox_item *list) {
        size_t n = 0;
        while (list) {
                struct nst_outbox_item *next = list->next;
                nst_outbox_item_free(list);
                list = next;
                n++;
        }
        return n;
}

/* Decodes an item's body as the receiving oslo server would. */
static void decode(const struct nst_outbox_item *it, struct nst_rpc_request *req) {
        struct nst_error err = NST_ERROR_INIT;
        _cleanup_json_ json_object *inner = NULL;
        assert_int_equal(nst_envelope_decode(it->body, it->body_len, 1 << 20, &inner, &err), 0);
        assert_int_equal(nst_rpc_request_decode(inner, req, NULL, NULL, &err), 0);
}

static void test_without_transport(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;

        /* args is taken even on failure (valgrind checks the leak). */
        assert_int_equal(nst_host_cast(f->host, "svc", true, "m", args_with("a", 1), 0, &err),
                         -ENOTCONN);
        assert_string_equal(err.cls, "MessageDeliveryFailure");
        assert_non_null(strstr(err.message, "no broker transport"));
        assert_int_equal(nst_host_connection_generation(f->host), 0);
}

static void test_bad_input(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        char long_topic[202];

        attach(f, true);
        assert_int_equal(nst_host_cast(f->host, "", true, "m", NULL, 0, &err), -EINVAL);
        assert_string_equal(err.cls, "InvalidInput");
        assert_non_null(strstr(err.message, "topic must be 1 to 200 bytes"));

        memset(long_topic, 't', sizeof(long_topic) - 1);
        long_topic[sizeof(long_topic) - 1] = '\0';
        assert_int_equal(nst_host_cast(f->host, long_topic, true, "m", NULL, 0, &err), -EINVAL);

        assert_int_equal(nst_host_cast(f->host, "svc", false, NULL, args_with("a", 1), 0, &err),
                         -EINVAL);
        assert_string_equal(err.message, "cast to svc: the method name is empty");

        assert_int_equal(nst_host_cast(f->host, "svc", false, "m", json_object_new_array(), 0,
                                       &err),
                         -EINVAL);
        assert_string_equal(err.message, "cast m to svc: args must be a JSON object");

        assert_int_equal(nst_host_cast(f->host, "svc", false, "m", NULL, 0x6, &err), -EINVAL);
        assert_string_equal(err.message, "cast m to svc: unknown flags 0x6");
        assert_null(nst_outbox_take_all(f->outbox));
}

static void test_fanout_cast(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rpc_request req = {0};

        attach(f, true);
        assert_int_equal(nst_host_cast(f->host, "nestor-services", true, "service_report",
                                       args_with("n", 7), NST_CAST_BEST_EFFORT, &err),
                         0);
        struct nst_outbox_item *it = nst_outbox_take_all(f->outbox);
        assert_non_null(it);
        assert_null(it->next);
        assert_int_equal(it->kind, NST_OUT_PUBLISH);
        /* oslo's fanout cast: exchange <topic>_fanout, empty routing key. */
        assert_string_equal(it->exchange, "nestor-services_fanout");
        assert_string_equal(it->routing_key, "");
        assert_true(it->declare_fanout);
        assert_false(it->declare_queue);
        assert_true(it->transient);
        assert_false(it->mandatory);
        assert_int_equal(it->call_id, 0);

        decode(it, &req);
        assert_string_equal(req.method, "service_report");
        assert_null(req.msg_id);
        assert_null(req.reply_q);
        assert_null(req.version);
        assert_non_null(req.unique_id);
        assert_int_equal(json_object_get_int(json_object_object_get(req.args, "n")), 7);
        nst_rpc_request_done(&req);
        nst_outbox_item_free(it);
}

static void test_topic_cast_is_kept_without_connection(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rpc_request req = {0};

        attach(f, false);
        /* Not best effort: handed over even while the broker is away (the
         * I/O thread keeps it for the next connection). */
        assert_int_equal(nst_host_cast(f->host, "compute.node2", false, "sync", NULL, 0, &err), 0);
        struct nst_outbox_item *it = nst_outbox_take_all(f->outbox);
        assert_non_null(it);
        assert_string_equal(it->exchange, "nestor_ex");
        assert_string_equal(it->routing_key, "compute.node2");
        assert_false(it->declare_fanout);
        assert_false(it->transient);
        decode(it, &req);
        assert_string_equal(req.method, "sync");
        assert_int_equal(json_object_object_length(req.args), 0);
        nst_rpc_request_done(&req);
        nst_outbox_item_free(it);
}

static void test_best_effort_dropped_while_disconnected(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;

        attach(f, false);
        assert_int_equal(nst_host_cast(f->host, "svc", true, "report", args_with("a", 1),
                                       NST_CAST_BEST_EFFORT, &err),
                         -ENOTCONN);
        assert_string_equal(err.cls, "MessageDeliveryFailure");
        assert_string_equal(err.message, "cast report to svc dropped: not connected to the broker");
        assert_null(nst_outbox_take_all(f->outbox));

        nst_host_set_connected(f->host, true);
        assert_int_equal(nst_host_cast(f->host, "svc", true, "report", NULL,
                                       NST_CAST_BEST_EFFORT, &err),
                         0);
        assert_int_equal(count_items(nst_outbox_take_all(f->outbox)), 1);

        /* Detached (the RPC server is gone): nothing goes anywhere. */
        nst_host_detach_transport(f->host, f->outbox);
        assert_int_equal(nst_host_cast(f->host, "svc", true, "report", NULL, 0, &err),
                         -ENOTCONN);
        assert_null(nst_outbox_take_all(f->outbox));
}

static void test_generation(void **state) {
        struct fixture *f = *state;
        struct nst_outbox *other;

        assert_int_equal(nst_host_connection_generation(f->host), 0);
        attach(f, false);
        assert_int_equal(nst_host_connection_generation(f->host), 0);
        nst_host_set_connected(f->host, true);
        assert_int_equal(nst_host_connection_generation(f->host), 1);
        nst_host_set_connected(f->host, false);
        assert_int_equal(nst_host_connection_generation(f->host), 1);
        nst_host_set_connected(f->host, true);
        assert_int_equal(nst_host_connection_generation(f->host), 2);

        /* Detaching someone else's outbox changes nothing. */
        assert_int_equal(nst_outbox_new(&other), 0);
        nst_host_detach_transport(f->host, other);
        assert_ptr_equal(f->host->outbox, f->outbox);
        assert_int_equal(f->host->connected, 1);
        nst_outbox_free(other);
}

/* ---- many threads casting while the connection flaps ---- */

#define N_THREADS 4
#define N_CASTS 500

struct caster {
        struct nst_host *host;
        int sent, dropped;
};

static void *cast_many(void *data) {
        struct caster *c = data;
        for (int i = 0; i < N_CASTS; i++) {
                struct nst_error err = NST_ERROR_INIT;
                int r = nst_host_cast(c->host, "svc", true, "report", args_with("i", i),
                                      NST_CAST_BEST_EFFORT, &err);
                if (r == 0)
                        c->sent++;
                else if (r == -ENOTCONN)
                        c->dropped++;
        }
        return NULL;
}

static void test_threads(void **state) {
        struct fixture *f = *state;
        struct caster casters[N_THREADS];
        pthread_t threads[N_THREADS];

        attach(f, true);
        for (int i = 0; i < N_THREADS; i++) {
                casters[i] = (struct caster){.host = f->host};
                assert_int_equal(pthread_create(&threads[i], NULL, cast_many, &casters[i]), 0);
        }
        size_t taken = 0;
        for (int i = 0; i < 200; i++) {
                nst_host_set_connected(f->host, i % 2);
                taken += count_items(nst_outbox_take_all(f->outbox));
        }
        nst_host_set_connected(f->host, true);
        int sent = 0, dropped = 0;
        for (int i = 0; i < N_THREADS; i++) {
                assert_int_equal(pthread_join(threads[i], NULL), 0);
                sent += casters[i].sent;
                dropped += casters[i].dropped;
        }
        taken += count_items(nst_outbox_take_all(f->outbox));
        assert_int_equal(sent + dropped, N_THREADS * N_CASTS);
        assert_int_equal(taken, (size_t)sent);
        /* attach, 100 reconnects in the loop, one after it */
        assert_int_equal(nst_host_connection_generation(f->host), 102);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_without_transport, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fanout_cast, setup, teardown),
                cmocka_unit_test_setup_teardown(test_topic_cast_is_kept_without_connection, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_best_effort_dropped_while_disconnected, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_generation, setup, teardown),
                cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
