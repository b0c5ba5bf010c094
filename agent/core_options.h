/* The agent's own options ([DEFAULT], [oslo_messaging_rabbit], [ssl],
 * [oslo_messaging_notifications]) and the transport settings derived from
 * them, shared by nestor-agent and nestorctl so both reach the broker the
 * same way. */
#ifndef NESTOR_AGENT_CORE_OPTIONS_H
#define NESTOR_AGENT_CORE_OPTIONS_H

#include "agent/amqp_session.h"
#include "agent/config.h"
#include "agent/transport_url.h"

#define NST_RPC_TOPIC "compute"

int nst_core_options_register(struct nst_config *cfg, struct nst_error *err);

/* The config file used when none is given (when it exists). */
const char *nst_core_default_config_file(void);

/* Reads the files in order (later ones win), registers the core options and
 * resolves them. Plugins may register and resolve more afterwards. */
int nst_core_config_load(const char *const *files, size_t n_files, struct nst_config **ret,
                         struct nst_error *err);

struct nst_transport_settings {
        struct nst_transport_url url;
        struct nst_tls_opts tls;
        struct nst_queue_opts queues;  /* topic and notification queues */
        int64_t transient_ttl_ms;
        int heartbeat_s;
        int64_t min_backoff_ms, max_backoff_ms;
        uint16_t prefetch;
        const char *exchange;          /* borrowed from the config */
};

/* Parses transport_url and applies its query parameters over the
 * [oslo_messaging_rabbit] options, as oslo does. */
int nst_transport_settings_load(const struct nst_config *cfg, struct nst_transport_settings *ret,
                                struct nst_error *err);
void nst_transport_settings_done(struct nst_transport_settings *t);

/* The host option, or the machine's hostname when unset. Owned by caller. */
char *nst_core_host_name(const struct nst_config *cfg);

#endif
