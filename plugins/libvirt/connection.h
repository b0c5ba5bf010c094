/* The agent's one libvirt connection: opened at start, kept alive with
 * keepalive and a close callback, and reopened with backoff when libvirtd
 * goes away, all driven by a thread that runs libvirt's default event loop.
 *
 * Handlers borrow the connection with nst_lv_conn_get() (a reference of
 * their own: the event thread may replace the connection under them) and
 * report failed calls through nst_lv_conn_error(), which recognises a lost
 * connection, schedules the reconnect and turns the error into
 * HypervisorUnavailable. While disconnected, nst_lv_conn_get() fails at once
 * with HypervisorUnavailable and a message saying what is happening.
 *
 * libvirt's event loop is process-wide: at most one nst_lv_conn may run at a
 * time (the plugin has one). */
#ifndef NESTOR_PLUGINS_LIBVIRT_CONNECTION_H
#define NESTOR_PLUGINS_LIBVIRT_CONNECTION_H

#include <json.h>
#include <libvirt/libvirt.h>
#include <stdbool.h>
#include <stdint.h>

#include "messages/error.h"

struct nst_lv_conn;

/* Called on the event thread (and, for the first connection, on the thread
 * calling nst_lv_conn_start). */
struct nst_lv_conn_hooks {
        void *userdata;
        /* A new connection, before handlers can get it: rebuild tables. */
        void (*connected)(void *userdata, virConnectPtr conn);
        /* VIR_DOMAIN_EVENT_ID_LIFECYCLE (event, detail: virDomainEventType...). */
        void (*lifecycle)(void *userdata, virDomainPtr dom, int event, int detail);
        /* VIR_DOMAIN_EVENT_ID_REBOOT: the guest rebooted. */
        void (*reboot)(void *userdata, virDomainPtr dom);
};

struct nst_lv_conn_opts {
        const char *uri;             /* copied */
        int keepalive_interval;      /* seconds; 0 disables keepalive */
        unsigned keepalive_count;
        int64_t min_backoff_ms;      /* reconnect backoff (agent/reconnect.h) */
        int64_t max_backoff_ms;
};

/* Registers libvirt's default event loop (once per process), starts the
 * event thread and makes the first connection attempt synchronously. A
 * failed attempt is not an error: the thread keeps trying (libvirtd may come
 * up after the agent). Errors: out of memory, no thread, no event loop. */
int nst_lv_conn_start(const struct nst_lv_conn_opts *opts, const struct nst_lv_conn_hooks *hooks,
                      struct nst_lv_conn **ret, struct nst_error *err);

/* Closes the connection and joins the event thread. Accepts NULL. No hook
 * runs after it returns. */
void nst_lv_conn_stop(struct nst_lv_conn *c);

/* A new reference to the live connection (release it with
 * virConnectClose), or HypervisorUnavailable. */
int nst_lv_conn_get(struct nst_lv_conn *c, virConnectPtr *ret, struct nst_error *err);

/* For a libvirt call on conn that just failed: when libvirt's last error
 * says the connection is gone (system/RPC/internal error, no connection,
 * and virConnectIsAlive agrees), schedules a reconnect and fills err with
 * HypervisorUnavailable; otherwise fills err like nst_lv_error(code, cls,
 * fmt...). Returns the negative code. Must run on the thread of the failed
 * call (libvirt's last error is per thread). */
int nst_lv_conn_error(struct nst_lv_conn *c, virConnectPtr conn, struct nst_error *err, int code,
                      const char *cls, const char *fmt, ...) _printf_(6, 7);

/* True when libvirt's last error on this thread means conn is unusable. */
bool nst_lv_conn_lost(virConnectPtr conn);

/* Drops conn (if it is the current one) and reconnects with backoff, as if
 * the close callback had fired. */
void nst_lv_conn_mark_lost(struct nst_lv_conn *c, virConnectPtr conn);

/* Waits up to timeout_ms for a live connection (tests, start-up). */
bool nst_lv_conn_wait(struct nst_lv_conn *c, int64_t timeout_ms);

/* {"uri", "state", "connects", "disconnects", "failed_attempts",
 *  "last_error"} (owned). */
json_object *nst_lv_conn_status(struct nst_lv_conn *c);

#endif
