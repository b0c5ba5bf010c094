/* Guest spec parsing: every field, the defaults, and a clear InvalidInput
 * naming the field for every bad input. */
#include "lv_test.h"

#include <sys/stat.h>
#include <unistd.h>

#define BASE "\"name\": \"vm1\", \"vcpus\": 2, \"memory_mb\": 1024"

static void test_minimal_defaults(void **state) {
        struct nst_guest_spec *s = lt_spec("{" BASE "}");
        assert_string_equal(s->name, "vm1");
        assert_true(s->uuid_generated);
        assert_int_equal(strlen(s->uuid), 36);
        assert_int_equal(s->vcpus, 2);
        assert_int_equal(s->sockets, 0);
        assert_int_equal(s->memory_mb, 1024);
        assert_string_equal(s->profile, "plain");
        assert_int_equal(s->firmware, NST_FIRMWARE_UNSET);
        assert_int_equal(s->secure_boot, NST_TRI_UNSET);
        assert_int_equal(s->n_disks, 0);
        assert_int_equal(s->n_nics, 0);
        assert_null(s->pci_requests);
        assert_false(s->allow_emulated_nesting);
        assert_int_equal(s->cpu_mode, NST_CPU_MODE_UNSET);
        assert_string_equal(s->machine, "");
        nst_guest_spec_free(s);
}

static void test_full_spec(void **state) {
        struct nst_guest_spec *s = lt_spec(
                "{\"name\": \"esx-01.lab_A\", \"uuid\": \"B38A3F43-4BE2-4046-897F-B67C2F5E0147\","
                " \"vcpus\": 8, \"sockets\": 2, \"cores\": 2, \"threads\": 2, \"memory_mb\": 8192,"
                " \"profile\": \"nested-esxi\", \"firmware\": \"efi\", \"secure_boot\": false,"
                " \"disks\": [{\"image\": \"/var/lib/nestor/images/esxi.qcow2\", \"size_gb\": 40,"
                "              \"bus\": \"sata\"}, {\"size_gb\": 100}],"
                " \"nics\": [{\"network\": \"lab\", \"model\": \"e1000e\","
                "             \"mac\": \"52:54:00:AB:cd:01\"}, {\"bridge\": \"br-ex\"}],"
                " \"pci_requests\": [{\"alias\": \"vf\", \"count\": 1}],"
                " \"allow_emulated_nesting\": true, \"machine\": \"pc-q35-7.2\","
                " \"cpu_mode\": \"custom\", \"cpu_model\": \"EPYC\","
                " \"cpu_features\": [\"+svm\", \"-xsaves\", \"npt\"],"
                " \"disk_bus\": \"scsi\", \"nic_model\": \"vmxnet3\","
                " \"features\": {\"vmport\": false, \"smm\": true, \"kvm_hidden\": true,"
                "               \"hyperv\": {\"relaxed\": true, \"spinlocks\": 4096,"
                "                            \"evmcs\": false}}}");
        assert_string_equal(s->name, "esx-01.lab_A");
        assert_false(s->uuid_generated);
        assert_string_equal(s->uuid, "b38a3f43-4be2-4046-897f-b67c2f5e0147");
        assert_int_equal(s->sockets, 2);
        assert_int_equal(s->cores, 2);
        assert_int_equal(s->threads, 2);
        assert_string_equal(s->profile, "nested-esxi");
        assert_int_equal(s->firmware, NST_FIRMWARE_EFI);
        assert_int_equal(s->secure_boot, NST_TRI_OFF);
        assert_int_equal(s->n_disks, 2);
        assert_string_equal(s->disks[0].image, "/var/lib/nestor/images/esxi.qcow2");
        assert_int_equal(s->disks[0].size_gb, 40);
        assert_int_equal(s->disks[0].bus, NST_DISK_BUS_SATA);
        assert_null(s->disks[1].image);
        assert_int_equal(s->disks[1].size_gb, 100);
        assert_int_equal(s->disks[1].bus, NST_DISK_BUS_UNSET);
        assert_int_equal(s->n_nics, 2);
        assert_string_equal(s->nics[0].network, "lab");
        assert_null(s->nics[0].bridge);
        assert_int_equal(s->nics[0].model, NST_NIC_MODEL_E1000E);
        assert_string_equal(s->nics[0].mac, "52:54:00:ab:cd:01"); /* normalized */
        assert_false(s->nics[0].mac_generated);
        assert_string_equal(s->nics[1].bridge, "br-ex");
        assert_true(s->nics[1].mac_generated);
        assert_true(nst_mac_valid(s->nics[1].mac));
        assert_int_equal(strncmp(s->nics[1].mac, "52:54:00:", 9), 0);
        assert_non_null(s->pci_requests);
        assert_int_equal(json_object_array_length(s->pci_requests), 1);
        assert_true(s->allow_emulated_nesting);
        assert_string_equal(s->machine, "pc-q35-7.2");
        assert_int_equal(s->cpu_mode, NST_CPU_MODE_CUSTOM);
        assert_string_equal(s->cpu_model, "EPYC");
        assert_int_equal(s->n_cpu_features, 3);
        assert_string_equal(s->cpu_features[0].name, "svm");
        assert_int_equal(s->cpu_features[0].policy, NST_CPU_POLICY_REQUIRE);
        assert_string_equal(s->cpu_features[1].name, "xsaves");
        assert_int_equal(s->cpu_features[1].policy, NST_CPU_POLICY_DISABLE);
        assert_int_equal(s->cpu_features[2].policy, NST_CPU_POLICY_REQUIRE);
        assert_int_equal(s->disk_bus, NST_DISK_BUS_SCSI);
        assert_int_equal(s->nic_model, NST_NIC_MODEL_VMXNET3);
        assert_int_equal(s->features.vmport, NST_TRI_OFF);
        assert_int_equal(s->features.smm, NST_TRI_ON);
        assert_int_equal(s->features.kvm_hidden, NST_TRI_ON);
        assert_int_equal(s->features.acpi, NST_TRI_UNSET);
        assert_int_equal(s->features.hv[NST_HV_RELAXED], NST_TRI_ON);
        assert_int_equal(s->features.hv[NST_HV_SPINLOCKS], NST_TRI_ON);
        assert_int_equal(s->features.spinlock_retries, 4096);
        assert_int_equal(s->features.hv[NST_HV_EVMCS], NST_TRI_OFF);
        assert_int_equal(s->features.hv[NST_HV_SYNIC], NST_TRI_UNSET);
        nst_guest_spec_free(s);
}

/* Host NUMA nodes: PCI NUMA policies are checked against them. */
static void test_numa_nodes(void **state) {
        struct nst_guest_spec *s = lt_spec("{" BASE ", \"numa_nodes\": [1, 0]}");
        assert_int_equal(s->n_numa_nodes, 2);
        assert_int_equal(s->numa_nodes[0], 1);
        assert_int_equal(s->numa_nodes[1], 0);
        nst_guest_spec_free(s);
        lt_spec_fails("{" BASE ", \"numa_nodes\": [0, 0]}", "InvalidInput",
                      "spec.numa_nodes[1]: node 0 is listed twice");
        lt_spec_fails("{" BASE ", \"numa_nodes\": [64]}", "InvalidInput",
                      "spec.numa_nodes[0]: must be between 0 and 63, got 64");
        lt_spec_fails("{" BASE ", \"numa_nodes\": [\"0\"]}", "InvalidInput",
                      "spec.numa_nodes[0]: must be an integer");
        lt_spec_fails("{" BASE ", \"numa_nodes\": [0,1,2,3,4,5,6,7,8]}", "InvalidInput",
                      "spec.numa_nodes: at most 8 entries");
}

static void test_generated_values_differ(void **state) {
        struct nst_guest_spec *a = lt_spec("{" BASE ", \"nics\": [{\"network\": \"n\"}]}");
        struct nst_guest_spec *b = lt_spec("{" BASE ", \"nics\": [{\"network\": \"n\"}]}");
        assert_string_not_equal(a->uuid, b->uuid);
        assert_string_not_equal(a->nics[0].mac, b->nics[0].mac);
        nst_guest_spec_free(a);
        nst_guest_spec_free(b);
}

static void test_hyperv_false_turns_everything_off(void **state) {
        struct nst_guest_spec *s = lt_spec("{" BASE ", \"features\": {\"hyperv\": false}}");
        for (size_t i = 0; i < NST_HV_COUNT; i++)
                assert_int_equal(s->features.hv[i], NST_TRI_OFF);
        nst_guest_spec_free(s);
}

static void test_null_is_absent(void **state) {
        struct nst_guest_spec *s = lt_spec("{" BASE ", \"uuid\": null, \"profile\": null}");
        assert_true(s->uuid_generated);
        assert_string_equal(s->profile, "plain");
        nst_guest_spec_free(s);
}

/* Issue 3's "Bad input" list (the parts a spec alone can show) and the rest
 * of the schema. */
static void test_bad_identity(void **state) {
        lt_spec_fails("[]", "InvalidInput", "spec: must be an object, got an array");
        lt_spec_fails("{\"vcpus\": 1, \"memory_mb\": 1}", "InvalidInput", "spec.name: required");
        lt_spec_fails("{\"name\": 5, \"vcpus\": 1, \"memory_mb\": 1}", "InvalidInput",
                      "spec.name: must be a string, got an integer");
        lt_spec_fails("{\"name\": \"\", \"vcpus\": 1, \"memory_mb\": 1}", "InvalidInput",
                      "spec.name: '' is not a valid domain name");
        lt_spec_fails("{\"name\": \"a/b\", \"vcpus\": 1, \"memory_mb\": 1}", "InvalidInput",
                      "spec.name: 'a/b' is not a valid domain name");
        lt_spec_fails("{\"name\": \"-x\", \"vcpus\": 1, \"memory_mb\": 1}", "InvalidInput",
                      "spec.name: '-x' is not a valid domain name");
        lt_spec_fails("{\"name\": \"a b\", \"vcpus\": 1, \"memory_mb\": 1}", "InvalidInput",
                      "spec.name: 'a b' is not a valid domain name");
        lt_spec_fails("{\"name\": \"<x>\", \"vcpus\": 1, \"memory_mb\": 1}", "InvalidInput",
                      "spec.name: '<x>' is not a valid domain name");
        lt_spec_fails("{\"name\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
                      " \"vcpus\": 1, \"memory_mb\": 1}",
                      "InvalidInput", "spec.name: 'aaaa");
        lt_spec_fails("{" BASE ", \"uuid\": \"not-a-uuid\"}", "InvalidInput",
                      "spec.uuid: 'not-a-uuid' is not a UUID");
        lt_spec_fails("{" BASE ", \"uuid\": \"b38a3f434be24046897fb67c2f5e0147\"}", "InvalidInput",
                      "spec.uuid: 'b38a3f434be24046897fb67c2f5e0147' is not a UUID");
        lt_spec_fails("{" BASE ", \"uuid\": \"00000000-0000-0000-0000-000000000000\"}",
                      "InvalidInput", "spec.uuid: the nil UUID is not allowed");
}

static void test_bad_sizes(void **state) {
        lt_spec_fails("{\"name\": \"v\", \"memory_mb\": 1}", "InvalidInput",
                      "spec.vcpus: required");
        lt_spec_fails("{\"name\": \"v\", \"vcpus\": 0, \"memory_mb\": 1}", "InvalidInput",
                      "spec.vcpus: must be between 1 and 256, got 0");
        lt_spec_fails("{\"name\": \"v\", \"vcpus\": -2, \"memory_mb\": 1}", "InvalidInput",
                      "spec.vcpus: must be between 1 and 256, got -2");
        lt_spec_fails("{\"name\": \"v\", \"vcpus\": 257, \"memory_mb\": 1}", "InvalidInput",
                      "spec.vcpus: must be between 1 and 256, got 257");
        lt_spec_fails("{\"name\": \"v\", \"vcpus\": 1.5, \"memory_mb\": 1}", "InvalidInput",
                      "spec.vcpus: must be an integer, got a number with a fraction");
        lt_spec_fails("{\"name\": \"v\", \"vcpus\": \"2\", \"memory_mb\": 1}", "InvalidInput",
                      "spec.vcpus: must be an integer, got a string");
        lt_spec_fails("{\"name\": \"v\", \"vcpus\": 1}", "InvalidInput",
                      "spec.memory_mb: required");
        lt_spec_fails("{\"name\": \"v\", \"vcpus\": 1, \"memory_mb\": 0}", "InvalidInput",
                      "spec.memory_mb: must be between 1 and 16777216, got 0");
        lt_spec_fails("{\"name\": \"v\", \"vcpus\": 1, \"memory_mb\": -512}", "InvalidInput",
                      "spec.memory_mb: must be between 1 and 16777216, got -512");
        lt_spec_fails("{" BASE ", \"sockets\": 2, \"cores\": 2}", "InvalidInput",
                      "spec.sockets: sockets x cores x threads = 2 x 2 x 1 = 4, but vcpus is 2");
        lt_spec_fails("{" BASE ", \"threads\": 0}", "InvalidInput",
                      "spec.threads: must be between 1 and 256, got 0");
}

static void test_bad_disks(void **state) {
        lt_spec_fails("{" BASE ", \"disks\": {}}", "InvalidInput",
                      "spec.disks: must be an array, got an object");
        lt_spec_fails("{" BASE ", \"disks\": [5]}", "InvalidInput",
                      "spec.disks[0]: must be an object, got an integer");
        lt_spec_fails("{" BASE ", \"disks\": [{}]}", "InvalidInput",
                      "spec.disks[0]: needs image (a base image to overlay) or size_gb");
        lt_spec_fails("{" BASE ", \"disks\": [{\"size_gb\": 1},"
                      " {\"size_gb\": 1, \"bus\": \"floppy\"}]}",
                      "InvalidInput",
                      "spec.disks[1].bus: unknown disk bus 'floppy' (expected virtio, sata, scsi, "
                      "ide)");
        lt_spec_fails("{" BASE ", \"disks\": [{\"size_gb\": 0}]}", "InvalidInput",
                      "spec.disks[0].size_gb: must be between 1 and 65536, got 0");
        lt_spec_fails("{" BASE ", \"disks\": [{\"size_gb\": 1, \"sizegb\": 2}]}", "InvalidInput",
                      "spec.disks[0].sizegb: unknown key (expected one of image, size_gb, bus)");
        lt_spec_fails("{" BASE ", \"disks\": [{\"image\": \"relative.qcow2\"}]}", "InvalidInput",
                      "spec.disks[0].image: 'relative.qcow2' is not an absolute, normalized path");
        lt_spec_fails("{" BASE ", \"disks\": [{\"image\":"
                      " \"/var/lib/nestor/images/../../../etc/shadow\"}]}",
                      "InvalidInput", "spec.disks[0].image: '/var/lib/nestor/images/../");
        lt_spec_fails("{" BASE ", \"disks\": [{\"image\": \"/a//b\"}]}", "InvalidInput",
                      "spec.disks[0].image: '/a//b' is not an absolute, normalized path");
        lt_spec_fails("{" BASE ", \"disks\": [{\"image\": \"/a/./b\"}]}", "InvalidInput",
                      "spec.disks[0].image: '/a/./b' is not an absolute, normalized path");
        lt_spec_fails("{" BASE ", \"disks\": [{\"image\": \"/a/b\\n\"}]}", "InvalidInput",
                      "spec.disks[0].image: '/a/b");
        lt_spec_fails("{" BASE ", \"disk_bus\": \"usb\"}", "InvalidInput",
                      "spec.disk_bus: unknown disk bus 'usb' (expected virtio, sata, scsi, ide)");

        /* At most 64 disks. */
        char buf[8192] = "{" BASE ", \"disks\": [";
        for (int i = 0; i < 65; i++)
                strcat(buf, i ? ", {\"size_gb\": 1}" : "{\"size_gb\": 1}");
        strcat(buf, "]}");
        lt_spec_fails(buf, "InvalidInput", "spec.disks: at most 64 entries, got 65");
        buf[strlen(buf) - 2 - strlen(", {\"size_gb\": 1}")] = '\0';
        strcat(buf, "]}");
        struct nst_guest_spec *s = lt_spec(buf);
        assert_int_equal(s->n_disks, 64);
        nst_guest_spec_free(s);
}

static void test_bad_nics(void **state) {
        lt_spec_fails("{" BASE ", \"nics\": [{}]}", "InvalidInput",
                      "spec.nics[0]: needs exactly one of network (a libvirt network) and bridge");
        lt_spec_fails("{" BASE ", \"nics\": [{\"network\": \"a\", \"bridge\": \"b\"}]}",
                      "InvalidInput", "spec.nics[0]: needs exactly one of network");
        lt_spec_fails("{" BASE ", \"nics\": [{\"network\": \"a\", \"model\": \"vmxnet4\"}]}",
                      "InvalidInput",
                      "spec.nics[0].model: unknown NIC model 'vmxnet4' (expected virtio, e1000, "
                      "e1000e, vmxnet3, rtl8139)");
        lt_spec_fails("{" BASE ", \"nic_model\": \"ne2k\"}", "InvalidInput",
                      "spec.nic_model: unknown NIC model 'ne2k'");
        lt_spec_fails("{" BASE ", \"nics\": [{\"bridge\": \"a-bridge-name-too-long\"}]}",
                      "InvalidInput", "spec.nics[0].bridge: 'a-bridge-name-too-long' is not a "
                                      "valid bridge name");
        lt_spec_fails("{" BASE ", \"nics\": [{\"network\": \"a;b\"}]}", "InvalidInput",
                      "spec.nics[0].network: 'a;b' is not a valid network name");
        /* Invalid MACs: format, multicast, all zeros. */
        const char *bad_macs[] = {"52:54:00:12:34", "52:54:00:12:34:5g", "52-54-00-12-34-56",
                                  "01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff",
                                  "00:00:00:00:00:00", "52:54:00:12:34:567", ""};
        for (size_t i = 0; i < NST_ARRAY_SIZE(bad_macs); i++) {
                char spec[256], msg[128];
                snprintf(spec, sizeof(spec), "{" BASE ", \"nics\": [{\"network\": \"n\"}, "
                                             "{\"network\": \"n\", \"mac\": \"%s\"}]}",
                         bad_macs[i]);
                snprintf(msg, sizeof(msg), "spec.nics[1].mac: '%s' is not a unicast MAC address",
                         bad_macs[i]);
                lt_spec_fails(spec, "InvalidInput", msg);
        }
        lt_spec_fails("{" BASE ", \"nics\": [{\"network\": \"n\", \"mac\": \"52:54:00:00:00:01\"},"
                      " {\"bridge\": \"b\", \"mac\": \"52:54:00:00:00:01\"}]}",
                      "InvalidInput",
                      "spec.nics[1].mac: 52:54:00:00:00:01 is already used by spec.nics[0]");
        char buf[4096] = "{" BASE ", \"nics\": [";
        for (int i = 0; i < 33; i++)
                strcat(buf, i ? ", {\"network\": \"n\"}" : "{\"network\": \"n\"}");
        strcat(buf, "]}");
        lt_spec_fails(buf, "InvalidInput", "spec.nics: at most 32 entries, got 33");
}

static void test_bad_choices(void **state) {
        lt_spec_fails("{" BASE ", \"colour\": \"blue\"}", "InvalidInput",
                      "spec.colour: unknown key (expected one of name, uuid, vcpus");
        lt_spec_fails("{" BASE ", \"profile\": \"nested esxi\"}", "InvalidInput",
                      "spec.profile: 'nested esxi' is not a valid profile name");
        lt_spec_fails("{" BASE ", \"firmware\": \"coreboot\"}", "InvalidInput",
                      "spec.firmware: unknown firmware 'coreboot' (expected bios, efi)");
        lt_spec_fails("{" BASE ", \"firmware\": \"bios\", \"secure_boot\": true}", "InvalidInput",
                      "spec.secure_boot: needs firmware efi (spec.firmware is bios)");
        lt_spec_fails("{" BASE ", \"secure_boot\": \"yes\"}", "InvalidInput",
                      "spec.secure_boot: must be true or false, got a string");
        lt_spec_fails("{" BASE ", \"allow_emulated_nesting\": 1}", "InvalidInput",
                      "spec.allow_emulated_nesting: must be true or false, got an integer");
        lt_spec_fails("{" BASE ", \"machine\": \"q35 -x\"}", "InvalidInput",
                      "spec.machine: 'q35 -x' is not a machine type name");
        lt_spec_fails("{" BASE ", \"cpu_mode\": \"host\"}", "InvalidInput",
                      "spec.cpu_mode: unknown CPU mode 'host' (expected host-model, "
                      "host-passthrough, maximum, custom)");
        lt_spec_fails("{" BASE ", \"cpu_mode\": \"custom\"}", "InvalidInput",
                      "spec.cpu_model: required when cpu_mode is custom");
        lt_spec_fails("{" BASE ", \"cpu_model\": \"EPYC\"}", "InvalidInput",
                      "spec.cpu_model: only valid with cpu_mode custom");
        lt_spec_fails("{" BASE ", \"cpu_features\": [\"+VMX\"]}", "InvalidInput",
                      "spec.cpu_features[0]: '+VMX' is not a CPU feature");
        lt_spec_fails("{" BASE ", \"cpu_features\": [\"+vmx\", \"-vmx\"]}", "InvalidInput",
                      "spec.cpu_features[1]: feature vmx is already listed at "
                      "spec.cpu_features[0]");
        lt_spec_fails("{" BASE ", \"cpu_features\": [{\"name\": \"vmx\"}]}", "InvalidInput",
                      "spec.cpu_features[0]: must be a string such as '+vmx' or '-xsaves'");
        lt_spec_fails("{" BASE ", \"pci_requests\": [\"vf\"]}", "InvalidInput",
                      "spec.pci_requests[0]: must be an object, got a string");
        lt_spec_fails("{" BASE ", \"pci_requests\": [{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {},"
                      " {}, {}, {}, {}, {}, {}]}",
                      "InvalidInput", "spec.pci_requests: at most 16 entries, got 17");
}

static void test_bad_features(void **state) {
        lt_spec_fails("{" BASE ", \"features\": []}", "InvalidInput",
                      "spec.features: must be an object, got an array");
        lt_spec_fails("{" BASE ", \"features\": {\"vmport\": \"off\"}}", "InvalidInput",
                      "spec.features.vmport: must be true or false, got a string");
        lt_spec_fails("{" BASE ", \"features\": {\"pae\": true}}", "InvalidInput",
                      "spec.features.pae: unknown key (expected one of acpi, apic, vmcoreinfo, "
                      "vmport, smm, kvm_hidden, hyperv)");
        lt_spec_fails("{" BASE ", \"features\": {\"hyperv\": true}}", "InvalidInput",
                      "spec.features.hyperv: must be an object of enlightenments, or false");
        lt_spec_fails("{" BASE ", \"features\": {\"hyperv\": {\"emsr_bitmap\": true}}}",
                      "InvalidInput",
                      "spec.features.hyperv.emsr_bitmap: unknown Hyper-V enlightenment");
        lt_spec_fails("{" BASE ", \"features\": {\"hyperv\": {\"spinlocks\": 100}}}",
                      "InvalidInput",
                      "spec.features.hyperv.spinlocks: retries must be between 4095 and "
                      "4294967295, got 100");
        lt_spec_fails("{" BASE ", \"features\": {\"hyperv\": {\"synic\": \"on\"}}}",
                      "InvalidInput",
                      "spec.features.hyperv.synic: must be true or false, got a string");
}

static void test_invalid_utf8_rejected(void **state) {
        /* json-c passes bytes through; the spec must not. */
        const char text[] = "{\"name\": \"v\", \"vcpus\": 1, \"memory_mb\": 1, "
                            "\"nics\": [{\"network\": \"\xff\xfe\"}]}";
        lt_spec_fails(text, "InvalidInput",
                      "spec.nics[0].network: contains characters that are not allowed");
}

static void test_mac_valid(void **state) {
        assert_true(nst_mac_valid("52:54:00:12:34:56"));
        assert_true(nst_mac_valid("FA:16:3E:00:00:01"));
        assert_true(nst_mac_valid("02:00:00:00:00:00"));
        assert_false(nst_mac_valid("03:00:00:00:00:00")); /* multicast bit */
        assert_false(nst_mac_valid("52:54:00:12:34:56:"));
        assert_false(nst_mac_valid("52:54:00:12:34"));
}

static void test_check_images(void **state) {
        char dir[] = "/tmp/nestor-spec-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char images[96], other[96], img[128], link[128], outside[128];
        snprintf(images, sizeof(images), "%s/images", dir);
        snprintf(other, sizeof(other), "%s/other", dir);
        assert_int_equal(mkdir(images, 0700), 0);
        assert_int_equal(mkdir(other, 0700), 0);
        snprintf(img, sizeof(img), "%s/base.qcow2", images);
        snprintf(outside, sizeof(outside), "%s/secret", other);
        snprintf(link, sizeof(link), "%s/escape.qcow2", images);
        fclose(fopen(img, "w"));
        fclose(fopen(outside, "w"));
        assert_int_equal(symlink(outside, link), 0);
        const char *allowed[] = {images};
        struct nst_error err = NST_ERROR_INIT;
        char text[512];

        snprintf(text, sizeof(text),
                 "{" BASE ", \"disks\": [{\"size_gb\": 1}, {\"image\": \"%s\"}]}",
                 img);
        struct nst_guest_spec *s = lt_spec(text);
        assert_int_equal(nst_guest_spec_check_images(s, allowed, 1, &err), 0);
        nst_guest_spec_free(s);

        snprintf(text, sizeof(text), "{" BASE ", \"disks\": [{\"image\": \"%s/missing.qcow2\"}]}",
                 images);
        s = lt_spec(text);
        assert_int_equal(nst_guest_spec_check_images(s, allowed, 1, &err), -ENOENT);
        lt_error_is(&err, "ImageNotFound", "spec.disks[0].image: ");
        assert_non_null(strstr(err.message, "missing.qcow2: No such file or directory"));
        nst_guest_spec_free(s);

        snprintf(text, sizeof(text), "{" BASE ", \"disks\": [{\"image\": \"%s\"}]}", outside);
        s = lt_spec(text);
        assert_int_equal(nst_guest_spec_check_images(s, allowed, 1, &err), -EPERM);
        lt_error_is(&err, "InvalidInput", "spec.disks[0].image: ");
        assert_non_null(strstr(err.message, "outside the allowed image directories"));
        nst_guest_spec_free(s);

        /* A symlink inside the directory pointing out of it is an escape too. */
        snprintf(text, sizeof(text), "{" BASE ", \"disks\": [{\"image\": \"%s\"}]}", link);
        s = lt_spec(text);
        assert_int_equal(nst_guest_spec_check_images(s, allowed, 1, &err), -EPERM);
        nst_guest_spec_free(s);

        snprintf(text, sizeof(text), "{" BASE ", \"disks\": [{\"image\": \"%s\"}]}", images);
        s = lt_spec(text);
        assert_int_equal(nst_guest_spec_check_images(s, allowed, 1, &err), -EINVAL);
        lt_error_is(&err, "InvalidInput", "spec.disks[0].image: ");
        nst_guest_spec_free(s);

        unlink(link);
        unlink(img);
        unlink(outside);
        rmdir(images);
        rmdir(other);
        rmdir(dir);
}

static void test_names(void **state) {
        assert_int_equal(nst_disk_bus_from_name("sata"), NST_DISK_BUS_SATA);
        assert_int_equal(nst_disk_bus_from_name("floppy"), -1);
        assert_string_equal(nst_nic_model_name(NST_NIC_MODEL_VMXNET3), "vmxnet3");
        assert_int_equal(nst_hv_from_name("stimer_direct"), NST_HV_STIMER_DIRECT);
        assert_string_equal(nst_hv_name(NST_HV_TIME), "time");
        assert_string_equal(nst_cpu_mode_name(NST_CPU_MODE_HOST_PASSTHROUGH), "host-passthrough");
        assert_string_equal(nst_firmware_name(NST_FIRMWARE_UNSET), "unset");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_minimal_defaults),
                cmocka_unit_test(test_full_spec),
                cmocka_unit_test(test_numa_nodes),
                cmocka_unit_test(test_generated_values_differ),
                cmocka_unit_test(test_hyperv_false_turns_everything_off),
                cmocka_unit_test(test_null_is_absent),
                cmocka_unit_test(test_bad_identity),
                cmocka_unit_test(test_bad_sizes),
                cmocka_unit_test(test_bad_disks),
                cmocka_unit_test(test_bad_nics),
                cmocka_unit_test(test_bad_choices),
                cmocka_unit_test(test_bad_features),
                cmocka_unit_test(test_invalid_utf8_rejected),
                cmocka_unit_test(test_mac_valid),
                cmocka_unit_test(test_check_images),
                cmocka_unit_test(test_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
