/* Error codes and their texts (src/core/err.c), as curl test1538 does. */
#include "core/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define C(x)  \
    {         \
        x, #x \
    }
static const struct {
    ot_err code;
    const char *name;
} codes[] = {
    C(OT_OK),
    C(OT_E_ARG),
    C(OT_E_NOMEM),
    C(OT_E_BUF_SMALL),
    C(OT_E_UNSUPPORTED),
    C(OT_E_STATE),
    C(OT_E_INTERNAL),
    C(OT_E_LIMIT),
    C(OT_E_RATE_LIMITED),
    C(OT_E_TRUNCATED),
    C(OT_E_TLV),
    C(OT_E_HEX),
    C(OT_E_APDU),
    C(OT_E_APDU_LEN),
    C(OT_E_RANGE),
    C(OT_E_FORMAT),
    C(OT_E_CAP),
    C(OT_E_TOO_LONG),
    C(OT_E_TRAILING),
    C(OT_E_SW),
    C(OT_E_SW_WRONG_LENGTH),
    C(OT_E_SW_SECURITY),
    C(OT_E_SW_AUTH_BLOCKED),
    C(OT_E_SW_REF_INVALID),
    C(OT_E_SW_CONDITIONS),
    C(OT_E_SW_WRONG_DATA),
    C(OT_E_SW_FUNC_NOT_SUPP),
    C(OT_E_SW_NOT_FOUND),
    C(OT_E_SW_NO_SPACE),
    C(OT_E_SW_P1P2),
    C(OT_E_SW_REF_NOT_FOUND),
    C(OT_E_SW_INS),
    C(OT_E_SW_CLA),
    C(OT_E_SW_VERIFY_FAILED),
    C(OT_E_SW_MEMORY),
    C(OT_E_SW_CHANNEL),
    C(OT_E_SW_SM_UNSUPPORTED),
    C(OT_E_SW_EXEC),
    C(OT_E_SW_WRONG_LE),
    C(OT_E_SW_NOT_ALLOWED),
    C(OT_E_SW_FILE_INVALID),
    C(OT_E_IO),
    C(OT_E_TIMEOUT),
    C(OT_E_CLOSED),
    C(OT_E_NO_CARD),
    C(OT_E_PROTOCOL),
    C(OT_E_DB),
    C(OT_E_NOT_FOUND),
    C(OT_E_CONFLICT),
    C(OT_E_CORRUPT),
    C(OT_E_IDEM_MISMATCH),
    C(OT_E_CRYPTO),
    C(OT_E_CARD_CRYPTOGRAM),
    C(OT_E_HOST_CRYPTOGRAM),
    C(OT_E_CMAC),
    C(OT_E_RMAC),
    C(OT_E_REPLAY),
    C(OT_E_KCV),
    C(OT_E_PADDING),
    C(OT_E_KEY),
    C(OT_E_SEC_LEVEL),
    C(OT_E_NO_CHANNEL),
    C(OT_E_SEQ_EXHAUSTED),
    C(OT_E_AUTH),
    C(OT_E_FORBIDDEN),
};
#undef C

static void test_texts(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(codes); i++) {
        const char *t = ot_strerror(codes[i].code);
        print_message("%s\n", codes[i].name);
        assert_non_null(t);
        assert_true(t[0] != '\0');
        assert_string_not_equal(t, "unknown error");
        assert_string_equal(ot_errname(codes[i].code), codes[i].name);
        for (size_t j = 0; j < i; j++) {
            assert_int_not_equal(codes[i].code, codes[j].code);
            assert_string_not_equal(t, ot_strerror(codes[j].code));
        }
    }
}

/* Codes sit in their hundred (STYLE.md 7); card status words in the 3xx. */
static void test_ranges(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(codes); i++) {
        int c = (int)codes[i].code;
        bool is_sw = strncmp(codes[i].name, "OT_E_SW", 7) == 0;
        assert_true(c == 0 || (c >= 100 && c < 700));
        assert_int_equal(is_sw, c >= 300 && c < 400);
    }
}

static void test_unknown(void **state)
{
    (void)state;
    static const int unknown[] = {-1, 1, 99, 108, 199, 299, 322, 999, 100000};
    for (size_t i = 0; i < ARRAY_SIZE(unknown); i++) {
        assert_string_equal(ot_strerror((ot_err)unknown[i]), "unknown error");
        assert_string_equal(ot_errname((ot_err)unknown[i]), "OT_E_UNKNOWN");
    }
}

/* Every "OT_E_x = n," line of err.h has a name and text in err.c, so a code
 * appended later without its text fails here (the table above is fixed). */
static void test_header_codes(void **state)
{
    (void)state;
    char line[256];
    size_t seen = 0;
    FILE *f = fopen(OT_SOURCE_DIR "/src/core/err.h", "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f)) {
        char name[64];
        size_t k = 0;
        const char *p = line + strspn(line, " ");
        while (k + 1 < sizeof name
               && ((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_')) {
            name[k++] = *p++;
        }
        name[k] = '\0';
        if (strncmp(name, "OT_", 3) != 0 || strncmp(p, " = ", 3) != 0) {
            continue;
        }
        char *end = NULL;
        long value = strtol(p + 3, &end, 10);
        assert_true(end != p + 3 && *end == ',');
        print_message("%s = %ld\n", name, value);
        assert_string_equal(ot_errname((ot_err)value), name);
        assert_string_not_equal(ot_strerror((ot_err)value), "unknown error");
        seen++;
    }
    assert_int_equal(fclose(f), 0);
    assert_true(seen >= ARRAY_SIZE(codes));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_texts),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_unknown),
        cmocka_unit_test(test_header_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
