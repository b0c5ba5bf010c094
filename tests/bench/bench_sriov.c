/* Nestor's side of the SR-IOV benchmark (tests/bench/bench_sriov.sh runs it
 * next to nova's PciDeviceStats on the same fake sysfs tree).
 *
 * Measures, on ROOT (a 4 PF x 256 VF tree): discovery (libpci + sysfs),
 * building the pools (device_spec + allocator sync), N single-VF claims
 * rotating over the physnets (the allocator's claim: nova's
 * consume_requests), M support checks on full pools, N frees, and the same
 * claims through the plugin's whole claim path (request parsing, MACs, the
 * claims table). Prints one JSON object.
 *
 * Usage: bench_sriov ROOT [claims] [supports] */
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/log.h"
#include "plugins/sriov/pci_alloc.h"
#include "plugins/sriov/pci_scan.h"
#include "plugins/sriov/pci_spec.h"
#include "plugins/sriov/sriov.h"

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const struct nst_error *err) {
        fprintf(stderr, "bench_sriov: %s: %s: %s\n", what, err->cls, err->message);
        exit(1);
}

#define MAX_PFS 16

int main(int argc, char **argv) {
        if (argc < 2) {
                fprintf(stderr, "usage: bench_sriov ROOT [claims] [supports]\n");
                return 2;
        }
        size_t n_claims = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000;
        size_t n_supports = argc > 3 ? strtoul(argv[3], NULL, 10) : 1000;
        char sysfs[4096];
        snprintf(sysfs, sizeof(sysfs), "%s/sys", argv[1]);
        struct nst_error err = NST_ERROR_INIT;
        /* The plugin logs each claim at info level: measured without. */
        nst_log_set_level(NST_LOG_WARNING);

        /* Discovery. */
        double t0 = now_s();
        struct nst_pci_inventory *inv = NULL;
        const struct nst_pci_scan_options so = {.sysfs_root = sysfs};
        if (nst_pci_scan(&so, &inv, &err) < 0)
                die("scan", &err);
        double scan_s = now_s() - t0;

        /* The operator's device_spec: each PF by address (its VFs with it). */
        char *specs[MAX_PFS];
        size_t n_pfs = 0;
        for (size_t i = 0; i < inv->n && n_pfs < MAX_PFS; i++) {
                if (inv->fns[i].type != NST_PCI_TYPE_PF)
                        continue;
                if (asprintf(&specs[n_pfs], "{\"address\": \"%s\", \"physical_network\": "
                                            "\"physnet%zu\"}",
                             inv->fns[i].address, n_pfs) < 0)
                        return 1;
                n_pfs++;
        }
        if (n_pfs == 0) {
                fprintf(stderr, "bench_sriov: no PF under %s\n", sysfs);
                return 1;
        }

        /* Building the pools. */
        t0 = now_s();
        struct nst_pci_spec_set *set = NULL;
        if (nst_pci_spec_set_parse((const char *const *)specs, NULL, n_pfs, &set, &err) < 0)
                die("device_spec", &err);
        const struct nst_pci_tags **tags = calloc(inv->n, sizeof(*tags));
        nst_pci_spec_set_apply(set, inv, tags, NULL);
        struct nst_pci_alloc *a = NULL;
        if (nst_pci_alloc_new(&a, &err) < 0 || nst_pci_alloc_sync(a, inv, tags, &err) < 0)
                die("sync", &err);
        double build_s = now_s() - t0;
        struct nst_pci_alloc_stats st;
        nst_pci_alloc_stats(a, &st);

        /* One request per physnet, as a port on that network asks. */
        struct nst_pci_tag port_tags[MAX_PFS][2];
        struct nst_pci_match matches[MAX_PFS];
        struct nst_pci_request reqs[MAX_PFS];
        char physnets[MAX_PFS][16];
        for (size_t k = 0; k < n_pfs; k++) {
                snprintf(physnets[k], sizeof(physnets[k]), "physnet%zu", k);
                port_tags[k][0] = (struct nst_pci_tag){"physical_network", physnets[k]};
                port_tags[k][1] = (struct nst_pci_tag){"remote_managed", "false"};
                matches[k] = (struct nst_pci_match){-1, -1, {port_tags[k], 2}};
                reqs[k] = (struct nst_pci_request){.id = "port", .count = 1, .dev_type = -1,
                                                   .matches = &matches[k], .n_matches = 1};
        }
        const struct nst_pci_placement none = {0};

        t0 = now_s();
        size_t ok = 0;
        for (size_t i = 0; i < n_supports; i++)
                ok += nst_pci_alloc_supports(a, &reqs[i % n_pfs], 1, &none);
        double support_s = now_s() - t0;
        if (ok != n_supports) {
                fprintf(stderr, "bench_sriov: supports() said no\n");
                return 1;
        }

        char (*owners)[37] = calloc(n_claims, sizeof(*owners));
        for (size_t i = 0; i < n_claims; i++)
                snprintf(owners[i], sizeof(owners[i]), "00000000-0000-0000-0000-%012x",
                         (unsigned)(i & 0xffffffffu));
        t0 = now_s();
        for (size_t i = 0; i < n_claims; i++) {
                struct nst_pci_grant *g = NULL;
                size_t ng = 0;
                if (nst_pci_alloc_claim(a, owners[i], &reqs[i % n_pfs], 1, &none, &g, &ng,
                                        &err) < 0)
                        die("claim", &err);
                free(g);
        }
        double claim_s = now_s() - t0;
        t0 = now_s();
        for (size_t i = 0; i < n_claims; i++)
                if (nst_pci_alloc_release(a, owners[i]) != 1) {
                        fprintf(stderr, "bench_sriov: free %zu freed nothing\n", i);
                        return 1;
                }
        double free_s = now_s() - t0;

        /* The plugin's whole claim path on the same pools. */
        struct sriov s = {.specs = set};
        snprintf(s.cfg.sysfs_root, sizeof(s.cfg.sysfs_root), "%s", sysfs);
        memcpy(s.cfg.mac_prefix, "\xfa\x16\x3e", 3);
        snprintf(s.cfg.wwn_oui, sizeof(s.cfg.wwn_oui), "001a4a");
        if (nst_pci_alias_set_parse(NULL, NULL, 0, &s.aliases, &err) < 0 ||
            nst_vf_backend_from_spec("record:/dev/null", &s.vf, &err) < 0 ||
            nst_sriov_init(&s, &err) < 0 || nst_sriov_rescan(&s, NULL, &err) < 0)
                die("plugin state", &err);
        json_object *jreqs[MAX_PFS];
        for (size_t k = 0; k < n_pfs; k++) {
                char text[160];
                snprintf(text, sizeof(text),
                         "[{\"vnic_type\": \"direct\", \"physical_network\": \"%s\"}]",
                         physnets[k]);
                jreqs[k] = json_tokener_parse(text);
        }
        t0 = now_s();
        for (size_t i = 0; i < n_claims; i++) {
                struct nst_pci_claim *c = NULL;
                size_t nc = 0;
                if (nst_sriov_claim(&s, owners[i], jreqs[i % n_pfs], NULL, 0, &c, &nc, &err) < 0)
                        die("plugin claim", &err);
                free(c);
        }
        double full_claim_s = now_s() - t0;
        t0 = now_s();
        for (size_t i = 0; i < n_claims; i++)
                if (nst_sriov_release(&s, owners[i], &err) < 0)
                        die("plugin release", &err);
        double full_free_s = now_s() - t0;

        printf("{\"impl\": \"nestor\", \"devices\": %zu, \"assignable\": %zu, \"pools\": %zu, "
               "\"scan_ms\": %.3f, \"build_ms\": %.3f, \"claim_us\": %.3f, \"support_us\": %.3f, "
               "\"free_us\": %.3f, \"plugin_claim_us\": %.3f, \"plugin_free_us\": %.3f, "
               "\"claims\": %zu, \"supports\": %zu}\n",
               inv->n, st.devices, st.pools, scan_s * 1e3, build_s * 1e3,
               claim_s / (double)n_claims * 1e6, support_s / (double)n_supports * 1e6,
               free_s / (double)n_claims * 1e6, full_claim_s / (double)n_claims * 1e6,
               full_free_s / (double)n_claims * 1e6, n_claims, n_supports);

        for (size_t k = 0; k < n_pfs; k++) {
                json_object_put(jreqs[k]);
                free(specs[k]);
        }
        s.specs = NULL; /* the benchmark's; freed below */
        nst_sriov_done(&s);
        free(owners);
        nst_pci_alloc_free(a);
        free(tags);
        nst_pci_spec_set_free(set);
        nst_pci_inventory_free(inv);
        return 0;
}
