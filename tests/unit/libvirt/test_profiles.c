/* Built-in profiles, operator adjustments from config, and the Hyper-V
 * dependency rules Nestor enforces. */
#include "lv_test.h"

static struct nst_profile_set *new_set(void) {
        struct nst_profile_set *set = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_profile_set_new(&set, &err), 0);
        return set;
}

static void apply_fails(struct nst_profile_set *set, const char *text, const char *prefix) {
        struct nst_error err = NST_ERROR_INIT;
        if (nst_profile_set_apply(set, text, "[libvirt] profile #1", &err) >= 0)
                fail_msg("adjustment accepted: %s", text);
        lt_error_is(&err, "InvalidInput", prefix);
}

static void test_builtins(void **state) {
        struct nst_profile_set *set = new_set();
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_profile_set_count(set), 4);
        const char *names[] = {"plain", "nested-kvm", "nested-esxi", "nested-hyperv"};
        for (size_t i = 0; i < 4; i++) {
                const struct nst_profile *p = nst_profile_set_find(set, names[i]);
                assert_non_null(p);
                assert_ptr_equal(nst_profile_set_at(set, i), p);
                assert_int_equal(nst_profile_check(p, names[i], &err), 0);
                assert_string_equal(p->machine, "q35");
        }
        const struct nst_profile *plain = nst_profile_set_find(set, "plain");
        assert_false(plain->nested);
        assert_int_equal(plain->disk_bus, NST_DISK_BUS_VIRTIO);
        assert_int_equal(plain->nic_model, NST_NIC_MODEL_VIRTIO);
        assert_int_equal(plain->cpu_mode, NST_CPU_MODE_HOST_MODEL);

        const struct nst_profile *kvm = nst_profile_set_find(set, "nested-kvm");
        assert_true(kvm->nested);
        assert_int_equal(kvm->cpu_mode, NST_CPU_MODE_HOST_PASSTHROUGH);

        /* ESXi has no virtio driver anywhere. */
        const struct nst_profile *esxi = nst_profile_set_find(set, "nested-esxi");
        assert_true(esxi->nested);
        assert_true(esxi->nested_npt);
        assert_int_equal(esxi->disk_bus, NST_DISK_BUS_SATA);
        assert_int_equal(esxi->nic_model, NST_NIC_MODEL_VMXNET3);
        assert_false(esxi->memballoon);
        assert_false(esxi->rng);
        assert_false(esxi->guest_agent);
        assert_true(nst_profile_set_find(set, "plain")->guest_agent);
        assert_true(nst_profile_set_find(set, "nested-kvm")->guest_agent);
        assert_false(nst_profile_set_find(set, "nested-hyperv")->guest_agent);
        assert_int_equal(esxi->features.vmport, NST_TRI_OFF);
        assert_int_equal(esxi->firmware, NST_FIRMWARE_EFI);
        assert_false(esxi->secure_boot);
        for (size_t i = 0; i < NST_HV_COUNT; i++)
                assert_int_not_equal(esxi->features.hv[i], NST_TRI_ON);

        const struct nst_profile *hv = nst_profile_set_find(set, "nested-hyperv");
        assert_true(hv->secure_boot);
        assert_int_equal(hv->features.smm, NST_TRI_ON);
        assert_int_equal(hv->features.hv[NST_HV_STIMER_DIRECT], NST_TRI_ON);
        assert_int_equal(hv->features.hv[NST_HV_EVMCS], NST_TRI_ON);
        assert_int_equal(hv->features.hv[NST_HV_RESET], NST_TRI_OFF);
        assert_int_equal(hv->features.spinlock_retries, 8191);
        assert_true(hv->clock_localtime);
        assert_true(hv->tpm);
        assert_int_equal(hv->nic_model, NST_NIC_MODEL_E1000E);

        const struct nst_profile *p = NULL;
        assert_int_equal(nst_profile_set_lookup(set, "nested-vbox", &p, &err), -EINVAL);
        assert_null(p);
        lt_error_is(&err, "InvalidInput",
                    "spec.profile: unknown profile 'nested-vbox' (expected plain, nested-kvm, "
                    "nested-esxi, nested-hyperv)");
        nst_profile_set_free(set);
}

static void test_adjust_builtin(void **state) {
        struct nst_profile_set *set = new_set();
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_profile_set_apply(set,
                                               "{\"name\": \"nested-esxi\", \"nic_model\": "
                                               "\"e1000e\", \"features\": {\"vmport\": true}}",
                                               "t", &err),
                         0);
        const struct nst_profile *esxi = nst_profile_set_find(set, "nested-esxi");
        assert_int_equal(esxi->nic_model, NST_NIC_MODEL_E1000E);
        assert_int_equal(esxi->features.vmport, NST_TRI_ON);
        assert_int_equal(esxi->disk_bus, NST_DISK_BUS_SATA); /* untouched */
        assert_int_equal(nst_profile_set_count(set), 4);
        nst_profile_set_free(set);
}

static void test_new_profile_from_base(void **state) {
        struct nst_profile_set *set = new_set();
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_profile_set_apply(set,
                                               "{\"name\": \"esxi6\", \"base\": \"nested-esxi\","
                                               " \"machine\": \"pc\", \"firmware\": \"bios\","
                                               " \"description\": \"ESXi 6.x\","
                                               " \"min_memory_mb\": 8192,"
                                               " \"scsi_model\": \"lsilogic\", \"video\": \"qxl\"}",
                                               "t", &err),
                         0);
        const struct nst_profile *p = nst_profile_set_find(set, "esxi6");
        assert_non_null(p);
        assert_string_equal(p->machine, "pc");
        assert_int_equal(p->firmware, NST_FIRMWARE_BIOS);
        assert_int_equal(p->nic_model, NST_NIC_MODEL_VMXNET3); /* from the base */
        assert_true(p->nested);
        assert_int_equal(p->min_memory_mb, 8192);
        assert_string_equal(p->scsi_model, "lsilogic");
        assert_int_equal(p->video, NST_VIDEO_QXL);
        assert_string_equal(p->description, "ESXi 6.x");

        /* Without a base, a new profile starts from plain. */
        assert_int_equal(nst_profile_set_apply(set, "{\"name\": \"windows\", \"clock\": "
                                                    "\"localtime\", \"tpm\": true}",
                                               "t", &err),
                         0);
        p = nst_profile_set_find(set, "windows");
        assert_true(p->clock_localtime);
        assert_true(p->tpm);
        assert_int_equal(p->disk_bus, NST_DISK_BUS_VIRTIO);

        /* Rebuilding an existing profile from another base. */
        assert_int_equal(nst_profile_set_apply(set, "{\"name\": \"plain\", \"base\": "
                                                    "\"nested-kvm\"}",
                                               "t", &err),
                         0);
        assert_true(nst_profile_set_find(set, "plain")->nested);
        assert_string_equal(nst_profile_set_find(set, "plain")->name, "plain");
        nst_profile_set_free(set);
}

static void test_hyperv_adjustment_and_spinlock_default(void **state) {
        struct nst_profile_set *set = new_set();
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_profile_set_apply(set,
                                               "{\"name\": \"win\", \"features\": {\"hyperv\": "
                                               "{\"relaxed\": true, \"spinlocks\": true}}}",
                                               "t", &err),
                         0);
        const struct nst_profile *p = nst_profile_set_find(set, "win");
        assert_int_equal(p->features.hv[NST_HV_SPINLOCKS], NST_TRI_ON);
        assert_int_equal(p->features.spinlock_retries, 8191);
        nst_profile_set_free(set);
}

static void test_bad_adjustments(void **state) {
        struct nst_profile_set *set = new_set();
        apply_fails(set, "{\"name\": \"x\"", "[libvirt] profile #1: not one JSON object");
        apply_fails(set, "{\"name\": \"x\"} {}", "[libvirt] profile #1: not one JSON object");
        apply_fails(set, "[1]", "[libvirt] profile #1: must be a JSON object");
        apply_fails(set, "{\"base\": \"plain\"}", "[libvirt] profile #1.name: required");
        apply_fails(set, "{\"name\": \"Esxi\"}",
                    "[libvirt] profile #1.name: 'Esxi' is not a valid");
        apply_fails(set, "{\"name\": \"x\", \"nicmodel\": \"e1000\"}",
                    "[libvirt] profile #1: unknown key 'nicmodel'");
        apply_fails(set, "{\"name\": \"x\", \"base\": \"vbox\"}",
                    "[libvirt] profile #1.base: unknown profile 'vbox'");
        apply_fails(set, "{\"name\": \"x\", \"nic_model\": \"vmxnet4\"}",
                    "[libvirt] profile #1: profile 'x'.nic_model: unknown NIC model 'vmxnet4'");
        apply_fails(set, "{\"name\": \"x\", \"disk_bus\": \"ide\"}",
                    "[libvirt] profile #1: profile 'x'.disk_bus: ide is not available on q35");
        apply_fails(set, "{\"name\": \"x\", \"secure_boot\": true}",
                    "[libvirt] profile #1: profile 'x'.secure_boot: needs firmware efi");
        apply_fails(set, "{\"name\": \"x\", \"firmware\": \"efi\", \"secure_boot\": true, "
                         "\"machine\": \"pc\"}",
                    "[libvirt] profile #1: profile 'x'.secure_boot: needs a q35 machine type");
        apply_fails(set, "{\"name\": \"nested-hyperv\", \"features\": {\"smm\": false}}",
                    "[libvirt] profile #1: profile 'nested-hyperv'.features.smm: secure boot "
                    "needs SMM on");
        apply_fails(set, "{\"name\": \"x\", \"cpu_mode\": \"custom\"}",
                    "[libvirt] profile #1: profile 'x'.cpu_model: required when cpu_mode is "
                    "custom");
        apply_fails(set, "{\"name\": \"x\", \"min_vcpus\": -1}",
                    "[libvirt] profile #1: profile 'x'.min_vcpus: must be an integer between 0");
        apply_fails(set, "{\"name\": \"x\", \"nested\": \"yes\"}",
                    "[libvirt] profile #1: profile 'x'.nested: must be true or false");
        /* Broken Hyper-V combinations are refused at load time too. */
        apply_fails(set, "{\"name\": \"nested-hyperv\", \"features\": {\"hyperv\": "
                         "{\"synic\": false}}}",
                    "[libvirt] profile #1: profile 'nested-hyperv'.features.hyperv.stimer: "
                    "requires synic, which is off");
        /* Nothing was changed by the failures. */
        assert_int_equal(nst_profile_set_count(set), 4);
        assert_null(nst_profile_set_find(set, "x"));
        assert_int_equal(nst_profile_set_find(set, "nested-hyperv")->features.hv[NST_HV_SYNIC],
                         NST_TRI_ON);
        nst_profile_set_free(set);
}

static void test_profile_limit(void **state) {
        struct nst_profile_set *set = new_set();
        struct nst_error err = NST_ERROR_INIT;
        for (int i = 0; i < NST_PROFILES_MAX - 4; i++) {
                char text[64];
                snprintf(text, sizeof(text), "{\"name\": \"p%d\"}", i);
                assert_int_equal(nst_profile_set_apply(set, text, "t", &err), 0);
        }
        apply_fails(set, "{\"name\": \"one-more\"}", "[libvirt] profile #1: at most 32 profiles");
        /* Adjusting an existing one still works at the limit. */
        assert_int_equal(nst_profile_set_apply(set, "{\"name\": \"p0\", \"rng\": false}", "t",
                                               &err),
                         0);
        assert_int_equal(nst_profile_set_apply(set, "{\"name\": \"p0\", \"guest_agent\": false}",
                                               "t", &err),
                         0);
        assert_false(nst_profile_set_find(set, "p0")->guest_agent);
        nst_profile_set_free(set);
}

/* Each of QEMU's dependency rules, one enlightenment at a time. */
static void test_hyperv_rules(void **state) {
        static const struct {
                enum nst_hv feature;
                const char *message;
        } cases[] = {
                {NST_HV_SYNIC, "p.hyperv.synic: requires vpindex, which is off"},
                {NST_HV_STIMER, "p.hyperv.stimer: requires vpindex, synic, time, which are off"},
                {NST_HV_STIMER_DIRECT,
                 "p.hyperv.stimer_direct: requires stimer, vpindex, synic, time, which are off"},
                {NST_HV_TLBFLUSH, "p.hyperv.tlbflush: requires vpindex, which is off"},
                {NST_HV_IPI, "p.hyperv.ipi: requires vpindex, which is off"},
                {NST_HV_EVMCS, "p.hyperv.evmcs: requires vapic, which is off"},
        };
        struct nst_error err = NST_ERROR_INIT;
        for (size_t i = 0; i < NST_ARRAY_SIZE(cases); i++) {
                struct nst_features f = {0};
                f.hv[cases[i].feature] = NST_TRI_ON;
                assert_int_equal(nst_hyperv_check(&f, "p", &err), -EINVAL);
                lt_error_is(&err, "InvalidInput", cases[i].message);
        }
        /* Independent enlightenments need nothing. */
        const enum nst_hv alone[] = {NST_HV_RELAXED, NST_HV_VAPIC, NST_HV_SPINLOCKS,
                                     NST_HV_VPINDEX, NST_HV_RUNTIME, NST_HV_RESET,
                                     NST_HV_FREQUENCIES, NST_HV_REENLIGHTENMENT, NST_HV_TIME};
        for (size_t i = 0; i < NST_ARRAY_SIZE(alone); i++) {
                struct nst_features f = {0};
                f.hv[alone[i]] = NST_TRI_ON;
                assert_int_equal(nst_hyperv_check(&f, "p", &err), 0);
        }
        /* A complete set passes; stimer with only synic missing names just it. */
        struct nst_features f = {0};
        for (size_t i = 0; i < NST_HV_COUNT; i++)
                f.hv[i] = NST_TRI_ON;
        assert_int_equal(nst_hyperv_check(&f, "p", &err), 0);
        f.hv[NST_HV_SYNIC] = NST_TRI_OFF;
        assert_int_equal(nst_hyperv_check(&f, "p", &err), -EINVAL);
        lt_error_is(&err, "InvalidInput",
                    "p.hyperv.stimer: requires synic, which is off (Hyper-V dependency: stimer "
                    "needs vpindex, synic, time)");
        f.hv[NST_HV_SYNIC] = NST_TRI_ON;
        f.spinlock_retries = 100;
        assert_int_equal(nst_hyperv_check(&f, "p", &err), -EINVAL);
        lt_error_is(&err, "InvalidInput", "p.hyperv.spinlocks: retries must be at least 4095");
}

static void test_overlay(void **state) {
        struct nst_features dst = {.acpi = NST_TRI_ON, .vmport = NST_TRI_OFF};
        dst.hv[NST_HV_SYNIC] = NST_TRI_ON;
        struct nst_features src = {.vmport = NST_TRI_ON, .spinlock_retries = 5000};
        src.hv[NST_HV_SYNIC] = NST_TRI_OFF;
        nst_features_overlay(&dst, &src);
        assert_int_equal(dst.acpi, NST_TRI_ON);
        assert_int_equal(dst.vmport, NST_TRI_ON);
        assert_int_equal(dst.hv[NST_HV_SYNIC], NST_TRI_OFF);
        assert_int_equal(dst.spinlock_retries, 5000);
}

static void test_to_json(void **state) {
        struct nst_profile_set *set = new_set();
        json_object *o = nst_profile_to_json(nst_profile_set_find(set, "nested-hyperv"));
        json_object *v, *f, *hv;
        assert_true(json_object_object_get_ex(o, "name", &v));
        assert_string_equal(json_object_get_string(v), "nested-hyperv");
        assert_true(json_object_object_get_ex(o, "nic_model", &v));
        assert_string_equal(json_object_get_string(v), "e1000e");
        assert_true(json_object_object_get_ex(o, "features", &f));
        assert_true(json_object_object_get_ex(f, "hyperv", &hv));
        assert_true(json_object_object_get_ex(hv, "spinlocks", &v));
        assert_int_equal(json_object_get_int(v), 8191);
        assert_false(json_object_object_get_ex(hv, "reset", &v));
        /* The JSON view is itself a valid adjustment, and applying it changes nothing. */
        struct nst_error err = NST_ERROR_INIT;
        json_object_object_del(o, "name");
        json_object_object_add(o, "name", json_object_new_string("copy"));
        json_object_object_add(o, "base", json_object_new_string("nested-hyperv"));
        if (nst_profile_set_apply(set, json_object_to_json_string(o), "t", &err) < 0)
                fail_msg("%s", err.message);
        const struct nst_profile *a = nst_profile_set_find(set, "nested-hyperv");
        const struct nst_profile *b = nst_profile_set_find(set, "copy");
        struct nst_profile copy = *b;
        memcpy(copy.name, a->name, sizeof(copy.name));
        assert_int_equal(memcmp(a, &copy, sizeof(copy)), 0);
        json_object_put(o);
        nst_profile_set_free(set);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_builtins),
                cmocka_unit_test(test_adjust_builtin),
                cmocka_unit_test(test_new_profile_from_base),
                cmocka_unit_test(test_hyperv_adjustment_and_spinlock_default),
                cmocka_unit_test(test_bad_adjustments),
                cmocka_unit_test(test_profile_limit),
                cmocka_unit_test(test_hyperv_rules),
                cmocka_unit_test(test_overlay),
                cmocka_unit_test(test_to_json),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
