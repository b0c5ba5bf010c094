/* SR-IOV readiness report: a good tree is ready with every check ok, and
 * each broken condition (made with the generator's options, by editing the
 * tree, or by editing a scanned inventory) yields the right check, status,
 * device, message and fix. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugins/sriov/pci_diagnose.h"
#include "plugins/sriov/pci_scan.h"
#include "sriov_test.h"

static struct nst_pci_inventory *scan_with(const struct tree *t, const char *cmdline_path) {
        struct nst_pci_scan_options o = {.sysfs_root = t->sys, .cmdline_path = cmdline_path};
        struct nst_pci_inventory *inv = NULL;
        struct nst_error err = NST_ERROR_INIT;
        if (nst_pci_scan(&o, &inv, &err) < 0)
                fail_msg("scan: %s: %s", err.cls, err.message);
        return inv;
}

/* Scans the tree and removes it: diagnose must not need it. */
static struct nst_pci_inventory *scan_and_remove(struct tree *t) {
        struct nst_pci_inventory *inv = scan_with(t, t->cmdline);
        remove_tree(t);
        return inv;
}

/* Writes a 16-bit config space register of a function. */
static void poke_config(const struct tree *t, const char *bdf, off_t at, uint16_t value) {
        char p[512];
        snprintf(p, sizeof(p), "%s/bus/pci/devices/%s/config", t->sys, bdf);
        int fd = open(p, O_WRONLY);
        assert_true(fd >= 0);
        uint8_t le[2] = {value & 0xff, value >> 8};
        assert_int_equal(pwrite(fd, le, 2, at), 2);
        close(fd);
}

/* ---- the report ---- */

static json_object *diagnose(const struct nst_pci_inventory *inv) {
        json_object *d = nst_pci_diagnose(inv);
        assert_non_null(d);
        int flags = JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE;
        print_message("%s\n", json_object_to_json_string_ext(d, flags));
        return d;
}

static bool ready(json_object *d) {
        json_object *r;
        assert_true(json_object_object_get_ex(d, "ready", &r));
        assert_true(json_object_is_type(r, json_type_boolean));
        return json_object_get_boolean(r);
}

static json_object *checks(json_object *d) {
        json_object *c;
        assert_true(json_object_object_get_ex(d, "checks", &c));
        assert_true(json_object_is_type(c, json_type_array));
        return c;
}

static const char *field(json_object *check, const char *key) {
        json_object *v;
        if (!json_object_object_get_ex(check, key, &v))
                return NULL;
        return json_object_get_string(v);
}

static size_t count_checks(json_object *d, const char *name, const char *status) {
        json_object *c = checks(d);
        size_t n = 0;
        for (size_t i = 0; i < json_object_array_length(c); i++) {
                json_object *x = json_object_array_get_idx(c, i);
                n += (!name || strcmp(field(x, "check"), name) == 0) &&
                     (!status || strcmp(field(x, "status"), status) == 0);
        }
        return n;
}

/* The check named so (about device, or a host check when device is NULL);
 * fails when absent. */
static json_object *get_check(json_object *d, const char *name, const char *device) {
        json_object *c = checks(d);
        for (size_t i = 0; i < json_object_array_length(c); i++) {
                json_object *x = json_object_array_get_idx(c, i);
                const char *dev = field(x, "device");
                if (strcmp(field(x, "check"), name) == 0 &&
                    (device ? dev && strcmp(dev, device) == 0 : !dev))
                        return x;
        }
        fail_msg("no check %s for %s", name, device ? device : "the host");
        return NULL;
}

/* status, and substrings of message and fix (NULL: fix must be absent). */
static void expect(json_object *d, const char *name, const char *device, const char *status,
                   const char *in_message, const char *in_fix) {
        json_object *x = get_check(d, name, device);
        assert_string_equal(field(x, "status"), status);
        const char *message = field(x, "message");
        assert_non_null(message);
        if (in_message && !strstr(message, in_message))
                fail_msg("%s: message \"%s\" lacks \"%s\"", name, message, in_message);
        if (device)
                assert_non_null(strstr(message, device));
        const char *fix = field(x, "fix");
        if (!in_fix) {
                assert_null(fix);
                return;
        }
        assert_non_null(fix);
        if (!strstr(fix, in_fix))
                fail_msg("%s: fix \"%s\" lacks \"%s\"", name, fix, in_fix);
}

/* ---- tests ---- */

static void test_good_tree_is_ready(void **state) {
        struct tree t;
        make_tree(&t, "--vfio 2 --fc-hbas 1");
        struct nst_pci_inventory *inv = scan_and_remove(&t);
        json_object *d = diagnose(inv);
        assert_true(ready(d));
        /* 4 host checks; pf_driver, vfs_enabled, vf_driver for each of 3 PFs */
        assert_int_equal(json_object_array_length(checks(d)), 4 + 3 * 3);
        assert_int_equal(count_checks(d, NULL, "ok"), 13);
        expect(d, "iommu_groups", NULL, "ok", "IOMMU is on", NULL);
        expect(d, "iommu_cmdline", NULL, "ok", "enables the IOMMU", NULL);
        expect(d, "vfio_driver", NULL, "ok", "vfio-pci", NULL);
        expect(d, "sriov_capable", NULL, "ok",
               "3 SR-IOV capable functions (PF): 0000:03:00.0, 0000:03:00.1, 0000:05:00.0; 10 VFs",
               NULL);
        expect(d, "pf_driver", "0000:03:00.0", "ok", "bound to ixgbe", NULL);
        expect(d, "vfs_enabled", "0000:03:00.1", "ok", "4 of 64 VFs enabled", NULL);
        expect(d, "vf_driver", "0000:03:00.0", "ok", "2 bound to vfio-pci, 2 to ixgbevf", NULL);
        expect(d, "pf_driver", "0000:05:00.0", "ok", "(lpfc, scsi_host1) is bound to lpfc", NULL);
        expect(d, "vf_driver", "0000:05:00.0", "ok", "2 bound to vfio-pci", NULL);
        json_object_put(d);
        nst_pci_inventory_free(inv);
}

static void test_no_iommu(void **state) {
        struct tree t;
        make_tree(&t, "--no-iommu");
        struct nst_pci_inventory *inv = scan_and_remove(&t);
        json_object *d = diagnose(inv);
        assert_false(ready(d));
        expect(d, "iommu_groups", NULL, "error", "no device can be passed through",
               "enable VT-d (Intel) or AMD-Vi/IOMMU (AMD) in the BIOS and boot with "
               "intel_iommu=on");
        expect(d, "iommu_cmdline", NULL, "ok", NULL, NULL);
        assert_int_equal(count_checks(d, NULL, "error"), 1);
        assert_int_equal(count_checks(d, "iommu_group", NULL), 0); /* said once, for the host */
        json_object_put(d);
        nst_pci_inventory_free(inv);
}

static void test_iommu_cmdline(void **state) {
        /* IOMMU on without a flag (AMD's default): a warning, still ready. */
        struct tree t;
        make_tree(&t, "--cmdline 'BOOT_IMAGE=/vmlinuz ro quiet'");
        struct nst_pci_inventory *inv = scan_with(&t, t.cmdline);
        json_object *d = diagnose(inv);
        assert_true(ready(d));
        expect(d, "iommu_cmdline", NULL, "warning", "AMD enables AMD-Vi by default",
               "intel_iommu=on iommu=pt");
        json_object_put(d);
        nst_pci_inventory_free(inv);

        /* The command line not read at all. */
        inv = scan_with(&t, NULL);
        d = diagnose(inv);
        assert_true(ready(d));
        expect(d, "iommu_cmdline", NULL, "warning", "was not read", "/proc/cmdline");
        json_object_put(d);
        nst_pci_inventory_free(inv);
        remove_tree(&t);

        /* No flag and no IOMMU: both are errors. */
        make_tree(&t, "--no-iommu --cmdline 'ro quiet'");
        inv = scan_and_remove(&t);
        d = diagnose(inv);
        assert_false(ready(d));
        expect(d, "iommu_cmdline", NULL, "error", "the IOMMU is off", "GRUB_CMDLINE_LINUX");
        expect(d, "iommu_groups", NULL, "error", NULL, "intel_iommu=on");
        json_object_put(d);
        nst_pci_inventory_free(inv);
}

static void test_no_vfio_driver(void **state) {
        struct tree t;
        make_tree(&t, "--no-vfio-driver");
        struct nst_pci_inventory *inv = scan_and_remove(&t);
        json_object *d = diagnose(inv);
        assert_false(ready(d));
        expect(d, "vfio_driver", NULL, "error", "vfio-pci driver is not loaded",
               "modprobe vfio-pci");
        assert_int_equal(count_checks(d, NULL, "error"), 1);
        json_object_put(d);
        nst_pci_inventory_free(inv);
}

static void test_no_sriov_device(void **state) {
        struct tree t;
        make_tree(&t, "--totalvfs 0 --numvfs 0");
        struct nst_pci_inventory *inv = scan_and_remove(&t);
        json_object *d = diagnose(inv);
        assert_false(ready(d));
        expect(d, "sriov_capable", NULL, "error", "no SR-IOV capable device",
               "check the card and that SR-IOV is enabled in the BIOS");
        assert_int_equal(count_checks(d, "pf_driver", NULL), 0);
        json_object_put(d);
        nst_pci_inventory_free(inv);
}

static void test_no_vfs_anywhere(void **state) {
        struct tree t;
        make_tree(&t, "--numvfs 0");
        struct nst_pci_inventory *inv = scan_and_remove(&t);
        json_object *d = diagnose(inv);
        assert_false(ready(d));
        expect(d, "vfs_enabled", "0000:03:00.0", "error", "has no VFs enabled",
               "echo N > /sys/bus/pci/devices/0000:03:00.0/sriov_numvfs (N <= 64)");
        expect(d, "vfs_enabled", "0000:03:00.1", "error", "no PF on this host has VFs",
               "echo N > /sys/bus/pci/devices/0000:03:00.1/sriov_numvfs");
        assert_int_equal(count_checks(d, "vf_driver", NULL), 0);
        json_object_put(d);
        nst_pci_inventory_free(inv);
}

static void test_unbound_pf(void **state) {
        struct tree t;
        make_tree(&t, "--unbound-pf");
        struct nst_pci_inventory *inv = scan_and_remove(&t);
        json_object *d = diagnose(inv);
        assert_true(ready(d)); /* the other PF has VFs */
        expect(d, "pf_driver", "0000:03:00.0", "warning", "is not bound to any driver",
               "echo 0000:03:00.0 > /sys/bus/pci/drivers_probe");
        expect(d, "pf_driver", "0000:03:00.0", "warning", "fails with ENOENT", "modprobe");
        expect(d, "vfs_enabled", "0000:03:00.0", "warning", "has no VFs enabled",
               "bind the PF to its driver first");
        expect(d, "pf_driver", "0000:03:00.1", "ok", NULL, NULL);
        expect(d, "vfs_enabled", "0000:03:00.1", "ok", NULL, NULL);
        json_object_put(d);
        nst_pci_inventory_free(inv);
}

static void test_totalvfs_lowered(void **state) {
        struct tree t;
        make_tree(&t, "--driver-totalvfs 63");
        struct nst_pci_inventory *inv = scan_and_remove(&t);
        json_object *d = diagnose(inv);
        assert_true(ready(d));
        expect(d, "totalvfs_lowered", "0000:03:00.0", "warning",
               "lowered sriov_totalvfs to 63, below the device's TotalVFs of 64", "firmware");
        expect(d, "totalvfs_lowered", "0000:03:00.1", "warning", NULL, "driver");
        expect(d, "vfs_enabled", "0000:03:00.0", "ok", "4 of 63 VFs", NULL);
        json_object_put(d);
        nst_pci_inventory_free(inv);
}

#define SRIOV_CAP 0x160 /* where the generator puts it */

static void test_vf_config_mismatch(void **state) {
        struct tree t;
        make_tree(&t, "");
        poke_config(&t, "0000:03:00.0", SRIOV_CAP + 0x08, 0x0008); /* VF Enable clear */
        poke_config(&t, "0000:03:00.1", SRIOV_CAP + 0x10, 2);      /* NumVFs 2 */
        struct nst_pci_inventory *inv = scan_and_remove(&t);
        json_object *d = diagnose(inv);
        assert_true(ready(d));
        expect(d, "vf_config", "0000:03:00.0", "warning",
               "sriov_numvfs is 4 but VF Enable is clear",
               "echo 0 > /sys/bus/pci/devices/0000:03:00.0/sriov_numvfs, then echo 4");
        expect(d, "vf_config", "0000:03:00.1", "warning",
               "sriov_numvfs is 4 but NumVFs in its SR-IOV capability is 2", "dmesg");
        json_object_put(d);
        nst_pci_inventory_free(inv);
}

static void test_scan_warnings(void **state) {
        struct tree t;
        make_tree(&t, "");
        char p[512];
        snprintf(p, sizeof(p), "%s/bus/pci/devices/0000:03:10.2/class", t.sys);
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fputs("0x010802\n", f);
        fclose(f);
        struct nst_pci_inventory *inv = scan_and_remove(&t);
        json_object *d = diagnose(inv);
        assert_true(ready(d));
        expect(d, "scan", "0000:03:10.2", "warning", "only ever of its PF's type", "rescan");
        expect(d, "vfs_found", "0000:03:00.0", "warning", "sriov_numvfs is 4 but the scan kept 3",
               "rescan");
        assert_int_equal(count_checks(d, "vfs_found", NULL), 1);
        json_object_put(d);
        nst_pci_inventory_free(inv);
}

/* Conditions the generator cannot make, set in a scanned inventory. */
static void test_vf_driver_and_groups(void **state) {
        struct tree t;
        make_tree(&t, "");
        struct nst_pci_inventory *inv = scan_and_remove(&t);
        struct nst_pci_function *pf = &inv->fns[1];
        assert_string_equal(pf->address, "0000:03:00.0");
        snprintf(inv->fns[pf->vfs[0]].driver, sizeof(inv->fns[0].driver), "pci-stub");
        inv->fns[pf->vfs[1]].driver[0] = '\0';
        inv->fns[pf->vfs[3]].iommu_group = -1;
        json_object *d = diagnose(inv);
        assert_true(ready(d));
        expect(d, "vf_driver", "0000:03:00.0", "warning",
               "1 bound to pci-stub, 1 unbound, 2 to ixgbevf",
               "/sys/bus/pci/drivers/pci-stub/unbind");
        expect(d, "iommu_group", "0000:03:00.0", "warning",
               "1 of the 5 functions of PF 0000:03:00.0", "ACS");
        expect(d, "vf_driver", "0000:03:00.1", "ok", "4 bound to ixgbevf", NULL);
        assert_int_equal(count_checks(d, "iommu_group", NULL), 1);
        json_object_put(d);
        nst_pci_inventory_free(inv);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_good_tree_is_ready, remove_live_trees),
                cmocka_unit_test_teardown(test_no_iommu, remove_live_trees),
                cmocka_unit_test_teardown(test_iommu_cmdline, remove_live_trees),
                cmocka_unit_test_teardown(test_no_vfio_driver, remove_live_trees),
                cmocka_unit_test_teardown(test_no_sriov_device, remove_live_trees),
                cmocka_unit_test_teardown(test_no_vfs_anywhere, remove_live_trees),
                cmocka_unit_test_teardown(test_unbound_pf, remove_live_trees),
                cmocka_unit_test_teardown(test_totalvfs_lowered, remove_live_trees),
                cmocka_unit_test_teardown(test_vf_config_mismatch, remove_live_trees),
                cmocka_unit_test_teardown(test_scan_warnings, remove_live_trees),
                cmocka_unit_test_teardown(test_vf_driver_and_groups, remove_live_trees),
        };
        return cmocka_run_group_tests(tests, NULL, remove_live_trees);
}
