/* Tests of the telecom PIN/PUK applet (telecom.c) through the card,
 * including PUK exhaustion blocking the card for good (seed 000). */
#include "se/applets/aptest.h"

#include "gp/privs.h"

#define TC_AID   "A0000000871002"
#define TC_AID2  "A0000000871003"
#define PIN_1234 "31323334FFFFFFFF"
#define PIN_1235 "31323335FFFFFFFF"
#define PIN_5678 "35363738FFFFFFFF"
#define PUK_DEF  "3132333435363738"
#define PUK_BAD  "3132333435363739"

static struct aptest *tc_card(void)
{
    struct aptest *t = aptest_new("{\"aid\":\"" TC_AID "\",\"package\":\"F04F54534D04\"},"
                                  "{\"aid\":\"" TC_AID2 "\",\"package\":\"F04F54534D04\","
                                  "\"params\":\"80043030303081083837363534333231\"}");
    assert_int_equal(aptest_select(t, TC_AID), 0x9000);
    aptest_assert_resp(t, "6F098407" TC_AID);
    return t;
}

static void test_telecom_pin(void **state)
{
    (void)state;
    struct aptest *t = tc_card();
    assert_int_equal(aptest_tx(t, "0020000100"), 0x63C3);
    assert_int_equal(aptest_tx(t, "002000010831323334FFFFFFFF"), 0x9000);
    assert_int_equal(aptest_tx(t, "0020000100"), 0x9000);
    assert_int_equal(aptest_tx(t, "80F2000003"), 0x9000);
    aptest_assert_resp(t, "01030A");
    assert_int_equal(aptest_tx(t, "0020000108" PIN_1235), 0x63C2);
    assert_int_equal(aptest_tx(t, "0020000100"), 0x63C2);
    assert_int_equal(aptest_tx(t, "0020000108" PIN_1234), 0x9000);
    assert_int_equal(aptest_tx(t, "0020000100"), 0x9000);
    /* CHANGE PIN: a wrong old PIN counts as a failed verification. */
    assert_int_equal(aptest_tx(t, "0024000110" PIN_1235 PIN_5678), 0x63C2);
    assert_int_equal(aptest_tx(t, "0024000110" PIN_1234 PIN_5678), 0x9000);
    assert_int_equal(aptest_tx(t, "0020000108" PIN_1234), 0x63C2);
    assert_int_equal(aptest_tx(t, "0020000108" PIN_5678), 0x9000);
    /* The new PIN is on the image. */
    aptest_reopen(t);
    assert_int_equal(aptest_select(t, TC_AID), 0x9000);
    assert_int_equal(aptest_tx(t, "0020000100"), 0x63C3); /* volatile: not verified */
    assert_int_equal(aptest_tx(t, "0020000108" PIN_5678), 0x9000);
    /* The second instance took its PIN from the install parameters. */
    assert_int_equal(aptest_select(t, TC_AID2), 0x9000);
    assert_int_equal(aptest_tx(t, "002000010830303030FFFFFFFF"), 0x9000);
    aptest_free(t);
}

static void test_telecom_pin_block_unblock(void **state)
{
    (void)state;
    struct aptest *t = tc_card();
    assert_int_equal(aptest_tx(t, "0020000108" PIN_1235), 0x63C2);
    assert_int_equal(aptest_tx(t, "0020000108" PIN_1235), 0x63C1);
    aptest_reopen(t);
    assert_int_equal(aptest_select(t, TC_AID), 0x9000);
    assert_int_equal(aptest_tx(t, "0020000108" PIN_1235), 0x63C0);
    assert_int_equal(aptest_tx(t, "0020000108" PIN_1234), 0x6983);
    assert_int_equal(aptest_tx(t, "0020000100"), 0x6983);
    assert_int_equal(aptest_tx(t, "0024000110" PIN_1234 PIN_5678), 0x6983);
    assert_int_equal(aptest_tx(t, "80F2000003"), 0x9000);
    aptest_assert_resp(t, "02000A");
    /* A wrong PUK, then the right one with a new PIN. */
    assert_int_equal(aptest_tx(t, "002C000100"), 0x63CA);
    assert_int_equal(aptest_tx(t, "002C000110" PUK_BAD PIN_5678), 0x63C9);
    assert_int_equal(aptest_tx(t, "002C000110" PUK_DEF PIN_5678), 0x9000);
    assert_int_equal(aptest_tx(t, "80F2000003"), 0x9000);
    aptest_assert_resp(t, "01030A");
    assert_int_equal(aptest_tx(t, "0020000108" PIN_1234), 0x63C2);
    assert_int_equal(aptest_tx(t, "0020000108" PIN_5678), 0x9000);
    aptest_free(t);
}

static void test_telecom_puk_exhaustion_blocks_card(void **state)
{
    (void)state;
    struct aptest *t = tc_card();
    for (unsigned i = 1; i <= 10; i++) {
        assert_int_equal(aptest_tx(t, "002C000110" PUK_BAD PIN_5678), 0x63C0 | (10 - i));
        if (i == 5) {
            aptest_reopen(t); /* the PUK counter is persistent too */
            assert_int_equal(aptest_select(t, TC_AID), 0x9000);
        }
    }
    assert_int_equal(aptest_tx(t, "002C000100"), 0x6983);
    assert_int_equal(aptest_tx(t, "0020000108" PIN_1234), 0x9000); /* the PIN still works */
    assert_int_equal(t->c->st.card_lcs, GP_LCS_CARD_SECURED);
    /* The eleventh PUK -- even the right one -- blocks the card for good. */
    assert_int_equal(aptest_tx(t, "002C000110" PUK_DEF PIN_5678), 0x6983);
    assert_int_equal(t->c->st.card_lcs, GP_LCS_CARD_TERMINATED);
    assert_int_not_equal(aptest_tx(t, "0020000108" PIN_1234), 0x9000);
    aptest_reopen(t);
    assert_int_equal(t->c->st.card_lcs, GP_LCS_CARD_TERMINATED);
    assert_int_not_equal(aptest_select(t, TC_AID), 0x9000);
    aptest_free(t);
}

static ot_err tc_fail_write(void *ctx, unsigned step)
{
    (void)ctx;
    (void)step;
    return OT_E_IO;
}

/* The block is for good even when the image cannot be written at that
 * moment: the applet's 6983 must not roll it back, and the next write that
 * works stores it. */
static void test_telecom_puk_block_survives_write_failure(void **state)
{
    (void)state;
    struct aptest *t = tc_card();
    for (unsigned i = 1; i <= 10; i++) {
        assert_int_equal(aptest_tx(t, "002C000110" PUK_BAD PIN_5678), 0x63C0 | (10 - i));
    }
    t->c->store_ops.before_step = tc_fail_write;
    uint8_t cmd[64], r[SE_MAX_RESP];
    size_t n = testutil_unhex("002C000110" PUK_DEF PIN_5678, cmd, sizeof cmd);
    size_t rl = sizeof r;
    assert_int_equal(se_card_transmit(t->c, cmd, n, r, &rl), OT_E_DB);
    testutil_assert_hex(r, rl, "6983");
    assert_int_equal(t->c->st.card_lcs, GP_LCS_CARD_TERMINATED);
    assert_int_equal(t->c->st.apps[0].lcs, GP_LCS_CARD_TERMINATED);
    /* Still blocked after a failing command, then written once writes work. */
    rl = sizeof r;
    n = testutil_unhex("0020000108" PIN_1234, cmd, sizeof cmd);
    assert_int_equal(se_card_transmit(t->c, cmd, n, r, &rl), OT_OK);
    assert_int_not_equal(ot_get_u16be(r + rl - 2), 0x9000);
    assert_int_equal(t->c->st.card_lcs, GP_LCS_CARD_TERMINATED);
    t->c->store_ops.before_step = NULL;
    assert_int_equal(aptest_tx(t, "00A4040000"), 0x9000); /* the ISD only */
    assert_int_equal(aptest_tx(t, "80CA006600"), 0x9000);
    aptest_reopen(t);
    assert_int_equal(t->c->st.card_lcs, GP_LCS_CARD_TERMINATED);
    aptest_free(t);
}

struct tc_row {
    const char *cmd;
    uint16_t sw;
};

static void test_telecom_errors(void **state)
{
    (void)state;
    static const struct tc_row rows[] = {
        {"0020010108" PIN_1234, 0x6A86},
        {"0020000208" PIN_1234, 0x6A86},
        {"002000010731323334FFFFFF", 0x6700},
        {"002000010931323334FFFFFFFFFF", 0x6700},
        {"0020000108313233A4FFFFFFFF", 0x6A80},
        {"002000010831323334FF00FFFF", 0x6A80},
        {"0020000108FFFFFFFFFFFFFFFF", 0x6A80},
        {"8020000108" PIN_1234, 0x6E00},
        {"0024000108" PIN_1234, 0x6700},
        {"0024000110" PIN_1234 "313233FFFFFFFFFF", 0x6A80}, /* new PIN of 3 digits */
        {"002C000108" PUK_DEF, 0x6700},
        {"002C000110" PUK_DEF "FFFFFFFFFFFFFFFF", 0x6A80},
        {"002C010110" PUK_DEF PIN_1234, 0x6A86},
        {"00F2000003", 0x6E00},
        {"80F2010003", 0x6A86},
        {"80F2000002", 0x6C03},
        {"80F200000100", 0x6700},
        {"00B0000000", 0x6D00},
        {"0C20000108" PIN_1234, 0x6882},
    };
    struct aptest *t = tc_card();
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct ot_buf a, b;
        aptest_image(t, &a);
        uint16_t sw = aptest_tx(t, rows[i].cmd);
        if (sw != rows[i].sw) {
            print_error("row %zu: %s -> %04X\n", i, rows[i].cmd, sw);
        }
        assert_int_equal(sw, rows[i].sw);
        aptest_image(t, &b);
        assert_int_equal(a.len, b.len);
        assert_memory_equal(a.data, b.data, a.len);
        ot_buf_free(&a);
        ot_buf_free(&b);
    }
    assert_int_equal(aptest_tx(t, "0020000100"), 0x63C3);
    aptest_free(t);
}

static void test_telecom_perso(void **state)
{
    (void)state;
    static const struct {
        uint8_t p1;
        const char *data;
        uint16_t sw;
    } rows[] = {
        {0x90, "81073837363534333231", 0x6A80}, /* PUK of 7 digits */
        {0x90, "8003313233", 0x6A80},           /* PIN of 3 digits */
        {0x90, "8009313233343536373839", 0x6A80},
        {0x90, "800431323A34", 0x6A80},
        {0x90, "820100", 0x6A80},
        {0x88, "80043939393939", 0x6A80}, /* DGI format */
    };
    struct aptest *t = tc_card();
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        assert_int_equal(aptest_perso(t, TC_AID, rows[i].p1, rows[i].data), rows[i].sw);
    }
    assert_int_equal(aptest_perso(t, TC_AID, 0x90,
                                  "80083132333435363738"
                                  "81083030303030303030"),
                     0x9000);
    assert_int_equal(aptest_select(t, TC_AID), 0x9000);
    assert_int_equal(aptest_tx(t, "00200001083132333435363738"), 0x9000);
    assert_int_equal(aptest_tx(t, "002C00011030303030303030303132333435363738"), 0x9000);
    /* A bad install parameter refuses the install. */
    assert_int_equal(
        aptest_install(t, "F04F54534D04", "F04F54534D0401", "A0000000871009", "8003313233"),
        0x6A80);
    assert_int_equal(aptest_install(t, "F04F54534D04", "F04F54534D0401", "A0000000871009", ""),
                     0x9000);
    assert_int_equal(aptest_select(t, "A0000000871009"), 0x9000);
    assert_int_equal(aptest_tx(t, "0020000108" PIN_1234), 0x9000);
    aptest_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_telecom_pin),
        cmocka_unit_test(test_telecom_pin_block_unblock),
        cmocka_unit_test(test_telecom_puk_exhaustion_blocks_card),
        cmocka_unit_test(test_telecom_puk_block_survives_write_failure),
        cmocka_unit_test(test_telecom_errors),
        cmocka_unit_test(test_telecom_perso),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
