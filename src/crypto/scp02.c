#include "crypto/scp02.h"

#define OT_LOG_COMPONENT "crypto.scp02"
#include "core/apdu.h"
#include "core/buf.h"
#include "core/log.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <stdlib.h>
#include <string.h>

/* Session key derivation constants (GPCS E.4.1). */
#define SCP02_DC_CMAC 0x0101u
#define SCP02_DC_RMAC 0x0102u
#define SCP02_DC_SENC 0x0182u
#define SCP02_DC_DEK  0x0181u

#define SCP02_SCP_ID                0x02u /* GPCS Table E-14, byte 11 */
#define SCP02_INS_INITIALIZE_UPDATE 0x50u /* GPCS 11.9 / E.5.1 */
#define SCP02_INS_EXTERNAL_AUTH     0x82u /* GPCS E.5.2 */
#define SCP02_CLA_GP                0x80u /* GP proprietary class, channel 0 */
#define SCP02_CLA_SM                0x04u /* first interindustry b3: secure messaging */
#define SCP02_CLA_SM_MASK           0x0Cu /* first interindustry b4b3 */
#define SCP02_BLK                   8u
#define SCP02_EA_LC                 16u /* host cryptogram + C-MAC */
#define SCP02_MAX_LC                255u
#define SCP02_MAX_LE                256u

/* ------------------------------------------------------------ DES helpers
 *
 * Contexts. OpenSSL 3 keeps single DES (DES-ECB/DES-CBC) in the legacy
 * provider only. The retail MAC (ISO 9797-1 alg. 3) and ICV encryption need
 * single DES under K1, the first half of the C-MAC / R-MAC key; 2-key 3DES
 * with the key K1 || K1 computes E(K1) D(K1) E(K1) = E(K1), i.e. single DES,
 * and lives in the default provider. So we use DES-EDE-ECB everywhere and need
 * no provider configuration or library context. CBC chaining is done by hand
 * one 8-byte block at a time (ECB, padding off), which also lets the MAC be
 * fed in pieces (header, data, padding) without copying the message.
 */
enum scp02_cx {
    SCP02_CX_STATIC = 0, /* static key being used for derivation, re-keyed per use */
    SCP02_CX_ENC,        /* S-ENC, encrypt: cryptograms, C-DEC on the host */
    SCP02_CX_ENC_DEC,    /* S-ENC, decrypt: C-DEC on the card */
    SCP02_CX_CMAC1,      /* C-MAC K1 || K1: single DES for the MAC chain and ICV encryption */
    SCP02_CX_CMAC,       /* C-MAC K1 || K2: final block of the retail MAC */
    SCP02_CX_RMAC1,      /* R-MAC K1 || K1 */
    SCP02_CX_RMAC,       /* R-MAC K1 || K2 */
    SCP02_CX_COUNT,
};

static ot_err scp02_cx_new(EVP_CIPHER_CTX *cx[SCP02_CX_COUNT])
{
    for (int i = 0; i < SCP02_CX_COUNT; i++) {
        int enc = i == SCP02_CX_ENC_DEC ? 0 : 1;
        cx[i] = EVP_CIPHER_CTX_new();
        if (cx[i] == NULL) {
            return OT_E_NOMEM;
        }
        if (EVP_CipherInit_ex(cx[i], EVP_des_ede_ecb(), NULL, NULL, NULL, enc) != 1
            || EVP_CIPHER_CTX_set_padding(cx[i], 0) != 1) {
            return OT_E_CRYPTO;
        }
    }
    return OT_OK;
}

static void scp02_cx_free(EVP_CIPHER_CTX *cx[SCP02_CX_COUNT])
{
    for (int i = 0; i < SCP02_CX_COUNT; i++) {
        EVP_CIPHER_CTX_free(cx[i]); /* also clears the key schedule */
        cx[i] = NULL;
    }
}

/* Re-keys a context created by scp02_cx_new() (cipher kept). */
static ot_err scp02_cx_key(EVP_CIPHER_CTX *cx, const uint8_t key[SCP02_KEY_LEN], int enc)
{
    if (EVP_CipherInit_ex(cx, NULL, NULL, key, NULL, enc) != 1
        || EVP_CIPHER_CTX_set_padding(cx, 0) != 1) {
        return OT_E_CRYPTO;
    }
    return OT_OK;
}

/* K1 || K1 of a 2-key 3DES key: single DES under K1 (see above). */
static ot_err scp02_cx_key_k1(EVP_CIPHER_CTX *cx, const uint8_t key[SCP02_KEY_LEN])
{
    uint8_t k1k1[SCP02_KEY_LEN];
    ot_err err;

    memcpy(k1k1, key, SCP02_BLK);
    memcpy(k1k1 + SCP02_BLK, key, SCP02_BLK);
    err = scp02_cx_key(cx, k1k1, 1);
    ot_mem_wipe(k1k1, sizeof k1k1);
    return err;
}

static ot_err scp02_blk(EVP_CIPHER_CTX *cx, const uint8_t in[SCP02_BLK], uint8_t out[SCP02_BLK])
{
    int n = 0;

    if (EVP_CipherUpdate(cx, out, &n, in, (int)SCP02_BLK) != 1 || n != (int)SCP02_BLK) {
        return OT_E_CRYPTO;
    }
    return OT_OK;
}

static void scp02_xor(uint8_t *dst, const uint8_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dst[i] ^= src[i];
    }
}

/* ------------------------------------------------------------ MAC
 *
 * Streaming CBC-MAC with ISO 9797-1 padding method 2 (80 00..). Every full
 * block is chained with `mid` as soon as it is complete: the padding always
 * adds at least one byte, so a complete block is never the last one. The
 * last (padded) block goes through `last`:
 *   retail MAC (alg. 3):  mid = K1 || K1 (single DES), last = K1 || K2
 *   full 3DES MAC (alg. 1): mid = last = K1 || K2
 * The state is a plain value, so a caller can work on a copy and commit it
 * only when the whole operation succeeds.
 */
struct scp02_mac {
    uint8_t cv[SCP02_BLK];
    uint8_t blk[SCP02_BLK];
    size_t fill;
};

static void scp02_mac_init(struct scp02_mac *m, const uint8_t icv[SCP02_BLK])
{
    if (icv != NULL) {
        memcpy(m->cv, icv, SCP02_BLK);
    } else {
        memset(m->cv, 0, SCP02_BLK);
    }
    m->fill = 0;
}

static ot_err scp02_mac_update(struct scp02_mac *m, EVP_CIPHER_CTX *mid, const uint8_t *p, size_t n)
{
    ot_err err = OT_OK;

    while (n > 0) {
        size_t take = SCP02_BLK - m->fill;
        if (take > n) {
            take = n;
        }
        memcpy(m->blk + m->fill, p, take);
        m->fill += take;
        p += take;
        n -= take;
        if (m->fill == SCP02_BLK) {
            scp02_xor(m->blk, m->cv, SCP02_BLK);
            OT_TRY(scp02_blk(mid, m->blk, m->cv));
            m->fill = 0;
        }
    }
out:
    return err;
}

static ot_err scp02_mac_byte(struct scp02_mac *m, EVP_CIPHER_CTX *mid, uint8_t b)
{
    return scp02_mac_update(m, mid, &b, 1);
}

static ot_err scp02_mac_final(struct scp02_mac *m, EVP_CIPHER_CTX *last, uint8_t mac[SCP02_BLK])
{
    m->blk[m->fill++] = 0x80;
    memset(m->blk + m->fill, 0, SCP02_BLK - m->fill);
    scp02_xor(m->blk, m->cv, SCP02_BLK);
    m->fill = 0;
    return scp02_blk(last, m->blk, mac);
}

/* ------------------------------------------------------------ session core */

enum scp02_state {
    SCP02_ST_NONE = 0, /* no session */
    SCP02_ST_IU_SENT,  /* host: INITIALIZE UPDATE built */
    SCP02_ST_IU_DONE,  /* host: card answer accepted; card: waiting for EXTERNAL AUTHENTICATE */
    SCP02_ST_EA_SENT,  /* host: EXTERNAL AUTHENTICATE built */
    SCP02_ST_OPEN,
};

struct scp02_sess {
    EVP_CIPHER_CTX *cx[SCP02_CX_COUNT];
    enum scp02_state st;
    uint8_t level;
    uint8_t ch; /* host: logical channel of the session */
    uint16_t seq;
    uint8_t host_chal[SCP02_HOST_CHAL_LEN];
    uint8_t card_chal[SCP02_CARD_CHAL_LEN];
    uint8_t kdd[SCP02_KDD_LEN];
    bool have_kdd;
    uint8_t s_enc[SCP02_KEY_LEN];
    uint8_t s_cmac[SCP02_KEY_LEN];
    uint8_t s_rmac[SCP02_KEY_LEN];
    uint8_t s_dek[SCP02_KEY_LEN];
    uint8_t icv[SCP02_BLK];      /* last C-MAC: source of the next ICV */
    uint8_t prev_icv[SCP02_BLK]; /* card: ICV the last accepted command verified with */
    uint8_t rmac_icv[SCP02_BLK]; /* last R-MAC (first: EXTERNAL AUTHENTICATE's C-MAC) */
    struct scp02_mac rm;         /* R-MAC over the current command, finished with its response */
    bool rm_pending;
};

/* Forgets the session (keys wiped); contexts and KDD stay. */
static void scp02_sess_clear(struct scp02_sess *s)
{
    s->st = SCP02_ST_NONE;
    s->level = 0;
    s->rm_pending = false;
    ot_mem_wipe(s->s_enc, sizeof s->s_enc);
    ot_mem_wipe(s->s_cmac, sizeof s->s_cmac);
    ot_mem_wipe(s->s_rmac, sizeof s->s_rmac);
    ot_mem_wipe(s->s_dek, sizeof s->s_dek);
    ot_mem_wipe(s->icv, sizeof s->icv);
    ot_mem_wipe(s->prev_icv, sizeof s->prev_icv);
    ot_mem_wipe(s->rmac_icv, sizeof s->rmac_icv);
    ot_mem_wipe(&s->rm, sizeof s->rm);
    ot_mem_wipe(s->host_chal, sizeof s->host_chal);
    ot_mem_wipe(s->card_chal, sizeof s->card_chal);
}

/* SK = 3DES-CBC(static, IV 0, const(2) || seq(2) || 00 x 12) (GPCS E.4.1). */
static ot_err scp02_derive(struct scp02_sess *s, const uint8_t key[SCP02_KEY_LEN], uint16_t dc,
                           uint8_t out[SCP02_KEY_LEN])
{
    ot_err err = OT_OK;
    EVP_CIPHER_CTX *cx = s->cx[SCP02_CX_STATIC];
    uint8_t d[SCP02_BLK] = {0};

    ot_put_u16be(d, dc);
    ot_put_u16be(d + 2, s->seq);
    OT_TRY(scp02_cx_key(cx, key, 1));
    OT_TRY(scp02_blk(cx, d, out));
    /* second block: 00 x 8 XOR the first ciphertext block */
    OT_TRY(scp02_blk(cx, out, out + SCP02_BLK));
out:
    return err;
}

/* Derives the four session keys for s->seq and keys the session contexts. */
static ot_err scp02_sess_keys(struct scp02_sess *s, const struct scp02_keyset *k)
{
    ot_err err = OT_OK;

    OT_TRY(scp02_derive(s, k->enc, SCP02_DC_SENC, s->s_enc));
    OT_TRY(scp02_derive(s, k->mac, SCP02_DC_CMAC, s->s_cmac));
    OT_TRY(scp02_derive(s, k->mac, SCP02_DC_RMAC, s->s_rmac));
    OT_TRY(scp02_derive(s, k->dek, SCP02_DC_DEK, s->s_dek));
    /* do not leave the static DEK's schedule in the context */
    OT_TRY(scp02_cx_key(s->cx[SCP02_CX_STATIC], s->s_dek, 1));
    OT_TRY(scp02_cx_key(s->cx[SCP02_CX_ENC], s->s_enc, 1));
    OT_TRY(scp02_cx_key(s->cx[SCP02_CX_ENC_DEC], s->s_enc, 0));
    OT_TRY(scp02_cx_key_k1(s->cx[SCP02_CX_CMAC1], s->s_cmac));
    OT_TRY(scp02_cx_key(s->cx[SCP02_CX_CMAC], s->s_cmac, 1));
    OT_TRY(scp02_cx_key_k1(s->cx[SCP02_CX_RMAC1], s->s_rmac));
    OT_TRY(scp02_cx_key(s->cx[SCP02_CX_RMAC], s->s_rmac, 1));
out:
    return err;
}

/* Card cryptogram: full 3DES MAC with S-ENC, ICV 0, over host challenge ||
 * seq || card challenge (padded to 24 bytes). Host cryptogram: over seq ||
 * card challenge || host challenge (GPCS E.4.2). */
static ot_err scp02_cryptogram(struct scp02_sess *s, bool card, uint8_t out[SCP02_BLK])
{
    ot_err err = OT_OK;
    EVP_CIPHER_CTX *cx = s->cx[SCP02_CX_ENC];
    struct scp02_mac m;
    uint8_t seq[2];

    ot_put_u16be(seq, s->seq);
    scp02_mac_init(&m, NULL);
    if (card) {
        OT_TRY(scp02_mac_update(&m, cx, s->host_chal, sizeof s->host_chal));
    }
    OT_TRY(scp02_mac_update(&m, cx, seq, sizeof seq));
    OT_TRY(scp02_mac_update(&m, cx, s->card_chal, sizeof s->card_chal));
    if (!card) {
        OT_TRY(scp02_mac_update(&m, cx, s->host_chal, sizeof s->host_chal));
    }
    OT_TRY(scp02_mac_final(&m, cx, out));
out:
    return err;
}

/* C-MAC (retail MAC, C-MAC session key) over the modified APDU header
 * mac_cla INS P1 P2 Lc+8 and the plain data (GPCS E.4.4). */
static ot_err scp02_cmac(struct scp02_sess *s, const uint8_t icv[SCP02_BLK], uint8_t mac_cla,
                         const struct apdu *a, const uint8_t *data, size_t nc,
                         uint8_t mac[SCP02_BLK])
{
    ot_err err = OT_OK;
    EVP_CIPHER_CTX *mid = s->cx[SCP02_CX_CMAC1];
    struct scp02_mac m;
    uint8_t hdr[5] = {mac_cla, a->ins, a->p1, a->p2, (uint8_t)(nc + SCP02_MAC_LEN)};

    scp02_mac_init(&m, icv);
    OT_TRY(scp02_mac_update(&m, mid, hdr, sizeof hdr));
    OT_TRY(scp02_mac_update(&m, mid, data, nc));
    OT_TRY(scp02_mac_final(&m, s->cx[SCP02_CX_CMAC], mac));
out:
    return err;
}

/* ICV for the next C-MAC: the previous C-MAC, DES-encrypted with K1 of the
 * C-MAC key when i has ICV encryption (GPCS E.4.4). */
static ot_err scp02_next_icv(struct scp02_sess *s, bool icv_enc, uint8_t icv[SCP02_BLK])
{
    if (!icv_enc) {
        memcpy(icv, s->icv, SCP02_BLK);
        return OT_OK;
    }
    return scp02_blk(s->cx[SCP02_CX_CMAC1], s->icv, icv);
}

/* Starts the R-MAC of one command: ICV = previous R-MAC, then the stripped
 * command CLA INS P1 P2 Lc data (Lc 00 without data) (GPCS E.4.5). */
static ot_err scp02_rmac_start(struct scp02_sess *s, uint8_t cla0, const struct apdu *plain,
                               struct scp02_mac *m)
{
    ot_err err = OT_OK;
    EVP_CIPHER_CTX *mid = s->cx[SCP02_CX_RMAC1];
    uint8_t hdr[5] = {cla0, plain->ins, plain->p1, plain->p2, (uint8_t)plain->nc};

    scp02_mac_init(m, s->rmac_icv);
    OT_TRY(scp02_mac_update(m, mid, hdr, sizeof hdr));
    OT_TRY(scp02_mac_update(m, mid, plain->data, plain->nc));
out:
    return err;
}

/* Commits a started R-MAC (after the output is written: the input may have
 * been overwritten by then, so the state is computed before). */
static void scp02_rmac_commit(struct scp02_sess *s, struct scp02_mac *m)
{
    s->rm = *m;
    s->rm_pending = true;
    ot_mem_wipe(m, sizeof *m);
}

/* Finishes the R-MAC with Li || data || SW. */
static ot_err scp02_rmac_finish(struct scp02_sess *s, const uint8_t *data, size_t n, uint16_t sw,
                                uint8_t rmac[SCP02_BLK])
{
    ot_err err = OT_OK;
    EVP_CIPHER_CTX *mid = s->cx[SCP02_CX_RMAC1];
    struct scp02_mac m = s->rm;
    uint8_t swb[2];

    ot_put_u16be(swb, sw);
    OT_TRY(scp02_mac_byte(&m, mid, (uint8_t)(n & 0xFFu)));
    OT_TRY(scp02_mac_update(&m, mid, data, n));
    OT_TRY(scp02_mac_update(&m, mid, swb, sizeof swb));
    OT_TRY(scp02_mac_final(&m, s->cx[SCP02_CX_RMAC], rmac));
out:
    ot_mem_wipe(&m, sizeof m);
    return err;
}

static bool scp02_level_valid(uint8_t level, bool rmac_ok)
{
    switch (level) {
    case 0x00:
    case SCP02_LVL_CMAC:
    case SCP02_LVL_CMAC | SCP02_LVL_CDEC:
        return true;
    case SCP02_LVL_RMAC:
    case SCP02_LVL_RMAC | SCP02_LVL_CMAC:
    case SCP02_LVL_RMAC | SCP02_LVL_CMAC | SCP02_LVL_CDEC:
        return rmac_ok;
    default:
        return false;
    }
}

/* Channel-0, first-interindustry form of cla (what the MACs cover). */
static ot_err scp02_cla0(uint8_t cla, uint8_t *cla0, uint8_t *ch)
{
    ot_err err = apdu_cla_channel(cla, ch);

    if (err != OT_OK) {
        return err;
    }
    return apdu_cla_with_channel(cla, 0, cla0);
}

/* Fails with the status word's error code; 61xx/9000 never reach here. */
static ot_err scp02_sw_err(uint16_t sw)
{
    ot_err e = sw_to_err(sw);

    return e == OT_OK ? OT_E_SW : e;
}

static void scp02_copy_out(uint8_t *out, const uint8_t *in, size_t n)
{
    if (n > 0) {
        memmove(out, in, n);
    }
}

/* Levels without C-MAC (00, 10): the command passes unchanged, on the host
 * and on the card; under R-MAC its MAC is started from the parsed command a
 * (which points into cmd) before out, which may be cmd, is written. */
static ot_err scp02_pass_plain(struct scp02_sess *s, uint8_t cla0, const struct apdu *a,
                               const uint8_t *cmd, size_t n, uint8_t *out, size_t *out_len)
{
    ot_err err = OT_OK;
    struct scp02_mac rm;

    if (out == NULL || *out_len < n) {
        *out_len = n;
        return OT_E_BUF_SMALL;
    }
    if (s->level & SCP02_LVL_RMAC) {
        OT_TRY(scp02_rmac_start(s, cla0, a, &rm));
        scp02_rmac_commit(s, &rm);
    }
    scp02_copy_out(out, cmd, n);
    *out_len = n;
out:
    ot_mem_wipe(&rm, sizeof rm);
    return err;
}

/* ================================================================ host */

struct scp02_host {
    struct scp02_sess s;
    struct scp02_keyset keys;
    bool have_last_seq;
    uint16_t last_seq;
};

ot_err scp02_host_new(const struct scp02_keyset *keys, struct scp02_host **out)
{
    ot_err err = OT_OK;
    struct scp02_host *h = NULL;

    if (out != NULL) {
        *out = NULL;
    }
    if (keys == NULL || out == NULL) {
        return OT_E_ARG;
    }
    h = calloc(1, sizeof *h);
    if (h == NULL) {
        return OT_E_NOMEM;
    }
    OT_TRY(scp02_cx_new(h->s.cx));
    h->keys = *keys;
    *out = h;
    h = NULL;
out:
    scp02_host_free(h);
    return err;
}

void scp02_host_free(struct scp02_host *h)
{
    if (h == NULL) {
        return;
    }
    scp02_cx_free(h->s.cx);
    ot_mem_wipe(h, sizeof *h);
    free(h);
}

ot_err scp02_host_set_keys(struct scp02_host *h, const struct scp02_keyset *keys)
{
    if (h == NULL || keys == NULL) {
        return OT_E_ARG;
    }
    if (h->s.st != SCP02_ST_NONE && h->s.st != SCP02_ST_IU_SENT) {
        return OT_E_STATE;
    }
    h->keys = *keys;
    return OT_OK;
}

ot_err scp02_host_initialize_update(struct scp02_host *h, uint8_t ch, const uint8_t *host_chal,
                                    uint8_t *apdu, size_t *apdu_len)
{
    ot_err err = OT_OK;
    uint8_t chal[SCP02_HOST_CHAL_LEN];
    struct apdu a = {.ins = SCP02_INS_INITIALIZE_UPDATE, .nc = SCP02_HOST_CHAL_LEN, .ne = 256};

    if (h == NULL || apdu_len == NULL) {
        return OT_E_ARG;
    }
    if (apdu_cla_with_channel(SCP02_CLA_GP, ch, &a.cla) != OT_OK) {
        return OT_E_ARG;
    }
    scp02_sess_clear(&h->s);
    if (host_chal != NULL) {
        memcpy(chal, host_chal, sizeof chal);
    } else if (RAND_bytes(chal, (int)sizeof chal) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
    a.p1 = h->keys.kvn;
    a.data = chal;
    OT_TRY(apdu_encode(&a, apdu, apdu_len));
    memcpy(h->s.host_chal, chal, sizeof chal);
    h->s.ch = ch;
    h->s.st = SCP02_ST_IU_SENT;
out:
    return err;
}

ot_err scp02_resp_kdd(const uint8_t *resp, size_t len, uint8_t kdd[SCP02_KDD_LEN])
{
    ot_err err = OT_OK;
    struct rapdu r;

    if (resp == NULL || kdd == NULL) {
        return OT_E_ARG;
    }
    OT_TRY(rapdu_parse(resp, len, &r));
    if (r.sw != SW_OK) {
        OT_FAIL(scp02_sw_err(r.sw));
    }
    if (r.len != SCP02_IU_RESP_LEN) {
        OT_FAIL(OT_E_APDU_LEN);
    }
    memcpy(kdd, r.data, SCP02_KDD_LEN);
out:
    return err;
}

ot_err scp02_host_on_initialize_update(struct scp02_host *h, const uint8_t *resp, size_t len)
{
    ot_err err = OT_OK;
    struct scp02_sess *s = NULL;
    struct rapdu r;
    struct buf_rd rd;
    uint8_t kvn = 0;
    uint8_t scp = 0;
    const uint8_t *want = NULL;
    uint8_t got[SCP02_BLK];

    if (h == NULL || resp == NULL) {
        return OT_E_ARG;
    }
    s = &h->s;
    if (s->st != SCP02_ST_IU_SENT) {
        return OT_E_STATE;
    }
    OT_TRY(scp02_resp_kdd(resp, len, s->kdd));
    s->have_kdd = true;
    OT_TRY(rapdu_parse(resp, len, &r));
    /* GPCS Table E-14: KDD(10) KVN(1) SCP id(1) seq(2) card challenge(6)
     * card cryptogram(8); length already checked by scp02_resp_kdd(). */
    buf_rd_init(&rd, r.data, r.len);
    OT_TRY(buf_rd_skip(&rd, SCP02_KDD_LEN));
    OT_TRY(buf_rd_u8(&rd, &kvn));
    OT_TRY(buf_rd_u8(&rd, &scp));
    OT_TRY(buf_rd_u16be(&rd, &s->seq));
    OT_TRY(buf_rd_copy(&rd, s->card_chal, sizeof s->card_chal));
    OT_TRY(buf_rd_take(&rd, SCP02_BLK, &want));
    if (scp != SCP02_SCP_ID) {
        OT_LOG_DEBUG("card answered SCP %02x, not 02", scp);
        OT_FAIL(OT_E_UNSUPPORTED);
    }
    if (h->keys.kvn != 0 && kvn != h->keys.kvn) {
        OT_LOG_DEBUG("card used key version %u, ours is %u", kvn, h->keys.kvn);
        OT_FAIL(OT_E_KEY);
    }
    if (h->have_last_seq && s->seq <= h->last_seq) {
        OT_LOG_DEBUG("sequence counter %u not above %u", s->seq, h->last_seq);
        OT_FAIL(OT_E_REPLAY);
    }
    OT_TRY(scp02_sess_keys(s, &h->keys));
    OT_TRY(scp02_cryptogram(s, true, got));
    if (!ot_mem_equal_ct(got, want, SCP02_BLK)) {
        OT_FAIL(OT_E_CARD_CRYPTOGRAM);
    }
    s->st = SCP02_ST_IU_DONE;
out:
    ot_mem_wipe(got, sizeof got);
    if (err != OT_OK && s != NULL) {
        scp02_sess_clear(s);
    }
    return err;
}

void scp02_host_set_last_seq(struct scp02_host *h, uint16_t last_seq)
{
    if (h != NULL) {
        h->have_last_seq = true;
        h->last_seq = last_seq;
    }
}

ot_err scp02_host_external_authenticate(struct scp02_host *h, uint8_t level, uint8_t *apdu,
                                        size_t *apdu_len)
{
    ot_err err = OT_OK;
    struct scp02_sess *s = NULL;
    uint8_t data[SCP02_EA_LC];
    uint8_t mac_cla = SCP02_CLA_GP | SCP02_CLA_SM;
    struct apdu a = {.ins = SCP02_INS_EXTERNAL_AUTH, .p1 = level, .data = data, .nc = sizeof data};

    if (h == NULL || apdu_len == NULL) {
        return OT_E_ARG;
    }
    s = &h->s;
    if (s->st != SCP02_ST_IU_DONE) {
        return OT_E_STATE;
    }
    /* R-MAC levels are the card's to refuse: the host cannot know its i. */
    if (!scp02_level_valid(level, true)) {
        return OT_E_SEC_LEVEL;
    }
    OT_TRY(apdu_cla_with_channel(mac_cla, s->ch, &a.cla));
    OT_TRY(scp02_cryptogram(s, false, data));
    /* first C-MAC of the session: ICV zero, never encrypted */
    OT_TRY(scp02_cmac(s, NULL, mac_cla, &a, data, SCP02_BLK, data + SCP02_BLK));
    OT_TRY(apdu_encode(&a, apdu, apdu_len));
    memcpy(s->icv, data + SCP02_BLK, SCP02_BLK);
    memcpy(s->rmac_icv, data + SCP02_BLK, SCP02_BLK);
    s->level = level;
    s->st = SCP02_ST_EA_SENT;
out:
    return err;
}

ot_err scp02_host_on_external_authenticate(struct scp02_host *h, const uint8_t *resp, size_t len)
{
    ot_err err = OT_OK;
    struct scp02_sess *s = NULL;
    struct rapdu r;

    if (h == NULL || resp == NULL) {
        return OT_E_ARG;
    }
    s = &h->s;
    if (s->st != SCP02_ST_EA_SENT) {
        return OT_E_STATE;
    }
    OT_TRY(rapdu_parse(resp, len, &r));
    if (r.sw != SW_OK) {
        OT_FAIL(scp02_sw_err(r.sw));
    }
    if (r.len != 0) {
        OT_FAIL(OT_E_TRAILING);
    }
    s->st = SCP02_ST_OPEN;
    OT_LOG_INFO("secure channel open scp=02 kvn=%u level=0x%02x seq=%u", h->keys.kvn, s->level,
                s->seq);
out:
    if (err != OT_OK) {
        scp02_sess_clear(s);
    }
    return err;
}

/* 3DES-CBC, IV 0, with S-ENC over the data padded 80 00.. (always, GPCS
 * E.4.6); out receives the padded length. */
static ot_err scp02_host_encrypt(struct scp02_sess *s, const uint8_t *in, size_t n, uint8_t *out,
                                 size_t *out_n)
{
    ot_err err = OT_OK;
    size_t padded = (n / SCP02_BLK + 1) * SCP02_BLK;
    uint8_t cv[SCP02_BLK] = {0};
    uint8_t blk[SCP02_BLK];

    for (size_t off = 0; off < padded; off += SCP02_BLK) {
        for (size_t i = 0; i < SCP02_BLK; i++) {
            size_t k = off + i;
            uint8_t b = k < n ? in[k] : (k == n ? 0x80 : 0x00);
            blk[i] = (uint8_t)(b ^ cv[i]);
        }
        OT_TRY(scp02_blk(s->cx[SCP02_CX_ENC], blk, cv));
        memcpy(out + off, cv, SCP02_BLK);
    }
    *out_n = padded;
out:
    ot_mem_wipe(blk, sizeof blk);
    return err;
}

ot_err scp02_host_wrap(struct scp02_host *h, const uint8_t *cmd, size_t n, uint8_t *out,
                       size_t *out_len)
{
    ot_err err = OT_OK;
    struct scp02_sess *s = NULL;
    struct apdu a;
    struct apdu w;
    uint8_t cla0 = 0;
    uint8_t mac_cla = 0;
    uint8_t ch = 0;
    uint8_t icv[SCP02_BLK];
    uint8_t mac[SCP02_BLK];
    uint8_t body[SCP02_MAX_LC];
    size_t body_n = 0;
    struct scp02_mac rm;

    if (h == NULL || cmd == NULL || out_len == NULL) {
        return OT_E_ARG;
    }
    s = &h->s;
    if (s->st != SCP02_ST_OPEN) {
        return OT_E_NO_CHANNEL;
    }
    OT_TRY(apdu_parse(cmd, n, &a));
    if (apdu_cla_has_sm(a.cla)) {
        OT_FAIL(OT_E_APDU);
    }
    OT_TRY(scp02_cla0(a.cla, &cla0, &ch));
    if ((s->level & SCP02_LVL_CMAC) == 0) {
        /* level 00 / 10: the command goes out as it is; the R-MAC covers a
         * one-byte Lc */
        if ((s->level & SCP02_LVL_RMAC) && a.nc > SCP02_MAX_LC) {
            OT_FAIL(OT_E_TOO_LONG);
        }
        OT_TRY(scp02_pass_plain(s, cla0, &a, cmd, n, out, out_len));
        goto out;
    }

    /* sizes first: Lc of the secured command must fit one byte */
    if (a.nc > SCP02_MAX_LC || a.ne > SCP02_MAX_LE) {
        OT_FAIL(OT_E_TOO_LONG);
    }
    body_n = a.nc;
    if ((s->level & SCP02_LVL_CDEC) && a.nc > 0) {
        body_n = (a.nc / SCP02_BLK + 1) * SCP02_BLK;
    }
    if (body_n + SCP02_MAC_LEN > SCP02_MAX_LC) {
        OT_FAIL(OT_E_TOO_LONG);
    }
    mac_cla = (uint8_t)(cla0 | SCP02_CLA_SM);
    OT_TRY(scp02_next_icv(s, true, icv));
    OT_TRY(scp02_cmac(s, icv, mac_cla, &a, a.data, a.nc, mac));
    if ((s->level & SCP02_LVL_CDEC) && a.nc > 0) {
        OT_TRY(scp02_host_encrypt(s, a.data, a.nc, body, &body_n));
    } else if (a.nc > 0) {
        memcpy(body, a.data, a.nc);
    }
    memcpy(body + body_n, mac, SCP02_MAC_LEN);
    w = a;
    w.extended = false;
    w.data = body;
    w.nc = body_n + SCP02_MAC_LEN;
    OT_TRY(apdu_cla_with_channel(mac_cla, ch, &w.cla));
    if (s->level & SCP02_LVL_RMAC) {
        OT_TRY(scp02_rmac_start(s, cla0, &a, &rm)); /* before out overwrites cmd */
    }
    OT_TRY(apdu_encode(&w, out, out_len));
    /* committed only once the command is out */
    memcpy(s->icv, mac, SCP02_BLK);
    if (s->level & SCP02_LVL_RMAC) {
        scp02_rmac_commit(s, &rm);
    }
out:
    ot_mem_wipe(body, sizeof body);
    ot_mem_wipe(&rm, sizeof rm);
    return err;
}

ot_err scp02_host_unwrap(struct scp02_host *h, const uint8_t *resp, size_t n, uint8_t *out,
                         size_t *out_len)
{
    ot_err err = OT_OK;
    struct scp02_sess *s = NULL;
    struct rapdu r;
    size_t dlen = 0;
    uint8_t rmac[SCP02_BLK];

    if (h == NULL || resp == NULL || out_len == NULL) {
        return OT_E_ARG;
    }
    s = &h->s;
    if (s->st != SCP02_ST_OPEN) {
        return OT_E_NO_CHANNEL;
    }
    OT_TRY(rapdu_parse(resp, n, &r));
    if ((s->level & SCP02_LVL_RMAC) == 0) {
        if (out == NULL || *out_len < n) {
            *out_len = n;
            OT_FAIL(OT_E_BUF_SMALL);
        }
        scp02_copy_out(out, resp, n);
        *out_len = n;
        goto out;
    }
    if (!s->rm_pending) {
        OT_FAIL(OT_E_STATE);
    }
    if (r.len == 0 && !sw_is_success_or_warning(r.sw)) {
        /* a bare error status: the card dropped the channel (e.g. 6982 after
         * a C-MAC failure) or an attacker cut the R-MAC; either way the chain
         * cannot continue. Pass the status on and close. */
        if (out == NULL || *out_len < 2) {
            *out_len = 2;
            OT_FAIL(OT_E_BUF_SMALL);
        }
        OT_LOG_DEBUG("bare SW %04X under R-MAC: closing the session", r.sw);
        scp02_copy_out(out, resp, 2);
        *out_len = 2;
        scp02_sess_clear(s);
        goto out;
    }
    if (r.len < SCP02_MAC_LEN) {
        OT_FAIL(OT_E_RMAC);
    }
    dlen = r.len - SCP02_MAC_LEN;
    if (dlen > 0 && !sw_is_success_or_warning(r.sw)) {
        OT_FAIL(OT_E_RMAC); /* error responses carry no data (Li = 00) */
    }
    if (out == NULL || *out_len < dlen + 2) {
        *out_len = dlen + 2;
        OT_FAIL(OT_E_BUF_SMALL); /* the caller may retry with a larger buffer */
    }
    OT_TRY(scp02_rmac_finish(s, r.data, dlen, r.sw, rmac));
    if (!ot_mem_equal_ct(rmac, r.data + dlen, SCP02_BLK)) {
        OT_FAIL(OT_E_RMAC);
    }
    memcpy(s->rmac_icv, rmac, SCP02_BLK);
    s->rm_pending = false;
    scp02_copy_out(out, r.data, dlen);
    ot_put_u16be(out + dlen, r.sw);
    *out_len = dlen + 2;
out:
    if (err == OT_E_RMAC || err == OT_E_CRYPTO) {
        /* a response that does not verify ends the host's session */
        scp02_sess_clear(s);
    }
    return err;
}

bool scp02_host_is_open(const struct scp02_host *h)
{
    return h != NULL && h->s.st == SCP02_ST_OPEN;
}

uint8_t scp02_host_level(const struct scp02_host *h)
{
    return scp02_host_is_open(h) ? h->s.level : 0;
}

uint16_t scp02_host_seq(const struct scp02_host *h)
{
    return h != NULL ? h->s.seq : 0;
}

const uint8_t *scp02_host_kdd(const struct scp02_host *h)
{
    return h != NULL && h->s.have_kdd ? h->s.kdd : NULL;
}

ot_err scp02_host_session_keys(const struct scp02_host *h, uint8_t *s_enc, uint8_t *s_cmac,
                               uint8_t *s_rmac, uint8_t *s_dek)
{
    const uint8_t *src[4];
    uint8_t *dst[4] = {s_enc, s_cmac, s_rmac, s_dek};

    if (h == NULL) {
        return OT_E_ARG;
    }
    if (h->s.st < SCP02_ST_IU_DONE) {
        return OT_E_STATE;
    }
    src[0] = h->s.s_enc;
    src[1] = h->s.s_cmac;
    src[2] = h->s.s_rmac;
    src[3] = h->s.s_dek;
    for (size_t i = 0; i < 4; i++) {
        if (dst[i] != NULL) {
            memcpy(dst[i], src[i], SCP02_KEY_LEN);
        }
    }
    return OT_OK;
}

const uint8_t *scp02_host_session_dek(const struct scp02_host *h)
{
    if (h == NULL || h->s.st < SCP02_ST_IU_DONE) {
        return NULL;
    }
    return h->s.s_dek;
}

/* ================================================================ card */

struct scp02_card {
    struct scp02_sess s;
    uint8_t i_param;
    uint8_t kdd[SCP02_KDD_LEN];
    uint8_t aid[SCP02_AID_MAX];
    size_t aid_len;
    struct scp02_keyset keys; /* valid while a session is pending or open */
    uint16_t seq_out;         /* counter the key set must now hold */
    uint8_t next_chal[SCP02_CARD_CHAL_LEN];
    bool have_next_chal;
};

ot_err scp02_card_new(const struct scp02_card_cfg *cfg, struct scp02_card **out)
{
    ot_err err = OT_OK;
    struct scp02_card *c = NULL;

    if (out != NULL) {
        *out = NULL;
    }
    if (cfg == NULL || out == NULL) {
        return OT_E_ARG;
    }
    switch (cfg->i_param) {
    case 0x15:
    case 0x35:
    case 0x55:
    case 0x75:
        break;
    default:
        return OT_E_UNSUPPORTED;
    }
    if ((cfg->i_param & SCP02_I_PSEUDO) != 0 || cfg->sd_aid != NULL) {
        if (cfg->sd_aid == NULL || cfg->sd_aid_len < SCP02_AID_MIN
            || cfg->sd_aid_len > SCP02_AID_MAX) {
            return OT_E_ARG;
        }
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        return OT_E_NOMEM;
    }
    OT_TRY(scp02_cx_new(c->s.cx));
    c->i_param = cfg->i_param;
    memcpy(c->kdd, cfg->kdd, SCP02_KDD_LEN);
    if (cfg->sd_aid != NULL) {
        memcpy(c->aid, cfg->sd_aid, cfg->sd_aid_len);
        c->aid_len = cfg->sd_aid_len;
    }
    *out = c;
    c = NULL;
out:
    scp02_card_free(c);
    return err;
}

void scp02_card_free(struct scp02_card *c)
{
    if (c == NULL) {
        return;
    }
    scp02_cx_free(c->s.cx);
    ot_mem_wipe(c, sizeof *c);
    free(c);
}

void scp02_card_reset(struct scp02_card *c)
{
    if (c == NULL) {
        return;
    }
    scp02_sess_clear(&c->s);
    ot_mem_wipe(&c->keys, sizeof c->keys);
}

void scp02_card_set_next_challenge(struct scp02_card *c, const uint8_t chal[SCP02_CARD_CHAL_LEN])
{
    if (c != NULL && chal != NULL) {
        memcpy(c->next_chal, chal, SCP02_CARD_CHAL_LEN);
        c->have_next_chal = true;
    }
}

/* i.b7: card challenge = first 6 bytes of the retail MAC with the C-MAC
 * session key, ICV 0, over the SD's AID (GPCS E.4.2.1). */
static ot_err scp02_card_challenge(struct scp02_card *c)
{
    ot_err err = OT_OK;
    struct scp02_sess *s = &c->s;
    struct scp02_mac m;
    uint8_t mac[SCP02_BLK];

    if ((c->i_param & SCP02_I_PSEUDO) != 0) {
        scp02_mac_init(&m, NULL);
        OT_TRY(scp02_mac_update(&m, s->cx[SCP02_CX_CMAC1], c->aid, c->aid_len));
        OT_TRY(scp02_mac_final(&m, s->cx[SCP02_CX_CMAC], mac));
        memcpy(s->card_chal, mac, SCP02_CARD_CHAL_LEN);
    } else if (c->have_next_chal) {
        memcpy(s->card_chal, c->next_chal, SCP02_CARD_CHAL_LEN);
        c->have_next_chal = false;
    } else if (RAND_bytes(s->card_chal, (int)SCP02_CARD_CHAL_LEN) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
out:
    return err;
}

ot_err scp02_card_initialize_update(struct scp02_card *c, const struct scp02_keyset *keys,
                                    const uint16_t *seq, const uint8_t *cmd, size_t n,
                                    uint8_t *resp, size_t *resp_len)
{
    ot_err err = OT_OK;
    struct scp02_sess *s = NULL;
    struct apdu a;
    struct buf_wr w;
    uint8_t crypt[SCP02_BLK];

    if (c == NULL || keys == NULL || seq == NULL || cmd == NULL || resp_len == NULL) {
        return OT_E_ARG;
    }
    s = &c->s;
    scp02_card_reset(c);
    c->seq_out = *seq;
    OT_TRY(apdu_parse(cmd, n, &a));
    if (a.ins != SCP02_INS_INITIALIZE_UPDATE || a.p2 != 0x00) {
        OT_FAIL(OT_E_APDU);
    }
    if (a.nc != SCP02_HOST_CHAL_LEN) {
        OT_FAIL(OT_E_APDU_LEN);
    }
    if (*seq >= SCP02_SEQ_MAX) {
        OT_LOG_WARN("SCP02 sequence counter of key set %u exhausted", keys->kvn);
        OT_FAIL(OT_E_SEQ_EXHAUSTED);
    }
    if (resp == NULL || *resp_len < SCP02_IU_RESP_LEN) {
        *resp_len = SCP02_IU_RESP_LEN;
        OT_FAIL(OT_E_BUF_SMALL);
    }
    memcpy(s->host_chal, a.data, SCP02_HOST_CHAL_LEN);
    s->seq = *seq;
    c->keys = *keys;
    OT_TRY(scp02_sess_keys(s, keys));
    OT_TRY(scp02_card_challenge(c));
    OT_TRY(scp02_cryptogram(s, true, crypt));

    buf_wr_init(&w, resp, *resp_len);
    buf_wr_bytes(&w, c->kdd, SCP02_KDD_LEN);
    buf_wr_u8(&w, keys->kvn);
    buf_wr_u8(&w, SCP02_SCP_ID);
    buf_wr_u16be(&w, s->seq);
    buf_wr_bytes(&w, s->card_chal, SCP02_CARD_CHAL_LEN);
    buf_wr_bytes(&w, crypt, SCP02_BLK);
    OT_TRY(buf_wr_finish(&w, resp_len));
    s->st = SCP02_ST_IU_DONE;
out:
    if (err != OT_OK && s != NULL) {
        scp02_card_reset(c);
    }
    return err;
}

ot_err scp02_card_external_authenticate(struct scp02_card *c, const uint8_t *cmd, size_t n)
{
    ot_err err = OT_OK;
    struct scp02_sess *s = NULL;
    struct apdu a;
    uint8_t mac_cla = 0;
    uint8_t ch = 0;
    uint8_t mac[SCP02_BLK];
    uint8_t crypt[SCP02_BLK];

    if (c == NULL || cmd == NULL) {
        return OT_E_ARG;
    }
    s = &c->s;
    if (s->st != SCP02_ST_IU_DONE) {
        return OT_E_STATE;
    }
    OT_TRY(apdu_parse(cmd, n, &a));
    if (a.ins != SCP02_INS_EXTERNAL_AUTH || a.p2 != 0x00 || a.extended) {
        OT_FAIL(OT_E_APDU);
    }
    if (a.nc != SCP02_EA_LC) {
        OT_FAIL(OT_E_APDU_LEN);
    }
    if (!apdu_cla_has_sm(a.cla)) {
        OT_FAIL(OT_E_SEC_LEVEL); /* EXTERNAL AUTHENTICATE always carries a C-MAC */
    }
    OT_TRY(scp02_cla0(a.cla, &mac_cla, &ch));
    OT_TRY(scp02_cmac(s, NULL, mac_cla, &a, a.data, SCP02_BLK, mac));
    if (!ot_mem_equal_ct(mac, a.data + SCP02_BLK, SCP02_BLK)) {
        OT_FAIL(OT_E_CMAC);
    }
    /* first C-MAC of the session verified: the counter moves (GPCS E.4.1);
     * IU refused SCP02_SEQ_MAX, so this never wraps */
    c->seq_out = (uint16_t)(s->seq + 1u);
    OT_TRY(scp02_cryptogram(s, false, crypt));
    if (!ot_mem_equal_ct(crypt, a.data, SCP02_BLK)) {
        OT_FAIL(OT_E_HOST_CRYPTOGRAM);
    }
    if (!scp02_level_valid(a.p1, (c->i_param & SCP02_I_RMAC) != 0)) {
        OT_FAIL(OT_E_SEC_LEVEL);
    }
    memcpy(s->icv, mac, SCP02_BLK);
    memset(s->prev_icv, 0, SCP02_BLK);
    memcpy(s->rmac_icv, mac, SCP02_BLK);
    s->level = a.p1;
    s->st = SCP02_ST_OPEN;
    OT_LOG_INFO("secure channel open scp=02 i=%02x kvn=%u level=0x%02x seq=%u", c->i_param,
                c->keys.kvn, s->level, s->seq);
out:
    ot_mem_wipe(crypt, sizeof crypt);
    if (err != OT_OK) {
        scp02_card_reset(c);
    }
    return err;
}

/* Decrypts C-DEC data (3DES-CBC, IV 0, S-ENC) into out and strips the
 * mandatory 80 00.. padding, which lies within the last block. */
static ot_err scp02_card_decrypt(struct scp02_sess *s, const uint8_t *in, size_t n, uint8_t *out,
                                 size_t *out_n)
{
    ot_err err = OT_OK;
    const uint8_t *cv = NULL;
    size_t k = 0;

    if (n == 0 || n % SCP02_BLK != 0) {
        OT_FAIL(OT_E_PADDING);
    }
    for (size_t off = 0; off < n; off += SCP02_BLK) {
        OT_TRY(scp02_blk(s->cx[SCP02_CX_ENC_DEC], in + off, out + off));
        if (cv != NULL) {
            scp02_xor(out + off, cv, SCP02_BLK);
        }
        cv = in + off;
    }
    k = n;
    while (k > n - SCP02_BLK && out[k - 1] == 0x00) {
        k--;
    }
    if (k == n - SCP02_BLK || out[k - 1] != 0x80) {
        OT_FAIL(OT_E_PADDING);
    }
    *out_n = k - 1;
out:
    return err;
}

ot_err scp02_card_unwrap(struct scp02_card *c, const uint8_t *cmd, size_t n, uint8_t *out,
                         size_t *out_len)
{
    ot_err err = OT_OK;
    struct scp02_sess *s = NULL;
    struct apdu a;
    struct apdu p;
    uint8_t cla0 = 0;
    uint8_t ch = 0;
    uint8_t icv[SCP02_BLK];
    uint8_t mac[SCP02_BLK];
    uint8_t plain[SCP02_MAX_LC];
    size_t body = 0;
    size_t plain_n = 0;
    struct scp02_mac rm;

    if (c == NULL || cmd == NULL || out_len == NULL) {
        return OT_E_ARG;
    }
    s = &c->s;
    if (s->st != SCP02_ST_OPEN) {
        return OT_E_NO_CHANNEL;
    }
    OT_TRY(apdu_parse(cmd, n, &a));
    OT_TRY(scp02_cla0(a.cla, &cla0, &ch));
    if ((s->level & SCP02_LVL_CMAC) == 0) {
        if (apdu_cla_has_sm(a.cla)) {
            OT_FAIL(OT_E_SEC_LEVEL);
        }
        if ((s->level & SCP02_LVL_RMAC) && a.nc > SCP02_MAX_LC) {
            OT_FAIL(OT_E_APDU_LEN); /* the R-MAC covers a one-byte Lc */
        }
        OT_TRY(scp02_pass_plain(s, cla0, &a, cmd, n, out, out_len));
        goto out;
    }

    if (!apdu_cla_has_sm(a.cla)) {
        OT_FAIL(OT_E_SEC_LEVEL);
    }
    if (a.extended) {
        OT_FAIL(OT_E_APDU);
    }
    if (a.nc < SCP02_MAC_LEN) {
        OT_FAIL(OT_E_APDU_LEN);
    }
    body = a.nc - SCP02_MAC_LEN;
    if ((s->level & SCP02_LVL_CDEC) && body > 0) {
        OT_TRY(scp02_card_decrypt(s, a.data, body, plain, &plain_n));
    } else {
        if (body > 0) {
            memcpy(plain, a.data, body);
        }
        plain_n = body;
    }
    p = a;
    p.data = plain;
    p.nc = plain_n;
    OT_TRY(scp02_next_icv(s, (c->i_param & SCP02_I_ICV_ENC) != 0, icv));
    OT_TRY(scp02_cmac(s, icv, cla0, &a, plain, plain_n, mac));
    if (!ot_mem_equal_ct(mac, a.data + body, SCP02_BLK)) {
        /* the previous accepted command sent again verifies under the ICV
         * that command used */
        OT_TRY(scp02_cmac(s, s->prev_icv, cla0, &a, plain, plain_n, mac));
        if (ot_mem_equal_ct(mac, a.data + body, SCP02_BLK)) {
            OT_FAIL(OT_E_REPLAY);
        }
        OT_FAIL(OT_E_CMAC);
    }
    cla0 = (uint8_t)(cla0 & ~SCP02_CLA_SM_MASK);
    OT_TRY(apdu_cla_with_channel(cla0, ch, &p.cla));
    if (s->level & SCP02_LVL_RMAC) {
        OT_TRY(scp02_rmac_start(s, cla0, &p, &rm));
    }
    OT_TRY(apdu_encode(&p, out, out_len)); /* may overwrite cmd */
    memcpy(s->prev_icv, icv, SCP02_BLK);
    memcpy(s->icv, mac, SCP02_BLK); /* equal to the received C-MAC */
    if (s->level & SCP02_LVL_RMAC) {
        scp02_rmac_commit(s, &rm);
    }
out:
    /* every failure aborts the session, except an output buffer too small:
     * nothing was committed and the caller may retry */
    if (err != OT_OK && err != OT_E_BUF_SMALL) {
        OT_LOG_DEBUG("aborting the secure channel: %s", ot_strerror(err));
        scp02_card_reset(c);
    }
    ot_mem_wipe(plain, sizeof plain);
    ot_mem_wipe(&rm, sizeof rm);
    return err;
}

ot_err scp02_card_wrap(struct scp02_card *c, const uint8_t *data, size_t n, uint16_t sw,
                       uint8_t *out, size_t *out_len)
{
    ot_err err = OT_OK;
    struct scp02_sess *s = NULL;
    bool ok = sw_is_success_or_warning(sw);
    bool rmac = false;
    size_t dlen = ok ? n : 0;
    size_t need = 0;
    uint8_t mac[SCP02_BLK];

    if (c == NULL || out_len == NULL || (data == NULL && n > 0)) {
        return OT_E_ARG;
    }
    s = &c->s;
    rmac = s->st == SCP02_ST_OPEN && (s->level & SCP02_LVL_RMAC) != 0;
    need = dlen + 2 + (rmac ? SCP02_MAC_LEN : 0);
    if (rmac && !s->rm_pending) {
        return OT_E_STATE;
    }
    if (out == NULL || *out_len < need) {
        *out_len = need;
        return OT_E_BUF_SMALL;
    }
    if (rmac) {
        OT_TRY(scp02_rmac_finish(s, data, dlen, sw, mac));
        memcpy(s->rmac_icv, mac, SCP02_BLK);
        s->rm_pending = false;
    }
    scp02_copy_out(out, data, dlen);
    if (rmac) {
        memcpy(out + dlen, mac, SCP02_MAC_LEN);
    }
    ot_put_u16be(out + need - 2, sw);
    *out_len = need;
out:
    return err;
}

bool scp02_card_is_open(const struct scp02_card *c)
{
    return c != NULL && c->s.st == SCP02_ST_OPEN;
}

bool scp02_card_is_pending(const struct scp02_card *c)
{
    return c != NULL && c->s.st == SCP02_ST_IU_DONE;
}

uint8_t scp02_card_level(const struct scp02_card *c)
{
    return scp02_card_is_open(c) ? c->s.level : 0;
}

uint16_t scp02_card_seq(const struct scp02_card *c)
{
    return c != NULL ? c->seq_out : 0;
}

const struct scp02_keyset *scp02_card_keys(const struct scp02_card *c)
{
    if (c == NULL || c->s.st == SCP02_ST_NONE) {
        return NULL;
    }
    return &c->keys;
}

const uint8_t *scp02_card_session_dek(const struct scp02_card *c)
{
    return scp02_card_is_open(c) ? c->s.s_dek : NULL;
}
