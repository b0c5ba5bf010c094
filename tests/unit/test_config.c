/* The INI grammar must match oslo_config/iniparser.py, since operators reuse
 * nova.conf snippets; error messages must name file and line. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/config.h"

static const char *const colors[] = {"red", "green", NULL};

static const struct nst_option default_opts[] = {
        {"name", NST_OPT_STRING, "dflt", "A string"},
        {"count", NST_OPT_INT, "10", "An integer", 1, 3600},
        {"offset", NST_OPT_INT, "0", "An unbounded integer"},
        {"ratio", NST_OPT_FLOAT, "0.5", "A float", 0.05, 60},
        {"debug", NST_OPT_BOOL, "false", "A boolean"},
        {"plugins", NST_OPT_LIST, "", "A list"},
        {"spec", NST_OPT_MULTI, NULL, "A multi"},
        {"color", NST_OPT_ENUM, "red", "An enum", .choices = colors},
        {"unset", NST_OPT_STRING, NULL, "No default"},
};

static struct nst_config *load(const char *text) {
        struct nst_config *cfg = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_config_new(&cfg), 0);
        if (text)
                assert_int_equal(nst_config_load_string(cfg, "t.conf", text, &err), 0);
        assert_int_equal(nst_config_register(cfg, "DEFAULT", default_opts,
                                             NST_ARRAY_SIZE(default_opts), &err),
                         0);
        return cfg;
}

static struct nst_config *load_resolved(const char *text) {
        struct nst_config *cfg = load(text);
        struct nst_error err = NST_ERROR_INIT;
        int r = nst_config_resolve(cfg, &err);
        if (r < 0)
                fail_msg("resolve: %s", err.message);
        return cfg;
}

static const char *str(const struct nst_config *cfg, const char *name) {
        return nst_config_get_string(cfg, "DEFAULT", name);
}

static void syntax_error(const char *text, const char *message) {
        _cleanup_(nst_config_freep) struct nst_config *cfg = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_config_new(&cfg), 0);
        assert_int_equal(nst_config_load_string(cfg, "nestor.conf", text, &err), -EINVAL);
        assert_string_equal(err.cls, "ConfigError");
        assert_string_equal(err.message, message);
}

static void bad_value(const char *text, const char *message) {
        _cleanup_(nst_config_freep) struct nst_config *cfg = load(text);
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_config_resolve(cfg, &err), -EINVAL);
        assert_string_equal(err.cls, "ConfigError");
        assert_string_equal(err.message, message);
}

/* Runs fn with fd 2 redirected to a temporary file; returns what it wrote. */
static char *capture_stderr(size_t (*fn)(struct nst_config *), struct nst_config *cfg,
                            size_t *ret) {
        FILE *f = tmpfile();
        assert_non_null(f);
        fflush(stderr);
        int saved = dup(STDERR_FILENO);
        assert_true(saved >= 0);
        assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
        *ret = fn(cfg);
        fflush(stderr);
        assert_true(dup2(saved, STDERR_FILENO) >= 0);
        close(saved);
        long len = ftell(f);
        assert_true(len >= 0);
        char *out = calloc(1, (size_t)len + 1);
        assert_non_null(out);
        rewind(f);
        assert_int_equal(fread(out, 1, (size_t)len, f), (size_t)len);
        fclose(f);
        return out;
}

static size_t count_lines(const char *s) {
        size_t n = 0;
        for (; *s; s++)
                n += *s == '\n';
        return n;
}

static void test_separators(void **state) {
        _cleanup_(nst_config_freep) struct nst_config *cfg =
                load_resolved("[DEFAULT]\n"
                              "name = http://host:80/path\n"
                              "unset: a = b\n"
                              "count=7\n"
                              "color:green\n");
        assert_string_equal(str(cfg, "name"), "http://host:80/path");
        assert_string_equal(str(cfg, "unset"), "a = b");
        assert_int_equal(nst_config_get_int(cfg, "DEFAULT", "count"), 7);
        assert_string_equal(str(cfg, "color"), "green");
}

static void test_quotes(void **state) {
        struct {
                const char *line, *value;
        } cases[] = {
                {"name = \"quoted value\"", "quoted value"},
                {"name = ' spaced '", " spaced "},
                {"name = \"mismatched'", "\"mismatched'"},
                {"name = \"\"", ""},
                {"name = \"", ""}, /* oslo: a lone quote is first and last char */
                {"name = a \"b\"", "a \"b\""},
                {"name =", ""},
        };
        for (size_t i = 0; i < NST_ARRAY_SIZE(cases); i++) {
                char text[128];
                snprintf(text, sizeof(text), "[DEFAULT]\n%s\n", cases[i].line);
                _cleanup_(nst_config_freep) struct nst_config *cfg = load_resolved(text);
                assert_string_equal(str(cfg, "name"), cases[i].value);
        }
}

static void test_continuation(void **state) {
        _cleanup_(nst_config_freep) struct nst_config *cfg =
                load_resolved("[DEFAULT]\n"
                              "name = first\n"
                              "   second  \n"
                              "\tthird\n"
                              "\n"
                              "unset = \"q\"\n"
                              "  'r'\n"
                              "plugins = a,\n"
                              "  b\n");
        assert_string_equal(str(cfg, "name"), "first\nsecond\nthird");
        /* Quotes are only stripped from the first line, as in oslo. */
        assert_string_equal(str(cfg, "unset"), "q\n'r'");
        size_t n;
        const char *const *l = nst_config_get_list(cfg, "DEFAULT", "plugins", &n);
        assert_int_equal(n, 2);
        assert_string_equal(l[0], "a");
        assert_string_equal(l[1], "b");
}

static void test_comments(void **state) {
        _cleanup_(nst_config_freep) struct nst_config *cfg =
                load_resolved("# leading comment\n"
                              "; another\n"
                              "[DEFAULT]\n"
                              "#name = commented\n"
                              ";count = 99\n"
                              "unset = value # not a comment\n"
                              "\r\n"
                              "name = crlf\r\n");
        assert_string_equal(str(cfg, "name"), "crlf");
        assert_int_equal(nst_config_get_int(cfg, "DEFAULT", "count"), 10);
        assert_string_equal(str(cfg, "unset"), "value # not a comment");
}

static void test_multi_and_last_wins(void **state) {
        _cleanup_(nst_config_freep) struct nst_config *cfg = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_config_new(&cfg), 0);
        assert_int_equal(nst_config_load_string(cfg, "a.conf",
                                                "[DEFAULT]\n"
                                                "spec = {\"a\": 1}\n"
                                                "name = one\n"
                                                "spec = two\n"
                                                "name = two\n"
                                                "count = 5\n",
                                                &err),
                         0);
        assert_int_equal(nst_config_load_string(cfg, "b.conf",
                                                "[DEFAULT]\n"
                                                "spec = three\n"
                                                "name = three\n",
                                                &err),
                         0);
        assert_int_equal(nst_config_register(cfg, "DEFAULT", default_opts,
                                             NST_ARRAY_SIZE(default_opts), &err),
                         0);
        assert_int_equal(nst_config_resolve(cfg, &err), 0);
        size_t n;
        const char *const *l = nst_config_get_list(cfg, "DEFAULT", "spec", &n);
        assert_int_equal(n, 3);
        assert_string_equal(l[0], "{\"a\": 1}");
        assert_string_equal(l[1], "two");
        assert_string_equal(l[2], "three");
        assert_null(l[3]);
        /* Each value keeps its origin, for messages about its content. */
        const char *const *origins = nst_config_get_origins(cfg, "DEFAULT", "spec");
        assert_string_equal(origins[0], "a.conf:2");
        assert_string_equal(origins[1], "a.conf:4");
        assert_string_equal(origins[2], "b.conf:2");
        assert_null(origins[3]);
        assert_string_equal(str(cfg, "name"), "three");
        assert_int_equal(nst_config_get_int(cfg, "DEFAULT", "count"), 5);
}

static void test_only_last_value_checked(void **state) {
        _cleanup_(nst_config_freep) struct nst_config *cfg =
                load_resolved("[DEFAULT]\ncount = bad\ncount = 3\n");
        assert_int_equal(nst_config_get_int(cfg, "DEFAULT", "count"), 3);
}

static void test_defaults(void **state) {
        _cleanup_(nst_config_freep) struct nst_config *cfg = load_resolved(NULL);
        size_t n = 99;
        assert_string_equal(str(cfg, "name"), "dflt");
        assert_null(str(cfg, "unset"));
        assert_int_equal(nst_config_get_int(cfg, "DEFAULT", "count"), 10);
        assert_true(nst_config_get_float(cfg, "DEFAULT", "ratio") == 0.5);
        assert_false(nst_config_get_bool(cfg, "DEFAULT", "debug"));
        const char *const *l = nst_config_get_list(cfg, "DEFAULT", "plugins", &n);
        assert_non_null(l);
        assert_null(l[0]);
        assert_int_equal(n, 0);
        l = nst_config_get_list(cfg, "DEFAULT", "spec", &n);
        assert_non_null(l);
        assert_int_equal(n, 0);
        assert_string_equal(str(cfg, "color"), "red");
}

static void test_good_values(void **state) {
        _cleanup_(nst_config_freep) struct nst_config *cfg =
                load_resolved("[DEFAULT]\n"
                              "count = +3600\n"
                              "offset = -42\n"
                              "ratio = 1e1\n"
                              "debug = YES\n"
                              "plugins =  a , ,b,, c ,\n"
                              "color = green\n");
        assert_int_equal(nst_config_get_int(cfg, "DEFAULT", "count"), 3600);
        assert_int_equal(nst_config_get_int(cfg, "DEFAULT", "offset"), -42);
        assert_true(nst_config_get_float(cfg, "DEFAULT", "ratio") == 10.0);
        assert_true(nst_config_get_bool(cfg, "DEFAULT", "debug"));
        size_t n;
        const char *const *l = nst_config_get_list(cfg, "DEFAULT", "plugins", &n);
        assert_int_equal(n, 3);
        assert_string_equal(l[0], "a");
        assert_string_equal(l[1], "b");
        assert_string_equal(l[2], "c");
        assert_null(l[3]);

        const char *const t[] = {"true", "On", "1", "yes"}, *const f[] = {"FALSE", "off", "0",
                                                                           "No"};
        for (size_t i = 0; i < 4; i++) {
                char text[64];
                snprintf(text, sizeof(text), "[DEFAULT]\ndebug = %s\n", t[i]);
                _cleanup_(nst_config_freep) struct nst_config *c1 = load_resolved(text);
                assert_true(nst_config_get_bool(c1, "DEFAULT", "debug"));
                snprintf(text, sizeof(text), "[DEFAULT]\ndebug = %s\n", f[i]);
                _cleanup_(nst_config_freep) struct nst_config *c2 = load_resolved(text);
                assert_false(nst_config_get_bool(c2, "DEFAULT", "debug"));
        }
}

static void test_bad_values(void **state) {
        const char *expect_int = "expected an integer between 1 and 3600";
        struct {
                const char *text, *option, *value, *expected;
        } cases[] = {
                {"count = abc", "count", "abc", expect_int},
                {"count = 0", "count", "0", expect_int},
                {"count = 3601", "count", "3601", expect_int},
                {"count = 1.5", "count", "1.5", expect_int},
                {"count = 0x10", "count", "0x10", expect_int},
                {"count = ", "count", "", expect_int},
                {"offset = 99999999999999999999", "offset", "99999999999999999999",
                 "expected an integer"},
                {"ratio = fast", "ratio", "fast", "expected a number between 0.05 and 60"},
                {"ratio = 61", "ratio", "61", "expected a number between 0.05 and 60"},
                {"ratio = nan", "ratio", "nan", "expected a number between 0.05 and 60"},
                {"ratio = 0x1p0", "ratio", "0x1p0", "expected a number between 0.05 and 60"},
                {"debug = maybe", "debug", "maybe", "expected true/false, yes/no, on/off or 1/0"},
                {"debug = truee", "debug", "truee", "expected true/false, yes/no, on/off or 1/0"},
                {"color = Red", "color", "Red", "expected one of: red, green"},
        };
        for (size_t i = 0; i < NST_ARRAY_SIZE(cases); i++) {
                char text[128], message[512];
                snprintf(text, sizeof(text), "[DEFAULT]\n\n%s\n", cases[i].text);
                snprintf(message, sizeof(message),
                         "t.conf:3: [DEFAULT] %s: invalid value '%s': %s", cases[i].option,
                         cases[i].value, cases[i].expected);
                bad_value(text, message);
        }
}

static void test_bad_value_in_second_file(void **state) {
        _cleanup_(nst_config_freep) struct nst_config *cfg = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_config_new(&cfg), 0);
        assert_int_equal(nst_config_load_string(cfg, "a.conf", "[DEFAULT]\ncount = 5\n", &err),
                         0);
        assert_int_equal(nst_config_load_string(cfg, "b.conf", "[default]\n#\ncount = 0\n", &err),
                         0);
        assert_int_equal(nst_config_register(cfg, "DEFAULT", default_opts,
                                             NST_ARRAY_SIZE(default_opts), &err),
                         0);
        assert_int_equal(nst_config_resolve(cfg, &err), -EINVAL);
        assert_string_equal(err.message, "b.conf:3: [DEFAULT] count: invalid value '0': "
                                         "expected an integer between 1 and 3600");
}

static void test_bad_default(void **state) {
        static const struct nst_option opts[] = {
                {"port", NST_OPT_INT, "seventy", "bad default", 1, 65535},
        };
        _cleanup_(nst_config_freep) struct nst_config *cfg = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_config_new(&cfg), 0);
        assert_int_equal(nst_config_register(cfg, "x", opts, 1, &err), 0);
        assert_int_equal(nst_config_resolve(cfg, &err), -EINVAL);
        assert_string_equal(err.message, "(default): [x] port: invalid value 'seventy': "
                                         "expected an integer between 1 and 65535");
}

static void test_long_value_shortened_in_message(void **state) {
        char text[512];
        char value[301];
        memset(value, 'x', 300);
        value[300] = '\0';
        snprintf(text, sizeof(text), "[DEFAULT]\ncount = %s\n", value);
        _cleanup_(nst_config_freep) struct nst_config *cfg = load(text);
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_config_resolve(cfg, &err), -EINVAL);
        assert_non_null(strstr(err.message, "xxx...': expected an integer between 1 and 3600"));
        assert_true(strlen(err.message) < 200);
}

static size_t warn(struct nst_config *cfg) {
        return nst_config_warn_unknown(cfg);
}

static void test_unknown_options(void **state) {
        static const struct nst_option plugin_opts[] = {
                {"later", NST_OPT_STRING, NULL, "registered after the first resolve"},
        };
        _cleanup_(nst_config_freep) struct nst_config *cfg =
                load("[DEFAULT]\n"
                     "count = 2\n"
                     "foo = 1\n"
                     "foo = 2\n"
                     "[libvirt]\n"
                     "virt_type = kvm\n"
                     "cpu_mode = custom\n"
                     "[plugin]\n"
                     "later = yes\n"
                     "stray = 1\n");
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_config_resolve(cfg, &err), 0);
        assert_int_equal(nst_config_get_int(cfg, "DEFAULT", "count"), 2);

        /* A plugin registers its section after the first resolve. */
        assert_int_equal(nst_config_register(cfg, "plugin", plugin_opts, 1, &err), 0);
        assert_int_equal(nst_config_resolve(cfg, &err), 0);
        assert_string_equal(nst_config_get_string(cfg, "plugin", "later"), "yes");

        size_t n;
        _cleanup_free_ char *out = capture_stderr(warn, cfg, &n);
        assert_int_equal(n, 4); /* foo, virt_type, cpu_mode, stray */
        assert_int_equal(count_lines(out), 3);
        assert_non_null(strstr(out, " WARNING nestor.config [-] t.conf:3: unknown option "
                                    "[DEFAULT] foo, ignoring\n"));
        assert_non_null(strstr(out, "t.conf:5: unknown section [libvirt] (no enabled plugin "
                                    "uses it), ignoring\n"));
        assert_non_null(strstr(out, "t.conf:10: unknown option [plugin] stray, ignoring\n"));
        assert_null(strstr(out, "later"));

        /* Once is enough. */
        _cleanup_free_ char *again = capture_stderr(warn, cfg, &n);
        assert_int_equal(n, 4);
        assert_string_equal(again, "");
}

static void test_section_names(void **state) {
        static const struct nst_option opts[] = {
                {"virt_type", NST_OPT_STRING, "kvm", "hypervisor"},
        };
        _cleanup_(nst_config_freep) struct nst_config *cfg =
                load("[default]\nname = lower\n[LibVirt]\nvirt_type = qemu\n");
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_config_register(cfg, "libvirt", opts, 1, &err), 0);
        assert_int_equal(nst_config_resolve(cfg, &err), 0);
        assert_string_equal(str(cfg, "name"), "lower");
        assert_string_equal(nst_config_get_string(cfg, "libvirt", "virt_type"), "qemu");
        /* Option names stay case-sensitive, as in oslo. */
        assert_int_equal(nst_config_load_string(cfg, "u.conf", "[DEFAULT]\nName = upper\n", &err),
                         0);
        size_t n;
        _cleanup_free_ char *out = capture_stderr(warn, cfg, &n);
        assert_int_equal(n, 1);
        assert_non_null(strstr(out, "u.conf:2: unknown option [default] Name, ignoring"));
}

static void test_syntax_errors(void **state) {
        syntax_error("name = x\n",
                     "nestor.conf:1: option 'name' before any [section] header (start with "
                     "[DEFAULT])");
        syntax_error("# c\n\n  name = x\n", "nestor.conf:3: continuation line (starts with "
                                             "whitespace) without an option to continue");
        syntax_error("[DEFAULT]\na = 1\n\n  b\n", "nestor.conf:4: continuation line (starts "
                                                   "with whitespace) without an option to "
                                                   "continue");
        syntax_error("[DEFAULT\n", "nestor.conf:1: invalid section header: missing closing ']'");
        syntax_error("[DEFAULT] # c\n",
                     "nestor.conf:1: invalid section header: missing closing ']'");
        syntax_error("[DEFAULT]\n[]\n", "nestor.conf:2: empty section name");
        syntax_error("[DEFAULT]\n\n\n\n\n\n\n\n\n\n\njust words\n",
                     "nestor.conf:12: expected 'key = value' or '[section]'");
        syntax_error("[DEFAULT]\n= value\n",
                     "nestor.conf:2: empty option name before the separator");
}

static void test_nul_byte(void **state) {
        _cleanup_(nst_config_freep) struct nst_config *cfg = NULL;
        struct nst_error err = NST_ERROR_INIT;
        _cleanup_free_ char *path = strdup("/tmp/test_config_XXXXXX");
        assert_non_null(path);
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        static const char text[] = "[DEFAULT]\na = 1\nb = \0\n";
        assert_int_equal(write(fd, text, sizeof(text) - 1), sizeof(text) - 1);
        close(fd);
        assert_int_equal(nst_config_new(&cfg), 0);
        assert_int_equal(nst_config_load_file(cfg, path, &err), -EINVAL);
        unlink(path);
        char expect[128];
        snprintf(expect, sizeof(expect), "%s:3: NUL byte in text", path);
        assert_string_equal(err.message, expect);
}

static void test_error_leaves_config_untouched(void **state) {
        _cleanup_(nst_config_freep) struct nst_config *cfg = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_config_new(&cfg), 0);
        assert_int_equal(nst_config_load_string(cfg, "a", "[DEFAULT]\nname = good\n", &err), 0);
        assert_true(nst_config_load_string(cfg, "b", "[DEFAULT]\nname = bad\nnope\n", &err) <
                    0);
        assert_int_equal(nst_config_register(cfg, "DEFAULT", default_opts,
                                             NST_ARRAY_SIZE(default_opts), &err),
                         0);
        assert_int_equal(nst_config_resolve(cfg, &err), 0);
        assert_string_equal(str(cfg, "name"), "good");
}

static void test_long_lines(void **state) {
        size_t len = 64 * 1024;
        _cleanup_free_ char *text = malloc(len + 64);
        assert_non_null(text);
        /* Exactly the limit is fine... */
        strcpy(text, "[DEFAULT]\nname = ");
        size_t used = strlen(text);
        memset(text + used, 'v', len - strlen("name = "));
        text[10 + len] = '\n';
        text[10 + len + 1] = '\0';
        _cleanup_(nst_config_freep) struct nst_config *cfg = load_resolved(text);
        assert_int_equal(strlen(str(cfg, "name")), len - strlen("name = "));
        /* ...one more byte is not. */
        text[10 + len] = 'v';
        text[10 + len + 1] = '\n';
        text[10 + len + 2] = '\0';
        syntax_error(text, "nestor.conf:2: line longer than 65536 bytes");
}

static void test_files(void **state) {
        char path[] = "/tmp/test_config_XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        static const char text[] = "[DEFAULT]\n\ncount = 99999\n";
        assert_int_equal(write(fd, text, strlen(text)), strlen(text));

        _cleanup_(nst_config_freep) struct nst_config *cfg = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_config_new(&cfg), 0);
        assert_int_equal(nst_config_load_file(cfg, path, &err), 0);
        assert_int_equal(nst_config_register(cfg, "DEFAULT", default_opts,
                                             NST_ARRAY_SIZE(default_opts), &err),
                         0);
        assert_int_equal(nst_config_resolve(cfg, &err), -EINVAL);
        char expect[256];
        snprintf(expect, sizeof(expect),
                 "%s:3: [DEFAULT] count: invalid value '99999': expected an integer between 1 "
                 "and 3600",
                 path);
        assert_string_equal(err.message, expect);

        /* Over 4 MiB: refused before parsing. */
        assert_int_equal(ftruncate(fd, 4 * 1024 * 1024 + 1), 0);
        close(fd);
        _cleanup_(nst_config_freep) struct nst_config *big = NULL;
        assert_int_equal(nst_config_new(&big), 0);
        assert_int_equal(nst_config_load_file(big, path, &err), -EFBIG);
        snprintf(expect, sizeof(expect), "%s: larger than 4194304 bytes", path);
        assert_string_equal(err.message, expect);
        unlink(path);

        assert_int_equal(nst_config_load_file(big, path, &err), -ENOENT);
        assert_string_equal(err.cls, "ConfigError");
        assert_non_null(strstr(err.message, path));
}

static void test_set(void **state) {
        _cleanup_(nst_config_freep) struct nst_config *cfg =
                load("[DEFAULT]\nname = file\nspec = f1\nspec = f2\ncount = 5\n");
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_config_set(cfg, "DEFAULT", "name", "cli", &err), 0);
        assert_int_equal(nst_config_set(cfg, "DEFAULT", "spec", "c1", &err), 0);
        assert_int_equal(nst_config_set(cfg, "DEFAULT", "spec", "c2", &err), 0);
        assert_int_equal(nst_config_load_string(cfg, "later.conf", "[DEFAULT]\nname = later\n",
                                                &err),
                         0);
        assert_int_equal(nst_config_resolve(cfg, &err), 0);
        assert_string_equal(str(cfg, "name"), "cli");
        size_t n;
        const char *const *l = nst_config_get_list(cfg, "DEFAULT", "spec", &n);
        assert_int_equal(n, 2);
        assert_string_equal(l[0], "c1");
        assert_string_equal(l[1], "c2");
        assert_int_equal(nst_config_set(cfg, "DEFAULT", "count", "6", &err), -EBUSY);

        _cleanup_(nst_config_freep) struct nst_config *bad = load(NULL);
        assert_int_equal(nst_config_set(bad, "DEFAULT", "count", "x", &err), 0);
        assert_int_equal(nst_config_resolve(bad, &err), -EINVAL);
        assert_string_equal(err.message, "(command line): [DEFAULT] count: invalid value 'x': "
                                         "expected an integer between 1 and 3600");
}

static void test_register_twice(void **state) {
        _cleanup_(nst_config_freep) struct nst_config *cfg = load(NULL);
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_config_register(cfg, "default", default_opts, 1, &err), -EEXIST);
        static const struct nst_option dup[] = {
                {"a", NST_OPT_STRING, NULL, "a"},
                {"a", NST_OPT_INT, NULL, "a"},
        };
        assert_int_equal(nst_config_register(cfg, "x", dup, 2, &err), -EEXIST);
        /* Nothing of the failed call was kept. */
        assert_int_equal(nst_config_register(cfg, "x", dup, 1, &err), 0);
}

static void test_sample_round_trip(void **state) {
        static const struct nst_option more[] = {
                {"two_lines", NST_OPT_STRING, "a\nb", "help"},
        };
        _cleanup_(nst_config_freep) struct nst_config *cfg = load(NULL);
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_config_register(cfg, "extra", more, 1, &err), 0);
        assert_int_equal(nst_config_resolve(cfg, &err), 0);
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        assert_non_null(f);
        assert_int_equal(nst_config_write_sample(cfg, f), 0);
        fclose(f);
        _cleanup_free_ char *sample = buf;
        assert_non_null(strstr(sample, "[DEFAULT]\n\n# A string (string, default: dflt)\n"
                                       "#name = dflt\n\n"));
        assert_non_null(strstr(sample, "# An integer (integer in [1, 3600], default: 10)\n"
                                       "#count = 10\n\n"));
        assert_non_null(strstr(sample, "# An enum (one of red|green, default: red)\n"));
        assert_non_null(strstr(sample, "# No default (string, no default)\n#unset = \n\n"));
        assert_non_null(strstr(sample, "[extra]\n"));

        /* As written: comments and section headers only. */
        _cleanup_(nst_config_freep) struct nst_config *back = load(sample);
        assert_int_equal(nst_config_resolve(back, &err), 0);

        /* Uncommented, every default must parse back to itself. */
        _cleanup_free_ char *uncommented = calloc(1, strlen(sample) + 1);
        assert_non_null(uncommented);
        char *o = uncommented;
        for (const char *p = sample; *p;) {
                const char *nl = strchrnul(p, '\n');
                if (p[0] == '#' && p[1] != ' ' && p[1] != '\n' && strncmp(p, "#unset", 6) != 0)
                        p++;
                memcpy(o, p, (size_t)(nl - p) + (*nl ? 1 : 0));
                o += (size_t)(nl - p) + (*nl ? 1 : 0);
                p = *nl ? nl + 1 : nl;
        }
        _cleanup_(nst_config_freep) struct nst_config *u = load(uncommented);
        assert_int_equal(nst_config_register(u, "extra", more, 1, &err), 0);
        if (nst_config_resolve(u, &err) < 0)
                fail_msg("%s", err.message);
        assert_string_equal(str(u, "name"), "dflt");
        assert_int_equal(nst_config_get_int(u, "DEFAULT", "count"), 10);
        assert_true(nst_config_get_float(u, "DEFAULT", "ratio") == 0.5);
        assert_string_equal(str(u, "color"), "red");
        assert_string_equal(nst_config_get_string(u, "extra", "two_lines"), "a");
        size_t n;
        _cleanup_free_ char *out = capture_stderr(warn, u, &n);
        assert_int_equal(n, 0);
        assert_string_equal(out, "");
}

static void expect_abort(void (*fn)(const struct nst_config *), const struct nst_config *cfg,
                         const char *message) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                dup2(fds[1], STDERR_FILENO);
                fn(cfg);
                _exit(0);
        }
        close(fds[1]);
        char buf[512] = "";
        ssize_t got = 0, n;
        while ((n = read(fds[0], buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
                got += n;
        close(fds[0]);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
        assert_non_null(strstr(buf, message));
}

static void get_unregistered(const struct nst_config *cfg) {
        (void)nst_config_get_string(cfg, "DEFAULT", "nope");
}

static void get_wrong_type(const struct nst_config *cfg) {
        (void)nst_config_get_int(cfg, "DEFAULT", "name");
}

static void get_name(const struct nst_config *cfg) {
        (void)nst_config_get_string(cfg, "DEFAULT", "name");
}

static void test_getter_misuse_aborts(void **state) {
        _cleanup_(nst_config_freep) struct nst_config *cfg = load_resolved(NULL);
        expect_abort(get_unregistered, cfg, "BUG: config option [DEFAULT] nope: not registered");
        expect_abort(get_wrong_type, cfg,
                     "BUG: config option [DEFAULT] name: is a string option, read with the "
                     "integer getter");
        _cleanup_(nst_config_freep) struct nst_config *unresolved = load(NULL);
        expect_abort(get_wrong_type, unresolved, "[DEFAULT] name: is a string option");
        expect_abort(get_name, unresolved, "[DEFAULT] name: read before nst_config_resolve()");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_separators),
                cmocka_unit_test(test_quotes),
                cmocka_unit_test(test_continuation),
                cmocka_unit_test(test_comments),
                cmocka_unit_test(test_multi_and_last_wins),
                cmocka_unit_test(test_only_last_value_checked),
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_good_values),
                cmocka_unit_test(test_bad_values),
                cmocka_unit_test(test_bad_value_in_second_file),
                cmocka_unit_test(test_bad_default),
                cmocka_unit_test(test_long_value_shortened_in_message),
                cmocka_unit_test(test_unknown_options),
                cmocka_unit_test(test_section_names),
                cmocka_unit_test(test_syntax_errors),
                cmocka_unit_test(test_nul_byte),
                cmocka_unit_test(test_error_leaves_config_untouched),
                cmocka_unit_test(test_long_lines),
                cmocka_unit_test(test_files),
                cmocka_unit_test(test_set),
                cmocka_unit_test(test_register_twice),
                cmocka_unit_test(test_sample_round_trip),
                cmocka_unit_test(test_getter_misuse_aborts),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
