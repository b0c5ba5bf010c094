/* The claim service (sriov.c, claims.c) on a real scan of a fake sysfs tree:
 * requests, MACs, VLANs, VF settings (record backend), NPIV on the libvirt
 * test driver, all-or-nothing, release and restore. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <json.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugins/sriov/sriov.h"
#include "sriov_test.h"

struct fixture {
        struct tree tree;
        char record[128];
        struct sriov s;
        struct nst_libvirt_conn_iface lv;
        unsigned char script[64]; /* scripted random bytes, then a counter */
        size_t script_len, script_pos;
        unsigned counter;
};

static int scripted_random(void *ud, void *buf, size_t n) {
        struct fixture *f = ud;
        unsigned char *b = buf;
        for (size_t i = 0; i < n; i++)
                b[i] = f->script_pos < f->script_len ? f->script[f->script_pos++]
                                                     : (unsigned char)(++f->counter * 37);
        return 0;
}

static int lend_test_driver(void *self, virConnectPtr *ret, struct nst_error *err) {
        *ret = virConnectOpen("test:///default");
        return *ret ? 0 : nst_error_set(err, -EIO, "HypervisorUnavailable", "test driver");
}

static void quiet(void *ud, virErrorPtr e) {
}

static const char *const specs[] = {
        "{\"address\": \"0000:03:00.0\", \"physical_network\": \"physnet1\"}",
        "{\"address\": \"0000:03:00.1\", \"physical_network\": \"physnet2\", \"trusted\": true}",
        "{\"vendor_id\": \"10df\"}",
};
static const char *const aliases[] = {
        "{\"name\": \"vf\", \"vendor_id\": \"8086\", \"product_id\": \"10ed\", "
        "\"device_type\": \"type-VF\"}",
        "{\"name\": \"pf\", \"vendor_id\": \"8086\", \"product_id\": \"10fb\", "
        "\"device_type\": \"type-PF\"}",
        "{\"name\": \"fc\", \"vendor_id\": \"10df\", \"product_id\": \"e208\"}",
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        make_tree(&f->tree, "--fc-hbas 1");
        snprintf(f->record, sizeof(f->record), "%s/vf.jsonl", f->tree.dir);
        struct nst_error err = NST_ERROR_INIT;
        struct sriov *s = &f->s;
        snprintf(s->cfg.sysfs_root, sizeof(s->cfg.sysfs_root), "%s", f->tree.sys);
        memcpy(s->cfg.mac_prefix, "\xfa\x16\x3e", 3);
        snprintf(s->cfg.wwn_oui, sizeof(s->cfg.wwn_oui), "001a4a");
        char vf_spec[160];
        snprintf(vf_spec, sizeof(vf_spec), "record:%s", f->record);
        assert_int_equal(nst_pci_spec_set_parse(specs, NULL, 3, &s->specs, &err), 0);
        assert_int_equal(nst_pci_alias_set_parse(aliases, NULL, 3, &s->aliases, &err), 0);
        assert_int_equal(nst_vf_backend_from_spec(vf_spec, &s->vf, &err), 0);
        s->random = scripted_random;
        s->random_userdata = f;
        virSetErrorFunc(NULL, quiet);
        f->lv = (struct nst_libvirt_conn_iface){.self = f, .get = lend_test_driver};
        s->libvirt = &f->lv;
        assert_int_equal(nst_sriov_init(s, &err), 0);
        if (nst_sriov_rescan(s, NULL, &err) < 0)
                fail_msg("rescan: %s", err.message);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        nst_sriov_done(&f->s);
        remove_tree(&f->tree);
        free(f);
        return 0;
}

static int claim(struct fixture *f, const char *owner, const char *json,
                 struct nst_pci_claim **ret, size_t *n, struct nst_error *err) {
        json_object *reqs = json_tokener_parse(json);
        if (!reqs)
                fail_msg("bad test JSON %s", json);
        *ret = NULL;
        int r = nst_sriov_claim(&f->s, owner, reqs, NULL, 0, ret, n, err);
        json_object_put(reqs);
        return r;
}

static enum nst_pci_dev_state state_of(struct fixture *f, const char *addr) {
        struct nst_pci_addr a;
        enum nst_pci_dev_state st;
        assert_int_equal(nst_pci_addr_parse(addr, &a), 0);
        assert_int_equal(nst_pci_alloc_state(f->s.alloc, a, &st, NULL), 0);
        return st;
}

static size_t count_lines(struct fixture *f, const char *needle) {
        FILE *fp = fopen(f->record, "r");
        size_t n = 0;
        char line[512];
        while (fp && fgets(line, sizeof(line), fp))
                n += strstr(line, needle) != NULL;
        if (fp)
                fclose(fp);
        return n;
}

static void expect_error(struct nst_error *err, const char *cls, const char *part) {
        if (strcmp(err->cls, cls) != 0 || !strstr(err->message, part))
                fail_msg("expected %s '...%s...', got %s '%s'", cls, part, err->cls, err->message);
}

static void test_port_mac_vlan_and_settings(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_pci_claim *c;
        size_t n;
        /* The first drawn MAC collides with a given one in the same call. */
        memcpy(f->script, "\x00\x00\x01", 3);
        f->script_len = 3;
        assert_int_equal(claim(f, "owner-1",
                               "[{\"vnic_type\": \"direct\", \"physical_network\": \"physnet2\","
                               "  \"mac\": \"FA:16:3E:00:00:01\", \"vlan\": 0, \"trusted\": true},"
                               " {\"vnic_type\": \"direct\", \"physical_network\": \"physnet2\","
                               "  \"trusted\": true, \"id\": \"p2\"}]",
                               &c, &n, &err),
                         0);
        assert_int_equal(n, 2);
        assert_string_equal(c[0].mac, "fa:16:3e:00:00:01");
        assert_int_equal(c[0].vlan, 0);
        assert_int_equal(c[0].form, NST_PCI_FORM_INTERFACE);
        assert_string_equal(c[0].request, "port");
        assert_string_equal(c[1].request, "p2");
        assert_int_equal(c[1].vlan, -1);
        assert_memory_equal(c[1].mac, "fa:16:3e:", 9);
        assert_string_not_equal(c[1].mac, c[0].mac);
        assert_int_equal(count_lines(f, "\"trust\":true"), 2);
        assert_int_equal(state_of(f, "0000:03:00.1"), NST_PCI_UNAVAILABLE);
        /* The MACs are held: another owner cannot have one. */
        struct nst_pci_claim *c2 = NULL;
        assert_true(claim(f, "owner-2",
                          "[{\"vnic_type\": \"direct\", \"physical_network\": \"physnet1\","
                          "  \"mac\": \"fa:16:3e:00:00:01\"}]",
                          &c2, &n, &err) < 0);
        expect_error(&err, "InvalidInput", "MAC fa:16:3e:00:00:01 is already in use by owner-1");
        assert_null(c2);
        /* A port on physnet2 without "trusted" could use the trusted pool, but
         * a trusted=false one cannot (nova's rule). */
        assert_true(claim(f, "owner-2",
                          "[{\"vnic_type\": \"direct\", \"physical_network\": \"physnet2\","
                          "  \"trusted\": false}]",
                          &c2, &n, &err) < 0);
        expect_error(&err, "PciAllocationFailed", "");
        /* Release resets the VFs and frees the PF again. */
        assert_int_equal(nst_sriov_release(&f->s, "owner-1", &err), 0);
        assert_int_equal(count_lines(f, "\"trust\":false"), 2);
        assert_int_equal(state_of(f, "0000:03:00.1"), NST_PCI_AVAILABLE);
        assert_int_equal(state_of(f, c[0].address), NST_PCI_AVAILABLE);
        assert_int_equal(nst_sriov_release(&f->s, "owner-1", &err), 0); /* idempotent */
        free(c);
}

static void test_bad_requests_claim_nothing(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_pci_claim *c = NULL;
        size_t n;
        static const struct {
                const char *json, *cls, *part;
        } cases[] = {
                {"[{\"alias\": \"vf\", \"vnic_type\": \"direct\"}]", "InvalidInput",
                 "needs exactly one of alias"},
                {"[{\"alias\": \"nope\"}]", "PciAliasNotFound", "no [pci] alias called 'nope'"},
                {"[{\"alias\": \"vf\", \"count\": 0}]", "InvalidInput", "count: must be between 1"},
                {"[{\"alias\": \"vf\", \"colour\": 1}]", "InvalidInput", "colour: unknown key"},
                {"[{\"vnic_type\": \"direct\"}]", "InvalidInput", "physical_network: is required"},
                {"[{\"vnic_type\": \"direct\", \"physical_network\": \"physnet1\", "
                 "\"vlan\": 4095}]",
                 "InvalidInput", "vlan: must be between 0 and 4094, got 4095"},
                {"[{\"vnic_type\": \"direct\", \"physical_network\": \"physnet1\", "
                 "\"vlan\": [1, 2]}]",
                 "InvalidInput", "exactly one VLAN tag"},
                {"[{\"vnic_type\": \"direct\", \"physical_network\": \"physnet1\", "
                 "\"mac\": \"03:00:00:00:00:01\"}]",
                 "InvalidInput", "mac: must be a unicast MAC"},
                {"[{\"vnic_type\": \"direct-physical\", \"physical_network\": \"physnet1\", "
                 "\"vlan\": 5}]",
                 "InvalidInput", "direct-physical port takes the PF whole"},
                {"[{\"vnic_type\": \"macvtap\", \"physical_network\": \"physnet1\"}]",
                 "InvalidInput", "vnic_type: must be direct"},
                {"[{\"alias\": \"fc\", \"wwpn\": \"5001a4a000000001\"}]", "InvalidInput",
                 "give both wwnn and wwpn"},
                {"[{\"alias\": \"fc\", \"wwnn\": \"5001a4a000000001\", "
                 "\"wwpn\": \"60:01:a4:a0:00:00:00:02\"}]",
                 "InvalidInput", "wwpn"},
                /* All or nothing: 4 physnet1 VFs fit, then the PF cannot. */
                {"[{\"vnic_type\": \"direct\", \"physical_network\": \"physnet1\", "
                 "\"trusted\": true}, {\"alias\": \"vf\", \"count\": 8}, "
                 "{\"alias\": \"pf\", \"count\": 2}]",
                 "PciAllocationFailed", ""},
                {"[{\"alias\": \"vf\", \"count\": 9}]", "PciAllocationFailed", "free"},
        };
        for (size_t i = 0; i < NST_ARRAY_SIZE(cases); i++) {
                nst_error_clear(&err);
                if (claim(f, "owner-x", cases[i].json, &c, &n, &err) >= 0)
                        fail_msg("case %zu succeeded: %s", i, cases[i].json);
                expect_error(&err, cases[i].cls, cases[i].part);
                assert_null(c);
                struct nst_pci_alloc_stats st;
                nst_pci_alloc_stats(f->s.alloc, &st);
                assert_int_equal(st.claimed, 0);
                assert_null(nst_sriov_owner(&f->s, "owner-x"));
        }
        assert_int_equal(count_lines(f, "\"pf\""), 0); /* no VF was touched */
}

static void test_settings_undone_when_a_later_part_fails(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_pci_claim *c = NULL;
        size_t n;
        /* VF settings on a VF, then a FC request whose given WWPN is taken. */
        assert_int_equal(claim(f, "fc-1",
                               "[{\"alias\": \"fc\", \"wwnn\": \"5001a4a000000001\","
                               "  \"wwpn\": \"5001a4a000000002\"}]",
                               &c, &n, &err),
                         0);
        assert_string_equal(c[0].wwpn, "5001a4a000000002");
        assert_memory_equal(c[0].vhba, "scsi_host", 9);
        free(c);
        c = NULL;
        assert_true(claim(f, "owner-y",
                          "[{\"vnic_type\": \"direct\", \"physical_network\": \"physnet2\","
                          "  \"spoofchk\": false},"
                          " {\"alias\": \"fc\", \"wwnn\": \"5001a4a000000003\","
                          "  \"wwpn\": \"0x5001A4A000000002\"}]",
                          &c, &n, &err) < 0);
        expect_error(&err, "InvalidInput", "WWPN 5001a4a000000002 is already in use by fc-1");
        assert_int_equal(count_lines(f, "\"spoofchk\":false"), 1);
        assert_int_equal(count_lines(f, "\"spoofchk\":true"), 1); /* undone */
        assert_null(nst_sriov_owner(&f->s, "owner-y"));
        assert_int_equal(nst_sriov_release(&f->s, "fc-1", &err), 0);
        virConnectPtr conn = virConnectOpen("test:///default");
        virNodeDevicePtr d = virNodeDeviceLookupByName(conn, "scsi_host12");
        assert_null(d); /* the vHBA is gone */
        virConnectClose(conn);
}

static void test_restore(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_pci_claim rec[2] = {
                {.request = "port", .address = "0000:03:10.0", .form = NST_PCI_FORM_INTERFACE,
                 .mac = "fa:16:3e:aa:bb:cc", .vlan = 7},
                {.request = "pf#0", .address = "0000:03:00.1", .vlan = -1},
        };
        assert_int_equal(nst_sriov_restore(&f->s, "old-1", rec, 2, &err), 0);
        assert_int_equal(nst_sriov_restore(&f->s, "old-1", rec, 2, &err), 0); /* idempotent */
        assert_int_equal(state_of(f, "0000:03:10.0"), NST_PCI_CLAIMED);
        assert_int_equal(state_of(f, "0000:03:00.0"), NST_PCI_UNAVAILABLE);
        assert_int_equal(state_of(f, "0000:03:10.1"), NST_PCI_UNAVAILABLE); /* PF1's VF */
        /* Someone else's record of the same device or MAC is refused. */
        assert_true(nst_sriov_restore(&f->s, "old-2", rec, 1, &err) < 0);
        expect_error(&err, "PciAllocationFailed", "also held by instance old-1");
        struct nst_pci_claim other = {.address = "0000:03:10.2", .form = NST_PCI_FORM_INTERFACE,
                                      .mac = "fa:16:3e:aa:bb:cc", .vlan = -1};
        assert_true(nst_sriov_restore(&f->s, "old-2", &other, 1, &err) < 0);
        expect_error(&err, "PciAllocationFailed", "MAC fa:16:3e:aa:bb:cc");
        assert_int_equal(state_of(f, "0000:03:10.2"), NST_PCI_AVAILABLE);
        struct nst_pci_claim *c = NULL;
        size_t n;
        assert_true(claim(f, "new", "[{\"alias\": \"pf\", \"count\": 1}]", &c, &n, &err) < 0);
        expect_error(&err, "PciAllocationFailed", "");
        assert_int_equal(nst_sriov_release(&f->s, "old-1", &err), 0);
        assert_int_equal(claim(f, "new", "[{\"alias\": \"pf\", \"count\": 2}]", &c, &n, &err), 0);
        assert_int_equal(n, 2);
        free(c);
        assert_int_equal(nst_sriov_release(&f->s, "new", &err), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_port_mac_vlan_and_settings, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_requests_claim_nothing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_settings_undone_when_a_later_part_fails,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_restore, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, remove_live_trees);
}
