#include "crypto/ecwrap.h"

#define OT_LOG_COMPONENT "crypto.ecwrap"
#include "core/buf.h"
#include "core/log.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <string.h>

/* HKDF info: names the construction and its version (RFC 5869 3.2). */
static const char ecwrap_info[] = "OpenTSM ecwrap v1";

static bool ecwrap_id_ok(const char *s, size_t n)
{
    if (n == 0 || n > ECWRAP_MAX_ID) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x21u || (unsigned char)s[i] > 0x7Eu) {
            return false;
        }
    }
    return true;
}

static bool ecwrap_kt_ok(uint8_t kt)
{
    return kt == ECWRAP_KT_EMV_IMK || kt == ECWRAP_KT_TRANSIT_IMK || kt == ECWRAP_KT_PIN;
}

static bool ecwrap_klen_ok(size_t n)
{
    return n == 16 || n == 24 || n == 32;
}

ot_err ecwrap_meta_check(const struct ecwrap_meta *m)
{
    if (m == NULL) {
        return OT_E_ARG;
    }
    if (!ecwrap_kt_ok(m->key_type) || !ecwrap_id_ok(m->sp_id, strnlen(m->sp_id, sizeof m->sp_id))
        || !ecwrap_id_ok(m->dongle_id, strnlen(m->dongle_id, sizeof m->dongle_id))) {
        return OT_E_FORMAT;
    }
    if (m->key_version == 0) {
        return OT_E_RANGE;
    }
    return OT_OK;
}

/* One length-prefixed id into a NUL-terminated field. */
static ot_err ecwrap_rd_id(struct buf_rd *r, char dst[ECWRAP_MAX_ID + 1])
{
    ot_err err = OT_OK;
    uint8_t n = 0;
    const uint8_t *v = NULL;

    OT_TRY(buf_rd_u8(r, &n));
    OT_TRY(buf_rd_take(r, n, &v));
    if (!ecwrap_id_ok((const char *)v, n)) {
        OT_FAIL(OT_E_FORMAT);
    }
    memcpy(dst, v, n);
    dst[n] = '\0';
out:
    return err;
}

ot_err ecwrap_parse(const uint8_t *blob, size_t n, struct ecwrap_view *v)
{
    ot_err err = OT_OK;
    struct buf_rd r;
    uint8_t ver = 0;
    uint8_t suite = 0;
    uint8_t klen = 0;

    if (v == NULL || (blob == NULL && n > 0)) {
        return OT_E_ARG;
    }
    memset(v, 0, sizeof *v);
    if (n > ECWRAP_MAX_BLOB) {
        return OT_E_TOO_LONG;
    }
    buf_rd_init(&r, blob, n);
    OT_TRY(buf_rd_u8(&r, &ver));
    if (ver != ECWRAP_VERSION) {
        OT_FAIL(OT_E_UNSUPPORTED);
    }
    OT_TRY(buf_rd_u8(&r, &suite));
    if (suite != ECWRAP_SUITE) {
        OT_FAIL(OT_E_UNSUPPORTED);
    }
    OT_TRY(buf_rd_u8(&r, &v->meta.key_type));
    if (!ecwrap_kt_ok(v->meta.key_type)) {
        OT_FAIL(OT_E_FORMAT);
    }
    OT_TRY(ecwrap_rd_id(&r, v->meta.sp_id));
    OT_TRY(buf_rd_u32be(&r, &v->meta.key_version));
    if (v->meta.key_version == 0) {
        OT_FAIL(OT_E_RANGE);
    }
    OT_TRY(ecwrap_rd_id(&r, v->meta.dongle_id));
    OT_TRY(buf_rd_take(&r, ECWRAP_PUB_LEN, &v->epk));
    if (v->epk[0] != 0x04u) {
        OT_FAIL(OT_E_FORMAT);
    }
    OT_TRY(buf_rd_take(&r, ECWRAP_NONCE_LEN, &v->nonce));
    OT_TRY(buf_rd_u8(&r, &klen));
    if (!ecwrap_klen_ok(klen)) {
        OT_FAIL(OT_E_RANGE);
    }
    v->hdr_len = n - r.left;
    v->key_len = klen;
    OT_TRY(buf_rd_take(&r, klen, &v->ct));
    OT_TRY(buf_rd_take(&r, ECWRAP_TAG_LEN, &v->tag));
    if (r.left != 0) {
        OT_FAIL(OT_E_TRAILING);
    }
out:
    if (err != OT_OK) {
        memset(v, 0, sizeof *v);
    }
    return err;
}

/* KEK = HKDF-SHA256(Z, salt = E || Q, info). */
static ot_err ecwrap_kek(const uint8_t z[32], const uint8_t epk[ECWRAP_PUB_LEN],
                         const uint8_t q[ECWRAP_PUB_LEN], uint8_t kek[32])
{
    ot_err err = OT_OK;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = NULL;
    uint8_t salt[2 * ECWRAP_PUB_LEN];
    char digest[] = "SHA256";
    OSSL_PARAM params[5];

    if (kdf == NULL) {
        OT_FAIL(OT_E_CRYPTO);
    }
    ctx = EVP_KDF_CTX_new(kdf);
    if (ctx == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    memcpy(salt, epk, ECWRAP_PUB_LEN);
    memcpy(salt + ECWRAP_PUB_LEN, q, ECWRAP_PUB_LEN);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)z, 32);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt, sizeof salt);
    params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)ecwrap_info,
                                                  sizeof ecwrap_info - 1);
    params[4] = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(ctx, kek, 32, params) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
out:
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return err;
}

/* AES-256-GCM one shot; enc 1 seals (writes tag), 0 opens (checks tag:
 * mismatch OT_E_CRYPTO). */
static ot_err ecwrap_gcm(int enc, const uint8_t kek[32], const uint8_t *nonce, const uint8_t *ad,
                         size_t ad_len, const uint8_t *in, size_t n, uint8_t *out, uint8_t *tag)
{
    ot_err err = OT_OK;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int got = 0;
    int fin = 0;

    if (ctx == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, ECWRAP_NONCE_LEN, NULL) != 1
        || EVP_CipherInit_ex(ctx, NULL, NULL, kek, nonce, enc) != 1
        || EVP_CipherUpdate(ctx, NULL, &got, ad, (int)ad_len) != 1
        || EVP_CipherUpdate(ctx, out, &got, in, (int)n) != 1 || (size_t)got != n) {
        OT_FAIL(OT_E_CRYPTO);
    }
    if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, ECWRAP_TAG_LEN, tag) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
    if (EVP_CipherFinal_ex(ctx, out + got, &fin) != 1 || fin != 0) {
        OT_FAIL(OT_E_CRYPTO); /* on open: the tag does not verify */
    }
    if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, ECWRAP_TAG_LEN, tag) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
out:
    EVP_CIPHER_CTX_free(ctx);
    return err;
}

ot_err ecwrap_wrap(const uint8_t dongle_pub[ECWRAP_PUB_LEN], const struct ecwrap_meta *m,
                   const uint8_t *key, size_t key_len, uint8_t *out, size_t *out_len)
{
    ot_err err = OT_OK;
    uint8_t e_priv[ECWRAP_PRIV_LEN];
    uint8_t e_pub[ECWRAP_PUB_LEN];
    uint8_t nonce[ECWRAP_NONCE_LEN];
    uint8_t z[32];
    uint8_t kek[32];
    struct buf_wr w;
    uint8_t u32[4];
    size_t hdr_len = 0;
    size_t sp_len = 0;
    size_t dg_len = 0;
    size_t need = 0;

    if (dongle_pub == NULL || m == NULL || key == NULL || out_len == NULL) {
        return OT_E_ARG;
    }
    if (!ecwrap_klen_ok(key_len)) {
        return OT_E_KEY;
    }
    OT_TRY(ecwrap_meta_check(m));
    sp_len = strlen(m->sp_id);
    dg_len = strlen(m->dongle_id);
    hdr_len = 3 + 1 + sp_len + 4 + 1 + dg_len + ECWRAP_PUB_LEN + ECWRAP_NONCE_LEN + 1;
    need = hdr_len + key_len + ECWRAP_TAG_LEN;
    if (out == NULL || *out_len < need) {
        *out_len = need;
        return OT_E_BUF_SMALL;
    }
    if (!ec_p256_pub_valid(dongle_pub)) {
        return OT_E_KEY;
    }
    OT_TRY(ec_p256_keygen(e_priv, e_pub));
    if (RAND_bytes(nonce, sizeof nonce) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
    OT_TRY(ec_p256_ecdh(e_priv, e_pub, dongle_pub, z));
    OT_TRY(ecwrap_kek(z, e_pub, dongle_pub, kek));

    buf_wr_init(&w, out, *out_len);
    buf_wr_u8(&w, ECWRAP_VERSION);
    buf_wr_u8(&w, ECWRAP_SUITE);
    buf_wr_u8(&w, m->key_type);
    buf_wr_u8(&w, (uint8_t)sp_len);
    buf_wr_bytes(&w, m->sp_id, sp_len);
    ot_put_u32be(u32, m->key_version);
    buf_wr_bytes(&w, u32, sizeof u32);
    buf_wr_u8(&w, (uint8_t)dg_len);
    buf_wr_bytes(&w, m->dongle_id, dg_len);
    buf_wr_bytes(&w, e_pub, sizeof e_pub);
    buf_wr_bytes(&w, nonce, sizeof nonce);
    buf_wr_u8(&w, (uint8_t)key_len);
    OT_ASSERT(w.err == OT_OK && w.len == hdr_len);
    OT_TRY(ecwrap_gcm(1, kek, nonce, out, hdr_len, key, key_len, out + hdr_len,
                      out + hdr_len + key_len));
    *out_len = need;
out:
    ot_mem_wipe(e_priv, sizeof e_priv);
    ot_mem_wipe(z, sizeof z);
    ot_mem_wipe(kek, sizeof kek);
    return err;
}

ot_err ecwrap_unwrap(const uint8_t priv[ECWRAP_PRIV_LEN], const uint8_t pub[ECWRAP_PUB_LEN],
                     const struct ecwrap_policy *pol, const uint8_t *blob, size_t n,
                     struct ecwrap_meta *meta, uint8_t *key, size_t key_cap, size_t *key_len)
{
    ot_err err = OT_OK;
    struct ecwrap_view v;
    uint8_t z[32];
    uint8_t kek[32];
    uint8_t plain[ECWRAP_MAX_KEY];

    if (priv == NULL || pub == NULL || pol == NULL || pol->dongle_id == NULL || key == NULL
        || key_len == NULL) {
        return OT_E_ARG;
    }
    OT_TRY(ecwrap_parse(blob, n, &v));
    if (strcmp(v.meta.dongle_id, pol->dongle_id) != 0) {
        OT_FAIL(OT_E_FORBIDDEN);
    }
    if (v.meta.key_version < pol->min_version) {
        OT_FAIL(OT_E_REPLAY);
    }
    if (key_cap < v.key_len) {
        *key_len = v.key_len;
        OT_FAIL(OT_E_BUF_SMALL);
    }
    if (!ec_p256_pub_valid(v.epk)) {
        OT_FAIL(OT_E_CRYPTO); /* a changed ephemeral key: as any other change */
    }
    OT_TRY(ec_p256_ecdh(priv, pub, v.epk, z));
    OT_TRY(ecwrap_kek(z, v.epk, pub, kek));
    OT_TRY(ecwrap_gcm(0, kek, v.nonce, blob, v.hdr_len, v.ct, v.key_len, plain, (uint8_t *)v.tag));
    memcpy(key, plain, v.key_len);
    *key_len = v.key_len;
    if (meta != NULL) {
        *meta = v.meta;
    }
out:
    ot_mem_wipe(z, sizeof z);
    ot_mem_wipe(kek, sizeof kek);
    ot_mem_wipe(plain, sizeof plain);
    return err;
}
