/* The instance lifecycle of the libvirt plugin against libvirt's in-process
 * test:///default driver: the plugin runs in a tiny in-process agent
 * (agent/host.h with the plugin built in, a real notifier writing to an
 * outbox the test reads), and every method is called through the plugin's
 * own method table with a call context. Disks are made by the real
 * qemu-img.
 *
 * All test:///default connections of a process share one state, which
 * libvirt frees with the last connection: the fixture keeps one open, so
 * domains survive a plugin restart as they survive an agent restart. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libvirt/libvirt.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/clock.h"
#include "agent/core_options.h"
#include "agent/host.h"
#include "agent/notifier.h"
#include "agent/outbox.h"
#include "messages/envelope.h"
#include "plugins/libvirt/disks.h"
#include "plugins/libvirt/inventory.h"
#include "plugins/libvirt/lv_plugin.h"
#include "plugins/libvirt/lv_util.h"

extern const struct nst_plugin_info nst_plugin;

#define CTX "{\"user_id\": \"u-1\", \"user_name\": \"admin\", \"project_id\": \"p-1\", " \
            "\"project_name\": \"demo\", \"request_id\": \"req-42\"}"

static char root[64];             /* temp dir: state_path and images */
static virConnectPtr keeper;      /* keeps test:///default's state alive */

struct env {
        struct nst_config *cfg;
        struct nst_host *host;
        struct nst_outbox *outbox;
        struct nst_notifier *notifier;
        struct lv_plugin *p;
        json_object *ctx;
        json_object *seen;        /* notifications read from the outbox, in order */
        /* Scripted MACs (NULL-terminated), then random. */
        const char *const *macs;
        size_t next_mac;
};

/* ---- fixture ---- */

static int scripted_mac(void *ud, unsigned char out[3]) {
        struct env *e = ud;
        if (e->macs && e->macs[e->next_mac]) {
                unsigned a, b, c;
                sscanf(e->macs[e->next_mac++] + 9, "%x:%x:%x", &a, &b, &c);
                out[0] = (unsigned char)a;
                out[1] = (unsigned char)b;
                out[2] = (unsigned char)c;
                return 0;
        }
        for (int i = 0; i < 3; i++)
                out[i] = (unsigned char)(rand() & 0xff);
        return 0;
}

static void env_start(struct env *e, const char *extra) {
        struct nst_error err = NST_ERROR_INIT;
        char conf[2048];
        snprintf(conf, sizeof(conf),
                 "[DEFAULT]\nstate_path = %s/state\n[libvirt]\nimage_dirs = %s/images\n%s", root,
                 root, extra ? extra : "uri = test:///default\n");
        memset(e, 0, sizeof(*e));
        assert_int_equal(nst_config_new(&e->cfg), 0);
        assert_int_equal(nst_config_load_string(e->cfg, "test.conf", conf, &err), 0);
        assert_int_equal(nst_core_options_register(e->cfg, &err), 0);
        assert_int_equal(nst_host_new(e->cfg, "node1", &e->host), 0);
        if (nst_host_add_builtin(e->host, &nst_plugin, &err) < 0 ||
            nst_config_resolve(e->cfg, &err) < 0)
                fail_msg("plugin init: %s", err.message);
        static const char *const topics[] = {"versioned_notifications", NULL};
        const struct nst_notifier_config nc = {
                .exchange = "nestor",
                .topics = topics,
                .publisher_id = "nestor-compute:node1",
                .enabled = true,
        };
        assert_int_equal(nst_outbox_new(&e->outbox), 0);
        assert_int_equal(nst_notifier_new(&nc, e->outbox, &e->notifier), 0);
        e->host->notifier = e->notifier;
        if (nst_host_start_plugins(e->host, &err) < 0)
                fail_msg("plugin start: %s", err.message);
        e->p = e->host->plugins[0].priv;
        e->p->mac_random = scripted_mac;
        e->p->mac_random_userdata = e;
        e->ctx = json_tokener_parse(CTX);
        e->seen = json_object_new_array();
}

static void env_stop(struct env *e) {
        nst_host_stop_plugins(e->host);
        e->host->notifier = NULL;
        nst_host_free(e->host);
        nst_notifier_free(e->notifier);
        nst_outbox_free(e->outbox);
        nst_config_free(e->cfg);
        json_object_put(e->ctx);
        json_object_put(e->seen);
}

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));
        env_start(e, NULL);
        assert_true(nst_lv_conn_wait(e->p->conn, 5000));
        *state = e;
        return 0;
}

static int teardown(void **state) {
        struct env *e = *state;
        env_stop(e);
        free(e);
        return 0;
}

/* ---- calls ---- */

static int call(struct env *e, const char *method, const char *args, json_object **ret,
                struct nst_error *err) {
        json_object *a = json_tokener_parse(args);
        if (!a)
                fail_msg("test args do not parse: %s", args);
        *ret = NULL;
        int r = nst_lv_call(e->p, method, e->ctx, a, ret, err);
        json_object_put(a);
        return r;
}

static json_object *ok(struct env *e, const char *method, const char *fmt, ...) _printf_(3, 4);
static json_object *ok(struct env *e, const char *method, const char *fmt, ...) {
        char args[4096];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(args, sizeof(args), fmt, ap);
        va_end(ap);
        struct nst_error err = NST_ERROR_INIT;
        json_object *ret;
        if (call(e, method, args, &ret, &err) < 0)
                fail_msg("%s %s: %s: %s", method, args, err.cls, err.message);
        return ret;
}

static void fails(struct env *e, const char *cls, const char *contains, const char *method,
                  const char *fmt, ...) _printf_(5, 6);
static void fails(struct env *e, const char *cls, const char *contains, const char *method,
                  const char *fmt, ...) {
        char args[4096];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(args, sizeof(args), fmt, ap);
        va_end(ap);
        struct nst_error err = NST_ERROR_INIT;
        json_object *ret;
        if (call(e, method, args, &ret, &err) >= 0) {
                json_object_put(ret);
                fail_msg("%s %s succeeded, expected %s", method, args, cls);
        }
        if (strcmp(err.cls, cls) != 0 || !strstr(err.message, contains))
                fail_msg("%s %s: expected %s '...%s...', got %s '%s'", method, args, cls,
                         contains, err.cls, err.message);
}

static const char *str(json_object *o, const char *key) {
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                fail_msg("no string %s in %s", key, json_object_to_json_string(o));
        return json_object_get_string(v);
}

/* spawn with a fresh name; returns the result (owned). */
static json_object *spawn(struct env *e, const char *name, const char *more) {
        return ok(e, "spawn",
                  "{\"spec\": {\"name\": \"%s\", \"vcpus\": 1, \"memory_mb\": 128, "
                  "\"disks\": [{\"size_gb\": 1}], \"nics\": [{\"network\": \"default\"}]%s%s}}",
                  name, more ? ", " : "", more ? more : "");
}

/* ---- what exists ---- */

static int count_domains(void) {
        return virConnectNumOfDomains(keeper) + virConnectNumOfDefinedDomains(keeper);
}

static int count_instance_dirs(void) {
        char path[128];
        snprintf(path, sizeof(path), "%s/state/instances", root);
        DIR *d = opendir(path);
        if (!d)
                return 0;
        int n = 0;
        for (struct dirent *de; (de = readdir(d));)
                n += de->d_name[0] != '.';
        closedir(d);
        return n;
}

static bool instance_file(const char *uuid, const char *file) {
        char path[256];
        struct stat st;
        snprintf(path, sizeof(path), "%s/state/instances/%s%s%s", root, uuid, file ? "/" : "",
                 file ? file : "");
        return stat(path, &st) == 0;
}

static bool domain_exists(const char *uuid) {
        virDomainPtr d = virDomainLookupByUUIDString(keeper, uuid);
        if (d)
                virDomainFree(d);
        return d != NULL;
}

/* ---- notifications ---- */

static void drain(struct env *e) {
        for (struct nst_outbox_item *it = nst_outbox_take_all(e->outbox), *next; it; it = next) {
                next = it->next;
                json_object *inner = NULL;
                struct nst_error err = NST_ERROR_INIT;
                if (nst_envelope_decode(it->body, it->body_len, 1 << 20, &inner, &err) < 0)
                        fail_msg("bad notification body: %s", err.message);
                json_object_array_add(e->seen, inner);
                nst_outbox_item_free(it);
        }
}

static json_object *payload_data(json_object *msg) {
        json_object *payload, *data;
        assert_true(json_object_object_get_ex(msg, "payload", &payload));
        assert_true(json_object_object_get_ex(payload, "nova_object.data", &data));
        return data;
}

/* Removes and returns (owned) the first notification of type about uuid,
 * waiting up to wait_ms for it; NULL when none came. */
static json_object *take_event(struct env *e, const char *type, const char *uuid, int wait_ms) {
        int64_t deadline = nst_now_ms() + wait_ms;
        for (;;) {
                drain(e);
                for (size_t i = 0; i < json_object_array_length(e->seen); i++) {
                        json_object *m = json_object_array_get_idx(e->seen, i);
                        if (strcmp(str(m, "event_type"), type) == 0 &&
                            strcmp(str(payload_data(m), "uuid"), uuid) == 0) {
                                json_object_get(m);
                                json_object_array_del_idx(e->seen, i, 1);
                                return m;
                        }
                }
                if (nst_now_ms() >= deadline)
                        return NULL;
                usleep(10000);
        }
}

static json_object *expect_event(struct env *e, const char *type, const char *uuid) {
        json_object *m = take_event(e, type, uuid, 3000);
        if (!m)
                fail_msg("no %s notification for %s", type, uuid);
        return m;
}

static void expect_no_event(struct env *e, const char *type, const char *uuid) {
        json_object *m = take_event(e, type, uuid, 300);
        if (m) {
                json_object_put(m);
                fail_msg("unexpected %s notification for %s", type, uuid);
        }
}

static void check_payload(json_object *m, const char *cls, const char *uuid, const char *state,
                          const char *power_state) {
        json_object *payload, *v;
        assert_true(json_object_object_get_ex(m, "payload", &payload));
        assert_string_equal(str(payload, "nova_object.name"), cls);
        assert_string_equal(str(payload, "nova_object.namespace"), "nova");
        json_object *d = payload_data(m);
        assert_string_equal(str(d, "uuid"), uuid);
        assert_string_equal(str(d, "host"), "node1");
        assert_string_equal(str(d, "node"), "node1");
        assert_string_equal(str(d, "state"), state);
        assert_string_equal(str(d, "power_state"), power_state);
        assert_string_equal(str(d, "user_id"), "u-1");
        assert_string_equal(str(d, "tenant_id"), "p-1");
        /* Every InstancePayload key is present, null where unknown. */
        static const char *const keys[] = {
                "reservation_id", "display_name", "display_description", "host_name",
                "os_type", "architecture", "availability_zone", "flavor", "image_uuid",
                "key_name", "kernel_id", "ramdisk_id", "created_at", "launched_at",
                "terminated_at", "deleted_at", "updated_at", "task_state", "progress",
                "ip_addresses", "block_devices", "metadata", "locked", "locked_reason",
                "auto_disk_config", "request_id", "action_initiator_user",
                "action_initiator_project", "fault", NULL};
        for (size_t i = 0; keys[i]; i++)
                if (!json_object_object_get_ex(d, keys[i], &v))
                        fail_msg("payload lacks %s: %s", keys[i], json_object_to_json_string(d));
        assert_string_equal(str(m, "publisher_id"), "nestor-compute:node1");
}

/* ---- tests ---- */

static void test_spawn_plain(void **state) {
        struct env *e = *state;
        int domains = count_domains();
        json_object *r = spawn(e, "lc-plain", NULL);
        char uuid[37];
        snprintf(uuid, sizeof(uuid), "%s", str(r, "uuid"));
        assert_string_equal(str(r, "name"), "lc-plain");
        assert_string_equal(str(r, "state"), "running");
        assert_string_equal(str(r, "profile"), "plain");
        json_object_put(r);
        assert_int_equal(count_domains(), domains + 1);

        /* The disk is a qcow2 file in the instance directory. */
        char path[256], magic[4] = {0};
        snprintf(path, sizeof(path), "%s/state/instances/%s/disk0.qcow2", root, uuid);
        int fd = open(path, O_RDONLY);
        assert_true(fd >= 0);
        assert_int_equal(read(fd, magic, 4), 4);
        close(fd);
        assert_memory_equal(magic, "QFI\xfb", 4);

        json_object *m = expect_event(e, "instance.create.start", uuid);
        check_payload(m, "InstanceCreatePayload", uuid, "building", "pending");
        assert_string_equal(str(payload_data(m), "request_id"), "req-42");
        json_object_put(m);
        m = expect_event(e, "instance.create.end", uuid);
        check_payload(m, "InstanceCreatePayload", uuid, "active", "running");
        assert_string_equal(str(payload_data(m), "display_name"), "lc-plain");
        json_object_put(m);
        /* Starting is part of the creation: no power_on.end of its own. */
        expect_no_event(e, "instance.power_on.end", uuid);

        json_object *info = ok(e, "get_info", "{\"instance\": \"lc-plain\"}");
        assert_string_equal(str(info, "uuid"), uuid);
        assert_string_equal(str(info, "state"), "running");
        assert_string_equal(str(info, "profile"), "plain");
        json_object *v, *md, *owner;
        assert_true(json_object_object_get_ex(info, "vcpus", &v));
        assert_int_equal(json_object_get_int(v), 1);
        assert_true(json_object_object_get_ex(info, "memory_mb", &v));
        assert_int_equal(json_object_get_int(v), 128);
        assert_true(json_object_object_get_ex(info, "metadata", &md));
        assert_true(json_object_object_get_ex(md, "owner", &owner));
        assert_string_equal(str(owner, "user_id"), "u-1");
        assert_string_equal(str(owner, "project_name"), "demo");
        assert_true(json_object_object_get_ex(md, "nics", &v));
        const char *mac = str(json_object_array_get_idx(v, 0), "mac");
        assert_true(strncmp(mac, "52:54:00:", 9) == 0);
        json_object_put(info);

        /* By uuid too, and get_xml carries Nestor's metadata. */
        info = ok(e, "get_info", "{\"instance\": \"%s\"}", uuid);
        assert_string_equal(str(info, "name"), "lc-plain");
        json_object_put(info);
        json_object *xml = ok(e, "get_xml", "{\"instance\": \"%s\"}", uuid);
        assert_non_null(strstr(json_object_get_string(xml), NST_METADATA_NS));
        json_object_put(xml);

        /* list_instances: Nestor's instances only (not the driver's "test"). */
        json_object *list = ok(e, "list_instances", "{}");
        bool found = false;
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                json_object *it = json_object_array_get_idx(list, i);
                assert_string_not_equal(str(it, "name"), "test");
                if (strcmp(str(it, "uuid"), uuid) == 0) {
                        found = true;
                        assert_string_equal(str(it, "state"), "running");
                        assert_string_equal(str(it, "profile"), "plain");
                }
        }
        assert_true(found);
        json_object_put(list);

        /* The report counts instances by state. */
        json_object *report = nst_host_collect_report(e->host), *sec, *inst, *by;
        assert_true(json_object_object_get_ex(report, "libvirt", &sec));
        assert_true(json_object_object_get_ex(sec, "instances", &inst));
        assert_true(json_object_object_get_ex(inst, "by_state", &by));
        assert_true(json_object_object_get_ex(by, "running", &v));
        assert_true(json_object_get_int(v) >= 1);
        assert_true(json_object_object_get_ex(sec, "connection", &v));
        assert_string_equal(str(v, "state"), "connected");
        json_object_put(report);

        json_object_put(ok(e, "destroy", "{\"instance\": \"%s\"}", uuid));
        assert_int_equal(count_domains(), domains);
}

static void test_unknown_instances(void **state) {
        struct env *e = *state;
        fails(e, "InstanceNotFound", "not found", "get_info", "{\"instance\": \"nope\"}");
        fails(e, "InstanceNotFound", "not found", "power_on",
              "{\"instance\": \"0b5f7c2e-9c1a-4d7e-8f00-000000000001\"}");
        /* The driver's own domain is not Nestor's: invisible and untouchable. */
        fails(e, "InstanceNotFound", "not an instance managed by Nestor", "destroy",
              "{\"instance\": \"test\"}");
        fails(e, "InstanceNotFound", "not an instance managed by Nestor", "power_off",
              "{\"instance\": \"test\"}");
        virDomainPtr d = virDomainLookupByName(keeper, "test");
        assert_non_null(d);
        virDomainFree(d);
        fails(e, "InvalidInput", "instance", "get_info", "{}");
        fails(e, "InvalidInput", "unexpected argument 'force'", "destroy",
              "{\"instance\": \"x\", \"force\": true}");
        fails(e, "InvalidInput", "timeout", "power_off", "{\"instance\": \"x\", \"timeout\": -1}");
}

static void test_duplicates_create_nothing(void **state) {
        struct env *e = *state;
        json_object *r = spawn(e, "lc-dup", NULL);
        char uuid[37];
        snprintf(uuid, sizeof(uuid), "%s", str(r, "uuid"));
        json_object_put(r);
        int domains = count_domains(), dirs = count_instance_dirs();
        drain(e);
        json_object_array_del_idx(e->seen, 0, json_object_array_length(e->seen));

        const char *other = "5a1c9a1e-0000-4000-8000-00000000d0b1";
        fails(e, "InstanceExists", "name", "spawn",
              "{\"spec\": {\"name\": \"lc-dup\", \"uuid\": \"%s\", \"vcpus\": 1, "
              "\"memory_mb\": 128, \"disks\": [{\"size_gb\": 1}]}}",
              other);
        fails(e, "InstanceExists", "uuid", "spawn",
              "{\"spec\": {\"name\": \"lc-dup2\", \"uuid\": \"%s\", \"vcpus\": 1, "
              "\"memory_mb\": 128}}",
              uuid);
        /* The driver's own domain's name is taken too. */
        fails(e, "InstanceExists", "name", "spawn",
              "{\"spec\": {\"name\": \"test\", \"vcpus\": 1, \"memory_mb\": 128}}");
        assert_int_equal(count_domains(), domains);
        assert_int_equal(count_instance_dirs(), dirs);
        assert_false(instance_file(other, NULL));
        assert_true(instance_file(uuid, "disk0.qcow2"));
        /* Refused before create.start: nothing was announced. */
        expect_no_event(e, "instance.create.start", other);
        json_object_put(ok(e, "destroy", "{\"instance\": \"lc-dup\"}"));
}

static void test_bad_specs_leave_nothing(void **state) {
        struct env *e = *state;
        int domains = count_domains(), dirs = count_instance_dirs();
        char outside[128], link[128];
        snprintf(outside, sizeof(outside), "%s/outside.qcow2", root);
        snprintf(link, sizeof(link), "%s/images/escape.qcow2", root);

        fails(e, "InvalidInput", "spec.profile", "spawn",
              "{\"spec\": {\"name\": \"lc-bad\", \"vcpus\": 1, \"memory_mb\": 128, "
              "\"profile\": \"nope\"}}");
        fails(e, "InvalidInput", "spec.vcpus", "spawn",
              "{\"spec\": {\"name\": \"lc-bad\", \"vcpus\": 0, \"memory_mb\": 128}}");
        fails(e, "InvalidInput", "spec.nics[0].model", "spawn",
              "{\"spec\": {\"name\": \"lc-bad\", \"vcpus\": 1, \"memory_mb\": 128, "
              "\"nics\": [{\"network\": \"default\", \"model\": \"vmxnet4\"}]}}");
        fails(e, "ImageNotFound", "spec.disks[0].image", "spawn",
              "{\"spec\": {\"name\": \"lc-bad\", \"vcpus\": 1, \"memory_mb\": 128, "
              "\"disks\": [{\"image\": \"%s/images/missing.qcow2\"}]}}",
              root);
        /* Escapes: a file outside the image directories, directly or
         * through a symlink planted inside them; '..' never parses. */
        fails(e, "InvalidInput", "outside the allowed image directories", "spawn",
              "{\"spec\": {\"name\": \"lc-bad\", \"vcpus\": 1, \"memory_mb\": 128, "
              "\"disks\": [{\"image\": \"%s\"}]}}",
              outside);
        fails(e, "InvalidInput", "outside the allowed image directories", "spawn",
              "{\"spec\": {\"name\": \"lc-bad\", \"vcpus\": 1, \"memory_mb\": 128, "
              "\"disks\": [{\"size_gb\": 1}, {\"image\": \"%s\"}]}}",
              link);
        fails(e, "InvalidInput", "spec.disks[0].image", "spawn",
              "{\"spec\": {\"name\": \"lc-bad\", \"vcpus\": 1, \"memory_mb\": 128, "
              "\"disks\": [{\"image\": \"%s/images/../outside.qcow2\"}]}}",
              root);
        /* A base with a backing file outside the image directories. */
        fails(e, "InvalidInput", "backing file outside", "spawn",
              "{\"spec\": {\"name\": \"lc-bad\", \"vcpus\": 1, \"memory_mb\": 128, "
              "\"disks\": [{\"image\": \"%s/images/sneaky.qcow2\"}]}}",
              root);
        /* An overlay smaller than its base. */
        fails(e, "InvalidInput", "smaller than the image", "spawn",
              "{\"spec\": {\"name\": \"lc-bad\", \"vcpus\": 1, \"memory_mb\": 128, "
              "\"disks\": [{\"image\": \"%s/images/big.raw\", \"size_gb\": 1}]}}",
              root);
        /* This host cannot nest (test driver, no vmx/svm here). */
        fails(e, "NestingUnavailable", "nested virtualization", "spawn",
              "{\"spec\": {\"name\": \"lc-bad\", \"vcpus\": 2, \"memory_mb\": 512, "
              "\"profile\": \"nested-kvm\"}}");
        fails(e, "InvalidInput", "unexpected argument", "spawn",
              "{\"spec\": {\"name\": \"lc-bad\", \"vcpus\": 1, \"memory_mb\": 128}, \"x\": 1}");
        assert_int_equal(count_domains(), domains);
        assert_int_equal(count_instance_dirs(), dirs);
}

static void test_pci_requests_refused(void **state) {
        struct env *e = *state;
        int domains = count_domains(), dirs = count_instance_dirs();
        fails(e, "PciAllocationFailed", "no PCI device plugin is enabled", "spawn",
              "{\"spec\": {\"name\": \"lc-pci\", "
              "\"uuid\": \"5a1c9a1e-0000-4000-8000-0000000000c1\", \"vcpus\": 1, "
              "\"memory_mb\": 128, \"disks\": [{\"size_gb\": 1}], "
              "\"pci_requests\": [{\"alias\": \"vf\", \"count\": 1}]}}");
        assert_int_equal(count_domains(), domains);
        assert_int_equal(count_instance_dirs(), dirs);
        expect_no_event(e, "instance.create.start", "5a1c9a1e-0000-4000-8000-0000000000c1");
}

static void test_power_cycle(void **state) {
        struct env *e = *state;
        json_object *r = spawn(e, "lc-power", NULL);
        char uuid[37];
        snprintf(uuid, sizeof(uuid), "%s", str(r, "uuid"));
        json_object_put(r);
        json_object *m;

        r = ok(e, "power_off", "{\"instance\": \"lc-power\", \"timeout\": 5}");
        assert_string_equal(str(r, "state"), "shutdown");
        json_object_put(r);
        m = expect_event(e, "instance.power_off.end", uuid);
        check_payload(m, "InstanceActionPayload", uuid, "stopped", "shutdown");
        json_object_put(m);
        fails(e, "InstanceInvalidState", "is shutdown", "power_off", "{\"instance\": \"%s\"}",
              uuid);
        fails(e, "InstanceInvalidState", "must be paused", "resume", "{\"instance\": \"%s\"}",
              uuid);
        fails(e, "InstanceInvalidState", "must be running", "suspend", "{\"instance\": \"%s\"}",
              uuid);
        fails(e, "InstanceInvalidState", "soft reboot", "reboot", "{\"instance\": \"%s\"}",
              uuid);

        r = ok(e, "power_on", "{\"instance\": \"%s\"}", uuid);
        assert_string_equal(str(r, "state"), "running");
        json_object_put(r);
        m = expect_event(e, "instance.power_on.end", uuid);
        check_payload(m, "InstanceActionPayload", uuid, "active", "running");
        json_object_put(m);
        fails(e, "InstanceInvalidState", "is running", "power_on", "{\"instance\": \"%s\"}",
              uuid);

        r = ok(e, "suspend", "{\"instance\": \"%s\"}", uuid);
        assert_string_equal(str(r, "state"), "paused");
        json_object_put(r);
        m = expect_event(e, "instance.suspend.end", uuid);
        check_payload(m, "InstanceActionPayload", uuid, "suspended", "paused");
        json_object_put(m);
        fails(e, "InstanceInvalidState", "is paused", "suspend", "{\"instance\": \"%s\"}", uuid);
        fails(e, "InstanceInvalidState", "is paused", "power_on", "{\"instance\": \"%s\"}", uuid);
        r = ok(e, "resume", "{\"instance\": \"%s\"}", uuid);
        assert_string_equal(str(r, "state"), "running");
        json_object_put(r);
        json_object_put(expect_event(e, "instance.resume.end", uuid));
        fails(e, "InstanceInvalidState", "is running", "resume", "{\"instance\": \"%s\"}", uuid);

        /* Reboots report themselves, not as a power cycle. */
        r = ok(e, "reboot", "{\"instance\": \"%s\"}", uuid);
        assert_string_equal(str(r, "state"), "running");
        assert_false(json_object_get_boolean(json_object_object_get(r, "hard")));
        json_object_put(r);
        m = expect_event(e, "instance.reboot.end", uuid);
        check_payload(m, "InstanceActionPayload", uuid, "active", "running");
        json_object_put(m);
        r = ok(e, "reboot", "{\"instance\": \"%s\", \"hard\": true}", uuid);
        assert_true(json_object_get_boolean(json_object_object_get(r, "hard")));
        json_object_put(r);
        json_object_put(expect_event(e, "instance.reboot.end", uuid));
        expect_no_event(e, "instance.power_off.end", uuid);
        expect_no_event(e, "instance.power_on.end", uuid);

        /* timeout 0: straight to a forced stop. */
        r = ok(e, "power_off", "{\"instance\": \"%s\", \"timeout\": 0}", uuid);
        assert_true(json_object_get_boolean(json_object_object_get(r, "forced")));
        json_object_put(r);
        json_object_put(expect_event(e, "instance.power_off.end", uuid));
        /* A hard reboot also brings back a stopped guest. */
        json_object_put(ok(e, "reboot", "{\"instance\": \"%s\", \"hard\": true}", uuid));
        json_object_put(ok(e, "destroy", "{\"instance\": \"%s\"}", uuid));
}

static void test_destroy_removes_everything(void **state) {
        struct env *e = *state;
        int domains = count_domains(), dirs = count_instance_dirs();
        char spec_more[256];
        snprintf(spec_more, sizeof(spec_more),
                 "\"disks\": [{\"image\": \"%s/images/base.qcow2\"}, {\"size_gb\": 2}]", root);
        /* spawn() adds its own disks: build this spec by hand. */
        json_object *r = ok(e, "spawn",
                            "{\"spec\": {\"name\": \"lc-destroy\", \"vcpus\": 1, "
                            "\"memory_mb\": 128, %s}}",
                            spec_more);
        char uuid[37];
        snprintf(uuid, sizeof(uuid), "%s", str(r, "uuid"));
        json_object_put(r);
        assert_true(instance_file(uuid, "disk0.qcow2"));
        assert_true(instance_file(uuid, "disk1.qcow2"));
        /* The overlay's backing file is the resolved base image. */
        char out[8192], path[256], base[128];
        snprintf(path, sizeof(path), "%s/state/instances/%s/disk0.qcow2", root, uuid);
        snprintf(base, sizeof(base), "%s/images/base.qcow2", root);
        int status;
        const char *argv[] = {"/usr/bin/qemu-img", "info", "-U", path, NULL};
        assert_int_equal(nst_run(argv, out, sizeof(out), 10000, &status, NULL), 0);
        assert_non_null(strstr(out, base));
        drain(e);
        json_object_array_del_idx(e->seen, 0, json_object_array_length(e->seen));

        r = ok(e, "destroy", "{\"instance\": \"lc-destroy\"}");
        assert_string_equal(str(r, "state"), "deleted");
        json_object_put(r);
        assert_false(domain_exists(uuid));
        assert_false(instance_file(uuid, NULL));
        assert_int_equal(count_domains(), domains);
        assert_int_equal(count_instance_dirs(), dirs);
        struct stat st;
        assert_int_equal(stat(base, &st), 0); /* the base image stays */
        json_object *m = expect_event(e, "instance.delete.start", uuid);
        check_payload(m, "InstanceActionPayload", uuid, "active", "running");
        json_object_put(m);
        m = expect_event(e, "instance.delete.end", uuid);
        check_payload(m, "InstanceActionPayload", uuid, "deleted", "shutdown");
        assert_true(json_object_get_string(json_object_object_get(payload_data(m),
                                                                  "deleted_at")) != NULL);
        json_object_put(m);
        /* The stop and the undefine are the delete's own. */
        expect_no_event(e, "instance.power_off.end", uuid);
        expect_no_event(e, "instance.delete.end", uuid);
        fails(e, "InstanceNotFound", "not found", "destroy", "{\"instance\": \"%s\"}", uuid);

        /* A directory a killed spawn left behind goes with a destroy of its uuid. */
        const char *orphan = "5a1c9a1e-0000-4000-8000-0000000000ab";
        char dir[128];
        snprintf(dir, sizeof(dir), "%s/state/instances/%s", root, orphan);
        assert_int_equal(mkdir(dir, 0700), 0);
        snprintf(path, sizeof(path), "%s/disk0.qcow2", dir);
        fclose(fopen(path, "w"));
        r = ok(e, "destroy", "{\"instance\": \"%s\"}", orphan);
        json_object_put(r);
        assert_false(instance_file(orphan, NULL));
}

/* qemu-img fails on the second disk: what the first made must go. */
static void test_failed_spawn_undone(void **state) {
        struct env *e = *state;
        env_stop(e);
        char conf[512];
        snprintf(conf, sizeof(conf), "uri = test:///default\nqemu_img = %s/failing-qemu-img\n",
                 root);
        env_start(e, conf);
        assert_true(nst_lv_conn_wait(e->p->conn, 5000));
        int domains = count_domains(), dirs = count_instance_dirs();
        const char *uuid = "5a1c9a1e-0000-4000-8000-0000000000f1";
        fails(e, "StorageError", "injected failure", "spawn",
              "{\"spec\": {\"name\": \"lc-fail\", \"uuid\": \"%s\", \"vcpus\": 1, "
              "\"memory_mb\": 128, \"disks\": [{\"size_gb\": 1}, {\"size_gb\": 1}], "
              "\"nics\": [{\"network\": \"default\"}]}}",
              uuid);
        assert_int_equal(count_domains(), domains);
        assert_int_equal(count_instance_dirs(), dirs);
        assert_false(instance_file(uuid, NULL));
        json_object_put(expect_event(e, "instance.create.start", uuid));
        json_object *m = expect_event(e, "instance.create.error", uuid);
        json_object *fault = json_object_object_get(payload_data(m), "fault");
        json_object *fd = json_object_object_get(fault, "nova_object.data");
        assert_string_equal(str(fd, "exception"), "StorageError");
        assert_string_equal(str(m, "priority"), "ERROR");
        json_object_put(m);
        /* The MAC drawn for it is free again (not live), the name too. */
        assert_int_equal(nst_inv_claim(e->p->inv, uuid, "lc-fail", "t", NULL), 0);
        nst_inv_unclaim(e->p->inv, uuid);
}

static const char *const restart_macs[] = {"52:54:00:aa:00:01", NULL};
static const char *const after_restart_macs[] = {"52:54:00:aa:00:01", "52:54:00:aa:00:02",
                                                 NULL};

static void test_restart_rebuilds_tables(void **state) {
        struct env *e = *state;
        e->macs = restart_macs;
        json_object *r = spawn(e, "lc-restart", NULL);
        char uuid[37];
        snprintf(uuid, sizeof(uuid), "%s", str(r, "uuid"));
        json_object *macs = json_object_object_get(r, "macs");
        assert_string_equal(json_object_get_string(json_object_array_get_idx(macs, 0)),
                            "52:54:00:aa:00:01");
        json_object_put(r);

        /* A new agent: nothing but libvirt to learn from. */
        env_stop(e);
        env_start(e, NULL);
        assert_true(nst_lv_conn_wait(e->p->conn, 5000));
        assert_true(nst_inv_mac_used(e->p->inv, "52:54:00:aa:00:01"));
        assert_true(nst_inv_get(e->p->inv, uuid, NULL));
        e->macs = after_restart_macs;
        r = spawn(e, "lc-restart2", NULL);
        macs = json_object_object_get(r, "macs");
        assert_string_equal(json_object_get_string(json_object_array_get_idx(macs, 0)),
                            "52:54:00:aa:00:02");
        char uuid2[37];
        snprintf(uuid2, sizeof(uuid2), "%s", str(r, "uuid"));
        json_object_put(r);
        /* A given MAC that a live instance holds is refused. */
        fails(e, "InvalidInput", "is in use by instance", "spawn",
              "{\"spec\": {\"name\": \"lc-restart3\", \"vcpus\": 1, \"memory_mb\": 128, "
              "\"nics\": [{\"network\": \"default\", \"mac\": \"52:54:00:AA:00:01\"}]}}");
        /* Events about instances known from before the restart are reported. */
        json_object_put(ok(e, "suspend", "{\"instance\": \"%s\"}", uuid));
        json_object *m = expect_event(e, "instance.suspend.end", uuid);
        assert_string_equal(str(payload_data(m), "display_name"), "lc-restart");
        json_object_put(m);
        json_object_put(ok(e, "destroy", "{\"instance\": \"%s\"}", uuid));
        json_object_put(ok(e, "destroy", "{\"instance\": \"%s\"}", uuid2));
        /* Used once, never drawn again: even after the instance is gone. */
        assert_true(nst_inv_mac_used(e->p->inv, "52:54:00:aa:00:01"));
        assert_false(nst_inv_mac_live(e->p->inv, "52:54:00:aa:00:01", NULL, NULL));
}

/* An instance undefined while the agent was disconnected: the reconnect's
 * rebuild notices what the lost event would have said. */
static void test_reconnect_sweeps_vanished(void **state) {
        struct env *e = *state;
        json_object *r = spawn(e, "lc-kept", NULL);
        char kept[37];
        snprintf(kept, sizeof(kept), "%s", str(r, "uuid"));
        json_object_put(r);
        const char *gone = "5a1c9a1e-0000-4000-8000-0000000000e1";
        struct nst_inv_instance k = {.vcpus = 1, .memory_mb = 128};
        snprintf(k.uuid, sizeof(k.uuid), "%s", gone);
        snprintf(k.name, sizeof(k.name), "lc-vanished");
        snprintf(k.user_id, sizeof(k.user_id), "u-1");
        snprintf(k.project_id, sizeof(k.project_id), "p-1");
        assert_int_equal(nst_inv_put(e->p->inv, &k), 0);
        assert_int_equal(nst_inv_mac_add(e->p->inv, "52:54:00:bb:00:01", gone), 0);

        nst_lv_on_connected(e->p, keeper);
        assert_false(nst_inv_get(e->p->inv, gone, NULL));
        assert_true(nst_inv_get(e->p->inv, kept, NULL));
        assert_false(nst_inv_mac_live(e->p->inv, "52:54:00:bb:00:01", NULL, NULL));
        json_object *m = expect_event(e, "instance.delete.end", gone);
        check_payload(m, "InstanceActionPayload", gone, "deleted", "shutdown");
        json_object_put(m);
        expect_no_event(e, "instance.delete.end", kept);

        /* A real lost connection: the agent reconnects and serves again. */
        virConnectPtr conn;
        assert_int_equal(nst_lv_conn_get(e->p->conn, &conn, NULL), 0);
        nst_lv_conn_mark_lost(e->p->conn, conn);
        virConnectClose(conn);
        assert_true(nst_lv_conn_wait(e->p->conn, 5000));
        json_object_put(ok(e, "destroy", "{\"instance\": \"%s\"}", kept));
        json_object *status = nst_lv_conn_status(e->p->conn), *v;
        assert_true(json_object_object_get_ex(status, "disconnects", &v));
        assert_int_equal(json_object_get_int(v), 1);
        json_object_put(status);
}

static void test_hypervisor_unavailable(void **state) {
        struct env *e = *state;
        env_stop(e);
        char conf[256];
        snprintf(conf, sizeof(conf), "uri = test://%s/no-such-file.xml\n", root);
        env_start(e, conf);
        assert_false(nst_lv_conn_wait(e->p->conn, 200));
        fails(e, "HypervisorUnavailable", "reconnecting", "spawn",
              "{\"spec\": {\"name\": \"lc-down\", \"vcpus\": 1, \"memory_mb\": 128}}");
        fails(e, "HypervisorUnavailable", "not connected", "list_instances", "{}");
        fails(e, "HypervisorUnavailable", "not connected", "get_info", "{\"instance\": \"x\"}");
        fails(e, "HypervisorUnavailable", "not connected", "get_host_capabilities", "{}");
        json_object *report = nst_host_collect_report(e->host), *sec, *c;
        assert_true(json_object_object_get_ex(report, "libvirt", &sec));
        assert_true(json_object_object_get_ex(sec, "connection", &c));
        assert_string_not_equal(str(c, "state"), "connected");
        assert_non_null(strstr(str(c, "last_error"), "cannot connect"));
        json_object_put(report);
        assert_false(instance_file("x", NULL));
}

static void test_inventory(void **state) {
        struct nst_inventory *inv;
        assert_int_equal(nst_inventory_new(&inv), 0);
        const char *op = NULL;
        assert_int_equal(nst_inv_claim(inv, "u1", "n1", "spawn", &op), 0);
        assert_int_equal(nst_inv_claim(inv, "u2", "n1", "spawn", &op), -EBUSY);
        assert_string_equal(op, "spawn");
        assert_int_equal(nst_inv_claim(inv, "u1", NULL, "destroy", &op), -EBUSY);
        nst_inv_unclaim(inv, "u1");
        assert_int_equal(nst_inv_claim(inv, "u1", NULL, "destroy", &op), 0);
        nst_inv_unclaim(inv, "u1");

        assert_int_equal(nst_inv_mac_reserve(inv, "52:54:00:00:00:01", "u1"), 0);
        assert_int_equal(nst_inv_mac_reserve(inv, "52:54:00:00:00:01", "u2"), -EEXIST);
        char owner[37];
        assert_true(nst_inv_mac_live(inv, "52:54:00:00:00:01", NULL, owner));
        assert_string_equal(owner, "u1");
        assert_false(nst_inv_mac_live(inv, "52:54:00:00:00:01", "u1", NULL));
        nst_inv_mac_release(inv, "u1");
        assert_false(nst_inv_mac_live(inv, "52:54:00:00:00:01", NULL, NULL));
        assert_true(nst_inv_mac_used(inv, "52:54:00:00:00:01"));

        assert_int_equal(nst_inv_expect(inv, "u1", NST_INV_EV(2) | NST_INV_EV(5), 0, 1000), 0);
        assert_true(nst_inv_expected(inv, "u1", NST_INV_EV(2), 10));
        assert_false(nst_inv_expected(inv, "u1", NST_INV_EV(2), 20));
        assert_false(nst_inv_expected(inv, "u1", NST_INV_EV(5), 2000)); /* lapsed */
        nst_inventory_free(inv);
}

/* ---- main ---- */

static void run(const char *const argv[]) {
        char out[4096];
        int status;
        struct nst_error err = NST_ERROR_INIT;
        if (nst_run(argv, out, sizeof(out), 30000, &status, &err) < 0 || status != 0)
                fail_msg("%s failed: %s %s", argv[0], err.message, out);
}

static int group_setup(void **state) {
        snprintf(root, sizeof(root), "/tmp/nestor-lifecycle-XXXXXX");
        if (!mkdtemp(root))
                return -1;
        char images[96], base[128], sneaky[128], big[128], outside[128], link[128], fake[128];
        snprintf(images, sizeof(images), "%s/images", root);
        snprintf(base, sizeof(base), "%s/base.qcow2", images);
        snprintf(sneaky, sizeof(sneaky), "%s/sneaky.qcow2", images);
        snprintf(big, sizeof(big), "%s/big.raw", images);
        snprintf(outside, sizeof(outside), "%s/outside.qcow2", root);
        snprintf(link, sizeof(link), "%s/escape.qcow2", images);
        snprintf(fake, sizeof(fake), "%s/failing-qemu-img", root);
        mkdir(images, 0755);
        const char *a1[] = {"/usr/bin/qemu-img", "create", "-q", "-f", "qcow2", base, "64M", NULL};
        const char *a2[] = {"/usr/bin/qemu-img", "create", "-q", "-f", "qcow2", outside, "64M",
                            NULL};
        const char *a3[] = {"/usr/bin/qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                            "-b", outside, sneaky, NULL};
        const char *a4[] = {"/usr/bin/qemu-img", "create", "-q", "-f", "raw", big, "2G", NULL};
        run(a1);
        run(a2);
        run(a3);
        run(a4);
        if (symlink(outside, link) < 0)
                return -1;
        FILE *f = fopen(fake, "w");
        fprintf(f, "#!/bin/sh\ncase \"$*\" in *disk1.qcow2*) echo injected failure; exit 1;; "
                   "esac\nexec /usr/bin/qemu-img \"$@\"\n");
        fclose(f);
        chmod(fake, 0755);
        nst_lv_quiet_errors();
        keeper = virConnectOpen("test:///default");
        return keeper ? 0 : -1;
}

static int remove_tree(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

static int group_teardown(void **state) {
        virConnectClose(keeper);
        nftw(root, remove_tree, 16, FTW_DEPTH | FTW_PHYS);
        return 0;
}

int main(void) {
        srand((unsigned)time(NULL));
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_inventory),
                cmocka_unit_test_setup_teardown(test_spawn_plain, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_instances, setup, teardown),
                cmocka_unit_test_setup_teardown(test_duplicates_create_nothing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_specs_leave_nothing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pci_requests_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_power_cycle, setup, teardown),
                cmocka_unit_test_setup_teardown(test_destroy_removes_everything, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failed_spawn_undone, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restart_rebuilds_tables, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reconnect_sweeps_vanished, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hypervisor_unavailable, setup, teardown),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
