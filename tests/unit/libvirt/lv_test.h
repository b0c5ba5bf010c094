/* Shared helpers of the libvirt plugin's unit tests: JSON specs, host
 * capability fixtures, and XPath assertions (the produced XML is always
 * parsed and checked element by element, never compared as a string). */
#ifndef NESTOR_TESTS_UNIT_LIBVIRT_LV_TEST_H
#define NESTOR_TESTS_UNIT_LIBVIRT_LV_TEST_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/libvirt/domain_xml.h"
#include "plugins/libvirt/guest_spec.h"
#include "plugins/libvirt/host_caps.h"
#include "plugins/libvirt/lv_util.h"
#include "plugins/libvirt/profiles.h"

static inline json_object *lt_json(const char *text) {
        json_object *o = json_tokener_parse(text);
        if (!o)
                fail_msg("test JSON does not parse: %s", text);
        return o;
}

static inline struct nst_guest_spec *lt_spec(const char *text) {
        json_object *o = lt_json(text);
        struct nst_guest_spec *s = NULL;
        struct nst_error err = NST_ERROR_INIT;
        int r = nst_guest_spec_parse(o, &s, &err);
        json_object_put(o);
        if (r < 0)
                fail_msg("spec rejected: %s: %s\n  spec: %s", err.cls, err.message, text);
        return s;
}

/* The spec must be rejected with class cls and a message starting with
 * prefix (the field path and the reason). */
static inline void lt_spec_fails(const char *text, const char *cls, const char *prefix) {
        json_object *o = lt_json(text);
        struct nst_guest_spec *s = NULL;
        struct nst_error err = NST_ERROR_INIT;
        int r = nst_guest_spec_parse(o, &s, &err);
        json_object_put(o);
        if (r >= 0) {
                nst_guest_spec_free(s);
                fail_msg("spec accepted, expected %s '%s...'\n  spec: %s", cls, prefix, text);
        }
        assert_null(s);
        if (strcmp(err.cls, cls) != 0 || strncmp(err.message, prefix, strlen(prefix)) != 0)
                fail_msg("expected %s '%s...'\n     got %s '%s'\n  spec: %s", cls, prefix,
                         err.cls, err.message, text);
        assert_string_equal(err.module, "nestor.exception");
}

static inline void lt_error_is(const struct nst_error *err, const char *cls,
                               const char *prefix) {
        if (strcmp(err->cls, cls) != 0 || strncmp(err->message, prefix, strlen(prefix)) != 0)
                fail_msg("expected %s '%s...'\n     got %s '%s'", cls, prefix, err->cls,
                         err->message);
}

/* ---- host capability fixtures ---- */

enum lt_host { LT_INTEL_NESTED, LT_AMD_NESTED, LT_INTEL_NO_NESTING, LT_TCG };
static const char *const lt_host_names[] = {"intel-kvm-nested", "amd-kvm-nested",
                                            "intel-kvm-no-nesting", "tcg"};

static inline struct nst_host_caps *lt_caps(enum lt_host h) {
        struct nst_host_caps *c = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_host_caps_new(&c, &err), 0);
        switch (h) {
        case LT_INTEL_NESTED:
        case LT_INTEL_NO_NESTING:
                c->vendor = NST_VENDOR_INTEL;
                c->cpu_vmx = true;
                c->kvm_device = true;
                snprintf(c->kvm_module, sizeof(c->kvm_module), "kvm_intel");
                c->nested_param = h == LT_INTEL_NESTED ? 1 : 0;
                c->virt_type = NST_VIRT_KVM;
                break;
        case LT_AMD_NESTED:
                c->vendor = NST_VENDOR_AMD;
                c->cpu_svm = true;
                c->kvm_device = true;
                snprintf(c->kvm_module, sizeof(c->kvm_module), "kvm_amd");
                c->nested_param = 1;
                c->virt_type = NST_VIRT_KVM;
                break;
        case LT_TCG:
                c->vendor = NST_VENDOR_AMD;
                c->virt_type = NST_VIRT_QEMU;
                c->mode_host_passthrough = 0;
                c->mode_host_model = 1;
                break;
        }
        c->efi = 1;
        c->secure_boot = 1;
        assert_int_equal(nst_host_caps_finish(c, NULL, &err), 0);
        return c;
}

/* ---- XPath ---- */

static inline xmlDocPtr lt_doc(const char *xml) {
        xmlDocPtr d = xmlReadMemory(xml, (int)strlen(xml), "t.xml", NULL,
                                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        if (!d)
                fail_msg("produced XML does not parse:\n%s", xml);
        return d;
}

static inline xmlXPathObjectPtr lt_eval(xmlDocPtr d, const char *expr) {
        xmlXPathContextPtr ctx = xmlXPathNewContext(d);
        xmlXPathRegisterNs(ctx, BAD_CAST "n", BAD_CAST NST_METADATA_NS);
        xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST expr, ctx);
        xmlXPathFreeContext(ctx);
        if (!o)
                fail_msg("bad XPath %s", expr);
        return o;
}

/* The string value of expr ("" when it selects nothing); caller frees. */
static inline char *lt_xs(xmlDocPtr d, const char *expr) {
        xmlXPathObjectPtr o = lt_eval(d, expr);
        xmlChar *s = xmlXPathCastToString(o);
        char *r = strdup((const char *)s);
        xmlFree(s);
        xmlXPathFreeObject(o);
        return r;
}

static inline int lt_xcount(xmlDocPtr d, const char *expr) {
        xmlXPathObjectPtr o = lt_eval(d, expr);
        int n = o->nodesetval ? o->nodesetval->nodeNr : 0;
        xmlXPathFreeObject(o);
        return n;
}

#define assert_xs(doc, expr, expected)                                                        \
        do {                                                                                  \
                char *_v = lt_xs(doc, expr);                                                  \
                if (strcmp(_v, expected) != 0) {                                              \
                        fprintf(stderr, "XPath %s: got '%s', expected '%s'\n", expr, _v,     \
                                expected);                                                    \
                        free(_v);                                                             \
                        fail();                                                               \
                }                                                                             \
                free(_v);                                                                     \
        } while (0)

#define assert_xcount(doc, expr, n)                                                           \
        do {                                                                                  \
                int _n = lt_xcount(doc, expr);                                                \
                if (_n != (n)) {                                                              \
                        fprintf(stderr, "XPath %s: %d nodes, expected %d\n", expr, _n,      \
                                (int)(n));                                                    \
                        fail();                                                               \
                }                                                                             \
        } while (0)

#endif
