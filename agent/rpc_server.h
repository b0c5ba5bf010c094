/* The oslo.messaging RPC server: the I/O thread that owns the AMQP
 * connection.
 *
 * It declares what an oslo server for Target(topic, server) declares,
 * consumes the three queues, decodes and validates each request, drops
 * duplicates and expired requests, resolves the method, and hands the call to
 * the worker pool. Workers send results back through the outbox; this thread
 * publishes them with publisher confirms, sends call-monitor heartbeats
 * (ending: false) every _timeout/2 for calls that asked for them, runs the
 * periodic task clock, and reconnects with backoff across the broker hosts,
 * re-declaring everything and republishing what the broker had not confirmed.
 *
 * It never runs plugin code and never blocks longer than half the AMQP
 * heartbeat, so heartbeats flow however long a handler takes. */
#ifndef NESTOR_AGENT_RPC_SERVER_H
#define NESTOR_AGENT_RPC_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "agent/amqp_session.h"
#include "agent/host.h"
#include "agent/outbox.h"
#include "agent/transport_url.h"
#include "agent/worker_pool.h"

struct nst_rpc_server_config {
        const struct nst_transport_url *url;
        struct nst_tls_opts tls;
        const char *exchange;           /* control_exchange */
        const char *topic;              /* "compute" */
        const char *server;             /* the host option */
        struct nst_queue_opts queues;   /* flags for the topic queues (and notification queues) */
        int64_t transient_ttl_ms;       /* x-expires of the fanout queue */
        int heartbeat_s;
        int connect_timeout_ms;
        size_t max_message_bytes;
        int64_t min_backoff_ms, max_backoff_ms;
        uint16_t prefetch;
        int64_t shutdown_grace_ms;      /* how long in-flight calls may take at stop */
        size_t max_pending_publishes;   /* kept while the broker is away */
};

struct nst_rpc_stats {
        unsigned long long received, calls, casts, rejected, duplicates, expired, failures;
        unsigned long long published, confirmed, returned, reconnects;
        int connected;
};

struct nst_rpc_server;

int nst_rpc_server_new(const struct nst_rpc_server_config *c, struct nst_host *host,
                       struct nst_worker_pool *pool, struct nst_outbox *outbox,
                       struct nst_rpc_server **ret, struct nst_error *err);
void nst_rpc_server_free(struct nst_rpc_server *s);

/* Runs the I/O loop in the calling thread until a requested stop has drained
 * (consumers cancelled, in-flight calls answered and confirmed). Returns 0,
 * -ETIMEDOUT when the grace period ended with jobs still running (they must
 * not be joined), or another negative errno on a fatal error. */
int nst_rpc_server_run(struct nst_rpc_server *s);

/* Thread-safe: asks the loop to stop gracefully. */
void nst_rpc_server_request_stop(struct nst_rpc_server *s);

/* A consistent copy of the counters (thread-safe). */
void nst_rpc_server_stats(struct nst_rpc_server *s, struct nst_rpc_stats *ret);

#endif
