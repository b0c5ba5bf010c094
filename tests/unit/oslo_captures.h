/* Real AMQP bodies copied verbatim from /work/shared/reference/oslo-captures.txt
 * (oslo.messaging 14.0.3, nova zed). Generated from the capture file, so the
 * line breaks inside string literals are arbitrary. The capture file labels
 * 1c as 1363 bytes, but the body it records is 1350 bytes and re-encodes
 * identically with Python's json.dumps, so the label is what is off. */
#ifndef NESTOR_TESTS_OSLO_CAPTURES_H
#define NESTOR_TESTS_OSLO_CAPTURES_H

#include "messages/util.h"

/* 1a: RPCClient.call(ctxt, "ping") (457 bytes) */
_unused_ static const char CAPTURE_1A_REQUEST[] =
        "{\"oslo.version\": \"2.0\", \"oslo.message\": \"{\\\"method\\\": \\\"ping\\\", \\\"a"
        "rgs\\\": {}, \\\"version\\\": \\\"6.0\\\", \\\"_msg_id\\\": \\\"2e5107be9cc74dd29acf"
        "b520eacee8ae\\\", \\\"_reply_q\\\": \\\"reply_c1b1e606a55a44c58102e5620365dbfa\\\", "
        "\\\"_timeout\\\": null, \\\"_unique_id\\\": \\\"73b5620bf5914a468981b8ccfdc92e24\\\""
        ", \\\"_context_user_id\\\": \\\"u-probe\\\", \\\"_context_project_id\\\": \\\"p-prob"
        "e\\\", \\\"_context_request_id\\\": \\\"req-11111111-2222-3333-4444-555555555555\\\""
        ", \\\"_context_is_admin\\\": true}\"}";

/* 1b: the reply to ping (207 bytes) */
_unused_ static const char CAPTURE_1B_REPLY[] =
        "{\"oslo.version\": \"2.0\", \"oslo.message\": \"{\\\"result\\\": \\\"pong\\\", \\\"f"
        "ailure\\\": null, \\\"ending\\\": true, \\\"_msg_id\\\": \\\"f5ad0a3264b646009701810"
        "0ee2c8c2e\\\", \\\"_unique_id\\\": \\\"2ad4ae1976c8401eab913aee8d54394c\\\"}\"}";

/* 1c: the reply to "boom", which raised ValueError (1350 bytes) */
_unused_ static const char CAPTURE_1C_FAILURE[] =
        "{\"oslo.version\": \"2.0\", \"oslo.message\": \"{\\\"result\\\": null, \\\"failure\\"
        "\": \\\"{\\\\\\\"class\\\\\\\": \\\\\\\"ValueError\\\\\\\", \\\\\\\"module\\\\\\\": "
        "\\\\\\\"builtins\\\\\\\", \\\\\\\"message\\\\\\\": \\\\\\\"boom from probe-host: {'x"
        "': 1}\\\\\\\", \\\\\\\"tb\\\\\\\": [\\\\\\\"Traceback (most recent call last):\\\\\\"
        "\\n\\\\\\\", \\\\\\\"  File \\\\\\\\\\\\\\\"/usr/lib/python3/dist-packages/oslo_mess"
        "aging/rpc/server.py\\\\\\\\\\\\\\\", line 165, in _process_incoming\\\\\\\\n    res "
        "= self.dispatcher.dispatch(message)\\\\\\\\n          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^"
        "^^^\\\\\\\\n\\\\\\\", \\\\\\\"  File \\\\\\\\\\\\\\\"/usr/lib/python3/dist-packages/"
        "oslo_messaging/rpc/dispatcher.py\\\\\\\\\\\\\\\", line 309, in dispatch\\\\\\\\n    "
        "return self._do_dispatch(endpoint, method, ctxt, args)\\\\\\\\n           ^^^^^^^^^^"
        "^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\\\\\\\\n\\\\\\\", \\\\\\\"  File \\\\\\\\\\\\\\"
        "\"/usr/lib/python3/dist-packages/oslo_messaging/rpc/dispatcher.py\\\\\\\\\\\\\\\", l"
        "ine 229, in _do_dispatch\\\\\\\\n    result = func(ctxt, **new_args)\\\\\\\\n       "
        "      ^^^^^^^^^^^^^^^^^^^^^^\\\\\\\\n\\\\\\\", \\\\\\\"  File \\\\\\\\\\\\\\\"probe/"
        "probe_server.py\\\\\\\\\\\\\\\", line 40, in boom\\\\\\\\n    raise ValueError('boom"
        " from probe-host: %r' % (kwargs,))\\\\\\\\n\\\\\\\", \\\\\\\"ValueError: boom from p"
        "robe-host: {'x': 1}\\\\\\\\n\\\\\\\"], \\\\\\\"args\\\\\\\": [\\\\\\\"boom from prob"
        "e-host: {'x': 1}\\\\\\\"], \\\\\\\"kwargs\\\\\\\": {}}\\\", \\\"ending\\\": true, \\"
        "\"_msg_id\\\": \\\"41c74e0f91ef4d6bbe7b34160c6e1ee3\\\", \\\"_unique_id\\\": \\\"2b3"
        "772b6756c4e2cab8443e09f42ff36\\\"}\"}";

/* 1d: messagingv2 INFO notification (591 bytes) */
_unused_ static const char CAPTURE_1D_NOTIFICATION[] =
        "{\"oslo.version\": \"2.0\", \"oslo.message\": \"{\\\"message_id\\\": \\\"a931eaa5-bc"
        "ae-4b55-b0a5-2faa2e66778c\\\", \\\"publisher_id\\\": \\\"compute.probe-host\\\", \\\""
        "event_type\\\": \\\"compute.instance.create.start\\\", \\\"priority\\\": \\\"INFO\\\""
        ", \\\"payload\\\": {\\\"instance_id\\\": \\\"178b0921-8f85-4257-88b6-2e743b5a975c\\\""
        ", \\\"state\\\": \\\"building\\\"}, \\\"timestamp\\\": \\\"2026-11-26 17:40:19.03633"
        "5\\\", \\\"_unique_id\\\": \\\"915be84c8edc444eab1438b75a8fd474\\\", \\\"_context_us"
        "er_id\\\": \\\"u-probe\\\", \\\"_context_project_id\\\": \\\"p-probe\\\", \\\"_conte"
        "xt_request_id\\\": \\\"req-11111111-2222-3333-4444-555555555555\\\", \\\"_context_is"
        "_admin\\\": true}\"}";

/* N2: legacy "messaging" driver, no envelope (444 bytes) */
_unused_ static const char CAPTURE_N2_BARE_NOTIFICATION[] =
        "{\"message_id\": \"f45008d0-3ce0-48ab-9233-6c6967ce3f0f\", \"publisher_id\": \"compu"
        "te.probe-host\", \"event_type\": \"compute.instance.delete.end\", \"priority\": \"IN"
        "FO\", \"payload\": {\"instance_id\": \"abc\"}, \"timestamp\": \"2026-11-26 17:40:20."
        "770326\", \"_unique_id\": \"494a1132704b48cc8799d859f91de9db\", \"_context_user_id\""
        ": \"u-probe\", \"_context_project_id\": \"p-probe\", \"_context_request_id\": \"req-"
        "11111111-2222-3333-4444-555555555555\", \"_context_is_admin\": true}";

/* c_ping_server failure reply (json-c PLAIN) (396 bytes) */
_unused_ static const char CAPTURE_C_FAILURE[] =
        "{\"oslo.version\":\"2.0\",\"oslo.message\":\"{\\\"result\\\":null,\\\"failure\\\":\\"
        "\"{\\\\\\\"class\\\\\\\":\\\\\\\"ValueError\\\\\\\",\\\\\\\"module\\\\\\\":\\\\\\\"b"
        "uiltins\\\\\\\",\\\\\\\"message\\\\\\\":\\\\\\\"boom from C\\\\\\\",\\\\\\\"tb\\\\\\"
        "\":[\\\\\\\"(C agent: no traceback)\\\\\\\\n\\\\\\\"],\\\\\\\"args\\\\\\\":[\\\\\\\""
        "boom from C\\\\\\\"],\\\\\\\"kwargs\\\\\\\":{}}\\\",\\\"ending\\\":true,\\\"_msg_id\\"
        "\":\\\"9496c51f798f4363b02e8267eb31faee\\\",\\\"_unique_id\\\":\\\"d8c7ba0d3e7c44369"
        "a40027c28b69991\\\"}\"}";

/* B slow: the bare (1.0) request, _timeout 2 (361 bytes) */
_unused_ static const char CAPTURE_B_SLOW_REQUEST[] =
        "{\"method\": \"slow\", \"args\": {\"seconds\": 3}, \"version\": \"6.0\", \"_msg_id\""
        ": \"d4867276c1ac4f2295eea1f5e1f8f801\", \"_reply_q\": \"probe_rawreply\", \"_timeout"
        "\": 2, \"_unique_id\": \"b4cd410d655d4742988bd5ce00a901f7\", \"_context_user_id\": \""
        "u-probe\", \"_context_project_id\": \"p-probe\", \"_context_request_id\": \"req-1111"
        "1111-2222-3333-4444-555555555555\", \"_context_is_admin\": true}";

#endif
