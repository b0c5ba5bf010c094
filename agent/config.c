/* oslo.config-compatible INI files with typed, registered options.
 *
 * Files are tokenized into items, one per (section, key), each holding every
 * value in load order with its file and line. Options registered later attach
 * to the same items, so resolving, unknown-option warnings and getters are
 * hash lookups: a hostile 4 MiB file with a million keys stays linear. */
#define NST_LOG_MODULE "config"

#include "agent/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "agent/log.h"

#define MAX_FILE_BYTES (4u * 1024 * 1024)
#define MAX_LINE_BYTES (64u * 1024)
/* Values are quoted in error messages; keep the message readable and the
 * "expected ..." part from being cut off by NST_ERROR_MESSAGE_MAX. */
#define MAX_SHOWN_VALUE 80

static const char LOC_DEFAULT[] = "(default)";
static const char LOC_COMMAND_LINE[] = "(command line)";

struct value {
        char *text;
        const char *file; /* cfg->sources entry or one of the LOC_* names */
        unsigned line;    /* 0 when the location has no line */
        bool cli;
};

struct opt_state {
        const struct nst_option *opt;
        size_t item;
        bool resolved;
        int64_t i;
        double f;
        bool b;
        char *s;     /* STRING, ENUM; NULL when unset */
        char **list; /* LIST, MULTI; NULL-terminated */
        size_t n;
        char **origins; /* MULTI: "file:line" of each list entry */
};

struct item {
        size_t section;
        char *key;
        struct value *values;
        size_t n_values, cap_values;
        struct opt_state *opt; /* NULL: not registered (yet) */
        bool warned;
};

struct section {
        char *name;        /* first spelling seen, in a file or a registration */
        char *reg_name;    /* spelling used at registration, NULL if none */
        const char *file;  /* where it was first seen, for warnings */
        unsigned line;
        bool warned;
};

/* Open addressing over indexes into the items or sections arrays. */
struct table {
        size_t *slots; /* index + 1, 0 = empty */
        size_t cap;
        size_t used;
};

struct nst_config {
        struct item *items;
        size_t n_items, cap_items;
        struct table item_table;

        struct section *sections;
        size_t n_sections, cap_sections;
        struct table section_table;

        struct opt_state **opts; /* registration order */
        size_t n_opts, cap_opts;
        size_t *reg_sections; /* section indexes in registration order */
        size_t n_reg_sections, cap_reg_sections;

        char **sources; /* file names values point to */
        size_t n_sources, cap_sources;
};

static int grow(void *p, size_t *cap, size_t need, size_t elem) {
        void **pp = p;
        if (need <= *cap)
                return 0;
        size_t n = *cap ? *cap : 8;
        while (n < need)
                n *= 2;
        void *q = reallocarray(*pp, n, elem);
        if (!q)
                return -ENOMEM;
        *pp = q;
        *cap = n;
        return 0;
}

static uint64_t hash_str(uint64_t h, const char *s, bool fold) {
        for (; *s; s++) {
                h ^= (unsigned char)(fold ? tolower((unsigned char)*s) : *s);
                h *= 1099511628211u;
        }
        return h;
}

#define HASH_SEED 14695981039346656037u

/* oslo lower-cases every group name but DEFAULT; we also take [default] for
 * [DEFAULT], so a plain case-insensitive match covers both. */
static uint64_t section_hash(const char *name) {
        return hash_str(HASH_SEED, name, true);
}

static uint64_t item_hash(size_t section, const char *key) {
        return hash_str((HASH_SEED ^ section) * 1099511628211u, key, false);
}

typedef bool (*table_eq_fn)(const struct nst_config *cfg, size_t idx, const void *key);

/* Returns the slot holding a match, or the empty slot where it would go. */
static size_t *table_slot(const struct nst_config *cfg, const struct table *t, uint64_t h,
                          table_eq_fn eq, const void *key) {
        if (t->cap == 0)
                return NULL;
        for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
                size_t *s = &t->slots[i];
                if (*s == 0 || eq(cfg, *s - 1, key))
                        return s;
        }
}

static int table_reserve(struct nst_config *cfg, struct table *t,
                         uint64_t (*hash_of)(const struct nst_config *, size_t)) {
        if ((t->used + 1) * 2 <= t->cap)
                return 0;
        size_t cap = t->cap ? t->cap * 2 : 64;
        size_t *slots = calloc(cap, sizeof(*slots));
        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; i < t->cap; i++) {
                if (!t->slots[i])
                        continue;
                size_t j = hash_of(cfg, t->slots[i] - 1) & (cap - 1);
                while (slots[j])
                        j = (j + 1) & (cap - 1);
                slots[j] = t->slots[i];
        }
        free(t->slots);
        t->slots = slots;
        t->cap = cap;
        return 0;
}

static bool section_eq(const struct nst_config *cfg, size_t idx, const void *key) {
        return strcasecmp(cfg->sections[idx].name, key) == 0;
}

static uint64_t section_hash_of(const struct nst_config *cfg, size_t idx) {
        return section_hash(cfg->sections[idx].name);
}

struct item_key {
        size_t section;
        const char *key;
};

static bool item_eq(const struct nst_config *cfg, size_t idx, const void *key) {
        const struct item_key *k = key;
        return cfg->items[idx].section == k->section && strcmp(cfg->items[idx].key, k->key) == 0;
}

static uint64_t item_hash_of(const struct nst_config *cfg, size_t idx) {
        return item_hash(cfg->items[idx].section, cfg->items[idx].key);
}

static bool find_section(const struct nst_config *cfg, const char *name, size_t *ret) {
        size_t *s = table_slot(cfg, &cfg->section_table, section_hash(name), section_eq, name);
        if (!s || *s == 0)
                return false;
        *ret = *s - 1;
        return true;
}

static bool find_item(const struct nst_config *cfg, size_t section, const char *key, size_t *ret) {
        struct item_key k = {section, key};
        size_t *s = table_slot(cfg, &cfg->item_table, item_hash(section, key), item_eq, &k);
        if (!s || *s == 0)
                return false;
        *ret = *s - 1;
        return true;
}

static int get_section(struct nst_config *cfg, const char *name, const char *file, unsigned line,
                       size_t *ret) {
        if (find_section(cfg, name, ret))
                return 0;
        if (table_reserve(cfg, &cfg->section_table, section_hash_of) < 0 ||
            grow(&cfg->sections, &cfg->cap_sections, cfg->n_sections + 1,
                 sizeof(*cfg->sections)) < 0)
                return -ENOMEM;
        char *copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        size_t idx = cfg->n_sections++;
        cfg->sections[idx] = (struct section){.name = copy, .file = file, .line = line};
        *table_slot(cfg, &cfg->section_table, section_hash(name), section_eq, name) = idx + 1;
        cfg->section_table.used++;
        *ret = idx;
        return 0;
}

static int get_item(struct nst_config *cfg, size_t section, const char *key, size_t *ret) {
        if (find_item(cfg, section, key, ret))
                return 0;
        if (table_reserve(cfg, &cfg->item_table, item_hash_of) < 0 ||
            grow(&cfg->items, &cfg->cap_items, cfg->n_items + 1, sizeof(*cfg->items)) < 0)
                return -ENOMEM;
        char *copy = strdup(key);
        if (!copy)
                return -ENOMEM;
        size_t idx = cfg->n_items++;
        cfg->items[idx] = (struct item){.section = section, .key = copy};
        struct item_key k = {section, key};
        *table_slot(cfg, &cfg->item_table, item_hash(section, key), item_eq, &k) = idx + 1;
        cfg->item_table.used++;
        *ret = idx;
        return 0;
}

/* Takes ownership of text, also on failure. */
static int add_value(struct nst_config *cfg, size_t section, const char *key, char *text,
                     const char *file, unsigned line, bool cli) {
        _cleanup_free_ char *owned = text;
        size_t idx;
        if (get_item(cfg, section, key, &idx) < 0)
                return -ENOMEM;
        struct item *it = &cfg->items[idx];
        if (grow(&it->values, &it->cap_values, it->n_values + 1, sizeof(*it->values)) < 0)
                return -ENOMEM;
        it->values[it->n_values++] =
                (struct value){.text = nst_steal(&owned), .file = file, .line = line, .cli = cli};
        return 0;
}

int nst_config_new(struct nst_config **ret) {
        struct nst_config *cfg = calloc(1, sizeof(*cfg));
        if (!cfg)
                return -ENOMEM;
        *ret = cfg;
        return 0;
}

static void free_list(char **list) {
        if (!list)
                return;
        for (char **p = list; *p; p++)
                free(*p);
        free(list);
}

struct nst_config *nst_config_free(struct nst_config *cfg) {
        if (!cfg)
                return NULL;
        for (size_t i = 0; i < cfg->n_items; i++) {
                struct item *it = &cfg->items[i];
                for (size_t j = 0; j < it->n_values; j++)
                        free(it->values[j].text);
                free(it->values);
                free(it->key);
        }
        free(cfg->items);
        free(cfg->item_table.slots);
        for (size_t i = 0; i < cfg->n_sections; i++) {
                free(cfg->sections[i].name);
                free(cfg->sections[i].reg_name);
        }
        free(cfg->sections);
        free(cfg->section_table.slots);
        for (size_t i = 0; i < cfg->n_opts; i++) {
                free(cfg->opts[i]->s);
                free_list(cfg->opts[i]->list);
                free_list(cfg->opts[i]->origins);
                free(cfg->opts[i]);
        }
        free(cfg->opts);
        free(cfg->reg_sections);
        for (size_t i = 0; i < cfg->n_sources; i++)
                free(cfg->sources[i]);
        free(cfg->sources);
        free(cfg);
        return NULL;
}

/* ---- Parsing (mirrors oslo_config/iniparser.py BaseParser.parse) ---- */

struct span {
        const char *p;
        size_t n;
};

static bool is_space(char c) {
        return isspace((unsigned char)c);
}

static struct span strip(struct span s) {
        while (s.n > 0 && is_space(s.p[0])) {
                s.p++;
                s.n--;
        }
        while (s.n > 0 && is_space(s.p[s.n - 1]))
                s.n--;
        return s;
}

static char *span_dup(struct span s) {
        return strndup(s.p, s.n);
}

struct parser {
        struct nst_config *cfg;
        const char *name;
        bool commit; /* false: only check the syntax, allocate nothing */
        bool have_section;
        size_t section;
        bool have_key;
        struct span key;
        unsigned key_line;
        char *value; /* commit pass only */
        size_t value_len, value_cap;
};

static int value_append(struct parser *ps, const char *sep, struct span s) {
        size_t seplen = strlen(sep);
        if (grow(&ps->value, &ps->value_cap, ps->value_len + seplen + s.n + 1, 1) < 0)
                return -ENOMEM;
        memcpy(ps->value + ps->value_len, sep, seplen);
        memcpy(ps->value + ps->value_len + seplen, s.p, s.n);
        ps->value_len += seplen + s.n;
        ps->value[ps->value_len] = '\0';
        return 0;
}

static int flush(struct parser *ps, struct nst_error *err) {
        if (!ps->have_key)
                return 0;
        ps->have_key = false;
        if (!ps->commit)
                return 0;
        _cleanup_free_ char *key = span_dup(ps->key);
        char *value = ps->value;
        ps->value = NULL;
        ps->value_len = ps->value_cap = 0;
        if (!key) {
                free(value);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        if (add_value(ps->cfg, ps->section, key, value, ps->name, ps->key_line, false) < 0)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        return 0;
}

static int parse_error(struct parser *ps, unsigned line, struct nst_error *err, const char *what) {
        return nst_error_set(err, -EINVAL, "ConfigError", "%s:%u: %s", ps->name, line, what);
}

static int parse_line(struct parser *ps, struct span line, unsigned lineno,
                      struct nst_error *err) {
        int r;
        while (line.n > 0 && is_space(line.p[line.n - 1]))
                line.n--;
        if (line.n == 0)
                return flush(ps, err); /* a blank line ends a multi-line value */

        if (line.p[0] == ' ' || line.p[0] == '\t') {
                if (!ps->have_key)
                        return parse_error(ps, lineno, err,
                                           "continuation line (starts with whitespace) without "
                                           "an option to continue");
                if (!ps->commit)
                        return 0;
                if (value_append(ps, "\n", strip(line)) < 0)
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                return 0;
        }

        r = flush(ps, err);
        if (r < 0)
                return r;

        if (line.p[0] == '[') {
                if (line.p[line.n - 1] != ']')
                        return parse_error(ps, lineno, err,
                                           "invalid section header: missing closing ']'");
                if (line.n <= 2)
                        return parse_error(ps, lineno, err, "empty section name");
                ps->have_section = true;
                if (!ps->commit)
                        return 0;
                _cleanup_free_ char *name = span_dup((struct span){line.p + 1, line.n - 2});
                if (!name || get_section(ps->cfg, name, ps->name, lineno, &ps->section) < 0)
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                return 0;
        }
        if (line.p[0] == '#' || line.p[0] == ';')
                return 0;

        /* The first of ':' and '=' separates, so "url = http://x" keeps its
         * colon and "a: b = c" has the value "b = c". */
        const char *sep = NULL;
        for (size_t i = 0; i < line.n && !sep; i++)
                if (line.p[i] == '=' || line.p[i] == ':')
                        sep = line.p + i;
        if (!sep)
                return parse_error(ps, lineno, err, "expected 'key = value' or '[section]'");
        struct span key = strip((struct span){line.p, (size_t)(sep - line.p)});
        struct span value = strip((struct span){sep + 1, (size_t)(line.p + line.n - sep - 1)});
        if (key.n == 0)
                return parse_error(ps, lineno, err, "empty option name before the separator");
        if (!ps->have_section)
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "%s:%u: option '%.*s' before any [section] header "
                                     "(start with [DEFAULT])",
                                     ps->name, lineno, (int)key.n, key.p);
        if (value.n >= 1 && (value.p[0] == '"' || value.p[0] == '\'') &&
            value.p[value.n - 1] == value.p[0]) {
                /* oslo's check: a lone quote character becomes the empty string */
                value.p++;
                value.n = value.n >= 2 ? value.n - 2 : 0;
        }
        ps->have_key = true;
        ps->key = key;
        ps->key_line = lineno;
        if (!ps->commit)
                return 0;
        ps->value_len = 0;
        if (value_append(ps, "", value) < 0)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        return 0;
}

static int parse_pass(struct parser *ps, const char *text, size_t len, struct nst_error *err) {
        unsigned lineno = 0;
        const char *p = text, *end = text + len;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
                lineno++;
                if (n > MAX_LINE_BYTES)
                        return nst_error_set(err, -EINVAL, "ConfigError",
                                             "%s:%u: line longer than %u bytes", ps->name, lineno,
                                             MAX_LINE_BYTES);
                int r = parse_line(ps, (struct span){p, n}, lineno, err);
                if (r < 0)
                        return r;
                p = nl ? nl + 1 : end;
        }
        return flush(ps, err);
}

static int load_text(struct nst_config *cfg, const char *name, const char *text, size_t len,
                     struct nst_error *err) {
        if (len > MAX_FILE_BYTES)
                return nst_error_set(err, -EFBIG, "ConfigError", "%s: larger than %u bytes",
                                     name, MAX_FILE_BYTES);
        const char *nul = memchr(text, '\0', len);
        if (nul) {
                unsigned line = 1;
                for (const char *p = text; p < nul; p++)
                        line += *p == '\n';
                return nst_error_set(err, -EINVAL, "ConfigError", "%s:%u: NUL byte in text",
                                     name, line);
        }

        /* Check the whole text first so a syntax error leaves cfg untouched. */
        struct parser check = {.cfg = cfg, .name = name};
        int r = parse_pass(&check, text, len, err);
        if (r < 0)
                return r;

        if (grow(&cfg->sources, &cfg->cap_sources, cfg->n_sources + 1,
                 sizeof(*cfg->sources)) < 0)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        char *source = strdup(name);
        if (!source)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        cfg->sources[cfg->n_sources++] = source;

        struct parser ps = {.cfg = cfg, .name = source, .commit = true};
        r = parse_pass(&ps, text, len, err);
        free(ps.value);
        return r;
}

int nst_config_load_string(struct nst_config *cfg, const char *name, const char *text,
                           struct nst_error *err) {
        if (!cfg || !name || !text)
                return nst_error_set(err, -EINVAL, "ValueError", "missing argument");
        return load_text(cfg, name, text, strnlen(text, MAX_FILE_BYTES + 1), err);
}

int nst_config_load_file(struct nst_config *cfg, const char *path, struct nst_error *err) {
        if (!cfg || !path)
                return nst_error_set(err, -EINVAL, "ValueError", "missing argument");
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                int e = errno;
                return nst_error_set(err, -e, "ConfigError", "cannot open %s: %s", path,
                                     strerror(e));
        }

        /* Read at most one byte past the limit rather than trusting st_size:
         * the file may grow, or be a pipe. */
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;
        for (;;) {
                if (len == cap) {
                        if (cap > MAX_FILE_BYTES)
                                break;
                        size_t ncap = cap ? cap * 2 : 64 * 1024;
                        if (ncap > MAX_FILE_BYTES + 1)
                                ncap = MAX_FILE_BYTES + 1;
                        char *nb = realloc(buf, ncap);
                        if (!nb)
                                return nst_error_set(err, -ENOMEM, "MemoryError",
                                                     "out of memory");
                        buf = nb;
                        cap = ncap;
                }
                ssize_t n = read(fd, buf + len, cap - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int e = errno;
                        return nst_error_set(err, -e, "ConfigError", "cannot read %s: %s", path,
                                             strerror(e));
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        return load_text(cfg, path, buf ? buf : "", len, err);
}

/* ---- Registration ---- */

int nst_config_register(struct nst_config *cfg, const char *section,
                        const struct nst_option *opts, size_t n, struct nst_error *err) {
        if (!cfg || !section || !section[0] || (n > 0 && !opts))
                return nst_error_set(err, -EINVAL, "ValueError",
                                     "nst_config_register: missing section or options");
        for (size_t i = 0; i < n; i++) {
                const struct nst_option *o = &opts[i];
                if (!o->name || !o->name[0] || o->type < NST_OPT_STRING ||
                    o->type > NST_OPT_ENUM || (o->type == NST_OPT_ENUM && !o->choices))
                        return nst_error_set(err, -EINVAL, "ValueError",
                                             "[%s] option #%zu: missing name, bad type or no "
                                             "choices",
                                             section, i);
                for (size_t j = 0; j < i; j++)
                        if (strcmp(opts[j].name, o->name) == 0)
                                return nst_error_set(err, -EEXIST, "ValueError",
                                                     "[%s] %s: registered twice", section,
                                                     o->name);
                size_t s, it;
                if (find_section(cfg, section, &s) && find_item(cfg, s, o->name, &it) &&
                    cfg->items[it].opt)
                        return nst_error_set(err, -EEXIST, "ValueError",
                                             "[%s] %s: registered twice", section, o->name);
        }

        size_t s;
        if (get_section(cfg, section, LOC_DEFAULT, 0, &s) < 0 ||
            grow(&cfg->opts, &cfg->cap_opts, cfg->n_opts + n, sizeof(*cfg->opts)) < 0)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        struct section *sec = &cfg->sections[s];
        if (!sec->reg_name) {
                if (grow(&cfg->reg_sections, &cfg->cap_reg_sections, cfg->n_reg_sections + 1,
                         sizeof(*cfg->reg_sections)) < 0 ||
                    !(sec->reg_name = strdup(section)))
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                cfg->reg_sections[cfg->n_reg_sections++] = s;
        }
        for (size_t i = 0; i < n; i++) {
                size_t it;
                struct opt_state *st = calloc(1, sizeof(*st));
                if (!st || get_item(cfg, s, opts[i].name, &it) < 0) {
                        free(st);
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                }
                st->opt = &opts[i];
                st->item = it;
                cfg->items[it].opt = st;
                cfg->opts[cfg->n_opts++] = st;
        }
        return 0;
}

int nst_config_set(struct nst_config *cfg, const char *section, const char *name,
                   const char *value, struct nst_error *err) {
        if (!cfg || !section || !section[0] || !name || !name[0] || !value)
                return nst_error_set(err, -EINVAL, "ValueError",
                                     "nst_config_set: missing section, name or value");
        size_t s, it;
        if (find_section(cfg, section, &s) && find_item(cfg, s, name, &it) &&
            cfg->items[it].opt && cfg->items[it].opt->resolved)
                return nst_error_set(err, -EBUSY, "ConfigError",
                                     "[%s] %s: already resolved, cannot override", section,
                                     name);
        char *copy = strdup(value);
        if (!copy || get_section(cfg, section, LOC_COMMAND_LINE, 0, &s) < 0 ||
            add_value(cfg, s, name, copy, LOC_COMMAND_LINE, 0, true) < 0)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        return 0;
}

/* ---- Resolution ---- */

static const char *type_name(enum nst_opt_type t) {
        switch (t) {
        case NST_OPT_STRING:
                return "string";
        case NST_OPT_INT:
                return "integer";
        case NST_OPT_FLOAT:
                return "float";
        case NST_OPT_BOOL:
                return "boolean";
        case NST_OPT_LIST:
                return "list";
        case NST_OPT_MULTI:
                return "multi-valued string";
        case NST_OPT_ENUM:
                return "enum";
        }
        return "?";
}

static bool has_bounds(const struct nst_option *o) {
        return !(o->min == 0 && o->max == 0);
}

/* "an integer between 1 and 3600", "one of: a, b", ... */
static void describe_expected(const struct nst_option *o, char *buf, size_t size) {
        FILE *f = fmemopen(buf, size, "w");
        if (!f) {
                snprintf(buf, size, "a %s", type_name(o->type));
                return;
        }
        switch (o->type) {
        case NST_OPT_INT:
                fputs("an integer", f);
                if (has_bounds(o))
                        fprintf(f, " between %.0f and %.0f", o->min, o->max);
                break;
        case NST_OPT_FLOAT:
                fputs("a number", f);
                if (has_bounds(o))
                        fprintf(f, " between %g and %g", o->min, o->max);
                break;
        case NST_OPT_BOOL:
                fputs("true/false, yes/no, on/off or 1/0", f);
                break;
        case NST_OPT_ENUM:
                fputs("one of: ", f);
                for (size_t i = 0; o->choices[i]; i++)
                        fprintf(f, "%s%s", i ? ", " : "", o->choices[i]);
                break;
        default:
                fprintf(f, "a %s", type_name(o->type));
                break;
        }
        fclose(f);
}

static struct span trimmed(const char *s) {
        return strip((struct span){s, strlen(s)});
}

static bool parse_int(const char *text, int64_t *ret) {
        struct span s = trimmed(text);
        size_t i = 0;
        if (i < s.n && (s.p[i] == '+' || s.p[i] == '-'))
                i++;
        if (i == s.n || s.n > 32)
                return false;
        for (; i < s.n; i++)
                if (!isdigit((unsigned char)s.p[i]))
                        return false;
        char buf[33];
        memcpy(buf, s.p, s.n);
        buf[s.n] = '\0';
        errno = 0;
        long long v = strtoll(buf, NULL, 10);
        if (errno == ERANGE)
                return false;
        *ret = v;
        return true;
}

static bool parse_float(const char *text, double *ret) {
        struct span s = trimmed(text);
        if (s.n == 0 || s.n > 64)
                return false;
        char buf[65];
        memcpy(buf, s.p, s.n);
        buf[s.n] = '\0';
        /* Python's float() has no hexadecimal form; strtod would take one. */
        const char *digits = buf + (buf[0] == '+' || buf[0] == '-');
        if (digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X'))
                return false;
        char *end;
        errno = 0;
        double v = strtod(buf, &end);
        if (*end != '\0' || (errno == ERANGE && fabs(v) > 1))
                return false;
        *ret = v;
        return true;
}

static bool parse_bool(const char *text, bool *ret) {
        static const char *const yes[] = {"true", "1", "on", "yes"};
        static const char *const no[] = {"false", "0", "off", "no"};
        for (size_t i = 0; i < NST_ARRAY_SIZE(yes); i++) {
                if (strcasecmp(text, yes[i]) == 0) {
                        *ret = true;
                        return true;
                }
                if (strcasecmp(text, no[i]) == 0) {
                        *ret = false;
                        return true;
                }
        }
        return false;
}

static int list_push(char ***list, size_t *n, size_t *cap, struct span s) {
        if (grow(list, cap, *n + 2, sizeof(**list)) < 0)
                return -ENOMEM;
        char *copy = span_dup(s);
        if (!copy)
                return -ENOMEM;
        (*list)[(*n)++] = copy;
        (*list)[*n] = NULL;
        return 0;
}

static int split_list(const char *text, char ***list, size_t *n, size_t *cap) {
        for (const char *p = text;;) {
                const char *comma = strchr(p, ',');
                size_t len = comma ? (size_t)(comma - p) : strlen(p);
                struct span item = strip((struct span){p, len});
                if (item.n > 0 && list_push(list, n, cap, item) < 0)
                        return -ENOMEM;
                if (!comma)
                        return 0;
                p = comma + 1;
        }
}

static void format_location(const struct value *v, char *buf, size_t size) {
        if (v->line > 0)
                snprintf(buf, size, "%s:%u", v->file, v->line);
        else
                snprintf(buf, size, "%s", v->file);
}

static int invalid(const struct nst_config *cfg, const struct opt_state *st, const struct value *v,
                   struct nst_error *err) {
        const struct item *it = &cfg->items[st->item];
        char loc[256], expected[512];
        format_location(v, loc, sizeof(loc));
        describe_expected(st->opt, expected, sizeof(expected));
        size_t len = strlen(v->text);
        return nst_error_set(err, -EINVAL, "ConfigError",
                             "%s: [%s] %s: invalid value '%.*s%s': expected %s", loc,
                             cfg->sections[it->section].reg_name, st->opt->name,
                             (int)(len > MAX_SHOWN_VALUE ? MAX_SHOWN_VALUE : len), v->text,
                             len > MAX_SHOWN_VALUE ? "..." : "", expected);
}

/* Converts one textual value into st (the last call wins for single-valued
 * types). Returns -EINVAL for a bad value, -ENOMEM. */
static int convert(struct opt_state *st, const char *text, size_t *cap) {
        const struct nst_option *o = st->opt;
        switch (o->type) {
        case NST_OPT_STRING: {
                char *s = strdup(text);
                if (!s)
                        return -ENOMEM;
                free(st->s);
                st->s = s;
                return 0;
        }
        case NST_OPT_ENUM:
                for (size_t i = 0; o->choices[i]; i++) {
                        if (strcmp(text, o->choices[i]) == 0) {
                                char *s = strdup(text);
                                if (!s)
                                        return -ENOMEM;
                                free(st->s);
                                st->s = s;
                                return 0;
                        }
                }
                return -EINVAL;
        case NST_OPT_INT: {
                int64_t v;
                if (!parse_int(text, &v))
                        return -EINVAL;
                if (has_bounds(o) && ((double)v < o->min || (double)v > o->max))
                        return -EINVAL;
                st->i = v;
                return 0;
        }
        case NST_OPT_FLOAT: {
                double v;
                if (!parse_float(text, &v))
                        return -EINVAL;
                if (has_bounds(o) && !(v >= o->min && v <= o->max))
                        return -EINVAL;
                st->f = v;
                return 0;
        }
        case NST_OPT_BOOL:
                return parse_bool(text, &st->b) ? 0 : -EINVAL;
        case NST_OPT_LIST:
                free_list(st->list);
                st->list = NULL;
                st->n = *cap = 0;
                return split_list(text, &st->list, &st->n, cap);
        case NST_OPT_MULTI:
                return list_push(&st->list, &st->n, cap, (struct span){text, strlen(text)});
        }
        return -EINVAL;
}

static void reset(struct opt_state *st) {
        free(st->s);
        st->s = NULL;
        free_list(st->list);
        st->list = NULL;
        free_list(st->origins);
        st->origins = NULL;
        st->n = 0;
        st->i = 0;
        st->f = 0;
        st->b = false;
}

static int resolve_one(struct nst_config *cfg, struct opt_state *st, struct nst_error *err) {
        const struct item *it = &cfg->items[st->item];
        const struct nst_option *o = st->opt;
        size_t cap = 0;
        int r = 0;

        /* Like oslo, command-line values replace the files' values entirely
         * (for MULTI too); otherwise every file value in load order. */
        bool cli = false;
        size_t n_use = 0, last = 0;
        for (size_t i = 0; i < it->n_values; i++)
                cli = cli || it->values[i].cli;
        for (size_t i = 0; i < it->n_values; i++) {
                if (it->values[i].cli == cli) {
                        n_use++;
                        last = i;
                }
        }

        reset(st);
        if (n_use == 0 && o->default_value &&
            /* an empty MULTI default means no values, not one empty value */
            !(o->type == NST_OPT_MULTI && !o->default_value[0])) {
                struct value def = {.text = (char *)o->default_value, .file = LOC_DEFAULT};
                r = convert(st, def.text, &cap);
                if (r == -EINVAL)
                        r = invalid(cfg, st, &def, err);
        } else if (n_use > 0 && o->type != NST_OPT_MULTI) {
                /* Only the last value counts; earlier ones are not checked
                 * (oslo never looks at them either). */
                r = convert(st, it->values[last].text, &cap);
                if (r == -EINVAL)
                        r = invalid(cfg, st, &it->values[last], err);
        } else {
                size_t n_origins = 0, cap_origins = 0;
                for (size_t i = 0; i < it->n_values && r >= 0; i++) {
                        if (it->values[i].cli != cli)
                                continue;
                        r = convert(st, it->values[i].text, &cap);
                        if (r == -EINVAL)
                                r = invalid(cfg, st, &it->values[i], err);
                        if (r >= 0 && o->type == NST_OPT_MULTI) {
                                char loc[256];
                                format_location(&it->values[i], loc, sizeof(loc));
                                r = list_push(&st->origins, &n_origins, &cap_origins,
                                              (struct span){loc, strlen(loc)});
                        }
                }
        }
        /* Getters hand out a NULL-terminated array even when empty. */
        if (r >= 0 && (o->type == NST_OPT_LIST || o->type == NST_OPT_MULTI) && !st->list) {
                st->list = calloc(1, sizeof(*st->list));
                if (!st->list)
                        r = -ENOMEM;
        }
        if (r < 0) {
                reset(st);
                if (r == -ENOMEM)
                        return nst_error_set(err, r, "MemoryError", "out of memory");
                return r;
        }
        st->resolved = true;
        return 0;
}

int nst_config_resolve(struct nst_config *cfg, struct nst_error *err) {
        for (size_t i = 0; i < cfg->n_opts; i++) {
                if (cfg->opts[i]->resolved)
                        continue;
                int r = resolve_one(cfg, cfg->opts[i], err);
                if (r < 0)
                        return r;
        }
        return 0;
}

size_t nst_config_warn_unknown(struct nst_config *cfg) {
        size_t unknown = 0;
        for (size_t i = 0; i < cfg->n_items; i++) {
                struct item *it = &cfg->items[i];
                if (it->opt || it->n_values == 0)
                        continue;
                unknown++;
                struct section *sec = &cfg->sections[it->section];
                char loc[256];
                /* DEFAULT always exists in oslo; elsewhere a section nobody
                 * registered is usually a disabled plugin's: one line for it
                 * rather than one per option. */
                if (!sec->reg_name && strcasecmp(sec->name, "DEFAULT") != 0) {
                        if (sec->warned)
                                continue;
                        sec->warned = true;
                        if (sec->line > 0)
                                snprintf(loc, sizeof(loc), "%s:%u", sec->file, sec->line);
                        else
                                snprintf(loc, sizeof(loc), "%s", sec->file);
                        log_warning("%s: unknown section [%s] (no enabled plugin uses it), "
                                    "ignoring",
                                    loc, sec->name);
                        continue;
                }
                if (it->warned)
                        continue;
                it->warned = true;
                format_location(&it->values[0], loc, sizeof(loc));
                log_warning("%s: unknown option [%s] %s, ignoring", loc, sec->name, it->key);
        }
        return unknown;
}

/* ---- Getters ---- */

_Noreturn static void bug(const char *section, const char *name, const char *what) {
        fprintf(stderr, "nestor: BUG: config option [%s] %s: %s\n", section ? section : "(null)",
                name ? name : "(null)", what);
        abort();
}

static const struct opt_state *lookup(const struct nst_config *cfg, const char *section,
                                      const char *name, enum nst_opt_type t1,
                                      enum nst_opt_type t2) {
        size_t s, it;
        if (!cfg || !section || !name)
                bug(section, name, "NULL argument");
        if (!find_section(cfg, section, &s) || !find_item(cfg, s, name, &it) ||
            !cfg->items[it].opt)
                bug(section, name, "not registered");
        const struct opt_state *st = cfg->items[it].opt;
        if (st->opt->type != t1 && st->opt->type != t2) {
                char what[128];
                snprintf(what, sizeof(what), "is a %s option, read with the %s getter",
                         type_name(st->opt->type), type_name(t1));
                bug(section, name, what);
        }
        if (!st->resolved)
                bug(section, name, "read before nst_config_resolve()");
        return st;
}

const char *nst_config_get_string(const struct nst_config *cfg, const char *section,
                                  const char *name) {
        return lookup(cfg, section, name, NST_OPT_STRING, NST_OPT_ENUM)->s;
}

int64_t nst_config_get_int(const struct nst_config *cfg, const char *section, const char *name) {
        return lookup(cfg, section, name, NST_OPT_INT, NST_OPT_INT)->i;
}

double nst_config_get_float(const struct nst_config *cfg, const char *section, const char *name) {
        return lookup(cfg, section, name, NST_OPT_FLOAT, NST_OPT_FLOAT)->f;
}

bool nst_config_get_bool(const struct nst_config *cfg, const char *section, const char *name) {
        return lookup(cfg, section, name, NST_OPT_BOOL, NST_OPT_BOOL)->b;
}

const char *const *nst_config_get_list(const struct nst_config *cfg, const char *section,
                                       const char *name, size_t *ret_n) {
        const struct opt_state *st = lookup(cfg, section, name, NST_OPT_LIST, NST_OPT_MULTI);
        if (ret_n)
                *ret_n = st->n;
        return (const char *const *)st->list;
}

const char *const *nst_config_get_origins(const struct nst_config *cfg, const char *section,
                                          const char *name) {
        static const char *const none[] = {NULL};
        const struct opt_state *st = lookup(cfg, section, name, NST_OPT_MULTI, NST_OPT_MULTI);
        return st->origins ? (const char *const *)st->origins : none;
}

/* ---- Sample file ---- */

/* Help and defaults are single-line by contract; a stray newline must not
 * turn the rest of the text into an uncommented (parsed) line. */
static void put_commented(FILE *out, const char *s) {
        for (; *s; s++) {
                if (*s == '\n')
                        fputs("\n#    ", out);
                else
                        fputc(*s, out);
        }
}

static void put_type(FILE *out, const struct nst_option *o) {
        switch (o->type) {
        case NST_OPT_INT:
        case NST_OPT_FLOAT:
                fputs(type_name(o->type), out);
                if (has_bounds(o))
                        fprintf(out, o->type == NST_OPT_INT ? " in [%.0f, %.0f]" : " in [%g, %g]",
                                o->min, o->max);
                break;
        case NST_OPT_ENUM:
                fputs("one of ", out);
                for (size_t i = 0; o->choices[i]; i++)
                        fprintf(out, "%s%s", i ? "|" : "", o->choices[i]);
                break;
        default:
                fputs(type_name(o->type), out);
                break;
        }
}

int nst_config_write_sample(const struct nst_config *cfg, FILE *out) {
        for (size_t r = 0; r < cfg->n_reg_sections; r++) {
                size_t s = cfg->reg_sections[r];
                fprintf(out, "[%s]\n\n", cfg->sections[s].reg_name);
                for (size_t i = 0; i < cfg->n_opts; i++) {
                        const struct opt_state *st = cfg->opts[i];
                        const struct nst_option *o = st->opt;
                        if (cfg->items[st->item].section != s)
                                continue;
                        fputs("#", out);
                        if (o->help) {
                                fputc(' ', out);
                                put_commented(out, o->help);
                        }
                        fputs(" (", out);
                        put_type(out, o);
                        if (o->default_value) {
                                fputs(", default: ", out);
                                put_commented(out, o->default_value);
                        } else {
                                fputs(", no default", out);
                        }
                        fprintf(out, ")\n#%s = ", o->name);
                        if (o->default_value)
                                put_commented(out, o->default_value);
                        fputs("\n\n", out);
                }
        }
        if (fflush(out) != 0 || ferror(out))
                return -EIO;
        return 0;
}
