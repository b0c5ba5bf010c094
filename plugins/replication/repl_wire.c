/* The replication stream's frame format (repl_wire.h): big-endian encoders and
 * strict decoders, without I/O. Everything a peer sends passes through the
 * decoders here before any length is used to allocate or index, so each one
 * rejects what it does not understand and says which field was wrong. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <xxhash.h>
#include <zstd.h>

#include "plugins/replication/repl_wire.h"
#include "plugins/replication/repl_xxh3_avx2.h"

#define PROTO "ProtocolError"

/* ---- big-endian helpers ---- */

static void put_u16(uint8_t *p, uint16_t v) {
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
}

static void put_u32(uint8_t *p, uint32_t v) {
        put_u16(p, (uint16_t)(v >> 16));
        put_u16(p + 2, (uint16_t)v);
}

static void put_u64(uint8_t *p, uint64_t v) {
        put_u32(p, (uint32_t)(v >> 32));
        put_u32(p + 4, (uint32_t)v);
}

static uint16_t get_u16(const uint8_t *p) {
        return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static uint32_t get_u32(const uint8_t *p) {
        return (uint32_t)get_u16(p) << 16 | get_u16(p + 2);
}

static uint64_t get_u64(const uint8_t *p) {
        return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
}

/* ---- frame header ---- */

static const char *const type_names[] = {
        [NST_RW_HELLO] = "HELLO",         [NST_RW_READY] = "READY",
        [NST_RW_DATA] = "DATA",           [NST_RW_ZERO] = "ZERO",
        [NST_RW_MARK] = "MARK",           [NST_RW_MARK_ACK] = "MARK_ACK",
        [NST_RW_HASH_REQ] = "HASH_REQ",   [NST_RW_HASHES] = "HASHES",
        [NST_RW_COMMIT] = "COMMIT",       [NST_RW_COMMITTED] = "COMMITTED",
        [NST_RW_ERROR] = "ERROR",         [NST_RW_BYE] = "BYE",
};

const char *nst_rw_type_name(uint8_t type) {
        if (type >= NST_ARRAY_SIZE(type_names) || !type_names[type])
                return "?";
        return type_names[type];
}

void nst_rw_header_encode(uint8_t out[NST_RW_HEADER_SIZE], uint8_t type, uint8_t flags,
                          uint32_t length) {
        put_u32(out, NST_RW_MAGIC);
        out[4] = type;
        out[5] = flags;
        put_u16(out + 6, 0);
        put_u32(out + 8, length);
}

/* Smallest and largest payload a frame of this type may announce. */
static void length_bounds(uint8_t type, uint32_t *min, uint32_t *max) {
        switch (type) {
        case NST_RW_DATA:
                *min = NST_RW_EXTENT_SIZE + 1;
                *max = NST_RW_EXTENT_SIZE + (uint32_t)ZSTD_COMPRESSBOUND(NST_RW_MAX_EXTENT);
                break;
        case NST_RW_ZERO:
                *min = *max = NST_RW_EXTENT_SIZE;
                break;
        case NST_RW_MARK:
        case NST_RW_MARK_ACK:
                *min = *max = NST_RW_MARK_SIZE;
                break;
        case NST_RW_HASHES:
                *min = NST_RW_HASHES_HEADER_SIZE;
                *max = NST_RW_HASHES_HEADER_SIZE + NST_RW_MAX_HASHES * NST_RW_HASH_SIZE;
                break;
        default: /* the JSON control frames */
                *min = 0;
                *max = NST_RW_MAX_JSON;
                break;
        }
}

int nst_rw_header_decode(const uint8_t in[NST_RW_HEADER_SIZE], struct nst_rw_header *ret,
                         struct nst_error *err) {
        uint32_t magic = get_u32(in), length = get_u32(in + 8), min, max;
        uint16_t reserved = get_u16(in + 6);
        uint8_t type = in[4], flags = in[5];

        if (magic != NST_RW_MAGIC)
                return nst_error_set(err, -EPROTO, PROTO,
                                     "frame header: bad magic 0x%08" PRIx32 " (expected 0x%08"
                                     PRIx32 ")", magic, NST_RW_MAGIC);
        if (type < NST_RW_HELLO || type > NST_RW_TYPE_MAX)
                return nst_error_set(err, -EPROTO, PROTO, "frame header: unknown type %u",
                                     (unsigned)type);
        if (reserved != 0)
                return nst_error_set(err, -EPROTO, PROTO,
                                     "frame header: reserved field is 0x%04x, must be 0",
                                     (unsigned)reserved);
        if (flags & ~(type == NST_RW_DATA ? NST_RW_F_ZSTD : 0))
                return nst_error_set(err, -EPROTO, PROTO,
                                     "frame header: unknown flags 0x%02x for %s frame",
                                     (unsigned)flags, nst_rw_type_name(type));
        length_bounds(type, &min, &max);
        if (length < min || length > max)
                return nst_error_set(err, -EPROTO, PROTO,
                                     "frame header: length %" PRIu32 " of %s frame is outside "
                                     "[%" PRIu32 ", %" PRIu32 "]",
                                     length, nst_rw_type_name(type), min, max);
        *ret = (struct nst_rw_header){.type = type, .flags = flags, .length = length};
        return 0;
}

/* ---- extents ---- */

void nst_rw_extent_encode(uint8_t out[NST_RW_EXTENT_SIZE], const struct nst_rw_extent *e) {
        put_u16(out, e->disk);
        put_u16(out + 2, 0);
        put_u32(out + 4, e->length);
        put_u64(out + 8, e->offset);
        put_u64(out + 16, e->digest);
}

int nst_rw_extent_decode(const uint8_t *p, size_t n, struct nst_rw_extent *ret,
                         struct nst_error *err) {
        if (n < NST_RW_EXTENT_SIZE)
                return nst_error_set(err, -EPROTO, PROTO,
                                     "extent header: %zu bytes, need %u", n,
                                     (unsigned)NST_RW_EXTENT_SIZE);
        if (get_u16(p + 2) != 0)
                return nst_error_set(err, -EPROTO, PROTO,
                                     "extent header: reserved field is 0x%04x, must be 0",
                                     (unsigned)get_u16(p + 2));
        *ret = (struct nst_rw_extent){
                .disk = get_u16(p),
                .length = get_u32(p + 4),
                .offset = get_u64(p + 8),
                .digest = get_u64(p + 16),
        };
        return 0;
}

int nst_rw_extent_check(const struct nst_rw_extent *e, size_t n_disks, uint64_t disk_size,
                        uint32_t max_length, struct nst_error *err) {
        if (e->disk >= n_disks)
                return nst_error_set(err, -EPROTO, PROTO,
                                     "extent disk %u offset %" PRIu64 ": disk index out of "
                                     "range (%zu disks)", (unsigned)e->disk, e->offset, n_disks);
        if (e->length == 0 || e->length > max_length)
                return nst_error_set(err, -EPROTO, PROTO,
                                     "extent disk %u offset %" PRIu64 ": length %" PRIu32
                                     " is outside [1, %" PRIu32 "]", (unsigned)e->disk,
                                     e->offset, e->length, max_length);
        if (e->offset > disk_size || e->length > disk_size - e->offset)
                return nst_error_set(err, -EPROTO, PROTO,
                                     "extent disk %u offset %" PRIu64 " length %" PRIu32
                                     ": ends beyond the disk size %" PRIu64, (unsigned)e->disk,
                                     e->offset, e->length, disk_size);
        return 0;
}

/* ---- marks ---- */

void nst_rw_mark_encode(uint8_t out[NST_RW_MARK_SIZE], const struct nst_rw_mark *m) {
        put_u16(out, m->disk);
        put_u16(out + 2, 0);
        put_u64(out + 4, m->offset);
}

int nst_rw_mark_decode(const uint8_t *p, size_t n, struct nst_rw_mark *ret,
                       struct nst_error *err) {
        if (n != NST_RW_MARK_SIZE)
                return nst_error_set(err, -EPROTO, PROTO, "mark: %zu bytes, expected %u", n,
                                     (unsigned)NST_RW_MARK_SIZE);
        if (get_u16(p + 2) != 0)
                return nst_error_set(err, -EPROTO, PROTO,
                                     "mark: reserved field is 0x%04x, must be 0",
                                     (unsigned)get_u16(p + 2));
        *ret = (struct nst_rw_mark){.disk = get_u16(p), .offset = get_u64(p + 4)};
        return 0;
}

/* ---- block digests ---- */

void nst_rw_hashes_encode(uint8_t out[NST_RW_HASHES_HEADER_SIZE], const struct nst_rw_hashes *h) {
        put_u16(out, h->disk);
        put_u16(out + 2, 0);
        put_u32(out + 4, h->block_size);
        put_u64(out + 8, h->first_block);
        put_u32(out + 16, h->count);
}

int nst_rw_hashes_decode(const uint8_t *p, size_t n, struct nst_rw_hashes *ret,
                         struct nst_error *err) {
        struct nst_rw_hashes h;

        if (n < NST_RW_HASHES_HEADER_SIZE)
                return nst_error_set(err, -EPROTO, PROTO, "hashes header: %zu bytes, need %u",
                                     n, (unsigned)NST_RW_HASHES_HEADER_SIZE);
        if (get_u16(p + 2) != 0)
                return nst_error_set(err, -EPROTO, PROTO,
                                     "hashes header: reserved field is 0x%04x, must be 0",
                                     (unsigned)get_u16(p + 2));
        h = (struct nst_rw_hashes){
                .disk = get_u16(p),
                .block_size = get_u32(p + 4),
                .first_block = get_u64(p + 8),
                .count = get_u32(p + 16),
        };
        if (h.block_size == 0)
                return nst_error_set(err, -EPROTO, PROTO, "hashes disk %u: block_size is 0",
                                     (unsigned)h.disk);
        if (h.count > NST_RW_MAX_HASHES)
                return nst_error_set(err, -EPROTO, PROTO,
                                     "hashes disk %u: count %" PRIu32 " exceeds %" PRIu32,
                                     (unsigned)h.disk, h.count, NST_RW_MAX_HASHES);
        if (h.first_block > UINT64_MAX - h.count)
                return nst_error_set(err, -EPROTO, PROTO,
                                     "hashes disk %u: first_block %" PRIu64 " + count %" PRIu32
                                     " overflows", (unsigned)h.disk, h.first_block, h.count);
        if (n != NST_RW_HASHES_HEADER_SIZE + (size_t)h.count * NST_RW_HASH_SIZE)
                return nst_error_set(err, -EPROTO, PROTO,
                                     "hashes disk %u: %zu bytes for count %" PRIu32
                                     ", expected %zu", (unsigned)h.disk, n, h.count,
                                     NST_RW_HASHES_HEADER_SIZE +
                                             (size_t)h.count * NST_RW_HASH_SIZE);
        *ret = h;
        return 0;
}

/* ---- integrity and compression ---- */

/* Every extent is hashed on both sides: with AVX2 (where the CPU has it)
 * rather than libxxhash's baseline SSE2 code, a full copy spends a third
 * of the CPU time on it. */
static bool use_avx2(void) {
#if defined(NST_RW_HAVE_XXH3_AVX2)
        /* A bit test: the CPU model is read once, at load time. */
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2");
#else
        return false;
#endif
}

uint64_t nst_rw_digest(const void *p, size_t n) {
#if defined(NST_RW_HAVE_XXH3_AVX2)
        if (use_avx2())
                return nst_rw_xxh3_avx2(p, n);
#endif
        return XXH3_64bits(p, n);
}

/* The opaque type is xxHash's own state. */
struct nst_rw_digester *nst_rw_digester_new(void) {
        XXH3_state_t *st = XXH3_createState();
        if (st)
                XXH3_64bits_reset(st);
        return (struct nst_rw_digester *)st;
}

void nst_rw_digester_free(struct nst_rw_digester *d) {
        XXH3_freeState((XXH3_state_t *)d);
}

void nst_rw_digester_reset(struct nst_rw_digester *d) {
        XXH3_64bits_reset((XXH3_state_t *)d);
}

void nst_rw_digester_update(struct nst_rw_digester *d, const void *p, size_t n) {
#if defined(NST_RW_HAVE_XXH3_AVX2)
        if (use_avx2()) {
                nst_rw_xxh3_update_avx2(d, p, n);
                return;
        }
#endif
        XXH3_64bits_update((XXH3_state_t *)d, p, n);
}

uint64_t nst_rw_digester_value(const struct nst_rw_digester *d) {
#if defined(NST_RW_HAVE_XXH3_AVX2)
        if (use_avx2())
                return nst_rw_xxh3_digest_avx2(d);
#endif
        return XXH3_64bits_digest((const XXH3_state_t *)d);
}

size_t nst_rw_compress_bound(size_t n) {
        return ZSTD_compressBound(n);
}

int nst_rw_compress(const void *in, size_t n, void *out, size_t out_cap, size_t *ret_len,
                    struct nst_error *err) {
        size_t r = ZSTD_compress(out, out_cap, in, n, 1);

        if (ZSTD_isError(r))
                return nst_error_set(err, -EIO, "CompressionError",
                                     "zstd compression of %zu bytes failed: %s", n,
                                     ZSTD_getErrorName(r));
        if (r >= n)
                return nst_error_set(err, -ENOSPC, "CompressionError",
                                     "%zu bytes do not compress (zstd frame of %zu bytes)", n,
                                     r);
        *ret_len = r;
        return 0;
}

int nst_rw_decompress(const void *in, size_t n, void *out, size_t expected_len,
                      struct nst_error *err) {
        unsigned long long content = ZSTD_getFrameContentSize(in, n);
        size_t frame_len, r;

        if (content == ZSTD_CONTENTSIZE_ERROR)
                return nst_error_set(err, -EPROTO, PROTO,
                                     "compressed payload: %zu bytes are not a zstd frame", n);
        if (content != ZSTD_CONTENTSIZE_UNKNOWN && content != expected_len)
                return nst_error_set(err, -EPROTO, PROTO,
                                     "compressed payload: frame holds %llu bytes, extent is %zu",
                                     content, expected_len);
        /* One frame, nothing after it: a second frame would be decoded too. */
        frame_len = ZSTD_findFrameCompressedSize(in, n);
        if (ZSTD_isError(frame_len) || frame_len != n)
                return nst_error_set(err, -EPROTO, PROTO,
                                     "compressed payload: %zu bytes are not exactly one zstd "
                                     "frame", n);
        r = ZSTD_decompress(out, expected_len, in, n);
        if (ZSTD_isError(r))
                return nst_error_set(err, -EPROTO, PROTO,
                                     "compressed payload: zstd error: %s", ZSTD_getErrorName(r));
        if (r != expected_len)
                return nst_error_set(err, -EPROTO, PROTO,
                                     "compressed payload: decoded to %zu bytes, extent is %zu", r,
                                     expected_len);
        return 0;
}
