/* Key check values against the published vectors of the reference (§2.9, §6,
 * §8). The keys of the §6 and §8 rows were derived once with the openssl
 * command line (3DES-CBC / 3DES-ECB / AES-CMAC), independently of kdiv.c and
 * scp02.c; kdiv_test and scp02_test check the derivations themselves. */
#include "crypto/kcv.h"

#include "core/hex.h"
#include "core/testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

enum kcv_alg { ALG_AES, ALG_AES_ZERO, ALG_DES3 };

static ot_err run_kcv(enum kcv_alg alg, const uint8_t *key, size_t len, uint8_t *kcv)
{
    switch (alg) {
    case ALG_AES:
        return kcv_aes(key, len, kcv);
    case ALG_AES_ZERO:
        return kcv_aes_zero(key, len, kcv);
    case ALG_DES3:
        return kcv_des3(key, len, kcv);
    }
    return OT_E_INTERNAL;
}

static const struct {
    enum kcv_alg alg;
    const char *key;
    const char *kcv;
} kcv_vectors[] = {
    /* §2.9: pySim test_globalplatform.py */
    {ALG_AES, "000102030405060708090A0B0C0D0E0F", "C35280"},
    {ALG_AES, "101112131415161718191A1B1C1D1E1F", "013808"},
    {ALG_AES, "202122232425262728292A2B2C2D2E2F", "840DE5"},
    /* §2.9: GPPro test key */
    {ALG_DES3, "404142434445464748494A4B4C4D4E4F", "8BAF47"},
    {ALG_AES, "404142434445464748494A4B4C4D4E4F", "504A77"},
    /* §6: GPPro SCP02 session keys, static 404142..4F, seq 0000 */
    {ALG_DES3, "010B0371D78377B801F2D62AFC671D95", "F2DCDD"}, /* S-ENC */
    {ALG_DES3, "D1C28C601652A4770D67AD82D2D2E1C4", "5FCC69"}, /* C-MAC */
    {ALG_DES3, "E11987EE331B417A5D67D760692F89D4", "85272E"}, /* DEK */
    {ALG_DES3, "FFAEC7EC7FAD69F9FBFF093BF2F79C45", "9F749A"}, /* R-MAC */
    /* §8: EMV CPS keys of master 404142..4F, KDD 00..09 */
    {ALG_DES3, "0EF59FCBF8019B62E62AF6EA20B8BF25", "C33013"},
    {ALG_DES3, "3E383EB6F2762B88155F76BDFED05A02", "6F4CA6"},
    {ALG_DES3, "64021E43C0C7D264A1C7C6D01E1C8761", "BB8179"},
    /* §8: VISA2 */
    {ALG_DES3, "8510FC973208218CA86888BCEC203635", "2BE598"},
    {ALG_DES3, "1068B5FB6F06C78C7A4DFC343B21C78F", "58DA38"},
    {ALG_DES3, "2DAEE809C71405FF259C3BE695A1F66E", "3C328E"},
    /* §8: KDF3 AES-128 */
    {ALG_AES, "808BC985A1069AD2A9AC94E0FE7B8843", "E79C05"},
    {ALG_AES, "65942E0BF4F3F32AEFACBA5671456275", "D1BD77"},
    {ALG_AES, "6A74F6F6040CCA10D8A3FDC7914FD7CC", "3FDE8C"},
    /* 3-key 3DES equal to the 2-key form when K3 = K1 */
    {ALG_DES3, "404142434445464748494A4B4C4D4E4F4041424344454647", "8BAF47"},
};

static void test_kcv_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof kcv_vectors / sizeof kcv_vectors[0]; i++) {
        uint8_t key[32];
        uint8_t want[KCV_LEN];
        uint8_t got[KCV_LEN] = {0};
        size_t klen = testutil_unhex(kcv_vectors[i].key, key, sizeof key);
        assert_int_equal(testutil_unhex(kcv_vectors[i].kcv, want, sizeof want), KCV_LEN);
        assert_int_equal(run_kcv(kcv_vectors[i].alg, key, klen, got), OT_OK);
        assert_memory_equal(got, want, KCV_LEN);
    }
}

/* The 00 x 16 variant differs from the spec form, and the key lengths 24 and
 * 32 work (cross-checked with openssl enc -aes-*-ecb). */
static void test_kcv_aes_variants(void **state)
{
    static const struct {
        enum kcv_alg alg;
        size_t len;
        const char *kcv;
    } rows[] = {
        {ALG_AES_ZERO, 16, "189956"},
        {ALG_AES, 24, "FFCD73"},
        {ALG_AES, 32, "ECDCD8"},
    };
    uint8_t key[32];

    (void)state;
    for (size_t i = 0; i < sizeof key; i++) {
        key[i] = (uint8_t)(0x40 + i);
    }
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint8_t want[KCV_LEN];
        uint8_t got[KCV_LEN] = {0};
        testutil_unhex(rows[i].kcv, want, sizeof want);
        assert_int_equal(run_kcv(rows[i].alg, key, rows[i].len, got), OT_OK);
        assert_memory_equal(got, want, KCV_LEN);
    }
}

static void test_kcv_errors(void **state)
{
    static const struct {
        enum kcv_alg alg;
        size_t len;
        bool null_key;
        ot_err want;
    } rows[] = {
        {ALG_AES, 0, false, OT_E_KEY},      {ALG_AES, 15, false, OT_E_KEY},
        {ALG_AES, 17, false, OT_E_KEY},     {ALG_AES, 33, false, OT_E_KEY},
        {ALG_AES_ZERO, 8, false, OT_E_KEY}, {ALG_DES3, 8, false, OT_E_KEY},
        {ALG_DES3, 32, false, OT_E_KEY},    {ALG_DES3, 17, false, OT_E_KEY},
        {ALG_AES, 16, true, OT_E_ARG},      {ALG_DES3, 16, true, OT_E_ARG},
        {ALG_AES_ZERO, 16, true, OT_E_ARG},
    };
    uint8_t key[40] = {0};
    uint8_t kcv[KCV_LEN];

    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        assert_int_equal(run_kcv(rows[i].alg, rows[i].null_key ? NULL : key, rows[i].len, kcv),
                         rows[i].want);
    }
    assert_int_equal(kcv_aes(key, 16, NULL), OT_E_ARG);
    assert_int_equal(kcv_des3(key, 16, NULL), OT_E_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kcv_vectors),
        cmocka_unit_test(test_kcv_aes_variants),
        cmocka_unit_test(test_kcv_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
