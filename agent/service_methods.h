/* The agent's built-in RPC methods: ping and get_service_info. */
#ifndef NESTOR_AGENT_SERVICE_METHODS_H
#define NESTOR_AGENT_SERVICE_METHODS_H

#include "agent/host.h"
#include "agent/rpc_server.h"

struct nst_service_state {
        struct nst_host *host;
        struct nst_rpc_server *server; /* set once the server exists */
        const char *topic, *exchange;
};

/* Registers the methods; st must outlive the host. */
int nst_service_methods_register(struct nst_host *host, struct nst_service_state *st,
                                 struct nst_error *err);

#endif
