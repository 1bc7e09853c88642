/* Native applet module "emv-payment": an EMV-style payment application.
 *
 * Commands (docs/applets.md has the byte-level description):
 *   SELECT                 FCI 6F {84 AID, A5 {50 label, 87 priority, 9F38 PDOL}}
 *   GET PROCESSING OPTIONS 80 A8 00 00 Lc 83 L <PDOL values>   -> 77 {82 AIP, 94 AFL}
 *   READ RECORD            00 B2 rec (SFI<<3|4) 00             -> 70 {...}
 *   VERIFY                 00 20 00 80 08 <plaintext PIN block format 2>
 *   GENERATE AC            80 AE P1 00 Lc <CDOL1 data>         -> 77 {9F27, 9F36, 9F26, 9F10}
 *   GET DATA               80 CA 9F 36 / 9F 17                 -> ATC / PIN try counter
 * Personalization: STORE DATA in DGI format (EMV CPS style DGIs 0101-1EFF,
 * 8000, 8010, 9010, 9102, 9104) or in BER-TLV format (5A, 5F24, 5F20, 82,
 * 94, 50, 87, 9F38, 8C, DF01-DF03). Install parameters (C9) are the BER-TLV
 * form and may be empty.
 *
 * Persistent blob (version 1), big-endian, field by field:
 *   ver | flags | MK_AC[16] | ATC u16 | PIN block[8] | PIN limit | PIN tries |
 *   AIP[2] | lv AFL | lv label | lv priority | lv PDOL | lv CDOL1 | lv PAN |
 *   lv expiry | lv name | nrec | nrec x (SFI, rec, lv record)
 * Volatile: stage of the transaction and "PIN verified".
 */
#include "se/applets/emv.h"

#include "core/tlv.h"
#include "crypto/paycard.h"
#include "se/applets/aputil.h"
#include "se/applets/registry.h"

#define OT_LOG_COMPONENT "se.emv"
#include "core/log.h"

#include <string.h>

#define EMV_BLOB_VERSION 1u
#define EMV_MAX_RECORDS  16u
#define EMV_MAX_RECORD   252u /* 70 81 xx + value fits a short response */
#define EMV_MAX_DOL      64u
#define EMV_MAX_AFL      64u
#define EMV_MAX_LABEL    16u
#define EMV_MAX_PAN      10u
#define EMV_MAX_NAME     26u
#define EMV_PIN_LIMIT    3u /* default PIN try limit */

#define EMV_F_KEY 0x01u
#define EMV_F_PIN 0x02u

/* Commands (EMV Book 3 6.5, ISO 7816-4). */
#define EMV_INS_GPO         0xA8u
#define EMV_INS_READ_RECORD 0xB2u
#define EMV_INS_VERIFY      0x20u
#define EMV_INS_GENERATE_AC 0xAEu
#define EMV_INS_GET_DATA    0xCAu

/* Cryptogram types (EMV Book 3 6.5.5, P1 b8b7 and CID). */
#define EMV_AC_AAC  0x00u
#define EMV_AC_TC   0x40u
#define EMV_AC_ARQC 0x80u

/* Personalization DGIs (EMV CPS naming where it has one). */
#define EMV_DGI_KEY     0x8000u /* MK_AC, AES-128 */
#define EMV_DGI_PIN     0x8010u /* PIN block format 2 or ASCII digits */
#define EMV_DGI_PIN_CNT 0x9010u /* PIN try counter || PIN try limit */
#define EMV_DGI_FCI     0x9102u /* A5 contents: 50, 87, 9F38 */
#define EMV_DGI_GPO     0x9104u /* 82 AIP, 94 AFL */

/* Proprietary BER-TLV personalization tags. */
#define EMV_TAG_KEY       0xDF01u
#define EMV_TAG_PIN       0xDF02u
#define EMV_TAG_PIN_LIMIT 0xDF03u

/* Issuer application data: length, derivation key index, cryptogram version. */
#define EMV_IAD_DKI 0x01u
#define EMV_IAD_CVN 0x10u /* OpenTSM AES common session key, CMAC, version 1 */

/* Volatile scratch layout. */
#define EMV_VOL_STAGE  0u
#define EMV_VOL_PIN_OK 1u

enum emv_stage {
    EMV_STAGE_IDLE = 0, /* selected, no GPO yet */
    EMV_STAGE_GPO = 1,  /* GPO done, no AC yet */
    EMV_STAGE_ARQC = 2, /* first AC was an ARQC: a second AC may follow */
    EMV_STAGE_DONE = 3, /* transaction completed (TC / AAC) */
};

struct emv_record {
    uint8_t sfi, rec, len;
    uint8_t b[EMV_MAX_RECORD];
};

struct emv_state {
    uint8_t flags;
    uint8_t key[SE_EMV_KEY_LEN];
    uint16_t atc;
    uint8_t pin_block[8];
    uint8_t pin_limit, pin_tries;
    uint8_t aip[2];
    uint8_t afl_len, afl[EMV_MAX_AFL];
    uint8_t label_len, label[EMV_MAX_LABEL];
    uint8_t prio_len, prio[1];
    uint8_t pdol_len, pdol[EMV_MAX_DOL];
    uint8_t cdol_len, cdol[EMV_MAX_DOL];
    uint8_t pan_len, pan[EMV_MAX_PAN];
    uint8_t exp_len, exp[3];
    uint8_t name_len, name[EMV_MAX_NAME];
    uint8_t nrec;
    struct emv_record rec[EMV_MAX_RECORDS];
};

static const uint8_t emv_pkg[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x02};
static const uint8_t emv_mod[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x02, 0x01};

/* Default CDOL1 (EMV Book 3 annex A): amount, other amount, terminal country,
 * TVR, currency, date, type, unpredictable number = 29 bytes. */
static const uint8_t emv_default_cdol1[] = {0x9F, 0x02, 0x06, 0x9F, 0x03, 0x06, 0x9F,
                                            0x1A, 0x02, 0x95, 0x05, 0x5F, 0x2A, 0x02,
                                            0x9A, 0x03, 0x9C, 0x01, 0x9F, 0x37, 0x04};
static const uint8_t emv_default_aip[] = {0x18, 0x00}; /* CVM + terminal risk management */
static const uint8_t emv_default_afl[] = {0x08, 0x01, 0x01, 0x00}; /* SFI 1, record 1 */

ot_err se_emv_compute_ac(const uint8_t *card_key, size_t key_len, uint16_t atc, const uint8_t *data,
                         size_t n, uint8_t ac[SE_EMV_AC_LEN])
{
    if (card_key == NULL || ac == NULL || (data == NULL && n > 0)) {
        return OT_E_ARG;
    }
    if (key_len != SE_EMV_KEY_LEN) {
        return OT_E_KEY;
    }
    /* the one implementation: crypto/paycard.h (EMV Book 2 A1.3.1, A1.2.2) */
    return paycard_emv_ac(card_key, atc, data, n, ac);
}

/* ---------------------------------------------------------------- blob */

static void emv_defaults(struct emv_state *s)
{
    memset(s, 0, sizeof(*s));
    memcpy(s->aip, emv_default_aip, sizeof(emv_default_aip));
    s->afl_len = sizeof(emv_default_afl);
    memcpy(s->afl, emv_default_afl, sizeof(emv_default_afl));
    s->cdol_len = sizeof(emv_default_cdol1);
    memcpy(s->cdol, emv_default_cdol1, sizeof(emv_default_cdol1));
    s->pin_limit = EMV_PIN_LIMIT;
    s->pin_tries = EMV_PIN_LIMIT;
}

static ot_err emv_load(const struct se_applet_ctx *x, struct emv_state *s)
{
    struct buf_rd r;
    ot_err err = OT_OK;

    emv_defaults(s);
    if (x->data_len == 0) {
        return OT_OK;
    }
    OT_TRY(aputil_blob_open(x, EMV_BLOB_VERSION, &r));
    OT_TRY(buf_rd_u8(&r, &s->flags));
    OT_TRY(buf_rd_copy(&r, s->key, sizeof(s->key)));
    OT_TRY(buf_rd_u16be(&r, &s->atc));
    OT_TRY(buf_rd_copy(&r, s->pin_block, sizeof(s->pin_block)));
    OT_TRY(buf_rd_u8(&r, &s->pin_limit));
    OT_TRY(buf_rd_u8(&r, &s->pin_tries));
    OT_TRY(buf_rd_copy(&r, s->aip, sizeof(s->aip)));
    OT_TRY(aputil_get_lv(&r, s->afl, sizeof(s->afl), &s->afl_len));
    OT_TRY(aputil_get_lv(&r, s->label, sizeof(s->label), &s->label_len));
    OT_TRY(aputil_get_lv(&r, s->prio, sizeof(s->prio), &s->prio_len));
    OT_TRY(aputil_get_lv(&r, s->pdol, sizeof(s->pdol), &s->pdol_len));
    OT_TRY(aputil_get_lv(&r, s->cdol, sizeof(s->cdol), &s->cdol_len));
    OT_TRY(aputil_get_lv(&r, s->pan, sizeof(s->pan), &s->pan_len));
    OT_TRY(aputil_get_lv(&r, s->exp, sizeof(s->exp), &s->exp_len));
    OT_TRY(aputil_get_lv(&r, s->name, sizeof(s->name), &s->name_len));
    OT_TRY(buf_rd_u8(&r, &s->nrec));
    if (s->nrec > EMV_MAX_RECORDS || s->pin_limit > 15 || s->pin_tries > s->pin_limit) {
        err = OT_E_CORRUPT;
        goto out;
    }
    for (uint8_t i = 0; i < s->nrec; i++) {
        OT_TRY(buf_rd_u8(&r, &s->rec[i].sfi));
        OT_TRY(buf_rd_u8(&r, &s->rec[i].rec));
        OT_TRY(aputil_get_lv(&r, s->rec[i].b, sizeof(s->rec[i].b), &s->rec[i].len));
    }
out:
    return aputil_blob_close(&r, err, "emv-payment");
}

static uint16_t emv_save(struct se_applet_ctx *x, const struct emv_state *s)
{
    uint8_t blob[SE_APPLET_MAX_DATA];
    struct buf_wr w;
    uint16_t sw;

    buf_wr_init(&w, blob, sizeof(blob));
    buf_wr_u8(&w, EMV_BLOB_VERSION);
    buf_wr_u8(&w, s->flags);
    buf_wr_bytes(&w, s->key, sizeof(s->key));
    buf_wr_u16be(&w, s->atc);
    buf_wr_bytes(&w, s->pin_block, sizeof(s->pin_block));
    buf_wr_u8(&w, s->pin_limit);
    buf_wr_u8(&w, s->pin_tries);
    buf_wr_bytes(&w, s->aip, sizeof(s->aip));
    aputil_put_lv(&w, s->afl, s->afl_len);
    aputil_put_lv(&w, s->label, s->label_len);
    aputil_put_lv(&w, s->prio, s->prio_len);
    aputil_put_lv(&w, s->pdol, s->pdol_len);
    aputil_put_lv(&w, s->cdol, s->cdol_len);
    aputil_put_lv(&w, s->pan, s->pan_len);
    aputil_put_lv(&w, s->exp, s->exp_len);
    aputil_put_lv(&w, s->name, s->name_len);
    buf_wr_u8(&w, s->nrec);
    for (uint8_t i = 0; i < s->nrec; i++) {
        buf_wr_u8(&w, s->rec[i].sfi);
        buf_wr_u8(&w, s->rec[i].rec);
        aputil_put_lv(&w, s->rec[i].b, s->rec[i].len);
    }
    sw = aputil_save(x, &w);
    ot_mem_wipe(blob, sizeof(blob));
    return sw;
}

/* ---------------------------------------------------------------- personalization */

/* PIN as a plaintext PIN block format 2 (ISO 9564-1: 2L then L digits, F
 * padding, 8 bytes) or as 4-12 ASCII digits (converted to the block). */
static bool emv_pin_block_valid(const uint8_t b[8])
{
    unsigned len = b[0] & 0x0Fu;
    if ((b[0] >> 4) != 0x2u || len < 4 || len > 12) {
        return false;
    }
    for (unsigned i = 0; i < 14; i++) {
        unsigned nib = (b[1 + i / 2] >> ((i % 2) ? 0 : 4)) & 0x0Fu;
        if ((i < len && nib > 9) || (i >= len && nib != 0x0Fu)) {
            return false;
        }
    }
    return true;
}

static bool emv_pin_from(const uint8_t *v, size_t n, uint8_t block[8])
{
    if (n == 8 && emv_pin_block_valid(v)) {
        memcpy(block, v, 8);
        return true;
    }
    if (n < 4 || n > 12 || !aputil_is_digits(v, n)) {
        return false;
    }
    memset(block, 0xFF, 8);
    block[0] = (uint8_t)(0x20u | n);
    for (size_t i = 0; i < n; i++) {
        uint8_t d = (uint8_t)(v[i] - '0');
        uint8_t *p = &block[1 + i / 2];
        *p = (i % 2) ? (uint8_t)((*p & 0xF0u) | d) : (uint8_t)((d << 4) | 0x0Fu);
    }
    return true;
}

static bool emv_set_lv(uint8_t *dst, uint8_t *dst_len, size_t cap, const struct tlv *t, size_t min)
{
    if (t->len < min || t->len > cap) {
        return false;
    }
    memcpy(dst, t->val, t->len);
    *dst_len = (uint8_t)t->len;
    return true;
}

/* One BER-TLV personalization object; false: 6A80. */
static bool emv_perso_tag(struct emv_state *s, const struct tlv *t)
{
    size_t dol_total = 0;
    switch (t->tag) {
    case 0x5Au: /* PAN, cn up to 19 digits */
        return emv_set_lv(s->pan, &s->pan_len, sizeof(s->pan), t, 1);
    case 0x5F24u: /* application expiration date YYMMDD */
        return emv_set_lv(s->exp, &s->exp_len, sizeof(s->exp), t, 3);
    case 0x5F20u: /* cardholder name */
        return emv_set_lv(s->name, &s->name_len, sizeof(s->name), t, 2);
    case 0x82u: /* AIP */
        if (t->len != 2) {
            return false;
        }
        memcpy(s->aip, t->val, 2);
        return true;
    case 0x94u: /* AFL: 4-byte entries */
        if (t->len == 0 || t->len % 4 != 0) {
            return false;
        }
        return emv_set_lv(s->afl, &s->afl_len, sizeof(s->afl), t, 4);
    case 0x50u: /* application label */
        return emv_set_lv(s->label, &s->label_len, sizeof(s->label), t, 1);
    case 0x87u: /* application priority indicator */
        return emv_set_lv(s->prio, &s->prio_len, sizeof(s->prio), t, 1);
    case 0x9F38u: /* PDOL */
        if (aputil_dol_len(t->val, t->len, &dol_total) != OT_OK || dol_total > 252) {
            return false;
        }
        return emv_set_lv(s->pdol, &s->pdol_len, sizeof(s->pdol), t, 0);
    case 0x8Cu: /* CDOL1 */
        if (aputil_dol_len(t->val, t->len, &dol_total) != OT_OK || dol_total == 0
            || dol_total > 252) {
            return false;
        }
        return emv_set_lv(s->cdol, &s->cdol_len, sizeof(s->cdol), t, 2);
    case EMV_TAG_KEY:
        if (t->len != SE_EMV_KEY_LEN) {
            return false;
        }
        memcpy(s->key, t->val, SE_EMV_KEY_LEN);
        s->flags |= EMV_F_KEY;
        return true;
    case EMV_TAG_PIN:
        if (!emv_pin_from(t->val, t->len, s->pin_block)) {
            return false;
        }
        s->flags |= EMV_F_PIN;
        s->pin_tries = s->pin_limit;
        return true;
    case EMV_TAG_PIN_LIMIT:
        if (t->len != 1 || t->val[0] == 0 || t->val[0] > 15) {
            return false;
        }
        s->pin_limit = t->val[0];
        s->pin_tries = t->val[0];
        return true;
    default:
        return false;
    }
}

static bool emv_perso_ber(struct emv_state *s, const uint8_t *d, size_t n, const uint32_t *only,
                          size_t nonly)
{
    struct buf_rd r;
    struct tlv t;
    buf_rd_init(&r, d, n);
    while (r.left > 0) {
        if (tlv_next(&r, &t) != OT_OK || t.constructed) {
            return false;
        }
        if (only != NULL) {
            bool ok = false;
            for (size_t i = 0; i < nonly; i++) {
                ok = ok || only[i] == t.tag;
            }
            if (!ok) {
                return false;
            }
        }
        if (!emv_perso_tag(s, &t)) {
            return false;
        }
    }
    return true;
}

static bool emv_put_record(struct emv_state *s, uint8_t sfi, uint8_t rec, const uint8_t *v,
                           size_t n)
{
    struct tlv t;
    uint8_t i;
    /* A record is one record template 70 covering the whole value. */
    if (sfi == 0 || sfi > 30 || rec == 0 || n > EMV_MAX_RECORD || tlv_parse_one(v, n, &t) != OT_OK
        || t.tag != 0x70u || tlv_walk_all(t.val, t.len) != OT_OK) {
        return false;
    }
    for (i = 0; i < s->nrec; i++) {
        if (s->rec[i].sfi == sfi && s->rec[i].rec == rec) {
            break;
        }
    }
    if (i == s->nrec) {
        if (s->nrec == EMV_MAX_RECORDS) {
            return false;
        }
        s->nrec++;
    }
    s->rec[i].sfi = sfi;
    s->rec[i].rec = rec;
    s->rec[i].len = (uint8_t)n;
    memcpy(s->rec[i].b, v, n);
    return true;
}

static bool emv_perso_dgi(struct emv_state *s, const uint8_t *d, size_t n)
{
    static const uint32_t fci_tags[] = {0x50u, 0x87u, 0x9F38u};
    static const uint32_t gpo_tags[] = {0x82u, 0x94u};
    struct buf_rd r;
    uint16_t dgi;
    const uint8_t *v;
    size_t vn;

    buf_rd_init(&r, d, n);
    while (r.left > 0) {
        if (aputil_dgi_next(&r, &dgi, &v, &vn) != OT_OK) {
            return false;
        }
        if (dgi >= 0x0101u && dgi <= 0x1EFFu) {
            if (!emv_put_record(s, (uint8_t)(dgi >> 8), (uint8_t)dgi, v, vn)) {
                return false;
            }
            continue;
        }
        switch (dgi) {
        case EMV_DGI_KEY:
            if (vn != SE_EMV_KEY_LEN) {
                return false;
            }
            memcpy(s->key, v, SE_EMV_KEY_LEN);
            s->flags |= EMV_F_KEY;
            break;
        case EMV_DGI_PIN:
            if (!emv_pin_from(v, vn, s->pin_block)) {
                return false;
            }
            s->flags |= EMV_F_PIN;
            s->pin_tries = s->pin_limit;
            break;
        case EMV_DGI_PIN_CNT: /* EMV CPS: PIN try counter || PIN try limit */
            if (vn != 2 || v[1] == 0 || v[1] > 15 || v[0] > v[1]) {
                return false;
            }
            s->pin_tries = v[0];
            s->pin_limit = v[1];
            break;
        case EMV_DGI_FCI:
            if (!emv_perso_ber(s, v, vn, fci_tags, sizeof(fci_tags) / sizeof(fci_tags[0]))) {
                return false;
            }
            break;
        case EMV_DGI_GPO:
            if (!emv_perso_ber(s, v, vn, gpo_tags, sizeof(gpo_tags) / sizeof(gpo_tags[0]))) {
                return false;
            }
            break;
        default:
            return false;
        }
    }
    return true;
}

/* ---------------------------------------------------------------- ops */

static ot_err emv_install(struct se_applet_ctx *x, const uint8_t *params, size_t n)
{
    struct emv_state s;
    ot_err err = OT_OK;

    emv_defaults(&s);
    if (n > 0 && !emv_perso_ber(&s, params, n, NULL, 0)) {
        OT_LOG_DEBUG("emv-payment: install parameters refused");
        err = OT_E_FORMAT;
        goto out;
    }
    if (emv_save(x, &s) != 0) {
        err = OT_E_LIMIT;
    }
out:
    ot_mem_wipe(&s, sizeof(s));
    return err;
}

static uint16_t emv_select(struct se_applet_ctx *x, struct buf_wr *out)
{
    struct emv_state s;
    size_t fci, prop;

    memset(x->vol, 0, SE_APPLET_VOL_SIZE);
    if (emv_load(x, &s) != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    tlv_open(out, 0x6Fu, &fci);
    tlv_put(out, 0x84u, x->aid, x->aid_len);
    tlv_open(out, 0xA5u, &prop);
    if (s.label_len > 0) {
        tlv_put(out, 0x50u, s.label, s.label_len);
    }
    if (s.prio_len > 0) {
        tlv_put(out, 0x87u, s.prio, s.prio_len);
    }
    if (s.pdol_len > 0) {
        tlv_put(out, 0x9F38u, s.pdol, s.pdol_len);
    }
    tlv_close(out, prop);
    tlv_close(out, fci);
    ot_mem_wipe(&s, sizeof(s));
    return out->err == OT_OK ? APUTIL_SW_OK : APUTIL_SW_NO_DIAG;
}

static uint16_t emv_gpo(struct se_applet_ctx *x, const struct emv_state *s, const struct apdu *a,
                        struct buf_wr *out)
{
    struct tlv t;
    size_t pdol_total = 0;
    size_t mark;

    if (a->p1 != 0 || a->p2 != 0) {
        return APUTIL_SW_P1P2;
    }
    if (a->nc < 2) {
        return APUTIL_SW_WRONG_LENGTH;
    }
    if (tlv_parse_one(a->data, a->nc, &t) != OT_OK || t.tag != 0x83u) {
        return APUTIL_SW_WRONG_DATA;
    }
    if (aputil_dol_len(s->pdol, s->pdol_len, &pdol_total) != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    if (t.len != pdol_total) {
        return APUTIL_SW_WRONG_LENGTH; /* EMV Book 3 6.5.8.4 */
    }
    if ((s->flags & EMV_F_KEY) == 0 || x->vol[EMV_VOL_STAGE] != EMV_STAGE_IDLE) {
        return APUTIL_SW_CONDITIONS; /* not personalized, or GPO already done */
    }
    uint16_t sw = aputil_check_le(a, 2 + 4 + s->afl_len + 2);
    if (sw != 0) {
        return sw;
    }
    tlv_open(out, 0x77u, &mark); /* format 2 */
    tlv_put(out, 0x82u, s->aip, sizeof(s->aip));
    tlv_put(out, 0x94u, s->afl, s->afl_len);
    tlv_close(out, mark);
    if (out->err != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    x->vol[EMV_VOL_STAGE] = EMV_STAGE_GPO;
    return APUTIL_SW_OK;
}

/* The record of SFI 1 record 1 when none was personalized: built from the
 * BER-TLV data objects (PAN, expiry, name, CDOL1). */
static bool emv_default_record(const struct emv_state *s, struct buf_wr *w)
{
    size_t mark;
    if (s->pan_len == 0) {
        return false;
    }
    tlv_open(w, 0x70u, &mark);
    tlv_put(w, 0x5Au, s->pan, s->pan_len);
    if (s->exp_len > 0) {
        tlv_put(w, 0x5F24u, s->exp, s->exp_len);
    }
    if (s->name_len > 0) {
        tlv_put(w, 0x5F20u, s->name, s->name_len);
    }
    tlv_put(w, 0x8Cu, s->cdol, s->cdol_len);
    tlv_close(w, mark);
    return true;
}

static uint16_t emv_read_record(const struct emv_state *s, const struct apdu *a, struct buf_wr *out)
{
    uint8_t sfi = (uint8_t)(a->p2 >> 3);
    uint8_t tmp[EMV_MAX_RECORD + 16];
    struct buf_wr w;

    if (a->p1 == 0 || (a->p2 & 0x07u) != 0x04u || sfi == 0 || sfi > 30) {
        return APUTIL_SW_P1P2; /* EMV Book 3 6.5.11: P1 record, P2 SFI<<3 | 100b */
    }
    if (a->nc != 0) {
        return APUTIL_SW_WRONG_LENGTH;
    }
    buf_wr_init(&w, tmp, sizeof(tmp));
    for (uint8_t i = 0; i < s->nrec; i++) {
        if (s->rec[i].sfi == sfi && s->rec[i].rec == a->p1) {
            buf_wr_bytes(&w, s->rec[i].b, s->rec[i].len);
            break;
        }
    }
    if (w.len == 0 && !(sfi == 1 && a->p1 == 1 && emv_default_record(s, &w))) {
        return APUTIL_SW_RECORD_NF;
    }
    if (w.err != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    uint16_t sw = aputil_check_le(a, w.len);
    if (sw != 0) {
        return sw;
    }
    buf_wr_bytes(out, tmp, w.len);
    return out->err == OT_OK ? APUTIL_SW_OK : APUTIL_SW_NO_DIAG;
}

static uint16_t emv_verify(struct se_applet_ctx *x, struct emv_state *s, const struct apdu *a)
{
    uint16_t sw;
    if (a->p1 != 0 || a->p2 != 0x80u) { /* EMV Book 3 6.5.12: 80 = plaintext PIN */
        return APUTIL_SW_P1P2;
    }
    if ((s->flags & EMV_F_PIN) == 0) {
        return APUTIL_SW_REF_NF;
    }
    if (a->nc == 0) { /* ISO 7816-4 11.5.6: retries left, no attempt */
        if (s->pin_tries == 0) {
            return APUTIL_SW_BLOCKED;
        }
        return x->vol[EMV_VOL_PIN_OK] ? APUTIL_SW_OK
                                      : (uint16_t)(APUTIL_SW_VERIFY_FAIL | s->pin_tries);
    }
    if (a->nc != 8) {
        return APUTIL_SW_WRONG_LENGTH;
    }
    if (!emv_pin_block_valid(a->data)) {
        return APUTIL_SW_WRONG_DATA;
    }
    if (s->pin_tries == 0) {
        return APUTIL_SW_BLOCKED;
    }
    if (ot_mem_equal_ct(a->data, s->pin_block, 8)) {
        if (s->pin_tries != s->pin_limit) {
            s->pin_tries = s->pin_limit;
            sw = emv_save(x, s);
            if (sw != 0) {
                return sw;
            }
        }
        x->vol[EMV_VOL_PIN_OK] = 1;
        return APUTIL_SW_OK;
    }
    /* The decremented counter is stored before the answer is given. */
    s->pin_tries--;
    x->vol[EMV_VOL_PIN_OK] = 0;
    sw = emv_save(x, s);
    if (sw != 0) {
        return sw;
    }
    return (uint16_t)(APUTIL_SW_VERIFY_FAIL | s->pin_tries);
}

static uint16_t emv_generate_ac(struct se_applet_ctx *x, struct emv_state *s, const struct apdu *a,
                                struct buf_wr *out)
{
    uint8_t type = a->p1 & 0xC0u;
    uint8_t stage = x->vol[EMV_VOL_STAGE];
    uint8_t mac_in[256 + 4];
    uint8_t ac[SE_EMV_AC_LEN];
    uint8_t atc[2];
    uint8_t iad[7];
    size_t cdol_total = 0;
    size_t mark;
    uint16_t sw;

    if ((a->p1 & 0x3Fu) != 0 || type == 0xC0u || a->p2 != 0) {
        return APUTIL_SW_P1P2; /* RFU bits, CDA (b5) not supported */
    }
    if (aputil_dol_len(s->cdol, s->cdol_len, &cdol_total) != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    if (a->nc != cdol_total || a->nc > sizeof(mac_in) - 4) {
        return APUTIL_SW_WRONG_LENGTH;
    }
    if ((s->flags & EMV_F_KEY) == 0 || stage == EMV_STAGE_IDLE || stage == EMV_STAGE_DONE
        || (stage == EMV_STAGE_ARQC && type == EMV_AC_ARQC)) {
        return APUTIL_SW_CONDITIONS; /* before GPO, after completion, or ARQC twice */
    }
    if (s->atc == 0xFFFFu) {
        return APUTIL_SW_CONDITIONS; /* ATC exhausted: the application is spent */
    }
    sw = aputil_check_le(a, 3 + 1 + 3 + 2 + 3 + 8 + 3 + sizeof(iad));
    if (sw != 0) {
        return sw;
    }
    /* The ATC is incremented and stored before the cryptogram is released. */
    s->atc++;
    sw = emv_save(x, s);
    if (sw != 0) {
        return sw;
    }
    ot_put_u16be(atc, s->atc);
    memcpy(mac_in, a->data, a->nc);
    memcpy(mac_in + a->nc, s->aip, 2);
    memcpy(mac_in + a->nc + 2, atc, 2);
    if (se_emv_compute_ac(s->key, sizeof(s->key), s->atc, mac_in, a->nc + 4, ac) != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    /* IAD: DKI, CVN, CVR (AC type, PIN verified, PIN try limit exceeded, tries left). */
    iad[0] = 6;
    iad[1] = EMV_IAD_DKI;
    iad[2] = EMV_IAD_CVN;
    iad[3] = type;
    iad[4] = (uint8_t)((x->vol[EMV_VOL_PIN_OK] ? 0x80u : 0u)
                       | ((s->flags & EMV_F_PIN) && s->pin_tries == 0 ? 0x40u : 0u));
    iad[5] = s->pin_tries;
    iad[6] = 0;
    tlv_open(out, 0x77u, &mark);
    tlv_put(out, 0x9F27u, &type, 1);
    tlv_put(out, 0x9F36u, atc, 2);
    tlv_put(out, 0x9F26u, ac, sizeof(ac));
    tlv_put(out, 0x9F10u, iad, sizeof(iad));
    tlv_close(out, mark);
    ot_mem_wipe(ac, sizeof(ac));
    if (out->err != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    x->vol[EMV_VOL_STAGE] = type == EMV_AC_ARQC ? EMV_STAGE_ARQC : EMV_STAGE_DONE;
    return APUTIL_SW_OK;
}

static uint16_t emv_get_data(const struct emv_state *s, const struct apdu *a, struct buf_wr *out)
{
    uint16_t tag = (uint16_t)((a->p1 << 8) | a->p2);
    uint8_t v[2];
    size_t vn;
    if (a->nc != 0) {
        return APUTIL_SW_WRONG_LENGTH;
    }
    if (tag == 0x9F36u) { /* ATC */
        ot_put_u16be(v, s->atc);
        vn = 2;
    } else if (tag == 0x9F17u) { /* PIN try counter */
        v[0] = s->pin_tries;
        vn = 1;
    } else {
        return APUTIL_SW_REF_NF;
    }
    uint16_t sw = aputil_check_le(a, 3 + vn);
    if (sw != 0) {
        return sw;
    }
    tlv_put(out, tag, v, vn);
    return out->err == OT_OK ? APUTIL_SW_OK : APUTIL_SW_NO_DIAG;
}

static uint16_t emv_process(struct se_applet_ctx *x, const struct apdu *a, struct buf_wr *out)
{
    struct emv_state s;
    bool prop;
    uint16_t sw;

    switch (a->ins) {
    case EMV_INS_GPO:
    case EMV_INS_GENERATE_AC:
    case EMV_INS_GET_DATA:
        prop = true;
        break;
    case EMV_INS_READ_RECORD:
    case EMV_INS_VERIFY:
        prop = false;
        break;
    default:
        sw = aputil_check_cla(a->cla, apdu_cla_is_proprietary(a->cla));
        return sw != 0 ? sw : APUTIL_SW_INS;
    }
    sw = aputil_check_cla(a->cla, prop);
    if (sw != 0) {
        return sw;
    }
    if (emv_load(x, &s) != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    switch (a->ins) {
    case EMV_INS_GPO:
        sw = emv_gpo(x, &s, a, out);
        break;
    case EMV_INS_READ_RECORD:
        sw = emv_read_record(&s, a, out);
        break;
    case EMV_INS_VERIFY:
        sw = emv_verify(x, &s, a);
        break;
    case EMV_INS_GENERATE_AC:
        sw = emv_generate_ac(x, &s, a, out);
        break;
    default:
        sw = emv_get_data(&s, a, out);
        break;
    }
    ot_mem_wipe(&s, sizeof(s));
    return sw;
}

static uint16_t emv_personalize(struct se_applet_ctx *x, uint8_t p1, uint8_t p2, const uint8_t *d,
                                size_t n)
{
    struct emv_state s;
    enum aputil_sd_fmt fmt;
    uint16_t sw;
    bool ok;

    (void)p2;
    sw = aputil_perso_check(p1, n, true, &fmt);
    if (sw != 0) {
        return sw;
    }
    if (emv_load(x, &s) != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    /* All of the block is checked before anything is stored. */
    ok = fmt == APUTIL_FMT_DGI ? emv_perso_dgi(&s, d, n) : emv_perso_ber(&s, d, n, NULL, 0);
    sw = ok ? emv_save(x, &s) : APUTIL_SW_WRONG_DATA;
    ot_mem_wipe(&s, sizeof(s));
    return sw == 0 ? APUTIL_SW_OK : sw;
}

/* Software destroy (seed 000): keys, PAN, records and PIN are erased; the
 * ATC is kept so a cryptogram can never be repeated. */
static void emv_wipe(struct se_applet_ctx *x)
{
    struct emv_state s;
    uint16_t atc = 0;
    if (emv_load(x, &s) == OT_OK) {
        atc = s.atc;
    }
    ot_mem_wipe(&s, sizeof(s));
    emv_defaults(&s);
    s.atc = atc;
    s.pin_tries = 0;
    (void)emv_save(x, &s);
    memset(x->vol, 0, SE_APPLET_VOL_SIZE);
}

static bool emv_ppse_entry(const struct se_applet_ctx *x, struct buf_wr *out)
{
    struct emv_state s;
    size_t mark;
    if (emv_load(x, &s) != OT_OK) {
        return false;
    }
    tlv_open(out, 0x61u, &mark);
    tlv_put(out, 0x4Fu, x->aid, x->aid_len);
    if (s.label_len > 0) {
        tlv_put(out, 0x50u, s.label, s.label_len);
    }
    if (s.prio_len > 0) {
        tlv_put(out, 0x87u, s.prio, s.prio_len);
    }
    tlv_close(out, mark);
    ot_mem_wipe(&s, sizeof(s));
    return true;
}

const struct se_applet_ops se_emv_ops = {
    .name = "emv-payment",
    .pkg_aid = emv_pkg,
    .pkg_aid_len = sizeof(emv_pkg),
    .module_aid = emv_mod,
    .module_aid_len = sizeof(emv_mod),
    .payment = true,
    .install = emv_install,
    .select = emv_select,
    .process = emv_process,
    .personalize = emv_personalize,
    .wipe = emv_wipe,
    .ppse_entry = emv_ppse_entry,
};
