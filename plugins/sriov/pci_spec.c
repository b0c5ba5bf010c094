/* [pci] device_spec and [pci] alias in nova's syntax (see pci_spec.h).
 *
 * Everything that can be decided from the text is decided at parse time:
 * ids are normalised to integers, glob fields to integers or "any", and a
 * regex address is turned into bitmaps over every possible bus, slot and
 * function value (the domain keeps its compiled regex and is memoised while
 * applying, since functions come sorted by address and share few domains).
 * What needs the host (is this address a PF? which function has this
 * netdev?) is resolved while applying, through each VF's parent link, so
 * apply() costs O(entries x functions) with no allocation and no sysfs.
 *
 * Semantics follow nova/pci/devspec.py (zed); where we differ, the comment
 * at the spot says why. */
#include "plugins/sriov/pci_spec.h"

#include <ctype.h>
#include <errno.h>
#include <json.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "messages/json_util.h"

#define ANY (-1)
#define MAX_ID 0xffff

/* ---- shared helpers ---- */

/* "<where>: [pci] <option>: <what>" as a ConfigError. */
_printf_(4, 5) static int config_error(struct nst_error *err, const char *where,
                                       const char *option, const char *fmt, ...) {
        char what[NST_ERROR_MESSAGE_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        return nst_error_set(err, -EINVAL, "ConfigError", "%s: [pci] %s: %s", where, option,
                             what);
}

static int no_memory(struct nst_error *err) {
        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
}

/* Grows *array (of *cap elements of size elem) so that one more fits. */
static int grow(void **array, size_t *cap, size_t n, size_t elem) {
        if (n < *cap)
                return 0;
        size_t new_cap = *cap ? *cap * 2 : 4;
        void *p = realloc(*array, new_cap * elem);
        if (!p)
                return -ENOMEM;
        *array = p;
        *cap = new_cap;
        return 0;
}

/* Where a value came from, for messages: its origin, or "value N". */
static char *origin_of(const char *const *origins, size_t i) {
        char *s = NULL;
        if (origins && origins[i])
                return strdup(origins[i]);
        return asprintf(&s, "value %zu", i + 1) < 0 ? NULL : s;
}

/* Parses one option value; *ret is owned by the caller. */
static int parse_json_value(const char *value, const char *where, const char *option,
                            json_object **ret, struct nst_error *err) {
        struct nst_error jerr = NST_ERROR_INIT;
        if (!value)
                value = "";
        int r = nst_json_parse(value, strlen(value), ret, &jerr);
        if (r == -ENOMEM)
                return no_memory(err);
        if (r < 0)
                return config_error(err, where, option, "malformed JSON: %s", jerr.message);
        return 0;
}

static const char *json_type_desc(json_object *v) {
        return v ? json_type_to_name(json_object_get_type(v)) : "null";
}

static bool is_blank(char c) {
        return isspace((unsigned char)c);
}

/* s without surrounding white space (Python's str.strip()) in buf, or NULL
 * when that does not fit: every caller's valid inputs are short. */
static const char *strip(const char *s, char *buf, size_t size) {
        while (is_blank(*s))
                s++;
        size_t n = strlen(s);
        while (n > 0 && is_blank(s[n - 1]))
                n--;
        if (n >= size)
                return NULL;
        memcpy(buf, s, n);
        buf[n] = '\0';
        return buf;
}

enum hex_result { HEX_OK, HEX_BAD, HEX_TOO_BIG };

/* Like Python's int(s, 16) for the inputs that matter: an optional 0x, then
 * one or more hex digits, at most max. */
static enum hex_result parse_hex(const char *s, unsigned max, unsigned *ret) {
        if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
                s += 2;
        if (!*s)
                return HEX_BAD;
        unsigned v = 0;
        bool too_big = false;
        for (; *s; s++) {
                int h = nst_hex_digit(*s);
                if (h < 0)
                        return HEX_BAD;
                v = v << 4 | (unsigned)h;
                if (v > max) {
                        too_big = true;
                        v = max; /* keeps the shift from overflowing */
                }
        }
        if (too_big)
                return HEX_TOO_BIG;
        *ret = v;
        return HEX_OK;
}

/* vendor_id / product_id: a hex string of at most ffff; "*" means any
 * where allow_any (device_spec; nova's alias schema has no wildcard). */
static int parse_id(json_object *v, const char *key, bool allow_any, const char *where,
                    const char *option, int *ret, struct nst_error *err) {
        char buf[64];
        unsigned id;
        if (!json_object_is_type(v, json_type_string))
                return config_error(err, where, option, "%s must be a string, not %s", key,
                                    json_type_desc(v));
        const char *s = strip(json_object_get_string(v), buf, sizeof(buf));
        if (!s)
                return config_error(err, where, option, "%s is too long", key);
        if (allow_any && strcmp(s, "*") == 0) {
                *ret = ANY;
                return 0;
        }
        switch (parse_hex(s, MAX_ID, &id)) {
        case HEX_OK:
                *ret = (int)id;
                return 0;
        case HEX_TOO_BIG:
                return config_error(err, where, option, "%s '%s' is greater than ffff", key, s);
        default:
                return config_error(err, where, option, "%s '%s' is not a hex number", key, s);
        }
}

/* ---- device_spec ---- */

enum addr_kind {
        ADDR_GLOB,    /* per-field value or ANY */
        ADDR_EXACT,   /* one address: that function, and its VFs if it is a PF */
        ADDR_REGEX,   /* per-field regexes, precomputed */
        ADDR_DEVNAME, /* a netdev: that function, and its VFs if it is a PF */
};

enum { F_DOMAIN, F_BUS, F_SLOT, F_FUNC, N_FIELDS };

static const struct field_info {
        const char *name;     /* as in messages and regex dict keys */
        unsigned max;
        int width;            /* hex digits in sysfs addresses */
} fields[N_FIELDS] = {
        [F_DOMAIN] = {"domain", 0xffff, 4},
        [F_BUS] = {"bus", 0xff, 2},
        [F_SLOT] = {"slot", 0x1f, 2},
        [F_FUNC] = {"function", 0x7, 1},
};

struct spec {
        char *where;            /* "origin" or "origin #k" */
        int vendor, product;    /* ANY or the id */
        enum addr_kind kind;
        int glob[N_FIELDS];     /* ADDR_GLOB */
        struct nst_pci_addr exact; /* ADDR_EXACT */
        uint64_t bus_ok[4];     /* ADDR_REGEX: bit b set when bus b matches */
        uint32_t slot_ok;
        uint8_t func_ok;
        bool has_domain_re;
        regex_t domain_re;
        char *devname;          /* ADDR_DEVNAME */
        bool remote_managed;
        struct nst_pci_tags tags;
};

struct nst_pci_spec_set {
        struct spec *specs;
        size_t n, cap;
};

static void tags_free(struct nst_pci_tags *t) {
        for (size_t i = 0; i < t->n; i++) {
                free(t->tags[i].key);
                free(t->tags[i].value);
        }
        free(t->tags);
}

static void spec_free(struct spec *sp) {
        free(sp->where);
        free(sp->devname);
        if (sp->has_domain_re)
                regfree(&sp->domain_re);
        tags_free(&sp->tags);
}

void nst_pci_spec_set_free(struct nst_pci_spec_set *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n; i++)
                spec_free(&s->specs[i]);
        free(s->specs);
        free(s);
}

size_t nst_pci_spec_set_count(const struct nst_pci_spec_set *s) {
        return s ? s->n : 0;
}

const char *nst_pci_spec_describe(const struct nst_pci_spec_set *s, size_t i) {
        return s && i < s->n ? s->specs[i].where : NULL;
}

/* -- address: glob -- */

static int glob_field(const char *addr, const char *text, int f, const char *where,
                      int *ret, struct nst_error *err) {
        char buf[64];
        unsigned v;
        const char *s = strip(text, buf, sizeof(buf));
        if (!s)
                return config_error(err, where, "device_spec", "address '%s': %s is too long",
                                    addr, fields[f].name);
        if (!*s || strcmp(s, "*") == 0) {
                *ret = ANY;
                return 0;
        }
        switch (parse_hex(s, fields[f].max, &v)) {
        case HEX_OK:
                *ret = (int)v;
                return 0;
        case HEX_TOO_BIG:
                return config_error(err, where, "device_spec",
                                    "address '%s': %s '%s' is greater than %x", addr,
                                    fields[f].name, s, fields[f].max);
        default:
                return config_error(err, where, "device_spec", "address '%s': %s is not hex",
                                    addr, fields[f].name);
        }
}

/* [[[[dom]:]bus]:][slot][.[func]], missing fields meaning "*" (nova's
 * PciAddressGlobSpec). */
static int parse_glob(struct spec *sp, const char *addr, struct nst_error *err) {
        _cleanup_free_ char *copy = strdup(addr);
        if (!copy)
                return no_memory(err);
        for (int f = 0; f < N_FIELDS; f++)
                sp->glob[f] = ANY;

        char *dot = strchr(copy, '.');
        if (dot) {
                *dot = '\0';
                int r = glob_field(addr, dot + 1, F_FUNC, sp->where, &sp->glob[F_FUNC], err);
                if (r < 0)
                        return r;
        }
        if (copy[0]) {
                char *parts[3];
                size_t n = 0;
                for (char *p = copy, *colon;; p = colon + 1) {
                        if (n == 3)
                                return config_error(err, sp->where, "device_spec",
                                                    "address '%s': too many ':'", addr);
                        parts[n++] = p;
                        colon = strchr(p, ':');
                        if (!colon)
                                break;
                        *colon = '\0';
                }
                /* Right-aligned: "0a:00" is bus:slot, "00" is the slot. */
                for (size_t i = 0; i < n; i++) {
                        int f = F_SLOT - (int)(n - 1 - i);
                        int r = glob_field(addr, parts[i], f, sp->where, &sp->glob[f], err);
                        if (r < 0)
                                return r;
                }
        }

        sp->kind = ADDR_GLOB;
        for (int f = 0; f < N_FIELDS; f++)
                if (sp->glob[f] == ANY)
                        return 0;
        sp->kind = ADDR_EXACT;
        sp->exact = (struct nst_pci_addr){.domain = (uint16_t)sp->glob[F_DOMAIN],
                                          .bus = (uint8_t)sp->glob[F_BUS],
                                          .slot = (uint8_t)sp->glob[F_SLOT],
                                          .function = (uint8_t)sp->glob[F_FUNC]};
        return 0;
}

/* -- address: regex dict -- */

struct field_regexes {
        const char *text[N_FIELDS]; /* NULL: not given (".*") */
        regex_t re[N_FIELDS];
        bool compiled[N_FIELDS];
};

static void field_regexes_done(struct field_regexes *fr) {
        for (int f = 0; f < N_FIELDS; f++)
                if (fr->compiled[f])
                        regfree(&fr->re[f]);
}

/* Python's re.match: the leftmost match (POSIX finds the leftmost) must
 * start at 0. This avoids wrapping the operator's text in "^(...)", which a
 * stray ')' could break out of. */
static bool regex_matches_at_start(const regex_t *re, const char *s) {
        regmatch_t m;
        return regexec(re, s, 1, &m, 0) == 0 && m.rm_so == 0;
}

static bool regex_matches_value(const regex_t *re, int f, unsigned v) {
        char s[8];
        snprintf(s, sizeof(s), "%0*x", fields[f].width, v);
        return regex_matches_at_start(re, s);
}

static int field_index(const char *key) {
        for (int f = 0; f < N_FIELDS; f++)
                if (strcmp(key, fields[f].name) == 0)
                        return f;
        return -1;
}

static int collect_field_regexes(struct spec *sp, json_object *addr, struct field_regexes *fr,
                                 struct nst_error *err) {
        json_object_object_foreach(addr, key, val) {
                int f = field_index(key);
                /* nova ignores unknown keys; a typo ("func") would silently
                 * widen the spec to every function, so refuse it. */
                if (f < 0)
                        return config_error(err, sp->where, "device_spec",
                                            "address: unknown field '%s' (expected domain, "
                                            "bus, slot, function)", key);
                if (!json_object_is_type(val, json_type_string))
                        return config_error(err, sp->where, "device_spec",
                                            "address: %s must be a string, not %s", key,
                                            json_type_desc(val));
                fr->text[f] = json_object_get_string(val);
                int r = regcomp(&fr->re[f], fr->text[f], REG_EXTENDED);
                if (r != 0) {
                        char why[128];
                        regerror(r, &fr->re[f], why, sizeof(why));
                        return config_error(err, sp->where, "device_spec",
                                            "address: %s regex '%s': %s", key, fr->text[f],
                                            why);
                }
                fr->compiled[f] = true;
        }
        return 0;
}

/* nova checks whether a dict address names one device (every field made of
 * hex digits) and then looks for <d>:<b>:<s>.<f> in sysfs: so exactly the
 * digits of a sysfs address make it a PF-address spec like a glob would. */
static bool regexes_are_one_address(const struct field_regexes *fr, struct nst_pci_addr *ret) {
        char text[NST_PCI_ADDR_LEN + 8];
        for (int f = 0; f < N_FIELDS; f++) {
                const char *s = fr->text[f];
                if (!s || (int)strlen(s) != fields[f].width)
                        return false;
                for (; *s; s++)
                        if (!isdigit((unsigned char)*s) && !(*s >= 'a' && *s <= 'f'))
                                return false;
        }
        snprintf(text, sizeof(text), "%s:%s:%s.%s", fr->text[F_DOMAIN], fr->text[F_BUS],
                 fr->text[F_SLOT], fr->text[F_FUNC]);
        return nst_pci_addr_parse(text, ret) == 0;
}

static int parse_regex_dict(struct spec *sp, json_object *addr, struct nst_error *err) {
        _cleanup_(field_regexes_done) struct field_regexes fr = {0};
        int r = collect_field_regexes(sp, addr, &fr, err);
        if (r < 0)
                return r;
        if (regexes_are_one_address(&fr, &sp->exact)) {
                sp->kind = ADDR_EXACT;
                return 0;
        }

        sp->kind = ADDR_REGEX;
        for (unsigned v = 0; v <= fields[F_BUS].max; v++)
                if (!fr.compiled[F_BUS] || regex_matches_value(&fr.re[F_BUS], F_BUS, v))
                        sp->bus_ok[v / 64] |= UINT64_C(1) << (v % 64);
        for (unsigned v = 0; v <= fields[F_SLOT].max; v++)
                if (!fr.compiled[F_SLOT] || regex_matches_value(&fr.re[F_SLOT], F_SLOT, v))
                        sp->slot_ok |= UINT32_C(1) << v;
        for (unsigned v = 0; v <= fields[F_FUNC].max; v++)
                if (!fr.compiled[F_FUNC] || regex_matches_value(&fr.re[F_FUNC], F_FUNC, v))
                        sp->func_ok |= (uint8_t)(1u << v);
        /* 65536 domains are too many to tabulate: keep the regex. */
        if (fr.compiled[F_DOMAIN]) {
                sp->domain_re = fr.re[F_DOMAIN];
                sp->has_domain_re = true;
                fr.compiled[F_DOMAIN] = false;
        }
        return 0;
}

static int parse_address(struct spec *sp, json_object *addr, struct nst_error *err) {
        if (json_object_is_type(addr, json_type_string))
                return parse_glob(sp, json_object_get_string(addr), err);
        if (json_object_is_type(addr, json_type_object))
                return parse_regex_dict(sp, addr, err);
        return config_error(err, sp->where, "device_spec",
                            "address must be a string or an object, not %s",
                            json_type_desc(addr));
}

/* -- tags -- */

static const char *const reserved_keys[] = {"vendor_id", "product_id", "address", "devname"};

static bool is_bool_tag(const char *key) {
        return strcmp(key, "trusted") == 0 || strcmp(key, "remote_managed") == 0;
}

/* oslo's strutils.bool_from_string vocabulary, which nova applies to
 * remote_managed. */
static int parse_bool_word(const char *s) {
        static const char *const yes[] = {"1", "t", "true", "on", "y", "yes"};
        static const char *const no[] = {"0", "f", "false", "off", "n", "no"};
        char buf[16];
        s = strip(s, buf, sizeof(buf));
        for (size_t i = 0; s && i < NST_ARRAY_SIZE(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0)
                        return 1;
                if (strcasecmp(s, no[i]) == 0)
                        return 0;
        }
        return -1;
}

static int tag_value(const struct spec *sp, const char *key, json_object *val, char **ret,
                     struct nst_error *err) {
        const char *v;
        if (is_bool_tag(key) && json_object_is_type(val, json_type_boolean)) {
                v = json_object_get_boolean(val) ? "true" : "false";
        } else if (!json_object_is_type(val, json_type_string)) {
                return config_error(err, sp->where, "device_spec",
                                    "%s must be a string%s, not %s", key,
                                    is_bool_tag(key) ? " or a boolean" : "",
                                    json_type_desc(val));
        } else if (is_bool_tag(key)) {
                int b = parse_bool_word(json_object_get_string(val));
                if (b < 0)
                        return config_error(err, sp->where, "device_spec",
                                            "%s '%s' is not a boolean (true/false, yes/no, "
                                            "1/0)", key, json_object_get_string(val));
                v = b ? "true" : "false";
        } else {
                v = json_object_get_string(val);
        }
        *ret = strdup(v);
        return *ret ? 0 : no_memory(err);
}

static int add_tag(struct spec *sp, size_t *cap, const char *key, json_object *val,
                   struct nst_error *err) {
        _cleanup_free_ char *lower = strdup(key);
        if (!lower)
                return no_memory(err);
        for (char *p = lower; *p; p++)
                *p = (char)tolower((unsigned char)*p);
        if (!lower[0])
                return config_error(err, sp->where, "device_spec", "empty key");
        /* "Vendor_ID" would become a tag shadowing the real vendor_id. */
        for (size_t i = 0; i < NST_ARRAY_SIZE(reserved_keys); i++)
                if (strcmp(lower, reserved_keys[i]) == 0)
                        return config_error(err, sp->where, "device_spec",
                                            "key '%s': keys are case-sensitive, use '%s'", key,
                                            reserved_keys[i]);
        if (nst_pci_tags_get(&sp->tags, lower))
                return config_error(err, sp->where, "device_spec", "tag '%s' given twice",
                                    lower);

        _cleanup_free_ char *value = NULL;
        int r = tag_value(sp, lower, val, &value, err);
        if (r < 0)
                return r;
        if (grow((void **)&sp->tags.tags, cap, sp->tags.n, sizeof(*sp->tags.tags)) < 0)
                return no_memory(err);
        sp->tags.tags[sp->tags.n++] = (struct nst_pci_tag){.key = nst_steal(&lower),
                                                           .value = nst_steal(&value)};
        return 0;
}

static int tag_cmp(const void *a, const void *b) {
        return strcmp(((const struct nst_pci_tag *)a)->key, ((const struct nst_pci_tag *)b)->key);
}

/* -- one entry -- */

/* Empty strings and {} count as absent, as nova's truthiness tests do. */
static bool json_given(json_object *v) {
        if (!v)
                return false;
        if (json_object_is_type(v, json_type_string))
                return json_object_get_string_len(v) > 0;
        if (json_object_is_type(v, json_type_object))
                return json_object_object_length(v) > 0;
        return true;
}

static int parse_entry_keys(struct spec *sp, json_object *obj, json_object **ret_addr,
                            json_object **ret_devname, struct nst_error *err) {
        size_t tags_cap = 0;
        json_object_object_foreach(obj, key, val) {
                int r = 0;
                if (strcmp(key, "vendor_id") == 0)
                        r = parse_id(val, key, true, sp->where, "device_spec", &sp->vendor, err);
                else if (strcmp(key, "product_id") == 0)
                        r = parse_id(val, key, true, sp->where, "device_spec", &sp->product,
                                     err);
                else if (strcmp(key, "address") == 0)
                        *ret_addr = val;
                else if (strcmp(key, "devname") == 0)
                        *ret_devname = val;
                else
                        r = add_tag(sp, &tags_cap, key, val, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_entry(struct spec *sp, json_object *obj, struct nst_error *err) {
        json_object *addr = NULL, *devname = NULL;
        sp->vendor = sp->product = ANY;
        int r = parse_entry_keys(sp, obj, &addr, &devname, err);
        if (r < 0)
                return r;

        if (json_given(devname)) {
                if (!json_object_is_type(devname, json_type_string))
                        return config_error(err, sp->where, "device_spec",
                                            "devname must be a string, not %s",
                                            json_type_desc(devname));
                if (json_given(addr))
                        return config_error(err, sp->where, "device_spec",
                                            "devname and address are mutually exclusive");
                sp->kind = ADDR_DEVNAME;
                sp->devname = strdup(json_object_get_string(devname));
                if (!sp->devname)
                        return no_memory(err);
        } else if (json_given(addr)) {
                r = parse_address(sp, addr, err);
                if (r < 0)
                        return r;
        } else {
                r = parse_glob(sp, "*:*:*.*", err);
                if (r < 0)
                        return r;
        }

        const char *rm = nst_pci_tags_get(&sp->tags, "remote_managed");
        sp->remote_managed = rm && strcmp(rm, "true") == 0;
        if (sp->tags.n > 1)
                qsort(sp->tags.tags, sp->tags.n, sizeof(*sp->tags.tags), tag_cmp);
        return 0;
}

/* Takes ownership of where. */
static int add_entry(struct nst_pci_spec_set *s, json_object *obj, char *where,
                     struct nst_error *err) {
        if (!where)
                return no_memory(err);
        if (grow((void **)&s->specs, &s->cap, s->n, sizeof(*s->specs)) < 0) {
                free(where);
                return no_memory(err);
        }
        /* Counted at once so that the set's destructor frees a half-parsed
         * entry too. */
        struct spec *sp = &s->specs[s->n++];
        *sp = (struct spec){.where = where};
        if (!json_object_is_type(obj, json_type_object))
                return config_error(err, where, "device_spec",
                                    "expecting a JSON object, not %s", json_type_desc(obj));
        return parse_entry(sp, obj, err);
}

static int parse_spec_value(struct nst_pci_spec_set *s, const char *value, const char *where,
                            struct nst_error *err) {
        _cleanup_json_ json_object *root = NULL;
        int r = parse_json_value(value, where, "device_spec", &root, err);
        if (r < 0)
                return r;
        if (json_object_is_type(root, json_type_object))
                return add_entry(s, root, strdup(where), err);
        if (!json_object_is_type(root, json_type_array))
                return config_error(err, where, "device_spec",
                                    "expecting a JSON object or a list of objects, not %s",
                                    json_type_desc(root));
        for (size_t k = 0; k < json_object_array_length(root); k++) {
                char *item_where = NULL;
                if (asprintf(&item_where, "%s #%zu", where, k + 1) < 0)
                        item_where = NULL;
                r = add_entry(s, json_object_array_get_idx(root, k), item_where, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int nst_pci_spec_set_parse(const char *const *values, const char *const *origins, size_t n,
                           struct nst_pci_spec_set **ret, struct nst_error *err) {
        _cleanup_(nst_pci_spec_set_freep) struct nst_pci_spec_set *s = calloc(1, sizeof(*s));
        if (!s)
                return no_memory(err);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *where = origin_of(origins, i);
                if (!where)
                        return no_memory(err);
                int r = parse_spec_value(s, values[i], where, err);
                if (r < 0)
                        return r;
        }
        *ret = nst_steal(&s);
        return 0;
}

/* -- matching -- */

/* Functions are sorted by address, so consecutive ones share a domain:
 * remember the last answer instead of running the regex each time. */
struct domain_memo {
        int domain;
        bool ok;
};

static bool domain_matches(const struct spec *sp, unsigned domain, struct domain_memo *memo) {
        if (!sp->has_domain_re)
                return true;
        if (memo->domain != (int)domain) {
                memo->domain = (int)domain;
                memo->ok = regex_matches_value(&sp->domain_re, F_DOMAIN, domain);
        }
        return memo->ok;
}

static bool address_matches(const struct spec *sp, const struct nst_pci_function *fn,
                            const struct nst_pci_function *pf, struct domain_memo *memo) {
        const struct nst_pci_addr a = fn->addr;
        switch (sp->kind) {
        case ADDR_EXACT: {
                uint32_t key = nst_pci_addr_key(sp->exact);
                return nst_pci_addr_key(a) == key || (pf && nst_pci_addr_key(pf->addr) == key);
        }
        case ADDR_DEVNAME:
                return strcmp(fn->netdev, sp->devname) == 0 ||
                       (pf && strcmp(pf->netdev, sp->devname) == 0);
        case ADDR_GLOB:
                return (sp->glob[F_DOMAIN] == ANY || sp->glob[F_DOMAIN] == a.domain) &&
                       (sp->glob[F_BUS] == ANY || sp->glob[F_BUS] == a.bus) &&
                       (sp->glob[F_SLOT] == ANY || sp->glob[F_SLOT] == a.slot) &&
                       (sp->glob[F_FUNC] == ANY || sp->glob[F_FUNC] == a.function);
        case ADDR_REGEX:
                return (sp->bus_ok[a.bus / 64] >> (a.bus % 64) & 1) &&
                       (a.slot <= 0x1f && (sp->slot_ok >> a.slot & 1)) &&
                       (a.function <= 7 && (sp->func_ok >> a.function & 1)) &&
                       domain_matches(sp, a.domain, memo);
        }
        return false;
}

static bool spec_matches(const struct spec *sp, const struct nst_pci_inventory *inv, size_t k,
                         struct domain_memo *memo) {
        const struct nst_pci_function *fn = &inv->fns[k];
        if (sp->vendor != ANY && fn->vendor != sp->vendor)
                return false;
        if (sp->product != ANY && fn->device != sp->product)
                return false;
        /* nova refuses remote_managed on a PF address (no way to reach the
         * PF's representor); without sysfs at parse time we cannot tell a PF
         * address from a VF one, so the PF itself is left out here instead. */
        if (sp->remote_managed && fn->type == NST_PCI_TYPE_PF)
                return false;
        const struct nst_pci_function *pf = NULL;
        if (fn->parent != NST_PCI_NONE && fn->parent < inv->n &&
            inv->fns[fn->parent].type == NST_PCI_TYPE_PF)
                pf = &inv->fns[fn->parent];
        return address_matches(sp, fn, pf, memo);
}

void nst_pci_spec_set_apply(const struct nst_pci_spec_set *s, const struct nst_pci_inventory *inv,
                            const struct nst_pci_tags **ret_tags, size_t *ret_matches) {
        for (size_t k = 0; k < inv->n; k++)
                ret_tags[k] = NULL;
        /* Entry-major: the first entry to claim a function wins, and each
         * entry keeps its own domain memo. */
        for (size_t j = 0; s && j < s->n; j++) {
                const struct spec *sp = &s->specs[j];
                struct domain_memo memo = {.domain = -1};
                size_t matched = 0;
                for (size_t k = 0; k < inv->n; k++) {
                        if (ret_tags[k] || !spec_matches(sp, inv, k, &memo))
                                continue;
                        ret_tags[k] = &sp->tags;
                        matched++;
                }
                if (ret_matches)
                        ret_matches[j] = matched;
        }
}

/* ---- alias ---- */

static const char *const numa_policy_names[] = {
        [NST_PCI_NUMA_LEGACY] = "legacy",
        [NST_PCI_NUMA_REQUIRED] = "required",
        [NST_PCI_NUMA_PREFERRED] = "preferred",
        [NST_PCI_NUMA_SOCKET] = "socket",
};

const char *nst_pci_numa_policy_name(enum nst_pci_numa_policy p) {
        return (unsigned)p < NST_ARRAY_SIZE(numa_policy_names) ? numa_policy_names[p] : "?";
}

int nst_pci_numa_policy_parse(const char *s, enum nst_pci_numa_policy *ret) {
        for (size_t i = 0; s && i < NST_ARRAY_SIZE(numa_policy_names); i++)
                if (strcmp(s, numa_policy_names[i]) == 0) {
                        *ret = (enum nst_pci_numa_policy)i;
                        return 0;
                }
        return -EINVAL;
}

struct nst_pci_alias_set {
        struct nst_pci_alias *aliases;
        char **where;           /* where each alias was first defined */
        size_t n, aliases_cap, where_cap;
};

void nst_pci_alias_set_free(struct nst_pci_alias_set *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n; i++) {
                free(s->aliases[i].matches);
                free(s->where[i]);
        }
        free(s->aliases);
        free(s->where);
        free(s);
}

size_t nst_pci_alias_set_count(const struct nst_pci_alias_set *s) {
        return s ? s->n : 0;
}

const struct nst_pci_alias *nst_pci_alias_set_at(const struct nst_pci_alias_set *s, size_t i) {
        return s && i < s->n ? &s->aliases[i] : NULL;
}

const struct nst_pci_alias *nst_pci_alias_lookup(const struct nst_pci_alias_set *s,
                                                 const char *name) {
        for (size_t i = 0; s && name && i < s->n; i++)
                if (strcmp(s->aliases[i].name, name) == 0)
                        return &s->aliases[i];
        return NULL;
}

/* One parsed alias value, before merging by name. */
struct alias_value {
        char name[64];
        int dev_type;
        enum nst_pci_numa_policy numa_policy;
        bool numa_policy_set;
        struct nst_pci_match match;
};

static int alias_string(json_object *v, const char *key, const char *where, const char **ret,
                        struct nst_error *err) {
        if (!json_object_is_type(v, json_type_string))
                return config_error(err, where, "alias", "%s must be a string, not %s", key,
                                    json_type_desc(v));
        *ret = json_object_get_string(v);
        return 0;
}

static int alias_name(json_object *v, const char *where, struct alias_value *av,
                      struct nst_error *err) {
        const char *s = NULL;
        char buf[256];
        int r = alias_string(v, "name", where, &s, err);
        if (r < 0)
                return r;
        s = strip(s, buf, sizeof(buf)); /* nova strips the name */
        if (!s)
                return config_error(err, where, "alias", "name is longer than %zu characters",
                                    sizeof(av->name) - 1);
        if (!*s)
                return config_error(err, where, "alias", "name is empty");
        if (strlen(s) >= sizeof(av->name))
                return config_error(err, where, "alias",
                                    "name '%s' is longer than %zu characters", s,
                                    sizeof(av->name) - 1);
        strcpy(av->name, s);
        return 0;
}

static int alias_device_type(json_object *v, const char *where, struct alias_value *av,
                             struct nst_error *err) {
        const char *s = NULL;
        enum nst_pci_type t;
        int r = alias_string(v, "device_type", where, &s, err);
        if (r < 0)
                return r;
        if (strcmp(s, "vdpa") == 0)
                return config_error(err, where, "alias",
                                    "device_type 'vdpa' cannot be requested through an alias");
        if (nst_pci_type_parse(s, &t) < 0)
                return config_error(err, where, "alias",
                                    "device_type '%s' is not one of type-PCI, type-PF, type-VF",
                                    s);
        av->dev_type = (int)t;
        return 0;
}

static int alias_numa_policy(json_object *v, const char *where, struct alias_value *av,
                             struct nst_error *err) {
        const char *s = NULL;
        int r = alias_string(v, "numa_policy", where, &s, err);
        if (r < 0)
                return r;
        if (nst_pci_numa_policy_parse(s, &av->numa_policy) < 0)
                return config_error(err, where, "alias",
                                    "numa_policy '%s' is not one of required, legacy, "
                                    "preferred, socket", s);
        av->numa_policy_set = true;
        return 0;
}

static int alias_key(const char *key, json_object *v, const char *where, struct alias_value *av,
                     struct nst_error *err) {
        const char *s = NULL;
        if (strcmp(key, "name") == 0)
                return alias_name(v, where, av, err);
        if (strcmp(key, "vendor_id") == 0)
                return parse_id(v, key, false, where, "alias", &av->match.vendor, err);
        if (strcmp(key, "product_id") == 0)
                return parse_id(v, key, false, where, "alias", &av->match.product, err);
        if (strcmp(key, "device_type") == 0)
                return alias_device_type(v, where, av, err);
        if (strcmp(key, "numa_policy") == 0)
                return alias_numa_policy(v, where, av, err);
        /* In nova's schema, unused: accepted so that nova configs load. */
        if (strcmp(key, "capability_type") == 0) {
                int r = alias_string(v, key, where, &s, err);
                if (r < 0)
                        return r;
                if (strcmp(s, "pci") != 0)
                        return config_error(err, where, "alias",
                                            "capability_type '%s' is not 'pci'", s);
                return 0;
        }
        return config_error(err, where, "alias",
                            "unknown key '%s' (expected name, vendor_id, product_id, "
                            "device_type, numa_policy)", key);
}

static int parse_alias_value(const char *value, const char *where, struct alias_value *av,
                             struct nst_error *err) {
        _cleanup_json_ json_object *root = NULL;
        int r = parse_json_value(value, where, "alias", &root, err);
        if (r < 0)
                return r;
        if (!json_object_is_type(root, json_type_object))
                return config_error(err, where, "alias", "expecting a JSON object, not %s",
                                    json_type_desc(root));
        *av = (struct alias_value){.dev_type = -1, .match = {.vendor = ANY, .product = ANY}};
        json_object_object_foreach(root, key, val) {
                r = alias_key(key, val, where, av, err);
                if (r < 0)
                        return r;
        }
        if (!av->name[0])
                return config_error(err, where, "alias", "name is required");
        return 0;
}

static const char *dev_type_desc(int t) {
        return t < 0 ? "none" : nst_pci_type_name((enum nst_pci_type)t);
}

static int add_match(struct nst_pci_alias *a, const struct nst_pci_match *m,
                     struct nst_error *err) {
        struct nst_pci_match *p = realloc(a->matches, (a->n_matches + 1) * sizeof(*p));
        if (!p)
                return no_memory(err);
        a->matches = p;
        a->matches[a->n_matches++] = *m;
        return 0;
}

/* Same-name aliases are OR-ed; nova requires them to agree on the rest. */
static int merge_alias(struct nst_pci_alias_set *s, size_t i, const struct alias_value *av,
                       const char *where, struct nst_error *err) {
        struct nst_pci_alias *a = &s->aliases[i];
        if (a->dev_type != av->dev_type)
                return config_error(err, where, "alias",
                                    "alias '%s': device_type %s disagrees with %s given at %s",
                                    av->name, dev_type_desc(av->dev_type),
                                    dev_type_desc(a->dev_type), s->where[i]);
        if (a->numa_policy != av->numa_policy)
                return config_error(err, where, "alias",
                                    "alias '%s': numa_policy %s disagrees with %s given at %s",
                                    av->name, nst_pci_numa_policy_name(av->numa_policy),
                                    nst_pci_numa_policy_name(a->numa_policy), s->where[i]);
        a->numa_policy_set |= av->numa_policy_set;
        return add_match(a, &av->match, err);
}

static int add_alias(struct nst_pci_alias_set *s, const struct alias_value *av,
                     const char *where, struct nst_error *err) {
        for (size_t i = 0; i < s->n; i++)
                if (strcmp(s->aliases[i].name, av->name) == 0)
                        return merge_alias(s, i, av, where, err);

        if (grow((void **)&s->aliases, &s->aliases_cap, s->n, sizeof(*s->aliases)) < 0 ||
            grow((void **)&s->where, &s->where_cap, s->n, sizeof(*s->where)) < 0)
                return no_memory(err);
        struct nst_pci_alias *a = &s->aliases[s->n];
        *a = (struct nst_pci_alias){.dev_type = av->dev_type, .numa_policy = av->numa_policy,
                                    .numa_policy_set = av->numa_policy_set};
        strcpy(a->name, av->name);
        s->where[s->n] = strdup(where);
        s->n++; /* the destructor now owns both */
        if (!s->where[s->n - 1])
                return no_memory(err);
        return add_match(a, &av->match, err);
}

int nst_pci_alias_set_parse(const char *const *values, const char *const *origins, size_t n,
                            struct nst_pci_alias_set **ret, struct nst_error *err) {
        _cleanup_(nst_pci_alias_set_freep) struct nst_pci_alias_set *s = calloc(1, sizeof(*s));
        if (!s)
                return no_memory(err);
        for (size_t i = 0; i < n; i++) {
                struct alias_value av;
                _cleanup_free_ char *where = origin_of(origins, i);
                if (!where)
                        return no_memory(err);
                int r = parse_alias_value(values[i], where, &av, err);
                if (r < 0)
                        return r;
                r = add_alias(s, &av, where, err);
                if (r < 0)
                        return r;
        }
        *ret = nst_steal(&s);
        return 0;
}
