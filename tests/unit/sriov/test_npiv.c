/* NPIV: WWN parsing and NAA 5 generation, the vHBA XML, and vHBA create /
 * destroy against libvirt's test driver (test:///default, whose scsi_host1
 * is an NPIV-capable HBA). The test driver validates no WWN, so every check
 * of the format here is Nestor's own; it also names every vHBA scsi_host12,
 * so the tests keep at most one alive at a time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/sriov/npiv.h"

#define WWNN "20000000c9831b4b"
#define WWPN "10000000c9831b4b"

static void assert_error(const struct nst_error *err, const char *cls, const char *needle) {
        if (strcmp(err->cls, cls) != 0 || !strstr(err->message, needle))
                fail_msg("expected %s containing '%s', got %s '%s'", cls, needle, err->cls,
                         err->message);
}

/* ---- WWN parsing ------------------------------------------------------- */

static void parse_ok(const char *in, const char *want) {
        char out[NST_WWN_LEN];
        struct nst_error err = NST_ERROR_INIT;
        if (nst_wwn_parse(in, out, &err) < 0)
                fail_msg("'%s' refused: %s", in, err.message);
        assert_string_equal(out, want);
}

static void parse_fails(const char *in, const char *needle) {
        char out[NST_WWN_LEN];
        memset(out, 'X', sizeof(out));
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_wwn_parse(in, out, &err), -EINVAL);
        assert_error(&err, "InvalidInput", needle);
        assert_string_equal(err.module, "nestor.exception");
        /* The output is left alone on failure. */
        for (size_t i = 0; i < sizeof(out); i++)
                assert_int_equal(out[i], 'X');
}

static void test_wwn_parse_good(void **state) {
        parse_ok(WWNN, WWNN);
        parse_ok(WWPN, WWPN);
        parse_ok("0x" WWPN, WWPN);
        parse_ok("0X" WWPN, WWPN);
        parse_ok("0x10000000C9831B4B", WWPN);
        parse_ok("5001A4AABCDEF012", "5001a4aabcdef012");
        parse_ok("3000000000000001", "3000000000000001");
        parse_ok("21000024ff3dc7a1", "21000024ff3dc7a1");
}

static void test_wwn_parse_bad(void **state) {
        parse_fails("10:00:00:00:c9:83:1b:4b",
                    "WWN '10:00:00:00:c9:83:1b:4b': expected 16 hex digits without colons, "
                    "got 23 characters");
        parse_fails("10000000c9831b4", "WWN '10000000c9831b4': expected 16 hex digits, got 15");
        parse_fails("10000000c9831b4b0", "got 17 characters");
        parse_fails("0x10000000c9831b4", "got 15 characters");
        parse_fails("", "got 0 characters");
        parse_fails("0x", "got 0 characters");
        parse_fails("1000000gc9831b4b", "WWN '1000000gc9831b4b': 'g' is not a hex digit");
        parse_fails("0x1000 0000c9831b4", "' ' is not a hex digit");
        parse_fails("x10000000c9831b4b", "got 17 characters");
        parse_fails("6000000000000001",
                    "WWN '6000000000000001': NAA type 6 is 128-bit (IEEE registered extended), "
                    "not a port or node name");
        parse_fails("0000000000000000",
                    "WWN '0000000000000000': NAA type 0 is not a port or node name type");
        parse_fails("4000000000000001", "NAA type 4 is not a port or node name type");
        parse_fails("7000000000000001", "NAA type 7 is not");
        parse_fails("C000000000000001", "NAA type c is not");
        parse_fails("f000000000000001", "NAA type f is not");

        char out[NST_WWN_LEN];
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_wwn_parse(NULL, out, &err), -EINVAL);
        assert_error(&err, "InvalidInput", "WWN: missing");
}

/* ---- NAA 5 generation -------------------------------------------------- */

static void generate_ok(const char *oui, uint64_t rnd, const char *want) {
        char out[NST_WWN_LEN];
        struct nst_error err = NST_ERROR_INIT;
        if (nst_wwn_generate_naa5(oui, rnd, out, &err) < 0)
                fail_msg("OUI '%s' refused: %s", oui, err.message);
        assert_string_equal(out, want);
        /* What is generated is a valid port/node name. */
        char parsed[NST_WWN_LEN];
        assert_int_equal(nst_wwn_parse(out, parsed, &err), 0);
        assert_string_equal(parsed, want);
}

static void test_wwn_generate(void **state) {
        generate_ok("001a4a", UINT64_C(0x123456789), "5001a4a123456789");
        generate_ok("00:1a:4a", UINT64_C(0x123456789), "5001a4a123456789");
        generate_ok("00:1A:4A", UINT64_C(0xabcdef012), "5001a4aabcdef012");
        generate_ok("525400", 0, "5525400000000000");
        /* Only the low 36 bits (9 digits) of rnd are used. */
        generate_ok("001a4a", UINT64_C(0xfffffff000000001), "5001a4a000000001");
        generate_ok("001a4a", UINT64_MAX, "5001a4afffffffff");

        char a[NST_WWN_LEN], b[NST_WWN_LEN];
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_wwn_generate_naa5("001a4a", 1, a, &err), 0);
        assert_int_equal(nst_wwn_generate_naa5("001a4a", 2, b, &err), 0);
        assert_string_not_equal(a, b);
        assert_int_equal(strlen(a), NST_WWN_LEN - 1);
}

static void test_wwn_generate_bad_oui(void **state) {
        static const char *const bad[] = {
                "001a4",  "001a4a0",  "00-1a-4a", "00:1a:4g", "00:1a4a",
                "001a:4a", "0x001a4a", "",        "00:1a:4a:", "001a4g",
        };
        char out[NST_WWN_LEN] = "unchanged";
        for (size_t i = 0; i < NST_ARRAY_SIZE(bad); i++) {
                struct nst_error err = NST_ERROR_INIT;
                assert_int_equal(nst_wwn_generate_naa5(bad[i], 1, out, &err), -EINVAL);
                char needle[64];
                snprintf(needle, sizeof(needle), "OUI '%s': expected 6 hex digits", bad[i]);
                assert_error(&err, "InvalidInput", needle);
        }
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_wwn_generate_naa5(NULL, 1, out, &err), -EINVAL);
        assert_error(&err, "InvalidInput", "OUI");
        assert_string_equal(out, "unchanged");
}

/* ---- XML --------------------------------------------------------------- */

static void test_vhba_xml(void **state) {
        char *xml = nst_vhba_xml("scsi_host1", WWNN, WWPN);
        assert_non_null(xml);
        assert_non_null(strstr(xml, "<parent>scsi_host1</parent>"));
        assert_non_null(strstr(xml, "<capability type='scsi_host'>"));
        assert_non_null(strstr(xml, "<capability type='fc_host'>"));
        assert_non_null(strstr(xml, "<wwnn>" WWNN "</wwnn>"));
        assert_non_null(strstr(xml, "<wwpn>" WWPN "</wwpn>"));
        /* wwnn before wwpn, inside fc_host inside scsi_host. */
        assert_true(strstr(xml, "<wwnn>") < strstr(xml, "<wwpn>"));
        assert_true(strstr(xml, "'scsi_host'") < strstr(xml, "'fc_host'"));
        assert_true(strstr(xml, "'fc_host'") < strstr(xml, "<wwnn>"));
        free(xml);

        xml = nst_vhba_xml("a&b<c>'d\"</parent>", WWNN, WWPN);
        assert_non_null(xml);
        assert_non_null(
                strstr(xml, "<parent>a&amp;b&lt;c&gt;&apos;d&quot;&lt;/parent&gt;</parent>"));
        free(xml);

        assert_null(nst_vhba_xml("scsi\001host1", WWNN, WWPN));
        assert_null(nst_vhba_xml("scsi_host1\xff", WWNN, WWPN));
        assert_null(nst_vhba_xml(NULL, WWNN, WWPN));
        assert_null(nst_vhba_xml("scsi_host1", NULL, WWPN));
}

/* ---- vHBA against the test driver -------------------------------------- */

static void quiet(void *userdata, virErrorPtr e) {
}

static int setup(void **state) {
        virSetErrorFunc(NULL, quiet);
        virConnectPtr conn = virConnectOpen("test:///default");
        if (!conn)
                return -1;
        *state = conn;
        return 0;
}

static int teardown(void **state) {
        virConnectClose(*state);
        return 0;
}

static int count_node_devices(virConnectPtr conn) {
        int n = virNodeNumOfDevices(conn, NULL, 0);
        assert_true(n >= 0);
        return n;
}

static void test_vhba_create_destroy(void **state) {
        virConnectPtr conn = *state;
        struct nst_error err = NST_ERROR_INIT;
        char name[64];
        int before = count_node_devices(conn);

        /* The forms nst_wwn_parse accepts are normalised before libvirt sees them. */
        assert_int_equal(nst_vhba_create(conn, "scsi_host1", "0x" WWNN, "0X10000000C9831B4B",
                                         name, sizeof(name), &err),
                         0);
        assert_false(nst_error_is_set(&err));
        assert_int_equal(strncmp(name, "scsi_host", 9), 0);
        assert_string_not_equal(name, "scsi_host1");
        assert_int_equal(count_node_devices(conn), before + 1);

        virNodeDevicePtr dev = virNodeDeviceLookupByName(conn, name);
        assert_non_null(dev);
        char *xml = virNodeDeviceGetXMLDesc(dev, 0);
        assert_non_null(xml);
        assert_non_null(strstr(xml, "<wwpn>" WWPN "</wwpn>"));
        assert_non_null(strstr(xml, "<wwnn>" WWNN "</wwnn>"));
        assert_non_null(strstr(xml, "<parent>scsi_host1</parent>"));
        free(xml);
        virNodeDeviceFree(dev);

        assert_int_equal(nst_vhba_destroy(conn, name, &err), 0);
        assert_null(virNodeDeviceLookupByName(conn, name));
        assert_int_equal(virGetLastError()->code, VIR_ERR_NO_NODE_DEVICE);
        assert_int_equal(count_node_devices(conn), before);

        /* Already gone, or never there: success. */
        assert_int_equal(nst_vhba_destroy(conn, name, &err), 0);
        assert_int_equal(nst_vhba_destroy(conn, "scsi_host999", &err), 0);
        assert_false(nst_error_is_set(&err));
}

static void test_vhba_bad_parent(void **state) {
        virConnectPtr conn = *state;
        struct nst_error err = NST_ERROR_INIT;
        char name[32] = "untouched";
        int before = count_node_devices(conn);

        assert_int_equal(
                nst_vhba_create(conn, "scsi_host99", WWNN, WWPN, name, sizeof(name), &err), -EIO);
        assert_error(&err, "NpivFailed", "vHBA with WWPN " WWPN " on parent scsi_host99: ");
        assert_error(&err, "NpivFailed", "Could not find parent device");

        assert_int_equal(nst_vhba_create(conn, "computer", WWNN, WWPN, name, sizeof(name), &err),
                         -EIO);
        assert_error(&err, "NpivFailed", "on parent computer: ");
        assert_error(&err, "NpivFailed", "not capable of vport operations");

        /* Escaped, so libvirt parses the document and looks for this exact
         * name instead of failing on malformed XML. */
        assert_int_equal(nst_vhba_create(conn, "scsi_host1</parent><x>", WWNN, WWPN, name,
                                         sizeof(name), &err),
                         -EIO);
        assert_error(&err, "NpivFailed", "on parent scsi_host1</parent><x>: ");
        assert_error(&err, "NpivFailed", "Could not find parent device");

        assert_string_equal(name, "untouched");
        assert_int_equal(count_node_devices(conn), before);
}

static void test_vhba_bad_arguments(void **state) {
        virConnectPtr conn = *state;
        struct nst_error err = NST_ERROR_INIT;
        char name[32];
        int before = count_node_devices(conn);

        assert_int_equal(nst_vhba_create(conn, "scsi_host1", WWNN, "10:00:00:00:c9:83:1b:4b",
                                         name, sizeof(name), &err),
                         -EINVAL);
        assert_error(&err, "InvalidInput",
                     "vHBA wwpn: WWN '10:00:00:00:c9:83:1b:4b': expected 16 hex digits");
        assert_int_equal(nst_vhba_create(conn, "scsi_host1", "6000000000000001", WWPN, name,
                                         sizeof(name), &err),
                         -EINVAL);
        assert_error(&err, "InvalidInput", "vHBA wwnn: WWN '6000000000000001': NAA type 6");
        assert_int_equal(nst_vhba_create(conn, "", WWNN, WWPN, name, sizeof(name), &err),
                         -EINVAL);
        assert_error(&err, "InvalidInput", "vHBA: no parent HBA");
        assert_int_equal(
                nst_vhba_create(conn, "scsi\nhost\0011", WWNN, WWPN, name, sizeof(name), &err),
                -EINVAL);
        assert_error(&err, "InvalidInput", "is not a node device name");
        assert_int_equal(nst_vhba_create(NULL, "scsi_host1", WWNN, WWPN, name, sizeof(name), &err),
                         -EINVAL);
        assert_error(&err, "InvalidInput", "no libvirt connection");
        assert_int_equal(count_node_devices(conn), before);

        /* A name that cannot be returned is a vHBA nobody could destroy: it
         * is taken back. */
        char tiny[4];
        assert_int_equal(
                nst_vhba_create(conn, "scsi_host1", WWNN, WWPN, tiny, sizeof(tiny), &err),
                -ENAMETOOLONG);
        assert_error(&err, "NpivFailed", "does not fit 4 bytes; destroyed it again");
        assert_int_equal(count_node_devices(conn), before);

        /* Destroy only ever touches scsi_hostN devices. */
        assert_int_equal(nst_vhba_destroy(conn, "computer", &err), -EINVAL);
        assert_error(&err, "InvalidInput", "vHBA 'computer': not a scsi_hostN node device name");
        assert_int_equal(nst_vhba_destroy(conn, "scsi_host", &err), -EINVAL);
        assert_int_equal(nst_vhba_destroy(conn, "scsi_host1x", &err), -EINVAL);
        assert_int_equal(nst_vhba_destroy(conn, NULL, &err), -EINVAL);
        assert_int_equal(nst_vhba_destroy(NULL, "scsi_host12", &err), -EINVAL);
        assert_int_equal(count_node_devices(conn), before);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_wwn_parse_good),
                cmocka_unit_test(test_wwn_parse_bad),
                cmocka_unit_test(test_wwn_generate),
                cmocka_unit_test(test_wwn_generate_bad_oui),
                cmocka_unit_test(test_vhba_xml),
                cmocka_unit_test(test_vhba_create_destroy),
                cmocka_unit_test(test_vhba_bad_parent),
                cmocka_unit_test(test_vhba_bad_arguments),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
