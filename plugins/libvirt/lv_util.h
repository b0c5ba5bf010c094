/* Small helpers shared by the libvirt plugin's modules: libvirt errors into
 * struct nst_error, and libxml2 parsing/XPath for what Nestor reads back. */
#ifndef NESTOR_PLUGINS_LIBVIRT_LV_UTIL_H
#define NESTOR_PLUGINS_LIBVIRT_LV_UTIL_H

#include <libvirt/libvirt.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <stddef.h>

#include "messages/error.h"

/* Largest XML document Nestor parses (domain, capabilities, metadata). */
#define NST_LV_XML_MAX (16 * 1024 * 1024)

/* libvirt prints every error to stderr by default; library code must not.
 * Installs a handler that drops them (process-wide; idempotent). Errors are
 * still read with virGetLastErrorMessage() by nst_lv_error(). */
void nst_lv_quiet_errors(void);

/* Fills err like nst_error_set, appending ": <libvirt's last error>". */
int nst_lv_error(struct nst_error *err, int code, const char *cls, const char *fmt, ...)
        _printf_(4, 5);

/* Parses xml (no network, no entity expansion). Errors: class `cls`, message
 * prefixed with `what`. */
int nst_xml_parse(const char *xml, const char *what, const char *cls, xmlDocPtr *ret,
                  struct nst_error *err);

NST_DEFINE_CLEANUP(xmlDoc, xmlFreeDoc)
NST_DEFINE_CLEANUP(xmlXPathContext, xmlXPathFreeContext)
NST_DEFINE_CLEANUP(xmlXPathObject, xmlXPathFreeObject)

/* A context for doc with the prefix "n" bound to Nestor's metadata namespace. */
xmlXPathContextPtr nst_xpath_new(xmlDocPtr doc);

/* nst_xml_parse, then nst_xpath_new on the document: both the caller's
 * (set only on success). */
int nst_xml_parse_xpath(const char *xml, const char *what, const char *cls, xmlDocPtr *ret_doc,
                        xmlXPathContextPtr *ret_ctx, struct nst_error *err);

/* dom's XML (virDomainGetXMLDesc flags: 0 live, VIR_DOMAIN_XML_INACTIVE
 * persistent), parsed, with a context: both the caller's. HypervisorError
 * naming the domain when libvirt cannot give it. */
int nst_lv_domain_doc(virDomainPtr dom, unsigned flags, xmlDocPtr *ret_doc,
                      xmlXPathContextPtr *ret_ctx, struct nst_error *err);

/* The string value of expr relative to node (NULL = document); "" when the
 * expression selects nothing. Owned by the caller (free()); NULL only when
 * out of memory or the expression is invalid. */
char *nst_xpath_string(xmlXPathContextPtr ctx, xmlNodePtr node, const char *expr);

/* The node set of expr relative to node (may be empty); caller frees with
 * xmlXPathFreeObject. NULL on error or when the result is not a node set. */
xmlXPathObjectPtr nst_xpath_nodes(xmlXPathContextPtr ctx, xmlNodePtr node, const char *expr);

static inline int nst_xpath_count(xmlXPathObjectPtr o) {
        return o && o->nodesetval ? o->nodesetval->nodeNr : 0;
}

/* An attribute of node as a malloc'd string, NULL when absent. */
char *nst_xml_attr(xmlNodePtr node, const char *name);

/* The guest agent's virtio channel in a domain's XML (docs/libvirt.md,
 * guest_agent): what libvirt's quiesce (virDomainFSFreeze) talks through. */
#define NST_AGENT_CHANNEL_XPATH "/domain/devices/channel/target[@name='org.qemu.guest_agent.0']"

/* Whether dom's persistent definition has the guest agent channel: 1 yes,
 * 0 no, negative (HypervisorError) when it cannot be read. An instance
 * spawned with a profile without one, or before Nestor added one, can never
 * be quiesced until it is redefined with it. */
int nst_lv_has_agent_channel(virDomainPtr dom, struct nst_error *err);
/* For a caller (method) asked to quiesce dom every time: InvalidInput naming
 * the instance and what to do when it has no agent channel (each run would
 * fail), 0 when it has one. */
int nst_lv_require_agent_channel(virDomainPtr dom, const char *method, struct nst_error *err);

#endif
