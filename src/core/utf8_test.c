/* UTF-8 for untrusted text (src/core/utf8.c). */
#include "core/utf8.h"

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
    size_t len;
    uint32_t cp;
} decode_cases[] = {
    {"ascii", "A", 1, 0x41},
    {"nul", "\0", 1, 0},
    {"two bytes", "\xC3\xA9", 2, 0xe9},
    {"three bytes", "\xE2\x82\xAC", 3, 0x20ac},
    {"four bytes", "\xF0\x9F\x98\x80", 4, 0x1f600},
    {"largest", "\xF4\x8F\xBF\xBF", 4, 0x10ffff},
    {"overlong slash", "\xC0\xAF", 0, 0},
    {"overlong three", "\xE0\x80\xAF", 0, 0},
    {"overlong four", "\xF0\x80\x80\xAF", 0, 0},
    {"surrogate", "\xED\xA0\x80", 0, 0},
    {"above U+10FFFF", "\xF4\x90\x80\x80", 0, 0},
    {"lone continuation", "\x80", 0, 0},
    {"cut short", "\xE2\x82", 0, 0},
    {"bad continuation", "\xE2\x28\xA1", 0, 0},
    {"ff", "\xFF", 0, 0},
};

static void test_decode(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(decode_cases); i++) {
        uint32_t cp = 0xdeadbeef;
        size_t n = decode_cases[i].name[0] == 'n' && decode_cases[i].name[1] == 'u'
                       ? 1
                       : strlen(decode_cases[i].in);
        size_t got = ot_utf8_decode((const uint8_t *)decode_cases[i].in, n, &cp);

        if (got != decode_cases[i].len) {
            fail_msg("%s: length %zu, want %zu", decode_cases[i].name, got, decode_cases[i].len);
        }
        if (got != 0 && cp != decode_cases[i].cp) {
            fail_msg("%s: cp %X, want %X", decode_cases[i].name, (unsigned)cp,
                     (unsigned)decode_cases[i].cp);
        }
    }
    assert_int_equal(ot_utf8_decode((const uint8_t *)"A", 0, &(uint32_t){0}), 0);
}

static void test_unsafe(void **state)
{
    static const uint32_t unsafe[] = {0x00,   0x1b,   0x1f,   0x7f,   0x80,   0x9f,
                                      0x061c, 0x200b, 0x200e, 0x200f, 0x2028, 0x2029,
                                      0x202a, 0x202e, 0x2060, 0x2066, 0x2069, 0xfeff};
    static const uint32_t safe[] = {0x20, 0x41, 0x7e, 0xa0, 0xe9, 0x2010, 0x2030, 0x1f600};

    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(unsafe); i++) {
        assert_true(ot_utf8_cp_unsafe(unsafe[i]));
    }
    for (size_t i = 0; i < ARRAY_SIZE(safe); i++) {
        assert_false(ot_utf8_cp_unsafe(safe[i]));
    }
    assert_true(ot_utf8_safe("caf\xC3\xA9 \xE2\x82\xAC", 9));
    assert_false(ot_utf8_safe("a\x1b[2J", 5));
    assert_false(ot_utf8_safe("abc\xE2\x80\xAE", 6));
    assert_false(ot_utf8_safe("\xff\xfe", 2));
    assert_true(ot_utf8_safe("", 0));
}

static void check_escape(const char *in, size_t n, size_t cap, bool ellipsis, const char *want,
                         bool want_changed, size_t want_width)
{
    char out[128];
    bool changed = !want_changed;
    size_t width = 999;
    size_t got;

    assert_true(cap <= sizeof out);
    got = ot_utf8_escape(in, n, out, cap, ellipsis, &changed, &width);
    assert_string_equal(out, want);
    assert_int_equal(got, strlen(want));
    assert_int_equal(changed, want_changed);
    assert_int_equal(width, want_width);
}

static void test_escape(void **state)
{
    (void)state;
    check_escape("plain", 5, 64, false, "plain", false, 5);
    check_escape("caf\xC3\xA9", 5, 64, false, "caf\xC3\xA9", false, 4);
    check_escape("/x/\xff\xfe", 5, 64, false, "/x/\\xFF\\xFE", true, 11);
    check_escape("\x1b[2J", 4, 64, false, "\\x1B[2J", true, 7);
    check_escape("a\xC2\x85z", 4, 64, false, "a\\xC2\\x85z", true, 10);
    check_escape("ab\xE2\x80\xAE", 5, 64, false, "ab\\u{202E}", true, 10);
    check_escape("a\\b", 3, 64, false, "a\\b", false, 3);
    /* cut at a character boundary, never inside an escape */
    check_escape("ab\xff", 3, 5, false, "ab", true, 2);
    check_escape("abcdefgh", 8, 8, true, "abcd...", true, 7);
    check_escape("abc", 3, 4, true, "abc", false, 3);
    check_escape(NULL, 0, 4, false, "", false, 0);
    assert_int_equal(ot_utf8_escape("abc", 3, NULL, 0, false, NULL, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_unsafe),
        cmocka_unit_test(test_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
