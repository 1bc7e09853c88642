/* Static key diversification against the reference §8 vectors: derived key ->
 * KCV for VISA2, EMV CPS and KDF3 (AES-128), the full 256-bit KDF3 external
 * vector, and the key-set conveniences. */
#include "crypto/kdiv.h"

#include "core/hex.h"
#include "core/testutil.h"
#include "crypto/kcv.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static const uint8_t gp_master[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
                                      0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F};
static const uint8_t kdd_seq[KDIV_KDD_LEN] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};

static const struct {
    enum kdiv_scheme s;
    uint8_t kt;
    const char *kcv; /* 3DES KCV for VISA2/EMV, AES KCV for KDF3 */
    const char *key; /* derived key computed with the openssl CLI */
} kcv_rows[] = {
    {KDIV_EMV_CPS, KDIV_KEY_ENC, "C33013", "0EF59FCBF8019B62E62AF6EA20B8BF25"},
    {KDIV_EMV_CPS, KDIV_KEY_MAC, "6F4CA6", "3E383EB6F2762B88155F76BDFED05A02"},
    {KDIV_EMV_CPS, KDIV_KEY_DEK, "BB8179", "64021E43C0C7D264A1C7C6D01E1C8761"},
    {KDIV_VISA2, KDIV_KEY_ENC, "2BE598", "8510FC973208218CA86888BCEC203635"},
    {KDIV_VISA2, KDIV_KEY_MAC, "58DA38", "1068B5FB6F06C78C7A4DFC343B21C78F"},
    {KDIV_VISA2, KDIV_KEY_DEK, "3C328E", "2DAEE809C71405FF259C3BE695A1F66E"},
    {KDIV_KDF3, KDIV_KEY_ENC, "E79C05", "808BC985A1069AD2A9AC94E0FE7B8843"},
    {KDIV_KDF3, KDIV_KEY_MAC, "D1BD77", "65942E0BF4F3F32AEFACBA5671456275"},
    {KDIV_KDF3, KDIV_KEY_DEK, "3FDE8C", "6A74F6F6040CCA10D8A3FDC7914FD7CC"},
};

static ot_err derive(enum kdiv_scheme s, const uint8_t *m, size_t len, const uint8_t *kdd,
                     uint8_t kt, uint8_t *out)
{
    switch (s) {
    case KDIV_VISA2:
        return kdiv_visa2(m, kdd, kt, out);
    case KDIV_EMV_CPS:
        return kdiv_emv_cps(m, kdd, kt, out);
    case KDIV_KDF3:
        return kdiv_kdf3(m, len, kdd, kt, out);
    default:
        return OT_E_INTERNAL;
    }
}

static void test_kdiv_kcv_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof kcv_rows / sizeof kcv_rows[0]; i++) {
        uint8_t key[16] = {0};
        uint8_t want_key[16];
        uint8_t kcv[KCV_LEN];
        uint8_t want_kcv[KCV_LEN];
        assert_int_equal(derive(kcv_rows[i].s, gp_master, 16, kdd_seq, kcv_rows[i].kt, key), OT_OK);
        testutil_unhex(kcv_rows[i].key, want_key, sizeof want_key);
        assert_memory_equal(key, want_key, 16);
        testutil_unhex(kcv_rows[i].kcv, want_kcv, sizeof want_kcv);
        if (kcv_rows[i].s == KDIV_KDF3) {
            assert_int_equal(kcv_aes(key, 16, kcv), OT_OK);
        } else {
            assert_int_equal(kcv_des3(key, 16, kcv), OT_OK);
        }
        assert_memory_equal(kcv, want_kcv, KCV_LEN);
    }
}

/* Reference §8 external KDF3 vector (AES-256 master, two PRF blocks), plus a
 * 192-bit master whose result must be the first 24 bytes of the two blocks
 * (cross-checked with openssl mac CMAC). */
static void test_kdiv_kdf3_long(void **state)
{
    static const struct {
        const char *master;
        const char *kdd;
        uint8_t kt;
        const char *want;
    } rows[] = {
        {"8C72C72CF908411653018807950D82FBAD947562F0828A0B10B8B9606ABF3BCD", "D9B1DE5D0362DEDCE4FB",
         KDIV_KEY_ENC, "9AAC5D0B3601F89438A0D9D0B6B256CFB47E6462DFA5228D3420C4AC7C224781"},
        {"8C72C72CF908411653018807950D82FBAD947562F0828A0B", "D9B1DE5D0362DEDCE4FB", KDIV_KEY_MAC,
         "D0BED6AD0B6F1860D13B9DD6027C5E13D25256EAA0EEA069"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint8_t m[32];
        uint8_t kdd[KDIV_KDD_LEN];
        uint8_t want[32];
        uint8_t got[32] = {0};
        size_t mlen = testutil_unhex(rows[i].master, m, sizeof m);
        assert_int_equal(testutil_unhex(rows[i].kdd, kdd, sizeof kdd), KDIV_KDD_LEN);
        assert_int_equal(testutil_unhex(rows[i].want, want, sizeof want), mlen);
        assert_int_equal(kdiv_kdf3(m, mlen, kdd, rows[i].kt, got), OT_OK);
        assert_memory_equal(got, want, mlen);
    }
}

static void test_kdiv_keysets(void **state)
{
    struct scp02_keyset k2;
    struct scp03_keyset k3;
    uint8_t kcv[KCV_LEN];

    (void)state;
    assert_int_equal(kdiv_scp02_keyset(KDIV_EMV_CPS, gp_master, kdd_seq, 0x20, &k2), OT_OK);
    assert_int_equal(k2.kvn, 0x20);
    assert_int_equal(kcv_des3(k2.enc, 16, kcv), OT_OK);
    assert_memory_equal(kcv, "\xC3\x30\x13", 3);
    assert_int_equal(kcv_des3(k2.mac, 16, kcv), OT_OK);
    assert_memory_equal(kcv, "\x6F\x4C\xA6", 3);
    assert_int_equal(kcv_des3(k2.dek, 16, kcv), OT_OK);
    assert_memory_equal(kcv, "\xBB\x81\x79", 3);

    assert_int_equal(kdiv_scp02_keyset(KDIV_NONE, gp_master, NULL, 0x01, &k2), OT_OK);
    assert_memory_equal(k2.enc, gp_master, 16);
    assert_memory_equal(k2.dek, gp_master, 16);

    assert_int_equal(kdiv_scp03_keyset(KDIV_KDF3, gp_master, 16, kdd_seq, 0x30, &k3), OT_OK);
    assert_int_equal(k3.key_len, 16);
    assert_int_equal(k3.kvn, 0x30);
    assert_int_equal(kcv_aes(k3.enc, 16, kcv), OT_OK);
    assert_memory_equal(kcv, "\xE7\x9C\x05", 3);
    assert_int_equal(kcv_aes(k3.mac, 16, kcv), OT_OK);
    assert_memory_equal(kcv, "\xD1\xBD\x77", 3);
    assert_int_equal(kcv_aes(k3.dek, 16, kcv), OT_OK);
    assert_memory_equal(kcv, "\x3F\xDE\x8C", 3);
}

static void test_kdiv_errors(void **state)
{
    static const struct {
        enum kdiv_scheme s;
        size_t len;
        bool null_kdd;
        ot_err want;
    } keys_rows[] = {
        {KDIV_VISA2, 24, false, OT_E_KEY}, {KDIV_EMV_CPS, 32, false, OT_E_KEY},
        {KDIV_KDF3, 8, false, OT_E_KEY},   {KDIV_KDF3, 20, false, OT_E_KEY},
        {KDIV_NONE, 15, false, OT_E_KEY},  {KDIV_KDF3, 16, true, OT_E_ARG},
        {KDIV_VISA2, 16, true, OT_E_ARG},  {(enum kdiv_scheme)9, 16, false, OT_E_ARG},
        {KDIV_NONE, 16, true, OT_OK},      {KDIV_KDF3, 32, false, OT_OK},
    };
    uint8_t m[32] = {0};
    uint8_t a[32];
    uint8_t b[32];
    uint8_t c[32];
    struct scp02_keyset k2;
    struct scp03_keyset k3;
    enum kdiv_scheme s;

    (void)state;
    for (size_t i = 0; i < sizeof keys_rows / sizeof keys_rows[0]; i++) {
        assert_int_equal(kdiv_keys(keys_rows[i].s, m, keys_rows[i].len,
                                   keys_rows[i].null_kdd ? NULL : kdd_seq, a, b, c),
                         keys_rows[i].want);
    }
    /* key type outside 1..3 */
    assert_int_equal(kdiv_visa2(m, kdd_seq, 0, a), OT_E_ARG);
    assert_int_equal(kdiv_emv_cps(m, kdd_seq, 4, a), OT_E_ARG);
    assert_int_equal(kdiv_kdf3(m, 16, kdd_seq, 0, a), OT_E_ARG);
    assert_int_equal(kdiv_kdf3(NULL, 16, kdd_seq, 1, a), OT_E_ARG);
    assert_int_equal(kdiv_kdf3(m, 16, kdd_seq, 1, NULL), OT_E_ARG);
    assert_int_equal(kdiv_emv_cps(m, NULL, 1, a), OT_E_ARG);
    /* schemes that do not fit the protocol */
    assert_int_equal(kdiv_scp02_keyset(KDIV_KDF3, m, kdd_seq, 1, &k2), OT_E_ARG);
    assert_int_equal(kdiv_scp03_keyset(KDIV_VISA2, m, 16, kdd_seq, 1, &k3), OT_E_ARG);
    assert_int_equal(kdiv_scp03_keyset(KDIV_KDF3, m, 12, kdd_seq, 1, &k3), OT_E_KEY);
    assert_int_equal(kdiv_scp02_keyset(KDIV_EMV_CPS, m, kdd_seq, 1, NULL), OT_E_ARG);

    /* names */
    static const struct {
        const char *name;
        ot_err want;
        enum kdiv_scheme s;
    } names[] = {
        {"none", OT_OK, KDIV_NONE},   {"VISA2", OT_OK, KDIV_VISA2},
        {"emv", OT_OK, KDIV_EMV_CPS}, {"emv-cps", OT_OK, KDIV_EMV_CPS},
        {"kdf3", OT_OK, KDIV_KDF3},   {"kdf", OT_E_ARG, KDIV_NONE},
        {"", OT_E_ARG, KDIV_NONE},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        s = KDIV_NONE;
        assert_int_equal(kdiv_scheme_parse(names[i].name, &s), names[i].want);
        assert_int_equal(s, names[i].s);
    }
    assert_int_equal(kdiv_scheme_parse(NULL, &s), OT_E_ARG);
    assert_string_equal(kdiv_scheme_name(KDIV_EMV_CPS), "emv");
    assert_string_equal(kdiv_scheme_name((enum kdiv_scheme)42), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kdiv_kcv_vectors),
        cmocka_unit_test(test_kdiv_kdf3_long),
        cmocka_unit_test(test_kdiv_keysets),
        cmocka_unit_test(test_kdiv_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
