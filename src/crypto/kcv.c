#include "crypto/kcv.h"

#define OT_LOG_COMPONENT "crypto.kcv"
#include "core/buf.h"
#include "core/log.h"
#include "crypto/crypto_priv.h"

#include <openssl/evp.h>

#include <string.h>

/* One ECB block under key with cipher; out receives the block. Not a per-APDU
 * path, so a context per call is fine here. */
static ot_err kcv_ecb_block(const EVP_CIPHER *cipher, const uint8_t *key, const uint8_t *in,
                            int blk, uint8_t *out)
{
    ot_err err = OT_OK;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0;

    if (ctx == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    if (EVP_EncryptInit_ex(ctx, cipher, NULL, key, NULL) != 1
        || EVP_CIPHER_CTX_set_padding(ctx, 0) != 1 || EVP_EncryptUpdate(ctx, out, &n, in, blk) != 1
        || n != blk) {
        OT_FAIL(OT_E_CRYPTO);
    }
out:
    EVP_CIPHER_CTX_free(ctx);
    return err;
}

static ot_err kcv_aes_block(const uint8_t *key, size_t len, uint8_t fill, uint8_t kcv[KCV_LEN])
{
    ot_err err = OT_OK;
    const EVP_CIPHER *cipher = cmac_aes_ecb(len);
    uint8_t in[16];
    uint8_t blk[16];

    if (key == NULL || kcv == NULL) {
        return OT_E_ARG;
    }
    if (cipher == NULL) {
        return OT_E_KEY;
    }
    memset(in, fill, sizeof in);
    OT_TRY(kcv_ecb_block(cipher, key, in, (int)sizeof in, blk));
    memcpy(kcv, blk, KCV_LEN);
out:
    ot_mem_wipe(blk, sizeof blk);
    return err;
}

ot_err kcv_aes(const uint8_t *key, size_t len, uint8_t kcv[KCV_LEN])
{
    return kcv_aes_block(key, len, 0x01, kcv); /* Amd D 7.2.2 */
}

ot_err kcv_aes_zero(const uint8_t *key, size_t len, uint8_t kcv[KCV_LEN])
{
    return kcv_aes_block(key, len, 0x00, kcv);
}

ot_err kcv_des3(const uint8_t *key, size_t len, uint8_t kcv[KCV_LEN])
{
    ot_err err = OT_OK;
    static const uint8_t zero[8] = {0};
    uint8_t blk[8];

    if (key == NULL || kcv == NULL) {
        return OT_E_ARG;
    }
    if (len != 16 && len != 24) {
        return OT_E_KEY;
    }
    /* DES-EDE is the 2-key form (K1 K2 K1), DES-EDE3 the 3-key form; both are
     * in OpenSSL 3's default provider (single DES is not). */
    OT_TRY(kcv_ecb_block(len == 16 ? EVP_des_ede_ecb() : EVP_des_ede3_ecb(), key, zero,
                         (int)sizeof zero, blk));
    memcpy(kcv, blk, KCV_LEN);
out:
    ot_mem_wipe(blk, sizeof blk);
    return err;
}
