#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "messages/error.h"
#include "messages/json_util.h"

/* Classes a Python client can rebuild from "builtins" with Class(*args). */
static const char *const builtin_classes[] = {
        "ValueError",        "TypeError",    "KeyError",
        "IndexError",        "RuntimeError", "NotImplementedError",
        "AttributeError",    "LookupError",  "OSError",
        "IOError",           "TimeoutError", "PermissionError",
        "FileNotFoundError", "MemoryError",  "Exception",
        "AssertionError",
};

static const char *const dispatcher_classes[] = {
        "NoSuchMethod",
        "UnsupportedVersion",
};

static bool in_list(const char *s, const char *const *list, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(s, list[i]) == 0)
                        return true;
        return false;
}

const char *nst_error_module_for(const char *cls) {
        if (!cls)
                return NST_MOD_NESTOR;
        if (in_list(cls, builtin_classes, NST_ARRAY_SIZE(builtin_classes)))
                return NST_MOD_BUILTINS;
        if (in_list(cls, dispatcher_classes, NST_ARRAY_SIZE(dispatcher_classes)))
                return NST_MOD_DISPATCHER;
        return NST_MOD_NESTOR;
}

/* Error text ends up in a reply body, which must be valid UTF-8 for the Python
 * side to decode it at all. Truncation can cut a sequence in half and a
 * message may quote peer bytes, so invalid bytes become '?' rather than
 * poisoning the reply. */
static void sanitize_utf8(char *s) {
        size_t len = strlen(s);
        size_t i = 0;

        while (i < len) {
                size_t n = 1;
                while (i + n < len && n < 4 && !nst_utf8_valid(s + i, n))
                        n++;
                if (nst_utf8_valid(s + i, n)) {
                        i += n;
                        continue;
                }
                s[i++] = '?';
        }
}

static void copy_field(char *dst, size_t size, const char *src) {
        size_t n = src ? strlen(src) : 0;

        if (n >= size)
                n = size - 1;
        memmove(dst, src ? src : "", n);
        dst[n] = '\0';
        sanitize_utf8(dst);
}

_printf_(5, 0) static int error_vset(struct nst_error *err, int code, const char *module,
                                     const char *cls, const char *fmt, va_list ap) {
        /* A non-negative code would read as success to a caller doing
         * `return nst_error_set(...)`; never let an error turn into that. */
        if (code >= 0)
                code = -EINVAL;
        if (!err)
                return code;
        if (!cls || !cls[0])
                cls = "RuntimeError";
        err->code = code;
        copy_field(err->cls, sizeof(err->cls), cls);
        copy_field(err->module, sizeof(err->module), module ? module : nst_error_module_for(cls));
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        sanitize_utf8(err->message);
        return code;
}

int nst_error_set(struct nst_error *err, int code, const char *cls, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = error_vset(err, code, NULL, cls, fmt, ap);
        va_end(ap);
        return r;
}

int nst_error_set_module(struct nst_error *err, int code, const char *module, const char *cls,
                         const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = error_vset(err, code, module, cls, fmt, ap);
        va_end(ap);
        return r;
}

int nst_error_prefix(struct nst_error *err, const char *fmt, ...) {
        char joined[NST_ERROR_MESSAGE_MAX];
        size_t n;
        va_list ap;

        if (!err)
                return -EINVAL;
        if (err->code >= 0)
                err->code = -EINVAL;
        if (!nst_error_is_set(err))
                copy_field(err->cls, sizeof(err->cls), "RuntimeError");
        if (!err->module[0])
                copy_field(err->module, sizeof(err->module), nst_error_module_for(err->cls));

        va_start(ap, fmt);
        vsnprintf(joined, sizeof(joined), fmt, ap);
        va_end(ap);
        n = strlen(joined);
        if (err->message[0] && n + 2 < sizeof(joined)) {
                memcpy(joined + n, ": ", 3);
                n += 2;
                copy_field(joined + n, sizeof(joined) - n, err->message);
        }
        copy_field(err->message, sizeof(err->message), joined);
        return err->code;
}

void nst_error_clear(struct nst_error *err) {
        if (err)
                memset(err, 0, sizeof(*err));
}
