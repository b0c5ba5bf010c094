/* The replication data channel alone: one TLS 1.3 (PSK) connection over
 * loopback carrying DATA frames the way a full sync does (extent header,
 * payload received in 256 KiB pieces into one buffer and hashed), with
 * nothing read from or written to a disk. The full sync cannot be quicker
 * than this on the same machine.
 *
 * Usage: bench_repl_channel [MIB [EXTENT_KIB]]   (default 1024 MiB, 512 KiB)
 * Prints: MiB/s and the CPU seconds of the sending and receiving threads. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "plugins/replication/repl_channel.h"

#define PIECE (256 * 1024)

static const uint8_t key[NST_RC_PSK_LEN] = "bench-key-0123456789abcdef012345";

struct receiver {
        struct nst_rc_server *server;
        uint64_t bytes;
        uint64_t digest_sum;
        double cpu_s;
        int rc;
};

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double thread_cpu_s(void) {
        struct rusage u;
        getrusage(RUSAGE_THREAD, &u);
        return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
               (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

static int lookup(void *ud, const char *identity, uint8_t out[NST_RC_PSK_LEN]) {
        (void)ud;
        (void)identity;
        memcpy(out, key, NST_RC_PSK_LEN);
        return 0;
}

static void *receive(void *arg) {
        struct receiver *rv = arg;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rc_conn *c = NULL;
        if ((rv->rc = nst_rc_accept(rv->server, 10000, &c, &err)) < 0) {
                fprintf(stderr, "accept: %s\n", err.message);
                return NULL;
        }
        double cpu0 = thread_cpu_s();
        uint8_t *buf = malloc(NST_RW_MAX_EXTENT);
        struct nst_rw_digester *d = nst_rw_digester_new();
        for (;;) {
                struct nst_rw_header h;
                uint8_t head[NST_RW_EXTENT_SIZE];
                struct nst_rw_extent e;
                if ((rv->rc = nst_rc_recv_header(c, &h, &err)) < 0 || h.type == NST_RW_BYE)
                        break;
                if ((rv->rc = nst_rc_recv_part(c, head, sizeof(head), &err)) < 0 ||
                    (rv->rc = nst_rw_extent_decode(head, sizeof(head), &e, &err)) < 0)
                        break;
                nst_rw_digester_reset(d);
                for (uint32_t done = 0; done < e.length;) {
                        uint32_t n = e.length - done < PIECE ? e.length - done : PIECE;
                        if ((rv->rc = nst_rc_recv_part(c, buf + done, n, &err)) < 0)
                                break;
                        nst_rw_digester_update(d, buf + done, n);
                        done += n;
                }
                if (rv->rc < 0)
                        break;
                rv->digest_sum += nst_rw_digester_value(d);
                rv->bytes += e.length;
        }
        if (rv->rc < 0)
                fprintf(stderr, "receive: %s\n", err.message);
        rv->cpu_s = thread_cpu_s() - cpu0;
        nst_rw_digester_free(d);
        free(buf);
        nst_rc_close(c);
        return NULL;
}

int main(int argc, char **argv) {
        uint64_t total = (argc > 1 ? strtoull(argv[1], NULL, 10) : 1024) << 20;
        uint32_t extent = (uint32_t)(argc > 2 ? strtoul(argv[2], NULL, 10) : 512) << 10;
        if (extent == 0 || extent > NST_RW_MAX_EXTENT || total < extent) {
                fprintf(stderr, "usage: %s [MIB [EXTENT_KIB (1 to 32768)]]\n", argv[0]);
                return 2;
        }
        struct nst_error err = NST_ERROR_INIT;
        struct receiver rv = {0};
        if (nst_rc_listen("127.0.0.1", 0, NULL, lookup, NULL, &rv.server, &err) < 0) {
                fprintf(stderr, "listen: %s\n", err.message);
                return 1;
        }
        pthread_t t;
        pthread_create(&t, NULL, receive, &rv);
        struct nst_rc_conn *c = NULL;
        if (nst_rc_connect("127.0.0.1", nst_rc_server_port(rv.server), NULL, "bench", key, 10000,
                           &c, &err) < 0) {
                fprintf(stderr, "connect: %s\n", err.message);
                return 1;
        }
        uint8_t *data = malloc(extent);
        for (uint32_t i = 0; i < extent; i++)
                data[i] = (uint8_t)(i * 2654435761u >> 24);
        double t0 = now_s(), cpu0 = thread_cpu_s();
        int rc = 0;
        for (uint64_t off = 0; rc >= 0 && off + extent <= total; off += extent) {
                uint8_t head[NST_RW_EXTENT_SIZE];
                nst_rw_extent_encode(head, &(struct nst_rw_extent){.length = extent,
                                                                   .offset = off,
                                                                   .digest = off});
                rc = nst_rc_send(c, NST_RW_DATA, 0, head, sizeof(head), data, extent, &err);
        }
        if (rc >= 0)
                rc = nst_rc_send(c, NST_RW_BYE, 0, NULL, 0, NULL, 0, &err);
        double send_cpu = thread_cpu_s() - cpu0;
        pthread_join(t, NULL);
        double s = now_s() - t0;
        if (rc < 0 || rv.rc < 0) {
                fprintf(stderr, "send: %s\n", rc < 0 ? err.message : "receiver failed");
                return 1;
        }
        printf("channel: %llu MiB in %u KiB DATA frames in %.3f s: %.0f MiB/s; CPU s: sender "
               "%.2f, receiver %.2f (%s, %s)\n",
               (unsigned long long)(rv.bytes >> 20), extent >> 10, s,
               (double)rv.bytes / 1048576.0 / s, send_cpu, rv.cpu_s, nst_rc_conn_protocol(c),
               nst_rc_conn_cipher(c));
        nst_rc_close(c);
        nst_rc_server_close(rv.server);
        free(data);
        return 0;
}
