#define OT_LOG_COMPONENT "crypto.scp03"
#include "crypto/scp03.h"

#include "core/apdu.h"
#include "core/buf.h"
#include "core/log.h"
#include "crypto/cmac.h"
#include "crypto/crypto_priv.h"
#include "crypto/kdf.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

/* Spec constants. */
#define SCP03_BLOCK                  16u /* AES block */
#define SCP03_ID                     0x03u /* SCP identifier in the INITIALIZE UPDATE answer (Amd D 7.1.1) */
#define GP_CLA_PROPRIETARY           0x80u /* GPCS Table 11-11 */
#define GP_CLA_SM                    0x04u /* b4b3 = 01: GP proprietary secure messaging */
#define GP_CLA_FIRST_SM_MASK         0x0Cu /* b4b3 of a first interindustry CLA */
#define GP_INS_INITIALIZE_UPDATE     0x50u /* Amd D 7.1 */
#define GP_INS_EXTERNAL_AUTHENTICATE 0x82u /* Amd D 7.2 */
#define SCP03_RENC_ICV_MARK          0x80u /* first byte of the R-ENC counter block (Amd D 6.2.7) */
#define SCP03_PAD_MARK               0x80u /* ISO/IEC 9797-1 method 2 padding (Amd D 6.2.6) */
#define SCP03_I_RFU                  0x8Eu /* i bits b8, b4-b2: RFU */
#define SCP03_SEQ_LEN                3u
#define SCP03_IU_HEAD                (SCP03_KDD_LEN + 3u) /* KDD || KVN || SCP id || i */
#define SCP03_CHAL_MAX               16u
/* Lc' as transmitted: 1 byte, or 00 || 2 bytes when extended. */
#define SCP03_LC_EXT 3u

/* ------------------------------------------------------------ shared engine */

/* Session crypto state common to host and card: the three session keys live
 * in two CMAC contexts (S-MAC, S-RMAC) and two AES-ECB contexts (S-ENC in
 * both directions), all created in _new and re-keyed at INITIALIZE UPDATE. */
struct scp03_sess {
    struct cmac *prf;    /* KDF with the static keys */
    struct cmac *smac;   /* S-MAC: C-MAC and (as PRF) the cryptograms */
    struct cmac *srmac;  /* S-RMAC */
    EVP_CIPHER_CTX *enc; /* AES-ECB encrypt with S-ENC (ICVs, CBC) */
    EVP_CIPHER_CTX *dec; /* AES-ECB decrypt with S-ENC */
    size_t ecb_key_len;  /* key length enc/dec are set up for (0: none) */
    uint8_t s_enc[SCP03_MAX_KEY];
    uint8_t s_mac[SCP03_MAX_KEY];
    uint8_t s_rmac[SCP03_MAX_KEY];
    size_t key_len;
    size_t chal_len; /* 8 (S8) or 16 (S16); also the MAC length */
    uint8_t i_param;
    uint8_t host_chal[SCP03_CHAL_MAX];
    uint8_t card_chal[SCP03_CHAL_MAX];
    uint8_t mcv[SCP03_BLOCK]; /* MAC chaining value = last full C-MAC */
    uint32_t counter;         /* encryption counter (Amd D 6.2.6) */
    uint8_t level;
};

static ot_err sess_init(struct scp03_sess *s)
{
    static const uint8_t zero[16] = {0};
    ot_err err = OT_OK;

    OT_TRY(cmac_new(zero, sizeof zero, &s->prf));
    OT_TRY(cmac_new(zero, sizeof zero, &s->smac));
    OT_TRY(cmac_new(zero, sizeof zero, &s->srmac));
    s->enc = EVP_CIPHER_CTX_new();
    s->dec = EVP_CIPHER_CTX_new();
    if (!s->enc || !s->dec) {
        OT_FAIL(OT_E_NOMEM);
    }
out:
    return err;
}

/* Forgets the session: keys, challenges, chaining value, counter. The
 * contexts keep a stale key schedule that is never used before re-keying. */
static void sess_clear(struct scp03_sess *s)
{
    ot_mem_wipe(s->s_enc, sizeof s->s_enc);
    ot_mem_wipe(s->s_mac, sizeof s->s_mac);
    ot_mem_wipe(s->s_rmac, sizeof s->s_rmac);
    ot_mem_wipe(s->host_chal, sizeof s->host_chal);
    ot_mem_wipe(s->card_chal, sizeof s->card_chal);
    ot_mem_wipe(s->mcv, sizeof s->mcv);
    s->counter = 0;
    s->level = 0;
}

static void sess_free(struct scp03_sess *s)
{
    sess_clear(s);
    cmac_free(s->prf);
    cmac_free(s->smac);
    cmac_free(s->srmac);
    EVP_CIPHER_CTX_free(s->enc);
    EVP_CIPHER_CTX_free(s->dec);
}

static bool keyset_ok(const struct scp03_keyset *k)
{
    return k && cmac_aes_ecb(k->key_len) != NULL;
}

/* Derives S-ENC, S-MAC, S-RMAC from the static keys and both challenges
 * (Amd D 6.2.1) and loads them into the session contexts. */
static ot_err sess_derive(struct scp03_sess *s, const struct scp03_keyset *k)
{
    uint8_t ctx[2 * SCP03_CHAL_MAX];
    size_t cl = s->chal_len;
    const EVP_CIPHER *cipher = cmac_aes_ecb(k->key_len);
    ot_err err = OT_OK;

    memcpy(ctx, s->host_chal, cl);
    memcpy(ctx + cl, s->card_chal, cl);
    s->key_len = k->key_len;
    OT_TRY(cmac_set_key(s->prf, k->enc, k->key_len));
    OT_TRY(kdf_scp03(s->prf, KDF_DC_S_ENC, ctx, 2 * cl, s->s_enc, k->key_len));
    OT_TRY(cmac_set_key(s->prf, k->mac, k->key_len));
    OT_TRY(kdf_scp03(s->prf, KDF_DC_S_MAC, ctx, 2 * cl, s->s_mac, k->key_len));
    OT_TRY(kdf_scp03(s->prf, KDF_DC_S_RMAC, ctx, 2 * cl, s->s_rmac, k->key_len));
    OT_TRY(cmac_set_key(s->smac, s->s_mac, k->key_len));
    OT_TRY(cmac_set_key(s->srmac, s->s_rmac, k->key_len));
    /* Pass the cipher only when the key length changes: same-length re-keys
     * just load a new key schedule into the existing context. */
    if (k->key_len != s->ecb_key_len) {
        s->ecb_key_len = 0;
    }
    if (EVP_EncryptInit_ex(s->enc, s->ecb_key_len ? NULL : cipher, NULL, s->s_enc, NULL) != 1
        || EVP_CIPHER_CTX_set_padding(s->enc, 0) != 1
        || EVP_DecryptInit_ex(s->dec, s->ecb_key_len ? NULL : cipher, NULL, s->s_enc, NULL) != 1
        || EVP_CIPHER_CTX_set_padding(s->dec, 0) != 1) {
        s->ecb_key_len = 0;
        OT_FAIL(OT_E_CRYPTO);
    }
    s->ecb_key_len = k->key_len;
out:
    ot_mem_wipe(ctx, sizeof ctx);
    return err;
}

/* Card (DC 00) or host (DC 01) cryptogram: KDF keyed with S-MAC over
 * host challenge || card challenge, L = 64 or 128 bits. */
static ot_err sess_cryptogram(struct scp03_sess *s, uint8_t dc, uint8_t *out)
{
    uint8_t ctx[2 * SCP03_CHAL_MAX];
    size_t cl = s->chal_len;

    memcpy(ctx, s->host_chal, cl);
    memcpy(ctx + cl, s->card_chal, cl);
    ot_err err = kdf_scp03(s->smac, dc, ctx, 2 * cl, out, cl);
    ot_mem_wipe(ctx, sizeof ctx);
    return err;
}

static ot_err ecb_run(EVP_CIPHER_CTX *ctx, const uint8_t *in, uint8_t *out, size_t n)
{
    int outl = 0;
    if (EVP_CipherUpdate(ctx, out, &outl, in, (int)n) != 1 || (size_t)outl != n) {
        return OT_E_CRYPTO;
    }
    return OT_OK;
}

/* ICV = AES-ECB(S-ENC, counter block); R-ENC sets the first byte to 80
 * (Amd D 6.2.6, 6.2.7). The counter occupies the low 4 bytes here: the
 * session would need 2^32 commands to reach the upper bytes. */
static ot_err sess_icv(struct scp03_sess *s, uint8_t first, uint8_t icv[SCP03_BLOCK])
{
    memset(icv, 0, SCP03_BLOCK);
    icv[0] = first;
    ot_put_u32be(icv + SCP03_BLOCK - 4, s->counter);
    return ecb_run(s->enc, icv, icv, SCP03_BLOCK);
}

/* Pads p[0..n) in place with 80 00.. to the next multiple of 16 (always at
 * least one byte) and returns the padded length. */
static size_t pad_len(size_t n)
{
    return (n / SCP03_BLOCK + 1) * SCP03_BLOCK;
}

static void pad_in_place(uint8_t *p, size_t n)
{
    size_t padded = pad_len(n);
    p[n] = SCP03_PAD_MARK;
    memset(p + n + 1, 0, padded - n - 1);
}

/* Length of the data before the 80 00.. padding of the last block, or
 * OT_E_PADDING. Not constant time: the MAC over the ciphertext was checked
 * before (encrypt-then-MAC), so no padding oracle is exposed. */
static ot_err unpad(const uint8_t *p, size_t n, size_t *out)
{
    size_t k = n;
    while (k > 0 && n - k < SCP03_BLOCK && p[k - 1] == 0x00) {
        k--;
    }
    if (k == 0 || n - k >= SCP03_BLOCK || p[k - 1] != SCP03_PAD_MARK) {
        return OT_E_PADDING;
    }
    *out = k - 1;
    return OT_OK;
}

/* AES-CBC with S-ENC in place (n a multiple of 16), chained from icv. */
static ot_err cbc_encrypt(struct scp03_sess *s, const uint8_t icv[SCP03_BLOCK], uint8_t *p,
                          size_t n)
{
    const uint8_t *prev = icv;
    for (size_t off = 0; off < n; off += SCP03_BLOCK) {
        for (size_t k = 0; k < SCP03_BLOCK; k++) {
            p[off + k] ^= prev[k];
        }
        ot_err err = ecb_run(s->enc, p + off, p + off, SCP03_BLOCK);
        if (err != OT_OK) {
            return err;
        }
        prev = p + off;
    }
    return OT_OK;
}

/* AES-CBC decryption from in to out (distinct buffers, n a multiple of 16):
 * all blocks through ECB in one call, then the chaining XOR. */
static ot_err cbc_decrypt(struct scp03_sess *s, const uint8_t icv[SCP03_BLOCK], const uint8_t *in,
                          uint8_t *out, size_t n)
{
    ot_err err = ecb_run(s->dec, in, out, n);
    if (err != OT_OK) {
        return err;
    }
    for (size_t k = 0; k < SCP03_BLOCK; k++) {
        out[k] ^= icv[k];
    }
    for (size_t k = SCP03_BLOCK; k < n; k++) {
        out[k] ^= in[k - SCP03_BLOCK];
    }
    return OT_OK;
}

/* AES-CMAC(key, MCV || a || b), fed in pieces without a temporary copy. */
static ot_err sess_mac(struct cmac *key, const uint8_t mcv[SCP03_BLOCK], const uint8_t *a,
                       size_t an, const uint8_t *b, size_t bn, uint8_t full[SCP03_BLOCK])
{
    ot_err err = OT_OK;

    cmac_init(key);
    OT_TRY(cmac_update(key, mcv, SCP03_BLOCK));
    OT_TRY(cmac_update(key, a, an));
    OT_TRY(cmac_update(key, b, bn));
    OT_TRY(cmac_final(key, full));
out:
    return err;
}

/* Full C-MAC: AES-CMAC(S-MAC, MCV || CLA' INS P1 P2 || Lc' || data')
 * (Amd D 6.2.4). */
static ot_err sess_cmac_cmd(struct scp03_sess *s, const uint8_t *mcv, const uint8_t *hdr,
                            size_t hdr_len, const uint8_t *data, size_t n,
                            uint8_t full[SCP03_BLOCK])
{
    return sess_mac(s->smac, mcv, hdr, hdr_len, data, n, full);
}

/* R-MAC: AES-CMAC(S-RMAC, MCV || resp' || SW) (Amd D 6.2.5). */
static ot_err sess_rmac(struct scp03_sess *s, const uint8_t *data, size_t n, uint16_t sw,
                        uint8_t full[SCP03_BLOCK])
{
    uint8_t swb[2];

    ot_put_u16be(swb, sw);
    return sess_mac(s->srmac, s->mcv, data, n, swb, sizeof swb, full);
}

/* Writes the MAC header CLA' INS P1 P2 Lc' into hdr (5 or 7 bytes). CLA' is
 * the first interindustry form with channel 0 and b4b3 = 01 (SM). */
static ot_err mac_header(uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2, size_t lc, bool ext,
                         uint8_t hdr[7], size_t *hdr_len)
{
    uint8_t c0;
    ot_err err = apdu_cla_with_channel(cla, 0, &c0);
    if (err != OT_OK) {
        return err;
    }
    hdr[0] = (uint8_t)((c0 & ~GP_CLA_FIRST_SM_MASK) | GP_CLA_SM);
    hdr[1] = ins;
    hdr[2] = p1;
    hdr[3] = p2;
    if (ext) {
        hdr[4] = 0x00;
        ot_put_u16be(hdr + 5, (uint16_t)lc);
        *hdr_len = 7;
    } else {
        hdr[4] = (uint8_t)lc;
        *hdr_len = 5;
    }
    return OT_OK;
}

static bool level_valid(uint8_t level)
{
    switch (level) {
    case 0x00:
    case SCP03_LVL_CMAC:
    case SCP03_LVL_CMAC | SCP03_LVL_CDEC:
    case SCP03_LVL_CMAC | SCP03_LVL_RMAC:
    case SCP03_LVL_CMAC | SCP03_LVL_CDEC | SCP03_LVL_RMAC:
    case SCP03_LVL_CMAC | SCP03_LVL_CDEC | SCP03_LVL_RMAC | SCP03_LVL_RENC:
        return true;
    default:
        return false;
    }
}

/* A level is usable only if the card's i announces what it needs. */
static bool level_allowed(uint8_t level, uint8_t i_param)
{
    if (!level_valid(level)) {
        return false;
    }
    if ((level & SCP03_LVL_RMAC) && !(i_param & SCP03_I_RMAC)) {
        return false;
    }
    if ((level & SCP03_LVL_RENC) && !(i_param & SCP03_I_RENC)) {
        return false;
    }
    return true;
}

static bool i_valid(uint8_t i_param)
{
    return (i_param & SCP03_I_RFU) == 0
           && (i_param & (SCP03_I_RMAC | SCP03_I_RENC)) != SCP03_I_RENC;
}

/* R-MAC and R-ENC cover only normal-processing and warning SWs (Amd D 6.2.5). */
static bool sw_protected(uint16_t sw)
{
    return sw == SW_OK || sw1(sw) == 0x62 || sw1(sw) == 0x63;
}

static size_t iu_resp_len(uint8_t i_param)
{
    size_t cl = (i_param & SCP03_I_S16) ? 16u : 8u;
    return SCP03_IU_HEAD + 2 * cl + ((i_param & SCP03_I_PSEUDO) ? SCP03_SEQ_LEN : 0);
}

/* ---------------------------------------------------------------- host side */

enum scp03_host_state {
    SCP03_HOST_IDLE = 0,
    SCP03_HOST_IU_SENT, /* INITIALIZE UPDATE built, answer awaited */
    SCP03_HOST_IU_DONE, /* card authenticated, EXTERNAL AUTHENTICATE next */
    SCP03_HOST_EA_SENT, /* EXTERNAL AUTHENTICATE built, answer awaited */
    SCP03_HOST_OPEN,
};

struct scp03_host {
    struct scp03_keyset keys;
    struct scp03_sess s;
    enum scp03_host_state state;
    uint8_t ch;
    bool s16;
    uint8_t pending_level;
    uint8_t kdd[SCP03_KDD_LEN];
    uint32_t seq;
    uint32_t last_seq;
    bool have_last_seq;
};

ot_err scp03_host_new(const struct scp03_keyset *keys, struct scp03_host **out)
{
    ot_err err = OT_OK;
    struct scp03_host *h = NULL;

    if (!out) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (!keys) {
        return OT_E_ARG;
    }
    if (!keyset_ok(keys)) {
        return OT_E_KEY;
    }
    h = calloc(1, sizeof *h);
    if (!h) {
        return OT_E_NOMEM;
    }
    h->keys = *keys;
    OT_TRY(sess_init(&h->s));
    *out = h;
    h = NULL;
out:
    scp03_host_free(h);
    return err;
}

void scp03_host_free(struct scp03_host *h)
{
    if (!h) {
        return;
    }
    sess_free(&h->s);
    ot_mem_wipe(h, sizeof *h);
    free(h);
}

static void host_abort(struct scp03_host *h)
{
    sess_clear(&h->s);
    h->state = SCP03_HOST_IDLE;
}

ot_err scp03_host_initialize_update(struct scp03_host *h, uint8_t ch, bool s16,
                                    const uint8_t *host_chal, uint8_t *apdu, size_t *apdu_len)
{
    ot_err err = OT_OK;
    size_t cl = s16 ? 16u : 8u;
    size_t need = 5 + cl + 1;
    uint8_t cla;

    if (!h || !apdu || !apdu_len) {
        return OT_E_ARG;
    }
    if (ch > APDU_MAX_CHANNEL) {
        return OT_E_RANGE;
    }
    if (*apdu_len < need) {
        *apdu_len = need;
        return OT_E_BUF_SMALL;
    }
    host_abort(h);
    OT_TRY(apdu_cla_with_channel(GP_CLA_PROPRIETARY, ch, &cla));
    if (host_chal) {
        memcpy(h->s.host_chal, host_chal, cl);
    } else if (RAND_bytes(h->s.host_chal, (int)cl) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
    h->ch = ch;
    h->s16 = s16;
    h->s.chal_len = cl;
    apdu[0] = cla;
    apdu[1] = GP_INS_INITIALIZE_UPDATE;
    apdu[2] = h->keys.kvn;
    apdu[3] = 0x00;
    apdu[4] = (uint8_t)cl;
    memcpy(apdu + 5, h->s.host_chal, cl);
    apdu[5 + cl] = 0x00; /* Le */
    *apdu_len = need;
    h->state = SCP03_HOST_IU_SENT;
out:
    return err;
}

ot_err scp03_host_on_initialize_update(struct scp03_host *h, const uint8_t *resp, size_t len)
{
    ot_err err = OT_OK;
    struct rapdu r;
    struct buf_rd rd;
    uint8_t kvn, scp_id, i_param, crypt[SCP03_CHAL_MAX], want[SCP03_CHAL_MAX];
    uint32_t seq = 0;

    if (!h || !resp) {
        return OT_E_ARG;
    }
    if (h->state != SCP03_HOST_IU_SENT) {
        return OT_E_STATE;
    }
    OT_TRY(rapdu_parse(resp, len, &r));
    if (r.sw != SW_OK) {
        OT_FAIL(sw_to_err(r.sw) == OT_OK ? OT_E_SW : sw_to_err(r.sw));
    }
    buf_rd_init(&rd, r.data, r.len);
    if (r.len < SCP03_IU_HEAD) {
        OT_FAIL(OT_E_APDU_LEN);
    }
    OT_TRY(buf_rd_copy(&rd, h->kdd, SCP03_KDD_LEN));
    OT_TRY(buf_rd_u8(&rd, &kvn));
    OT_TRY(buf_rd_u8(&rd, &scp_id));
    OT_TRY(buf_rd_u8(&rd, &i_param));
    if (scp_id != SCP03_ID || !i_valid(i_param)) {
        OT_FAIL(OT_E_UNSUPPORTED);
    }
    if (((i_param & SCP03_I_S16) != 0) != h->s16) {
        OT_LOG_DEBUG("card i=%02x does not match the requested S%u mode", i_param,
                     h->s16 ? 16u : 8u);
        OT_FAIL(OT_E_FORMAT);
    }
    if (r.len != iu_resp_len(i_param)) {
        OT_FAIL(OT_E_APDU_LEN);
    }
    if (h->keys.kvn != 0 && kvn != h->keys.kvn) {
        OT_FAIL(OT_E_KEY);
    }
    OT_TRY(buf_rd_copy(&rd, h->s.card_chal, h->s.chal_len));
    OT_TRY(buf_rd_copy(&rd, crypt, h->s.chal_len));
    if (i_param & SCP03_I_PSEUDO) {
        OT_TRY(buf_rd_u24be(&rd, &seq));
        if (h->have_last_seq && seq <= h->last_seq) {
            OT_LOG_WARN("INITIALIZE UPDATE sequence counter %06x not above %06x (replay?)",
                        (unsigned)seq, (unsigned)h->last_seq);
            OT_FAIL(OT_E_REPLAY);
        }
    }
    h->s.i_param = i_param;
    OT_TRY(sess_derive(&h->s, &h->keys));
    OT_TRY(sess_cryptogram(&h->s, KDF_DC_CARD_CRYPTOGRAM, want));
    if (!ot_mem_equal_ct(want, crypt, h->s.chal_len)) {
        OT_FAIL(OT_E_CARD_CRYPTOGRAM);
    }
    if (i_param & SCP03_I_PSEUDO) {
        h->seq = seq;
        h->last_seq = seq;
        h->have_last_seq = true;
    }
    h->state = SCP03_HOST_IU_DONE;
out:
    ot_mem_wipe(want, sizeof want);
    if (err != OT_OK && h->state == SCP03_HOST_IU_SENT) {
        host_abort(h);
    }
    return err;
}

void scp03_host_set_last_seq(struct scp03_host *h, uint32_t last_seq)
{
    if (h) {
        h->last_seq = last_seq;
        h->have_last_seq = true;
    }
}

ot_err scp03_host_external_authenticate(struct scp03_host *h, uint8_t level, uint8_t *apdu,
                                        size_t *apdu_len)
{
    ot_err err = OT_OK;
    uint8_t hdr[7], zero_mcv[SCP03_BLOCK] = {0}, full[SCP03_BLOCK], host_crypt[SCP03_CHAL_MAX];
    size_t hdr_len, cl;

    if (!h || !apdu || !apdu_len) {
        return OT_E_ARG;
    }
    if (h->state != SCP03_HOST_IU_DONE) {
        return OT_E_STATE;
    }
    if (!level_allowed(level, h->s.i_param)) {
        return OT_E_SEC_LEVEL;
    }
    cl = h->s.chal_len;
    if (*apdu_len < 5 + 2 * cl) {
        *apdu_len = 5 + 2 * cl;
        return OT_E_BUF_SMALL;
    }
    OT_TRY(sess_cryptogram(&h->s, KDF_DC_HOST_CRYPTOGRAM, host_crypt));
    /* The first C-MAC of the session is computed with MCV = 16 x 00. */
    OT_TRY(mac_header(GP_CLA_PROPRIETARY, GP_INS_EXTERNAL_AUTHENTICATE, level, 0x00, 2 * cl, false,
                      hdr, &hdr_len));
    OT_TRY(sess_cmac_cmd(&h->s, zero_mcv, hdr, hdr_len, host_crypt, cl, full));
    OT_TRY(apdu_cla_with_channel(hdr[0], h->ch, &apdu[0]));
    memcpy(apdu + 1, hdr + 1, 4);
    memcpy(apdu + 5, host_crypt, cl);
    memcpy(apdu + 5 + cl, full, cl);
    *apdu_len = 5 + 2 * cl;
    memcpy(h->s.mcv, full, SCP03_BLOCK);
    h->pending_level = level;
    h->state = SCP03_HOST_EA_SENT;
out:
    ot_mem_wipe(host_crypt, sizeof host_crypt);
    return err;
}

ot_err scp03_host_on_external_authenticate(struct scp03_host *h, const uint8_t *resp, size_t len)
{
    ot_err err = OT_OK;
    struct rapdu r;

    if (!h || !resp) {
        return OT_E_ARG;
    }
    if (h->state != SCP03_HOST_EA_SENT) {
        return OT_E_STATE;
    }
    OT_TRY(rapdu_parse(resp, len, &r));
    if (r.sw != SW_OK) {
        OT_FAIL(sw_to_err(r.sw) == OT_OK ? OT_E_SW : sw_to_err(r.sw));
    }
    h->s.level = h->pending_level;
    h->s.counter = 0; /* becomes 1 with the first command (Amd D 6.2.6) */
    h->state = SCP03_HOST_OPEN;
    OT_LOG_INFO("secure channel open kvn=%u level=0x%02x i=0x%02x", h->keys.kvn, h->s.level,
                h->s.i_param);
out:
    if (err != OT_OK) {
        host_abort(h);
    }
    return err;
}

ot_err scp03_host_wrap(struct scp03_host *h, const uint8_t *cmd, size_t n, uint8_t *out,
                       size_t *out_len)
{
    ot_err err = OT_OK;
    struct apdu a;
    uint8_t hdr[7], full[SCP03_BLOCK], icv[SCP03_BLOCK], ch;
    size_t hdr_len, body, lc, need, off;
    bool ext, counted = false;
    struct scp03_sess *s;

    if (!h || !cmd || !out || !out_len) {
        return OT_E_ARG;
    }
    if (h->state != SCP03_HOST_OPEN) {
        return OT_E_NO_CHANNEL;
    }
    s = &h->s;
    OT_TRY(apdu_parse(cmd, n, &a));
    if (apdu_cla_has_sm(a.cla)) {
        OT_FAIL(OT_E_ARG); /* already secured */
    }
    OT_TRY(apdu_cla_channel(a.cla, &ch));
    if (s->counter == UINT32_MAX) {
        OT_FAIL(OT_E_LIMIT);
    }
    if (!(s->level & SCP03_LVL_CMAC)) {
        /* Level 00: commands go out unchanged but still count. */
        if (*out_len < n) {
            *out_len = n;
            OT_FAIL(OT_E_BUF_SMALL);
        }
        memmove(out, cmd, n);
        *out_len = n;
        s->counter++;
        goto out;
    }
    body = (s->level & SCP03_LVL_CDEC) && a.nc > 0 ? pad_len(a.nc) : a.nc;
    lc = body + s->chal_len;
    if (lc > APDU_MAX_EXT_NC) {
        OT_FAIL(OT_E_RANGE);
    }
    /* Extended when the secured Lc needs it or the caller used extended. */
    ext = a.extended || lc > APDU_MAX_SHORT_NC;
    need = 4 + (ext ? SCP03_LC_EXT : 1) + lc + (a.ne ? (ext ? 2 : 1) : 0);
    if (*out_len < need) {
        *out_len = need;
        OT_FAIL(OT_E_BUF_SMALL);
    }
    OT_TRY(mac_header(a.cla, a.ins, a.p1, a.p2, lc, ext, hdr, &hdr_len));
    s->counter++;
    counted = true;
    /* Copy the data first: cmd and out may be the same buffer. */
    off = hdr_len;
    if (a.nc > 0) {
        memmove(out + off, a.data, a.nc);
    }
    OT_TRY(apdu_cla_with_channel(hdr[0], ch, &out[0]));
    memcpy(out + 1, hdr + 1, hdr_len - 1);
    if (body != a.nc) {
        /* C-DECRYPTION: encrypt, then MAC the ciphertext (Amd D 6.2.6). */
        pad_in_place(out + off, a.nc);
        OT_TRY(sess_icv(s, 0x00, icv));
        OT_TRY(cbc_encrypt(s, icv, out + off, body));
    }
    OT_TRY(sess_cmac_cmd(s, s->mcv, hdr, hdr_len, out + off, body, full));
    memcpy(s->mcv, full, SCP03_BLOCK);
    memcpy(out + off + body, full, s->chal_len);
    off += body + s->chal_len;
    if (a.ne) {
        /* The response grows by the R-MAC (and padding): ask for all. */
        out[off++] = 0x00;
        if (ext) {
            out[off++] = 0x00;
        }
    }
    *out_len = off;
out:
    if (err != OT_OK && counted) {
        /* Failing after the counter moved leaves the chaining unknown. */
        host_abort(h);
    }
    return err;
}

ot_err scp03_host_unwrap(struct scp03_host *h, const uint8_t *resp, size_t n, uint8_t *out,
                         size_t *out_len)
{
    ot_err err = OT_OK;
    uint8_t full[SCP03_BLOCK], icv[SCP03_BLOCK];
    uint16_t sw;
    size_t body, plain;
    struct scp03_sess *s;

    if (!h || !resp || !out || !out_len) {
        return OT_E_ARG;
    }
    if (h->state != SCP03_HOST_OPEN) {
        return OT_E_NO_CHANNEL;
    }
    s = &h->s;
    if (n < 2) {
        if (!(s->level & SCP03_LVL_RMAC)) {
            return OT_E_APDU_LEN; /* malformed, but nothing was protected */
        }
        OT_FAIL(OT_E_APDU_LEN);
    }
    sw = ot_get_u16be(resp + n - 2);
    if (!(s->level & SCP03_LVL_RMAC) || !sw_protected(sw)) {
        /* No R-MAC at this level, or an error SW (never MACed). */
        if (*out_len < n) {
            *out_len = n;
            return OT_E_BUF_SMALL;
        }
        memmove(out, resp, n);
        *out_len = n;
        return OT_OK;
    }
    if (n < 2 + s->chal_len) {
        OT_FAIL(OT_E_APDU_LEN);
    }
    body = n - 2 - s->chal_len;
    if (*out_len < body + 2) {
        *out_len = body + 2;
        return OT_E_BUF_SMALL;
    }
    OT_TRY(sess_rmac(s, resp, body, sw, full));
    if (!ot_mem_equal_ct(full, resp + body, s->chal_len)) {
        OT_FAIL(OT_E_RMAC);
    }
    plain = body;
    if ((s->level & SCP03_LVL_RENC) && body > 0) {
        if (body % SCP03_BLOCK != 0) {
            OT_FAIL(OT_E_PADDING);
        }
        if (out == resp) {
            OT_FAIL(OT_E_ARG); /* CBC decryption needs distinct buffers */
        }
        OT_TRY(sess_icv(s, SCP03_RENC_ICV_MARK, icv));
        OT_TRY(cbc_decrypt(s, icv, resp, out, body));
        OT_TRY(unpad(out, body, &plain));
    } else {
        memmove(out, resp, body);
    }
    ot_put_u16be(out + plain, sw);
    *out_len = plain + 2;
out:
    if (err != OT_OK && err != OT_E_ARG) {
        /* A response that fails its protection ends the session. */
        host_abort(h);
    }
    return err;
}

bool scp03_host_is_open(const struct scp03_host *h)
{
    return h && h->state == SCP03_HOST_OPEN;
}

uint8_t scp03_host_level(const struct scp03_host *h)
{
    return scp03_host_is_open(h) ? h->s.level : 0;
}

uint8_t scp03_host_i(const struct scp03_host *h)
{
    return h ? h->s.i_param : 0;
}

uint32_t scp03_host_seq(const struct scp03_host *h)
{
    return h ? h->seq : 0;
}

const uint8_t *scp03_host_kdd(const struct scp03_host *h)
{
    return h ? h->kdd : NULL;
}

ot_err scp03_host_session_keys(const struct scp03_host *h, uint8_t *s_enc, uint8_t *s_mac,
                               uint8_t *s_rmac, size_t *key_len)
{
    if (!h || !key_len) {
        return OT_E_ARG;
    }
    if (h->state < SCP03_HOST_IU_DONE) {
        return OT_E_STATE;
    }
    if (s_enc) {
        memcpy(s_enc, h->s.s_enc, h->s.key_len);
    }
    if (s_mac) {
        memcpy(s_mac, h->s.s_mac, h->s.key_len);
    }
    if (s_rmac) {
        memcpy(s_rmac, h->s.s_rmac, h->s.key_len);
    }
    *key_len = h->s.key_len;
    return OT_OK;
}

/* ---------------------------------------------------------------- card side */

enum scp03_card_state {
    SCP03_CARD_IDLE = 0, /* no session, or aborted */
    SCP03_CARD_PENDING,  /* INITIALIZE UPDATE answered */
    SCP03_CARD_OPEN,
};

struct scp03_card {
    uint8_t i_param;
    uint8_t kdd[SCP03_KDD_LEN];
    uint8_t aid[16];
    size_t aid_len;
    struct scp03_keyset keys;
    struct scp03_sess s;
    enum scp03_card_state state;
    bool resp_pending; /* a command was unwrapped and awaits its response */
};

ot_err scp03_card_new(const struct scp03_card_cfg *cfg, struct scp03_card **out)
{
    ot_err err = OT_OK;
    struct scp03_card *c = NULL;

    if (!out) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (!cfg || (!cfg->sd_aid && cfg->sd_aid_len > 0)) {
        return OT_E_ARG;
    }
    if (!i_valid(cfg->i_param)) {
        return OT_E_UNSUPPORTED;
    }
    if (cfg->sd_aid_len > sizeof c->aid
        || ((cfg->i_param & SCP03_I_PSEUDO) && cfg->sd_aid_len < 5)) {
        return OT_E_RANGE;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        return OT_E_NOMEM;
    }
    c->i_param = cfg->i_param;
    memcpy(c->kdd, cfg->kdd, SCP03_KDD_LEN);
    if (cfg->sd_aid_len > 0) {
        memcpy(c->aid, cfg->sd_aid, cfg->sd_aid_len);
    }
    c->aid_len = cfg->sd_aid_len;
    c->s.i_param = cfg->i_param;
    c->s.chal_len = (cfg->i_param & SCP03_I_S16) ? 16u : 8u;
    OT_TRY(sess_init(&c->s));
    *out = c;
    c = NULL;
out:
    scp03_card_free(c);
    return err;
}

void scp03_card_reset(struct scp03_card *c)
{
    if (!c) {
        return;
    }
    sess_clear(&c->s);
    ot_mem_wipe(&c->keys, sizeof c->keys);
    c->state = SCP03_CARD_IDLE;
    c->resp_pending = false;
}

void scp03_card_free(struct scp03_card *c)
{
    if (!c) {
        return;
    }
    scp03_card_reset(c);
    sess_free(&c->s);
    ot_mem_wipe(c, sizeof *c);
    free(c);
}

ot_err scp03_card_initialize_update(struct scp03_card *c, const struct scp03_keyset *keys,
                                    uint32_t *seq, const uint8_t *cmd, size_t n, uint8_t *resp,
                                    size_t *resp_len)
{
    ot_err err = OT_OK;
    struct apdu a;
    size_t cl, need, off;
    uint8_t ctx[SCP03_SEQ_LEN + 16];
    bool pseudo;

    if (!c || !keys || !cmd || !resp || !resp_len) {
        return OT_E_ARG;
    }
    pseudo = (c->i_param & SCP03_I_PSEUDO) != 0;
    if (pseudo && !seq) {
        return OT_E_ARG;
    }
    scp03_card_reset(c); /* a new INITIALIZE UPDATE ends any session */
    OT_TRY(apdu_parse(cmd, n, &a));
    if (a.ins != GP_INS_INITIALIZE_UPDATE || apdu_cla_has_sm(a.cla)) {
        OT_FAIL(OT_E_APDU);
    }
    if (!keyset_ok(keys)) {
        OT_FAIL(OT_E_KEY);
    }
    cl = c->s.chal_len;
    if (a.nc != cl) {
        OT_FAIL(OT_E_APDU_LEN); /* the card answers 6700 */
    }
    need = iu_resp_len(c->i_param);
    if (*resp_len < need) {
        *resp_len = need;
        OT_FAIL(OT_E_BUF_SMALL);
    }
    memcpy(c->s.host_chal, a.data, cl);
    if (pseudo) {
        /* Pseudo-random challenge: counter++, then KDF(Key-ENC, DC 02,
         * seq || SD AID) (Amd D 6.2.2.1). */
        if (*seq >= SCP03_SEQ_MAX) {
            OT_FAIL(OT_E_SEQ_EXHAUSTED);
        }
        (*seq)++;
        ctx[0] = (uint8_t)(*seq >> 16);
        ctx[1] = (uint8_t)(*seq >> 8);
        ctx[2] = (uint8_t)*seq;
        memcpy(ctx + SCP03_SEQ_LEN, c->aid, c->aid_len);
        OT_TRY(cmac_set_key(c->s.prf, keys->enc, keys->key_len));
        OT_TRY(kdf_scp03(c->s.prf, KDF_DC_CARD_CHALLENGE, ctx, SCP03_SEQ_LEN + c->aid_len,
                         c->s.card_chal, cl));
    } else if (RAND_bytes(c->s.card_chal, (int)cl) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
    OT_TRY(sess_derive(&c->s, keys));
    memcpy(resp, c->kdd, SCP03_KDD_LEN);
    off = SCP03_KDD_LEN;
    resp[off++] = keys->kvn;
    resp[off++] = SCP03_ID;
    resp[off++] = c->i_param;
    memcpy(resp + off, c->s.card_chal, cl);
    off += cl;
    OT_TRY(sess_cryptogram(&c->s, KDF_DC_CARD_CRYPTOGRAM, resp + off));
    off += cl;
    if (pseudo) {
        memcpy(resp + off, ctx, SCP03_SEQ_LEN);
        off += SCP03_SEQ_LEN;
    }
    *resp_len = off;
    c->keys = *keys;
    c->state = SCP03_CARD_PENDING;
out:
    if (err != OT_OK) {
        scp03_card_reset(c);
    }
    return err;
}

ot_err scp03_card_external_authenticate(struct scp03_card *c, const uint8_t *cmd, size_t n)
{
    ot_err err = OT_OK;
    struct apdu a;
    uint8_t hdr[7], zero_mcv[SCP03_BLOCK] = {0}, full[SCP03_BLOCK], want[SCP03_CHAL_MAX];
    size_t hdr_len, cl;

    if (!c || !cmd) {
        return OT_E_ARG;
    }
    if (c->state != SCP03_CARD_PENDING) {
        OT_FAIL(OT_E_NO_CHANNEL);
    }
    cl = c->s.chal_len;
    OT_TRY(apdu_parse(cmd, n, &a));
    if (a.ins != GP_INS_EXTERNAL_AUTHENTICATE) {
        OT_FAIL(OT_E_APDU);
    }
    if (!apdu_cla_has_sm(a.cla)) {
        OT_FAIL(OT_E_SEC_LEVEL);
    }
    if (a.nc != 2 * cl || a.extended) {
        OT_FAIL(OT_E_APDU_LEN);
    }
    OT_TRY(mac_header(a.cla, a.ins, a.p1, a.p2, a.nc, false, hdr, &hdr_len));
    OT_TRY(sess_cmac_cmd(&c->s, zero_mcv, hdr, hdr_len, a.data, cl, full));
    if (!ot_mem_equal_ct(full, a.data + cl, cl)) {
        OT_FAIL(OT_E_CMAC);
    }
    OT_TRY(sess_cryptogram(&c->s, KDF_DC_HOST_CRYPTOGRAM, want));
    if (!ot_mem_equal_ct(want, a.data, cl)) {
        OT_FAIL(OT_E_HOST_CRYPTOGRAM);
    }
    if (!level_allowed(a.p1, c->i_param)) {
        OT_FAIL(OT_E_SEC_LEVEL);
    }
    memcpy(c->s.mcv, full, SCP03_BLOCK);
    c->s.level = a.p1;
    c->s.counter = 0;
    c->resp_pending = false;
    c->state = SCP03_CARD_OPEN;
out:
    ot_mem_wipe(want, sizeof want);
    if (err != OT_OK) {
        scp03_card_reset(c);
    }
    return err;
}

ot_err scp03_card_unwrap(struct scp03_card *c, const uint8_t *cmd, size_t n, uint8_t *out,
                         size_t *out_len)
{
    ot_err err = OT_OK;
    struct apdu a;
    uint8_t hdr[7], full[SCP03_BLOCK], icv[SCP03_BLOCK], ch, cla0, cla;
    size_t hdr_len, body, plain, lcsz, lesz, need, off;
    const uint8_t *tag;
    struct scp03_sess *s;

    if (!c || !cmd || !out || !out_len) {
        return OT_E_ARG;
    }
    if (c->state != SCP03_CARD_OPEN) {
        OT_FAIL(OT_E_NO_CHANNEL);
    }
    s = &c->s;
    c->resp_pending = false;
    OT_TRY(apdu_parse(cmd, n, &a));
    OT_TRY(apdu_cla_channel(a.cla, &ch));
    if (s->counter == UINT32_MAX) {
        OT_FAIL(OT_E_LIMIT);
    }
    if (!(s->level & SCP03_LVL_CMAC)) {
        /* Level 00: nothing to check or strip. */
        if (*out_len < n) {
            *out_len = n;
            return OT_E_BUF_SMALL;
        }
        memmove(out, cmd, n);
        *out_len = n;
        s->counter++;
        c->resp_pending = true;
        return OT_OK;
    }
    if (!apdu_cla_has_sm(a.cla)) {
        OT_FAIL(OT_E_SEC_LEVEL); /* the session requires at least a C-MAC */
    }
    if (a.nc < s->chal_len) {
        OT_FAIL(OT_E_APDU_LEN);
    }
    body = a.nc - s->chal_len;
    tag = a.data + body;
    lcsz = a.extended ? SCP03_LC_EXT : 1;
    lesz = a.ne ? (a.extended ? 3 : 1) : 0;
    need = 4 + lcsz + body + lesz; /* upper bound; never more than n */
    if (*out_len < need) {
        *out_len = need;
        return OT_E_BUF_SMALL; /* caller's buffer: no abort */
    }
    if (out == cmd) {
        return OT_E_ARG;
    }
    /* A resend of the command accepted last carries the C-MAC that is now
     * the chaining value: report it as a replay. */
    if (ot_mem_equal_ct(tag, s->mcv, s->chal_len)) {
        OT_FAIL(OT_E_REPLAY);
    }
    OT_TRY(mac_header(a.cla, a.ins, a.p1, a.p2, a.nc, a.extended, hdr, &hdr_len));
    OT_TRY(sess_cmac_cmd(s, s->mcv, hdr, hdr_len, a.data, body, full));
    if (!ot_mem_equal_ct(full, tag, s->chal_len)) {
        OT_FAIL(OT_E_CMAC);
    }
    s->counter++;
    off = 4 + lcsz;
    plain = body;
    if ((s->level & SCP03_LVL_CDEC) && body > 0) {
        if (body % SCP03_BLOCK != 0) {
            OT_FAIL(OT_E_PADDING);
        }
        OT_TRY(sess_icv(s, 0x00, icv));
        OT_TRY(cbc_decrypt(s, icv, a.data, out + off, body));
        OT_TRY(unpad(out + off, body, &plain));
    } else {
        memcpy(out + off, a.data, body);
    }
    memcpy(s->mcv, full, SCP03_BLOCK);
    /* Plain C-APDU: CLA without SM (channel kept), same length encoding. */
    OT_TRY(apdu_cla_with_channel(a.cla, 0, &cla0));
    OT_TRY(apdu_cla_with_channel((uint8_t)(cla0 & ~GP_CLA_FIRST_SM_MASK), ch, &cla));
    out[0] = cla;
    out[1] = a.ins;
    out[2] = a.p1;
    out[3] = a.p2;
    off = 4;
    if (plain > 0) {
        if (a.extended) {
            out[off++] = 0x00;
            ot_put_u16be(out + off, (uint16_t)plain);
            off += 2;
        } else {
            out[off++] = (uint8_t)plain;
        }
        off += plain; /* already in place */
    }
    if (a.ne) {
        if (a.extended) {
            if (plain == 0) {
                out[off++] = 0x00;
            }
            ot_put_u16be(out + off, (uint16_t)(a.ne == APDU_MAX_EXT_NE ? 0 : a.ne));
            off += 2;
        } else {
            out[off++] = (uint8_t)(a.ne == APDU_MAX_SHORT_NE ? 0 : a.ne);
        }
    }
    *out_len = off;
    c->resp_pending = true;
out:
    if (err != OT_OK) {
        OT_LOG_DEBUG("command rejected (%s): session aborted", ot_errname(err));
        scp03_card_reset(c);
    }
    return err;
}

ot_err scp03_card_wrap(struct scp03_card *c, const uint8_t *data, size_t n, uint16_t sw,
                       uint8_t *out, size_t *out_len)
{
    ot_err err = OT_OK;
    uint8_t full[SCP03_BLOCK], icv[SCP03_BLOCK];
    size_t body, need;
    struct scp03_sess *s;
    bool rmac;

    if (!c || (!data && n > 0) || !out || !out_len) {
        return OT_E_ARG;
    }
    s = &c->s;
    rmac = c->state == SCP03_CARD_OPEN && c->resp_pending && (s->level & SCP03_LVL_RMAC);
    if (!rmac || !sw_protected(sw)) {
        /* No R-MAC: data and SW as given; with R-MAC an error SW goes alone. */
        size_t keep = rmac ? 0 : n;
        if (*out_len < keep + 2) {
            *out_len = keep + 2;
            return OT_E_BUF_SMALL;
        }
        if (keep > 0) {
            memmove(out, data, keep);
        }
        ot_put_u16be(out + keep, sw);
        *out_len = keep + 2;
        c->resp_pending = false;
        return OT_OK;
    }
    body = (s->level & SCP03_LVL_RENC) && n > 0 ? pad_len(n) : n;
    need = body + s->chal_len + 2;
    if (*out_len < need) {
        *out_len = need;
        return OT_E_BUF_SMALL;
    }
    if (n > 0) {
        memmove(out, data, n);
    }
    if (body != n) {
        pad_in_place(out, n);
        OT_TRY(sess_icv(s, SCP03_RENC_ICV_MARK, icv));
        OT_TRY(cbc_encrypt(s, icv, out, body));
    }
    OT_TRY(sess_rmac(s, out, body, sw, full));
    memcpy(out + body, full, s->chal_len);
    ot_put_u16be(out + body + s->chal_len, sw);
    *out_len = need;
    c->resp_pending = false;
out:
    if (err != OT_OK) {
        scp03_card_reset(c);
    }
    return err;
}

bool scp03_card_is_open(const struct scp03_card *c)
{
    return c && c->state == SCP03_CARD_OPEN;
}

bool scp03_card_is_pending(const struct scp03_card *c)
{
    return c && c->state == SCP03_CARD_PENDING;
}

uint8_t scp03_card_level(const struct scp03_card *c)
{
    return scp03_card_is_open(c) ? c->s.level : 0;
}

const struct scp03_keyset *scp03_card_keys(const struct scp03_card *c)
{
    return c && c->state != SCP03_CARD_IDLE ? &c->keys : NULL;
}
