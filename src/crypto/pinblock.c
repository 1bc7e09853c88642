#include "crypto/pinblock.h"

#define OT_LOG_COMPONENT "crypto.pinblock"
#include "core/buf.h"
#include "core/log.h"
#include "crypto/crypto_priv.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <string.h>

#define PINBLOCK_CONTROL 0x4u /* ISO 9564-1 9.4.2: format 4 */
#define PINBLOCK_PIN_PAD 0xAu /* fill of the PIN part (nibbles 2 + N .. 15) */

static ot_err pinblock_check_digits(const char *s, size_t min, size_t max)
{
    size_t n = 0;

    if (s == NULL) {
        return OT_E_ARG;
    }
    n = strnlen(s, max + 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return OT_E_FORMAT;
        }
    }
    if (n < min || n > max) {
        return OT_E_RANGE;
    }
    return OT_OK;
}

ot_err pinblock_check_pin(const char *pin)
{
    return pinblock_check_digits(pin, PINBLOCK_PIN_MIN, PINBLOCK_PIN_MAX);
}

ot_err pinblock_check_pan(const char *pan)
{
    return pinblock_check_digits(pan, 1, PINBLOCK_PAN_MAX);
}

static void pinblock_nib(uint8_t *b, size_t i, uint8_t v)
{
    if (i % 2 == 0) {
        b[i / 2] = (uint8_t)((b[i / 2] & 0x0Fu) | (uint8_t)(v << 4));
    } else {
        b[i / 2] = (uint8_t)((b[i / 2] & 0xF0u) | (v & 0x0Fu));
    }
}

static uint8_t pinblock_get_nib(const uint8_t *b, size_t i)
{
    return (i % 2 == 0) ? (uint8_t)(b[i / 2] >> 4) : (uint8_t)(b[i / 2] & 0x0Fu);
}

/* ISO 9564-1 9.4.2.3: the PAN field (pan already checked). */
static void pinblock_pan_field(const char *pan, uint8_t f[PINBLOCK_LEN])
{
    size_t n = strlen(pan);
    size_t pos = 1;

    memset(f, 0, PINBLOCK_LEN);
    if (n < 12) {
        pinblock_nib(f, 0, 0);
        pos += 12 - n; /* leading zeros */
    } else {
        pinblock_nib(f, 0, (uint8_t)(n - 12));
    }
    for (size_t i = 0; i < n; i++) {
        pinblock_nib(f, pos + i, (uint8_t)(pan[i] - '0'));
    }
}

static ot_err pinblock_aes_block(const EVP_CIPHER *c, int enc, const uint8_t *key,
                                 const uint8_t in[PINBLOCK_LEN], uint8_t out[PINBLOCK_LEN])
{
    ot_err err = OT_OK;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int got = 0;

    if (ctx == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    if (EVP_CipherInit_ex(ctx, c, NULL, key, NULL, enc) != 1
        || EVP_CIPHER_CTX_set_padding(ctx, 0) != 1
        || EVP_CipherUpdate(ctx, out, &got, in, PINBLOCK_LEN) != 1 || got != (int)PINBLOCK_LEN) {
        OT_FAIL(OT_E_CRYPTO);
    }
out:
    EVP_CIPHER_CTX_free(ctx);
    return err;
}

ot_err pinblock4_encipher_fill(const uint8_t *key, size_t key_len, const char *pin, const char *pan,
                               const uint8_t fill[PINBLOCK_FILL_LEN], uint8_t out[PINBLOCK_LEN])
{
    ot_err err = OT_OK;
    const EVP_CIPHER *c = NULL;
    uint8_t pf[PINBLOCK_LEN];
    uint8_t af[PINBLOCK_LEN];
    uint8_t a[PINBLOCK_LEN];
    size_t n = 0;

    if (key == NULL || fill == NULL || out == NULL) {
        return OT_E_ARG;
    }
    c = cmac_aes_ecb(key_len);
    if (c == NULL) {
        return OT_E_KEY;
    }
    OT_TRY(pinblock_check_pin(pin));
    OT_TRY(pinblock_check_pan(pan));
    n = strlen(pin);
    memset(pf, 0, sizeof pf);
    pinblock_nib(pf, 0, PINBLOCK_CONTROL);
    pinblock_nib(pf, 1, (uint8_t)n);
    for (size_t i = 0; i < 14; i++) {
        pinblock_nib(pf, 2 + i, i < n ? (uint8_t)(pin[i] - '0') : PINBLOCK_PIN_PAD);
    }
    memcpy(pf + 8, fill, PINBLOCK_FILL_LEN);
    pinblock_pan_field(pan, af);
    OT_TRY(pinblock_aes_block(c, 1, key, pf, a));
    for (size_t i = 0; i < PINBLOCK_LEN; i++) {
        a[i] ^= af[i];
    }
    OT_TRY(pinblock_aes_block(c, 1, key, a, out));
out:
    ot_mem_wipe(pf, sizeof pf);
    ot_mem_wipe(a, sizeof a);
    return err;
}

ot_err pinblock4_encipher(const uint8_t *key, size_t key_len, const char *pin, const char *pan,
                          uint8_t out[PINBLOCK_LEN])
{
    uint8_t fill[PINBLOCK_FILL_LEN];
    ot_err err;

    if (RAND_bytes(fill, sizeof fill) != 1) {
        return OT_E_CRYPTO;
    }
    err = pinblock4_encipher_fill(key, key_len, pin, pan, fill, out);
    ot_mem_wipe(fill, sizeof fill);
    return err;
}

ot_err pinblock4_decipher(const uint8_t *key, size_t key_len, const uint8_t block[PINBLOCK_LEN],
                          const char *pan, char pin[PINBLOCK_PIN_MAX + 1])
{
    ot_err err = OT_OK;
    const EVP_CIPHER *c = NULL;
    uint8_t b[PINBLOCK_LEN];
    uint8_t af[PINBLOCK_LEN];
    uint8_t pf[PINBLOCK_LEN];
    char digits[PINBLOCK_PIN_MAX + 1];
    size_t n = 0;

    if (key == NULL || block == NULL || pin == NULL) {
        return OT_E_ARG;
    }
    c = cmac_aes_ecb(key_len);
    if (c == NULL) {
        return OT_E_KEY;
    }
    OT_TRY(pinblock_check_pan(pan));
    pinblock_pan_field(pan, af);
    OT_TRY(pinblock_aes_block(c, 0, key, block, b));
    for (size_t i = 0; i < PINBLOCK_LEN; i++) {
        b[i] ^= af[i];
    }
    OT_TRY(pinblock_aes_block(c, 0, key, b, pf));
    n = pinblock_get_nib(pf, 1);
    if (pinblock_get_nib(pf, 0) != PINBLOCK_CONTROL || n < PINBLOCK_PIN_MIN
        || n > PINBLOCK_PIN_MAX) {
        OT_FAIL(OT_E_PADDING);
    }
    for (size_t i = 0; i < 14; i++) {
        uint8_t v = pinblock_get_nib(pf, 2 + i);
        if (i < n ? v > 9 : v != PINBLOCK_PIN_PAD) {
            OT_FAIL(OT_E_PADDING);
        }
        if (i < n) {
            digits[i] = (char)('0' + v);
        }
    }
    digits[n] = '\0';
    memcpy(pin, digits, n + 1);
out:
    ot_mem_wipe(b, sizeof b);
    ot_mem_wipe(pf, sizeof pf);
    ot_mem_wipe(digits, sizeof digits);
    return err;
}
