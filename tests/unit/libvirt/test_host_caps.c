/* Host capability probe: /proc, /sys and /dev read under a fake root, libvirt
 * XML from canned documents (captured from libvirt 9.0 / QEMU 7.2), and the
 * live probe against test:///default and, when a daemon runs, qemu:///system. */
#include "lv_test.h"

#include <ftw.h>
#include <libvirt/virterror.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a fake root ---- */

struct fake_root {
        char dir[64];
};

static void write_file(const struct fake_root *r, const char *path, const char *text) {
        char p[256];
        snprintf(p, sizeof(p), "%s%s", r->dir, path);
        /* mkdir -p of the parent */
        for (char *s = strchr(p + strlen(r->dir) + 1, '/'); s; s = strchr(s + 1, '/')) {
                *s = '\0';
                mkdir(p, 0700);
                *s = '/';
        }
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

static void make_root(struct fake_root *r, const char *vendor, const char *flags) {
        snprintf(r->dir, sizeof(r->dir), "/tmp/nestor-caps-XXXXXX");
        assert_non_null(mkdtemp(r->dir));
        char cpuinfo[512];
        snprintf(cpuinfo, sizeof(cpuinfo),
                 "processor\t: 0\nvendor_id\t: %s\ncpu family\t: 6\n"
                 "flags\t\t: fpu vme de pse %s sse2\n\nprocessor\t: 1\nvendor_id\t: %s\n",
                 vendor, flags, vendor);
        write_file(r, "/proc/cpuinfo", cpuinfo);
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

static void remove_root(struct fake_root *r) {
        assert_int_equal(nftw(r->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

static struct nst_host_caps *probe_files(const struct fake_root *r,
                                         const struct nst_host_probe_opts *extra) {
        struct nst_host_probe_opts o = extra ? *extra : (struct nst_host_probe_opts){0};
        o.root = r->dir;
        struct nst_host_caps *c = NULL;
        struct nst_error err = NST_ERROR_INIT;
        if (nst_host_caps_probe(NULL, &o, &c, &err) < 0)
                fail_msg("probe: %s", err.message);
        return c;
}

static void test_intel_nested(void **state) {
        struct fake_root r;
        make_root(&r, "GenuineIntel", "vmx hypervisor");
        write_file(&r, "/sys/module/kvm_intel/parameters/nested", "Y\n");
        write_file(&r, "/dev/kvm", "");
        struct nst_host_caps *c = probe_files(&r, NULL);
        assert_int_equal(c->vendor, NST_VENDOR_INTEL);
        assert_true(c->cpu_vmx);
        assert_false(c->cpu_svm);
        assert_true(c->cpu_hypervisor);
        assert_true(c->kvm_device);
        assert_string_equal(c->kvm_module, "kvm_intel");
        assert_int_equal(c->nested_param, 1);
        assert_int_equal(c->virt_type, NST_VIRT_KVM);
        assert_false(c->virt_type_configured);
        assert_true(c->nesting_usable);
        assert_string_equal(c->nesting_feature, "vmx");
        assert_string_equal(c->nesting_reason,
                            "vmx in /proc/cpuinfo, kvm_intel nested=1, libvirt CPU comparison "
                            "not available");
        assert_string_equal(c->emulated_feature, "svm");
        assert_int_equal(c->cpu_disable.n, 0); /* the ioctl fails on a plain file: unknown */
        nst_host_caps_free(c);
        remove_root(&r);
}

static void test_amd_nested_off(void **state) {
        struct fake_root r;
        make_root(&r, "AuthenticAMD", "svm npt");
        write_file(&r, "/sys/module/kvm_amd/parameters/nested", "0\n");
        write_file(&r, "/dev/kvm", "");
        struct nst_host_caps *c = probe_files(&r, NULL);
        assert_int_equal(c->vendor, NST_VENDOR_AMD);
        assert_true(c->cpu_svm);
        assert_int_equal(c->nested_param, 0);
        assert_false(c->nesting_usable);
        assert_string_equal(c->nesting_feature, "svm");
        assert_string_equal(c->nesting_reason,
                            "nested virtualization is off: /sys/module/kvm_amd/parameters/nested "
                            "is N (load kvm_amd with nested=1)");
        nst_host_caps_free(c);
        remove_root(&r);
}

static void test_reasons(void **state) {
        struct fake_root r;
        /* Module not loaded. */
        make_root(&r, "GenuineIntel", "vmx");
        write_file(&r, "/dev/kvm", "");
        struct nst_host_caps *c = probe_files(&r, NULL);
        assert_false(c->nesting_usable);
        assert_string_equal(c->nesting_reason,
                            "kvm_intel is not loaded (no /sys/module/kvm_intel/parameters/nested)");
        nst_host_caps_free(c);
        remove_root(&r);

        /* No vmx flag: what this machine looks like (kvm_pvm). */
        make_root(&r, "AuthenticAMD", "hypervisor");
        write_file(&r, "/dev/kvm", "");
        write_file(&r, "/sys/module/kvm_pvm/parameters/x", "1\n");
        c = probe_files(&r, NULL);
        assert_false(c->nesting_usable);
        assert_string_equal(c->nesting_reason,
                            "the host CPU has no svm flag in /proc/cpuinfo (/dev/kvm comes from "
                            "kvm_pvm)");
        nst_host_caps_free(c);
        remove_root(&r);

        /* No /dev/kvm: TCG. */
        make_root(&r, "GenuineIntel", "vmx");
        write_file(&r, "/sys/module/kvm_intel/parameters/nested", "Y\n");
        c = probe_files(&r, NULL);
        assert_int_equal(c->virt_type, NST_VIRT_QEMU);
        assert_false(c->nesting_usable);
        assert_string_equal(c->nesting_reason, "virt_type is qemu (TCG: /dev/kvm is not usable)");
        /* libvirt's comparison has the last word. */
        c->virt_type = NST_VIRT_KVM;
        c->compare_nested = 0;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_host_caps_finish(c, NULL, &err), 0);
        assert_false(c->nesting_usable);
        assert_string_equal(c->nesting_reason,
                            "libvirt reports the host CPU cannot give vmx to a guest");
        c->compare_nested = 1;
        assert_int_equal(nst_host_caps_finish(c, NULL, &err), 0);
        assert_true(c->nesting_usable);
        c->compare_emulated = 0;
        assert_int_equal(nst_host_caps_finish(c, NULL, &err), 0);
        assert_string_equal(c->emulated_feature, "");
        nst_host_caps_free(c);
        remove_root(&r);

        /* Unknown vendor, nothing readable. */
        make_root(&r, "VIA", "");
        write_file(&r, "/dev/kvm", "");
        c = probe_files(&r, NULL);
        assert_int_equal(c->vendor, NST_VENDOR_UNKNOWN);
        assert_string_equal(c->nesting_reason, "the host CPU vendor is neither Intel nor AMD");
        nst_host_caps_free(c);
        remove_root(&r);
}

static void test_virt_type_option(void **state) {
        struct fake_root r;
        make_root(&r, "GenuineIntel", "vmx");
        write_file(&r, "/dev/kvm", "");
        struct nst_host_probe_opts o = {.virt_type = "qemu"};
        struct nst_host_caps *c = probe_files(&r, &o);
        assert_int_equal(c->virt_type, NST_VIRT_QEMU);
        assert_true(c->virt_type_configured);
        assert_string_equal(c->nesting_reason, "virt_type is qemu (TCG, configured)");
        nst_host_caps_free(c);
        o.virt_type = "auto";
        c = probe_files(&r, &o);
        assert_int_equal(c->virt_type, NST_VIRT_KVM);
        nst_host_caps_free(c);

        o.root = r.dir;
        o.virt_type = "xen";
        struct nst_error err = NST_ERROR_INIT;
        c = NULL;
        assert_int_equal(nst_host_caps_probe(NULL, &o, &c, &err), -EINVAL);
        assert_null(c);
        lt_error_is(&err, "InvalidInput", "virt_type: unknown 'xen' (expected auto, kvm, qemu)");
        remove_root(&r);
}

static void test_cpu_disabled_features(void **state) {
        struct fake_root r;
        make_root(&r, "AuthenticAMD", "hypervisor");
        write_file(&r, "/dev/kvm", "");
        write_file(&r, "/sys/module/kvm_pvm/parameters/x", "1\n");
        struct nst_host_caps *c = probe_files(&r, NULL);
        assert_int_equal(c->cpu_disable.n, 1);
        assert_string_equal(c->cpu_disable.v[0], "arch-capabilities");
        assert_string_equal(c->cpu_disable_reason,
                            "arch-capabilities: kvm_pvm refuses IA32_ARCH_CAPABILITIES (MSR "
                            "0x10a)");
        nst_host_caps_free(c);

        /* Configured features are added; detection can be turned off. */
        const char *conf[] = {"xsaves", "arch-capabilities"};
        struct nst_host_probe_opts o = {.cpu_disable = conf, .n_cpu_disable = 2};
        c = probe_files(&r, &o);
        assert_int_equal(c->cpu_disable.n, 2);
        assert_true(nst_strv_contains(&c->cpu_disable, "xsaves"));
        assert_non_null(
                strstr(c->cpu_disable_reason, "configured: [libvirt] cpu_disabled_features"));
        nst_host_caps_free(c);
        o.no_detect_cpu_disable = true;
        o.n_cpu_disable = 1;
        c = probe_files(&r, &o);
        assert_int_equal(c->cpu_disable.n, 1);
        assert_string_equal(c->cpu_disable.v[0], "xsaves");
        nst_host_caps_free(c);

        /* TCG hosts pass no MSR through: nothing detected. */
        o = (struct nst_host_probe_opts){.virt_type = "qemu"};
        c = probe_files(&r, &o);
        assert_int_equal(c->cpu_disable.n, 0);
        nst_host_caps_free(c);

        const char *bad[] = {"+xsaves"};
        o = (struct nst_host_probe_opts){.root = r.dir, .cpu_disable = bad, .n_cpu_disable = 1};
        struct nst_error err = NST_ERROR_INIT;
        c = NULL;
        assert_int_equal(nst_host_caps_probe(NULL, &o, &c, &err), -EINVAL);
        lt_error_is(&err, "InvalidInput",
                    "cpu_disabled_features: '+xsaves' is not a CPU feature name");
        remove_root(&r);
}

/* Excerpts of `virsh domcapabilities --virttype qemu --machine q35` on this
 * machine (libvirt 9.0, QEMU 7.2). */
static const char domcaps_tcg[] =
        "<domainCapabilities><path>/usr/bin/qemu-system-x86_64</path><domain>qemu</domain>"
        "<machine>pc-q35-7.2</machine><arch>x86_64</arch><vcpu max='288'/>"
        "<os supported='yes'><enum name='firmware'><value>efi</value></enum>"
        "<loader supported='yes'><value>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</value>"
        "<value>/usr/share/OVMF/OVMF_CODE_4M.secboot.fd</value>"
        "<value>/usr/share/OVMF/OVMF_CODE_4M.fd</value>"
        "<enum name='type'><value>rom</value><value>pflash</value></enum>"
        "<enum name='readonly'><value>yes</value><value>no</value></enum>"
        "<enum name='secure'><value>yes</value><value>no</value></enum></loader></os>"
        "<cpu><mode name='host-passthrough' supported='no'/>"
        "<mode name='maximum' supported='yes'><enum name='maximumMigratable'><value>on</value>"
        "<value>off</value></enum></mode>"
        "<mode name='host-model' supported='yes'><model fallback='forbid'>EPYC</model>"
        "<vendor>AMD</vendor><feature policy='require' name='npt'/>"
        "<feature policy='require' name='vgif'/><feature policy='disable' name='vme'/></mode>"
        "<mode name='custom' supported='yes'><model usable='yes' vendor='unknown'>qemu64</model>"
        "</mode></cpu>"
        "<features><vmcoreinfo supported='yes'/><hyperv supported='yes'>"
        "<enum name='features'><value>spinlocks</value><value>vendor_id</value></enum>"
        "</hyperv></features></domainCapabilities>";

/* An Intel KVM host as libvirt 9.0 describes it, firmware without secure boot. */
static const char domcaps_kvm_intel[] =
        "<domainCapabilities><domain>kvm</domain><arch>x86_64</arch>"
        "<os supported='yes'><enum name='firmware'><value>bios</value><value>efi</value></enum>"
        "<loader supported='yes'><value>/usr/share/OVMF/OVMF_CODE_4M.fd</value>"
        "<enum name='secure'><value>no</value></enum></loader></os>"
        "<cpu><mode name='host-passthrough' supported='yes'/>"
        "<mode name='host-model' supported='yes'><model fallback='forbid'>Skylake-Client-IBRS"
        "</model><vendor>Intel</vendor><feature policy='require' name='vmx'/></mode>"
        "<mode name='custom' supported='no'/></cpu>"
        "<features><hyperv supported='yes'><enum name='features'><value>relaxed</value>"
        "<value>vapic</value><value>evmcs</value></enum></hyperv></features>"
        "</domainCapabilities>";

static struct nst_host_caps *new_caps(void) {
        struct nst_host_caps *c = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_host_caps_new(&c, &err), 0);
        return c;
}

static void test_parse_domcaps(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_host_caps *c = new_caps();
        assert_int_equal(c->efi, -1);
        assert_int_equal(c->mode_host_model, -1);
        assert_int_equal(nst_host_caps_parse_domcaps(c, domcaps_tcg, &err), 0);
        assert_true(c->domcaps_known);
        assert_int_equal(c->mode_host_passthrough, 0);
        assert_int_equal(c->mode_host_model, 1);
        assert_int_equal(c->mode_maximum, 1);
        assert_int_equal(c->mode_custom, 1);
        assert_string_equal(c->host_model, "EPYC");
        assert_int_equal(c->efi, 1);
        assert_int_equal(c->secure_boot, 1);
        assert_int_equal(c->loaders.n, 3);
        assert_string_equal(c->loaders.v[1], "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd");
        assert_int_equal(c->hyperv.n, 2);
        assert_string_equal(c->hyperv.v[0], "spinlocks");
        nst_host_caps_free(c);

        c = new_caps();
        assert_int_equal(nst_host_caps_parse_domcaps(c, domcaps_kvm_intel, &err), 0);
        assert_int_equal(c->mode_host_passthrough, 1);
        assert_int_equal(c->mode_maximum, -1); /* not listed: unknown */
        assert_int_equal(c->mode_custom, 0);
        assert_string_equal(c->host_model, "Skylake-Client-IBRS");
        assert_int_equal(c->efi, 1);
        assert_int_equal(c->secure_boot, 0);
        assert_int_equal(c->hyperv.n, 3);
        nst_host_caps_free(c);

        c = new_caps();
        assert_int_equal(nst_host_caps_parse_domcaps(
                                 c, "<domainCapabilities><os supported='no'/></domainCapabilities>",
                                 &err),
                         0);
        assert_int_equal(c->efi, 0);
        assert_int_equal(c->secure_boot, 0);
        assert_int_equal(c->mode_host_model, -1);
        nst_host_caps_free(c);

        c = new_caps();
        assert_int_equal(nst_host_caps_parse_domcaps(c, "<domainCapabilities><os>", &err),
                         -EINVAL);
        lt_error_is(&err, "HypervisorError", "domain capabilities: malformed XML (line 1: ");
        assert_false(c->domcaps_known);
        assert_int_equal(nst_host_caps_parse_domcaps(c, "", &err), -EINVAL);
        lt_error_is(&err, "HypervisorError", "domain capabilities: empty XML document");
        nst_host_caps_free(c);
}

static const char capabilities[] =
        "<capabilities><host><cpu><arch>x86_64</arch><model>Skylake</model><vendor>Intel</vendor>"
        "</cpu></host>"
        "<guest><os_type>hvm</os_type><arch name='i686'><machine>pc-i440fx-7.2</machine>"
        "<machine>isapc-i686-only</machine><domain type='qemu'/></arch></guest>"
        "<guest><os_type>hvm</os_type><arch name='x86_64'><wordsize>64</wordsize>"
        "<machine maxCpus='255'>pc-i440fx-7.2</machine>"
        "<machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>"
        "<machine maxCpus='288'>pc-q35-7.2</machine>"
        "<machine canonical='pc-q35-7.2' maxCpus='288'>q35</machine>"
        "<domain type='qemu'/><domain type='kvm'><machine>microvm</machine></domain>"
        "</arch></guest></capabilities>";

static void test_parse_capabilities(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_host_caps *c = new_caps();
        c->virt_type = NST_VIRT_QEMU;
        assert_int_equal(nst_host_caps_parse_capabilities(c, capabilities, &err), 0);
        assert_int_equal(c->vendor, NST_VENDOR_INTEL); /* fallback when cpuinfo said nothing */
        assert_int_equal(c->machines.n, 4);
        assert_true(nst_strv_contains(&c->machines, "q35"));
        assert_true(nst_strv_contains(&c->machines, "pc"));
        assert_true(nst_strv_contains(&c->machines, "pc-q35-7.2"));
        assert_false(nst_strv_contains(&c->machines, "isapc-i686-only"));
        assert_false(nst_strv_contains(&c->machines, "microvm"));
        nst_host_caps_free(c);

        c = new_caps();
        c->virt_type = NST_VIRT_KVM;
        c->vendor = NST_VENDOR_AMD;
        assert_int_equal(nst_host_caps_parse_capabilities(c, capabilities, &err), 0);
        assert_int_equal(c->vendor, NST_VENDOR_AMD); /* cpuinfo wins */
        assert_int_equal(c->machines.n, 5);
        assert_true(nst_strv_contains(&c->machines, "microvm"));
        nst_host_caps_free(c);
}

static void test_strv(void **state) {
        struct nst_strv l = {0};
        assert_int_equal(nst_strv_add(&l, "a"), 0);
        assert_int_equal(nst_strv_add(&l, "a"), 0);
        assert_int_equal(nst_strv_add(&l, "b"), 0);
        assert_int_equal(l.n, 2);
        assert_true(nst_strv_contains(&l, "b"));
        assert_false(nst_strv_contains(&l, "c"));
        nst_strv_clear(&l);
        assert_int_equal(l.n, 0);
        assert_null(l.v);
}

static void test_probe_test_driver(void **state) {
        nst_lv_quiet_errors();
        virConnectPtr conn = virConnectOpen("test:///default");
        assert_non_null(conn);
        struct fake_root r;
        make_root(&r, "GenuineIntel", "vmx");
        write_file(&r, "/sys/module/kvm_intel/parameters/nested", "Y\n");
        write_file(&r, "/dev/kvm", "");
        struct nst_host_probe_opts o = {.root = r.dir};
        struct nst_host_caps *c = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_host_caps_probe(conn, &o, &c, &err), 0);
        /* The test driver has no domain capabilities nor CPU comparison:
         * unknown, not failures. */
        assert_string_equal(c->driver, "TEST");
        assert_false(c->domcaps_known);
        assert_int_equal(c->mode_host_model, -1);
        assert_int_equal(c->efi, -1);
        assert_int_equal(c->compare_nested, -1);
        assert_int_equal(c->machines.n, 0); /* it only has i686 'test' guests */
        assert_int_equal(c->memory_mb, 3072);
        assert_int_equal(c->cpus, 16);
        assert_true(c->libvirt_version >= 9000000);
        assert_true(c->nesting_usable);
        json_object *j = nst_host_caps_to_json(c), *v, *n;
        assert_true(json_object_object_get_ex(j, "driver", &v));
        assert_string_equal(json_object_get_string(v), "TEST");
        assert_true(json_object_object_get_ex(j, "nesting", &n));
        assert_true(json_object_object_get_ex(n, "usable", &v));
        assert_true(json_object_get_boolean(v));
        assert_true(json_object_object_get_ex(n, "cpu_compare", &v));
        assert_null(v);
        assert_true(json_object_object_get_ex(j, "memory_mb", &v));
        assert_int_equal(json_object_get_int(v), 3072);
        json_object_put(j);
        nst_host_caps_free(c);
        remove_root(&r);
        virConnectClose(conn);
}

/* qemu:///system when libvirtd runs (NESTOR_LIBVIRT_QEMU_URI may point at
 * another daemon); skipped otherwise. */
static void test_probe_qemu_driver(void **state) {
        const char *uri = getenv("NESTOR_LIBVIRT_QEMU_URI");
        nst_lv_quiet_errors();
        virConnectPtr conn = virConnectOpen(uri ? uri : "qemu:///system");
        if (!conn) {
                fprintf(stderr, "skipped: no libvirtd at %s: %s\n", uri ? uri : "qemu:///system",
                        virGetLastErrorMessage());
                skip();
        }
        struct nst_host_caps *c = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_host_caps_probe(conn, NULL, &c, &err), 0);
        assert_string_equal(c->driver, "QEMU");
        assert_true(c->domcaps_known);
        assert_int_equal(c->mode_host_model, 1);
        assert_true(nst_strv_contains(&c->machines, "q35"));
        assert_true(nst_strv_contains(&c->machines, "pc"));
        assert_true(c->memory_mb > 0);
        if (c->virt_type == NST_VIRT_QEMU) {
                /* TCG: no host-passthrough, and libvirt says TCG emulates svm. */
                assert_int_equal(c->mode_host_passthrough, 0);
                assert_int_equal(c->compare_emulated, 1);
                assert_string_equal(c->emulated_feature, "svm");
        }
        nst_host_caps_free(c);
        virConnectClose(conn);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_intel_nested),
                cmocka_unit_test(test_amd_nested_off),
                cmocka_unit_test(test_reasons),
                cmocka_unit_test(test_virt_type_option),
                cmocka_unit_test(test_cpu_disabled_features),
                cmocka_unit_test(test_parse_domcaps),
                cmocka_unit_test(test_parse_capabilities),
                cmocka_unit_test(test_strv),
                cmocka_unit_test(test_probe_test_driver),
                cmocka_unit_test(test_probe_qemu_driver),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
