/* oslo transport URLs: rabbit://user:pass@host:port,user2:pass2@host2:port2/vhost?query
 * and amqps:// (TLS). Userinfo and host are percent-decoded. Query parameters
 * are kept for options that may be given there (e.g. amqp_durable_queues). */
#ifndef NESTOR_AGENT_TRANSPORT_URL_H
#define NESTOR_AGENT_TRANSPORT_URL_H

#include <stdbool.h>
#include <stddef.h>

#include "messages/error.h"

struct nst_broker_host {
        char *host;       /* without brackets for IPv6 literals */
        int port;         /* 5672 by default, 5671 for amqps */
        char *username;   /* "guest" when absent */
        char *password;   /* "guest" when absent */
};

struct nst_transport_url {
        bool tls;         /* amqps:// or rabbit:// with ?ssl=1 */
        char *vhost;      /* "/" when absent */
        struct nst_broker_host *hosts;
        size_t n_hosts;   /* >= 1 */
        char **query_keys, **query_values;
        size_t n_query;
};

/* Schemes accepted: rabbit, amqp, amqps ("rabbit://" alone means
 * guest:guest@localhost:5672/). Errors name what is wrong with the URL,
 * without echoing the password. */
int nst_transport_url_parse(const char *url, struct nst_transport_url *ret, struct nst_error *err);
void nst_transport_url_done(struct nst_transport_url *url);

/* The query value for key, or NULL. */
const char *nst_transport_url_query(const struct nst_transport_url *url, const char *key);

#endif
