#include "agent/service_methods.h"

#include <stdio.h>

#include "agent/clock.h"
#include "build_config.h"

#define SERVICE_API_VERSION "1.0"

/* The cheapest possible round trip: what monitoring and benchmarks use. */
static int ping(struct nst_call *call, json_object *args, void *userdata, json_object **ret,
                struct nst_error *err) {
        *ret = json_object_new_string("pong");
        return 0;
}

static json_object *stats_object(const struct nst_rpc_stats *st) {
        json_object *o = json_object_new_object();
#define ADD(f) json_object_object_add(o, #f, json_object_new_int64((int64_t)st->f))
        ADD(received);
        ADD(calls);
        ADD(casts);
        ADD(rejected);
        ADD(duplicates);
        ADD(expired);
        ADD(failures);
        ADD(published);
        ADD(confirmed);
        ADD(returned);
        ADD(reconnects);
#undef ADD
        json_object_object_add(o, "connected", json_object_new_boolean(st->connected));
        return o;
}

static int get_service_info(struct nst_call *call, json_object *args, void *userdata,
                            json_object **ret, struct nst_error *err) {
        struct nst_service_state *st = userdata;
        json_object *o = json_object_new_object();

        json_object_object_add(o, "binary", json_object_new_string("nestor-agent"));
        json_object_object_add(o, "version", json_object_new_string(NESTOR_VERSION));
        json_object_object_add(o, "host", json_object_new_string(nst_host_name(st->host)));
        json_object_object_add(o, "topic", json_object_new_string(st->topic));
        json_object_object_add(o, "exchange", json_object_new_string(st->exchange));
        /* Seconds with millisecond precision, printed as such (not as the
         * nearest binary double). */
        int64_t up_ms = nst_now_ms() - st->host->started_ms;
        char up[32];
        snprintf(up, sizeof(up), "%lld.%03lld", (long long)(up_ms / 1000),
                 (long long)(up_ms % 1000));
        json_object_object_add(o, "uptime", json_object_new_double_s((double)up_ms / 1000.0, up));
        json_object_object_add(o, "plugins", nst_host_describe_plugins(st->host));
        json_object_object_add(o, "methods", nst_dispatcher_describe(st->host->dispatcher));
        if (st->server) {
                struct nst_rpc_stats stats;
                nst_rpc_server_stats(st->server, &stats);
                json_object_object_add(o, "rpc", stats_object(&stats));
        }
        *ret = o;
        return 0;
}

int nst_service_methods_register(struct nst_host *host, struct nst_service_state *st,
                                 struct nst_error *err) {
        const struct nst_method methods[] = {
                {"ping", SERVICE_API_VERSION, ping, st},
                {"get_service_info", SERVICE_API_VERSION, get_service_info, st},
        };
        for (size_t i = 0; i < NST_ARRAY_SIZE(methods); i++) {
                int r = nst_dispatcher_add_builtin(host->dispatcher, NULL, &methods[i], err);
                if (r < 0)
                        return r;
        }
        return 0;
}
