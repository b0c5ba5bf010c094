/* Identifiers as oslo.messaging writes them. */
#ifndef NESTOR_MESSAGES_IDS_H
#define NESTOR_MESSAGES_IDS_H

/* 32 lowercase hex digits (uuid4().hex): _msg_id, _unique_id, queue suffixes. */
#define NST_UUID_HEX_LEN 32
/* 36 characters with dashes (str(uuid4())): notification message_id. */
#define NST_UUID_STR_LEN 36

void nst_uuid_hex(char out[NST_UUID_HEX_LEN + 1]);
void nst_uuid_str(char out[NST_UUID_STR_LEN + 1]);

/* "YYYY-MM-DD HH:MM:SS.ffffff" in UTC from a realtime clock reading in
 * microseconds, the way Python's str(datetime.utcnow()) prints (microseconds
 * omitted when zero). */
#define NST_TIMESTAMP_LEN 32
void nst_timestamp_utc(long long unix_usec, char out[NST_TIMESTAMP_LEN]);

#endif
