/* The message catalog (messages/catalog.c) and the nestor_event block the
 * notifier adds with it: rendering, locale names, every fallback, load
 * errors, and coverage of every event type the source tree emits. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/notifier.h"
#include "agent/outbox.h"
#include "messages/catalog.h"
#include "messages/envelope.h"
#include "messages/json_util.h"

/* ---- helpers ---- */

static const char *source_dir(void) {
        static char dir[4096];
        const char *env = getenv("NESTOR_SOURCE_DIR");
        if (env && *env)
                return env;
        /* CMake compiles with absolute paths: strip tests/unit/test_catalog.c. */
        const char *file = __FILE__, *tail = "tests/unit/test_catalog.c";
        size_t n = strlen(file), t = strlen(tail);
        assert_true(n >= t && strcmp(file + n - t, tail) == 0);
        if (n == t)
                return ".";
        snprintf(dir, sizeof(dir), "%.*s", (int)(n - t - 1), file);
        return dir;
}

static const char *shipped_dir(void) {
        static char dir[4200];
        snprintf(dir, sizeof(dir), "%s/share/locale", source_dir());
        return dir;
}

static json_object *parse(const char *text) {
        json_object *o = NULL;
        struct nst_error err = NST_ERROR_INIT;
        if (nst_json_parse(text, strlen(text), &o, &err) < 0)
                fail_msg("bad test JSON: %s", err.message);
        return o;
}

static struct nst_catalog *load_ok(const char *locale, const char *dir) {
        struct nst_catalog *c = NULL;
        struct nst_error err = NST_ERROR_INIT;
        if (nst_catalog_load(locale, dir, &c, &err) < 0)
                fail_msg("loading locale %s from %s: %s", locale, dir, err.message);
        return c;
}

/* Renders and checks message and locale. */
static void expect(const struct nst_catalog *c, const char *key, const char *data_json,
                   const char *host, const char *message, const char *locale) {
        _cleanup_json_ json_object *data = data_json ? parse(data_json) : NULL;
        _cleanup_free_ char *got = NULL;
        const char *got_locale = NULL;
        assert_int_equal(nst_catalog_render(c, key, data, host, &got, &got_locale), 0);
        assert_string_equal(got, message);
        assert_string_equal(got_locale, locale);
}

struct tmpdir {
        char path[64];
};

static void tmpdir_make(struct tmpdir *t) {
        snprintf(t->path, sizeof(t->path), "/tmp/nst-catalog-XXXXXX");
        assert_non_null(mkdtemp(t->path));
}

static void tmpdir_write(const struct tmpdir *t, const char *name, const char *text) {
        char path[128];
        snprintf(path, sizeof(path), "%s/%s", t->path, name);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void tmpdir_remove(struct tmpdir *t) {
        nftw(t->path, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Loading must fail with ConfigError and a message naming every needle
 * (a NULL-terminated list). */
static void expect_load_error(const char *locale, const char *dir, ...) {
        struct nst_catalog *c = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_catalog_load(locale, dir, &c, &err), -EINVAL);
        assert_null(c);
        assert_string_equal(err.cls, "ConfigError");
        va_list ap;
        va_start(ap, dir);
        for (const char *needle; (needle = va_arg(ap, const char *));)
                if (!strstr(err.message, needle))
                        fail_msg("'%s' not in error '%s'", needle, err.message);
        va_end(ap);
}

static bool english_has(const char *key) {
        size_t n;
        const struct nst_catalog_entry *e = nst_catalog_english(&n);
        for (size_t i = 0; i < n; i++)
                if (strcmp(e[i].key, key) == 0)
                        return true;
        return false;
}

#define FAULT(msg)                                                                         \
        "\"fault\": {\"nova_object.name\": \"ExceptionPayload\", \"nova_object.namespace\": " \
        "\"nova\", \"nova_object.version\": \"1.1\", \"nova_object.data\": "               \
        "{\"exception\": \"NoValidHost\", \"exception_message\": \"" msg "\"}}"

/* ---- English ---- */

static void test_english_render(void **state) {
        _cleanup_(nst_catalog_freep) struct nst_catalog *c = load_ok("en", NULL);
        assert_string_equal(nst_catalog_locale(c), "en");
        assert_null(nst_catalog_warning(c));

        expect(c, "instance.create.end", "{\"display_name\": \"vm-1\", \"host\": \"node-1\"}",
               "node-9", "Instance vm-1 was created on node-1", "en");
        /* A nested versioned object on the path. */
        expect(c, "instance.create.error",
               "{\"display_name\": \"vm-1\", \"host\": \"node-1\", " FAULT("No valid host") "}",
               NULL, "Instance vm-1 could not be created on node-1: No valid host", "en");
        /* The whole versioned payload is accepted as well as its data. */
        expect(c, "instance.power_off.end",
               "{\"nova_object.name\": \"InstanceActionPayload\", \"nova_object.data\": "
               "{\"display_name\": \"db ü\", \"host\": \"node-1\"}}",
               NULL, "Instance db ü on node-1 is powered off", "en");
        /* Numbers render as integers. */
        expect(c, "replication.rpo_violation",
               "{\"display_name\": \"vm-1\", \"target_host\": \"dr-1\", \"rpo_seconds\": 300}",
               NULL, "Replication of instance vm-1 to dr-1 is behind its RPO of 300 s", "en");
        expect(c, "instance.snapshot.end",
               "{\"display_name\": \"vm-1\", \"host\": \"node-1\", "
               "\"snapshot_image_id\": \"5f1c\"}",
               NULL, "Snapshot 5f1c of instance vm-1 was taken on node-1", "en");
        size_t n_en;
        nst_catalog_english(&n_en);
        assert_int_equal(nst_catalog_count(c), n_en);
}

/* Value types and escaped braces, through a catalog of our own. */
static void test_value_rendering(void **state) {
        struct tmpdir t;
        tmpdir_make(&t);
        tmpdir_write(&t, "xx.json",
                     "{\"instance.create.end\": \"{b}/{f}/{i}/{d}/{big}/{s}/{n.m.k} {{x}} }}\"}");
        _cleanup_(nst_catalog_freep) struct nst_catalog *c = load_ok("xx", t.path);
        assert_string_equal(nst_catalog_locale(c), "xx");
        assert_int_equal(nst_catalog_count(c), 1);
        expect(c, "instance.create.end",
               "{\"b\": true, \"f\": false, \"i\": -42, \"d\": 1.5, "
               "\"big\": 18446744073709551615, \"s\": \"ü\", "
               "\"n\": {\"m\": {\"nova_object.data\": {\"k\": 7}}}}",
               NULL, "true/false/-42/1.5/18446744073709551615/ü/7 {x} }", "xx");
        tmpdir_remove(&t);
}

/* ---- French and locale names ---- */

static void test_french(void **state) {
        _cleanup_(nst_catalog_freep) struct nst_catalog *c = load_ok("fr", shipped_dir());
        size_t n_en;
        nst_catalog_english(&n_en);
        assert_string_equal(nst_catalog_locale(c), "fr");
        assert_null(nst_catalog_warning(c));
        assert_int_equal(nst_catalog_count(c), n_en - 1);
        expect(c, "instance.create.end", "{\"display_name\": \"vm-1\", \"host\": \"node-1\"}",
               NULL, "L'instance vm-1 a été créée sur node-1", "fr");
        expect(c, "instance.delete.error",
               "{\"display_name\": \"vm-1\", \"host\": \"node-1\", " FAULT("disque plein") "}",
               NULL, "L'instance vm-1 n'a pas pu être supprimée sur node-1 : disque plein", "fr");
}

static void test_locale_names(void **state) {
        static const char *const french[] = {"fr_FR.UTF-8", "fr_FR", "fr_CA@euro", "fr-BE",
                                             "fr.utf8"};
        for (size_t i = 0; i < NST_ARRAY_SIZE(french); i++) {
                _cleanup_(nst_catalog_freep) struct nst_catalog *c = load_ok(french[i],
                                                                             shipped_dir());
                assert_string_equal(nst_catalog_locale(c), "fr");
                assert_null(nst_catalog_warning(c));
                expect(c, "instance.reboot.end", "{\"display_name\": \"a\", \"host\": \"b\"}",
                       NULL, "L'instance a sur b a été redémarrée", "fr");
        }
        /* English, without reading any file (the directory does not exist). */
        static const char *const english[] = {"en", "en_US.UTF-8", "C", "C.UTF-8", "POSIX", ""};
        for (size_t i = 0; i < NST_ARRAY_SIZE(english); i++) {
                _cleanup_(nst_catalog_freep) struct nst_catalog *c = load_ok(english[i],
                                                                             "/nonexistent");
                assert_string_equal(nst_catalog_locale(c), "en");
                assert_null(nst_catalog_warning(c));
        }
        _cleanup_(nst_catalog_freep) struct nst_catalog *none = load_ok(NULL, NULL);
        assert_string_equal(nst_catalog_locale(none), "en");

        /* The territory file wins over the language file. */
        struct tmpdir t;
        tmpdir_make(&t);
        tmpdir_write(&t, "fr.json", "{\"inventory.report\": \"fr {host}\"}");
        tmpdir_write(&t, "fr_CA.json", "{\"inventory.report\": \"fr_CA {host}\"}");
        _cleanup_(nst_catalog_freep) struct nst_catalog *ca = load_ok("fr_CA.UTF-8", t.path);
        assert_string_equal(nst_catalog_locale(ca), "fr_CA");
        expect(ca, "inventory.report", "{\"host\": \"h\"}", NULL, "fr_CA h", "fr_CA");
        _cleanup_(nst_catalog_freep) struct nst_catalog *fr = load_ok("fr_FR", t.path);
        expect(fr, "inventory.report", "{\"host\": \"h\"}", NULL, "fr h", "fr");
        tmpdir_remove(&t);

        /* Names that could leave the directory, or are no locale at all. */
        expect_load_error("../etc/passwd", shipped_dir(), "../etc/passwd", "not a locale name",
                          NULL);
        expect_load_error("fr/../../x", shipped_dir(), "fr/../../x", NULL);
        expect_load_error(".UTF-8", shipped_dir(), "not a locale name", NULL);
        expect_load_error("fr FR", shipped_dir(), "not a locale name", NULL);
}

/* ---- fallbacks ---- */

static void test_french_missing_key_falls_back(void **state) {
        /* Which key fr.json leaves out on purpose (share/locale/README.md). */
        char path[4300];
        snprintf(path, sizeof(path), "%s/fr.json", shipped_dir());
        _cleanup_json_ json_object *fr = json_object_from_file(path);
        assert_non_null(fr);
        size_t n;
        const struct nst_catalog_entry *e = nst_catalog_english(&n);
        const char *missing = NULL;
        size_t n_missing = 0;
        for (size_t i = 0; i < n; i++)
                if (!json_object_object_get_ex(fr, e[i].key, NULL)) {
                        missing = e[i].key;
                        n_missing++;
                }
        assert_int_equal(n_missing, 1);
        assert_string_equal(missing, "instance.snapshot_revert.end");

        _cleanup_(nst_catalog_freep) struct nst_catalog *c = load_ok("fr", shipped_dir());
        expect(c, missing, "{\"display_name\": \"vm-1\", \"host\": \"node-1\"}", NULL,
               "Instance vm-1 was reverted to a snapshot on node-1", "en");
}

static void test_missing_value_falls_back(void **state) {
        struct tmpdir t;
        tmpdir_make(&t);
        tmpdir_write(&t, "fr.json",
                     "{\"instance.create.end\": \"L'instance {display_name} est sur {hote}\"}");
        _cleanup_(nst_catalog_freep) struct nst_catalog *c = load_ok("fr", t.path);
        /* French names a value the payload lacks: English. */
        expect(c, "instance.create.end", "{\"display_name\": \"vm-1\", \"host\": \"node-1\"}",
               NULL, "Instance vm-1 was created on node-1", "en");
        /* Both fill: French. */
        expect(c, "instance.create.end",
               "{\"display_name\": \"vm-1\", \"host\": \"node-1\", \"hote\": \"n1\"}", NULL,
               "L'instance vm-1 est sur n1", "fr");
        tmpdir_remove(&t);

        /* Shipped French: null, empty, object and missing values all fall back. */
        _cleanup_(nst_catalog_freep) struct nst_catalog *fr = load_ok("fr", shipped_dir());
        expect(fr, "instance.power_on.end", "{\"display_name\": null, \"host\": \"node-1\"}",
               "node-9", "Event instance.power_on.end on host node-9", "en");
        expect(fr, "instance.power_on.end", "{\"display_name\": \"\", \"host\": \"node-1\"}",
               NULL, "Event instance.power_on.end on host node-1", "en");
        expect(fr, "instance.power_on.end", "{\"display_name\": {}, \"host\": \"node-1\"}",
               NULL, "Event instance.power_on.end on host node-1", "en");
        /* fault is null (not an error payload): the sentence cannot be built. */
        expect(fr, "instance.create.error",
               "{\"display_name\": \"vm\", \"host\": \"node-1\", \"fault\": null}", "node-1",
               "Event instance.create.error on host node-1", "en");
        expect(fr, "instance.create.error", NULL, NULL, "Event instance.create.error", "en");
}

static void test_unknown_key(void **state) {
        _cleanup_(nst_catalog_freep) struct nst_catalog *c = load_ok("fr", shipped_dir());
        expect(c, "instance.frobnicate.end", "{\"host\": \"node-2\"}", "node-1",
               "Event instance.frobnicate.end on host node-1", "en");
        expect(c, "instance.frobnicate.end", "{\"host\": \"node-2\"}", NULL,
               "Event instance.frobnicate.end on host node-2", "en");
        expect(c, "instance.frobnicate.end", "[1]", NULL, "Event instance.frobnicate.end",
               "en");
        expect(c, "", NULL, "node-1", "An event on host node-1", "en");
        expect(c, NULL, NULL, NULL, "An event", "en");
}

/* ---- load errors ---- */

static void test_malformed_file(void **state) {
        struct tmpdir t;
        char path[128];
        tmpdir_make(&t);
        snprintf(path, sizeof(path), "%s/fr.json", t.path);

        const char *bad = "{\"instance.create.end\": \"x\",}";
        tmpdir_write(&t, "fr.json", bad);
        /* json-c's own reason, as nst_json_parse words it. */
        json_object *o = NULL;
        struct nst_error jerr = NST_ERROR_INIT;
        assert_true(nst_json_parse(bad, strlen(bad), &o, &jerr) < 0);
        expect_load_error("fr_FR.UTF-8", t.path, path, jerr.message, NULL);

        tmpdir_write(&t, "fr.json", "[\"instance.create.end\"]");
        expect_load_error("fr", t.path, path, "JSON object", NULL);
        tmpdir_write(&t, "fr.json", "{\"instance.create.end\": 3}");
        expect_load_error("fr", t.path, path, "'instance.create.end'", "must be a string", NULL);
        tmpdir_write(&t, "fr.json", "{\"instance.create.end\": \"\"}");
        expect_load_error("fr", t.path, "'instance.create.end'", "empty template", NULL);
        tmpdir_write(&t, "fr.json", "{\"instance.create.end\": \"caf\xe9\"}");
        expect_load_error("fr", t.path, path, "UTF-8", NULL);
        tmpdir_remove(&t);
}

static void test_unbalanced_braces(void **state) {
        struct tmpdir t;
        char path[128];
        tmpdir_make(&t);
        snprintf(path, sizeof(path), "%s/fr.json", t.path);
        tmpdir_write(&t, "fr.json",
                     "{\"instance.create.end\": \"ok {host}\", "
                     "\"instance.delete.end\": \"L'instance {display_name a été supprimée\"}");
        expect_load_error("fr", t.path, path, "'instance.delete.end'", "unbalanced braces",
                          "never closed", NULL);

        static const char *const bad[] = {
                "{",       "}",        "a } b",  "{a",    "{a{b}}", "{}",  "{.a}",
                "{a.}",    "{a..b}",   "{a b}",  "{a-b}", "",       "a{{b}",
        };
        for (size_t i = 0; i < NST_ARRAY_SIZE(bad); i++) {
                struct nst_error err = NST_ERROR_INIT;
                if (nst_catalog_check_template("k.e.y", bad[i], &err) != -EINVAL)
                        fail_msg("template '%s' accepted", bad[i]);
                assert_string_equal(err.cls, "ConfigError");
                assert_non_null(strstr(err.message, "'k.e.y'"));
        }
        static const char *const good[] = {"plain", "{a}", "{{a}}", "x {a.b.c_1} y {Z9}",
                                           "}}{{"};
        for (size_t i = 0; i < NST_ARRAY_SIZE(good); i++) {
                struct nst_error err = NST_ERROR_INIT;
                if (nst_catalog_check_template("k", good[i], &err) != 0)
                        fail_msg("template '%s' refused: %s", good[i], err.message);
        }
        /* At most NST_CATALOG_MAX_FIELDS placeholders. */
        char many[256] = "";
        for (int i = 0; i <= NST_CATALOG_MAX_FIELDS; i++)
                strcat(many, "{a}");
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_catalog_check_template("k", many, &err), -EINVAL);
        assert_non_null(strstr(err.message, "too many"));
        many[strlen(many) - 3] = '\0';
        assert_int_equal(nst_catalog_check_template("k", many, &err), 0);
        tmpdir_remove(&t);
}

static void test_missing_locale_file(void **state) {
        _cleanup_(nst_catalog_freep) struct nst_catalog *c = load_ok("de_DE.UTF-8", shipped_dir());
        assert_string_equal(nst_catalog_locale(c), "en");
        assert_non_null(nst_catalog_warning(c));
        assert_non_null(strstr(nst_catalog_warning(c), "de_DE"));
        assert_non_null(strstr(nst_catalog_warning(c), "de.json"));
        expect(c, "instance.create.end", "{\"display_name\": \"vm-1\", \"host\": \"node-1\"}",
               NULL, "Instance vm-1 was created on node-1", "en");

        _cleanup_(nst_catalog_freep) struct nst_catalog *nodir = load_ok("fr", NULL);
        assert_string_equal(nst_catalog_locale(nodir), "en");
        assert_non_null(nst_catalog_warning(nodir));
}

/* ---- coverage of the tree ---- */

static void test_english_complete_and_well_formed(void **state) {
        size_t n;
        const struct nst_catalog_entry *e = nst_catalog_english(&n);
        for (size_t i = 0; i < n; i++) {
                struct nst_error err = NST_ERROR_INIT;
                if (nst_catalog_check_template(e[i].key, e[i].text, &err) < 0)
                        fail_msg("%s", err.message);
                for (size_t j = 0; j < i; j++)
                        if (strcmp(e[i].key, e[j].key) == 0)
                                fail_msg("English key %s twice", e[i].key);
        }
        /* Emitted today, or by the snapshot, inventory and replication issues. */
        static const char *const families[] = {"create", "delete", "power_on", "power_off",
                                               "reboot", "suspend", "resume", "snapshot"};
        static const char *const phases[] = {"start", "end", "error"};
        for (size_t f = 0; f < NST_ARRAY_SIZE(families); f++)
                for (size_t p = 0; p < NST_ARRAY_SIZE(phases); p++) {
                        char key[64];
                        snprintf(key, sizeof(key), "instance.%s.%s", families[f], phases[p]);
                        if (!english_has(key))
                                fail_msg("no English message for %s", key);
                }
        static const char *const others[] = {
                "instance.snapshot_delete.end", "instance.snapshot_revert.end",
                "replication.enable.end",       "replication.sync.start",
                "replication.sync.end",         "replication.sync.error",
                "replication.rpo_violation",    "replication.rpo_restored",
                "replication.failover.start",   "replication.failover.end",
                "replication.failover.error",   "replication.failover_refused",
                "service.update",               "pci.device.claimed",
                "pci.device.released",          "inventory.report",
        };
        for (size_t i = 0; i < NST_ARRAY_SIZE(others); i++)
                if (!english_has(others[i]))
                        fail_msg("no English message for %s", others[i]);

        /* Every French key is an English key (a typo would never be used). */
        char path[4300];
        snprintf(path, sizeof(path), "%s/fr.json", shipped_dir());
        _cleanup_json_ json_object *fr = json_object_from_file(path);
        assert_non_null(fr);
        json_object_object_foreach(fr, key, value) {
                (void)value;
                if (!english_has(key))
                        fail_msg("fr.json key %s is not an English key", key);
        }
}

/* Event types are string literals like "instance.create.end", or formats
 * like "instance.snapshot.%s" (a phase: start, end, error). */
static const char *const event_prefixes[] = {"instance.", "replication.", "service.", "pci.",
                                             "inventory."};

struct scan {
        size_t literals;      /* event type literals seen */
        bool saw_create_end;  /* proves the scan reached the libvirt plugin */
        char missing[4096];
};
static struct scan scan;

static bool event_type_shape(const char *s, size_t len, bool *ret_format) {
        size_t p = 0;
        for (; p < NST_ARRAY_SIZE(event_prefixes); p++)
                if (strncmp(s, event_prefixes[p], strlen(event_prefixes[p])) == 0)
                        break;
        if (p == NST_ARRAY_SIZE(event_prefixes))
                return false;
        *ret_format = len > 3 && strcmp(s + len - 3, ".%s") == 0;
        size_t end = *ret_format ? len - 3 : len;
        if (end <= strlen(event_prefixes[p]))
                return false; /* "instance.", "instance.%s": no event type yet */
        for (size_t i = 0; i < end; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.'))
                        return false;
                if (c == '.' && (i + 1 == end || s[i + 1] == '.'))
                        return false;
        }
        return true;
}

static void check_literal(const char *file, const char *s, size_t len) {
        bool format;
        if (!event_type_shape(s, len, &format))
                return;
        scan.literals++;
        char key[160];
        static const char *const phases[] = {"start", "end", "error"};
        for (size_t i = 0; i < (format ? NST_ARRAY_SIZE(phases) : 1); i++) {
                if (format)
                        snprintf(key, sizeof(key), "%.*s.%s", (int)(len - 3), s, phases[i]);
                else
                        snprintf(key, sizeof(key), "%.*s", (int)len, s);
                if (strcmp(key, "instance.create.end") == 0)
                        scan.saw_create_end = true;
                if (!english_has(key)) {
                        size_t used = strlen(scan.missing);
                        snprintf(scan.missing + used, sizeof(scan.missing) - used, " %s (%s)",
                                 key, file);
                }
        }
}

/* A small C lexer: string literals outside comments and char literals. */
static void scan_source(const char *path, const char *text) {
        char lit[160];
        size_t i = 0;
        while (text[i]) {
                if (text[i] == '/' && text[i + 1] == '/') {
                        while (text[i] && text[i] != '\n')
                                i++;
                } else if (text[i] == '/' && text[i + 1] == '*') {
                        const char *end = strstr(text + i + 2, "*/");
                        i = end ? (size_t)(end - text) + 2 : strlen(text);
                } else if (text[i] == '\'') {
                        for (i++; text[i] && text[i] != '\''; i++)
                                if (text[i] == '\\' && text[i + 1])
                                        i++;
                        if (text[i])
                                i++;
                } else if (text[i] == '"') {
                        size_t n = 0;
                        bool fits = true;
                        for (i++; text[i] && text[i] != '"' && text[i] != '\n'; i++) {
                                if (text[i] == '\\' && text[i + 1]) {
                                        fits = false; /* escapes: not an event type */
                                        i++;
                                }
                                if (n + 1 < sizeof(lit))
                                        lit[n++] = text[i];
                                else
                                        fits = false;
                        }
                        lit[n] = '\0';
                        if (text[i])
                                i++;
                        if (fits)
                                check_literal(path, lit, n);
                } else {
                        i++;
                }
        }
}

static int scan_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        size_t n = strlen(path);
        if (flag != FTW_F || n < 3 || (strcmp(path + n - 2, ".c") && strcmp(path + n - 2, ".h")))
                return 0;
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        char *text = calloc(1, (size_t)st->st_size + 1);
        assert_non_null(text);
        assert_int_equal(fread(text, 1, (size_t)st->st_size, f), (size_t)st->st_size);
        fclose(f);
        scan_source(path, text);
        free(text);
        return 0;
}

static void test_tree_event_types_have_english(void **state) {
        /* Where notifications are emitted (tests/unit holds made-up keys). */
        static const char *const dirs[] = {"agent", "plugins", "messages", "tools",
                                           "tests/fixtures"};
        memset(&scan, 0, sizeof(scan));
        for (size_t i = 0; i < NST_ARRAY_SIZE(dirs); i++) {
                char dir[4200];
                snprintf(dir, sizeof(dir), "%s/%s", source_dir(), dirs[i]);
                struct stat st;
                if (stat(dir, &st) < 0)
                        continue;
                assert_int_equal(nftw(dir, scan_entry, 16, FTW_PHYS), 0);
        }
        if (scan.missing[0])
                fail_msg("event types without an English message:%s", scan.missing);
        assert_true(scan.saw_create_end);
        assert_true(scan.literals >= 5);

        /* The lexer itself: literals only, formats expanded. */
        memset(&scan, 0, sizeof(scan));
        scan_source("t.c", "/* \"instance.x.end\" */ // \"instance.y.end\"\n"
                           "char c = '\"'; f(\"instance.create.end\", \"instance.%s\");\n"
                           "g(\"instance.snapshot.%s\", \"instance.nope.end\");");
        assert_int_equal(scan.literals, 3);
        assert_true(scan.saw_create_end);
        assert_string_equal(scan.missing, " instance.nope.end (t.c)");
}

/* ---- the notifier's nestor_event block ---- */

struct notifier_env {
        struct nst_outbox *outbox;
        struct nst_notifier *notifier;
};

static void notifier_start(struct notifier_env *e) {
        static const char *const topics[] = {"versioned_notifications", NULL};
        const struct nst_notifier_config nc = {
                .exchange = "nestor",
                .topics = topics,
                .publisher_id = "nestor-compute:node-1",
                .enabled = true,
        };
        assert_int_equal(nst_outbox_new(&e->outbox), 0);
        assert_int_equal(nst_notifier_new(&nc, e->outbox, &e->notifier), 0);
}

static void notifier_stop(struct notifier_env *e) {
        nst_notifier_free(e->notifier);
        nst_outbox_free(e->outbox);
}

/* Publishes payload_json and returns the payload that went out (owned). */
static json_object *publish(struct notifier_env *e, const char *event_type,
                            const char *payload_json) {
        struct nst_error err = NST_ERROR_INIT;
        if (nst_notifier_publish(e->notifier, event_type, NST_PRIO_INFO, parse(payload_json),
                                 NULL, &err) < 0)
                fail_msg("publish: %s", err.message);
        struct nst_outbox_item *it = nst_outbox_take_all(e->outbox);
        assert_non_null(it);
        assert_null(it->next);
        json_object *inner = NULL, *payload;
        if (nst_envelope_decode(it->body, it->body_len, 1 << 20, &inner, &err) < 0)
                fail_msg("decode: %s", err.message);
        nst_outbox_item_free(it);
        assert_true(json_object_object_get_ex(inner, "payload", &payload));
        json_object_get(payload);
        json_object_put(inner);
        return payload;
}

static void expect_block(json_object *payload, const char *key, const char *message,
                         const char *locale) {
        json_object *block, *v;
        assert_true(json_object_object_get_ex(payload, "nestor_event", &block));
        assert_int_equal(json_object_object_length(block), 3);
        assert_true(json_object_object_get_ex(block, "key", &v));
        assert_string_equal(json_object_get_string(v), key);
        assert_true(json_object_object_get_ex(block, "message", &v));
        assert_string_equal(json_object_get_string(v), message);
        assert_true(json_object_object_get_ex(block, "locale", &v));
        assert_string_equal(json_object_get_string(v), locale);
}

#define VERSIONED(data)                                                                    \
        "{\"nova_object.name\": \"InstanceActionPayload\", \"nova_object.namespace\": "    \
        "\"nova\", \"nova_object.version\": \"1.8\", \"nova_object.data\": " data "}"

static void test_notifier_block(void **state) {
        struct notifier_env e;
        struct nst_error err = NST_ERROR_INIT;
        notifier_start(&e);

        /* English until a locale is set. */
        _cleanup_json_ json_object *p1 = publish(
                &e, "instance.create.end",
                VERSIONED("{\"display_name\": \"vm-1\", \"host\": \"node-1\"}"));
        expect_block(p1, "instance.create.end", "Instance vm-1 was created on node-1", "en");
        json_object *data;
        assert_true(json_object_object_get_ex(p1, "nova_object.data", &data));
        assert_false(json_object_object_get_ex(data, "nestor_event", NULL));
        assert_int_equal(json_object_object_length(data), 2);

        assert_int_equal(nst_notifier_set_locale(e.notifier, "fr_FR.UTF-8", shipped_dir(), &err),
                         0);
        _cleanup_json_ json_object *p2 = publish(
                &e, "instance.create.end",
                VERSIONED("{\"display_name\": \"vm-1\", \"host\": \"node-1\"}"));
        expect_block(p2, "instance.create.end", "L'instance vm-1 a été créée sur node-1", "fr");
        /* The deliberately untranslated key, and a payload that is no versioned object. */
        _cleanup_json_ json_object *p3 = publish(
                &e, "instance.snapshot_revert.end",
                "{\"display_name\": \"vm-1\", \"host\": \"node-1\"}");
        expect_block(p3, "instance.snapshot_revert.end",
                     "Instance vm-1 was reverted to a snapshot on node-1", "en");
        /* Unknown event: the generic sentence names the publisher's host. */
        _cleanup_json_ json_object *p4 = publish(&e, "testing.event", VERSIONED("{}"));
        expect_block(p4, "testing.event", "Event testing.event on host node-1", "en");

        /* A malformed catalog fails and keeps the catalog in use. */
        struct tmpdir t;
        tmpdir_make(&t);
        tmpdir_write(&t, "de.json", "{\"instance.create.end\": \"{\"}");
        assert_int_equal(nst_notifier_set_locale(e.notifier, "de", t.path, &err), -EINVAL);
        assert_string_equal(err.cls, "ConfigError");
        _cleanup_json_ json_object *p5 = publish(
                &e, "instance.create.end",
                VERSIONED("{\"display_name\": \"vm-1\", \"host\": \"node-1\"}"));
        expect_block(p5, "instance.create.end", "L'instance vm-1 a été créée sur node-1", "fr");
        tmpdir_remove(&t);
        notifier_stop(&e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_english_render),
                cmocka_unit_test(test_value_rendering),
                cmocka_unit_test(test_french),
                cmocka_unit_test(test_locale_names),
                cmocka_unit_test(test_french_missing_key_falls_back),
                cmocka_unit_test(test_missing_value_falls_back),
                cmocka_unit_test(test_unknown_key),
                cmocka_unit_test(test_malformed_file),
                cmocka_unit_test(test_unbalanced_braces),
                cmocka_unit_test(test_missing_locale_file),
                cmocka_unit_test(test_english_complete_and_well_formed),
                cmocka_unit_test(test_tree_event_types_have_english),
                cmocka_unit_test(test_notifier_block),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
