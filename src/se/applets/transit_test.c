/* Tests of the transit purse (transit.c) through the card. Credit MACs and
 * balance proofs are checked against known answers computed independently
 * (Python "cryptography" AES-CMAC) and with cmac_aes for other values. */
#include "se/applets/aptest.h"
#include "se/applets/registry.h"

#include "crypto/cmac.h"

#define TR_AID  "F04F54534D0301AA"
#define TR_AID2 "F04F54534D0301BB"
#define TR_KEY  "2B7E151628AED2A6ABF7158809CF4F3C"
#define TR_ID   "0102030405060708"
/* Key, purse id, balance 10.00, limit 100.00. */
#define TR_PERSO "DF0110" TR_KEY "DF0408" TR_ID "DF0504000003E8DF060400002710"
#define TR_APPS                                                                          \
    "{\"aid\":\"" TR_AID "\",\"package\":\"F04F54534D03\",\"params\":\"" TR_PERSO "\"}," \
    "{\"aid\":\"" TR_AID2 "\",\"package\":\"F04F54534D03\"}"

static void tr_mac(uint8_t tag, uint32_t a, uint32_t b, uint8_t mac[8])
{
    uint8_t key[16], in[17], full[16];
    testutil_unhex(TR_KEY, key, sizeof key);
    in[0] = tag;
    ot_put_u32be(in + 1, a);
    ot_put_u32be(in + 5, b);
    testutil_unhex(TR_ID, in + 9, 8);
    assert_int_equal(cmac_aes(key, sizeof key, in, sizeof in, full), OT_OK);
    memcpy(mac, full, 8);
}

/* CREDIT with a correct MAC (or a corrupted one). */
static uint16_t tr_credit(struct aptest *t, uint32_t amount, uint32_t ctr, bool good)
{
    uint8_t cmd[22] = {0x80, 0x52, 0x00, 0x00, 0x10};
    ot_put_u32be(cmd + 5, amount);
    ot_put_u32be(cmd + 9, ctr);
    tr_mac(0x52, amount, ctr, cmd + 13);
    if (!good) {
        cmd[20] ^= 0x01;
    }
    cmd[21] = 0x00;
    return aptest_txb(t, cmd, sizeof cmd);
}

/* The answer to a CREDIT: new balance, counter and a proof that verifies. */
static void tr_check_proof(const struct aptest *t, uint32_t balance, uint32_t ctr)
{
    uint8_t mac[8];
    assert_int_equal(t->rlen, 16);
    assert_int_equal(ot_get_u32be(t->resp), balance);
    assert_int_equal(ot_get_u32be(t->resp + 4), ctr);
    tr_mac(0xD2, balance, ctr, mac);
    assert_memory_equal(t->resp + 8, mac, 8);
}

static void tr_assert_image_same(struct aptest *t, const char *cmd, uint16_t want)
{
    struct ot_buf a, b;
    aptest_image(t, &a);
    assert_int_equal(aptest_tx(t, cmd), want);
    aptest_image(t, &b);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    ot_buf_free(&a);
    ot_buf_free(&b);
}

static void test_transit_balance_debit(void **state)
{
    (void)state;
    struct aptest *t = aptest_new(TR_APPS);
    assert_int_equal(aptest_select(t, TR_AID), 0x9000);
    aptest_assert_resp(t, "6F0A8408" TR_AID);
    assert_int_equal(aptest_tx(t, "805C000004"), 0x9000);
    aptest_assert_resp(t, "000003E8");
    assert_int_equal(aptest_tx(t, "805C010010"), 0x9000);
    aptest_assert_resp(t, "000003E800000000" TR_ID);
    assert_int_equal(aptest_tx(t, "8054000004000000FA04"), 0x9000);
    aptest_assert_resp(t, "000002EE");
    /* Insufficient funds: 6985 and nothing changes. */
    tr_assert_image_same(t, "8054000004000002EF04", 0x6985);
    assert_int_equal(aptest_tx(t, "805C000000"), 0x9000);
    aptest_assert_resp(t, "000002EE");
    /* The balance is on the image: it survives a power cycle. */
    aptest_reopen(t);
    assert_int_equal(aptest_select(t, TR_AID), 0x9000);
    assert_int_equal(aptest_tx(t, "8054000004000002EE"), 0x9000);
    aptest_assert_resp(t, "00000000");
    tr_assert_image_same(t, "805400000400000001", 0x6985);
    aptest_free(t);
}

static void test_transit_credit(void **state)
{
    (void)state;
    struct aptest *t = aptest_new(TR_APPS);
    assert_int_equal(aptest_select(t, TR_AID), 0x9000);
    /* Known answer: credit 5.00 with counter 1. */
    assert_int_equal(aptest_tx(t, "8052000010000001F400000001AD5842B1AA932BE800"), 0x9000);
    aptest_assert_resp(t, "000005DC00000001999924ABF2563A11");
    tr_check_proof(t, 1500, 1);
    /* The same credit again (replay): 6982, nothing changes. */
    tr_assert_image_same(t, "8052000010000001F400000001AD5842B1AA932BE800", 0x6982);
    /* A counter that skips one, or an older one, with a valid MAC. */
    assert_int_equal(tr_credit(t, 100, 3, true), 0x6982);
    assert_int_equal(tr_credit(t, 100, 0, true), 0x6982);
    /* A wrong MAC with the right counter. */
    assert_int_equal(tr_credit(t, 100, 2, false), 0x6982);
    assert_int_equal(aptest_tx(t, "805C010010"), 0x9000);
    aptest_assert_resp(t, "000005DC00000001" TR_ID);
    /* Amount 0, and over the balance limit (100.00): with valid MACs. */
    assert_int_equal(tr_credit(t, 0, 2, true), 0x6A80);
    assert_int_equal(tr_credit(t, 10000 - 1500 + 1, 2, true), 0x6985);
    assert_int_equal(tr_credit(t, 0xFFFFFFFFu, 2, true), 0x6985);
    /* Up to the limit exactly. */
    assert_int_equal(tr_credit(t, 10000 - 1500, 2, true), 0x9000);
    tr_check_proof(t, 10000, 2);
    /* Counters survive a power cycle: the old credit stays refused. */
    aptest_reopen(t);
    assert_int_equal(aptest_select(t, TR_AID), 0x9000);
    assert_int_equal(tr_credit(t, 10000 - 1500, 2, true), 0x6982);
    assert_int_equal(aptest_tx(t, "8054000004000003E8"), 0x9000);
    assert_int_equal(tr_credit(t, 1, 3, true), 0x9000);
    tr_check_proof(t, 9001, 3);

    /* A purse without key and id cannot be credited. */
    assert_int_equal(aptest_select(t, TR_AID2), 0x9000);
    assert_int_equal(tr_credit(t, 1, 1, true), 0x6985);
    aptest_free(t);
}

struct tr_row {
    const char *cmd;
    uint16_t sw;
};

static void test_transit_errors(void **state)
{
    (void)state;
    static const struct tr_row rows[] = {
        {"005C000004", 0x6E00},
        {"905C000004", 0x6884},
        {"8C5C000004", 0x6882},
        {"805C020004", 0x6A86},
        {"805C000104", 0x6A86},
        {"805C00000100", 0x6700},
        {"805C000002", 0x6C04},
        {"805C01000C", 0x6C10},
        {"80540000030000FA", 0x6700},
        {"805400000500000000FA", 0x6700},
        {"805401000400000001", 0x6A86},
        {"805400000400000000", 0x6A80},
        {"805400000400000001"
         "02",
         0x6C04},
        {"8052000008000000010000000100", 0x6700},
        {"8052000110000001F400000001AD5842B1AA932BE8", 0x6A86},
        {"8050000000", 0x6D00},
        {"00B2010C00", 0x6D00},
    };
    struct aptest *t = aptest_new(TR_APPS);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        assert_int_equal(aptest_select(t, TR_AID), 0x9000);
        uint16_t sw;
        struct ot_buf a, b;
        aptest_image(t, &a);
        sw = aptest_tx(t, rows[i].cmd);
        if (sw != rows[i].sw) {
            print_error("row %zu: %s -> %04X\n", i, rows[i].cmd, sw);
        }
        assert_int_equal(sw, rows[i].sw);
        assert_int_equal(t->rlen, 0);
        aptest_image(t, &b);
        assert_int_equal(a.len, b.len);
        assert_memory_equal(a.data, b.data, a.len);
        ot_buf_free(&a);
        ot_buf_free(&b);
    }
    aptest_free(t);
}

struct tr_perso_row {
    uint8_t p1;
    const char *data;
    uint16_t sw;
};

static void test_transit_perso(void **state)
{
    (void)state;
    static const struct tr_perso_row rows[] = {
        {0x90, "DF010F2B7E151628AED2A6ABF7158809CF4F", 0x6A80}, /* 15-byte key */
        {0x90, "DF040701020304050607", 0x6A80},                 /* 7-byte id */
        {0x90, "DF0503000100", 0x6A80},                         /* 3-byte balance */
        {0x90, "DF0504000F4241", 0x6A80},                       /* over the limit */
        {0x90, "DF050400000002DF060400000001", 0x6A80},         /* limit under balance */
        {0x90, "DF070100", 0x6A80},                             /* unknown tag */
        {0x88, "DF0504000003E8", 0x6A80},                       /* DGI format */
    };
    struct aptest *t = aptest_new(TR_APPS);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        assert_int_equal(aptest_perso(t, TR_AID2, rows[i].p1, rows[i].data), rows[i].sw);
    }
    /* A good personalization of the second purse, then a load. */
    assert_int_equal(aptest_perso(t, TR_AID2, 0x90, TR_PERSO), 0x9000);
    assert_int_equal(aptest_select(t, TR_AID2), 0x9000);
    assert_int_equal(tr_credit(t, 500, 1, true), 0x9000);
    tr_check_proof(t, 1500, 1);
    /* The initial balance can only be set while the purse is unused. */
    assert_int_equal(aptest_perso(t, TR_AID2, 0x90, "DF050400000001"), 0x6A80);
    aptest_free(t);
}

static void test_transit_wipe(void **state)
{
    (void)state;
    struct aptest *t = aptest_new(TR_APPS);
    struct se_applet_ctx x;
    assert_int_equal(aptest_select(t, TR_AID), 0x9000);
    assert_int_equal(tr_credit(t, 500, 1, true), 0x9000);
    aptest_ctx(t, TR_AID, &x);
    se_transit_ops.wipe(&x);
    assert_int_equal(aptest_select(t, TR_AID), 0x9000);
    /* Value, key and id are gone; the credit counter stays. */
    assert_int_equal(aptest_tx(t, "805C010010"), 0x9000);
    aptest_assert_resp(t, "0000000000000001"
                          "0000000000000000");
    assert_int_equal(tr_credit(t, 500, 2, true), 0x6985);
    aptest_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transit_balance_debit), cmocka_unit_test(test_transit_credit),
        cmocka_unit_test(test_transit_errors),        cmocka_unit_test(test_transit_perso),
        cmocka_unit_test(test_transit_wipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
