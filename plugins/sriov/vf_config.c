/* VF settings through rtnetlink, or recorded to a file (see vf_config.h).
 *
 * The netlink backend opens a NETLINK_ROUTE socket per apply: applies are
 * rare (claim and release), and a private socket can never read an ACK meant
 * for another thread or left over from an earlier timeout. Each setting goes
 * in its own RTM_SETLINK because the kernel stops at the first VF attribute
 * it refuses and its errno does not say which one that was. */
#include "plugins/sriov/vf_config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "messages/json_util.h"

#define NETLINK_REPLY_TIMEOUT_S 5
#define NETLINK_REQUEST_MAX 256
/* With NETLINK_CAP_ACK an ACK is small; the rest is room for extack TLVs. */
#define NETLINK_REPLY_MAX 8192

const struct nst_vf_settings nst_vf_settings_reset = {
        .trust = 0,
        .spoofchk = 1,
        .link_state = NST_VF_LINK_AUTO,
        .min_tx_rate = 0,
        .max_tx_rate = 0,
};

static const char *const link_state_names[] = {
        [NST_VF_LINK_AUTO] = "auto",
        [NST_VF_LINK_ENABLE] = "enable",
        [NST_VF_LINK_DISABLE] = "disable",
};

const char *nst_vf_link_state_name(enum nst_vf_link_state state) {
        if ((int)state < 0 || (size_t)state >= NST_ARRAY_SIZE(link_state_names))
                return NULL;
        return link_state_names[state];
}

bool nst_vf_settings_empty(const struct nst_vf_settings *s) {
        return s->trust < 0 && s->spoofchk < 0 && s->link_state == NST_VF_LINK_UNCHANGED &&
               s->min_tx_rate < 0 && s->max_tx_rate < 0;
}

static int check_switch(const char *field, int value, struct nst_error *err) {
        if (value < -1 || value > 1)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "VF settings: %s must be -1 (unchanged), 0 or 1, got %d",
                                     field, value);
        return 0;
}

static int check_rate(const char *field, int64_t value, struct nst_error *err) {
        if (value < -1 || value > (int64_t)UINT32_MAX)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "VF settings: %s must be -1 (unchanged) or 0..%" PRIu32
                                     " Mbps, got %" PRId64,
                                     field, UINT32_MAX, value);
        return 0;
}

int nst_vf_settings_check(const struct nst_vf_settings *s, struct nst_error *err) {
        int r;
        if (!s)
                return nst_error_set(err, -EINVAL, "InvalidInput", "VF settings: missing");
        if ((r = check_switch("trust", s->trust, err)) < 0 ||
            (r = check_switch("spoofchk", s->spoofchk, err)) < 0)
                return r;
        if ((int)s->link_state < NST_VF_LINK_UNCHANGED || (int)s->link_state > NST_VF_LINK_DISABLE)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "VF settings: link_state must be -1 (unchanged), 0 (auto), "
                                     "1 (enable) or 2 (disable), got %d",
                                     (int)s->link_state);
        if ((r = check_rate("min_tx_rate", s->min_tx_rate, err)) < 0 ||
            (r = check_rate("max_tx_rate", s->max_tx_rate, err)) < 0)
                return r;
        if ((s->min_tx_rate < 0) != (s->max_tx_rate < 0))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "VF settings: %s is set but %s is not (the kernel takes "
                                     "both rates together)",
                                     s->min_tx_rate < 0 ? "max_tx_rate" : "min_tx_rate",
                                     s->min_tx_rate < 0 ? "min_tx_rate" : "max_tx_rate");
        /* max_tx_rate 0 means "no limit", so any minimum fits under it. */
        if (s->max_tx_rate > 0 && s->min_tx_rate > s->max_tx_rate)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "VF settings: min_tx_rate %" PRId64
                                     " Mbps is above max_tx_rate %" PRId64 " Mbps",
                                     s->min_tx_rate, s->max_tx_rate);
        return 0;
}

/* The kernel's dev_valid_name(): the name must be usable as a netdev name
 * before it is passed to if_nametoindex or written into a record. */
static int check_target(const char *pf_netdev, int vf, struct nst_error *err) {
        if (!pf_netdev || !*pf_netdev)
                return nst_error_set(err, -EINVAL, "InvalidInput", "VF settings: no PF netdev");
        if (strlen(pf_netdev) >= IFNAMSIZ || !strcmp(pf_netdev, ".") ||
            !strcmp(pf_netdev, ".."))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "VF settings: PF netdev '%.*s' is not a valid interface name",
                                     IFNAMSIZ * 2, pf_netdev);
        for (const char *c = pf_netdev; *c; c++)
                if (*c == '/' || *c == ':' || *c == ' ' || (*c >= '\t' && *c <= '\r'))
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "VF settings: PF netdev '%s' is not a valid "
                                             "interface name",
                                             pf_netdev);
        if (vf < 0)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "VF settings: VF number %d of %s is negative", vf, pf_netdev);
        return 0;
}

static int check_apply_args(const char *pf_netdev, int vf, const struct nst_vf_settings *s,
                            struct nst_error *err) {
        int r = check_target(pf_netdev, vf, err);
        if (r < 0)
                return r;
        return nst_vf_settings_check(s, err);
}

void nst_vf_backend_free(struct nst_vf_backend *b) {
        if (b)
                b->free(b);
}

/* ---- encoding ---------------------------------------------------------- */

/* Netlink writer over a caller buffer that may not be aligned: every header
 * goes through memcpy. Overflow is sticky and reported once at the end. */
struct nl_writer {
        uint8_t *buf;
        size_t size, len;
        bool overflow;
};

static void nlw_put(struct nl_writer *w, const void *data, size_t len) {
        size_t padded = NLMSG_ALIGN(len);
        if (w->overflow || padded > w->size - w->len) {
                w->overflow = true;
                return;
        }
        memcpy(w->buf + w->len, data, len);
        memset(w->buf + w->len + len, 0, padded - len);
        w->len += padded;
}

static void nlw_attr(struct nl_writer *w, uint16_t type, const void *data, size_t len) {
        struct nlattr nla = {.nla_len = (uint16_t)(NLA_HDRLEN + len), .nla_type = type};
        size_t need = NLA_HDRLEN + NLA_ALIGN(len);
        if (w->overflow || need > w->size - w->len) {
                w->overflow = true;
                return;
        }
        nlw_put(w, &nla, sizeof(nla));
        nlw_put(w, data, len);
}

/* Returns the nest's offset for nlw_nest_end. */
static size_t nlw_nest_start(struct nl_writer *w, uint16_t type) {
        size_t at = w->len;
        struct nlattr nla = {.nla_len = NLA_HDRLEN, .nla_type = type | NLA_F_NESTED};
        nlw_put(w, &nla, sizeof(nla));
        return at;
}

static void nlw_nest_end(struct nl_writer *w, size_t at) {
        if (w->overflow)
                return;
        uint16_t len = (uint16_t)(w->len - at);
        memcpy(w->buf + at + offsetof(struct nlattr, nla_len), &len, sizeof(len));
}

static void encode_vf_info(struct nl_writer *w, uint32_t vf, const struct nst_vf_settings *s) {
        if (s->trust >= 0) {
                struct ifla_vf_trust t = {.vf = vf, .setting = (uint32_t)s->trust};
                nlw_attr(w, IFLA_VF_TRUST, &t, sizeof(t));
        }
        if (s->spoofchk >= 0) {
                struct ifla_vf_spoofchk c = {.vf = vf, .setting = (uint32_t)s->spoofchk};
                nlw_attr(w, IFLA_VF_SPOOFCHK, &c, sizeof(c));
        }
        if (s->link_state != NST_VF_LINK_UNCHANGED) {
                struct ifla_vf_link_state l = {.vf = vf, .link_state = (uint32_t)s->link_state};
                nlw_attr(w, IFLA_VF_LINK_STATE, &l, sizeof(l));
        }
        if (s->min_tx_rate >= 0 || s->max_tx_rate >= 0) {
                struct ifla_vf_rate rate = {
                        .vf = vf,
                        .min_tx_rate = s->min_tx_rate > 0 ? (uint32_t)s->min_tx_rate : 0,
                        .max_tx_rate = s->max_tx_rate > 0 ? (uint32_t)s->max_tx_rate : 0,
                };
                nlw_attr(w, IFLA_VF_RATE, &rate, sizeof(rate));
        }
}

ssize_t nst_vf_netlink_encode(int ifindex, uint32_t seq, int vf, const struct nst_vf_settings *s,
                              void *buf, size_t size) {
        struct nl_writer w = {.buf = buf, .size = size};
        struct nlmsghdr hdr = {
                .nlmsg_type = RTM_SETLINK,
                .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK,
                .nlmsg_seq = seq,
        };
        struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = ifindex};

        nlw_put(&w, &hdr, sizeof(hdr));
        nlw_put(&w, &ifi, sizeof(ifi));
        size_t list = nlw_nest_start(&w, IFLA_VFINFO_LIST);
        size_t info = nlw_nest_start(&w, IFLA_VF_INFO);
        encode_vf_info(&w, (uint32_t)vf, s);
        nlw_nest_end(&w, info);
        nlw_nest_end(&w, list);
        if (w.overflow || w.len > UINT32_MAX)
                return -ENOSPC;
        uint32_t total = (uint32_t)w.len;
        memcpy(w.buf + offsetof(struct nlmsghdr, nlmsg_len), &total, sizeof(total));
        return (ssize_t)w.len;
}

/* ---- netlink backend --------------------------------------------------- */

/* One RTM_SETLINK of the netlink backend: the settings it carries and what
 * to call it in an error. */
struct vf_step {
        const char *what;
        struct nst_vf_settings s;
};

static size_t plan_steps(const struct nst_vf_settings *s, struct vf_step steps[4]) {
        size_t n = 0;
        struct nst_vf_settings one = NST_VF_SETTINGS_UNCHANGED;

        if (s->trust >= 0) {
                steps[n] = (struct vf_step){"trust", one};
                steps[n++].s.trust = s->trust;
        }
        if (s->spoofchk >= 0) {
                steps[n] = (struct vf_step){"spoofchk", one};
                steps[n++].s.spoofchk = s->spoofchk;
        }
        if (s->link_state != NST_VF_LINK_UNCHANGED) {
                steps[n] = (struct vf_step){"link_state", one};
                steps[n++].s.link_state = s->link_state;
        }
        if (s->min_tx_rate >= 0) {
                steps[n] = (struct vf_step){"min_tx_rate/max_tx_rate", one};
                steps[n].s.min_tx_rate = s->min_tx_rate;
                steps[n++].s.max_tx_rate = s->max_tx_rate;
        }
        return n;
}

static int netlink_open(struct nst_error *err) {
        int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        if (fd < 0) {
                int e = errno;
                return nst_error_set(err, -e, "VfConfigFailed",
                                     "cannot open a NETLINK_ROUTE socket: %s", strerror(e));
        }
        int one = 1;
        /* Both are best effort: older kernels still answer, just less. */
        (void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
        (void)setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
        struct timeval tv = {.tv_sec = NETLINK_REPLY_TIMEOUT_S};
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        return fd;
}

/* The kernel's extended-ACK text, when it gave one. */
static const char *extack_message(const struct nlmsghdr *h) {
        if (!(h->nlmsg_flags & NLM_F_ACK_TLVS))
                return NULL;
        const struct nlmsgerr *e = NLMSG_DATA(h);
        size_t off = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(*e));
        if (!(h->nlmsg_flags & NLM_F_CAPPED)) {
                if (e->msg.nlmsg_len < NLMSG_HDRLEN)
                        return NULL;
                off += NLMSG_ALIGN(e->msg.nlmsg_len - NLMSG_HDRLEN);
        }
        const uint8_t *base = (const uint8_t *)h;
        while (off + NLA_HDRLEN <= h->nlmsg_len) {
                const struct nlattr *a = (const struct nlattr *)(base + off);
                if (a->nla_len < NLA_HDRLEN || off + a->nla_len > h->nlmsg_len)
                        return NULL;
                size_t plen = a->nla_len - NLA_HDRLEN;
                const char *payload = (const char *)a + NLA_HDRLEN;
                if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG && plen > 0 &&
                    memchr(payload, '\0', plen))
                        return payload;
                off += NLA_ALIGN(a->nla_len);
        }
        return NULL;
}

/* Reads until the ACK for seq: 0, or the kernel's negative errno with
 * *refused set and ext_msg set to its extack text if any. Socket trouble: a
 * negative errno with ext_msg describing it. */
static int netlink_wait_ack(int fd, uint32_t seq, char *ext_msg, size_t ext_size,
                            bool *refused) {
        _Alignas(struct nlmsghdr) uint8_t buf[NETLINK_REPLY_MAX];

        ext_msg[0] = '\0';
        for (;;) {
                struct sockaddr_nl from = {0};
                socklen_t from_len = sizeof(from);
                ssize_t n = recvfrom(fd, buf, sizeof(buf), MSG_TRUNC, (struct sockaddr *)&from,
                                     &from_len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int e = errno;
                        snprintf(ext_msg, ext_size, "no answer from the kernel: %s",
                                 e == EAGAIN ? "timed out" : strerror(e));
                        return -e;
                }
                if ((size_t)n > sizeof(buf)) {
                        snprintf(ext_msg, ext_size, "oversized netlink reply (%zd bytes)", n);
                        return -EMSGSIZE;
                }
                if (from.nl_pid != 0)
                        continue;
                size_t len = (size_t)n;
                for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, len);
                     h = NLMSG_NEXT(h, len)) {
                        if (h->nlmsg_seq != seq || h->nlmsg_type != NLMSG_ERROR)
                                continue;
                        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
                                snprintf(ext_msg, ext_size, "truncated netlink ACK");
                                return -EPROTO;
                        }
                        const struct nlmsgerr *e = NLMSG_DATA(h);
                        const char *text = e->error ? extack_message(h) : NULL;
                        if (text)
                                snprintf(ext_msg, ext_size, "%s", text);
                        *refused = e->error != 0;
                        return e->error > 0 ? -e->error : e->error;
                }
        }
}

/* *refused: the kernel answered and refused (as opposed to the socket
 * failing, after which nothing more can be sent). */
static int netlink_send_step(int fd, int ifindex, uint32_t seq, const char *pf_netdev, int vf,
                             const struct vf_step *step, bool *refused, struct nst_error *err) {
        _Alignas(struct nlmsghdr) uint8_t req[NETLINK_REQUEST_MAX];
        char ext[NST_ERROR_MESSAGE_MAX];
        ssize_t len = nst_vf_netlink_encode(ifindex, seq, vf, &step->s, req, sizeof(req));
        if (len < 0)
                return nst_error_set(err, (int)len, "VfConfigFailed",
                                     "%s on VF %d of %s: request does not fit", step->what, vf,
                                     pf_netdev);

        struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
        ssize_t sent;
        do
                sent = sendto(fd, req, (size_t)len, 0, (struct sockaddr *)&kernel,
                              sizeof(kernel));
        while (sent < 0 && errno == EINTR);
        if (sent < 0) {
                int e = errno;
                return nst_error_set(err, -e, "VfConfigFailed",
                                     "%s on VF %d of %s: cannot send to the kernel: %s",
                                     step->what, vf, pf_netdev, strerror(e));
        }

        int r = netlink_wait_ack(fd, seq, ext, sizeof(ext), refused);
        if (r == 0)
                return 0;
        if (!*refused)
                return nst_error_set(err, r, "VfConfigFailed", "%s on VF %d of %s: %s",
                                     step->what, vf, pf_netdev, ext);
        if (ext[0])
                return nst_error_set(err, r, "VfConfigFailed", "%s on VF %d of %s: %s (%s)",
                                     step->what, vf, pf_netdev, strerror(-r), ext);
        return nst_error_set(err, r, "VfConfigFailed", "%s on VF %d of %s: %s", step->what, vf,
                             pf_netdev, strerror(-r));
}

static int netlink_apply(struct nst_vf_backend *b, const char *pf_netdev, int vf,
                         const struct nst_vf_settings *s, struct nst_error *err) {
        struct vf_step steps[4];
        int r = check_apply_args(pf_netdev, vf, s, err);
        if (r < 0)
                return r;
        size_t n = plan_steps(s, steps);
        if (n == 0)
                return 0;

        unsigned ifindex = if_nametoindex(pf_netdev);
        if (ifindex == 0) {
                int e = errno ? errno : ENODEV;
                return nst_error_set(err, -e, "VfConfigFailed", "PF netdev %s of VF %d: %s",
                                     pf_netdev, vf, strerror(e));
        }
        _cleanup_close_ int fd = netlink_open(err);
        if (fd < 0)
                return fd;
        /* Every setting is tried even after a refusal: on release (the
         * reset) a driver without, say, trust support must still get its
         * spoof checking and rates back. The first refusal is the error. */
        int first = 0;
        char others[96] = "";
        for (size_t i = 0; i < n; i++) {
                struct nst_error step_err = NST_ERROR_INIT;
                bool refused = false;
                r = netlink_send_step(fd, (int)ifindex, (uint32_t)i + 1, pf_netdev, vf, &steps[i],
                                      &refused, &step_err);
                if (r == 0)
                        continue;
                if (first == 0) {
                        first = r;
                        if (err)
                                *err = step_err;
                } else {
                        size_t used = strlen(others);
                        snprintf(others + used, sizeof(others) - used, "%s%s", used ? ", " : "",
                                 steps[i].what);
                }
                if (!refused)
                        break;
        }
        if (first < 0 && others[0] && err) {
                size_t used = strlen(err->message);
                snprintf(err->message + used, sizeof(err->message) - used,
                         "; also refused: %s", others);
        }
        return first;
}

static void netlink_free(struct nst_vf_backend *b) {
        free(b);
}

int nst_vf_backend_netlink_new(struct nst_vf_backend **ret, struct nst_error *err) {
        /* Fail at startup, not at the first claim, where netlink is missing
         * (seccomp, an unusual container). */
        int fd = netlink_open(err);
        if (fd < 0)
                return fd;
        close(fd);

        struct nst_vf_backend *b = calloc(1, sizeof(*b));
        if (!b)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        *b = (struct nst_vf_backend){.name = "netlink", .apply = netlink_apply,
                                     .free = netlink_free};
        *ret = b;
        return 0;
}

/* ---- record backend ---------------------------------------------------- */

struct record_backend {
        struct nst_vf_backend base;
        pthread_mutex_t lock; /* one line is one write, whole */
        int fd;
        char *path;
};

static int add_json(json_object *obj, const char *key, json_object *value) {
        if (!value || json_object_object_add(obj, key, value) < 0) {
                json_object_put(value);
                return -ENOMEM;
        }
        return 0;
}

static int record_line(const char *pf_netdev, int vf, const struct nst_vf_settings *s,
                       json_object **ret) {
        _cleanup_json_ json_object *o = json_object_new_object();
        if (!o || add_json(o, "pf", json_object_new_string(pf_netdev)) < 0 ||
            add_json(o, "vf", json_object_new_int(vf)) < 0)
                return -ENOMEM;
        if (s->trust >= 0 && add_json(o, "trust", json_object_new_boolean(s->trust)) < 0)
                return -ENOMEM;
        if (s->spoofchk >= 0 && add_json(o, "spoofchk", json_object_new_boolean(s->spoofchk)) < 0)
                return -ENOMEM;
        if (s->link_state != NST_VF_LINK_UNCHANGED &&
            add_json(o, "link_state",
                     json_object_new_string(nst_vf_link_state_name(s->link_state))) < 0)
                return -ENOMEM;
        if (s->min_tx_rate >= 0 &&
            (add_json(o, "min_tx_rate", json_object_new_int64(s->min_tx_rate)) < 0 ||
             add_json(o, "max_tx_rate", json_object_new_int64(s->max_tx_rate)) < 0))
                return -ENOMEM;
        *ret = nst_steal(&o);
        return 0;
}

static int write_all(int fd, const char *data, size_t len) {
        while (len > 0) {
                ssize_t n = write(fd, data, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                data += n;
                len -= (size_t)n;
        }
        return 0;
}

static int record_apply(struct nst_vf_backend *b, const char *pf_netdev, int vf,
                        const struct nst_vf_settings *s, struct nst_error *err) {
        struct record_backend *rb = (struct record_backend *)b;
        _cleanup_json_ json_object *o = NULL;
        int r = check_apply_args(pf_netdev, vf, s, err);
        if (r < 0)
                return r;
        if (record_line(pf_netdev, vf, s, &o) < 0)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");

        size_t len = 0;
        const char *text = nst_json_to_string(o, &len);
        _cleanup_free_ char *line = text ? malloc(len + 1) : NULL;
        if (!line)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        memcpy(line, text, len);
        line[len] = '\n';

        pthread_mutex_lock(&rb->lock);
        r = write_all(rb->fd, line, len + 1);
        pthread_mutex_unlock(&rb->lock);
        if (r < 0)
                return nst_error_set(err, r, "VfConfigFailed", "VF %d of %s: record file %s: %s",
                                     vf, pf_netdev, rb->path, strerror(-r));
        return 0;
}

static void record_free(struct nst_vf_backend *b) {
        struct record_backend *rb = (struct record_backend *)b;
        pthread_mutex_destroy(&rb->lock);
        if (rb->fd >= 0)
                close(rb->fd);
        free(rb->path);
        free(rb);
}

int nst_vf_backend_record_new(const char *path, struct nst_vf_backend **ret,
                              struct nst_error *err) {
        if (!path || !*path)
                return nst_error_set(err, -EINVAL, "InvalidInput", "VF record backend: no path");
        _cleanup_free_ struct record_backend *rb = calloc(1, sizeof(*rb));
        _cleanup_free_ char *copy = strdup(path);
        if (!rb || !copy)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");

        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
                int e = errno;
                return nst_error_set(err, -e, "VfConfigFailed",
                                     "VF record backend: cannot open %s: %s", path, strerror(e));
        }
        rb->base = (struct nst_vf_backend){.name = "record", .apply = record_apply,
                                           .free = record_free};
        pthread_mutex_init(&rb->lock, NULL);
        rb->fd = fd;
        rb->path = nst_steal(&copy);
        *ret = &nst_steal(&rb)->base;
        return 0;
}

/* ---- configuration ----------------------------------------------------- */

#define RECORD_PREFIX "record:"

int nst_vf_backend_from_spec(const char *spec, struct nst_vf_backend **ret,
                             struct nst_error *err) {
        if (!spec)
                return nst_error_set(err, -EINVAL, "InvalidInput", "[pci] vf_config: missing");
        if (!strcmp(spec, "netlink"))
                return nst_vf_backend_netlink_new(ret, err);
        if (strncmp(spec, RECORD_PREFIX, strlen(RECORD_PREFIX)) != 0)
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "[pci] vf_config: unknown backend '%s' (expected 'netlink' "
                                     "or 'record:<absolute path>')",
                                     spec);

        const char *path = spec + strlen(RECORD_PREFIX);
        /* The agent runs from /, so a relative path would land somewhere
         * nobody looks. */
        if (path[0] != '/')
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "[pci] vf_config: record path '%s' is not absolute", path);
        int r = nst_vf_backend_record_new(path, ret, err);
        if (r < 0)
                nst_error_prefix(err, "[pci] vf_config");
        return r;
}
