/* RPC requests and replies as oslo.messaging 14 puts them on the wire
 * (inner message, inside the envelope). No I/O here. */
#ifndef NESTOR_MESSAGES_RPC_MESSAGE_H
#define NESTOR_MESSAGES_RPC_MESSAGE_H

#include <json.h>
#include <stdbool.h>

#include "messages/error.h"
#include "messages/ids.h"

/* A decoded request. Borrowed strings point into `raw`, which the struct owns
 * (one reference); release everything with nst_rpc_request_done(). */
struct nst_rpc_request {
        json_object *raw;       /* the inner message, owned */
        const char *method;
        json_object *args;      /* borrowed from raw; an empty object if absent */
        const char *version;    /* NULL means "1.0" */
        const char *namespace_; /* NULL when absent */
        const char *msg_id;     /* NULL for casts */
        const char *reply_q;    /* NULL for casts */
        double timeout;         /* _timeout in seconds, 0 when null/absent */
        const char *unique_id;  /* NULL when absent */
        json_object *context;   /* owned: _context_* keys with the prefix stripped */
        const char *request_id; /* borrowed from context, may be NULL */
};

/* Validates and splits an inner message. On failure *req is left zeroed but
 * any reply routing found before the error (msg_id, reply_q) is copied to
 * ret_msg_id / ret_reply_q when those are non-NULL, so the caller can still
 * answer with the error. `inner` is borrowed (a reference is taken on success). */
int nst_rpc_request_decode(json_object *inner, struct nst_rpc_request *req,
                           char **ret_msg_id, char **ret_reply_q, struct nst_error *err);
void nst_rpc_request_done(struct nst_rpc_request *req);

/* For a body that could not be decoded at all (invalid UTF-8, too large,
 * broken JSON): finds the _msg_id and _reply_q a caller put in it, by
 * scanning the raw bytes for the two keys in either the enveloped (escaped)
 * or the bare form, so the caller can still be told what was wrong instead
 * of timing out. Values must be 1-255 characters of [A-Za-z0-9_.:@-].
 * Returns 0 with both malloc'd, or -ENOENT. */
int nst_rpc_salvage_route(const char *body, size_t len, char **ret_msg_id, char **ret_reply_q);

/* Builds a request inner message (for clients such as nestorctl). `args` and
 * `context` are borrowed (may be NULL). msg_id/reply_q NULL makes a cast.
 * A fresh _unique_id is generated. Result owned by caller. */
int nst_rpc_request_build(const char *method, json_object *args, const char *version,
                          const char *namespace_, json_object *context, const char *msg_id,
                          const char *reply_q, double timeout, json_object **ret,
                          struct nst_error *err);

/* Reply inner messages. `result` is borrowed (NULL encodes JSON null).
 * A failure reply carries err serialized as oslo's failure JSON string
 * ({"class","module","message","tb":[],"args":[message],"kwargs":{}}). */
int nst_rpc_reply_build(const char *msg_id, json_object *result, const struct nst_error *failure,
                        bool ending, json_object **ret, struct nst_error *err);

/* A decoded reply (client side). `result` borrowed from raw. */
struct nst_rpc_reply {
        json_object *raw;           /* owned */
        const char *msg_id;
        json_object *result;        /* may be NULL (JSON null) */
        bool ending;
        bool failed;
        struct nst_error failure;   /* class/module/message when failed */
};
int nst_rpc_reply_decode(json_object *inner, struct nst_rpc_reply *reply, struct nst_error *err);
void nst_rpc_reply_done(struct nst_rpc_reply *reply);

#endif
