/* libFuzzer target for the replication stream's decoders
 * (plugins/replication/repl_wire.h): everything a peer controls before a
 * single byte reaches a disk. The same input is read as a frame header, an
 * extent header (then bounds-checked), a mark, a hashes header and a zstd
 * payload. Besides the sanitizers, two oracles: whatever decodes must encode
 * back to the same bytes, and compression must round-trip. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/replication/repl_wire.h"

/* The largest extent the fuzzer asks nst_rw_decompress for: enough to reach
 * every zstd path, small enough to keep runs fast. */
#define FUZZ_MAX_EXPECTED (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_header(const uint8_t *data, size_t size) {
        uint8_t again[NST_RW_HEADER_SIZE];
        struct nst_rw_header h;

        if (size < NST_RW_HEADER_SIZE || nst_rw_header_decode(data, &h, NULL) < 0)
                return;
        nst_rw_header_encode(again, h.type, h.flags, h.length);
        if (memcmp(again, data, NST_RW_HEADER_SIZE) != 0)
                abort();
}

static void fuzz_extent(const uint8_t *data, size_t size) {
        uint8_t again[NST_RW_EXTENT_SIZE];
        struct nst_rw_extent e;
        uint64_t disk_size;

        if (nst_rw_extent_decode(data, size, &e, NULL) < 0)
                return;
        nst_rw_extent_encode(again, &e);
        if (memcmp(again, data, NST_RW_EXTENT_SIZE) != 0)
                abort();
        /* The digest field doubles as a disk size chosen by the input. */
        disk_size = e.digest;
        if (nst_rw_extent_check(&e, data[0] % 4, disk_size, NST_RW_MAX_EXTENT, NULL) == 0 &&
            (e.disk >= data[0] % 4 || e.length == 0 || e.length > NST_RW_MAX_EXTENT ||
             e.offset > disk_size || disk_size - e.offset < e.length))
                abort();
}

static void fuzz_mark(const uint8_t *data, size_t size) {
        uint8_t again[NST_RW_MARK_SIZE];
        struct nst_rw_mark m;

        if (nst_rw_mark_decode(data, size < NST_RW_MARK_SIZE ? size : NST_RW_MARK_SIZE, &m,
                               NULL) < 0)
                return;
        nst_rw_mark_encode(again, &m);
        if (memcmp(again, data, NST_RW_MARK_SIZE) != 0)
                abort();
}

static void fuzz_hashes(const uint8_t *data, size_t size) {
        uint8_t again[NST_RW_HASHES_HEADER_SIZE];
        struct nst_rw_hashes h;

        if (nst_rw_hashes_decode(data, size, &h, NULL) < 0)
                return;
        if (size != NST_RW_HASHES_HEADER_SIZE + (size_t)h.count * NST_RW_HASH_SIZE)
                abort();
        nst_rw_hashes_encode(again, &h);
        if (memcmp(again, data, NST_RW_HASHES_HEADER_SIZE) != 0)
                abort();
}

/* The first three bytes are the extent length the receiver expects; the
 * output buffer is exactly that long, so ASan catches any write past it. */
static void fuzz_decompress(const uint8_t *data, size_t size) {
        size_t expected;
        uint8_t *out;

        if (size < 3)
                return;
        expected = ((size_t)data[0] << 16 | (size_t)data[1] << 8 | data[2]) % FUZZ_MAX_EXPECTED;
        out = malloc(expected ? expected : 1);
        if (!out)
                return;
        if (nst_rw_decompress(data + 3, size - 3, out, expected, NULL) == 0)
                (void)nst_rw_digest(out, expected);
        free(out);
}

static void fuzz_compress_round_trip(const uint8_t *data, size_t size) {
        size_t cap = nst_rw_compress_bound(size), zlen = 0;
        uint8_t *z = malloc(cap), *back = malloc(size ? size : 1);

        if (z && back && nst_rw_compress(data, size, z, cap, &zlen, NULL) == 0) {
                if (zlen >= size || nst_rw_decompress(z, zlen, back, size, NULL) < 0 ||
                    memcmp(back, data, size) != 0 ||
                    nst_rw_digest(back, size) != nst_rw_digest(data, size))
                        abort();
        }
        free(z);
        free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        fuzz_header(data, size);
        fuzz_extent(data, size);
        fuzz_mark(data, size);
        fuzz_hashes(data, size);
        fuzz_decompress(data, size);
        fuzz_compress_round_trip(data, size);
        (void)nst_rw_type_name(size ? data[0] : 0);
        return 0;
}
