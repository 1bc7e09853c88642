#define _POSIX_C_SOURCE 200809L
/* Admin-session scripts (docs/ota.md §5.3) and the job transition table. */
#include "core/testutil.h"
#include "mno/mno_job.h"
#include "mno/mno_script.h"

#include <stdio.h>
#include <stdlib.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* docs/ota.md §8, byte for byte. */
#define EX_CMD       \
    "AE8022058"      \
    "0CA9F7F0022058" \
    "0CA00420000"    \
    "00"
#define EX_RSP                                                 \
    "AF80800102230B9F7F06479051684701900023074203123456900000" \
    "00"

static void test_example_session(void **state)
{
    uint8_t cmd[64];
    uint8_t rsp[64];
    size_t cn = testutil_unhex(EX_CMD, cmd, sizeof(cmd));
    size_t rn = testutil_unhex(EX_RSP, rsp, sizeof(rsp));
    struct mno_script c;
    struct mno_script r;
    struct mno_script_err e;
    struct ot_buf b;
    size_t stop = 9;
    uint16_t sw = 0;

    (void)state;
    assert_int_equal(cn, 18);
    assert_int_equal(rn, 29);
    assert_int_equal(mno_cmd_parse(cmd, cn, &c, &e), OT_OK);
    assert_int_equal(c.n, 2);
    assert_false(c.cont);
    testutil_assert_hex(c.items[0].p, c.items[0].n, "80CA9F7F00");
    testutil_assert_hex(c.items[1].p, c.items[1].n, "80CA004200");
    assert_int_equal(mno_rsp_parse(rsp, rn, c.n, &r, &e), OT_OK);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.count, 2);
    testutil_assert_hex(r.items[1].p, r.items[1].n, "42031234569000");
    assert_int_equal(mno_script_outcome(&c, &r, &stop, &sw), OT_OK);
    /* The builders give back the same bytes. */
    ot_buf_init(&b, 0);
    assert_int_equal(mno_cmd_build(false, c.items, c.n, &b), OT_OK);
    testutil_assert_hex(b.data, b.len, EX_CMD);
    ot_buf_reset(&b);
    assert_int_equal(mno_rsp_build(r.items, r.n, &b), OT_OK);
    testutil_assert_hex(b.data, b.len, EX_RSP);
    ot_buf_free(&b);
    mno_script_free(&c);
    mno_script_free(&r);
}

static const struct {
    const char *name;
    const char *hex;
    size_t offset; /* where the error is reported */
} bad_cmds[] = {
    {"too short", "AE80", 0},
    {"definite outer",
     "AA0722058"
     "0CA9F7F00",
     0},
    {"outer length not 80",
     "AE0722058"
     "0CA9F7F000000",
     1},
    {"no end-of-contents",
     "AE8022058"
     "0CA9F7F00",
     7},
    {"bytes after EOC",
     "AE8022058"
     "0CA9F7F00000001",
     10},
    {"no C-APDU", "AE800000", 2},
    {"unknown tag",
     "AE8024058"
     "0CA9F7F000000",
     2},
    {"length past end",
     "AE8022068"
     "0CA9F7F000000",
     3},
    {"non-minimal 81",
     "AE802281058"
     "0CA9F7F000000",
     3},
    {"length 83",
     "AE8022830000058"
     "0CA9F7F000000",
     3},
    {"C-APDU of 3 bytes",
     "AE802203"
     "80CA9F"
     "0000",
     2},
    {"malformed C-APDU (Lc past end)",
     "AE802206"
     "80CA9F7F0501"
     "0000",
     2},
    {"guard first",
     "AE80C1029000"
     "22058"
     "0CA9F7F000000",
     2},
    {"two guards",
     "AE8022058"
     "0CA9F7F00C1029000C10290000000",
     13},
    {"mode not first",
     "AE8022058"
     "0CA9F7F0082010"
     "00000",
     9},
    {"mode value 02",
     "AE80820102"
     "22058"
     "0CA9F7F000000",
     2},
};

static void test_cmd_malformed(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(bad_cmds); i++) {
        uint8_t b[128];
        size_t n = testutil_unhex(bad_cmds[i].hex, b, sizeof(b));
        struct mno_script s;
        struct mno_script_err e;
        memset(&e, 0, sizeof(e));
        if (mno_cmd_parse(b, n, &s, &e) != OT_E_FORMAT || e.offset != bad_cmds[i].offset) {
            fail_msg("%s: want FORMAT at %zu, got offset %zu (%s)", bad_cmds[i].name,
                     bad_cmds[i].offset, e.offset, e.msg);
        }
        assert_null(s.items);
        assert_int_equal(s.n, 0);
        assert_true(e.msg[0] != '\0');
    }
}

static const struct {
    const char *name;
    const char *hex;
    size_t sent;
    ot_err want;
    size_t n;
} rsps[] = {
    {"count absent",
     "AF8023029000"
     "0000",
     2, OT_OK, 1},
    {"count 2 bytes non-minimal", "AF8080020001230290000000", 2, OT_E_FORMAT, 0},
    {"count 0",
     "AF80800100"
     "0000",
     2, OT_E_FORMAT, 0},
    {"count above sent",
     "AF8080010323029000230290002302900000"
     "00",
     2, OT_E_FORMAT, 0},
    {"count disagrees", "AF80800102230290000000", 2, OT_E_FORMAT, 0},
    {"more R-APDUs than sent",
     "AF802302900023029000"
     "0000",
     1, OT_E_FORMAT, 0},
    {"R-APDU of one byte",
     "AF80230190"
     "0000",
     1, OT_E_FORMAT, 0},
    {"C-APDU tag in a response",
     "AF8022029000"
     "0000",
     1, OT_E_FORMAT, 0},
    {"count after R-APDU",
     "AF8023029000800101"
     "0000",
     1, OT_E_FORMAT, 0},
    {"command template",
     "AE8023029000"
     "0000",
     1, OT_E_FORMAT, 0},
    {"empty", "", 1, OT_E_FORMAT, 0},
    {"two-byte count",
     "AF80800201002302900023029000"
     "0000",
     300, OT_E_FORMAT, 0},
};

static void test_rsp_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(rsps); i++) {
        uint8_t b[128];
        size_t n = testutil_unhex(rsps[i].hex, b, sizeof(b));
        struct mno_script s;
        struct mno_script_err e;
        ot_err got = mno_rsp_parse(n ? b : NULL, n, rsps[i].sent, &s, &e);
        if (got != rsps[i].want || s.n != rsps[i].n) {
            fail_msg("%s: got %d n=%zu (%s)", rsps[i].name, (int)got, s.n, e.msg);
        }
        mno_script_free(&s);
    }
}

static void test_outcome(void **state)
{
    /* IU with a guard, then EA: a guard mismatch stops there even with
     * error action 01. */
    uint8_t cmd[64];
    uint8_t rsp[64];
    size_t cn = testutil_unhex("AE80820101220880500000"
                               "02AABB00C1029000"
                               "2205"
                               "8482330000"
                               "0000",
                               cmd, sizeof(cmd));
    size_t rn;
    struct mno_script c;
    struct mno_script r;
    struct mno_script_err e;
    size_t stop = 0;
    uint16_t sw = 0;

    (void)state;
    assert_int_equal(mno_cmd_parse(cmd, cn, &c, &e), OT_OK);
    assert_true(c.cont);
    assert_non_null(c.items[0].guard);
    rn = testutil_unhex("AF8080010123026A88"
                        "0000",
                        rsp, sizeof(rsp));
    assert_int_equal(mno_rsp_parse(rsp, rn, c.n, &r, &e), OT_OK);
    assert_int_equal(mno_script_outcome(&c, &r, &stop, &sw), OT_E_SW);
    assert_int_equal(stop, 0);
    assert_int_equal(sw, 0x6A88);
    mno_script_free(&r);
    /* Guard matches, EA fails 6982: with error action 01 every C-APDU ran. */
    rn = testutil_unhex("AF80800102230290002302698200"
                        "00",
                        rsp, sizeof(rsp));
    assert_int_equal(mno_rsp_parse(rsp, rn, c.n, &r, &e), OT_OK);
    assert_int_equal(mno_script_outcome(&c, &r, &stop, &sw), OT_OK);
    mno_script_free(&r);
    c.cont = false;
    rn = testutil_unhex("AF80800102230290002302698200"
                        "00",
                        rsp, sizeof(rsp));
    assert_int_equal(mno_rsp_parse(rsp, rn, c.n, &r, &e), OT_OK);
    assert_int_equal(mno_script_outcome(&c, &r, &stop, &sw), OT_E_SW);
    assert_int_equal(stop, 1);
    assert_int_equal(sw, 0x6982);
    mno_script_free(&r);
    mno_script_free(&c);
    assert_true(mno_sw_ok(0x9000));
    assert_true(mno_sw_ok(0x6110));
    assert_true(mno_sw_ok(0x6310));
    assert_false(mno_sw_ok(0x63C2));
    assert_false(mno_sw_ok(0x6A82));
}

static void test_long_lengths(void **state)
{
    /* A 300-byte C-APDU (extended Lc) is written 22 82 01 2C and parsed back. */
    uint8_t apdu[300];
    struct mno_item it = {apdu, sizeof(apdu), NULL, 0};
    struct ot_buf b;
    struct mno_script s;
    struct mno_script_err e;

    (void)state;
    memset(apdu, 0x11, sizeof(apdu));
    apdu[0] = 0x80;
    apdu[1] = 0xE8;
    apdu[4] = 0x00; /* extended Lc = 293 */
    apdu[5] = 0x01;
    apdu[6] = 0x25;
    ot_buf_init(&b, 0);
    assert_int_equal(mno_cmd_build(false, &it, 1, &b), OT_OK);
    assert_int_equal(b.data[2], 0x22);
    assert_int_equal(b.data[3], 0x82);
    assert_int_equal(b.data[4], 0x01);
    assert_int_equal(b.data[5], 0x2C);
    assert_int_equal(mno_cmd_parse(b.data, b.len, &s, &e), OT_OK);
    assert_int_equal(s.items[0].n, 300);
    mno_script_free(&s);
    ot_buf_free(&b);
}

static void test_job_table(void **state)
{
    enum mno_job_state to;
    enum mno_job_state s;

    (void)state;
    assert_int_equal(mno_job_next(MNO_J_QUEUED, MNO_EV_WAKE, &to), OT_OK);
    assert_int_equal(to, MNO_J_DELIVERING);
    assert_int_equal(mno_job_next(MNO_J_RUNNING, MNO_EV_LOST, &to), OT_OK);
    assert_int_equal(to, MNO_J_OUTCOME_UNKNOWN);
    /* outcome_unknown never runs again by itself: only the submitter's
     * requeue leaves it for the queue. */
    for (int ev = 0; ev < MNO_EV_N_EVENTS; ev++) {
        if (mno_job_next(MNO_J_OUTCOME_UNKNOWN, (enum mno_job_event)ev, &to) == OT_OK) {
            assert_true(ev == MNO_EV_REQUEUE || ev == MNO_EV_GIVE_UP);
        }
    }
    /* Terminal states have no way out. */
    for (int st = 0; st < MNO_J_N_STATES; st++) {
        if (!mno_job_terminal((enum mno_job_state)st)) {
            continue;
        }
        for (int ev = 0; ev < MNO_EV_N_EVENTS; ev++) {
            assert_int_equal(mno_job_next((enum mno_job_state)st, (enum mno_job_event)ev, &to),
                             OT_E_STATE);
        }
    }
    assert_int_equal(mno_job_next(MNO_J_DONE, MNO_EV_CANCEL, &to), OT_E_STATE);
    assert_int_equal(mno_job_state_parse("outcome_unknown", &s), OT_OK);
    assert_int_equal(s, MNO_J_OUTCOME_UNKNOWN);
    assert_int_equal(mno_job_state_parse("Done", &s), OT_E_FORMAT);
}

/* docs/mno.md prints the transition table exactly as the code has it. */
static void test_doc_table(void **state)
{
    char *table = NULL;
    size_t tlen = 0;
    FILE *mem = open_memstream(&table, &tlen);
    FILE *doc = fopen(OT_SOURCE_DIR "/docs/mno.md", "rb");
    char *text;
    long n;

    (void)state;
    assert_non_null(mem);
    assert_non_null(doc);
    mno_job_table_md(mem);
    fclose(mem);
    assert_int_equal(fseek(doc, 0, SEEK_END), 0);
    n = ftell(doc);
    assert_true(n > 0);
    rewind(doc);
    text = calloc(1, (size_t)n + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)n, doc), (size_t)n);
    fclose(doc);
    if (strstr(text, table) == NULL) {
        fail_msg("docs/mno.md does not hold the transition table:\n%s", table);
    }
    free(text);
    free(table);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_session), cmocka_unit_test(test_cmd_malformed),
        cmocka_unit_test(test_rsp_cases),       cmocka_unit_test(test_outcome),
        cmocka_unit_test(test_long_lengths),    cmocka_unit_test(test_job_table),
        cmocka_unit_test(test_doc_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
