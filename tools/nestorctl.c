/* nestorctl: call or cast any Nestor RPC method from the command line.
 *
 *   nestorctl [options] call METHOD [--args JSON|@FILE]
 *   nestorctl [options] cast METHOD [--args JSON|@FILE] [--fanout]
 *
 * Exit status: 0 success, 1 the remote side raised an error, 2 bad usage or
 * configuration, 3 the broker or the agent could not be reached in time. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/core_options.h"
#include "agent/log.h"
#include "agent/rpc_client.h"
#include "messages/json_util.h"

enum { EXIT_REMOTE = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

#define MAX_ARGS_BYTES (16 * 1024 * 1024)

struct options {
        const char *config_files[16];
        size_t n_config_files;
        const char *host;       /* NULL: any agent of the topic */
        const char *args;       /* JSON text or @file */
        const char *rpc_version;
        double timeout;         /* 0: rpc_response_timeout */
        bool json;
        bool fanout;
        const char *command, *method;
};

static void usage(FILE *out) {
        fprintf(out,
                "Usage: nestorctl [OPTIONS] call METHOD [--args JSON|@FILE]\n"
                "       nestorctl [OPTIONS] cast METHOD [--args JSON|@FILE] [--fanout]\n"
                "\n"
                "  --config-file PATH   config with transport_url etc. (default %s)\n"
                "  --host HOST          the agent to address (default: any agent)\n"
                "  --args JSON|@FILE    keyword arguments as a JSON object\n"
                "  --rpc-version X.Y    API version to request (default 1.0)\n"
                "  --timeout SECONDS    call timeout (default rpc_response_timeout)\n"
                "  --fanout             cast to every agent\n"
                "  --json               print the result as JSON\n"
                "\n"
                "Exit status: 0 ok, 1 remote error, 2 usage or config error, 3 unreachable.\n",
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
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        int c;
        char *end;

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
                        break;
                case 'a':
                        o->args = optarg;
                        break;
                case 'v':
                        o->rpc_version = optarg;
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
                        break;
                case 'f':
                        o->fanout = true;
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
        if (argc - optind != 2) {
                usage(stderr);
                return -EINVAL;
        }
        o->command = argv[optind];
        o->method = argv[optind + 1];
        if (strcmp(o->command, "call") != 0 && strcmp(o->command, "cast") != 0) {
                fprintf(stderr, "nestorctl: unknown command '%s' (call or cast)\n", o->command);
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

        if (nst_core_config_load(o.config_files, o.n_config_files, &cfg, &err) < 0 ||
            load_args(o.args, &args, &err) < 0)
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
