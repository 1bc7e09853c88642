/* P-256 helpers (ec.c) and the SP-key wrap for a dongle (ecwrap.c).
 * ECDSA: the RFC 6979 A.2.5 P-256 key and its SHA-256 "sample" signature.
 * Interop: PY_BLOB was made by an independent implementation of ecwrap.h's
 * construction in Python "cryptography" (ECDH, HKDF, AESGCM) for the RFC
 * 6979 key as the dongle, ephemeral scalar 11..11, nonce 00..0B, key
 * 00..0F, sp "bank-a", version 3, dongle "dongle-1". */
#include "crypto/ec.h"
#include "crypto/ecwrap.h"

#include "core/testutil.h"

/* RFC 6979 A.2.5 */
#define R6979_X "C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721"
#define R6979_U                                                          \
    "0460FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6" \
    "7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299"
#define R6979_SIG                                                      \
    "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716" \
    "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8"

#define PY_BLOB                                                                              \
    "0101010662616E6B2D610000000308646F6E676C652D31040217E617F0B6443928278F96999E69A23A4F2C" \
    "152BDF6D6CDF66E5B80282D4ED194A7DEBCB97712D2DDA3CA85AA8765A56F45FC758599652F2897C65306E" \
    "5794000102030405060708090A0B10CED1FAC78A8A6529CB462CE8426BE2244BE89551372447FC2B382050" \
    "652BFDB7"

static const uint8_t sp_key[16] = {0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
                                   0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F};

static void test_ecdsa_rfc6979(void **state)
{
    (void)state;
    uint8_t x[32], u[65], sig[64], sig2[64];
    testutil_unhex(R6979_X, x, sizeof x);
    testutil_unhex(R6979_U, u, sizeof u);
    testutil_unhex(R6979_SIG, sig, sizeof sig);
    assert_true(ec_p256_pub_valid(u));
    assert_int_equal(ec_p256_verify(u, (const uint8_t *)"sample", 6, sig), OT_OK);
    assert_int_equal(ec_p256_verify(u, (const uint8_t *)"sampla", 6, sig), OT_E_CRYPTO);
    sig[63] ^= 1;
    assert_int_equal(ec_p256_verify(u, (const uint8_t *)"sample", 6, sig), OT_E_CRYPTO);
    memset(sig, 0, sizeof sig); /* r = s = 0 */
    assert_int_equal(ec_p256_verify(u, (const uint8_t *)"sample", 6, sig), OT_E_CRYPTO);
    /* our own signature (random k) verifies under the same key */
    assert_int_equal(ec_p256_sign(x, u, (const uint8_t *)"sample", 6, sig2), OT_OK);
    assert_int_equal(ec_p256_verify(u, (const uint8_t *)"sample", 6, sig2), OT_OK);
}

static void test_interop_python(void **state)
{
    (void)state;
    uint8_t x[32], u[65], blob[ECWRAP_MAX_BLOB], key[32];
    struct ecwrap_policy pol = {.dongle_id = "dongle-1", .min_version = 3};
    struct ecwrap_meta m;
    size_t kl = 0;
    testutil_unhex(R6979_X, x, sizeof x);
    testutil_unhex(R6979_U, u, sizeof u);
    size_t n = testutil_unhex(PY_BLOB, blob, sizeof blob);
    assert_int_equal(ecwrap_unwrap(x, u, &pol, blob, n, &m, key, sizeof key, &kl), OT_OK);
    testutil_assert_hex(key, kl, "000102030405060708090A0B0C0D0E0F");
    assert_string_equal(m.sp_id, "bank-a");
    assert_int_equal(m.key_version, 3);
    pol.min_version = 4;
    assert_int_equal(ecwrap_unwrap(x, u, &pol, blob, n, &m, key, sizeof key, &kl), OT_E_REPLAY);
}

static void test_ec_keys(void **state)
{
    (void)state;
    uint8_t a[32], apub[65], b[32], bpub[65], z1[32], z2[32];
    assert_int_equal(ec_p256_keygen(a, apub), OT_OK);
    assert_int_equal(ec_p256_keygen(b, bpub), OT_OK);
    assert_int_equal(apub[0], 0x04);
    assert_true(ec_p256_pub_valid(apub));
    assert_int_equal(ec_p256_ecdh(a, apub, bpub, z1), OT_OK);
    assert_int_equal(ec_p256_ecdh(b, bpub, apub, z2), OT_OK);
    assert_memory_equal(z1, z2, 32);
    /* a private key with another's public key is not a pair */
    assert_int_equal(ec_p256_ecdh(a, bpub, bpub, z1), OT_E_KEY);
    /* points not on the curve, compressed form, infinity */
    uint8_t bad[65];
    memcpy(bad, apub, 65);
    bad[64] ^= 1;
    assert_false(ec_p256_pub_valid(bad));
    assert_int_equal(ec_p256_ecdh(a, apub, bad, z1), OT_E_KEY);
    memset(bad, 0, sizeof bad);
    assert_false(ec_p256_pub_valid(bad));
    bad[0] = 0x04;
    assert_false(ec_p256_pub_valid(bad));
    memcpy(bad, apub, 65);
    bad[0] = 0x02;
    assert_false(ec_p256_pub_valid(bad));
}

struct dongle {
    uint8_t priv[32], pub[65];
};

static void dongle_new(struct dongle *d)
{
    assert_int_equal(ec_p256_keygen(d->priv, d->pub), OT_OK);
}

static struct ecwrap_meta meta_of(const char *sp, uint32_t ver, const char *dongle)
{
    struct ecwrap_meta m;
    memset(&m, 0, sizeof m);
    m.key_type = ECWRAP_KT_EMV_IMK;
    snprintf(m.sp_id, sizeof m.sp_id, "%s", sp);
    snprintf(m.dongle_id, sizeof m.dongle_id, "%s", dongle);
    m.key_version = ver;
    return m;
}

static size_t wrap(const struct dongle *d, const struct ecwrap_meta *m, uint8_t *out)
{
    size_t n = ECWRAP_MAX_BLOB;
    assert_int_equal(ecwrap_wrap(d->pub, m, sp_key, sizeof sp_key, out, &n), OT_OK);
    return n;
}

static void test_round_trip(void **state)
{
    (void)state;
    struct dongle d;
    struct ecwrap_meta m = meta_of("bank-a", 3, "dongle-1"), got;
    struct ecwrap_policy pol = {.dongle_id = "dongle-1", .min_version = 1};
    uint8_t blob[ECWRAP_MAX_BLOB], key[32], blob2[ECWRAP_MAX_BLOB];
    size_t kl = 0;
    dongle_new(&d);
    size_t n = wrap(&d, &m, blob);
    assert_int_equal(n, 3 + 1 + 6 + 4 + 1 + 8 + 65 + 12 + 1 + 16 + 16);
    assert_int_equal(ecwrap_unwrap(d.priv, d.pub, &pol, blob, n, &got, key, sizeof key, &kl),
                     OT_OK);
    assert_int_equal(kl, 16);
    assert_memory_equal(key, sp_key, 16);
    assert_string_equal(got.sp_id, "bank-a");
    assert_string_equal(got.dongle_id, "dongle-1");
    assert_int_equal(got.key_version, 3);
    assert_int_equal(got.key_type, ECWRAP_KT_EMV_IMK);
    /* the key never shows in the blob, and two wraps differ (ephemeral key) */
    for (size_t i = 0; i + 16 <= n; i++) {
        assert_memory_not_equal(blob + i, sp_key, 16);
    }
    assert_int_equal(wrap(&d, &m, blob2), n);
    assert_memory_not_equal(blob, blob2, n);
    /* 32-byte keys too */
    uint8_t k32[32];
    memset(k32, 0x5A, sizeof k32);
    size_t n32 = sizeof blob;
    assert_int_equal(ecwrap_wrap(d.pub, &m, k32, 32, blob, &n32), OT_OK);
    assert_int_equal(ecwrap_unwrap(d.priv, d.pub, &pol, blob, n32, NULL, key, sizeof key, &kl),
                     OT_OK);
    assert_int_equal(kl, 32);
    assert_memory_equal(key, k32, 32);
    /* capacity checks */
    size_t small = n32 - 1;
    assert_int_equal(ecwrap_wrap(d.pub, &m, k32, 32, blob, &small), OT_E_BUF_SMALL);
    assert_int_equal(small, n32);
    assert_int_equal(ecwrap_unwrap(d.priv, d.pub, &pol, blob, n32, NULL, key, 16, &kl),
                     OT_E_BUF_SMALL);
    assert_int_equal(kl, 32);
}

static void test_wrong_dongle(void **state)
{
    (void)state;
    struct dongle a, b;
    struct ecwrap_meta m = meta_of("bank-a", 1, "A");
    struct ecwrap_policy pol_a = {.dongle_id = "A", .min_version = 1};
    struct ecwrap_policy pol_b = {.dongle_id = "B", .min_version = 1};
    uint8_t blob[ECWRAP_MAX_BLOB], key[32];
    size_t kl = 0;
    dongle_new(&a);
    dongle_new(&b);
    size_t n = wrap(&a, &m, blob);
    memset(key, 0xEE, sizeof key);
    /* B refuses a blob addressed to A by its id ... */
    assert_int_equal(ecwrap_unwrap(b.priv, b.pub, &pol_b, blob, n, NULL, key, sizeof key, &kl),
                     OT_E_FORBIDDEN);
    /* ... and with A's id but its own key it cannot open it */
    assert_int_equal(ecwrap_unwrap(b.priv, b.pub, &pol_a, blob, n, NULL, key, sizeof key, &kl),
                     OT_E_CRYPTO);
    for (size_t i = 0; i < sizeof key; i++) {
        assert_int_equal(key[i], 0xEE);
    }
    assert_int_equal(ecwrap_unwrap(a.priv, a.pub, &pol_a, blob, n, NULL, key, sizeof key, &kl),
                     OT_OK);
}

/* Every single-bit change anywhere in the blob is refused. */
static void test_bit_flips(void **state)
{
    (void)state;
    struct dongle d;
    struct ecwrap_meta m = meta_of("transit-x", 7, "dg");
    struct ecwrap_policy pol = {.dongle_id = "dg", .min_version = 1};
    uint8_t blob[ECWRAP_MAX_BLOB], key[32];
    size_t kl = 0;
    dongle_new(&d);
    size_t n = wrap(&d, &m, blob);
    for (size_t bit = 0; bit < n * 8; bit++) {
        blob[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        ot_err e = ecwrap_unwrap(d.priv, d.pub, &pol, blob, n, NULL, key, sizeof key, &kl);
        if (e == OT_OK) {
            print_error("bit %zu accepted\n", bit);
        }
        assert_int_not_equal(e, OT_OK);
        blob[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(ecwrap_unwrap(d.priv, d.pub, &pol, blob, n, NULL, key, sizeof key, &kl),
                     OT_OK);
}

/* A change of any bound field that still parses is caught by the tag. */
static void test_ad_bound(void **state)
{
    (void)state;
    struct dongle d;
    struct ecwrap_meta m = meta_of("bank-a", 0x01020304, "dg");
    struct ecwrap_policy pol = {.dongle_id = "dg", .min_version = 0};
    uint8_t blob[ECWRAP_MAX_BLOB], key[32];
    size_t kl = 0;
    dongle_new(&d);
    size_t n = wrap(&d, &m, blob);
    /* offsets: 2 key type, 4..9 sp id, 10..13 key version */
    const struct {
        size_t off;
        uint8_t val;
    } edits[] = {
        {2, ECWRAP_KT_TRANSIT_IMK}, /* key type */
        {2, ECWRAP_KT_PIN},
        {4, 'c'}, /* sp id "bank-a" -> "cank-a" */
        {9, 'b'}, /* "bank-b" */
        {10, 0x00},
        {13, 0x05}, /* key version up and down */
        {13, 0x03},
        {n - 1, 0}, /* tag */
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        uint8_t save = blob[edits[i].off];
        blob[edits[i].off] = edits[i].val;
        if (save != edits[i].val) {
            assert_int_equal(
                ecwrap_unwrap(d.priv, d.pub, &pol, blob, n, NULL, key, sizeof key, &kl),
                OT_E_CRYPTO);
        }
        blob[edits[i].off] = save;
    }
    /* the dongle id: a blob rewritten for another dongle id does not open */
    struct ecwrap_policy pol2 = {.dongle_id = "dh", .min_version = 0};
    blob[16] = 'h'; /* "dg" -> "dh" (offsets: 14 length, 15..16 id) */
    assert_int_equal(ecwrap_unwrap(d.priv, d.pub, &pol2, blob, n, NULL, key, sizeof key, &kl),
                     OT_E_CRYPTO);
}

static void test_rollback(void **state)
{
    (void)state;
    struct dongle d;
    uint8_t blob[ECWRAP_MAX_BLOB], key[32];
    size_t kl = 0;
    dongle_new(&d);
    struct ecwrap_meta m4 = meta_of("bank-a", 4, "dg");
    struct ecwrap_meta m5 = meta_of("bank-a", 5, "dg");
    struct ecwrap_policy pol = {.dongle_id = "dg", .min_version = 5};
    size_t n4 = wrap(&d, &m4, blob);
    assert_int_equal(ecwrap_unwrap(d.priv, d.pub, &pol, blob, n4, NULL, key, sizeof key, &kl),
                     OT_E_REPLAY);
    size_t n5 = wrap(&d, &m5, blob);
    assert_int_equal(ecwrap_unwrap(d.priv, d.pub, &pol, blob, n5, NULL, key, sizeof key, &kl),
                     OT_OK);
}

static void test_meta_and_args(void **state)
{
    (void)state;
    struct dongle d;
    uint8_t blob[ECWRAP_MAX_BLOB];
    size_t n = sizeof blob;
    dongle_new(&d);
    struct ecwrap_meta m = meta_of("bank a", 1, "dg"); /* space not allowed */
    assert_int_equal(ecwrap_wrap(d.pub, &m, sp_key, 16, blob, &n), OT_E_FORMAT);
    m = meta_of("", 1, "dg");
    assert_int_equal(ecwrap_wrap(d.pub, &m, sp_key, 16, blob, &n), OT_E_FORMAT);
    m = meta_of("bank", 0, "dg");
    assert_int_equal(ecwrap_wrap(d.pub, &m, sp_key, 16, blob, &n), OT_E_RANGE);
    m = meta_of("bank", 1, "dg");
    m.key_type = 9;
    assert_int_equal(ecwrap_wrap(d.pub, &m, sp_key, 16, blob, &n), OT_E_FORMAT);
    m.key_type = ECWRAP_KT_PIN;
    assert_int_equal(ecwrap_wrap(d.pub, &m, sp_key, 15, blob, &n), OT_E_KEY);
    uint8_t badpub[65] = {0x04};
    assert_int_equal(ecwrap_wrap(badpub, &m, sp_key, 16, blob, &n), OT_E_KEY);
    m = meta_of("0123456789012345678901234567890123", 1, "dg"); /* cut to 32 by snprintf */
    assert_int_equal(ecwrap_wrap(d.pub, &m, sp_key, 16, blob, &n), OT_OK);
    assert_int_equal(n, ECWRAP_MAX_BLOB - 30 - 16);
}

static void test_parse_errors(void **state)
{
    (void)state;
    struct dongle d;
    struct ecwrap_meta m = meta_of("sp", 1, "dg");
    struct ecwrap_view v;
    uint8_t blob[ECWRAP_MAX_BLOB + 2];
    dongle_new(&d);
    size_t n = wrap(&d, &m, blob);
    assert_int_equal(ecwrap_parse(blob, n, &v), OT_OK);
    assert_int_equal(v.key_len, 16);
    assert_int_equal(v.hdr_len, n - 32);
    /* every proper prefix is truncated */
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ecwrap_parse(blob, i, &v), OT_E_TRUNCATED);
    }
    blob[n] = 0;
    assert_int_equal(ecwrap_parse(blob, n + 1, &v), OT_E_TRAILING);
    assert_int_equal(ecwrap_parse(blob, ECWRAP_MAX_BLOB + 1, &v), OT_E_TOO_LONG);
    blob[0] = 2;
    assert_int_equal(ecwrap_parse(blob, n, &v), OT_E_UNSUPPORTED);
    blob[0] = 1;
    blob[1] = 2;
    assert_int_equal(ecwrap_parse(blob, n, &v), OT_E_UNSUPPORTED);
    blob[1] = 1;
    blob[2] = 0;
    assert_int_equal(ecwrap_parse(blob, n, &v), OT_E_FORMAT);
    blob[2] = 1;
    blob[3] = 0; /* empty sp id */
    assert_int_equal(ecwrap_parse(blob, n, &v), OT_E_FORMAT);
    blob[3] = 2;
    blob[4] = 0x7F; /* DEL in the id */
    assert_int_equal(ecwrap_parse(blob, n, &v), OT_E_FORMAT);
    blob[4] = 's';
    uint8_t save[4];
    memcpy(save, blob + 6, 4);
    memset(blob + 6, 0, 4); /* key version 0 */
    assert_int_equal(ecwrap_parse(blob, n, &v), OT_E_RANGE);
    memcpy(blob + 6, save, 4);
    blob[13] = 0x03; /* ephemeral key not uncompressed */
    assert_int_equal(ecwrap_parse(blob, n, &v), OT_E_FORMAT);
    blob[13] = 0x04;
    blob[13 + 65 + 12] = 17; /* key length */
    assert_int_equal(ecwrap_parse(blob, n, &v), OT_E_RANGE);
    blob[13 + 65 + 12] = 16;
    assert_int_equal(ecwrap_parse(blob, n, &v), OT_OK);
    assert_int_equal(ecwrap_parse(NULL, 0, &v), OT_E_TRUNCATED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ecdsa_rfc6979), cmocka_unit_test(test_interop_python),
        cmocka_unit_test(test_ec_keys),       cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_wrong_dongle),  cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_ad_bound),      cmocka_unit_test(test_rollback),
        cmocka_unit_test(test_meta_and_args), cmocka_unit_test(test_parse_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
