/* Shared helpers of the sriov plugin's unit tests: fake sysfs trees made by
 * tests/fixtures/mkfakesysfs.py in a temporary directory, removed by the
 * test (remove_tree) or, when a test failed half-way, by the group teardown
 * (remove_live_trees). */
#ifndef NESTOR_TESTS_UNIT_SRIOV_SRIOV_TEST_H
#define NESTOR_TESTS_UNIT_SRIOV_SRIOV_TEST_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "messages/util.h"

struct tree {
        char dir[64];
        char sys[96];
        char cmdline[96];
};

static void remove_tree(struct tree *t);

/* Trees not removed yet: a failing test leaves its trees to the teardown. */
static char live_trees[8][64];

static void track_tree(const char *dir, bool live) {
        for (size_t i = 0; i < NST_ARRAY_SIZE(live_trees); i++) {
                if (live && live_trees[i][0] == '\0') {
                        snprintf(live_trees[i], sizeof(live_trees[i]), "%s", dir);
                        return;
                }
                if (!live && strcmp(live_trees[i], dir) == 0) {
                        live_trees[i][0] = '\0';
                        return;
                }
        }
        if (live)
                fail_msg("more than %zu trees at once", NST_ARRAY_SIZE(live_trees));
}

/* NESTOR_SOURCE_DIR (set by CTest), else the tree this file is in. */
static const char *source_dir(void) {
        static char dir[512];
        const char *env = getenv("NESTOR_SOURCE_DIR");
        if (env)
                return env;
        snprintf(dir, sizeof(dir), "%s", __FILE__);
        char *tail = strstr(dir, "/tests/unit/sriov/");
        if (tail)
                *tail = '\0';
        else
                snprintf(dir, sizeof(dir), ".");
        return dir;
}

static void make_tree(struct tree *t, const char *args) {
        snprintf(t->dir, sizeof(t->dir), "/tmp/nestor-sriov-t-XXXXXX");
        assert_non_null(mkdtemp(t->dir));
        track_tree(t->dir, true);
        snprintf(t->sys, sizeof(t->sys), "%s/sys", t->dir);
        snprintf(t->cmdline, sizeof(t->cmdline), "%s/proc/cmdline", t->dir);
        char cmd[1024];
        snprintf(cmd, sizeof(cmd),
                 "/usr/bin/python3 %s/tests/fixtures/mkfakesysfs.py %s --quiet %s", source_dir(),
                 t->dir, args);
        int rc = system(cmd);
        if (rc != 0) {
                remove_tree(t);
                fail_msg("generator failed (%d): %s", rc, cmd);
        }
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

static void remove_tree(struct tree *t) {
        track_tree(t->dir, false);
        assert_int_equal(nftw(t->dir, rm_entry, 32, FTW_DEPTH | FTW_PHYS), 0);
}

static int remove_live_trees(void **state) {
        for (size_t i = 0; i < NST_ARRAY_SIZE(live_trees); i++)
                if (live_trees[i][0]) {
                        (void)nftw(live_trees[i], rm_entry, 32, FTW_DEPTH | FTW_PHYS);
                        live_trees[i][0] = '\0';
                }
        return 0;
}

#endif
