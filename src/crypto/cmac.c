#include "crypto/cmac.h"

#include "core/buf.h"
#include "crypto/crypto_priv.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct cmac {
    EVP_CIPHER_CTX *ecb; /* AES-ECB encrypt, no padding; created once */
    size_t key_len;      /* 0 until keyed */
    uint8_t k1[CMAC_BLOCK];
    uint8_t k2[CMAC_BLOCK];
    uint8_t x[CMAC_BLOCK];   /* CBC-MAC chaining value */
    uint8_t buf[CMAC_BLOCK]; /* pending block, held back until more data or final */
    size_t buf_len;
};

const EVP_CIPHER *cmac_aes_ecb(size_t key_len)
{
    switch (key_len) {
    case 16:
        return EVP_aes_128_ecb();
    case 24:
        return EVP_aes_192_ecb();
    case 32:
        return EVP_aes_256_ecb();
    default:
        return NULL;
    }
}

/* One AES block in place through the reused ECB context. */
static ot_err cmac_block(struct cmac *c, uint8_t blk[CMAC_BLOCK])
{
    int outl = 0;
    if (EVP_EncryptUpdate(c->ecb, blk, &outl, blk, (int)CMAC_BLOCK) != 1
        || outl != (int)CMAC_BLOCK) {
        return OT_E_CRYPTO;
    }
    return OT_OK;
}

/* Doubling in GF(2^128) with R_128 = 0x87 (SP 800-38B 6.1). */
static void cmac_dbl(const uint8_t in[CMAC_BLOCK], uint8_t out[CMAC_BLOCK])
{
    uint8_t carry = (uint8_t)(in[0] >> 7);
    for (size_t k = 0; k < CMAC_BLOCK - 1; k++) {
        out[k] = (uint8_t)((in[k] << 1) | (in[k + 1] >> 7));
    }
    out[CMAC_BLOCK - 1] = (uint8_t)((in[CMAC_BLOCK - 1] << 1) ^ (0x87u & (0u - carry)));
}

void cmac_init(struct cmac *c)
{
    memset(c->x, 0, sizeof c->x);
    c->buf_len = 0;
}

ot_err cmac_set_key(struct cmac *c, const uint8_t *key, size_t key_len)
{
    uint8_t l[CMAC_BLOCK] = {0};
    ot_err err = OT_OK;
    const EVP_CIPHER *cipher = cmac_aes_ecb(key_len);

    if (!c || !key) {
        return OT_E_ARG;
    }
    if (!cipher) {
        return OT_E_KEY;
    }
    /* Same length: keep the cipher, only load the new key schedule. */
    if (EVP_EncryptInit_ex(c->ecb, key_len == c->key_len ? NULL : cipher, NULL, key, NULL) != 1
        || EVP_CIPHER_CTX_set_padding(c->ecb, 0) != 1) {
        c->key_len = 0;
        err = OT_E_CRYPTO;
        goto out;
    }
    c->key_len = key_len;
    /* L = AES(K, 0^128); K1 = dbl(L); K2 = dbl(K1) (SP 800-38B 6.1). */
    err = cmac_block(c, l);
    if (err != OT_OK) {
        c->key_len = 0;
        goto out;
    }
    cmac_dbl(l, c->k1);
    cmac_dbl(c->k1, c->k2);
    cmac_init(c);
out:
    ot_mem_wipe(l, sizeof l);
    return err;
}

ot_err cmac_new(const uint8_t *key, size_t key_len, struct cmac **out)
{
    ot_err err = OT_OK;
    struct cmac *c = NULL;

    if (!out) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (!key) {
        return OT_E_ARG;
    }
    if (!cmac_aes_ecb(key_len)) {
        return OT_E_KEY;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        return OT_E_NOMEM;
    }
    c->ecb = EVP_CIPHER_CTX_new();
    if (!c->ecb) {
        err = OT_E_NOMEM;
        goto out;
    }
    err = cmac_set_key(c, key, key_len);
    if (err != OT_OK) {
        goto out;
    }
    *out = c;
    c = NULL;
out:
    cmac_free(c);
    return err;
}

void cmac_free(struct cmac *c)
{
    if (!c) {
        return;
    }
    EVP_CIPHER_CTX_free(c->ecb); /* clears the key schedule */
    ot_mem_wipe(c, sizeof *c);
    free(c);
}

ot_err cmac_update(struct cmac *c, const uint8_t *p, size_t n)
{
    if (!c || (!p && n > 0)) {
        return OT_E_ARG;
    }
    if (c->key_len == 0) {
        return OT_E_STATE;
    }
    while (n > 0) {
        /* A full pending block is only processed once more data follows: the
         * last block of the message gets the K1/K2 treatment in final. */
        if (c->buf_len == CMAC_BLOCK) {
            for (size_t k = 0; k < CMAC_BLOCK; k++) {
                c->x[k] ^= c->buf[k];
            }
            ot_err err = cmac_block(c, c->x);
            if (err != OT_OK) {
                return err;
            }
            c->buf_len = 0;
        }
        size_t take = CMAC_BLOCK - c->buf_len;
        if (take > n) {
            take = n;
        }
        memcpy(c->buf + c->buf_len, p, take);
        c->buf_len += take;
        p += take;
        n -= take;
    }
    return OT_OK;
}

ot_err cmac_final(struct cmac *c, uint8_t tag[CMAC_BLOCK])
{
    ot_err err = OT_OK;

    if (!c || !tag) {
        return OT_E_ARG;
    }
    if (c->key_len == 0) {
        return OT_E_STATE;
    }
    if (c->buf_len == CMAC_BLOCK) {
        for (size_t k = 0; k < CMAC_BLOCK; k++) {
            c->x[k] ^= c->buf[k] ^ c->k1[k];
        }
    } else {
        /* Incomplete (or empty) last block: pad 80 00.. and use K2. */
        c->buf[c->buf_len] = 0x80;
        memset(c->buf + c->buf_len + 1, 0, CMAC_BLOCK - c->buf_len - 1);
        for (size_t k = 0; k < CMAC_BLOCK; k++) {
            c->x[k] ^= c->buf[k] ^ c->k2[k];
        }
    }
    err = cmac_block(c, c->x);
    if (err == OT_OK) {
        memcpy(tag, c->x, CMAC_BLOCK);
    }
    cmac_init(c);
    return err;
}

ot_err cmac_compute(struct cmac *c, const uint8_t *msg, size_t n, uint8_t tag[CMAC_BLOCK])
{
    ot_err err = OT_OK;

    if (!c) {
        return OT_E_ARG;
    }
    cmac_init(c);
    err = cmac_update(c, msg, n);
    if (err != OT_OK) {
        cmac_init(c);
        return err;
    }
    return cmac_final(c, tag);
}

ot_err cmac_aes(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t n,
                uint8_t tag[CMAC_BLOCK])
{
    struct cmac *c = NULL;
    ot_err err = cmac_new(key, key_len, &c);

    if (err == OT_OK) {
        err = cmac_compute(c, msg, n, tag);
    }
    cmac_free(c);
    return err;
}
