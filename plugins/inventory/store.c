/* The inventory's versioned object store (store.h).
 *
 * Layout. A store has a handful of types. A type keeps its objects twice:
 * in a chained hash by id (put, remove and the change feed find an object
 * in O(1)) and in an array of pointers sorted by id (queries page by id: a
 * marker is the last id returned, and the next page starts at the first id
 * after it, whether or not that id still exists). The sorted array costs a
 * memmove per create or delete, a few microseconds for thousands of objects.
 *
 * Change log. Every version has exactly one log entry (type, id, op, and for
 * an update the names of the properties that changed), kept in a ring whose
 * oldest entry is dropped when it is full. Because versions and entries are
 * in step, the entry of version v sits at a computed position, and the
 * oldest `since` still answerable is version - entries. changes() walks only
 * the entries after `since`, groups them by object in a scratch hash, and
 * reads current properties from the objects: O(changes), not O(objects).
 *
 * Versions across restarts: see store.h. The state file is JSON,
 * {"version_reserved": N}, replaced atomically. */
#include "plugins/inventory/store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/fnv.h"
#include "messages/ids.h"
#include "messages/json_util.h"
#include "messages/util.h"

#define STATE_FILE_MAX 4096
#define STATE_KEY "version_reserved"
#define FILTER_VALUES_MAX 1000
#define HASH_HEX 16             /* marker prefix: the query hash */
#define LIST_MAX 400            /* bytes of names listed in an error message */

enum op { OP_CREATED, OP_UPDATED, OP_DELETED };

static const char *const op_names[] = {"created", "updated", "deleted"};

struct field {
        char *name;
        enum nst_store_kind kind;
};

struct obj {
        char *id;
        uint32_t hash;
        json_object *props;
        struct obj *next;               /* hash chain */
};

struct stype {
        char *name;
        struct field *fields;           /* sorted by name */
        size_t n_fields;
        struct obj **by_id;             /* sorted by id */
        size_t n, cap;
        struct obj **buckets;
        size_t n_buckets;               /* a power of two */
};

struct change {
        uint64_t version;
        struct stype *type;
        uint32_t hash;                  /* of the id */
        uint8_t op;
        uint32_t n_names;
        char *buf;                      /* the id, then n_names names, each NUL-terminated */
};

struct nst_store {
        char *state_path;               /* NULL: in memory */
        uint64_t version;
        uint64_t reserved;              /* versions up to this one may be handed out */
        uint64_t block;
        char epoch[NST_STORE_EPOCH_LEN + 1];
        struct stype **types;
        size_t n_types;
        struct change *log;             /* ring */
        size_t log_start, log_count, log_alloc, log_cap;
        uint64_t floor;                 /* the lowest `since` the log answers whole */
};

/* ---- small helpers ---- */

static int oom(struct nst_error *err, const char *what) {
        return nst_error_set(err, -ENOMEM, "MemoryError", "inventory store: out of memory (%s)",
                             what);
}

static uint32_t hash_id(const char *s) {
        uint32_t h = 2166136261u;
        for (; *s; s++)
                h = (h ^ (uint8_t)*s) * 16777619u;
        return h;
}

/* A finalizer, so that sums of hashes (order-independent sets) still mix. */
static uint64_t mix64(uint64_t h) {
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 33;
        h *= 0xc4ceb9fe1a85ec53ull;
        h ^= h >> 33;
        return h;
}

static int grow(void **a, size_t *cap, size_t need, size_t elem) {
        if (need <= *cap)
                return 0;
        size_t c = *cap ? *cap : 16;
        while (c < need)
                c *= 2;
        void *p = realloc(*a, c * elem);
        if (!p)
                return -ENOMEM;
        *a = p;
        *cap = c;
        return 0;
}

static const char *json_kind(json_object *v) {
        return v ? json_type_to_name(json_object_get_type(v)) : "null";
}

/* Adds v to an object or array, taking it; a NULL v is a failed allocation. */
static int jadd(json_object *o, const char *key, json_object *v) {
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int jappend(json_object *a, json_object *v) {
        if (!v || json_object_array_add(a, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

/* Adds an independent copy of v (which may be JSON null) under key. */
static int jadd_copy(json_object *o, const char *key, json_object *v) {
        json_object *copy = NULL;
        if (v && json_object_deep_copy(v, &copy, NULL) < 0)
                return -ENOMEM;
        if (json_object_object_add(o, key, copy) < 0) {
                json_object_put(copy);
                return -ENOMEM;
        }
        return 0;
}

static json_object *jversion(uint64_t v) {
        return json_object_new_int64((int64_t)v);
}

const char *nst_store_kind_name(enum nst_store_kind kind) {
        static const char *const names[] = {"string", "int", "bool", "float", "object", "array"};
        return (unsigned)kind < NST_ARRAY_SIZE(names) ? names[kind] : "unknown";
}

static bool kind_valid(enum nst_store_kind kind) {
        return (unsigned)kind <= NST_STORE_ARRAY;
}

/* null is every kind's "unknown". */
static bool kind_matches(enum nst_store_kind kind, json_object *v) {
        if (!v)
                return true;
        switch (kind) {
        case NST_STORE_STRING:
                return json_object_is_type(v, json_type_string);
        case NST_STORE_INT:
                return json_object_is_type(v, json_type_int);
        case NST_STORE_BOOL:
                return json_object_is_type(v, json_type_boolean);
        case NST_STORE_FLOAT:
                return json_object_is_type(v, json_type_int) ||
                       json_object_is_type(v, json_type_double);
        case NST_STORE_OBJECT:
                return json_object_is_type(v, json_type_object);
        case NST_STORE_ARRAY:
                return json_object_is_type(v, json_type_array);
        }
        return false;
}

static bool kind_filterable(enum nst_store_kind kind) {
        return kind == NST_STORE_STRING || kind == NST_STORE_INT || kind == NST_STORE_BOOL ||
               kind == NST_STORE_FLOAT;
}

/* Appends ", name" to a list of names for a message (buf starts empty);
 * a list that does not fit ends with "...". */
static void list_add(char *buf, size_t size, const char *name) {
        size_t len = strlen(buf);
        if (len + 4 >= size)
                return;
        int w = snprintf(buf + len, size - len, "%s%s", len ? ", " : "", name);
        if (w < 0 || (size_t)w >= size - len)
                snprintf(buf + size - 4, 4, "...");
}

static int check_name(const char *what, const char *name, struct nst_error *err) {
        if (!name || !*name)
                return nst_error_set(err, -EINVAL, "InvalidInput", "%s name must not be empty",
                                     what);
        if (strlen(name) > NST_STORE_NAME_MAX)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s name '%.40s...' is longer than %d bytes", what, name,
                                     NST_STORE_NAME_MAX);
        return 0;
}

static int check_id(const struct stype *t, const char *id, struct nst_error *err) {
        if (!id)
                return nst_error_set(err, -EINVAL, "InvalidInput", "%s id must be a string",
                                     t->name);
        size_t len = strlen(id);
        if (len == 0)
                return nst_error_set(err, -EINVAL, "InvalidInput", "%s id must not be empty",
                                     t->name);
        if (len > NST_STORE_ID_MAX)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s id '%.40s...' is %zu bytes long, more than %d", t->name,
                                     id, len, NST_STORE_ID_MAX);
        return 0;
}

/* ---- types and fields ---- */

static struct stype *find_type(const struct nst_store *s, const char *name) {
        for (size_t i = 0; i < s->n_types; i++)
                if (strcmp(s->types[i]->name, name) == 0)
                        return s->types[i];
        return NULL;
}

static int get_type(const struct nst_store *s, const char *name, struct stype **ret,
                    struct nst_error *err) {
        if (!name)
                return nst_error_set(err, -EINVAL, "InvalidInput", "type must be a string");
        struct stype *t = find_type(s, name);
        if (!t) {
                char list[LIST_MAX] = "";
                for (size_t i = 0; i < s->n_types; i++)
                        list_add(list, sizeof(list), s->types[i]->name);
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "unknown type '%.64s' (known types: %s)", name,
                                     list[0] ? list : "none");
        }
        *ret = t;
        return 0;
}

static int field_cmp(const void *a, const void *b) {
        return strcmp(((const struct field *)a)->name, ((const struct field *)b)->name);
}

static const struct field *find_field(const struct stype *t, const char *name) {
        struct field key = {.name = (char *)name};
        return bsearch(&key, t->fields, t->n_fields, sizeof(key), field_cmp);
}

static int unknown_field(const struct stype *t, const char *what, const char *name,
                         struct nst_error *err) {
        char list[LIST_MAX] = "id";
        for (size_t i = 0; i < t->n_fields; i++)
                list_add(list, sizeof(list), t->fields[i].name);
        return nst_error_set(err, -EINVAL, "InvalidInput",
                             "%s: type %s has no field '%.64s' (fields: %s)", what, t->name, name,
                             list);
}

static void obj_free(struct obj *o) {
        if (!o)
                return;
        json_object_put(o->props);
        free(o->id);
        free(o);
}

static void stype_free(struct stype *t) {
        if (!t)
                return;
        for (size_t i = 0; i < t->n; i++)
                obj_free(t->by_id[i]);
        for (size_t i = 0; i < t->n_fields; i++)
                free(t->fields[i].name);
        free(t->fields);
        free(t->by_id);
        free(t->buckets);
        free(t->name);
        free(t);
}
NST_DEFINE_CLEANUP(struct stype, stype_free)

/* Checks the new fields of a definition against each other and the type. */
static int check_fields(const struct stype *t, const char *type,
                        const struct nst_store_field *fields, size_t n, struct nst_error *err) {
        for (size_t i = 0; i < n; i++) {
                int r = check_name("field", fields[i].name, err);
                if (r < 0) {
                        (void)nst_error_prefix(err, "type %s", type);
                        return r;
                }
                if (strcmp(fields[i].name, "id") == 0)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "type %s: field name 'id' is reserved", type);
                if (!kind_valid(fields[i].kind))
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "type %s: field %s has an unknown kind %d", type,
                                             fields[i].name, (int)fields[i].kind);
                for (size_t j = 0; j < i; j++)
                        if (strcmp(fields[i].name, fields[j].name) == 0)
                                return nst_error_set(err, -EINVAL, "InvalidInput",
                                                     "type %s: field %s declared twice", type,
                                                     fields[i].name);
                const struct field *old = t ? find_field(t, fields[i].name) : NULL;
                if (old && old->kind != fields[i].kind)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "type %s: field %s is already declared as %s, not %s",
                                             type, fields[i].name, nst_store_kind_name(old->kind),
                                             nst_store_kind_name(fields[i].kind));
        }
        return 0;
}

static int add_fields(struct stype *t, const struct nst_store_field *fields, size_t n) {
        struct field *all = realloc(t->fields, (t->n_fields + n + 1) * sizeof(*all));
        if (!all)
                return -ENOMEM;
        t->fields = all;
        size_t added = 0;
        int r = 0;
        for (size_t i = 0; i < n; i++) {
                if (find_field(t, fields[i].name))
                        continue;
                char *name = strdup(fields[i].name);
                if (!name) {
                        r = -ENOMEM;
                        break;
                }
                /* Appended past n_fields, so the sorted lookup above still works. */
                all[t->n_fields + added++] = (struct field){.name = name, .kind = fields[i].kind};
        }
        t->n_fields += added;
        qsort(t->fields, t->n_fields, sizeof(*t->fields), field_cmp);
        return r;
}

int nst_store_define(struct nst_store *s, const char *type, const struct nst_store_field *fields,
                     size_t n, struct nst_error *err) {
        int r = check_name("type", type, err);
        if (r < 0)
                return r;
        if (n && !fields)
                return nst_error_set(err, -EINVAL, "InvalidInput", "type %s: no fields given",
                                     type);
        struct stype *t = find_type(s, type);
        r = check_fields(t, type, fields, n, err);
        if (r < 0)
                return r;
        if (t)
                return add_fields(t, fields, n) < 0 ? oom(err, "define") : 0;

        _cleanup_(stype_freep) struct stype *nt = calloc(1, sizeof(*nt));
        if (!nt || !(nt->name = strdup(type)))
                return oom(err, "define");
        nt->n_buckets = 64;
        nt->buckets = calloc(nt->n_buckets, sizeof(*nt->buckets));
        struct stype **types = realloc(s->types, (s->n_types + 1) * sizeof(*types));
        if (types)
                s->types = types;
        if (!nt->buckets || !types || add_fields(nt, fields, n) < 0)
                return oom(err, "define");
        s->types[s->n_types++] = nst_steal(&nt);
        return 0;
}

/* ---- objects: hash and sorted array ---- */

static struct obj *lookup(const struct stype *t, const char *id, uint32_t hash) {
        for (struct obj *o = t->buckets[hash & (t->n_buckets - 1)]; o; o = o->next)
                if (o->hash == hash && strcmp(o->id, id) == 0)
                        return o;
        return NULL;
}

/* The position of the first object whose id is greater than id (after) or
 * not less than id (!after). */
static size_t position(const struct stype *t, const char *id, bool after) {
        size_t lo = 0, hi = t->n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(t->by_id[mid]->id, id);
                if (c < 0 || (after && c == 0))
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* Makes room for one more object, so that linking it cannot fail. */
static int reserve_object(struct stype *t) {
        if (grow((void **)&t->by_id, &t->cap, t->n + 1, sizeof(*t->by_id)) < 0)
                return -ENOMEM;
        if (t->n + 1 <= t->n_buckets)
                return 0;
        size_t nb = t->n_buckets * 2;
        struct obj **b = calloc(nb, sizeof(*b));
        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < t->n_buckets; i++)
                for (struct obj *o = t->buckets[i], *next; o; o = next) {
                        next = o->next;
                        o->next = b[o->hash & (nb - 1)];
                        b[o->hash & (nb - 1)] = o;
                }
        free(t->buckets);
        t->buckets = b;
        t->n_buckets = nb;
        return 0;
}

static void link_object(struct stype *t, struct obj *o) {
        struct obj **head = &t->buckets[o->hash & (t->n_buckets - 1)];
        o->next = *head;
        *head = o;
        size_t pos = position(t, o->id, false);
        memmove(t->by_id + pos + 1, t->by_id + pos, (t->n - pos) * sizeof(*t->by_id));
        t->by_id[pos] = o;
        t->n++;
}

static void unlink_object(struct stype *t, struct obj *o) {
        for (struct obj **p = &t->buckets[o->hash & (t->n_buckets - 1)]; *p; p = &(*p)->next)
                if (*p == o) {
                        *p = o->next;
                        break;
                }
        size_t pos = position(t, o->id, false);
        memmove(t->by_id + pos, t->by_id + pos + 1, (t->n - pos - 1) * sizeof(*t->by_id));
        t->n--;
}

/* ---- the state file ---- */

static int state_error(const char *path, const char *what, int e, struct nst_error *err) {
        return nst_error_set(err, -e, "StateFileError", "inventory state file %s: %s: %s", path,
                             what, strerror(e));
}

static int state_corrupt(const char *path, const char *why, struct nst_error *err) {
        return nst_error_set(err, -EBADMSG, "StateFileError",
                             "inventory state file %s is corrupt (%s); it must hold {\"" STATE_KEY
                             "\": N}: restore it, or remove it to restart versions from 0 "
                             "(every client then needs a full snapshot)",
                             path, why);
}

/* The reserved mark in path, 0 when the file does not exist. */
static int state_read(const char *path, uint64_t *ret, struct nst_error *err) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT) {
                        *ret = 0;
                        return 0;
                }
                return state_error(path, "cannot open", errno, err);
        }
        char buf[STATE_FILE_MAX];
        size_t len = 0;
        for (;;) {
                ssize_t k = read(fd, buf + len, sizeof(buf) - len);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return state_error(path, "cannot read", errno, err);
                if (k == 0)
                        break;
                len += (size_t)k;
                if (len == sizeof(buf))
                        return state_corrupt(path, "larger than 4 KiB", err);
        }
        struct nst_error jerr = NST_ERROR_INIT;
        _cleanup_json_ json_object *j = NULL;
        if (nst_json_parse(buf, len, &j, &jerr) < 0)
                return state_corrupt(path, jerr.message, err);
        json_object *mark;
        if (!json_object_is_type(j, json_type_object) ||
            !json_object_object_get_ex(j, STATE_KEY, &mark) ||
            !json_object_is_type(mark, json_type_int) || json_object_get_int64(mark) < 0)
                return state_corrupt(path, "no non-negative integer " STATE_KEY, err);
        *ret = (uint64_t)json_object_get_int64(mark);
        return 0;
}

static int write_all(int fd, const char *buf, size_t len) {
        while (len > 0) {
                ssize_t k = write(fd, buf, len);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                buf += k;
                len -= (size_t)k;
        }
        return 0;
}

static int fsync_parent(const char *path) {
        _cleanup_free_ char *dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        char *slash = strrchr(dir, '/');
        if (!slash)
                strcpy(dir, ".");
        else if (slash == dir)
                dir[1] = '\0';
        else
                *slash = '\0';
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
                return -errno;
        return 0;
}

/* Replaces the file atomically: a crash leaves the old mark or the new one. */
static int state_write(const char *path, uint64_t mark, struct nst_error *err) {
        _cleanup_free_ char *tmp = NULL;
        if (asprintf(&tmp, "%s.tmp", path) < 0)
                return oom(err, "state file");
        char buf[64];
        int len = snprintf(buf, sizeof(buf), "{\"" STATE_KEY "\": %" PRIu64 "}\n", mark);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return state_error(path, "cannot create a temporary file", errno, err);
        int r = write_all(fd, buf, (size_t)len);
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                (void)unlink(tmp);
                return state_error(path, "cannot write", -r, err);
        }
        r = fsync_parent(path);
        if (r < 0)
                return state_error(path, "cannot sync its directory", -r, err);
        return 0;
}

/* Makes sure n more versions may be handed out; a disk write only when the
 * reserved block is used up. */
static int reserve_versions(struct nst_store *s, uint64_t n, struct nst_error *err) {
        if (s->version + n <= s->reserved)
                return 0;
        uint64_t mark = s->version + n + s->block;
        int r = state_write(s->state_path, mark, err);
        if (r < 0)
                return r;
        s->reserved = mark;
        return 0;
}

/* ---- the change log ---- */

static uint64_t oldest(const struct nst_store *s) {
        return s->version - s->log_count;
}

/* The i-th entry from the oldest. */
static struct change *log_at(const struct nst_store *s, size_t i) {
        return &s->log[(s->log_start + i) % s->log_alloc];
}

/* Makes room for one more entry, so that appending cannot fail. The ring
 * grows until its capacity and wraps only then, so it never moves wrapped. */
static int log_reserve(struct nst_store *s) {
        if (s->log_count < s->log_alloc || s->log_alloc == s->log_cap)
                return 0;
        size_t alloc = s->log_alloc ? s->log_alloc * 2 : 256;
        if (alloc > s->log_cap)
                alloc = s->log_cap;
        struct change *log = realloc(s->log, alloc * sizeof(*log));
        if (!log)
                return -ENOMEM;
        s->log = log;
        s->log_alloc = alloc;
        return 0;
}

/* Takes the next version: the caller reserved it and the log room. */
static void log_append(struct nst_store *s, struct stype *t, uint32_t hash, enum op op,
                       uint32_t n_names, char *buf) {
        struct change c = {.version = ++s->version, .type = t, .hash = hash, .op = op,
                           .n_names = n_names, .buf = buf};
        if (s->log_count < s->log_alloc) {
                *log_at(s, s->log_count++) = c;
                return;
        }
        struct change *dropped = log_at(s, 0);
        s->floor = dropped->version; /* changes after it are still all kept */
        free(dropped->buf);
        *dropped = c;
        s->log_start = (s->log_start + 1) % s->log_alloc;
}

/* id then names, each NUL-terminated, in one allocation. */
static char *change_buf(const char *id, const char *const *names, size_t n) {
        size_t len = strlen(id) + 1;
        for (size_t i = 0; i < n; i++)
                len += strlen(names[i]) + 1;
        char *buf = malloc(len), *p = buf;
        if (!buf)
                return NULL;
        p = stpcpy(p, id) + 1;
        for (size_t i = 0; i < n; i++)
                p = stpcpy(p, names[i]) + 1;
        return buf;
}

/* ---- put, remove, sync ---- */

static int check_props(const struct stype *t, const char *id, json_object *props,
                       struct nst_error *err) {
        if (!json_object_is_type(props, json_type_object))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s %s: properties must be a JSON object, not %s", t->name,
                                     id, json_kind(props));
        json_object_object_foreach(props, key, val) {
                if (strcmp(key, "id") == 0) {
                        if (!json_object_is_type(val, json_type_string))
                                return nst_error_set(err, -EINVAL, "InvalidInput",
                                                     "%s %s: property id must be a string, not %s",
                                                     t->name, id, json_kind(val));
                        if (strcmp(json_object_get_string(val), id) != 0)
                                return nst_error_set(err, -EINVAL, "InvalidInput",
                                                     "%s %s: property id '%.64s' does not match "
                                                     "the object id", t->name, id,
                                                     json_object_get_string(val));
                        continue;
                }
                const struct field *f = find_field(t, key);
                if (f && !kind_matches(f->kind, val))
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "%s %s: property %s must be %s (or null), not %s",
                                             t->name, id, key, nst_store_kind_name(f->kind),
                                             json_kind(val));
        }
        return 0;
}

/* The names of the top-level properties that differ between a and b. */
static int diff_props(json_object *a, json_object *b, const char ***ret, size_t *ret_n) {
        size_t n = 0, cap = 0;
        const char **names = NULL;
        json_object_object_foreach(b, key, val) {
                json_object *old;
                if (json_object_object_get_ex(a, key, &old) && json_object_equal(old, val))
                        continue;
                if (grow((void **)&names, &cap, n + 1, sizeof(*names)) < 0)
                        goto fail;
                names[n++] = key;
        }
        json_object_object_foreach(a, akey, aval) {
                (void)aval;
                if (json_object_object_get_ex(b, akey, NULL))
                        continue;
                if (grow((void **)&names, &cap, n + 1, sizeof(*names)) < 0)
                        goto fail;
                names[n++] = akey;
        }
        *ret = names;
        *ret_n = n;
        return 0;
fail:
        free(names);
        return -ENOMEM;
}

/* Puts checked properties (taken). */
static int apply_put(struct nst_store *s, struct stype *t, const char *id, json_object *props,
                     bool *ret_changed, struct nst_error *err) {
        _cleanup_json_ json_object *p = props;
        /* id may be that very property's string (a sync array item): keep it alive. */
        _cleanup_json_ json_object *id_prop = NULL;
        if (json_object_object_get_ex(p, "id", &id_prop)) {
                json_object_get(id_prop);
                json_object_object_del(p, "id");
        }
        uint32_t hash = hash_id(id);
        struct obj *o = lookup(t, id, hash);
        _cleanup_free_ const char **names = NULL;
        size_t n_names = 0;

        if (o) {
                if (diff_props(o->props, p, &names, &n_names) < 0)
                        return oom(err, "put");
                if (n_names == 0) {
                        if (ret_changed)
                                *ret_changed = false;
                        return 0;
                }
        }
        int r = reserve_versions(s, 1, err);
        if (r < 0)
                return r;
        if (log_reserve(s) < 0 || (!o && reserve_object(t) < 0))
                return oom(err, "put");
        _cleanup_free_ char *buf = change_buf(id, names, n_names);
        if (!buf)
                return oom(err, "put");

        if (o) {
                json_object_put(o->props);
                o->props = nst_steal(&p);
                log_append(s, t, hash, OP_UPDATED, (uint32_t)n_names, nst_steal(&buf));
        } else {
                _cleanup_free_ struct obj *no = calloc(1, sizeof(*no));
                if (!no || !(no->id = strdup(id)))
                        return oom(err, "put");
                no->hash = hash;
                no->props = nst_steal(&p);
                link_object(t, nst_steal(&no));
                log_append(s, t, hash, OP_CREATED, 0, nst_steal(&buf));
        }
        if (ret_changed)
                *ret_changed = true;
        return 0;
}

int nst_store_put(struct nst_store *s, const char *type, const char *id, json_object *props,
                  bool *ret_changed, struct nst_error *err) {
        _cleanup_json_ json_object *p = props;
        struct stype *t = NULL;
        int r = get_type(s, type, &t, err);
        if (r < 0)
                return r;
        r = check_id(t, id, err);
        if (r < 0)
                return r;
        r = check_props(t, id, p, err);
        if (r < 0)
                return r;
        return apply_put(s, t, id, nst_steal(&p), ret_changed, err);
}

static int apply_remove(struct nst_store *s, struct stype *t, struct obj *o,
                        struct nst_error *err) {
        int r = reserve_versions(s, 1, err);
        if (r < 0)
                return r;
        if (log_reserve(s) < 0)
                return oom(err, "remove");
        char *buf = change_buf(o->id, NULL, 0);
        if (!buf)
                return oom(err, "remove");
        unlink_object(t, o);
        log_append(s, t, o->hash, OP_DELETED, 0, buf);
        obj_free(o);
        return 0;
}

int nst_store_remove(struct nst_store *s, const char *type, const char *id,
                     struct nst_error *err) {
        struct stype *t = NULL;
        int r = get_type(s, type, &t, err);
        if (r < 0)
                return r;
        r = check_id(t, id, err);
        if (r < 0)
                return r;
        struct obj *o = lookup(t, id, hash_id(id));
        if (!o)
                return nst_error_set(err, -ENOENT, "ObjectNotFound", "%s %s: no such object",
                                     t->name, id);
        return apply_remove(s, t, o, err);
}

struct sync_item {
        const char *id;
        json_object *props;             /* borrowed from the sync input */
};

static int sync_item_cmp(const void *a, const void *b) {
        return strcmp(((const struct sync_item *)a)->id, ((const struct sync_item *)b)->id);
}

/* The (id, props) pairs of a sync input, checked and sorted by id. */
static int sync_items(const struct stype *t, json_object *objects, struct sync_item **ret,
                      size_t *ret_n, struct nst_error *err) {
        bool is_array = json_object_is_type(objects, json_type_array);
        if (!is_array && !json_object_is_type(objects, json_type_object))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "sync of %s: objects must be a JSON object {id: properties} "
                                     "or an array of objects with an id, not %s",
                                     t->name, json_kind(objects));
        size_t n = is_array ? json_object_array_length(objects)
                            : (size_t)json_object_object_length(objects);
        _cleanup_free_ struct sync_item *items = calloc(n ? n : 1, sizeof(*items));
        if (!items)
                return oom(err, "sync");
        if (is_array) {
                for (size_t i = 0; i < n; i++) {
                        json_object *e = json_object_array_get_idx(objects, i), *id;
                        if (!json_object_is_type(e, json_type_object))
                                return nst_error_set(err, -EINVAL, "InvalidInput",
                                                     "sync of %s: objects[%zu] must be a JSON "
                                                     "object, not %s", t->name, i, json_kind(e));
                        if (!json_object_object_get_ex(e, "id", &id) ||
                            !json_object_is_type(id, json_type_string))
                                return nst_error_set(err, -EINVAL, "InvalidInput",
                                                     "sync of %s: objects[%zu]: id must be a "
                                                     "string, not %s", t->name, i,
                                                     json_kind(id));
                        items[i] = (struct sync_item){json_object_get_string(id), e};
                }
        } else {
                size_t i = 0;
                json_object_object_foreach(objects, key, val)
                        items[i++] = (struct sync_item){key, val};
        }
        for (size_t i = 0; i < n; i++) {
                int r = check_id(t, items[i].id, err);
                if (r == 0)
                        r = check_props(t, items[i].id, items[i].props, err);
                if (r < 0) {
                        (void)nst_error_prefix(err, "sync of %s", t->name);
                        return r;
                }
        }
        qsort(items, n, sizeof(*items), sync_item_cmp);
        for (size_t i = 1; i < n; i++)
                if (strcmp(items[i - 1].id, items[i].id) == 0)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "sync of %s: id %s is listed twice", t->name,
                                             items[i].id);
        *ret = nst_steal(&items);
        *ret_n = n;
        return 0;
}

/* The objects of t that items (sorted) does not list. */
static int sync_missing(const struct stype *t, const struct sync_item *items, size_t n,
                        struct obj ***ret, size_t *ret_n) {
        struct obj **gone = malloc((t->n ? t->n : 1) * sizeof(*gone));
        if (!gone)
                return -ENOMEM;
        size_t k = 0, j = 0;
        for (size_t i = 0; i < t->n; i++) {
                while (j < n && strcmp(items[j].id, t->by_id[i]->id) < 0)
                        j++;
                if (j == n || strcmp(items[j].id, t->by_id[i]->id) != 0)
                        gone[k++] = t->by_id[i];
        }
        *ret = gone;
        *ret_n = k;
        return 0;
}

int nst_store_sync(struct nst_store *s, const char *type, json_object *objects,
                   struct nst_error *err) {
        _cleanup_json_ json_object *input = objects;
        struct stype *t = NULL;
        int r = get_type(s, type, &t, err);
        if (r < 0)
                return r;
        _cleanup_free_ struct sync_item *items = NULL;
        size_t n = 0;
        r = sync_items(t, input, &items, &n, err);
        if (r < 0)
                return r;
        _cleanup_free_ struct obj **gone = NULL;
        size_t n_gone = 0;
        if (sync_missing(t, items, n, &gone, &n_gone) < 0)
                return oom(err, "sync");
        /* One state file write at most for the whole sync. */
        r = reserve_versions(s, n + n_gone, err);
        if (r < 0)
                return r;

        int changes = 0;
        for (size_t i = 0; i < n_gone; i++) {
                r = apply_remove(s, t, gone[i], err);
                if (r < 0)
                        return r;
                changes++;
        }
        for (size_t i = 0; i < n; i++) {
                bool changed;
                r = apply_put(s, t, items[i].id, json_object_get(items[i].props), &changed, err);
                if (r < 0)
                        return r;
                changes += changed;
        }
        return changes;
}

/* ---- accessors ---- */

uint64_t nst_store_version(const struct nst_store *s) {
        return s->version;
}

uint64_t nst_store_oldest(const struct nst_store *s) {
        return s->floor;
}

const char *nst_store_epoch(const struct nst_store *s) {
        return s->epoch;
}

size_t nst_store_count(const struct nst_store *s, const char *type) {
        const struct stype *t = type ? find_type(s, type) : NULL;
        return t ? t->n : 0;
}

json_object *nst_store_get(const struct nst_store *s, const char *type, const char *id) {
        const struct stype *t = type && id ? find_type(s, type) : NULL;
        const struct obj *o = t ? lookup(t, id, hash_id(id)) : NULL;
        return o ? o->props : NULL;
}

/* ---- queries ---- */

struct cond {
        const char *name;               /* "id" or a field */
        bool is_id;
        enum nst_store_kind kind;
        json_object *value;             /* a value, or an array of values */
};

struct query {
        struct stype *type;
        const struct field **fields;    /* requested, in order, without "id" */
        size_t n_fields;
        struct cond *conds;
        size_t n_conds;
        uint64_t hash;
};

static void query_done(struct query *q) {
        free(q->fields);
        free(q->conds);
}

static int query_fields(struct query *q, json_object *fields, uint64_t *h,
                        struct nst_error *err) {
        const struct stype *t = q->type;
        if (!fields) {
                *h = nst_fnv64(*h, "*", 2);
                q->fields = calloc(t->n_fields ? t->n_fields : 1, sizeof(*q->fields));
                if (!q->fields)
                        return oom(err, "query");
                for (size_t i = 0; i < t->n_fields; i++)
                        q->fields[q->n_fields++] = &t->fields[i];
                return 0;
        }
        if (!json_object_is_type(fields, json_type_array))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "fields must be an array of property names, not %s",
                                     json_kind(fields));
        size_t n = json_object_array_length(fields);
        q->fields = calloc(t->n_fields ? t->n_fields : 1, sizeof(*q->fields));
        _cleanup_free_ bool *seen = calloc(t->n_fields ? t->n_fields : 1, sizeof(*seen));
        if (!q->fields || !seen)
                return oom(err, "query");
        for (size_t i = 0; i < n; i++) {
                json_object *v = json_object_array_get_idx(fields, i);
                if (!json_object_is_type(v, json_type_string))
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "fields[%zu] must be a property name, not %s", i,
                                             json_kind(v));
                const char *name = json_object_get_string(v);
                if (strcmp(name, "id") == 0)
                        continue;
                const struct field *f = find_field(t, name);
                if (!f)
                        return unknown_field(t, "fields", name, err);
                size_t idx = (size_t)(f - t->fields);
                if (seen[idx])
                        continue;
                seen[idx] = true;
                q->fields[q->n_fields++] = f;
        }
        /* The same set in any order is the same query. */
        *h = nst_fnv64(*h, "[", 1);
        for (size_t i = 0; i < t->n_fields; i++)
                if (seen[i])
                        *h = nst_fnv64(*h, t->fields[i].name, strlen(t->fields[i].name) + 1);
        return 0;
}

static uint64_t value_hash(enum nst_store_kind kind, json_object *v) {
        uint64_t h = NST_FNV64_INIT;
        if (!v)
                return nst_fnv64(h, "n", 1);
        switch (kind) {
        case NST_STORE_STRING:
                h = nst_fnv64(h, "s", 1);
                return nst_fnv64(h, json_object_get_string(v),
                                 (size_t)json_object_get_string_len(v));
        case NST_STORE_BOOL:
                return nst_fnv64(h, json_object_get_boolean(v) ? "t" : "f", 1);
        case NST_STORE_INT: {
                int64_t i = json_object_get_int64(v);
                return nst_fnv64(nst_fnv64(h, "i", 1), &i, sizeof(i));
        }
        default: {
                double d = json_object_get_double(v);
                return nst_fnv64(nst_fnv64(h, "d", 1), &d, sizeof(d));
        }
        }
}

static int check_filter_value(const char *name, enum nst_store_kind kind, json_object *v,
                              struct nst_error *err) {
        if (kind_matches(kind, v))
                return 0;
        return nst_error_set(err, -EINVAL, "InvalidInput",
                             "filter on %s: a value must be %s (or null), not %s", name,
                             nst_store_kind_name(kind), json_kind(v));
}

static int query_filter(struct query *q, json_object *filter, uint64_t *h,
                        struct nst_error *err) {
        if (!filter)
                return 0;
        if (!json_object_is_type(filter, json_type_object))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "filter must be an object {field: value or [values]}, not %s",
                                     json_kind(filter));
        size_t n = (size_t)json_object_object_length(filter);
        q->conds = calloc(n ? n : 1, sizeof(*q->conds));
        if (!q->conds)
                return oom(err, "query");
        uint64_t sum = 0;
        json_object_object_foreach(filter, key, val) {
                struct cond c = {.name = key, .is_id = strcmp(key, "id") == 0,
                                 .kind = NST_STORE_STRING, .value = val};
                if (!c.is_id) {
                        const struct field *f = find_field(q->type, key);
                        if (!f)
                                return unknown_field(q->type, "filter", key, err);
                        if (!kind_filterable(f->kind))
                                return nst_error_set(err, -EINVAL, "InvalidInput",
                                                     "filter on %s: %s fields cannot be "
                                                     "filtered (only string, int, bool and "
                                                     "float)", key,
                                                     nst_store_kind_name(f->kind));
                        c.kind = f->kind;
                }
                /* Keys and values as sets: their order does not make another query. */
                uint64_t vh = 0;
                if (json_object_is_type(val, json_type_array)) {
                        size_t nv = json_object_array_length(val);
                        if (nv > FILTER_VALUES_MAX)
                                return nst_error_set(err, -EINVAL, "InvalidInput",
                                                     "filter on %s: %zu values, at most %d",
                                                     key, nv, FILTER_VALUES_MAX);
                        for (size_t i = 0; i < nv; i++) {
                                json_object *v = json_object_array_get_idx(val, i);
                                int r = check_filter_value(key, c.kind, v, err);
                                if (r < 0)
                                        return r;
                                vh += mix64(value_hash(c.kind, v));
                        }
                        vh = mix64(vh ^ 0x5bd1e995u);
                } else {
                        int r = check_filter_value(key, c.kind, val, err);
                        if (r < 0)
                                return r;
                        vh = value_hash(c.kind, val);
                }
                sum += mix64(nst_fnv64(vh, key, strlen(key) + 1));
                q->conds[q->n_conds++] = c;
        }
        *h = nst_fnv64(nst_fnv64(*h, "?", 1), &sum, sizeof(sum));
        return 0;
}

static bool value_equal(enum nst_store_kind kind, json_object *a, json_object *b) {
        if (!a || !b)
                return a == b;
        switch (kind) {
        case NST_STORE_STRING:
                return json_object_is_type(a, json_type_string) &&
                       json_object_is_type(b, json_type_string) &&
                       json_object_get_string_len(a) == json_object_get_string_len(b) &&
                       memcmp(json_object_get_string(a), json_object_get_string(b),
                              (size_t)json_object_get_string_len(a)) == 0;
        case NST_STORE_INT:
                return json_object_is_type(a, json_type_int) &&
                       json_object_is_type(b, json_type_int) &&
                       json_object_get_int64(a) == json_object_get_int64(b);
        case NST_STORE_BOOL:
                return json_object_is_type(a, json_type_boolean) &&
                       json_object_is_type(b, json_type_boolean) &&
                       json_object_get_boolean(a) == json_object_get_boolean(b);
        case NST_STORE_FLOAT:
                return kind_matches(kind, a) && kind_matches(kind, b) &&
                       json_object_get_double(a) == json_object_get_double(b);
        default:
                return false;
        }
}

static bool id_equal(const char *id, json_object *v) {
        return v && json_object_is_type(v, json_type_string) &&
               strcmp(id, json_object_get_string(v)) == 0;
}

static bool matches(const struct query *q, const struct obj *o) {
        for (size_t i = 0; i < q->n_conds; i++) {
                const struct cond *c = &q->conds[i];
                bool is_id = c->is_id;
                json_object *have = is_id ? NULL : json_object_object_get(o->props, c->name);
                bool is_list = json_object_is_type(c->value, json_type_array);
                size_t n = is_list ? json_object_array_length(c->value) : 1;
                bool any = false;
                for (size_t k = 0; k < n && !any; k++) {
                        json_object *want = is_list ? json_object_array_get_idx(c->value, k)
                                                    : c->value;
                        any = is_id ? id_equal(o->id, want) : value_equal(c->kind, have, want);
                }
                if (!any)
                        return false;
        }
        return true;
}

static void hex_encode(char *out, const uint8_t *in, size_t n) {
        static const char digits[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[in[i] >> 4];
                out[2 * i + 1] = digits[in[i] & 15];
        }
        out[2 * n] = '\0';
}

/* The marker: the query hash, then the last id returned, both in hex. */
static char *marker_encode(uint64_t hash, const char *id) {
        size_t len = strlen(id);
        char *m = malloc(HASH_HEX + 2 * len + 1);
        if (!m)
                return NULL;
        snprintf(m, HASH_HEX + 1, "%016" PRIx64, hash);
        hex_encode(m + HASH_HEX, (const uint8_t *)id, len);
        return m;
}

static int marker_decode(const char *marker, uint64_t hash, char id[NST_STORE_ID_MAX + 1],
                         struct nst_error *err) {
        size_t len = strlen(marker);
        bool ok = len > HASH_HEX && len <= HASH_HEX + 2 * NST_STORE_ID_MAX && len % 2 == 0;
        for (size_t i = 0; ok && i < len; i++)
                ok = nst_hex_digit(marker[i]) >= 0;
        uint64_t mh = 0;
        for (size_t i = 0; ok && i < HASH_HEX; i++)
                mh = mh << 4 | (uint64_t)nst_hex_digit(marker[i]);
        size_t n = 0;
        for (size_t i = HASH_HEX; ok && i < len; i += 2) {
                id[n] = (char)(nst_hex_digit(marker[i]) << 4 | nst_hex_digit(marker[i + 1]));
                ok = id[n++] != '\0';
        }
        if (!ok)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "malformed marker '%.80s': pass the next_marker of the "
                                     "previous page unchanged", marker);
        id[n] = '\0';
        if (mh != hash)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "marker from another query: a marker is only valid with the "
                                     "type, fields and filter of the query that returned it");
        return 0;
}

static int query_row(const struct query *q, const struct obj *o, json_object *objects) {
        json_object *row = json_object_new_object();
        if (jappend(objects, row) < 0)
                return -ENOMEM;
        if (jadd(row, "id", json_object_new_string(o->id)) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < q->n_fields; i++) {
                const char *name = q->fields[i]->name;
                if (jadd_copy(row, name, json_object_object_get(o->props, name)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static int check_limit(int64_t limit, int64_t max, int64_t def, int64_t *ret,
                       struct nst_error *err) {
        if (limit < 0 || limit > max)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "limit must be between 0 and %" PRId64 " (0: the default "
                                     "%" PRId64 "), not %" PRId64, max, def, limit);
        *ret = limit ? limit : def;
        return 0;
}

int nst_store_query(struct nst_store *s, const char *type, json_object *fields,
                    json_object *filter, int64_t limit, const char *marker, json_object **ret,
                    struct nst_error *err) {
        _cleanup_(query_done) struct query q = {0};
        int r = get_type(s, type, &q.type, err);
        if (r < 0)
                return r;
        r = check_limit(limit, NST_STORE_QUERY_LIMIT_MAX, NST_STORE_QUERY_LIMIT_DEFAULT, &limit,
                        err);
        if (r < 0)
                return r;
        uint64_t h = nst_fnv64(NST_FNV64_INIT, type, strlen(type) + 1);
        r = query_fields(&q, fields, &h, err);
        if (r < 0)
                return r;
        r = query_filter(&q, filter, &h, err);
        if (r < 0)
                return r;
        q.hash = h;

        const struct stype *t = q.type;
        size_t i = 0;
        if (marker) {
                char after[NST_STORE_ID_MAX + 1];
                r = marker_decode(marker, q.hash, after, err);
                if (r < 0)
                        return r;
                i = position(t, after, true);
        }

        _cleanup_json_ json_object *res = json_object_new_object();
        json_object *objects = json_object_new_array();
        if (!res || jadd(res, "type", json_object_new_string(t->name)) < 0 ||
            jadd(res, "version", jversion(s->version)) < 0 || jadd(res, "objects", objects) < 0)
                return oom(err, "query");
        const struct obj *last = NULL;
        bool more = false;
        for (; i < t->n; i++) {
                const struct obj *o = t->by_id[i];
                if (!matches(&q, o))
                        continue;
                if ((int64_t)json_object_array_length(objects) == limit) {
                        more = true;
                        break;
                }
                if (query_row(&q, o, objects) < 0)
                        return oom(err, "query");
                last = o;
        }
        json_object *next = NULL;
        if (more) {
                _cleanup_free_ char *m = marker_encode(q.hash, last->id);
                if (!m || !(next = json_object_new_string(m)))
                        return oom(err, "query");
        }
        if (json_object_object_add(res, "next_marker", next) < 0) {
                json_object_put(next);
                return oom(err, "query");
        }
        *ret = nst_steal(&res);
        return 0;
}

/* ---- the change feed ---- */

/* Everything one object went through in the window. */
struct group {
        const struct change *first, *last;
        bool deleted;                   /* some entry deleted it */
        const char **names;             /* union of the changed names */
        size_t n_names, cap_names;
};

struct grouping {
        struct group *groups;
        size_t n;
        uint32_t *slots;                /* index + 1 into groups, 0: empty */
        size_t n_slots;                 /* a power of two */
};

static void grouping_done(struct grouping *g) {
        for (size_t i = 0; i < g->n; i++)
                free(g->groups[i].names);
        free(g->groups);
        free(g->slots);
}

static const char *change_id(const struct change *c) {
        return c->buf;
}

static uint32_t *group_slot(struct grouping *g, const struct change *c) {
        size_t mask = g->n_slots - 1;
        for (size_t i = (c->hash ^ (uintptr_t)c->type >> 4) & mask;; i = (i + 1) & mask) {
                uint32_t k = g->slots[i];
                if (k == 0)
                        return &g->slots[i];
                const struct change *f = g->groups[k - 1].first;
                if (f->type == c->type && f->hash == c->hash &&
                    strcmp(change_id(f), change_id(c)) == 0)
                        return &g->slots[i];
        }
}

static int group_add_names(struct group *gr, const struct change *c) {
        const char *p = change_id(c) + strlen(change_id(c)) + 1;
        for (uint32_t i = 0; i < c->n_names; i++, p += strlen(p) + 1) {
                bool known = false;
                for (size_t k = 0; k < gr->n_names && !known; k++)
                        known = strcmp(gr->names[k], p) == 0;
                if (known)
                        continue;
                if (grow((void **)&gr->names, &gr->cap_names, gr->n_names + 1,
                         sizeof(*gr->names)) < 0)
                        return -ENOMEM;
                gr->names[gr->n_names++] = p;
        }
        return 0;
}

static int group_cmp(const void *a, const void *b) {
        uint64_t va = ((const struct group *)a)->last->version;
        uint64_t vb = ((const struct group *)b)->last->version;
        return va < vb ? -1 : va > vb;
}

static int change_entry(const struct group *gr, json_object *changes) {
        const struct change *c = gr->last;
        const struct obj *o = lookup(c->type, change_id(c), c->hash);
        enum op op;
        if (!o) {
                if (gr->first->op == OP_CREATED)
                        return 0;       /* born and gone within the window */
                op = OP_DELETED;
        } else {
                op = gr->first->op == OP_CREATED || gr->deleted ? OP_CREATED : OP_UPDATED;
        }
        json_object *e = json_object_new_object();
        if (jappend(changes, e) < 0 || jadd(e, "type", json_object_new_string(c->type->name)) < 0 ||
            jadd(e, "id", json_object_new_string(change_id(c))) < 0 ||
            jadd(e, "op", json_object_new_string(op_names[op])) < 0 ||
            jadd(e, "version", jversion(c->version)) < 0)
                return -ENOMEM;
        if (op == OP_DELETED)
                return 0;
        if (op == OP_CREATED) {
                json_object *props = NULL;
                if (json_object_deep_copy(o->props, &props, NULL) < 0)
                        return -ENOMEM;
                return jadd(e, "properties", props);
        }
        json_object *props = json_object_new_object();
        if (jadd(e, "properties", props) < 0)
                return -ENOMEM;
        json_object *removed = NULL;
        for (size_t i = 0; i < gr->n_names; i++) {
                json_object *v;
                if (json_object_object_get_ex(o->props, gr->names[i], &v)) {
                        if (jadd_copy(props, gr->names[i], v) < 0)
                                return -ENOMEM;
                        continue;
                }
                if (!removed && jadd(e, "removed", removed = json_object_new_array()) < 0)
                        return -ENOMEM;
                if (jappend(removed, json_object_new_string(gr->names[i])) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static int check_since(const struct nst_store *s, uint64_t since, const char *epoch,
                       struct nst_error *err) {
        if (epoch && strcmp(epoch, s->epoch) != 0)
                return nst_error_set(err, -ESTALE, "ChangesExpired",
                                     "epoch '%.40s' is not this store's (%s): the agent restarted "
                                     "or this is another node; take a full snapshot with a query",
                                     epoch, s->epoch);
        if (since > s->version)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "since %" PRIu64 " is in the future: the current version is "
                                     "%" PRIu64, since, s->version);
        if (since < s->floor)
                return nst_error_set(err, -ESTALE, "ChangesExpired",
                                     "changes since %" PRIu64 " are no longer kept (the oldest "
                                     "since accepted is %" PRIu64 "): take a full snapshot with "
                                     "a query", since, s->floor);
        return 0;
}

/* Groups the window's entries by object, until a new object would exceed
 * limit; *ret_covered is the last version consumed. */
static int group_window(const struct nst_store *s, uint64_t since, const struct stype *t,
                        size_t limit, struct grouping *g, uint64_t *ret_covered, bool *ret_more) {
        size_t window = (size_t)(s->version - since);
        size_t max_groups = window < limit ? window : limit;
        g->groups = calloc(max_groups ? max_groups : 1, sizeof(*g->groups));
        g->n_slots = 4;
        while (g->n_slots < 2 * max_groups + 2)
                g->n_slots *= 2;
        g->slots = calloc(g->n_slots, sizeof(*g->slots));
        if (!g->groups || !g->slots)
                return -ENOMEM;
        uint64_t covered = since;
        *ret_more = false;
        /* A since below oldest is complete only for a store that began empty. */
        for (size_t i = since > oldest(s) ? (size_t)(since - oldest(s)) : 0; i < s->log_count;
             i++) {
                const struct change *c = log_at(s, i);
                if (!t || c->type == t) {
                        uint32_t *slot = group_slot(g, c);
                        if (*slot == 0) {
                                if (g->n == limit) {
                                        *ret_more = true;
                                        break;
                                }
                                g->groups[g->n] = (struct group){.first = c};
                                *slot = (uint32_t)++g->n;
                        }
                        struct group *gr = &g->groups[*slot - 1];
                        gr->last = c;
                        gr->deleted |= c->op == OP_DELETED;
                        if (c->op == OP_UPDATED && group_add_names(gr, c) < 0)
                                return -ENOMEM;
                }
                covered = c->version;
        }
        *ret_covered = covered;
        return 0;
}

int nst_store_changes(struct nst_store *s, uint64_t since, const char *epoch, const char *type,
                      int64_t limit, json_object **ret, struct nst_error *err) {
        struct stype *t = NULL;
        int r;
        if (type && (r = get_type(s, type, &t, err)) < 0)
                return r;
        r = check_limit(limit, NST_STORE_CHANGES_LIMIT_MAX, NST_STORE_CHANGES_LIMIT_DEFAULT,
                        &limit, err);
        if (r < 0)
                return r;
        r = check_since(s, since, epoch, err);
        if (r < 0)
                return r;

        _cleanup_(grouping_done) struct grouping g = {0};
        uint64_t covered;
        bool more;
        if (group_window(s, since, t, (size_t)limit, &g, &covered, &more) < 0)
                return oom(err, "changes");
        qsort(g.groups, g.n, sizeof(*g.groups), group_cmp);

        _cleanup_json_ json_object *res = json_object_new_object();
        json_object *changes = json_object_new_array();
        if (!res || jadd(res, "version", jversion(covered)) < 0 ||
            jadd(res, "epoch", json_object_new_string(s->epoch)) < 0 ||
            jadd(res, "more", json_object_new_boolean(more)) < 0 ||
            jadd(res, "changes", changes) < 0)
                return oom(err, "changes");
        for (size_t i = 0; i < g.n; i++)
                if (change_entry(&g.groups[i], changes) < 0)
                        return oom(err, "changes");
        *ret = nst_steal(&res);
        return 0;
}

/* ---- snapshot ---- */

static int snapshot_type(const struct stype *t, json_object *objects) {
        json_object *byid = json_object_new_object();
        if (jadd(objects, t->name, byid) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < t->n; i++) {
                json_object *props = NULL;
                if (json_object_deep_copy(t->by_id[i]->props, &props, NULL) < 0 ||
                    jadd(byid, t->by_id[i]->id, props) < 0)
                        return -ENOMEM;
        }
        return 0;
}

int nst_store_snapshot(const struct nst_store *s, const char *type, json_object **ret,
                       struct nst_error *err) {
        struct stype *only = NULL;
        int r;
        if (type && (r = get_type(s, type, &only, err)) < 0)
                return r;
        _cleanup_json_ json_object *res = json_object_new_object();
        json_object *objects = json_object_new_object();
        if (!res || jadd(res, "version", jversion(s->version)) < 0 ||
            jadd(res, "epoch", json_object_new_string(s->epoch)) < 0 ||
            jadd(res, "objects", objects) < 0)
                return oom(err, "snapshot");
        for (size_t i = 0; i < s->n_types; i++)
                if ((!only || s->types[i] == only) && snapshot_type(s->types[i], objects) < 0)
                        return oom(err, "snapshot");
        *ret = nst_steal(&res);
        return 0;
}

/* ---- open and free ---- */

void nst_store_free(struct nst_store *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->log_count; i++)
                free(log_at(s, i)->buf);
        free(s->log);
        for (size_t i = 0; i < s->n_types; i++)
                stype_free(s->types[i]);
        free(s->types);
        free(s->state_path);
        free(s);
}
NST_DEFINE_CLEANUP(struct nst_store, nst_store_free)

int nst_store_open(const char *state_path, const struct nst_store_options *opts,
                   struct nst_store **ret, struct nst_error *err) {
        _cleanup_(nst_store_freep) struct nst_store *s = calloc(1, sizeof(*s));
        if (!s)
                return oom(err, "open");
        s->log_cap = opts && opts->change_log_size ? opts->change_log_size
                                                   : NST_STORE_CHANGE_LOG_DEFAULT;
        s->block = opts && opts->version_block ? opts->version_block
                                               : NST_STORE_VERSION_BLOCK_DEFAULT;
        nst_uuid_hex(s->epoch);
        if (!state_path) {
                s->reserved = UINT64_MAX;
                *ret = nst_steal(&s);
                return 0;
        }
        if (!*state_path)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "inventory state file path must not be empty");
        if (!(s->state_path = strdup(state_path)))
                return oom(err, "open");
        uint64_t mark;
        int r = state_read(state_path, &mark, err);
        if (r < 0)
                return r;
        /* One past anything a previous run may have handed out: its clients'
         * `since` values all fall below this store's oldest. */
        s->version = s->reserved = mark + 1;
        /* A store that never ran before holds every change since 0; after a
         * restart the previous run's changes are gone. */
        s->floor = mark ? s->version : 0;
        r = reserve_versions(s, 1, err);
        if (r < 0)
                return r;
        *ret = nst_steal(&s);
        return 0;
}
