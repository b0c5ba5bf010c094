/* Message catalog: loading (built-in English + one translation file), template
 * pre-splitting and rendering. See messages/catalog.h for the rules. */
#include "messages/catalog.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "messages/json_util.h"

#define LOCALE_MAX 32

/* A template is split once into literal runs and placeholders. A
 * placeholder's path is stored as its components separated by NULs, ready
 * for json_object_object_get_ex(). */
struct segment {
        const char *text; /* literal: text[0..len); field: first of len components */
        size_t len;
        bool field;
};

struct template {
        const char *key;        /* points into buf */
        char *buf;              /* owned: key NUL text NUL, the text split in place */
        struct segment *segs;
        size_t n_segs;
        size_t literal_len;     /* bytes of every literal run together */
};

struct table {
        struct template *items; /* sorted by key */
        size_t n;
};

struct nst_catalog {
        struct table english;
        struct table local;     /* empty when English only */
        char locale[LOCALE_MAX]; /* of `local`, or "en" */
        char *warning;
};

/* ---- template parsing ---- */

static bool path_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '.';
}

/* Checks the placeholder path text[0..len) and returns its component count,
 * or 0 with *ret_problem set. */
static size_t path_components(const char *text, size_t len, const char **ret_problem) {
        size_t n = 1;
        if (len == 0) {
                *ret_problem = "an empty placeholder '{}'";
                return 0;
        }
        if (text[0] == '.' || text[len - 1] == '.') {
                *ret_problem = "a placeholder path starting or ending with '.'";
                return 0;
        }
        for (size_t i = 0; i < len; i++) {
                if (text[i] != '.')
                        continue;
                if (text[i + 1] == '.') {
                        *ret_problem = "a placeholder path with an empty component ('..')";
                        return 0;
                }
                n++;
        }
        return n;
}

/* Splits text into segments. With out == NULL it only validates and counts;
 * otherwise out holds a copy of text, which is NUL-split in place (paths)
 * and which segs (sized by a counting pass) point into. Returns the segment
 * count, or -EINVAL with *ret_problem and *ret_offset describing the first
 * fault. */
static ssize_t split_template(const char *text, char *out, struct segment *segs,
                              size_t *ret_literal_len, const char **ret_problem,
                              size_t *ret_offset) {
        size_t n = 0, literal_len = 0, fields = 0, run = 0, i = 0;

#define EMIT_LITERAL(end)                                                              \
        do {                                                                           \
                if ((end) > run) {                                                     \
                        if (out)                                                       \
                                segs[n] = (struct segment){out + run, (end) - run,     \
                                                           false};                     \
                        n++;                                                           \
                        literal_len += (end) - run;                                    \
                }                                                                      \
        } while (0)

        while (text[i]) {
                char c = text[i];
                if ((c == '{' || c == '}') && text[i + 1] == c) {
                        /* An escaped brace: keep one, drop the other. */
                        EMIT_LITERAL(i + 1);
                        i += 2;
                        run = i;
                        continue;
                }
                if (c == '}') {
                        *ret_problem = "unbalanced braces: a '}' without its '{' (write '}}' "
                                       "for a literal brace)";
                        *ret_offset = i;
                        return -EINVAL;
                }
                if (c != '{') {
                        i++;
                        continue;
                }
                size_t j = i + 1;
                while (text[j] && path_char(text[j]))
                        j++;
                if (text[j] != '}') {
                        size_t next = j + strcspn(text + j, "{}");
                        bool closed = text[next] == '}';
                        *ret_problem = closed ? "a placeholder with a character other than "
                                                "letters, digits, '_' and '.'"
                                              : "unbalanced braces: a '{' that is never closed "
                                                "(write '{{' for a literal brace)";
                        *ret_offset = closed ? j : i;
                        return -EINVAL;
                }
                size_t comps = path_components(text + i + 1, j - i - 1, ret_problem);
                if (comps == 0) {
                        *ret_offset = i;
                        return -EINVAL;
                }
                if (++fields > NST_CATALOG_MAX_FIELDS) {
                        *ret_problem = "too many placeholders";
                        *ret_offset = i;
                        return -EINVAL;
                }
                EMIT_LITERAL(i);
                if (out) {
                        for (size_t k = i + 1; k < j; k++)
                                if (out[k] == '.')
                                        out[k] = '\0';
                        out[j] = '\0';
                        segs[n] = (struct segment){out + i + 1, comps, true};
                }
                n++;
                i = j + 1;
                run = i;
        }
        EMIT_LITERAL(i);
#undef EMIT_LITERAL
        if (n == 0) {
                *ret_problem = "an empty template";
                *ret_offset = 0;
                return -EINVAL;
        }
        *ret_literal_len = literal_len;
        return (ssize_t)n;
}

static int template_problem(const char *where, const char *key, const char *problem,
                            size_t offset, struct nst_error *err) {
        return nst_error_set(err, -EINVAL, "ConfigError", "%s%skey '%s': %s (at byte %zu)",
                             where ? where : "", where ? ": " : "", key, problem, offset);
}

int nst_catalog_check_template(const char *key, const char *text, struct nst_error *err) {
        const char *problem = NULL;
        size_t offset = 0, literal_len;
        if (split_template(text, NULL, NULL, &literal_len, &problem, &offset) < 0)
                return template_problem(NULL, key, problem, offset, err);
        return 0;
}

static void template_done(struct template *t) {
        free(t->buf);
        free(t->segs);
}

/* Compiles key/text into t. where names the source in messages. */
static int template_init(struct template *t, const char *key, const char *text,
                         const char *where, struct nst_error *err) {
        size_t key_len = strlen(key), text_len = strlen(text), literal_len;
        const char *problem = NULL;
        size_t offset = 0;

        *t = (struct template){0};
        ssize_t n = split_template(text, NULL, NULL, &literal_len, &problem, &offset);
        if (n < 0)
                return template_problem(where, key, problem, offset, err);
        t->buf = malloc(key_len + 1 + text_len + 1);
        t->segs = calloc((size_t)n, sizeof(*t->segs));
        if (!t->buf || !t->segs) {
                template_done(t);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        memcpy(t->buf, key, key_len + 1);
        char *copy = t->buf + key_len + 1;
        memcpy(copy, text, text_len + 1);
        t->key = t->buf;
        t->n_segs = (size_t)split_template(text, copy, t->segs, &t->literal_len, &problem,
                                           &offset);
        return 0;
}

static void table_done(struct table *tb) {
        for (size_t i = 0; i < tb->n; i++)
                template_done(&tb->items[i]);
        free(tb->items);
        *tb = (struct table){0};
}

static int compare_templates(const void *a, const void *b) {
        return strcmp(((const struct template *)a)->key, ((const struct template *)b)->key);
}

static const struct template *table_find(const struct table *tb, const char *key) {
        struct template probe = {.key = key};
        if (!tb->n || !key)
                return NULL;
        return bsearch(&probe, tb->items, tb->n, sizeof(*tb->items), compare_templates);
}

static int table_sort(struct table *tb, const char *where, struct nst_error *err) {
        if (tb->n)
                qsort(tb->items, tb->n, sizeof(*tb->items), compare_templates);
        for (size_t i = 1; i < tb->n; i++)
                if (strcmp(tb->items[i - 1].key, tb->items[i].key) == 0)
                        return nst_error_set(err, -EINVAL, "ConfigError", "%s: key '%s' twice",
                                             where, tb->items[i].key);
        return 0;
}

/* ---- loading ---- */

static int load_english(struct table *tb, struct nst_error *err) {
        size_t n;
        const struct nst_catalog_entry *e = nst_catalog_english(&n);
        const char *where = "built-in English catalog";

        tb->items = calloc(n ? n : 1, sizeof(*tb->items));
        if (!tb->items)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        for (; tb->n < n; tb->n++) {
                int r = template_init(&tb->items[tb->n], e[tb->n].key, e[tb->n].text, where, err);
                if (r < 0)
                        return r;
        }
        return table_sort(tb, where, err);
}

/* Reads the whole file. -ENOENT (without touching err) when it does not
 * exist, so the caller can try the next name. */
static int read_file(const char *path, char **ret, size_t *ret_len, struct nst_error *err) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;

        if (fd < 0 && errno == ENOENT)
                return -ENOENT;
        if (fd < 0 || fstat(fd, &st) < 0)
                return nst_error_set(err, -errno, "ConfigError", "message catalog %s: %s", path,
                                     strerror(errno));
        if (!S_ISREG(st.st_mode))
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "message catalog %s: not a regular file", path);
        if (st.st_size > NST_CATALOG_MAX_FILE_BYTES)
                return nst_error_set(err, -EFBIG, "ConfigError",
                                     "message catalog %s: %lld bytes, more than the %d allowed",
                                     path, (long long)st.st_size, NST_CATALOG_MAX_FILE_BYTES);
        _cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        size_t len = 0;
        while (len < (size_t)st.st_size) {
                ssize_t k = read(fd, buf + len, (size_t)st.st_size - len);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return nst_error_set(err, -errno, "ConfigError",
                                             "message catalog %s: %s", path, strerror(errno));
                if (k == 0)
                        break;
                len += (size_t)k;
        }
        buf[len] = '\0';
        *ret = nst_steal(&buf);
        *ret_len = len;
        return 0;
}

static int load_translation(struct table *tb, const char *path, const char *text, size_t len,
                            struct nst_error *err) {
        _cleanup_json_ json_object *root = NULL;
        struct nst_error jerr = NST_ERROR_INIT;

        if (!nst_utf8_valid(text, len))
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "message catalog %s: not valid UTF-8", path);
        int r = nst_json_parse(text, len, &root, &jerr);
        if (r == -ENOMEM)
                return nst_error_set(err, r, "MemoryError", "out of memory");
        if (r < 0)
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "message catalog %s: bad JSON: %s", path, jerr.message);
        if (!json_object_is_type(root, json_type_object))
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "message catalog %s: expected a JSON object mapping event "
                                     "keys to message templates",
                                     path);

        char where[PATH_MAX + 32];
        snprintf(where, sizeof(where), "message catalog %s", path);
        size_t n = (size_t)json_object_object_length(root);
        tb->items = calloc(n ? n : 1, sizeof(*tb->items));
        if (!tb->items)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        json_object_object_foreach(root, key, value) {
                if (!key[0])
                        return nst_error_set(err, -EINVAL, "ConfigError",
                                             "message catalog %s: an empty key", path);
                if (!json_object_is_type(value, json_type_string))
                        return nst_error_set(err, -EINVAL, "ConfigError",
                                             "message catalog %s: key '%s': the message "
                                             "template must be a string",
                                             path, key);
                r = template_init(&tb->items[tb->n], key, json_object_get_string(value), where,
                                  err);
                if (r < 0)
                        return r;
                tb->n++;
        }
        return table_sort(tb, where, err);
}

static bool locale_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
}

/* "fr_FR.UTF-8@euro" -> "fr_FR" in name, its language "fr" in lang.
 * *ret_english is set for locales whose text is the built-in English. Only
 * name characters are accepted, so a locale never reaches outside dir. */
static int parse_locale(const char *locale, char name[LOCALE_MAX], char lang[LOCALE_MAX],
                        bool *ret_english, struct nst_error *err) {
        size_t n = locale ? strcspn(locale, ".@") : 0;

        *ret_english = true;
        if (!locale || !locale[0])
                return 0;
        bool valid = n > 0;
        for (size_t i = 0; valid && locale[i]; i++)
                valid = locale_char(locale[i]) || (i >= n && (locale[i] == '.' ||
                                                              locale[i] == '@'));
        if (!valid)
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "locale '%.64s' is not a locale name (expected e.g. fr or "
                                     "fr_FR.UTF-8)",
                                     locale);
        if (n >= LOCALE_MAX)
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "locale '%.64s' is too long for a locale name", locale);
        memcpy(name, locale, n);
        name[n] = '\0';
        size_t l = strcspn(name, "_-");
        memcpy(lang, name, l);
        lang[l] = '\0';
        *ret_english = strcmp(name, "C") == 0 || strcmp(name, "POSIX") == 0 ||
                       strcasecmp(lang, "en") == 0;
        return 0;
}

/* Looks for <dir>/<name>.json then <dir>/<lang>.json. 0 and c->local empty
 * when neither exists (c->warning says so). */
static int load_locale(struct nst_catalog *c, const char *dir, const char *name,
                       const char *lang, struct nst_error *err) {
        const char *candidates[2] = {name, lang};
        size_t n_candidates = strcmp(name, lang) == 0 ? 1 : 2;

        for (size_t i = 0; dir && i < n_candidates; i++) {
                _cleanup_free_ char *path = NULL, *text = NULL;
                size_t len = 0;
                if (asprintf(&path, "%s/%s.json", dir, candidates[i]) < 0) {
                        path = NULL;
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                }
                int r = read_file(path, &text, &len, err);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return r;
                r = load_translation(&c->local, path, text, len, err);
                if (r < 0)
                        return r;
                snprintf(c->locale, sizeof(c->locale), "%s", candidates[i]);
                return 0;
        }
        int r = !dir ? asprintf(&c->warning,
                                "no message catalog directory for locale %s: messages are "
                                "in English",
                                name)
            : n_candidates == 2
                    ? asprintf(&c->warning,
                               "no message catalog for locale %s in %s (neither %s.json nor "
                               "%s.json): messages are in English",
                               name, dir, name, lang)
                    : asprintf(&c->warning,
                               "no message catalog for locale %s in %s (no %s.json): "
                               "messages are in English",
                               name, dir, name);
        if (r < 0) {
                c->warning = NULL;
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        return 0;
}

void nst_catalog_free(struct nst_catalog *c) {
        if (!c)
                return;
        table_done(&c->english);
        table_done(&c->local);
        free(c->warning);
        free(c);
}

int nst_catalog_load(const char *locale, const char *dir, struct nst_catalog **ret,
                     struct nst_error *err) {
        char name[LOCALE_MAX] = "", lang[LOCALE_MAX] = "";
        bool english;

        int r = parse_locale(locale, name, lang, &english, err);
        if (r < 0)
                return r;
        _cleanup_(nst_catalog_freep) struct nst_catalog *c = calloc(1, sizeof(*c));
        if (!c)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        snprintf(c->locale, sizeof(c->locale), "en");
        r = load_english(&c->english, err);
        if (r >= 0 && !english)
                r = load_locale(c, dir, name, lang, err);
        if (r < 0)
                return r;
        *ret = nst_steal(&c);
        return 0;
}

const char *nst_catalog_locale(const struct nst_catalog *c) {
        return c->locale;
}

size_t nst_catalog_count(const struct nst_catalog *c) {
        return c->local.n ? c->local.n : c->english.n;
}

const char *nst_catalog_warning(const struct nst_catalog *c) {
        return c->warning;
}

/* ---- rendering ---- */

struct value {
        const char *text;
        size_t len;
        char number[32];
};

/* A versioned object's data; anything else as is. */
static json_object *unwrap(json_object *o) {
        json_object *data;
        if (json_object_is_type(o, json_type_object) &&
            json_object_object_get_ex(o, "nova_object.data", &data) &&
            json_object_is_type(data, json_type_object))
                return data;
        return o;
}

static bool value_text(json_object *o, struct value *v) {
        int n;

        switch (json_object_get_type(o)) {
        case json_type_string:
                v->text = json_object_get_string(o);
                v->len = (size_t)json_object_get_string_len(o);
                return v->len > 0;
        case json_type_boolean:
                v->text = json_object_get_boolean(o) ? "true" : "false";
                v->len = strlen(v->text);
                return true;
        case json_type_int: {
                int64_t i = json_object_get_int64(o);
                /* json-c keeps values above INT64_MAX as unsigned. */
                n = i == INT64_MAX ? snprintf(v->number, sizeof(v->number), "%" PRIu64,
                                              json_object_get_uint64(o))
                                   : snprintf(v->number, sizeof(v->number), "%" PRId64, i);
                break;
        }
        case json_type_double: {
                double d = json_object_get_double(o);
                if (!isfinite(d))
                        return false;
                n = snprintf(v->number, sizeof(v->number), "%.15g", d);
                break;
        }
        default: /* null, object, array: nothing a reader could use */
                return false;
        }
        v->text = v->number;
        v->len = (size_t)n;
        return true;
}

static bool resolve(json_object *data, const struct segment *s, struct value *v) {
        json_object *cur = data;
        const char *component = s->text;

        for (size_t i = 0; i < s->len; i++) {
                cur = unwrap(cur);
                if (!json_object_is_type(cur, json_type_object) ||
                    !json_object_object_get_ex(cur, component, &cur))
                        return false;
                component += strlen(component) + 1;
        }
        return value_text(cur, v);
}

/* 0, -ENOENT when data cannot fill a placeholder, -ENOMEM. */
static int fill(const struct template *t, json_object *data, char **ret) {
        struct value values[NST_CATALOG_MAX_FIELDS];
        size_t n_values = 0, len = t->literal_len;

        for (size_t i = 0; i < t->n_segs; i++) {
                if (!t->segs[i].field)
                        continue;
                struct value *v = &values[n_values++];
                if (!resolve(data, &t->segs[i], v))
                        return -ENOENT;
                len += v->len;
        }
        char *out = malloc(len + 1), *p = out;
        if (!out)
                return -ENOMEM;
        n_values = 0;
        for (size_t i = 0; i < t->n_segs; i++) {
                const struct segment *s = &t->segs[i];
                const struct value *v = s->field ? &values[n_values++] : NULL;
                const char *src = v ? v->text : s->text;
                size_t n = v ? v->len : s->len;
                memcpy(p, src, n);
                p += n;
        }
        *p = '\0';
        *ret = out;
        return 0;
}

static int generic(const char *key, json_object *data, const char *host, char **ret) {
        json_object *h;
        if ((!host || !host[0]) && json_object_is_type(data, json_type_object) &&
            json_object_object_get_ex(data, "host", &h) &&
            json_object_is_type(h, json_type_string))
                host = json_object_get_string(h);
        bool have_key = key && key[0], have_host = host && host[0];
        int r = have_key && have_host ? asprintf(ret, "Event %s on host %s", key, host)
                : have_key            ? asprintf(ret, "Event %s", key)
                : have_host           ? asprintf(ret, "An event on host %s", host)
                                      : asprintf(ret, "An event");
        if (r < 0) {
                *ret = NULL;
                return -ENOMEM;
        }
        return 0;
}

int nst_catalog_render(const struct nst_catalog *c, const char *key, json_object *data,
                       const char *host, char **ret_message, const char **ret_locale) {
        const struct template *t;
        int r;

        data = unwrap(data);
        if ((t = table_find(&c->local, key))) {
                r = fill(t, data, ret_message);
                if (r != -ENOENT) {
                        if (r == 0)
                                *ret_locale = c->locale;
                        return r;
                }
        }
        if ((t = table_find(&c->english, key))) {
                r = fill(t, data, ret_message);
                if (r != -ENOENT) {
                        if (r == 0)
                                *ret_locale = "en";
                        return r;
                }
        }
        r = generic(key, data, host, ret_message);
        if (r == 0)
                *ret_locale = "en";
        return r;
}
