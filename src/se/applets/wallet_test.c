/* Tests of the wallet companion applet (wallet.c) through the card. */
#include "se/applets/aptest.h"

#define WA_AID  "F04F54534D0501AA"
#define SVC_TR  "E1164F08F04F54534D0301AA50075472616E736974C10101"
#define SVC_PAY "E1124F07A0000000041010500456495341C10101"

static void test_wallet_services(void **state)
{
    (void)state;
    struct aptest *t = aptest_new("{\"aid\":\"" WA_AID
                                  "\",\"package\":\"F04F54534D05\",\"params\":\"" SVC_TR "\"}");
    assert_int_equal(aptest_select(t, WA_AID), 0x9000);
    aptest_assert_resp(t, "6F0A8408" WA_AID);
    assert_int_equal(aptest_tx(t, "80CA00E000"), 0x9000);
    aptest_assert_resp(t, "E018" SVC_TR);

    assert_int_equal(aptest_perso(t, WA_AID, 0x90, SVC_PAY), 0x9000);
    assert_int_equal(aptest_select(t, WA_AID), 0x9000);
    assert_int_equal(aptest_tx(t, "80CA00E000"), 0x9000);
    aptest_assert_resp(t, "E02C" SVC_TR SVC_PAY);
    /* Replacing keeps the order; removing closes the gap. */
    assert_int_equal(aptest_perso(t, WA_AID, 0x90,
                                  "E1124F07A000000004101050044D414553C10102"
                                  "E20A4F08F04F54534D0301AA"),
                     0x9000);
    assert_int_equal(aptest_select(t, WA_AID), 0x9000);
    assert_int_equal(aptest_tx(t, "80CA00E000"), 0x9000);
    aptest_assert_resp(t, "E014E1124F07A000000004101050044D414553C10102");
    aptest_reopen(t);
    assert_int_equal(aptest_select(t, WA_AID), 0x9000);
    assert_int_equal(aptest_tx(t, "80CA00E000"), 0x9000);
    aptest_assert_resp(t, "E014E1124F07A000000004101050044D414553C10102");
    aptest_free(t);
}

static void test_wallet_errors(void **state)
{
    (void)state;
    static const struct {
        const char *cmd;
        uint16_t sw;
    } cmds[] = {
        {"80CA00E100", 0x6A88}, {"80CA01E000", 0x6A88},   {"00CA00E000", 0x6E00},
        {"80CA00E005", 0x6C1A}, {"80CA00E00100", 0x6700}, {"80F2000000", 0x6D00},
        {"8CCA00E000", 0x6882},
    };
    static const struct {
        uint8_t p1;
        const char *data;
        uint16_t sw;
    } perso[] = {
        {0x90, "E10D4F08F04F54534D0301AA500141", 0x6A80},             /* no status */
        {0x90, "E10C4F04F04F5453500141C10101", 0x6A80},               /* 4-byte AID */
        {0x90, "E10D4F08F04F54534D0301AAC10101", 0x6A80},             /* no name */
        {0x90, "E1134F08F04F54534D0301AA500141C10101990100", 0x6A80}, /* unknown tag */
        {0x90, "E1134F08F04F54534D0301AA500141C101014F01AA", 0x6A80},
        {0x90, "E3024F00", 0x6A80},
        {0x90, "E20A4F08F04F54534D0301BB", 0x6A88}, /* removing an unknown service */
        {0x88, SVC_PAY, 0x6A80},                    /* DGI format */
        {0x90, "E1", 0x6A80},
    };
    struct aptest *t = aptest_new("{\"aid\":\"" WA_AID
                                  "\",\"package\":\"F04F54534D05\",\"params\":\"" SVC_TR "\"}");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        assert_int_equal(aptest_select(t, WA_AID), 0x9000);
        assert_int_equal(aptest_tx(t, cmds[i].cmd), cmds[i].sw);
    }
    for (size_t i = 0; i < sizeof perso / sizeof perso[0]; i++) {
        uint16_t sw = aptest_perso(t, WA_AID, perso[i].p1, perso[i].data);
        if (sw != perso[i].sw) {
            print_error("perso row %zu -> %04X\n", i, sw);
        }
        assert_int_equal(sw, perso[i].sw);
    }
    assert_int_equal(aptest_select(t, WA_AID), 0x9000);
    assert_int_equal(aptest_tx(t, "80CA00E000"), 0x9000);
    aptest_assert_resp(t, "E018" SVC_TR);

    /* Sixteen services fit, the seventeenth does not (and the block that
     * carries it is refused as a whole). */
    char buf[400];
    for (unsigned i = 1; i < 16; i++) {
        snprintf(buf, sizeof buf, "E10D4F05F04F5453%02X500141C10100", i);
        assert_int_equal(aptest_perso(t, WA_AID, 0x90, buf), 0x9000);
    }
    assert_int_equal(aptest_perso(t, WA_AID, 0x90, "E10D4F05F04F5453FF500141C10100"), 0x6A84);
    assert_int_equal(aptest_perso(t, WA_AID, 0x90,
                                  "E20A4F08F04F54534D0301AA"
                                  "E10D4F05F04F5453FE500141C10100"
                                  "E10D4F05F04F5453FF500141C10100"),
                     0x6A84);
    assert_int_equal(aptest_select(t, WA_AID), 0x9000);
    assert_int_equal(aptest_tx(t, "80CA00E000"), 0x9000);
    assert_int_equal(t->rlen, 3 + 0x18 + 15 * 0x0F); /* E0 81 F9 */
    aptest_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wallet_services),
        cmocka_unit_test(test_wallet_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
