#include "crypto/ec.h"

#define OT_LOG_COMPONENT "crypto.ec"
#include "core/buf.h"
#include "core/log.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/param_build.h>

#include <string.h>

/* OpenSSL's name for P-256 (secp256r1). */
static const char ec_group_name[] = "prime256v1";

ot_err ec_p256_keygen(uint8_t priv[EC_P256_PRIV_LEN], uint8_t pub[EC_P256_PUB_LEN])
{
    ot_err err = OT_OK;
    EVP_PKEY *pk = NULL;
    BIGNUM *d = NULL;
    size_t n = 0;

    if (priv == NULL || pub == NULL) {
        return OT_E_ARG;
    }
    pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (pk == NULL) {
        OT_FAIL(OT_E_CRYPTO);
    }
    if (EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_PRIV_KEY, &d) != 1
        || BN_bn2binpad(d, priv, EC_P256_PRIV_LEN) != (int)EC_P256_PRIV_LEN
        || EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, pub, EC_P256_PUB_LEN, &n)
               != 1
        || n != EC_P256_PUB_LEN || pub[0] != 0x04u) {
        ot_mem_wipe(priv, EC_P256_PRIV_LEN);
        OT_FAIL(OT_E_CRYPTO);
    }
out:
    BN_clear_free(d);
    EVP_PKEY_free(pk);
    return err;
}

/* fromdata over params, then the check that fits the selection. */
static ot_err ec_fromdata(OSSL_PARAM *params, int selection, EVP_PKEY **out)
{
    ot_err err = OT_OK;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY_CTX *chk = NULL;
    EVP_PKEY *pk = NULL;

    if (ctx == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    if (EVP_PKEY_fromdata_init(ctx) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
    if (EVP_PKEY_fromdata(ctx, &pk, selection, params) != 1) {
        OT_FAIL(OT_E_KEY); /* not a point on the curve, bad scalar */
    }
    chk = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    if (chk == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    /* SP 800-56A 5.6.2.3.3 full public key validation; for a pair, also
     * that the public key is the private scalar times G. */
    if (EVP_PKEY_public_check(chk) != 1
        || (selection == EVP_PKEY_KEYPAIR && EVP_PKEY_pairwise_check(chk) != 1)) {
        OT_FAIL(OT_E_KEY);
    }
    *out = pk;
    pk = NULL;
out:
    EVP_PKEY_CTX_free(chk);
    EVP_PKEY_free(pk);
    EVP_PKEY_CTX_free(ctx);
    return err;
}

ot_err ec_p256_pkey_pub(const uint8_t pub[EC_P256_PUB_LEN], EVP_PKEY **out)
{
    char group[sizeof ec_group_name];
    OSSL_PARAM params[3];

    if (out == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (pub == NULL) {
        return OT_E_ARG;
    }
    if (pub[0] != 0x04u) { /* only the uncompressed form is accepted */
        return OT_E_KEY;
    }
    memcpy(group, ec_group_name, sizeof group);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    params[1] =
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pub, EC_P256_PUB_LEN);
    params[2] = OSSL_PARAM_construct_end();
    return ec_fromdata(params, EVP_PKEY_PUBLIC_KEY, out);
}

ot_err ec_p256_pkey_priv(const uint8_t priv[EC_P256_PRIV_LEN], const uint8_t pub[EC_P256_PUB_LEN],
                         EVP_PKEY **out)
{
    ot_err err = OT_OK;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    BIGNUM *d = NULL;

    if (out == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (priv == NULL || pub == NULL) {
        return OT_E_ARG;
    }
    if (pub[0] != 0x04u) {
        return OT_E_KEY;
    }
    d = BN_secure_new();
    bld = OSSL_PARAM_BLD_new();
    if (d == NULL || bld == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    if (BN_bin2bn(priv, EC_P256_PRIV_LEN, d) == NULL
        || OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, ec_group_name, 0) != 1
        || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) != 1
        || OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, EC_P256_PUB_LEN)
               != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    if (params == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    err = ec_fromdata(params, EVP_PKEY_KEYPAIR, out);
out:
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_clear_free(d);
    return err;
}

bool ec_p256_pub_valid(const uint8_t pub[EC_P256_PUB_LEN])
{
    EVP_PKEY *pk = NULL;

    if (pub == NULL || ec_p256_pkey_pub(pub, &pk) != OT_OK) {
        return false;
    }
    EVP_PKEY_free(pk);
    return true;
}

ot_err ec_p256_ecdh(const uint8_t priv[EC_P256_PRIV_LEN], const uint8_t pub[EC_P256_PUB_LEN],
                    const uint8_t peer[EC_P256_PUB_LEN], uint8_t z[32])
{
    ot_err err = OT_OK;
    EVP_PKEY *me = NULL;
    EVP_PKEY *other = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    size_t zlen = 32;

    if (priv == NULL || pub == NULL || peer == NULL || z == NULL) {
        return OT_E_ARG;
    }
    OT_TRY(ec_p256_pkey_priv(priv, pub, &me));
    OT_TRY(ec_p256_pkey_pub(peer, &other));
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, me, NULL);
    if (ctx == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    if (EVP_PKEY_derive_init(ctx) != 1 || EVP_PKEY_derive_set_peer(ctx, other) != 1
        || EVP_PKEY_derive(ctx, z, &zlen) != 1 || zlen != 32) {
        ot_mem_wipe(z, 32);
        OT_FAIL(OT_E_CRYPTO);
    }
out:
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(other);
    EVP_PKEY_free(me);
    return err;
}

ot_err ec_p256_sign(const uint8_t priv[EC_P256_PRIV_LEN], const uint8_t pub[EC_P256_PUB_LEN],
                    const uint8_t *msg, size_t n, uint8_t sig[EC_P256_SIG_LEN])
{
    ot_err err = OT_OK;
    EVP_PKEY *pk = NULL;
    EVP_MD_CTX *md = NULL;
    ECDSA_SIG *es = NULL;
    uint8_t der[80];
    size_t der_len = sizeof der;
    const uint8_t *p = der;
    const BIGNUM *r = NULL;
    const BIGNUM *s = NULL;

    if (priv == NULL || pub == NULL || sig == NULL || (msg == NULL && n > 0)) {
        return OT_E_ARG;
    }
    OT_TRY(ec_p256_pkey_priv(priv, pub, &pk));
    md = EVP_MD_CTX_new();
    if (md == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    if (EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, pk, NULL) != 1
        || EVP_DigestSign(md, der, &der_len, msg, n) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
    /* DER SEQUENCE { r INTEGER, s INTEGER } -> fixed r || s (RFC 7518 3.4). */
    es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (es == NULL) {
        OT_FAIL(OT_E_CRYPTO);
    }
    ECDSA_SIG_get0(es, &r, &s);
    if (BN_bn2binpad(r, sig, 32) != 32 || BN_bn2binpad(s, sig + 32, 32) != 32) {
        OT_FAIL(OT_E_CRYPTO);
    }
out:
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pk);
    return err;
}

ot_err ec_p256_verify(const uint8_t pub[EC_P256_PUB_LEN], const uint8_t *msg, size_t n,
                      const uint8_t sig[EC_P256_SIG_LEN])
{
    ot_err err = OT_OK;
    EVP_PKEY *pk = NULL;
    EVP_MD_CTX *md = NULL;
    ECDSA_SIG *es = NULL;
    BIGNUM *r = NULL;
    BIGNUM *s = NULL;
    uint8_t *der = NULL;
    int der_len = 0;

    if (pub == NULL || sig == NULL || (msg == NULL && n > 0)) {
        return OT_E_ARG;
    }
    OT_TRY(ec_p256_pkey_pub(pub, &pk));
    es = ECDSA_SIG_new();
    r = BN_bin2bn(sig, 32, NULL);
    s = BN_bin2bn(sig + 32, 32, NULL);
    if (es == NULL || r == NULL || s == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    if (ECDSA_SIG_set0(es, r, s) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
    r = NULL; /* owned by es now */
    s = NULL;
    der_len = i2d_ECDSA_SIG(es, &der);
    md = EVP_MD_CTX_new();
    if (der_len <= 0 || md == NULL) {
        OT_FAIL(OT_E_CRYPTO);
    }
    if (EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, pk, NULL) != 1
        || EVP_DigestVerify(md, der, (size_t)der_len, msg, n) != 1) {
        OT_FAIL(OT_E_CRYPTO); /* 0: bad signature; < 0: malformed (r or s 0) */
    }
out:
    OPENSSL_free(der);
    EVP_MD_CTX_free(md);
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    EVP_PKEY_free(pk);
    return err;
}
