/* The domain builder: every profile on every kind of host, checked element
 * by element through XPath; spec overrides and refusals; the metadata round
 * trip; the live-XML nesting check; and a real define on test:///default. */
#include "lv_test.h"

#include <libvirt/virterror.h>

#include "plugins/libvirt/xml_writer.h"

#define SPEC_TAIL                                                                           \
        "\"vcpus\": 2, \"memory_mb\": 4096,"                                                \
        " \"disks\": [{\"image\": \"/var/lib/nestor/images/base.qcow2\"}, {\"size_gb\": 20}]," \
        " \"nics\": [{\"network\": \"lab\", \"mac\": \"52:54:00:00:00:01\"},"                 \
        "            {\"bridge\": \"br-ex\", \"mac\": \"52:54:00:00:00:02\"}]"

static const char *const profiles[] = {"plain", "nested-kvm", "nested-esxi", "nested-hyperv"};

struct fixture {
        struct nst_profile_set *profiles;
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        struct nst_error err = NST_ERROR_INIT;
        if (!f || nst_profile_set_new(&f->profiles, &err) < 0)
                return -1;
        nst_lv_quiet_errors();
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        nst_profile_set_free(f->profiles);
        free(f);
        return 0;
}

static const struct nst_build_context base_ctx = {
        .instances_path = "/srv/nestor/instances",
        .user_id = "u-1",
        .user_name = "admin",
        .project_id = "p-1",
        .project_name = "demo",
        .created_at = "2024-05-01T12:00:00Z",
};

/* Builds; on success returns the XML (caller frees) and fills plan. */
static char *build(struct fixture *f, const char *spec_json, const struct nst_host_caps *caps,
                   const struct nst_build_context *ctx, struct nst_domain_plan *plan,
                   struct nst_error *err) {
        struct nst_guest_spec *s = lt_spec(spec_json);
        const struct nst_profile *p = NULL;
        char *xml = NULL;
        if (nst_profile_set_lookup(f->profiles, s->profile, &p, err) == 0)
                nst_domain_xml_build(s, p, caps, ctx ? ctx : &base_ctx, &xml, plan, err);
        nst_guest_spec_free(s);
        return xml;
}

static char *build_ok(struct fixture *f, const char *spec_json, const struct nst_host_caps *caps,
                      struct nst_domain_plan *plan) {
        struct nst_error err = NST_ERROR_INIT;
        char *xml = build(f, spec_json, caps, NULL, plan, &err);
        if (!xml)
                fail_msg("build failed: %s: %s\n  spec: %s", err.cls, err.message, spec_json);
        return xml;
}

static void build_fails(struct fixture *f, const char *spec_json, const struct nst_host_caps *caps,
                        const char *cls, const char *prefix) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_domain_plan plan;
        char *xml = build(f, spec_json, caps, NULL, &plan, &err);
        if (xml) {
                free(xml);
                fail_msg("build succeeded, expected %s '%s...'\n  spec: %s", cls, prefix,
                         spec_json);
        }
        lt_error_is(&err, cls, prefix);
}

static void spec_for(char *buf, size_t len, const char *profile, const char *extra) {
        snprintf(buf, len, "{\"name\": \"t-%s\", \"profile\": \"%s\", " SPEC_TAIL "%s}", profile,
                 profile, extra);
}

/* ---- checks shared by every guest ---- */

static void check_common(xmlDocPtr d, const char *virt_type) {
        assert_xs(d, "name(/*)", "domain");
        assert_xs(d, "/domain/@type", virt_type);
        assert_xcount(d, "/domain/name", 1);
        assert_xs(d, "string-length(/domain/uuid)", "36");
        assert_xs(d, "/domain/memory/@unit", "MiB");
        assert_xs(d, "/domain/memory", "4096");
        assert_xs(d, "/domain/vcpu", "2");
        assert_xs(d, "/domain/os/type", "hvm");
        assert_xs(d, "/domain/os/type/@arch", "x86_64");
        assert_xs(d, "/domain/os/type/@machine", "q35");
        assert_xs(d, "/domain/os/boot/@dev", "hd");
        assert_xcount(d, "/domain/os[@firmware='bios']", 0); /* never: no SeaBIOS descriptor */
        assert_xcount(d, "/domain/os/loader", 0);
        assert_xcount(d, "/domain/features/acpi", 1);
        assert_xcount(d, "/domain/features/apic", 1);
        assert_xs(d, "/domain/clock/timer[@name='rtc']/@tickpolicy", "catchup");
        assert_xs(d, "/domain/clock/timer[@name='pit']/@tickpolicy", "delay");
        assert_xs(d, "/domain/clock/timer[@name='hpet']/@present", "no");
        /* Disks: 2 qcow2 files in the instance directory; NICs with their MACs. */
        assert_xcount(d, "/domain/devices/disk[@type='file'][@device='disk']", 2);
        assert_xcount(d, "/domain/devices/disk/driver[@name='qemu'][@type='qcow2']", 2);
        char *uuid = lt_xs(d, "/domain/uuid");
        char expect[256];
        snprintf(expect, sizeof(expect), "/srv/nestor/instances/%s/disk1.qcow2", uuid);
        assert_xs(d, "/domain/devices/disk[2]/source/@file", expect);
        free(uuid);
        assert_xcount(d, "/domain/devices/interface", 2);
        assert_xs(d, "/domain/devices/interface[1]/@type", "network");
        assert_xs(d, "/domain/devices/interface[1]/source/@network", "lab");
        assert_xs(d, "/domain/devices/interface[1]/mac/@address", "52:54:00:00:00:01");
        assert_xs(d, "/domain/devices/interface[2]/@type", "bridge");
        assert_xs(d, "/domain/devices/interface[2]/source/@bridge", "br-ex");
        assert_xcount(d, "/domain/devices/serial[@type='pty']", 1);
        assert_xcount(d, "/domain/devices/console[@type='pty']/target[@type='serial']", 1);
        assert_xcount(d, "/domain/devices/memballoon", 1);
        /* Metadata in Nestor's namespace. */
        assert_xcount(d, "/domain/metadata/n:instance", 1);
        assert_xcount(d, "/domain/metadata/n:instance/n:nics/n:nic", 2);
        assert_xcount(d, "/domain/metadata/n:instance/n:disks/n:disk", 2);
        assert_xs(d, "/domain/metadata/n:instance/n:owner/n:user/@id", "u-1");
        assert_xs(d, "/domain/metadata/n:instance/n:owner/n:project", "demo");
        assert_xcount(d, "/domain/metadata/n:instance/n:claims", 1);
}

static void check_nesting(xmlDocPtr d, const char *feature, bool npt, bool emulated) {
        char expr[128];
        snprintf(expr, sizeof(expr), "/domain/cpu/feature[@name='%s']/@policy", feature);
        assert_xs(d, expr, "require");
        assert_xcount(d, "/domain/cpu/feature[@name='npt'][@policy='require']", npt ? 1 : 0);
        /* The other vendor's flag is never asked for. */
        snprintf(expr, sizeof(expr), "/domain/cpu/feature[@name='%s']",
                 strcmp(feature, "vmx") == 0 ? "svm" : "vmx");
        assert_xcount(d, expr, 0);
        assert_xs(d, "/domain/metadata/n:instance/n:nesting/n:feature[1]/@name", feature);
        assert_xs(d, "/domain/metadata/n:instance/n:nesting/@emulated", emulated ? "yes" : "no");
}

static void check_no_nesting(xmlDocPtr d) {
        assert_xcount(d, "/domain/cpu/feature[@name='vmx' or @name='svm']", 0);
        assert_xcount(d, "/domain/metadata/n:instance/n:nesting", 0);
}

/* ---- per profile ---- */

static void check_plain(xmlDocPtr d, enum lt_host h) {
        check_common(d, h == LT_TCG ? "qemu" : "kvm");
        assert_xs(d, "/domain/cpu/@mode", "host-model");
        assert_xs(d, "/domain/cpu/@check", "partial");
        check_no_nesting(d);
        assert_xcount(d, "/domain/os/@firmware", 0);
        assert_xcount(d, "/domain/os/nvram", 0);
        assert_xs(d, "/domain/devices/disk[1]/target/@dev", "vda");
        assert_xs(d, "/domain/devices/disk[2]/target/@dev", "vdb");
        assert_xcount(d, "/domain/devices/disk/target[@bus='virtio']", 2);
        assert_xcount(d, "/domain/devices/interface/model[@type='virtio']", 2);
        assert_xcount(d, "/domain/features/hyperv", 0);
        assert_xcount(d, "/domain/features/vmport", 0);
        assert_xcount(d, "/domain/features/smm", 0);
        assert_xs(d, "/domain/features/vmcoreinfo/@state", "on");
        assert_xs(d, "/domain/clock/@offset", "utc");
        assert_xcount(d, "/domain/clock/timer[@name='hypervclock']", 0);
        assert_xs(d, "/domain/devices/memballoon/@model", "virtio");
        assert_xs(d, "/domain/devices/rng/@model", "virtio");
        assert_xcount(d, "/domain/devices/channel[@type='unix']/target[@type='virtio']"
                         "[@name='org.qemu.guest_agent.0']", 1);
        assert_xcount(d, "/domain/devices/video", 0);
        assert_xcount(d, "/domain/devices/tpm", 0);
        assert_xs(d, "/domain/metadata/n:instance/n:profile", "plain");
}

static void check_cpu_for_host(xmlDocPtr d, enum lt_host h) {
        if (h == LT_INTEL_NESTED || h == LT_AMD_NESTED) {
                assert_xs(d, "/domain/cpu/@mode", "host-passthrough");
                assert_xs(d, "/domain/cpu/@migratable", "on");
                assert_xs(d, "/domain/metadata/n:instance/n:virt/@type", "kvm");
        } else {
                /* Emulated nesting: TCG, which has no host-passthrough. */
                assert_xs(d, "/domain/@type", "qemu");
                assert_xs(d, "/domain/cpu/@mode", "host-model");
                assert_xs(d, "/domain/metadata/n:instance/n:virt/@type", "qemu");
        }
}

static void check_nested_kvm(xmlDocPtr d, enum lt_host h) {
        check_common(d, h == LT_INTEL_NESTED || h == LT_AMD_NESTED ? "kvm" : "qemu");
        check_cpu_for_host(d, h);
        check_nesting(d, h == LT_INTEL_NESTED ? "vmx" : "svm", false,
                      h == LT_INTEL_NO_NESTING || h == LT_TCG);
        assert_xcount(d, "/domain/devices/disk/target[@bus='virtio']", 2);
        assert_xcount(d, "/domain/devices/interface/model[@type='virtio']", 2);
        assert_xcount(d, "/domain/features/hyperv", 0);
        assert_xs(d, "/domain/metadata/n:instance/n:profile", "nested-kvm");
}

static void check_nested_esxi(xmlDocPtr d, enum lt_host h) {
        check_common(d, h == LT_INTEL_NESTED || h == LT_AMD_NESTED ? "kvm" : "qemu");
        check_cpu_for_host(d, h);
        check_nesting(d, h == LT_INTEL_NESTED ? "vmx" : "svm", h != LT_INTEL_NESTED,
                      h == LT_INTEL_NO_NESTING || h == LT_TCG);
        /* UEFI without secure boot, NVRAM in the instance directory. */
        assert_xs(d, "/domain/os/@firmware", "efi");
        assert_xs(d, "/domain/os/firmware/feature[@name='secure-boot']/@enabled", "no");
        assert_xcount(d, "/domain/os/firmware/feature[@name='enrolled-keys']", 0);
        char *uuid = lt_xs(d, "/domain/uuid");
        char nvram[256];
        snprintf(nvram, sizeof(nvram), "/srv/nestor/instances/%s/nvram.fd", uuid);
        assert_xs(d, "/domain/os/nvram", nvram);
        free(uuid);
        /* No virtio anywhere: SATA disks sda, sdb and vmxnet3. */
        assert_xcount(d, "//*[@bus='virtio' or @model='virtio' or @type='virtio']", 0);
        assert_xs(d, "/domain/devices/disk[1]/target/@dev", "sda");
        assert_xs(d, "/domain/devices/disk[1]/target/@bus", "sata");
        assert_xs(d, "/domain/devices/disk[2]/target/@dev", "sdb");
        assert_xcount(d, "/domain/devices/interface/model[@type='vmxnet3']", 2);
        assert_xs(d, "/domain/features/vmport/@state", "off");
        assert_xcount(d, "/domain/features/hyperv", 0);
        assert_xcount(d, "/domain/features/vmcoreinfo", 0);
        assert_xs(d, "/domain/devices/memballoon/@model", "none");
        assert_xcount(d, "/domain/devices/rng", 0);
        assert_xcount(d, "/domain/devices/channel", 0);
        assert_xs(d, "/domain/devices/video/model/@type", "vga");
        assert_xs(d, "/domain/devices/graphics/listen/@address", "127.0.0.1");
        assert_xs(d, "/domain/clock/@offset", "utc");
}

static void check_nested_hyperv(xmlDocPtr d, enum lt_host h) {
        bool kvm = h == LT_INTEL_NESTED || h == LT_AMD_NESTED;
        check_common(d, kvm ? "kvm" : "qemu");
        check_cpu_for_host(d, h);
        check_nesting(d, h == LT_INTEL_NESTED ? "vmx" : "svm", h != LT_INTEL_NESTED, !kvm);
        assert_xs(d, "/domain/os/@firmware", "efi");
        assert_xs(d, "/domain/os/firmware/feature[@name='secure-boot']/@enabled", "yes");
        assert_xs(d, "/domain/os/firmware/feature[@name='enrolled-keys']/@enabled", "yes");
        assert_xcount(d, "/domain/os/nvram", 1);
        assert_xs(d, "/domain/features/smm/@state", "on");
        assert_xs(d, "/domain/features/vmport/@state", "off");
        assert_xs(d, "/domain/features/hyperv/@mode", "custom");
        assert_xcount(d, "/domain/features/hyperv/*[@state!='on']", 0);
        assert_xs(d, "/domain/features/hyperv/spinlocks/@retries", "8191");
        assert_xcount(d, "/domain/features/hyperv/relaxed", 1);
        assert_xcount(d, "/domain/features/hyperv/vapic", 1);
        assert_xcount(d, "/domain/features/hyperv/reset", 0);
        assert_xs(d, "/domain/clock/timer[@name='hypervclock']/@present", "yes");
        if (kvm) {
                assert_xcount(d, "/domain/features/hyperv/*", h == LT_INTEL_NESTED ? 12 : 11);
                assert_xs(d, "/domain/features/hyperv/stimer/direct/@state", "on");
                assert_xcount(d, "/domain/features/hyperv/synic", 1);
                assert_xcount(d, "/domain/features/hyperv/vpindex", 1);
                assert_xcount(d, "/domain/features/hyperv/tlbflush", 1);
                assert_xcount(d, "/domain/features/hyperv/ipi", 1);
                assert_xcount(d, "/domain/features/hyperv/frequencies", 1);
                assert_xcount(d, "/domain/features/hyperv/reenlightenment", 1);
                /* evmcs is Intel-only. */
                assert_xcount(d, "/domain/features/hyperv/evmcs", h == LT_INTEL_NESTED ? 1 : 0);
        } else {
                /* TCG keeps only what it provides. */
                assert_xcount(d, "/domain/features/hyperv/*", 3);
        }
        assert_xs(d, "/domain/clock/@offset", "localtime");
        assert_xcount(d, "/domain/devices/disk/target[@bus='sata']", 2);
        assert_xcount(d, "/domain/devices/interface/model[@type='e1000e']", 2);
        assert_xcount(d, "/domain/devices/channel", 0);
        assert_xs(d, "/domain/devices/tpm/@model", "tpm-crb");
        assert_xs(d, "/domain/devices/tpm/backend/@type", "emulator");
        assert_xs(d, "/domain/devices/tpm/backend/@version", "2.0");
        assert_xs(d, "/domain/devices/video/model/@type", "vga");
}

static void (*const checks[])(xmlDocPtr, enum lt_host) = {
        check_plain, check_nested_kvm, check_nested_esxi, check_nested_hyperv};

/* Every profile on every host: the ones a host cannot nest for fail with
 * NestingUnavailable, and build under TCG with allow_emulated_nesting. */
static void test_profile_host_matrix(void **state) {
        struct fixture *f = *state;
        for (size_t p = 0; p < NST_ARRAY_SIZE(profiles); p++) {
                for (enum lt_host h = LT_INTEL_NESTED; h <= LT_TCG; h++) {
                        struct nst_host_caps *caps = lt_caps(h);
                        char spec[1024];
                        bool nested = p > 0, nests = h == LT_INTEL_NESTED || h == LT_AMD_NESTED;
                        fprintf(stderr, "  %s on %s\n", profiles[p], lt_host_names[h]);
                        spec_for(spec, sizeof(spec), profiles[p], "");
                        if (nested && !nests) {
                                char msg[128];
                                snprintf(msg, sizeof(msg),
                                         "profile %s needs nested virtualization, which this "
                                         "host cannot provide: ",
                                         profiles[p]);
                                build_fails(f, spec, caps, "NestingUnavailable", msg);
                                spec_for(spec, sizeof(spec), profiles[p],
                                         ", \"allow_emulated_nesting\": true");
                        }
                        struct nst_domain_plan plan;
                        char *xml = build_ok(f, spec, caps, &plan);
                        xmlDocPtr d = lt_doc(xml);
                        checks[p](d, h);
                        xmlFreeDoc(d);
                        free(xml);
                        nst_host_caps_free(caps);
                }
        }
}

static void test_nesting_error_message(void **state) {
        struct fixture *f = *state;
        struct nst_host_caps *caps = lt_caps(LT_INTEL_NO_NESTING);
        char spec[1024];
        spec_for(spec, sizeof(spec), "nested-kvm", "");
        build_fails(f, spec, caps, "NestingUnavailable",
                    "profile nested-kvm needs nested virtualization, which this host cannot "
                    "provide: nested virtualization is off: /sys/module/kvm_intel/parameters/"
                    "nested is N (load kvm_intel with nested=1). Set allow_emulated_nesting");
        /* Without TCG's svm either, even emulation is refused. */
        caps->compare_emulated = 0;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_host_caps_finish(caps, NULL, &err), 0);
        spec_for(spec, sizeof(spec), "nested-kvm", ", \"allow_emulated_nesting\": true");
        build_fails(f, spec, caps, "NestingUnavailable",
                    "profile nested-kvm needs nested virtualization: this host cannot provide it");
        nst_host_caps_free(caps);
}

static void test_spec_overrides(void **state) {
        struct fixture *f = *state;
        struct nst_host_caps *caps = lt_caps(LT_INTEL_NESTED);
        struct nst_domain_plan plan;
        char spec[2048];
        spec_for(spec, sizeof(spec), "nested-esxi",
                 ", \"machine\": \"pc\", \"firmware\": \"bios\", \"cpu_mode\": \"host-model\","
                 " \"nic_model\": \"e1000e\", \"disk_bus\": \"scsi\","
                 " \"sockets\": 1, \"cores\": 2, \"threads\": 1,"
                 " \"cpu_features\": [\"+pcid\", \"-xsaves\"],"
                 " \"features\": {\"vmport\": true, \"kvm_hidden\": true, \"acpi\": false},"
                 " \"guest_agent\": true");
        char *xml = build_ok(f, spec, caps, &plan);
        xmlDocPtr d = lt_doc(xml);
        assert_xs(d, "/domain/os/type/@machine", "pc");
        assert_xcount(d, "/domain/os/@firmware", 0);
        assert_xcount(d, "/domain/os/nvram", 0);
        assert_xs(d, "/domain/cpu/@mode", "host-model");
        assert_xs(d, "/domain/cpu/@check", "partial");
        assert_xs(d, "/domain/cpu/feature[@name='vmx']/@policy", "require"); /* still nested */
        assert_xs(d, "/domain/cpu/feature[@name='pcid']/@policy", "require");
        assert_xs(d, "/domain/cpu/feature[@name='xsaves']/@policy", "disable");
        assert_xs(d, "/domain/cpu/topology/@sockets", "1");
        assert_xs(d, "/domain/cpu/topology/@cores", "2");
        assert_xs(d, "/domain/cpu/topology/@threads", "1");
        assert_xcount(d, "/domain/devices/interface/model[@type='e1000e']", 2);
        assert_xcount(d, "/domain/devices/disk/target[@bus='scsi']", 2);
        assert_xs(d, "/domain/devices/controller[@type='scsi']/@model", "vmpvscsi");
        assert_xs(d, "/domain/features/vmport/@state", "on");
        assert_xs(d, "/domain/features/kvm/hidden/@state", "on");
        assert_xcount(d, "/domain/features/acpi", 0);
        /* ESXi's profile has no agent port; the spec asked for one. */
        assert_xcount(d, "/domain/devices/channel/target[@name='org.qemu.guest_agent.0']", 1);
        xmlFreeDoc(d);
        free(xml);

        spec_for(spec, sizeof(spec), "plain", ", \"guest_agent\": false");
        xml = build_ok(f, spec, caps, &plan);
        d = lt_doc(xml);
        assert_xcount(d, "/domain/devices/channel", 0);
        xmlFreeDoc(d);
        free(xml);

        /* Per-disk and per-NIC choices beat the spec-wide ones. */
        spec_for(spec, sizeof(spec), "plain", "");
        char spec2[2048];
        snprintf(spec2, sizeof(spec2),
                 "{\"name\": \"o\", \"vcpus\": 2, \"memory_mb\": 1024, \"disk_bus\": \"sata\","
                 " \"nic_model\": \"rtl8139\", \"machine\": \"pc\","
                 " \"disks\": [{\"size_gb\": 1, \"bus\": \"virtio\"}, {\"size_gb\": 1},"
                 "            {\"size_gb\": 1, \"bus\": \"ide\"},"
                 "            {\"size_gb\": 1, \"bus\": \"scsi\"}],"
                 " \"nics\": [{\"network\": \"n\", \"model\": \"e1000\"}, {\"network\": \"n\"}]}");
        xml = build_ok(f, spec2, caps, &plan);
        d = lt_doc(xml);
        assert_xs(d, "/domain/devices/disk[1]/target/@dev", "vda");
        assert_xs(d, "/domain/devices/disk[2]/target/@dev", "sda");
        assert_xs(d, "/domain/devices/disk[2]/target/@bus", "sata");
        assert_xs(d, "/domain/devices/disk[3]/target/@dev", "hda");
        assert_xs(d, "/domain/devices/disk[3]/target/@bus", "ide");
        assert_xs(d, "/domain/devices/disk[4]/target/@dev", "sdb"); /* sata and scsi share sd */
        assert_xs(d, "/domain/devices/controller[@type='scsi']/@model", "virtio-scsi");
        assert_xs(d, "/domain/devices/interface[1]/model/@type", "e1000");
        assert_xs(d, "/domain/devices/interface[2]/model/@type", "rtl8139");
        xmlFreeDoc(d);
        free(xml);

        /* Explicit Hyper-V choices on top of the profile's. */
        spec_for(spec, sizeof(spec), "nested-hyperv",
                 ", \"features\": {\"hyperv\": {\"reset\": true, \"stimer_direct\": false,"
                 " \"spinlocks\": 4095}}");
        xml = build_ok(f, spec, caps, &plan);
        d = lt_doc(xml);
        assert_xcount(d, "/domain/features/hyperv/reset[@state='on']", 1);
        assert_xcount(d, "/domain/features/hyperv/stimer[@state='on']", 1);
        assert_xcount(d, "/domain/features/hyperv/stimer/direct", 0);
        assert_xs(d, "/domain/features/hyperv/spinlocks/@retries", "4095");
        xmlFreeDoc(d);
        free(xml);

        /* secure_boot alone implies efi; firmware efi alone on plain has no secure boot. */
        spec_for(spec, sizeof(spec), "plain", ", \"secure_boot\": true");
        xml = build_ok(f, spec, caps, &plan);
        d = lt_doc(xml);
        assert_xs(d, "/domain/os/@firmware", "efi");
        assert_xs(d, "/domain/os/firmware/feature[@name='secure-boot']/@enabled", "yes");
        assert_xs(d, "/domain/features/smm/@state", "on"); /* secure boot needs SMM */
        xmlFreeDoc(d);
        free(xml);
        spec_for(spec, sizeof(spec), "plain", ", \"firmware\": \"efi\"");
        xml = build_ok(f, spec, caps, &plan);
        d = lt_doc(xml);
        assert_xs(d, "/domain/os/firmware/feature[@name='secure-boot']/@enabled", "no");
        assert_xcount(d, "/domain/features/smm", 0);
        xmlFreeDoc(d);
        free(xml);
        /* nested-hyperv with secure boot off keeps efi. */
        spec_for(spec, sizeof(spec), "nested-hyperv", ", \"secure_boot\": false");
        xml = build_ok(f, spec, caps, &plan);
        d = lt_doc(xml);
        assert_xs(d, "/domain/os/@firmware", "efi");
        assert_xs(d, "/domain/os/firmware/feature[@name='secure-boot']/@enabled", "no");
        xmlFreeDoc(d);
        free(xml);
        /* A custom CPU model. */
        spec_for(spec, sizeof(spec), "nested-kvm",
                 ", \"cpu_mode\": \"custom\", \"cpu_model\": \"Skylake-Server\"");
        xml = build_ok(f, spec, caps, &plan);
        d = lt_doc(xml);
        assert_xs(d, "/domain/cpu/@mode", "custom");
        assert_xs(d, "/domain/cpu/@match", "exact");
        assert_xs(d, "/domain/cpu/model", "Skylake-Server");
        assert_xs(d, "/domain/cpu/model/@fallback", "forbid");
        assert_xs(d, "/domain/cpu/feature[@name='vmx']/@policy", "require");
        xmlFreeDoc(d);
        free(xml);
        nst_host_caps_free(caps);
}

static void test_refusals(void **state) {
        struct fixture *f = *state;
        struct nst_host_caps *intel = lt_caps(LT_INTEL_NESTED);
        struct nst_host_caps *amd = lt_caps(LT_AMD_NESTED);
        struct nst_host_caps *tcg = lt_caps(LT_TCG);
        char spec[2048];

        /* Memory over host memory, profile minimums. */
        intel->memory_mb = 2048;
        spec_for(spec, sizeof(spec), "plain", "");
        build_fails(f, spec, intel, "InvalidInput",
                    "spec.memory_mb: 4096 MiB is more than this host's memory (2048 MiB)");
        intel->memory_mb = 0;
        build_fails(f, "{\"name\": \"x\", \"profile\": \"nested-esxi\", \"vcpus\": 1, "
                       "\"memory_mb\": 8192}",
                    intel, "InvalidInput",
                    "spec.vcpus: profile nested-esxi needs at least 2 vCPUs, got 1");
        build_fails(f, "{\"name\": \"x\", \"profile\": \"nested-hyperv\", \"vcpus\": 2, "
                       "\"memory_mb\": 2048}",
                    intel, "InvalidInput",
                    "spec.memory_mb: profile nested-hyperv needs at least 4096 MiB, got 2048");
        build_fails(f, "{\"name\": \"x\", \"profile\": \"nested-vbox\", \"vcpus\": 2, "
                       "\"memory_mb\": 2048}",
                    intel, "InvalidInput", "spec.profile: unknown profile 'nested-vbox'");

        /* Disk bus rules. */
        spec_for(spec, sizeof(spec), "plain", ", \"disk_bus\": \"ide\"");
        build_fails(f, spec, intel, "InvalidInput",
                    "spec.disks[0].bus: ide is not available on machine q35 (use sata)");
        build_fails(f, "{\"name\": \"x\", \"vcpus\": 1, \"memory_mb\": 64, \"machine\": \"pc\","
                       " \"disk_bus\": \"ide\", \"disks\": [{\"size_gb\": 1}, {\"size_gb\": 1},"
                       " {\"size_gb\": 1}, {\"size_gb\": 1}, {\"size_gb\": 1}]}",
                    intel, "InvalidInput", "spec.disks[4].bus: at most 4 ide disks");

        /* Firmware and secure boot. */
        spec_for(spec, sizeof(spec), "nested-hyperv", ", \"machine\": \"pc\"");
        build_fails(f, spec, intel, "InvalidInput",
                    "profile secure_boot: secure boot needs a q35 machine type, not pc");
        spec_for(spec, sizeof(spec), "plain", ", \"secure_boot\": true, \"machine\": \"pc\"");
        build_fails(f, spec, intel, "InvalidInput",
                    "spec.secure_boot: secure boot needs a q35 machine type, not pc");
        spec_for(spec, sizeof(spec), "nested-hyperv", ", \"features\": {\"smm\": false}");
        build_fails(f, spec, intel, "InvalidInput", "spec.features.smm: secure boot needs SMM on");
        intel->secure_boot = 0;
        spec_for(spec, sizeof(spec), "nested-hyperv", "");
        build_fails(f, spec, intel, "HostCapabilityUnavailable",
                    "profile secure_boot: this host has no secure-boot UEFI firmware");
        intel->efi = 0;
        spec_for(spec, sizeof(spec), "plain", ", \"firmware\": \"efi\"");
        build_fails(f, spec, intel, "HostCapabilityUnavailable",
                    "spec.firmware: firmware efi needs UEFI firmware (OVMF)");
        intel->efi = intel->secure_boot = 1;

        /* Machine types the host's QEMU does not offer. */
        nst_strv_add(&intel->machines, "q35");
        nst_strv_add(&intel->machines, "pc");
        spec_for(spec, sizeof(spec), "plain", ", \"machine\": \"pc-q35-99.0\"");
        build_fails(f, spec, intel, "HostCapabilityUnavailable",
                    "spec.machine: machine type 'pc-q35-99.0' is not offered by this host's QEMU");
        nst_strv_clear(&intel->machines);

        /* CPU modes. */
        spec_for(spec, sizeof(spec), "plain", ", \"cpu_mode\": \"host-passthrough\"");
        build_fails(f, spec, tcg, "HostCapabilityUnavailable",
                    "spec.cpu_mode: host-passthrough is not available with virt_type qemu");
        tcg->mode_custom = 0;
        spec_for(spec, sizeof(spec), "plain",
                 ", \"cpu_mode\": \"custom\", \"cpu_model\": \"EPYC\"");
        build_fails(f, spec, tcg, "HostCapabilityUnavailable",
                    "spec.cpu_mode: custom is not available with virt_type qemu");
        tcg->mode_host_model = 0;
        spec_for(spec, sizeof(spec), "nested-kvm", ", \"allow_emulated_nesting\": true");
        build_fails(f, spec, tcg, "HostCapabilityUnavailable",
                    "profile nested-kvm: CPU mode host-passthrough is not available");
        spec_for(spec, sizeof(spec), "nested-kvm", ", \"cpu_features\": [\"-vmx\"]");
        build_fails(f, spec, intel, "InvalidInput",
                    "spec.cpu_features[0]: cannot disable vmx: profile nested-kvm requires it");

        /* Hyper-V: host limits and dependencies. */
        spec_for(spec, sizeof(spec), "nested-hyperv",
                 ", \"features\": {\"hyperv\": {\"evmcs\": true}}");
        build_fails(f, spec, amd, "HostCapabilityUnavailable",
                    "spec.features.hyperv.evmcs: not available on this host (evmcs is Intel-only)");
        spec_for(spec, sizeof(spec), "nested-hyperv",
                 ", \"features\": {\"hyperv\": {\"synic\": false}}");
        build_fails(f, spec, intel, "InvalidInput",
                    "spec.features.hyperv.stimer: requires synic, which is off");
        spec_for(spec, sizeof(spec), "plain", ", \"features\": {\"hyperv\": {\"stimer\": true}}");
        build_fails(f, spec, intel, "InvalidInput",
                    "spec.features.hyperv.stimer: requires vpindex, synic, time, which are off");
        spec_for(spec, sizeof(spec), "plain", ", \"features\": {\"hyperv\": {\"evmcs\": true}}");
        build_fails(f, spec, intel, "InvalidInput",
                    "spec.features.hyperv.evmcs: requires vapic, which is off");
        tcg->mode_host_model = 1;
        spec_for(spec, sizeof(spec), "nested-hyperv",
                 ", \"allow_emulated_nesting\": true,"
                 " \"features\": {\"hyperv\": {\"synic\": true}}");
        build_fails(f, spec, tcg, "HostCapabilityUnavailable",
                    "spec.features.hyperv.synic: not available on this host (TCG does not "
                    "provide it)");
        nst_host_caps_free(intel);
        nst_host_caps_free(amd);
        nst_host_caps_free(tcg);
}

static void test_host_adjustments(void **state) {
        struct fixture *f = *state;
        struct nst_host_caps *caps = lt_caps(LT_AMD_NESTED);
        nst_strv_add(&caps->cpu_disable, "arch-capabilities");
        nst_strv_add(&caps->cpu_disable, "svm"); /* never disables the nesting flag */
        struct nst_domain_plan plan;
        char spec[1024];
        spec_for(spec, sizeof(spec), "nested-kvm", "");
        char *xml = build_ok(f, spec, caps, &plan);
        xmlDocPtr d = lt_doc(xml);
        assert_xs(d, "/domain/cpu/feature[@name='arch-capabilities']/@policy", "disable");
        assert_xs(d, "/domain/cpu/feature[@name='svm']/@policy", "require");
        assert_xcount(d, "/domain/cpu/feature[@name='svm']", 1);
        xmlFreeDoc(d);
        free(xml);

        /* The spec can take a detected adjustment back. */
        spec_for(spec, sizeof(spec), "plain", ", \"cpu_features\": [\"+arch-capabilities\"]");
        xml = build_ok(f, spec, caps, &plan);
        d = lt_doc(xml);
        assert_xs(d, "/domain/cpu/feature[@name='arch-capabilities']/@policy", "require");
        xmlFreeDoc(d);
        free(xml);

        /* Custom CPUs name their features themselves. */
        spec_for(spec, sizeof(spec), "plain",
                 ", \"cpu_mode\": \"custom\", \"cpu_model\": \"EPYC\"");
        xml = build_ok(f, spec, caps, &plan);
        d = lt_doc(xml);
        assert_xcount(d, "/domain/cpu/feature[@name='arch-capabilities']", 0);
        xmlFreeDoc(d);
        free(xml);

        /* Under TCG (emulated nesting) host MSRs do not matter. */
        caps->nested_param = 0;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_host_caps_finish(caps, NULL, &err), 0);
        nst_strv_add(&caps->cpu_disable, "arch-capabilities");
        spec_for(spec, sizeof(spec), "nested-kvm", ", \"allow_emulated_nesting\": true");
        xml = build_ok(f, spec, caps, &plan);
        d = lt_doc(xml);
        assert_xcount(d, "/domain/cpu/feature[@name='arch-capabilities']", 0);
        xmlFreeDoc(d);
        free(xml);
        assert_true(plan.emulated_nesting);
        assert_non_null(strstr(plan.notes, "nesting emulated by TCG (svm)"));
        assert_non_null(strstr(plan.notes, "cpu_mode host-passthrough -> host-model"));
        nst_host_caps_free(caps);
}

static void test_many_disks_names(void **state) {
        struct fixture *f = *state;
        struct nst_host_caps *caps = lt_caps(LT_INTEL_NESTED);
        char spec[4096] = "{\"name\": \"d\", \"vcpus\": 1, \"memory_mb\": 64, \"disks\": [";
        for (int i = 0; i < 64; i++)
                strcat(spec, i ? ", {\"size_gb\": 1}" : "{\"size_gb\": 1}");
        strcat(spec, "]}");
        struct nst_domain_plan plan;
        char *xml = build_ok(f, spec, caps, &plan);
        xmlDocPtr d = lt_doc(xml);
        assert_xcount(d, "/domain/devices/disk", 64);
        assert_xs(d, "/domain/devices/disk[26]/target/@dev", "vdz");
        assert_xs(d, "/domain/devices/disk[27]/target/@dev", "vdaa");
        assert_xs(d, "/domain/devices/disk[52]/target/@dev", "vdaz");
        assert_xs(d, "/domain/devices/disk[53]/target/@dev", "vdba");
        assert_xs(d, "starts-with(/domain/devices/disk[64]/source/@file, "
                     "'/srv/nestor/instances/')",
                  "true");
        assert_xs(d, "substring-after(substring-after(/domain/devices/disk[64]/source/@file, "
                     "'/instances/'), '/')",
                  "disk63.qcow2");
        xmlFreeDoc(d);
        free(xml);
        nst_host_caps_free(caps);
}

static const struct nst_pci_claim hostdevs[] = {
        {.request = "claim-1", .address = "0000:81:00.1", .vlan = -1},
        {.address = "0001:3b:1f.7", .form = NST_PCI_FORM_INTERFACE, .mac = "fa:16:3e:00:00:07",
         .vlan = 100, .wwnn = "", .wwpn = ""},
        {.request = "fc#0", .address = "0000:05:00.2", .vlan = -1, .wwnn = "5001a4a000000001",
         .wwpn = "5001a4a000000002", .vhba = "scsi_host12"},
};

static void test_hostdevs_and_claims(void **state) {
        struct fixture *f = *state;
        struct nst_host_caps *caps = lt_caps(LT_INTEL_NESTED);
        struct nst_build_context ctx = base_ctx;
        ctx.claims = hostdevs;
        ctx.n_claims = 3;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_domain_plan plan;
        char spec[1024];
        spec_for(spec, sizeof(spec), "plain", "");
        char *xml = build(f, spec, caps, &ctx, &plan, &err);
        assert_non_null(xml);
        xmlDocPtr d = lt_doc(xml);
        assert_xcount(d, "/domain/numatune", 0);
        assert_xcount(d, "/domain/devices/hostdev[@mode='subsystem'][@type='pci'][@managed='yes']",
                      2);
        assert_xs(d, "/domain/devices/hostdev[1]/source/address/@domain", "0x0000");
        assert_xs(d, "/domain/devices/hostdev[1]/source/address/@bus", "0x81");
        assert_xs(d, "/domain/devices/hostdev[1]/source/address/@slot", "0x00");
        assert_xs(d, "/domain/devices/hostdev[1]/source/address/@function", "0x1");
        assert_xcount(d, "/domain/devices/hostdev[1]/source/address/@type", 0);
        assert_xs(d, "/domain/devices/hostdev[2]/source/address/@bus", "0x05");
        assert_xs(d, "/domain/devices/hostdev[2]/source/address/@function", "0x2");
        /* The VF as a NIC: MAC, typed source address, one VLAN tag. */
        assert_xcount(d, "/domain/devices/interface[@type='hostdev'][@managed='yes']", 1);
        assert_xs(d, "/domain/devices/interface[@type='hostdev']/mac/@address",
                  "fa:16:3e:00:00:07");
        assert_xs(d, "/domain/devices/interface[@type='hostdev']/source/address/@type", "pci");
        assert_xs(d, "/domain/devices/interface[@type='hostdev']/source/address/@domain",
                  "0x0001");
        assert_xs(d, "/domain/devices/interface[@type='hostdev']/source/address/@slot", "0x1f");
        assert_xs(d, "/domain/devices/interface[@type='hostdev']/source/address/@function",
                  "0x7");
        assert_xcount(d, "/domain/devices/interface[@type='hostdev']/vlan/tag", 1);
        assert_xs(d, "/domain/devices/interface[@type='hostdev']/vlan/tag/@id", "100");
        assert_xs(d, "/domain/metadata/n:instance/n:claims/n:claim[1]/@address", "0000:81:00.1");
        assert_xs(d, "/domain/metadata/n:instance/n:claims/n:claim[1]/@id", "claim-1");
        assert_xs(d, "/domain/metadata/n:instance/n:claims/n:claim[1]/@kind", "pci");
        assert_xs(d, "/domain/metadata/n:instance/n:claims/n:claim[1]/@form", "hostdev");
        assert_xs(d, "/domain/metadata/n:instance/n:claims/n:claim[2]/@address", "0001:3b:1f.7");
        assert_xs(d, "/domain/metadata/n:instance/n:claims/n:claim[2]/@form", "interface");
        assert_xs(d, "/domain/metadata/n:instance/n:claims/n:claim[2]/@vlan", "100");
        assert_xcount(d, "/domain/metadata/n:instance/n:claims/n:claim[2]/@id", 0);
        assert_xs(d, "/domain/metadata/n:instance/n:claims/n:claim[3]/@wwpn", "5001a4a000000002");
        xmlFreeDoc(d);
        free(xml);

        /* The guest's host NUMA nodes: memory bound there (strict). */
        spec_for(spec, sizeof(spec), "plain", ", \"numa_nodes\": [1, 3]");
        xml = build(f, spec, caps, &ctx, &plan, &err);
        assert_non_null(xml);
        d = lt_doc(xml);
        assert_xs(d, "/domain/numatune/memory/@mode", "strict");
        assert_xs(d, "/domain/numatune/memory/@nodeset", "1,3");
        xmlFreeDoc(d);
        free(xml);
        spec_for(spec, sizeof(spec), "plain", "");

        struct nst_pci_claim bad = {.address = "0000:00:20.0", .vlan = -1};
        ctx.claims = &bad;
        ctx.n_claims = 1;
        assert_null(build(f, spec, caps, &ctx, &plan, &err));
        lt_error_is(&err, "InvalidInput", "PCI device 0: address '0000:00:20.0'");
        bad = (struct nst_pci_claim){.address = "0000:03:10.0", .form = NST_PCI_FORM_INTERFACE,
                                     .mac = "fa:16:3e:00:00:01", .vlan = 4095};
        assert_null(build(f, spec, caps, &ctx, &plan, &err));
        lt_error_is(&err, "InvalidInput", "PCI device 0 (0000:03:10.0): VLAN 4095 is outside 0-4094");
        snprintf(bad.mac, sizeof(bad.mac), "01:00:5e:00:00:01");
        bad.vlan = 5;
        assert_null(build(f, spec, caps, &ctx, &plan, &err));
        lt_error_is(&err, "InvalidInput",
                    "PCI device 0 (0000:03:10.0): '01:00:5e:00:00:01' is not a unicast MAC");
        ctx.n_claims = 0;
        ctx.instances_path = "relative/path";
        assert_null(build(f, spec, caps, &ctx, &plan, &err));
        lt_error_is(&err, "InvalidInput", "instances path must be absolute");
        nst_host_caps_free(caps);
}

/* ---- metadata ---- */

static void test_metadata_round_trip(void **state) {
        struct fixture *f = *state;
        struct nst_host_caps *caps = lt_caps(LT_AMD_NESTED);
        struct nst_build_context ctx = base_ctx;
        ctx.user_name = "O'Brien & <co> \"ops\" \xc3\xa9t\xc3\xa9";
        ctx.project_name = "tab\there\nnewline";
        ctx.claims = hostdevs;
        ctx.n_claims = 3;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_domain_plan plan;
        char spec[1024];
        spec_for(spec, sizeof(spec), "nested-esxi", "");
        char *xml = build(f, spec, caps, &ctx, &plan, &err);
        assert_non_null(xml);

        struct nst_instance_meta *m = NULL;
        assert_int_equal(nst_domain_metadata_parse(xml, &m, &err), 0);
        assert_string_equal(m->name, "t-nested-esxi");
        assert_int_equal(strlen(m->uuid), 36);
        assert_string_equal(m->profile, "nested-esxi");
        assert_string_equal(m->user_id, "u-1");
        assert_string_equal(m->user_name, ctx.user_name);
        assert_string_equal(m->project_id, "p-1");
        assert_string_equal(m->project_name, ctx.project_name);
        assert_string_equal(m->created_at, "2024-05-01T12:00:00Z");
        assert_string_equal(m->virt_type, "kvm");
        assert_false(m->emulated_nesting);
        assert_int_equal(m->n_nesting, 2);
        assert_string_equal(m->nesting[0], "svm");
        assert_string_equal(m->nesting[1], "npt");
        assert_int_equal(m->n_nics, 2);
        assert_string_equal(m->nics[0].mac, "52:54:00:00:00:01");
        assert_string_equal(m->nics[0].network, "lab");
        assert_null(m->nics[0].bridge);
        assert_string_equal(m->nics[1].bridge, "br-ex");
        assert_int_equal(m->n_disks, 2);
        assert_string_equal(m->disks[0].dev, "sda");
        assert_string_equal(m->disks[0].base, "/var/lib/nestor/images/base.qcow2");
        assert_int_equal(m->disks[0].size_gb, 0);
        assert_null(m->disks[1].base);
        assert_int_equal(m->disks[1].size_gb, 20);
        char path[128];
        snprintf(path, sizeof(path), "/srv/nestor/instances/%s/disk1.qcow2", m->uuid);
        assert_string_equal(m->disks[1].path, path);
        assert_int_equal(m->n_claims, 3);
        assert_string_equal(m->claims[0].kind, "pci");
        assert_string_equal(m->claims[0].pci.request, "claim-1");
        assert_string_equal(m->claims[0].pci.address, "0000:81:00.1");
        assert_int_equal(m->claims[0].pci.form, NST_PCI_FORM_HOSTDEV);
        assert_int_equal(m->claims[0].pci.vlan, -1);
        assert_string_equal(m->claims[1].pci.request, "");
        assert_int_equal(m->claims[1].pci.form, NST_PCI_FORM_INTERFACE);
        assert_string_equal(m->claims[1].pci.mac, "fa:16:3e:00:00:07");
        assert_int_equal(m->claims[1].pci.vlan, 100);
        assert_string_equal(m->claims[2].pci.wwnn, "5001a4a000000001");
        assert_string_equal(m->claims[2].pci.wwpn, "5001a4a000000002");
        assert_string_equal(m->claims[2].pci.vhba, "scsi_host12");
        nst_instance_meta_free(m);
        free(xml);

        /* No owner in the context: no owner element, and parsing copes. */
        spec_for(spec, sizeof(spec), "plain", "");
        struct nst_build_context bare = {0};
        xml = build(f, spec, caps, &bare, &plan, &err);
        assert_non_null(xml);
        xmlDocPtr d = lt_doc(xml);
        assert_xcount(d, "//n:owner", 0);
        assert_xcount(d, "//n:created", 0);
        xmlFreeDoc(d);
        assert_int_equal(nst_domain_metadata_parse(xml, &m, &err), 0);
        assert_null(m->user_id);
        assert_null(m->created_at);
        assert_int_equal(m->n_nesting, 0);
        assert_int_equal(m->n_claims, 0);
        assert_non_null(strstr(m->disks[0].path, NST_DEFAULT_INSTANCES_PATH "/"));
        nst_instance_meta_free(m);
        free(xml);
        nst_host_caps_free(caps);
}

static void test_metadata_element_and_errors(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_instance_meta *m = NULL;
        /* What virDomainGetMetadata returns: the element alone (any prefix). */
        const char *element =
                "<x:instance xmlns:x='" NST_METADATA_NS "'><x:profile>nested-kvm</x:profile>"
                "<x:virt type='qemu'/><x:nesting emulated='yes'><x:feature name='svm'/>"
                "</x:nesting><x:nics><x:nic mac='52:54:00:00:00:09' network='n'/></x:nics>"
                "</x:instance>";
        assert_int_equal(nst_domain_metadata_parse(element, &m, &err), 0);
        assert_string_equal(m->profile, "nested-kvm");
        assert_string_equal(m->name, "");
        assert_true(m->emulated_nesting);
        assert_int_equal(m->n_nesting, 1);
        assert_int_equal(m->n_nics, 1);
        nst_instance_meta_free(m);
        m = NULL;
        /* libvirt hands the element back without its namespace. */
        assert_int_equal(nst_domain_metadata_parse("<instance><profile>plain</profile><nics>"
                                                   "<nic mac='52:54:00:00:00:09' bridge='b'/>"
                                                   "</nics></instance>",
                                                   &m, &err),
                         0);
        assert_string_equal(m->profile, "plain");
        assert_string_equal(m->nics[0].bridge, "b");
        nst_instance_meta_free(m);
        m = NULL;

        /* Not Nestor's guest. */
        assert_int_equal(nst_domain_metadata_parse("<domain type='kvm'><name>x</name></domain>",
                                                   &m, &err),
                         -ENOENT);
        lt_error_is(&err, "InvalidMetadata", "the domain has no Nestor metadata");
        /* Another namespace with the same local names is not ours. */
        assert_int_equal(nst_domain_metadata_parse(
                                 "<domain><metadata><instance xmlns='urn:other'><profile>p"
                                 "</profile></instance></metadata></domain>",
                                 &m, &err),
                         -ENOENT);
        assert_int_equal(nst_domain_metadata_parse("<domain><metadata>", &m, &err), -EINVAL);
        lt_error_is(&err, "InvalidMetadata", "domain XML: malformed XML");
        assert_int_equal(nst_domain_metadata_parse(
                                 "<i xmlns='" NST_METADATA_NS "'/>", &m, &err),
                         -ENOENT);
        assert_int_equal(nst_domain_metadata_parse("<instance xmlns='" NST_METADATA_NS "'/>", &m,
                                                   &err),
                         -EINVAL);
        lt_error_is(&err, "InvalidMetadata", "Nestor metadata: missing or invalid profile");
        assert_int_equal(nst_domain_metadata_parse(
                                 "<instance xmlns='" NST_METADATA_NS "'><profile>p</profile>"
                                 "<nics><nic mac='01:00:00:00:00:00'/></nics></instance>",
                                 &m, &err),
                         -EINVAL);
        lt_error_is(&err, "InvalidMetadata", "Nestor metadata: nic 0 has no valid mac");
        assert_int_equal(nst_domain_metadata_parse(
                                 "<instance xmlns='" NST_METADATA_NS "'><profile>p</profile>"
                                 "<nesting><feature name=\"x']|//*['\"/></nesting></instance>",
                                 &m, &err),
                         -EINVAL);
        lt_error_is(&err, "InvalidMetadata", "Nestor metadata: invalid nesting feature");
        assert_int_equal(nst_domain_metadata_parse(
                                 "<instance xmlns='" NST_METADATA_NS "'><profile>p</profile>"
                                 "<disks><disk dev='vda'/></disks></instance>",
                                 &m, &err),
                         -EINVAL);
        lt_error_is(&err, "InvalidMetadata", "Nestor metadata: disk 0 has no path");
        /* Bounded: a domain cannot make Nestor allocate without limit. */
        char big[8192] = "<instance xmlns='" NST_METADATA_NS "'><profile>p</profile><nics>";
        for (int i = 0; i < 33; i++)
                strcat(big, "<nic mac='52:54:00:00:00:01'/>");
        strcat(big, "</nics></instance>");
        assert_int_equal(nst_domain_metadata_parse(big, &m, &err), -E2BIG);
        lt_error_is(&err, "InvalidMetadata", "Nestor metadata: more than 32 entries");
        /* Entities are not expanded. */
        assert_int_equal(nst_domain_metadata_parse(
                                 "<!DOCTYPE i [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>"
                                 "<instance xmlns='" NST_METADATA_NS "'><profile>&e;</profile>"
                                 "</instance>",
                                 &m, &err),
                         -EINVAL);
        assert_null(m);
}

/* ---- live check ---- */

/* Parses xml, applies fn to the doc, serializes it back. */
static char *edit(const char *xml, void (*fn)(xmlDocPtr)) {
        xmlDocPtr d = lt_doc(xml);
        fn(d);
        xmlChar *out = NULL;
        int len = 0;
        xmlDocDumpMemory(d, &out, &len);
        char *r = strdup((const char *)out);
        xmlFree(out);
        xmlFreeDoc(d);
        return r;
}

static xmlNodePtr first(xmlDocPtr d, const char *expr) {
        xmlXPathObjectPtr o = lt_eval(d, expr);
        assert_true(o->nodesetval && o->nodesetval->nodeNr > 0);
        xmlNodePtr n = o->nodesetval->nodeTab[0];
        xmlXPathFreeObject(o);
        return n;
}

static void disable_vmx(xmlDocPtr d) {
        xmlSetProp(first(d, "/domain/cpu/feature[@name='vmx']"), BAD_CAST "policy",
                   BAD_CAST "disable");
}

static void remove_vmx(xmlDocPtr d) {
        xmlNodePtr n = first(d, "/domain/cpu/feature[@name='vmx']");
        xmlUnlinkNode(n);
        xmlFreeNode(n);
}

static void expand_to_custom(xmlDocPtr d) {
        /* What libvirt shows for a started host-model guest: a model with
         * the flag inside it and no explicit feature. */
        remove_vmx(d);
        xmlNodePtr cpu = first(d, "/domain/cpu");
        xmlSetProp(cpu, BAD_CAST "mode", BAD_CAST "custom");
        xmlNewTextChild(cpu, NULL, BAD_CAST "model", BAD_CAST "Skylake-Client");
}

static void remove_cpu(xmlDocPtr d) {
        xmlNodePtr n = first(d, "/domain/cpu");
        xmlUnlinkNode(n);
        xmlFreeNode(n);
}

static void test_check_live(void **state) {
        struct fixture *f = *state;
        struct nst_host_caps *caps = lt_caps(LT_INTEL_NESTED);
        struct nst_domain_plan plan;
        struct nst_error err = NST_ERROR_INIT;
        char spec[1024];
        spec_for(spec, sizeof(spec), "nested-kvm", "");
        char *xml = build_ok(f, spec, caps, &plan);
        assert_int_equal(nst_domain_xml_check_live(xml, &err), 0);

        char *live = edit(xml, disable_vmx);
        assert_int_equal(nst_domain_xml_check_live(live, &err), -ENOTSUP);
        lt_error_is(&err, "NestingUnavailable",
                    "the running guest lost CPU feature vmx (the live XML has policy 'disable')");
        free(live);
        live = edit(xml, remove_vmx);
        assert_int_equal(nst_domain_xml_check_live(live, &err), -ENOTSUP);
        lt_error_is(&err, "NestingUnavailable", "the running guest's CPU no longer requires vmx");
        free(live);
        live = edit(xml, expand_to_custom);
        assert_int_equal(nst_domain_xml_check_live(live, &err), 0);
        free(live);
        live = edit(xml, remove_cpu);
        assert_int_equal(nst_domain_xml_check_live(live, &err), -ENOTSUP);
        lt_error_is(&err, "NestingUnavailable", "the running guest has no <cpu> definition");
        free(live);
        free(xml);

        /* Guests without a nesting requirement, and foreign guests, pass. */
        spec_for(spec, sizeof(spec), "plain", "");
        xml = build_ok(f, spec, caps, &plan);
        assert_int_equal(nst_domain_xml_check_live(xml, &err), 0);
        free(xml);
        assert_int_equal(nst_domain_xml_check_live("<domain><name>x</name></domain>", &err), 0);
        assert_int_equal(nst_domain_xml_check_live("<domain>", &err), -EINVAL);
        nst_host_caps_free(caps);
}

/* ---- the XML writer ---- */

static void test_writer(void **state) {
        struct nst_xw w;
        struct nst_error err = NST_ERROR_INIT;
        char *out = NULL;
        size_t len = 0;
        nst_xw_init(&w, 16); /* small: forces growth */
        nst_xw_start(&w, "a");
        nst_xw_attr(&w, "v", "<'\"&>\t\n\r x");
        nst_xw_attr_u64(&w, "n", 18446744073709551615ULL);
        nst_xw_attr_hex(&w, "h", 0xbeef, 2);
        nst_xw_attr_hex(&w, "z", 0, 1);
        nst_xw_start(&w, "b");
        nst_xw_text(&w, "]]> <&> 'q' \"d\" \xe2\x82\xac \xf0\x9f\x98\x80 \r");
        nst_xw_end(&w);
        nst_xw_start(&w, "c");
        nst_xw_end(&w);
        nst_xw_text_u64(&w, 0);
        nst_xw_end(&w);
        assert_int_equal(nst_xw_finish(&w, &out, &len, &err), 0);
        nst_xw_release(&w);
        assert_int_equal(len, strlen(out));
        xmlDocPtr d = lt_doc(out);
        assert_xs(d, "/a/@v", "<'\"&>\t\n\r x");
        assert_xs(d, "/a/@n", "18446744073709551615");
        assert_xs(d, "/a/@h", "0xbeef");
        assert_xs(d, "/a/@z", "0x0");
        assert_xs(d, "/a/b", "]]> <&> 'q' \"d\" \xe2\x82\xac \xf0\x9f\x98\x80 \r");
        assert_xcount(d, "/a/c", 1);
        assert_xs(d, "/a/text()", "0");
        xmlFreeDoc(d);
        free(out);

        /* Values XML cannot carry poison the writer. */
        const char *bad[] = {"a\x01z", "\xff", "\xc0\xaf", "\xed\xa0\x80", "\xef\xbf\xbe",
                             "\xe2\x82", "x\x7f"};
        for (size_t i = 0; i < NST_ARRAY_SIZE(bad); i++) {
                nst_xw_init(&w, 64);
                nst_xw_start(&w, "a");
                nst_xw_attr(&w, "v", bad[i]);
                nst_xw_text(&w, "ok");
                nst_xw_end(&w);
                assert_int_equal(nst_xw_finish(&w, &out, NULL, &err), -EINVAL);
                lt_error_is(&err, "InvalidInput", "a value is not UTF-8 text that XML can carry");
                nst_xw_release(&w);
                assert_false(nst_xml_text_valid(bad[i], strlen(bad[i])));
        }
        /* Misuse is reported, not written. */
        nst_xw_init(&w, 64);
        nst_xw_start(&w, "a");
        assert_int_equal(nst_xw_finish(&w, &out, NULL, &err), -EPROTO);
        lt_error_is(&err, "InternalError", "XML writer misuse");
        nst_xw_release(&w);
        nst_xw_init(&w, 64);
        nst_xw_end(&w);
        assert_int_equal(nst_xw_finish(&w, &out, NULL, &err), -EPROTO);
        nst_xw_release(&w);
        nst_xw_init(&w, 64);
        for (int i = 0; i < NST_XW_MAX_DEPTH + 1; i++)
                nst_xw_start(&w, "d");
        assert_int_equal(nst_xw_finish(&w, &out, NULL, &err), -E2BIG);
        nst_xw_release(&w);
}

static void test_bad_context_value_is_refused(void **state) {
        struct fixture *f = *state;
        struct nst_host_caps *caps = lt_caps(LT_INTEL_NESTED);
        struct nst_build_context ctx = base_ctx;
        ctx.user_name = "bell\x07";
        struct nst_error err = NST_ERROR_INIT;
        struct nst_domain_plan plan;
        char spec[1024];
        spec_for(spec, sizeof(spec), "plain", "");
        assert_null(build(f, spec, caps, &ctx, &plan, &err));
        lt_error_is(&err, "InvalidInput", "a value is not UTF-8 text that XML can carry");
        nst_host_caps_free(caps);
}

/* ---- define for real on the test driver ---- */

static void define_undefine(virConnectPtr conn, const char *xml) {
        virDomainPtr dom = virDomainDefineXMLFlags(conn, xml, VIR_DOMAIN_DEFINE_VALIDATE);
        if (!dom)
                fail_msg("define failed: %s\n%s", virGetLastErrorMessage(), xml);
        /* What libvirt keeps still carries Nestor's metadata. */
        char *back = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, NST_METADATA_NS, 0);
        assert_non_null(back);
        struct nst_instance_meta *m = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_domain_metadata_parse(back, &m, &err), 0);
        free(back);
        char *desc = virDomainGetXMLDesc(dom, 0);
        struct nst_instance_meta *m2 = NULL;
        assert_int_equal(nst_domain_metadata_parse(desc, &m2, &err), 0);
        assert_string_equal(m->profile, m2->profile);
        assert_int_equal(m->n_nics, m2->n_nics);
        assert_int_equal(m->n_disks, m2->n_disks);
        xmlDocPtr d = lt_doc(desc);
        assert_xs(d, "/domain/uuid", m2->uuid);
        xmlFreeDoc(d);
        nst_instance_meta_free(m);
        nst_instance_meta_free(m2);
        free(desc);
        assert_int_equal(virDomainUndefine(dom), 0);
        virDomainFree(dom);
}

static void test_define_on_test_driver(void **state) {
        struct fixture *f = *state;
        virConnectPtr conn = virConnectOpen("test:///default");
        assert_non_null(conn);
        struct nst_build_context ctx = base_ctx;
        ctx.claims = hostdevs;
        ctx.n_claims = 2;
        for (size_t p = 0; p < NST_ARRAY_SIZE(profiles); p++) {
                for (enum lt_host h = LT_INTEL_NESTED; h <= LT_TCG; h++) {
                        struct nst_host_caps *caps = lt_caps(h);
                        nst_strv_add(&caps->cpu_disable, "arch-capabilities");
                        char spec[1024];
                        spec_for(spec, sizeof(spec), profiles[p],
                                 ", \"allow_emulated_nesting\": true, \"sockets\": 1,"
                                 " \"cores\": 2, \"cpu_features\": [\"+pcid\"]");
                        struct nst_error err = NST_ERROR_INIT;
                        struct nst_domain_plan plan;
                        char *xml = build(f, spec, caps, &ctx, &plan, &err);
                        if (!xml)
                                fail_msg("%s on %s: %s", profiles[p], lt_host_names[h],
                                         err.message);
                        define_undefine(conn, xml);
                        free(xml);
                        nst_host_caps_free(caps);
                }
        }
        virConnectClose(conn);
}

/* What libvirt keeps of a definition tells whether the instance can be
 * quiesced: the plain profile's agent channel, or none when the spec turns
 * it off (snapshot schedules and replications refuse `required` then). */
static void test_agent_channel_on_test_driver(void **state) {
        struct fixture *f = *state;
        virConnectPtr conn = virConnectOpen("test:///default");
        assert_non_null(conn);
        static const struct {
                const char *extra;
                int expected;
        } cases[] = {{"", 1}, {", \"guest_agent\": false", 0}};
        for (size_t i = 0; i < NST_ARRAY_SIZE(cases); i++) {
                char spec[1024];
                spec_for(spec, sizeof(spec), "plain", cases[i].extra);
                struct nst_domain_plan plan;
                struct nst_host_caps *caps = lt_caps(LT_INTEL_NESTED);
                char *xml = build_ok(f, spec, caps, &plan);
                nst_host_caps_free(caps);
                virDomainPtr dom = virDomainDefineXML(conn, xml);
                if (!dom)
                        fail_msg("define failed: %s", virGetLastErrorMessage());
                struct nst_error err = NST_ERROR_INIT;
                assert_int_equal(nst_lv_has_agent_channel(dom, &err), cases[i].expected);
                int r = nst_lv_require_agent_channel(dom, "snapshot_schedule_set", &err);
                if (cases[i].expected) {
                        assert_int_equal(r, 0);
                } else {
                        assert_int_equal(r, -EINVAL);
                        assert_string_equal(err.cls, "InvalidInput");
                        assert_non_null(strstr(err.message, "has no guest agent channel"));
                        assert_non_null(strstr(err.message, virDomainGetName(dom)));
                }
                assert_int_equal(virDomainUndefine(dom), 0);
                virDomainFree(dom);
                free(xml);
        }
        virConnectClose(conn);
}

/* The probe on the test driver feeds the builder end to end. */
static void test_probe_then_define(void **state) {
        struct fixture *f = *state;
        virConnectPtr conn = virConnectOpen("test:///default");
        assert_non_null(conn);
        struct nst_host_caps *caps = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_host_caps_probe(conn, NULL, &caps, &err), 0);
        char *xml = build(f, "{\"name\": \"probe-plain\", \"vcpus\": 1, \"memory_mb\": 512,"
                             " \"disks\": [{\"size_gb\": 1}],"
                             " \"nics\": [{\"network\": \"default\"}]}",
                          caps, NULL, NULL, &err);
        if (!xml)
                fail_msg("%s", err.message);
        define_undefine(conn, xml);
        free(xml);
        nst_host_caps_free(caps);
        virConnectClose(conn);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_profile_host_matrix),
                cmocka_unit_test(test_nesting_error_message),
                cmocka_unit_test(test_spec_overrides),
                cmocka_unit_test(test_refusals),
                cmocka_unit_test(test_host_adjustments),
                cmocka_unit_test(test_many_disks_names),
                cmocka_unit_test(test_hostdevs_and_claims),
                cmocka_unit_test(test_metadata_round_trip),
                cmocka_unit_test(test_metadata_element_and_errors),
                cmocka_unit_test(test_check_live),
                cmocka_unit_test(test_writer),
                cmocka_unit_test(test_bad_context_value_is_refused),
                cmocka_unit_test(test_define_on_test_driver),
                cmocka_unit_test(test_probe_then_define),
                cmocka_unit_test(test_agent_channel_on_test_driver),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
