/* GP card content management of the vse: INSTALL (all roles), LOAD and
 * DELETE (GPCS 9.3-9.5, 11.2, 11.5, 11.6).
 *
 * Every handler validates the whole command first and mutates the state only
 * at the end (se_priv.h rule), then calls se_mark_dirty(). Status words follow
 * GPCS 11.2.3.2 / 11.5.3.2 / 11.6.3.2 and the general conditions of 11.1.3:
 *   6700  empty command data
 *   6982  no secure channel; the performing SD lacks Authorized / Delegated
 *         Management; a target outside the performer's authority; a missing
 *         or wrong token (Delegated Management) or DAP
 *   6985  duplicate AID; a target that may not change now (ISD, locked,
 *         selected elsewhere, still referenced); a target SD of another
 *         hierarchy; a LOAD without INSTALL [for load]
 *   6A80  malformed LV / TLV data; values the card cannot accept (wrong
 *         privileges, Load File inconsistent with the INSTALL [for load],
 *         a module the card has no code for -- see gpcm_install_app)
 *   6A81  card CARD_LOCKED or TERMINATED (GPCS 9.3.5 "check that the card
 *         Life Cycle State is not CARD_LOCKED or TERMINATED"); ciphered Load
 *         File Data Blocks (not implemented)
 *   6A84  not enough memory (registry caps, SE_MAX_LOAD, SE_MEM_TOTAL)
 *   6A86  wrong P1/P2, LOAD block out of sequence
 *   6A88  referenced ELF / module / application / SD / key not found
 *
 * Authority model (GPCS 9.1.3, 9.4, 9.5): the ISD is the root of the
 * association tree and may manage everything; another SD with Authorized or
 * Delegated Management manages what is associated with itself or with SDs
 * below it (its hierarchy). Content is moved (extradition, load to another
 * SD) only to SDs of the performer's hierarchy. Global Delete allows DELETE of
 * anything. A new SD is associated with the SD that performed the INSTALL, a
 * new application with the SD of its ELF (GPCS 9.3.3). A non-ISD performer
 * may not grant card-wide privileges
 * (GPCM_ISD_ONLY_PRIVS). Card Reset and Final Application have one holder;
 * the ISD hands them over and gets them back when the holder is deleted.
 *
 * Native modules (applet.h) run their code; modules of any other Load File
 * give inert instances (applets/inert.c); the GP SD package A0000001515350
 * gives SDs. The combined INSTALL [for load, install and make selectable]
 * commits the ELF and the instance together at its final command.
 *
 * Tokens (GPCS C.4), symmetric variant only: the SD holding Token
 * Verification (the ISD by default) keeps an AES key with KVN 0x70 (any KID);
 * a token is the 16-byte AES-CMAC (GPCS B.2.2) over
 *     P1 (b8 cleared) || P2 || Lc' || data
 * where data is the command data up to (not including) the token's length
 * field (INSTALL) or the 9E object (DELETE), and Lc' its length on one byte,
 * or 00 hi lo above 255. Tokens are mandatory for an SD with Delegated
 * Management and refused (6A80) otherwise: the secure channel authenticates
 * the off-card entity as the SD provider. Asymmetric (RSA/ECC) and DES tokens
 * are not implemented. Receipts: see "receipts" below (AES-CMAC, KVN 0x71).
 *
 * DAP (GPCS C.3), symmetric variant only: an SD with DAP Verification or
 * Mandated DAP Verification keeps an AES key with KVN 0x73; the signature of
 * its DAP block is AES-CMAC(key, LFDB hash). A DAP block needs the LFDB hash
 * of the INSTALL [for load], which is itself always checked against the Load
 * File Data Block (SHA-1, -256, -384 or -512 by its length).
 */
#define OT_LOG_COMPONENT "se.gpcm"

#include "se/se_priv.h"

#include "core/log.h"
#include "core/tlv.h"
#include "crypto/cmac.h"
#include "gp/privs.h"

#include <openssl/evp.h>
#include <string.h>

/* Status words (GPCS 11.1.3, Tables 11-26, 11-55, 11-60). */
#define GPCM_SW_OK         0x9000u
#define GPCM_SW_WRONG_LEN  0x6700u
#define GPCM_SW_SECURITY   0x6982u
#define GPCM_SW_CONDITIONS 0x6985u
#define GPCM_SW_WRONG_DATA 0x6A80u
#define GPCM_SW_FUNC       0x6A81u
#define GPCM_SW_NO_SPACE   0x6A84u
#define GPCM_SW_P1P2       0x6A86u
#define GPCM_SW_NOT_FOUND  0x6A88u

/* INSTALL roles (GPCS Table 11-41). */
#define GPCM_FOR_LOAD         0x02u
#define GPCM_FOR_INSTALL      0x04u
#define GPCM_FOR_MAKE_SEL     0x08u
#define GPCM_FOR_INSTALL_SEL  0x0Cu
#define GPCM_FOR_COMBINED     0x0Eu
#define GPCM_FOR_EXTRADITION  0x10u
#define GPCM_FOR_PERSO        0x20u
#define GPCM_FOR_REG_UPDATE   0x40u
#define GPCM_P1_MORE          0x80u
#define GPCM_P2_COMBINED_LOAD 0x01u /* GPCS 11.5.2.2 */
#define GPCM_P2_COMBINED_END  0x03u

/* LOAD (GPCS 11.6.2.1). */
#define GPCM_LOAD_LAST 0x80u

/* DELETE P2 (GPCS Table 11-22). */
#define GPCM_DELETE_RELATED 0x80u

/* Tags. */
#define GPCM_TAG_AID         0x4Fu /* DELETE, DAP block */
#define GPCM_TAG_CRT         0xB6u /* token CRT (GPCS 11.5.2.3.7) */
#define GPCM_TAG_TOKEN       0x9Eu /* delete token (GPCS 11.2.2.3.1) */
#define GPCM_TAG_KID         0xD0u /* GPCS Table 11-24 */
#define GPCM_TAG_KVN         0xD2u
#define GPCM_TAG_APP_PARAMS  0xC9u /* GPCS Table 11-49 */
#define GPCM_TAG_SYS_PARAMS  0xEFu
#define GPCM_TAG_UICC_PARAMS 0xEAu /* TS 102 226 */
#define GPCM_TAG_NV_CODE     0xC6u
#define GPCM_TAG_VOLATILE    0xC7u
#define GPCM_TAG_NV_DATA     0xC8u
#define GPCM_TAG_RESTRICT    0xD9u /* GPCS Table 11-53 */
#define GPCM_TAG_DAP_BLOCK   0xE2u /* GPCS Table 11-58 */
#define GPCM_TAG_DAP_SIG     0xC3u
#define GPCM_TAG_LFDB        0xC4u
#define GPCM_TAG_ICV         0xD3u
#define GPCM_TAG_LFDB_CIPH   0xD4u
#define GPCM_TAG_SD_SCP      0x81u /* vse SD install parameter, see gpcm_sd_init */
#define GPCM_TAG_TOKEN_ID    0x93u /* token identifier inside B6 (GPCS Table 11-49) */

/* Key versions of the symmetric token, receipt and DAP keys (globalplatform.md 2.9). */
#define GPCM_KVN_TOKEN   0x70u
#define GPCM_KVN_RECEIPT 0x71u
#define GPCM_KVN_DAP     0x73u

#define GPCM_TOKEN_ID_MAX  32u
#define GPCM_RCPT_BODY_MAX 400u
#define GPCM_CONF_MAX      256u    /* a response carries at most 256 data bytes */
#define GPCM_CONF_CTR_MAX  0xFFFFu /* GPCS C.5: 16 bits, never reset */

#define GPCM_MAX_DAPS 8u

/* The GP Security Domain package and module (vse.md): always present. */
static const uint8_t gpcm_ssd_pkg[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50};
static const uint8_t gpcm_ssd_mod[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50, 0x41};

/* Privileges only the ISD may grant: card-wide powers (GPCS 6.6.1). */
#define GPCM_ISD_ONLY_PRIVS                                                                 \
    (GP_PRIV_BIT(GP_PRIV_CARD_LOCK) | GP_PRIV_BIT(GP_PRIV_CARD_TERMINATE)                   \
     | GP_PRIV_BIT(GP_PRIV_CVM_MANAGEMENT) | GP_PRIV_BIT(GP_PRIV_MANDATED_DAP)              \
     | GP_PRIV_BIT(GP_PRIV_AUTHORIZED_MANAGEMENT) | GP_PRIV_BIT(GP_PRIV_TOKEN_VERIFICATION) \
     | GP_PRIV_BIT(GP_PRIV_GLOBAL_DELETE) | GP_PRIV_BIT(GP_PRIV_GLOBAL_LOCK)                \
     | GP_PRIV_BIT(GP_PRIV_GLOBAL_REGISTRY) | GP_PRIV_BIT(GP_PRIV_FINAL_APPLICATION)        \
     | GP_PRIV_BIT(GP_PRIV_RECEIPT_GENERATION))

enum gpcm_mode {
    GPCM_MODE_NONE = 0,
    GPCM_MODE_AM = 1, /* Authorized Management (or the ISD) */
    GPCM_MODE_DM = 2, /* Delegated Management: tokens */
};

struct gpcm_lv {
    const uint8_t *p;
    size_t n;
};

/* An INSTALL data field: 3 or 4 one-byte-length fields, then the parameters
 * and the token with 1-3 byte lengths (GPCS Tables 11-42..11-47). */
struct gpcm_idata {
    struct gpcm_lv f[4];
    struct gpcm_lv params;
    struct gpcm_lv token;
    const uint8_t *signed_p; /* data covered by a token */
    size_t signed_len;
};

struct gpcm_params {
    bool has_c9;
    const uint8_t *c9;
    size_t c9_len;
    uint32_t nv_code;      /* C6 */
    uint32_t volatile_mem; /* C7 */
    uint32_t nv_data;      /* C8 */
    bool has_d9;
};

/* ---------------------------------------------------------------- helpers */

static bool gpcm_aid_eq(const struct se_aid *a, const uint8_t *p, size_t n)
{
    return a->len == n && n > 0 && memcmp(a->b, p, n) == 0;
}

static void gpcm_aid_set(struct se_aid *a, const uint8_t *p, size_t n)
{
    memset(a, 0, sizeof *a);
    if (n > SE_AID_MAX) {
        n = SE_AID_MAX;
    }
    if (n > 0) {
        memcpy(a->b, p, n);
    }
    a->len = (uint8_t)n;
}

static bool gpcm_aid_len_ok(size_t n, bool may_be_empty)
{
    return (n == 0 && may_be_empty) || (n >= 5 && n <= SE_AID_MAX);
}

static bool gpcm_is_ssd_pkg(const uint8_t *p, size_t n)
{
    return n == sizeof gpcm_ssd_pkg && memcmp(p, gpcm_ssd_pkg, n) == 0;
}

static bool gpcm_is_ssd_mod(const uint8_t *p, size_t n)
{
    return n == sizeof gpcm_ssd_mod && memcmp(p, gpcm_ssd_mod, n) == 0;
}

static bool gpcm_app_locked(const struct se_app *a)
{
    return (a->lcs & GP_LCS_LOCKED_BIT) != 0;
}

/* Index of the SD an app is associated with; -1 for the ISD (the root). A
 * dangling association counts as the ISD's. */
static int gpcm_parent(const struct se_state *st, int i)
{
    if (i <= 0 || i >= (int)st->napps) {
        return -1;
    }
    int p = se_find_app(st, st->apps[i].sd.b, st->apps[i].sd.len);
    if (p < 0 || p == i || !st->apps[p].is_sd) {
        return 0;
    }
    return p;
}

/* SD index of an association AID (ELF or app); dangling: the ISD. */
static int gpcm_sd_index(const struct se_state *st, const struct se_aid *sd)
{
    int p = se_find_app(st, sd->b, sd->len);
    if (p < 0 || !st->apps[p].is_sd) {
        return 0;
    }
    return p;
}

/* True when SD `sd` is `top` or lies below it in the association tree. The
 * ISD is above everything. */
static bool gpcm_under(const struct se_state *st, int sd, int top)
{
    if (top == 0) {
        return true;
    }
    for (unsigned steps = 0; sd >= 0 && steps <= SE_MAX_APPS; steps++) {
        if (sd == top) {
            return true;
        }
        sd = gpcm_parent(st, sd);
    }
    return false;
}

static enum gpcm_mode gpcm_mode_of(const struct se_state *st, int sd)
{
    if (se_has_priv(st, sd, GP_PRIV_DELEGATED_MANAGEMENT)) {
        return GPCM_MODE_DM;
    }
    if (sd == 0 || se_has_priv(st, sd, GP_PRIV_AUTHORIZED_MANAGEMENT)) {
        return GPCM_MODE_AM;
    }
    return GPCM_MODE_NONE;
}

/* Conditions every content-changing command shares (GPCS 9.3.5 "On receipt
 * of a load request the OPEN shall" and the matching lists of 9.3.6, 9.4,
 * 9.5): a secure channel with the SD, card not locked or terminated, the SD
 * itself usable. need_cm: Authorized/Delegated Management required. */
static uint16_t gpcm_check_performer(const struct se_cmd *x, bool need_cm, enum gpcm_mode *mode)
{
    const struct se_state *st = &x->card->st;
    *mode = GPCM_MODE_NONE;
    if (!x->authenticated) {
        return GPCM_SW_SECURITY;
    }
    if (x->sd < 0 || x->sd >= (int)st->napps || !st->apps[x->sd].is_sd) {
        return GPCM_SW_CONDITIONS;
    }
    if (st->card_lcs == GP_LCS_CARD_LOCKED || st->card_lcs == GP_LCS_CARD_TERMINATED) {
        return GPCM_SW_FUNC;
    }
    if (x->sd != 0 && gpcm_app_locked(&st->apps[x->sd])) {
        return GPCM_SW_CONDITIONS;
    }
    *mode = gpcm_mode_of(st, x->sd);
    if (!need_cm) {
        return GPCM_SW_OK;
    }
    if (*mode == GPCM_MODE_NONE) {
        return GPCM_SW_SECURITY;
    }
    /* "Apply its own security policy; e.g. check that its Life Cycle State is
     * PERSONALIZED (only applicable to a Security Domain other than the ISD)". */
    if (x->sd != 0 && st->apps[x->sd].lcs != GP_LCS_SD_PERSONALIZED) {
        return GPCM_SW_CONDITIONS;
    }
    return GPCM_SW_OK;
}

/* 1-3 byte length of INSTALL parameters and tokens: 00-80 (80 = 128 on one
 * byte, GPCS 11.5.2.3.1), 81 80-FF, 82 0100-FFFF. Other forms: OT_E_FORMAT. */
static ot_err gpcm_rd_len3(struct buf_rd *r, size_t *n)
{
    uint8_t b = 0;
    ot_err e = buf_rd_u8(r, &b);
    if (e != OT_OK) {
        return e;
    }
    if (b <= 0x80u) {
        *n = b;
        return OT_OK;
    }
    if (b == 0x81u) {
        uint8_t v = 0;
        e = buf_rd_u8(r, &v);
        if (e != OT_OK) {
            return e;
        }
        if (v < 0x80u) {
            return OT_E_FORMAT;
        }
        *n = v;
        return OT_OK;
    }
    if (b == 0x82u) {
        uint16_t v = 0;
        e = buf_rd_u16be(r, &v);
        if (e != OT_OK) {
            return e;
        }
        if (v < 0x100u) {
            return OT_E_FORMAT;
        }
        *n = v;
        return OT_OK;
    }
    return OT_E_FORMAT;
}

static uint16_t gpcm_parse_idata(const struct apdu *a, unsigned nlv, struct gpcm_idata *d)
{
    struct buf_rd r;
    memset(d, 0, sizeof *d);
    if (a->nc == 0 || a->data == NULL) {
        return GPCM_SW_WRONG_LEN;
    }
    buf_rd_init(&r, a->data, a->nc);
    for (unsigned i = 0; i < nlv; i++) {
        uint8_t l = 0;
        if (buf_rd_u8(&r, &l) != OT_OK || buf_rd_take(&r, l, &d->f[i].p) != OT_OK) {
            return GPCM_SW_WRONG_DATA;
        }
        d->f[i].n = l;
    }
    size_t n = 0;
    if (gpcm_rd_len3(&r, &n) != OT_OK || buf_rd_take(&r, n, &d->params.p) != OT_OK) {
        return GPCM_SW_WRONG_DATA;
    }
    d->params.n = n;
    d->signed_p = a->data;
    d->signed_len = a->nc - r.left;
    if (gpcm_rd_len3(&r, &n) != OT_OK || buf_rd_take(&r, n, &d->token.p) != OT_OK) {
        return GPCM_SW_WRONG_DATA;
    }
    d->token.n = n;
    if (r.left != 0) {
        return GPCM_SW_WRONG_DATA;
    }
    return GPCM_SW_OK;
}

/* Memory sizes of C6/C7/C8: 2 or 4 bytes (GPCS 11.5.2.3.7). */
static bool gpcm_mem_value(const struct tlv *t, uint32_t *out)
{
    if (t->len == 2) {
        *out = ot_get_u16be(t->val);
        return true;
    }
    if (t->len == 4) {
        *out = ot_get_u32be(t->val);
        return true;
    }
    return false;
}

/* Parameters field of an INSTALL (GPCS Tables 11-48..11-52). with_c9: the
 * install variants, where C9 is mandatory and EA allowed. Anything but C9,
 * EF, EA, B6 at the top level, a malformed TLV or a bad memory size: 6A80. */
static uint16_t gpcm_parse_params(const struct gpcm_lv *lv, bool with_c9, struct gpcm_params *out)
{
    struct buf_rd r;
    memset(out, 0, sizeof *out);
    buf_rd_init(&r, lv->p, lv->n);
    if (lv->n > 0 && tlv_walk_all(lv->p, lv->n) != OT_OK) {
        return GPCM_SW_WRONG_DATA;
    }
    while (r.left > 0) {
        struct tlv t;
        if (tlv_next(&r, &t) != OT_OK) {
            return GPCM_SW_WRONG_DATA;
        }
        if (t.tag == GPCM_TAG_APP_PARAMS && with_c9 && !out->has_c9) {
            out->has_c9 = true;
            out->c9 = t.val;
            out->c9_len = t.len;
        } else if (t.tag == GPCM_TAG_SYS_PARAMS) {
            struct buf_rd er;
            buf_rd_init(&er, t.val, t.len);
            while (er.left > 0) {
                struct tlv s;
                if (tlv_next(&er, &s) != OT_OK) {
                    return GPCM_SW_WRONG_DATA;
                }
                bool ok = true;
                if (s.tag == GPCM_TAG_NV_CODE) {
                    ok = gpcm_mem_value(&s, &out->nv_code);
                } else if (s.tag == GPCM_TAG_VOLATILE) {
                    ok = gpcm_mem_value(&s, &out->volatile_mem);
                } else if (s.tag == GPCM_TAG_NV_DATA) {
                    ok = gpcm_mem_value(&s, &out->nv_data);
                } else if (s.tag == GPCM_TAG_RESTRICT) {
                    ok = s.len == 1;
                    out->has_d9 = true;
                }
                /* CA, CB, CD, CF, D7, D8, DD: may be ignored (GPCS 11.5.2.3.7
                 * "their presence shall be anticipated but the content may be
                 * ignored"). */
                if (!ok) {
                    return GPCM_SW_WRONG_DATA;
                }
            }
        } else if ((t.tag == GPCM_TAG_UICC_PARAMS && with_c9) || t.tag == GPCM_TAG_CRT) {
            /* TS 102 226 template and token CRT: structure checked above. */
        } else {
            return GPCM_SW_WRONG_DATA;
        }
    }
    if (with_c9 && !out->has_c9) {
        return GPCM_SW_WRONG_DATA;
    }
    return GPCM_SW_OK;
}

static const struct se_key *gpcm_find_key(const struct se_app *sd, uint8_t kvn)
{
    if (!sd->is_sd) {
        return NULL;
    }
    for (unsigned i = 0; i < sd->sd_data.nkeys && i < SE_MAX_KEYS; i++) {
        if (sd->sd_data.keys[i].kvn == kvn) {
            return &sd->sd_data.keys[i];
        }
    }
    return NULL;
}

/* AES-CMAC (GPCS B.2.2) over hdr || msg with an AES key. */
static bool gpcm_cmac(const struct se_key *k, const uint8_t *hdr, size_t hdr_len,
                      const uint8_t *msg, size_t n, uint8_t tag[CMAC_BLOCK])
{
    struct cmac *m = NULL;
    bool ok = false;
    if (k == NULL || k->type != SE_KEY_AES) {
        return false;
    }
    if (cmac_new(k->val, k->len, &m) != OT_OK) {
        return false;
    }
    cmac_init(m);
    ok = cmac_update(m, hdr, hdr_len) == OT_OK && cmac_update(m, msg, n) == OT_OK
         && cmac_final(m, tag) == OT_OK;
    cmac_free(m);
    return ok;
}

/* AES-CMAC over hdr || msg with key, compared in constant time to sig. */
static bool gpcm_cmac_ok(const struct se_key *k, const uint8_t *hdr, size_t hdr_len,
                         const uint8_t *msg, size_t n, const uint8_t *sig, size_t sig_len)
{
    uint8_t tag[CMAC_BLOCK];
    bool ok = sig_len == CMAC_BLOCK && gpcm_cmac(k, hdr, hdr_len, msg, n, tag)
              && ot_mem_equal_ct(tag, sig, CMAC_BLOCK);
    ot_mem_wipe(tag, sizeof tag);
    return ok;
}

/* Token rules of GPCS 11.5.2.3 / 11.2.2.3.1 and verification (C.4, see the
 * file comment for the symmetric form). */
static uint16_t gpcm_token_check(const struct se_cmd *x, enum gpcm_mode mode,
                                 const uint8_t *signed_p, size_t signed_len, const uint8_t *tok,
                                 size_t tok_len)
{
    const struct se_state *st = &x->card->st;
    if (mode != GPCM_MODE_DM) {
        return tok_len == 0 ? GPCM_SW_OK : GPCM_SW_WRONG_DATA;
    }
    if (tok_len == 0) {
        return GPCM_SW_SECURITY;
    }
    int tv = se_priv_holder(st, GP_PRIV_TOKEN_VERIFICATION);
    if (tv < 0 || tv >= (int)st->napps) {
        return GPCM_SW_SECURITY;
    }
    uint8_t hdr[5];
    size_t hl = 0;
    hdr[hl++] = (uint8_t)(x->a->p1 & (uint8_t)~GPCM_P1_MORE);
    hdr[hl++] = x->a->p2;
    if (signed_len <= 0xFFu) {
        hdr[hl++] = (uint8_t)signed_len;
    } else {
        hdr[hl++] = 0x00;
        hdr[hl++] = (uint8_t)(signed_len >> 8);
        hdr[hl++] = (uint8_t)signed_len;
    }
    const struct se_key *k = gpcm_find_key(&st->apps[tv], GPCM_KVN_TOKEN);
    if (!gpcm_cmac_ok(k, hdr, hl, signed_p, signed_len, tok, tok_len)) {
        OT_LOG_DEBUG("token rejected");
        return GPCM_SW_SECURITY;
    }
    return GPCM_SW_OK;
}

/* Common start of the INSTALL variants: the performer's right to manage
 * content (need_cm), then the nlv LV fields, parameters and token of the
 * data field. */
static uint16_t gpcm_begin(const struct se_cmd *x, bool need_cm, unsigned nlv, enum gpcm_mode *mode,
                           struct gpcm_idata *d)
{
    uint16_t sw = gpcm_check_performer(x, need_cm, mode);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    return gpcm_parse_idata(x->a, nlv, d);
}

/* The token of an INSTALL data field (see gpcm_token_check). */
static uint16_t gpcm_token_of(const struct se_cmd *x, enum gpcm_mode mode,
                              const struct gpcm_idata *d)
{
    return gpcm_token_check(x, mode, d->signed_p, d->signed_len, d->token.p, d->token.n);
}

/* ---------------------------------------------------------------- receipts */

/* A Delegated Management operation is confirmed with a receipt (GPCS C.5,
 * 11.1.6) when an SD holds Receipt Generation: the answer is then
 *     L ‖ 10 ‖ receipt (16) ‖ confirmation data
 *     confirmation data = 02 ‖ counter (2) ‖ L ‖ IIN ‖ CIN of that SD
 *                         [‖ L ‖ token identifier, when the token's B6 had a 93]
 *     receipt = AES-CMAC(receipt key KVN 71 of that SD, confirmation data ‖ body)
 * with the body of Tables C-11..C-16 (gpcm_rcpt_aid calls of each handler).
 * The counter in a receipt is the SD's confirmation counter before the
 * operation; it then moves up by one (GET DATA C2 gives the next value) and
 * is written with the operation. An SD with Receipt Generation but no AES key
 * 71, or a counter at FFFF, makes the operation fail with 6985 (C.1.1.2);
 * without a Receipt Generation SD the answer stays 00. Operations of Authorized
 * Management SDs get no receipt. */
struct gpcm_rcpt {
    bool on;           /* a receipt is due */
    struct se_aid gen; /* the SD generating it */
    uint8_t tid[GPCM_TOKEN_ID_MAX];
    uint8_t tid_len;
    uint8_t body[GPCM_RCPT_BODY_MAX];
    size_t len;
    bool overflow;
    uint8_t out[GPCM_CONF_MAX]; /* gpcm_rcpt_seal: the response data */
    size_t out_len;
};

static int gpcm_rcpt_holder(const struct se_state *st)
{
    for (int i = 0; i < (int)st->napps; i++) {
        if (st->apps[i].is_sd && se_has_priv(st, i, GP_PRIV_RECEIPT_GENERATION)) {
            return i;
        }
    }
    return -1;
}

/* The token identifier (93) of the B6 template in a parameters field or a
 * DELETE data field (siblings in p[0..n)); none: length 0. */
static void gpcm_token_id(const uint8_t *p, size_t n, const uint8_t **id, size_t *len)
{
    struct tlv crt, t;
    *id = NULL;
    *len = 0;
    if (n == 0 || tlv_find(p, n, GPCM_TAG_CRT, &crt) != OT_OK) {
        return;
    }
    if (tlv_find(crt.val, crt.len, GPCM_TAG_TOKEN_ID, &t) == OT_OK) {
        *id = t.val;
        *len = t.len;
    }
}

/* Before any change: whether a receipt is due, and whether it can be made. */
static uint16_t gpcm_rcpt_begin(const struct se_cmd *x, enum gpcm_mode mode, const uint8_t *tid,
                                size_t tid_len, struct gpcm_rcpt *r)
{
    const struct se_state *st = &x->card->st;
    memset(r, 0, sizeof *r);
    if (mode != GPCM_MODE_DM) {
        return GPCM_SW_OK;
    }
    int g = gpcm_rcpt_holder(st);
    if (g < 0) {
        return GPCM_SW_OK;
    }
    const struct se_key *k = gpcm_find_key(&st->apps[g], GPCM_KVN_RECEIPT);
    if (k == NULL || k->type != SE_KEY_AES
        || st->apps[g].sd_data.confirm_ctr >= GPCM_CONF_CTR_MAX) {
        OT_LOG_DEBUG("receipt cannot be generated by sd %d", g);
        return GPCM_SW_CONDITIONS;
    }
    if (tid_len > GPCM_TOKEN_ID_MAX) {
        return GPCM_SW_WRONG_DATA;
    }
    r->on = true;
    r->gen = st->apps[g].aid;
    if (tid_len > 0) {
        memcpy(r->tid, tid, tid_len);
    }
    r->tid_len = (uint8_t)tid_len;
    return GPCM_SW_OK;
}

/* The same, with the token identifier of the B6 template among the TLVs
 * p[0..n) (INSTALL parameters, DELETE data). */
static uint16_t gpcm_rcpt_begin_in(const struct se_cmd *x, enum gpcm_mode mode, const uint8_t *p,
                                   size_t n, struct gpcm_rcpt *r)
{
    const uint8_t *tid = NULL;
    size_t tid_len = 0;
    gpcm_token_id(p, n, &tid, &tid_len);
    return gpcm_rcpt_begin(x, mode, tid, tid_len, r);
}

static void gpcm_rcpt_raw(struct gpcm_rcpt *r, const uint8_t *p, size_t n)
{
    if (!r->on) {
        return;
    }
    if (n > sizeof r->body - r->len) {
        r->overflow = true;
        return;
    }
    if (n > 0) {
        memcpy(r->body + r->len, p, n);
    }
    r->len += n;
}

/* Length-prefixed AID (or any field of at most 255 bytes). */
static void gpcm_rcpt_aid(struct gpcm_rcpt *r, const uint8_t *p, size_t n)
{
    uint8_t l = (uint8_t)n;
    gpcm_rcpt_raw(r, &l, 1);
    gpcm_rcpt_raw(r, p, n);
}

/* BER length (registry update parameters, GPCS 11.1.5). */
static void gpcm_rcpt_ber_len(struct gpcm_rcpt *r, size_t n)
{
    uint8_t b[3];
    size_t k = 0;
    if (n > 0xFFu) {
        b[k++] = 0x82;
        b[k++] = (uint8_t)(n >> 8);
    } else if (n > 0x7Fu) {
        b[k++] = 0x81;
    }
    b[k++] = (uint8_t)n;
    gpcm_rcpt_raw(r, b, k);
}

/* Before any change: computes the response (the body is complete). */
static uint16_t gpcm_rcpt_seal(const struct se_cmd *x, struct gpcm_rcpt *r)
{
    const struct se_state *st = &x->card->st;
    if (!r->on) {
        r->out[0] = 0x00;
        r->out_len = 1;
        return GPCM_SW_OK;
    }
    int g = se_find_app(st, r->gen.b, r->gen.len);
    if (g < 0 || r->overflow) {
        return GPCM_SW_CONDITIONS;
    }
    const struct se_sd *sd = &st->apps[g].sd_data;
    uint8_t conf[3 + 1 + 32 + 1 + GPCM_TOKEN_ID_MAX], tag[CMAC_BLOCK];
    size_t cn = 0;
    conf[cn++] = 0x02;
    ot_put_u16be(conf + cn, sd->confirm_ctr);
    cn += 2;
    conf[cn++] = (uint8_t)(sd->iin_len + sd->cin_len);
    memcpy(conf + cn, sd->iin, sd->iin_len);
    cn += sd->iin_len;
    memcpy(conf + cn, sd->cin, sd->cin_len);
    cn += sd->cin_len;
    if (r->tid_len > 0) {
        conf[cn++] = r->tid_len;
        memcpy(conf + cn, r->tid, r->tid_len);
        cn += r->tid_len;
    }
    if (!gpcm_cmac(gpcm_find_key(&st->apps[g], GPCM_KVN_RECEIPT), conf, cn, r->body, r->len, tag)) {
        return GPCM_SW_CONDITIONS;
    }
    size_t inner = 1 + CMAC_BLOCK + cn, k = 0;
    if (inner > 0x7Fu) {
        r->out[k++] = 0x81;
    }
    r->out[k++] = (uint8_t)inner;
    r->out[k++] = CMAC_BLOCK;
    memcpy(r->out + k, tag, CMAC_BLOCK);
    k += CMAC_BLOCK;
    memcpy(r->out + k, conf, cn);
    r->out_len = k + cn;
    ot_mem_wipe(tag, sizeof tag);
    return GPCM_SW_OK;
}

/* After the change: answers the sealed confirmation (or 00) and moves the
 * generating SD's counter. Cannot fail. */
static void gpcm_rcpt_reply(struct se_cmd *x, const struct gpcm_rcpt *r)
{
    struct se_state *st = &x->card->st;
    buf_wr_bytes(x->out, r->out, r->out_len);
    if (!r->on) {
        return;
    }
    int g = se_find_app(st, r->gen.b, r->gen.len);
    if (g >= 0) {
        st->apps[g].sd_data.confirm_ctr++;
        se_mark_dirty(x->card);
    }
}

/* Card Reset and Final Application: one holder per card (GPCS 6.6.2); the
 * ISD holds them by default and gives them up to the new holder. Another
 * holder: 6985. */
static uint16_t gpcm_single_privs_free(const struct se_state *st, uint32_t privs, int self)
{
    static const unsigned single[] = {GP_PRIV_CARD_RESET, GP_PRIV_FINAL_APPLICATION};
    for (size_t k = 0; k < sizeof single / sizeof single[0]; k++) {
        if ((privs & GP_PRIV_BIT(single[k])) == 0) {
            continue;
        }
        for (int i = 1; i < (int)st->napps; i++) {
            if (i != self && se_has_priv(st, i, single[k])) {
                return GPCM_SW_CONDITIONS;
            }
        }
    }
    return GPCM_SW_OK;
}

static void gpcm_single_privs_take(struct se_state *st, uint32_t privs, int self)
{
    static const unsigned single[] = {GP_PRIV_CARD_RESET, GP_PRIV_FINAL_APPLICATION};
    for (size_t k = 0; k < sizeof single / sizeof single[0]; k++) {
        uint32_t bit = GP_PRIV_BIT(single[k]);
        if ((privs & bit) != 0 && self != 0) {
            st->apps[0].privs &= ~bit;
        }
    }
}

/* Decodes and checks a privileges field for an app (is_sd: role). */
static uint16_t gpcm_privs(const struct gpcm_lv *lv, bool isd, uint32_t *out)
{
    enum gp_priv_role role = GP_PRIV_ROLE_APP;
    if (lv->n >= 1 && (lv->p[0] & 0x80u) != 0) {
        role = isd ? GP_PRIV_ROLE_ISD : GP_PRIV_ROLE_SSD;
    }
    if (lv->n != 1 && lv->n != 3) {
        return GPCM_SW_WRONG_DATA;
    }
    if (gp_privs_from_bytes(lv->p, lv->n, role, out) != OT_OK
        || gp_privs_validate(*out, NULL) != OT_OK) {
        return GPCM_SW_WRONG_DATA;
    }
    /* The vse cannot decrypt Load File Data Blocks (GPCS C.6): it does not
     * grant Ciphered LFDB (nor lists it in GET DATA 0067). */
    if ((*out & GP_PRIV_BIT(GP_PRIV_CIPHERED_LFDB)) != 0) {
        return GPCM_SW_WRONG_DATA;
    }
    return GPCM_SW_OK;
}

/* Privileges a non-ISD performer may not hand out (beyond what the target
 * already had). */
static uint16_t gpcm_grant_ok(const struct se_cmd *x, uint32_t new_privs, uint32_t old_privs)
{
    if (x->sd == 0) {
        return GPCM_SW_OK;
    }
    if ((new_privs & ~old_privs & GPCM_ISD_ONLY_PRIVS) != 0) {
        return GPCM_SW_SECURITY;
    }
    return GPCM_SW_OK;
}

static void gpcm_reply_00(struct se_cmd *x)
{
    buf_wr_u8(x->out, 0x00);
}

/* True when app i is selected on an open channel other than ch. */
static bool gpcm_selected_elsewhere(const struct se_card *c, int i, int ch)
{
    for (int k = 0; k < (int)SE_MAX_CHANNELS; k++) {
        if (k != ch && c->chans[k].open && c->chans[k].selected == i) {
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------- INSTALL [for load] */

static void gpcm_load_reset(struct se_card *c)
{
    ot_buf_free(&c->load.data);
    memset(&c->load, 0, sizeof c->load);
    c->load.chan = -1;
}

static uint16_t gpcm_install_for_load(struct se_cmd *x, bool combined)
{
    struct se_card *c = x->card;
    struct se_state *st = &c->st;
    enum gpcm_mode mode;
    struct gpcm_idata d;
    struct gpcm_params prm;
    uint16_t sw = gpcm_begin(x, true, 3, &mode, &d);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    const struct gpcm_lv *elf = &d.f[0], *sd = &d.f[1], *hash = &d.f[2];
    if (!gpcm_aid_len_ok(elf->n, false) || !gpcm_aid_len_ok(sd->n, true) || hash->n > 0x7Fu) {
        return GPCM_SW_WRONG_DATA;
    }
    /* Hash algorithms of GPCS C.2 / B.5: the card checks every hash it gets. */
    if (hash->n != 0 && hash->n != 20 && hash->n != 32 && hash->n != 48 && hash->n != 64) {
        return GPCM_SW_WRONG_DATA;
    }
    sw = gpcm_parse_params(&d.params, false, &prm);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    if (prm.has_d9) {
        return GPCM_SW_WRONG_DATA;
    }
    /* The combined first command carries no token (GPCS 11.5.2.3.1): the
     * final INSTALL's token covers the operation. */
    if (combined && d.token.n != 0) {
        return GPCM_SW_WRONG_DATA;
    }
    if (!combined) {
        sw = gpcm_token_of(x, mode, &d);
        if (sw != GPCM_SW_OK) {
            return sw;
        }
    }
    if (d.token.n != 0 && hash->n == 0) {
        return GPCM_SW_WRONG_DATA; /* hash mandatory with a token */
    }
    if (se_find_elf(st, elf->p, elf->n) >= 0 || se_find_app(st, elf->p, elf->n) >= 0
        || gpcm_is_ssd_pkg(elf->p, elf->n)) {
        return GPCM_SW_CONDITIONS;
    }
    int target = x->sd;
    if (sd->n > 0) {
        target = se_find_app(st, sd->p, sd->n);
        if (target < 0) {
            return GPCM_SW_NOT_FOUND;
        }
        if (!st->apps[target].is_sd) {
            return GPCM_SW_WRONG_DATA;
        }
    }
    /* Loading to another SD equals an extradition of the new ELF: the target
     * must accept it -- same hierarchy, not locked (GPCS 9.3.5). */
    if (!gpcm_under(st, target, x->sd)) {
        return GPCM_SW_CONDITIONS;
    }
    if (target != 0 && gpcm_app_locked(&st->apps[target])) {
        return GPCM_SW_CONDITIONS;
    }
    if (se_has_priv(st, target, GP_PRIV_CIPHERED_LFDB)) {
        return GPCM_SW_FUNC; /* ciphered LFDB (GPCS C.6) not implemented */
    }
    uint64_t need = (uint64_t)prm.nv_code + prm.nv_data;
    if (st->nelfs >= SE_MAX_ELFS || need > se_mem_free(st) || need > SE_MAX_LOAD) {
        return GPCM_SW_NO_SPACE;
    }
    /* GPCS 9.3.1: loading may be refused while another channel loads. */
    if ((c->load.active || c->load.combined_ready) && c->load.chan != x->chan) {
        return GPCM_SW_CONDITIONS;
    }

    gpcm_load_reset(c);
    c->load.active = true;
    c->load.chan = x->chan;
    c->load.combined = combined;
    gpcm_aid_set(&c->load.elf, elf->p, elf->n);
    c->load.sd = st->apps[target].aid;
    c->load.performer = st->apps[x->sd].aid;
    c->load.hash_len = (uint8_t)hash->n;
    if (hash->n > 0) {
        memcpy(c->load.hash, hash->p, hash->n);
    }
    const uint8_t *tid = NULL;
    size_t tid_len = 0;
    gpcm_token_id(d.params.p, d.params.n, &tid, &tid_len);
    if (tid_len > 0 && tid_len <= sizeof c->load.token_id) {
        memcpy(c->load.token_id, tid, tid_len);
        c->load.token_id_len = (uint8_t)tid_len;
    }
    ot_buf_init(&c->load.data, SE_MAX_LOAD);
    gpcm_reply_00(x);
    return GPCM_SW_OK;
}

/* ---------------------------------------------------------------- LOAD */

struct gpcm_cap {
    uint8_t version[2]; /* major, minor */
    struct se_aid pkg;
    uint8_t nmodules;
    struct se_aid modules[SE_MAX_MODULES];
};

/* Parses the Load File Data Block as the CAP components of one package
 * (JCVM 6.2: u1 tag, u2 size, info; Header first; GPCS C.2 load order). Only
 * the Header (6.4: magic DECAFFED, minor, major, flags, package minor/major,
 * AID) and the Applet component (6.5: count, {AID, install method offset})
 * are interpreted; the other components are skipped by size. */
static uint16_t gpcm_parse_lfdb(const uint8_t *p, size_t n, struct gpcm_cap *cap)
{
    struct buf_rd r;
    bool seen[13] = {false};
    memset(cap, 0, sizeof *cap);
    buf_rd_init(&r, p, n);
    while (r.left > 0) {
        uint8_t tag = 0;
        uint16_t size = 0;
        const uint8_t *info = NULL;
        if (buf_rd_u8(&r, &tag) != OT_OK || buf_rd_u16be(&r, &size) != OT_OK
            || buf_rd_take(&r, size, &info) != OT_OK) {
            return GPCM_SW_WRONG_DATA;
        }
        if (tag < 1 || tag > 12 || seen[tag] || (tag != 1 && !seen[1])) {
            return GPCM_SW_WRONG_DATA;
        }
        seen[tag] = true;
        struct buf_rd c;
        buf_rd_init(&c, info, size);
        if (tag == 1) {
            uint32_t magic = 0;
            uint8_t minor = 0, major = 0, flags = 0, pminor = 0, pmajor = 0, alen = 0;
            const uint8_t *aid = NULL;
            if (buf_rd_u32be(&c, &magic) != OT_OK || buf_rd_u8(&c, &minor) != OT_OK
                || buf_rd_u8(&c, &major) != OT_OK || buf_rd_u8(&c, &flags) != OT_OK
                || buf_rd_u8(&c, &pminor) != OT_OK || buf_rd_u8(&c, &pmajor) != OT_OK
                || buf_rd_u8(&c, &alen) != OT_OK || buf_rd_take(&c, alen, &aid) != OT_OK) {
                return GPCM_SW_WRONG_DATA;
            }
            /* Flag 0x08: JC 3.1 extended format with u4 sizes (not read here). */
            if (magic != 0xDECAFFEDu || (flags & 0x08u) != 0 || !gpcm_aid_len_ok(alen, false)) {
                return GPCM_SW_WRONG_DATA;
            }
            cap->version[0] = pmajor;
            cap->version[1] = pminor;
            gpcm_aid_set(&cap->pkg, aid, alen);
            /* JC 2.2+ may append the package name: ignored. */
        } else if (tag == 3) {
            uint8_t count = 0;
            if (buf_rd_u8(&c, &count) != OT_OK) {
                return GPCM_SW_WRONG_DATA;
            }
            if (count > SE_MAX_MODULES) {
                return GPCM_SW_NO_SPACE;
            }
            for (unsigned i = 0; i < count; i++) {
                uint8_t alen = 0;
                uint16_t off = 0;
                const uint8_t *aid = NULL;
                if (buf_rd_u8(&c, &alen) != OT_OK || !gpcm_aid_len_ok(alen, false)
                    || buf_rd_take(&c, alen, &aid) != OT_OK || buf_rd_u16be(&c, &off) != OT_OK) {
                    return GPCM_SW_WRONG_DATA;
                }
                gpcm_aid_set(&cap->modules[i], aid, alen);
            }
            if (c.left != 0) {
                return GPCM_SW_WRONG_DATA;
            }
            cap->nmodules = count;
        }
    }
    if (!seen[1]) {
        return GPCM_SW_WRONG_DATA;
    }
    return GPCM_SW_OK;
}

static bool gpcm_digest(const uint8_t *p, size_t n, size_t md_len, uint8_t *out)
{
    const EVP_MD *md = NULL;
    unsigned int got = 0;
    if (md_len == 20) {
        md = EVP_sha1();
    } else if (md_len == 32) {
        md = EVP_sha256();
    } else if (md_len == 48) {
        md = EVP_sha384();
    } else if (md_len == 64) {
        md = EVP_sha512();
    } else {
        return false;
    }
    if (EVP_Digest(p, n, out, &got, md, NULL) != 1 || got != md_len) {
        return false;
    }
    return true;
}

struct gpcm_dap {
    const uint8_t *aid;
    size_t aid_len;
    const uint8_t *sig;
    size_t sig_len;
};

/* What a verified Load File registers. */
struct gpcm_loaded {
    struct gpcm_cap cap;
    size_t lfdb_len;
};

/* Checks the Load File received (GPCS 9.3.5 "Load Phase" and "Load
 * Completion") without changing anything. */
static uint16_t gpcm_load_verify(struct se_card *c, struct gpcm_loaded *out)
{
    struct se_state *st = &c->st;
    struct gpcm_dap daps[GPCM_MAX_DAPS];
    size_t ndap = 0;
    const uint8_t *lfdb = NULL;
    size_t lfdb_len = 0;
    struct buf_rd r;

    buf_rd_init(&r, c->load.data.data, c->load.data.len);
    while (r.left > 0) {
        struct tlv t;
        if (lfdb != NULL || tlv_next(&r, &t) != OT_OK) {
            return GPCM_SW_WRONG_DATA; /* nothing may follow C4; BER lengths exact */
        }
        if (t.tag == GPCM_TAG_DAP_BLOCK) {
            struct tlv aid, sig;
            if (ndap >= GPCM_MAX_DAPS || tlv_find(t.val, t.len, GPCM_TAG_AID, &aid) != OT_OK
                || tlv_find(t.val, t.len, GPCM_TAG_DAP_SIG, &sig) != OT_OK
                || tlv_walk_all(t.val, t.len) != OT_OK || !gpcm_aid_len_ok(aid.len, false)
                || sig.len == 0) {
                return GPCM_SW_WRONG_DATA;
            }
            daps[ndap].aid = aid.val;
            daps[ndap].aid_len = aid.len;
            daps[ndap].sig = sig.val;
            daps[ndap].sig_len = sig.len;
            ndap++;
        } else if (t.tag == GPCM_TAG_LFDB) {
            if (t.len == 0) {
                return GPCM_SW_WRONG_DATA;
            }
            lfdb = t.val;
            lfdb_len = t.len;
        } else if (t.tag == GPCM_TAG_ICV || t.tag == GPCM_TAG_LFDB_CIPH) {
            return GPCM_SW_FUNC;
        } else {
            return GPCM_SW_WRONG_DATA;
        }
    }
    if (lfdb == NULL) {
        return GPCM_SW_WRONG_DATA;
    }

    int target = se_find_app(st, c->load.sd.b, c->load.sd.len);
    if (target < 0 || !st->apps[target].is_sd) {
        return GPCM_SW_NOT_FOUND; /* deleted meanwhile */
    }
    if (c->load.hash_len > 0) {
        uint8_t md[64];
        if (!gpcm_digest(lfdb, lfdb_len, c->load.hash_len, md)
            || !ot_mem_equal_ct(md, c->load.hash, c->load.hash_len)) {
            return GPCM_SW_WRONG_DATA;
        }
    }
    if (ndap > 0 && c->load.hash_len == 0) {
        return GPCM_SW_WRONG_DATA; /* GPCS 9.3.5: DAP blocks need the hash */
    }
    /* Every DAP block must name an SD that verifies DAPs, and its signature
     * must verify. */
    bool verified[SE_MAX_APPS] = {false};
    for (size_t i = 0; i < ndap; i++) {
        int s = se_find_app(st, daps[i].aid, daps[i].aid_len);
        if (s < 0) {
            return GPCM_SW_NOT_FOUND;
        }
        if (!st->apps[s].is_sd
            || (!se_has_priv(st, s, GP_PRIV_DAP_VERIFICATION)
                && !se_has_priv(st, s, GP_PRIV_MANDATED_DAP))) {
            return GPCM_SW_WRONG_DATA;
        }
        const struct se_key *k = gpcm_find_key(&st->apps[s], GPCM_KVN_DAP);
        if (!gpcm_cmac_ok(k, NULL, 0, c->load.hash, c->load.hash_len, daps[i].sig,
                          daps[i].sig_len)) {
            OT_LOG_DEBUG("dap of sd %d rejected", s);
            return GPCM_SW_SECURITY;
        }
        verified[s] = true;
    }
    /* DAPs that must be there: the associated SD with DAP Verification, and
     * every PERSONALIZED SD with Mandated DAP Verification. */
    if (se_has_priv(st, target, GP_PRIV_DAP_VERIFICATION) && !verified[target]) {
        return GPCM_SW_SECURITY;
    }
    for (int i = 0; i < (int)st->napps; i++) {
        if (st->apps[i].is_sd && se_has_priv(st, i, GP_PRIV_MANDATED_DAP)
            && (i == 0 || st->apps[i].lcs == GP_LCS_SD_PERSONALIZED) && !verified[i]) {
            return GPCM_SW_SECURITY;
        }
    }

    struct gpcm_cap *cap = &out->cap;
    uint16_t sw = gpcm_parse_lfdb(lfdb, lfdb_len, cap);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    /* GPCS 11.5.2.3.1: the Load File AID must match the Load File. */
    if (!gpcm_aid_eq(&cap->pkg, c->load.elf.b, c->load.elf.len)) {
        return GPCM_SW_WRONG_DATA;
    }
    if (se_find_elf(st, c->load.elf.b, c->load.elf.len) >= 0
        || se_find_app(st, c->load.elf.b, c->load.elf.len) >= 0) {
        return GPCM_SW_CONDITIONS;
    }
    if (st->nelfs >= SE_MAX_ELFS || lfdb_len > se_mem_free(st)
        || se_state_reserve(st, 0, st->nelfs + 1u) != OT_OK) {
        return GPCM_SW_NO_SPACE;
    }

    out->lfdb_len = lfdb_len;
    return GPCM_SW_OK;
}

/* Registers the Executable Load File of a verified Load File (GPCS 9.3.5:
 * the ELF and its modules, associated with the target SD). */
static void gpcm_load_register(struct se_card *c, const struct gpcm_loaded *l)
{
    struct se_state *st = &c->st;
    struct se_elf *e = &st->elfs[st->nelfs];
    memset(e, 0, sizeof *e);
    e->aid = c->load.elf;
    e->sd = c->load.sd;
    e->version[0] = l->cap.version[0];
    e->version[1] = l->cap.version[1];
    e->lcs = GP_LCS_ELF_LOADED;
    e->nmodules = l->cap.nmodules;
    for (unsigned i = 0; i < l->cap.nmodules && i < SE_MAX_MODULES; i++) {
        e->modules[i] = l->cap.modules[i];
    }
    e->size = (uint32_t)l->lfdb_len;
    e->native = se_applet_find(e->aid.b, e->aid.len) != NULL;
    st->nelfs++;
    se_mark_dirty(c);
    OT_LOG_DEBUG("loaded elf of %zu bytes, %u modules, native %d", l->lfdb_len,
                 (unsigned)l->cap.nmodules, (int)e->native);
}

uint16_t se_gp_load(struct se_cmd *x)
{
    struct se_card *c = x->card;
    enum gpcm_mode mode;
    uint16_t sw = gpcm_check_performer(x, true, &mode);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    if (!c->load.active || c->load.chan != x->chan
        || !gpcm_aid_eq(&c->load.performer, c->st.apps[x->sd].aid.b, c->st.apps[x->sd].aid.len)) {
        return GPCM_SW_CONDITIONS;
    }
    if ((x->a->p1 & (uint8_t)~GPCM_LOAD_LAST) != 0) {
        return GPCM_SW_P1P2;
    }
    if (x->a->nc == 0 || x->a->data == NULL) {
        return GPCM_SW_WRONG_LEN;
    }
    /* GPCS 11.6.1: strictly sequential block numbers; a gap ends the load.
     * The number wraps after FF (as pySim sends long files). */
    if (x->a->p2 != c->load.next_block) {
        gpcm_load_reset(c);
        return GPCM_SW_P1P2;
    }
    if (ot_buf_append(&c->load.data, x->a->data, x->a->nc) != OT_OK) {
        gpcm_load_reset(c);
        return GPCM_SW_NO_SPACE;
    }
    c->load.next_block++;
    if ((x->a->p1 & GPCM_LOAD_LAST) == 0) {
        gpcm_reply_00(x);
        return GPCM_SW_OK;
    }
    /* Last block. A combined process commits at its final INSTALL (so a
     * Delegated Management SD cannot load without the final command's
     * token): keep the verified Load File until then. */
    struct gpcm_loaded l;
    sw = gpcm_load_verify(c, &l);
    if (sw != GPCM_SW_OK) {
        gpcm_load_reset(c);
        return sw;
    }
    if (c->load.combined) {
        c->load.active = false;
        c->load.combined_ready = true;
        gpcm_reply_00(x);
        return GPCM_SW_OK;
    }
    /* Load Receipt (Table C-11): ELF AID, associated SD AID. */
    struct gpcm_rcpt r;
    sw = gpcm_rcpt_begin(x, mode, c->load.token_id, c->load.token_id_len, &r);
    if (sw == GPCM_SW_OK) {
        gpcm_rcpt_aid(&r, c->load.elf.b, c->load.elf.len);
        gpcm_rcpt_aid(&r, c->load.sd.b, c->load.sd.len);
        sw = gpcm_rcpt_seal(x, &r);
    }
    if (sw != GPCM_SW_OK) {
        gpcm_load_reset(c);
        return sw;
    }
    gpcm_load_register(c, &l);
    gpcm_load_reset(c);
    gpcm_rcpt_reply(x, &r);
    return GPCM_SW_OK;
}

/* ---------------------------------------------------------------- INSTALL [for install] */

/* Security-domain part of a new SD instance. Install parameters (C9 value,
 * BER-TLV per GPCS 11.5.2.3.7) understood by the vse:
 *     81 02 <scp> <i>     secure channel protocol (02 or 03) and its i
 * Without 81 the new SD uses the protocol of the SD that creates it. The new
 * SD starts with a copy of the creator's key sets (counters at 0), as
 * development cards do: its provider opens a secure channel with them and
 * replaces them with PUT KEY. */
static uint16_t gpcm_sd_params(const uint8_t *c9, size_t n, uint8_t *scp, uint8_t *scp_i)
{
    struct tlv t;
    if (n == 0) {
        return GPCM_SW_OK;
    }
    if (tlv_walk_all(c9, n) != OT_OK) {
        return GPCM_SW_WRONG_DATA;
    }
    ot_err e = tlv_find(c9, n, GPCM_TAG_SD_SCP, &t);
    if (e == OT_E_NOT_FOUND) {
        return GPCM_SW_OK;
    }
    if (e != OT_OK || t.len != 2 || (t.val[0] != 0x02u && t.val[0] != 0x03u)) {
        return GPCM_SW_WRONG_DATA;
    }
    *scp = t.val[0];
    *scp_i = t.val[1];
    return GPCM_SW_OK;
}

static void gpcm_sd_init(struct se_app *sd, const struct se_app *creator, uint8_t scp,
                         uint8_t scp_i)
{
    memset(&sd->sd_data, 0, sizeof sd->sd_data);
    sd->sd_data.scp = scp;
    sd->sd_data.scp_i = scp_i;
    sd->sd_data.nkeys = creator->sd_data.nkeys;
    memcpy(sd->sd_data.keys, creator->sd_data.keys, sizeof sd->sd_data.keys);
    for (unsigned i = 0; i < creator->sd_data.nkeys && i < SE_MAX_KEYS; i++) {
        uint8_t kvn = creator->sd_data.keys[i].kvn;
        bool have = false;
        for (unsigned j = 0; j < sd->sd_data.nseqs; j++) {
            have = have || sd->sd_data.seqs[j].kvn == kvn;
        }
        if (!have && sd->sd_data.nseqs < SE_MAX_SEQS) {
            sd->sd_data.seqs[sd->sd_data.nseqs].kvn = kvn;
            sd->sd_data.seqs[sd->sd_data.nseqs].value = 0;
            sd->sd_data.nseqs++;
        }
    }
}

/* INSTALL [for install] (04), [for install and make selectable] (0C) and the
 * final combined command (0E, P2 03). */
static uint16_t gpcm_install_app(struct se_cmd *x, bool selectable, bool combined)
{
    struct se_card *c = x->card;
    struct se_state *st = &c->st;
    enum gpcm_mode mode;
    struct gpcm_idata d;
    struct gpcm_params prm;
    uint16_t sw = gpcm_begin(x, true, 4, &mode, &d);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    struct gpcm_lv elf = d.f[0], mod = d.f[1];
    const struct gpcm_lv *app = &d.f[2], *privs_lv = &d.f[3];
    if (combined) {
        /* GPCS 11.5.2.3.2: the ELF AID is optional and must match. */
        if (elf.n != 0 && !gpcm_aid_eq(&c->load.elf, elf.p, elf.n)) {
            return GPCM_SW_WRONG_DATA;
        }
        elf.p = c->load.elf.b;
        elf.n = c->load.elf.len;
    }
    if (!gpcm_aid_len_ok(elf.n, false) || !gpcm_aid_len_ok(mod.n, true)
        || !gpcm_aid_len_ok(app->n, false)) {
        return GPCM_SW_WRONG_DATA;
    }
    if (d.params.n < 2) {
        return GPCM_SW_WRONG_DATA; /* Table 11-43: 2-n, C9 mandatory */
    }
    sw = gpcm_parse_params(&d.params, true, &prm);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    if (prm.has_d9) {
        return GPCM_SW_WRONG_DATA;
    }
    uint32_t privs = 0;
    sw = gpcm_privs(privs_lv, false, &privs);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    sw = gpcm_token_of(x, mode, &d);
    if (sw != GPCM_SW_OK) {
        return sw;
    }

    /* The ELF and module (GPCS 9.3.6: "Check that the Executable Module AID
     * is present in the GlobalPlatform Registry"). The SSD package is always
     * there, registered or not. */
    int ei = se_find_elf(st, elf.p, elf.n);
    bool ssd = gpcm_is_ssd_pkg(elf.p, elf.n);
    if (ei < 0 && !ssd) {
        return GPCM_SW_NOT_FOUND;
    }
    if (mod.n == 0) {
        if (ssd) {
            mod.p = gpcm_ssd_mod;
            mod.n = sizeof gpcm_ssd_mod;
        } else if (st->elfs[ei].nmodules == 1) {
            mod.p = st->elfs[ei].modules[0].b;
            mod.n = st->elfs[ei].modules[0].len;
        } else {
            return GPCM_SW_WRONG_DATA;
        }
    }
    if (ssd) {
        if (!gpcm_is_ssd_mod(mod.p, mod.n)) {
            return GPCM_SW_NOT_FOUND;
        }
    } else {
        bool found = false;
        for (unsigned i = 0; i < st->elfs[ei].nmodules && i < SE_MAX_MODULES; i++) {
            found = found || gpcm_aid_eq(&st->elfs[ei].modules[i], mod.p, mod.n);
        }
        if (!found) {
            return GPCM_SW_NOT_FOUND;
        }
    }
    bool is_sd = (privs & GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN)) != 0;
    if (is_sd != ssd) {
        return GPCM_SW_WRONG_DATA; /* an SD comes from the SD package only */
    }
    /* GPCS 11.5.2.3.2: Card Reset needs make selectable in the same command. */
    if (!selectable && (privs & GP_PRIV_BIT(GP_PRIV_CARD_RESET)) != 0) {
        return GPCM_SW_WRONG_DATA;
    }
    sw = gpcm_grant_ok(x, privs, 0);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    if (se_find_app(st, app->p, app->n) >= 0 || se_find_elf(st, app->p, app->n) >= 0
        || gpcm_is_ssd_pkg(app->p, app->n)) {
        return GPCM_SW_CONDITIONS;
    }
    sw = gpcm_single_privs_free(st, privs, -1);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    /* A native package runs its native module (a module of its Load File
     * that the native code does not implement: 6A80, "incorrect parameters
     * in data field" of GPCS Table 11-55). A Load File the card has no code
     * for gives inert instances (applets/inert.c): SELECT answers an FCI,
     * anything else 6D00, so any package goes through load - install -
     * delete. */
    const struct se_applet_ops *ops = NULL;
    int assoc = x->sd; /* GPCS 9.3.3: a new SD goes with the performer */
    if (!ssd) {
        if (st->elfs[ei].native) {
            ops = se_applet_find(elf.p, elf.n);
            if (ops == NULL || ops->install == NULL || ops->module_aid_len != mod.n
                || memcmp(ops->module_aid, mod.p, mod.n) != 0) {
                return GPCM_SW_WRONG_DATA;
            }
        }
        /* The ELF's SD accepts installations by SDs of its own line. */
        int esd = gpcm_sd_index(st, &st->elfs[ei].sd);
        if (!gpcm_under(st, esd, x->sd) && !gpcm_under(st, x->sd, esd)) {
            return GPCM_SW_CONDITIONS;
        }
        /* GPCS 9.3.3: an application goes with its ELF's SD. */
        assoc = esd;
    }
    uint8_t scp = st->apps[x->sd].sd_data.scp, scp_i = st->apps[x->sd].sd_data.scp_i;
    if (ssd) {
        sw = gpcm_sd_params(prm.c9, prm.c9_len, &scp, &scp_i);
        if (sw != GPCM_SW_OK) {
            return sw;
        }
    }
    if (prm.c9_len > SE_MAX_PARAMS || st->napps >= SE_MAX_APPS || prm.nv_data > se_mem_free(st)
        || se_card_reserve_apps(c, st->napps + 1u) != OT_OK) {
        return GPCM_SW_NO_SPACE;
    }
    /* Install Receipt (Table C-12), combined: Table C-16 (+ the ELF's SD). */
    struct gpcm_rcpt r;
    sw = gpcm_rcpt_begin_in(x, mode, d.params.p, d.params.n, &r);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    gpcm_rcpt_aid(&r, elf.p, elf.n);
    gpcm_rcpt_aid(&r, app->p, app->n);
    if (combined) {
        gpcm_rcpt_aid(&r, c->load.sd.b, c->load.sd.len);
    }
    sw = gpcm_rcpt_seal(x, &r);
    if (sw != GPCM_SW_OK) {
        return sw;
    }

    /* All checks done: create the instance, associated with `assoc` (GPCS
     * 9.3.3: an SD with the SD that performed the INSTALL, an application
     * with the SD of its ELF -- under Delegated Management an SP SD
     * installing from the central SD's package creates an instance of the
     * central SD, which extradites it; docs/vse.md section 6.1). */
    uint32_t mem_free = se_mem_free(st);
    bool was_dirty = c->dirty;
    int ni = st->napps;
    struct se_app *a = &st->apps[ni];
    memset(a, 0, sizeof *a);
    gpcm_aid_set(&a->aid, app->p, app->n);
    gpcm_aid_set(&a->elf, elf.p, elf.n);
    gpcm_aid_set(&a->module, mod.p, mod.n);
    a->sd = st->apps[assoc].aid;
    a->privs = privs;
    a->lcs = selectable ? GP_LCS_APP_SELECTABLE : GP_LCS_APP_INSTALLED;
    a->is_sd = is_sd;
    a->params_len = (uint8_t)prm.c9_len;
    if (prm.c9_len > 0) {
        memcpy(a->params, prm.c9, prm.c9_len);
    }
    if (is_sd) {
        gpcm_sd_init(a, &st->apps[x->sd], scp, scp_i);
    }
    st->napps++;
    memset(c->vol[ni], 0, sizeof c->vol[ni]);
    if (ops != NULL) {
        struct se_applet_ctx ctx;
        se_applet_ctx_init(c, ni, x->chan, &ctx);
        uint16_t fail = 0;
        if (ops->install(&ctx, prm.c9, prm.c9_len) != OT_OK) {
            fail = GPCM_SW_WRONG_DATA; /* the applet refused its parameters */
        } else if ((uint64_t)a->data_len + a->params_len > mem_free) {
            fail = GPCM_SW_NO_SPACE; /* its data does not fit (GPCS 9.7) */
        }
        if (fail != 0) {
            /* Undo the new last entry: the state is as before the command. */
            st->napps--;
            se_app_wipe(a);
            c->dirty = was_dirty;
            return fail;
        }
    } else if (a->params_len > mem_free) {
        st->napps--;
        se_app_wipe(a);
        return GPCM_SW_NO_SPACE;
    }
    gpcm_single_privs_take(st, privs, ni);
    se_mark_dirty(c);
    gpcm_rcpt_reply(x, &r);
    return GPCM_SW_OK;
}

/* Final command of INSTALL [for load, install and make selectable] (P2 03):
 * the Load File kept since the last LOAD is verified again and registered,
 * then the application is installed; if the installation fails the ELF goes
 * too, so the whole combined process is one change (GPCS 9.3.8). */
static uint16_t gpcm_install_combined_end(struct se_cmd *x)
{
    struct se_card *c = x->card;
    struct se_state *st = &c->st;
    enum gpcm_mode mode;
    uint16_t sw = gpcm_check_performer(x, true, &mode);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    if (!c->load.combined_ready || c->load.chan != x->chan
        || !gpcm_aid_eq(&c->load.performer, st->apps[x->sd].aid.b, st->apps[x->sd].aid.len)) {
        return GPCM_SW_CONDITIONS;
    }
    struct gpcm_loaded l;
    sw = gpcm_load_verify(c, &l);
    if (sw != GPCM_SW_OK) {
        gpcm_load_reset(c);
        return sw;
    }
    bool was_dirty = c->dirty;
    int ei = st->nelfs;
    gpcm_load_register(c, &l);
    sw = gpcm_install_app(x, true, true);
    if (sw != GPCM_SW_OK) {
        st->nelfs--;
        ot_mem_wipe(&st->elfs[ei], sizeof st->elfs[ei]);
        c->dirty = was_dirty;
        return sw;
    }
    gpcm_load_reset(c);
    return GPCM_SW_OK;
}

/* ---------------------------------------------------------------- make selectable */

static uint16_t gpcm_make_selectable(struct se_cmd *x)
{
    struct se_state *st = &x->card->st;
    enum gpcm_mode mode;
    struct gpcm_idata d;
    struct gpcm_params prm;
    uint16_t sw = gpcm_begin(x, true, 4, &mode, &d);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    if (d.f[0].n != 0 || d.f[1].n != 0 || !gpcm_aid_len_ok(d.f[2].n, false)) {
        return GPCM_SW_WRONG_DATA;
    }
    sw = gpcm_parse_params(&d.params, false, &prm);
    if (sw == GPCM_SW_OK && prm.has_d9) {
        sw = GPCM_SW_WRONG_DATA;
    }
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    uint32_t privs = 0;
    sw = gpcm_privs(&d.f[3], false, &privs);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    sw = gpcm_token_of(x, mode, &d);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    int i = se_find_app(st, d.f[2].p, d.f[2].n);
    if (i < 0) {
        return GPCM_SW_NOT_FOUND;
    }
    if (!gpcm_under(st, gpcm_parent(st, i), x->sd)) {
        return GPCM_SW_SECURITY;
    }
    if (i == 0 || st->apps[i].lcs != GP_LCS_APP_INSTALLED) {
        return GPCM_SW_CONDITIONS;
    }
    /* GPCS 11.5.2.3.3: only Card Reset is honoured, the rest is ignored. */
    uint32_t cr = privs & GP_PRIV_BIT(GP_PRIV_CARD_RESET);
    sw = gpcm_single_privs_free(st, cr, i);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    /* Make Selectable Receipt (Table C-12): the app's ELF, the app. */
    struct gpcm_rcpt r;
    sw = gpcm_rcpt_begin_in(x, mode, d.params.p, d.params.n, &r);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    gpcm_rcpt_aid(&r, st->apps[i].elf.b, st->apps[i].elf.len);
    gpcm_rcpt_aid(&r, st->apps[i].aid.b, st->apps[i].aid.len);
    sw = gpcm_rcpt_seal(x, &r);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    st->apps[i].lcs = GP_LCS_APP_SELECTABLE;
    st->apps[i].privs |= cr;
    gpcm_single_privs_take(st, cr, i);
    se_mark_dirty(x->card);
    gpcm_rcpt_reply(x, &r);
    return GPCM_SW_OK;
}

/* ---------------------------------------------------------------- extradition */

/* Checks moving app `app` or ELF `elf` (one of them >= 0) to SD `target`
 * on behalf of the performer (GPCS 9.4.1 runtime behaviour). */
static uint16_t gpcm_extradite_check(const struct se_cmd *x, int app, int elf, int target)
{
    const struct se_state *st = &x->card->st;
    if (!st->apps[target].is_sd) {
        return GPCM_SW_WRONG_DATA;
    }
    int cur;
    if (app >= 0) {
        if (app == 0) {
            return GPCM_SW_CONDITIONS; /* the ISD is the root */
        }
        cur = gpcm_parent(st, app);
        /* An SD may not move below itself. */
        if (st->apps[app].is_sd && gpcm_under(st, target, app)) {
            return GPCM_SW_CONDITIONS;
        }
    } else {
        cur = gpcm_sd_index(st, &st->elfs[elf].sd);
        if (gpcm_is_ssd_pkg(st->elfs[elf].aid.b, st->elfs[elf].aid.len)) {
            return GPCM_SW_CONDITIONS;
        }
        /* "Check that the SD to which an ELF is being extradited does not have
         * the DAP Verification privilege." */
        if (se_has_priv(st, target, GP_PRIV_DAP_VERIFICATION)) {
            return GPCM_SW_CONDITIONS;
        }
    }
    if (!gpcm_under(st, cur, x->sd)) {
        return GPCM_SW_SECURITY; /* not the performer's to move */
    }
    /* The target accepts content from its own hierarchy only. */
    if (!gpcm_under(st, target, x->sd)) {
        return GPCM_SW_CONDITIONS;
    }
    if (target != 0 && gpcm_app_locked(&st->apps[target])) {
        return GPCM_SW_CONDITIONS;
    }
    return GPCM_SW_OK;
}

static uint16_t gpcm_extradition(struct se_cmd *x)
{
    struct se_state *st = &x->card->st;
    enum gpcm_mode mode;
    struct gpcm_idata d;
    struct gpcm_params prm;
    uint16_t sw = gpcm_begin(x, true, 4, &mode, &d);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    if (!gpcm_aid_len_ok(d.f[0].n, false) || d.f[1].n != 0 || !gpcm_aid_len_ok(d.f[2].n, false)
        || d.f[3].n != 0) {
        return GPCM_SW_WRONG_DATA;
    }
    sw = gpcm_parse_params(&d.params, false, &prm);
    if (sw == GPCM_SW_OK && prm.has_d9) {
        sw = GPCM_SW_WRONG_DATA;
    }
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    sw = gpcm_token_of(x, mode, &d);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    int target = se_find_app(st, d.f[0].p, d.f[0].n);
    int app = se_find_app(st, d.f[2].p, d.f[2].n);
    int elf = app < 0 ? se_find_elf(st, d.f[2].p, d.f[2].n) : -1;
    if (target < 0 || (app < 0 && elf < 0)) {
        return GPCM_SW_NOT_FOUND;
    }
    sw = gpcm_extradite_check(x, app, elf, target);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    /* Extradition Receipt (Table C-13): old SD, app or ELF, new SD. */
    struct gpcm_rcpt r;
    sw = gpcm_rcpt_begin_in(x, mode, d.params.p, d.params.n, &r);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    const struct se_aid *old = app >= 0 ? &st->apps[gpcm_parent(st, app)].aid
                                        : &st->apps[gpcm_sd_index(st, &st->elfs[elf].sd)].aid;
    gpcm_rcpt_aid(&r, old->b, old->len);
    gpcm_rcpt_aid(&r, d.f[2].p, d.f[2].n);
    gpcm_rcpt_aid(&r, st->apps[target].aid.b, st->apps[target].aid.len);
    sw = gpcm_rcpt_seal(x, &r);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    if (app >= 0) {
        st->apps[app].sd = st->apps[target].aid;
    } else {
        st->elfs[elf].sd = st->apps[target].aid;
    }
    se_mark_dirty(x->card);
    gpcm_rcpt_reply(x, &r);
    return GPCM_SW_OK;
}

/* ---------------------------------------------------------------- personalization */

static uint16_t gpcm_personalization(struct se_cmd *x)
{
    struct se_card *c = x->card;
    struct se_state *st = &c->st;
    enum gpcm_mode mode;
    struct gpcm_idata d;
    /* An SD personalizes its own applications: no content management
     * privilege needed (GPCS 7.3.2). */
    uint16_t sw = gpcm_begin(x, false, 4, &mode, &d);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    if (d.f[0].n != 0 || d.f[1].n != 0 || !gpcm_aid_len_ok(d.f[2].n, false) || d.f[3].n != 0
        || d.params.n != 0 || d.token.n != 0) {
        return GPCM_SW_WRONG_DATA;
    }
    int i = se_find_app(st, d.f[2].p, d.f[2].n);
    if (i < 0) {
        return GPCM_SW_NOT_FOUND;
    }
    if (x->chan < 0 || x->chan >= (int)SE_MAX_CHANNELS) {
        return GPCM_SW_CONDITIONS;
    }
    /* Only the application's associated SD may personalize it. */
    if (gpcm_parent(st, i) != x->sd || gpcm_app_locked(&st->apps[i])) {
        return GPCM_SW_CONDITIONS;
    }
    c->chans[x->chan].perso_target = i;
    c->chans[x->chan].store_next_block = 0;
    gpcm_reply_00(x);
    return GPCM_SW_OK;
}

/* ---------------------------------------------------------------- registry update */

static uint16_t gpcm_registry_update(struct se_cmd *x)
{
    struct se_state *st = &x->card->st;
    enum gpcm_mode mode;
    struct gpcm_idata d;
    struct gpcm_params prm;
    uint16_t sw = gpcm_begin(x, true, 4, &mode, &d);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    if (!gpcm_aid_len_ok(d.f[0].n, true) || d.f[1].n != 0 || !gpcm_aid_len_ok(d.f[2].n, true)
        || (d.f[3].n != 0 && d.f[3].n != 1 && d.f[3].n != 3)) {
        return GPCM_SW_WRONG_DATA;
    }
    sw = gpcm_parse_params(&d.params, false, &prm);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    /* Restricting functions (D9, or no application AID = the OPEN itself) is
     * not implemented: GPCS 11.5.2.3.5 says such a card shall reject it. */
    if (prm.has_d9 || d.f[2].n == 0) {
        return GPCM_SW_WRONG_DATA;
    }
    sw = gpcm_token_of(x, mode, &d);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    int i = se_find_app(st, d.f[2].p, d.f[2].n);
    if (i < 0) {
        return GPCM_SW_NOT_FOUND;
    }
    if (i == 0 ? x->sd != 0 : !gpcm_under(st, gpcm_parent(st, i), x->sd)) {
        return GPCM_SW_SECURITY;
    }
    int target = -1;
    if (d.f[0].n > 0) {
        target = se_find_app(st, d.f[0].p, d.f[0].n);
        if (target < 0) {
            return GPCM_SW_NOT_FOUND;
        }
        sw = gpcm_extradite_check(x, i, -1, target);
        if (sw != GPCM_SW_OK) {
            return sw;
        }
    }
    uint32_t privs = st->apps[i].privs;
    if (d.f[3].n > 0) {
        sw = gpcm_privs(&d.f[3], i == 0, &privs);
        if (sw != GPCM_SW_OK) {
            return sw;
        }
        bool want_sd = (privs & GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN)) != 0;
        if (want_sd != st->apps[i].is_sd) {
            return GPCM_SW_WRONG_DATA; /* an app does not become an SD or back */
        }
        sw = gpcm_grant_ok(x, privs, st->apps[i].privs);
        if (sw == GPCM_SW_OK) {
            sw = gpcm_single_privs_free(st, privs, i);
        }
        if (sw != GPCM_SW_OK) {
            return sw;
        }
    }
    /* Registry Update Receipt (Table C-14): old SD and new SD (extradition
     * only), app, privileges and parameters as in the command. */
    struct gpcm_rcpt r;
    sw = gpcm_rcpt_begin_in(x, mode, d.params.p, d.params.n, &r);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    if (target >= 0) {
        const struct se_aid *old = &st->apps[i == 0 ? 0 : gpcm_parent(st, i)].aid;
        gpcm_rcpt_aid(&r, old->b, old->len);
    } else {
        gpcm_rcpt_aid(&r, NULL, 0);
    }
    gpcm_rcpt_aid(&r, d.f[2].p, d.f[2].n);
    gpcm_rcpt_aid(&r, target >= 0 ? st->apps[target].aid.b : NULL,
                  target >= 0 ? st->apps[target].aid.len : 0);
    gpcm_rcpt_aid(&r, d.f[3].p, d.f[3].n);
    gpcm_rcpt_ber_len(&r, d.params.n);
    gpcm_rcpt_raw(&r, d.params.p, d.params.n);
    sw = gpcm_rcpt_seal(x, &r);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    /* All or nothing (GPCS 11.5.2.3.5): every check is done. */
    if (target >= 0) {
        st->apps[i].sd = st->apps[target].aid;
    }
    if (d.f[3].n > 0) {
        st->apps[i].privs = privs;
        gpcm_single_privs_take(st, privs, i);
    }
    se_mark_dirty(x->card);
    gpcm_rcpt_reply(x, &r);
    return GPCM_SW_OK;
}

/* ---------------------------------------------------------------- INSTALL dispatch */

uint16_t se_gp_install(struct se_cmd *x)
{
    uint8_t p1 = (uint8_t)(x->a->p1 & (uint8_t)~GPCM_P1_MORE);
    uint8_t p2 = x->a->p2;
    if (p1 == GPCM_FOR_COMBINED) {
        if (p2 == GPCM_P2_COMBINED_LOAD) {
            return gpcm_install_for_load(x, true);
        }
        if (p2 == GPCM_P2_COMBINED_END) {
            return gpcm_install_combined_end(x);
        }
        return GPCM_SW_P1P2;
    }
    if (p2 != 0) {
        return GPCM_SW_P1P2;
    }
    switch (p1) {
    case GPCM_FOR_LOAD:
        return gpcm_install_for_load(x, false);
    case GPCM_FOR_INSTALL:
        return gpcm_install_app(x, false, false);
    case GPCM_FOR_INSTALL_SEL:
        return gpcm_install_app(x, true, false);
    case GPCM_FOR_MAKE_SEL:
        return gpcm_make_selectable(x);
    case GPCM_FOR_EXTRADITION:
        return gpcm_extradition(x);
    case GPCM_FOR_PERSO:
        return gpcm_personalization(x);
    case GPCM_FOR_REG_UPDATE:
        return gpcm_registry_update(x);
    default:
        return GPCM_SW_P1P2;
    }
}

/* ---------------------------------------------------------------- DELETE */

/* DELETE [key] (GPCS 11.2.2.3.2): keys of the selected SD matching the KID
 * and/or KVN given. */
static uint16_t gpcm_delete_keys(struct se_cmd *x, int kid, int kvn)
{
    struct se_app *sd = &x->card->st.apps[x->sd];
    struct se_sd *s = &sd->sd_data;
    unsigned keep = 0, removed = 0;
    for (unsigned i = 0; i < s->nkeys && i < SE_MAX_KEYS; i++) {
        bool match = (kid < 0 || s->keys[i].kid == (uint8_t)kid)
                     && (kvn < 0 || s->keys[i].kvn == (uint8_t)kvn);
        if (match) {
            removed++;
        }
    }
    if (removed == 0) {
        return GPCM_SW_NOT_FOUND;
    }
    for (unsigned i = 0; i < s->nkeys && i < SE_MAX_KEYS; i++) {
        bool match = (kid < 0 || s->keys[i].kid == (uint8_t)kid)
                     && (kvn < 0 || s->keys[i].kvn == (uint8_t)kvn);
        if (!match) {
            s->keys[keep++] = s->keys[i];
        }
    }
    for (unsigned i = keep; i < SE_MAX_KEYS; i++) {
        ot_mem_wipe(&s->keys[i], sizeof s->keys[i]);
    }
    s->nkeys = (uint8_t)keep;
    /* A sequence counter goes with the last key of its version. */
    unsigned nseq = 0;
    for (unsigned j = 0; j < s->nseqs && j < SE_MAX_SEQS; j++) {
        bool used = false;
        for (unsigned i = 0; i < s->nkeys; i++) {
            used = used || s->keys[i].kvn == s->seqs[j].kvn;
        }
        if (used) {
            s->seqs[nseq++] = s->seqs[j];
        }
    }
    for (unsigned j = nseq; j < SE_MAX_SEQS; j++) {
        memset(&s->seqs[j], 0, sizeof s->seqs[j]);
    }
    s->nseqs = (uint8_t)nseq;
    se_mark_dirty(x->card);
    gpcm_reply_00(x);
    return GPCM_SW_OK;
}

/* DELETE [card content] (GPCS 9.5, 11.2.2.3.1). related: P2 80. For an ELF
 * that means its applications; for an SD everything associated with it,
 * recursively (the vse's reading of "object and related objects"). */
static uint16_t gpcm_delete_content(struct se_cmd *x, const uint8_t *aid, size_t aid_len,
                                    bool related, struct gpcm_rcpt *r)
{
    struct se_card *c = x->card;
    struct se_state *st = &c->st;
    bool gd = se_has_priv(st, x->sd, GP_PRIV_GLOBAL_DELETE);
    bool dapp[SE_MAX_APPS] = {false};
    bool delf[SE_MAX_ELFS] = {false};

    int app = se_find_app(st, aid, aid_len);
    int elf = app < 0 ? se_find_elf(st, aid, aid_len) : -1;
    if (app < 0 && elf < 0) {
        return GPCM_SW_NOT_FOUND;
    }
    if (app == 0) {
        return GPCM_SW_CONDITIONS; /* the ISD cannot be deleted */
    }
    int owner = app >= 0 ? gpcm_parent(st, app) : gpcm_sd_index(st, &st->elfs[elf].sd);
    if (!gd && !gpcm_under(st, owner, x->sd)) {
        return GPCM_SW_SECURITY;
    }
    if (elf >= 0 && gpcm_is_ssd_pkg(st->elfs[elf].aid.b, st->elfs[elf].aid.len)) {
        return GPCM_SW_CONDITIONS;
    }
    if (app >= 0) {
        dapp[app] = true;
    } else {
        delf[elf] = true;
    }
    /* Close the set under "associated with a deleted SD" and, with P2 80,
     * "instance of a deleted ELF". */
    size_t count = 1;
    for (bool grew = true; grew;) {
        grew = false;
        for (int i = 1; i < (int)st->napps; i++) {
            if (dapp[i]) {
                continue;
            }
            int p = gpcm_parent(st, i);
            int e = se_find_elf(st, st->apps[i].elf.b, st->apps[i].elf.len);
            if ((p >= 0 && dapp[p]) || (related && e >= 0 && delf[e])) {
                dapp[i] = grew = true;
                count++;
            }
        }
        for (int e = 0; e < (int)st->nelfs; e++) {
            int p = gpcm_sd_index(st, &st->elfs[e].sd);
            if (!delf[e] && dapp[p] && p != 0) {
                delf[e] = grew = true;
                count++;
            }
        }
    }
    /* Without P2 80 the object must stand alone: no application of the ELF,
     * nothing associated with the SD (GPCS 9.5.1, 9.5.2). */
    if (!related && count > 1) {
        return GPCM_SW_CONDITIONS;
    }
    if (!related && elf >= 0) {
        for (int i = 1; i < (int)st->napps; i++) {
            if (gpcm_aid_eq(&st->apps[i].elf, aid, aid_len)) {
                return GPCM_SW_CONDITIONS;
            }
        }
    }
    /* An ELF that goes must take all its instances along. */
    for (int e = 0; e < (int)st->nelfs; e++) {
        for (int i = 1; delf[e] && i < (int)st->napps; i++) {
            if (!dapp[i] && gpcm_aid_eq(&st->apps[i].elf, st->elfs[e].aid.b, st->elfs[e].aid.len)) {
                return GPCM_SW_CONDITIONS;
            }
        }
    }
    for (int i = 1; i < (int)st->napps; i++) {
        if (dapp[i] && (i == x->sd || gpcm_selected_elsewhere(c, i, x->chan))) {
            return GPCM_SW_CONDITIONS;
        }
        /* A related object outside the performer's reach (an instance of the
         * ELF in another hierarchy) blocks the deletion. */
        if (dapp[i] && !gd && !gpcm_under(st, gpcm_parent(st, i), x->sd)) {
            return GPCM_SW_CONDITIONS;
        }
    }
    uint16_t sw = gpcm_rcpt_seal(x, r);
    if (sw != GPCM_SW_OK) {
        return sw;
    }

    /* GPCS 9.5.1: privileges of a deleted application go back to the ISD
     * (those held by one application per card). */
    for (int i = (int)st->napps - 1; i >= 1; i--) {
        if (!dapp[i]) {
            continue;
        }
        st->apps[0].privs |=
            st->apps[i].privs
            & (GP_PRIV_BIT(GP_PRIV_CARD_RESET) | GP_PRIV_BIT(GP_PRIV_FINAL_APPLICATION));
        se_remove_app(c, i);
    }
    for (int e = (int)st->nelfs - 1; e >= 0; e--) {
        if (delf[e]) {
            se_remove_elf(c, e);
        }
    }
    se_mark_dirty(c);
    gpcm_rcpt_reply(x, r);
    return GPCM_SW_OK;
}

uint16_t se_gp_delete(struct se_cmd *x)
{
    enum gpcm_mode mode;
    const struct apdu *a = x->a;
    uint16_t sw = gpcm_check_performer(x, false, &mode);
    if (sw != GPCM_SW_OK) {
        return sw;
    }
    if ((a->p1 & (uint8_t)~GPCM_P1_MORE) != 0 || (a->p2 & (uint8_t)~GPCM_DELETE_RELATED) != 0) {
        return GPCM_SW_P1P2;
    }
    if (a->nc == 0 || a->data == NULL) {
        return GPCM_SW_WRONG_LEN;
    }
    struct tlv aid = {0}, crt = {0}, tok = {0};
    bool has_aid = false, has_crt = false, has_tok = false;
    int kid = -1, kvn = -1;
    size_t signed_len = a->nc;
    struct buf_rd r;
    buf_rd_init(&r, a->data, a->nc);
    while (r.left > 0) {
        struct tlv t;
        size_t at = a->nc - r.left;
        if (tlv_next(&r, &t) != OT_OK) {
            return GPCM_SW_WRONG_DATA;
        }
        if (has_tok) {
            return GPCM_SW_WRONG_DATA; /* the token comes last */
        }
        if (t.tag == GPCM_TAG_AID && !has_aid) {
            aid = t;
            has_aid = true;
        } else if (t.tag == GPCM_TAG_CRT && !has_crt && has_aid) {
            crt = t;
            has_crt = true;
        } else if (t.tag == GPCM_TAG_TOKEN && has_aid && t.len > 0) {
            tok = t;
            has_tok = true;
            signed_len = at;
        } else if (t.tag == GPCM_TAG_KID && kid < 0 && t.len == 1) {
            kid = t.val[0];
        } else if (t.tag == GPCM_TAG_KVN && kvn < 0 && t.len == 1) {
            kvn = t.val[0];
        } else {
            return GPCM_SW_WRONG_DATA;
        }
    }
    if (has_crt && tlv_walk_all(crt.val, crt.len) != OT_OK) {
        return GPCM_SW_WRONG_DATA;
    }
    if (has_aid) {
        if (kid >= 0 || kvn >= 0 || !gpcm_aid_len_ok(aid.len, false)) {
            return GPCM_SW_WRONG_DATA;
        }
        if (mode == GPCM_MODE_NONE) {
            return GPCM_SW_SECURITY;
        }
        if (x->sd != 0 && x->card->st.apps[x->sd].lcs != GP_LCS_SD_PERSONALIZED) {
            return GPCM_SW_CONDITIONS;
        }
        sw = gpcm_token_check(x, mode, a->data, signed_len, has_tok ? tok.val : NULL,
                              has_tok ? tok.len : 0);
        if (sw != GPCM_SW_OK) {
            return sw;
        }
        /* Delete Receipt (Table C-15): the AID of the command. */
        struct gpcm_rcpt rc;
        sw = gpcm_rcpt_begin_in(x, mode, a->data, signed_len, &rc);
        if (sw != GPCM_SW_OK) {
            return sw;
        }
        gpcm_rcpt_aid(&rc, aid.val, aid.len);
        return gpcm_delete_content(x, aid.val, aid.len, (a->p2 & GPCM_DELETE_RELATED) != 0, &rc);
    }
    if (kid < 0 && kvn < 0) {
        return GPCM_SW_WRONG_DATA;
    }
    /* P2 80 ("object and related objects", GPCS Table 11-22) is accepted for
     * keys as GP cards do: a key has no related objects, so the same keys go
     * (80E4008003D2013100 deletes key set 31). */
    return gpcm_delete_keys(x, kid, kvn);
}
