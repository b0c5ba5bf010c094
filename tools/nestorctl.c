/* nestorctl: call or cast any Nestor RPC method from the command line, and
 * watch the agents' service reports the way a controller would.
 *
 *   nestorctl [options] call METHOD [--args JSON|@FILE]
 *   nestorctl [options] cast METHOD [--args JSON|@FILE] [--fanout]
 *   nestorctl [options] services [--wait SECONDS] [--state FILE]
 *   nestorctl [options] replication status [REPLICATION]
 *   nestorctl [options] replication sync REPLICATION
 *
 * Exit status: 0 success, 1 the remote side raised an error (services: a
 * known host is down), 2 bad usage or configuration, 3 the broker or the
 * agent could not be reached in time. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/amqp_session.h"
#include "agent/clock.h"
#include "agent/config.h"
#include "agent/core_options.h"
#include "agent/log.h"
#include "agent/rpc_client.h"
#include "messages/envelope.h"
#include "messages/json_util.h"
#include "messages/rpc_message.h"
#include "plugins/inventory/liveness.h"

enum { EXIT_REMOTE = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };
enum { EXIT_HOST_DOWN = 1 };

#define MAX_ARGS_BYTES (16 * 1024 * 1024)
#define MAX_STATE_BYTES (64 * 1024 * 1024)
#define MAX_REPORT_BYTES (1024 * 1024)
#define MAX_WAIT_S 86400.0

struct options {
        const char *config_files[16];
        size_t n_config_files;
        const char *host;       /* NULL: any agent of the topic */
        const char *args;       /* JSON text or @file */
        const char *rpc_version;
        double timeout;         /* 0: rpc_response_timeout */
        bool json;
        bool fanout;
        double wait;            /* services: < 0 means report_interval + 2 */
        const char *state;      /* services: NULL means the default state file */
        const char *command, *method;
        const char *subject;    /* replication: the replication id */
};

static void usage(FILE *out) {
        fprintf(out,
                "Usage: nestorctl [OPTIONS] call METHOD [--args JSON|@FILE]\n"
                "       nestorctl [OPTIONS] cast METHOD [--args JSON|@FILE] [--fanout]\n"
                "       nestorctl [OPTIONS] services [--wait SECONDS] [--state FILE]\n"
                "       nestorctl [OPTIONS] replication status [REPLICATION]\n"
                "       nestorctl [OPTIONS] replication sync REPLICATION\n"
                "\n"
                "  --config-file PATH   config with transport_url etc. (default %s)\n"
                "  --host HOST          the agent to address (default: any agent)\n"
                "  --args JSON|@FILE    keyword arguments as a JSON object\n"
                "  --rpc-version X.Y    API version to request (default 1.0)\n"
                "  --timeout SECONDS    call timeout (default rpc_response_timeout)\n"
                "  --fanout             cast to every agent\n"
                "  --json               print the result as JSON\n"
                "\n"
                "services listens to the agents' service reports ([inventory] service_topic)\n"
                "for --wait seconds (default [inventory] report_interval + 2; 0: do not\n"
                "listen), merges them into the --state file (default\n"
                "$XDG_STATE_HOME/nestor/services.json, else ~/.local/state/nestor/services.json)\n"
                "and shows every host it knows as up, or down when it has not reported for\n"
                "longer than its service_down_time.\n"
                "\n"
                "replication status shows a table of the replications of --host (one, or\n"
                "all); replication sync starts a cycle now and shows its progress until it\n"
                "commits (exit 1 when it fails).\n"
                "\n"
                "Exit status: 0 ok, 1 remote error or (services) a host is down, 2 usage or\n"
                "config error, 3 unreachable.\n",
                nst_core_default_config_file());
}

static int parse_options(int argc, char **argv, struct options *o) {
        static const struct option longopts[] = {
                {"config-file", required_argument, NULL, 'c'},
                {"host", required_argument, NULL, 'H'},
                {"args", required_argument, NULL, 'a'},
                {"rpc-version", required_argument, NULL, 'v'},
                {"timeout", required_argument, NULL, 't'},
                {"fanout", no_argument, NULL, 'f'},
                {"json", no_argument, NULL, 'j'},
                {"wait", required_argument, NULL, 'w'},
                {"state", required_argument, NULL, 's'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        int c;
        char *end;
        bool rpc_only = false, services_only = false;

        o->wait = -1;

        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        if (o->n_config_files == NST_ARRAY_SIZE(o->config_files)) {
                                fprintf(stderr, "nestorctl: too many --config-file\n");
                                return -EINVAL;
                        }
                        o->config_files[o->n_config_files++] = optarg;
                        break;
                case 'H':
                        o->host = optarg;
                        rpc_only = true;
                        break;
                case 'a':
                        o->args = optarg;
                        rpc_only = true;
                        break;
                case 'v':
                        o->rpc_version = optarg;
                        rpc_only = true;
                        break;
                case 'w':
                        errno = 0;
                        o->wait = strtod(optarg, &end);
                        if (errno || end == optarg || *end || !(o->wait >= 0) ||
                            o->wait > MAX_WAIT_S) {
                                fprintf(stderr, "nestorctl: --wait: '%s' is not a number of "
                                                "seconds from 0 to %.0f\n",
                                        optarg, MAX_WAIT_S);
                                return -EINVAL;
                        }
                        services_only = true;
                        break;
                case 's':
                        o->state = optarg;
                        services_only = true;
                        break;
                case 't':
                        errno = 0;
                        o->timeout = strtod(optarg, &end);
                        if (errno || *end || o->timeout <= 0) {
                                fprintf(stderr, "nestorctl: --timeout: '%s' is not a positive "
                                                "number of seconds\n",
                                        optarg);
                                return -EINVAL;
                        }
                        rpc_only = true;
                        break;
                case 'f':
                        o->fanout = true;
                        rpc_only = true;
                        break;
                case 'j':
                        o->json = true;
                        break;
                case 'h':
                        usage(stdout);
                        exit(EXIT_SUCCESS);
                default:
                        usage(stderr);
                        return -EINVAL;
                }
        }
        if (argc - optind < 1) {
                usage(stderr);
                return -EINVAL;
        }
        o->command = argv[optind];
        if (strcmp(o->command, "replication") == 0) {
                int n = argc - optind;
                o->method = n > 1 ? argv[optind + 1] : "";
                o->subject = n > 2 ? argv[optind + 2] : NULL;
                bool status = strcmp(o->method, "status") == 0;
                bool sync = strcmp(o->method, "sync") == 0;
                if (!(status && (n == 2 || n == 3)) && !(sync && n == 3)) {
                        usage(stderr);
                        return -EINVAL;
                }
                if (services_only || o->args || o->fanout) {
                        fprintf(stderr, "nestorctl: replication takes no --args, --fanout, "
                                        "--wait or --state\n");
                        return -EINVAL;
                }
                if (o->n_config_files == 0 && access(nst_core_default_config_file(), R_OK) == 0)
                        o->config_files[o->n_config_files++] = nst_core_default_config_file();
                return 0;
        }
        bool services = strcmp(o->command, "services") == 0;
        if (!services && strcmp(o->command, "call") != 0 && strcmp(o->command, "cast") != 0) {
                fprintf(stderr, "nestorctl: unknown command '%s' (call, cast, services or "
                                "replication)\n",
                        o->command);
                return -EINVAL;
        }
        if (argc - optind != (services ? 1 : 2)) {
                usage(stderr);
                return -EINVAL;
        }
        o->method = services ? NULL : argv[optind + 1];
        if (services && rpc_only) {
                fprintf(stderr, "nestorctl: services takes no --host, --args, --rpc-version, "
                                "--timeout or --fanout\n");
                return -EINVAL;
        }
        if (!services && services_only) {
                fprintf(stderr, "nestorctl: --wait and --state are options of services\n");
                return -EINVAL;
        }
        if (o->fanout && strcmp(o->command, "call") == 0) {
                fprintf(stderr, "nestorctl: --fanout is only for cast (oslo refuses fanout calls)\n");
                return -EINVAL;
        }
        if (o->n_config_files == 0 && access(nst_core_default_config_file(), R_OK) == 0)
                o->config_files[o->n_config_files++] = nst_core_default_config_file();
        return 0;
}

static int read_file(const char *path, char **ret, size_t *ret_len, struct nst_error *err) {
        FILE *f = fopen(path, "re");
        if (!f)
                return nst_error_set(err, -errno, "InvalidInput", "--args @%s: %s", path,
                                     strerror(errno));
        char *buf = malloc(MAX_ARGS_BYTES + 1);
        size_t n = buf ? fread(buf, 1, MAX_ARGS_BYTES + 1, f) : 0;
        bool failed = !buf || ferror(f);
        fclose(f);
        if (failed || n > MAX_ARGS_BYTES) {
                free(buf);
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "--args @%s: cannot read it, or larger than %d bytes", path,
                                     MAX_ARGS_BYTES);
        }
        buf[n] = '\0';
        *ret = buf;
        *ret_len = n;
        return 0;
}

static int load_args(const char *spec, json_object **ret, struct nst_error *err) {
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r;

        if (!spec) {
                *ret = json_object_new_object();
                return 0;
        }
        if (spec[0] == '@') {
                r = read_file(spec + 1, &text, &len, err);
                if (r < 0)
                        return r;
        } else {
                text = strdup(spec);
                if (!text)
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                len = strlen(text);
        }
        json_object *obj = NULL;
        r = nst_json_parse(text, len, &obj, err);
        if (r < 0)
                return nst_error_prefix(err, "--args");
        if (!json_object_is_type(obj, json_type_object)) {
                json_object_put(obj);
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "--args must be a JSON object of keyword arguments");
        }
        *ret = obj;
        return 0;
}

/* Readable text: scalars as they are, objects as "key: value" lines, nested
 * values indented. */
static void print_text(json_object *v, int indent) {
        switch (json_object_get_type(v)) {
        case json_type_object: {
                if (json_object_object_length(v) == 0)
                        printf("%*s(empty)\n", indent, "");
                json_object_object_foreach(v, key, val) {
                        bool nested = json_object_is_type(val, json_type_object) ||
                                      json_object_is_type(val, json_type_array);
                        printf("%*s%s:%s", indent, "", key, nested ? "\n" : " ");
                        if (nested)
                                print_text(val, indent + 2);
                        else
                                print_text(val, 0);
                }
                break;
        }
        case json_type_array:
                if (json_object_array_length(v) == 0)
                        printf("%*s(empty)\n", indent, "");
                for (size_t i = 0; i < json_object_array_length(v); i++) {
                        json_object *item = json_object_array_get_idx(v, i);
                        if (json_object_is_type(item, json_type_object)) {
                                printf("%*s-\n", indent, "");
                                print_text(item, indent + 2);
                        } else {
                                printf("%*s- ", indent, "");
                                print_text(item, 0);
                        }
                }
                break;
        case json_type_string:
                printf("%*s%s\n", indent, "", json_object_get_string(v));
                break;
        case json_type_null:
                printf("%*s(none)\n", indent, "");
                break;
        default:
                printf("%*s%s\n", indent, "", json_object_to_json_string(v));
                break;
        }
}

static int exit_code_for(int r) {
        switch (r) {
        case -ETIMEDOUT:
        case -ECONNREFUSED:
        case -ECONNRESET:
        case -EPROTO:
                return EXIT_UNREACHABLE;
        case -EINVAL:
                return EXIT_USAGE;
        default:
                return EXIT_REMOTE;
        }
}

/* ---- services: the controller's view of the agents' service reports ---- */

#define STR_(x) #x
#define STR(x) STR_(x)
#define PRETTY_JSON (JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE)

/* The [inventory] options nestorctl reads, with the agent's defaults
 * (liveness.h), so it works whether or not the plugin is enabled. */
static const struct nst_option services_options[] = {
        {"service_topic", NST_OPT_STRING, NST_LIVENESS_DEFAULT_TOPIC,
         "Topic of the agents' service reports"},
        {"report_interval", NST_OPT_INT, STR(NST_LIVENESS_DEFAULT_INTERVAL_S),
         "Seconds between two service reports", 1, 86400},
        {"service_down_time", NST_OPT_INT, STR(NST_LIVENESS_DEFAULT_DOWN_TIME_S),
         "Seconds without a report after which a host is down", 1, 31536000},
};

struct services_settings {
        const char *topic;
        int64_t report_interval_s;
        int64_t down_time_s;     /* effective; a report's own value wins for its host */
        double wait_s;
        char *state_path;        /* owned */
};

static double wall_seconds(void) {
        return (double)nst_realtime_us() / 1e6;
}

static int default_state_path(char **ret, struct nst_error *err) {
        const char *xdg = getenv("XDG_STATE_HOME");
        const char *home = getenv("HOME");
        int n;

        /* The XDG spec says a relative XDG_STATE_HOME is invalid: ignore it. */
        if (xdg && xdg[0] == '/')
                n = asprintf(ret, "%s/nestor/services.json", xdg);
        else if (home && home[0] == '/')
                n = asprintf(ret, "%s/.local/state/nestor/services.json", home);
        else
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "neither XDG_STATE_HOME nor HOME is set: give --state FILE");
        if (n < 0)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        return 0;
}

static int services_settings_load(const struct options *o, struct nst_config *cfg,
                                  struct services_settings *ret, struct nst_error *err) {
        const char *s = NST_LIVENESS_SECTION;
        int r = nst_config_register(cfg, s, services_options, NST_ARRAY_SIZE(services_options),
                                    err);
        if (r >= 0)
                r = nst_config_resolve(cfg, err);
        if (r < 0)
                return r;
        *ret = (struct services_settings){
                .topic = nst_config_get_string(cfg, s, "service_topic"),
                .report_interval_s = nst_config_get_int(cfg, s, "report_interval"),
        };
        if (!ret->topic || !*ret->topic)
                return nst_error_set(err, -EINVAL, "ConfigError", "[%s] service_topic is empty",
                                     s);
        ret->down_time_s = nst_liveness_effective_down_time(
                nst_config_get_int(cfg, s, "service_down_time"), ret->report_interval_s);
        ret->wait_s = o->wait >= 0 ? o->wait : (double)ret->report_interval_s + 2.0;
        if (o->state) {
                ret->state_path = strdup(o->state);
                if (!ret->state_path)
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                return 0;
        }
        return default_state_path(&ret->state_path, err);
}

/* The state file: {"hosts": {"<host>": {"last_seen": <unix seconds>,
 * "last_seen_at": "<ISO 8601>", "report": {...}}}}. A missing file is an
 * empty state; entries that do not have that shape are dropped. */
static int state_load(const char *path, json_object **ret, struct nst_error *err) {
        _cleanup_json_ json_object *state = NULL;
        _cleanup_free_ char *text = NULL;
        size_t len;
        json_object *hosts;

        if (access(path, F_OK) < 0 && errno == ENOENT) {
                state = json_object_new_object();
                hosts = json_object_new_object();
                if (!state || !hosts || json_object_object_add(state, "hosts", hosts) < 0) {
                        json_object_put(hosts);
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                }
                *ret = nst_steal(&state);
                return 0;
        }
        FILE *f = fopen(path, "re");
        struct stat st;
        if (!f)
                return nst_error_set(err, -errno, "InvalidInput", "state file %s: %s", path,
                                     strerror(errno));
        bool failed = fstat(fileno(f), &st) < 0 || st.st_size > MAX_STATE_BYTES;
        text = failed ? NULL : malloc((size_t)st.st_size + 1);
        /* One byte more than its size: a file that grew meanwhile is refused. */
        len = text ? fread(text, 1, (size_t)st.st_size + 1, f) : 0;
        failed = !text || ferror(f) || len > (size_t)st.st_size;
        fclose(f);
        if (failed)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "state file %s: cannot read it, or larger than %d bytes",
                                     path, MAX_STATE_BYTES);
        if (nst_json_parse(text, len, &state, err) < 0)
                return nst_error_prefix(err, "state file %s (remove it to start afresh)", path);
        if (!json_object_object_get_ex(state, "hosts", &hosts) ||
            !json_object_is_type(hosts, json_type_object))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "state file %s: no \"hosts\" object (remove it to start "
                                     "afresh)",
                                     path);
        json_object *valid = json_object_new_object();
        if (!valid)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        json_object_object_foreach(hosts, name, entry) {
                json_object *seen, *report;
                bool ok = json_object_is_type(entry, json_type_object) &&
                          json_object_object_get_ex(entry, "last_seen", &seen) &&
                          (json_object_is_type(seen, json_type_double) ||
                           json_object_is_type(seen, json_type_int)) &&
                          json_object_object_get_ex(entry, "report", &report) &&
                          json_object_is_type(report, json_type_object);
                if (!ok)
                        fprintf(stderr, "nestorctl: state file %s: ignoring the malformed "
                                        "entry '%s'\n", path, name);
                else if (json_object_object_add(valid, name, json_object_get(entry)) < 0)
                        json_object_put(entry);
        }
        /* Replaces (and frees) the old hosts object. */
        if (json_object_object_add(state, "hosts", valid) < 0) {
                json_object_put(valid);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        *ret = nst_steal(&state);
        return 0;
}

static int mkdir_parents(const char *path) {
        _cleanup_free_ char *dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        for (char *p = dir + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        return 0;
}

/* Written to a temporary file in the same directory and renamed over the old
 * one, so a reader never sees half a file; 0600 whatever the umask. */
static int state_save(const char *path, json_object *state, struct nst_error *err) {
        _cleanup_free_ char *tmp = NULL;
        const char *text = json_object_to_json_string_ext(state, PRETTY_JSON);
        size_t len = strlen(text);
        int r = mkdir_parents(path);

        if (r < 0)
                return nst_error_set(err, r, "InvalidInput", "state file %s: cannot create its "
                                     "directory: %s", path, strerror(-r));
        if (asprintf(&tmp, "%s.tmp.%d", path, (int)getpid()) < 0) {
                tmp = NULL;
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return nst_error_set(err, -errno, "InvalidInput", "state file %s: %s", tmp,
                                     strerror(errno));
        bool ok = fchmod(fd, 0600) == 0;
        for (size_t done = 0; ok && done < len;) {
                ssize_t n = write(fd, text + done, len - done);
                if (n < 0 && errno == EINTR)
                        continue;
                ok = n > 0;
                done += ok ? (size_t)n : 0;
        }
        ok = ok && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
        int saved = errno;
        ok = close(fd) == 0 && ok;
        if (!ok || rename(tmp, path) < 0) {
                saved = errno ? errno : saved;
                unlink(tmp);
                return nst_error_set(err, -saved, "InvalidInput", "state file %s: %s", path,
                                     strerror(saved));
        }
        return 0;
}

/* Takes a delivery apart; returns the report (borrowed from *holder, which
 * the caller frees) or NULL when it is not a usable service report. */
static json_object *report_of(const struct nst_amqp_event *ev, struct nst_rpc_request *req,
                              struct nst_error *err) {
        _cleanup_json_ json_object *inner = NULL;
        json_object *report, *host;

        if (nst_envelope_decode(ev->body, ev->body_len, MAX_REPORT_BYTES, &inner, err) < 0 ||
            nst_rpc_request_decode(inner, req, NULL, NULL, err) < 0)
                return NULL;
        if (strcmp(req->method, NST_LIVENESS_METHOD) != 0) {
                nst_error_set(err, -EINVAL, "InvalidInput", "method %s is not %s", req->method,
                              NST_LIVENESS_METHOD);
                return NULL;
        }
        if (!json_object_object_get_ex(req->args, "report", &report) ||
            !json_object_is_type(report, json_type_object) ||
            !json_object_object_get_ex(report, "host", &host) ||
            !json_object_is_type(host, json_type_string) || json_object_get_string_len(host) == 0 ||
            json_object_get_string_len(host) > 255) {
                nst_error_set(err, -EINVAL, "InvalidInput", "a report without a host name");
                return NULL;
        }
        return report;
}

static int merge_report(json_object *hosts, json_object *report, double now,
                        struct nst_error *err) {
        char at[NST_LIVENESS_ISO_LEN];
        json_object *entry = json_object_new_object();

        nst_liveness_iso8601((int64_t)(now * 1e6), at);
        if (!entry || json_object_object_add(entry, "last_seen", json_object_new_double(now)) < 0 ||
            json_object_object_add(entry, "last_seen_at", json_object_new_string(at)) < 0 ||
            json_object_object_add(entry, "report", json_object_get(report)) < 0 ||
            json_object_object_add(hosts, json_object_get_string(json_object_object_get(report,
                                                                                        "host")),
                                   entry) < 0) {
                json_object_put(entry);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        return 0;
}

static int open_session(const struct nst_transport_settings *ts, struct nst_amqp **ret,
                        struct nst_error *err) {
        int r = -ENOENT;
        for (size_t i = 0; i < ts->url.n_hosts; i++) {
                struct nst_amqp_params p = {
                        .host = &ts->url.hosts[i],
                        .vhost = ts->url.vhost,
                        .tls = ts->url.tls,
                        .tls_opts = ts->tls,
                        .heartbeat_s = ts->heartbeat_s,
                        .connect_timeout_ms = 5000,
                        .connection_name = "nestorctl services",
                };
                nst_error_clear(err);
                r = nst_amqp_open(&p, ret, err);
                if (r >= 0)
                        return 0;
        }
        return r;
}

/* Listens to the fanout exchange for wait_s seconds, merging each report into
 * hosts. Returns the number of reports merged. */
static int listen_reports(const struct nst_transport_settings *ts,
                          const struct services_settings *ss, json_object *hosts,
                          struct nst_error *err) {
        struct nst_amqp *a = NULL;
        _cleanup_free_ char *queue = NULL, *exchange = NULL;
        int merged = 0, ignored = 0;

        if (asprintf(&exchange, "%s_fanout", ss->topic) < 0) {
                exchange = NULL;
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        int r = open_session(ts, &a, err);
        if (r < 0)
                return r;
        /* The same flags as the agents' and oslo's declarations; the queue
         * is ours alone and goes away with us. */
        struct nst_queue_opts q = {.auto_delete = true};
        if ((r = nst_amqp_declare_exchange(a, exchange, "fanout", false, true, err)) < 0 ||
            (r = nst_amqp_declare_queue(a, NULL, &q, true, &queue, err)) < 0 ||
            (r = nst_amqp_bind(a, queue, exchange, ss->topic, err)) < 0 ||
            (r = nst_amqp_consume(a, queue, "services", true, err)) < 0)
                goto out;

        int64_t deadline = nst_now_ms() + (int64_t)(ss->wait_s * 1000.0);
        for (;;) {
                int64_t left = deadline - nst_now_ms();
                if (left <= 0)
                        break;
                struct nst_amqp_event ev;
                r = nst_amqp_next_event(a, (int)(left > 1000 ? 1000 : left), &ev, err);
                if (r < 0)
                        goto out;
                if (ev.type != NST_AMQP_EV_DELIVERY)
                        continue;
                struct nst_rpc_request req = {0};
                struct nst_error rerr = NST_ERROR_INIT;
                json_object *report = report_of(&ev, &req, &rerr);
                if (report)
                        r = merge_report(hosts, report, wall_seconds(), err);
                else
                        ignored++;
                nst_rpc_request_done(&req);
                if (r < 0)
                        goto out;
                merged += report != NULL;
        }
        if (ignored)
                fprintf(stderr, "nestorctl: ignored %d message(s) on %s that were not service "
                                "reports\n", ignored, exchange);
        r = merged;
out:
        nst_amqp_free(a);
        return r;
}

static int64_t int_field(json_object *o, const char *key, int64_t fallback) {
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return fallback;
        return json_object_get_int64(v);
}

static const char *string_field(json_object *o, const char *key) {
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

/* One host as the table and --json show it (owned). */
static json_object *host_status(const char *name, json_object *entry, double now,
                                int64_t default_down_time) {
        json_object *report = json_object_object_get(entry, "report");
        double seen = json_object_get_double(json_object_object_get(entry, "last_seen"));
        int64_t down_time = int_field(report, "service_down_time", 0);
        if (down_time <= 0)
                down_time = default_down_time;
        double ago = now - seen;
        json_object *disabled = json_object_object_get(report, "disabled");
        const char *reason = string_field(report, "disabled_reason");
        const char *binary = string_field(report, "binary");

        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        json_object_object_add(o, "host", json_object_new_string(name));
        json_object_object_add(o, "binary", nst_json_string_or_null(binary));
        json_object_object_add(o, "status", json_object_new_string(ago > (double)down_time ?
                                                                           "down" :
                                                                           "up"));
        json_object_object_add(o, "last_seen",
                               json_object_get(json_object_object_get(entry, "last_seen_at")));
        json_object_object_add(o, "seconds_since_seen", json_object_new_double(ago < 0 ? 0 : ago));
        json_object_object_add(o, "service_down_time", json_object_new_int64(down_time));
        json_object_object_add(o, "report_count",
                               json_object_new_int64(int_field(report, "report_count", 0)));
        json_object_object_add(o, "reports_dropped",
                               json_object_new_int64(int_field(report, "reports_dropped", 0)));
        json_object_object_add(o, "uptime_s",
                               json_object_new_int64(int_field(report, "uptime_s", 0)));
        json_object_object_add(o, "disabled",
                               json_object_new_boolean(json_object_get_boolean(disabled)));
        json_object_object_add(o, "disabled_reason", nst_json_string_or_null(reason));
        json_object_object_add(o, "report", json_object_get(report));
        return o;
}

static int compare_host(const void *a, const void *b) {
        json_object *x = *(json_object *const *)a, *y = *(json_object *const *)b;
        return strcmp(string_field(x, "host"), string_field(y, "host"));
}

static void format_duration(int64_t s, char *buf, size_t size) {
        if (s < 0)
                s = 0;
        if (s >= 86400)
                snprintf(buf, size, "%lldd%02lldh", (long long)(s / 86400),
                         (long long)(s % 86400 / 3600));
        else if (s >= 3600)
                snprintf(buf, size, "%lldh%02lldm", (long long)(s / 3600),
                         (long long)(s % 3600 / 60));
        else if (s >= 60)
                snprintf(buf, size, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
        else
                snprintf(buf, size, "%llds", (long long)s);
}

#define N_COLUMNS 7

static void print_row(char cells[N_COLUMNS][320], const int *width) {
        for (int c = 0; c < N_COLUMNS - 1; c++)
                printf("%-*s  ", width[c], cells[c]);
        printf("%s\n", cells[N_COLUMNS - 1]);
}

static void fill_row(json_object *h, char cells[N_COLUMNS][320]) {
        const char *binary = string_field(h, "binary");
        const char *reason = string_field(h, "disabled_reason");
        char up[32];

        format_duration(int_field(h, "uptime_s", 0), up, sizeof(up));
        snprintf(cells[0], 320, "%s", string_field(h, "host"));
        snprintf(cells[1], 320, "%s", binary ? binary : "?");
        snprintf(cells[2], 320, "%s", string_field(h, "status"));
        /* Whole seconds, rounded down (the value is never negative). */
        json_object *ago = json_object_object_get(h, "seconds_since_seen");
        snprintf(cells[3], 320, "%llds ago", (long long)json_object_get_double(ago));
        snprintf(cells[4], 320, "%lld", (long long)int_field(h, "report_count", 0));
        snprintf(cells[5], 320, "%s", up);
        if (!json_object_get_boolean(json_object_object_get(h, "disabled")))
                snprintf(cells[6], 320, "no");
        else if (reason)
                snprintf(cells[6], 320, "yes (%.300s)", reason);
        else
                snprintf(cells[6], 320, "yes");
}

static void print_table(json_object *list) {
        static const char *const header[N_COLUMNS] = {"HOST",    "BINARY", "STATUS",  "LAST SEEN",
                                                      "REPORTS", "UPTIME", "DISABLED"};
        size_t n = json_object_array_length(list);
        char(*rows)[N_COLUMNS][320] = calloc(n + 1, sizeof(*rows));
        int width[N_COLUMNS] = {0};

        if (!rows) {
                fprintf(stderr, "nestorctl: out of memory\n");
                return;
        }
        for (int c = 0; c < N_COLUMNS; c++)
                snprintf(rows[0][c], 320, "%s", header[c]);
        for (size_t i = 0; i < n; i++)
                fill_row(json_object_array_get_idx(list, i), rows[i + 1]);
        for (size_t i = 0; i <= n; i++)
                for (int c = 0; c < N_COLUMNS; c++)
                        if ((int)strlen(rows[i][c]) > width[c])
                                width[c] = (int)strlen(rows[i][c]);
        for (size_t i = 0; i <= n; i++)
                print_row(rows[i], width);
        if (n == 0)
                printf("(no service report seen yet)\n");
        free(rows);
}

/* Prints the state as of now; returns how many hosts are down. */
static int show_services(json_object *hosts, const struct services_settings *ss, bool json) {
        _cleanup_json_ json_object *list = json_object_new_array();
        double now = wall_seconds();
        int down = 0;

        json_object_object_foreach(hosts, name, entry) {
                json_object *h = host_status(name, entry, now, ss->down_time_s);
                if (!h || json_object_array_add(list, h) < 0) {
                        json_object_put(h);
                        continue;
                }
                down += strcmp(string_field(h, "status"), "down") == 0;
        }
        json_object_array_sort(list, compare_host);
        if (json) {
                _cleanup_json_ json_object *out = json_object_new_object();
                json_object_object_add(out, "hosts", json_object_get(list));
                int n = (int)json_object_array_length(list);
                json_object_object_add(out, "up", json_object_new_int(n - down));
                json_object_object_add(out, "down", json_object_new_int(down));
                printf("%s\n", json_object_to_json_string_ext(out, PRETTY_JSON));
        } else {
                print_table(list);
        }
        return down;
}

static int services_main(const struct options *o, struct nst_config *cfg) {
        struct nst_error err = NST_ERROR_INIT;
        struct services_settings ss = {0};
        struct nst_transport_settings ts;
        _cleanup_json_ json_object *state = NULL;
        int r, status;

        if (services_settings_load(o, cfg, &ss, &err) < 0 ||
            state_load(ss.state_path, &state, &err) < 0) {
                fprintf(stderr, "nestorctl: %s\n", err.message);
                status = EXIT_USAGE;
                goto out;
        }
        json_object *hosts = json_object_object_get(state, "hosts");
        if (ss.wait_s > 0) {
                if (nst_transport_settings_load(cfg, &ts, &err) < 0) {
                        fprintf(stderr, "nestorctl: %s\n", err.message);
                        status = EXIT_USAGE;
                        goto out;
                }
                r = listen_reports(&ts, &ss, hosts, &err);
                nst_transport_settings_done(&ts);
                if (r < 0) {
                        fprintf(stderr, "nestorctl: %s: %s\n", err.cls[0] ? err.cls : "Error",
                                err.message);
                        status = r == -ENOMEM ? EXIT_USAGE : EXIT_UNREACHABLE;
                        goto out;
                }
                if (r > 0 && state_save(ss.state_path, state, &err) < 0) {
                        fprintf(stderr, "nestorctl: %s\n", err.message);
                        status = EXIT_USAGE;
                        goto out;
                }
        }
        status = show_services(hosts, &ss, o->json) > 0 ? EXIT_HOST_DOWN : EXIT_SUCCESS;
out:
        free(ss.state_path);
        return status;
}

/* ---- replication: a table of replications, a sync with its progress ---- */

static const char *jstr(json_object *o, const char *key) {
        const char *v = json_object_get_string(json_object_object_get(o, key));
        return v && *v ? v : "-";
}

static int64_t jint(json_object *o, const char *key) {
        return json_object_get_int64(json_object_object_get(o, key));
}

static const char *human_bytes(uint64_t b, char *buf, size_t size) {
        static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        double v = (double)b;
        size_t u = 0;
        while (v >= 1024 && u + 1 < NST_ARRAY_SIZE(units)) {
                v /= 1024;
                u++;
        }
        snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
        return buf;
}

static const char *human_seconds(int64_t s, char *buf, size_t size) {
        if (s < 0)
                snprintf(buf, size, "-");
        else if (s < 120)
                snprintf(buf, size, "%llds", (long long)s);
        else if (s < 7200)
                snprintf(buf, size, "%lldm", (long long)(s / 60));
        else
                snprintf(buf, size, "%lldh%02lldm", (long long)(s / 3600),
                         (long long)(s % 3600 / 60));
        return buf;
}

static void print_replications(json_object *rows) {
        printf("%-36s  %-6s  %-24s  %-16s  %-24s  %5s  %5s  %-20s  %s\n", "REPLICATION", "ROLE",
               "INSTANCE", "PEER", "STATE", "RPO", "LAG", "LAST POINT", "LAST CYCLE");
        for (size_t i = 0; i < json_object_array_length(rows); i++) {
                json_object *r = json_object_array_get_idx(rows, i);
                bool source = strcmp(jstr(r, "role"), "source") == 0;
                json_object *last = json_object_object_get(r, "last_point");
                json_object *lag = json_object_object_get(r, "lag_seconds");
                char rpo[32], age[32], b1[32], cycle[96], state[64];
                snprintf(state, sizeof(state), "%s%s", jstr(r, "state"),
                         json_object_get_boolean(json_object_object_get(r, "rpo_violation"))
                                 ? " RPO-VIOLATED"
                                 : "");
                if (source)
                        snprintf(cycle, sizeof(cycle), "%s, %s in %lld ms", jstr(r, "kind_last_cycle"),
                                 human_bytes((uint64_t)jint(r, "bytes_last_cycle"), b1, sizeof(b1)),
                                 (long long)jint(r, "duration_ms_last_cycle"));
                else
                        snprintf(cycle, sizeof(cycle), "%zu point(s), %s on disk",
                                 json_object_array_length(json_object_object_get(r, "points")),
                                 human_bytes((uint64_t)jint(r, "allocated_bytes"), b1, sizeof(b1)));
                printf("%-36s  %-6s  %-24s  %-16s  %-24s  %5s  %5s  %-20s  %s\n",
                       jstr(r, "replication"), jstr(r, "role"), jstr(r, "instance_name"),
                       source ? jstr(r, "target_host") : jstr(r, "source_host"), state,
                       source ? human_seconds(jint(r, "rpo"), rpo, sizeof(rpo)) : "-",
                       lag ? human_seconds(json_object_get_int64(lag), age, sizeof(age)) : "-",
                       last ? jstr(last, "time") : "-", cycle);
        }
}

static void draw_progress(json_object *prog, bool tty) {
        uint64_t done = (uint64_t)jint(prog, "bytes_done"), total = (uint64_t)jint(prog,
                                                                                   "bytes_total");
        int pct = total ? (int)(done * 100 / total) : 0;
        char bar[31], b1[32], b2[32];
        for (int i = 0; i < 30; i++)
                bar[i] = i < pct * 30 / 100 ? '#' : '.';
        bar[30] = '\0';
        printf("%s[%s] %3d%%  %s / %s  %s (%s) %.1f s%s", tty ? "\r" : "", bar, pct,
               human_bytes(done, b1, sizeof(b1)), human_bytes(total, b2, sizeof(b2)),
               jstr(prog, "phase"), jstr(prog, "kind"), (double)jint(prog, "elapsed_ms") / 1000,
               tty ? "\033[K" : "\n");
        fflush(stdout);
}

static int replication_sync(struct nst_rpc_client *c, const struct options *o,
                            struct nst_error *err) {
        _cleanup_json_ json_object *args = json_object_new_object(), *st = NULL, *res = NULL;
        json_object_object_add(args, "replication", json_object_new_string(o->subject));
        int r = nst_rpc_client_call(c, o->host, "replication_status", args, NULL, NULL, o->timeout,
                                    &st, err);
        if (r < 0)
                return r;
        int64_t cycles = jint(st, "cycles_total");
        json_object *le = json_object_object_get(st, "last_error");
        int64_t failures = le ? jint(le, "failures") : 0;
        if ((r = nst_rpc_client_call(c, o->host, "replication_sync_now", args, NULL, NULL,
                                     o->timeout, &res, err)) < 0)
                return r;
        bool tty = isatty(STDOUT_FILENO), drew = false;
        int64_t deadline = nst_now_ms() + 24 * 3600 * 1000LL, last_line = 0;
        for (;;) {
                usleep(300 * 1000);
                json_object_put(st);
                st = NULL;
                if ((r = nst_rpc_client_call(c, o->host, "replication_status", args, NULL, NULL,
                                             o->timeout, &st, err)) < 0)
                        return r;
                json_object *prog = json_object_object_get(st, "progress");
                int64_t now = nst_now_ms();
                if (prog && (tty || now - last_line >= 2000)) {
                        draw_progress(prog, tty);
                        drew = true;
                        last_line = now;
                }
                if (prog)
                        continue;
                le = json_object_object_get(st, "last_error");
                if (jint(st, "cycles_total") > cycles) {
                        char b1[32], b2[32];
                        json_object *lp = json_object_object_get(st, "last_point");
                        printf("%scommitted point %lld (%s): %s shipped, %s on the wire in %lld "
                               "ms, %s consistent\n",
                               drew && tty ? "\r\033[K" : "", (long long)jint(lp, "id"),
                               jstr(st, "kind_last_cycle"),
                               human_bytes((uint64_t)jint(st, "bytes_last_cycle"), b1, sizeof(b1)),
                               human_bytes((uint64_t)jint(st, "wire_bytes_last_cycle"), b2,
                                           sizeof(b2)),
                               (long long)jint(st, "duration_ms_last_cycle"),
                               jstr(lp, "consistency"));
                        return 0;
                }
                if (le && jint(le, "failures") > failures) {
                        if (drew && tty)
                                printf("\n");
                        return nst_error_set(err, -EREMOTEIO, jstr(le, "class"),
                                             "the cycle failed: %s", jstr(le, "message"));
                }
                if (now > deadline)
                        return nst_error_set(err, -ETIMEDOUT, "MessagingTimeout",
                                             "no cycle committed");
        }
}

static int replication_main(const struct options *o, struct nst_config *cfg) {
        struct options opts = *o;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_transport_settings ts;
        struct nst_rpc_client *client = NULL;
        _cleanup_json_ json_object *args = json_object_new_object(), *res = NULL;
        if (opts.timeout <= 0)
                opts.timeout = (double)nst_config_get_int(cfg, "DEFAULT", "rpc_response_timeout");
        if (nst_transport_settings_load(cfg, &ts, &err) < 0) {
                fprintf(stderr, "nestorctl: %s\n", err.message);
                return EXIT_USAGE;
        }
        int r = nst_rpc_client_new(&ts, NST_RPC_TOPIC, &client, &err);
        if (r >= 0 && strcmp(opts.method, "sync") == 0) {
                r = replication_sync(client, &opts, &err);
        } else if (r >= 0) {
                if (opts.subject)
                        json_object_object_add(args, "replication",
                                               json_object_new_string(opts.subject));
                r = nst_rpc_client_call(client, opts.host,
                                        opts.subject ? "replication_status" : "replication_list",
                                        args, NULL, NULL, opts.timeout, &res, &err);
        }
        nst_rpc_client_free(client);
        nst_transport_settings_done(&ts);
        if (r < 0) {
                fprintf(stderr, "nestorctl: %s: %s\n", err.cls[0] ? err.cls : "Error",
                        err.message);
                return exit_code_for(r);
        }
        if (!res)
                return EXIT_SUCCESS;
        if (opts.json) {
                printf("%s\n", json_object_to_json_string_ext(res, JSON_C_TO_STRING_PRETTY |
                                                                       JSON_C_TO_STRING_NOSLASHESCAPE));
                return EXIT_SUCCESS;
        }
        json_object *rows = json_object_new_array();
        if (opts.subject) {
                json_object_array_add(rows, json_object_get(res));
        } else {
                const char *const roles[] = {"source", "target"};
                for (size_t k = 0; k < 2; k++) {
                        json_object *a = json_object_object_get(res, roles[k]);
                        for (size_t i = 0; i < json_object_array_length(a); i++)
                                json_object_array_add(rows,
                                                      json_object_get(json_object_array_get_idx(a, i)));
                }
        }
        print_replications(rows);
        json_object_put(rows);
        return EXIT_SUCCESS;
}

int main(int argc, char **argv) {
        struct options o = {0};
        struct nst_error err = NST_ERROR_INIT;
        _cleanup_(nst_config_freep) struct nst_config *cfg = NULL;
        _cleanup_json_ json_object *args = NULL, *result = NULL;
        struct nst_transport_settings ts;
        struct nst_rpc_client *client = NULL;
        int r;

        nst_log_open("nestorctl", false, NST_LOG_WARNING);
        if (parse_options(argc, argv, &o) < 0)
                return EXIT_USAGE;

        if (nst_core_config_load(o.config_files, o.n_config_files, &cfg, &err) < 0)
                goto usage_error;
        if (strcmp(o.command, "services") == 0)
                return services_main(&o, cfg);
        if (strcmp(o.command, "replication") == 0)
                return replication_main(&o, cfg);
        if (load_args(o.args, &args, &err) < 0)
                goto usage_error;
        if (o.timeout <= 0)
                o.timeout = (double)nst_config_get_int(cfg, "DEFAULT", "rpc_response_timeout");
        if (nst_transport_settings_load(cfg, &ts, &err) < 0)
                goto usage_error;

        r = nst_rpc_client_new(&ts, NST_RPC_TOPIC, &client, &err);
        if (r >= 0) {
                if (strcmp(o.command, "call") == 0)
                        r = nst_rpc_client_call(client, o.host, o.method, args, o.rpc_version, NULL,
                                                o.timeout, &result, &err);
                else
                        r = nst_rpc_client_cast(client, o.host, o.method, args, o.rpc_version,
                                                NULL, o.fanout, &err);
        }
        nst_rpc_client_free(client);
        nst_transport_settings_done(&ts);
        if (r < 0) {
                fprintf(stderr, "nestorctl: %s: %s\n", err.cls[0] ? err.cls : "Error",
                        err.message);
                return exit_code_for(r);
        }
        if (strcmp(o.command, "cast") == 0)
                return EXIT_SUCCESS;
        if (o.json)
                printf("%s\n", result ? json_object_to_json_string_ext(
                                                result, JSON_C_TO_STRING_PRETTY |
                                                                JSON_C_TO_STRING_NOSLASHESCAPE) :
                                        "null");
        else
                print_text(result, 0);
        return EXIT_SUCCESS;

usage_error:
        fprintf(stderr, "nestorctl: %s\n", err.message);
        return EXIT_USAGE;
}
