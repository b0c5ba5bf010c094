#include "plugins/libvirt/guest_spec.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <uuid/uuid.h>

#include "plugins/libvirt/xml_writer.h"

#define PATH_BUF 160

/* ---- names ---- */

static const char *const disk_bus_names[] = {
        [NST_DISK_BUS_VIRTIO] = "virtio",
        [NST_DISK_BUS_SATA] = "sata",
        [NST_DISK_BUS_SCSI] = "scsi",
        [NST_DISK_BUS_IDE] = "ide",
};
static const char *const nic_model_names[] = {
        [NST_NIC_MODEL_VIRTIO] = "virtio",   [NST_NIC_MODEL_E1000] = "e1000",
        [NST_NIC_MODEL_E1000E] = "e1000e",   [NST_NIC_MODEL_VMXNET3] = "vmxnet3",
        [NST_NIC_MODEL_RTL8139] = "rtl8139",
};
static const char *const firmware_names[] = {
        [NST_FIRMWARE_BIOS] = "bios",
        [NST_FIRMWARE_EFI] = "efi",
};
static const char *const cpu_mode_names[] = {
        [NST_CPU_MODE_HOST_MODEL] = "host-model",
        [NST_CPU_MODE_HOST_PASSTHROUGH] = "host-passthrough",
        [NST_CPU_MODE_MAXIMUM] = "maximum",
        [NST_CPU_MODE_CUSTOM] = "custom",
};
static const char *const cpu_policy_names[] = {
        [NST_CPU_POLICY_REQUIRE] = "require", [NST_CPU_POLICY_DISABLE] = "disable",
        [NST_CPU_POLICY_FORCE] = "force",     [NST_CPU_POLICY_OPTIONAL] = "optional",
        [NST_CPU_POLICY_FORBID] = "forbid",
};
static const char *const hv_names[] = {
        [NST_HV_RELAXED] = "relaxed",
        [NST_HV_VAPIC] = "vapic",
        [NST_HV_SPINLOCKS] = "spinlocks",
        [NST_HV_VPINDEX] = "vpindex",
        [NST_HV_RUNTIME] = "runtime",
        [NST_HV_SYNIC] = "synic",
        [NST_HV_STIMER] = "stimer",
        [NST_HV_STIMER_DIRECT] = "stimer_direct",
        [NST_HV_RESET] = "reset",
        [NST_HV_FREQUENCIES] = "frequencies",
        [NST_HV_REENLIGHTENMENT] = "reenlightenment",
        [NST_HV_TLBFLUSH] = "tlbflush",
        [NST_HV_IPI] = "ipi",
        [NST_HV_EVMCS] = "evmcs",
        [NST_HV_TIME] = "time",
};

static const char *name_of(const char *const *names, size_t n, int v) {
        return v >= 0 && (size_t)v < n && names[v] ? names[v] : "unset";
}

static int from_name(const char *const *names, size_t n, const char *s) {
        for (size_t i = 0; i < n; i++)
                if (names[i] && strcmp(names[i], s) == 0)
                        return (int)i;
        return -1;
}

/* "a, b, c" for messages. */
static const char *join(const char *const *names, size_t n, char *buf, size_t len) {
        size_t off = 0;
        buf[0] = '\0';
        for (size_t i = 0; i < n; i++) {
                if (!names[i])
                        continue;
                int k = snprintf(buf + off, len - off, "%s%s", off ? ", " : "", names[i]);
                if (k < 0 || (size_t)k >= len - off)
                        break;
                off += (size_t)k;
        }
        return buf;
}

#define NAMES(a) a, NST_ARRAY_SIZE(a)

const char *nst_disk_bus_name(enum nst_disk_bus b) { return name_of(NAMES(disk_bus_names), b); }
int nst_disk_bus_from_name(const char *s) { return from_name(NAMES(disk_bus_names), s); }
const char *nst_nic_model_name(enum nst_nic_model m) { return name_of(NAMES(nic_model_names), m); }
int nst_nic_model_from_name(const char *s) { return from_name(NAMES(nic_model_names), s); }
const char *nst_firmware_name(enum nst_firmware f) { return name_of(NAMES(firmware_names), f); }
int nst_firmware_from_name(const char *s) { return from_name(NAMES(firmware_names), s); }
const char *nst_cpu_mode_name(enum nst_cpu_mode m) { return name_of(NAMES(cpu_mode_names), m); }
int nst_cpu_mode_from_name(const char *s) { return from_name(NAMES(cpu_mode_names), s); }
const char *nst_cpu_policy_name(enum nst_cpu_policy p) {
        return name_of(NAMES(cpu_policy_names), p);
}
const char *nst_hv_name(enum nst_hv h) { return name_of(NAMES(hv_names), h); }
int nst_hv_from_name(const char *s) { return from_name(NAMES(hv_names), s); }

/* ---- typed JSON access with field paths ---- */

static int bad(struct nst_error *err, const char *path, const char *key, const char *fmt_tail,
               const char *detail) {
        return nst_error_set(err, -EINVAL, "InvalidInput", "%s%s%s: %s%s", path, key ? "." : "",
                             key ? key : "", fmt_tail, detail ? detail : "");
}

static const char *json_kind(json_object *v) {
        switch (json_object_get_type(v)) {
        case json_type_null: return "null";
        case json_type_boolean: return "a boolean";
        case json_type_double: return "a number with a fraction";
        case json_type_int: return "an integer";
        case json_type_object: return "an object";
        case json_type_array: return "an array";
        case json_type_string: return "a string";
        }
        return "?";
}

static int type_error(struct nst_error *err, const char *path, const char *key, const char *want,
                      json_object *v) {
        return nst_error_set(err, -EINVAL, "InvalidInput", "%s%s%s: must be %s, got %s", path,
                             key ? "." : "", key ? key : "", want, json_kind(v));
}

/* Rejects keys not in allowed[] (NULL-terminated). */
static int check_keys(json_object *obj, const char *path, const char *const *allowed,
                      struct nst_error *err) {
        json_object_object_foreach(obj, key, val) {
                (void)val;
                bool ok = false;
                for (const char *const *a = allowed; *a && !ok; a++)
                        ok = strcmp(*a, key) == 0;
                if (!ok) {
                        char list[512];
                        size_t n = 0;
                        while (allowed[n])
                                n++;
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "%s.%.64s: unknown key (expected one of %s)", path,
                                             key, join(allowed, n, list, sizeof(list)));
                }
        }
        return 0;
}

/* Looks key up; JSON null counts as absent. */
static json_object *field(json_object *obj, const char *key) {
        json_object *v = NULL;
        if (!json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null))
                return NULL;
        return v;
}

static int get_string(json_object *obj, const char *path, const char *key, const char **ret,
                      struct nst_error *err) {
        json_object *v = field(obj, key);
        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_string))
                return type_error(err, path, key, "a string", v);
        const char *s = json_object_get_string(v);
        size_t len = (size_t)json_object_get_string_len(v);
        if (strlen(s) != len || !nst_xml_text_valid(s, len))
                return bad(err, path, key, "contains characters that are not allowed", NULL);
        *ret = s;
        return 1;
}

static int get_bool(json_object *obj, const char *path, const char *key, bool *ret,
                    struct nst_error *err) {
        json_object *v = field(obj, key);
        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_boolean))
                return type_error(err, path, key, "true or false", v);
        *ret = json_object_get_boolean(v);
        return 1;
}

static int get_tristate(json_object *obj, const char *path, const char *key,
                        enum nst_tristate *ret, struct nst_error *err) {
        bool b = false; /* not read unless set; -O3 cannot tell */
        int r = get_bool(obj, path, key, &b, err);
        if (r > 0)
                *ret = b ? NST_TRI_ON : NST_TRI_OFF;
        return r;
}

static int get_uint(json_object *obj, const char *path, const char *key, uint64_t min,
                    uint64_t max, uint64_t *ret, struct nst_error *err) {
        json_object *v = field(obj, key);
        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_int))
                return type_error(err, path, key, "an integer", v);
        int64_t x = json_object_get_int64(v);
        if (x < 0 || (uint64_t)x < min || (uint64_t)x > max)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s.%s: must be between %llu and %llu, got %lld", path, key,
                                     (unsigned long long)min, (unsigned long long)max,
                                     (long long)x);
        *ret = (uint64_t)x;
        return 1;
}

static int get_enum(json_object *obj, const char *path, const char *key, const char *what,
                    const char *const *names, size_t n, int *ret, struct nst_error *err) {
        const char *s = NULL;
        int r = get_string(obj, path, key, &s, err);
        if (r <= 0)
                return r;
        int v = from_name(names, n, s);
        if (v < 0) {
                char list[256];
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s.%s: unknown %s '%.64s' (expected %s)", path, key, what, s,
                                     join(names, n, list, sizeof(list)));
        }
        *ret = v;
        return 1;
}

/* ---- validators ---- */

static bool is_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool token_chars(const char *s, size_t max) {
        size_t n = strlen(s);
        if (n == 0 || n > max)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
                        return false;
        return true;
}

/* libvirt-safe: no '/', nothing a shell or a path could misread, and a first
 * character that cannot be taken for an option or a hidden file. */
static bool valid_name(const char *s) {
        return token_chars(s, NST_SPEC_NAME_MAX) && is_alnum(s[0]);
}

bool nst_spec_valid_machine(const char *s) {
        return token_chars(s, NST_SPEC_MACHINE_MAX - 1) && is_alnum(s[0]);
}

/* A Linux interface name (IFNAMSIZ - 1). */
static bool valid_bridge(const char *s) {
        return token_chars(s, 15) && is_alnum(s[0]);
}

bool nst_mac_valid(const char *s) {
        if (strlen(s) != 17)
                return false;
        unsigned bytes[6], any = 0;
        for (int i = 0; i < 6; i++) {
                const char *p = s + 3 * i;
                int hi = nst_hex_digit(p[0]), lo = nst_hex_digit(p[1]);
                if (hi < 0 || lo < 0 || (i < 5 && p[2] != ':'))
                        return false;
                bytes[i] = (unsigned)(hi << 4 | lo);
                any |= bytes[i];
        }
        return any != 0 && !(bytes[0] & 1); /* bit 0 of the first octet: multicast */
}

/* Absolute, normalized (no ".", "..", "//", trailing '/'), printable. Where it
 * points is checked by nst_guest_spec_check_images(). */
static bool valid_path(const char *s) {
        size_t n = strlen(s);
        if (n < 2 || n >= NST_SPEC_PATH_MAX || s[0] != '/' || s[n - 1] == '/')
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                        return false;
        for (const char *c = s; c; c = strchr(c + 1, '/')) {
                const char *e = strchr(c + 1, '/');
                size_t len = e ? (size_t)(e - c - 1) : strlen(c + 1);
                bool dot = len == 1 && c[1] == '.';
                bool dotdot = len == 2 && c[1] == '.' && c[2] == '.';
                if (len == 0 || dot || dotdot)
                        return false;
        }
        return true;
}

int nst_cpu_feature_parse(const char *s, const char *path, struct nst_cpu_feature *ret,
                          struct nst_error *err) {
        enum nst_cpu_policy policy = NST_CPU_POLICY_REQUIRE;
        const char *name = s;
        if (s[0] == '+' || s[0] == '-') {
                policy = s[0] == '+' ? NST_CPU_POLICY_REQUIRE : NST_CPU_POLICY_DISABLE;
                name++;
        }
        /* libvirt's feature names are lower case with '-', '_' and '.'. */
        bool ok = token_chars(name, NST_SPEC_FEATURE_NAME_MAX - 1) && is_alnum(name[0]);
        for (const char *c = name; ok && *c; c++)
                ok = !(*c >= 'A' && *c <= 'Z');
        if (!ok)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: '%.64s' is not a CPU feature (expected '+name' to "
                                     "require or '-name' to disable, name in lower case)",
                                     path, s);
        snprintf(ret->name, sizeof(ret->name), "%s", name);
        ret->policy = policy;
        return 0;
}

/* ---- features ---- */

static int parse_hyperv(json_object *v, const char *path, struct nst_features *f,
                        struct nst_error *err) {
        if (json_object_is_type(v, json_type_boolean) && !json_object_get_boolean(v)) {
                for (size_t i = 0; i < NST_HV_COUNT; i++)
                        f->hv[i] = NST_TRI_OFF;
                return 0;
        }
        if (!json_object_is_type(v, json_type_object))
                return type_error(err, path, NULL, "an object of enlightenments, or false", v);
        json_object_object_foreach(v, key, val) {
                int h = nst_hv_from_name(key);
                if (h < 0) {
                        char list[512];
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "%s.%.64s: unknown Hyper-V enlightenment (expected "
                                             "one of %s)",
                                             path, key, join(NAMES(hv_names), list, sizeof(list)));
                }
                if (h == NST_HV_SPINLOCKS && json_object_is_type(val, json_type_int)) {
                        int64_t x = json_object_get_int64(val);
                        if (x < NST_HV_SPINLOCKS_MIN || x > 0xffffffffLL)
                                return nst_error_set(err, -EINVAL, "InvalidInput",
                                                     "%s.spinlocks: retries must be between %d "
                                                     "and 4294967295, got %lld",
                                                     path, NST_HV_SPINLOCKS_MIN, (long long)x);
                        f->hv[h] = NST_TRI_ON;
                        f->spinlock_retries = (uint32_t)x;
                        continue;
                }
                if (!json_object_is_type(val, json_type_boolean))
                        return type_error(err, path, key,
                                          h == NST_HV_SPINLOCKS ? "true, false or a retry count"
                                                                : "true or false",
                                          val);
                f->hv[h] = json_object_get_boolean(val) ? NST_TRI_ON : NST_TRI_OFF;
        }
        return 0;
}

int nst_features_parse(json_object *obj, const char *path, struct nst_features *f,
                       struct nst_error *err) {
        static const char *const keys[] = {"acpi",   "apic",       "vmcoreinfo", "vmport",
                                           "smm",    "kvm_hidden", "hyperv",     NULL};
        if (!json_object_is_type(obj, json_type_object))
                return type_error(err, path, NULL, "an object", obj);
        int r = check_keys(obj, path, keys, err);
        if (r < 0)
                return r;
        struct {
                const char *key;
                enum nst_tristate *dst;
        } bools[] = {
                {"acpi", &f->acpi}, {"apic", &f->apic}, {"vmcoreinfo", &f->vmcoreinfo},
                {"vmport", &f->vmport}, {"smm", &f->smm}, {"kvm_hidden", &f->kvm_hidden},
        };
        for (size_t i = 0; i < NST_ARRAY_SIZE(bools); i++)
                if ((r = get_tristate(obj, path, bools[i].key, bools[i].dst, err)) < 0)
                        return r;
        json_object *hv = field(obj, "hyperv");
        if (hv) {
                char p[PATH_BUF];
                snprintf(p, sizeof(p), "%s.hyperv", path);
                return parse_hyperv(hv, p, f, err);
        }
        return 0;
}

/* ---- disks, NICs ---- */

static int parse_disk(json_object *d, const char *path, struct nst_disk_spec *disk,
                      struct nst_error *err) {
        static const char *const keys[] = {"image", "size_gb", "bus", NULL};
        if (!json_object_is_type(d, json_type_object))
                return type_error(err, path, NULL, "an object", d);
        int r = check_keys(d, path, keys, err);
        if (r < 0)
                return r;
        const char *image = NULL;
        if ((r = get_string(d, path, "image", &image, err)) < 0)
                return r;
        if (image && !valid_path(image))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s.image: '%.128s' is not an absolute, normalized path", path,
                                     image);
        uint64_t size = 0;
        if ((r = get_uint(d, path, "size_gb", image ? 0 : 1, NST_SPEC_MAX_DISK_GB, &size, err)) <
            0)
                return r;
        if (!image && r == 0)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: needs image (a base image to overlay) or size_gb (a "
                                     "new empty disk)",
                                     path);
        int bus = NST_DISK_BUS_UNSET;
        if ((r = get_enum(d, path, "bus", "disk bus", NAMES(disk_bus_names), &bus, err)) < 0)
                return r;
        if (image && !(disk->image = strdup(image)))
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        disk->size_gb = size;
        disk->bus = bus;
        return 0;
}

static int random_mac(char mac[18]) {
        unsigned char b[3];
        if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
                return -errno;
        /* 52:54:00 is what QEMU and libvirt use: locally administered, unicast. */
        snprintf(mac, 18, "52:54:00:%02x:%02x:%02x", b[0], b[1], b[2]);
        return 0;
}

static int parse_nic(json_object *n, const char *path, struct nst_nic_spec *nic,
                     struct nst_error *err) {
        static const char *const keys[] = {"network", "bridge", "model", "mac", NULL};
        if (!json_object_is_type(n, json_type_object))
                return type_error(err, path, NULL, "an object", n);
        int r = check_keys(n, path, keys, err);
        if (r < 0)
                return r;
        const char *network = NULL, *bridge = NULL, *mac = NULL;
        if ((r = get_string(n, path, "network", &network, err)) < 0 ||
            (r = get_string(n, path, "bridge", &bridge, err)) < 0 ||
            (r = get_string(n, path, "mac", &mac, err)) < 0)
                return r;
        if (!network == !bridge)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: needs exactly one of network (a libvirt network) and "
                                     "bridge (a host bridge)",
                                     path);
        if (network && !valid_name(network))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s.network: '%.64s' is not a valid network name", path,
                                     network);
        if (bridge && !valid_bridge(bridge))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s.bridge: '%.64s' is not a valid bridge name (1-15 "
                                     "characters from A-Z a-z 0-9 . _ -)",
                                     path, bridge);
        int model = NST_NIC_MODEL_UNSET;
        if ((r = get_enum(n, path, "model", "NIC model", NAMES(nic_model_names), &model, err)) < 0)
                return r;
        if (mac) {
                if (!nst_mac_valid(mac))
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "%s.mac: '%.32s' is not a unicast MAC address "
                                             "(expected xx:xx:xx:xx:xx:xx, not multicast, not "
                                             "all zeros)",
                                             path, mac);
                for (size_t i = 0; i < 17; i++)
                        nic->mac[i] = (char)((mac[i] >= 'A' && mac[i] <= 'F') ? mac[i] + 32
                                                                               : mac[i]);
                nic->mac[17] = '\0';
        } else {
                if ((r = random_mac(nic->mac)) < 0)
                        return nst_error_set(err, r, "InternalError",
                                             "%s.mac: cannot get random bytes: %s", path,
                                             strerror(-r));
                nic->mac_generated = true;
        }
        if ((network && !(nic->network = strdup(network))) ||
            (bridge && !(nic->bridge = strdup(bridge))))
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        nic->model = model;
        return 0;
}

static int get_array(json_object *obj, const char *key, size_t max, json_object **ret,
                     struct nst_error *err) {
        json_object *v = field(obj, key);
        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_array))
                return type_error(err, "spec", key, "an array", v);
        size_t n = json_object_array_length(v);
        if (n > max)
                return nst_error_set(err, -E2BIG, "InvalidInput",
                                     "spec.%s: at most %zu entries, got %zu", key, max, n);
        *ret = v;
        return 1;
}

static int parse_disks(json_object *obj, struct nst_guest_spec *s, struct nst_error *err) {
        json_object *a = NULL;
        int r = get_array(obj, "disks", NST_SPEC_MAX_DISKS, &a, err);
        if (r <= 0)
                return r;
        size_t n = json_object_array_length(a);
        if (n == 0)
                return 0;
        if (!(s->disks = calloc(n, sizeof(*s->disks))))
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        for (size_t i = 0; i < n; i++) {
                char p[PATH_BUF];
                snprintf(p, sizeof(p), "spec.disks[%zu]", i);
                s->n_disks = i + 1;
                if ((r = parse_disk(json_object_array_get_idx(a, i), p, &s->disks[i], err)) < 0)
                        return r;
        }
        return 0;
}

static int parse_nics(json_object *obj, struct nst_guest_spec *s, struct nst_error *err) {
        json_object *a = NULL;
        int r = get_array(obj, "nics", NST_SPEC_MAX_NICS, &a, err);
        if (r <= 0)
                return r;
        size_t n = json_object_array_length(a);
        if (n == 0)
                return 0;
        if (!(s->nics = calloc(n, sizeof(*s->nics))))
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        for (size_t i = 0; i < n; i++) {
                char p[PATH_BUF];
                snprintf(p, sizeof(p), "spec.nics[%zu]", i);
                s->n_nics = i + 1;
                if ((r = parse_nic(json_object_array_get_idx(a, i), p, &s->nics[i], err)) < 0)
                        return r;
                for (size_t j = 0; j < i; j++) {
                        if (strcmp(s->nics[j].mac, s->nics[i].mac) != 0)
                                continue;
                        if (!s->nics[i].mac_generated)
                                return nst_error_set(err, -EINVAL, "InvalidInput",
                                                     "%s.mac: %s is already used by "
                                                     "spec.nics[%zu]",
                                                     p, s->nics[i].mac, j);
                        /* A generated MAC hit another one (1 in 16M): draw again. */
                        if ((r = random_mac(s->nics[i].mac)) < 0)
                                return nst_error_set(err, r, "InternalError",
                                                     "%s.mac: cannot get random bytes", p);
                        j = (size_t)-1;
                }
        }
        return 0;
}

static int parse_cpu_features(json_object *obj, struct nst_guest_spec *s,
                              struct nst_error *err) {
        json_object *a = NULL;
        int r = get_array(obj, "cpu_features", NST_SPEC_MAX_CPU_FEATURES, &a, err);
        if (r <= 0)
                return r;
        size_t n = json_object_array_length(a);
        if (n == 0)
                return 0;
        if (!(s->cpu_features = calloc(n, sizeof(*s->cpu_features))))
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        for (size_t i = 0; i < n; i++) {
                char p[PATH_BUF];
                snprintf(p, sizeof(p), "spec.cpu_features[%zu]", i);
                json_object *v = json_object_array_get_idx(a, i);
                if (!json_object_is_type(v, json_type_string))
                        return type_error(err, p, NULL, "a string such as '+vmx' or '-xsaves'",
                                          v);
                if ((r = nst_cpu_feature_parse(json_object_get_string(v), p,
                                               &s->cpu_features[i], err)) < 0)
                        return r;
                for (size_t j = 0; j < i; j++)
                        if (strcmp(s->cpu_features[j].name, s->cpu_features[i].name) == 0)
                                return nst_error_set(err, -EINVAL, "InvalidInput",
                                                     "%s: feature %s is already listed at "
                                                     "spec.cpu_features[%zu]",
                                                     p, s->cpu_features[i].name, j);
                s->n_cpu_features = i + 1;
        }
        return 0;
}

static int parse_pci_requests(json_object *obj, struct nst_guest_spec *s,
                              struct nst_error *err) {
        json_object *a = NULL;
        int r = get_array(obj, "pci_requests", NST_SPEC_MAX_PCI_REQUESTS, &a, err);
        if (r <= 0)
                return r;
        /* Kept opaque: the sriov plugin owns their schema. */
        for (size_t i = 0; i < json_object_array_length(a); i++) {
                json_object *v = json_object_array_get_idx(a, i);
                if (!json_object_is_type(v, json_type_object)) {
                        char p[PATH_BUF];
                        snprintf(p, sizeof(p), "spec.pci_requests[%zu]", i);
                        return type_error(err, p, NULL, "an object", v);
                }
        }
        if (json_object_array_length(a) > 0)
                s->pci_requests = json_object_get(a);
        return 0;
}

static int parse_numa_nodes(json_object *obj, struct nst_guest_spec *s, struct nst_error *err) {
        json_object *a = NULL;
        int r = get_array(obj, "numa_nodes", NST_SPEC_MAX_NUMA_NODES, &a, err);
        if (r <= 0)
                return r;
        for (size_t i = 0; i < json_object_array_length(a); i++) {
                json_object *v = json_object_array_get_idx(a, i);
                char p[PATH_BUF];
                snprintf(p, sizeof(p), "spec.numa_nodes[%zu]", i);
                if (!json_object_is_type(v, json_type_int))
                        return type_error(err, p, NULL, "an integer", v);
                int64_t node = json_object_get_int64(v);
                if (node < 0 || node > NST_SPEC_MAX_NUMA_NODE)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "%s: must be between 0 and %d, got %lld", p,
                                             NST_SPEC_MAX_NUMA_NODE, (long long)node);
                for (size_t j = 0; j < s->n_numa_nodes; j++)
                        if (s->numa_nodes[j] == node)
                                return nst_error_set(err, -EINVAL, "InvalidInput",
                                                     "%s: node %lld is listed twice", p,
                                                     (long long)node);
                s->numa_nodes[s->n_numa_nodes++] = (int)node;
        }
        return 0;
}

static int parse_identity(json_object *obj, struct nst_guest_spec *s, struct nst_error *err) {
        const char *name = NULL, *uuid = NULL;
        int r = get_string(obj, "spec", "name", &name, err);
        if (r < 0)
                return r;
        if (!name)
                return nst_error_set(err, -EINVAL, "InvalidInput", "spec.name: required");
        if (!valid_name(name))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "spec.name: '%.80s' is not a valid domain name (1-%d "
                                     "characters from A-Z a-z 0-9 . _ -, starting with a letter "
                                     "or digit)",
                                     name, NST_SPEC_NAME_MAX);
        snprintf(s->name, sizeof(s->name), "%s", name);
        if ((r = get_string(obj, "spec", "uuid", &uuid, err)) < 0)
                return r;
        uuid_t u;
        if (uuid) {
                if (strlen(uuid) != 36 || uuid_parse(uuid, u) < 0)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "spec.uuid: '%.64s' is not a UUID (expected "
                                             "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                                             uuid);
                if (uuid_is_null(u))
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "spec.uuid: the nil UUID is not allowed");
        } else {
                uuid_generate_random(u);
                s->uuid_generated = true;
        }
        uuid_unparse_lower(u, s->uuid);
        return 0;
}

static int parse_size(json_object *obj, struct nst_guest_spec *s, struct nst_error *err) {
        uint64_t v = 0;
        int r = get_uint(obj, "spec", "vcpus", 1, NST_SPEC_MAX_VCPUS, &v, err);
        if (r < 0)
                return r;
        if (r == 0)
                return nst_error_set(err, -EINVAL, "InvalidInput", "spec.vcpus: required");
        s->vcpus = (unsigned)v;
        unsigned *topo[] = {&s->sockets, &s->cores, &s->threads};
        const char *keys[] = {"sockets", "cores", "threads"};
        bool any = false;
        for (size_t i = 0; i < 3; i++) {
                uint64_t t = 1;
                if ((r = get_uint(obj, "spec", keys[i], 1, NST_SPEC_MAX_VCPUS, &t, err)) < 0)
                        return r;
                any |= r > 0;
                *topo[i] = (unsigned)t;
        }
        if (any && s->sockets * s->cores * s->threads != s->vcpus)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "spec.sockets: sockets x cores x threads = %u x %u x %u = "
                                     "%u, but vcpus is %u",
                                     s->sockets, s->cores, s->threads,
                                     s->sockets * s->cores * s->threads, s->vcpus);
        if (!any)
                s->sockets = s->cores = s->threads = 0;
        if ((r = get_uint(obj, "spec", "memory_mb", 1, NST_SPEC_MAX_MEMORY_MB, &s->memory_mb,
                          err)) < 0)
                return r;
        if (r == 0)
                return nst_error_set(err, -EINVAL, "InvalidInput", "spec.memory_mb: required");
        return 0;
}

static int parse_choices(json_object *obj, struct nst_guest_spec *s, struct nst_error *err) {
        const char *profile = NULL, *machine = NULL, *cpu_model = NULL;
        int r, v = 0;
        if ((r = get_string(obj, "spec", "profile", &profile, err)) < 0)
                return r;
        if (profile && !valid_name(profile))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "spec.profile: '%.80s' is not a valid profile name", profile);
        snprintf(s->profile, sizeof(s->profile), "%s", profile ? profile : "plain");

        if ((r = get_enum(obj, "spec", "firmware", "firmware", NAMES(firmware_names), &v, err)) < 0)
                return r;
        if (r > 0)
                s->firmware = v;
        if ((r = get_tristate(obj, "spec", "secure_boot", &s->secure_boot, err)) < 0)
                return r;
        if (s->secure_boot == NST_TRI_ON && s->firmware == NST_FIRMWARE_BIOS)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "spec.secure_boot: needs firmware efi (spec.firmware is "
                                     "bios)");
        if ((r = get_bool(obj, "spec", "allow_emulated_nesting", &s->allow_emulated_nesting,
                          err)) < 0)
                return r;
        if ((r = get_tristate(obj, "spec", "guest_agent", &s->guest_agent, err)) < 0)
                return r;

        if ((r = get_string(obj, "spec", "machine", &machine, err)) < 0)
                return r;
        if (machine && !nst_spec_valid_machine(machine))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "spec.machine: '%.80s' is not a machine type name", machine);
        if (machine)
                snprintf(s->machine, sizeof(s->machine), "%s", machine);

        if ((r = get_enum(obj, "spec", "cpu_mode", "CPU mode", NAMES(cpu_mode_names), &v, err)) <
            0)
                return r;
        if (r > 0)
                s->cpu_mode = v;
        if ((r = get_string(obj, "spec", "cpu_model", &cpu_model, err)) < 0)
                return r;
        if (cpu_model && !nst_spec_valid_machine(cpu_model))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "spec.cpu_model: '%.80s' is not a CPU model name", cpu_model);
        if (cpu_model && s->cpu_mode != NST_CPU_MODE_CUSTOM)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "spec.cpu_model: only valid with cpu_mode custom");
        if (!cpu_model && s->cpu_mode == NST_CPU_MODE_CUSTOM)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "spec.cpu_model: required when cpu_mode is custom");
        if (cpu_model)
                snprintf(s->cpu_model, sizeof(s->cpu_model), "%s", cpu_model);
        if ((r = parse_cpu_features(obj, s, err)) < 0)
                return r;

        if ((r = get_enum(obj, "spec", "disk_bus", "disk bus", NAMES(disk_bus_names), &v, err)) <
            0)
                return r;
        if (r > 0)
                s->disk_bus = v;
        if ((r = get_enum(obj, "spec", "nic_model", "NIC model", NAMES(nic_model_names), &v,
                          err)) < 0)
                return r;
        if (r > 0)
                s->nic_model = v;
        json_object *features = field(obj, "features");
        if (features && (r = nst_features_parse(features, "spec.features", &s->features, err)) < 0)
                return r;
        return 0;
}

int nst_guest_spec_parse(json_object *obj, struct nst_guest_spec **ret, struct nst_error *err) {
        static const char *const keys[] = {
                "name",          "uuid",      "vcpus",       "sockets",
                "cores",         "threads",   "memory_mb",   "disks",
                "nics",          "profile",   "firmware",    "secure_boot",
                "pci_requests",  "allow_emulated_nesting",   "machine",
                "cpu_mode",      "cpu_model", "cpu_features", "disk_bus",
                "nic_model",     "features",  "numa_nodes",  "guest_agent",
                NULL,
        };
        if (!obj || !json_object_is_type(obj, json_type_object))
                return type_error(err, "spec", NULL, "an object", obj);
        int r = check_keys(obj, "spec", keys, err);
        if (r < 0)
                return r;
        _cleanup_(nst_guest_spec_freep) struct nst_guest_spec *s = calloc(1, sizeof(*s));
        if (!s)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        if ((r = parse_identity(obj, s, err)) < 0 || (r = parse_size(obj, s, err)) < 0 ||
            (r = parse_disks(obj, s, err)) < 0 || (r = parse_nics(obj, s, err)) < 0 ||
            (r = parse_choices(obj, s, err)) < 0 || (r = parse_pci_requests(obj, s, err)) < 0 ||
            (r = parse_numa_nodes(obj, s, err)) < 0)
                return r;
        *ret = nst_steal(&s);
        return 0;
}

void nst_guest_spec_free(struct nst_guest_spec *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n_disks; i++)
                free(s->disks[i].image);
        free(s->disks);
        for (size_t i = 0; i < s->n_nics; i++) {
                free(s->nics[i].network);
                free(s->nics[i].bridge);
        }
        free(s->nics);
        free(s->cpu_features);
        if (s->pci_requests)
                json_object_put(s->pci_requests);
        free(s);
}

int nst_guest_spec_check_images(const struct nst_guest_spec *spec, const char *const *allowed_dirs,
                                size_t n, struct nst_error *err) {
        for (size_t i = 0; i < spec->n_disks; i++) {
                const char *image = spec->disks[i].image;
                if (!image)
                        continue;
                _cleanup_free_ char *real = realpath(image, NULL);
                struct stat st;
                if (!real || stat(real, &st) < 0)
                        return nst_error_set(err, -ENOENT, "ImageNotFound",
                                             "spec.disks[%zu].image: %s: %s", i, image,
                                             strerror(errno));
                if (!S_ISREG(st.st_mode))
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "spec.disks[%zu].image: %s is not a regular file", i,
                                             image);
                bool inside = false;
                for (size_t d = 0; d < n && !inside; d++) {
                        _cleanup_free_ char *dir = realpath(allowed_dirs[d], NULL);
                        size_t len = dir ? strlen(dir) : 0;
                        inside = dir && strncmp(real, dir, len) == 0 &&
                                 (real[len] == '/' || (len == 1 && dir[0] == '/'));
                }
                if (!inside)
                        return nst_error_set(err, -EPERM, "InvalidInput",
                                             "spec.disks[%zu].image: %s is outside the allowed "
                                             "image directories",
                                             i, image);
        }
        return 0;
}
