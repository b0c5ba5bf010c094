/* The agent's libvirt connection (see connection.h).
 *
 * Threads: handlers take references under `lock`; everything that opens,
 * registers or tears down runs on the event thread, from one timer (`tick`)
 * that the close callback and failing handlers arm. libvirt is never called
 * with `lock` held, except virConnectRef and virEventUpdateTimeout, which
 * run no callbacks: a close callback can fire synchronously inside any RPC
 * (on the thread that noticed the EOF) and takes `lock` itself. */
#define NST_LOG_MODULE "libvirt"

#include "plugins/libvirt/connection.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/clock.h"
#include "agent/log.h"
#include "agent/reconnect.h"
#include "messages/json_util.h"
#include "plugins/libvirt/lv_util.h"

/* Event-loop turns granted after the last connection is closed, so that
 * libvirt's deferred cleanups (glib idle sources) run before the thread
 * leaves the loop. */
#define DRAIN_TICKS 3
#define DRAIN_INTERVAL_MS 10

struct nst_lv_conn {
        char *uri;
        int keepalive_interval;
        unsigned keepalive_count;
        struct nst_lv_conn_hooks hooks;
        int timer;                      /* the event loop timer running tick() */

        pthread_mutex_t lock;
        pthread_cond_t changed;         /* a connection came up */
        virConnectPtr conn;             /* our reference; NULL while disconnected */
        bool lost;                      /* conn is dead: tick() drops it */
        bool stopping;
        struct nst_reconnect rc;
        unsigned long long failed_attempts;
        char last_error[NST_ERROR_MESSAGE_MAX];

        /* Event thread only (and the starting thread before it exists). */
        int lifecycle_id, reboot_id;
        int drain_ticks;
        bool done;
        pthread_t thread;
        bool thread_started;
};

static void register_event_loop(void) {
        nst_lv_quiet_errors();
        /* Never fails in libvirt >= 6.1 (the glib loop); checked below anyway. */
        if (virEventRegisterDefaultImpl() < 0)
                log_error("cannot register libvirt's event loop: %s", virGetLastErrorMessage());
}

static void on_close(virConnectPtr conn, int reason, void *opaque) {
        static const char *const reasons[] = {"I/O error", "end of file", "keepalive timeout",
                                              "closed by the client"};
        struct nst_lv_conn *c = opaque;
        log_warning("libvirt connection to %s closed: %s", c->uri,
                    reason >= 0 && reason < 4 ? reasons[reason] : "unknown reason");
        nst_lv_conn_mark_lost(c, conn);
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail,
                        void *opaque) {
        struct nst_lv_conn *c = opaque;
        if (c->hooks.lifecycle)
                c->hooks.lifecycle(c->hooks.userdata, dom, event, detail);
        return 0;
}

static void on_reboot(virConnectPtr conn, virDomainPtr dom, void *opaque) {
        struct nst_lv_conn *c = opaque;
        if (c->hooks.reboot)
                c->hooks.reboot(c->hooks.userdata, dom);
}

static bool unsupported(void) {
        virErrorPtr e = virGetLastError();
        return e && e->code == VIR_ERR_NO_SUPPORT;
}

static void teardown(struct nst_lv_conn *c, virConnectPtr conn) {
        /* On a dead connection these fail after dropping the local state,
         * which is all that matters here. */
        if (c->lifecycle_id >= 0)
                virConnectDomainEventDeregisterAny(conn, c->lifecycle_id);
        if (c->reboot_id >= 0)
                virConnectDomainEventDeregisterAny(conn, c->reboot_id);
        c->lifecycle_id = c->reboot_id = -1;
        virConnectUnregisterCloseCallback(conn, on_close);
        virConnectClose(conn);
        virResetLastError();
}

static virConnectPtr open_conn(struct nst_lv_conn *c, struct nst_error *err) {
        virConnectPtr conn = virConnectOpen(c->uri);
        if (!conn) {
                nst_lv_error(err, -EHOSTDOWN, "HypervisorUnavailable",
                             "cannot connect to libvirt at %s", c->uri);
                return NULL;
        }
        /* The test driver has neither keepalive nor close callbacks: they
         * only matter for a daemon that can go away. */
        if (c->keepalive_interval > 0 &&
            virConnectSetKeepAlive(conn, c->keepalive_interval, c->keepalive_count) < 0 &&
            !unsupported()) {
                nst_lv_error(err, -EHOSTDOWN, "HypervisorUnavailable",
                             "libvirt at %s: cannot enable keepalive", c->uri);
                virConnectClose(conn);
                return NULL;
        }
        if (virConnectRegisterCloseCallback(conn, on_close, c, NULL) < 0 && !unsupported()) {
                nst_lv_error(err, -EHOSTDOWN, "HypervisorUnavailable",
                             "libvirt at %s: cannot register a close callback", c->uri);
                virConnectClose(conn);
                return NULL;
        }
        c->lifecycle_id = virConnectDomainEventRegisterAny(
                conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle),
                c, NULL);
        c->reboot_id = c->lifecycle_id < 0 ? -1
                                           : virConnectDomainEventRegisterAny(
                                                     conn, NULL, VIR_DOMAIN_EVENT_ID_REBOOT,
                                                     VIR_DOMAIN_EVENT_CALLBACK(on_reboot), c,
                                                     NULL);
        if (c->reboot_id < 0) {
                nst_lv_error(err, -EHOSTDOWN, "HypervisorUnavailable",
                             "libvirt at %s: cannot register for domain events", c->uri);
                teardown(c, conn);
                return NULL;
        }
        virResetLastError();
        return conn;
}

/* Arms the timer for what the state needs next. Called with lock held. */
static void schedule_locked(struct nst_lv_conn *c, int64_t now) {
        int64_t t;
        if (c->stopping || c->lost)
                t = 0;
        else if (c->conn)
                t = -1;
        else
                t = nst_reconnect_timeout(&c->rc, now);
        /* 0 would make libvirt fire the timer on every loop turn. */
        if (t == 0)
                t = 1;
        virEventUpdateTimeout(c->timer, t > INT_MAX ? INT_MAX : (int)t);
}

static void attempt(struct nst_lv_conn *c) {
        struct nst_error e = NST_ERROR_INIT;
        virConnectPtr conn = open_conn(c, &e);
        int64_t now = nst_now_ms();
        if (!conn) {
                pthread_mutex_lock(&c->lock);
                nst_reconnect_connect_failed(&c->rc, now);
                c->failed_attempts++;
                snprintf(c->last_error, sizeof(c->last_error), "%s", e.message);
                unsigned attempts = c->rc.attempts;
                int64_t wait = nst_reconnect_timeout(&c->rc, now);
                pthread_mutex_unlock(&c->lock);
                /* Not every attempt: a long outage must not flood the log. */
                if (attempts <= 3 || attempts % 20 == 0)
                        log_warning("%s (attempt %u); retrying in %lld ms", e.message, attempts,
                                    (long long)wait);
                return;
        }
        if (c->hooks.connected)
                c->hooks.connected(c->hooks.userdata, conn);
        pthread_mutex_lock(&c->lock);
        bool again = c->rc.n_connects > 0;
        c->conn = conn;
        c->lost = false;
        c->last_error[0] = '\0';
        nst_reconnect_connected(&c->rc, nst_now_ms());
        pthread_cond_broadcast(&c->changed);
        pthread_mutex_unlock(&c->lock);
        log_info("%s libvirt at %s", again ? "reconnected to" : "connected to", c->uri);
}

/* Connects when the backoff allows and no connection is up, then arms the
 * timer for the next step. Called from the event thread and once at start. */
static void connect_if_due(struct nst_lv_conn *c, int64_t now) {
        pthread_mutex_lock(&c->lock);
        bool connect = !c->conn && nst_reconnect_run(&c->rc, now) == NST_RECONNECT_CONNECT;
        pthread_mutex_unlock(&c->lock);
        if (connect)
                attempt(c);
        pthread_mutex_lock(&c->lock);
        schedule_locked(c, nst_now_ms());
        pthread_mutex_unlock(&c->lock);
}

static void tick(int timer, void *opaque) {
        struct nst_lv_conn *c = opaque;
        int64_t now = nst_now_ms();
        pthread_mutex_lock(&c->lock);
        bool stopping = c->stopping;
        virConnectPtr dead = NULL;
        if (c->conn && (c->lost || stopping)) {
                dead = c->conn;
                c->conn = NULL;
                c->lost = false;
                if (!stopping)
                        nst_reconnect_disconnected(&c->rc, now);
        }
        pthread_mutex_unlock(&c->lock);
        if (dead) {
                teardown(c, dead);
                if (!stopping)
                        log_warning("lost the libvirt connection to %s; reconnecting", c->uri);
        }
        if (stopping) {
                if (c->drain_ticks-- > 0) {
                        virEventUpdateTimeout(c->timer, DRAIN_INTERVAL_MS);
                } else {
                        virEventUpdateTimeout(c->timer, -1);
                        c->done = true;
                }
                return;
        }
        connect_if_due(c, now);
}

static void *event_main(void *opaque) {
        struct nst_lv_conn *c = opaque;
        while (!c->done)
                if (virEventRunDefaultImpl() < 0)
                        log_error("libvirt event loop: %s", virGetLastErrorMessage());
        return NULL;
}

static void conn_free(struct nst_lv_conn *c) {
        pthread_cond_destroy(&c->changed);
        pthread_mutex_destroy(&c->lock);
        free(c->uri);
        free(c);
}

int nst_lv_conn_start(const struct nst_lv_conn_opts *opts, const struct nst_lv_conn_hooks *hooks,
                      struct nst_lv_conn **ret, struct nst_error *err) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, register_event_loop);

        struct nst_lv_conn *c = calloc(1, sizeof(*c));
        if (!c || !(c->uri = strdup(opts->uri))) {
                free(c);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        c->keepalive_interval = opts->keepalive_interval;
        c->keepalive_count = opts->keepalive_count;
        if (hooks)
                c->hooks = *hooks;
        c->lifecycle_id = c->reboot_id = -1;
        pthread_mutex_init(&c->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&c->changed, &ca);
        pthread_condattr_destroy(&ca);
        c->drain_ticks = DRAIN_TICKS;
        int64_t now = nst_now_ms();
        /* The seed only spreads a fleet's retries; the address is random enough. */
        nst_reconnect_init(&c->rc, 1, opts->min_backoff_ms, opts->max_backoff_ms,
                           (unsigned)(uintptr_t)c ^ (unsigned)now, now);

        c->timer = virEventAddTimeout(-1, tick, c, NULL);
        if (c->timer < 0) {
                nst_lv_error(err, -ENOTSUP, "RuntimeError", "cannot add a libvirt event timer");
                conn_free(c);
                return -ENOTSUP;
        }
        /* The first attempt before serving, so the tables are rebuilt at start. */
        connect_if_due(c, now);

        int r = -pthread_create(&c->thread, NULL, event_main, c);
        if (r < 0) {
                if (c->conn)
                        teardown(c, c->conn);
                virEventRemoveTimeout(c->timer);
                conn_free(c);
                return nst_error_set(err, r, "RuntimeError",
                                     "cannot start the libvirt event thread: %s", strerror(-r));
        }
        c->thread_started = true;
        *ret = c;
        return 0;
}

void nst_lv_conn_stop(struct nst_lv_conn *c) {
        if (!c)
                return;
        pthread_mutex_lock(&c->lock);
        c->stopping = true;
        schedule_locked(c, nst_now_ms()); /* wakes the loop: tick() closes and drains */
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->thread, NULL);
        virEventRemoveTimeout(c->timer);
        conn_free(c);
}

int nst_lv_conn_get(struct nst_lv_conn *c, virConnectPtr *ret, struct nst_error *err) {
        pthread_mutex_lock(&c->lock);
        if (c->conn && !c->lost) {
                virConnectRef(c->conn);
                *ret = c->conn;
                pthread_mutex_unlock(&c->lock);
                return 0;
        }
        unsigned failed = c->rc.attempts;
        char last[sizeof(c->last_error)];
        snprintf(last, sizeof(last), "%s", c->last_error[0] ? c->last_error : "none yet");
        pthread_mutex_unlock(&c->lock);
        return nst_error_set(err, -EHOSTDOWN, "HypervisorUnavailable",
                             "libvirt at %s is not connected; the agent is reconnecting in the "
                             "background (%u failed attempts so far, last error: %s)",
                             c->uri, failed, last);
}

bool nst_lv_conn_lost(virConnectPtr conn) {
        virErrorPtr e = virGetLastError();
        if (e) {
                switch (e->code) {
                case VIR_ERR_SYSTEM_ERROR:
                case VIR_ERR_NO_CONNECT:
                case VIR_ERR_INTERNAL_ERROR:
                case VIR_ERR_RPC:
                        break;
                default:
                        return false;
                }
        }
        /* Resets the last error: callers read it first. */
        return conn && virConnectIsAlive(conn) != 1;
}

int nst_lv_conn_error(struct nst_lv_conn *c, virConnectPtr conn, struct nst_error *err, int code,
                      const char *cls, const char *fmt, ...) {
        char what[NST_ERROR_MESSAGE_MAX / 2], why[NST_ERROR_MESSAGE_MAX / 2];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        const char *m = virGetLastErrorMessage();
        snprintf(why, sizeof(why), "%s", m ? m : "unknown libvirt error");
        if (nst_lv_conn_lost(conn)) {
                nst_lv_conn_mark_lost(c, conn);
                return nst_error_set(err, -EHOSTDOWN, "HypervisorUnavailable",
                                     "%s: lost the connection to libvirt at %s (%s); the agent "
                                     "is reconnecting",
                                     what, c->uri, why);
        }
        return nst_error_set(err, code, cls, "%s: %s", what, why);
}

void nst_lv_conn_mark_lost(struct nst_lv_conn *c, virConnectPtr conn) {
        pthread_mutex_lock(&c->lock);
        if (c->conn && (!conn || c->conn == conn) && !c->lost) {
                c->lost = true;
                schedule_locked(c, nst_now_ms());
        }
        pthread_mutex_unlock(&c->lock);
}

bool nst_lv_conn_wait(struct nst_lv_conn *c, int64_t timeout_ms) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (timeout_ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&c->lock);
        while (!(c->conn && !c->lost))
                if (pthread_cond_timedwait(&c->changed, &c->lock, &ts) == ETIMEDOUT)
                        break;
        bool up = c->conn && !c->lost;
        pthread_mutex_unlock(&c->lock);
        return up;
}

json_object *nst_lv_conn_status(struct nst_lv_conn *c) {
        json_object *o = json_object_new_object();
        pthread_mutex_lock(&c->lock);
        const char *state = c->conn && !c->lost ? "connected"
                            : c->rc.state == NST_RECONNECT_CONNECTING ? "connecting"
                                                                      : "disconnected";
        json_object_object_add(o, "uri", json_object_new_string(c->uri));
        json_object_object_add(o, "state", json_object_new_string(state));
        json_object_object_add(o, "connects", json_object_new_int64((int64_t)c->rc.n_connects));
        json_object_object_add(o, "disconnects",
                               json_object_new_int64((int64_t)c->rc.n_disconnects));
        json_object_object_add(o, "failed_attempts",
                               json_object_new_int64((int64_t)c->failed_attempts));
        json_object_object_add(o, "last_error",
                               nst_json_string_or_null(c->last_error));
        pthread_mutex_unlock(&c->lock);
        return o;
}
