/* The plugin API: everything a Nestor plugin may use from the agent.
 *
 * A plugin is a shared module under plugins/<name>/ that exports one symbol,
 * `nst_plugin` (struct nst_plugin_info). The agent loads the modules named
 * in [DEFAULT] enabled_plugins and calls, in order:
 *   init(host)   register options, methods, periodic tasks, report sections
 *                and interfaces; do no I/O (the config is not resolved yet)
 *   start(priv)  the config is resolved: read options, open connections
 *   stop(priv)   the agent is shutting down; in-flight calls have finished
 * Every callback returns 0 or a negative errno and fills err.
 *
 * Method handlers run on worker threads, concurrently with each other and
 * with periodic tasks; a plugin protects its own state. A handler may take
 * minutes: the agent keeps AMQP heartbeats and call-monitor heartbeats going. */
#ifndef NESTOR_AGENT_PLUGIN_H
#define NESTOR_AGENT_PLUGIN_H

#include <json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/config.h"
#include "messages/error.h"
#include "messages/notification.h"

#define NST_PLUGIN_API_VERSION 1

struct nst_host; /* the agent, as plugins see it */
struct nst_call; /* one RPC request being handled */

/* A method handler. args is borrowed (always an object). On success return 0
 * and set *ret_result to an owned value (or leave it NULL for JSON null). On
 * failure return a negative errno with err filled: its class is what the
 * caller sees (e.g. "InvalidInput", "InstanceNotFound", "ValueError"). */
typedef int (*nst_method_fn)(struct nst_call *call, json_object *args, void *userdata,
                             json_object **ret_result, struct nst_error *err);

struct nst_method {
        const char *name;       /* no leading '_' */
        const char *version;    /* "X.Y": the newest version this handler serves */
        nst_method_fn fn;
        void *userdata;
};

/* A state report section: *ret_section is an owned JSON value. */
typedef int (*nst_report_fn)(void *userdata, json_object **ret_section, struct nst_error *err);

/* Plugins are built with hidden visibility; the entry symbol must be seen:
 *   NST_PLUGIN_EXPORT const struct nst_plugin_info nst_plugin = {...}; */
#define NST_PLUGIN_EXPORT __attribute__((visibility("default")))

struct nst_plugin_info {
        unsigned api_version;   /* NST_PLUGIN_API_VERSION */
        const char *name;       /* must match the module file name */
        const char *description;
        int (*init)(struct nst_host *host, void **ret_priv, struct nst_error *err);
        int (*start)(void *priv, struct nst_error *err);   /* optional */
        void (*stop)(void *priv);                           /* optional; frees priv */
};

/* Registration, from init (periodic tasks may also be added from start, when
 * their interval is an option). namespace_ NULL is the default namespace. */
int nst_host_register_method(struct nst_host *h, const char *namespace_,
                             const struct nst_method *m, struct nst_error *err);
int nst_host_register_options(struct nst_host *h, const char *section,
                              const struct nst_option *opts, size_t n, struct nst_error *err);
/* fn runs on a worker every interval_ms, first after initial_delay_ms. */
int nst_host_register_periodic(struct nst_host *h, const char *name, int64_t interval_ms,
                               int64_t initial_delay_ms, void (*fn)(void *userdata),
                               void *userdata, struct nst_error *err);
int nst_host_register_report(struct nst_host *h, const char *section, nst_report_fn fn,
                             void *userdata, struct nst_error *err);

/* Interfaces between plugins: one provides an implementation under a name
 * (e.g. "pci-claims"), another looks it up after init. */
int nst_host_provide(struct nst_host *h, const char *iface, void *impl, struct nst_error *err);
void *nst_host_lookup(struct nst_host *h, const char *iface);

/* Services. */
const struct nst_config *nst_host_config(const struct nst_host *h);
const char *nst_host_name(const struct nst_host *h); /* the `host` option */
/* Publishes a notification (versioned style, publisher nestor-compute:<host>).
 * payload is taken; context borrowed, may be NULL. Thread-safe; the message is
 * published by the I/O thread with publisher confirms. */
int nst_host_notify(struct nst_host *h, const char *event_type, enum nst_priority priority,
                    json_object *payload, json_object *context, struct nst_error *err);

/* nst_host_cast() flags. */
#define NST_CAST_BEST_EFFORT 0x1u /* drop rather than keep while the broker is away */

/* Publishes an oslo RPC cast (2.0 envelope, no reply, no version: "1.0")
 * of method(**args) through the agent's own connection.
 *   fanout false: to the control exchange with routing key `topic`, as an
 *                 oslo RPCClient cast to Target(topic) does (pass
 *                 "<topic>.<server>" to address one server);
 *   fanout true:  to exchange "<topic>_fanout" (declared by the agent as
 *                 oslo does, once per connection), so every oslo RPC server
 *                 with Target(topic=topic, fanout=True) gets a copy and,
 *                 with no consumer, the broker drops it.
 * args is taken on every path (NULL means {}); it must be an object.
 *
 * Never blocks: the message is handed to the I/O thread. Without flags it
 * is kept while the broker is away and republished until confirmed, like a
 * reply or a notification. With NST_CAST_BEST_EFFORT it is for state that
 * the next message supersedes (periodic reports): when there is no
 * connection now the call returns -ENOTCONN (class MessageDeliveryFailure,
 * logged at debug only) and nothing is kept; a message accepted (0) may
 * still be lost if the connection drops before the broker takes it, and is
 * never republished after a reconnect. Use nst_host_connection_generation()
 * to tell when to send a full state again.
 *
 * Thread-safe; callable from start() until stop() (-ENOTCONN when the
 * agent has no transport, e.g. in unit tests). Other errors: -EINVAL
 * (InvalidInput: empty topic or method, topic over 200 bytes, args not an
 * object, unknown flags), -ENOMEM. */
int nst_host_cast(struct nst_host *h, const char *topic, bool fanout, const char *method,
                  json_object *args, unsigned flags, struct nst_error *err);

/* How many times the agent has connected to the broker (0 before the first
 * connection; +1 on every successful reconnect). A plugin that sends deltas
 * remembers the generation its last message went out on and sends a full
 * state when it changed: consumers may have missed anything in between.
 * Thread-safe. */
uint64_t nst_host_connection_generation(const struct nst_host *h);

/* Collects every registered report section into one object (owned). */
json_object *nst_host_collect_report(struct nst_host *h);

/* The request being handled. */
json_object *nst_call_context(const struct nst_call *c); /* borrowed, never NULL */
const char *nst_call_method(const struct nst_call *c);
const char *nst_call_request_id(const struct nst_call *c); /* may be NULL */
bool nst_call_is_cast(const struct nst_call *c);
struct nst_host *nst_call_host(const struct nst_call *c);

#endif
