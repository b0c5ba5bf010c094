/* An oslo.messaging RPC client over one AMQP session: what nestorctl uses,
 * and what plugins use to talk to another node's agent. Not thread-safe:
 * one client per thread.
 *
 * Calls publish to the control exchange with routing key "<topic>.<server>"
 * (or "<topic>" when server is NULL), expiration = timeout, and wait on a
 * private reply queue; ending:false heartbeats extend nothing but are
 * accepted, as oslo's client does. Every publish waits for the broker's
 * confirm. */
#ifndef NESTOR_AGENT_RPC_CLIENT_H
#define NESTOR_AGENT_RPC_CLIENT_H

#include <json.h>
#include <stdbool.h>

#include "agent/core_options.h"
#include "messages/error.h"

struct nst_rpc_client;

/* Connects to the first broker host that answers. */
int nst_rpc_client_new(const struct nst_transport_settings *ts, const char *topic,
                       struct nst_rpc_client **ret, struct nst_error *err);
void nst_rpc_client_free(struct nst_rpc_client *c);

/* A call. On a remote failure returns -EREMOTEIO with err holding the remote
 * class and message; on timeout -ETIMEDOUT ("MessagingTimeout"). args and
 * context are borrowed and may be NULL; *ret_result is owned (NULL = null). */
int nst_rpc_client_call(struct nst_rpc_client *c, const char *server, const char *method,
                        json_object *args, const char *version, json_object *context,
                        double timeout_s, json_object **ret_result, struct nst_error *err);

/* A cast, or a fanout cast to every server of the topic. */
int nst_rpc_client_cast(struct nst_rpc_client *c, const char *server, const char *method,
                        json_object *args, const char *version, json_object *context,
                        bool fanout, struct nst_error *err);

#endif
