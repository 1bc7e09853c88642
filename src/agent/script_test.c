/* Admin-session script parsers (src/agent/script.c), table-driven: every
 * rule of docs/ota.md 5.3 has a row that breaks it. Running scripts on a
 * real card is in tests/agent/conv_client.c. */
#include "agent/script.h"

#include "core/hex.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static struct agent_script g_s;

static size_t unhex(const char *h, uint8_t *out, size_t cap)
{
    size_t n = cap;

    assert_int_equal(hex_decode(h, strlen(h), out, &n), OT_OK);
    return n;
}

static void test_parse_table(void **state)
{
    static const struct {
        const char *name;
        const char *hex;
        ot_err want;
        size_t n, bad;
        uint8_t mode;
    } rows[] = {
        {"one C-APDU",
         "AE802205"
         "80CA004500"
         "0000",
         OT_OK, 1, 0, 0},
        {"mode 01 first",
         "AE80820101"
         "2205"
         "80CA004500"
         "2204"
         "80CA0066"
         "0000",
         OT_OK, 2, 0, 1},
        {"guard after a C-APDU",
         "AE80"
         "2205"
         "8050000008"
         "C1029000"
         "2204"
         "84823300"
         "0000",
         OT_OK, 2, 0, 0},
        {"81 length",
         "AE80"
         "2281"
         "80"
         "80CA0045"
         "00",
         OT_E_TRUNCATED, 0, 0, 0},
        {"empty", "", OT_E_TRUNCATED, 0, 0, 0},
        {"definite AA",
         "AA05"
         "2203"
         "000000",
         OT_E_FORMAT, 0, 0, 0},
        {"AE definite",
         "AE07"
         "2205"
         "80CA004500",
         OT_E_FORMAT, 0, 0, 0},
        {"response tag",
         "AF80"
         "23029000"
         "0000",
         OT_E_FORMAT, 0, 0, 0},
        {"no C-APDU", "AE800000", OT_E_FORMAT, 0, 2, 0},
        {"no end",
         "AE80"
         "2205"
         "80CA004500",
         OT_E_TRUNCATED, 0, 9, 0},
        {"EOC 00 01",
         "AE80"
         "2205"
         "80CA004500"
         "0001",
         OT_E_FORMAT, 0, 9, 0},
        {"after EOC",
         "AE80"
         "2205"
         "80CA004500"
         "000000",
         OT_E_TRAILING, 0, 11, 0},
        {"mode not first",
         "AE80"
         "2205"
         "80CA004500"
         "820101"
         "0000",
         OT_E_FORMAT, 0, 9, 0},
        {"mode 02",
         "AE80"
         "820102"
         "2205"
         "80CA004500"
         "0000",
         OT_E_FORMAT, 0, 2, 0},
        {"mode 2 bytes",
         "AE80"
         "82020000"
         "2205"
         "80CA004500"
         "0000",
         OT_E_FORMAT, 0, 2, 0},
        {"guard first",
         "AE80"
         "C1029000"
         "2205"
         "80CA004500"
         "0000",
         OT_E_FORMAT, 0, 2, 0},
        {"guard twice",
         "AE80"
         "2205"
         "80CA004500"
         "C1029000"
         "C1029000"
         "0000",
         OT_E_FORMAT, 0, 13, 0},
        {"guard 1 byte",
         "AE80"
         "2205"
         "80CA004500"
         "C10190"
         "0000",
         OT_E_FORMAT, 0, 9, 0},
        {"C-APDU 3 bytes",
         "AE80"
         "2203"
         "80CA00"
         "0000",
         OT_E_FORMAT, 0, 2, 0},
        {"81 05: not shortest",
         "AE80"
         "228105"
         "80CA004500"
         "0000",
         OT_E_FORMAT, 0, 2, 0},
        {"82 00 05: not shortest",
         "AE80"
         "22820005"
         "80CA004500"
         "0000",
         OT_E_FORMAT, 0, 2, 0},
        {"length 83",
         "AE80"
         "2283000005"
         "80CA004500"
         "0000",
         OT_E_FORMAT, 0, 2, 0},
        {"length 80",
         "AE80"
         "2280"
         "80CA004500"
         "0000",
         OT_E_FORMAT, 0, 2, 0},
        {"length past the end",
         "AE80"
         "2209"
         "80CA004500"
         "0000",
         OT_E_TRUNCATED, 0, 2, 0},
        {"tag 90",
         "AE80"
         "2205"
         "80CA004500"
         "900100"
         "0000",
         OT_E_FORMAT, 0, 9, 0},
    };
    uint8_t buf[64];
    char why[128];
    size_t i, n, bad;

    (void)state;
    for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        ot_err err;
        n = unhex(rows[i].hex, buf, sizeof buf);
        bad = 999;
        why[0] = '\0';
        err = agent_script_parse(buf, n, &g_s, &bad, why, sizeof why);
        if (err != rows[i].want) {
            fail_msg("row '%s': %s, want %s (%s)", rows[i].name, ot_errname(err),
                     ot_errname(rows[i].want), why);
        }
        if (err == OT_OK) {
            assert_int_equal(g_s.n, rows[i].n);
            assert_int_equal(g_s.mode, rows[i].mode);
        } else {
            if (rows[i].bad != 0 && bad != rows[i].bad) {
                fail_msg("row '%s': offset %zu, want %zu", rows[i].name, bad, rows[i].bad);
            }
            assert_true(why[0] != '\0');
        }
    }
    /* The guard belongs to the C-APDU before it. */
    n = unhex("AE80"
              "2205"
              "8050000008"
              "C1029000"
              "2204"
              "84823300"
              "0000",
              buf, sizeof buf);
    assert_int_equal(agent_script_parse(buf, n, &g_s, NULL, NULL, 0), OT_OK);
    assert_non_null(g_s.cmd[0].guard);
    assert_int_equal(g_s.cmd[0].guard_len, 2);
    assert_null(g_s.cmd[1].guard);
    assert_memory_equal(g_s.cmd[1].capdu, "\x84\x82\x33\x00", 4);
}

static void test_parse_limits(void **state)
{
    /* 1024 C-APDUs pass, 1025 are OT_E_LIMIT; a 65544-byte C-APDU (82 length). */
    size_t cap = 4 + (AGENT_SCRIPT_MAX_CMDS + 1) * 6 + 8;
    uint8_t *b = malloc(cap > 65544 + 16 ? cap : 65544 + 16);
    size_t n = 0, i;

    (void)state;
    assert_non_null(b);
    b[n++] = 0xAE;
    b[n++] = 0x80;
    for (i = 0; i < AGENT_SCRIPT_MAX_CMDS; i++) {
        memcpy(b + n, "\x22\x04\x80\xCA\x00\x66", 6);
        n += 6;
    }
    memcpy(b + n, "\x00\x00", 2);
    assert_int_equal(agent_script_parse(b, n + 2, &g_s, NULL, NULL, 0), OT_OK);
    assert_int_equal(g_s.n, AGENT_SCRIPT_MAX_CMDS);
    memcpy(b + n, "\x22\x04\x80\xCA\x00\x66\x00\x00", 8);
    assert_int_equal(agent_script_parse(b, n + 8, &g_s, NULL, NULL, 0), OT_E_LIMIT);
    n = 0;
    memcpy(b, "\xAE\x80\x22\x82\xFF\xFF", 6);
    memset(b + 6, 0, 65535);
    memcpy(b + 6 + 65535, "\x00\x00", 2);
    assert_int_equal(agent_script_parse(b, 6 + 65535 + 2, &g_s, NULL, NULL, 0), OT_OK);
    assert_int_equal(g_s.cmd[0].capdu_len, 65535);
    free(b);
}

static void test_sw_failing(void **state)
{
    (void)state;
    assert_false(agent_sw_failing(0x9000));
    assert_false(agent_sw_failing(0x6100));
    assert_false(agent_sw_failing(0x61FF));
    assert_false(agent_sw_failing(0x6310));
    assert_true(agent_sw_failing(0x6311));
    assert_true(agent_sw_failing(0x6982));
    assert_true(agent_sw_failing(0x6A88));
    assert_true(agent_sw_failing(0x9001));
}

static void test_resp_parse(void **state)
{
    static const struct {
        const char *hex;
        ot_err want;
        size_t count;
    } rows[] = {
        {"AF80"
         "800102"
         "23029000"
         "2303016A88"
         "0000",
         OT_OK, 2},
        {"AF80"
         "23029000"
         "0000",
         OT_OK, 1}, /* count omitted */
        {"AF80"
         "800103"
         "23029000"
         "0000",
         OT_E_FORMAT, 0},
        {"AF80"
         "80020001"
         "23029000"
         "0000",
         OT_E_FORMAT, 0}, /* count not minimal */
        {"AF80"
         "23029000"
         "800101"
         "0000",
         OT_E_FORMAT, 0}, /* count not first */
        {"AF80"
         "230190"
         "0000",
         OT_E_FORMAT, 0},
        {"AF80"
         "0000",
         OT_E_FORMAT, 0},
        {"AF80"
         "23029000",
         OT_E_TRUNCATED, 0},
        {"AE80"
         "23029000"
         "0000",
         OT_E_FORMAT, 0},
    };
    const uint8_t *r[4];
    size_t rl[4];
    uint8_t buf[64];
    size_t i, n, count;

    (void)state;
    for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        n = unhex(rows[i].hex, buf, sizeof buf);
        ot_err err = agent_resp_parse(buf, n, r, rl, 4, &count);
        if (err != rows[i].want) {
            fail_msg("row %zu: %s, want %s", i, ot_errname(err), ot_errname(rows[i].want));
        }
        if (err == OT_OK) {
            assert_int_equal(count, rows[i].count);
        }
    }
    n = unhex("AF80"
              "800102"
              "23029000"
              "2303016A88"
              "0000",
              buf, sizeof buf);
    assert_int_equal(agent_resp_parse(buf, n, r, rl, 4, &count), OT_OK);
    assert_int_equal(rl[1], 3);
    assert_memory_equal(r[1], "\x01\x6A\x88", 3);
    assert_int_equal(agent_resp_parse(buf, n, r, rl, 1, &count), OT_E_LIMIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_parse_limits),
        cmocka_unit_test(test_sw_failing),
        cmocka_unit_test(test_resp_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
