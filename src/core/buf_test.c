/* Read cursor, writer, growable buffer and memory helpers (src/core/buf.c). */
#include "core/buf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const uint8_t src[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};

enum rd_op { RD_U8, RD_U16, RD_U24, RD_U32, RD_TAKE, RD_COPY, RD_SKIP };

/* Runs one read of width `want` bytes (for take/copy/skip) and returns the
 * value read big-endian (0 for skip). */
static ot_err rd_run(struct buf_rd *r, enum rd_op op, size_t want, uint32_t *val)
{
    uint8_t u8 = 0;
    uint16_t u16 = 0;
    const uint8_t *v = NULL;
    uint8_t copy[8] = {0};
    ot_err err = OT_E_INTERNAL;
    *val = 0;
    switch (op) {
    case RD_U8:
        err = buf_rd_u8(r, &u8);
        *val = u8;
        break;
    case RD_U16:
        err = buf_rd_u16be(r, &u16);
        *val = u16;
        break;
    case RD_U24:
        err = buf_rd_u24be(r, val);
        break;
    case RD_U32:
        err = buf_rd_u32be(r, val);
        break;
    case RD_TAKE:
        err = buf_rd_take(r, want, &v);
        if (err == OT_OK) {
            for (size_t i = 0; i < want; i++) {
                *val = (*val << 8) | v[i];
            }
        }
        break;
    case RD_COPY:
        err = buf_rd_copy(r, copy, want);
        for (size_t i = 0; i < want && err == OT_OK; i++) {
            *val = (*val << 8) | copy[i];
        }
        break;
    case RD_SKIP:
        err = buf_rd_skip(r, want);
        break;
    }
    return err;
}

static const struct {
    const char *name;
    enum rd_op op;
    size_t width; /* bytes consumed */
    size_t avail; /* bytes the cursor holds */
    ot_err want;
    uint32_t val;
} rd_cases[] = {
    {"u8", RD_U8, 1, 1, OT_OK, 0x01},
    {"u8 empty", RD_U8, 1, 0, OT_E_TRUNCATED, 0},
    {"u16", RD_U16, 2, 8, OT_OK, 0x0102},
    {"u16 one short", RD_U16, 2, 1, OT_E_TRUNCATED, 0},
    {"u24", RD_U24, 3, 3, OT_OK, 0x010203},
    {"u24 one short", RD_U24, 3, 2, OT_E_TRUNCATED, 0},
    {"u32", RD_U32, 4, 4, OT_OK, 0x01020304},
    {"u32 one short", RD_U32, 4, 3, OT_E_TRUNCATED, 0},
    {"u32 empty", RD_U32, 4, 0, OT_E_TRUNCATED, 0},
    {"take 3", RD_TAKE, 3, 8, OT_OK, 0x010203},
    {"take 0 of 0", RD_TAKE, 0, 0, OT_OK, 0},
    {"take all", RD_TAKE, 4, 4, OT_OK, 0x01020304},
    {"take one more than left", RD_TAKE, 5, 4, OT_E_TRUNCATED, 0},
    {"copy 2", RD_COPY, 2, 2, OT_OK, 0x0102},
    {"copy one short", RD_COPY, 3, 2, OT_E_TRUNCATED, 0},
    {"skip 8", RD_SKIP, 8, 8, OT_OK, 0},
    {"skip one more than left", RD_SKIP, 8, 7, OT_E_TRUNCATED, 0},
};

static void test_reader(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(rd_cases); i++) {
        struct buf_rd r;
        uint32_t val = 0xDEADBEEF;
        print_message("%s\n", rd_cases[i].name);
        buf_rd_init(&r, src, rd_cases[i].avail);
        ot_err err = rd_run(&r, rd_cases[i].op, rd_cases[i].width, &val);
        assert_int_equal(err, rd_cases[i].want);
        if (err == OT_OK) {
            assert_int_equal(val, rd_cases[i].val);
            assert_ptr_equal(r.p, src + rd_cases[i].width);
            assert_int_equal(r.left, rd_cases[i].avail - rd_cases[i].width);
        } else {
            /* Truncation leaves the cursor where it was. */
            assert_ptr_equal(r.p, src);
            assert_int_equal(r.left, rd_cases[i].avail);
        }
    }
}

static void test_reader_sequence(void **state)
{
    (void)state;
    struct buf_rd r;
    uint8_t b = 0;
    uint16_t h = 0;
    uint32_t w = 0;
    buf_rd_init(&r, src, sizeof src);
    assert_int_equal(buf_rd_u8(&r, &b), OT_OK);
    assert_int_equal(buf_rd_u16be(&r, &h), OT_OK);
    assert_int_equal(buf_rd_u32be(&r, &w), OT_OK);
    assert_int_equal(b, 0x01);
    assert_int_equal(h, 0x0203);
    assert_int_equal(w, 0x04050607);
    assert_int_equal(buf_rd_u16be(&r, &h), OT_E_TRUNCATED);
    assert_int_equal(r.left, 1);
    assert_int_equal(buf_rd_u8(&r, &b), OT_OK);
    assert_int_equal(b, 0x08);
    assert_int_equal(buf_rd_u8(&r, &b), OT_E_TRUNCATED);
    /* A NULL input is an empty cursor. */
    buf_rd_init(&r, NULL, 5);
    assert_int_equal(r.left, 0);
    assert_int_equal(buf_rd_u8(&r, &b), OT_E_TRUNCATED);
}

static void test_writer(void **state)
{
    (void)state;
    static const struct {
        size_t cap;
        ot_err want;
        size_t len; /* from buf_wr_finish */
        size_t written;
    } rows[] = {
        {16, OT_OK, 7, 7},
        {7, OT_OK, 7, 7},
        {6, OT_E_BUF_SMALL, 7, 6},
        {3, OT_E_BUF_SMALL, 7, 3},
        /* After u8 + u16 (3 bytes) the 4-byte write fails; the later u8 would
         * fit in cap 4 but is dropped: errors are sticky. */
        {4, OT_E_BUF_SMALL, 7, 3},
        {0, OT_E_BUF_SMALL, 7, 0},
    };
    static const uint8_t want[] = {0xAA, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF};
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        uint8_t out[16];
        struct buf_wr w;
        size_t len = 0;
        memset(out, 0, sizeof out);
        buf_wr_init(&w, out, rows[i].cap);
        buf_wr_u8(&w, 0xAA);
        buf_wr_u16be(&w, 0x1234);
        buf_wr_bytes(&w, "\xDE\xAD\xBE", 3);
        buf_wr_u8(&w, 0xEF);
        assert_int_equal(buf_wr_finish(&w, &len), rows[i].want);
        assert_int_equal(len, rows[i].len);
        assert_int_equal(w.len, rows[i].written);
        assert_memory_equal(out, want, rows[i].written);
        for (size_t k = rows[i].written; k < sizeof out; k++) {
            assert_int_equal(out[k], 0);
        }
    }
    /* NULL buffer: a size query. */
    struct buf_wr w;
    size_t len = 0;
    buf_wr_init(&w, NULL, 100);
    buf_wr_bytes(&w, "abc", 3);
    assert_int_equal(buf_wr_finish(&w, &len), OT_E_BUF_SMALL);
    assert_int_equal(len, 3);
    assert_int_equal(buf_wr_finish(&w, NULL), OT_E_BUF_SMALL);
}

static void test_ot_buf(void **state)
{
    (void)state;
    struct ot_buf b;
    ot_buf_init(&b, 0);
    assert_int_equal(b.max, OT_BUF_DEFAULT_MAX);
    ot_buf_free(&b);

    ot_buf_init(&b, 100);
    for (size_t i = 0; i < 100; i++) {
        assert_int_equal(ot_buf_append_u8(&b, (uint8_t)i), OT_OK);
    }
    assert_int_equal(b.len, 100);
    assert_true(b.cap <= 100);
    /* The cap: one more byte is OT_E_LIMIT and changes nothing. */
    assert_int_equal(ot_buf_append_u8(&b, 0xFF), OT_E_LIMIT);
    assert_int_equal(ot_buf_append(&b, "xy", 2), OT_E_LIMIT);
    assert_int_equal(ot_buf_reserve(&b, SIZE_MAX), OT_E_LIMIT);
    assert_int_equal(b.len, 100);
    for (size_t i = 0; i < 100; i++) {
        assert_int_equal(b.data[i], (uint8_t)i);
    }
    /* Reset keeps the allocation and wipes the bytes. */
    uint8_t *data = b.data;
    ot_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_ptr_equal(b.data, data);
    assert_int_equal(b.data[0], 0);
    assert_int_equal(ot_buf_append(&b, NULL, 0), OT_OK);
    assert_int_equal(ot_buf_append(&b, "abc", 3), OT_OK);
    assert_memory_equal(b.data, "abc", 3);
    ot_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    ot_buf_free(&b); /* twice: harmless */

    /* Growth across several reallocations keeps the content. */
    ot_buf_init(&b, 0);
    for (size_t i = 0; i < 5000; i++) {
        assert_int_equal(ot_buf_append_u8(&b, (uint8_t)(i * 3)), OT_OK);
    }
    for (size_t i = 0; i < 5000; i++) {
        assert_int_equal(b.data[i], (uint8_t)(i * 3));
    }
    ot_buf_free(&b);
}

static void test_mem(void **state)
{
    (void)state;
    uint8_t a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint8_t b[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    /* FNV-1a 32 reference values (draft-eastlake-fnv). */
    assert_int_equal(ot_str_hash32(""), 0x811c9dc5u);
    assert_int_equal(ot_str_hash32("a"), 0xe40c292cu);
    assert_int_equal(ot_str_hash32("foobar"), 0xbf9cf968u);
    assert_true(ot_mem_equal_ct(a, b, sizeof a));
    assert_true(ot_mem_equal_ct(a, b, 0));
    b[7] ^= 0x80;
    assert_false(ot_mem_equal_ct(a, b, sizeof a));
    assert_true(ot_mem_equal_ct(a, b, 7));
    ot_mem_wipe(a, 4);
    assert_memory_equal(a, "\0\0\0\0\x05\x06\x07\x08", 8);

    uint8_t p[4];
    ot_put_u16be(p, 0xBEEF);
    assert_memory_equal(p, "\xBE\xEF", 2);
    assert_int_equal(ot_get_u16be(p), 0xBEEF);
    ot_put_u32be(p, 0xDEADBEEF);
    assert_memory_equal(p, "\xDE\xAD\xBE\xEF", 4);
    assert_int_equal(ot_get_u32be(p), 0xDEADBEEFu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader), cmocka_unit_test(test_reader_sequence),
        cmocka_unit_test(test_writer), cmocka_unit_test(test_ot_buf),
        cmocka_unit_test(test_mem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
