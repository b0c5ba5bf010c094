/* The replication frame format (plugins/replication/repl_wire.h): every
 * encoder round-trips through its decoder, every decoder rejects each way a
 * peer can get a field wrong (with a ProtocolError naming the field), and
 * the payload helpers (XXH3 digest, zstd) behave at their edges. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/replication/repl_wire.h"

#define MiB (UINT64_C(1024) * 1024)

/* Asserts a ProtocolError whose message contains every given fragment. */
static void expect_protocol_error(int r, const struct nst_error *err, const char *frag1,
                                  const char *frag2) {
        assert_int_equal(r, -EPROTO);
        assert_string_equal(err->cls, "ProtocolError");
        if (!strstr(err->message, frag1) || (frag2 && !strstr(err->message, frag2)))
                fail_msg("message '%s' lacks '%s'/'%s'", err->message, frag1,
                         frag2 ? frag2 : "");
}

/* ---- header ---- */

static void test_header_round_trip_every_type(void **state) {
        for (uint8_t t = NST_RW_HELLO; t <= NST_RW_TYPE_MAX; t++) {
                struct nst_error err = NST_ERROR_INIT;
                struct nst_rw_header h = {0};
                uint8_t raw[NST_RW_HEADER_SIZE];
                uint32_t len = t == NST_RW_ZERO                             ? NST_RW_EXTENT_SIZE
                               : t == NST_RW_DATA                           ? 4096 + 24
                               : t == NST_RW_MARK || t == NST_RW_MARK_ACK   ? NST_RW_MARK_SIZE
                               : t == NST_RW_HASHES                         ? 20 + 64
                                                                            : 17;
                uint8_t flags = t == NST_RW_DATA ? NST_RW_F_ZSTD : 0;

                nst_rw_header_encode(raw, t, flags, len);
                assert_int_equal(nst_rw_header_decode(raw, &h, &err), 0);
                assert_int_equal(h.type, t);
                assert_int_equal(h.flags, flags);
                assert_int_equal(h.length, len);
                assert_string_not_equal(nst_rw_type_name(t), "?");
        }
}

static void test_header_byte_layout(void **state) {
        uint8_t raw[NST_RW_HEADER_SIZE];
        const uint8_t expected[] = {'N', 'S', 'T', 'R', 3, 1, 0, 0, 0x01, 0x02, 0x03, 0x04};

        nst_rw_header_encode(raw, NST_RW_DATA, NST_RW_F_ZSTD, 0x01020304);
        assert_memory_equal(raw, expected, sizeof(expected));
        assert_string_equal(nst_rw_type_name(NST_RW_MARK_ACK), "MARK_ACK");
        assert_string_equal(nst_rw_type_name(0), "?");
        assert_string_equal(nst_rw_type_name(13), "?");
        assert_string_equal(nst_rw_type_name(255), "?");
}

static void test_header_rejections(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rw_header h = {.type = 99};
        uint8_t raw[NST_RW_HEADER_SIZE];

        nst_rw_header_encode(raw, NST_RW_HELLO, 0, 10);
        raw[0] = 'X';
        expect_protocol_error(nst_rw_header_decode(raw, &h, &err), &err, "magic", "0x58535452");
        assert_int_equal(h.type, 99); /* untouched on failure */

        nst_rw_header_encode(raw, 0, 0, 10);
        expect_protocol_error(nst_rw_header_decode(raw, &h, &err), &err, "unknown type 0", NULL);
        nst_rw_header_encode(raw, NST_RW_TYPE_MAX + 1, 0, 10);
        expect_protocol_error(nst_rw_header_decode(raw, &h, &err), &err, "unknown type 13",
                              NULL);

        nst_rw_header_encode(raw, NST_RW_HELLO, 0, 10);
        raw[7] = 1;
        expect_protocol_error(nst_rw_header_decode(raw, &h, &err), &err, "reserved", "0x0001");

        nst_rw_header_encode(raw, NST_RW_DATA, 0x02, 100);
        expect_protocol_error(nst_rw_header_decode(raw, &h, &err), &err, "flags 0x02", "DATA");
        nst_rw_header_encode(raw, NST_RW_HELLO, NST_RW_F_ZSTD, 10);
        expect_protocol_error(nst_rw_header_decode(raw, &h, &err), &err, "flags 0x01", "HELLO");
        nst_rw_header_encode(raw, NST_RW_ZERO, NST_RW_F_ZSTD, NST_RW_EXTENT_SIZE);
        expect_protocol_error(nst_rw_header_decode(raw, &h, &err), &err, "flags", "ZERO");
}

/* One type's largest accepted length and the first rejected one. */
static void check_length_bounds(uint8_t type, uint8_t flags, uint32_t min, uint32_t max) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rw_header h;
        uint8_t raw[NST_RW_HEADER_SIZE];
        char frag[64];

        nst_rw_header_encode(raw, type, flags, max);
        assert_int_equal(nst_rw_header_decode(raw, &h, &err), 0);
        nst_rw_header_encode(raw, type, flags, min);
        assert_int_equal(nst_rw_header_decode(raw, &h, &err), 0);
        if (max < UINT32_MAX) {
                nst_rw_header_encode(raw, type, flags, max + 1);
                snprintf(frag, sizeof(frag), "length %u", max + 1);
                expect_protocol_error(nst_rw_header_decode(raw, &h, &err), &err, frag,
                                      nst_rw_type_name(type));
        }
        if (min > 0) {
                nst_rw_header_encode(raw, type, flags, min - 1);
                snprintf(frag, sizeof(frag), "length %u", min - 1);
                expect_protocol_error(nst_rw_header_decode(raw, &h, &err), &err, frag,
                                      nst_rw_type_name(type));
        }
        nst_rw_header_encode(raw, type, flags, UINT32_MAX);
        expect_protocol_error(nst_rw_header_decode(raw, &h, &err), &err, "length 4294967295",
                              NULL);
}

static void test_header_length_per_type(void **state) {
        const uint8_t json_types[] = {NST_RW_HELLO,     NST_RW_READY, NST_RW_HASH_REQ,
                                      NST_RW_COMMIT,    NST_RW_COMMITTED, NST_RW_ERROR,
                                      NST_RW_BYE};
        uint32_t data_max = NST_RW_EXTENT_SIZE + (uint32_t)nst_rw_compress_bound(NST_RW_MAX_EXTENT);

        for (size_t i = 0; i < sizeof(json_types); i++)
                check_length_bounds(json_types[i], 0, 0, NST_RW_MAX_JSON);
        assert_true(data_max > NST_RW_EXTENT_SIZE + NST_RW_MAX_EXTENT);
        check_length_bounds(NST_RW_DATA, 0, NST_RW_EXTENT_SIZE + 1, data_max);
        check_length_bounds(NST_RW_DATA, NST_RW_F_ZSTD, NST_RW_EXTENT_SIZE + 1, data_max);
        check_length_bounds(NST_RW_ZERO, 0, NST_RW_EXTENT_SIZE, NST_RW_EXTENT_SIZE);
        check_length_bounds(NST_RW_MARK, 0, NST_RW_MARK_SIZE, NST_RW_MARK_SIZE);
        check_length_bounds(NST_RW_MARK_ACK, 0, NST_RW_MARK_SIZE, NST_RW_MARK_SIZE);
        check_length_bounds(NST_RW_HASHES, 0, NST_RW_HASHES_HEADER_SIZE,
                            NST_RW_HASHES_HEADER_SIZE + NST_RW_MAX_HASHES * NST_RW_HASH_SIZE);
}

/* ---- extents ---- */

static void test_extent_round_trip(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rw_extent e = {.disk = 0xfffe, .length = 0x01020304,
                                  .offset = UINT64_C(0x1122334455667788),
                                  .digest = UINT64_C(0xdeadbeefcafef00d)};
        struct nst_rw_extent back = {0};
        uint8_t raw[NST_RW_EXTENT_SIZE + 4] = {0};
        const uint8_t expected[] = {0xff, 0xfe, 0,    0,    1,    2,    3,    4,
                                    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                                    0xde, 0xad, 0xbe, 0xef, 0xca, 0xfe, 0xf0, 0x0d};

        nst_rw_extent_encode(raw, &e);
        assert_memory_equal(raw, expected, sizeof(expected));
        assert_int_equal(nst_rw_extent_decode(raw, NST_RW_EXTENT_SIZE, &back, &err), 0);
        assert_int_equal(back.disk, e.disk);
        assert_int_equal(back.length, e.length);
        assert_true(back.offset == e.offset);
        assert_true(back.digest == e.digest);
        /* Payload after the header is the caller's business. */
        assert_int_equal(nst_rw_extent_decode(raw, sizeof(raw), &back, &err), 0);
}

static void test_extent_decode_rejections(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rw_extent e = {.disk = 1, .length = 5, .offset = 6}, back;
        uint8_t raw[NST_RW_EXTENT_SIZE];

        nst_rw_extent_encode(raw, &e);
        expect_protocol_error(nst_rw_extent_decode(raw, NST_RW_EXTENT_SIZE - 1, &back, &err),
                              &err, "23 bytes", "need 24");
        expect_protocol_error(nst_rw_extent_decode(raw, 0, &back, &err), &err, "0 bytes", NULL);
        raw[2] = 0x80;
        expect_protocol_error(nst_rw_extent_decode(raw, sizeof(raw), &back, &err), &err,
                              "reserved", "0x8000");
}

static void test_extent_check(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        const uint64_t size = 64 * MiB;
        struct nst_rw_extent e = {.disk = 1, .length = 65536, .offset = size - 65536};

        assert_int_equal(nst_rw_extent_check(&e, 2, size, NST_RW_MAX_EXTENT, &err), 0);

        e.disk = 2;
        expect_protocol_error(nst_rw_extent_check(&e, 2, size, NST_RW_MAX_EXTENT, &err), &err,
                              "disk 2", "out of range (2 disks)");
        e.disk = 0;
        expect_protocol_error(nst_rw_extent_check(&e, 0, size, NST_RW_MAX_EXTENT, &err), &err,
                              "disk 0", "out of range");

        e.length = 0;
        expect_protocol_error(nst_rw_extent_check(&e, 1, size, NST_RW_MAX_EXTENT, &err), &err,
                              "length 0", "[1, 33554432]");
        e.length = NST_RW_MAX_EXTENT + 1;
        e.offset = 0;
        expect_protocol_error(nst_rw_extent_check(&e, 1, size, NST_RW_MAX_EXTENT, &err), &err,
                              "length 33554433", NULL);
        /* ZERO extents may be longer, up to what the caller allows. */
        assert_int_equal(nst_rw_extent_check(&e, 1, size, NST_RW_MAX_ZERO_EXTENT, &err), 0);

        e.length = 65536;
        e.offset = size - 65535;
        expect_protocol_error(nst_rw_extent_check(&e, 1, size, NST_RW_MAX_EXTENT, &err), &err,
                              "offset 67043329", "beyond the disk size 67108864");
        e.offset = size + 1;
        e.length = 1;
        expect_protocol_error(nst_rw_extent_check(&e, 1, size, NST_RW_MAX_EXTENT, &err), &err,
                              "beyond", NULL);
        /* offset + length wraps around 2^64: must not pass as "small". */
        e.offset = UINT64_MAX - 10;
        e.length = 4096;
        expect_protocol_error(nst_rw_extent_check(&e, 1, UINT64_MAX, NST_RW_MAX_EXTENT, &err),
                              &err, "beyond", NULL);
        e.offset = UINT64_MAX - 4096;
        assert_int_equal(nst_rw_extent_check(&e, 1, UINT64_MAX, NST_RW_MAX_EXTENT, &err), 0);
}

/* ---- marks ---- */

static void test_mark_round_trip_and_rejections(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rw_mark m = {.disk = 7, .offset = UINT64_C(0x0102030405060708)}, back = {0};
        const uint8_t expected[] = {0, 7, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8};
        uint8_t raw[NST_RW_MARK_SIZE + 1];

        nst_rw_mark_encode(raw, &m);
        assert_memory_equal(raw, expected, sizeof(expected));
        assert_int_equal(nst_rw_mark_decode(raw, NST_RW_MARK_SIZE, &back, &err), 0);
        assert_int_equal(back.disk, 7);
        assert_int_equal(back.offset, m.offset);

        expect_protocol_error(nst_rw_mark_decode(raw, NST_RW_MARK_SIZE - 1, &back, &err), &err,
                              "mark: 11 bytes", "expected 12");
        expect_protocol_error(nst_rw_mark_decode(raw, NST_RW_MARK_SIZE + 1, &back, &err), &err,
                              "13 bytes", NULL);
        raw[3] = 2;
        expect_protocol_error(nst_rw_mark_decode(raw, NST_RW_MARK_SIZE, &back, &err), &err,
                              "mark: reserved", "0x0002");
}

/* ---- hashes ---- */

static void test_hashes_round_trip(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rw_hashes h = {.disk = 3, .block_size = 65536,
                                  .first_block = UINT64_C(0x0a0b0c0d0e0f1011), .count = 2},
                             back = {0};
        uint8_t raw[NST_RW_HASHES_HEADER_SIZE + 2 * NST_RW_HASH_SIZE];
        const uint8_t expected[] = {0,    3,    0,    0,    0,    1,    0, 0, 0x0a, 0x0b,
                                    0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0, 0, 0,    2};

        memset(raw, 0xaa, sizeof(raw));
        nst_rw_hashes_encode(raw, &h);
        assert_memory_equal(raw, expected, sizeof(expected));
        assert_int_equal(nst_rw_hashes_decode(raw, sizeof(raw), &back, &err), 0);
        assert_int_equal(back.disk, 3);
        assert_int_equal(back.block_size, 65536);
        assert_true(back.first_block == h.first_block);
        assert_int_equal(back.count, 2);

        h.count = 0;
        nst_rw_hashes_encode(raw, &h);
        assert_int_equal(nst_rw_hashes_decode(raw, NST_RW_HASHES_HEADER_SIZE, &back, &err), 0);
        assert_int_equal(back.count, 0);
}

static void test_hashes_rejections(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rw_hashes h = {.disk = 1, .block_size = 4096, .first_block = 0, .count = 2},
                             back;
        uint8_t raw[NST_RW_HASHES_HEADER_SIZE + 2 * NST_RW_HASH_SIZE] = {0};

        nst_rw_hashes_encode(raw, &h);
        expect_protocol_error(nst_rw_hashes_decode(raw, 19, &back, &err), &err, "19 bytes",
                              "need 20");
        expect_protocol_error(nst_rw_hashes_decode(raw, sizeof(raw) - 1, &back, &err), &err,
                              "83 bytes for count 2", "expected 84");
        expect_protocol_error(nst_rw_hashes_decode(raw, NST_RW_HASHES_HEADER_SIZE, &back, &err),
                              &err, "20 bytes for count 2", NULL);

        h.count = NST_RW_MAX_HASHES + 1;
        nst_rw_hashes_encode(raw, &h);
        expect_protocol_error(nst_rw_hashes_decode(raw, sizeof(raw), &back, &err), &err,
                              "count 65537", "exceeds 65536");
        h.count = UINT32_MAX;
        nst_rw_hashes_encode(raw, &h);
        expect_protocol_error(nst_rw_hashes_decode(raw, sizeof(raw), &back, &err), &err,
                              "count 4294967295", NULL);

        h.count = 2;
        h.block_size = 0;
        nst_rw_hashes_encode(raw, &h);
        expect_protocol_error(nst_rw_hashes_decode(raw, sizeof(raw), &back, &err), &err,
                              "block_size is 0", NULL);

        h.block_size = 4096;
        h.first_block = UINT64_MAX;
        nst_rw_hashes_encode(raw, &h);
        expect_protocol_error(nst_rw_hashes_decode(raw, sizeof(raw), &back, &err), &err,
                              "first_block 18446744073709551615", "overflows");

        h.first_block = 0;
        nst_rw_hashes_encode(raw, &h);
        raw[2] = 1;
        expect_protocol_error(nst_rw_hashes_decode(raw, sizeof(raw), &back, &err), &err,
                              "reserved", "0x0100");
}

/* ---- digest and compression ---- */

static void test_digest_known_values(void **state) {
        /* XXH3-64 with seed 0: the empty input is xxHash's published value. */
        assert_true(nst_rw_digest("", 0) == UINT64_C(0x2D06800538D394C2));
        assert_true(nst_rw_digest("nestor replication", 18) == UINT64_C(0x9ACCEB61B7082FC7));
        assert_true(nst_rw_digest("nestor replicatioN", 18) !=
                    nst_rw_digest("nestor replication", 18));
}

static uint8_t *patterned(size_t n) {
        uint8_t *p = malloc(n);
        assert_non_null(p);
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t)((i / 4096) * 7 + (i % 13 == 0));
        return p;
}

/* Bytes hashed as they arrive, in pieces of any size, give the one-shot
 * digest the source sent. */
static void test_digest_in_pieces(void **state) {
        size_t n = 1 << 20;
        uint8_t *p = patterned(n);
        struct nst_rw_digester *d = nst_rw_digester_new();
        assert_non_null(d);
        const size_t pieces[] = {1, 7, 64, 240, 4096, 65536, 256 * 1024, n};
        for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
                nst_rw_digester_reset(d);
                for (size_t off = 0; off < n; off += pieces[i])
                        nst_rw_digester_update(d, p + off,
                                               n - off < pieces[i] ? n - off : pieces[i]);
                assert_true(nst_rw_digester_value(d) == nst_rw_digest(p, n));
        }
        nst_rw_digester_reset(d);
        assert_true(nst_rw_digester_value(d) == nst_rw_digest("", 0));
        nst_rw_digester_free(d);
        nst_rw_digester_free(NULL);
        free(p);
}

static uint8_t *random_bytes(size_t n, uint32_t seed) {
        uint8_t *p = malloc(n);
        assert_non_null(p);
        for (size_t i = 0; i < n; i++) {
                seed = seed * 1664525u + 1013904223u;
                p[i] = (uint8_t)(seed >> 24);
        }
        return p;
}

static void test_compress_round_trip(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        const size_t n = 1024 * 1024;
        uint8_t *in = patterned(n), *out = malloc(n), *z;
        size_t cap = nst_rw_compress_bound(n), zlen = 0;

        assert_true(cap >= n);
        z = malloc(cap);
        assert_non_null(out);
        assert_non_null(z);
        assert_int_equal(nst_rw_compress(in, n, z, cap, &zlen, &err), 0);
        assert_true(zlen > 0 && zlen < n / 4);
        memset(out, 0x5a, n);
        assert_int_equal(nst_rw_decompress(z, zlen, out, n, &err), 0);
        assert_memory_equal(in, out, n);
        assert_true(nst_rw_digest(in, n) == nst_rw_digest(out, n));
        free(in);
        free(out);
        free(z);
}

static void test_compress_incompressible(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        const size_t n = 256 * 1024;
        uint8_t *in = random_bytes(n, 42);
        size_t cap = nst_rw_compress_bound(n), zlen = 12345;
        uint8_t *z = malloc(cap);

        assert_non_null(z);
        assert_int_equal(nst_rw_compress(in, n, z, cap, &zlen, &err), -ENOSPC);
        assert_int_equal(zlen, 12345);
        /* Empty input can never shrink either. */
        assert_int_equal(nst_rw_compress(in, 0, z, cap, &zlen, &err), -ENOSPC);
        free(in);
        free(z);
}

static void test_decompress_rejections(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        const size_t n = 64 * 1024;
        uint8_t *in = patterned(n), *out = malloc(n + 64), *z = malloc(nst_rw_compress_bound(n));
        uint8_t *twice;
        size_t zlen = 0;

        assert_non_null(out);
        assert_non_null(z);
        assert_int_equal(nst_rw_compress(in, n, z, nst_rw_compress_bound(n), &zlen, &err), 0);

        /* Wrong expected length either way; nothing may be written past out. */
        memset(out, 0xee, n + 64);
        expect_protocol_error(nst_rw_decompress(z, zlen, out, n - 1, &err), &err, "65536",
                              "extent is 65535");
        expect_protocol_error(nst_rw_decompress(z, zlen, out, n + 1, &err), &err, "65536",
                              "extent is 65537");
        for (size_t i = n - 1; i < n + 64; i++)
                assert_int_equal(out[i], 0xee);

        /* Garbage, a truncated frame, trailing bytes, two frames. */
        expect_protocol_error(nst_rw_decompress("garbage!", 8, out, n, &err), &err,
                              "not a zstd frame", NULL);
        expect_protocol_error(nst_rw_decompress(z, 3, out, n, &err), &err, "3 bytes", NULL);
        assert_true(nst_rw_decompress(z, zlen - 1, out, n, &err) == -EPROTO);
        assert_string_equal(err.cls, "ProtocolError");
        twice = malloc(2 * zlen);
        assert_non_null(twice);
        memcpy(twice, z, zlen);
        memcpy(twice + zlen, z, zlen);
        expect_protocol_error(nst_rw_decompress(twice, zlen + 1, out, n, &err), &err,
                              "exactly one zstd frame", NULL);
        expect_protocol_error(nst_rw_decompress(twice, 2 * zlen, out, n, &err), &err,
                              "exactly one zstd frame", NULL);
        /* A corrupted block inside a well-formed frame header. */
        z[zlen / 2] ^= 0xff;
        z[zlen / 2 + 1] ^= 0x55;
        memset(out, 0xee, n + 64);
        if (nst_rw_decompress(z, zlen, out, n, &err) == 0)
                assert_memory_not_equal(out, in, n); /* zstd may not notice: digest would */
        else
                assert_string_equal(err.cls, "ProtocolError");
        for (size_t i = n; i < n + 64; i++)
                assert_int_equal(out[i], 0xee);
        free(twice);
        free(in);
        free(out);
        free(z);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_header_round_trip_every_type),
                cmocka_unit_test(test_header_byte_layout),
                cmocka_unit_test(test_header_rejections),
                cmocka_unit_test(test_header_length_per_type),
                cmocka_unit_test(test_extent_round_trip),
                cmocka_unit_test(test_extent_decode_rejections),
                cmocka_unit_test(test_extent_check),
                cmocka_unit_test(test_mark_round_trip_and_rejections),
                cmocka_unit_test(test_hashes_round_trip),
                cmocka_unit_test(test_hashes_rejections),
                cmocka_unit_test(test_digest_known_values),
                cmocka_unit_test(test_digest_in_pieces),
                cmocka_unit_test(test_compress_round_trip),
                cmocka_unit_test(test_compress_incompressible),
                cmocka_unit_test(test_decompress_rejections),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
