/* nestor-agent: wiring. Reads the config, loads plugins, starts the worker
 * pool and the I/O thread, then waits for signals in the main thread. */
#define NST_LOG_MODULE "agent"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/core_options.h"
#include "agent/host.h"
#include "agent/log.h"
#include "agent/notifier.h"
#include "agent/outbox.h"
#include "agent/rpc_server.h"
#include "agent/service_methods.h"
#include "agent/worker_pool.h"
#include "build_config.h"

#define MAX_CONFIG_FILES 16

struct args {
        const char *config_files[MAX_CONFIG_FILES];
        size_t n_config_files;
        bool write_sample;
};

static void usage(FILE *out) {
        fprintf(out,
                "Usage: nestor-agent [--config-file PATH]... [--write-sample-config]\n"
                "\n"
                "Nestor compute-node agent: serves oslo.messaging RPC on topic %s.\n"
                "\n"
                "  --config-file PATH     read PATH (repeatable; later files win).\n"
                "                         Default: %s\n"
                "  --write-sample-config  print every option with its default and exit\n"
                "  --version              print the version and exit\n"
                "  --help                 this text\n",
                NST_RPC_TOPIC, nst_core_default_config_file());
}

static int parse_args(int argc, char **argv, struct args *a) {
        static const struct option longopts[] = {
                {"config-file", required_argument, NULL, 'c'},
                {"write-sample-config", no_argument, NULL, 'S'},
                {"version", no_argument, NULL, 'V'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        int c;
        while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        if (a->n_config_files == MAX_CONFIG_FILES) {
                                fprintf(stderr, "nestor-agent: at most %d --config-file\n",
                                        MAX_CONFIG_FILES);
                                return -EINVAL;
                        }
                        a->config_files[a->n_config_files++] = optarg;
                        break;
                case 'S':
                        a->write_sample = true;
                        break;
                case 'V':
                        printf("nestor-agent %s\n", NESTOR_VERSION);
                        exit(EXIT_SUCCESS);
                case 'h':
                        usage(stdout);
                        exit(EXIT_SUCCESS);
                default:
                        usage(stderr);
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "nestor-agent: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        if (a->n_config_files == 0 && !a->write_sample &&
            access(nst_core_default_config_file(), R_OK) == 0)
                a->config_files[a->n_config_files++] = nst_core_default_config_file();
        return 0;
}

static int load_config(const struct args *a, struct nst_config **ret, struct nst_error *err) {
        return nst_core_config_load(a->config_files, a->n_config_files, ret, err);
}

static enum nst_log_level level_of(const struct nst_config *cfg) {
        return nst_config_get_bool(cfg, "DEFAULT", "debug") ? NST_LOG_DEBUG : NST_LOG_INFO;
}

/* SIGHUP: re-read the files for the log level. Anything else needs a restart. */
static void reload(const struct args *a) {
        struct nst_error err = NST_ERROR_INIT;
        _cleanup_(nst_config_freep) struct nst_config *cfg = NULL;
        if (load_config(a, &cfg, &err) < 0) {
                log_error("SIGHUP: keeping the current settings: %s", err.message);
                return;
        }
        nst_log_set_level(level_of(cfg));
        log_info("SIGHUP: log level is now %s", level_of(cfg) == NST_LOG_DEBUG ? "debug" : "info");
}

struct io_thread {
        struct nst_rpc_server *server;
        int result;
        pthread_t thread;
};

static void *io_main(void *data) {
        struct io_thread *t = data;
        t->result = nst_rpc_server_run(t->server);
        /* Let the main thread's sigwait() return even without a signal. */
        kill(getpid(), SIGUSR1);
        return NULL;
}

static int run(const struct args *a) {
        struct nst_error err = NST_ERROR_INIT;
        _cleanup_(nst_config_freep) struct nst_config *cfg = NULL;
        struct nst_host *host = NULL;
        struct nst_outbox *outbox = NULL;
        struct nst_notifier *notifier = NULL;
        struct nst_worker_pool *pool = NULL;
        struct nst_rpc_server *server = NULL;
        struct nst_transport_settings ts = {0};
        bool have_ts = false;
        _cleanup_free_ char *host_name = NULL, *publisher = NULL;
        struct nst_service_state service = {.topic = NST_RPC_TOPIC};
        int r;

        r = load_config(a, &cfg, &err);
        if (r < 0)
                goto fail;
        nst_log_open("nestor-agent", nst_config_get_bool(cfg, "DEFAULT", "use_syslog"),
                     level_of(cfg));

        host_name = nst_core_host_name(cfg);
        if (!host_name || nst_host_new(cfg, host_name, &host) < 0) {
                r = nst_error_set(&err, -ENOMEM, "MemoryError", "out of memory");
                goto fail;
        }
        service.host = host;
        service.exchange = nst_config_get_string(cfg, "DEFAULT", "control_exchange");
        r = nst_service_methods_register(host, &service, &err);
        if (r < 0)
                goto fail;

        size_t n_plugins;
        const char *const *plugins = nst_config_get_list(cfg, "DEFAULT", "enabled_plugins",
                                                         &n_plugins);
        r = nst_host_load_plugins(host, nst_config_get_string(cfg, "DEFAULT", "plugin_dir"),
                                  plugins, n_plugins, &err);
        if (r < 0)
                goto fail;
        r = nst_config_resolve(cfg, &err);
        if (r < 0)
                goto fail;
        if (a->write_sample) {
                r = nst_config_write_sample(cfg, stdout);
                goto out;
        }
        (void)nst_config_warn_unknown(cfg);

        r = nst_transport_settings_load(cfg, &ts, &err);
        if (r < 0)
                goto fail;
        have_ts = true;

        size_t n_topics;
        const char *const *topics = nst_config_get_list(cfg, "oslo_messaging_notifications",
                                                        "topics", &n_topics);
        if (asprintf(&publisher, "nestor-compute:%s", host_name) < 0) {
                publisher = NULL;
                r = nst_error_set(&err, -ENOMEM, "MemoryError", "out of memory");
                goto fail;
        }
        struct nst_notifier_config nc = {
                .exchange = ts.exchange,
                .topics = topics,
                .publisher_id = publisher,
                .enabled = strcmp(nst_config_get_string(cfg, "oslo_messaging_notifications",
                                                        "driver"),
                                  "noop") != 0,
        };
        if ((r = nst_outbox_new(&outbox)) < 0 ||
            (r = nst_notifier_new(&nc, outbox, &notifier)) < 0 ||
            (r = nst_worker_pool_new((size_t)nst_config_get_int(cfg, "DEFAULT", "rpc_workers"),
                                     "nst-worker", &pool)) < 0) {
                nst_error_set(&err, r, "RuntimeError", "cannot start: %s", strerror(-r));
                goto fail;
        }
        host->notifier = notifier;

        struct nst_rpc_server_config sc = {
                .url = &ts.url,
                .tls = ts.tls,
                .exchange = ts.exchange,
                .topic = NST_RPC_TOPIC,
                .server = host_name,
                .queues = ts.queues,
                .transient_ttl_ms = ts.transient_ttl_ms,
                .heartbeat_s = ts.heartbeat_s,
                .connect_timeout_ms = 5000,
                .max_message_bytes = (size_t)nst_config_get_int(cfg, "DEFAULT",
                                                                "max_message_bytes"),
                .min_backoff_ms = ts.min_backoff_ms,
                .max_backoff_ms = ts.max_backoff_ms,
                .prefetch = ts.prefetch,
                .shutdown_grace_ms =
                        nst_config_get_int(cfg, "DEFAULT", "graceful_shutdown_timeout") * 1000,
                .max_pending_publishes = 10000,
        };
        r = nst_rpc_server_new(&sc, host, pool, outbox, &server, &err);
        if (r < 0)
                goto fail;
        service.server = server;

        r = nst_host_start_plugins(host, &err);
        if (r < 0)
                goto fail;

        struct io_thread io = {.server = server};
        r = -pthread_create(&io.thread, NULL, io_main, &io);
        if (r < 0) {
                nst_error_set(&err, r, "RuntimeError", "cannot start the I/O thread: %s",
                              strerror(-r));
                goto fail;
        }
        log_info("nestor-agent %s started: host %s, %zu plugin(s), %lld workers", NESTOR_VERSION,
                 host_name, n_plugins, (long long)nst_config_get_int(cfg, "DEFAULT", "rpc_workers"));

        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        sigaddset(&set, SIGUSR1);
        bool stopping = false;
        for (;;) {
                int sig;
                if (sigwait(&set, &sig) != 0)
                        continue;
                if (sig == SIGHUP) {
                        reload(a);
                } else if (sig == SIGUSR1) {
                        break; /* the I/O thread finished */
                } else if (!stopping) {
                        log_info("received %s, stopping", strsignal(sig));
                        stopping = true;
                        nst_rpc_server_request_stop(server);
                } else {
                        log_info("received %s again, still waiting for in-flight calls",
                                 strsignal(sig));
                }
        }
        pthread_join(io.thread, NULL);
        if (io.result == -ETIMEDOUT) {
                /* Handlers are still running: joining them could take forever,
                 * and freeing under them would be worse. */
                log_warning("exiting with handlers still running");
                _exit(EXIT_FAILURE);
        }
        r = io.result;
        if (r < 0)
                nst_error_set(&err, r, "RuntimeError", "the I/O loop failed: %s", strerror(-r));
        else
                log_info("stopped cleanly");
        goto out;

fail:
        log_error("%s", err.message);
out:
        nst_worker_pool_free(pool); /* runs what is queued; nothing is, after a drain */
        if (host)
                nst_host_stop_plugins(host);
        nst_rpc_server_free(server);
        if (host)
                host->notifier = NULL;
        nst_notifier_free(notifier);
        nst_outbox_free(outbox);
        nst_host_free(host);
        if (have_ts)
                nst_transport_settings_done(&ts);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

int main(int argc, char **argv) {
        struct args a = {0};
        sigset_t set;

        /* OpenSSL writes do not use MSG_NOSIGNAL: a broker going away must not
         * kill the agent. */
        signal(SIGPIPE, SIG_IGN);
        /* Every thread inherits this mask; only sigwait() in main sees them. */
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        sigaddset(&set, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &set, NULL);

        nst_log_open("nestor-agent", false, NST_LOG_INFO);
        if (parse_args(argc, argv, &a) < 0)
                return EXIT_FAILURE;
        int status = run(&a);
        nst_log_close();
        return status;
}
