/* The replication data stream between two agents (docs/replication.md):
 * frames on one TLS connection, encoded and decoded here without I/O so the
 * bounds checks can be unit-tested and fuzzed.
 *
 * A frame is a 12-byte header, big endian:
 *   magic "NSTR" (u32) | type (u8) | flags (u8) | reserved, 0 (u16) | length (u32)
 * followed by `length` payload bytes. Control frames (HELLO, READY, HASH_REQ,
 * COMMIT, COMMITTED, ERROR, BYE) carry a JSON object. DATA and ZERO carry a
 * 24-byte extent header:
 *   disk (u16) | reserved, 0 (u16) | length (u32) | offset (u64) | digest (u64)
 * then, for DATA, the payload: `length` bytes, or their zstd frame when the
 * frame has NST_RW_F_ZSTD. digest is XXH3-64 of the uncompressed bytes (0 for
 * ZERO), checked by the receiver before anything is written. MARK and
 * MARK_ACK carry disk (u16) | reserved (u16) | offset (u64): the sender asks
 * the receiver to make everything before (disk, offset) durable and to say
 * so. HASHES carries disk (u16) | reserved (u16) | block_size (u32) |
 * first_block (u64) | count (u32) then count 32-byte SHA-256 digests. */
#ifndef NESTOR_PLUGINS_REPLICATION_REPL_WIRE_H
#define NESTOR_PLUGINS_REPLICATION_REPL_WIRE_H

#include <json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "messages/error.h"

#define NST_RW_MAGIC UINT32_C(0x4e535452) /* "NSTR" */
#define NST_RW_VERSION 1
#define NST_RW_HEADER_SIZE 12
#define NST_RW_EXTENT_SIZE 24
#define NST_RW_MARK_SIZE 12
#define NST_RW_HASHES_HEADER_SIZE 20
#define NST_RW_HASH_SIZE 32
/* Largest extent in one DATA frame: the NBD server's maximum request. */
#define NST_RW_MAX_EXTENT (UINT32_C(32) * 1024 * 1024)
/* Largest ZERO extent: zero ranges carry no payload, so they may be long. */
#define NST_RW_MAX_ZERO_EXTENT (UINT32_C(1) << 31)
/* Largest JSON control payload. */
#define NST_RW_MAX_JSON (UINT32_C(4) * 1024 * 1024)
/* Largest digests in one HASHES frame. */
#define NST_RW_MAX_HASHES UINT32_C(65536)

enum nst_rw_type {
        NST_RW_HELLO = 1,     /* source -> target: which replication, cycle, disks */
        NST_RW_READY = 2,     /* target -> source: where to resume */
        NST_RW_DATA = 3,      /* extent with bytes */
        NST_RW_ZERO = 4,      /* extent that reads as zeroes: no payload */
        NST_RW_MARK = 5,      /* make everything before (disk, offset) durable */
        NST_RW_MARK_ACK = 6,
        NST_RW_HASH_REQ = 7,  /* source -> target: digests of a disk's blocks */
        NST_RW_HASHES = 8,
        NST_RW_COMMIT = 9,    /* source -> target: the cycle is complete */
        NST_RW_COMMITTED = 10,
        NST_RW_ERROR = 11,    /* either way: {"class", "message"}, then close */
        NST_RW_BYE = 12,
};
#define NST_RW_TYPE_MAX NST_RW_BYE

#define NST_RW_F_ZSTD 0x01 /* DATA payload is one zstd frame */

struct nst_rw_header {
        uint8_t type;
        uint8_t flags;
        uint32_t length;
};

struct nst_rw_extent {
        uint16_t disk;
        uint32_t length;
        uint64_t offset;
        uint64_t digest;
};

struct nst_rw_mark {
        uint16_t disk;
        uint64_t offset;
};

struct nst_rw_hashes {
        uint16_t disk;
        uint32_t block_size;
        uint64_t first_block;
        uint32_t count;
};

const char *nst_rw_type_name(uint8_t type); /* "HELLO", ..., "?" */

void nst_rw_header_encode(uint8_t out[NST_RW_HEADER_SIZE], uint8_t type, uint8_t flags,
                          uint32_t length);
/* ProtocolError on a wrong magic, reserved bits, unknown type or flags, or
 * a length over the type's maximum (JSON: NST_RW_MAX_JSON; DATA: extent
 * header + NST_RW_MAX_EXTENT + zstd's worst-case growth; ZERO: exactly the
 * extent header; MARK/MARK_ACK: exactly NST_RW_MARK_SIZE; HASHES: header +
 * NST_RW_MAX_HASHES digests). */
int nst_rw_header_decode(const uint8_t in[NST_RW_HEADER_SIZE], struct nst_rw_header *ret,
                         struct nst_error *err);

void nst_rw_extent_encode(uint8_t out[NST_RW_EXTENT_SIZE], const struct nst_rw_extent *e);
/* ProtocolError when n < NST_RW_EXTENT_SIZE or reserved bits are set. */
int nst_rw_extent_decode(const uint8_t *p, size_t n, struct nst_rw_extent *ret,
                         struct nst_error *err);
/* ProtocolError naming the extent unless disk < n_disks, 0 < length <=
 * max_length and offset + length <= disk_size (no overflow). */
int nst_rw_extent_check(const struct nst_rw_extent *e, size_t n_disks, uint64_t disk_size,
                        uint32_t max_length, struct nst_error *err);

void nst_rw_mark_encode(uint8_t out[NST_RW_MARK_SIZE], const struct nst_rw_mark *m);
int nst_rw_mark_decode(const uint8_t *p, size_t n, struct nst_rw_mark *ret, struct nst_error *err);

void nst_rw_hashes_encode(uint8_t out[NST_RW_HASHES_HEADER_SIZE], const struct nst_rw_hashes *h);
/* Checks n == header + count * 32 and count <= NST_RW_MAX_HASHES. */
int nst_rw_hashes_decode(const uint8_t *p, size_t n, struct nst_rw_hashes *ret,
                         struct nst_error *err);

/* XXH3-64 of the bytes. */
uint64_t nst_rw_digest(const void *p, size_t n);
/* The same digest of bytes that arrive in pieces, each hashed while it is
 * still in the CPU cache. */
struct nst_rw_digester;
struct nst_rw_digester *nst_rw_digester_new(void);
void nst_rw_digester_free(struct nst_rw_digester *d);
void nst_rw_digester_reset(struct nst_rw_digester *d);
void nst_rw_digester_update(struct nst_rw_digester *d, const void *p, size_t n);
uint64_t nst_rw_digester_value(const struct nst_rw_digester *d);

/* zstd level 1 (fast). out_cap >= nst_rw_compress_bound(n). *ret_len is the
 * frame length; returns -ENOSPC when the frame would not be smaller than the
 * input (send it uncompressed then). */
size_t nst_rw_compress_bound(size_t n);
int nst_rw_compress(const void *in, size_t n, void *out, size_t out_cap, size_t *ret_len,
                    struct nst_error *err);
/* ProtocolError unless the frame decodes to exactly expected_len bytes. */
int nst_rw_decompress(const void *in, size_t n, void *out, size_t expected_len,
                      struct nst_error *err);

#endif
