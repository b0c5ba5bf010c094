/* PCI discovery against fake sysfs trees from tests/fixtures/mkfakesysfs.py:
 * every field of every function, the PF <-> VF links, host facts, the trees
 * the scan must refuse or trim (class mismatch, dangling links, orphans),
 * libpci's fatal-error path (no exit, no leak, retries) and the time to scan
 * 4 PFs x 256 VFs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "plugins/sriov/pci_scan.h"
#include "sriov_test.h"

static void tree_path(const struct tree *t, const char *rel, char *buf, size_t len) {
        snprintf(buf, len, "%s/sys/%s", t->dir, rel);
}

static void tree_unlink(const struct tree *t, const char *rel) {
        char p[512];
        tree_path(t, rel, p, sizeof(p));
        if (unlink(p) != 0)
                fail_msg("unlink %s: %s", p, strerror(errno));
}

static void tree_write(const struct tree *t, const char *rel, const char *text) {
        char p[512];
        tree_path(t, rel, p, sizeof(p));
        FILE *f = fopen(p, "w");
        if (!f)
                fail_msg("open %s: %s", p, strerror(errno));
        fputs(text, f);
        fclose(f);
}

static void tree_symlink(const struct tree *t, const char *rel, const char *target) {
        char p[512];
        tree_path(t, rel, p, sizeof(p));
        if (symlink(target, p) != 0)
                fail_msg("symlink %s: %s", p, strerror(errno));
}

static void write_cmdline(const struct tree *t, const char *text) {
        FILE *f = fopen(t->cmdline, "w");
        assert_non_null(f);
        fprintf(f, "%s\n", text);
        fclose(f);
}

static int scan(const struct tree *t, const char *cmdline_path, struct nst_pci_inventory **ret,
                struct nst_error *err) {
        struct nst_pci_scan_options o = {.sysfs_root = t->sys, .cmdline_path = cmdline_path};
        return nst_pci_scan(&o, ret, err);
}

static struct nst_pci_inventory *scan_ok(const struct tree *t) {
        struct nst_pci_inventory *inv = NULL;
        struct nst_error err = NST_ERROR_INIT;
        if (scan(t, t->cmdline, &inv, &err) < 0)
                fail_msg("scan: %s: %s", err.cls, err.message);
        assert_non_null(inv);
        return inv;
}

static size_t find(const struct nst_pci_inventory *inv, const char *address) {
        struct nst_pci_addr a;
        assert_int_equal(nst_pci_addr_parse(address, &a), 0);
        return nst_pci_inventory_find(inv, a);
}

static const struct nst_pci_function *fn(const struct nst_pci_inventory *inv, const char *address) {
        size_t i = find(inv, address);
        if (i == NST_PCI_NONE)
                fail_msg("%s is not in the inventory", address);
        return &inv->fns[i];
}

static bool has_warning(const struct nst_pci_inventory *inv, const char *a, const char *b) {
        for (size_t i = 0; i < inv->n_warnings; i++)
                if (strstr(inv->warnings[i], a) && (!b || strstr(inv->warnings[i], b)))
                        return true;
        return false;
}

static void print_warnings(const struct nst_pci_inventory *inv) {
        for (size_t i = 0; i < inv->n_warnings; i++)
                print_message("  warning: %s\n", inv->warnings[i]);
}

/* Sorted, indexed, and every PF <-> VF link agrees in both directions. */
static void check_structure(const struct nst_pci_inventory *inv) {
        for (size_t i = 0; i < inv->n; i++) {
                const struct nst_pci_function *f = &inv->fns[i];
                if (i > 0)
                        assert_true(nst_pci_addr_key(inv->fns[i - 1].addr) <
                                    nst_pci_addr_key(f->addr));
                char a[NST_PCI_ADDR_LEN];
                nst_pci_addr_format(f->addr, a);
                assert_string_equal(a, f->address);
                assert_int_equal(nst_pci_inventory_find(inv, f->addr), i);
                if (f->type == NST_PCI_TYPE_VF) {
                        assert_true(f->parent < inv->n);
                        const struct nst_pci_function *pf = &inv->fns[f->parent];
                        assert_int_equal(pf->type, NST_PCI_TYPE_PF);
                        assert_int_equal(f->class_code >> 16, pf->class_code >> 16);
                        bool listed = false;
                        for (size_t k = 0; k < pf->n_vfs; k++)
                                listed |= pf->vfs[k] == i;
                        assert_true(listed);
                        assert_true(f->vf_number >= 0);
                        assert_int_equal(f->n_vfs, 0);
                } else {
                        assert_int_equal(f->parent, NST_PCI_NONE);
                        assert_int_equal(f->vf_number, -1);
                }
                for (size_t k = 0; k < f->n_vfs; k++) {
                        assert_int_equal(f->type, NST_PCI_TYPE_PF);
                        assert_true(f->vfs[k] < inv->n);
                        assert_int_equal(inv->fns[f->vfs[k]].parent, i);
                        if (k > 0)
                                assert_true(inv->fns[f->vfs[k - 1]].vf_number <
                                            inv->fns[f->vfs[k]].vf_number);
                }
        }
}

/* ---- the default tree, field by field ---- */

struct want {
        const char *address;
        uint16_t vendor, device, subsys_vendor, subsys_device;
        uint32_t class_code;
        int numa_node, iommu_group;
        const char *driver, *netdev, *scsi_host;
        enum nst_pci_type type;
        const char *parent; /* VF */
        int vf_number;      /* VF */
};

#define ROOT_PORT(a, numa, group)                                                                  \
        {a, 0x8086, 0x6f08, 0, 0, 0x060400, numa, group, "pcieport", "", "", NST_PCI_TYPE_PCI,   \
         NULL, -1}
#define NIC_PF(a, group, net)                                                                      \
        {a, 0x8086, 0x10fb, 0x8086, 0x000c, 0x020000, 0, group, "ixgbe", net, "", NST_PCI_TYPE_PF, \
         NULL, -1}
#define NIC_VF(a, group, drv, net, pf, n)                                                          \
        {a, 0x8086, 0x10ed, 0x8086, 0x000c, 0x020000, 0, group, drv, net, "", NST_PCI_TYPE_VF, pf, \
         n}
#define FC_VF(a, group, pf, n)                                                                     \
        {a, 0x10df, 0xe208, 0x10df, 0xe208, 0x0c0400, 1, group, "vfio-pci", "", "",             \
         NST_PCI_TYPE_VF, pf, n}

/* `--vfio 2 --fc-hbas 1`: a dual-port 82599 whose first two VFs per PF are on
 * vfio-pci, and an Emulex HBA with two VFs. IOMMU groups are numbered in the
 * generator's writing order: root port, PFs, then each PF's VFs. */
static const struct want default_tree[] = {
        ROOT_PORT("0000:00:02.0", 0, 0),
        ROOT_PORT("0000:00:03.0", 1, 11),
        NIC_PF("0000:03:00.0", 1, "enp3s0f0"),
        NIC_PF("0000:03:00.1", 2, "enp3s0f1"),
        NIC_VF("0000:03:10.0", 3, "vfio-pci", "", "0000:03:00.0", 0),
        NIC_VF("0000:03:10.1", 7, "vfio-pci", "", "0000:03:00.1", 0),
        NIC_VF("0000:03:10.2", 4, "vfio-pci", "", "0000:03:00.0", 1),
        NIC_VF("0000:03:10.3", 8, "vfio-pci", "", "0000:03:00.1", 1),
        NIC_VF("0000:03:10.4", 5, "ixgbevf", "enp3s16f4", "0000:03:00.0", 2),
        NIC_VF("0000:03:10.5", 9, "ixgbevf", "enp3s16f5", "0000:03:00.1", 2),
        NIC_VF("0000:03:10.6", 6, "ixgbevf", "enp3s16f6", "0000:03:00.0", 3),
        NIC_VF("0000:03:10.7", 10, "ixgbevf", "enp3s16f7", "0000:03:00.1", 3),
        {"0000:05:00.0", 0x10df, 0xe200, 0x10df, 0xe281, 0x0c0400, 1, 12, "lpfc", "", "scsi_host1",
         NST_PCI_TYPE_PF, NULL, -1},
        FC_VF("0000:05:10.0", 13, "0000:05:00.0", 0),
        FC_VF("0000:05:10.2", 14, "0000:05:00.0", 1),
};

static void check_function(const struct nst_pci_inventory *inv, size_t i, const struct want *w) {
        const struct nst_pci_function *f = &inv->fns[i];
        print_message("  %s\n", w->address);
        assert_string_equal(f->address, w->address);
        assert_int_equal(f->vendor, w->vendor);
        assert_int_equal(f->device, w->device);
        assert_int_equal(f->subsys_vendor, w->subsys_vendor);
        assert_int_equal(f->subsys_device, w->subsys_device);
        assert_int_equal(f->class_code, w->class_code);
        assert_int_equal(f->numa_node, w->numa_node);
        assert_int_equal(f->iommu_group, w->iommu_group);
        assert_string_equal(f->driver, w->driver);
        assert_string_equal(f->netdev, w->netdev);
        assert_string_equal(f->scsi_host, w->scsi_host);
        assert_int_equal(f->type, w->type);
        if (w->type == NST_PCI_TYPE_VF) {
                assert_int_equal(f->parent, find(inv, w->parent));
                assert_int_equal(f->vf_number, w->vf_number);
                assert_int_equal(inv->fns[f->parent].vfs[w->vf_number], i);
        } else {
                assert_int_equal(f->parent, NST_PCI_NONE);
                assert_int_equal(f->vf_number, -1);
        }
        if (w->type != NST_PCI_TYPE_PF) {
                assert_false(f->cap.present);
                assert_int_equal(f->sysfs_total_vfs, -1);
                assert_int_equal(f->sysfs_num_vfs, -1);
                assert_int_equal(f->n_vfs, 0);
                assert_null(f->vfs);
        }
}

static void check_pf_cap(const struct nst_pci_function *pf, uint16_t num_vfs, uint16_t vf_device) {
        assert_true(pf->cap.present);
        assert_int_equal(pf->cap.ctrl, 0x0009); /* VF Enable + VF MSE */
        assert_int_equal(pf->cap.initial_vfs, 64);
        assert_int_equal(pf->cap.total_vfs, 64);
        assert_int_equal(pf->cap.num_vfs, num_vfs);
        assert_int_equal(pf->cap.offset, 128);
        assert_int_equal(pf->cap.stride, 2);
        assert_int_equal(pf->cap.vf_device, vf_device);
        assert_int_equal(pf->sysfs_total_vfs, 64);
        assert_int_equal(pf->sysfs_num_vfs, num_vfs);
        assert_int_equal(pf->n_vfs, num_vfs);
}

static void test_default_tree(void **state) {
        struct tree t;
        make_tree(&t, "--vfio 2 --fc-hbas 1");
        struct nst_pci_inventory *inv = scan_ok(&t);
        print_warnings(inv);
        assert_int_equal(inv->n_warnings, 0);
        assert_int_equal(inv->n, NST_ARRAY_SIZE(default_tree));
        for (size_t i = 0; i < inv->n; i++)
                check_function(inv, i, &default_tree[i]);
        check_pf_cap(fn(inv, "0000:03:00.0"), 4, 0x10ed);
        check_pf_cap(fn(inv, "0000:03:00.1"), 4, 0x10ed);
        check_pf_cap(fn(inv, "0000:05:00.0"), 2, 0xe208);
        check_structure(inv);

        struct nst_pci_addr absent = {.bus = 0x03, .slot = 0x11};
        assert_int_equal(nst_pci_inventory_find(inv, absent), NST_PCI_NONE);

        const struct nst_pci_host_facts *h = &inv->facts;
        assert_true(h->iommu_groups);
        assert_true(h->vfio_pci_driver);
        assert_true(h->cmdline_read);
        assert_true(h->iommu_cmdline); /* the generator's default: intel_iommu=on iommu=pt */
        assert_int_equal(h->n_numa_nodes, 2);
        assert_int_equal(h->node_socket[0], 0); /* two CPUs per node, four per socket */
        assert_int_equal(h->node_socket[1], 0);
        assert_int_equal(h->node_socket[2], -1);
        nst_pci_inventory_free(inv);
        remove_tree(&t);
}

static void test_driver_lowered_totalvfs(void **state) {
        struct tree t;
        make_tree(&t, "--driver-totalvfs 63 --numvfs 8");
        struct nst_pci_inventory *inv = scan_ok(&t);
        for (size_t p = 0; p < 2; p++) {
                const struct nst_pci_function *pf = fn(inv, p ? "0000:03:00.1" : "0000:03:00.0");
                assert_int_equal(pf->sysfs_total_vfs, 63);
                assert_int_equal(pf->cap.total_vfs, 64);
                assert_int_equal(pf->sysfs_num_vfs, 8);
                assert_int_equal(pf->n_vfs, 8);
        }
        assert_int_equal(inv->n, 1 + 2 + 16);
        check_structure(inv);
        nst_pci_inventory_free(inv);
        remove_tree(&t);
}

static void test_unbound_pf_and_no_sriov(void **state) {
        struct tree t;
        make_tree(&t, "--unbound-pf");
        struct nst_pci_inventory *inv = scan_ok(&t);
        const struct nst_pci_function *pf = fn(inv, "0000:03:00.0");
        assert_int_equal(pf->type, NST_PCI_TYPE_PF);
        assert_string_equal(pf->driver, "");
        assert_string_equal(pf->netdev, "");
        assert_int_equal(pf->sysfs_num_vfs, 0);
        assert_int_equal(pf->n_vfs, 0);
        assert_int_equal(fn(inv, "0000:03:00.1")->n_vfs, 4);
        nst_pci_inventory_free(inv);
        remove_tree(&t);

        /* No SR-IOV capability, no sriov_* files: plain PCI functions. */
        make_tree(&t, "--totalvfs 0 --numvfs 0");
        inv = scan_ok(&t);
        assert_int_equal(inv->n, 3);
        pf = fn(inv, "0000:03:00.0");
        assert_int_equal(pf->type, NST_PCI_TYPE_PCI);
        assert_false(pf->cap.present);
        assert_int_equal(pf->sysfs_total_vfs, -1);
        nst_pci_inventory_free(inv);
        remove_tree(&t);
}

static void test_fc_hosts(void **state) {
        struct tree t;
        make_tree(&t, "--nics 0 --fc-hbas 2 --fc-numvfs 3");
        struct nst_pci_inventory *inv = scan_ok(&t);
        assert_int_equal(inv->n, 2 + 2 + 6);
        const struct nst_pci_function *a = fn(inv, "0000:03:00.0"), *b = fn(inv, "0000:05:00.0");
        assert_string_equal(a->scsi_host, "scsi_host1");
        assert_string_equal(b->scsi_host, "scsi_host2");
        assert_true(nst_pci_is_fc(a->class_code));
        assert_int_equal(a->n_vfs, 3);
        for (size_t k = 0; k < a->n_vfs; k++) {
                const struct nst_pci_function *vf = &inv->fns[a->vfs[k]];
                assert_int_equal(vf->class_code, 0x0c0400);
                assert_string_equal(vf->driver, "lpfc");
                assert_string_equal(vf->scsi_host, ""); /* the FC host is the PF's */
                assert_string_equal(vf->netdev, "");
        }
        check_structure(inv);
        nst_pci_inventory_free(inv);
        remove_tree(&t);
}

/* ---- host facts ---- */

static void test_no_iommu_no_vfio_no_numa(void **state) {
        struct tree t;
        make_tree(&t, "--no-iommu --no-vfio-driver --numa-nodes 0");
        struct nst_pci_inventory *inv = scan_ok(&t);
        assert_false(inv->facts.iommu_groups);
        assert_false(inv->facts.vfio_pci_driver);
        assert_int_equal(inv->facts.n_numa_nodes, 0);
        for (size_t i = 0; i < NST_PCI_MAX_NUMA; i++)
                assert_int_equal(inv->facts.node_socket[i], -1);
        for (size_t i = 0; i < inv->n; i++) {
                assert_int_equal(inv->fns[i].iommu_group, -1);
                assert_int_equal(inv->fns[i].numa_node, -1);
        }
        assert_int_equal(inv->n, 11);
        nst_pci_inventory_free(inv);

        /* vfio-pci as a module that has no PCI driver directory yet */
        char p[512];
        tree_path(&t, "module/vfio_pci", p, sizeof(p));
        assert_int_equal(mkdir(p, 0755), 0);
        inv = scan_ok(&t);
        assert_true(inv->facts.vfio_pci_driver);
        nst_pci_inventory_free(inv);
        remove_tree(&t);
}

static void test_numa_sockets(void **state) {
        struct tree t;
        make_tree(&t, "--nics 4 --ports 1 --numvfs 1 --numa-nodes 4");
        struct nst_pci_inventory *inv = scan_ok(&t);
        assert_int_equal(inv->facts.n_numa_nodes, 4);
        static const int socket[] = {0, 0, 1, 1};
        for (size_t k = 0; k < 4; k++)
                assert_int_equal(inv->facts.node_socket[k], socket[k]);
        static const char *const pfs[] = {"0000:03:00.0", "0000:05:00.0", "0000:07:00.0",
                                          "0000:09:00.0"};
        for (size_t k = 0; k < 4; k++) {
                const struct nst_pci_function *pf = fn(inv, pfs[k]);
                assert_int_equal(pf->numa_node, (int)k);
                assert_int_equal(inv->fns[pf->vfs[0]].numa_node, (int)k);
        }
        nst_pci_inventory_free(inv);
        remove_tree(&t);
}

static void test_cmdline(void **state) {
        static const struct {
                const char *text;
                bool iommu;
        } cases[] = {
                {"BOOT_IMAGE=/vmlinuz ro quiet", false},
                {"", false},
                {"intel_iommu=on", true},
                {"ro intel_iommu=on,sm_on quiet", true},
                {"amd_iommu=on", true},
                {"iommu=pt", true},
                {"iommu=nopt", false},
                {"intel_iommu=off", false},
                {"intel_iommu=on intel_iommu=off", false}, /* the kernel keeps the last */
                {"xintel_iommu=on intel_iommu=onx", false},
        };
        struct tree t;
        make_tree(&t, "--numvfs 1");
        for (size_t i = 0; i < NST_ARRAY_SIZE(cases); i++) {
                print_message("  cmdline \"%s\"\n", cases[i].text);
                write_cmdline(&t, cases[i].text);
                struct nst_pci_inventory *inv = scan_ok(&t);
                assert_true(inv->facts.cmdline_read);
                assert_int_equal(inv->facts.iommu_cmdline, cases[i].iommu);
                nst_pci_inventory_free(inv);
        }
        /* Not checked, or not readable: both say "not read". */
        const char *paths[] = {NULL, "/nonexistent/cmdline"};
        for (size_t i = 0; i < NST_ARRAY_SIZE(paths); i++) {
                struct nst_pci_inventory *inv = NULL;
                struct nst_error err = NST_ERROR_INIT;
                assert_int_equal(scan(&t, paths[i], &inv, &err), 0);
                assert_false(inv->facts.cmdline_read);
                assert_false(inv->facts.iommu_cmdline);
                nst_pci_inventory_free(inv);
        }
        remove_tree(&t);
}

/* ---- trees the scan trims ---- */

static void test_vf_class_differs_from_pf(void **state) {
        struct tree t;
        make_tree(&t, "");
        tree_write(&t, "bus/pci/devices/0000:03:10.2/class", "0x010802\n"); /* NVMe */
        struct nst_pci_inventory *inv = scan_ok(&t);
        print_warnings(inv);
        assert_int_equal(find(inv, "0000:03:10.2"), NST_PCI_NONE);
        assert_int_equal(inv->n, 10);
        assert_int_equal(inv->n_warnings, 1);
        assert_true(has_warning(inv, "VF 0000:03:10.2",
                                "class 010802 differs from its PF 0000:03:00.0"));
        const struct nst_pci_function *pf = fn(inv, "0000:03:00.0");
        assert_int_equal(pf->n_vfs, 3);
        static const int numbers[] = {0, 2, 3};
        static const char *const addrs[] = {"0000:03:10.0", "0000:03:10.4", "0000:03:10.6"};
        for (size_t k = 0; k < 3; k++) {
                assert_int_equal(inv->fns[pf->vfs[k]].vf_number, numbers[k]);
                assert_string_equal(inv->fns[pf->vfs[k]].address, addrs[k]);
        }
        assert_int_equal(fn(inv, "0000:03:00.1")->n_vfs, 4);
        check_structure(inv);
        nst_pci_inventory_free(inv);
        remove_tree(&t);
}

static void test_dangling_virtfn(void **state) {
        struct tree t;
        make_tree(&t, "");
        /* PF0's virtfn3 now points nowhere; its real VF3 (03:10.6) still has
         * a physfn to PF0, which no longer lists it. */
        tree_unlink(&t, "bus/pci/devices/0000:03:00.0/virtfn3");
        tree_symlink(&t, "bus/pci/devices/0000:03:00.0/virtfn3", "../0000:03:1f.7");
        struct nst_pci_inventory *inv = scan_ok(&t);
        print_warnings(inv);
        assert_int_equal(inv->n_warnings, 2);
        assert_true(
                has_warning(inv, "PF 0000:03:00.0: virtfn3 points to 0000:03:1f.7", "dangling"));
        assert_true(has_warning(inv, "VF 0000:03:10.6", "no virtfn link"));
        assert_int_equal(find(inv, "0000:03:10.6"), NST_PCI_NONE);
        assert_int_equal(fn(inv, "0000:03:00.0")->n_vfs, 3);
        check_structure(inv);
        nst_pci_inventory_free(inv);
        remove_tree(&t);
}

static void test_vf_without_its_pf(void **state) {
        struct tree t;
        make_tree(&t, "");
        /* PF1 gone from the bus (hot-unplug in progress): its VFs stay. */
        tree_unlink(&t, "bus/pci/devices/0000:03:00.1");
        struct nst_pci_inventory *inv = scan_ok(&t);
        print_warnings(inv);
        assert_int_equal(inv->n, 1 + 1 + 4);
        assert_int_equal(inv->n_warnings, 4);
        static const char *const vfs[] = {"0000:03:10.1", "0000:03:10.3", "0000:03:10.5",
                                          "0000:03:10.7"};
        for (size_t k = 0; k < 4; k++) {
                char w[64];
                snprintf(w, sizeof(w), "VF %s: its PF 0000:03:00.1", vfs[k]);
                assert_true(has_warning(inv, w, "not in the scan"));
                assert_int_equal(find(inv, vfs[k]), NST_PCI_NONE);
        }
        check_structure(inv);
        nst_pci_inventory_free(inv);
        remove_tree(&t);
}

/* ---- failures ---- */

static void test_missing_mandatory_file(void **state) {
        struct tree t;
        make_tree(&t, "");
        /* irq is mandatory only when PCI_FILL_IRQ is asked for; the scan
         * does not ask, so a VF without it is fine. */
        tree_unlink(&t, "bus/pci/devices/0000:03:10.4/irq");
        struct nst_pci_inventory *inv = scan_ok(&t);
        assert_int_equal(inv->n, 11);
        nst_pci_inventory_free(inv);

        /* class is mandatory: libpci calls its error handler, which must
         * not exit; every attempt fails the same way. */
        tree_unlink(&t, "bus/pci/devices/0000:03:10.4/class");
        inv = NULL;
        struct nst_error err = NST_ERROR_INIT;
        int r = scan(&t, t.cmdline, &inv, &err);
        assert_int_equal(r, -EIO);
        assert_null(inv);
        assert_string_equal(err.cls, "PciDiscoveryFailed");
        print_message("  %s\n", err.message);
        char want[256];
        snprintf(want, sizeof(want), "%s/bus/pci/devices/0000:03:10.4/class", t.sys);
        assert_non_null(strstr(err.message, want));
        assert_non_null(strstr(err.message, "Cannot open"));
        assert_non_null(strstr(err.message, "failed 4 times"));

        /* libpci and the scan lock are usable again afterwards. */
        tree_write(&t, "bus/pci/devices/0000:03:10.4/class", "0x020000\n");
        inv = scan_ok(&t);
        assert_int_equal(inv->n, 11);
        nst_pci_inventory_free(inv);
        remove_tree(&t);
}

struct thread_scan {
        const struct tree *t;
        int r;
        struct nst_error err;
        size_t n;
};

static void *scan_thread(void *arg) {
        struct thread_scan *s = arg;
        struct nst_pci_inventory *inv = NULL;
        s->r = scan(s->t, NULL, &inv, &s->err);
        s->n = inv ? inv->n : 0;
        nst_pci_inventory_free(inv);
        return NULL;
}

/* The longjmp lands on the scanning thread, and a failing scan on one thread
 * does not disturb another thread's scan. */
static void test_scans_on_threads(void **state) {
        struct tree bad, good;
        make_tree(&bad, "");
        make_tree(&good, "--numvfs 8");
        tree_unlink(&bad, "bus/pci/devices/0000:03:00.1/class");
        struct thread_scan s[4] = {{.t = &bad}, {.t = &good}, {.t = &bad}, {.t = &good}};
        pthread_t th[4];
        for (size_t i = 0; i < 4; i++)
                assert_int_equal(pthread_create(&th[i], NULL, scan_thread, &s[i]), 0);
        for (size_t i = 0; i < 4; i++)
                assert_int_equal(pthread_join(th[i], NULL), 0);
        for (size_t i = 0; i < 4; i += 2) {
                assert_int_equal(s[i].r, -EIO);
                assert_string_equal(s[i].err.cls, "PciDiscoveryFailed");
                assert_non_null(strstr(s[i].err.message, "0000:03:00.1/class"));
                assert_int_equal(s[i + 1].r, 0);
                assert_int_equal(s[i + 1].n, 1 + 2 + 16);
        }
        remove_tree(&bad);
        remove_tree(&good);
}

static void test_nonexistent_root(void **state) {
        struct nst_pci_scan_options o = {.sysfs_root = "/nonexistent/nestor/sys"};
        struct nst_pci_inventory *inv = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_pci_scan(&o, &inv, &err), -ENOENT);
        assert_null(inv);
        assert_string_equal(err.cls, "PciDiscoveryFailed");
        assert_non_null(strstr(err.message, "/nonexistent/nestor/sys"));
        assert_non_null(strstr(err.message, "No such file or directory"));

        /* A root without bus/pci: the message names the devices directory. */
        char dir[] = "/tmp/nestor-scan-XXXXXX";
        assert_non_null(mkdtemp(dir));
        o.sysfs_root = dir;
        nst_error_clear(&err);
        assert_int_equal(nst_pci_scan(&o, &inv, &err), -ENOENT);
        char want[128];
        snprintf(want, sizeof(want), "%s/bus/pci/devices", dir);
        assert_non_null(strstr(err.message, want));
        assert_int_equal(rmdir(dir), 0);
}

/* ---- scale ---- */

static double now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void test_big_tree(void **state) {
        struct tree t;
        make_tree(&t, "--nics 4 --ports 1 --totalvfs 256 --numvfs 256 --offset 1 --stride 1 "
                      "--bus 10");
        struct nst_pci_inventory *inv = NULL;
        struct nst_error err = NST_ERROR_INIT;
        double start = now_ms();
        int r = scan(&t, t.cmdline, &inv, &err);
        double ms = now_ms() - start;
        if (r < 0)
                fail_msg("scan: %s", err.message);
        print_message("  4 PFs x 256 VFs, %zu functions: scanned in %.1f ms\n", inv->n, ms);
        assert_int_equal(inv->n, 1032);
        assert_int_equal(inv->n_warnings, 0);
        static const char *const pfs[] = {"0000:10:00.0", "0000:12:00.0", "0000:14:00.0",
                                          "0000:16:00.0"};
        for (size_t k = 0; k < 4; k++) {
                const struct nst_pci_function *pf = fn(inv, pfs[k]);
                assert_int_equal(pf->n_vfs, 256);
                assert_int_equal(pf->cap.total_vfs, 256);
                assert_int_equal(pf->cap.offset, 1);
                assert_int_equal(pf->cap.stride, 1);
        }
        /* VF255 of the first PF runs onto the next bus. */
        const struct nst_pci_function *pf = fn(inv, "0000:10:00.0");
        assert_string_equal(inv->fns[pf->vfs[255]].address, "0000:11:00.0");
        assert_string_equal(inv->fns[pf->vfs[0]].address, "0000:10:00.1");
        check_structure(inv);
        /* Generous: the box is shared; this catches quadratic work, the
         * printed figure is the real measure (target: well under 150 ms). */
        assert_true(ms < 3000);
        nst_pci_inventory_free(inv);
        remove_tree(&t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_default_tree, remove_live_trees),
                cmocka_unit_test_teardown(test_driver_lowered_totalvfs, remove_live_trees),
                cmocka_unit_test_teardown(test_unbound_pf_and_no_sriov, remove_live_trees),
                cmocka_unit_test_teardown(test_fc_hosts, remove_live_trees),
                cmocka_unit_test_teardown(test_no_iommu_no_vfio_no_numa, remove_live_trees),
                cmocka_unit_test_teardown(test_numa_sockets, remove_live_trees),
                cmocka_unit_test_teardown(test_cmdline, remove_live_trees),
                cmocka_unit_test_teardown(test_vf_class_differs_from_pf, remove_live_trees),
                cmocka_unit_test_teardown(test_dangling_virtfn, remove_live_trees),
                cmocka_unit_test_teardown(test_vf_without_its_pf, remove_live_trees),
                cmocka_unit_test_teardown(test_missing_mandatory_file, remove_live_trees),
                cmocka_unit_test_teardown(test_scans_on_threads, remove_live_trees),
                cmocka_unit_test_teardown(test_nonexistent_root, remove_live_trees),
                cmocka_unit_test_teardown(test_big_tree, remove_live_trees),
        };
        return cmocka_run_group_tests(tests, NULL, remove_live_trees);
}
