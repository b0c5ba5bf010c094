/* Builds and renders the domain XML of a typical guest, the same guest as
 * bench_domain_xml_nova.py builds with nova's LibvirtConfigGuest: host-model
 * CPU with topology and vmx, acpi/apic/vmcoreinfo, a clock with three
 * timers, 2 disks, 1 bridge NIC, 1 PCI hostdev, serial + console, rng,
 * memballoon and metadata.
 *
 * Usage: bench_domain_xml [GUESTS] [ROUNDS]   (default 1000 guests, 5 rounds)
 * Prints the median per-guest time of each round, in microseconds, for
 *   build  = resolve (profile + spec + host) + render, from a parsed spec
 *   parse+build = the same starting from the spec's JSON text */
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plugins/libvirt/domain_xml.h"

static const char spec_json[] =
        "{\"name\": \"instance-00000001\", \"uuid\": \"b38a3f43-4be2-4046-897f-b67c2f5e0147\","
        " \"vcpus\": 2, \"sockets\": 1, \"cores\": 2, \"threads\": 1, \"memory_mb\": 2048,"
        " \"profile\": \"plain\", \"cpu_mode\": \"host-model\", \"cpu_features\": [\"+vmx\"],"
        " \"disks\": [{\"image\": \"/var/lib/nestor/images/cirros.qcow2\"}, {\"size_gb\": 20}],"
        " \"nics\": [{\"bridge\": \"br-int\", \"mac\": \"fa:16:3e:11:22:33\"}]}";

static double now_s(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static double median(double *v, size_t n) {
        qsort(v, n, sizeof(*v), cmp_double);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct fixture {
        struct nst_profile_set *profiles;
        const struct nst_profile *profile;
        struct nst_host_caps *caps;
        struct nst_pci_claim hostdev;
        struct nst_build_context ctx;
};

static void fail(const char *what, const struct nst_error *err) {
        fprintf(stderr, "bench_domain_xml: %s: %s: %s\n", what, err->cls, err->message);
        exit(1);
}

static size_t build_one(const struct fixture *f, const struct nst_guest_spec *spec) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_domain_plan plan;
        char *xml = NULL;
        size_t len = 0;
        if (nst_domain_plan_resolve(spec, f->profile, f->caps, &plan, &err) < 0 ||
            nst_domain_xml_render(spec, &plan, &f->ctx, &xml, &len, &err) < 0)
                fail("build", &err);
        free(xml);
        return len;
}

static size_t parse_build_one(const struct fixture *f) {
        struct nst_error err = NST_ERROR_INIT;
        json_object *o = json_tokener_parse(spec_json);
        struct nst_guest_spec *spec = NULL;
        if (!o || nst_guest_spec_parse(o, &spec, &err) < 0)
                fail("parse", &err);
        size_t len = build_one(f, spec);
        nst_guest_spec_free(spec);
        json_object_put(o);
        return len;
}

int main(int argc, char **argv) {
        long guests = argc > 1 ? strtol(argv[1], NULL, 10) : 1000;
        long rounds = argc > 2 ? strtol(argv[2], NULL, 10) : 5;
        if (guests < 1 || rounds < 1 || rounds > 100) {
                fprintf(stderr, "usage: bench_domain_xml [GUESTS] [ROUNDS<=100]\n");
                return 2;
        }
        struct nst_error err = NST_ERROR_INIT;
        struct fixture f = {0};
        if (nst_profile_set_new(&f.profiles, &err) < 0 || nst_host_caps_new(&f.caps, &err) < 0)
                fail("setup", &err);
        f.profile = nst_profile_set_find(f.profiles, "plain");
        /* An Intel KVM host that can nest. */
        f.caps->virt_type = NST_VIRT_KVM;
        f.caps->kvm_device = true;
        f.caps->vendor = NST_VENDOR_INTEL;
        f.caps->cpu_vmx = true;
        f.caps->nested_param = 1;
        if (nst_host_caps_finish(f.caps, NULL, &err) < 0)
                fail("setup", &err);
        f.hostdev = (struct nst_pci_claim){.request = "claim-7e4b8b1f", .address = "0000:81:00.1",
                                           .vlan = -1};
        f.ctx = (struct nst_build_context){
                .instances_path = "/var/lib/nestor/instances",
                .user_id = "8d4f5c1e0b9a4a6f9e2d3c4b5a697887", .user_name = "admin",
                .project_id = "2a1b3c4d5e6f47a8b9c0d1e2f3a4b5c6", .project_name = "demo",
                .created_at = "2024-01-01T00:00:00Z",
                .claims = &f.hostdev, .n_claims = 1,
        };
        json_object *o = json_tokener_parse(spec_json);
        struct nst_guest_spec *spec = NULL;
        if (!o || nst_guest_spec_parse(o, &spec, &err) < 0)
                fail("parse", &err);

        size_t bytes = 0;
        for (int i = 0; i < 200; i++) /* warm-up: caches, allocator */
                bytes = build_one(&f, spec) + parse_build_one(&f) * 0;
        double build[100], full[100];
        for (long r = 0; r < rounds; r++) {
                double t0 = now_s();
                for (long i = 0; i < guests; i++)
                        build_one(&f, spec);
                double t1 = now_s();
                for (long i = 0; i < guests; i++)
                        parse_build_one(&f);
                double t2 = now_s();
                build[r] = (t1 - t0) / (double)guests * 1e6;
                full[r] = (t2 - t1) / (double)guests * 1e6;
        }
        printf("nestor guests=%ld rounds=%ld xml_bytes=%zu\n", guests, rounds, bytes);
        printf("nestor build_us_per_guest=%.3f\n", median(build, (size_t)rounds));
        printf("nestor parse_build_us_per_guest=%.3f\n", median(full, (size_t)rounds));
        nst_guest_spec_free(spec);
        json_object_put(o);
        nst_host_caps_free(f.caps);
        nst_profile_set_free(f.profiles);
        return 0;
}
