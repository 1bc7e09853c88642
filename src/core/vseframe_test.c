/* The vse socket frame codec (src/core/vseframe.c), table-driven. */
#include "core/vseframe.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void test_sock_frame_parse_table(void **state)
{
    static const struct {
        const char *name;
        uint8_t in[12];
        size_t n;
        ot_err want;
        uint8_t type;
        size_t len, used;
    } rows[] = {
        {"empty", {0}, 0, OT_E_TRUNCATED, 0, 0, 0},
        {"3 length bytes", {0, 0, 0}, 3, OT_E_TRUNCATED, 0, 0, 0},
        {"length 0", {0, 0, 0, 0, 1}, 5, OT_E_PROTOCOL, 0, 0, 0},
        {"length 1, type missing", {0, 0, 0, 1}, 4, OT_E_TRUNCATED, 0, 0, 0},
        {"type only", {0, 0, 0, 1, 2}, 5, OT_OK, 2, 0, 5},
        {"payload cut", {0, 0, 0, 3, 1, 0xAA}, 6, OT_E_TRUNCATED, 0, 0, 0},
        {"payload + next frame", {0, 0, 0, 3, 1, 0xAA, 0xBB, 0, 0}, 9, OT_OK, 1, 2, 7},
        {"length max + 1", {0, 1, 0, 0x0A}, 4, OT_E_TOO_LONG, 0, 0, 0},
        {"length 4 GiB", {0xFF, 0xFF, 0xFF, 0xFF}, 4, OT_E_TOO_LONG, 0, 0, 0},
        {"length max, incomplete", {0, 1, 0, 9, 1}, 5, OT_E_TRUNCATED, 0, 0, 0},
    };
    struct vse_sock_frame f;
    size_t used;
    size_t i;

    (void)state;
    assert_int_equal(VSE_SOCK_FRAME_MAX, 0x10009u);
    for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        used = 0;
        ot_err err = vse_sock_frame_parse(rows[i].in, rows[i].n, &f, &used);
        if (err != rows[i].want) {
            fail_msg("row '%s': got %d want %d", rows[i].name, err, rows[i].want);
        }
        if (err == OT_OK) {
            assert_int_equal(f.type, rows[i].type);
            assert_int_equal(f.len, rows[i].len);
            assert_int_equal(used, rows[i].used);
            assert_ptr_equal(f.payload, rows[i].in + 5);
        }
    }
}

static void test_sock_frame_encode(void **state)
{
    uint8_t out[16];
    size_t len = sizeof out;
    static const uint8_t pl[] = {0x00, 0xA4, 0x04, 0x00};
    static const uint8_t want[] = {0, 0, 0, 5, 0x01, 0x00, 0xA4, 0x04, 0x00};
    struct vse_sock_frame f;
    size_t used;

    (void)state;
    assert_int_equal(vse_sock_frame_encode(VSE_SOCK_APDU, pl, sizeof pl, out, &len), OT_OK);
    assert_int_equal(len, sizeof want);
    assert_memory_equal(out, want, sizeof want);
    assert_int_equal(vse_sock_frame_parse(out, len, &f, &used), OT_OK);
    assert_int_equal(f.len, 4);
    len = 8;
    assert_int_equal(vse_sock_frame_encode(VSE_SOCK_APDU, pl, sizeof pl, out, &len),
                     OT_E_BUF_SMALL);
    assert_int_equal(len, 9);
    len = sizeof out;
    assert_int_equal(vse_sock_frame_encode(VSE_SOCK_APDU, pl, VSE_SOCK_FRAME_MAX, out, &len),
                     OT_E_TOO_LONG);
    assert_int_equal(vse_sock_frame_encode(VSE_SOCK_APDU, NULL, 1, out, &len), OT_E_ARG);
}

static void test_error_parse(void **state)
{
    static const uint8_t ok[] = {0x01, 0x93, 'n', 'o'};
    static uint8_t big[2u + VSE_SOCK_ERR_TEXT_MAX + 1u];
    struct vse_sock_frame f = {VSE_SOCK_ERROR, ok, sizeof ok};
    const char *text = NULL;
    size_t tl = 0;
    ot_err code = OT_OK;

    (void)state;
    assert_int_equal(vse_sock_error_parse(&f, &code, &text, &tl), OT_OK);
    assert_int_equal(code, OT_E_NO_CARD);
    assert_int_equal(tl, 2);
    assert_memory_equal(text, "no", 2);
    f.len = 2; /* code only, empty text */
    assert_int_equal(vse_sock_error_parse(&f, &code, &text, &tl), OT_OK);
    assert_int_equal(tl, 0);
    f.len = 1; /* code cut */
    assert_int_equal(vse_sock_error_parse(&f, &code, &text, &tl), OT_E_PROTOCOL);
    f.type = VSE_SOCK_APDU | VSE_SOCK_REPLY; /* not an error frame */
    f.len = sizeof ok;
    assert_int_equal(vse_sock_error_parse(&f, &code, &text, &tl), OT_E_PROTOCOL);
    f.type = VSE_SOCK_ERROR; /* text over the cap */
    f.payload = big;
    f.len = sizeof big;
    assert_int_equal(vse_sock_error_parse(&f, &code, &text, &tl), OT_E_PROTOCOL);
    f.len = sizeof big - 1u;
    assert_int_equal(vse_sock_error_parse(&f, &code, &text, &tl), OT_OK);
    assert_int_equal(vse_sock_error_parse(NULL, &code, &text, &tl), OT_E_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sock_frame_parse_table),
        cmocka_unit_test(test_sock_frame_encode),
        cmocka_unit_test(test_error_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
