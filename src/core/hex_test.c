/* Strict hex encoding and decoding (src/core/hex.c). */
#include "core/hex.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const struct {
    const char *name;
    const char *in;
    ot_err want;
    const uint8_t *bytes;
    size_t n;
} decode_cases[] = {
    {"empty", "", OT_OK, (const uint8_t *)"", 0},
    {"upper", "A0FF", OT_OK, (const uint8_t *)"\xA0\xFF", 2},
    {"lower", "a0ff", OT_OK, (const uint8_t *)"\xA0\xFF", 2},
    {"mixed case", "aBcD09", OT_OK, (const uint8_t *)"\xAB\xCD\x09", 3},
    {"all digits", "0123456789", OT_OK, (const uint8_t *)"\x01\x23\x45\x67\x89", 5},
    {"odd length", "ABC", OT_E_HEX, NULL, 0},
    {"one char", "A", OT_E_HEX, NULL, 0},
    {"bad char G", "0G", OT_E_HEX, NULL, 0},
    {"bad char at the end", "1234567g", OT_E_HEX, NULL, 0},
    {"space", "12 34", OT_E_HEX, NULL, 0},
    {"0x prefix", "0x12", OT_E_HEX, NULL, 0},
    {"colon separator", "12:3", OT_E_HEX, NULL, 0},
    {"char before 0", "/0", OT_E_HEX, NULL, 0},
    {"char after 9", "9:", OT_E_HEX, NULL, 0},
    {"char before A", "@0", OT_E_HEX, NULL, 0},
    {"char after f", "0g", OT_E_HEX, NULL, 0},
    {"high byte", "\xC3\xA9", OT_E_HEX, NULL, 0},
};

static void test_decode(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(decode_cases); i++) {
        uint8_t out[16];
        size_t len = sizeof out;
        print_message("%s\n", decode_cases[i].name);
        memset(out, 0xEE, sizeof out);
        ot_err err = hex_decode(decode_cases[i].in, strlen(decode_cases[i].in), out, &len);
        assert_int_equal(err, decode_cases[i].want);
        if (err == OT_OK) {
            assert_int_equal(len, decode_cases[i].n);
            assert_memory_equal(out, decode_cases[i].bytes, len);
        } else {
            /* Nothing is written on a malformed string. */
            assert_int_equal(out[0], 0xEE);
            assert_int_equal(out[1], 0xEE);
        }
    }
}

static void test_decode_small(void **state)
{
    (void)state;
    uint8_t out[4];
    size_t len = 1;
    memset(out, 0xEE, sizeof out);
    assert_int_equal(hex_decode("A0B1C2", 6, out, &len), OT_E_BUF_SMALL);
    assert_int_equal(len, 3);
    assert_int_equal(out[0], 0xEE);
    len = 0;
    assert_int_equal(hex_decode("A0", 2, NULL, &len), OT_E_BUF_SMALL);
    assert_int_equal(len, 1);
    len = 3;
    assert_int_equal(hex_decode("A0B1C2", 6, out, &len), OT_OK);
    assert_int_equal(len, 3);
    /* Exact slen: the characters after it are not read. */
    len = sizeof out;
    assert_int_equal(hex_decode("A0zz", 2, out, &len), OT_OK);
    assert_int_equal(len, 1);
    assert_int_equal(hex_decode("A0", 2, out, NULL), OT_E_ARG);
    assert_int_equal(hex_decode(NULL, 2, out, &len), OT_E_ARG);
}

static void test_encode(void **state)
{
    (void)state;
    static const struct {
        const uint8_t *in;
        size_t n;
        const char *want;
    } rows[] = {
        {(const uint8_t *)"", 0, ""},
        {(const uint8_t *)"\x00", 1, "00"},
        {(const uint8_t *)"\xAB\xCD\xEF\x01", 4, "ABCDEF01"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        char out[16];
        size_t need = 2 * rows[i].n + 1;
        assert_int_equal(hex_encode(rows[i].in, rows[i].n, out, sizeof out), OT_OK);
        assert_string_equal(out, rows[i].want);
        assert_int_equal(hex_encode(rows[i].in, rows[i].n, out, need), OT_OK);
        assert_string_equal(out, rows[i].want);
        /* No room for the NUL. */
        assert_int_equal(hex_encode(rows[i].in, rows[i].n, out, need - 1), OT_E_BUF_SMALL);
    }
    char out[4];
    assert_int_equal(hex_encode(NULL, 1, out, sizeof out), OT_E_ARG);
    assert_int_equal(hex_encode((const uint8_t *)"\x01", 1, NULL, 3), OT_E_ARG);
}

/* Decoding what was encoded gives the bytes back, for every byte value. */
static void test_round_trip(void **state)
{
    (void)state;
    uint8_t in[256];
    uint8_t back[256];
    char hex[513];
    size_t len = sizeof back;
    for (size_t i = 0; i < sizeof in; i++) {
        in[i] = (uint8_t)i;
    }
    assert_int_equal(hex_encode(in, sizeof in, hex, sizeof hex), OT_OK);
    assert_int_equal(hex_decode(hex, strlen(hex), back, &len), OT_OK);
    assert_int_equal(len, sizeof in);
    assert_memory_equal(in, back, sizeof in);
}

static void test_decode_buf(void **state)
{
    (void)state;
    struct ot_buf b;
    ot_buf_init(&b, 4);
    assert_int_equal(hex_decode_buf("0102", &b), OT_OK);
    assert_int_equal(hex_decode_buf("0304", &b), OT_OK);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "\x01\x02\x03\x04", 4);
    /* Past the buffer's cap, odd length, bad character: b is unchanged. */
    assert_int_equal(hex_decode_buf("05", &b), OT_E_LIMIT);
    assert_int_equal(hex_decode_buf("050", &b), OT_E_HEX);
    ot_buf_reset(&b);
    assert_int_equal(hex_decode_buf("0Z", &b), OT_E_HEX);
    assert_int_equal(b.len, 0);
    assert_int_equal(hex_decode_buf(NULL, &b), OT_E_ARG);
    ot_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode),     cmocka_unit_test(test_decode_small),
        cmocka_unit_test(test_encode),     cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_decode_buf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
