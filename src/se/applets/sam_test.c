/* Tests of the dongle's SAM applet (sam.c) through the card runtime: key
 * delivery wrapped for this dongle (crypto/ecwrap.h), rollback and
 * revocation, and the computations the terminal asks for, checked against
 * the card applets on the same card (transit CREDIT and its proof) and
 * against emv.c's own cryptogram function. */
#include "se/applets/aptest.h"
#include "se/applets/emv.h"
#include "se/applets/registry.h"

#include "crypto/ec.h"
#include "crypto/ecwrap.h"
#include "crypto/kcv.h"
#include "crypto/paycard.h"
#include "crypto/pinblock.h"

#define SAM_AID  "F04F54534D0601AA"
#define SAM_AID2 "F04F54534D0601BB"
#define TR_AID   "F04F54534D0301AA"
#define TR_ID    "0102030405060708"
#define IMK      "000102030405060708090A0B0C0D0E0F"
#define PINKEY   "00112233445566778899AABBCCDDEEFF"
#define PAN      "5413330089010434"

#define SAM_PROFILE                                                                           \
    "{\"type\":\"eSE\",\"card_lcs\":\"SECURED\","                                             \
    "\"isd\":{\"aid\":\"A000000151000000\",\"privileges\":\"9EFE80\",\"scp\":3,\"i\":\"10\"," \
    "\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":\"" APTEST_KEY "\",\"mac\":\"" APTEST_KEY \
    "\",\"dek\":\"" APTEST_KEY "\"}]},"                                                       \
    "\"packages\":[{\"module\":\"transit\"},{\"module\":\"sam\"}],"                           \
    "\"applications\":["                                                                      \
    "{\"aid\":\"" SAM_AID                                                                     \
    "\",\"package\":\"F04F54534D06\",\"params\":\"DF1008646F6E676C652D31\"},"                 \
    "{\"aid\":\"" SAM_AID2 "\",\"package\":\"F04F54534D06\"},"                                \
    "{\"aid\":\"" TR_AID "\",\"package\":\"F04F54534D03\",\"params\":\"DF0110%sDF0408" TR_ID  \
    "DF0504000003E8DF060400002710\"}]}"

static struct aptest *sam_card(void)
{
    uint8_t imk[16], id[8], k[16];
    char khex[33];
    char json[2048];
    testutil_unhex(IMK, imk, sizeof imk);
    testutil_unhex(TR_ID, id, sizeof id);
    assert_int_equal(paycard_derive(imk, 16, PAYCARD_DC_TRANSIT, id, 8, k), OT_OK);
    assert_int_equal(hex_encode(k, 16, khex, sizeof khex), OT_OK);
    snprintf(json, sizeof json, SAM_PROFILE, khex);
    return aptest_new_profile(json);
}

static void sam_pub(struct aptest *t, uint8_t pub[65])
{
    assert_int_equal(aptest_select(t, SAM_AID), 0x9000);
    assert_int_equal(aptest_tx(t, "80CADF1100"), 0x9000);
    assert_int_equal(t->rlen, 65);
    memcpy(pub, t->resp, 65);
}

/* A wrapped key blob for pub. */
static size_t sam_wrap(const uint8_t pub[65], uint8_t kt, const char *sp, uint32_t ver,
                       const char *dongle, const char *key_hex, uint8_t *blob)
{
    struct ecwrap_meta m;
    uint8_t key[32];
    size_t kl = testutil_unhex(key_hex, key, sizeof key);
    size_t n = ECWRAP_MAX_BLOB;
    memset(&m, 0, sizeof m);
    m.key_type = kt;
    snprintf(m.sp_id, sizeof m.sp_id, "%s", sp);
    snprintf(m.dongle_id, sizeof m.dongle_id, "%s", dongle);
    m.key_version = ver;
    assert_int_equal(ecwrap_wrap(pub, &m, key, kl, blob, &n), OT_OK);
    return n;
}

static uint16_t sam_load(struct aptest *t, const uint8_t *blob, size_t n)
{
    uint8_t cmd[300] = {0x80, 0xD8, 0x00, 0x00, (uint8_t)n};
    memcpy(cmd + 5, blob, n);
    cmd[5 + n] = 0x00;
    return aptest_txb(t, cmd, 6 + n);
}

static uint16_t sam_load_key(struct aptest *t, const uint8_t pub[65], uint8_t kt, const char *sp,
                             uint32_t ver, const char *key_hex)
{
    uint8_t blob[ECWRAP_MAX_BLOB];
    size_t n = sam_wrap(pub, kt, sp, ver, "dongle-1", key_hex, blob);
    return sam_load(t, blob, n);
}

/* Sends 80 ins p1 00 Lc <lv sp> <rest>. */
static uint16_t sam_cmd(struct aptest *t, uint8_t ins, uint8_t p1, const char *sp,
                        const uint8_t *rest, size_t n)
{
    uint8_t cmd[300] = {0x80, ins, p1, 0x00};
    size_t spl = strlen(sp);
    cmd[4] = (uint8_t)(1 + spl + n);
    cmd[5] = (uint8_t)spl;
    memcpy(cmd + 6, sp, spl);
    memcpy(cmd + 6 + spl, rest, n);
    return aptest_txb(t, cmd, 6 + spl + n);
}

static void assert_image_same_after(struct aptest *t, uint16_t (*fn)(struct aptest *, void *),
                                    void *arg, uint16_t want)
{
    struct ot_buf a, b;
    aptest_image(t, &a);
    assert_int_equal(fn(t, arg), want);
    aptest_image(t, &b);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    ot_buf_free(&a);
    ot_buf_free(&b);
}

struct blob_arg {
    const uint8_t *b;
    size_t n;
};

static uint16_t load_cb(struct aptest *t, void *arg)
{
    const struct blob_arg *a = arg;
    return sam_load(t, a->b, a->n);
}

static void test_identity(void **state)
{
    (void)state;
    struct aptest *t = sam_card();
    uint8_t pub[65], pub2[65];
    sam_pub(t, pub);
    assert_true(ec_p256_pub_valid(pub));
    assert_int_equal(aptest_tx(t, "80CADF1000"), 0x9000);
    aptest_assert_resp(t, "646F6E676C652D31"); /* "dongle-1" */
    assert_int_equal(aptest_tx(t, "80CADF1200"), 0x9000);
    assert_int_equal(t->rlen, 0); /* no keys yet */
    assert_int_equal(aptest_tx(t, "80CADF1102"), 0x6C41);
    /* no GET DATA tag gives the private key */
    for (unsigned p = 0; p < 0x10000; p += 0x0101) {
        char cmd[16];
        snprintf(cmd, sizeof cmd, "80CA%04X00", p);
        uint16_t sw = aptest_tx(t, cmd);
        if (p != 0xDF10 && p != 0xDF11 && p != 0xDF12) {
            assert_int_equal(sw, 0x6A88);
        }
    }
    /* the key pair survives a power cycle; another instance has its own */
    aptest_reopen(t);
    sam_pub(t, pub2);
    assert_memory_equal(pub, pub2, 65);
    assert_int_equal(aptest_select(t, SAM_AID2), 0x9000);
    assert_int_equal(aptest_tx(t, "80CADF1100"), 0x9000);
    assert_memory_not_equal(pub, t->resp, 65);
    assert_int_equal(aptest_tx(t, "80CADF1000"), 0x6985); /* no id yet */
    aptest_free(t);
}

static void test_load_key(void **state)
{
    (void)state;
    struct aptest *t = sam_card();
    uint8_t pub[65], key[16], kcv[3];
    sam_pub(t, pub);
    assert_int_equal(sam_load_key(t, pub, ECWRAP_KT_EMV_IMK, "bank-a", 2, IMK), 0x9000);
    testutil_unhex(IMK, key, sizeof key);
    assert_int_equal(kcv_aes(key, 16, kcv), OT_OK);
    assert_int_equal(t->rlen, 8);
    assert_int_equal(t->resp[0], ECWRAP_KT_EMV_IMK);
    assert_int_equal(ot_get_u32be(t->resp + 1), 2);
    assert_memory_equal(t->resp + 5, kcv, 3);
    /* the list shows type, sp, version, floor, length and KCV, never the key */
    assert_int_equal(aptest_tx(t, "80CADF1200"), 0x9000);
    assert_int_equal(t->rlen, 1 + 1 + 6 + 4 + 4 + 1 + 3);
    assert_memory_equal(t->resp + 2, "bank-a", 6);
    assert_int_equal(t->resp[16], 16);
    assert_memory_equal(t->resp + 17, kcv, 3);
    for (size_t i = 0; i + 16 <= t->rlen; i++) {
        assert_memory_not_equal(t->resp + i, key, 16);
    }
    /* kept across a power cycle */
    aptest_reopen(t);
    assert_int_equal(aptest_select(t, SAM_AID), 0x9000);
    assert_int_equal(aptest_tx(t, "80CADF1200"), 0x9000);
    assert_int_equal(t->rlen, 20);
    aptest_free(t);
}

static void test_load_refused(void **state)
{
    (void)state;
    struct aptest *t = sam_card();
    uint8_t pub[65], other_priv[32], other_pub[65], blob[ECWRAP_MAX_BLOB];
    struct blob_arg arg = {blob, 0};
    sam_pub(t, pub);
    assert_int_equal(ec_p256_keygen(other_priv, other_pub), OT_OK);
    /* wrapped for another dongle's key (with this dongle's id): does not open */
    arg.n = sam_wrap(other_pub, ECWRAP_KT_EMV_IMK, "bank-a", 1, "dongle-1", IMK, blob);
    assert_image_same_after(t, load_cb, &arg, 0x6982);
    /* addressed to another dongle id */
    arg.n = sam_wrap(pub, ECWRAP_KT_EMV_IMK, "bank-a", 1, "dongle-2", IMK, blob);
    assert_image_same_after(t, load_cb, &arg, 0x6982);
    /* altered in transit: every byte of the body and header */
    arg.n = sam_wrap(pub, ECWRAP_KT_EMV_IMK, "bank-a", 1, "dongle-1", IMK, blob);
    for (size_t i = 0; i < arg.n; i++) {
        blob[i] ^= 0x01;
        uint16_t sw = sam_load(t, blob, arg.n);
        assert_true(sw == 0x6982 || sw == 0x6A80);
        blob[i] ^= 0x01;
    }
    /* malformed: truncated, trailing */
    arg.n--;
    assert_image_same_after(t, load_cb, &arg, 0x6A80);
    arg.n += 2;
    assert_image_same_after(t, load_cb, &arg, 0x6A80);
    arg.n--;
    assert_int_equal(sam_load(t, blob, arg.n), 0x9000);
    /* command checks */
    assert_int_equal(aptest_tx(t, "80D8010000"), 0x6A86);
    assert_int_equal(aptest_tx(t, "80D80000"), 0x6700);
    assert_int_equal(aptest_tx(t, "00D8000001AA"), 0x6E00);
    assert_int_equal(aptest_tx(t, "80EE000000"), 0x6D00);
    aptest_free(t);
}

static void test_rollback_and_revoke(void **state)
{
    (void)state;
    struct aptest *t = sam_card();
    uint8_t pub[65], blob[ECWRAP_MAX_BLOB];
    struct blob_arg arg = {blob, 0};
    sam_pub(t, pub);
    assert_int_equal(sam_load_key(t, pub, ECWRAP_KT_EMV_IMK, "bank-a", 2, IMK), 0x9000);
    /* version 1 after 2: rollback refused, nothing changes */
    arg.n = sam_wrap(pub, ECWRAP_KT_EMV_IMK, "bank-a", 1, "dongle-1", PINKEY, blob);
    assert_image_same_after(t, load_cb, &arg, 0x6985);
    /* the same version again is a redelivery; another SP or type is its own slot */
    assert_int_equal(sam_load_key(t, pub, ECWRAP_KT_EMV_IMK, "bank-a", 2, IMK), 0x9000);
    assert_int_equal(sam_load_key(t, pub, ECWRAP_KT_EMV_IMK, "bank-b", 1, IMK), 0x9000);
    assert_int_equal(sam_load_key(t, pub, ECWRAP_KT_PIN, "bank-a", 1, PINKEY), 0x9000);
    assert_int_equal(sam_load_key(t, pub, ECWRAP_KT_EMV_IMK, "bank-a", 3, IMK), 0x9000);
    /* a blob of version 3 waiting somewhere, then revocation up to 4 */
    uint8_t pending[ECWRAP_MAX_BLOB];
    size_t pn = sam_wrap(pub, ECWRAP_KT_EMV_IMK, "bank-a", 3, "dongle-1", IMK, pending);
    uint8_t floor[4] = {0, 0, 0, 4};
    assert_int_equal(sam_cmd(t, 0xDA, ECWRAP_KT_EMV_IMK, "bank-a", floor, 4), 0x9000);
    uint8_t ac_req[2 + 8 + 2 + 8] = {8};
    assert_int_equal(sam_cmd(t, 0xA0, 0, "bank-a", ac_req, sizeof ac_req), 0x6A88);
    assert_int_equal(sam_load(t, pending, pn), 0x6985); /* pending key refused */
    aptest_reopen(t);
    assert_int_equal(aptest_select(t, SAM_AID), 0x9000);
    assert_int_equal(sam_load(t, pending, pn), 0x6985);
    /* a lower floor does not lower it */
    floor[3] = 2;
    assert_int_equal(sam_cmd(t, 0xDA, ECWRAP_KT_EMV_IMK, "bank-a", floor, 4), 0x9000);
    assert_int_equal(sam_load(t, pending, pn), 0x6985);
    assert_int_equal(sam_load_key(t, pub, ECWRAP_KT_EMV_IMK, "bank-a", 4, IMK), 0x9000);
    /* the other slots were untouched */
    assert_int_equal(sam_cmd(t, 0xA0, 0, "bank-b", ac_req, sizeof ac_req), 0x6982);
    /* REVOKE checks */
    floor[3] = 0;
    assert_int_equal(sam_cmd(t, 0xDA, ECWRAP_KT_EMV_IMK, "bank-a", floor, 4), 0x6A80);
    assert_int_equal(sam_cmd(t, 0xDA, 9, "bank-a", floor, 4), 0x6A86);
    assert_int_equal(sam_cmd(t, 0xDA, ECWRAP_KT_EMV_IMK, "bank-a", floor, 3), 0x6A80);
    aptest_free(t);
}

static void test_verify_ac(void **state)
{
    (void)state;
    struct aptest *t = sam_card();
    uint8_t pub[65], imk[16], pan[8], mk[16], ac[8], ac2[8];
    uint8_t req[1 + 8 + 2 + 8 + 34];
    static const char cdol[] = "000000001000000000000000025000000000000978231207000011223344";
    sam_pub(t, pub);
    assert_int_equal(sam_load_key(t, pub, ECWRAP_KT_EMV_IMK, "bank-a", 1, IMK), 0x9000);
    testutil_unhex(IMK, imk, sizeof imk);
    testutil_unhex(PAN, pan, sizeof pan);
    assert_int_equal(paycard_derive(imk, 16, PAYCARD_DC_EMV_AC, pan, 8, mk), OT_OK);
    /* the card's data: CDOL1 values || AIP || ATC, as emv.c computes its AC */
    uint8_t data[40];
    size_t dn = testutil_unhex(cdol, data, sizeof data);
    data[dn++] = 0x18;
    data[dn++] = 0x00;
    data[dn++] = 0x00;
    data[dn++] = 0x12;
    assert_int_equal(se_emv_compute_ac(mk, 16, 0x0012, data, dn, ac), OT_OK);
    assert_int_equal(paycard_emv_ac(mk, 0x0012, data, dn, ac2), OT_OK);
    assert_memory_equal(ac, ac2, 8); /* one definition on both sides */
    size_t n = 0;
    req[n++] = 8;
    memcpy(req + n, pan, 8);
    n += 8;
    req[n++] = 0x00;
    req[n++] = 0x12;
    memcpy(req + n, ac, 8);
    n += 8;
    memcpy(req + n, data, dn);
    n += dn;
    assert_int_equal(sam_cmd(t, 0xA0, 0, "bank-a", req, n), 0x9000);
    assert_int_equal(t->rlen, 0);
    /* a wrong AC, another ATC, another PAN, other data: 6982 */
    req[11] ^= 1;
    assert_int_equal(sam_cmd(t, 0xA0, 0, "bank-a", req, n), 0x6982);
    req[11] ^= 1;
    req[10] = 0x13;
    assert_int_equal(sam_cmd(t, 0xA0, 0, "bank-a", req, n), 0x6982);
    req[10] = 0x12;
    req[8] ^= 1;
    assert_int_equal(sam_cmd(t, 0xA0, 0, "bank-a", req, n), 0x6982);
    req[8] ^= 1;
    assert_int_equal(sam_cmd(t, 0xA0, 0, "bank-a", req, n - 1), 0x6982);
    assert_int_equal(sam_cmd(t, 0xA0, 0, "bank-a", req, n), 0x9000);
    /* unknown SP, key of another type, malformed */
    assert_int_equal(sam_cmd(t, 0xA0, 0, "bank-z", req, n), 0x6A88);
    assert_int_equal(sam_cmd(t, 0xA0, 0, "bank-a", req, 5), 0x6A80);
    req[0] = 11; /* PAN longer than tag 5A allows */
    assert_int_equal(sam_cmd(t, 0xA0, 0, "bank-a", req, n), 0x6A80);
    assert_int_equal(aptest_tx(t, "80A0000001"), 0x6700);
    aptest_free(t);
}

static void test_pin_block(void **state)
{
    (void)state;
    struct aptest *t = sam_card();
    uint8_t pub[65], key[16], req[64];
    char pin[PINBLOCK_PIN_MAX + 1];
    sam_pub(t, pub);
    size_t n = 0;
    req[n++] = 16;
    memcpy(req + n, PAN, 16);
    n += 16;
    req[n++] = 4;
    memcpy(req + n, "4321", 4);
    n += 4;
    assert_int_equal(sam_cmd(t, 0xA2, 0, "bank-a", req, n), 0x6A88); /* no PIN key yet */
    assert_int_equal(sam_load_key(t, pub, ECWRAP_KT_EMV_IMK, "bank-a", 1, IMK), 0x9000);
    assert_int_equal(sam_cmd(t, 0xA2, 0, "bank-a", req, n), 0x6A88); /* not a PIN key */
    assert_int_equal(sam_load_key(t, pub, ECWRAP_KT_PIN, "bank-a", 1, PINKEY), 0x9000);
    assert_int_equal(sam_cmd(t, 0xA2, 0, "bank-a", req, n), 0x9000);
    assert_int_equal(t->rlen, 16);
    /* the bank deciphers it with its PIN key and the card's PAN */
    testutil_unhex(PINKEY, key, sizeof key);
    assert_int_equal(pinblock4_decipher(key, 16, t->resp, PAN, pin), OT_OK);
    assert_string_equal(pin, "4321");
    /* bad PINs and PANs: 6A80 */
    memcpy(req + 18, "43a1", 4);
    assert_int_equal(sam_cmd(t, 0xA2, 0, "bank-a", req, n), 0x6A80);
    req[17] = 3; /* PIN of 3 digits, then one byte too many */
    memcpy(req + 18, "4321", 4);
    assert_int_equal(sam_cmd(t, 0xA2, 0, "bank-a", req, n), 0x6A80);
    assert_int_equal(sam_cmd(t, 0xA2, 0, "bank-a", req, n - 1), 0x6A80);
    req[17] = 4;
    req[5] = 'x';
    assert_int_equal(sam_cmd(t, 0xA2, 0, "bank-a", req, n), 0x6A80);
    aptest_free(t);
}

/* Top-up: the back end's CREDIT MAC is checked by the SAM, accepted by the
 * purse on the same card, and the purse's proof is checked by the SAM. */
static void test_transit(void **state)
{
    (void)state;
    struct aptest *t = sam_card();
    uint8_t pub[65], imk[16], id[8], k[16], req[8 + 4 + 4 + 8];
    sam_pub(t, pub);
    assert_int_equal(sam_load_key(t, pub, ECWRAP_KT_TRANSIT_IMK, "metro", 1, IMK), 0x9000);
    testutil_unhex(IMK, imk, sizeof imk);
    testutil_unhex(TR_ID, id, sizeof id);
    assert_int_equal(paycard_derive(imk, 16, PAYCARD_DC_TRANSIT, id, 8, k), OT_OK);
    /* the back end's credit command for 5.00 at counter 1 */
    uint8_t credit[5 + 16 + 1] = {0x80, 0x52, 0x00, 0x00, 0x10};
    ot_put_u32be(credit + 5, 500);
    ot_put_u32be(credit + 9, 1);
    assert_int_equal(paycard_transit_mac(k, PAYCARD_TAG_CREDIT, 500, 1, id, credit + 13), OT_OK);
    memcpy(req, id, 8);
    memcpy(req + 8, credit + 5, 16);
    assert_int_equal(sam_cmd(t, 0xA4, 0, "metro", req, sizeof req), 0x9000);
    req[23] ^= 1;
    assert_int_equal(sam_cmd(t, 0xA4, 0, "metro", req, sizeof req), 0x6982);
    /* the purse takes it and answers with its proof */
    assert_int_equal(aptest_select(t, TR_AID), 0x9000);
    assert_int_equal(aptest_txb(t, credit, sizeof credit), 0x9000);
    assert_int_equal(t->rlen, 16);
    assert_int_equal(ot_get_u32be(t->resp), 1500);
    memcpy(req + 8, t->resp, 16);
    assert_int_equal(aptest_select(t, SAM_AID), 0x9000);
    assert_int_equal(sam_cmd(t, 0xA4, 1, "metro", req, sizeof req), 0x9000);
    /* a proof for another balance, or checked as a credit: refused */
    ot_put_u32be(req + 8, 1501);
    assert_int_equal(sam_cmd(t, 0xA4, 1, "metro", req, sizeof req), 0x6982);
    ot_put_u32be(req + 8, 1500);
    assert_int_equal(sam_cmd(t, 0xA4, 0, "metro", req, sizeof req), 0x6982);
    assert_int_equal(sam_cmd(t, 0xA4, 2, "metro", req, sizeof req), 0x6A86);
    assert_int_equal(sam_cmd(t, 0xA4, 1, "metro", req, sizeof req - 1), 0x6A80);
    assert_int_equal(sam_cmd(t, 0xA4, 1, "bank-a", req, sizeof req), 0x6A88);
    aptest_free(t);
}

static void test_personalization(void **state)
{
    (void)state;
    struct aptest *t = sam_card();
    uint8_t pub[65];
    /* the second instance has no id: no keys until personalized */
    assert_int_equal(aptest_select(t, SAM_AID2), 0x9000);
    assert_int_equal(aptest_tx(t, "80CADF1100"), 0x9000);
    memcpy(pub, t->resp, 65);
    assert_int_equal(sam_load_key(t, pub, ECWRAP_KT_EMV_IMK, "bank-a", 1, IMK), 0x6985);
    assert_int_equal(aptest_perso(t, SAM_AID2, 0x90, "DF100100"), 0x6A80); /* id 0x00 */
    assert_int_equal(aptest_perso(t, SAM_AID2, 0x90, "DF0108646F6E676C652D31"), 0x6A80);
    assert_int_equal(aptest_perso(t, SAM_AID2, 0x90, "DF1008646F6E676C652D31"), 0x9000);
    assert_int_equal(aptest_select(t, SAM_AID2), 0x9000);
    assert_int_equal(sam_load_key(t, pub, ECWRAP_KT_EMV_IMK, "bank-a", 1, IMK), 0x9000);
    /* the id is fixed once a key is held */
    assert_int_equal(aptest_perso(t, SAM_AID2, 0x90, "DF1008646F6E676C652D32"), 0x6985);
    aptest_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity),     cmocka_unit_test(test_load_key),
        cmocka_unit_test(test_load_refused), cmocka_unit_test(test_rollback_and_revoke),
        cmocka_unit_test(test_verify_ac),    cmocka_unit_test(test_pin_block),
        cmocka_unit_test(test_transit),      cmocka_unit_test(test_personalization),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
