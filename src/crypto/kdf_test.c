/* SCP03 KDF (SP 800-108 counter mode, Amd D 4.1.5): session keys, cryptograms
 * and pseudo-random card challenges from the pySim and kaoh vectors
 * (reference 5.8), two-block outputs for AES-192/256 (expected values computed
 * independently with `openssl mac CMAC` over the documented PRF input), the
 * PRF input layout, and the range errors. */
#include "crypto/kdf.h"

#include "core/hex.h"
#include "core/testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define PYSIM_ENC "000102030405060708090A0B0C0D0E0F"
#define PYSIM_MAC "101112131415161718191A1B1C1D1E1F"
#define ISDR_AID  "A0000005591010FFFFFFFF8900000100"

static const struct {
    const char *name;
    const char *key;
    uint8_t dc;
    const char *context;
    const char *want; /* its length gives L */
} kdf_rows[] = {
    /* pySim SCP03_Test_AES128_03 (vector A): host chal || card chal */
    {"A S-ENC", PYSIM_ENC, KDF_DC_S_ENC, "8E1552D0513C60F330760CD2C47C1DD3",
     "EE54985E150155E021725489F717D645"},
    {"A S-MAC", PYSIM_MAC, KDF_DC_S_MAC, "8E1552D0513C60F330760CD2C47C1DD3",
     "59B76DDFF91DBA0515A9644DE3A48863"},
    {"A S-RMAC", PYSIM_MAC, KDF_DC_S_RMAC, "8E1552D0513C60F330760CD2C47C1DD3",
     "5942BF778C5942F17037DA8278F9330D"},
    {"A card cryptogram", "59B76DDFF91DBA0515A9644DE3A48863", KDF_DC_CARD_CRYPTOGRAM,
     "8E1552D0513C60F330760CD2C47C1DD3", "95065FE5EAD8A9D7"},
    {"A host cryptogram", "59B76DDFF91DBA0515A9644DE3A48863", KDF_DC_HOST_CRYPTOGRAM,
     "8E1552D0513C60F330760CD2C47C1DD3", "FD4721A14D9B0700"},
    /* pseudo-random card challenges: seq || ISD-R AID under Key-ENC */
    {"A card challenge", PYSIM_ENC, KDF_DC_CARD_CHALLENGE, "000001" ISDR_AID, "30760CD2C47C1DD3"},
    {"C card challenge", PYSIM_ENC, KDF_DC_CARD_CHALLENGE, "000002" ISDR_AID, "3EB51047495B249F"},
    {"B card challenge", PYSIM_ENC, KDF_DC_CARD_CHALLENGE, "000003" ISDR_AID, "3B1ACA81E821F219"},
    /* kaoh/globalplatform scp03Test.c, SD AID A000000151000000 */
    {"kaoh card challenge", "F995D0A069335C7DF42E590317FFEA6D", KDF_DC_CARD_CHALLENGE,
     "00001EA000000151000000", "3C80C2CC87EB3A35"},
    {"kaoh S-ENC", "F995D0A069335C7DF42E590317FFEA6D", KDF_DC_S_ENC,
     "9BD6BF878FB8E9913C80C2CC87EB3A35", "D83EE38C9954C8078987A5E9EE6AB13C"},
    {"kaoh S-MAC", "58563362EC5A4541ABCD32B34B1EAE7D", KDF_DC_S_MAC,
     "9BD6BF878FB8E9913C80C2CC87EB3A35", "6FF37716E0413065E8DFD08BF1E9EC5E"},
    {"kaoh S-RMAC", "58563362EC5A4541ABCD32B34B1EAE7D", KDF_DC_S_RMAC,
     "9BD6BF878FB8E9913C80C2CC87EB3A35", "0254C786E57ACA8982670C1C1A05FF12"},
    /* two PRF blocks: L = 0100 (AES-256 key) and 00C0 (AES-192, truncated) */
    {"AES-256 two blocks", PYSIM_ENC PYSIM_ENC, KDF_DC_S_ENC, "00112233445566778899AABBCCDDEEFF",
     "788AE4D533839715A86FA61DE7C14121"
     "2015462D4614E5F0DB846F3C6F53F95E"},
    {"AES-192 truncated", PYSIM_ENC "0001020304050607", KDF_DC_S_MAC,
     "00112233445566778899AABBCCDDEEFF",
     "BD573C92BE581E5E5E227BCF01392717"
     "3146915DF428205A"},
};

static void test_rows(void **state)
{
    (void)state;
    for (size_t r = 0; r < sizeof kdf_rows / sizeof kdf_rows[0]; r++) {
        uint8_t key[32], ctx[64], want[64], got[64];
        size_t key_n = testutil_unhex(kdf_rows[r].key, key, sizeof key);
        size_t ctx_n = testutil_unhex(kdf_rows[r].context, ctx, sizeof ctx);
        size_t want_n = testutil_unhex(kdf_rows[r].want, want, sizeof want);

        print_message("row %s\n", kdf_rows[r].name);
        memset(got, 0, sizeof got);
        assert_int_equal(kdf_scp03_key(key, key_n, kdf_rows[r].dc, ctx, ctx_n, got, want_n), OT_OK);
        assert_memory_equal(got, want, want_n);

        /* same through a reusable, re-keyed PRF context */
        struct cmac *prf = NULL;
        uint8_t other[16] = {0xFF};
        assert_int_equal(cmac_new(other, sizeof other, &prf), OT_OK);
        assert_int_equal(cmac_set_key(prf, key, key_n), OT_OK);
        memset(got, 0, sizeof got);
        assert_int_equal(kdf_scp03(prf, kdf_rows[r].dc, ctx, ctx_n, got, want_n), OT_OK);
        assert_memory_equal(got, want, want_n);
        cmac_free(prf);
    }
}

/* The first PRF input block of vector A's S-ENC as printed in the reference
 * (label, DC 04, separator, L 0080, i 01, context) MACs to the derived key. */
static void test_prf_input_layout(void **state)
{
    (void)state;
    uint8_t key[16], input[32], ctx[16], direct[16], derived[16];
    testutil_unhex(PYSIM_ENC, key, sizeof key);
    testutil_unhex("00000000000000000000000400008001"
                   "8E1552D0513C60F330760CD2C47C1DD3",
                   input, sizeof input);
    testutil_unhex("8E1552D0513C60F330760CD2C47C1DD3", ctx, sizeof ctx);
    assert_int_equal(cmac_aes(key, 16, input, sizeof input, direct), OT_OK);
    assert_int_equal(kdf_scp03_key(key, 16, KDF_DC_S_ENC, ctx, 16, derived, 16), OT_OK);
    assert_memory_equal(direct, derived, 16);
}

static void test_errors(void **state)
{
    (void)state;
    uint8_t key[16] = {0}, ctx[KDF_MAX_CONTEXT + 1] = {0}, out[KDF_MAX_OUT + 1];
    struct cmac *prf = NULL;

    assert_int_equal(cmac_new(key, 16, &prf), OT_OK);
    assert_int_equal(kdf_scp03(prf, 0, ctx, 16, out, 0), OT_E_RANGE);
    assert_int_equal(kdf_scp03(prf, 0, ctx, 16, out, KDF_MAX_OUT + 1), OT_E_RANGE);
    assert_int_equal(kdf_scp03(prf, 0, ctx, KDF_MAX_CONTEXT + 1, out, 16), OT_E_RANGE);
    assert_int_equal(kdf_scp03(prf, 0, NULL, 1, out, 16), OT_E_ARG);
    assert_int_equal(kdf_scp03(prf, 0, ctx, 16, NULL, 16), OT_E_ARG);
    assert_int_equal(kdf_scp03(NULL, 0, ctx, 16, out, 16), OT_E_ARG);
    /* limits themselves are accepted; empty context too */
    assert_int_equal(kdf_scp03(prf, 0, ctx, KDF_MAX_CONTEXT, out, KDF_MAX_OUT), OT_OK);
    assert_int_equal(kdf_scp03(prf, 0, NULL, 0, out, 1), OT_OK);
    assert_int_equal(kdf_scp03_key(key, 15, 0, ctx, 16, out, 16), OT_E_KEY);
    cmac_free(prf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_prf_input_layout),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
