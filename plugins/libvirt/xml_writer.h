/* A minimal streaming XML writer for the domain builder.
 *
 * Why not libxml2's tree (xmlNewNode + xmlNodeDump) or xmlTextWriter: for a
 * typical guest they cost 25-30 us, which is too slow for the performance
 * target (docs/libvirt.md, "Benchmark"). This writer is the single place
 * where text reaches the output, and it only has two ways to emit a value:
 * nst_xw_attr() and nst_xw_text(), both of which escape. Element and
 * attribute names must be string literals from the builder, never input.
 * libxml2 still parses everything Nestor reads back (metadata, capabilities,
 * live XML), and the tests parse everything this writer produces.
 *
 * Values must be valid UTF-8 without characters XML 1.0 cannot carry (C0
 * controls other than tab, LF, CR): the first bad value puts the writer in an
 * error state that nst_xw_finish() reports; later calls are no-ops. */
#ifndef NESTOR_PLUGINS_LIBVIRT_XML_WRITER_H
#define NESTOR_PLUGINS_LIBVIRT_XML_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "messages/error.h"

#define NST_XW_MAX_DEPTH 32

struct nst_xw {
        char *buf;
        size_t len, cap;
        int error;              /* negative errno, 0 = fine */
        const char *bad_value;  /* the first rejected value, for the message */
        bool tag_open;          /* "<name attrs" written, '>' not yet */
        unsigned depth;
        const char *stack[NST_XW_MAX_DEPTH];
};

/* cap_hint: expected output size (the buffer grows as needed). */
void nst_xw_init(struct nst_xw *w, size_t cap_hint);
/* Frees the buffer unless nst_xw_finish() took it. */
void nst_xw_release(struct nst_xw *w);

void nst_xw_start(struct nst_xw *w, const char *name);
void nst_xw_attr(struct nst_xw *w, const char *name, const char *value);
void nst_xw_attr_u64(struct nst_xw *w, const char *name, uint64_t value);
void nst_xw_attr_hex(struct nst_xw *w, const char *name, unsigned value, unsigned width);
void nst_xw_text(struct nst_xw *w, const char *text);
void nst_xw_text_u64(struct nst_xw *w, uint64_t value);
void nst_xw_end(struct nst_xw *w);
/* <name>text</name> */
void nst_xw_elem_text(struct nst_xw *w, const char *name, const char *text);
/* <name attr='value'/> */
void nst_xw_elem_attr(struct nst_xw *w, const char *name, const char *attr, const char *value);

/* Closes open elements check: every element must have been ended. On success
 * *ret is the NUL-terminated document (owned by the caller, free()) and
 * *ret_len its length (may be NULL). */
int nst_xw_finish(struct nst_xw *w, char **ret, size_t *ret_len, struct nst_error *err);

/* True when s[0..len) is UTF-8 that XML 1.0 can carry (no C0 controls besides
 * tab, LF and CR, no U+FFFE/U+FFFF, no surrogates or overlongs). */
bool nst_xml_text_valid(const char *s, size_t len);

#endif
