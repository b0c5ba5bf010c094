/* transport_url parsing, following oslo.messaging's TransportURL.parse plus
 * what its rabbit driver and kombu then do with the pieces, so a nova.conf
 * URL means the same broker, user and vhost here as it does to nova:
 *
 *  - hosts are comma-separated; empty entries are skipped;
 *  - each host has its own optional user:pass@; the last '@' ends the
 *    userinfo and the first ':' in it starts the password;
 *  - a host without (or with an empty) user or password gets "guest", as
 *    kombu fills in; nothing is inherited from another host;
 *  - no host at all means localhost;
 *  - the vhost is the percent-decoded path minus its leading '/', with an
 *    empty one meaning "/", so "/%2F" and "/" and "" all name "/";
 *  - query parameters decode like Python's parse_qs: blank values dropped,
 *    repeated keys joined with ','; ssl=<bool> overrides [oslo_messaging_rabbit]
 *    ssl, as oslo lets any query parameter do.
 *
 * Stricter than oslo on purpose: ports must be 1..65535 and nothing may
 * follow an IPv6 literal's ']' but ":port".
 *
 * Error messages name hosts by position and never quote the netloc, the
 * port text or the query: with an unescaped '/', '?' or '#' in a password,
 * the split lands inside the password and any of those could contain it. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "agent/transport_url.h"

#define DEFAULT_PORT 5672
#define DEFAULT_TLS_PORT 5671
#define DEFAULT_USER "guest"
#define DEFAULT_HOST "localhost"

static int config_error(struct nst_error *err, const char *what) {
        return nst_error_set(err, -EINVAL, "ConfigError", "transport_url: %s", what);
}

static int oom(struct nst_error *err) {
        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
}

/* Percent-decodes s[0..len) like Python's unquote: a malformed escape is kept
 * literally. An encoded NUL is refused since the result is a C string. */
static int decode(const char *s, size_t len, bool plus_is_space, char **ret) {
        char *out = malloc(len + 1), *o = out;
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < len; i++) {
                int hi, lo;
                if (s[i] == '%' && i + 2 < len && (hi = nst_hex_digit(s[i + 1])) >= 0 &&
                    (lo = nst_hex_digit(s[i + 2])) >= 0) {
                        if (hi == 0 && lo == 0) {
                                free(out);
                                return -EINVAL;
                        }
                        *o++ = (char)(hi << 4 | lo);
                        i += 2;
                } else if (plus_is_space && s[i] == '+') {
                        *o++ = ' ';
                } else {
                        *o++ = s[i];
                }
        }
        *o = '\0';
        *ret = out;
        return 0;
}

/* Decodes and reports failures as ConfigError/MemoryError, naming `what`. */
static int decode_field(const char *s, size_t len, bool plus_is_space, const char *what,
                        char **ret, struct nst_error *err) {
        int r = decode(s, len, plus_is_space, ret);
        if (r == -ENOMEM)
                return oom(err);
        if (r < 0)
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "transport_url: %s contains an encoded NUL (%%00)", what);
        return 0;
}

static int parse_port(const char *s, size_t len, int *ret) {
        int port = 0;
        if (len == 0 || len > 5)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                if (!isdigit((unsigned char)s[i]))
                        return -EINVAL;
                port = port * 10 + (s[i] - '0');
        }
        if (port < 1 || port > 65535)
                return -EINVAL;
        *ret = port;
        return 0;
}

static int host_error(struct nst_error *err, size_t index, const char *what) {
        return nst_error_set(err, -EINVAL, "ConfigError", "transport_url: host %zu: %s", index,
                             what);
}

static int set_default_credentials(struct nst_broker_host *h) {
        if (!h->username || !*h->username) {
                free(h->username);
                h->username = strdup(DEFAULT_USER);
        }
        if (!h->password || !*h->password) {
                free(h->password);
                h->password = strdup(DEFAULT_USER);
        }
        return h->username && h->password ? 0 : -ENOMEM;
}

static void host_done(struct nst_broker_host *h) {
        free(h->host);
        free(h->username);
        if (h->password) {
                /* Do not leave the broker password lying around in freed heap. */
                explicit_bzero(h->password, strlen(h->password));
                free(h->password);
        }
        *h = (struct nst_broker_host){0};
}

/* One comma-separated netloc entry: [user[:pass]@]host[:port] with host
 * possibly a bracketed IPv6 literal. index is 1-based, for messages. */
static int parse_host(const char *s, size_t len, size_t index, int default_port,
                      struct nst_broker_host *ret, struct nst_error *err) {
        struct nst_broker_host h = {.port = default_port};
        const char *at = NULL;
        int r;

        for (size_t i = 0; i < len; i++)
                if (s[i] == '@')
                        at = s + i;
        if (at) {
                size_t ulen = (size_t)(at - s);
                const char *colon = memchr(s, ':', ulen);
                size_t namelen = colon ? (size_t)(colon - s) : ulen;
                r = decode_field(s, namelen, false, "user name", &h.username, err);
                if (r >= 0 && colon)
                        r = decode_field(colon + 1, ulen - namelen - 1, false, "password",
                                         &h.password, err);
                if (r < 0)
                        goto fail;
                len -= ulen + 1;
                s = at + 1;
        }

        const char *name = s, *port = NULL;
        size_t namelen = len, portlen = 0;
        if (len > 0 && s[0] == '[') {
                const char *close = memchr(s, ']', len);
                if (!close) {
                        r = host_error(err, index, "IPv6 address lacks its closing ']'");
                        goto fail;
                }
                name = s + 1;
                namelen = (size_t)(close - name);
                size_t rest = len - (size_t)(close + 1 - s);
                if (rest > 0) {
                        if (close[1] != ':') {
                                r = host_error(err, index,
                                               "only ':port' may follow an IPv6 address");
                                goto fail;
                        }
                        port = close + 2;
                        portlen = rest - 1;
                }
        } else {
                const char *colon = memchr(s, ':', len);
                if (colon) {
                        namelen = (size_t)(colon - s);
                        port = colon + 1;
                        portlen = len - namelen - 1;
                }
                if (memchr(name, '[', namelen) || memchr(name, ']', namelen)) {
                        r = host_error(err, index, "brackets are only for a whole IPv6 address");
                        goto fail;
                }
        }
        /* "host:" is the default port, as in Python's urlparse. */
        if (portlen > 0 && parse_port(port, portlen, &h.port) < 0) {
                r = host_error(err, index, "port must be a number from 1 to 65535");
                goto fail;
        }
        if (namelen == 0) {
                r = host_error(err, index, "empty host name");
                goto fail;
        }
        r = decode_field(name, namelen, false, "host name", &h.host, err);
        if (r < 0)
                goto fail;
        if (set_default_credentials(&h) < 0) {
                r = oom(err);
                goto fail;
        }
        *ret = h;
        return 0;
fail:
        host_done(&h);
        return r;
}

static int add_default_host(struct nst_transport_url *u, int default_port, struct nst_error *err) {
        u->hosts = calloc(1, sizeof(*u->hosts));
        if (!u->hosts)
                return oom(err);
        u->n_hosts = 1;
        u->hosts[0] = (struct nst_broker_host){.host = strdup(DEFAULT_HOST), .port = default_port};
        if (!u->hosts[0].host || set_default_credentials(&u->hosts[0]) < 0)
                return oom(err);
        return 0;
}

static int parse_hosts(struct nst_transport_url *u, const char *s, size_t len, int default_port,
                       struct nst_error *err) {
        size_t n = 1;
        for (size_t i = 0; i < len; i++)
                n += s[i] == ',';
        u->hosts = calloc(n, sizeof(*u->hosts));
        if (!u->hosts)
                return oom(err);

        const char *end = s + len;
        for (;;) {
                const char *comma = memchr(s, ',', (size_t)(end - s));
                const char *stop = comma ? comma : end;
                if (stop > s) {
                        int r = parse_host(s, (size_t)(stop - s), u->n_hosts + 1, default_port,
                                           &u->hosts[u->n_hosts], err);
                        if (r < 0)
                                return r;
                        u->n_hosts++;
                }
                if (!comma)
                        break;
                s = comma + 1;
        }
        if (u->n_hosts == 0) {
                free(u->hosts);
                u->hosts = NULL;
                return add_default_host(u, default_port, err);
        }
        return 0;
}

static ssize_t find_query(const struct nst_transport_url *u, const char *key) {
        for (size_t i = 0; i < u->n_query; i++)
                if (strcmp(u->query_keys[i], key) == 0)
                        return (ssize_t)i;
        return -1;
}

static int add_query(struct nst_transport_url *u, char **key, char **value, size_t cap) {
        ssize_t i = find_query(u, *key);
        if (i >= 0) {
                /* parse_qs keeps every value; oslo joins them with ','. */
                char *joined;
                if (asprintf(&joined, "%s,%s", u->query_values[i], *value) < 0)
                        return -ENOMEM;
                free(u->query_values[i]);
                u->query_values[i] = joined;
                free(*value);
                free(*key);
        } else {
                if (u->n_query >= cap)
                        return -ENOMEM;
                u->query_keys[u->n_query] = *key;
                u->query_values[u->n_query] = *value;
                u->n_query++;
        }
        *key = *value = NULL;
        return 0;
}

static int parse_query(struct nst_transport_url *u, const char *s, size_t len,
                       struct nst_error *err) {
        size_t cap = 1;
        for (size_t i = 0; i < len; i++)
                cap += s[i] == '&';
        u->query_keys = calloc(cap, sizeof(char *));
        u->query_values = calloc(cap, sizeof(char *));
        if (!u->query_keys || !u->query_values)
                return oom(err);

        const char *end = s + len;
        for (;;) {
                const char *amp = memchr(s, '&', (size_t)(end - s));
                const char *stop = amp ? amp : end;
                const char *eq = memchr(s, '=', (size_t)(stop - s));
                /* Like parse_qs: a field without '=' or with a blank value is dropped. */
                if (eq && eq + 1 < stop) {
                        _cleanup_free_ char *key = NULL, *value = NULL;
                        int r = decode_field(s, (size_t)(eq - s), true, "query parameter name",
                                             &key, err);
                        if (r >= 0)
                                r = decode_field(eq + 1, (size_t)(stop - eq - 1), true,
                                                 "query parameter value", &value, err);
                        if (r < 0)
                                return r;
                        if (add_query(u, &key, &value, cap) < 0)
                                return oom(err);
                }
                if (!amp)
                        break;
                s = amp + 1;
        }
        return 0;
}

static int parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = {"true", "1", "on", "yes"};
        static const char *const no[] = {"false", "0", "off", "no"};
        for (size_t i = 0; i < NST_ARRAY_SIZE(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

static int parse_scheme(const char *s, size_t len, bool *tls, struct nst_error *err) {
        static const char *const known[] = {"rabbit", "amqp", "amqps"};
        for (size_t i = 0; i < NST_ARRAY_SIZE(known); i++) {
                if (strlen(known[i]) == len && strncasecmp(s, known[i], len) == 0) {
                        *tls = strcmp(known[i], "amqps") == 0;
                        return 0;
                }
        }
        /* A scheme cannot hold a ':' so it cannot hold a user:password. */
        return nst_error_set(err, -EINVAL, "ConfigError",
                             "transport_url: unknown scheme '%.*s' (expected rabbit, amqp or "
                             "amqps)",
                             (int)(len > 32 ? 32 : len), s);
}

static bool valid_scheme(const char *s, size_t len) {
        if (len == 0 || !isalpha((unsigned char)s[0]))
                return false;
        for (size_t i = 1; i < len; i++)
                if (!isalnum((unsigned char)s[i]) && s[i] != '+' && s[i] != '-' && s[i] != '.')
                        return false;
        return true;
}

static int parse_vhost(struct nst_transport_url *u, const char *s, size_t len,
                       struct nst_error *err) {
        /* urlparse moves ";params" of the last path segment out of the path. */
        const char *last = s;
        for (size_t i = 0; i < len; i++)
                if (s[i] == '/')
                        last = s + i;
        const char *semi = memchr(last, ';', len - (size_t)(last - s));
        if (semi)
                len = (size_t)(semi - s);

        if (len > 1) {
                int r = decode_field(s + 1, len - 1, false, "virtual host", &u->vhost, err);
                if (r < 0)
                        return r;
                if (*u->vhost)
                        return 0;
                free(u->vhost);
        }
        u->vhost = strdup("/");
        return u->vhost ? 0 : oom(err);
}

static int parse(const char *url, struct nst_transport_url *u, struct nst_error *err) {
        while (isspace((unsigned char)*url))
                url++;
        size_t len = strlen(url);
        while (len > 0 && isspace((unsigned char)url[len - 1]))
                len--;
        for (size_t i = 0; i < len; i++)
                if (iscntrl((unsigned char)url[i]))
                        return config_error(err, "contains a control character");

        const char *sep = memmem(url, len, "://", 3);
        if (!sep || !valid_scheme(url, (size_t)(sep - url)))
                return config_error(err, "no scheme (expected rabbit://, amqp:// or amqps://)");
        int r = parse_scheme(url, (size_t)(sep - url), &u->tls, err);
        if (r < 0)
                return r;
        int default_port = u->tls ? DEFAULT_TLS_PORT : DEFAULT_PORT;

        const char *netloc = sep + 3, *end = url + len;
        const char *fragment = memchr(netloc, '#', (size_t)(end - netloc));
        if (fragment)
                end = fragment;
        size_t netloc_len = strcspn(netloc, "/?#");
        if (netloc + netloc_len > end)
                netloc_len = (size_t)(end - netloc);
        const char *path = netloc + netloc_len;
        const char *query = memchr(path, '?', (size_t)(end - path));
        size_t path_len = (size_t)((query ? query : end) - path);

        r = parse_hosts(u, netloc, netloc_len, default_port, err);
        if (r < 0)
                return r;
        r = parse_vhost(u, path, path_len, err);
        if (r < 0)
                return r;
        if (query) {
                r = parse_query(u, query + 1, (size_t)(end - query - 1), err);
                if (r < 0)
                        return r;
        }

        const char *ssl = nst_transport_url_query(u, "ssl");
        bool want_tls;
        if (ssl) {
                if (parse_bool(ssl, &want_tls) < 0)
                        return config_error(err, "query parameter ssl must be true or false");
                /* amqps:// already asked for TLS; ssl=false cannot take it back. */
                u->tls = u->tls || want_tls;
        }
        return 0;
}

int nst_transport_url_parse(const char *url, struct nst_transport_url *ret, struct nst_error *err) {
        struct nst_transport_url u = {0};

        /* Unset means oslo's default transport_url. */
        int r = parse(url ? url : "rabbit://", &u, err);
        if (r < 0) {
                nst_transport_url_done(&u);
                return r;
        }
        *ret = u;
        return 0;
}

void nst_transport_url_done(struct nst_transport_url *url) {
        if (!url)
                return;
        for (size_t i = 0; i < url->n_hosts; i++)
                host_done(&url->hosts[i]);
        free(url->hosts);
        for (size_t i = 0; i < url->n_query; i++) {
                free(url->query_keys[i]);
                free(url->query_values[i]);
        }
        free(url->query_keys);
        free(url->query_values);
        free(url->vhost);
        *url = (struct nst_transport_url){0};
}

const char *nst_transport_url_query(const struct nst_transport_url *url, const char *key) {
        ssize_t i = find_query(url, key);
        return i >= 0 ? url->query_values[i] : NULL;
}
