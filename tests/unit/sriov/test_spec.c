/* [pci] device_spec and [pci] alias: every address form, the PF-address and
 * devname rules, tags, first-match-wins, every ConfigError (class and
 * message), alias OR-ing, and apply()'s cost on a 1032-function inventory.
 *
 * Inventories are built in memory. The small one:
 *
 *   0000:00:02.0  PCI  8086:1234
 *   0000:03:00.0  PF   8086:1572  enp3s0f0   VFs 03:02.0, 03:02.1
 *   0000:03:00.1  PF   8086:1572  enp3s0f1   VFs 03:10.0, 03:10.1
 *   0000:03:02.x  VF   8086:154c  enp3s0f0v0, enp3s0f0v1
 *   0000:03:10.x  VF   8086:154c  enp3s0f1v0, enp3s0f1v1
 *   0000:0a:00.0  PCI  10de:1db4  (a GPU, no netdev)
 *   0001:12:00.0  PCI  10ed:0012  eth9 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#include "plugins/sriov/pci_model.h"
#include "plugins/sriov/pci_spec.h"

/* ---- inventories ---- */

struct fn_def {
        const char *addr;
        uint16_t vendor, device;
        enum nst_pci_type type;
        const char *netdev;
        const char *parent; /* VFs: the PF's address */
};

static int fn_cmp(const void *a, const void *b) {
        uint32_t ka = nst_pci_addr_key(((const struct nst_pci_function *)a)->addr);
        uint32_t kb = nst_pci_addr_key(((const struct nst_pci_function *)b)->addr);
        return ka < kb ? -1 : ka > kb;
}

/* Fills fns, sorts them, indexes them, then links VFs to PFs. */
static struct nst_pci_inventory *build_inventory(const struct fn_def *defs, size_t n) {
        struct nst_pci_inventory *inv = calloc(1, sizeof(*inv));
        assert_non_null(inv);
        inv->fns = calloc(n, sizeof(*inv->fns));
        assert_non_null(inv->fns);
        inv->n = n;
        for (size_t i = 0; i < n; i++) {
                struct nst_pci_function *fn = &inv->fns[i];
                assert_int_equal(nst_pci_addr_parse(defs[i].addr, &fn->addr), 0);
                nst_pci_addr_format(fn->addr, fn->address);
                fn->vendor = defs[i].vendor;
                fn->device = defs[i].device;
                fn->type = defs[i].type;
                fn->numa_node = -1;
                fn->iommu_group = -1;
                fn->sysfs_total_vfs = fn->sysfs_num_vfs = -1;
                fn->parent = NST_PCI_NONE;
                fn->vf_number = -1;
                snprintf(fn->netdev, sizeof(fn->netdev), "%s",
                         defs[i].netdev ? defs[i].netdev : "");
                /* Stash the parent's key until the index exists. */
                if (defs[i].parent) {
                        struct nst_pci_addr pa;
                        assert_int_equal(nst_pci_addr_parse(defs[i].parent, &pa), 0);
                        fn->vf_number = (int)nst_pci_addr_key(pa);
                }
        }
        qsort(inv->fns, n, sizeof(*inv->fns), fn_cmp);
        assert_int_equal(nst_pci_inventory_index(inv), 0);
        for (size_t i = 0; i < n; i++) {
                struct nst_pci_function *fn = &inv->fns[i];
                if (fn->type != NST_PCI_TYPE_VF)
                        continue;
                uint32_t key = (uint32_t)fn->vf_number;
                struct nst_pci_addr pa = {.domain = key >> 16, .bus = (key >> 8) & 0xff,
                                          .slot = (key >> 3) & 0x1f, .function = key & 7};
                size_t p = nst_pci_inventory_find(inv, pa);
                assert_int_not_equal(p, NST_PCI_NONE);
                struct nst_pci_function *pf = &inv->fns[p];
                pf->vfs = realloc(pf->vfs, (pf->n_vfs + 1) * sizeof(*pf->vfs));
                assert_non_null(pf->vfs);
                fn->vf_number = (int)pf->n_vfs;
                pf->vfs[pf->n_vfs++] = i;
                fn->parent = p;
        }
        return inv;
}

static const struct fn_def small_defs[] = {
        {"0000:03:02.1", 0x8086, 0x154c, NST_PCI_TYPE_VF, "enp3s0f0v1", "0000:03:00.0"},
        {"0000:03:00.0", 0x8086, 0x1572, NST_PCI_TYPE_PF, "enp3s0f0", NULL},
        {"0000:00:02.0", 0x8086, 0x1234, NST_PCI_TYPE_PCI, NULL, NULL},
        {"0000:03:00.1", 0x8086, 0x1572, NST_PCI_TYPE_PF, "enp3s0f1", NULL},
        {"0000:03:02.0", 0x8086, 0x154c, NST_PCI_TYPE_VF, "enp3s0f0v0", "0000:03:00.0"},
        {"0000:03:10.0", 0x8086, 0x154c, NST_PCI_TYPE_VF, "enp3s0f1v0", "0000:03:00.1"},
        {"0000:03:10.1", 0x8086, 0x154c, NST_PCI_TYPE_VF, "enp3s0f1v1", "0000:03:00.1"},
        {"0000:0a:00.0", 0x10de, 0x1db4, NST_PCI_TYPE_PCI, NULL, NULL},
        {"0001:12:00.0", 0x10ed, 0x0012, NST_PCI_TYPE_PCI, "eth9", NULL},
};

static int setup_small(void **state) {
        *state = build_inventory(small_defs, NST_ARRAY_SIZE(small_defs));
        return 0;
}

static int teardown_inventory(void **state) {
        nst_pci_inventory_free(*state);
        return 0;
}

/* ---- parsing helpers ---- */

#define ORIGIN "/etc/nestor/nestor.conf:7"

static struct nst_pci_spec_set *specs_n(const char *const *values, size_t n) {
        const char *origins[8];
        assert_true(n <= NST_ARRAY_SIZE(origins));
        for (size_t i = 0; i < n; i++)
                origins[i] = ORIGIN;
        struct nst_pci_spec_set *s = NULL;
        struct nst_error err = NST_ERROR_INIT;
        if (nst_pci_spec_set_parse(values, origins, n, &s, &err) < 0)
                fail_msg("device_spec rejected: %s: %s", err.cls, err.message);
        assert_non_null(s);
        return s;
}

static struct nst_pci_spec_set *spec1(const char *value) {
        return specs_n(&value, 1);
}

/* The value must be refused with ConfigError and exactly this message. */
static void spec_fails(const char *value, const char *message) {
        const char *origins[] = {ORIGIN};
        struct nst_pci_spec_set *s = NULL;
        struct nst_error err = NST_ERROR_INIT;
        int r = nst_pci_spec_set_parse(&value, origins, 1, &s, &err);
        if (r >= 0) {
                nst_pci_spec_set_free(s);
                fail_msg("device_spec accepted, expected '%s'\n  value: %s", message, value);
        }
        assert_int_equal(r, -EINVAL);
        assert_null(s);
        assert_string_equal(err.cls, "ConfigError");
        assert_string_equal(err.message, message);
}

/* The addresses of every function some entry claimed, in inventory order:
 * one string says what matched and what did not. Also checks that the
 * per-entry counts add up. */
static const char *claimed(const struct nst_pci_spec_set *s,
                           const struct nst_pci_inventory *inv) {
        static char out[1024];
        const struct nst_pci_tags *tags[64];
        size_t matches[16];
        assert_true(inv->n <= NST_ARRAY_SIZE(tags));
        assert_true(nst_pci_spec_set_count(s) <= NST_ARRAY_SIZE(matches));
        nst_pci_spec_set_apply(s, inv, tags, matches);
        out[0] = '\0';
        size_t total = 0;
        for (size_t k = 0; k < inv->n; k++) {
                if (!tags[k])
                        continue;
                total++;
                snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s",
                         out[0] ? " " : "", inv->fns[k].address);
        }
        size_t sum = 0;
        for (size_t j = 0; j < nst_pci_spec_set_count(s); j++)
                sum += matches[j];
        assert_int_equal(sum, total);
        return out;
}

static const char *claimed_by(const char *value, const struct nst_pci_inventory *inv) {
        struct nst_pci_spec_set *s = spec1(value);
        const char *out = claimed(s, inv);
        nst_pci_spec_set_free(s);
        return out;
}

#define PF0_FAMILY "0000:03:00.0 0000:03:02.0 0000:03:02.1"
#define ALL_SMALL                                                                          \
        "0000:00:02.0 0000:03:00.0 0000:03:00.1 0000:03:02.0 0000:03:02.1 0000:03:10.0 "    \
        "0000:03:10.1 0000:0a:00.0 0001:12:00.0"

/* ---- address: glob ---- */

static void test_glob_forms(void **state) {
        struct nst_pci_inventory *inv = *state;
        assert_string_equal(claimed_by("{\"address\": \":0a:00.\"}", inv), "0000:0a:00.0");
        assert_string_equal(claimed_by("{\"address\": \"03:10.*\"}", inv),
                            "0000:03:10.0 0000:03:10.1");
        assert_string_equal(claimed_by("{\"address\": \"*:*:*.*\"}", inv), ALL_SMALL);
        assert_string_equal(claimed_by("{}", inv), ALL_SMALL);
        assert_string_equal(claimed_by("{\"address\": \"\"}", inv), ALL_SMALL);
        /* Only the function: bus and slot, any function in any domain. */
        assert_string_equal(claimed_by("{\"address\": \"03:02\"}", inv),
                            "0000:03:02.0 0000:03:02.1");
        assert_string_equal(claimed_by("{\"address\": \".1\"}", inv),
                            "0000:03:00.1 0000:03:02.1 0000:03:10.1");
        assert_string_equal(claimed_by("{\"address\": \"1:*:*.*\"}", inv), "0001:12:00.0");
        assert_string_equal(claimed_by("{\"address\": \" 0x12 : 00 . 0 \"}", inv),
                            "0001:12:00.0");
        /* Hex either case. */
        assert_string_equal(claimed_by("{\"address\": \"0000:0A:00.0\"}", inv),
                            "0000:0a:00.0");
}

static void test_exact_address_pci_vs_pf(void **state) {
        struct nst_pci_inventory *inv = *state;
        /* A plain PCI device: just itself. */
        assert_string_equal(claimed_by("{\"address\": \"0000:00:02.0\"}", inv),
                            "0000:00:02.0");
        /* A PF: itself and its VFs, not the other PF's. */
        assert_string_equal(claimed_by("{\"address\": \"0000:03:00.0\"}", inv), PF0_FAMILY);
        assert_string_equal(claimed_by("{\"address\": \"0:3:0.0\"}", inv), PF0_FAMILY);
        /* A VF: just itself. */
        assert_string_equal(claimed_by("{\"address\": \"0000:03:02.1\"}", inv),
                            "0000:03:02.1");
        /* Not fully specified (domain is "*"): nova sees no single address,
         * so no PF rule, only the PF itself. */
        assert_string_equal(claimed_by("{\"address\": \"03:00.0\"}", inv), "0000:03:00.0");
        /* Absent from the inventory: nothing. */
        assert_string_equal(claimed_by("{\"address\": \"0000:05:00.0\"}", inv), "");
        /* The PF rule and vendor/product: a VF product keeps only the VFs. */
        assert_string_equal(
                claimed_by("{\"address\": \"0000:03:00.0\", \"product_id\": \"154c\"}", inv),
                "0000:03:02.0 0000:03:02.1");
}

/* ---- address: regex dict ---- */

static void test_regex_dict(void **state) {
        struct nst_pci_inventory *inv = *state;
        assert_string_equal(
                claimed_by("{\"address\": {\"domain\": \".*\", \"bus\": \"03\", "
                           "\"slot\": \"0[0-2]\", \"function\": \"[1-7]\"}}", inv),
                "0000:03:00.1 0000:03:02.1");
        /* Anchored at the start only, like re.match: "0" matches "00", "03",
         * "0a" but not "12"; "1" matches slot "10". */
        assert_string_equal(claimed_by("{\"address\": {\"bus\": \"0\"}}", inv),
                            "0000:00:02.0 0000:03:00.0 0000:03:00.1 0000:03:02.0 0000:03:02.1 "
                            "0000:03:10.0 0000:03:10.1 0000:0a:00.0");
        assert_string_equal(claimed_by("{\"address\": {\"slot\": \"1\"}}", inv),
                            "0000:03:10.0 0000:03:10.1");
        /* ... and not a search: no bus starts with "3", and "0$" only
         * matches a field that is exactly "0". */
        assert_string_equal(claimed_by("{\"address\": {\"bus\": \"3\"}}", inv), "");
        assert_string_equal(claimed_by("{\"address\": {\"bus\": \"0$\"}}", inv), "");
        assert_string_equal(claimed_by("{\"address\": {\"function\": \"0$\"}}", inv),
                            "0000:00:02.0 0000:03:00.0 0000:03:02.0 0000:03:10.0 "
                            "0000:0a:00.0 0001:12:00.0");
        /* Each alternative is anchored too. */
        assert_string_equal(claimed_by("{\"address\": {\"bus\": \"a|12\"}}", inv),
                            "0001:12:00.0");
        /* "0" matches both "0000" and "0001"; "0001" only the latter. */
        assert_string_equal(claimed_by("{\"address\": {\"domain\": \"0\"}}", inv), ALL_SMALL);
        assert_string_equal(claimed_by("{\"address\": {\"domain\": \"0001\"}}", inv),
                            "0001:12:00.0");
        assert_string_equal(claimed_by("{\"address\": {\"domain\": \"000[01]\", "
                                       "\"bus\": \"(0a|12)\"}}", inv),
                            "0000:0a:00.0 0001:12:00.0");
        /* An empty regex matches everything, as in Python. */
        assert_string_equal(claimed_by("{\"address\": {\"slot\": \"\"}}", inv), ALL_SMALL);
}

static void test_regex_dict_single_pf_address(void **state) {
        struct nst_pci_inventory *inv = *state;
        /* nova checks a dict made only of sysfs digits for a PF too. */
        assert_string_equal(claimed_by("{\"address\": {\"domain\": \"0000\", \"bus\": \"03\", "
                                       "\"slot\": \"00\", \"function\": \"0\"}}", inv),
                            PF0_FAMILY);
        /* Not the sysfs spelling: an ordinary regex, the PF only. */
        assert_string_equal(claimed_by("{\"address\": {\"domain\": \"0\", \"bus\": \"03\", "
                                       "\"slot\": \"00\", \"function\": \"0\"}}", inv),
                            "0000:03:00.0");
}

/* ---- vendor / product ---- */

static void test_vendor_product_normalised(void **state) {
        struct nst_pci_inventory *inv = *state;
        assert_string_equal(claimed_by("{\"vendor_id\": \"0x10de\"}", inv), "0000:0a:00.0");
        assert_string_equal(claimed_by("{\"vendor_id\": \"10DE\"}", inv), "0000:0a:00.0");
        assert_string_equal(claimed_by("{\"vendor_id\": \"10ED\"}", inv), "0001:12:00.0");
        assert_string_equal(claimed_by("{\"vendor_id\": \" 10ed \", \"product_id\": \"12\"}",
                                       inv),
                            "0001:12:00.0");
        assert_string_equal(claimed_by("{\"vendor_id\": \"8086\", \"product_id\": \"0x154C\"}",
                                       inv),
                            "0000:03:02.0 0000:03:02.1 0000:03:10.0 0000:03:10.1");
        assert_string_equal(claimed_by("{\"vendor_id\": \"*\", \"product_id\": \"1572\"}", inv),
                            "0000:03:00.0 0000:03:00.1");
        assert_string_equal(claimed_by("{\"vendor_id\": \"15b3\"}", inv), "");
}

/* ---- devname ---- */

static void test_devname(void **state) {
        struct nst_pci_inventory *inv = *state;
        assert_string_equal(claimed_by("{\"devname\": \"enp3s0f0\"}", inv), PF0_FAMILY);
        assert_string_equal(claimed_by("{\"devname\": \"enp3s0f1v1\"}", inv), "0000:03:10.1");
        assert_string_equal(claimed_by("{\"devname\": \"eth9\"}", inv), "0001:12:00.0");
        assert_string_equal(claimed_by("{\"devname\": \"nope\"}", inv), "");
        /* Empty devname: absent, like nova's truthiness test. */
        assert_string_equal(claimed_by("{\"devname\": \"\", \"address\": \":0a:\"}", inv),
                            "0000:0a:00.0");

        struct nst_pci_spec_set *s = spec1("{\"devname\": \"nope\"}");
        const struct nst_pci_tags *tags[NST_ARRAY_SIZE(small_defs)];
        size_t matches[1] = {99};
        nst_pci_spec_set_apply(s, inv, tags, matches);
        assert_int_equal(matches[0], 0);
        for (size_t k = 0; k < inv->n; k++)
                assert_null(tags[k]);
        nst_pci_spec_set_free(s);
}

/* ---- precedence, tags, lists ---- */

static void test_first_match_wins(void **state) {
        struct nst_pci_inventory *inv = *state;
        const char *values[] = {
                "{\"address\": \"0000:03:00.0\", \"physical_network\": \"a\"}",
                ("[{\"devname\": \"enp3s0f1v0\", \"physical_network\": \"b\"},"
                 " {\"vendor_id\": \"8086\", \"physical_network\": \"c\"}]"),
                "{\"physical_network\": \"d\"}",
                "{\"vendor_id\": \"8086\", \"physical_network\": \"never\"}",
        };
        struct nst_pci_spec_set *s = specs_n(values, NST_ARRAY_SIZE(values));
        assert_int_equal(nst_pci_spec_set_count(s), 5);

        const struct nst_pci_tags *tags[NST_ARRAY_SIZE(small_defs)];
        size_t matches[5];
        nst_pci_spec_set_apply(s, inv, tags, matches);
        static const char *const expect[] = {"c", "a", "c", "a", "a", "b", "c", "d", "d"};
        for (size_t k = 0; k < inv->n; k++) {
                assert_non_null(tags[k]);
                assert_string_equal(nst_pci_tags_get(tags[k], "physical_network"), expect[k]);
        }
        /* Counts of what each entry claimed; a shadowed entry claims 0. */
        assert_int_equal(matches[0], 3);
        assert_int_equal(matches[1], 1);
        assert_int_equal(matches[2], 3);
        assert_int_equal(matches[3], 2);
        assert_int_equal(matches[4], 0);
        /* NULL ret_matches is allowed. */
        nst_pci_spec_set_apply(s, inv, tags, NULL);
        assert_string_equal(nst_pci_tags_get(tags[0], "physical_network"), "c");
        nst_pci_spec_set_free(s);
}

static void test_tags_normalised(void **state) {
        struct nst_pci_inventory *inv = *state;
        struct nst_pci_spec_set *s = spec1(
                "{\"Physical_Network\": \"PhysNet1\", \"trusted\": true, \"zeta\": \"Z\","
                " \"remote_managed\": \"No\", \"resource_class\": \"CUSTOM_VF\","
                " \"traits\": \"CUSTOM_A,CUSTOM_B\", \"address\": \"0000:00:02.0\"}");
        const struct nst_pci_tags *tags[NST_ARRAY_SIZE(small_defs)];
        nst_pci_spec_set_apply(s, inv, tags, NULL);
        const struct nst_pci_tags *t = tags[0];
        assert_non_null(t);
        for (size_t k = 1; k < inv->n; k++)
                assert_null(tags[k]);
        /* Keys lower-case and sorted, values as given but booleans. */
        static const char *const kv[][2] = {
                {"physical_network", "PhysNet1"}, {"remote_managed", "false"},
                {"resource_class", "CUSTOM_VF"}, {"traits", "CUSTOM_A,CUSTOM_B"},
                {"trusted", "true"}, {"zeta", "Z"},
        };
        assert_int_equal(t->n, NST_ARRAY_SIZE(kv));
        for (size_t i = 0; i < t->n; i++) {
                assert_string_equal(t->tags[i].key, kv[i][0]);
                assert_string_equal(t->tags[i].value, kv[i][1]);
        }
        nst_pci_spec_set_free(s);

        /* No tags: still assignable (non-NULL, empty). */
        s = spec1("{\"address\": \"0000:00:02.0\"}");
        nst_pci_spec_set_apply(s, inv, tags, NULL);
        assert_non_null(tags[0]);
        assert_int_equal(tags[0]->n, 0);
        nst_pci_spec_set_free(s);
}

static void test_boolean_words(void **state) {
        static const char *const words[][2] = {
                {"true", "true"}, {"TRUE", "true"}, {"yes", "true"}, {"1", "true"},
                {" On ", "true"}, {"false", "false"}, {"No", "false"}, {"0", "false"},
                {"off", "false"},
        };
        struct nst_pci_inventory *inv = *state;
        for (size_t i = 0; i < NST_ARRAY_SIZE(words); i++) {
                char value[128];
                snprintf(value, sizeof(value), "{\"trusted\": \"%s\", \"address\": \":0a:\"}",
                         words[i][0]);
                struct nst_pci_spec_set *s = spec1(value);
                const struct nst_pci_tags *tags[NST_ARRAY_SIZE(small_defs)];
                nst_pci_spec_set_apply(s, inv, tags, NULL);
                assert_non_null(tags[7]);
                assert_string_equal(nst_pci_tags_get(tags[7], "trusted"), words[i][1]);
                nst_pci_spec_set_free(s);
        }
}

static void test_remote_managed_leaves_pf_out(void **state) {
        struct nst_pci_inventory *inv = *state;
        /* nova refuses remote_managed on a PF address; with no sysfs at
         * parse time we keep the VFs and leave the PF out. */
        assert_string_equal(
                claimed_by("{\"address\": \"0000:03:00.0\", \"remote_managed\": true}", inv),
                "0000:03:02.0 0000:03:02.1");
        assert_string_equal(claimed_by("{\"devname\": \"enp3s0f1\", "
                                       "\"remote_managed\": \"yes\"}", inv),
                            "0000:03:10.0 0000:03:10.1");
        assert_string_equal(
                claimed_by("{\"address\": \"0000:03:00.0\", \"remote_managed\": false}", inv),
                PF0_FAMILY);
}

static void test_describe_and_count(void **state) {
        const char *values[] = {"{}", "[{}, {\"address\": \":0a:\"}]", "[]", "{}"};
        const char *origins[] = {"a.conf:3", "a.conf:4", "a.conf:5", NULL};
        struct nst_pci_spec_set *s = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_pci_spec_set_parse(values, origins, 4, &s, &err), 0);
        assert_int_equal(nst_pci_spec_set_count(s), 4);
        assert_string_equal(nst_pci_spec_describe(s, 0), "a.conf:3");
        assert_string_equal(nst_pci_spec_describe(s, 1), "a.conf:4 #1");
        assert_string_equal(nst_pci_spec_describe(s, 2), "a.conf:4 #2");
        assert_string_equal(nst_pci_spec_describe(s, 3), "value 4");
        assert_null(nst_pci_spec_describe(s, 4));
        nst_pci_spec_set_free(s);

        /* No values at all: nothing is assignable. */
        assert_int_equal(nst_pci_spec_set_parse(NULL, NULL, 0, &s, &err), 0);
        assert_int_equal(nst_pci_spec_set_count(s), 0);
        assert_string_equal(claimed(s, *state), "");
        nst_pci_spec_set_free(s);
        nst_pci_spec_set_free(NULL);
}

/* ---- ConfigError ---- */

#define E ORIGIN ": [pci] device_spec: "

static void test_errors_json_shape(void **state) {
        spec_fails("{\"address\": ", E "malformed JSON: unexpected end of data at byte 12");
        spec_fails("{\"a\": 1} x", E "malformed JSON: unexpected character at byte 9");
        spec_fails("", E "malformed JSON: unexpected end of data at byte 0");
        spec_fails("\"x\"", E "expecting a JSON object or a list of objects, not string");
        spec_fails("null", E "expecting a JSON object or a list of objects, not null");
        spec_fails("[{}, 3]", ORIGIN " #2: [pci] device_spec: expecting a JSON object, not int");
        spec_fails("[{}, {\"address\": \"x\"}]",
                   ORIGIN " #2: [pci] device_spec: address 'x': slot is not hex");

        /* Without an origin, the value's position. */
        const char *values[] = {"{}", "{\"vendor_id\": 1}"};
        struct nst_pci_spec_set *s = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_pci_spec_set_parse(values, NULL, 2, &s, &err), -EINVAL);
        assert_null(s);
        assert_string_equal(err.message,
                            "value 2: [pci] device_spec: vendor_id must be a string, not int");
}

static void test_errors_glob(void **state) {
        spec_fails("{\"address\": \"0000:0g:00.0\"}",
                   E "address '0000:0g:00.0': bus is not hex");
        spec_fails("{\"address\": \"0000:00:00.8\"}",
                   E "address '0000:00:00.8': function '8' is greater than 7");
        spec_fails("{\"address\": \"0000:00:20.0\"}",
                   E "address '0000:00:20.0': slot '20' is greater than 1f");
        spec_fails("{\"address\": \"0000:100:00.0\"}",
                   E "address '0000:100:00.0': bus '100' is greater than ff");
        spec_fails("{\"address\": \"10000:00:00.0\"}",
                   E "address '10000:00:00.0': domain '10000' is greater than ffff");
        spec_fails("{\"address\": \"0:0000:00:00.0\"}",
                   E "address '0:0000:00:00.0': too many ':'");
        spec_fails("{\"address\": \"0000:00:00.0.1\"}",
                   E "address '0000:00:00.0.1': function is not hex");
        spec_fails("{\"address\": \"0*:00:00.0\"}", E "address '0*:00:00.0': domain is not hex");
        spec_fails("{\"address\": 3}", E "address must be a string or an object, not int");
        spec_fails("{\"address\": [\"0000:00:00.0\"]}",
                   E "address must be a string or an object, not array");
}

static void test_errors_regex(void **state) {
        spec_fails("{\"address\": {\"bus\": \"[\"}}",
                   E "address: bus regex '[': Invalid regular expression");
        spec_fails("{\"address\": {\"slot\": \"a)|(b\"}}",
                   E "address: slot regex 'a)|(b': Unmatched ( or \\(");
        spec_fails("{\"address\": {\"func\": \"0\"}}",
                   E "address: unknown field 'func' (expected domain, bus, slot, function)");
        spec_fails("{\"address\": {\"bus\": 2}}", E "address: bus must be a string, not int");
        /* Freed on the error path after a successful compile, too. */
        spec_fails("{\"address\": {\"domain\": \".*\", \"bus\": \"0\", \"slot\": \"*\"}}",
                   E "address: slot regex '*': Invalid preceding regular expression");
}

static void test_errors_keys(void **state) {
        spec_fails("{\"devname\": \"eth0\", \"address\": \"0000:03:00.0\"}",
                   E "devname and address are mutually exclusive");
        spec_fails("{\"devname\": 5}", E "devname must be a string, not int");
        spec_fails("{\"vendor_id\": \"80861\"}", E "vendor_id '80861' is greater than ffff");
        spec_fails("{\"product_id\": \"xyz\"}", E "product_id 'xyz' is not a hex number");
        spec_fails("{\"product_id\": \"0x\"}", E "product_id '0x' is not a hex number");
        spec_fails("{\"vendor_id\": 8086}", E "vendor_id must be a string, not int");
        spec_fails("{\"physical_network\": 1}", E "physical_network must be a string, not int");
        spec_fails("{\"physical_network\": null}",
                   E "physical_network must be a string, not null");
        spec_fails("{\"resource_class\": true}", E "resource_class must be a string, not boolean");
        spec_fails("{\"trusted\": \"maybe\"}",
                   E "trusted 'maybe' is not a boolean (true/false, yes/no, 1/0)");
        spec_fails("{\"remote_managed\": 1}",
                   E "remote_managed must be a string or a boolean, not int");
        spec_fails("{\"Vendor_ID\": \"8086\"}",
                   E "key 'Vendor_ID': keys are case-sensitive, use 'vendor_id'");
        spec_fails("{\"physical_network\": \"a\", \"Physical_Network\": \"b\"}",
                   E "tag 'physical_network' given twice");
        spec_fails("{\"\": \"x\"}", E "empty key");
}

/* ---- alias ---- */

static struct nst_pci_alias_set *aliases_n(const char *const *values, size_t n) {
        struct nst_pci_alias_set *s = NULL;
        struct nst_error err = NST_ERROR_INIT;
        if (nst_pci_alias_set_parse(values, NULL, n, &s, &err) < 0)
                fail_msg("alias rejected: %s: %s", err.cls, err.message);
        return s;
}

static void alias_fails(const char *value, const char *message) {
        const char *origins[] = {ORIGIN};
        struct nst_pci_alias_set *s = NULL;
        struct nst_error err = NST_ERROR_INIT;
        int r = nst_pci_alias_set_parse(&value, origins, 1, &s, &err);
        if (r >= 0) {
                nst_pci_alias_set_free(s);
                fail_msg("alias accepted, expected '%s'\n  value: %s", message, value);
        }
        assert_int_equal(r, -EINVAL);
        assert_null(s);
        assert_string_equal(err.cls, "ConfigError");
        assert_string_equal(err.message, message);
}

static void test_alias_basic(void **state) {
        const char *values[] = {
                "{\"name\": \" gpu \", \"vendor_id\": \"10DE\", \"product_id\": \"1db4\","
                " \"device_type\": \"type-PCI\", \"numa_policy\": \"required\"}",
                "{\"name\": \"vf\", \"capability_type\": \"pci\"}",
        };
        struct nst_pci_alias_set *s = aliases_n(values, 2);
        assert_int_equal(nst_pci_alias_set_count(s), 2);
        const struct nst_pci_alias *a = nst_pci_alias_lookup(s, "gpu");
        assert_ptr_equal(a, nst_pci_alias_set_at(s, 0));
        assert_string_equal(a->name, "gpu");
        assert_int_equal(a->dev_type, NST_PCI_TYPE_PCI);
        assert_int_equal(a->numa_policy, NST_PCI_NUMA_REQUIRED);
        assert_true(a->numa_policy_set);
        assert_int_equal(a->n_matches, 1);
        assert_int_equal(a->matches[0].vendor, 0x10de);
        assert_int_equal(a->matches[0].product, 0x1db4);
        assert_int_equal(a->matches[0].tags.n, 0);
        assert_null(a->matches[0].tags.tags);

        a = nst_pci_alias_lookup(s, "vf");
        assert_ptr_equal(a, nst_pci_alias_set_at(s, 1));
        assert_int_equal(a->dev_type, -1);
        assert_int_equal(a->numa_policy, NST_PCI_NUMA_LEGACY);
        assert_false(a->numa_policy_set);
        assert_int_equal(a->matches[0].vendor, -1);
        assert_int_equal(a->matches[0].product, -1);

        assert_null(nst_pci_alias_lookup(s, "GPU"));
        assert_null(nst_pci_alias_lookup(s, "nope"));
        assert_null(nst_pci_alias_set_at(s, 2));
        nst_pci_alias_set_free(s);
}

static void test_alias_or(void **state) {
        const char *values[] = {
                "{\"name\": \"nic\", \"vendor_id\": \"8086\", \"product_id\": \"154c\","
                " \"device_type\": \"type-VF\"}",
                "{\"name\": \"other\"}",
                "{\"name\": \"nic\", \"vendor_id\": \"15b3\", \"product_id\": \"1018\","
                " \"device_type\": \"type-VF\", \"numa_policy\": \"legacy\"}",
        };
        struct nst_pci_alias_set *s = aliases_n(values, 3);
        assert_int_equal(nst_pci_alias_set_count(s), 2);
        const struct nst_pci_alias *a = nst_pci_alias_lookup(s, "nic");
        assert_int_equal(a->dev_type, NST_PCI_TYPE_VF);
        assert_int_equal(a->n_matches, 2);
        assert_int_equal(a->matches[0].vendor, 0x8086);
        assert_int_equal(a->matches[0].product, 0x154c);
        assert_int_equal(a->matches[1].vendor, 0x15b3);
        assert_int_equal(a->matches[1].product, 0x1018);
        /* An explicit "legacy" agrees with the default one. */
        assert_int_equal(a->numa_policy, NST_PCI_NUMA_LEGACY);
        assert_true(a->numa_policy_set);
        nst_pci_alias_set_free(s);
}

static void test_alias_disagreement(void **state) {
        const char *values[] = {
                "{\"name\": \"nic\", \"device_type\": \"type-VF\"}",
                "{\"name\": \"nic\", \"device_type\": \"type-PF\"}",
        };
        const char *origins[] = {"n.conf:1", "n.conf:2"};
        struct nst_pci_alias_set *s = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_pci_alias_set_parse(values, origins, 2, &s, &err), -EINVAL);
        assert_null(s);
        assert_string_equal(err.cls, "ConfigError");
        assert_string_equal(err.message, "n.conf:2: [pci] alias: alias 'nic': device_type "
                                         "type-PF disagrees with type-VF given at n.conf:1");

        values[0] = "{\"name\": \"nic\"}";
        values[1] = "{\"name\": \"nic\", \"device_type\": \"type-VF\"}";
        nst_error_clear(&err);
        assert_int_equal(nst_pci_alias_set_parse(values, origins, 2, &s, &err), -EINVAL);
        assert_string_equal(err.message, "n.conf:2: [pci] alias: alias 'nic': device_type "
                                         "type-VF disagrees with none given at n.conf:1");

        values[0] = "{\"name\": \"nic\", \"numa_policy\": \"socket\"}";
        values[1] = "{\"name\": \"nic\"}";
        nst_error_clear(&err);
        assert_int_equal(nst_pci_alias_set_parse(values, origins, 2, &s, &err), -EINVAL);
        assert_string_equal(err.message, "n.conf:2: [pci] alias: alias 'nic': numa_policy "
                                         "legacy disagrees with socket given at n.conf:1");
}

#define A ORIGIN ": [pci] alias: "

static void test_alias_errors(void **state) {
        alias_fails("{\"name\": \"x\", \"device_type\": \"vdpa\"}",
                    A "device_type 'vdpa' cannot be requested through an alias");
        alias_fails("{\"name\": \"x\", \"device_type\": \"type-XX\"}",
                    A "device_type 'type-XX' is not one of type-PCI, type-PF, type-VF");
        alias_fails("{\"name\": \"x\", \"numa_policy\": \"strict\"}",
                    A "numa_policy 'strict' is not one of required, legacy, preferred, socket");
        alias_fails("{\"name\": \"x\", \"numa_policy\": \"\"}",
                    A "numa_policy '' is not one of required, legacy, preferred, socket");
        alias_fails("{\"name\": \"x\", \"physical_network\": \"p\"}",
                    A "unknown key 'physical_network' (expected name, vendor_id, product_id, "
                      "device_type, numa_policy)");
        alias_fails("{\"vendor_id\": \"8086\"}", A "name is required");
        alias_fails("{\"name\": \"  \"}", A "name is empty");
        alias_fails("{\"name\": 7}", A "name must be a string, not int");
        alias_fails("{\"name\": \"0123456789012345678901234567890123456789012345678901234567"
                    "890123\"}",
                    A "name '0123456789012345678901234567890123456789012345678901234567890123' "
                      "is longer than 63 characters");
        alias_fails("{\"name\": \"x\", \"vendor_id\": \"*\"}",
                    A "vendor_id '*' is not a hex number");
        alias_fails("{\"name\": \"x\", \"product_id\": \"12345\"}",
                    A "product_id '12345' is greater than ffff");
        alias_fails("{\"name\": \"x\", \"capability_type\": \"pcie\"}",
                    A "capability_type 'pcie' is not 'pci'");
        alias_fails("[{\"name\": \"x\"}]", A "expecting a JSON object, not array");
        alias_fails("{\"name\": \"x\"", A "malformed JSON: unexpected end of data at byte 12");

        /* 63 characters is fine. */
        const char *ok = "{\"name\": \"012345678901234567890123456789012345678901234567890123456"
                         "789012\"}";
        struct nst_pci_alias_set *s = aliases_n(&ok, 1);
        assert_int_equal(strlen(nst_pci_alias_set_at(s, 0)->name), 63);
        nst_pci_alias_set_free(s);
        nst_pci_alias_set_free(NULL);
}

static void test_numa_policy_names(void **state) {
        static const struct {
                const char *name;
                enum nst_pci_numa_policy p;
        } all[] = {
                {"legacy", NST_PCI_NUMA_LEGACY}, {"required", NST_PCI_NUMA_REQUIRED},
                {"preferred", NST_PCI_NUMA_PREFERRED}, {"socket", NST_PCI_NUMA_SOCKET},
        };
        for (size_t i = 0; i < NST_ARRAY_SIZE(all); i++) {
                enum nst_pci_numa_policy p = NST_PCI_NUMA_SOCKET + 1;
                assert_int_equal(nst_pci_numa_policy_parse(all[i].name, &p), 0);
                assert_int_equal(p, all[i].p);
                assert_string_equal(nst_pci_numa_policy_name(all[i].p), all[i].name);
        }
        enum nst_pci_numa_policy p = NST_PCI_NUMA_SOCKET;
        assert_int_equal(nst_pci_numa_policy_parse("Legacy", &p), -EINVAL);
        assert_int_equal(nst_pci_numa_policy_parse("", &p), -EINVAL);
        assert_int_equal(nst_pci_numa_policy_parse(NULL, &p), -EINVAL);
        assert_int_equal(p, NST_PCI_NUMA_SOCKET);
        assert_string_equal(nst_pci_numa_policy_name((enum nst_pci_numa_policy)42), "?");
}

/* ---- cost ---- */

/* 4 PFs x 256 VFs plus 4 PCI devices: 1032 functions. */
static struct nst_pci_inventory *big_inventory(void) {
        enum { N_PF = 4, N_VF = 256, N_PCI = 4, N = N_PF + N_PF * N_VF + N_PCI };
        static char addrs[N][NST_PCI_ADDR_LEN], parents[N_PF][NST_PCI_ADDR_LEN];
        static char netdevs[N][32];
        struct fn_def *defs = calloc(N, sizeof(*defs));
        assert_non_null(defs);
        size_t n = 0;
        for (int p = 0; p < N_PF; p++) {
                snprintf(parents[p], sizeof(parents[p]), "0000:%02x:00.0", 0x10 + p);
                snprintf(netdevs[n], sizeof(netdevs[n]), "ens%df0", p);
                defs[n] = (struct fn_def){parents[p], 0x8086, 0x1572, NST_PCI_TYPE_PF,
                                          netdevs[n], NULL};
                n++;
                for (int v = 0; v < N_VF; v++) {
                        snprintf(addrs[n], sizeof(addrs[n]), "0000:%02x:%02x.%x", 0x20 + p,
                                 v / 8, v % 8);
                        snprintf(netdevs[n], sizeof(netdevs[n]), "ens%df0v%d", p, v);
                        defs[n] = (struct fn_def){addrs[n], 0x8086, 0x154c, NST_PCI_TYPE_VF,
                                                  netdevs[n], parents[p]};
                        n++;
                }
        }
        for (int i = 0; i < N_PCI; i++) {
                snprintf(addrs[n], sizeof(addrs[n]), "0000:%02x:00.0", 0x80 + i);
                defs[n] = (struct fn_def){addrs[n], 0x10de, 0x1db4, NST_PCI_TYPE_PCI, NULL,
                                          NULL};
                n++;
        }
        assert_int_equal(n, N);
        struct nst_pci_inventory *inv = build_inventory(defs, n);
        free(defs);
        return inv;
}

static double now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void test_apply_cost(void **state) {
        struct nst_pci_inventory *inv = big_inventory();
        assert_int_equal(inv->n, 1032);
        const char *values[] = {
                "{\"address\": \"0000:10:00.0\", \"physical_network\": \"p0\"}",
                "{\"devname\": \"ens1f0\", \"physical_network\": \"p1\", \"trusted\": true}",
                ("{\"address\": {\"domain\": \"0000\", \"bus\": \"2[2-3]\"},"
                 " \"physical_network\": \"p23\"}"),
                "{\"vendor_id\": \"10de\", \"address\": \"*:*:*.*\"}",
                "{\"vendor_id\": \"15b3\"}",
        };
        struct nst_pci_spec_set *s = specs_n(values, NST_ARRAY_SIZE(values));
        const struct nst_pci_tags **tags = calloc(inv->n, sizeof(*tags));
        assert_non_null(tags);
        size_t matches[NST_ARRAY_SIZE(values)];

        enum { RUNS = 50 };
        double best = 1e9;
        for (int i = 0; i < RUNS; i++) {
                double t0 = now_us();
                nst_pci_spec_set_apply(s, inv, tags, matches);
                double dt = now_us() - t0;
                if (dt < best)
                        best = dt;
        }
        print_message("apply: %zu functions, %zu entries: %.1f us (best of %d)\n", inv->n,
                      nst_pci_spec_set_count(s), best, RUNS);
        assert_int_equal(matches[0], 257);
        assert_int_equal(matches[1], 257);
        assert_int_equal(matches[2], 512); /* the VFs of PF 2 and 3 (PFs on 12, 13) */
        assert_int_equal(matches[3], 4);
        assert_int_equal(matches[4], 0);
        size_t p23 = 0;
        for (size_t k = 0; k < inv->n; k++)
                if (tags[k] && strcmp(nst_pci_tags_get(tags[k], "physical_network") ?: "",
                                      "p23") == 0)
                        p23++;
        assert_int_equal(p23, matches[2]);
        if (!RUNNING_ON_VALGRIND)
                assert_true(best < 1000.0);
        free(tags);
        nst_pci_spec_set_free(s);
        nst_pci_inventory_free(inv);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_glob_forms, setup_small,
                                                teardown_inventory),
                cmocka_unit_test_setup_teardown(test_exact_address_pci_vs_pf, setup_small,
                                                teardown_inventory),
                cmocka_unit_test_setup_teardown(test_regex_dict, setup_small,
                                                teardown_inventory),
                cmocka_unit_test_setup_teardown(test_regex_dict_single_pf_address, setup_small,
                                                teardown_inventory),
                cmocka_unit_test_setup_teardown(test_vendor_product_normalised, setup_small,
                                                teardown_inventory),
                cmocka_unit_test_setup_teardown(test_devname, setup_small, teardown_inventory),
                cmocka_unit_test_setup_teardown(test_first_match_wins, setup_small,
                                                teardown_inventory),
                cmocka_unit_test_setup_teardown(test_tags_normalised, setup_small,
                                                teardown_inventory),
                cmocka_unit_test_setup_teardown(test_boolean_words, setup_small,
                                                teardown_inventory),
                cmocka_unit_test_setup_teardown(test_remote_managed_leaves_pf_out, setup_small,
                                                teardown_inventory),
                cmocka_unit_test_setup_teardown(test_describe_and_count, setup_small,
                                                teardown_inventory),
                cmocka_unit_test(test_errors_json_shape),
                cmocka_unit_test(test_errors_glob),
                cmocka_unit_test(test_errors_regex),
                cmocka_unit_test(test_errors_keys),
                cmocka_unit_test(test_alias_basic),
                cmocka_unit_test(test_alias_or),
                cmocka_unit_test(test_alias_disagreement),
                cmocka_unit_test(test_alias_errors),
                cmocka_unit_test(test_numa_policy_names),
                cmocka_unit_test(test_apply_cost),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
