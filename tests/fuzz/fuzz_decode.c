/* libFuzzer target for everything a peer controls on the receive path: the raw
 * AMQP body, the request inside it, and the reply we send back, which must
 * itself decode (a reply the Python side cannot read is a hung call). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "messages/envelope.h"
#include "messages/json_util.h"
#include "messages/rpc_message.h"

#define FUZZ_MAX_BYTES (1024u * 1024u)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Encodes a reply and decodes it again; any failure is a bug. */
static void check_reply(const char *msg_id, json_object *result, const struct nst_error *failure) {
        json_object *out = NULL, *back = NULL;
        struct nst_rpc_reply reply;
        char *body = NULL;
        size_t len;

        if (nst_rpc_reply_build(msg_id, result, failure, true, &out, NULL) < 0)
                abort();
        if (nst_envelope_encode(out, &body, &len, NULL) < 0)
                abort();
        if (nst_envelope_decode(body, len, SIZE_MAX, &back, NULL) < 0)
                abort();
        if (nst_rpc_reply_decode(back, &reply, NULL) < 0 || !reply.ending ||
            reply.failed != (failure != NULL) || strcmp(reply.msg_id, msg_id) != 0)
                abort();
        if (failure && strcmp(reply.failure.message, failure->message) != 0)
                abort();
        nst_rpc_reply_done(&reply);
        json_object_put(back);
        json_object_put(out);
        free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct nst_error err = NST_ERROR_INIT;
        json_object *inner = NULL;
        struct nst_rpc_request req;
        struct nst_rpc_reply reply;
        char *msg_id = NULL, *reply_q = NULL;

        if (nst_envelope_decode((const char *)data, size, FUZZ_MAX_BYTES, &inner, &err) < 0)
                return 0;

        if (nst_rpc_request_decode(inner, &req, &msg_id, &reply_q, &err) == 0) {
                if (req.msg_id)
                        check_reply(req.msg_id, req.args, NULL);
                nst_rpc_request_done(&req);
        } else if (msg_id) {
                check_reply(msg_id, NULL, &err);
        }
        free(msg_id);
        free(reply_q);

        /* The same bytes seen by a client waiting for a reply. */
        if (nst_rpc_reply_decode(inner, &reply, NULL) == 0)
                nst_rpc_reply_done(&reply);
        json_object_put(inner);
        return 0;
}
