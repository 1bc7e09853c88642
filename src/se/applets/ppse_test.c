/* Tests of the PPSE module (ppse.c) through the card. */
#include "se/applets/aptest.h"

#define PPSE_AID "325041592E5359532E4444463031"
#define PPSE_APP "{\"aid\":\"" PPSE_AID "\",\"package\":\"F04F54534D01\"}"

static void test_ppse_empty(void **state)
{
    (void)state;
    struct aptest *t = aptest_new(PPSE_APP);
    assert_int_equal(aptest_select(t, PPSE_AID), 0x9000);
    aptest_assert_resp(t, "6F15840E" PPSE_AID "A503BF0C00");
    aptest_free(t);
}

static void test_ppse_lists_payment_apps(void **state)
{
    (void)state;
    /* Two payment instances (label and priority from the install parameters),
     * a transit purse (no directory entry) and a locked payment instance. */
    struct aptest *t = aptest_new(
        PPSE_APP
        ","
        "{\"aid\":\"A0000000041010\",\"package\":\"F04F54534D02\",\"params\":\"50045649534187010"
        "1\"},"
        "{\"aid\":\"F04F54534D0301AA\",\"package\":\"F04F54534D03\"},"
        "{\"aid\":\"A0000000031010\",\"package\":\"F04F54534D02\",\"params\":\"50024D43870102\"},"
        "{\"aid\":\"A0000000651010\",\"package\":\"F04F54534D02\",\"lcs\":\"LOCKED\"}");
    assert_int_equal(aptest_select(t, PPSE_AID), 0x9000);
    aptest_assert_resp(t, "6F3B840E" PPSE_AID "A529BF0C26"
                          "61124F07A0000000041010500456495341870101"
                          "61104F07A000000003101050024D43870102");
    aptest_free(t);
}

struct ppse_cmd_row {
    const char *cmd;
    uint16_t sw;
};

static void test_ppse_commands(void **state)
{
    (void)state;
    static const struct ppse_cmd_row rows[] = {
        {"80A8000002830000", 0x6D00}, /* no GPO here */
        {"00B2010C00", 0x6D00},       /* no records */
        {"80CA9F3600", 0x6D00},
        {"0C20000000", 0x6882}, /* secure messaging */
    };
    struct aptest *t = aptest_new(PPSE_APP);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        assert_int_equal(aptest_select(t, PPSE_AID), 0x9000);
        assert_int_equal(aptest_tx(t, rows[i].cmd), rows[i].sw);
        assert_int_equal(t->rlen, 0);
    }
    /* Nothing to personalize. */
    assert_int_equal(aptest_perso(t, PPSE_AID, 0x90, "500141"), 0x6985);
    aptest_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ppse_empty),
        cmocka_unit_test(test_ppse_lists_payment_apps),
        cmocka_unit_test(test_ppse_commands),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
