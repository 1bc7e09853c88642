#include "crypto/paycard.h"

#define OT_LOG_COMPONENT "crypto.paycard"
#include "core/buf.h"
#include "core/log.h"
#include "crypto/cmac.h"
#include "crypto/crypto_priv.h"
#include "crypto/kdf.h"

#include <string.h>

ot_err paycard_pan_bcd(const char *pan, uint8_t out[PAYCARD_PAN_BCD_MAX], size_t *n)
{
    size_t len = 0;

    if (pan == NULL || out == NULL || n == NULL) {
        return OT_E_ARG;
    }
    len = strnlen(pan, 2 * PAYCARD_PAN_BCD_MAX + 1);
    for (size_t i = 0; i < len; i++) {
        if (pan[i] < '0' || pan[i] > '9') {
            return OT_E_FORMAT;
        }
    }
    if (len == 0 || len > 19) {
        return OT_E_RANGE;
    }
    memset(out, 0xFF, PAYCARD_PAN_BCD_MAX);
    for (size_t i = 0; i < len; i++) {
        uint8_t d = (uint8_t)(pan[i] - '0');
        out[i / 2] = i % 2 == 0 ? (uint8_t)((d << 4) | 0x0Fu) : (uint8_t)((out[i / 2] & 0xF0u) | d);
    }
    *n = (len + 1) / 2;
    return OT_OK;
}

ot_err paycard_derive(const uint8_t *imk, size_t imk_len, uint8_t dc, const uint8_t *id,
                      size_t id_len, uint8_t out[PAYCARD_KEY_LEN])
{
    if (imk == NULL || id == NULL || out == NULL) {
        return OT_E_ARG;
    }
    if (imk_len != 16 && imk_len != 24 && imk_len != 32) {
        return OT_E_KEY;
    }
    if (id_len == 0 || id_len > PAYCARD_MAX_ID) {
        return OT_E_RANGE;
    }
    return kdf_scp03_key(imk, imk_len, dc, id, id_len, out, PAYCARD_KEY_LEN);
}

ot_err paycard_emv_ac(const uint8_t card_key[PAYCARD_KEY_LEN], uint16_t atc, const uint8_t *data,
                      size_t n, uint8_t ac[PAYCARD_AC_LEN])
{
    ot_err err = OT_OK;
    EVP_CIPHER_CTX *ctx = NULL;
    uint8_t r[16] = {0};
    uint8_t sk[16];
    uint8_t tag[CMAC_BLOCK];
    int got = 0;

    if (card_key == NULL || ac == NULL || (data == NULL && n > 0)) {
        return OT_E_ARG;
    }
    /* EMV Book 2 A1.3.1, common session key derivation with R = ATC || 00..:
     * the third byte of the block is F0 for the one key of the block size. */
    ot_put_u16be(r, atc);
    r[2] = 0xF0u;
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    if (EVP_EncryptInit_ex(ctx, cmac_aes_ecb(PAYCARD_KEY_LEN), NULL, card_key, NULL) != 1
        || EVP_CIPHER_CTX_set_padding(ctx, 0) != 1
        || EVP_EncryptUpdate(ctx, sk, &got, r, (int)sizeof r) != 1 || got != (int)sizeof sk) {
        OT_FAIL(OT_E_CRYPTO);
    }
    OT_TRY(cmac_aes(sk, sizeof sk, data, n, tag)); /* EMV Book 2 A1.2.2 */
    memcpy(ac, tag, PAYCARD_AC_LEN);
out:
    EVP_CIPHER_CTX_free(ctx);
    ot_mem_wipe(sk, sizeof sk);
    ot_mem_wipe(tag, sizeof tag);
    return err;
}

ot_err paycard_transit_mac(const uint8_t key[PAYCARD_KEY_LEN], uint8_t tag, uint32_t a, uint32_t b,
                           const uint8_t id[PAYCARD_PURSE_ID], uint8_t mac[PAYCARD_MAC_LEN])
{
    uint8_t in[1 + 4 + 4 + PAYCARD_PURSE_ID];
    uint8_t full[CMAC_BLOCK];
    ot_err err;

    if (key == NULL || id == NULL || mac == NULL) {
        return OT_E_ARG;
    }
    in[0] = tag;
    ot_put_u32be(in + 1, a);
    ot_put_u32be(in + 5, b);
    memcpy(in + 9, id, PAYCARD_PURSE_ID);
    err = cmac_aes(key, PAYCARD_KEY_LEN, in, sizeof in, full);
    if (err == OT_OK) {
        memcpy(mac, full, PAYCARD_MAC_LEN);
    }
    ot_mem_wipe(full, sizeof full);
    return err;
}
