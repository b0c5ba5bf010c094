/* Where a replicated instance is (plugins/replication/repl_presence.h), fed
 * the lifecycle events and domain states libvirt gives for each way an
 * instance leaves or comes back: a migration cannot be made on one host, so
 * its sequences are checked here (the e2e test stops and starts a real
 * instance). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <libvirt/libvirt.h>
#include <stdbool.h>

#include "plugins/replication/repl_presence.h"

#define HERE REPL_PRESENCE_HERE
#define STOPPED REPL_PRESENCE_STOPPED
#define MIGRATED REPL_PRESENCE_MIGRATED
#define MISSING REPL_PRESENCE_MISSING

struct ev {
        int event, detail;
};

static enum repl_presence replay(enum repl_presence p, const struct ev *evs, size_t n) {
        for (size_t i = 0; i < n; i++)
                p = repl_presence_after_event(p, evs[i].event, evs[i].detail);
        return p;
}
#define REPLAY(p, ...)                                                                             \
        replay(p, (const struct ev[]){__VA_ARGS__},                                                \
               sizeof((const struct ev[]){__VA_ARGS__}) / sizeof(struct ev))

/* nova: VIR_MIGRATE_UNDEFINE_SOURCE | VIR_MIGRATE_PERSIST_DEST. The domain
 * is gone from this host, and it must still read as migrated, also to a
 * later check that finds nothing defined. */
static void test_migration_undefining_the_source(void **state) {
        (void)state;
        enum repl_presence p =
                REPLAY(HERE, {VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED},
                       {VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_MIGRATED},
                       {VIR_DOMAIN_EVENT_UNDEFINED, VIR_DOMAIN_EVENT_UNDEFINED_REMOVED});
        assert_int_equal(p, MIGRATED);
        assert_int_equal(repl_presence_from_state(p, false, 0, 0), MIGRATED);
}

/* virsh migrate without --undefinesource: the definition stays, shut off
 * with reason "migrated"; a check alone (an agent that was down during the
 * migration) recognises it. */
static void test_migration_keeping_the_definition(void **state) {
        (void)state;
        assert_int_equal(REPLAY(HERE, {VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_MIGRATED}),
                         MIGRATED);
        assert_int_equal(repl_presence_from_state(HERE, true, VIR_DOMAIN_SHUTOFF,
                                                  VIR_DOMAIN_SHUTOFF_MIGRATED),
                         MIGRATED);
}

/* Migrated back: the incoming side's STARTED, whatever its detail. */
static void test_migration_back(void **state) {
        (void)state;
        assert_int_equal(REPLAY(MIGRATED, {VIR_DOMAIN_EVENT_DEFINED, VIR_DOMAIN_EVENT_DEFINED_ADDED},
                                {VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_MIGRATED},
                                {VIR_DOMAIN_EVENT_RESUMED, VIR_DOMAIN_EVENT_RESUMED_MIGRATED}),
                         HERE);
        assert_int_equal(repl_presence_from_state(MIGRATED, true, VIR_DOMAIN_RUNNING,
                                                  VIR_DOMAIN_RUNNING_MIGRATED),
                         HERE);
        /* Defined here again but not started: it may still run elsewhere. */
        assert_int_equal(REPLAY(MIGRATED, {VIR_DOMAIN_EVENT_DEFINED, VIR_DOMAIN_EVENT_DEFINED_ADDED}),
                         MIGRATED);
}

/* Nothing defined and nothing seen: deleted, or moved while the agent was
 * not watching; it cannot tell which. */
static void test_missing_unseen(void **state) {
        (void)state;
        assert_int_equal(repl_presence_from_state(HERE, false, 0, 0), MISSING);
        assert_int_equal(repl_presence_from_state(STOPPED, false, 0, 0), MISSING);
}

static void test_stopped_and_started(void **state) {
        (void)state;
        assert_int_equal(REPLAY(HERE, {VIR_DOMAIN_EVENT_SHUTDOWN, VIR_DOMAIN_EVENT_SHUTDOWN_GUEST},
                                {VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN}),
                         STOPPED);
        assert_int_equal(REPLAY(HERE, {VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_DESTROYED},
                                {VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_BOOTED}),
                         HERE);
        assert_int_equal(REPLAY(HERE, {VIR_DOMAIN_EVENT_CRASHED, VIR_DOMAIN_EVENT_CRASHED_PANICKED},
                                {VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_CRASHED}),
                         STOPPED);
        assert_int_equal(repl_presence_from_state(HERE, true, VIR_DOMAIN_SHUTOFF,
                                                  VIR_DOMAIN_SHUTOFF_DESTROYED),
                         STOPPED);
        assert_int_equal(repl_presence_from_state(HERE, true, VIR_DOMAIN_CRASHED, 0), STOPPED);
        /* A migrated instance that is later found shut off for another
         * reason is here, stopped. */
        assert_int_equal(repl_presence_from_state(MIGRATED, true, VIR_DOMAIN_SHUTOFF,
                                                  VIR_DOMAIN_SHUTOFF_SHUTDOWN),
                         STOPPED);
}

/* A paused or suspended guest keeps its QEMU, and the backup works. */
static void test_paused_is_here(void **state) {
        (void)state;
        assert_int_equal(REPLAY(HERE, {VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_PAUSED},
                                {VIR_DOMAIN_EVENT_PMSUSPENDED, VIR_DOMAIN_EVENT_PMSUSPENDED_MEMORY}),
                         HERE);
        assert_int_equal(repl_presence_from_state(STOPPED, true, VIR_DOMAIN_PAUSED,
                                                  VIR_DOMAIN_PAUSED_USER),
                         HERE);
        assert_int_equal(repl_presence_from_state(STOPPED, true, VIR_DOMAIN_PMSUSPENDED, 0), HERE);
}

static void test_deleted_and_defined_again(void **state) {
        (void)state;
        assert_int_equal(REPLAY(HERE, {VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_DESTROYED},
                                {VIR_DOMAIN_EVENT_UNDEFINED, VIR_DOMAIN_EVENT_UNDEFINED_REMOVED}),
                         MISSING);
        assert_int_equal(REPLAY(MISSING, {VIR_DOMAIN_EVENT_DEFINED, VIR_DOMAIN_EVENT_DEFINED_ADDED}),
                         STOPPED);
}

static void test_names(void **state) {
        (void)state;
        const enum repl_presence all[] = {HERE, STOPPED, MIGRATED, MISSING};
        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
                assert_int_equal(repl_presence_parse(repl_presence_name(all[i])), (int)all[i]);
        assert_string_equal(repl_presence_name(MIGRATED), "migrated");
        assert_int_equal(repl_presence_parse("elsewhere"), -1);
        assert_int_equal(repl_presence_parse(NULL), -1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_migration_undefining_the_source),
                cmocka_unit_test(test_migration_keeping_the_definition),
                cmocka_unit_test(test_migration_back),
                cmocka_unit_test(test_missing_unseen),
                cmocka_unit_test(test_stopped_and_started),
                cmocka_unit_test(test_paused_is_here),
                cmocka_unit_test(test_deleted_and_defined_again),
                cmocka_unit_test(test_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
