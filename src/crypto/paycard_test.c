/* Card key diversification and the card cryptograms, against known answers
 * computed independently with Python "cryptography" (AES, CMAC) from the
 * constructions in paycard.h. */
#include "crypto/paycard.h"

#include "core/testutil.h"

#define IMK "000102030405060708090A0B0C0D0E0F"

static void test_derive_known(void **state)
{
    (void)state;
    uint8_t imk[16], pan[8], pid[8], out[16];
    testutil_unhex(IMK, imk, sizeof imk);
    testutil_unhex("5413330089010434", pan, sizeof pan);
    testutil_unhex("0102030405060708", pid, sizeof pid);
    assert_int_equal(paycard_derive(imk, 16, PAYCARD_DC_EMV_AC, pan, 8, out), OT_OK);
    testutil_assert_hex(out, 16, "4D62D13C8CE2A0047952EE117972EF4C");
    assert_int_equal(paycard_derive(imk, 16, PAYCARD_DC_TRANSIT, pid, 8, out), OT_OK);
    testutil_assert_hex(out, 16, "C0383FE19EEE18CBBB39C10655122B53");
}

static void test_derive_errors(void **state)
{
    (void)state;
    uint8_t imk[32] = {0}, id[40] = {0}, out[16];
    assert_int_equal(paycard_derive(NULL, 16, 0x50, id, 8, out), OT_E_ARG);
    assert_int_equal(paycard_derive(imk, 16, 0x50, NULL, 8, out), OT_E_ARG);
    assert_int_equal(paycard_derive(imk, 15, 0x50, id, 8, out), OT_E_KEY);
    assert_int_equal(paycard_derive(imk, 16, 0x50, id, 0, out), OT_E_RANGE);
    assert_int_equal(paycard_derive(imk, 16, 0x50, id, PAYCARD_MAX_ID + 1, out), OT_E_RANGE);
    assert_int_equal(paycard_derive(imk, 32, 0x50, id, PAYCARD_MAX_ID, out), OT_OK);
}

static void test_emv_ac_known(void **state)
{
    (void)state;
    uint8_t mk[16], data[64], ac[8];
    size_t n;
    testutil_unhex("4D62D13C8CE2A0047952EE117972EF4C", mk, sizeof mk);
    n = testutil_unhex("00000000100000000000000002500000000000097823120700001122334418000012", data,
                       sizeof data);
    assert_int_equal(paycard_emv_ac(mk, 0x0012, data, n, ac), OT_OK);
    testutil_assert_hex(ac, 8, "031FD1881C015554");
    /* another ATC gives another session key and AC */
    uint8_t ac2[8];
    assert_int_equal(paycard_emv_ac(mk, 0x0013, data, n, ac2), OT_OK);
    assert_memory_not_equal(ac, ac2, 8);
    assert_int_equal(paycard_emv_ac(mk, 1, NULL, 1, ac), OT_E_ARG);
}

static void test_transit_mac_known(void **state)
{
    (void)state;
    uint8_t k[16], pid[8], mac[8];
    testutil_unhex("C0383FE19EEE18CBBB39C10655122B53", k, sizeof k);
    testutil_unhex("0102030405060708", pid, sizeof pid);
    assert_int_equal(paycard_transit_mac(k, PAYCARD_TAG_CREDIT, 500, 1, pid, mac), OT_OK);
    testutil_assert_hex(mac, 8, "54CF300233E035A7");
    assert_int_equal(paycard_transit_mac(NULL, 0x52, 1, 1, pid, mac), OT_E_ARG);
}

static void test_pan_bcd(void **state)
{
    (void)state;
    uint8_t b[10];
    size_t n = 0;
    assert_int_equal(paycard_pan_bcd("5413330089010434", b, &n), OT_OK);
    testutil_assert_hex(b, n, "5413330089010434");
    assert_int_equal(paycard_pan_bcd("1234567890123456789", b, &n), OT_OK);
    testutil_assert_hex(b, n, "1234567890123456789F");
    assert_int_equal(paycard_pan_bcd("1", b, &n), OT_OK);
    testutil_assert_hex(b, n, "1F");
    assert_int_equal(paycard_pan_bcd("", b, &n), OT_E_RANGE);
    assert_int_equal(paycard_pan_bcd("12345678901234567890", b, &n), OT_E_RANGE);
    assert_int_equal(paycard_pan_bcd("12a4", b, &n), OT_E_FORMAT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_derive_known), cmocka_unit_test(test_derive_errors),
        cmocka_unit_test(test_emv_ac_known), cmocka_unit_test(test_transit_mac_known),
        cmocka_unit_test(test_pan_bcd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
