/* Native applet module "wallet": the mobile wallet companion applet (WCAp,
 * seed 002) -- a small list of the services the wallet shows, each with a
 * name, the AID of the service's application and a status byte.
 *
 * Personalization (STORE DATA, BER-TLV format), any number per block:
 *   E1 { 4F AID (5-16), 50 name (1-32), C1 status (1) }  add or replace by AID
 *   E2 { 4F AID }                                          remove
 * Status values are the wallet's: 00 deactivated, 01 activated, 02 locked
 * (others are stored as given). Install parameters: the same, may be empty.
 *
 * Command: GET DATA 80 CA 00 E0 00 -> E0 { E1 {4F, 50, C1} ... } in the
 * order the services were added (at most 16).
 *
 * Persistent blob (version 1): ver | n | n x (lv AID, lv name, status).
 */
#include "se/applets/aputil.h"
#include "se/applets/registry.h"

#include "core/tlv.h"

#define OT_LOG_COMPONENT "se.wallet"
#include "core/log.h"

#include <string.h>

#define WALLET_BLOB_VERSION 1u
#define WALLET_MAX_SERVICES 16u
#define WALLET_MAX_NAME     32u
#define WALLET_MIN_AID      5u
#define WALLET_MAX_AID      16u

#define WALLET_INS_GET_DATA 0xCAu
#define WALLET_TAG_LIST     0xE0u
#define WALLET_TAG_SERVICE  0xE1u
#define WALLET_TAG_REMOVE   0xE2u
#define WALLET_TAG_AID      0x4Fu
#define WALLET_TAG_NAME     0x50u
#define WALLET_TAG_STATUS   0xC1u

struct wallet_service {
    uint8_t aid_len, aid[WALLET_MAX_AID];
    uint8_t name_len, name[WALLET_MAX_NAME];
    uint8_t status;
};

struct wallet_state {
    uint8_t n;
    struct wallet_service svc[WALLET_MAX_SERVICES];
};

static const uint8_t wallet_pkg[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x05};
static const uint8_t wallet_mod[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x05, 0x01};

static ot_err wallet_load(const struct se_applet_ctx *x, struct wallet_state *s)
{
    struct buf_rd r;
    ot_err err = OT_OK;

    memset(s, 0, sizeof(*s));
    if (x->data_len == 0) {
        return OT_OK;
    }
    OT_TRY(aputil_blob_open(x, WALLET_BLOB_VERSION, &r));
    OT_TRY(buf_rd_u8(&r, &s->n));
    if (s->n > WALLET_MAX_SERVICES) {
        err = OT_E_CORRUPT;
        goto out;
    }
    for (uint8_t i = 0; i < s->n; i++) {
        struct wallet_service *v = &s->svc[i];
        OT_TRY(aputil_get_lv(&r, v->aid, sizeof(v->aid), &v->aid_len));
        OT_TRY(aputil_get_lv(&r, v->name, sizeof(v->name), &v->name_len));
        OT_TRY(buf_rd_u8(&r, &v->status));
    }
out:
    return aputil_blob_close(&r, err, "wallet");
}

static uint16_t wallet_save(struct se_applet_ctx *x, const struct wallet_state *s)
{
    uint8_t blob[2 + WALLET_MAX_SERVICES * (2 + WALLET_MAX_AID + WALLET_MAX_NAME + 1)];
    struct buf_wr w;

    buf_wr_init(&w, blob, sizeof(blob));
    buf_wr_u8(&w, WALLET_BLOB_VERSION);
    buf_wr_u8(&w, s->n);
    for (uint8_t i = 0; i < s->n; i++) {
        aputil_put_lv(&w, s->svc[i].aid, s->svc[i].aid_len);
        aputil_put_lv(&w, s->svc[i].name, s->svc[i].name_len);
        buf_wr_u8(&w, s->svc[i].status);
    }
    return aputil_save(x, &w);
}

static int wallet_find(const struct wallet_state *s, const uint8_t *aid, size_t len)
{
    for (uint8_t i = 0; i < s->n; i++) {
        if (s->svc[i].aid_len == len && memcmp(s->svc[i].aid, aid, len) == 0) {
            return i;
        }
    }
    return -1;
}

/* One E1 or E2 template; returns 0 or the status word. */
static uint16_t wallet_apply(struct wallet_state *s, const struct tlv *tpl)
{
    struct wallet_service v;
    struct buf_rd r;
    struct tlv t;
    bool have_name = false, have_status = false;
    int i;

    memset(&v, 0, sizeof(v));
    buf_rd_init(&r, tpl->val, tpl->len);
    while (r.left > 0) {
        if (tlv_next(&r, &t) != OT_OK) {
            return APUTIL_SW_WRONG_DATA;
        }
        if (t.tag == WALLET_TAG_AID && t.len >= WALLET_MIN_AID && t.len <= WALLET_MAX_AID
            && v.aid_len == 0) {
            v.aid_len = (uint8_t)t.len;
            memcpy(v.aid, t.val, t.len);
        } else if (tpl->tag == WALLET_TAG_SERVICE && t.tag == WALLET_TAG_NAME && t.len >= 1
                   && t.len <= WALLET_MAX_NAME && !have_name) {
            v.name_len = (uint8_t)t.len;
            memcpy(v.name, t.val, t.len);
            have_name = true;
        } else if (tpl->tag == WALLET_TAG_SERVICE && t.tag == WALLET_TAG_STATUS && t.len == 1
                   && !have_status) {
            v.status = t.val[0];
            have_status = true;
        } else {
            return APUTIL_SW_WRONG_DATA;
        }
    }
    if (v.aid_len == 0 || (tpl->tag == WALLET_TAG_SERVICE && (!have_name || !have_status))) {
        return APUTIL_SW_WRONG_DATA;
    }
    i = wallet_find(s, v.aid, v.aid_len);
    if (tpl->tag == WALLET_TAG_REMOVE) {
        if (i < 0) {
            return APUTIL_SW_REF_NF;
        }
        memmove(&s->svc[i], &s->svc[i + 1], (size_t)(s->n - i - 1) * sizeof(s->svc[0]));
        s->n--;
        return 0;
    }
    if (i < 0) {
        if (s->n == WALLET_MAX_SERVICES) {
            return APUTIL_SW_NO_SPACE;
        }
        i = s->n++;
    }
    s->svc[i] = v;
    return 0;
}

static uint16_t wallet_perso(struct wallet_state *s, const uint8_t *d, size_t n)
{
    struct buf_rd r;
    struct tlv t;
    buf_rd_init(&r, d, n);
    while (r.left > 0) {
        if (tlv_next(&r, &t) != OT_OK
            || (t.tag != WALLET_TAG_SERVICE && t.tag != WALLET_TAG_REMOVE)) {
            return APUTIL_SW_WRONG_DATA;
        }
        uint16_t sw = wallet_apply(s, &t);
        if (sw != 0) {
            return sw;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- ops */

static ot_err wallet_install(struct se_applet_ctx *x, const uint8_t *params, size_t n)
{
    struct wallet_state s;
    memset(&s, 0, sizeof(s));
    if (n > 0 && wallet_perso(&s, params, n) != 0) {
        return OT_E_FORMAT;
    }
    return wallet_save(x, &s) == 0 ? OT_OK : OT_E_LIMIT;
}

static uint16_t wallet_get_data(const struct se_applet_ctx *x, const struct apdu *a,
                                struct buf_wr *out)
{
    struct wallet_state s;
    uint8_t tmp[4 + WALLET_MAX_SERVICES * (4 + 2 + WALLET_MAX_AID + 2 + WALLET_MAX_NAME + 3)];
    struct buf_wr w;
    size_t list, svc;
    size_t len = 0;
    uint16_t sw;

    if (a->p1 != 0 || a->p2 != WALLET_TAG_LIST) {
        return APUTIL_SW_REF_NF; /* GET DATA: unknown tag (GPCS 11.3.3) */
    }
    if (a->nc != 0) {
        return APUTIL_SW_WRONG_LENGTH;
    }
    if (wallet_load(x, &s) != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    buf_wr_init(&w, tmp, sizeof(tmp));
    tlv_open(&w, WALLET_TAG_LIST, &list);
    for (uint8_t i = 0; i < s.n; i++) {
        tlv_open(&w, WALLET_TAG_SERVICE, &svc);
        tlv_put(&w, WALLET_TAG_AID, s.svc[i].aid, s.svc[i].aid_len);
        tlv_put(&w, WALLET_TAG_NAME, s.svc[i].name, s.svc[i].name_len);
        tlv_put(&w, WALLET_TAG_STATUS, &s.svc[i].status, 1);
        tlv_close(&w, svc);
    }
    tlv_close(&w, list);
    if (buf_wr_finish(&w, &len) != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    sw = aputil_check_le(a, len);
    if (sw != 0) {
        return sw;
    }
    buf_wr_bytes(out, tmp, len);
    return out->err == OT_OK ? APUTIL_SW_OK : APUTIL_SW_NO_DIAG;
}

static uint16_t wallet_process(struct se_applet_ctx *x, const struct apdu *a, struct buf_wr *out)
{
    uint16_t sw;
    if (a->ins != WALLET_INS_GET_DATA) {
        sw = aputil_check_cla(a->cla, apdu_cla_is_proprietary(a->cla));
        return sw != 0 ? sw : APUTIL_SW_INS;
    }
    sw = aputil_check_cla(a->cla, true);
    return sw != 0 ? sw : wallet_get_data(x, a, out);
}

static uint16_t wallet_personalize(struct se_applet_ctx *x, uint8_t p1, uint8_t p2,
                                   const uint8_t *d, size_t n)
{
    struct wallet_state s;
    enum aputil_sd_fmt fmt;
    uint16_t sw;

    (void)p2;
    sw = aputil_perso_check(p1, n, false, &fmt);
    if (sw != 0) {
        return sw;
    }
    if (wallet_load(x, &s) != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    sw = wallet_perso(&s, d, n);
    if (sw == 0) {
        sw = wallet_save(x, &s);
    }
    return sw == 0 ? APUTIL_SW_OK : sw;
}

const struct se_applet_ops se_wallet_ops = {
    .name = "wallet",
    .pkg_aid = wallet_pkg,
    .pkg_aid_len = sizeof(wallet_pkg),
    .module_aid = wallet_mod,
    .module_aid_len = sizeof(wallet_mod),
    .payment = false,
    .install = wallet_install,
    .select = aputil_select_fci,
    .process = wallet_process,
    .personalize = wallet_personalize,
    .wipe = NULL,
    .ppse_entry = NULL,
};
