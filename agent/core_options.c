#include "agent/core_options.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "build_config.h"

static const char *const notification_drivers[] = {"messagingv2", "noop", NULL};

static const struct nst_option default_opts[] = {
        {"transport_url", NST_OPT_STRING, "rabbit://",
         "Broker URL: rabbit://user:pass@host:port[,user:pass@host2:port]/vhost, amqps:// for TLS"},
        {"host", NST_OPT_STRING, NULL,
         "Name of this node: the RPC server name (queue compute.<host>). Default: the hostname"},
        {"control_exchange", NST_OPT_STRING, "nestor", "Exchange for RPC and notifications"},
        {"report_interval", NST_OPT_INT, "10", "Seconds between state reports", 1, 3600},
        {"state_path", NST_OPT_STRING, "/var/lib/nestor", "Directory for Nestor's own state"},
        {"enabled_plugins", NST_OPT_LIST, "", "Plugins to load, comma-separated"},
        {"plugin_dir", NST_OPT_STRING, NESTOR_PLUGIN_DIR, "Directory holding plugin modules"},
        {"debug", NST_OPT_BOOL, "false", "Log at debug level (SIGHUP re-reads it)"},
        {"use_syslog", NST_OPT_BOOL, "false", "Log to syslog instead of stderr"},
        {"rpc_workers", NST_OPT_INT, "8", "Threads running RPC handlers and periodic tasks", 1,
         256},
        {"rpc_response_timeout", NST_OPT_INT, "60", "Default call timeout of nestorctl, seconds",
         1, 86400},
        {"max_message_bytes", NST_OPT_INT, "16777216",
         "Largest message body accepted; larger ones are rejected", 1024, 1073741824},
        {"graceful_shutdown_timeout", NST_OPT_INT, "60",
         "Seconds in-flight calls may take to finish on SIGTERM", 0, 86400},
        {"locale", NST_OPT_STRING, "en",
         "Language of notification messages (nestor_event.message), e.g. fr or fr_FR.UTF-8; "
         "en, C, POSIX or empty: English. Missing translations fall back to English"},
        {"catalog_dir", NST_OPT_STRING, NESTOR_LOCALE_DIR,
         "Directory of message catalogs (<locale>.json) for the locale option"},
};

static const struct nst_option rabbit_opts[] = {
        {"amqp_durable_queues", NST_OPT_BOOL, "false",
         "Durable topic exchange and queues (must match the controller's setting)"},
        {"amqp_auto_delete", NST_OPT_BOOL, "false", "Auto-delete topic exchange and queues"},
        {"rabbit_ha_queues", NST_OPT_BOOL, "false", "Declare queues with x-ha-policy: all"},
        {"rabbit_quorum_queue", NST_OPT_BOOL, "false",
         "Declare topic queues as quorum queues (durable)"},
        {"rabbit_transient_queues_ttl", NST_OPT_INT, "1800",
         "Seconds an unused fanout queue lives (x-expires)", 1, 86400 * 7},
        {"heartbeat_timeout_threshold", NST_OPT_INT, "60",
         "AMQP heartbeat requested from the broker, seconds (0 disables)", 0, 3600},
        {"rabbit_retry_interval", NST_OPT_FLOAT, "0.5",
         "First reconnect delay, seconds; doubles on each failure", 0.05, 60},
        {"rabbit_interval_max", NST_OPT_FLOAT, "4",
         "Longest reconnect delay, seconds (keeps recovery fast after a broker restart)", 0.1,
         300},
        {"rabbit_qos_prefetch_count", NST_OPT_INT, "0",
         "basic.qos prefetch (0 = unlimited, like oslo)", 0, 65535},
};

static const struct nst_option ssl_opts[] = {
        {"ca_file", NST_OPT_STRING, NULL, "CA bundle to verify the broker (amqps://)"},
        {"cert_file", NST_OPT_STRING, NULL, "Client certificate (amqps://)"},
        {"key_file", NST_OPT_STRING, NULL, "Client private key (amqps://)"},
        {"verify_hostname", NST_OPT_BOOL, "true",
         "Check that the broker certificate names the host in transport_url"},
};

static const struct nst_option notification_opts[] = {
        {"driver", NST_OPT_ENUM, "messagingv2", "messagingv2 publishes, noop drops",
         .choices = notification_drivers},
        {"topics", NST_OPT_LIST, "versioned_notifications", "Notification topics"},
};

int nst_core_options_register(struct nst_config *cfg, struct nst_error *err) {
        int r = nst_config_register(cfg, "DEFAULT", default_opts, NST_ARRAY_SIZE(default_opts),
                                    err);
        if (r >= 0)
                r = nst_config_register(cfg, "oslo_messaging_rabbit", rabbit_opts,
                                        NST_ARRAY_SIZE(rabbit_opts), err);
        if (r >= 0)
                r = nst_config_register(cfg, "ssl", ssl_opts, NST_ARRAY_SIZE(ssl_opts), err);
        if (r >= 0)
                r = nst_config_register(cfg, "oslo_messaging_notifications", notification_opts,
                                        NST_ARRAY_SIZE(notification_opts), err);
        return r;
}

const char *nst_core_default_config_file(void) {
        return NESTOR_SYSCONFDIR "/nestor/nestor.conf";
}

int nst_core_config_load(const char *const *files, size_t n_files, struct nst_config **ret,
                         struct nst_error *err) {
        _cleanup_(nst_config_freep) struct nst_config *cfg = NULL;
        int r = nst_config_new(&cfg);
        if (r < 0)
                return nst_error_set(err, r, "MemoryError", "out of memory");
        for (size_t i = 0; i < n_files; i++) {
                r = nst_config_load_file(cfg, files[i], err);
                if (r < 0)
                        return r;
        }
        r = nst_core_options_register(cfg, err);
        if (r >= 0)
                r = nst_config_resolve(cfg, err);
        if (r < 0)
                return r;
        *ret = nst_steal(&cfg);
        return 0;
}

/* oslo lets transport_url's query override [oslo_messaging_rabbit] options. */
static int query_bool(const struct nst_transport_url *url, const char *key, bool *value,
                      struct nst_error *err) {
        const char *v = nst_transport_url_query(url, key);
        if (!v)
                return 0;
        if (!strcasecmp(v, "true") || !strcasecmp(v, "1") || !strcasecmp(v, "yes") ||
            !strcasecmp(v, "on"))
                *value = true;
        else if (!strcasecmp(v, "false") || !strcasecmp(v, "0") || !strcasecmp(v, "no") ||
                 !strcasecmp(v, "off"))
                *value = false;
        else
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "transport_url: query parameter %s=%s is not a boolean", key,
                                     v);
        return 0;
}

int nst_transport_settings_load(const struct nst_config *cfg, struct nst_transport_settings *ret,
                                struct nst_error *err) {
        struct nst_transport_settings t = {0};
        const char *R = "oslo_messaging_rabbit";
        int r;

        r = nst_transport_url_parse(nst_config_get_string(cfg, "DEFAULT", "transport_url"), &t.url,
                                    err);
        if (r < 0)
                return r;
        t.exchange = nst_config_get_string(cfg, "DEFAULT", "control_exchange");
        t.queues = (struct nst_queue_opts){
                .durable = nst_config_get_bool(cfg, R, "amqp_durable_queues"),
                .auto_delete = nst_config_get_bool(cfg, R, "amqp_auto_delete"),
                .ha = nst_config_get_bool(cfg, R, "rabbit_ha_queues"),
                .quorum = nst_config_get_bool(cfg, R, "rabbit_quorum_queue"),
        };
        if ((r = query_bool(&t.url, "amqp_durable_queues", &t.queues.durable, err)) < 0 ||
            (r = query_bool(&t.url, "amqp_auto_delete", &t.queues.auto_delete, err)) < 0 ||
            (r = query_bool(&t.url, "rabbit_ha_queues", &t.queues.ha, err)) < 0 ||
            (r = query_bool(&t.url, "rabbit_quorum_queue", &t.queues.quorum, err)) < 0) {
                nst_transport_url_done(&t.url);
                return r;
        }
        t.transient_ttl_ms = nst_config_get_int(cfg, R, "rabbit_transient_queues_ttl") * 1000;
        t.heartbeat_s = (int)nst_config_get_int(cfg, R, "heartbeat_timeout_threshold");
        t.min_backoff_ms = (int64_t)(nst_config_get_float(cfg, R, "rabbit_retry_interval") * 1000);
        t.max_backoff_ms = (int64_t)(nst_config_get_float(cfg, R, "rabbit_interval_max") * 1000);
        if (t.max_backoff_ms < t.min_backoff_ms)
                t.max_backoff_ms = t.min_backoff_ms;
        t.prefetch = (uint16_t)nst_config_get_int(cfg, R, "rabbit_qos_prefetch_count");
        t.tls = (struct nst_tls_opts){
                .ca_file = nst_config_get_string(cfg, "ssl", "ca_file"),
                .cert_file = nst_config_get_string(cfg, "ssl", "cert_file"),
                .key_file = nst_config_get_string(cfg, "ssl", "key_file"),
                .verify_peer = true,
                .verify_hostname = nst_config_get_bool(cfg, "ssl", "verify_hostname"),
        };
        if (!t.tls.cert_file != !t.tls.key_file) {
                nst_transport_url_done(&t.url);
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "[ssl] cert_file and key_file must be set together");
        }
        *ret = t;
        return 0;
}

void nst_transport_settings_done(struct nst_transport_settings *t) {
        nst_transport_url_done(&t->url);
}

char *nst_core_host_name(const struct nst_config *cfg) {
        const char *h = nst_config_get_string(cfg, "DEFAULT", "host");
        if (h && *h)
                return strdup(h);
        char buf[256] = "";
        if (gethostname(buf, sizeof(buf) - 1) < 0 || !buf[0])
                return strdup("localhost");
        return strdup(buf);
}
