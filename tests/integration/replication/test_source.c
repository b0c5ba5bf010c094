/* The replication source (plugins/replication/repl_source.c) against a real
 * libvirtd + QEMU ($NESTOR_TEST_URI, normally qemu:///system): guests that
 * idle in firmware, guest writes simulated with HMP qemu-io, and every
 * byte that comes out of the NBD exports compared with a model of the disk.
 *
 *   full job (extents, zero ranges, streaming, hashes), the checkpoint it
 *   makes; incremental job (64 KiB ranges, point in time), a failed job that
 *   deletes its checkpoint and the differential that follows; changed
 *   bytes, pruning, a missing checkpoint; spare scratch files made ahead of
 *   a job; a stale job left by a killed
 *   agent; a QEMU crash (kill -9) that breaks the bitmaps, and the recovery.
 *
 * Exits 77 (skip) without NESTOR_TEST_URI. Every domain and file it makes
 * is removed at the end, also when a check fails. */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <limits.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
/* cmocka after the system headers it needs. */
#include <setjmp.h>
#include <cmocka.h>

#include "plugins/libvirt/disks.h"
#include "plugins/libvirt/lv_util.h"
#include "plugins/replication/repl_source.h"

#define KIB 1024ULL
#define MIB (1024ULL * KIB)
#define DISK_SIZE (64 * MIB)
#define VDB_SIZE (8 * MIB)
#define CRASH_SIZE (16 * MIB)
#define FILLED (60 * MIB)   /* the rest of vda stays unallocated */
#define QEMU_IMG "/usr/bin/qemu-img"
#define QEMU_IO "/usr/bin/qemu-io"

struct fixture {
        virConnectPtr conn;
        char dir[256];
        char run_dir[512];
        char name[64], crash_name[64];
        virDomainPtr dom, crash_dom;
        char qdev[128], crash_qdev[128];
        uint8_t *expect;     /* what the guest sees on vda */
        uint8_t *crash_expect;
};

static struct fixture F;

/* ---- checks that print why ---- */

#define OK(call)                                                                               \
        do {                                                                                   \
                nst_error_clear(&err);                                                         \
                int r_ = (call);                                                               \
                if (r_ < 0) {                                                                  \
                        print_error("%s: %d %s: %s\n", #call, r_, err.cls, err.message);       \
                        fail();                                                                \
                }                                                                              \
        } while (0)

#define FAILS(call, code, cls_, text)                                                          \
        do {                                                                                   \
                nst_error_clear(&err);                                                         \
                int r_ = (call);                                                               \
                if (r_ != (code) || strcmp(err.cls, (cls_)) != 0 ||                            \
                    !strstr(err.message, (text))) {                                            \
                        print_error("%s: got %d %s '%s', expected %d %s '...%s...'\n", #call,  \
                                    r_, err.cls, err.message, (code), (cls_), (text));         \
                        fail();                                                                \
                }                                                                              \
        } while (0)

/* ---- files and commands ---- */

static void run(const char *const argv[]) {
        char out[4096];
        int status = 0;
        struct nst_error err = NST_ERROR_INIT;
        int r = nst_run(argv, out, sizeof(out), 60000, &status, &err);
        if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                print_error("%s %s failed (%d, status %d): %s %s\n", argv[0], argv[1], r, status,
                            err.message, out);
                fail();
        }
}

static void make_qcow2(const char *path, uint64_t size) {
        char sz[32];
        snprintf(sz, sizeof(sz), "%" PRIu64, size);
        run((const char *const[]){QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", "compat=1.1",
                                  path, sz, NULL});
}

static uint8_t pattern_of(uint64_t off) {
        return (uint8_t)(off / MIB + 1);
}

/* vda: 1 MiB stripes of bytes 1..60, 8M..10M written as zeroes, 60M..64M
 * never written; ex mirrors it. */
static void fill_vda(const char *path, uint8_t *ex) {
        enum { CMDS = FILLED / MIB + 1 };
        static char cmds[CMDS][64];
        const char *argv[4 + 2 * CMDS + 2];
        size_t a = 0;
        argv[a++] = QEMU_IO;
        argv[a++] = "-f";
        argv[a++] = "qcow2";
        for (uint64_t m = 0; m < FILLED / MIB; m++) {
                snprintf(cmds[m], sizeof(cmds[m]), "write -q -P %u %llu %llu",
                         pattern_of(m * MIB), (unsigned long long)(m * MIB), MIB);
                argv[a++] = "-c";
                argv[a++] = cmds[m];
                memset(ex + m * MIB, pattern_of(m * MIB), MIB);
        }
        snprintf(cmds[CMDS - 1], sizeof(cmds[0]), "write -q -z %llu %llu", 8 * MIB, 2 * MIB);
        memset(ex + 8 * MIB, 0, 2 * MIB);
        argv[a++] = "-c";
        argv[a++] = cmds[CMDS - 1];
        argv[a++] = path;
        argv[a] = NULL;
        run(argv);
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

/* ---- domains ---- */

static const char *virt_type(void) {
        return access("/dev/kvm", R_OK | W_OK) == 0 ? "kvm" : "qemu";
}

static char *domain_xml(const char *name, const char *vda, const char *vdb, bool cdrom) {
        char *xml = NULL;
        char vdb_xml[PATH_MAX + 256] = "";
        if (vdb)
                snprintf(vdb_xml, sizeof(vdb_xml),
                         "<disk type='file' device='disk'><driver name='qemu' type='qcow2' "
                         "cache='none'/><source file='%s'/><target dev='vdb' bus='virtio'/>"
                         "</disk>",
                         vdb);
        int n = asprintf(&xml,
                         "<domain type='%s'><name>%s</name><memory unit='MiB'>128</memory>"
                         "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>"
                         "<on_crash>destroy</on_crash><devices>"
                         "<disk type='file' device='disk'><driver name='qemu' type='qcow2' "
                         "cache='none'/><source file='%s'/><target dev='vda' bus='virtio'/>"
                         "</disk>%s%s<memballoon model='none'/></devices></domain>",
                         virt_type(), name, vda, vdb_xml,
                         cdrom ? "<disk type='file' device='cdrom'><target dev='hdc' "
                                 "bus='ide'/><readonly/></disk>"
                               : "");
        assert_true(n > 0);
        return xml;
}

/* The qdev path of vda's virtio backend, for HMP qemu-io -d. */
static void find_qdev(virDomainPtr dom, char *buf, size_t size) {
        char *xml = virDomainGetXMLDesc(dom, 0);
        assert_non_null(xml);
        struct nst_error err = NST_ERROR_INIT;
        xmlDocPtr doc = NULL;
        OK(nst_xml_parse(xml, "live XML", "HypervisorError", &doc, &err));
        free(xml);
        xmlXPathContextPtr ctx = nst_xpath_new(doc);
        char *alias = nst_xpath_string(
                ctx, NULL, "string(/domain/devices/disk[target/@dev='vda']/alias/@name)");
        assert_non_null(alias);
        assert_true(alias[0] != '\0');
        snprintf(buf, size, "/machine/peripheral/%s/virtio-backend", alias);
        free(alias);
        xmlXPathFreeContext(ctx);
        xmlFreeDoc(doc);
}

/* A guest write through QEMU's block layer (HMP qemu-io), mirrored in ex. */
static void guest_write(virDomainPtr dom, const char *qdev, uint8_t *ex, uint8_t byte,
                        uint64_t off, uint64_t len) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "qemu-io -d %s \"write -P %u %" PRIu64 " %" PRIu64 "\"", qdev,
                 byte, off, len);
        char *out = NULL;
        if (virDomainQemuMonitorCommand(dom, cmd, &out, VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP) <
            0) {
                print_error("%s: %s\n", cmd, virGetLastErrorMessage());
                fail();
        }
        /* Success prints nothing (or the "wrote" line); anything else is an error. */
        if (out && out[0] != '\0' && !strstr(out, "wrote")) {
                print_error("%s: %s\n", cmd, out ? out : "(no output)");
                free(out);
                fail();
        }
        free(out);
        memset(ex + off, byte, len);
}

static bool checkpoint_exists(virDomainPtr dom, const char *name) {
        virDomainCheckpointPtr cp = virDomainCheckpointLookupByName(dom, name, 0);
        if (cp)
                virDomainCheckpointFree(cp);
        return cp != NULL;
}

static int checkpoint_count(virDomainPtr dom) {
        virDomainCheckpointPtr *cps = NULL;
        int n = virDomainListAllCheckpoints(dom, &cps, 0);
        for (int i = 0; i < n; i++)
                virDomainCheckpointFree(cps[i]);
        free(cps);
        return n;
}

static int job_type(virDomainPtr dom) {
        int type = -1, n = 0;
        virTypedParameterPtr params = NULL;
        assert_int_equal(virDomainGetJobStats(dom, &type, &params, &n, 0), 0);
        virTypedParamsFree(params, n);
        return type;
}

/* How often Nestor's bitmap names appear in QEMU's view of the block nodes
 * (dirty-bitmaps, and the bitmaps stored in each qcow2 image). */
static int nestor_bitmaps(virDomainPtr dom) {
        char *out = NULL;
        assert_int_equal(virDomainQemuMonitorCommand(
                                 dom,
                                 "{\"execute\":\"query-named-block-nodes\","
                                 "\"arguments\":{\"flat\":true}}",
                                 &out, 0),
                         0);
        int n = 0;
        for (const char *p = out; (p = strstr(p, "\"nestor-repl-")); p++)
                n++;
        free(out);
        return n;
}

static void wait_inactive(virDomainPtr dom) {
        for (int i = 0; i < 200; i++) {
                if (virDomainIsActive(dom) == 0)
                        return;
                struct timespec ts = {0, 50 * 1000 * 1000};
                nanosleep(&ts, NULL);
        }
        fail_msg("%s is still running", virDomainGetName(dom));
}

/* ---- streaming ---- */

struct sink {
        const uint8_t *expect;
        uint64_t next;         /* offsets must only grow */
        uint64_t data_bytes, zero_bytes;
        size_t calls, fail_at; /* fail_at: 1-based call that returns -ECANCELED */
        size_t mismatches;
        uint64_t first_mismatch;
        bool digests;          /* the stream ran fnv1a as its digest function */
        size_t bad_digests;
};

/* FNV-1a: any function of the bytes shows the digest was taken of them. */
static uint64_t fnv1a(const void *data, size_t length) {
        uint64_t h = 0xcbf29ce484222325ULL;
        for (size_t i = 0; i < length; i++)
                h = (h ^ ((const uint8_t *)data)[i]) * 0x100000001b3ULL;
        return h;
}

static int sink_fn(void *userdata, const struct nst_src_extent *e, const void *data,
                   uint64_t digest) {
        struct sink *s = userdata;
        s->calls++;
        if (digest != (data && s->digests ? fnv1a(data, e->length) : 0))
                s->bad_digests++;
        if (s->fail_at && s->calls == s->fail_at)
                return -ECANCELED;
        if (e->offset < s->next || (e->zero != (data == NULL))) {
                s->mismatches++;
                return 0;
        }
        s->next = e->offset + e->length;
        if (e->zero) {
                s->zero_bytes += e->length;
                for (uint64_t i = 0; i < e->length; i++)
                        if (s->expect[e->offset + i] != 0) {
                                if (!s->mismatches++)
                                        s->first_mismatch = e->offset + i;
                                break;
                        }
                return 0;
        }
        s->data_bytes += e->length;
        if (memcmp(data, s->expect + e->offset, e->length) != 0) {
                if (!s->mismatches++)
                        for (uint64_t i = 0; i < e->length; i++)
                                if (((const uint8_t *)data)[i] != s->expect[e->offset + i]) {
                                        s->first_mismatch = e->offset + i;
                                        break;
                                }
        }
        return 0;
}

static void stream_and_compare(struct nst_src_job *j, size_t disk,
                               const struct nst_src_extent *ex, size_t n, unsigned depth,
                               const uint8_t *expect) {
        struct nst_error err = NST_ERROR_INIT;
        /* Every other stream with a digest function (the cycle's way). */
        static bool with_digests;
        with_digests = !with_digests;
        struct sink s = {.expect = expect, .digests = with_digests};
        OK(nst_src_job_stream(j, disk, ex, n, depth, with_digests ? fnv1a : NULL, sink_fn, &s,
                              &err));
        if (s.mismatches)
                fail_msg("stream: %zu mismatching extents, first byte at %" PRIu64, s.mismatches,
                         s.first_mismatch);
        assert_int_equal(s.bad_digests, 0);
        assert_int_equal(s.calls, n);
        uint64_t total = 0;
        for (size_t i = 0; i < n; i++)
                total += ex[i].length;
        assert_int_equal(s.data_bytes + s.zero_bytes, total);
}

struct want {
        uint64_t off, len;
        bool zero;
};

/* ex, with neighbours of the same kind merged, is w; ex is contiguous and
 * no data piece is longer than the reader's 4 MiB. */
static void extents_are(const struct nst_src_extent *ex, size_t n, const struct want *w,
                        size_t nw) {
        bool same = true;
        size_t k = 0;
        for (size_t i = 0; same && i < n; k++) {
                uint64_t off = ex[i].offset, len = 0;
                bool zero = ex[i].zero;
                for (; i < n && ex[i].zero == zero && ex[i].offset == off + len; i++) {
                        same = same && (zero || ex[i].length <= NST_SRC_EXTENT_MAX);
                        len += ex[i].length;
                }
                same = same && k < nw && w[k].off == off && w[k].len == len && w[k].zero == zero;
        }
        if (same && k == nw)
                return;
        print_error("extents (%zu):\n", n);
        for (size_t i = 0; i < n; i++)
                print_error("  %" PRIu64 " +%" PRIu64 " %s\n", ex[i].offset, ex[i].length,
                            ex[i].zero ? "zero" : "data");
        print_error("expected (%zu runs, data in pieces of at most 4 MiB):\n", nw);
        for (size_t i = 0; i < nw; i++)
                print_error("  %" PRIu64 " +%" PRIu64 " %s\n", w[i].off, w[i].len,
                            w[i].zero ? "zero" : "data");
        fail();
}

static void sha256_blocks(const uint8_t *img, uint64_t size, uint64_t first, uint32_t count,
                          uint8_t *out) {
        for (uint32_t i = 0; i < count; i++) {
                uint64_t off = (first + i) * 64 * KIB;
                uint64_t len = size - off < 64 * KIB ? size - off : 64 * KIB;
                assert_true(EVP_Digest(img + off, len, out + 32 * i, NULL, EVP_sha256(), NULL));
        }
}

static const char *const vda_only[] = {"vda"};

static struct nst_src_job_opts opts(const char *incremental, const char *new_checkpoint) {
        return (struct nst_src_job_opts){.run_dir = F.run_dir,
                                         .incremental = incremental,
                                         .new_checkpoint = new_checkpoint,
                                         .disks = vda_only,
                                         .n_disks = 1,
                                         .quiesce = NST_SRC_QUIESCE_OFF};
}

/* What vda holds now: the view a job begun now exports. */
static uint8_t *point_in_time(void) {
        uint8_t *pit = malloc(DISK_SIZE);
        assert_non_null(pit);
        memcpy(pit, F.expect, DISK_SIZE);
        return pit;
}

/* ---- tests ---- */

static void test_list_disks(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_src_disk_info *d = NULL;
        size_t n = 0;
        OK(nst_src_list_disks(F.dom, &d, &n, &err));
        assert_int_equal(n, 3);
        assert_string_equal(d[0].name, "vda");
        assert_string_equal(d[0].format, "qcow2");
        assert_int_equal(d[0].size, DISK_SIZE);
        assert_false(d[0].cdrom);
        assert_non_null(d[0].path);
        assert_non_null(strstr(d[0].path, "/vda.qcow2"));
        assert_string_equal(d[1].name, "vdb");
        assert_int_equal(d[1].size, VDB_SIZE);
        assert_string_equal(d[2].name, "hdc");
        assert_true(d[2].cdrom);
        assert_null(d[2].path);
        nst_src_disks_free(d, n);
}

static void test_bad_input(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_src_job *j = NULL;
        bool q;
        struct nst_src_job_opts o = opts(NULL, "nestor-repl-1");
        const char *const nosuch[] = {"vdz"}, *const cd[] = {"hdc"};
        o.disks = nosuch;
        FAILS(nst_src_job_begin(F.dom, &o, &j, &q, &err), -EINVAL, "InvalidInput",
              "has no disk vdz");
        o.disks = cd;
        FAILS(nst_src_job_begin(F.dom, &o, &j, &q, &err), -EINVAL, "InvalidInput",
              "disk hdc of " /* name */);
        assert_non_null(strstr(err.message, "is a cdrom"));
        o = opts(NULL, "mine-1");
        FAILS(nst_src_job_begin(F.dom, &o, &j, &q, &err), -EINVAL, "InvalidInput",
              "must start with 'nestor-repl-'");
        o = opts("bad'name", "nestor-repl-1");
        FAILS(nst_src_job_begin(F.dom, &o, &j, &q, &err), -EINVAL, "InvalidInput",
              "checkpoint name 'bad'name' is invalid");
        char longdir[PATH_MAX];
        snprintf(longdir, sizeof(longdir), "%s/%0100d", F.dir, 0);
        o = opts(NULL, "nestor-repl-1");
        o.run_dir = longdir;
        FAILS(nst_src_job_begin(F.dom, &o, &j, &q, &err), -ENAMETOOLONG, "InvalidInput",
              "must be shorter than 108 bytes");
        /* No guest agent: required quiesce fails, and nothing is left. */
        o = opts(NULL, "nestor-repl-1");
        o.quiesce = NST_SRC_QUIESCE_REQUIRED;
        FAILS(nst_src_job_begin(F.dom, &o, &j, &q, &err), -EIO, "QuiesceFailed",
              "quiesce is required");
        if (!strstr(err.message, "agent"))
                fail_msg("quiesce message: %s", err.message);
        assert_int_equal(job_type(F.dom), VIR_DOMAIN_JOB_NONE);
        assert_false(checkpoint_exists(F.dom, "nestor-repl-1"));
        FAILS(nst_src_checkpoint_check(F.dom, "nestor-repl-99", &err), -ESTALE,
              "CheckpointBroken", "checkpoint nestor-repl-99 of ");
        uint64_t bytes;
        FAILS(nst_src_changed_bytes(F.dom, "nestor-repl-99", &bytes, &err), -ESTALE,
              "CheckpointBroken", "does not exist");
}

static void test_full(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_src_job *j = NULL;
        struct nst_src_job_opts o = opts(NULL, "nestor-repl-1");
        o.quiesce = NST_SRC_QUIESCE_PREFERRED;   /* no agent: crash-consistent */
        bool quiesced = true;
        OK(nst_src_job_begin(F.dom, &o, &j, &quiesced, &err));
        assert_false(quiesced);
        assert_true(checkpoint_exists(F.dom, "nestor-repl-1"));

        struct nst_src_extent *ex = NULL;
        size_t n = 0;
        uint64_t size = 0;
        OK(nst_src_job_extents(j, 0, &ex, &n, &size, &err));
        assert_int_equal(size, DISK_SIZE);
        const struct want w[] = {{0, 8 * MIB, false},          {8 * MIB, 2 * MIB, true},
                                 {10 * MIB, 50 * MIB, false},
                                 {60 * MIB, 4 * MIB, true}};
        extents_are(ex, n, w, NST_ARRAY_SIZE(w));
        stream_and_compare(j, 0, ex, n, 4, F.expect);
        stream_and_compare(j, 0, ex, n, 1, F.expect);

        /* Point reads and hashes of the same view. */
        uint8_t buf[4096];
        OK(nst_src_job_read(j, 0, 59 * MIB + 100, buf, sizeof(buf), &err));
        assert_memory_equal(buf, F.expect + 59 * MIB + 100, sizeof(buf));
        enum { BLOCKS = DISK_SIZE / (64 * KIB) };
        uint8_t *got = malloc(BLOCKS * 32), *want_h = malloc(BLOCKS * 32);
        assert_non_null(got);
        assert_non_null(want_h);
        OK(nst_src_job_hashes(j, 0, 0, BLOCKS, got, &err));
        sha256_blocks(F.expect, DISK_SIZE, 0, BLOCKS, want_h);
        assert_memory_equal(got, want_h, BLOCKS * 32);
        FAILS(nst_src_job_hashes(j, 0, BLOCKS - 1, 2, got, &err), -EINVAL, "InvalidInput",
              "beyond its 1024 blocks");
        FAILS(nst_src_job_read(j, 0, DISK_SIZE - 10, buf, 20, &err), -EINVAL, "InvalidInput",
              "beyond the disk");
        FAILS(nst_src_job_extents(j, 1, &ex, &n, &size, &err), -EINVAL, "InvalidInput",
              "no disk 1");
        free(got);
        free(want_h);
        free(ex);
        OK(nst_src_job_end(j, true, &err));
        assert_int_equal(job_type(F.dom), VIR_DOMAIN_JOB_NONE);

        /* The checkpoint covers vda only; the socket is gone. */
        virDomainCheckpointPtr cp = virDomainCheckpointLookupByName(F.dom, "nestor-repl-1", 0);
        assert_non_null(cp);
        char *xml = virDomainCheckpointGetXMLDesc(cp, VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN);
        assert_non_null(xml);
        assert_non_null(strstr(xml, "<disk name='vda' checkpoint='bitmap'"));
        assert_non_null(strstr(xml, "<disk name='vdb' checkpoint='no'/>"));
        free(xml);
        virDomainCheckpointFree(cp);
        char sock[PATH_MAX];
        snprintf(sock, sizeof(sock), "%s/nbd.sock", F.run_dir);
        assert_int_equal(access(sock, F_OK), -1);
        struct stat st;
        assert_int_equal(stat(F.run_dir, &st), 0);
        if (geteuid() == 0)
                assert_int_not_equal(st.st_uid, 0);
        OK(nst_src_checkpoint_check(F.dom, "nestor-repl-1", &err));
}

static void test_incremental(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        guest_write(F.dom, F.qdev, F.expect, 0xa1, 5 * MIB, 128 * KIB);
        guest_write(F.dom, F.qdev, F.expect, 0xa2, 20 * MIB, 4 * KIB);
        guest_write(F.dom, F.qdev, F.expect, 0xa3, 50 * MIB + 64 * KIB, 64 * KIB);
        uint64_t changed = 0;
        OK(nst_src_changed_bytes(F.dom, "nestor-repl-1", &changed, &err));
        assert_int_equal(changed, 256 * KIB);

        struct nst_src_job *j = NULL;
        struct nst_src_job_opts o = opts("nestor-repl-1", "nestor-repl-2");
        OK(nst_src_job_begin(F.dom, &o, &j, NULL, &err));
        uint8_t *pit = point_in_time();
        /* After the point in time: neither may show in this job. */
        guest_write(F.dom, F.qdev, F.expect, 0xee, 5 * MIB, 64 * KIB);
        guest_write(F.dom, F.qdev, F.expect, 0xef, 30 * MIB, 64 * KIB);

        struct nst_src_extent *ex = NULL;
        size_t n = 0;
        OK(nst_src_job_extents(j, 0, &ex, &n, NULL, &err));
        const struct want w[] = {{5 * MIB, 128 * KIB, false},
                                 {20 * MIB, 64 * KIB, false},
                                 {50 * MIB + 64 * KIB, 64 * KIB, false}};
        extents_are(ex, n, w, NST_ARRAY_SIZE(w));
        stream_and_compare(j, 0, ex, n, 8, pit);
        /* The 4 KiB write came back as a whole 64 KiB cluster. */
        assert_int_equal(pit[20 * MIB + 4095], 0xa2);
        assert_int_equal(pit[20 * MIB + 4096], pattern_of(20 * MIB));
        free(ex);

        /* The target did not commit: the next cycle is a differential. */
        OK(nst_src_job_end(j, false, &err));
        assert_false(checkpoint_exists(F.dom, "nestor-repl-2"));
        assert_true(checkpoint_exists(F.dom, "nestor-repl-1"));

        o = opts("nestor-repl-1", "nestor-repl-3");
        OK(nst_src_job_begin(F.dom, &o, &j, NULL, &err));
        OK(nst_src_job_extents(j, 0, &ex, &n, NULL, &err));
        const struct want u[] = {{5 * MIB, 128 * KIB, false},
                                 {20 * MIB, 64 * KIB, false},
                                 {30 * MIB, 64 * KIB, false},
                                 {50 * MIB + 64 * KIB, 64 * KIB, false}};
        extents_are(ex, n, u, NST_ARRAY_SIZE(u));
        stream_and_compare(j, 0, ex, n, 3, F.expect);

        /* A consumer error stops the stream; the connection stays usable. */
        struct sink s = {.expect = F.expect, .fail_at = 2};
        FAILS(nst_src_job_stream(j, 0, ex, n, 3, NULL, sink_fn, &s, &err), -ECANCELED,
              "ReplicationFailed", "the stream stopped at offset 20971520");
        assert_int_equal(s.calls, 2);
        stream_and_compare(j, 0, ex, n, 64, F.expect);
        struct nst_src_extent big = {.offset = 0, .length = NST_SRC_EXTENT_MAX + 4 * KIB};
        FAILS(nst_src_job_stream(j, 0, &big, 1, 1, NULL, sink_fn, &s, &err), -EINVAL,
              "InvalidInput", "data over 512 KiB");

        uint8_t got[64], want_h[64];
        OK(nst_src_job_hashes(j, 0, 5 * MIB / (64 * KIB), 2, got, &err));
        sha256_blocks(F.expect, DISK_SIZE, 5 * MIB / (64 * KIB), 2, want_h);
        assert_memory_equal(got, want_h, sizeof(got));
        free(ex);
        free(pit);
        OK(nst_src_job_end(j, true, &err));
        assert_true(checkpoint_exists(F.dom, "nestor-repl-3"));

        OK(nst_src_changed_bytes(F.dom, "nestor-repl-3", &changed, &err));
        assert_int_equal(changed, 0);
        guest_write(F.dom, F.qdev, F.expect, 0xb1, 40 * MIB, 64 * KIB);
        OK(nst_src_changed_bytes(F.dom, "nestor-repl-3", &changed, &err));
        assert_int_equal(changed, 64 * KIB);
}

static void test_prune(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        /* Someone else's checkpoint is left alone. */
        virDomainCheckpointPtr foreign = virDomainCheckpointCreateXML(
                F.dom,
                "<domaincheckpoint><name>foreign</name><disks><disk name='vda' "
                "checkpoint='bitmap'/><disk name='vdb' checkpoint='no'/><disk name='hdc' "
                "checkpoint='no'/></disks></domaincheckpoint>",
                0);
        if (!foreign)
                fail_msg("foreign checkpoint: %s", virGetLastErrorMessage());
        assert_int_equal(checkpoint_count(F.dom), 3);
        OK(nst_src_checkpoints_prune(F.dom, "nestor-repl-3", &err));
        assert_false(checkpoint_exists(F.dom, "nestor-repl-1"));
        assert_true(checkpoint_exists(F.dom, "nestor-repl-3"));
        assert_true(checkpoint_exists(F.dom, "foreign"));
        /* The chain still works after the prune. */
        struct nst_src_job *j = NULL;
        struct nst_src_job_opts o = opts("nestor-repl-3", "nestor-repl-4");
        OK(nst_src_job_begin(F.dom, &o, &j, NULL, &err));
        struct nst_src_extent *ex = NULL;
        size_t n = 0;
        OK(nst_src_job_extents(j, 0, &ex, &n, NULL, &err));
        const struct want w[] = {{40 * MIB, 64 * KIB, false}};
        extents_are(ex, n, w, NST_ARRAY_SIZE(w));
        stream_and_compare(j, 0, ex, n, 2, F.expect);
        free(ex);
        OK(nst_src_job_end(j, true, &err));
        OK(nst_src_checkpoints_prune(F.dom, NULL, &err));
        assert_int_equal(checkpoint_count(F.dom), 1);
        assert_int_equal(virDomainCheckpointDelete(foreign, 0), 0);
        virDomainCheckpointFree(foreign);
}

static bool file_exists(const char *dir, const char *name) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        return access(path, F_OK) == 0;
}

/* Scratch files made between cycles: taken by the next job of their size,
 * never shadowing the disk, removed with the job. */
static void test_spare_scratch(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        char spare[64], half[64];
        snprintf(spare, sizeof(spare), "spare-vda-%llu.qcow2", (unsigned long long)DISK_SIZE);
        snprintf(half, sizeof(half), "spare-vda-%llu.qcow2", (unsigned long long)DISK_SIZE / 2);
        FAILS(nst_src_scratch_prepare(F.run_dir, "../vda", DISK_SIZE, &err), -EINVAL,
              "InvalidInput", "no spare scratch for disk ../vda");
        FAILS(nst_src_scratch_prepare("run", "vda", DISK_SIZE, &err), -EINVAL, "InvalidInput",
              "no spare scratch");

        /* A spare of another size is not taken: libvirt makes the scratch. */
        OK(nst_src_scratch_prepare(F.run_dir, "vda", DISK_SIZE / 2, &err));
        assert_true(file_exists(F.run_dir, half));
        const uint64_t sizes[] = {DISK_SIZE};
        struct nst_src_job_opts o = opts(NULL, "nestor-repl-5");
        o.sizes = sizes;
        struct nst_src_job *j = NULL;
        OK(nst_src_job_begin(F.dom, &o, &j, NULL, &err));
        assert_true(file_exists(F.run_dir, half));
        assert_true(file_exists(F.run_dir, "scratch-vda.qcow2"));
        OK(nst_src_job_end(j, true, &err));

        /* The right size replaces it, owned by the QEMU user; made twice is
         * made once. */
        OK(nst_src_scratch_prepare(F.run_dir, "vda", DISK_SIZE, &err));
        OK(nst_src_scratch_prepare(F.run_dir, "vda", DISK_SIZE, &err));
        assert_false(file_exists(F.run_dir, half));
        assert_true(file_exists(F.run_dir, spare));
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", F.run_dir, spare);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        if (geteuid() == 0)
                assert_int_not_equal(st.st_uid, 0);

        guest_write(F.dom, F.qdev, F.expect, 0xc1, 10 * MIB, 64 * KIB);
        o = opts("nestor-repl-5", "nestor-repl-6");
        o.sizes = sizes;
        OK(nst_src_job_begin(F.dom, &o, &j, NULL, &err));
        assert_false(file_exists(F.run_dir, spare));
        assert_true(file_exists(F.run_dir, "scratch-vda.spare.qcow2"));
        uint8_t *pit = point_in_time();
        /* Copied before write into the spare: the export keeps the point. */
        guest_write(F.dom, F.qdev, F.expect, 0xc2, 10 * MIB, 64 * KIB);
        guest_write(F.dom, F.qdev, F.expect, 0xc3, 12 * MIB, 64 * KIB);
        struct nst_src_extent *ex = NULL;
        size_t n = 0;
        OK(nst_src_job_extents(j, 0, &ex, &n, NULL, &err));
        const struct want w[] = {{10 * MIB, 64 * KIB, false}};
        extents_are(ex, n, w, NST_ARRAY_SIZE(w));
        stream_and_compare(j, 0, ex, n, 4, pit);
        struct nst_src_extent whole = {.offset = 0, .length = NST_SRC_EXTENT_MAX};
        for (whole.offset = 0; whole.offset < DISK_SIZE; whole.offset += whole.length)
                stream_and_compare(j, 0, &whole, 1, 1, pit);
        free(ex);
        free(pit);
        OK(nst_src_job_end(j, true, &err));
        assert_false(file_exists(F.run_dir, "scratch-vda.spare.qcow2"));

        /* A failed job removes the spare it took, too. */
        OK(nst_src_scratch_prepare(F.run_dir, "vda", DISK_SIZE, &err));
        o = opts("nestor-repl-gone", "nestor-repl-7");
        o.sizes = sizes;
        FAILS(nst_src_job_begin(F.dom, &o, &j, NULL, &err), -ESTALE, "CheckpointBroken",
              "nestor-repl-gone");
        assert_false(file_exists(F.run_dir, spare));
        assert_false(file_exists(F.run_dir, "scratch-vda.spare.qcow2"));
        /* One a killed agent's job left is not taken: it holds copied data. */
        OK(nst_src_scratch_prepare(F.run_dir, "vda", DISK_SIZE, &err));
        snprintf(path, sizeof(path), "%s/scratch-vda.spare.qcow2", F.run_dir);
        FILE *left = fopen(path, "w");
        assert_non_null(left);
        fclose(left);
        o = opts("nestor-repl-6", "nestor-repl-7");
        o.sizes = sizes;
        OK(nst_src_job_begin(F.dom, &o, &j, NULL, &err));
        OK(nst_src_job_extents(j, 0, &ex, &n, NULL, &err));
        const struct want v[] = {{10 * MIB, 64 * KIB, false}, {12 * MIB, 64 * KIB, false}};
        extents_are(ex, n, v, NST_ARRAY_SIZE(v));
        stream_and_compare(j, 0, ex, n, 4, F.expect);
        free(ex);
        OK(nst_src_job_end(j, true, &err));
        OK(nst_src_checkpoints_prune(F.dom, NULL, &err));

        /* A removed replication's run directory goes with what is in it. */
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s/gone", F.run_dir);
        assert_int_equal(mkdir(dir, 0700), 0);
        OK(nst_src_scratch_prepare(dir, "vdb", VDB_SIZE, &err));
        char sock[PATH_MAX + 16];
        snprintf(sock, sizeof(sock), "%s/nbd.sock", dir);
        FILE *f = fopen(sock, "w");
        assert_non_null(f);
        fclose(f);
        nst_src_run_dir_remove(dir);
        assert_int_equal(access(dir, F_OK), -1);
}

static void test_abort_stale(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        OK(nst_src_abort_stale_job(F.dom, &err));
        char *xml = NULL;
        /* What a killed agent leaves behind: a job nobody will end. */
        assert_true(asprintf(&xml,
                             "<domainbackup mode='pull'><server transport='unix' "
                             "socket='%s/stale.sock'/><disks><disk name='vda' backup='yes' "
                             "type='file'><scratch file='%s/stale-vda.qcow2'/></disk>"
                             "<disk name='vdb' backup='no'/><disk name='hdc' backup='no'/>"
                             "</disks></domainbackup>",
                             F.run_dir, F.run_dir) > 0);
        if (virDomainBackupBegin(F.dom, xml, NULL, 0) < 0)
                fail_msg("raw backup begin: %s", virGetLastErrorMessage());
        free(xml);
        assert_int_not_equal(job_type(F.dom), VIR_DOMAIN_JOB_NONE);
        nst_error_clear(&err);
        assert_int_equal(nst_src_abort_stale_job(F.dom, &err), 1);
        assert_int_equal(job_type(F.dom), VIR_DOMAIN_JOB_NONE);
        assert_int_equal(nst_src_abort_stale_job(F.dom, &err), 0);
        /* A new job can start. */
        struct nst_src_job *j = NULL;
        struct nst_src_job_opts o = opts(NULL, NULL);
        OK(nst_src_job_begin(F.dom, &o, &j, NULL, &err));
        OK(nst_src_job_end(j, false, &err));
}

static void kill_qemu(const char *name) {
        char path[PATH_MAX], buf[32] = "";
        snprintf(path, sizeof(path), "/run/libvirt/qemu/%s.pid", name);
        FILE *f = fopen(path, "r");
        if (!f)
                fail_msg("cannot read %s", path);
        assert_non_null(fgets(buf, sizeof(buf), f));
        fclose(f);
        pid_t pid = (pid_t)strtol(buf, NULL, 10);
        assert_true(pid > 1);
        assert_int_equal(kill(pid, SIGKILL), 0);
}

static void full_cycle(virDomainPtr dom, const char *cp, const uint8_t *expect) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_src_job *j = NULL;
        struct nst_src_job_opts o = opts(NULL, cp);
        OK(nst_src_job_begin(dom, &o, &j, NULL, &err));
        struct nst_src_extent *ex = NULL;
        size_t n = 0;
        OK(nst_src_job_extents(j, 0, &ex, &n, NULL, &err));
        stream_and_compare(j, 0, ex, n, 4, expect);
        free(ex);
        OK(nst_src_job_end(j, true, &err));
}

static void test_qemu_crash(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        virDomainPtr d = F.crash_dom;
        full_cycle(d, "nestor-repl-1", F.crash_expect);
        /* A clean stop stores nestor-repl-1 in the image... */
        assert_int_equal(virDomainDestroyFlags(d, VIR_DOMAIN_DESTROY_GRACEFUL), 0);
        wait_inactive(d);
        assert_int_equal(virDomainCreate(d), 0);
        find_qdev(d, F.crash_qdev, sizeof(F.crash_qdev));
        guest_write(d, F.crash_qdev, F.crash_expect, 0xc1, 1 * MIB, 64 * KIB);
        struct nst_src_job *j = NULL;
        struct nst_src_job_opts o = opts("nestor-repl-1", "nestor-repl-2");
        OK(nst_src_job_begin(d, &o, &j, NULL, &err));
        OK(nst_src_job_end(j, true, &err));
        guest_write(d, F.crash_qdev, F.crash_expect, 0xc2, 2 * MIB, 64 * KIB);

        /* ...then QEMU dies: nestor-repl-2 (made at run time) is lost and
         * nestor-repl-1 is left "in use", i.e. inconsistent. */
        kill_qemu(F.crash_name);
        wait_inactive(d);
        assert_int_equal(virDomainCreate(d), 0);
        assert_int_equal(checkpoint_count(d), 2);
        FAILS(nst_src_checkpoint_check(d, "nestor-repl-1", &err), -ESTALE, "CheckpointBroken",
              "bitmap 'nestor-repl-1' of disk 'vda' is inconsistent");
        FAILS(nst_src_checkpoint_check(d, "nestor-repl-2", &err), -ESTALE, "CheckpointBroken",
              "bitmap 'nestor-repl-2' of disk 'vda' is missing");
        uint64_t changed;
        FAILS(nst_src_changed_bytes(d, "nestor-repl-2", &changed, &err), -ESTALE,
              "CheckpointBroken", "is missing");
        FAILS(nst_src_changed_bytes(d, "nestor-repl-1", &changed, &err), -ESTALE,
              "CheckpointBroken", "is inconsistent");
        o = opts("nestor-repl-1", "nestor-repl-3");
        FAILS(nst_src_job_begin(d, &o, &j, NULL, &err), -ESTALE, "CheckpointBroken",
              "is inconsistent");
        o = opts("nestor-repl-2", "nestor-repl-3");
        FAILS(nst_src_job_begin(d, &o, &j, NULL, &err), -ESTALE, "CheckpointBroken",
              "nestor-repl-2");
        assert_int_equal(job_type(d), VIR_DOMAIN_JOB_NONE);

        /* Recovery: drop the chain and start a new one (reusing a name whose
         * stale bitmap was in the image). */
        assert_true(nestor_bitmaps(d) > 0);   /* the inconsistent nestor-repl-1 */
        OK(nst_src_checkpoints_prune(d, NULL, &err));
        assert_int_equal(checkpoint_count(d), 0);
        assert_int_equal(nestor_bitmaps(d), 0);
        full_cycle(d, "nestor-repl-1", F.crash_expect);
        OK(nst_src_checkpoint_check(d, "nestor-repl-1", &err));
        find_qdev(d, F.crash_qdev, sizeof(F.crash_qdev));
        guest_write(d, F.crash_qdev, F.crash_expect, 0xc3, 3 * MIB, 64 * KIB);
        OK(nst_src_changed_bytes(d, "nestor-repl-1", &changed, &err));
        assert_int_equal(changed, 64 * KIB);
}

/* ---- setup and teardown ---- */

static int setup(void **state) {
        nst_lv_quiet_errors();
        const char *uri = getenv("NESTOR_TEST_URI");
        F.conn = virConnectOpen(uri);
        if (!F.conn) {
                fprintf(stderr, "cannot connect to %s: %s\n", uri, virGetLastErrorMessage());
                return -1;
        }
        const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(F.dir, sizeof(F.dir), "%s/nst-src-XXXXXX", tmp);
        if (!mkdtemp(F.dir)) {
                F.dir[0] = '\0';
                return -1;
        }
        chmod(F.dir, 0755);   /* the QEMU user walks through it */
        snprintf(F.run_dir, sizeof(F.run_dir), "%s/run", F.dir);
        snprintf(F.name, sizeof(F.name), "nestor-src-test-%d", (int)getpid());
        snprintf(F.crash_name, sizeof(F.crash_name), "nestor-src-test-%d-crash", (int)getpid());
        F.expect = calloc(1, DISK_SIZE);
        F.crash_expect = calloc(1, CRASH_SIZE);
        if (!F.expect || !F.crash_expect)
                return -1;

        char vda[PATH_MAX], vdb[PATH_MAX], cvda[PATH_MAX];
        snprintf(vda, sizeof(vda), "%s/vda.qcow2", F.dir);
        snprintf(vdb, sizeof(vdb), "%s/vdb.qcow2", F.dir);
        snprintf(cvda, sizeof(cvda), "%s/crash-vda.qcow2", F.dir);
        make_qcow2(vda, DISK_SIZE);
        make_qcow2(vdb, VDB_SIZE);
        make_qcow2(cvda, CRASH_SIZE);
        fill_vda(vda, F.expect);

        char *xml = domain_xml(F.name, vda, vdb, true);
        F.dom = virDomainCreateXML(F.conn, xml, 0);
        free(xml);
        if (!F.dom) {
                fprintf(stderr, "cannot start %s: %s\n", F.name, virGetLastErrorMessage());
                return -1;
        }
        find_qdev(F.dom, F.qdev, sizeof(F.qdev));
        /* Persistent: checkpoint metadata must survive the QEMU crash. */
        xml = domain_xml(F.crash_name, cvda, NULL, false);
        F.crash_dom = virDomainDefineXML(F.conn, xml);
        free(xml);
        if (!F.crash_dom || virDomainCreate(F.crash_dom) < 0) {
                fprintf(stderr, "cannot start %s: %s\n", F.crash_name, virGetLastErrorMessage());
                return -1;
        }
        find_qdev(F.crash_dom, F.crash_qdev, sizeof(F.crash_qdev));
        guest_write(F.crash_dom, F.crash_qdev, F.crash_expect, 0x77, 0, 4 * MIB);
        return 0;
}

static int teardown(void **state) {
        if (F.dom) {
                virDomainDestroy(F.dom);
                virDomainFree(F.dom);
        }
        if (F.crash_dom) {
                if (virDomainIsActive(F.crash_dom) == 1)
                        virDomainDestroy(F.crash_dom);
                if (virDomainUndefineFlags(F.crash_dom,
                                           VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA) < 0)
                        fprintf(stderr, "cannot undefine %s: %s\n", F.crash_name,
                                virGetLastErrorMessage());
                virDomainFree(F.crash_dom);
        }
        if (F.conn)
                virConnectClose(F.conn);
        if (F.dir[0])
                nftw(F.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(F.expect);
        free(F.crash_expect);
        return 0;
}

int main(void) {
        if (!getenv("NESTOR_TEST_URI")) {
                fprintf(stderr, "NESTOR_TEST_URI is not set; skipping\n");
                return 77;
        }
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_list_disks),  cmocka_unit_test(test_bad_input),
                cmocka_unit_test(test_full),        cmocka_unit_test(test_incremental),
                cmocka_unit_test(test_prune),       cmocka_unit_test(test_spare_scratch),
                cmocka_unit_test(test_abort_stale),
                cmocka_unit_test(test_qemu_crash),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
