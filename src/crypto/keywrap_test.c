/* PUT KEY key wrapping: known answers (computed once with `openssl enc
 * -aes-*-cbc -nopad -iv 0` / `-des-ede-ecb -nopad`), round trips and the
 * length rules. */
#include "crypto/keywrap.h"

#include "core/hex.h"
#include "core/testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define DEK_HEX "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
#define KEY_HEX "404142434445464748494A4B4C4D4E4F505152535455565758595A5B5C5D5E5F"

static const struct {
    bool aes;
    size_t dek_len; /* prefix of DEK_HEX; or the DEK below */
    const char *dek;
    size_t key_len; /* prefix of KEY_HEX */
    const char *want;
} known[] = {
    {true, 16, NULL, 16, "D533E59B45A153ED7E5E9C5DFCFD4AAA"},
    /* 24-byte key padded with 80 00..00 to 32 */
    {true, 24, NULL, 24, "27549E3127592D93F091608D27E966D4A09D1C59FAAA9CE21BB6191FAA105A6F"},
    {true, 32, NULL, 32, "A37EDF3F975ABAEF937B62C78D5BB157A36E5F05BA7CCE858453A779401A16DD"},
    {true, 16, NULL, 24, "D533E59B45A153ED7E5E9C5DFCFD4AAAC97656508858417236C7972E7679E39C"},
    {false, 16, NULL, 16, "3187F0E89F657D9B96FDE211B27FF982"},
    {false, 16, NULL, 24, "3187F0E89F657D9B96FDE211B27FF982AAE66281B692D18D"},
    /* GPPro test key under the pySim SCP02 session DEK (reference §6) */
    {false, 16, "511DB767812597722109C867F9D7257A", 16, "BC8D235801F79EBA4E5549608FF68E2E"},
};

static void test_keywrap_known(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        uint8_t dek[32];
        uint8_t key[32];
        uint8_t want[32];
        uint8_t got[32];
        uint8_t back[32];
        size_t got_len = sizeof got;
        size_t back_len = sizeof back;
        size_t want_len = testutil_unhex(known[i].want, want, sizeof want);

        testutil_unhex(known[i].dek ? known[i].dek : DEK_HEX, dek, sizeof dek);
        testutil_unhex(KEY_HEX, key, sizeof key);
        if (known[i].aes) {
            assert_int_equal(
                keywrap_aes_encrypt(dek, known[i].dek_len, key, known[i].key_len, got, &got_len),
                OT_OK);
            assert_int_equal(got_len, keywrap_aes_wrapped_len(known[i].key_len));
            assert_int_equal(keywrap_aes_decrypt(dek, known[i].dek_len, got, got_len,
                                                 known[i].key_len, back, &back_len),
                             OT_OK);
        } else {
            assert_int_equal(keywrap_des_encrypt(dek, key, known[i].key_len, got, &got_len), OT_OK);
            assert_int_equal(keywrap_des_decrypt(dek, got, got_len, back, &back_len), OT_OK);
        }
        assert_int_equal(got_len, want_len);
        assert_memory_equal(got, want, want_len);
        assert_int_equal(back_len, known[i].key_len);
        assert_memory_equal(back, key, known[i].key_len);
    }
}

/* Every AES DEK length with every AES key length, and both 3DES key sizes,
 * encrypt and decrypt back (keys of varied bytes). */
static void test_keywrap_round_trips(void **state)
{
    static const size_t aes_lens[] = {16, 24, 32};
    uint8_t dek[32];
    uint8_t key[32];

    (void)state;
    for (size_t i = 0; i < sizeof key; i++) {
        dek[i] = (uint8_t)(0xA5 ^ (i * 7));
        key[i] = (uint8_t)(i * 13 + 1);
    }
    for (size_t d = 0; d < 3; d++) {
        for (size_t k = 0; k < 3; k++) {
            uint8_t ct[32];
            uint8_t pt[32];
            size_t ct_len = sizeof ct;
            size_t pt_len = sizeof pt;
            assert_int_equal(keywrap_aes_encrypt(dek, aes_lens[d], key, aes_lens[k], ct, &ct_len),
                             OT_OK);
            assert_memory_not_equal(ct, key, 16);
            assert_int_equal(
                keywrap_aes_decrypt(dek, aes_lens[d], ct, ct_len, aes_lens[k], pt, &pt_len), OT_OK);
            assert_int_equal(pt_len, aes_lens[k]);
            assert_memory_equal(pt, key, aes_lens[k]);
        }
    }
    for (size_t k = 16; k <= 24; k += 8) {
        uint8_t ct[24];
        uint8_t pt[24];
        size_t ct_len = sizeof ct;
        size_t pt_len = sizeof pt;
        assert_int_equal(keywrap_des_encrypt(dek, key, k, ct, &ct_len), OT_OK);
        assert_int_equal(ct_len, k);
        assert_int_equal(keywrap_des_decrypt(dek, ct, ct_len, pt, &pt_len), OT_OK);
        assert_memory_equal(pt, key, k);
    }
}

enum kw_op { AES_ENC, AES_DEC, DES_ENC, DES_DEC };

static void test_keywrap_errors(void **state)
{
    static const struct {
        enum kw_op op;
        size_t dek_len;
        size_t in_len;  /* key_len for encryption, ciphertext length for decryption */
        size_t key_len; /* AES_DEC only */
        size_t cap;
        bool null_in;
        ot_err want;
        size_t want_len; /* *out_len afterwards when want is OT_E_BUF_SMALL */
    } rows[] = {
        {AES_ENC, 8, 16, 0, 32, false, OT_E_KEY, 0},
        {AES_ENC, 20, 16, 0, 32, false, OT_E_KEY, 0},
        {AES_ENC, 16, 8, 0, 32, false, OT_E_KEY, 0},
        {AES_ENC, 16, 17, 0, 32, false, OT_E_KEY, 0},
        {AES_ENC, 16, 48, 0, 64, false, OT_E_KEY, 0},
        {AES_ENC, 16, 24, 0, 31, false, OT_E_BUF_SMALL, 32},
        {AES_ENC, 16, 16, 0, 15, false, OT_E_BUF_SMALL, 16},
        {AES_ENC, 16, 16, 0, 32, true, OT_E_ARG, 0},
        {AES_DEC, 16, 24, 24, 32, false, OT_E_KEY, 0}, /* 24-byte key wraps to 32 */
        {AES_DEC, 16, 16, 32, 32, false, OT_E_KEY, 0},
        {AES_DEC, 16, 32, 20, 32, false, OT_E_KEY, 0},
        {AES_DEC, 12, 16, 16, 32, false, OT_E_KEY, 0},
        {AES_DEC, 16, 32, 24, 23, false, OT_E_BUF_SMALL, 24},
        {AES_DEC, 16, 16, 16, 16, true, OT_E_ARG, 0},
        {DES_ENC, 16, 8, 0, 32, false, OT_E_KEY, 0},
        {DES_ENC, 16, 32, 0, 32, false, OT_E_KEY, 0},
        {DES_ENC, 16, 20, 0, 32, false, OT_E_KEY, 0},
        {DES_ENC, 16, 24, 0, 16, false, OT_E_BUF_SMALL, 24},
        {DES_ENC, 16, 16, 0, 16, true, OT_E_ARG, 0},
        {DES_DEC, 16, 15, 0, 32, false, OT_E_KEY, 0},
        {DES_DEC, 16, 32, 0, 32, false, OT_E_KEY, 0},
        {DES_DEC, 16, 16, 0, 8, false, OT_E_BUF_SMALL, 16},
        {DES_DEC, 16, 16, 0, 16, true, OT_E_ARG, 0},
    };
    uint8_t dek[32] = {1};
    uint8_t in[64] = {2};
    uint8_t out[64];

    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        size_t len = rows[i].cap;
        const uint8_t *p = rows[i].null_in ? NULL : in;
        ot_err got = OT_OK;
        switch (rows[i].op) {
        case AES_ENC:
            got = keywrap_aes_encrypt(dek, rows[i].dek_len, p, rows[i].in_len, out, &len);
            break;
        case AES_DEC:
            got = keywrap_aes_decrypt(dek, rows[i].dek_len, p, rows[i].in_len, rows[i].key_len, out,
                                      &len);
            break;
        case DES_ENC:
            got = keywrap_des_encrypt(dek, p, rows[i].in_len, out, &len);
            break;
        case DES_DEC:
            got = keywrap_des_decrypt(dek, p, rows[i].in_len, out, &len);
            break;
        }
        assert_int_equal(got, rows[i].want);
        if (rows[i].want == OT_E_BUF_SMALL) {
            assert_int_equal(len, rows[i].want_len);
        }
    }
    /* NULL DEK and NULL length pointer */
    size_t len = sizeof out;
    assert_int_equal(keywrap_aes_encrypt(NULL, 16, in, 16, out, &len), OT_E_ARG);
    assert_int_equal(keywrap_des_encrypt(NULL, in, 16, out, &len), OT_E_ARG);
    assert_int_equal(keywrap_des_decrypt(dek, in, 16, out, NULL), OT_E_ARG);
    assert_int_equal(keywrap_aes_wrapped_len(0), 0);
    assert_int_equal(keywrap_aes_wrapped_len(24), 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keywrap_known),
        cmocka_unit_test(test_keywrap_round_trips),
        cmocka_unit_test(test_keywrap_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
