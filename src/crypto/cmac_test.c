/* AES-CMAC: NIST SP 800-38B / RFC 4493 vectors for the three key lengths,
 * multi-part input, re-keying, a cross-check against OpenSSL's own CMAC
 * (EVP_MAC) and the argument errors. */
#include "crypto/cmac.h"

#include "core/hex.h"
#include "core/testutil.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define MSG64                                                          \
    "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51" \
    "30C81C46A35CE411E5FBC1191A0A52EFF69F2445DF4F9B17AD2B417BE66C3710"

#define KEY128 "2B7E151628AED2A6ABF7158809CF4F3C"
#define KEY192 "8E73B0F7DA0E6452C810F32B809079E562F8EAD2522C6B7B"
#define KEY256 "603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4"

static const struct {
    const char *key;
    size_t msg_len; /* prefix of MSG64 */
    const char *tag;
} cmac_vectors[] = {
    /* RFC 4493 section 4 (= SP 800-38B D.1 examples 1-4) */
    {KEY128, 0, "BB1D6929E95937287FA37D129B756746"},
    {KEY128, 16, "070A16B46B4D4144F79BDD9DD04A287C"},
    {KEY128, 40, "DFA66747DE9AE63030CA32611497C827"},
    {KEY128, 64, "51F0BEBF7E3B9D92FC49741779363CFE"},
    /* SP 800-38B D.2 (AES-192) */
    {KEY192, 0, "D17DDF46ADAACDE531CAC483DE7A9367"},
    {KEY192, 16, "9E99A7BF31E710900662F65E617C5184"},
    {KEY192, 40, "8A1DE5BE2EB31AAD089A82E6EE908B0E"},
    {KEY192, 64, "A1D5DF0EED790F794D77589659F39A11"},
    /* SP 800-38B D.3 (AES-256) */
    {KEY256, 0, "028962F61B7BF89EFC6B551F4667D983"},
    {KEY256, 16, "28A7023F452E8F82BD4BF28D8C37C35C"},
    {KEY256, 40, "AAF3D8F1DE5640C232F5B169B9C911E6"},
    {KEY256, 64, "E1992190549F6ED5696A2C056C315410"},
};

static void test_vectors(void **state)
{
    (void)state;
    uint8_t msg[64], key[32], want[16], tag[16];
    size_t msg_n = testutil_unhex(MSG64, msg, sizeof msg);
    assert_int_equal(msg_n, 64);

    for (size_t v = 0; v < sizeof cmac_vectors / sizeof cmac_vectors[0]; v++) {
        size_t key_n = testutil_unhex(cmac_vectors[v].key, key, sizeof key);
        testutil_unhex(cmac_vectors[v].tag, want, sizeof want);

        /* one-shot */
        memset(tag, 0, sizeof tag);
        assert_int_equal(cmac_aes(key, key_n, msg, cmac_vectors[v].msg_len, tag), OT_OK);
        assert_memory_equal(tag, want, 16);

        /* context, then every split point of the message into three parts */
        struct cmac *c = NULL;
        assert_int_equal(cmac_new(key, key_n, &c), OT_OK);
        size_t n = cmac_vectors[v].msg_len;
        for (size_t a = 0; a <= n; a++) {
            for (size_t b = a; b <= n; b += 7) {
                cmac_init(c);
                assert_int_equal(cmac_update(c, msg, a), OT_OK);
                assert_int_equal(cmac_update(c, msg + a, b - a), OT_OK);
                assert_int_equal(cmac_update(c, NULL, 0), OT_OK);
                assert_int_equal(cmac_update(c, msg + b, n - b), OT_OK);
                memset(tag, 0, sizeof tag);
                assert_int_equal(cmac_final(c, tag), OT_OK);
                assert_memory_equal(tag, want, 16);
            }
        }
        /* final leaves the context ready for the next message */
        assert_int_equal(cmac_compute(c, msg, n, tag), OT_OK);
        assert_memory_equal(tag, want, 16);
        cmac_free(c);
    }
}

/* Independent implementation: OpenSSL's provider CMAC. */
static void evp_cmac(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t n,
                     uint8_t tag[16])
{
    const char *cipher = key_len == 16   ? "AES-128-CBC"
                         : key_len == 24 ? "AES-192-CBC"
                                         : "AES-256-CBC";
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "CMAC", NULL);
    assert_non_null(mac);
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    assert_non_null(ctx);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, (char *)cipher, 0),
        OSSL_PARAM_construct_end(),
    };
    size_t out_len = 0;
    assert_int_equal(EVP_MAC_init(ctx, key, key_len, params), 1);
    assert_int_equal(EVP_MAC_update(ctx, msg, n), 1);
    assert_int_equal(EVP_MAC_final(ctx, tag, &out_len, 16), 1);
    assert_int_equal(out_len, 16);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
}

static void test_against_evp_mac(void **state)
{
    (void)state;
    uint8_t msg[200], key[32], want[16], tag[16];
    static const size_t key_lens[] = {16, 24, 32};
    struct cmac *c = NULL;

    for (size_t k = 0; k < sizeof key; k++) {
        key[k] = (uint8_t)(0xA5 ^ (k * 29));
    }
    for (size_t k = 0; k < sizeof msg; k++) {
        msg[k] = (uint8_t)(k * 7 + 3);
    }
    assert_int_equal(cmac_new(key, 16, &c), OT_OK);
    for (size_t kl = 0; kl < 3; kl++) {
        /* re-key the same context through all three lengths */
        assert_int_equal(cmac_set_key(c, key, key_lens[kl]), OT_OK);
        for (size_t n = 0; n <= sizeof msg; n++) {
            evp_cmac(key, key_lens[kl], msg, n, want);
            assert_int_equal(cmac_compute(c, msg, n, tag), OT_OK);
            assert_memory_equal(tag, want, 16);
        }
        key[0]++; /* a different key for the next length */
    }
    cmac_free(c);
}

static void test_rekey_same_length(void **state)
{
    (void)state;
    uint8_t k1[16], k2[16], msg[33], t1[16], t2[16], t3[16];
    memset(k1, 0x11, sizeof k1);
    memset(k2, 0x22, sizeof k2);
    memset(msg, 0x5A, sizeof msg);
    struct cmac *c = NULL;

    assert_int_equal(cmac_new(k1, 16, &c), OT_OK);
    assert_int_equal(cmac_compute(c, msg, sizeof msg, t1), OT_OK);
    /* a message in progress is discarded by set_key */
    assert_int_equal(cmac_update(c, msg, 5), OT_OK);
    assert_int_equal(cmac_set_key(c, k2, 16), OT_OK);
    assert_int_equal(cmac_compute(c, msg, sizeof msg, t2), OT_OK);
    assert_int_equal(cmac_aes(k2, 16, msg, sizeof msg, t3), OT_OK);
    assert_memory_equal(t2, t3, 16);
    assert_memory_not_equal(t1, t2, 16);
    cmac_free(c);
}

static void test_errors(void **state)
{
    (void)state;
    uint8_t key[33] = {0}, tag[16];
    struct cmac *c = (struct cmac *)&key; /* must be reset to NULL on failure */
    static const size_t bad_lens[] = {0, 8, 15, 17, 20, 31, 33};

    for (size_t k = 0; k < sizeof bad_lens / sizeof bad_lens[0]; k++) {
        c = (struct cmac *)&key;
        assert_int_equal(cmac_new(key, bad_lens[k], &c), OT_E_KEY);
        assert_null(c);
        assert_int_equal(cmac_aes(key, bad_lens[k], key, 1, tag), OT_E_KEY);
    }
    assert_int_equal(cmac_new(NULL, 16, &c), OT_E_ARG);
    assert_null(c);
    assert_int_equal(cmac_new(key, 16, NULL), OT_E_ARG);

    assert_int_equal(cmac_new(key, 16, &c), OT_OK);
    assert_int_equal(cmac_set_key(c, key, 12), OT_E_KEY);
    assert_int_equal(cmac_set_key(c, NULL, 16), OT_E_ARG);
    assert_int_equal(cmac_update(c, NULL, 1), OT_E_ARG);
    assert_int_equal(cmac_update(NULL, key, 1), OT_E_ARG);
    assert_int_equal(cmac_final(c, NULL), OT_E_ARG);
    assert_int_equal(cmac_compute(NULL, key, 1, tag), OT_E_ARG);
    cmac_free(c);
    cmac_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_against_evp_mac),
        cmocka_unit_test(test_rekey_same_length),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
