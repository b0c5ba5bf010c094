#include "plugins/libvirt/lv_util.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <libxml/xpathInternals.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/libvirt/domain_xml.h"

static void drop_error(void *userdata, virErrorPtr e) {
}

static void install_quiet(void) {
        virSetErrorFunc(NULL, drop_error);
        xmlInitParser();
}

void nst_lv_quiet_errors(void) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, install_quiet);
}

int nst_lv_error(struct nst_error *err, int code, const char *cls, const char *fmt, ...) {
        char msg[NST_ERROR_MESSAGE_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        const char *lv = virGetLastErrorMessage();
        return nst_error_set(err, code, cls, "%s: %s", msg, lv ? lv : "unknown libvirt error");
}

/* libxml2 would print parse errors to stderr; the message is taken from the
 * parser context instead. */
static void silent_xml(void *ctx, const char *msg, ...) {
}

int nst_xml_parse(const char *xml, const char *what, const char *cls, xmlDocPtr *ret,
                  struct nst_error *err) {
        size_t len = xml ? strlen(xml) : 0;
        if (len == 0 || len > NST_LV_XML_MAX)
                return nst_error_set(err, -EINVAL, cls, "%s: %s XML document", what,
                                     len ? "oversized" : "empty");
        xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
        if (!ctxt)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        ctxt->sax->error = silent_xml;
        ctxt->sax->warning = silent_xml;
        ctxt->sax->serror = NULL;
        ctxt->vctxt.error = silent_xml;
        ctxt->vctxt.warning = silent_xml;
        /* No XML_PARSE_NOENT: entities are never expanded; no network. */
        xmlDocPtr doc = xmlCtxtReadMemory(ctxt, xml, (int)len, "nestor.xml", NULL,
                                          XML_PARSE_NONET | XML_PARSE_NOWARNING |
                                                  XML_PARSE_NOERROR);
        if (!doc || !xmlDocGetRootElement(doc)) {
                const xmlError *e = xmlCtxtGetLastError(ctxt);
                int r = nst_error_set(err, -EINVAL, cls, "%s: malformed XML (line %d: %s)", what,
                                      e ? e->line : 0,
                                      e && e->message ? e->message : "no root element");
                /* libxml2's messages end with a newline. */
                size_t n = err ? strlen(err->message) : 0;
                if (n >= 2 && err->message[n - 2] == '\n')
                        memmove(err->message + n - 2, err->message + n - 1, 2);
                xmlFreeDoc(doc);
                xmlFreeParserCtxt(ctxt);
                return r;
        }
        xmlFreeParserCtxt(ctxt);
        *ret = doc;
        return 0;
}

xmlXPathContextPtr nst_xpath_new(xmlDocPtr doc) {
        xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
        if (ctx && xmlXPathRegisterNs(ctx, BAD_CAST "n", BAD_CAST NST_METADATA_NS) < 0) {
                xmlXPathFreeContext(ctx);
                return NULL;
        }
        return ctx;
}

int nst_xml_parse_xpath(const char *xml, const char *what, const char *cls, xmlDocPtr *ret_doc,
                        xmlXPathContextPtr *ret_ctx, struct nst_error *err) {
        xmlDocPtr doc = NULL;
        int r = nst_xml_parse(xml, what, cls, &doc, err);
        if (r < 0)
                return r;
        xmlXPathContextPtr ctx = nst_xpath_new(doc);
        if (!ctx) {
                xmlFreeDoc(doc);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        *ret_doc = doc;
        *ret_ctx = ctx;
        return 0;
}

static xmlXPathObjectPtr eval(xmlXPathContextPtr ctx, xmlNodePtr node, const char *expr) {
        xmlNodePtr saved = ctx->node;
        ctx->node = node ? node : (xmlNodePtr)ctx->doc;
        xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST expr, ctx);
        ctx->node = saved;
        return o;
}

char *nst_xpath_string(xmlXPathContextPtr ctx, xmlNodePtr node, const char *expr) {
        xmlXPathObjectPtr o = eval(ctx, node, expr);
        if (!o)
                return NULL;
        xmlChar *s = xmlXPathCastToString(o);
        xmlXPathFreeObject(o);
        if (!s)
                return NULL;
        char *r = strdup((const char *)s);
        xmlFree(s);
        return r;
}

xmlXPathObjectPtr nst_xpath_nodes(xmlXPathContextPtr ctx, xmlNodePtr node, const char *expr) {
        xmlXPathObjectPtr o = eval(ctx, node, expr);
        if (o && o->type != XPATH_NODESET) {
                xmlXPathFreeObject(o);
                return NULL;
        }
        return o;
}

char *nst_xml_attr(xmlNodePtr node, const char *name) {
        xmlChar *v = xmlGetProp(node, BAD_CAST name);
        if (!v)
                return NULL;
        char *r = strdup((const char *)v);
        xmlFree(v);
        return r;
}

int nst_lv_domain_doc(virDomainPtr dom, unsigned flags, xmlDocPtr *ret_doc,
                      xmlXPathContextPtr *ret_ctx, struct nst_error *err) {
        _cleanup_free_ char *xml = virDomainGetXMLDesc(dom, flags);
        if (!xml)
                return nst_lv_error(err, -EIO, "HypervisorError", "cannot read the XML of %s",
                                    virDomainGetName(dom));
        return nst_xml_parse_xpath(xml, "domain", "HypervisorError", ret_doc, ret_ctx, err);
}

int nst_lv_has_agent_channel(virDomainPtr dom, struct nst_error *err) {
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        _cleanup_(xmlXPathFreeContextp) xmlXPathContextPtr ctx = NULL;
        int r = nst_lv_domain_doc(dom, VIR_DOMAIN_XML_INACTIVE, &doc, &ctx, err);
        if (r < 0)
                return r;
        _cleanup_(xmlXPathFreeObjectp) xmlXPathObjectPtr chan =
                nst_xpath_nodes(ctx, NULL, NST_AGENT_CHANNEL_XPATH);
        if (!chan)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        return nst_xpath_count(chan) > 0;
}

int nst_lv_require_agent_channel(virDomainPtr dom, const char *method, struct nst_error *err) {
        int has = nst_lv_has_agent_channel(dom, err);
        if (has != 0)
                return has < 0 ? has : 0;
        return nst_error_set(err, -EINVAL, "InvalidInput",
                             "%s: quiesce is required, but instance %s has no guest agent "
                             "channel (org.qemu.guest_agent.0) to freeze it through; use "
                             "quiesce preferred or off, or redefine it with guest_agent on",
                             method, virDomainGetName(dom));
}
