/* nst_mkdir_p: parents created, existing ones kept, errors reported. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/fs_util.h"

static void test_mkdir_p(void **state) {
        char base[] = "/tmp/nestor-fsutil-XXXXXX", path[128], file[128];
        assert_non_null(mkdtemp(base));
        snprintf(path, sizeof(path), "%s/a/b/c", base);
        assert_int_equal(nst_mkdir_p(path, 0750), 0);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(nst_mkdir_p(path, 0750), 0); /* again: nothing to do */
        snprintf(file, sizeof(file), "%s/f", base);
        fclose(fopen(file, "w"));
        snprintf(path, sizeof(path), "%s/f/x", base);
        assert_int_equal(nst_mkdir_p(path, 0750), -ENOTDIR);
        assert_int_equal(nst_mkdir_p("", 0750), -EINVAL);
        char cmd[160];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
        assert_int_equal(system(cmd), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_mkdir_p)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
