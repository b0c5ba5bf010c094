/* What the replication plugin's parts share (plugin.c, source_side.c,
 * target_side.c): the options, the libvirt connection, agent-to-agent calls
 * and notifications. Internal to the plugin (docs/replication.md). */
#ifndef NESTOR_PLUGINS_REPLICATION_REPL_PLUGIN_H
#define NESTOR_PLUGINS_REPLICATION_REPL_PLUGIN_H

#include <json.h>
#include <libvirt/libvirt.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/core_options.h"
#include "agent/plugin.h"
#include "messages/error.h"
#include "plugins/libvirt/lv_iface.h"
#include "plugins/replication/repl_channel.h"

#define REPL_SECTION "replication"
#define REPL_RPO_MIN_S 60
#define REPL_RPO_MAX_S 86400
#define REPL_POINTS_MAX 64

struct repl_options {
        char *listen_address;
        int listen_port;
        char *advertise_address;     /* what sources connect to */
        struct nst_rc_tls_config tls; /* strings owned; all NULL: pre-shared keys */
        int max_running;
        unsigned stream_depth;
        uint64_t mark_bytes; /* a mark after this many bytes ... */
        int64_t mark_ms;     /* ... and this long since the last one */
        int connect_timeout_ms;
        int io_timeout_ms;
        double rpc_timeout_s;
        double primary_check_timeout_s;
        char *probe_command;
        int connect_retries;
};

struct repl_source;
struct repl_target;

struct repl_plugin {
        struct nst_host *host;
        struct nst_libvirt_conn_iface *libvirt;
        struct repl_options o;
        struct nst_transport_settings ts; /* for calls to the other agent */
        bool ts_loaded;
        char *state_dir;                  /* <state_path>/replication */
        char *host_name;
        struct repl_source *src;
        struct repl_target *tgt;
};

/* A call to `method` on the agent of `host` (topic "compute"), on a
 * connection of its own; *ret owned (may be NULL). */
int repl_call_agent(struct repl_plugin *p, const char *host, const char *method, json_object *args,
                    double timeout_s, json_object **ret, struct nst_error *err);

/* A replication.* notification: data (taken) becomes the payload's
 * nova_object.data; fault (may be NULL) adds a fault object. */
void repl_notify(struct repl_plugin *p, const char *event_type, json_object *data,
                 const struct nst_error *fault);

/* The domain of an instance (uuid or name): InstanceNotFound when absent. */
int repl_domain_open(struct repl_plugin *p, const char *id, virConnectPtr *ret_conn,
                     virDomainPtr *ret_dom, struct nst_error *err);

/* Writes a JSON file atomically (temporary file, fsync, rename, fsync dir). */
int repl_write_json(const char *path, json_object *obj, struct nst_error *err);
/* *ret owned; -ENOENT (err untouched) when the file does not exist. */
int repl_read_json(const char *path, json_object **ret, struct nst_error *err);

bool repl_uuid_valid(const char *s);
void repl_hex_encode(const uint8_t *in, size_t n, char *out); /* out: 2n + 1 */
int repl_hex_decode(const char *in, uint8_t *out, size_t n);   /* exactly 2n hex digits */
int64_t repl_now_ms(void);      /* CLOCK_REALTIME */
int64_t repl_mono_ms(void);     /* CLOCK_MONOTONIC */
/* "2026-11-27T01:02:03Z" into buf (>= 24 bytes); "" for 0. */
const char *repl_iso_time(int64_t ms, char *buf, size_t size);

/* Source side (source_side.c). */
int repl_source_new(struct repl_plugin *p, struct repl_source **ret, struct nst_error *err);
int repl_source_start(struct repl_source *s, struct nst_error *err);
void repl_source_free(struct repl_source *s); /* stops threads first */
extern const struct nst_method repl_source_methods[];
extern const size_t repl_source_n_methods;
json_object *repl_source_list(struct repl_source *s);
/* The status of a replication this host is the source of; -ENOENT. */
int repl_source_status(struct repl_source *s, const char *id, json_object **ret);

/* Target side (target_side.c). */
int repl_target_new(struct repl_plugin *p, struct repl_target **ret, struct nst_error *err);
int repl_target_start(struct repl_target *t, struct nst_error *err);
void repl_target_free(struct repl_target *t);
extern const struct nst_method repl_target_methods[];
extern const size_t repl_target_n_methods;
json_object *repl_target_list(struct repl_target *t);
int repl_target_status(struct repl_target *t, const char *id, json_object **ret);

#endif
