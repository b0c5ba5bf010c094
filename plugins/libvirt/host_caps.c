#include "plugins/libvirt/host_caps.h"

#include <errno.h>
#include <fcntl.h>
#include <libvirt/virterror.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugins/libvirt/guest_spec.h"
#include "messages/json_util.h"
#include "plugins/libvirt/lv_util.h"

#define MSR_IA32_ARCH_CAPABILITIES 0x10a
#define STRV_MAX 512 /* machine types are ~60 here; a bound against a hostile daemon */

/* ---- string lists ---- */

bool nst_strv_contains(const struct nst_strv *l, const char *s) {
        for (size_t i = 0; i < l->n; i++)
                if (strcmp(l->v[i], s) == 0)
                        return true;
        return false;
}

int nst_strv_add(struct nst_strv *l, const char *s) {
        if (nst_strv_contains(l, s))
                return 0;
        if (l->n >= STRV_MAX)
                return -E2BIG;
        char **v = realloc(l->v, (l->n + 1) * sizeof(*v));
        if (!v)
                return -ENOMEM;
        l->v = v;
        if (!(l->v[l->n] = strdup(s)))
                return -ENOMEM;
        l->n++;
        return 0;
}

void nst_strv_clear(struct nst_strv *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i]);
        free(l->v);
        l->v = NULL;
        l->n = 0;
}

/* ---- lifetime ---- */

int nst_host_caps_new(struct nst_host_caps **ret, struct nst_error *err) {
        struct nst_host_caps *c = calloc(1, sizeof(*c));
        if (!c)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        c->nested_param = -1;
        c->kvm_arch_caps_msr = -1;
        c->compare_nested = -1;
        c->compare_emulated = -1;
        c->mode_host_passthrough = c->mode_host_model = c->mode_maximum = c->mode_custom = -1;
        c->efi = -1;
        c->secure_boot = -1;
        *ret = c;
        return 0;
}

void nst_host_caps_free(struct nst_host_caps *c) {
        if (!c)
                return;
        nst_strv_clear(&c->machines);
        nst_strv_clear(&c->loaders);
        nst_strv_clear(&c->hyperv);
        nst_strv_clear(&c->cpu_disable);
        free(c);
}

const char *nst_virt_type_name(enum nst_virt_type t) {
        return t == NST_VIRT_KVM ? "kvm" : "qemu";
}

const char *nst_cpu_vendor_name(enum nst_cpu_vendor v) {
        return v == NST_VENDOR_INTEL ? "intel" : v == NST_VENDOR_AMD ? "amd" : "unknown";
}

static int oom(struct nst_error *err) {
        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
}

static int strv_add(struct nst_strv *l, const char *s, struct nst_error *err) {
        int r = nst_strv_add(l, s);
        if (r == -ENOMEM)
                return oom(err);
        return 0; /* past the bound, the rest is dropped: it is only informative */
}

/* ---- files: /proc, /sys, /dev ---- */

static void root_path(char *buf, size_t len, const struct nst_host_probe_opts *o,
                      const char *path) {
        snprintf(buf, len, "%s%s", o && o->root ? o->root : "", path);
}

static bool path_exists(const struct nst_host_probe_opts *o, const char *path) {
        char p[512];
        root_path(p, sizeof(p), o, path);
        return access(p, F_OK) == 0;
}

/* First line of a sysfs file, trimmed; -1 when it cannot be read. */
static int read_line(const struct nst_host_probe_opts *o, const char *path, char *buf,
                     size_t len) {
        char p[512];
        root_path(p, sizeof(p), o, path);
        FILE *f = fopen(p, "re");
        if (!f)
                return -1;
        bool ok = fgets(buf, (int)len, f) != NULL;
        fclose(f);
        if (!ok)
                return -1;
        buf[strcspn(buf, "\r\n")] = '\0';
        return 0;
}

static bool has_word(const char *list, const char *word) {
        size_t n = strlen(word);
        for (const char *p = list; (p = strstr(p, word)); p += n)
                if ((p == list || p[-1] == ' ' || p[-1] == '\t') &&
                    (p[n] == '\0' || p[n] == ' ' || p[n] == '\t' || p[n] == '\n'))
                        return true;
        return false;
}

/* Vendor and flags of the first processor: they are the same on every CPU
 * of the hosts Nestor runs on. */
static void read_cpuinfo(struct nst_host_caps *c, const struct nst_host_probe_opts *o) {
        char p[512];
        root_path(p, sizeof(p), o, "/proc/cpuinfo");
        FILE *f = fopen(p, "re");
        if (!f)
                return;
        char *line = NULL;
        size_t cap = 0;
        bool vendor = false, flags = false;
        while ((!vendor || !flags) && getline(&line, &cap, f) > 0) {
                char *colon = strchr(line, ':');
                if (!colon)
                        continue;
                if (!vendor && strncmp(line, "vendor_id", 9) == 0) {
                        vendor = true;
                        if (strstr(colon, "GenuineIntel"))
                                c->vendor = NST_VENDOR_INTEL;
                        else if (strstr(colon, "AuthenticAMD") || strstr(colon, "HygonGenuine"))
                                c->vendor = NST_VENDOR_AMD;
                } else if (!flags && strncmp(line, "flags", 5) == 0) {
                        flags = true;
                        c->cpu_vmx = has_word(colon + 1, "vmx");
                        c->cpu_svm = has_word(colon + 1, "svm");
                        c->cpu_hypervisor = has_word(colon + 1, "hypervisor");
                }
        }
        free(line);
        fclose(f);
}

/* Does KVM offer IA32_ARCH_CAPABILITIES? QEMU sets it for host-model and
 * host-passthrough CPUs and aborts when KVM refuses the MSR. */
static int kvm_has_arch_caps(int fd) {
        struct kvm_msr_list probe = {.nmsrs = 0};
        if (ioctl(fd, KVM_GET_MSR_FEATURE_INDEX_LIST, &probe) < 0 && errno != E2BIG)
                return -1;
        if (probe.nmsrs == 0 || probe.nmsrs > 4096)
                return probe.nmsrs == 0 ? 0 : -1;
        struct kvm_msr_list *l = malloc(sizeof(*l) + probe.nmsrs * sizeof(l->indices[0]));
        if (!l)
                return -1;
        l->nmsrs = probe.nmsrs;
        int r = -1;
        if (ioctl(fd, KVM_GET_MSR_FEATURE_INDEX_LIST, l) == 0) {
                r = 0;
                for (unsigned i = 0; i < l->nmsrs && !r; i++)
                        r = l->indices[i] == MSR_IA32_ARCH_CAPABILITIES;
        }
        free(l);
        return r;
}

int nst_host_caps_read_host(struct nst_host_caps *c, const struct nst_host_probe_opts *o,
                            struct nst_error *err) {
        read_cpuinfo(c, o);

        char p[512];
        root_path(p, sizeof(p), o, "/dev/kvm");
        int fd = open(p, O_RDWR | O_CLOEXEC);
        if (fd >= 0) {
                c->kvm_device = true;
                c->kvm_arch_caps_msr = kvm_has_arch_caps(fd);
                close(fd);
        }

        static const char *const modules[] = {"kvm_intel", "kvm_amd", "kvm_pvm"};
        for (size_t i = 0; i < NST_ARRAY_SIZE(modules); i++) {
                char m[64];
                snprintf(m, sizeof(m), "/sys/module/%s", modules[i]);
                if (path_exists(o, m)) {
                        snprintf(c->kvm_module, sizeof(c->kvm_module), "%s", modules[i]);
                        break;
                }
        }

        const char *nested = c->vendor == NST_VENDOR_INTEL
                                     ? "/sys/module/kvm_intel/parameters/nested"
                             : c->vendor == NST_VENDOR_AMD ? "/sys/module/kvm_amd/parameters/nested"
                                                           : NULL;
        char v[16];
        if (nested && read_line(o, nested, v, sizeof(v)) == 0)
                c->nested_param = (v[0] == 'Y' || v[0] == 'y' || v[0] == '1') ? 1 : 0;

        const char *vt = o ? o->virt_type : NULL;
        if (vt && strcmp(vt, "auto") != 0 && vt[0]) {
                if (strcmp(vt, "kvm") == 0)
                        c->virt_type = NST_VIRT_KVM;
                else if (strcmp(vt, "qemu") == 0)
                        c->virt_type = NST_VIRT_QEMU;
                else
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "virt_type: unknown '%.32s' (expected auto, kvm, "
                                             "qemu)",
                                             vt);
                c->virt_type_configured = true;
        } else {
                c->virt_type = c->kvm_device ? NST_VIRT_KVM : NST_VIRT_QEMU;
        }
        return 0;
}

/* ---- libvirt XML ---- */

static int collect_text(xmlXPathContextPtr ctx, const char *expr, struct nst_strv *out,
                        struct nst_error *err) {
        _cleanup_(xmlXPathFreeObjectp) xmlXPathObjectPtr o = nst_xpath_nodes(ctx, NULL, expr);
        for (int i = 0; i < nst_xpath_count(o); i++) {
                xmlChar *s = xmlNodeGetContent(o->nodesetval->nodeTab[i]);
                if (!s)
                        continue;
                int r = s[0] ? strv_add(out, (const char *)s, err) : 0;
                xmlFree(s);
                if (r < 0)
                        return r;
        }
        return 0;
}

int nst_host_caps_parse_capabilities(struct nst_host_caps *c, const char *xml,
                                     struct nst_error *err) {
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        _cleanup_(xmlXPathFreeContextp) xmlXPathContextPtr ctx = NULL;
        int r = nst_xml_parse_xpath(xml, "host capabilities", "HypervisorError", &doc, &ctx, err);
        if (r < 0)
                return r;
        if (c->vendor == NST_VENDOR_UNKNOWN) {
                _cleanup_free_ char *v = nst_xpath_string(ctx, NULL,
                                                          "string(/capabilities/host/cpu/vendor)");
                if (v && strcmp(v, "Intel") == 0)
                        c->vendor = NST_VENDOR_INTEL;
                else if (v && (strcmp(v, "AMD") == 0 || strcmp(v, "Hygon") == 0))
                        c->vendor = NST_VENDOR_AMD;
        }
        /* Machines of the arch's default emulator, plus those listed for our
         * domain type. */
        char expr[256];
        snprintf(expr, sizeof(expr),
                 "/capabilities/guest[os_type='hvm']/arch[@name='x86_64']/machine | "
                 "/capabilities/guest[os_type='hvm']/arch[@name='x86_64']/domain[@type='%s']/"
                 "machine",
                 nst_virt_type_name(c->virt_type));
        return collect_text(ctx, expr, &c->machines, err);
}

static int mode_supported(xmlXPathContextPtr ctx, const char *mode) {
        char expr[160];
        snprintf(expr, sizeof(expr), "string(/domainCapabilities/cpu/mode[@name='%s']/@supported)",
                 mode);
        _cleanup_free_ char *v = nst_xpath_string(ctx, NULL, expr);
        return !v || !v[0] ? -1 : strcmp(v, "yes") == 0;
}

int nst_host_caps_parse_domcaps(struct nst_host_caps *c, const char *xml,
                                struct nst_error *err) {
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        _cleanup_(xmlXPathFreeContextp) xmlXPathContextPtr ctx = NULL;
        int r = nst_xml_parse_xpath(xml, "domain capabilities", "HypervisorError", &doc, &ctx, err);
        if (r < 0)
                return r;
        c->domcaps_known = true;
        c->mode_host_passthrough = mode_supported(ctx, "host-passthrough");
        c->mode_host_model = mode_supported(ctx, "host-model");
        c->mode_maximum = mode_supported(ctx, "maximum");
        c->mode_custom = mode_supported(ctx, "custom");
        _cleanup_free_ char *model = nst_xpath_string(
                ctx, NULL, "string(/domainCapabilities/cpu/mode[@name='host-model']/model)");
        if (model)
                snprintf(c->host_model, sizeof(c->host_model), "%s", model);

        _cleanup_free_ char *os = nst_xpath_string(ctx, NULL,
                                                   "string(/domainCapabilities/os/@supported)");
        if (os && strcmp(os, "yes") == 0) {
                _cleanup_(xmlXPathFreeObjectp) xmlXPathObjectPtr fw = nst_xpath_nodes(
                        ctx, NULL,
                        "/domainCapabilities/os/enum[@name='firmware']/value[text()='efi']");
                _cleanup_(xmlXPathFreeObjectp) xmlXPathObjectPtr sec = nst_xpath_nodes(
                        ctx, NULL,
                        "/domainCapabilities/os/loader/enum[@name='secure']/value[text()='yes']");
                if ((r = collect_text(ctx, "/domainCapabilities/os/loader/value", &c->loaders,
                                      err)) < 0)
                        return r;
                /* Without the firmware enum (older libvirt), loaders imply efi. */
                c->efi = nst_xpath_count(fw) > 0 || c->loaders.n > 0;
                c->secure_boot = nst_xpath_count(sec) > 0;
        } else if (os) {
                c->efi = c->secure_boot = 0;
        }
        return collect_text(ctx,
                            "/domainCapabilities/features/hyperv[@supported='yes']/"
                            "enum[@name='features']/value",
                            &c->hyperv, err);
}

/* ---- derived facts ---- */

static bool valid_feature_name(const char *s) {
        struct nst_cpu_feature f;
        return nst_cpu_feature_parse(s, "", &f, NULL) == 0 && f.name[0] == s[0];
}

int nst_host_caps_finish(struct nst_host_caps *c, const struct nst_host_probe_opts *o,
                         struct nst_error *err) {
        const char *flag = c->vendor == NST_VENDOR_INTEL ? "vmx"
                           : c->vendor == NST_VENDOR_AMD ? "svm"
                                                         : "";
        snprintf(c->nesting_feature, sizeof(c->nesting_feature), "%s", flag);
        const char *module = c->vendor == NST_VENDOR_INTEL ? "kvm_intel" : "kvm_amd";
        bool has_flag = c->vendor == NST_VENDOR_INTEL ? c->cpu_vmx : c->cpu_svm;
        c->nesting_usable = false;
        if (c->virt_type != NST_VIRT_KVM)
                snprintf(c->nesting_reason, sizeof(c->nesting_reason),
                         "virt_type is qemu (TCG%s)",
                         c->virt_type_configured ? ", configured"
                         : c->kvm_device         ? ""
                                                 : ": /dev/kvm is not usable");
        else if (c->vendor == NST_VENDOR_UNKNOWN)
                snprintf(c->nesting_reason, sizeof(c->nesting_reason),
                         "the host CPU vendor is neither Intel nor AMD");
        else if (!has_flag)
                snprintf(c->nesting_reason, sizeof(c->nesting_reason),
                         "the host CPU has no %s flag in /proc/cpuinfo%s", flag,
                         c->kvm_module[0] ? (strcmp(c->kvm_module, "kvm_pvm") == 0
                                                     ? " (/dev/kvm comes from kvm_pvm)"
                                                     : "")
                                          : "");
        else if (c->nested_param < 0)
                snprintf(c->nesting_reason, sizeof(c->nesting_reason),
                         "%s is not loaded (no /sys/module/%s/parameters/nested)", module,
                         module);
        else if (c->nested_param == 0)
                snprintf(c->nesting_reason, sizeof(c->nesting_reason),
                         "nested virtualization is off: /sys/module/%s/parameters/nested is N "
                         "(load %s with nested=1)",
                         module, module);
        else if (c->compare_nested == 0)
                snprintf(c->nesting_reason, sizeof(c->nesting_reason),
                         "libvirt reports the host CPU cannot give %s to a guest", flag);
        else {
                c->nesting_usable = true;
                snprintf(c->nesting_reason, sizeof(c->nesting_reason),
                         "%s in /proc/cpuinfo, %s nested=1, libvirt CPU comparison %s", flag,
                         module, c->compare_nested == 1 ? "compatible" : "not available");
        }
        /* TCG emulates AMD SVM whatever the host vendor; it never emulates VMX. */
        snprintf(c->emulated_feature, sizeof(c->emulated_feature), "%s",
                 c->compare_emulated == 0 ? "" : "svm");

        /* CPU features that keep host-model/host-passthrough guests from
         * starting on this host. Only KVM passes host MSRs through. */
        nst_strv_clear(&c->cpu_disable);
        c->cpu_disable_reason[0] = '\0';
        if (c->virt_type == NST_VIRT_KVM && !(o && o->no_detect_cpu_disable)) {
                const char *why = NULL;
                if (strcmp(c->kvm_module, "kvm_pvm") == 0)
                        why = "kvm_pvm refuses IA32_ARCH_CAPABILITIES (MSR 0x10a)";
                else if (c->kvm_arch_caps_msr == 0)
                        why = "KVM does not offer IA32_ARCH_CAPABILITIES (MSR 0x10a)";
                if (why) {
                        int r = strv_add(&c->cpu_disable, "arch-capabilities", err);
                        if (r < 0)
                                return r;
                        snprintf(c->cpu_disable_reason, sizeof(c->cpu_disable_reason),
                                 "arch-capabilities: %s", why);
                }
        }
        for (size_t i = 0; o && i < o->n_cpu_disable; i++) {
                if (!valid_feature_name(o->cpu_disable[i]))
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "cpu_disabled_features: '%.64s' is not a CPU "
                                             "feature name",
                                             o->cpu_disable[i]);
                int r = strv_add(&c->cpu_disable, o->cpu_disable[i], err);
                if (r < 0)
                        return r;
        }
        if (o && o->n_cpu_disable) {
                size_t n = strlen(c->cpu_disable_reason);
                snprintf(c->cpu_disable_reason + n, sizeof(c->cpu_disable_reason) - n,
                         "%sconfigured: [libvirt] cpu_disabled_features", n ? "; " : "");
        }
        return 0;
}

/* ---- the probe ---- */

static int compare_cpu(virConnectPtr conn, const char *virt_type, const char *feature) {
        /* Not a named model: qemu64 lists svm, so an Intel host would always
         * look incompatible, and most named models are unusable on some
         * hosts. host-model + the flag asks exactly "can a guest get it". */
        char xml[160];
        snprintf(xml, sizeof(xml),
                 "<cpu mode='host-model'><feature policy='require' name='%s'/></cpu>", feature);
        int r = virConnectCompareHypervisorCPU(conn, NULL, "x86_64", NULL, virt_type, xml, 0);
        if (r == VIR_CPU_COMPARE_ERROR)
                return -1;
        return r == VIR_CPU_COMPARE_INCOMPATIBLE ? 0 : 1;
}

static void probe_libvirt(virConnectPtr conn, struct nst_host_caps *c, struct nst_error *err,
                          int *fatal) {
        const char *type = virConnectGetType(conn);
        if (type)
                snprintf(c->driver, sizeof(c->driver), "%s", type);
        if (virConnectGetLibVersion(conn, &c->libvirt_version) < 0)
                c->libvirt_version = 0;
        if (virConnectGetVersion(conn, &c->hypervisor_version) < 0)
                c->hypervisor_version = 0;
        virNodeInfo info;
        if (virNodeGetInfo(conn, &info) == 0) {
                c->memory_mb = info.memory / 1024;
                c->cpus = info.cpus;
        }
        char *xml = virConnectGetCapabilities(conn);
        if (xml) {
                struct nst_error e = NST_ERROR_INIT;
                if (nst_host_caps_parse_capabilities(c, xml, &e) == -ENOMEM)
                        *fatal = nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                free(xml);
        }
        const char *vt = nst_virt_type_name(c->virt_type);
        xml = virConnectGetDomainCapabilities(conn, NULL, "x86_64", "q35", vt, 0);
        if (xml) {
                struct nst_error e = NST_ERROR_INIT;
                if (nst_host_caps_parse_domcaps(c, xml, &e) == -ENOMEM)
                        *fatal = nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                free(xml);
        }
        if (c->virt_type == NST_VIRT_KVM && c->vendor != NST_VENDOR_UNKNOWN)
                c->compare_nested =
                        compare_cpu(conn, "kvm", c->vendor == NST_VENDOR_INTEL ? "vmx" : "svm");
        c->compare_emulated = compare_cpu(conn, "qemu", "svm");
        virResetLastError();
}

int nst_host_caps_probe(virConnectPtr conn, const struct nst_host_probe_opts *opts,
                        struct nst_host_caps **ret, struct nst_error *err) {
        _cleanup_(nst_host_caps_freep) struct nst_host_caps *c = NULL;
        int r = nst_host_caps_new(&c, err);
        if (r < 0 || (r = nst_host_caps_read_host(c, opts, err)) < 0)
                return r;
        if (conn) {
                nst_lv_quiet_errors();
                int fatal = 0;
                probe_libvirt(conn, c, err, &fatal);
                if (fatal < 0)
                        return fatal;
        }
        if ((r = nst_host_caps_finish(c, opts, err)) < 0)
                return r;
        *ret = nst_steal(&c);
        return 0;
}

/* ---- JSON ---- */

static json_object *tri(int v) {
        return v < 0 ? NULL : json_object_new_boolean(v);
}

static json_object *strv_json(const struct nst_strv *l) {
        json_object *a = json_object_new_array_ext((int)l->n);
        for (size_t i = 0; i < l->n; i++)
                json_object_array_add(a, json_object_new_string(l->v[i]));
        return a;
}

static json_object *version_json(unsigned long v) {
        if (!v)
                return NULL;
        char b[32];
        snprintf(b, sizeof(b), "%lu.%lu.%lu", v / 1000000, v / 1000 % 1000, v % 1000);
        return json_object_new_string(b);
}

json_object *nst_host_caps_to_json(const struct nst_host_caps *c) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "virt_type",
                               json_object_new_string(nst_virt_type_name(c->virt_type)));
        json_object_object_add(o, "virt_type_configured",
                               json_object_new_boolean(c->virt_type_configured));
        json_object_object_add(o, "driver",
                               nst_json_string_or_null(c->driver));
        json_object_object_add(o, "libvirt_version", version_json(c->libvirt_version));
        json_object_object_add(o, "hypervisor_version", version_json(c->hypervisor_version));
        json_object_object_add(o, "cpu_vendor",
                               json_object_new_string(nst_cpu_vendor_name(c->vendor)));
        json_object *flags = json_object_new_array();
        if (c->cpu_vmx)
                json_object_array_add(flags, json_object_new_string("vmx"));
        if (c->cpu_svm)
                json_object_array_add(flags, json_object_new_string("svm"));
        if (c->cpu_hypervisor)
                json_object_array_add(flags, json_object_new_string("hypervisor"));
        json_object_object_add(o, "cpu_flags", flags);
        json_object_object_add(o, "kvm_device", json_object_new_boolean(c->kvm_device));
        json_object_object_add(o, "kvm_module",
                               nst_json_string_or_null(c->kvm_module));
        json_object_object_add(o, "nested_param", tri(c->nested_param));

        json_object *n = json_object_new_object();
        json_object_object_add(n, "usable", json_object_new_boolean(c->nesting_usable));
        json_object_object_add(n, "feature", c->nesting_feature[0]
                                                     ? json_object_new_string(c->nesting_feature)
                                                     : NULL);
        json_object_object_add(n, "reason", json_object_new_string(c->nesting_reason));
        json_object_object_add(n, "cpu_compare", tri(c->compare_nested));
        json_object_object_add(n, "emulated_cpu_compare", tri(c->compare_emulated));
        json_object_object_add(n, "emulated_feature",
                               nst_json_string_or_null(c->emulated_feature));
        json_object_object_add(o, "nesting", n);

        json_object *modes = json_object_new_object();
        json_object_object_add(modes, "host-passthrough", tri(c->mode_host_passthrough));
        json_object_object_add(modes, "host-model", tri(c->mode_host_model));
        json_object_object_add(modes, "maximum", tri(c->mode_maximum));
        json_object_object_add(modes, "custom", tri(c->mode_custom));
        json_object_object_add(o, "cpu_modes", modes);
        json_object_object_add(o, "host_model",
                               nst_json_string_or_null(c->host_model));
        json_object_object_add(o, "domain_capabilities", json_object_new_boolean(c->domcaps_known));
        json_object_object_add(o, "machines", strv_json(&c->machines));
        json_object *fw = json_object_new_object();
        json_object_object_add(fw, "efi", tri(c->efi));
        json_object_object_add(fw, "secure_boot", tri(c->secure_boot));
        json_object_object_add(fw, "loaders", strv_json(&c->loaders));
        json_object_object_add(o, "firmware", fw);
        json_object_object_add(o, "hyperv_features", strv_json(&c->hyperv));
        json_object *dis = json_object_new_object();
        json_object_object_add(dis, "features", strv_json(&c->cpu_disable));
        json_object_object_add(dis, "reason", json_object_new_string(c->cpu_disable_reason));
        json_object_object_add(o, "cpu_disabled_features", dis);
        json_object_object_add(o, "memory_mb",
                               c->memory_mb ? json_object_new_int64((int64_t)c->memory_mb) : NULL);
        json_object_object_add(o, "cpus", c->cpus ? json_object_new_int64(c->cpus) : NULL);
        return o;
}
