/* The agent side of the plugin API (agent/plugin.h): owns the method table,
 * periodic tasks, report sections, inter-plugin interfaces and the loaded
 * plugins. Plugins see it as the opaque struct nst_host. */
#ifndef NESTOR_AGENT_HOST_H
#define NESTOR_AGENT_HOST_H

#include <pthread.h>
#include <stdint.h>

#include "agent/dispatcher.h"
#include "agent/notifier.h"
#include "agent/outbox.h"
#include "agent/plugin.h"
#include "agent/timer.h"

struct nst_host_plugin {
        const struct nst_plugin_info *info;
        void *dl;        /* dlopen handle; NULL for built-in plugins */
        void *priv;
        bool live;       /* init() succeeded and stop() has not run: priv is valid */
        bool started;
};

struct nst_host_report {
        char *section;
        nst_report_fn fn;
        void *userdata;
};

struct nst_host_iface {
        char *name;
        void *impl;
};

struct nst_host {
        struct nst_config *cfg;        /* borrowed */
        char *host_name;
        int64_t started_ms;            /* monotonic, for uptime */
        struct nst_dispatcher *dispatcher;

        pthread_mutex_t timers_lock;   /* the I/O thread schedules, workers finish */
        struct nst_timers timers;

        struct nst_host_report *reports;
        size_t n_reports;
        struct nst_host_iface *ifaces;
        size_t n_ifaces;
        struct nst_host_plugin *plugins;
        size_t n_plugins;
        const char *initializing;      /* plugin whose init() is running, for ownership */

        struct nst_notifier *notifier; /* NULL until the transport exists */

        /* Where nst_host_cast() publishes: set by the RPC server that owns
         * the connection (rpc_server.c), before plugins start. */
        struct nst_outbox *outbox;     /* NULL while no RPC server is attached */
        char *cast_exchange;           /* control_exchange */
        int connected;                 /* atomic: the I/O thread has a live session */
        uint64_t connection_generation; /* atomic: successful (re)connects so far */
};

int nst_host_new(struct nst_config *cfg, const char *host_name, struct nst_host **ret);
/* Stops plugins (if started) and frees everything. */
void nst_host_free(struct nst_host *h);

/* Registers a plugin compiled into the agent (the built-in methods, tests). */
int nst_host_add_builtin(struct nst_host *h, const struct nst_plugin_info *info,
                         struct nst_error *err);
/* dlopens <dir>/<name>.so for each name and runs its init(). All or nothing:
 * on failure the plugins loaded by this call are unloaded. */
int nst_host_load_plugins(struct nst_host *h, const char *dir, const char *const *names,
                          size_t n, struct nst_error *err);
/* Calls start() of every plugin in load order; stops the started ones on failure. */
int nst_host_start_plugins(struct nst_host *h, struct nst_error *err);
/* Calls stop() of every live plugin in reverse order. Idempotent. */
void nst_host_stop_plugins(struct nst_host *h);

/* The RPC server attaches its outbox and exchange so plugins can cast
 * through its connection, and reports the connection state from its I/O
 * thread. attach replaces an earlier attachment; detach is a no-op when
 * another outbox is attached. Neither may run while plugins are started. */
int nst_host_attach_transport(struct nst_host *h, struct nst_outbox *outbox,
                              const char *exchange);
void nst_host_detach_transport(struct nst_host *h, struct nst_outbox *outbox);
/* true: a session is up (and the connection generation goes up by one). */
void nst_host_set_connected(struct nst_host *h, bool connected);

/* [{"name", "description"}] of loaded plugins (owned). */
json_object *nst_host_describe_plugins(const struct nst_host *h);

#endif
