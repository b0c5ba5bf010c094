/* The replication plugin module: [replication] options, the replication_*
 * RPC methods of both roles, and what the source and target sides share
 * (agent-to-agent calls, notifications, state files). A node can be the
 * source of some replications and the target of others at the same time
 * (docs/replication.md). */
#define NST_LOG_MODULE "replication"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/fs_util.h"
#include "agent/log.h"
#include "agent/rpc_client.h"
#include "messages/json_util.h"
#include "messages/notification.h"
#include "plugins/libvirt/lv_util.h"
#include "plugins/replication/repl_plugin.h"

static const struct nst_option options[] = {
        {"listen_address", NST_OPT_STRING, "0.0.0.0",
         "Address the replication data channel listens on (this node as a target)"},
        {"listen_port", NST_OPT_INT, "31031",
         "TCP port of the replication data channel; 0 picks a free port at start", 0, 65535},
        {"advertise_address", NST_OPT_STRING, "",
         "Address sources connect to for replications to this node; empty: listen_address "
         "unless it is a wildcard, else the host option"},
        {"cert_file", NST_OPT_STRING, "",
         "PEM certificate of this node for the data channel; with key_file and ca_file, peers "
         "authenticate with certificates instead of per-replication pre-shared keys"},
        {"key_file", NST_OPT_STRING, "", "PEM private key of cert_file"},
        {"ca_file", NST_OPT_STRING, "", "PEM CA bundle the peer's certificate must verify against"},
        {"max_concurrent_cycles", NST_OPT_INT, "4",
         "Replication cycles this node runs at once as a source", 1, 256},
        {"stream_depth", NST_OPT_INT, "16", "NBD reads in flight per disk while shipping", 1, 64},
        {"mark_interval_mb", NST_OPT_INT, "256",
         "MiB at least between two marks (the target makes what a cycle sent so far durable; "
         "a broken connection resumes from the last mark)",
         1, 65536},
        {"mark_interval_s", NST_OPT_INT, "10",
         "Seconds at least between two marks: the stream waits at each while the target "
         "flushes, so on a fast link a byte interval alone would stall it often (0: bytes "
         "alone)",
         0, 3600},
        {"connect_timeout", NST_OPT_INT, "10", "Seconds to connect to a target's data channel", 1,
         600},
        {"io_timeout", NST_OPT_INT, "60",
         "Seconds the data channel waits for its peer before giving up", 1, 3600},
        {"connect_retries", NST_OPT_INT, "3",
         "Reconnections within one cycle before it fails (each resumes from the last mark)", 0,
         100},
        {"rpc_timeout", NST_OPT_FLOAT, "30",
         "Seconds to wait for the other agent's answer on the bus", 1, 600},
        {"primary_check_timeout", NST_OPT_FLOAT, "10",
         "Seconds failover (and a handover to a new source) waits for the source agent to "
         "say whether the primary runs",
         1, 600},
        {"probe_command", NST_OPT_STRING, "ping -c 1 -W 1 {address}",
         "Command failover runs for each of the primary's addresses; exit status 0 means the "
         "primary is reachable and failover is refused (empty: no probe)"},
};

/* ---- small shared helpers ---- */

bool repl_uuid_valid(const char *s) {
        if (!s || strlen(s) != 36)
                return false;
        for (int i = 0; i < 36; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;
                if (dash ? s[i] != '-' : !strchr("0123456789abcdef", s[i]))
                        return false;
        }
        return true;
}

void repl_hex_encode(const uint8_t *in, size_t n, char *out) {
        static const char digits[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[in[i] >> 4];
                out[2 * i + 1] = digits[in[i] & 15];
        }
        out[2 * n] = '\0';
}

int repl_hex_decode(const char *in, uint8_t *out, size_t n) {
        if (!in || strlen(in) != 2 * n)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                int hi = nst_hex_digit(in[2 * i]), lo = nst_hex_digit(in[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                out[i] = (uint8_t)(hi << 4 | lo);
        }
        return 0;
}

static int64_t clock_ms(clockid_t id) {
        struct timespec ts;
        clock_gettime(id, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
int64_t repl_now_ms(void) { return clock_ms(CLOCK_REALTIME); }
int64_t repl_mono_ms(void) { return clock_ms(CLOCK_MONOTONIC); }

const char *repl_iso_time(int64_t ms, char *buf, size_t size) {
        if (ms <= 0) {
                buf[0] = '\0';
                return buf;
        }
        time_t t = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
        return buf;
}

int repl_write_json(const char *path, json_object *obj, struct nst_error *err) {
        char tmp[4096];
        if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
                return nst_error_set(err, -ENAMETOOLONG, "StorageError", "path too long: %s", path);
        const char *text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PRETTY |
                                                                   JSON_C_TO_STRING_NOSLASHESCAPE);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return nst_error_set(err, -errno, "StorageError", "cannot write %s: %s", tmp,
                                     strerror(errno));
        size_t len = strlen(text), done = 0;
        int r = 0;
        while (done < len) {
                ssize_t n = write(fd, text + done, len - done);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        break;
                }
                done += (size_t)n;
        }
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp);
                return nst_error_set(err, r, r == -ENOSPC ? "InsufficientStorage" : "StorageError",
                                     "cannot write %s: %s", path, strerror(-r));
        }
        _cleanup_free_ char *dir_copy = strdup(path);
        if (dir_copy) {
                int dfd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (dfd >= 0) {
                        (void)fsync(dfd);
                        close(dfd);
                }
        }
        return 0;
}

int repl_read_json(const char *path, json_object **ret, struct nst_error *err) {
        FILE *f = fopen(path, "re");
        if (!f) {
                if (errno == ENOENT)
                        return -ENOENT;
                return nst_error_set(err, -errno, "StorageError", "cannot read %s: %s", path,
                                     strerror(errno));
        }
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        FILE *mem = open_memstream(&buf, &size);
        int r = 0;
        if (!mem)
                r = -ENOMEM;
        char chunk[8192];
        size_t n;
        while (r == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
                if (fwrite(chunk, 1, n, mem) != n)
                        r = -ENOMEM;
        if (ferror(f))
                r = -EIO;
        fclose(f);
        if (mem)
                fclose(mem);
        if (r < 0)
                return nst_error_set(err, r, "StorageError", "cannot read %s: %s", path,
                                     strerror(-r));
        json_object *o = NULL;
        if (nst_json_parse(buf, size, &o, err) < 0 || !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return nst_error_set(err, -EBADMSG, "ReplicaCorrupt",
                                     "%s is not a JSON object", path);
        }
        *ret = o;
        return 0;
}

/* ---- agent-to-agent calls, notifications, instances ---- */

int repl_call_agent(struct repl_plugin *p, const char *host, const char *method, json_object *args,
                    double timeout_s, json_object **ret, struct nst_error *err) {
        struct nst_rpc_client *c = NULL;
        int r = nst_rpc_client_new(&p->ts, NST_RPC_TOPIC, &c, err);
        if (r < 0)
                return r;
        r = nst_rpc_client_call(c, host, method, args, NULL, NULL, timeout_s, ret, err);
        nst_rpc_client_free(c);
        return r;
}

void repl_notify(struct repl_plugin *p, const char *event_type, json_object *data,
                 const struct nst_error *fault) {
        if (!json_object_object_get(data, "host"))
                json_object_object_add(data, "host", json_object_new_string(p->host_name));
        if (fault && nst_error_is_set(fault)) {
                json_object *f = json_object_new_object();
                json_object_object_add(f, "exception", json_object_new_string(fault->cls));
                json_object_object_add(f, "exception_message",
                                       json_object_new_string(fault->message));
                json_object_object_add(data, "fault",
                                       nst_versioned_object("ExceptionPayload", "nova", "1.1", f));
        }
        json_object *payload = nst_versioned_object("ReplicationPayload", "nestor", "1.0", data);
        struct nst_error e = NST_ERROR_INIT;
        enum nst_priority prio = fault && nst_error_is_set(fault) ? NST_PRIO_ERROR : NST_PRIO_INFO;
        if (strstr(event_type, "rpo_violation") || strstr(event_type, "refused") ||
            strstr(event_type, "chain_broken") || strstr(event_type, "unavailable"))
                prio = NST_PRIO_WARN;
        if (nst_host_notify(p->host, event_type, prio, payload, NULL, &e) < 0)
                log_warning("cannot send %s: %s", event_type, e.message);
}

int repl_domain_open(struct repl_plugin *p, const char *id, virConnectPtr *ret_conn,
                     virDomainPtr *ret_dom, struct nst_error *err) {
        virConnectPtr conn = NULL;
        int r = p->libvirt->get(p->libvirt->self, &conn, err);
        if (r < 0)
                return r;
        virDomainPtr dom = NULL;
        if (repl_uuid_valid(id))
                dom = virDomainLookupByUUIDString(conn, id);
        if (!dom)
                dom = virDomainLookupByName(conn, id);
        if (!dom) {
                virErrorPtr e = virGetLastError();
                r = e && e->code == VIR_ERR_NO_DOMAIN
                            ? nst_error_set(err, -ENOENT, "InstanceNotFound",
                                            "instance %s not found on this host", id)
                            : nst_lv_error(err, -EIO, "HypervisorError",
                                           "cannot look up instance %s", id);
                virConnectClose(conn);
                return r;
        }
        *ret_conn = conn;
        *ret_dom = dom;
        return 0;
}

/* ---- methods answered for both roles ---- */

static int m_status(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                    struct nst_error *err) {
        struct repl_plugin *p = ud;
        const char *id = NULL;
        int r = nst_json_req_string(args, "replication", "replication_status", &id, err);
        if (r < 0)
                return r;
        if (repl_source_status(p->src, id, ret) == 0 || repl_target_status(p->tgt, id, ret) == 0)
                return 0;
        return nst_error_set(err, -ENOENT, "ReplicationNotFound",
                             "replication %s is not known on this host (neither source nor "
                             "target)",
                             id);
}

static int m_list(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                  struct nst_error *err) {
        struct repl_plugin *p = ud;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "source", repl_source_list(p->src));
        json_object_object_add(o, "target", repl_target_list(p->tgt));
        *ret = o;
        return 0;
}

/* ---- lifecycle ---- */

static void plugin_free(struct repl_plugin *p) {
        if (!p)
                return;
        repl_source_free(p->src);
        repl_target_free(p->tgt);
        if (p->ts_loaded)
                nst_transport_settings_done(&p->ts);
        free(p->o.listen_address);
        free(p->o.advertise_address);
        free((char *)p->o.tls.cert_file);
        free((char *)p->o.tls.key_file);
        free((char *)p->o.tls.ca_file);
        free(p->o.probe_command);
        free(p->state_dir);
        free(p->host_name);
        free(p);
}

static int init(struct nst_host *host, void **ret_priv, struct nst_error *err) {
        struct repl_plugin *p = calloc(1, sizeof(*p));
        if (!p)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        p->host = host;
        int r = nst_host_register_options(host, REPL_SECTION, options, NST_ARRAY_SIZE(options),
                                          err);
        if (r >= 0)
                r = repl_source_new(p, &p->src, err);
        if (r >= 0)
                r = repl_target_new(p, &p->tgt, err);
        const struct nst_method shared[] = {
                {"replication_status", "1.0", m_status, p},
                {"replication_list", "1.0", m_list, p},
        };
        for (size_t i = 0; r >= 0 && i < NST_ARRAY_SIZE(shared); i++)
                r = nst_host_register_method(host, NULL, &shared[i], err);
        for (size_t i = 0; r >= 0 && i < repl_source_n_methods; i++) {
                struct nst_method m = repl_source_methods[i];
                m.userdata = p->src;
                r = nst_host_register_method(host, NULL, &m, err);
        }
        for (size_t i = 0; r >= 0 && i < repl_target_n_methods; i++) {
                struct nst_method m = repl_target_methods[i];
                m.userdata = p->tgt;
                r = nst_host_register_method(host, NULL, &m, err);
        }
        if (r < 0) {
                plugin_free(p);
                return r;
        }
        *ret_priv = p;
        return 0;
}

static char *opt_string_or_null(const struct nst_config *cfg, const char *name) {
        const char *v = nst_config_get_string(cfg, REPL_SECTION, name);
        return v && *v ? strdup(v) : NULL;
}

static int load_options(struct repl_plugin *p, struct nst_error *err) {
        const struct nst_config *cfg = nst_host_config(p->host);
        struct repl_options *o = &p->o;
        o->listen_address = strdup(nst_config_get_string(cfg, REPL_SECTION, "listen_address"));
        o->listen_port = (int)nst_config_get_int(cfg, REPL_SECTION, "listen_port");
        o->advertise_address = opt_string_or_null(cfg, "advertise_address");
        o->tls.cert_file = opt_string_or_null(cfg, "cert_file");
        o->tls.key_file = opt_string_or_null(cfg, "key_file");
        o->tls.ca_file = opt_string_or_null(cfg, "ca_file");
        o->max_running = (int)nst_config_get_int(cfg, REPL_SECTION, "max_concurrent_cycles");
        o->stream_depth = (unsigned)nst_config_get_int(cfg, REPL_SECTION, "stream_depth");
        o->mark_bytes = (uint64_t)nst_config_get_int(cfg, REPL_SECTION, "mark_interval_mb") << 20;
        o->mark_ms = (int64_t)nst_config_get_int(cfg, REPL_SECTION, "mark_interval_s") * 1000;
        o->connect_timeout_ms = (int)nst_config_get_int(cfg, REPL_SECTION, "connect_timeout") *
                                1000;
        o->io_timeout_ms = (int)nst_config_get_int(cfg, REPL_SECTION, "io_timeout") * 1000;
        o->connect_retries = (int)nst_config_get_int(cfg, REPL_SECTION, "connect_retries");
        o->rpc_timeout_s = nst_config_get_float(cfg, REPL_SECTION, "rpc_timeout");
        o->primary_check_timeout_s = nst_config_get_float(cfg, REPL_SECTION,
                                                          "primary_check_timeout");
        o->probe_command = opt_string_or_null(cfg, "probe_command");
        if (!o->listen_address)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        int n_tls = !!o->tls.cert_file + !!o->tls.key_file + !!o->tls.ca_file;
        if (n_tls != 0 && n_tls != 3)
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "[replication] cert_file, key_file and ca_file go together "
                                     "(certificate mode) or are all empty (pre-shared keys)");
        if (o->probe_command && !strstr(o->probe_command, "{address}"))
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "[replication] probe_command must contain {address}: '%s'",
                                     o->probe_command);
        const char *state_path = nst_config_get_string(cfg, "DEFAULT", "state_path");
        if (asprintf(&p->state_dir, "%s/replication", state_path) < 0) {
                p->state_dir = NULL;
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        /* 0711: QEMU (another user) reaches the NBD sockets under run/ and the
         * recovered instances' images, without listing anything. */
        int r = nst_mkdir_p(p->state_dir, 0711);
        if (r >= 0 && chmod(p->state_dir, 0711) < 0)
                r = -errno;
        if (r < 0)
                return nst_error_set(err, r, "ConfigError", "cannot create %s: %s", p->state_dir,
                                     strerror(-r));
        p->host_name = strdup(nst_host_name(p->host));
        if (!p->host_name)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        if ((r = nst_transport_settings_load(cfg, &p->ts, err)) < 0)
                return r;
        p->ts_loaded = true;
        return 0;
}

static int start(void *priv, struct nst_error *err) {
        struct repl_plugin *p = priv;
        p->libvirt = nst_host_lookup(p->host, NST_LIBVIRT_CONN_IFACE);
        if (!p->libvirt)
                return nst_error_set(err, -ENOENT, "ConfigError",
                                     "the replication plugin needs the libvirt plugin: add "
                                     "libvirt before replication to enabled_plugins");
        int r = load_options(p, err);
        if (r >= 0)
                r = repl_target_start(p->tgt, err);
        if (r >= 0)
                r = repl_source_start(p->src, err);
        return r;
}

static void stop(void *priv) { plugin_free(priv); }

NST_PLUGIN_EXPORT const struct nst_plugin_info nst_plugin = {
        .api_version = NST_PLUGIN_API_VERSION,
        .name = "replication",
        .description = "VM replication to another node: changed-block tracking, RPO schedules, "
                       "points in time, guarded failover",
        .init = init,
        .start = start,
        .stop = stop,
};
