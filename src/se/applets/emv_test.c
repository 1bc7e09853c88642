/* Tests of the EMV-style payment module (emv.c) through the card: install
 * and personalization through the ISD under SCP03, then a terminal's view.
 * Cryptograms are checked with se_emv_compute_ac and with known answers
 * computed independently (Python "cryptography": AES-ECB + CMAC). */
#include "se/applets/aptest.h"
#include "se/applets/emv.h"
#include "se/applets/registry.h"

#include "core/tlv.h"

#define PPSE_AID "325041592E5359532E4444463031"
#define EMV_PKG  "F04F54534D02"
#define EMV_MOD  "F04F54534D0201"
#define EMV_AID  "A0000000041010"
#define CARD_KEY "00112233445566778899AABBCCDDEEFF"

/* Personalization in DGI format (one STORE DATA): MK_AC, PIN 1234, PIN try
 * counter/limit 3/3, FCI data (label VISA, priority 1, PDOL 9F66 04), GPO data
 * (AIP 1800, AFL SFI 1 records 1-2), record 1 (PAN, expiry, name), record 2
 * (CDOL1). */
#define REC1 "701E5A0847617390010100105F24033012315F200B4F50454E54534D2F444556"
#define REC2 "70178C159F02069F03069F1A0295055F2A029A039C019F3704"
#define PERSO_DGI                              \
    "800010" CARD_KEY "801008241234FFFFFFFFFF" \
    "9010020303"                               \
    "91020F5004564953418701019F38039F6604"     \
    "91040A82021800940408010200"               \
    "010120" REC1 "010219" REC2

/* CDOL1 data: amount 10.00, other 0, country 0250, TVR 0, currency 0978,
 * date 261121, type 00, unpredictable number 11223344. */
#define CDOL_DATA "000000001000000000000000025000000000000978261121001122334418"
#define CDOL_LEN  "1D"
/* The CDOL data above without its last byte: 29 bytes. */
#define CDOL29 "0000000010000000000000000250000000000009782611210011223344"

static struct aptest *emv_card(void)
{
    struct aptest *t = aptest_new("{\"aid\":\"" PPSE_AID "\",\"package\":\"F04F54534D01\"}");
    assert_int_equal(aptest_install(t, EMV_PKG, EMV_MOD, EMV_AID, ""), 0x9000);
    assert_int_equal(aptest_perso(t, EMV_AID, 0x88, PERSO_DGI), 0x9000);
    return t;
}

static void emv_unhex(const char *hex, uint8_t *out, size_t *n, size_t cap)
{
    *n = testutil_unhex(hex, out, cap);
}

/* Checks a GENERATE AC answer: CID, ATC and the cryptogram recomputed with
 * the issuer key over CDOL data || AIP || ATC. */
static void emv_check_ac(const struct aptest *t, uint8_t cid, uint16_t atc, const char *aip)
{
    static const uint32_t p_cid[] = {0x77u, 0x9F27u};
    static const uint32_t p_atc[] = {0x77u, 0x9F36u};
    static const uint32_t p_ac[] = {0x77u, 0x9F26u};
    struct tlv v;
    uint8_t key[16], in[64], want[8];
    size_t kn, n, an;

    assert_int_equal(tlv_find_path(t->resp, t->rlen, p_cid, 2, &v), OT_OK);
    assert_int_equal(v.len, 1);
    assert_int_equal(v.val[0], cid);
    assert_int_equal(tlv_find_path(t->resp, t->rlen, p_atc, 2, &v), OT_OK);
    assert_int_equal(v.len, 2);
    assert_int_equal(ot_get_u16be(v.val), atc);
    emv_unhex(CARD_KEY, key, &kn, sizeof key);
    emv_unhex(CDOL29, in, &n, sizeof in);
    emv_unhex(aip, in + n, &an, sizeof in - n);
    n += an;
    ot_put_u16be(in + n, atc);
    n += 2;
    assert_int_equal(se_emv_compute_ac(key, kn, atc, in, n, want), OT_OK);
    assert_int_equal(tlv_find_path(t->resp, t->rlen, p_ac, 2, &v), OT_OK);
    assert_int_equal(v.len, sizeof want);
    assert_memory_equal(v.val, want, sizeof want);
}

static void test_emv_compute_ac_kat(void **state)
{
    (void)state;
    uint8_t key[16], data[64], ac[8];
    size_t kn, n;
    emv_unhex(CARD_KEY, key, &kn, sizeof key);
    emv_unhex(CDOL29 "18000001", data, &n, sizeof data);
    assert_int_equal(se_emv_compute_ac(key, kn, 0x0001, data, n, ac), OT_OK);
    testutil_assert_hex(ac, sizeof ac, "A7E084C7A6903DFB");
    assert_int_equal(se_emv_compute_ac(key, kn, 0xABCD, NULL, 0, ac), OT_OK);
    testutil_assert_hex(ac, sizeof ac, "CA15D2A2EE377CFB");
    /* Another ATC gives another session key. */
    assert_int_equal(se_emv_compute_ac(key, kn, 0x0002, data, n, ac), OT_OK);
    assert_memory_not_equal(ac, "\xA7\xE0\x84\xC7\xA6\x90\x3D\xFB", 8);

    assert_int_equal(se_emv_compute_ac(key, 8, 1, data, n, ac), OT_E_KEY);
    assert_int_equal(se_emv_compute_ac(key, 24, 1, data, n, ac), OT_E_KEY);
    assert_int_equal(se_emv_compute_ac(NULL, 16, 1, data, n, ac), OT_E_ARG);
    assert_int_equal(se_emv_compute_ac(key, 16, 1, NULL, 1, ac), OT_E_ARG);
    assert_int_equal(se_emv_compute_ac(key, 16, 1, data, n, NULL), OT_E_ARG);
}

static void test_emv_transaction(void **state)
{
    (void)state;
    struct aptest *t = emv_card();

    /* The PPSE lists the new instance with its label and priority. */
    assert_int_equal(aptest_select(t, PPSE_AID), 0x9000);
    aptest_assert_resp(t, "6F29840E" PPSE_AID "A517BF0C14"
                          "61124F07A0000000041010500456495341870101");

    assert_int_equal(aptest_select(t, EMV_AID), 0x9000);
    aptest_assert_resp(t, "6F1A8407A0000000041010A50F5004564953418701019F38039F6604");
    /* GENERATE AC before GET PROCESSING OPTIONS. */
    assert_int_equal(aptest_tx(t, "80AE8000" CDOL_LEN CDOL29 "00"), 0x6985);
    assert_int_equal(aptest_tx(t, "80A8000006830411223344"
                                  "00"),
                     0x9000);
    aptest_assert_resp(t, "770A82021800940408010200");
    assert_int_equal(aptest_tx(t, "00B2010C00"), 0x9000);
    aptest_assert_resp(t, REC1);
    assert_int_equal(aptest_tx(t, "00B2020C00"), 0x9000);
    aptest_assert_resp(t, REC2);
    assert_int_equal(aptest_tx(t, "0020008008241234FFFFFFFFFF"), 0x9000);
    /* First GENERATE AC: an ARQC with ATC 1 (known answer). */
    assert_int_equal(aptest_tx(t, "80AE8000" CDOL_LEN CDOL29 "00"), 0x9000);
    aptest_assert_resp(t, "771E9F2701809F360200019F2608A7E084C7A6903DFB9F10070601108080"
                          "0300");
    emv_check_ac(t, 0x80, 1, "1800");
    /* An ARQC again is refused; the second GENERATE AC asks for a TC. */
    assert_int_equal(aptest_tx(t, "80AE8000" CDOL_LEN CDOL29 "00"), 0x6985);
    assert_int_equal(aptest_tx(t, "80AE4000" CDOL_LEN CDOL29 "00"), 0x9000);
    emv_check_ac(t, 0x40, 2, "1800");
    /* The transaction is over. */
    assert_int_equal(aptest_tx(t, "80AE0000" CDOL_LEN CDOL29 "00"), 0x6985);
    assert_int_equal(aptest_tx(t, "80CA9F3600"), 0x9000);
    aptest_assert_resp(t, "9F36020002");

    /* The ATC survives a power cycle; a new selection starts a new
     * transaction, and an AAC right away is allowed. */
    aptest_reopen(t);
    assert_int_equal(aptest_select(t, EMV_AID), 0x9000);
    assert_int_equal(aptest_tx(t, "80CA9F3600"), 0x9000);
    aptest_assert_resp(t, "9F36020002");
    assert_int_equal(aptest_tx(t, "80A8000006830400000000"
                                  "00"),
                     0x9000);
    assert_int_equal(aptest_tx(t, "80AE0000" CDOL_LEN CDOL29 "00"), 0x9000);
    emv_check_ac(t, 0x00, 3, "1800");
    /* A second GPO in the same selection. */
    assert_int_equal(aptest_tx(t, "80A8000006830400000000"
                                  "00"),
                     0x6985);
    aptest_free(t);
}

struct emv_row {
    bool gpo; /* run GET PROCESSING OPTIONS first */
    const char *cmd;
    uint16_t sw;
};

static void test_emv_command_errors(void **state)
{
    (void)state;
    static const struct emv_row rows[] = {
        /* GET PROCESSING OPTIONS */
        {false,
         "00A8000006830411223344"
         "00",
         0x6E00}, /* ISO class */
        {false,
         "80A8010006830411223344"
         "00",
         0x6A86},
        {false,
         "80A8000106830411223344"
         "00",
         0x6A86},
        {false,
         "80A8000006840411223344"
         "00",
         0x6A80}, /* not 83 */
        {false,
         "80A800000583031122330"
         "0",
         0x6700}, /* PDOL wants 4 bytes */
        {false, "80A8000000", 0x6700},
        {false, "80A80000078304112233440000", 0x6A80}, /* trailing byte */
        /* GENERATE AC */
        {true, "80AEC000" CDOL_LEN CDOL29 "00", 0x6A86}, /* RFU type */
        {true, "80AE9000" CDOL_LEN CDOL29 "00", 0x6A86}, /* CDA requested */
        {true, "80AE8001" CDOL_LEN CDOL29 "00", 0x6A86},
        {true,
         "80AE80001C"
         "00000000100000000000000002500000000000097826112100112233"
         "00",
         0x6700},
        {true, "00AE8000" CDOL_LEN CDOL29 "00", 0x6E00},
        {true, "90AE8000" CDOL_LEN CDOL29 "00", 0x6884}, /* chaining */
        /* READ RECORD */
        {false, "00B2000C00", 0x6A86}, /* record 0 */
        {false, "00B2010800", 0x6A86}, /* P2 b3-b1 not 100 */
        {false, "00B2010400", 0x6A86}, /* SFI 0 */
        {false, "00B201FC00", 0x6A86}, /* SFI 31 */
        {false, "00B201F400", 0x6A83}, /* SFI 30: no records */
        {false, "00B2030C00", 0x6A83},
        {false, "00B2010C0100", 0x6700},
        {false, "80B2010C00", 0x6E00},
        {false, "00B2010C05", 0x6C20}, /* Le too small: exact length */
        /* VERIFY */
        {false, "0020008007241234FFFFFFFF", 0x6700},
        {false, "0020008808241234FFFFFFFFFF", 0x6A86}, /* enciphered PIN */
        {false, "0020018008241234FFFFFFFFFF", 0x6A86},
        {false, "0020008008341234FFFFFFFFFF", 0x6A80}, /* not format 2 */
        {false, "0020008008231234FFFFFFFFFF", 0x6A80}, /* length 3 */
        {false, "00200080082412A4FFFFFFFFFF", 0x6A80}, /* not a digit */
        {false, "0020008008241234FFFFFFFFF0", 0x6A80}, /* padding */
        {false, "8020008008241234FFFFFFFFFF", 0x6E00},
        /* GET DATA */
        {false, "80CA9F1300", 0x6A88},
        {false, "80CA9F3602", 0x6C05},
        {false, "80CA9F36019F00", 0x6700},
        /* others */
        {false, "8050000000", 0x6D00},
        {false, "00B0000000", 0x6D00},
        {false, "0C20008008241234FFFFFFFFFF", 0x6882},
    };
    struct aptest *t = emv_card();
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        assert_int_equal(aptest_select(t, EMV_AID), 0x9000);
        if (rows[i].gpo) {
            assert_int_equal(aptest_tx(t, "80A8000006830411223344"
                                          "00"),
                             0x9000);
        }
        struct ot_buf img0, img1;
        aptest_image(t, &img0);
        uint16_t sw = aptest_tx(t, rows[i].cmd);
        if (sw != rows[i].sw) {
            print_error("row %zu: %s -> %04X, want %04X\n", i, rows[i].cmd, sw, rows[i].sw);
        }
        assert_int_equal(sw, rows[i].sw);
        assert_int_equal(t->rlen, 0);
        /* A rejected command leaves the image byte for byte as it was. */
        aptest_image(t, &img1);
        assert_int_equal(img0.len, img1.len);
        assert_memory_equal(img0.data, img1.data, img0.len);
        ot_buf_free(&img0);
        ot_buf_free(&img1);
    }
    /* None of them moved the ATC or the PIN try counter. */
    assert_int_equal(aptest_tx(t, "80CA9F3600"), 0x9000);
    aptest_assert_resp(t, "9F36020000");
    assert_int_equal(aptest_tx(t, "80CA9F1700"), 0x9000);
    aptest_assert_resp(t, "9F170103");
    aptest_free(t);
}

static void test_emv_pin_counter(void **state)
{
    (void)state;
    struct aptest *t = emv_card();
    assert_int_equal(aptest_select(t, EMV_AID), 0x9000);
    assert_int_equal(aptest_tx(t, "0020008000"), 0x63C3); /* status only */
    assert_int_equal(aptest_tx(t, "0020008008241235FFFFFFFFFF"), 0x63C2);
    assert_int_equal(aptest_tx(t, "0020008008241235FFFFFFFFFF"), 0x63C1);
    /* A correct PIN resets the counter. */
    assert_int_equal(aptest_tx(t, "0020008008241234FFFFFFFFFF"), 0x9000);
    assert_int_equal(aptest_tx(t, "0020008000"), 0x9000);
    assert_int_equal(aptest_tx(t, "80CA9F1700"), 0x9000);
    aptest_assert_resp(t, "9F170103");
    assert_int_equal(aptest_tx(t, "002000800826123456FFFFFFFF"), 0x63C2);
    assert_int_equal(aptest_tx(t, "0020008008241235FFFFFFFFFF"), 0x63C1);
    /* The counter is on the card's image before the answer: a power cut
     * (reopening the image) keeps it. */
    aptest_reopen(t);
    assert_int_equal(aptest_select(t, EMV_AID), 0x9000);
    assert_int_equal(aptest_tx(t, "0020008008241235FFFFFFFFFF"), 0x63C0);
    assert_int_equal(aptest_tx(t, "0020008008241234FFFFFFFFFF"), 0x6983);
    assert_int_equal(aptest_tx(t, "0020008000"), 0x6983);
    aptest_reopen(t);
    assert_int_equal(aptest_select(t, EMV_AID), 0x9000);
    assert_int_equal(aptest_tx(t, "0020008008241234FFFFFFFFFF"), 0x6983);
    assert_int_equal(aptest_tx(t, "80CA9F1700"), 0x9000);
    aptest_assert_resp(t, "9F170100");
    /* The cryptogram's IAD tells the issuer: PIN try limit exceeded. */
    assert_int_equal(aptest_tx(t, "80A8000006830411223344"
                                  "00"),
                     0x9000);
    assert_int_equal(aptest_tx(t, "80AE8000" CDOL_LEN CDOL29 "00"), 0x9000);
    static const uint32_t p_iad[] = {0x77u, 0x9F10u};
    struct tlv v;
    assert_int_equal(tlv_find_path(t->resp, t->rlen, p_iad, 2, &v), OT_OK);
    testutil_assert_hex(v.val, v.len, "06011080400000");
    aptest_free(t);
}

struct emv_perso_row {
    uint8_t p1;
    const char *data;
    uint16_t sw;
};

static void test_emv_perso_errors(void **state)
{
    (void)state;
    static const struct emv_perso_row rows[] = {
        {0x88, "80000F00112233445566778899AABBCCDDEE", 0x6A80}, /* 15-byte key */
        {0x88, "99990100", 0x6A80},                             /* unknown DGI */
        {0x88, "0101037101AA", 0x6A80},                         /* record not 70 */
        {0x88, "01010570015A0000", 0x6A80},                     /* trailing bytes */
        {0x88, "0001037000", 0x6A80},                           /* SFI 0 */
        {0x88, "1F01027000", 0x6A80},                           /* SFI 31 */
        {0x88, "0100027000", 0x6A80},                           /* record 0 */
        {0x88, "801008341234FFFFFFFFFF", 0x6A80},               /* bad PIN block */
        {0x88, "8010033132", 0x6A80},                           /* 2 digits */
        {0x88, "9010020403", 0x6A80},                           /* counter > limit */
        {0x88, "9010020010", 0x6A80},                           /* limit 16 */
        {0x88, "910203DF0100", 0x6A80},                         /* tag not allowed in 9102 */
        {0x88, "9104048203AABBCC", 0x6A80},                     /* AIP of 3 bytes */
        {0x88, "910406940508010200", 0x6A80},                   /* AFL not 4n */
        {0x88,
         "9010020202"
         "8000",
         0x6A80},                                     /* truncated second DGI */
        {0x88, "9010FF000202", 0x6A80},               /* FF length beyond data */
        {0x90, "9F010100", 0x6A80},                   /* unknown tag */
        {0x90, "5A0B0102030405060708090A0B", 0x6A80}, /* PAN too long */
        {0x90, "DF030110", 0x6A80},                   /* try limit 16 */
        {0x90, "DF0203313233", 0x6A80},               /* 3-digit PIN */
        {0x90, "9F3802DF", 0x6A80},                   /* PDOL without length */
        {0x90, "E1035A0101", 0x6A80},                 /* constructed */
        {0xE8, "9010020202", 0x6A80},                 /* encrypted values */
        {0x80, "9010020202", 0x6A80},                 /* no structure */
        {0x98, "9010020202", 0x6A86},                 /* both structures: refused by the SD */
    };
    struct aptest *t = emv_card();
    uint8_t aid[16];
    size_t aid_len = testutil_unhex(EMV_AID, aid, sizeof aid);
    int app = se_find_app(&t->c->st, aid, aid_len);
    assert_true(app > 0);
    uint8_t before[SE_MAX_APP_DATA];
    size_t before_len = t->c->st.apps[app].data_len;
    memcpy(before, t->c->st.apps[app].data, before_len);

    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint16_t sw = aptest_perso(t, EMV_AID, rows[i].p1, rows[i].data);
        if (sw != rows[i].sw) {
            print_error("row %zu: %02X %s -> %04X\n", i, rows[i].p1, rows[i].data, sw);
        }
        assert_int_equal(sw, rows[i].sw);
        /* A refused block changes nothing, not even its valid part. */
        assert_int_equal(t->c->st.apps[app].data_len, before_len);
        assert_memory_equal(t->c->st.apps[app].data, before, before_len);
    }
    /* The applet's own check of P1, called as the SD would. */
    static const uint8_t bad_p1[] = {0x98, 0x80, 0xE8, 0xA8, 0x00};
    static const uint8_t d[] = {0x90, 0x10, 0x02, 0x02, 0x02};
    struct se_applet_ctx x;
    aptest_ctx(t, EMV_AID, &x);
    for (size_t i = 0; i < sizeof bad_p1; i++) {
        assert_int_equal(se_emv_ops.personalize(&x, bad_p1[i], 0, d, sizeof d), 0x6A80);
    }
    assert_int_equal(se_emv_ops.personalize(&x, 0x88, 0, d, 0), 0x6700);
    assert_int_equal(t->c->st.apps[app].data_len, before_len);
    assert_memory_equal(t->c->st.apps[app].data, before, before_len);
    aptest_free(t);
}

static void test_emv_ber_perso(void **state)
{
    (void)state;
    /* BER-TLV personalization only: the card builds SFI 1 record 1 from the
     * data objects, uses the default AIP, AFL and CDOL1, no PDOL. */
    struct aptest *t = aptest_new("{\"aid\":\"" EMV_AID "\",\"package\":\"F04F54534D02\"}");
    assert_int_equal(aptest_select(t, EMV_AID), 0x9000);
    aptest_assert_resp(t, "6F0B8407A0000000041010A500");
    assert_int_equal(aptest_tx(t, "80A80000028300"
                                  "00"),
                     0x6985); /* no key yet */
    assert_int_equal(aptest_tx(t, "00B2010C00"), 0x6A83);
    assert_int_equal(aptest_tx(t, "0020008008241234FFFFFFFFFF"), 0x6A88); /* no PIN */
    assert_int_equal(aptest_perso(t, EMV_AID, 0x90,
                                  "5A0847617390010100105F24033012315F2003412F42"
                                  "DF0110" CARD_KEY "DF020435363738DF030105"),
                     0x9000);
    assert_int_equal(aptest_select(t, EMV_AID), 0x9000);
    assert_int_equal(aptest_tx(t, "0020008000"), 0x63C5);
    assert_int_equal(aptest_tx(t, "0020008008245678FFFFFFFFFF"), 0x9000);
    assert_int_equal(aptest_tx(t, "80A80000028300"
                                  "00"),
                     0x9000);
    aptest_assert_resp(t, "770A82021800940408010100");
    assert_int_equal(aptest_tx(t, "00B2010C00"), 0x9000);
    aptest_assert_resp(t, "702D5A0847617390010100105F24033012315F2003412F42"
                          "8C159F02069F03069F1A0295055F2A029A039C019F3704");
    assert_int_equal(aptest_tx(t, "80AE8000" CDOL_LEN CDOL29 "00"), 0x9000);
    emv_check_ac(t, 0x80, 1, "1800");
    aptest_assert_resp(t, "771E9F2701809F360200019F2608A7E084C7A6903DFB9F10070601108080"
                          "0500");
    aptest_free(t);
}

static void test_emv_wipe_and_limits(void **state)
{
    (void)state;
    struct aptest *t = emv_card();
    struct se_applet_ctx x;
    assert_int_equal(aptest_select(t, EMV_AID), 0x9000);
    assert_int_equal(aptest_tx(t, "80A8000006830411223344"
                                  "00"),
                     0x9000);
    assert_int_equal(aptest_tx(t, "80AE0000" CDOL_LEN CDOL29 "00"), 0x9000);

    /* Software destroy wipes key, PAN, records and PIN; the ATC stays. */
    aptest_ctx(t, EMV_AID, &x);
    se_emv_ops.wipe(&x);
    aptest_ctx(t, EMV_AID, &x);
    for (size_t i = 0; i < x.data_len; i++) {
        if (i >= 2 && i < 18) {
            assert_int_equal(x.data[i], 0); /* MK_AC */
        }
    }
    assert_int_equal(aptest_select(t, EMV_AID), 0x9000);
    aptest_assert_resp(t, "6F0B8407A0000000041010A500");
    assert_int_equal(aptest_tx(t, "80A80000028300"
                                  "00"),
                     0x6985);
    assert_int_equal(aptest_tx(t, "00B2010C00"), 0x6A83);
    assert_int_equal(aptest_tx(t, "00B2020C00"), 0x6A83);
    assert_int_equal(aptest_tx(t, "0020008008241234FFFFFFFFFF"), 0x6A88);
    assert_int_equal(aptest_tx(t, "80CA9F3600"), 0x9000);
    aptest_assert_resp(t, "9F36020001");

    /* An exhausted ATC ends the application's life: 6985, nothing changes. */
    assert_int_equal(aptest_perso(t, EMV_AID, 0x88, PERSO_DGI), 0x9000);
    aptest_ctx(t, EMV_AID, &x);
    uint8_t blob[SE_MAX_APP_DATA];
    memcpy(blob, x.data, x.data_len);
    blob[18] = 0xFF; /* ATC: after version, flags and MK_AC */
    blob[19] = 0xFF;
    assert_int_equal(se_applet_set_data(&x, blob, x.data_len), OT_OK);
    assert_int_equal(aptest_select(t, EMV_AID), 0x9000);
    assert_int_equal(aptest_tx(t, "80A8000006830411223344"
                                  "00"),
                     0x9000);
    assert_int_equal(aptest_tx(t, "80AE8000" CDOL_LEN CDOL29 "00"), 0x6985);
    assert_int_equal(aptest_tx(t, "80CA9F3600"), 0x9000);
    aptest_assert_resp(t, "9F3602FFFF");

    /* A blob of an unknown version: the applet answers 6F00. */
    aptest_ctx(t, EMV_AID, &x);
    blob[0] = 0x02;
    assert_int_equal(se_applet_set_data(&x, blob, x.data_len), OT_OK);
    assert_int_equal(aptest_select(t, EMV_AID), 0x6F00);
    aptest_free(t);
}

/* The acceptance path: an instance installed by the ISD, extradited to a
 * supplementary SD, personalized through that SD with its own keys, then a
 * payment whose cryptogram verifies with the issuer key. */
static void test_emv_extradited_to_ssd(void **state)
{
    (void)state;
#define SSD_AID "A00000015153504101"
#define SSD_KEY "505152535455565758595A5B5C5D5E5F"
    struct aptest *t = aptest_new_profile(
        "{\"type\":\"eSE\",\"isd\":{\"aid\":\"A000000151000000\",\"privileges\":\"9EFE80\","
        "\"scp\":3,\"i\":\"10\",\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":\"" APTEST_KEY
        "\",\"mac\":\"" APTEST_KEY "\",\"dek\":\"" APTEST_KEY "\"}]},"
        "\"packages\":[{\"module\":\"ppse\"},{\"module\":\"emv-payment\"}],"
        "\"domains\":[{\"aid\":\"" SSD_AID "\",\"privileges\":[\"security-domain\"],"
        "\"scp\":3,\"i\":\"10\",\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":\"" SSD_KEY
        "\",\"mac\":\"" SSD_KEY "\",\"dek\":\"" SSD_KEY "\"}]}],"
        "\"applications\":[{\"aid\":\"" PPSE_AID "\",\"package\":\"F04F54534D01\"}]}");
    uint8_t app[16], sd[16], cmd[300], perso[300];
    size_t n = sizeof cmd;
    struct gp_install_args a;

    assert_int_equal(aptest_install(t, EMV_PKG, EMV_MOD, EMV_AID, ""), 0x9000);
    memset(&a, 0, sizeof a);
    a.app_aid = app;
    a.app_aid_len = testutil_unhex(EMV_AID, app, sizeof app);
    a.sd_aid = sd;
    a.sd_aid_len = testutil_unhex(SSD_AID, sd, sizeof sd);
    assert_int_equal(gp_cmd_install_for_extradition(0, &a, cmd, &n), OT_OK);
    struct gp_session *s = aptest_isd(t);
    assert_int_equal(aptest_send(t, s, cmd, n), 0x9000);
    /* The ISD no longer owns it: its personalization goes through the SSD. */
    size_t pn = testutil_unhex(PERSO_DGI, perso, sizeof perso);
    assert_int_not_equal(aptest_perso_s(t, s, EMV_AID, 0x88, perso, pn), 0x9000);
    gp_session_free(s);
    s = aptest_sd(t, SSD_AID, SSD_KEY);
    assert_int_equal(aptest_perso_s(t, s, EMV_AID, 0x88, perso, pn), 0x9000);
    gp_session_free(s);

    assert_int_equal(aptest_select(t, PPSE_AID), 0x9000);
    aptest_assert_resp(t, "6F29840E" PPSE_AID "A517BF0C14"
                          "61124F07A0000000041010500456495341870101");
    assert_int_equal(aptest_select(t, EMV_AID), 0x9000);
    assert_int_equal(aptest_tx(t, "80A8000006830411223344"
                                  "00"),
                     0x9000);
    assert_int_equal(aptest_tx(t, "80AE8000" CDOL_LEN CDOL29 "00"), 0x9000);
    emv_check_ac(t, 0x80, 1, "1800");
    aptest_free(t);
#undef SSD_AID
#undef SSD_KEY
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_emv_compute_ac_kat),  cmocka_unit_test(test_emv_transaction),
        cmocka_unit_test(test_emv_command_errors),  cmocka_unit_test(test_emv_pin_counter),
        cmocka_unit_test(test_emv_perso_errors),    cmocka_unit_test(test_emv_ber_perso),
        cmocka_unit_test(test_emv_wipe_and_limits), cmocka_unit_test(test_emv_extradited_to_ssd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
