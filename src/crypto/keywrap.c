#include "crypto/keywrap.h"

#define OT_LOG_COMPONENT "crypto.keywrap"
#include "core/buf.h"
#include "core/log.h"

#include <openssl/evp.h>

#include <string.h>

#define KEYWRAP_MAX 32u

static const EVP_CIPHER *keywrap_aes_cbc(size_t dek_len)
{
    switch (dek_len) {
    case 16:
        return EVP_aes_128_cbc();
    case 24:
        return EVP_aes_192_cbc();
    case 32:
        return EVP_aes_256_cbc();
    default:
        return NULL;
    }
}

/* One-shot cipher over whole blocks (padding off, IV 0 where the mode has
 * one). n is at most KEYWRAP_MAX. Not a per-APDU path: a context per call. */
static ot_err keywrap_run(const EVP_CIPHER *cipher, int enc, const uint8_t *key, const uint8_t *in,
                          size_t n, uint8_t *out)
{
    ot_err err = OT_OK;
    static const uint8_t iv[16] = {0};
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int got = 0;
    int fin = 0;

    if (ctx == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    if (EVP_CipherInit_ex(ctx, cipher, NULL, key, iv, enc) != 1
        || EVP_CIPHER_CTX_set_padding(ctx, 0) != 1
        || EVP_CipherUpdate(ctx, out, &got, in, (int)n) != 1
        || EVP_CipherFinal_ex(ctx, out + got, &fin) != 1 || (size_t)got + (size_t)fin != n) {
        OT_FAIL(OT_E_CRYPTO);
    }
out:
    EVP_CIPHER_CTX_free(ctx);
    return err;
}

size_t keywrap_aes_wrapped_len(size_t key_len)
{
    switch (key_len) {
    case 16:
        return 16;
    case 24:
    case 32:
        return 32;
    default:
        return 0;
    }
}

static ot_err keywrap_check_out(uint8_t *out, size_t *out_len, size_t need)
{
    if (out == NULL || *out_len < need) {
        *out_len = need;
        return OT_E_BUF_SMALL;
    }
    return OT_OK;
}

ot_err keywrap_aes_encrypt(const uint8_t *dek, size_t dek_len, const uint8_t *key, size_t key_len,
                           uint8_t *out, size_t *out_len)
{
    ot_err err = OT_OK;
    const EVP_CIPHER *cipher = NULL;
    size_t wlen = 0;
    uint8_t plain[KEYWRAP_MAX];

    if (dek == NULL || key == NULL || out_len == NULL) {
        return OT_E_ARG;
    }
    cipher = keywrap_aes_cbc(dek_len);
    wlen = keywrap_aes_wrapped_len(key_len);
    if (cipher == NULL || wlen == 0) {
        return OT_E_KEY;
    }
    OT_TRY(keywrap_check_out(out, out_len, wlen));
    memset(plain, 0, sizeof plain);
    memcpy(plain, key, key_len);
    if (key_len < wlen) {
        plain[key_len] = 0x80; /* ISO 9797-1 method 2 pad for AES-192 keys */
    }
    OT_TRY(keywrap_run(cipher, 1, dek, plain, wlen, out));
    *out_len = wlen;
out:
    ot_mem_wipe(plain, sizeof plain);
    return err;
}

ot_err keywrap_aes_decrypt(const uint8_t *dek, size_t dek_len, const uint8_t *in, size_t in_len,
                           size_t key_len, uint8_t *out, size_t *out_len)
{
    ot_err err = OT_OK;
    const EVP_CIPHER *cipher = NULL;
    size_t wlen = 0;
    uint8_t plain[KEYWRAP_MAX];

    if (dek == NULL || in == NULL || out_len == NULL) {
        return OT_E_ARG;
    }
    cipher = keywrap_aes_cbc(dek_len);
    wlen = keywrap_aes_wrapped_len(key_len);
    if (cipher == NULL || wlen == 0 || in_len != wlen) {
        return OT_E_KEY;
    }
    OT_TRY(keywrap_check_out(out, out_len, key_len));
    OT_TRY(keywrap_run(cipher, 0, dek, in, in_len, plain));
    /* The pad bytes of a 24-byte key are arbitrary (Amd D Table 7-10): not
     * checked. */
    memcpy(out, plain, key_len);
    *out_len = key_len;
out:
    ot_mem_wipe(plain, sizeof plain);
    return err;
}

ot_err keywrap_des_encrypt(const uint8_t dek[16], const uint8_t *key, size_t key_len, uint8_t *out,
                           size_t *out_len)
{
    ot_err err = OT_OK;

    if (dek == NULL || key == NULL || out_len == NULL) {
        return OT_E_ARG;
    }
    if (key_len != 16 && key_len != 24) {
        return OT_E_KEY;
    }
    OT_TRY(keywrap_check_out(out, out_len, key_len));
    OT_TRY(keywrap_run(EVP_des_ede_ecb(), 1, dek, key, key_len, out));
    *out_len = key_len;
out:
    return err;
}

ot_err keywrap_des_decrypt(const uint8_t dek[16], const uint8_t *in, size_t in_len, uint8_t *out,
                           size_t *out_len)
{
    ot_err err = OT_OK;
    uint8_t plain[KEYWRAP_MAX];

    if (dek == NULL || in == NULL || out_len == NULL) {
        return OT_E_ARG;
    }
    if (in_len != 16 && in_len != 24) {
        return OT_E_KEY;
    }
    OT_TRY(keywrap_check_out(out, out_len, in_len));
    OT_TRY(keywrap_run(EVP_des_ede_ecb(), 0, dek, in, in_len, plain));
    memcpy(out, plain, in_len);
    *out_len = in_len;
out:
    ot_mem_wipe(plain, sizeof plain);
    return err;
}
