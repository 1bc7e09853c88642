/* BER-TLV parser and builder (src/core/tlv.c). */
#include "core/tlv.h"

#include "core/hex.h"
#include "core/testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- parsing one object -------------------------------------------------- */

static const struct {
    const char *name;
    const char *hex;
    ot_err want; /* tlv_parse_one */
    uint32_t tag;
    size_t len;
    size_t hdr_len;
    bool constructed;
} parse_cases[] = {
    {"empty input", "", OT_E_TRUNCATED, 0, 0, 0, false},
    {"first tag byte only of a 2-byte tag", "9F", OT_E_TLV, 0, 0, 0, false},
    {"tag only", "9F70", OT_E_TLV, 0, 0, 0, false},
    {"1-byte tag only", "5A", OT_E_TLV, 0, 0, 0, false},
    {"length past the end", "9F700207", OT_E_TLV, 0, 0, 0, false},
    {"length-of-length 4", "5A8400000001FF", OT_E_TLV, 0, 0, 0, false},
    {"length-of-length 127", "5AFF", OT_E_TLV, 0, 0, 0, false},
    {"indefinite length 80", "5A80", OT_E_TLV, 0, 0, 0, false},
    {"indefinite length 80 with content", "E3805A010100", OT_E_TLV, 0, 0, 0, false},
    {"81 without its byte", "5A81", OT_E_TLV, 0, 0, 0, false},
    {"82 with one of two bytes", "5A8201", OT_E_TLV, 0, 0, 0, false},
    {"83 FFFFFF header with a short input", "5A83FFFFFF0102", OT_E_TLV, 0, 0, 0, false},
    {"4-byte tag", "9F81818101FF", OT_E_TLV, 0, 0, 0, false},
    {"3-byte tag cut after 2 bytes", "9F81", OT_E_TLV, 0, 0, 0, false},
    {"zero length", "5A00", OT_OK, 0x5A, 0, 2, false},
    {"1-byte tag", "5A0112", OT_OK, 0x5A, 1, 2, false},
    {"2-byte tag 9F70", "9F700107", OT_OK, 0x9F70, 1, 3, false},
    {"2-byte tag 5F2D", "5F2D02656E", OT_OK, 0x5F2D, 2, 3, false},
    {"2-byte constructed tag BF0C", "BF0C00", OT_OK, 0xBF0C, 0, 3, true},
    {"3-byte tag", "9F810100", OT_OK, 0x9F8101, 0, 4, false},
    {"3-byte constructed tag", "BF810103010203", OT_OK, 0xBF8101, 3, 4, true},
    {"81 long form", "5A810101", OT_OK, 0x5A, 1, 3, false},
    {"82 long form", "5A82000101", OT_OK, 0x5A, 1, 4, false},
    {"83 long form", "5A8300000101", OT_OK, 0x5A, 1, 5, false},
    {"constructed 1-byte tag", "E3024F00", OT_OK, 0xE3, 2, 2, true},
    {"trailing byte", "5A0112FF", OT_E_TRAILING, 0, 0, 0, false},
    {"trailing object", "5A01125A0113", OT_E_TRAILING, 0, 0, 0, false},
};

static void test_parse_one(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(parse_cases); i++) {
        uint8_t buf[64];
        struct tlv t;
        size_t n = testutil_unhex(parse_cases[i].hex, buf, sizeof buf);
        print_message("%s\n", parse_cases[i].name);
        ot_err err = tlv_parse_one(n ? buf : NULL, n, &t);
        assert_int_equal(err, parse_cases[i].want);
        if (err != OT_OK) {
            continue;
        }
        assert_int_equal(t.tag, parse_cases[i].tag);
        assert_int_equal(t.len, parse_cases[i].len);
        assert_int_equal(t.hdr_len, parse_cases[i].hdr_len);
        assert_int_equal(t.constructed, parse_cases[i].constructed);
        assert_ptr_equal(t.val, buf + t.hdr_len);
        assert_int_equal(t.hdr_len + t.len, n);
    }
}

/* tlv_next leaves the cursor where it was when it fails, and moves it past
 * the object when it succeeds. */
static void test_next_cursor(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(parse_cases); i++) {
        uint8_t buf[64];
        struct buf_rd r;
        struct tlv t;
        size_t n = testutil_unhex(parse_cases[i].hex, buf, sizeof buf);
        buf_rd_init(&r, buf, n);
        ot_err err = tlv_next(&r, &t);
        if (parse_cases[i].want == OT_E_TRAILING) {
            assert_int_equal(err, OT_OK);
            assert_ptr_equal(r.p, buf + t.hdr_len + t.len);
            assert_int_equal(r.left, n - t.hdr_len - t.len);
        } else if (parse_cases[i].want == OT_OK) {
            assert_int_equal(err, OT_OK);
            assert_int_equal(r.left, 0);
        } else {
            assert_int_equal(err, parse_cases[i].want);
            assert_ptr_equal(r.p, buf);
            assert_int_equal(r.left, n);
        }
    }
}

/* Largest values: a 0x10000-byte value (83 01 00 00) and 0xFFFF (82 FF FF). */
static void test_parse_large(void **state)
{
    (void)state;
    static const struct {
        size_t len;
        size_t hdr_len;
    } rows[] = {{0x7F, 2}, {0x80, 3}, {0xFF, 3}, {0x100, 4}, {0xFFFF, 4}, {0x10000, 5}};
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        size_t total = rows[i].hdr_len + rows[i].len;
        uint8_t *buf = malloc(total);
        uint8_t *val = calloc(1, rows[i].len);
        struct buf_wr w;
        struct tlv t;
        size_t out_len = 0;
        assert_non_null(buf);
        assert_non_null(val);
        buf_wr_init(&w, buf, total);
        tlv_put(&w, 0x5A, val, rows[i].len);
        assert_int_equal(buf_wr_finish(&w, &out_len), OT_OK);
        assert_int_equal(out_len, total);
        free(val);
        assert_int_equal(tlv_parse_one(buf, total, &t), OT_OK);
        assert_int_equal(t.len, rows[i].len);
        assert_int_equal(t.hdr_len, rows[i].hdr_len);
        assert_int_equal(tlv_walk_all(buf, total), OT_OK);
        /* One byte short: the length runs past the end. */
        assert_int_equal(tlv_parse_one(buf, total - 1, &t), OT_E_TLV);
        free(buf);
    }
}

/* ---- walking ----------------------------------------------------------- */

/* E3 { 4F AID, 9F70 life cycle, C5 privileges } as in a GET STATUS response. */
#define E3_HEX "E3104F05A0000001519F700107C5039E0000"

static const struct {
    const char *name;
    const char *hex;
    ot_err want;
} walk_cases[] = {
    {"empty", "", OT_OK},
    {"one primitive", "5A0112", OT_OK},
    {"nested E3", E3_HEX, OT_OK},
    {"two E3 siblings", E3_HEX E3_HEX, OT_OK},
    {"empty constructed", "E300", OT_OK},
    {"constructed with bad content", "E3025A05", OT_E_TLV},
    {"constructed with a trailing partial TLV", "E3035A0001", OT_E_TLV},
    {"primitive holding bad TLV bytes", "5A025A05", OT_OK},
    {"good then truncated", "5A01125A", OT_E_TLV},
    {"indefinite inside", "E3045A800000", OT_E_TLV},
    {"4-byte tag inside", "E3059F81818100", OT_E_TLV},
};

static void test_walk(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(walk_cases); i++) {
        uint8_t buf[128];
        size_t n = testutil_unhex(walk_cases[i].hex, buf, sizeof buf);
        print_message("%s\n", walk_cases[i].name);
        assert_int_equal(tlv_walk_all(n ? buf : NULL, n), walk_cases[i].want);
    }
}

/* E3 nested `levels` deep around 5A00: TLV_MAX_DEPTH levels are fine, one
 * more is rejected. */
static size_t build_nested(uint8_t *buf, size_t cap, unsigned levels)
{
    struct buf_wr w;
    size_t marks[TLV_MAX_DEPTH + 2];
    size_t len = 0;
    assert_true(levels <= ARRAY_SIZE(marks));
    buf_wr_init(&w, buf, cap);
    for (unsigned i = 0; i < levels; i++) {
        tlv_open(&w, 0xE3, &marks[i]);
    }
    tlv_put(&w, 0x5A, NULL, 0);
    for (unsigned i = levels; i > 0; i--) {
        tlv_close(&w, marks[i - 1]);
    }
    assert_int_equal(buf_wr_finish(&w, &len), OT_OK);
    return len;
}

static void test_walk_depth(void **state)
{
    (void)state;
    uint8_t buf[256];
    /* levels constructed objects plus the primitive inside = levels + 1 levels. */
    size_t n = build_nested(buf, sizeof buf, TLV_MAX_DEPTH - 1);
    assert_int_equal(tlv_walk_all(buf, n), OT_OK);
    n = build_nested(buf, sizeof buf, TLV_MAX_DEPTH);
    assert_int_equal(tlv_walk_all(buf, n), OT_E_TLV);
    n = build_nested(buf, sizeof buf, TLV_MAX_DEPTH + 1);
    assert_int_equal(tlv_walk_all(buf, n), OT_E_TLV);
}

static void test_walk_children(void **state)
{
    (void)state;
    static const uint32_t want[] = {0x4F, 0x9F70, 0xC5};
    uint8_t buf[64];
    struct tlv outer;
    struct tlv t;
    struct buf_rd r;
    size_t n = testutil_unhex(E3_HEX, buf, sizeof buf);
    size_t k = 0;
    assert_int_equal(tlv_parse_one(buf, n, &outer), OT_OK);
    assert_true(outer.constructed);
    buf_rd_init(&r, outer.val, outer.len);
    while (r.left > 0) {
        assert_int_equal(tlv_next(&r, &t), OT_OK);
        assert_true(k < ARRAY_SIZE(want));
        assert_int_equal(t.tag, want[k]);
        assert_false(t.constructed);
        k++;
    }
    assert_int_equal(k, ARRAY_SIZE(want));
}

/* ---- finding ----------------------------------------------------------- */

static const struct {
    const char *name;
    const char *hex;
    uint32_t tag;
    ot_err want;
    const char *val_hex;
} find_cases[] = {
    {"first", "4F05A0000001519F700107C5039E0000", 0x4F, OT_OK, "A000000151"},
    {"middle", "4F05A0000001519F700107C5039E0000", 0x9F70, OT_OK, "07"},
    {"last", "4F05A0000001519F700107C5039E0000", 0xC5, OT_OK, "9E0000"},
    {"absent", "4F05A0000001519F700107C5039E0000", 0x84, OT_E_NOT_FOUND, NULL},
    {"no descent", E3_HEX, 0x9F70, OT_E_NOT_FOUND, NULL},
    {"empty", "", 0x5A, OT_E_NOT_FOUND, NULL},
    {"malformed before the match", "5A07009F700107", 0x9F70, OT_E_TLV, NULL},
    {"malformed after the match", "9F7001075A05", 0x9F70, OT_OK, "07"},
    {"first of two", "5A01015A0102", 0x5A, OT_OK, "01"},
};

static void test_find(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(find_cases); i++) {
        uint8_t buf[64];
        uint8_t val[32];
        struct tlv t;
        size_t n = testutil_unhex(find_cases[i].hex, buf, sizeof buf);
        print_message("%s\n", find_cases[i].name);
        assert_int_equal(tlv_find(n ? buf : NULL, n, find_cases[i].tag, &t), find_cases[i].want);
        if (find_cases[i].want == OT_OK) {
            size_t vn = testutil_unhex(find_cases[i].val_hex, val, sizeof val);
            assert_int_equal(t.tag, find_cases[i].tag);
            assert_int_equal(t.len, vn);
            assert_memory_equal(t.val, val, vn);
        }
    }
}

/* SELECT response: 6F { 84 AID, A5 { 9F65 FF } } */
#define FCI_HEX "6F108408A000000151000000A5049F6501FF"

static const struct {
    const char *name;
    uint32_t path[4];
    size_t depth;
    ot_err want;
    uint32_t tag;
    const char *val_hex;
} path_cases[] = {
    {"6F/A5/9F65", {0x6F, 0xA5, 0x9F65}, 3, OT_OK, 0x9F65, "FF"},
    {"6F/84", {0x6F, 0x84}, 2, OT_OK, 0x84, "A000000151000000"},
    {"6F alone", {0x6F}, 1, OT_OK, 0x6F, "8408A000000151000000A5049F6501FF"},
    {"6F/A5/9F6E absent", {0x6F, 0xA5, 0x9F6E}, 3, OT_E_NOT_FOUND, 0, NULL},
    {"6F/99 absent", {0x6F, 0x99}, 2, OT_E_NOT_FOUND, 0, NULL},
    {"70 absent at top", {0x70}, 1, OT_E_NOT_FOUND, 0, NULL},
    {"through a primitive", {0x6F, 0x84, 0xA0}, 3, OT_E_NOT_FOUND, 0, NULL},
    {"depth 0", {0x6F}, 0, OT_E_ARG, 0, NULL},
};

static void test_find_path(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t n = testutil_unhex(FCI_HEX, buf, sizeof buf);
    for (size_t i = 0; i < ARRAY_SIZE(path_cases); i++) {
        uint8_t val[32];
        struct tlv t;
        print_message("%s\n", path_cases[i].name);
        assert_int_equal(tlv_find_path(buf, n, path_cases[i].path, path_cases[i].depth, &t),
                         path_cases[i].want);
        if (path_cases[i].want == OT_OK) {
            size_t vn = testutil_unhex(path_cases[i].val_hex, val, sizeof val);
            assert_int_equal(t.tag, path_cases[i].tag);
            assert_int_equal(t.len, vn);
            assert_memory_equal(t.val, val, vn);
        }
    }
    /* Malformed content met on the way. */
    static const uint32_t path[] = {0xE3, 0x5A};
    uint8_t bad[8];
    struct tlv t;
    size_t bn = testutil_unhex("E3025A05", bad, sizeof bad);
    assert_int_equal(tlv_find_path(bad, bn, path, 2, &t), OT_E_TLV);
}

/* ---- sizes ------------------------------------------------------------- */

static void test_sizes(void **state)
{
    (void)state;
    static const struct {
        uint32_t tag;
        size_t size;
    } tags[] = {
        {0x00, 1},        {0x5A, 1},        {0xE3, 1},     {0x1F, 0},     {0x9F, 0},
        {0x9F70, 2},      {0xBF0C, 2},      {0x5F2D, 2},   {0x9F81, 0},   {0x5A70, 0},
        {0x9F8101, 3},    {0xBF8101, 3},    {0x9F7001, 0}, {0x9F8181, 0}, {0x5A8101, 0},
        {0x01000000u, 0}, {0xFFFFFFFFu, 0},
    };
    static const struct {
        size_t len;
        size_t size;
    } lens[] = {
        {0, 1},      {0x7F, 1},    {0x80, 2},     {0xFF, 2},      {0x100, 3},
        {0xFFFF, 3}, {0x10000, 4}, {0xFFFFFF, 4}, {0x1000000, 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(tags); i++) {
        assert_int_equal(tlv_tag_size(tags[i].tag), tags[i].size);
    }
    for (size_t i = 0; i < ARRAY_SIZE(lens); i++) {
        assert_int_equal(tlv_len_size(lens[i].len), lens[i].size);
    }
    assert_int_equal(tlv_hdr_size(0x9F70, 0x80), 4);
    assert_int_equal(tlv_hdr_size(0x1F, 1), 0);
    assert_int_equal(tlv_hdr_size(0x5A, 0x1000000), 0);
}

/* ---- building ---------------------------------------------------------- */

static const struct {
    const char *name;
    uint32_t tag;
    const char *val_hex;
    const char *want_hex;
} put_cases[] = {
    {"1-byte tag, empty value", 0x5A, "", "5A00"},
    {"1-byte tag", 0x4F, "A000000151", "4F05A000000151"},
    {"9F70", 0x9F70, "07", "9F700107"},
    {"BF0C", 0xBF0C, "5A0112", "BF0C035A0112"},
    {"5F2D", 0x5F2D, "656E", "5F2D02656E"},
    {"3-byte tag", 0xBF8101, "01", "BF81010101"},
};

static void test_put(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(put_cases); i++) {
        uint8_t val[32];
        uint8_t want[40];
        uint8_t out[40];
        struct buf_wr w;
        struct tlv t;
        size_t len = 0;
        size_t vn = testutil_unhex(put_cases[i].val_hex, val, sizeof val);
        size_t wn = testutil_unhex(put_cases[i].want_hex, want, sizeof want);
        print_message("%s\n", put_cases[i].name);
        buf_wr_init(&w, out, sizeof out);
        tlv_put(&w, put_cases[i].tag, val, vn);
        assert_int_equal(buf_wr_finish(&w, &len), OT_OK);
        assert_int_equal(len, wn);
        assert_memory_equal(out, want, wn);
        assert_int_equal(tlv_parse_one(out, len, &t), OT_OK);
        assert_int_equal(t.tag, put_cases[i].tag);
        assert_int_equal(t.len, vn);
        assert_int_equal(t.hdr_len, tlv_hdr_size(put_cases[i].tag, vn));
    }
}

/* Writes into a generously sized buffer: the value lengths around the
 * boundaries of the length forms round-trip and stay minimal. */
static void test_put_len_boundaries(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0xFFFFFF};
    uint8_t hdr[TLV_MAX_HDR];
    for (size_t i = 0; i < ARRAY_SIZE(lens); i++) {
        struct buf_wr w;
        struct buf_rd r;
        size_t len = 0;
        size_t got = 0;
        uint32_t tag = 0;
        buf_wr_init(&w, hdr, sizeof hdr);
        tlv_put_tag(&w, 0x9F70);
        tlv_put_len(&w, lens[i]);
        assert_int_equal(buf_wr_finish(&w, &len), OT_OK);
        assert_int_equal(len, tlv_hdr_size(0x9F70, lens[i]));
        /* Decode the header by hand so the parser's length check (value must
         * be present) does not hide the encoded length. */
        buf_rd_init(&r, hdr + 2, len - 2);
        uint8_t b0 = 0;
        assert_int_equal(buf_rd_u8(&r, &b0), OT_OK);
        if (b0 < 0x80) {
            got = b0;
            assert_int_equal(r.left, 0);
        } else {
            assert_int_equal(b0 & 0x7F, r.left);
            while (r.left > 0) {
                uint8_t b = 0;
                assert_int_equal(buf_rd_u8(&r, &b), OT_OK);
                got = (got << 8) | b;
            }
            /* Minimal: the first length byte is never zero, and 81 xx is
             * never used below 0x80. */
            assert_true(hdr[3] != 0);
            assert_true(got >= 0x80);
        }
        assert_int_equal(got, lens[i]);
        tag = (uint32_t)(hdr[0] << 8 | hdr[1]);
        assert_int_equal(tag, 0x9F70);
    }
}

static void test_put_errors(void **state)
{
    (void)state;
    uint8_t out[16];
    uint8_t big[8];
    struct buf_wr w;
    size_t len = 0;

    buf_wr_init(&w, out, sizeof out);
    tlv_put_tag(&w, 0x1F); /* announces more tag bytes but has none */
    assert_int_equal(buf_wr_finish(&w, &len), OT_E_ARG);

    buf_wr_init(&w, out, sizeof out);
    tlv_put_len(&w, TLV_MAX_LEN + 1);
    assert_int_equal(buf_wr_finish(&w, &len), OT_E_RANGE);

    buf_wr_init(&w, out, sizeof out);
    tlv_put(&w, 0x5A, NULL, 3);
    assert_int_equal(buf_wr_finish(&w, &len), OT_E_ARG);

    /* An argument error replaces a pending overflow and stays. */
    buf_wr_init(&w, out, 2);
    memset(big, 0, sizeof big);
    tlv_put(&w, 0x5A, big, sizeof big);
    assert_int_equal(w.err, OT_E_BUF_SMALL);
    tlv_put_tag(&w, 0x9F);
    assert_int_equal(w.err, OT_E_ARG);
    tlv_put(&w, 0x5A, big, 1);
    assert_int_equal(buf_wr_finish(&w, &len), OT_E_ARG);

    /* Mark that cannot come from tlv_open. */
    buf_wr_init(&w, out, sizeof out);
    tlv_put(&w, 0x5A, big, 1);
    tlv_close(&w, 1);
    assert_int_equal(buf_wr_finish(&w, &len), OT_E_ARG);
    buf_wr_init(&w, out, sizeof out);
    tlv_close(&w, 100);
    assert_int_equal(buf_wr_finish(&w, &len), OT_E_ARG);
}

/* Overflow of a flat tlv_put: OT_E_BUF_SMALL with the exact size needed. */
static void test_put_overflow(void **state)
{
    (void)state;
    static const struct {
        size_t cap;
        size_t vlen;
        size_t need;
    } rows[] = {{0, 4, 6},       {3, 4, 6},          {5, 4, 6},
                {2, 0x80, 0x83}, {0x82, 0x80, 0x83}, {0x102, 0x100, 0x104}};
    uint8_t out[0x200];
    uint8_t val[0x100];
    memset(val, 0x33, sizeof val);
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct buf_wr w;
        size_t len = 0;
        buf_wr_init(&w, out, rows[i].cap);
        tlv_put(&w, 0x5A, val, rows[i].vlen);
        assert_int_equal(buf_wr_finish(&w, &len), OT_E_BUF_SMALL);
        assert_int_equal(len, rows[i].need);
        buf_wr_init(&w, out, len);
        tlv_put(&w, 0x5A, val, rows[i].vlen);
        assert_int_equal(buf_wr_finish(&w, &len), OT_OK);
        assert_int_equal(len, rows[i].need);
    }
}

/* 70 { E3 { 5A val } } built with tlv_open/tlv_close must equal the same
 * object built inside out with tlv_put. */
static size_t build_open_close(uint8_t *out, size_t cap, const uint8_t *val, size_t vlen,
                               ot_err *err)
{
    struct buf_wr w;
    size_t m_outer = 0;
    size_t m_inner = 0;
    size_t len = 0;
    buf_wr_init(&w, out, cap);
    tlv_open(&w, 0x70, &m_outer);
    tlv_open(&w, 0xE3, &m_inner);
    tlv_put(&w, 0x5A, val, vlen);
    tlv_close(&w, m_inner);
    tlv_put(&w, 0x9F70, val, 1);
    tlv_close(&w, m_outer);
    *err = buf_wr_finish(&w, &len);
    return len;
}

static size_t build_inside_out(uint8_t *out, size_t cap, const uint8_t *val, size_t vlen)
{
    struct buf_wr w;
    size_t len = 0;
    size_t e3_content = tlv_hdr_size(0x5A, vlen) + vlen;
    size_t outer_content = tlv_hdr_size(0xE3, e3_content) + e3_content + 4;
    buf_wr_init(&w, out, cap);
    tlv_put_tag(&w, 0x70);
    tlv_put_len(&w, outer_content);
    tlv_put_tag(&w, 0xE3);
    tlv_put_len(&w, e3_content);
    tlv_put(&w, 0x5A, val, vlen);
    tlv_put(&w, 0x9F70, val, 1);
    assert_int_equal(buf_wr_finish(&w, &len), OT_OK);
    return len;
}

static void test_open_close(void **state)
{
    (void)state;
    /* Value lengths chosen so that the E3 content (vlen + 2..4) and the 70
     * content (E3 object + 4) land on and around 127/128 and 255/256, and one
     * pair around 65535/65536. */
    static const size_t vlens[] = {0,     1,     120,   121,   122,   123,   124,   125,   126,
                                   127,   128,   129,   247,   248,   249,   250,   251,   252,
                                   253,   254,   255,   256,   257,   65526, 65527, 65528, 65529,
                                   65530, 65531, 65532, 65533, 65534, 65535, 65536};
    size_t cap = 0x10020;
    uint8_t *val = malloc(0x10000);
    uint8_t *got = malloc(cap);
    uint8_t *want = malloc(cap);
    assert_non_null(val);
    assert_non_null(got);
    assert_non_null(want);
    for (size_t i = 0; i < 0x10000; i++) {
        val[i] = (uint8_t)(i * 7 + 1);
    }
    for (size_t i = 0; i < ARRAY_SIZE(vlens); i++) {
        ot_err err = OT_E_INTERNAL;
        size_t gn = build_open_close(got, cap, val, vlens[i], &err);
        size_t wn = build_inside_out(want, cap, val, vlens[i]);
        struct tlv t;
        static const uint32_t path[] = {0x70, 0xE3, 0x5A};
        assert_int_equal(err, OT_OK);
        assert_int_equal(gn, wn);
        assert_memory_equal(got, want, wn);
        assert_int_equal(tlv_walk_all(got, gn), OT_OK);
        assert_int_equal(tlv_find_path(got, gn, path, 3, &t), OT_OK);
        assert_int_equal(t.len, vlens[i]);
    }
    free(val);
    free(got);
    free(want);
}

/* A nested build into every capacity from 0 up: either it fits, or it reports
 * OT_E_BUF_SMALL with a size that is enough for the retry, which then gives
 * the same bytes as an unconstrained build. */
static void test_open_close_overflow(void **state)
{
    (void)state;
    static const size_t vlens[] = {0, 5, 124, 125, 126, 250, 251, 252, 253};
    uint8_t val[256];
    uint8_t ref[300];
    uint8_t out[300];
    memset(val, 0x5C, sizeof val);
    for (size_t i = 0; i < ARRAY_SIZE(vlens); i++) {
        ot_err err = OT_E_INTERNAL;
        size_t rn = build_open_close(ref, sizeof ref, val, vlens[i], &err);
        assert_int_equal(err, OT_OK);
        for (size_t cap = 0; cap <= rn + 8; cap++) {
            size_t n = build_open_close(out, cap, val, vlens[i], &err);
            if (err == OT_OK) {
                assert_int_equal(n, rn);
                assert_memory_equal(out, ref, rn);
                continue;
            }
            assert_int_equal(err, OT_E_BUF_SMALL);
            assert_true(cap < rn + 6); /* 2 open objects: at most 3 spare bytes each */
            assert_true(n > cap);
            assert_true(n >= rn);
            assert_true(n <= rn + 6);
            n = build_open_close(out, n, val, vlens[i], &err);
            assert_int_equal(err, OT_OK);
            assert_int_equal(n, rn);
            assert_memory_equal(out, ref, rn);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_one),
        cmocka_unit_test(test_next_cursor),
        cmocka_unit_test(test_parse_large),
        cmocka_unit_test(test_walk),
        cmocka_unit_test(test_walk_depth),
        cmocka_unit_test(test_walk_children),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_find_path),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_put),
        cmocka_unit_test(test_put_len_boundaries),
        cmocka_unit_test(test_put_errors),
        cmocka_unit_test(test_put_overflow),
        cmocka_unit_test(test_open_close),
        cmocka_unit_test(test_open_close_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
