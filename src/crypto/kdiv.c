#include "crypto/kdiv.h"

#define OT_LOG_COMPONENT "crypto.kdiv"
#include "core/buf.h"
#include "core/log.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <string.h>
#include <strings.h>

/* 3DES-ECB (2-key, DES-EDE in OpenSSL's default provider) over two blocks. */
static ot_err kdiv_des3_ecb(const uint8_t key[16], const uint8_t in[16], uint8_t out[16])
{
    ot_err err = OT_OK;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0;

    if (ctx == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    if (EVP_EncryptInit_ex(ctx, EVP_des_ede_ecb(), NULL, key, NULL) != 1
        || EVP_CIPHER_CTX_set_padding(ctx, 0) != 1 || EVP_EncryptUpdate(ctx, out, &n, in, 16) != 1
        || n != 16) {
        OT_FAIL(OT_E_CRYPTO);
    }
out:
    EVP_CIPHER_CTX_free(ctx);
    return err;
}

static bool kdiv_kt_ok(uint8_t kt)
{
    return kt >= KDIV_KEY_ENC && kt <= KDIV_KEY_DEK;
}

/* Both 3DES schemes repeat an 8-byte half: 6 KDD bytes, then F0 kt for the
 * left half and 0F kt for the right half. */
static ot_err kdiv_des3_scheme(const uint8_t master[16], const uint8_t six[6], uint8_t kt,
                               uint8_t out[16])
{
    ot_err err = OT_OK;
    uint8_t in[16];

    memcpy(in, six, 6);
    in[6] = 0xF0;
    in[7] = kt;
    memcpy(in + 8, six, 6);
    in[14] = 0x0F;
    in[15] = kt;
    OT_TRY(kdiv_des3_ecb(master, in, out));
out:
    return err;
}

ot_err kdiv_visa2(const uint8_t master[16], const uint8_t kdd[KDIV_KDD_LEN], uint8_t kt,
                  uint8_t out[16])
{
    uint8_t six[6];

    if (master == NULL || kdd == NULL || out == NULL || !kdiv_kt_ok(kt)) {
        return OT_E_ARG;
    }
    memcpy(six, kdd, 2);         /* KDD[0..1] */
    memcpy(six + 2, kdd + 4, 4); /* KDD[4..7] */
    return kdiv_des3_scheme(master, six, kt, out);
}

ot_err kdiv_emv_cps(const uint8_t master[16], const uint8_t kdd[KDIV_KDD_LEN], uint8_t kt,
                    uint8_t out[16])
{
    if (master == NULL || kdd == NULL || out == NULL || !kdiv_kt_ok(kt)) {
        return OT_E_ARG;
    }
    return kdiv_des3_scheme(master, kdd + 4, kt, out); /* KDD[4..9] */
}

static const char *kdiv_aes_cbc_name(size_t len)
{
    switch (len) {
    case 16:
        return "AES-128-CBC";
    case 24:
        return "AES-192-CBC";
    case 32:
        return "AES-256-CBC";
    default:
        return NULL;
    }
}

ot_err kdiv_kdf3(const uint8_t *master, size_t len, const uint8_t kdd[KDIV_KDD_LEN], uint8_t kt,
                 uint8_t *out)
{
    ot_err err = OT_OK;
    EVP_MAC *mac = NULL;
    EVP_MAC_CTX *ctx = NULL;
    const char *cipher = kdiv_aes_cbc_name(len);
    uint8_t blk[16];
    uint8_t in[16];
    OSSL_PARAM params[2];

    if (master == NULL || kdd == NULL || out == NULL || !kdiv_kt_ok(kt)) {
        return OT_E_ARG;
    }
    if (cipher == NULL) {
        return OT_E_KEY;
    }
    mac = EVP_MAC_fetch(NULL, "CMAC", NULL);
    if (mac == NULL) {
        OT_FAIL(OT_E_CRYPTO);
    }
    ctx = EVP_MAC_CTX_new(mac);
    if (ctx == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, (char *)cipher, 0);
    params[1] = OSSL_PARAM_construct_end();

    /* Fixed input: counter (1 byte) first, then 00 00 00 kt 00 KDD; no label
     * and no L field (GPPro "KDF3"). */
    in[1] = 0x00;
    in[2] = 0x00;
    in[3] = 0x00;
    in[4] = kt;
    in[5] = 0x00;
    memcpy(in + 6, kdd, KDIV_KDD_LEN);
    for (size_t done = 0, i = 1; done < len; i++) {
        size_t n = 0;
        size_t take = len - done < sizeof blk ? len - done : sizeof blk;
        in[0] = (uint8_t)i;
        if (EVP_MAC_init(ctx, master, len, params) != 1 || EVP_MAC_update(ctx, in, sizeof in) != 1
            || EVP_MAC_final(ctx, blk, &n, sizeof blk) != 1 || n != sizeof blk) {
            OT_FAIL(OT_E_CRYPTO);
        }
        memcpy(out + done, blk, take);
        done += take;
    }
out:
    ot_mem_wipe(blk, sizeof blk);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return err;
}

static const struct {
    const char *name;
    enum kdiv_scheme s;
} kdiv_names[] = {
    {"none", KDIV_NONE},       {"visa2", KDIV_VISA2}, {"emv", KDIV_EMV_CPS},
    {"emv-cps", KDIV_EMV_CPS}, {"kdf3", KDIV_KDF3},
};

ot_err kdiv_scheme_parse(const char *name, enum kdiv_scheme *out)
{
    if (name == NULL || out == NULL) {
        return OT_E_ARG;
    }
    for (size_t i = 0; i < sizeof kdiv_names / sizeof kdiv_names[0]; i++) {
        if (strcasecmp(name, kdiv_names[i].name) == 0) {
            *out = kdiv_names[i].s;
            return OT_OK;
        }
    }
    return OT_E_ARG;
}

const char *kdiv_scheme_name(enum kdiv_scheme s)
{
    for (size_t i = 0; i < sizeof kdiv_names / sizeof kdiv_names[0]; i++) {
        if (kdiv_names[i].s == s) {
            return kdiv_names[i].name;
        }
    }
    return "unknown";
}

static ot_err kdiv_one(enum kdiv_scheme s, const uint8_t *master, size_t len, const uint8_t *kdd,
                       uint8_t kt, uint8_t *out)
{
    switch (s) {
    case KDIV_NONE:
        memcpy(out, master, len);
        return OT_OK;
    case KDIV_VISA2:
        return kdiv_visa2(master, kdd, kt, out);
    case KDIV_EMV_CPS:
        return kdiv_emv_cps(master, kdd, kt, out);
    case KDIV_KDF3:
        return kdiv_kdf3(master, len, kdd, kt, out);
    }
    return OT_E_ARG;
}

ot_err kdiv_keys(enum kdiv_scheme s, const uint8_t *master, size_t len,
                 const uint8_t kdd[KDIV_KDD_LEN], uint8_t *enc, uint8_t *mac, uint8_t *dek)
{
    ot_err err = OT_OK;
    uint8_t *outs[3] = {enc, mac, dek};

    if (master == NULL || enc == NULL || mac == NULL || dek == NULL
        || (kdd == NULL && s != KDIV_NONE)) {
        return OT_E_ARG;
    }
    switch (s) {
    case KDIV_VISA2:
    case KDIV_EMV_CPS:
        if (len != 16) {
            return OT_E_KEY;
        }
        break;
    case KDIV_NONE:
    case KDIV_KDF3:
        if (len != 16 && len != 24 && len != 32) {
            return OT_E_KEY;
        }
        break;
    default:
        return OT_E_ARG;
    }
    for (unsigned kt = KDIV_KEY_ENC; kt <= KDIV_KEY_DEK; kt++) {
        OT_TRY(kdiv_one(s, master, len, kdd, (uint8_t)kt, outs[kt - 1]));
    }
out:
    if (err != OT_OK) {
        for (size_t i = 0; i < 3; i++) {
            ot_mem_wipe(outs[i], len);
        }
    }
    return err;
}

ot_err kdiv_scp02_keyset(enum kdiv_scheme s, const uint8_t master[16],
                         const uint8_t kdd[KDIV_KDD_LEN], uint8_t kvn, struct scp02_keyset *out)
{
    if (out == NULL) {
        return OT_E_ARG;
    }
    if (s != KDIV_NONE && s != KDIV_VISA2 && s != KDIV_EMV_CPS) {
        return OT_E_ARG;
    }
    out->kvn = kvn;
    return kdiv_keys(s, master, SCP02_KEY_LEN, kdd, out->enc, out->mac, out->dek);
}

ot_err kdiv_scp03_keyset(enum kdiv_scheme s, const uint8_t *master, size_t len,
                         const uint8_t kdd[KDIV_KDD_LEN], uint8_t kvn, struct scp03_keyset *out)
{
    if (out == NULL) {
        return OT_E_ARG;
    }
    if (s != KDIV_NONE && s != KDIV_KDF3) {
        return OT_E_ARG;
    }
    memset(out, 0, sizeof *out);
    out->kvn = kvn;
    out->key_len = len;
    return kdiv_keys(s, master, len, kdd, out->enc, out->mac, out->dek);
}
