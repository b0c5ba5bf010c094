/* VF settings: the RTM_SETLINK bytes parsed back attribute by attribute, the
 * netlink backend against the real kernel (a missing netdev, and "lo", which
 * exists but has no VFs), the record backend's JSON lines, the [pci]
 * vf_config spec and the settings check. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <json.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "plugins/sriov/vf_config.h"

static const struct nst_vf_settings all_set = {
        .trust = 1,
        .spoofchk = 0,
        .link_state = NST_VF_LINK_ENABLE,
        .min_tx_rate = 10,
        .max_tx_rate = 100,
};

/* ---- helpers ----------------------------------------------------------- */

static void assert_error(const struct nst_error *err, const char *cls, const char *needle) {
        if (strcmp(err->cls, cls) != 0 || !strstr(err->message, needle))
                fail_msg("expected %s containing '%s', got %s '%s'", cls, needle, err->cls,
                         err->message);
}

static void assert_error_prefix(const struct nst_error *err, const char *cls, const char *prefix) {
        if (strcmp(err->cls, cls) != 0 || strncmp(err->message, prefix, strlen(prefix)) != 0)
                fail_msg("expected %s starting '%s', got %s '%s'", cls, prefix, err->cls,
                         err->message);
}

/* One decoded request: the header, the ifinfomsg and the attributes inside
 * IFLA_VFINFO_LIST/IFLA_VF_INFO (NULL when absent). */
struct decoded {
        struct nlmsghdr hdr;
        struct ifinfomsg ifi;
        size_t n_info_attrs;
        const struct nlattr *info_attrs[8];
};

/* Walks the bytes with the netlink macros, checking every length on the way:
 * exactly one VFINFO_LIST holding exactly one VF_INFO, both flagged nested,
 * and nothing after them. */
static void decode(const void *buf, size_t len, struct decoded *d) {
        const struct nlmsghdr *h = buf;
        assert_true(NLMSG_OK(h, len));
        assert_int_equal(h->nlmsg_len, len);
        d->hdr = *h;
        assert_true(h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct ifinfomsg)));
        memcpy(&d->ifi, NLMSG_DATA(h), sizeof(d->ifi));

        const struct nlattr *list = (const void *)((const char *)NLMSG_DATA(h) +
                                                    NLMSG_ALIGN(sizeof(struct ifinfomsg)));
        size_t rest = len - NLMSG_LENGTH(NLMSG_ALIGN(sizeof(struct ifinfomsg)));
        assert_true(rest >= NLA_HDRLEN);
        assert_int_equal(list->nla_type & NLA_TYPE_MASK, IFLA_VFINFO_LIST);
        assert_true(list->nla_type & NLA_F_NESTED);
        assert_int_equal(list->nla_len, rest);

        const struct nlattr *info = (const void *)((const char *)list + NLA_HDRLEN);
        assert_int_equal(info->nla_type & NLA_TYPE_MASK, IFLA_VF_INFO);
        assert_true(info->nla_type & NLA_F_NESTED);
        assert_int_equal(info->nla_len, list->nla_len - NLA_HDRLEN);

        d->n_info_attrs = 0;
        size_t off = NLA_HDRLEN;
        while (off < info->nla_len) {
                const struct nlattr *a = (const void *)((const char *)info + off);
                assert_true(a->nla_len >= NLA_HDRLEN);
                assert_true(off + NLA_ALIGN(a->nla_len) <= info->nla_len);
                assert_true(d->n_info_attrs < NST_ARRAY_SIZE(d->info_attrs));
                d->info_attrs[d->n_info_attrs++] = a;
                off += NLA_ALIGN(a->nla_len);
        }
        assert_int_equal(off, info->nla_len);
}

/* The payload of attribute i, which must have type `type` and size `size`. */
static const void *attr_payload(const struct decoded *d, size_t i, uint16_t type, size_t size) {
        assert_true(i < d->n_info_attrs);
        const struct nlattr *a = d->info_attrs[i];
        assert_int_equal(a->nla_type, type);
        assert_int_equal(a->nla_len, NLA_HDRLEN + size);
        return (const char *)a + NLA_HDRLEN;
}

static void encode_ok(int ifindex, uint32_t seq, int vf, const struct nst_vf_settings *s,
                      struct decoded *d, uint8_t *buf, size_t size) {
        ssize_t len = nst_vf_netlink_encode(ifindex, seq, vf, s, buf, size);
        assert_true(len > 0);
        decode(buf, (size_t)len, d);
        assert_int_equal(d->hdr.nlmsg_type, RTM_SETLINK);
        assert_int_equal(d->hdr.nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_int_equal(d->hdr.nlmsg_seq, seq);
        assert_int_equal(d->hdr.nlmsg_pid, 0);
        assert_int_equal(d->ifi.ifi_family, AF_UNSPEC);
        assert_int_equal(d->ifi.ifi_index, ifindex);
        assert_int_equal(d->ifi.ifi_change, 0);
}

/* ---- encoding ---------------------------------------------------------- */

static void test_encode_all_fields(void **state) {
        _Alignas(8) uint8_t buf[512];
        struct decoded d;
        encode_ok(7, 42, 3, &all_set, &d, buf, sizeof(buf));
        assert_int_equal(d.n_info_attrs, 4);

        const struct ifla_vf_trust *t = attr_payload(&d, 0, IFLA_VF_TRUST, sizeof(*t));
        assert_int_equal(t->vf, 3);
        assert_int_equal(t->setting, 1);
        const struct ifla_vf_spoofchk *c = attr_payload(&d, 1, IFLA_VF_SPOOFCHK, sizeof(*c));
        assert_int_equal(c->vf, 3);
        assert_int_equal(c->setting, 0);
        const struct ifla_vf_link_state *l = attr_payload(&d, 2, IFLA_VF_LINK_STATE, sizeof(*l));
        assert_int_equal(l->vf, 3);
        assert_int_equal(l->link_state, IFLA_VF_LINK_STATE_ENABLE);
        const struct ifla_vf_rate *r = attr_payload(&d, 3, IFLA_VF_RATE, sizeof(*r));
        assert_int_equal(r->vf, 3);
        assert_int_equal(r->min_tx_rate, 10);
        assert_int_equal(r->max_tx_rate, 100);
}

static void test_encode_only_set_fields(void **state) {
        _Alignas(8) uint8_t buf[512];
        struct decoded d;

        struct nst_vf_settings s = NST_VF_SETTINGS_UNCHANGED;
        s.spoofchk = 1;
        encode_ok(2, 1, 0, &s, &d, buf, sizeof(buf));
        assert_int_equal(d.n_info_attrs, 1);
        const struct ifla_vf_spoofchk *c = attr_payload(&d, 0, IFLA_VF_SPOOFCHK, sizeof(*c));
        assert_int_equal(c->vf, 0);
        assert_int_equal(c->setting, 1);

        s = (struct nst_vf_settings)NST_VF_SETTINGS_UNCHANGED;
        s.min_tx_rate = 0;
        s.max_tx_rate = 4000000000LL;
        encode_ok(2, 2, 255, &s, &d, buf, sizeof(buf));
        assert_int_equal(d.n_info_attrs, 1);
        const struct ifla_vf_rate *r = attr_payload(&d, 0, IFLA_VF_RATE, sizeof(*r));
        assert_int_equal(r->vf, 255);
        assert_int_equal(r->min_tx_rate, 0);
        assert_int_equal(r->max_tx_rate, 4000000000U);

        s = (struct nst_vf_settings)NST_VF_SETTINGS_UNCHANGED;
        s.link_state = NST_VF_LINK_DISABLE;
        s.trust = 0;
        encode_ok(9, 3, 12, &s, &d, buf, sizeof(buf));
        assert_int_equal(d.n_info_attrs, 2);
        const struct ifla_vf_trust *t = attr_payload(&d, 0, IFLA_VF_TRUST, sizeof(*t));
        assert_int_equal(t->vf, 12);
        assert_int_equal(t->setting, 0);
        const struct ifla_vf_link_state *l = attr_payload(&d, 1, IFLA_VF_LINK_STATE, sizeof(*l));
        assert_int_equal(l->vf, 12);
        assert_int_equal(l->link_state, IFLA_VF_LINK_STATE_DISABLE);
}

static void test_encode_reset(void **state) {
        _Alignas(8) uint8_t buf[512];
        struct decoded d;
        encode_ok(4, 5, 1, &nst_vf_settings_reset, &d, buf, sizeof(buf));
        assert_int_equal(d.n_info_attrs, 4);
        const struct ifla_vf_trust *t = attr_payload(&d, 0, IFLA_VF_TRUST, sizeof(*t));
        assert_int_equal(t->setting, 0);
        const struct ifla_vf_spoofchk *c = attr_payload(&d, 1, IFLA_VF_SPOOFCHK, sizeof(*c));
        assert_int_equal(c->setting, 1);
        const struct ifla_vf_link_state *l = attr_payload(&d, 2, IFLA_VF_LINK_STATE, sizeof(*l));
        assert_int_equal(l->link_state, IFLA_VF_LINK_STATE_AUTO);
        const struct ifla_vf_rate *r = attr_payload(&d, 3, IFLA_VF_RATE, sizeof(*r));
        assert_int_equal(r->min_tx_rate, 0);
        assert_int_equal(r->max_tx_rate, 0);
}

static void test_encode_buffer_too_small(void **state) {
        uint8_t buf[512], scratch[512];
        ssize_t len = nst_vf_netlink_encode(1, 1, 0, &all_set, buf, sizeof(buf));
        assert_true(len > 0);
        for (size_t size = 0; size < (size_t)len; size += 4)
                assert_int_equal(nst_vf_netlink_encode(1, 1, 0, &all_set, scratch, size),
                                 -ENOSPC);
        assert_int_equal(nst_vf_netlink_encode(1, 1, 0, &all_set, scratch, (size_t)len - 1),
                         -ENOSPC);

        /* Exactly enough room, and an unaligned buffer, give the same bytes. */
        uint8_t exact[512 + 1];
        assert_int_equal(nst_vf_netlink_encode(1, 1, 0, &all_set, exact + 1, (size_t)len), len);
        assert_memory_equal(exact + 1, buf, (size_t)len);
}

/* ---- netlink backend (the real kernel) --------------------------------- */

static void test_netlink_missing_netdev(void **state) {
        struct nst_vf_backend *b = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_vf_backend_netlink_new(&b, &err), 0);
        assert_string_equal(b->name, "netlink");

        assert_int_equal(b->apply(b, "nstnodev0", 3, &all_set, &err), -ENODEV);
        assert_error(&err, "VfConfigFailed", "nstnodev0");
        assert_error(&err, "VfConfigFailed", strerror(ENODEV));

        /* Nothing to change: no lookup, no I/O, so the missing netdev is fine. */
        struct nst_vf_settings none = NST_VF_SETTINGS_UNCHANGED;
        nst_error_clear(&err);
        assert_int_equal(b->apply(b, "nstnodev0", 3, &none, &err), 0);
        assert_false(nst_error_is_set(&err));
        nst_vf_backend_free(b);
}

static void test_netlink_lo_refuses(void **state) {
        if (geteuid() != 0)
                skip();
        _cleanup_(nst_vf_backend_freep) struct nst_vf_backend *b = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_vf_backend_netlink_new(&b, &err), 0);

        /* The first refusal is the error; the rest are still tried, and
         * listed. */
        int r = b->apply(b, "lo", 0, &all_set, &err);
        assert_true(r < 0);
        assert_error_prefix(&err, "VfConfigFailed", "trust on VF 0 of lo: ");
        assert_error(&err, "VfConfigFailed", strerror(-r));
        assert_true(r == -EOPNOTSUPP || r == -EINVAL || r == -ENODEV);
        const char *tail = "; also refused: spoofchk, link_state, min_tx_rate/max_tx_rate";
        size_t mlen = strlen(err.message);
        assert_true(mlen > strlen(tail));
        assert_string_equal(err.message + mlen - strlen(tail), tail);

        struct nst_vf_settings s = NST_VF_SETTINGS_UNCHANGED;
        s.min_tx_rate = 0;
        s.max_tx_rate = 10;
        nst_error_clear(&err);
        r = b->apply(b, "lo", 2, &s, &err);
        assert_true(r < 0);
        assert_error_prefix(&err, "VfConfigFailed", "min_tx_rate/max_tx_rate on VF 2 of lo: ");
        assert_null(strstr(err.message, "also refused"));

        s = (struct nst_vf_settings)NST_VF_SETTINGS_UNCHANGED;
        s.link_state = NST_VF_LINK_AUTO;
        nst_error_clear(&err);
        assert_true(b->apply(b, "lo", 1, &s, &err) < 0);
        assert_error_prefix(&err, "VfConfigFailed", "link_state on VF 1 of lo: ");
}

static void test_netlink_bad_arguments(void **state) {
        _cleanup_(nst_vf_backend_freep) struct nst_vf_backend *b = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_vf_backend_netlink_new(&b, &err), 0);

        assert_int_equal(b->apply(b, "lo", -1, &all_set, &err), -EINVAL);
        assert_error(&err, "InvalidInput", "VF number -1 of lo is negative");
        assert_int_equal(b->apply(b, "a/b", 0, &all_set, &err), -EINVAL);
        assert_error(&err, "InvalidInput", "'a/b' is not a valid interface name");
        assert_int_equal(b->apply(b, "averyveryverylongname", 0, &all_set, &err), -EINVAL);
        assert_error(&err, "InvalidInput", "is not a valid interface name");
        assert_int_equal(b->apply(b, "", 0, &all_set, &err), -EINVAL);
        assert_error(&err, "InvalidInput", "no PF netdev");
        assert_int_equal(b->apply(b, NULL, 0, &all_set, &err), -EINVAL);
        assert_error(&err, "InvalidInput", "no PF netdev");

        struct nst_vf_settings s = all_set;
        s.trust = 3;
        assert_int_equal(b->apply(b, "lo", 0, &s, &err), -EINVAL);
        assert_error(&err, "InvalidInput", "trust must be");
}

/* ---- record backend ---------------------------------------------------- */

struct tmpfile {
        char path[64];
};

static void tmpfile_make(struct tmpfile *t) {
        snprintf(t->path, sizeof(t->path), "/tmp/nst-vfrec-XXXXXX");
        int fd = mkstemp(t->path);
        assert_true(fd >= 0);
        close(fd);
}

/* Every line of path parsed as JSON; the count is returned, lines[] owned. */
static size_t read_lines(const char *path, json_object **lines, size_t max) {
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        char *line = NULL;
        size_t cap = 0, n = 0;
        ssize_t len;
        while ((len = getline(&line, &cap, f)) > 0) {
                assert_int_equal(line[len - 1], '\n');
                assert_true(n < max);
                json_tokener *tok = json_tokener_new();
                lines[n] = json_tokener_parse_ex(tok, line, (int)len - 1);
                if (!lines[n] || json_tokener_get_error(tok) != json_tokener_success)
                        fail_msg("line %zu is not JSON: %s", n, line);
                assert_int_equal(json_tokener_get_parse_end(tok), (size_t)len - 1);
                json_tokener_free(tok);
                n++;
        }
        free(line);
        fclose(f);
        return n;
}

static json_object *field(json_object *o, const char *key) {
        json_object *v = NULL;
        if (!json_object_object_get_ex(o, key, &v))
                fail_msg("no key %s in %s", key, json_object_to_json_string(o));
        return v;
}

static void assert_absent(json_object *o, const char *key) {
        if (json_object_object_get_ex(o, key, NULL))
                fail_msg("unexpected key %s in %s", key, json_object_to_json_string(o));
}

static void assert_bool_field(json_object *o, const char *key, bool value) {
        json_object *v = field(o, key);
        assert_true(json_object_is_type(v, json_type_boolean));
        assert_int_equal(json_object_get_boolean(v), value);
}

static void assert_int_field(json_object *o, const char *key, int64_t value) {
        json_object *v = field(o, key);
        assert_true(json_object_is_type(v, json_type_int));
        assert_int_equal(json_object_get_int64(v), value);
}

static void assert_string_field(json_object *o, const char *key, const char *value) {
        json_object *v = field(o, key);
        assert_true(json_object_is_type(v, json_type_string));
        assert_string_equal(json_object_get_string(v), value);
}

static void test_record_lines(void **state) {
        struct tmpfile t;
        tmpfile_make(&t);
        struct nst_vf_backend *b = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_vf_backend_record_new(t.path, &b, &err), 0);
        assert_string_equal(b->name, "record");

        struct nst_vf_settings partial = NST_VF_SETTINGS_UNCHANGED;
        partial.trust = 0;
        partial.link_state = NST_VF_LINK_DISABLE;
        struct nst_vf_settings none = NST_VF_SETTINGS_UNCHANGED;
        assert_int_equal(b->apply(b, "enp3s0f0", 3, &all_set, &err), 0);
        assert_int_equal(b->apply(b, "enp3s0f1", 0, &partial, &err), 0);
        assert_int_equal(b->apply(b, "enp3s0f0", 3, &nst_vf_settings_reset, &err), 0);
        assert_int_equal(b->apply(b, "enp3s0f0", 7, &none, &err), 0);
        /* Refused applies leave no line. */
        struct nst_vf_settings bad = all_set;
        bad.min_tx_rate = 500;
        assert_int_equal(b->apply(b, "enp3s0f0", 3, &bad, &err), -EINVAL);
        assert_error(&err, "InvalidInput", "min_tx_rate 500 Mbps is above max_tx_rate 100");
        nst_vf_backend_free(b);

        json_object *lines[8];
        assert_int_equal(read_lines(t.path, lines, 8), 4);

        assert_string_field(lines[0], "pf", "enp3s0f0");
        assert_int_field(lines[0], "vf", 3);
        assert_bool_field(lines[0], "trust", true);
        assert_bool_field(lines[0], "spoofchk", false);
        assert_string_field(lines[0], "link_state", "enable");
        assert_int_field(lines[0], "min_tx_rate", 10);
        assert_int_field(lines[0], "max_tx_rate", 100);
        assert_int_equal(json_object_object_length(lines[0]), 7);

        assert_string_field(lines[1], "pf", "enp3s0f1");
        assert_int_field(lines[1], "vf", 0);
        assert_bool_field(lines[1], "trust", false);
        assert_string_field(lines[1], "link_state", "disable");
        assert_absent(lines[1], "spoofchk");
        assert_absent(lines[1], "min_tx_rate");
        assert_absent(lines[1], "max_tx_rate");
        assert_int_equal(json_object_object_length(lines[1]), 4);

        assert_bool_field(lines[2], "trust", false);
        assert_bool_field(lines[2], "spoofchk", true);
        assert_string_field(lines[2], "link_state", "auto");
        assert_int_field(lines[2], "min_tx_rate", 0);
        assert_int_field(lines[2], "max_tx_rate", 0);

        assert_string_field(lines[3], "pf", "enp3s0f0");
        assert_int_field(lines[3], "vf", 7);
        assert_int_equal(json_object_object_length(lines[3]), 2);

        for (size_t i = 0; i < 4; i++)
                json_object_put(lines[i]);
        unlink(t.path);
}

/* Appends to what is there: a restarted agent does not lose the history. */
static void test_record_appends(void **state) {
        struct tmpfile t;
        tmpfile_make(&t);
        struct nst_error err = NST_ERROR_INIT;
        for (int round = 0; round < 2; round++) {
                _cleanup_(nst_vf_backend_freep) struct nst_vf_backend *b = NULL;
                assert_int_equal(nst_vf_backend_record_new(t.path, &b, &err), 0);
                assert_int_equal(b->apply(b, "pf0", round, &nst_vf_settings_reset, &err), 0);
        }
        json_object *lines[4];
        assert_int_equal(read_lines(t.path, lines, 4), 2);
        assert_int_field(lines[0], "vf", 0);
        assert_int_field(lines[1], "vf", 1);
        json_object_put(lines[0]);
        json_object_put(lines[1]);
        unlink(t.path);
}

#define RECORD_THREADS 4
#define RECORD_PER_THREAD 50

struct record_worker {
        struct nst_vf_backend *b;
        int id;
        int failures;
};

static void *record_worker_run(void *arg) {
        struct record_worker *w = arg;
        for (int i = 0; i < RECORD_PER_THREAD; i++) {
                struct nst_error err = NST_ERROR_INIT;
                char pf[16];
                snprintf(pf, sizeof(pf), "pf%d", w->id);
                if (w->b->apply(w->b, pf, i, &all_set, &err) < 0)
                        w->failures++;
        }
        return NULL;
}

/* Concurrent applies give whole lines, none lost or interleaved. */
static void test_record_threads(void **state) {
        struct tmpfile t;
        tmpfile_make(&t);
        _cleanup_(nst_vf_backend_freep) struct nst_vf_backend *b = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_vf_backend_record_new(t.path, &b, &err), 0);

        pthread_t threads[RECORD_THREADS];
        struct record_worker workers[RECORD_THREADS];
        for (int i = 0; i < RECORD_THREADS; i++) {
                workers[i] = (struct record_worker){.b = b, .id = i};
                assert_int_equal(pthread_create(&threads[i], NULL, record_worker_run, &workers[i]),
                                 0);
        }
        for (int i = 0; i < RECORD_THREADS; i++) {
                pthread_join(threads[i], NULL);
                assert_int_equal(workers[i].failures, 0);
        }

        enum { TOTAL = RECORD_THREADS * RECORD_PER_THREAD };
        json_object **lines = calloc(TOTAL, sizeof(*lines));
        assert_int_equal(read_lines(t.path, lines, TOTAL), TOTAL);
        int next_vf[RECORD_THREADS] = {0};
        for (size_t i = 0; i < TOTAL; i++) {
                const char *pf = json_object_get_string(field(lines[i], "pf"));
                int id = pf[2] - '0';
                assert_true(id >= 0 && id < RECORD_THREADS);
                /* Each thread's lines appear in its own order. */
                assert_int_field(lines[i], "vf", next_vf[id]++);
                json_object_put(lines[i]);
        }
        free(lines);
        unlink(t.path);
}

static void test_record_unwritable(void **state) {
        struct nst_vf_backend *b = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_vf_backend_record_new("/nonexistent-nst-dir/vf.jsonl", &b, &err),
                         -ENOENT);
        assert_null(b);
        assert_error(&err, "VfConfigFailed", "cannot open /nonexistent-nst-dir/vf.jsonl");
        assert_int_equal(nst_vf_backend_record_new("", &b, &err), -EINVAL);
        assert_error(&err, "InvalidInput", "no path");
}

/* ---- [pci] vf_config --------------------------------------------------- */

static void test_from_spec(void **state) {
        struct nst_vf_backend *b = NULL;
        struct nst_error err = NST_ERROR_INIT;

        assert_int_equal(nst_vf_backend_from_spec("netlink", &b, &err), 0);
        assert_string_equal(b->name, "netlink");
        nst_vf_backend_free(b);
        b = NULL;

        struct tmpfile t;
        tmpfile_make(&t);
        char spec[96];
        snprintf(spec, sizeof(spec), "record:%s", t.path);
        assert_int_equal(nst_vf_backend_from_spec(spec, &b, &err), 0);
        assert_string_equal(b->name, "record");
        assert_int_equal(b->apply(b, "pf0", 1, &nst_vf_settings_reset, &err), 0);
        nst_vf_backend_free(b);
        b = NULL;
        json_object *lines[2];
        assert_int_equal(read_lines(t.path, lines, 2), 1);
        assert_string_field(lines[0], "pf", "pf0");
        json_object_put(lines[0]);
        unlink(t.path);

        static const struct {
                const char *spec, *cls, *needle;
        } bad[] = {
                {"libnl", "ConfigError", "unknown backend 'libnl'"},
                {"Netlink", "ConfigError", "unknown backend 'Netlink'"},
                {"", "ConfigError", "unknown backend ''"},
                {"record", "ConfigError", "unknown backend 'record'"},
                {"record:", "ConfigError", "record path '' is not absolute"},
                {"record:vf.jsonl", "ConfigError", "record path 'vf.jsonl' is not absolute"},
                {"record:/nonexistent-nst-dir/x", "VfConfigFailed",
                 "[pci] vf_config: VF record backend: cannot open /nonexistent-nst-dir/x"},
        };
        for (size_t i = 0; i < NST_ARRAY_SIZE(bad); i++) {
                nst_error_clear(&err);
                assert_true(nst_vf_backend_from_spec(bad[i].spec, &b, &err) < 0);
                assert_null(b);
                assert_error(&err, bad[i].cls, bad[i].needle);
        }
        assert_int_equal(nst_vf_backend_from_spec(NULL, &b, &err), -EINVAL);
        assert_error(&err, "InvalidInput", "[pci] vf_config: missing");
}

/* ---- settings check ---------------------------------------------------- */

static void check_fails(struct nst_vf_settings s, const char *needle) {
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_vf_settings_check(&s, &err), -EINVAL);
        assert_error(&err, "InvalidInput", needle);
}

static void test_settings_check(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_vf_settings none = NST_VF_SETTINGS_UNCHANGED;
        assert_int_equal(nst_vf_settings_check(&none, &err), 0);
        assert_true(nst_vf_settings_empty(&none));
        assert_int_equal(nst_vf_settings_check(&nst_vf_settings_reset, &err), 0);
        assert_false(nst_vf_settings_empty(&nst_vf_settings_reset));
        assert_int_equal(nst_vf_settings_check(&all_set, &err), 0);
        assert_false(nst_error_is_set(&err));

        /* The reset is what the header promises. */
        assert_int_equal(nst_vf_settings_reset.trust, 0);
        assert_int_equal(nst_vf_settings_reset.spoofchk, 1);
        assert_int_equal(nst_vf_settings_reset.link_state, NST_VF_LINK_AUTO);
        assert_int_equal(nst_vf_settings_reset.min_tx_rate, 0);
        assert_int_equal(nst_vf_settings_reset.max_tx_rate, 0);

        /* max 0 is "no limit": any minimum fits; equal rates are fine. */
        struct nst_vf_settings s = all_set;
        s.min_tx_rate = 5000;
        s.max_tx_rate = 0;
        assert_int_equal(nst_vf_settings_check(&s, &err), 0);
        s.min_tx_rate = s.max_tx_rate = UINT32_MAX;
        assert_int_equal(nst_vf_settings_check(&s, &err), 0);

        s = all_set, s.trust = 2;
        check_fails(s, "trust must be -1 (unchanged), 0 or 1, got 2");
        s = all_set, s.spoofchk = -2;
        check_fails(s, "spoofchk must be -1 (unchanged), 0 or 1, got -2");
        s = all_set, s.link_state = 3;
        check_fails(s, "link_state must be");
        s = all_set, s.link_state = -2;
        check_fails(s, "got -2");
        s = all_set, s.min_tx_rate = -2;
        check_fails(s, "min_tx_rate must be -1 (unchanged) or 0..4294967295 Mbps, got -2");
        s = all_set, s.max_tx_rate = (int64_t)UINT32_MAX + 1;
        check_fails(s, "max_tx_rate must be");
        s = all_set, s.min_tx_rate = -1;
        check_fails(s, "max_tx_rate is set but min_tx_rate is not");
        s = all_set, s.max_tx_rate = -1;
        check_fails(s, "min_tx_rate is set but max_tx_rate is not");
        s = all_set, s.min_tx_rate = 101;
        check_fails(s, "min_tx_rate 101 Mbps is above max_tx_rate 100 Mbps");

        assert_int_equal(nst_vf_settings_check(NULL, &err), -EINVAL);
        assert_error(&err, "InvalidInput", "missing");

        assert_string_equal(nst_vf_link_state_name(NST_VF_LINK_AUTO), "auto");
        assert_string_equal(nst_vf_link_state_name(NST_VF_LINK_DISABLE), "disable");
        assert_null(nst_vf_link_state_name(NST_VF_LINK_UNCHANGED));
        assert_null(nst_vf_link_state_name(3));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_encode_all_fields),
                cmocka_unit_test(test_encode_only_set_fields),
                cmocka_unit_test(test_encode_reset),
                cmocka_unit_test(test_encode_buffer_too_small),
                cmocka_unit_test(test_netlink_missing_netdev),
                cmocka_unit_test(test_netlink_lo_refuses),
                cmocka_unit_test(test_netlink_bad_arguments),
                cmocka_unit_test(test_record_lines),
                cmocka_unit_test(test_record_appends),
                cmocka_unit_test(test_record_threads),
                cmocka_unit_test(test_record_unwritable),
                cmocka_unit_test(test_from_spec),
                cmocka_unit_test(test_settings_check),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
