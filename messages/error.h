/* One error convention for the whole tree (see CONTRIBUTING.md).
 *
 * A function that can fail returns 0 on success or a negative errno-style
 * code, and, when it takes a `struct nst_error *err` (always the last
 * parameter), fills it with a remote-error class and a human message. The
 * class is what a Python oslo.messaging client sees: builtins are re-raised
 * as the real class, Nestor's own errors arrive as RemoteError(exc_type=class).
 *
 * Library code does not log; the caller that decides the error is final logs
 * it once. */
#ifndef NESTOR_MESSAGES_ERROR_H
#define NESTOR_MESSAGES_ERROR_H

#include <stdbool.h>
#include <stddef.h>

#include "messages/util.h"

#define NST_ERROR_CLASS_MAX 64
#define NST_ERROR_MESSAGE_MAX 1024

/* Python modules the client knows how to re-raise from. */
#define NST_MOD_BUILTINS "builtins"
#define NST_MOD_DISPATCHER "oslo_messaging.rpc.dispatcher"
#define NST_MOD_NESTOR "nestor.exception"

struct nst_error {
        int code;                             /* negative errno, 0 = unset */
        char cls[NST_ERROR_CLASS_MAX];        /* e.g. "ValueError" */
        char module[NST_ERROR_CLASS_MAX];     /* e.g. "builtins" */
        char message[NST_ERROR_MESSAGE_MAX];
};

#define NST_ERROR_INIT {0}

/* Fills err (if non-NULL) and returns code, which must be negative, so that
 * `return nst_error_set(err, -EINVAL, "InvalidInput", "...")` reads well.
 * The module is derived from the class: known Python builtins map to
 * "builtins", the dispatcher's own errors to "oslo_messaging.rpc.dispatcher",
 * anything else to "nestor.exception". */
int nst_error_set(struct nst_error *err, int code, const char *cls, const char *fmt, ...)
        _printf_(4, 5);

/* Like nst_error_set with an explicit Python module. */
int nst_error_set_module(struct nst_error *err, int code, const char *module, const char *cls,
                         const char *fmt, ...) _printf_(5, 6);

/* Prefixes the existing message with context ("while X: <old message>"),
 * keeping class and code. Returns err->code. */
int nst_error_prefix(struct nst_error *err, const char *fmt, ...) _printf_(2, 3);

void nst_error_clear(struct nst_error *err);

static inline bool nst_error_is_set(const struct nst_error *err) {
        return err && err->cls[0] != '\0';
}

/* Python module for a class name, per the rule above. */
const char *nst_error_module_for(const char *cls);

#endif
