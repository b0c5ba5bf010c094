#include "plugins/libvirt/xml_writer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void nst_xw_init(struct nst_xw *w, size_t cap_hint) {
        *w = (struct nst_xw){0};
        w->cap = cap_hint < 256 ? 256 : cap_hint;
        w->buf = malloc(w->cap);
        if (!w->buf)
                w->error = -ENOMEM;
}

void nst_xw_release(struct nst_xw *w) {
        free(w->buf);
        w->buf = NULL;
        w->len = w->cap = 0;
}

static bool grow(struct nst_xw *w, size_t extra) {
        if (w->error)
                return false;
        size_t cap = w->cap * 2;
        while (cap < w->len + extra + 1)
                cap *= 2;
        char *b = realloc(w->buf, cap);
        if (!b) {
                w->error = -ENOMEM;
                return false;
        }
        w->buf = b;
        w->cap = cap;
        return true;
}

static inline bool reserve(struct nst_xw *w, size_t extra) {
        if (__builtin_expect(w->len + extra + 1 <= w->cap && !w->error, 1))
                return true;
        return grow(w, extra);
}

static inline void put(struct nst_xw *w, const char *s, size_t n) {
        if (!reserve(w, n))
                return;
        memcpy(w->buf + w->len, s, n);
        w->len += n;
}

static inline void putc_(struct nst_xw *w, char c) {
        if (!reserve(w, 1))
                return;
        w->buf[w->len++] = c;
}

/* Decodes one UTF-8 sequence at s (n bytes left); returns its length, or 0
 * when it is malformed or a character XML 1.0 forbids. */
static size_t utf8_char(const unsigned char *s, size_t n) {
        unsigned c = s[0];
        if (c < 0x80)
                return (c >= 0x20 || c == '\t' || c == '\n' || c == '\r') && c != 0x7f ? 1 : 0;
        size_t len;
        unsigned cp, min;
        if ((c & 0xe0) == 0xc0) {
                len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
                len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
                len = 4, cp = c & 0x07, min = 0x10000;
        } else {
                return 0;
        }
        if (len > n)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe ||
            cp == 0xffff)
                return 0;
        return len;
}

bool nst_xml_text_valid(const char *s, size_t len) {
        const unsigned char *p = (const unsigned char *)s;
        size_t i = 0;
        while (i < len) {
                size_t k = utf8_char(p + i, len - i);
                if (k == 0)
                        return false;
                i += k;
        }
        return true;
}

/* What put_escaped must look at: 0 = copy as is. */
enum { C_PLAIN = 0, C_AMP, C_LT, C_GT, C_APOS, C_QUOT, C_TAB, C_LF, C_CR, C_CTRL, C_UTF8 };
static const unsigned char char_class[256] = {
        [0 ... 8] = C_CTRL,   ['\t'] = C_TAB,        ['\n'] = C_LF,   [11 ... 12] = C_CTRL,
        ['\r'] = C_CR,        [14 ... 0x1f] = C_CTRL, ['&'] = C_AMP,   ['<'] = C_LT,
        ['>'] = C_GT,         ['\''] = C_APOS,        ['"'] = C_QUOT,  [0x7f] = C_CTRL,
        [0x80 ... 0xff] = C_UTF8,
};

/* Writes value escaped for a single-quoted attribute (in_attr) or for text.
 * Tab/LF/CR become character references in attributes, because attribute
 * value normalization would otherwise turn them into spaces. */
static void put_escaped(struct nst_xw *w, const char *value, bool in_attr) {
        static const char *const reps[] = {
                [C_AMP] = "&amp;", [C_LT] = "&lt;",  [C_GT] = "&gt;",  [C_APOS] = "&apos;",
                [C_QUOT] = "&quot;", [C_TAB] = "&#9;", [C_LF] = "&#10;", [C_CR] = "&#13;",
        };
        const unsigned char *p = (const unsigned char *)value;
        size_t run = 0, i = 0;
        for (;;) {
                unsigned cls;
                while ((cls = char_class[p[i]]) == C_PLAIN)
                        i++;
                if (p[i] == '\0')
                        break;
                if (cls == C_UTF8) {
                        /* n = 4 is safe: the NUL is not a continuation byte. */
                        size_t k = utf8_char(p + i, 4);
                        if (k == 0)
                                goto bad;
                        i += k;
                        continue;
                }
                if (cls == C_CTRL)
                        goto bad;
                if (!in_attr && (cls == C_APOS || cls == C_QUOT || cls == C_TAB || cls == C_LF)) {
                        i++;
                        continue;
                }
                put(w, value + run, i - run);
                put(w, reps[cls], strlen(reps[cls]));
                run = ++i;
        }
        put(w, value + run, i - run);
        return;
bad:
        if (!w->error) {
                w->error = -EINVAL;
                w->bad_value = value;
        }
}

static inline void close_tag(struct nst_xw *w) {
        if (w->tag_open) {
                putc_(w, '>');
                w->tag_open = false;
        }
}

void nst_xw_start(struct nst_xw *w, const char *name) {
        if (w->error)
                return;
        if (w->depth >= NST_XW_MAX_DEPTH) {
                w->error = -E2BIG;
                return;
        }
        close_tag(w);
        putc_(w, '<');
        put(w, name, strlen(name));
        w->stack[w->depth++] = name;
        w->tag_open = true;
}

void nst_xw_attr(struct nst_xw *w, const char *name, const char *value) {
        if (w->error)
                return;
        if (!w->tag_open) {
                w->error = -EPROTO;
                return;
        }
        size_t n = strlen(name);
        if (!reserve(w, n + 3))
                return;
        w->buf[w->len++] = ' ';
        memcpy(w->buf + w->len, name, n);
        w->len += n;
        w->buf[w->len++] = '=';
        w->buf[w->len++] = '\'';
        put_escaped(w, value, true);
        putc_(w, '\'');
}

/* snprintf costs more than the rest of an attribute; these are hot. */
static const char *fmt_u64(char buf[24], uint64_t v) {
        char *p = buf + 23;
        *p = '\0';
        do {
                *--p = (char)('0' + v % 10);
                v /= 10;
        } while (v);
        return p;
}

void nst_xw_attr_u64(struct nst_xw *w, const char *name, uint64_t value) {
        char b[24];
        nst_xw_attr(w, name, fmt_u64(b, value));
}

void nst_xw_attr_hex(struct nst_xw *w, const char *name, unsigned value, unsigned width) {
        static const char digits[] = "0123456789abcdef";
        char b[16];
        if (width > 8)
                width = 8;
        unsigned n = 0;
        for (unsigned v = value; v; v >>= 4)
                n++;
        if (n < width)
                n = width;
        if (n == 0)
                n = 1;
        b[0] = '0';
        b[1] = 'x';
        for (unsigned i = 0; i < n; i++)
                b[2 + n - 1 - i] = digits[(value >> (4 * i)) & 0xf];
        b[2 + n] = '\0';
        nst_xw_attr(w, name, b);
}

void nst_xw_text(struct nst_xw *w, const char *text) {
        if (w->error)
                return;
        close_tag(w);
        put_escaped(w, text, false);
}

void nst_xw_text_u64(struct nst_xw *w, uint64_t value) {
        char b[24];
        nst_xw_text(w, fmt_u64(b, value));
}

void nst_xw_end(struct nst_xw *w) {
        if (w->error)
                return;
        if (w->depth == 0) {
                w->error = -EPROTO;
                return;
        }
        const char *name = w->stack[--w->depth];
        if (w->tag_open) {
                put(w, "/>", 2);
                w->tag_open = false;
                return;
        }
        size_t n = strlen(name);
        if (!reserve(w, n + 3))
                return;
        w->buf[w->len++] = '<';
        w->buf[w->len++] = '/';
        memcpy(w->buf + w->len, name, n);
        w->len += n;
        w->buf[w->len++] = '>';
}

void nst_xw_elem_text(struct nst_xw *w, const char *name, const char *text) {
        nst_xw_start(w, name);
        nst_xw_text(w, text);
        nst_xw_end(w);
}

void nst_xw_elem_attr(struct nst_xw *w, const char *name, const char *attr, const char *value) {
        nst_xw_start(w, name);
        nst_xw_attr(w, attr, value);
        nst_xw_end(w);
}

int nst_xw_finish(struct nst_xw *w, char **ret, size_t *ret_len, struct nst_error *err) {
        if (!w->error && w->depth != 0)
                w->error = -EPROTO;
        switch (w->error) {
        case 0:
                break;
        case -EINVAL:
                /* The value itself is not quoted: it is not printable. */
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "a value is not UTF-8 text that XML can carry");
        case -ENOMEM:
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory writing XML");
        default:
                return nst_error_set(err, w->error, "InternalError",
                                     "XML writer misuse (unbalanced or too deep elements)");
        }
        w->buf[w->len] = '\0';
        if (ret_len)
                *ret_len = w->len;
        *ret = w->buf;
        w->buf = NULL;
        w->len = w->cap = 0;
        return 0;
}
