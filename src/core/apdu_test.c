/* APDU codec, CLA channels, status words and 61xx/6Cxx handling
 * (src/core/apdu.c). */
#include "core/apdu.h"
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

/* ---- parse and encode --------------------------------------------------- */

static const struct {
    const char *name;
    const char *hex;
    ot_err want;
    enum apdu_case kase;
    size_t nc;
    size_t ne;
    bool extended;
} parse_cases[] = {
    {"case 1", "00A40400", OT_OK, APDU_CASE_1, 0, 0, false},
    {"case 2S", "00B0000010", OT_OK, APDU_CASE_2S, 0, 0x10, false},
    {"case 2S Le 00 = 256", "00B0000000", OT_OK, APDU_CASE_2S, 0, 256, false},
    {"case 3S", "00A4040005A000000151", OT_OK, APDU_CASE_3S, 5, 0, false},
    {"case 3S Lc 01", "80E6000001AA", OT_OK, APDU_CASE_3S, 1, 0, false},
    {"case 4S", "00A4040005A00000015100", OT_OK, APDU_CASE_4S, 5, 256, false},
    {"case 4S Le 01", "00A4040005A00000015101", OT_OK, APDU_CASE_4S, 5, 1, false},
    {"case 2E", "00B0000000FFFF", OT_OK, APDU_CASE_2E, 0, 0xFFFF, true},
    {"case 2E Le 0000 = 65536", "00B00000000000", OT_OK, APDU_CASE_2E, 0, 65536, true},
    {"case 2E Le 0001", "00B00000000001", OT_OK, APDU_CASE_2E, 0, 1, true},
    {"case 3E", "80E2000000000301 0203", OT_OK, APDU_CASE_3E, 3, 0, true},
    {"case 4E", "80E20000000003010203 0100", OT_OK, APDU_CASE_4E, 3, 256, true},
    {"case 4E Le 0000", "80E200000000030102030000", OT_OK, APDU_CASE_4E, 3, 65536, true},
    {"Lc 00 + 2 bytes is case 2E", "00A40400000102", OT_OK, APDU_CASE_2E, 0, 0x0102, true},
    {"Lc 00 + 3 bytes is case 3E", "00A4040000 0001AA", OT_OK, APDU_CASE_3E, 1, 0, true},
    {"empty", "", OT_E_APDU_LEN, 0, 0, 0, false},
    {"3 bytes", "00A404", OT_E_APDU_LEN, 0, 0, 0, false},
    {"CLA FF", "FFA40400", OT_E_APDU, 0, 0, 0, false},
    {"CLA FF case 2", "FFA4040000", OT_E_APDU, 0, 0, 0, false},
    {"3S truncated", "00A4040005A0000001", OT_E_APDU_LEN, 0, 0, 0, false},
    {"4S over-long by 1", "00A4040005A000000151 0000", OT_E_APDU_LEN, 0, 0, 0, false},
    {"3S Lc FF with 1 byte", "00A40400FF01", OT_E_APDU_LEN, 0, 0, 0, false},
    {"Lc 00 short with 1 trailing byte", "00A404000001", OT_E_APDU_LEN, 0, 0, 0, false},
    {"extended Lc 0000 with data", "00A4040000 0000 AA", OT_E_APDU, 0, 0, 0, false},
    {"extended Lc 0000 and Le", "00A4040000 0000 0000", OT_E_APDU, 0, 0, 0, false},
    {"3E truncated", "00A4040000 0003 0102", OT_E_APDU_LEN, 0, 0, 0, false},
    {"3E + 1 byte (no 1-byte Le in extended)", "00A4040000 0003 010203 00", OT_E_APDU_LEN, 0, 0, 0,
     false},
    {"4E over-long by 1", "00A4040000 0003 010203 0000 00", OT_E_APDU_LEN, 0, 0, 0, false},
};

/* Table rows may contain spaces for readability. */
static size_t unhex_spaced(const char *s, uint8_t *out, size_t cap)
{
    char clean[256];
    size_t k = 0;
    for (; *s; s++) {
        if (*s != ' ') {
            assert_true(k + 1 < sizeof clean);
            clean[k++] = *s;
        }
    }
    clean[k] = '\0';
    return testutil_unhex(clean, out, cap);
}

static void test_parse_encode(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(parse_cases); i++) {
        uint8_t raw[64];
        uint8_t enc[64];
        struct apdu a;
        size_t n = unhex_spaced(parse_cases[i].hex, raw, sizeof raw);
        print_message("%s\n", parse_cases[i].name);
        /* An exact-size copy so that ASan catches any read past the end. */
        uint8_t *exact = malloc(n ? n : 1);
        assert_non_null(exact);
        memcpy(exact, raw, n);
        ot_err err = apdu_parse(exact, n, &a);
        assert_int_equal(err, parse_cases[i].want);
        if (err == OT_OK) {
            assert_int_equal(a.cla, raw[0]);
            assert_int_equal(a.ins, raw[1]);
            assert_int_equal(a.p1, raw[2]);
            assert_int_equal(a.p2, raw[3]);
            assert_int_equal(a.nc, parse_cases[i].nc);
            assert_int_equal(a.ne, parse_cases[i].ne);
            assert_int_equal(a.extended, parse_cases[i].extended);
            assert_int_equal(apdu_case_of(&a), parse_cases[i].kase);
            if (a.nc > 0) {
                assert_true(a.data > exact && a.data + a.nc <= exact + n);
            } else {
                assert_null(a.data);
            }
            /* Encode gives back the input, and reports its size when asked. */
            size_t len = 0;
            assert_int_equal(apdu_encode(&a, NULL, &len), OT_E_BUF_SMALL);
            assert_int_equal(len, n);
            len = n - 1;
            assert_int_equal(apdu_encode(&a, enc, &len), OT_E_BUF_SMALL);
            assert_int_equal(len, n);
            len = sizeof enc;
            assert_int_equal(apdu_encode(&a, enc, &len), OT_OK);
            assert_int_equal(len, n);
            assert_memory_equal(enc, raw, n);
        }
        free(exact);
    }
}

/* Largest commands: short Lc FF, extended Lc FFFF with and without Le. */
static void test_parse_large(void **state)
{
    (void)state;
    static const struct {
        size_t nc;
        size_t ne;
        bool extended;
        enum apdu_case kase;
        size_t size;
        ot_err cut; /* parsing all but the last byte */
    } rows[] = {
        {255, 0, false, APDU_CASE_3S, 4 + 1 + 255, OT_E_APDU_LEN},
        /* 4S minus its Le is a valid 3S */
        {255, 256, false, APDU_CASE_4S, 4 + 1 + 255 + 1, OT_OK},
        {256, 0, false, APDU_CASE_3E, 4 + 3 + 256, OT_E_APDU_LEN},
        {255, 257, false, APDU_CASE_4E, 4 + 3 + 255 + 2, OT_E_APDU_LEN},
        {65535, 0, false, APDU_CASE_3E, 4 + 3 + 65535, OT_E_APDU_LEN},
        {65535, 65536, false, APDU_CASE_4E, APDU_MAX_CMD_SIZE, OT_E_APDU_LEN},
        {0, 257, false, APDU_CASE_2E, 4 + 3, OT_E_APDU_LEN},
        {0, 65536, false, APDU_CASE_2E, 4 + 3, OT_E_APDU_LEN},
        {1, 1, true, APDU_CASE_4E, 4 + 3 + 1 + 2, OT_E_APDU_LEN},
        {0, 0, true, APDU_CASE_1, 4, OT_E_APDU_LEN},
    };
    uint8_t *data = malloc(65535);
    uint8_t *buf = malloc(APDU_MAX_CMD_SIZE);
    assert_non_null(data);
    assert_non_null(buf);
    for (size_t i = 0; i < 65535; i++) {
        data[i] = (uint8_t)i;
    }
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct apdu a = {.cla = 0x80, .ins = 0xE8, .p1 = 0x00, .p2 = 0x01, .data = data};
        struct apdu b;
        size_t len = APDU_MAX_CMD_SIZE;
        a.nc = rows[i].nc;
        a.ne = rows[i].ne;
        a.extended = rows[i].extended;
        assert_int_equal(apdu_case_of(&a), rows[i].kase);
        assert_int_equal(apdu_encode(&a, buf, &len), OT_OK);
        assert_int_equal(len, rows[i].size);
        assert_int_equal(apdu_parse(buf, len, &b), OT_OK);
        assert_int_equal(b.nc, a.nc);
        assert_int_equal(b.ne, a.ne);
        assert_int_equal(apdu_case_of(&b), rows[i].kase);
        if (a.nc > 0) {
            assert_memory_equal(b.data, data, a.nc);
        }
        /* Cut by one byte: the lengths no longer match. A case 1 command
         * becomes 3 bytes, and 2E minus a byte is the invalid 00 xx form. */
        assert_int_equal(apdu_parse(buf, len - 1, &b), rows[i].cut);
    }
    free(data);
    free(buf);
}

static void test_encode_errors(void **state)
{
    (void)state;
    static const uint8_t d[4] = {1, 2, 3, 4};
    static const struct {
        const char *name;
        struct apdu a;
        ot_err want;
    } rows[] = {
        {"nc > 65535", {.cla = 0x80, .data = d, .nc = 65536}, OT_E_RANGE},
        {"ne > 65536", {.cla = 0x80, .ne = 65537}, OT_E_RANGE},
        {"data NULL", {.cla = 0x80, .nc = 1}, OT_E_ARG},
        {"CLA FF", {.cla = 0xFF}, OT_E_APDU},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        uint8_t out[16];
        size_t len = sizeof out;
        print_message("%s\n", rows[i].name);
        assert_int_equal(apdu_encode(&rows[i].a, out, &len), rows[i].want);
    }
    struct apdu a = {.cla = 0x00};
    assert_int_equal(apdu_encode(&a, NULL, NULL), OT_E_ARG);
    assert_int_equal(apdu_parse(NULL, 4, &a), OT_E_ARG);
}

/* ---- CLA --------------------------------------------------------------- */

static void test_cla_channel(void **state)
{
    (void)state;
    static const struct {
        uint8_t cla;
        ot_err want;
        uint8_t ch;
        bool sm;
        bool prop;
    } rows[] = {
        {0x00, OT_OK, 0, false, false},     {0x03, OT_OK, 3, false, false},
        {0x04, OT_OK, 0, true, false},      {0x08, OT_OK, 0, true, false},
        {0x0F, OT_OK, 3, true, false},      {0x10, OT_OK, 0, false, false},
        {0x80, OT_OK, 0, false, true},      {0x84, OT_OK, 0, true, true},
        {0x87, OT_OK, 3, true, true},       {0x90, OT_OK, 0, false, true},
        {0x40, OT_OK, 4, false, false},     {0x4F, OT_OK, 19, false, false},
        {0x60, OT_OK, 4, true, false},      {0x6F, OT_OK, 19, true, false},
        {0xC0, OT_OK, 4, false, true},      {0xCF, OT_OK, 19, false, true},
        {0xE1, OT_OK, 5, true, true},       {0xEF, OT_OK, 19, true, true},
        {0xFE, OT_OK, 18, true, true},      {0x20, OT_E_APDU, 0, false, false},
        {0x3F, OT_E_APDU, 0, false, false}, {0xA0, OT_E_APDU, 0, false, true},
        {0xBF, OT_E_APDU, 0, false, true},  {0xFF, OT_E_APDU, 0, false, false},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        uint8_t ch = 0xAA;
        print_message("CLA %02X\n", rows[i].cla);
        assert_int_equal(apdu_cla_channel(rows[i].cla, &ch), rows[i].want);
        if (rows[i].want == OT_OK) {
            assert_int_equal(ch, rows[i].ch);
        }
        assert_int_equal(apdu_cla_has_sm(rows[i].cla), rows[i].sm);
        assert_int_equal(apdu_cla_is_proprietary(rows[i].cla), rows[i].prop);
    }
}

static void test_cla_with_channel(void **state)
{
    (void)state;
    static const struct {
        uint8_t cla;
        uint8_t ch;
        ot_err want;
        uint8_t out;
    } rows[] = {
        {0x00, 0, OT_OK, 0x00},
        {0x00, 3, OT_OK, 0x03},
        {0x00, 4, OT_OK, 0x40},
        {0x00, 19, OT_OK, 0x4F},
        {0x80, 1, OT_OK, 0x81},
        {0x80, 5, OT_OK, 0xC1},
        {0x84, 5, OT_OK, 0xE1},
        {0xE1, 0, OT_OK, 0x84},
        {0x61, 1, OT_OK, 0x05},
        {0x0C, 2, OT_OK, 0x0E},
        {0x0E, 7, OT_OK, 0x63},
        {0x93, 0, OT_OK, 0x90},
        {0x10, 4, OT_OK, 0x50},
        {0xD0, 2, OT_OK, 0x92},
        {0x83, 19, OT_OK, 0xCF},
        {0x00, 20, OT_E_RANGE, 0},
        {0x80, 255, OT_E_RANGE, 0},
        {0xF0, 19, OT_E_RANGE, 0}, /* GP + SM + chaining on 19 would be FF */
        {0x20, 0, OT_E_APDU, 0},
        {0xFF, 0, OT_E_APDU, 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        uint8_t out = 0xAA;
        print_message("CLA %02X ch %u\n", rows[i].cla, rows[i].ch);
        assert_int_equal(apdu_cla_with_channel(rows[i].cla, rows[i].ch, &out), rows[i].want);
        if (rows[i].want == OT_OK) {
            assert_int_equal(out, rows[i].out);
        } else {
            assert_int_equal(out, 0xAA);
        }
    }
}

/* Every channel 0-19 round-trips for a set of classes, keeping b8, b5 and
 * the SM indication. */
static void test_cla_channels_round_trip(void **state)
{
    (void)state;
    static const uint8_t clas[] = {0x00, 0x80, 0x84, 0x04, 0x0C, 0x10,
                                   0x90, 0x14, 0x40, 0xE0, 0x70};
    for (size_t i = 0; i < ARRAY_SIZE(clas); i++) {
        for (uint8_t ch = 0; ch <= APDU_MAX_CHANNEL; ch++) {
            uint8_t c = 0;
            uint8_t got = 0xAA;
            assert_int_equal(apdu_cla_with_channel(clas[i], ch, &c), OT_OK);
            assert_int_equal(apdu_cla_channel(c, &got), OT_OK);
            assert_int_equal(got, ch);
            assert_int_equal(apdu_cla_is_proprietary(c), apdu_cla_is_proprietary(clas[i]));
            assert_int_equal(apdu_cla_has_sm(c), apdu_cla_has_sm(clas[i]));
            assert_int_equal(c & 0x10, clas[i] & 0x10);
            assert_int_equal((c & 0x40) != 0, ch >= 4);
        }
    }
}

/* ---- responses and status words ---------------------------------------- */

static void test_rapdu(void **state)
{
    (void)state;
    static const struct {
        const char *hex;
        ot_err want;
        size_t len;
        uint16_t sw;
    } rows[] = {
        {"90", OT_E_APDU_LEN, 0, 0},    {"9000", OT_OK, 0, 0x9000},   {"6A82", OT_OK, 0, 0x6A82},
        {"01029000", OT_OK, 2, 0x9000}, {"AA6110", OT_OK, 1, 0x6110},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        uint8_t raw[8];
        struct rapdu r;
        size_t n = testutil_unhex(rows[i].hex, raw, sizeof raw);
        assert_int_equal(rapdu_parse(raw, n, &r), rows[i].want);
        if (rows[i].want == OT_OK) {
            assert_int_equal(r.len, rows[i].len);
            assert_int_equal(r.sw, rows[i].sw);
            assert_ptr_equal(r.data, raw);
        }
    }
    struct rapdu r;
    assert_int_equal(rapdu_parse(NULL, 0, &r), OT_E_ARG);
    assert_int_equal(sw1(0x6A82), 0x6A);
    assert_int_equal(sw2(0x6A82), 0x82);
}

static const struct {
    uint16_t sw;
    ot_err err;
    bool ok;
    bool success_or_warning;
} sw_cases[] = {
    {0x9000, OT_OK, true, true},
    {0x6100, OT_OK, false, true},
    {0x6110, OT_OK, false, true},
    {0x61FF, OT_OK, false, true},
    {0x6700, OT_E_SW_WRONG_LENGTH, false, false},
    {0x6982, OT_E_SW_SECURITY, false, false},
    {0x6983, OT_E_SW_AUTH_BLOCKED, false, false},
    {0x6984, OT_E_SW_REF_INVALID, false, false},
    {0x6985, OT_E_SW_CONDITIONS, false, false},
    {0x6986, OT_E_SW_NOT_ALLOWED, false, false},
    {0x6A80, OT_E_SW_WRONG_DATA, false, false},
    {0x6A81, OT_E_SW_FUNC_NOT_SUPP, false, false},
    {0x6A82, OT_E_SW_NOT_FOUND, false, false},
    {0x6A84, OT_E_SW_NO_SPACE, false, false},
    {0x6A86, OT_E_SW_P1P2, false, false},
    {0x6B00, OT_E_SW_P1P2, false, false},
    {0x6A88, OT_E_SW_REF_NOT_FOUND, false, false},
    {0x6D00, OT_E_SW_INS, false, false},
    {0x6E00, OT_E_SW_CLA, false, false},
    {0x6300, OT_E_SW_VERIFY_FAILED, false, true},
    {0x63C0, OT_E_SW_VERIFY_FAILED, false, true},
    {0x63C2, OT_E_SW_VERIFY_FAILED, false, true},
    {0x63CF, OT_E_SW_VERIFY_FAILED, false, true},
    {0x6310, OT_E_SW, false, true},
    {0x6581, OT_E_SW_MEMORY, false, false},
    {0x6881, OT_E_SW_CHANNEL, false, false},
    {0x6882, OT_E_SW_SM_UNSUPPORTED, false, false},
    {0x6400, OT_E_SW_EXEC, false, false},
    {0x6C00, OT_E_SW_WRONG_LE, false, false},
    {0x6C10, OT_E_SW_WRONG_LE, false, false},
    {0x6283, OT_E_SW_FILE_INVALID, false, true},
    {0x6200, OT_E_SW, false, true},
    {0x6A83, OT_E_SW, false, false},
    {0x6F00, OT_E_SW, false, false},
    {0x9484, OT_E_SW, false, false},
    {0x1234, OT_E_SW, false, false},
    {0x0000, OT_E_SW, false, false},
    {0x9001, OT_E_SW, false, false},
};

static void test_sw(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(sw_cases); i++) {
        uint16_t sw = sw_cases[i].sw;
        const char *d = sw_describe(sw);
        print_message("SW %04X\n", sw);
        assert_int_equal(sw_to_err(sw), sw_cases[i].err);
        assert_int_equal(sw_is_ok(sw), sw_cases[i].ok);
        assert_int_equal(sw_is_success_or_warning(sw), sw_cases[i].success_or_warning);
        assert_non_null(d);
        assert_true(d[0] != '\0');
        /* Every mapped SW has its own description. */
        if (sw_cases[i].err != OT_E_SW || sw == 0x6310 || sw == 0x6F00) {
            assert_string_not_equal(d, "unknown status word");
        }
    }
    assert_string_equal(sw_describe(0x1234), "unknown status word");
    assert_string_equal(sw_describe(0x6700), "wrong length");
}

/* ---- 61xx / 6Cxx ------------------------------------------------------- */

static void test_followup(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        const char *cmd;
        uint16_t sw;
        ot_err want;
        const char *next; /* "" = no follow-up */
    } rows[] = {
        {"9000: done", "80CA9F7F00", 0x9000, OT_OK, ""},
        {"6A82: done", "00A4040000", 0x6A82, OT_OK, ""},
        {"61 10 on channel 0", "80F21002024F0000", 0x6110, OT_OK, "00C0000010"},
        {"61 00 is 256", "80F21002024F0000", 0x6100, OT_OK, "00C0000000"},
        {"61 on channel 3 with GP SM", "87F21002024F0000", 0x6120, OT_OK, "03C0000020"},
        {"61 on channel 5", "C1CA9F7F00", 0x6101, OT_OK, "41C0000001"},
        {"61 on channel 18 GP SM chaining", "FECA9F7F00", 0x6102, OT_OK, "4EC0000002"},
        {"61 on channel 19", "CFCA9F7F00", 0x6102, OT_OK, "4FC0000002"},
        {"6C on case 2S", "00B0000000", 0x6C10, OT_OK, "00B0000010"},
        {"6C on case 1 adds Le", "00B00000", 0x6C05, OT_OK, "00B0000005"},
        {"6C on case 3S adds Le", "00A4040002 3F00", 0x6C12, OT_OK, "00A40400023F0012"},
        {"6C 00 is 256", "00B0000010", 0x6C00, OT_OK, "00B0000000"},
        {"6C on 2E keeps extended", "00B00000000010", 0x6C08, OT_OK, "00B00000000008"},
        {"61 with invalid CLA", "20CA9F7F00", 0x6110, OT_E_APDU, ""},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        uint8_t raw[64];
        uint8_t want[64];
        uint8_t next[64];
        struct apdu cmd;
        size_t n = unhex_spaced(rows[i].cmd, raw, sizeof raw);
        size_t wn = testutil_unhex(rows[i].next, want, sizeof want);
        size_t len = sizeof next;
        print_message("%s\n", rows[i].name);
        assert_int_equal(apdu_parse(raw, n, &cmd), OT_OK);
        assert_int_equal(apdu_followup(&cmd, rows[i].sw, next, &len), rows[i].want);
        if (rows[i].want == OT_OK) {
            assert_int_equal(len, wn);
            assert_memory_equal(next, want, wn);
        }
    }
    /* Capacity too small: the size needed comes back. */
    struct apdu cmd = {.cla = 0x00, .ins = 0xB0};
    uint8_t next[4];
    size_t len = sizeof next;
    assert_int_equal(apdu_followup(&cmd, 0x6110, next, &len), OT_E_BUF_SMALL);
    assert_int_equal(len, 5);
}

/* A fake card: answers each command with the next scripted response (the
 * last one repeats), and records what it was sent. */
#define FAKE_MAX_LOG 8

struct fake_card {
    const char *const *resp; /* hex R-APDUs */
    size_t nresp;
    size_t calls;
    ot_err fail; /* returned instead of answering, when set */
    char sent[FAKE_MAX_LOG][64];
};

static ot_err fake_transmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                            size_t *resp_len)
{
    struct fake_card *card = ctx;
    size_t i = card->calls < card->nresp ? card->calls : card->nresp - 1;
    if (card->fail != OT_OK) {
        return card->fail;
    }
    if (card->calls < FAKE_MAX_LOG) {
        assert_int_equal(hex_encode(cmd, cmd_len, card->sent[card->calls], 64), OT_OK);
    }
    card->calls++;
    size_t n = *resp_len;
    assert_int_equal(hex_decode(card->resp[i], strlen(card->resp[i]), resp, &n), OT_OK);
    *resp_len = n;
    return OT_OK;
}

struct xfer_case {
    const char *name;
    const char *cmd;
    const char *resp[4];
    size_t nresp;
    ot_err want;
    const char *data;    /* collected response data */
    uint16_t sw;         /* final status word */
    const char *sent[4]; /* commands the card saw */
    size_t nsent;
};

static const struct xfer_case xfer_cases[] = {
    {"plain 9000", "80CA9F7F00", {"01029000"}, 1, OT_OK, "0102", 0x9000, {"80CA9F7F00"}, 1},
    {"error SW is returned, not turned into an error",
     "00A4040000",
     {"6A82"},
     1,
     OT_OK,
     "",
     0x6A82,
     {"00A4040000"},
     1},
    {"61xx chain with two GET RESPONSE steps",
     "80F21002024F0000",
     {"AABB6104", "CCDDEEFF6102", "11229000"},
     3,
     OT_OK,
     "AABBCCDDEEFF1122",
     0x9000,
     {"80F21002024F0000", "00C0000004", "00C0000002"},
     3},
    {"61xx chain on channel 2 with GP SM",
     "86F21002024F0000",
     {"6103", "0102036A88"},
     2,
     OT_OK,
     "010203",
     0x6A88,
     {"86F21002024F0000", "02C0000003"},
     2},
    {"61xx chain on channel 9",
     "C5CA006600",
     {"6101", "AA9000"},
     2,
     OT_OK,
     "AA",
     0x9000,
     {"C5CA006600", "45C0000001"},
     2},
    {"6Cxx resend with the right Le",
     "00B0000000",
     {"6C03", "0102039000"},
     2,
     OT_OK,
     "010203",
     0x9000,
     {"00B0000000", "00B0000003"},
     2},
    {"6Cxx then 61xx",
     "00B00000",
     {"6C02", "AABB6101", "CC9000"},
     3,
     OT_OK,
     "AABBCC",
     0x9000,
     {"00B00000", "00B0000002", "00C0000001"},
     3},
    {"6Cxx on a GET RESPONSE resends the GET RESPONSE",
     "80CA00E000",
     {"6105", "6C03", "0102039000"},
     3,
     OT_OK,
     "010203",
     0x9000,
     {"80CA00E000", "00C0000005", "00C0000003"},
     3},
    {"R-APDU of 1 byte", "80CA9F7F00", {"90"}, 1, OT_E_APDU_LEN, "", 0, {"80CA9F7F00"}, 1},
};

static void check_xfer(const struct xfer_case *c)
{
    uint8_t raw[64];
    uint8_t want[64];
    struct apdu cmd;
    struct ot_buf out;
    struct fake_card card = {.resp = c->resp, .nresp = c->nresp};
    uint16_t sw = 0;
    size_t n = testutil_unhex(c->cmd, raw, sizeof raw);
    print_message("%s\n", c->name);
    assert_int_equal(apdu_parse(raw, n, &cmd), OT_OK);
    ot_buf_init(&out, 0);
    assert_int_equal(apdu_transceive(fake_transmit, &card, &cmd, &out, &sw), c->want);
    assert_int_equal(card.calls, c->nsent);
    for (size_t i = 0; i < c->nsent; i++) {
        assert_string_equal(card.sent[i], c->sent[i]);
    }
    if (c->want == OT_OK) {
        size_t wn = testutil_unhex(c->data, want, sizeof want);
        assert_int_equal(sw, c->sw);
        assert_int_equal(out.len, wn);
        if (wn > 0) {
            assert_memory_equal(out.data, want, wn);
        }
    }
    ot_buf_free(&out);
}

static void test_transceive(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(xfer_cases); i++) {
        check_xfer(&xfer_cases[i]);
    }
}

/* The same scripts through apdu_chain_feed driven by hand. */
static void test_chain_feed(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(xfer_cases); i++) {
        const struct xfer_case *c = &xfer_cases[i];
        uint8_t bufs[2][64];
        uint8_t resp[64];
        uint8_t want[64];
        struct apdu cmd;
        struct apdu_chain chain;
        unsigned cur = 0;
        size_t len = testutil_unhex(c->cmd, bufs[0], sizeof bufs[0]);
        ot_err err = OT_OK;
        print_message("%s\n", c->name);
        assert_int_equal(apdu_parse(bufs[0], len, &cmd), OT_OK);
        apdu_chain_init(&chain, 0);
        for (size_t k = 0;; k++) {
            char hex[130];
            size_t next_len = sizeof bufs[0];
            assert_true(k < c->nresp);
            assert_int_equal(hex_encode(bufs[cur], len, hex, sizeof hex), OT_OK);
            assert_string_equal(hex, c->sent[k]);
            size_t rn = testutil_unhex(c->resp[k], resp, sizeof resp);
            err = apdu_chain_feed(&chain, &cmd, resp, rn, bufs[cur ^ 1u], &next_len);
            if (err != OT_OK || next_len == 0) {
                assert_int_equal(k + 1, c->nsent);
                break;
            }
            cur ^= 1u;
            len = next_len;
            assert_int_equal(apdu_parse(bufs[cur], len, &cmd), OT_OK);
        }
        assert_int_equal(err, c->want);
        if (err == OT_OK) {
            size_t wn = testutil_unhex(c->data, want, sizeof want);
            assert_int_equal(chain.sw, c->sw);
            assert_int_equal(chain.data.len, wn);
            assert_int_equal(chain.steps, c->nsent - 1);
            if (wn > 0) {
                assert_memory_equal(chain.data.data, want, wn);
            }
        }
        apdu_chain_free(&chain);
    }
    apdu_chain_free(NULL);
}

/* A card that never stops asking for more: the step cap ends it. */
static void test_step_cap(void **state)
{
    (void)state;
    static const char *const forever_61[] = {"016101"};
    static const char *const forever_6c[] = {"6C05"};
    static const struct {
        const char *const *resp;
        size_t data_per_step;
    } rows[] = {{forever_61, 1}, {forever_6c, 0}};
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        uint8_t raw[] = {0x80, 0xCA, 0x00, 0x66, 0x00};
        struct apdu cmd;
        struct ot_buf out;
        struct fake_card card = {.resp = rows[i].resp, .nresp = 1};
        uint16_t sw = 0;
        assert_int_equal(apdu_parse(raw, sizeof raw, &cmd), OT_OK);
        ot_buf_init(&out, 0);
        assert_int_equal(apdu_transceive(fake_transmit, &card, &cmd, &out, &sw), OT_E_LIMIT);
        /* The original command plus APDU_CHAIN_MAX_STEPS follow-ups. */
        assert_int_equal(card.calls, APDU_CHAIN_MAX_STEPS + 1);
        assert_int_equal(out.len, (APDU_CHAIN_MAX_STEPS + 1) * rows[i].data_per_step);
        ot_buf_free(&out);
    }
}

/* The collected data is capped by the buffer's max. */
static void test_byte_cap(void **state)
{
    (void)state;
    static const char *const resp[] = {"01026103", "0304059000"};
    uint8_t raw[] = {0x80, 0xCA, 0x00, 0x66, 0x00};
    struct apdu cmd;
    struct ot_buf out;
    uint16_t sw = 0;
    assert_int_equal(apdu_parse(raw, sizeof raw, &cmd), OT_OK);
    for (size_t max = 1; max <= 5; max++) {
        struct fake_card card = {.resp = resp, .nresp = 2};
        ot_buf_init(&out, max);
        ot_err want = max < 5 ? OT_E_LIMIT : OT_OK;
        assert_int_equal(apdu_transceive(fake_transmit, &card, &cmd, &out, &sw), want);
        assert_int_equal(card.calls, max < 2 ? 1 : 2);
        ot_buf_free(&out);
    }
}

static void test_transceive_errors(void **state)
{
    (void)state;
    static const char *const resp[] = {"9000"};
    struct fake_card card = {.resp = resp, .nresp = 1, .fail = OT_E_IO};
    struct apdu cmd = {.cla = 0x00, .ins = 0xA4, .p1 = 0x04};
    struct apdu bad = {.cla = 0xFF, .ins = 0xA4};
    struct ot_buf out;
    uint16_t sw = 0;
    ot_buf_init(&out, 0);
    assert_int_equal(apdu_transceive(fake_transmit, &card, &cmd, &out, &sw), OT_E_IO);
    card.fail = OT_OK;
    assert_int_equal(apdu_transceive(fake_transmit, &card, &bad, &out, &sw), OT_E_APDU);
    assert_int_equal(card.calls, 0);
    assert_int_equal(apdu_transceive(NULL, &card, &cmd, &out, &sw), OT_E_ARG);
    assert_int_equal(apdu_transceive(fake_transmit, &card, &cmd, &out, &sw), OT_OK);
    assert_int_equal(sw, 0x9000);
    assert_string_equal(card.sent[0], "00A40400");
    ot_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_encode),
        cmocka_unit_test(test_parse_large),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_cla_channel),
        cmocka_unit_test(test_cla_with_channel),
        cmocka_unit_test(test_cla_channels_round_trip),
        cmocka_unit_test(test_rapdu),
        cmocka_unit_test(test_sw),
        cmocka_unit_test(test_followup),
        cmocka_unit_test(test_transceive),
        cmocka_unit_test(test_chain_feed),
        cmocka_unit_test(test_step_cap),
        cmocka_unit_test(test_byte_cap),
        cmocka_unit_test(test_transceive_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
