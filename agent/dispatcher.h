/* The method table and oslo's dispatch rules:
 *  - a method is found by (namespace, name) with a registered version
 *    compatible with the requested one;
 *  - a name that exists in the namespace but with no compatible version, or
 *    an unknown name when no registered version in the namespace is
 *    compatible, is UnsupportedVersion ("Endpoint does not support RPC
 *    version X.Y. Attempted method: M");
 *  - otherwise an unknown name (or one starting with '_') is NoSuchMethod
 *    ("Endpoint does not support RPC method M").
 * Both errors use module oslo_messaging.rpc.dispatcher, like oslo. */
#ifndef NESTOR_AGENT_DISPATCHER_H
#define NESTOR_AGENT_DISPATCHER_H

#include <json.h>
#include <stdbool.h>

#include "agent/plugin.h"
#include "messages/error.h"
#include "messages/version.h"

struct nst_dispatch_entry {
        char *namespace_; /* NULL = default */
        char *name;
        struct nst_version version;
        char *version_str;
        nst_method_fn fn;
        void *userdata;
        char *owner;      /* plugin name or "agent" */
        bool io_thread;   /* runs on the I/O thread: agent built-ins that never block */
};

struct nst_dispatcher;

int nst_dispatcher_new(struct nst_dispatcher **ret);
void nst_dispatcher_free(struct nst_dispatcher *d);

/* -EEXIST (InvalidInput) when (namespace, name, major) is already taken;
 * -EINVAL for a bad name or version. */
int nst_dispatcher_add(struct nst_dispatcher *d, const char *namespace_, const struct nst_method *m,
                       const char *owner, struct nst_error *err);

/* Registers one of the agent's own methods that returns in microseconds
 * without blocking (ping, get_service_info): it is answered on the I/O
 * thread. Plugins never get this; their code may block. */
int nst_dispatcher_add_builtin(struct nst_dispatcher *d, const char *namespace_,
                               const struct nst_method *m, struct nst_error *err);

/* Looks up a method; version NULL means "1.0". The entry stays valid for the
 * dispatcher's life (no removal while serving). */
int nst_dispatcher_find(const struct nst_dispatcher *d, const char *namespace_, const char *name,
                        const char *version, const struct nst_dispatch_entry **ret,
                        struct nst_error *err);

/* [{"namespace", "name", "version", "plugin"}...] sorted by namespace, name. */
json_object *nst_dispatcher_describe(const struct nst_dispatcher *d);

#endif
