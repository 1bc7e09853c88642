#include "gp/cmd.h"

#define OT_LOG_COMPONENT "gp.cmd"
#include "core/apdu.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/tlv.h"
#include "crypto/kcv.h"
#include "crypto/keywrap.h"
#include "gp/privs.h"

#include <string.h>

/* The command data field is assembled here before the header is written, so
 * that a data field over 255 bytes is reported as OT_E_TOO_LONG rather than as
 * a small output buffer. */
struct gp_data {
    struct buf_wr w;
    uint8_t b[GP_MAX_DATA];
};

static void data_init(struct gp_data *d)
{
    buf_wr_init(&d->w, d->b, sizeof d->b);
}

/* Writes CLA INS P1 P2 [Lc data] [Le=00]. */
static ot_err emit(uint8_t cla, uint8_t ch, uint8_t ins, uint8_t p1, uint8_t p2,
                   const uint8_t *data, size_t nc, bool le, uint8_t *out, size_t *len)
{
    ot_err err = OT_OK;
    uint8_t c;
    if (!len || (!out && *len > 0) || (!data && nc > 0)) {
        OT_FAIL(OT_E_ARG);
    }
    if (nc > GP_MAX_DATA) {
        OT_FAIL(OT_E_TOO_LONG);
    }
    OT_TRY(apdu_cla_with_channel(cla, ch, &c));
    struct buf_wr w;
    buf_wr_init(&w, out, *len);
    buf_wr_u8(&w, c);
    buf_wr_u8(&w, ins);
    buf_wr_u8(&w, p1);
    buf_wr_u8(&w, p2);
    if (nc > 0) {
        buf_wr_u8(&w, (uint8_t)nc);
        buf_wr_bytes(&w, data, nc);
    }
    if (le) {
        buf_wr_u8(&w, 0x00);
    }
    err = buf_wr_finish(&w, len);
out:
    return err;
}

/* Finishes a data field built in d and emits the command. */
static ot_err emit_data(struct gp_data *d, uint8_t cla, uint8_t ch, uint8_t ins, uint8_t p1,
                        uint8_t p2, bool le, uint8_t *out, size_t *len)
{
    if (d->w.err == OT_E_BUF_SMALL) {
        OT_LOG_DEBUG("command data of %zu bytes exceeds %u", d->w.need, GP_MAX_DATA);
        return OT_E_TOO_LONG;
    }
    if (d->w.err != OT_OK) {
        return d->w.err;
    }
    return emit(cla, ch, ins, p1, p2, d->b, d->w.len, le, out, len);
}

/* An AID argument: NULL with a length is OT_E_ARG, a length outside 5-16
 * OT_E_RANGE; optional AIDs may be empty, required ones may not (OT_E_ARG). */
static ot_err check_aid(const uint8_t *aid, size_t n, bool optional)
{
    if (n == 0) {
        return optional ? OT_OK : OT_E_ARG;
    }
    if (!aid) {
        return OT_E_ARG;
    }
    if (n < GP_AID_MIN || n > GP_AID_MAX) {
        return OT_E_RANGE;
    }
    return OT_OK;
}

static ot_err check_bytes(const uint8_t *p, size_t n)
{
    return (!p && n > 0) ? OT_E_ARG : OT_OK;
}

/* Length byte + value. */
static void put_lv(struct buf_wr *w, const uint8_t *v, size_t n)
{
    buf_wr_u8(w, (uint8_t)n);
    buf_wr_bytes(w, v, n);
}

/* BER length (1-3 bytes, reference §1.1 "L3") + value. */
static void put_l3v(struct buf_wr *w, const uint8_t *v, size_t n)
{
    tlv_put_len(w, n);
    buf_wr_bytes(w, v, n);
}

ot_err gp_cmd_select(uint8_t ch, const uint8_t *aid, size_t aid_len, bool next, uint8_t *out,
                     size_t *len)
{
    if (aid_len == 0) {
        if (next) {
            return OT_E_ARG;
        }
        return emit(GP_CLA_ISO, ch, GP_INS_SELECT, GP_SELECT_P1_BY_NAME, GP_SELECT_P2_FIRST, NULL,
                    0, true, out, len);
    }
    if (!aid) {
        return OT_E_ARG;
    }
    if (aid_len > GP_AID_MAX) {
        return OT_E_RANGE;
    }
    return emit(GP_CLA_ISO, ch, GP_INS_SELECT, GP_SELECT_P1_BY_NAME,
                next ? GP_SELECT_P2_NEXT : GP_SELECT_P2_FIRST, aid, aid_len, true, out, len);
}

/* ---- INSTALL ---- */

static void put_quota(struct buf_wr *w, uint8_t tag, uint32_t v)
{
    if (v == 0) {
        return;
    }
    buf_wr_u8(w, tag);
    if (v <= 0xFFFFu) {
        buf_wr_u8(w, 2);
        buf_wr_u16be(w, (uint16_t)v);
    } else {
        buf_wr_u8(w, 4);
        buf_wr_u16be(w, (uint16_t)(v >> 16));
        buf_wr_u16be(w, (uint16_t)v);
    }
}

ot_err gp_install_params_encode(const struct gp_install_params *p, uint8_t *out, size_t *len)
{
    ot_err err = OT_OK;
    struct gp_data d;
    if (!p || !len || (!out && *len > 0)) {
        OT_FAIL(OT_E_ARG);
    }
    OT_TRY(check_bytes(p->app_params, p->app_params_len));
    OT_TRY(check_bytes(p->ts102226, p->ts102226_len));
    OT_TRY(check_bytes(p->sys_extra, p->sys_extra_len));
    OT_TRY(check_bytes(p->uicc, p->uicc_len));
    data_init(&d);
    if (p->with_c9 || p->app_params_len > 0) {
        tlv_put(&d.w, GP_TAG_APP_PARAMS, p->app_params, p->app_params_len);
    }
    if (p->nv_code_min || p->nv_data_quota || p->volatile_quota || p->ts102226_len
        || p->sys_extra_len) {
        size_t mark;
        tlv_open(&d.w, GP_TAG_SYS_PARAMS, &mark);
        put_quota(&d.w, GP_TAG_NV_CODE_MIN, p->nv_code_min);
        put_quota(&d.w, GP_TAG_NV_DATA_MIN, p->nv_data_quota);
        put_quota(&d.w, GP_TAG_VOLATILE_MIN, p->volatile_quota);
        if (p->ts102226_len > 0) {
            tlv_put(&d.w, GP_TAG_TS102226_SYS, p->ts102226, p->ts102226_len);
        }
        buf_wr_bytes(&d.w, p->sys_extra, p->sys_extra_len);
        tlv_close(&d.w, mark);
    }
    if (p->uicc_len > 0) {
        tlv_put(&d.w, GP_TAG_UICC_PARAMS, p->uicc, p->uicc_len);
    }
    if (d.w.err == OT_E_BUF_SMALL) {
        OT_FAIL(OT_E_TOO_LONG);
    }
    OT_TRY(d.w.err);
    if (*len < d.w.len) {
        *len = d.w.len;
        OT_FAIL(OT_E_BUF_SMALL);
    }
    memcpy(out, d.b, d.w.len);
    *len = d.w.len;
out:
    return err;
}

static ot_err check_privs(const uint8_t *p, size_t n, bool optional)
{
    if (check_bytes(p, n) != OT_OK) {
        return OT_E_ARG;
    }
    if (n == 0) {
        return optional ? OT_OK : OT_E_ARG;
    }
    if (n != 1 && n != 3) {
        return OT_E_ARG;
    }
    /* Only the rules within the given bytes can be checked: a 1-byte field
     * is validated as byte 1 alone (all its rules live in byte 1). */
    uint32_t v = n == 3 ? gp_privs_decode(p) : (uint32_t)p[0] << 16;
    return gp_privs_validate(v, NULL);
}

enum install_layout {
    LAYOUT_LOAD,
    LAYOUT_INSTALL,
    LAYOUT_MAKE_SELECTABLE,
    LAYOUT_EXTRADITION,
    LAYOUT_REGISTRY_UPDATE,
    LAYOUT_PERSO,
};

static ot_err install_layout_of(uint8_t p1, uint8_t p2, enum install_layout *out)
{
    uint8_t role = p1 & (uint8_t)~GP_P1_MORE;
    if (role == GP_INSTALL_FOR_LOAD_INSTALL_SEL) {
        if (p2 == GP_INSTALL_P2_COMBINED_BEGIN) {
            *out = LAYOUT_LOAD;
            return OT_OK;
        }
        if (p2 == GP_INSTALL_P2_COMBINED_END) {
            *out = LAYOUT_INSTALL;
            return OT_OK;
        }
        return OT_E_ARG;
    }
    if (p2 != GP_INSTALL_P2_NONE) {
        return OT_E_ARG;
    }
    switch (role) {
    case GP_INSTALL_FOR_LOAD:
        *out = LAYOUT_LOAD;
        return OT_OK;
    case GP_INSTALL_FOR_INSTALL:
    case GP_INSTALL_FOR_INSTALL_SELECTABLE:
        *out = LAYOUT_INSTALL;
        return OT_OK;
    case GP_INSTALL_FOR_MAKE_SELECTABLE:
        *out = LAYOUT_MAKE_SELECTABLE;
        return OT_OK;
    case GP_INSTALL_FOR_EXTRADITION:
        *out = LAYOUT_EXTRADITION;
        return OT_OK;
    case GP_INSTALL_FOR_REGISTRY_UPDATE:
        *out = LAYOUT_REGISTRY_UPDATE;
        return OT_OK;
    case GP_INSTALL_FOR_PERSONALIZATION:
        *out = LAYOUT_PERSO;
        return OT_OK;
    default:
        return OT_E_ARG;
    }
}

/* Fields a layout does not use must be empty. */
static bool unused_empty(const struct gp_install_args *a, bool elf, bool module, bool app, bool sd,
                         bool hash, bool privs, bool params)
{
    return (elf || a->elf_aid_len == 0) && (module || a->module_aid_len == 0)
           && (app || a->app_aid_len == 0) && (sd || a->sd_aid_len == 0)
           && (hash || a->hash_len == 0) && (privs || a->privs_len == 0)
           && (params || (a->params_len == 0 && a->token_len == 0));
}

ot_err gp_cmd_install(uint8_t ch, uint8_t p1, uint8_t p2, const struct gp_install_args *a,
                      uint8_t *out, size_t *len)
{
    ot_err err = OT_OK;
    enum install_layout layout;
    struct gp_data d;
    if (!a) {
        OT_FAIL(OT_E_ARG);
    }
    OT_TRY(install_layout_of(p1, p2, &layout));
    OT_TRY(check_bytes(a->params, a->params_len));
    OT_TRY(check_bytes(a->token, a->token_len));
    OT_TRY(check_bytes(a->hash, a->hash_len));
    data_init(&d);
    switch (layout) {
    case LAYOUT_LOAD:
        if (!unused_empty(a, true, false, false, true, true, false, true)) {
            OT_FAIL(OT_E_ARG);
        }
        OT_TRY(check_aid(a->elf_aid, a->elf_aid_len, false));
        OT_TRY(check_aid(a->sd_aid, a->sd_aid_len, true));
        if (a->hash_len > 0x7F) {
            OT_FAIL(OT_E_RANGE);
        }
        put_lv(&d.w, a->elf_aid, a->elf_aid_len);
        put_lv(&d.w, a->sd_aid, a->sd_aid_len);
        put_lv(&d.w, a->hash, a->hash_len);
        put_l3v(&d.w, a->params, a->params_len);
        put_l3v(&d.w, a->token, a->token_len);
        break;
    case LAYOUT_INSTALL: {
        static const uint8_t empty_c9[] = {GP_TAG_APP_PARAMS, 0x00};
        if (!unused_empty(a, true, true, true, false, false, true, true)) {
            OT_FAIL(OT_E_ARG);
        }
        OT_TRY(check_aid(a->elf_aid, a->elf_aid_len, false));
        OT_TRY(check_aid(a->module_aid, a->module_aid_len, false));
        OT_TRY(check_aid(a->app_aid, a->app_aid_len, false));
        OT_TRY(check_privs(a->privs, a->privs_len, false));
        /* GPCS 11.5.2.3.7: the install parameters field is at least C9 00. */
        if (a->params_len > 0 && a->params[0] != GP_TAG_APP_PARAMS) {
            OT_FAIL(OT_E_ARG);
        }
        put_lv(&d.w, a->elf_aid, a->elf_aid_len);
        put_lv(&d.w, a->module_aid, a->module_aid_len);
        put_lv(&d.w, a->app_aid, a->app_aid_len);
        put_lv(&d.w, a->privs, a->privs_len);
        if (a->params_len > 0) {
            put_l3v(&d.w, a->params, a->params_len);
        } else {
            put_l3v(&d.w, empty_c9, sizeof empty_c9);
        }
        put_l3v(&d.w, a->token, a->token_len);
        break;
    }
    case LAYOUT_MAKE_SELECTABLE:
        if (!unused_empty(a, false, false, true, false, false, true, true)) {
            OT_FAIL(OT_E_ARG);
        }
        OT_TRY(check_aid(a->app_aid, a->app_aid_len, false));
        OT_TRY(check_privs(a->privs, a->privs_len, true));
        buf_wr_u8(&d.w, 0x00);
        buf_wr_u8(&d.w, 0x00);
        put_lv(&d.w, a->app_aid, a->app_aid_len);
        put_lv(&d.w, a->privs, a->privs_len);
        put_l3v(&d.w, a->params, a->params_len);
        put_l3v(&d.w, a->token, a->token_len);
        break;
    case LAYOUT_EXTRADITION:
        if (!unused_empty(a, false, false, true, true, false, false, true)) {
            OT_FAIL(OT_E_ARG);
        }
        OT_TRY(check_aid(a->sd_aid, a->sd_aid_len, false));
        OT_TRY(check_aid(a->app_aid, a->app_aid_len, false));
        put_lv(&d.w, a->sd_aid, a->sd_aid_len);
        buf_wr_u8(&d.w, 0x00);
        put_lv(&d.w, a->app_aid, a->app_aid_len);
        buf_wr_u8(&d.w, 0x00);
        put_l3v(&d.w, a->params, a->params_len);
        put_l3v(&d.w, a->token, a->token_len);
        break;
    case LAYOUT_REGISTRY_UPDATE:
        if (!unused_empty(a, false, false, true, true, false, true, true)) {
            OT_FAIL(OT_E_ARG);
        }
        OT_TRY(check_aid(a->sd_aid, a->sd_aid_len, true));
        OT_TRY(check_aid(a->app_aid, a->app_aid_len, true));
        OT_TRY(check_privs(a->privs, a->privs_len, true));
        put_lv(&d.w, a->sd_aid, a->sd_aid_len);
        buf_wr_u8(&d.w, 0x00);
        put_lv(&d.w, a->app_aid, a->app_aid_len);
        put_lv(&d.w, a->privs, a->privs_len);
        put_l3v(&d.w, a->params, a->params_len);
        put_l3v(&d.w, a->token, a->token_len);
        break;
    case LAYOUT_PERSO:
        if (!unused_empty(a, false, false, true, false, false, false, false)) {
            OT_FAIL(OT_E_ARG);
        }
        OT_TRY(check_aid(a->app_aid, a->app_aid_len, false));
        buf_wr_u8(&d.w, 0x00);
        buf_wr_u8(&d.w, 0x00);
        put_lv(&d.w, a->app_aid, a->app_aid_len);
        buf_wr_u8(&d.w, 0x00);
        buf_wr_u8(&d.w, 0x00);
        buf_wr_u8(&d.w, 0x00);
        break;
    }
    if (a->more) {
        p1 |= GP_P1_MORE;
    }
    OT_TRY(emit_data(&d, GP_CLA, ch, GP_INS_INSTALL, p1, p2, true, out, len));
out:
    return err;
}

ot_err gp_cmd_install_for_load(uint8_t ch, const struct gp_install_args *a, uint8_t *out,
                               size_t *len)
{
    return gp_cmd_install(ch, GP_INSTALL_FOR_LOAD, GP_INSTALL_P2_NONE, a, out, len);
}

ot_err gp_cmd_install_for_install(uint8_t ch, const struct gp_install_args *a, bool make_selectable,
                                  uint8_t *out, size_t *len)
{
    return gp_cmd_install(
        ch, make_selectable ? GP_INSTALL_FOR_INSTALL_SELECTABLE : GP_INSTALL_FOR_INSTALL,
        GP_INSTALL_P2_NONE, a, out, len);
}

ot_err gp_cmd_install_for_make_selectable(uint8_t ch, const struct gp_install_args *a, uint8_t *out,
                                          size_t *len)
{
    return gp_cmd_install(ch, GP_INSTALL_FOR_MAKE_SELECTABLE, GP_INSTALL_P2_NONE, a, out, len);
}

ot_err gp_cmd_install_for_extradition(uint8_t ch, const struct gp_install_args *a, uint8_t *out,
                                      size_t *len)
{
    return gp_cmd_install(ch, GP_INSTALL_FOR_EXTRADITION, GP_INSTALL_P2_NONE, a, out, len);
}

ot_err gp_cmd_install_for_registry_update(uint8_t ch, const struct gp_install_args *a, uint8_t *out,
                                          size_t *len)
{
    return gp_cmd_install(ch, GP_INSTALL_FOR_REGISTRY_UPDATE, GP_INSTALL_P2_NONE, a, out, len);
}

ot_err gp_cmd_install_for_personalization(uint8_t ch, const uint8_t *app_aid, size_t app_aid_len,
                                          uint8_t *out, size_t *len)
{
    struct gp_install_args a = {.app_aid = app_aid, .app_aid_len = app_aid_len};
    return gp_cmd_install(ch, GP_INSTALL_FOR_PERSONALIZATION, GP_INSTALL_P2_NONE, &a, out, len);
}

/* ---- DELETE ---- */

ot_err gp_cmd_delete(uint8_t ch, const struct gp_delete_args *a, uint8_t *out, size_t *len)
{
    ot_err err = OT_OK;
    struct gp_data d;
    if (!a) {
        OT_FAIL(OT_E_ARG);
    }
    OT_TRY(check_aid(a->aid, a->aid_len, false));
    OT_TRY(check_bytes(a->crt, a->crt_len));
    OT_TRY(check_bytes(a->token, a->token_len));
    data_init(&d);
    tlv_put(&d.w, GP_TAG_AID, a->aid, a->aid_len);
    if (a->crt_len > 0) {
        tlv_put(&d.w, GP_TAG_TOKEN_CRT, a->crt, a->crt_len);
    }
    if (a->token_len > 0) {
        tlv_put(&d.w, GP_TAG_TOKEN, a->token, a->token_len);
    }
    OT_TRY(emit_data(&d, GP_CLA, ch, GP_INS_DELETE, a->more ? GP_P1_MORE : 0x00,
                     a->related ? GP_DELETE_P2_RELATED : GP_DELETE_P2_OBJECT, true, out, len));
out:
    return err;
}

ot_err gp_cmd_delete_key(uint8_t ch, int kid, int kvn, bool more, uint8_t *out, size_t *len)
{
    struct gp_data d;
    if (kid < 0 && kvn < 0) {
        return OT_E_ARG;
    }
    if (kid > 0xFF || kvn > 0xFF || kid < -1 || kvn < -1) {
        return OT_E_RANGE;
    }
    data_init(&d);
    if (kid >= 0) {
        uint8_t v = (uint8_t)kid;
        tlv_put(&d.w, GP_TAG_DELETE_KID, &v, 1);
    }
    if (kvn >= 0) {
        uint8_t v = (uint8_t)kvn;
        tlv_put(&d.w, GP_TAG_DELETE_KVN, &v, 1);
    }
    return emit_data(&d, GP_CLA, ch, GP_INS_DELETE, more ? GP_P1_MORE : 0x00, GP_DELETE_P2_OBJECT,
                     true, out, len);
}

/* ---- GET STATUS ---- */

ot_err gp_cmd_get_status(uint8_t ch, const struct gp_status_query *q, uint8_t *out, size_t *len)
{
    ot_err err = OT_OK;
    struct gp_data d;
    if (!q || (!q->tags && q->ntags > 0)) {
        OT_FAIL(OT_E_ARG);
    }
    OT_TRY(check_bytes(q->aid, q->aid_len));
    if (q->aid_len > GP_AID_MAX) {
        OT_FAIL(OT_E_RANGE);
    }
    switch (q->p1) {
    case GP_STATUS_P1_ISD:
        /* GPCS 11.4.2.1: "get next" is not defined for the ISD. */
        if (q->next) {
            OT_FAIL(OT_E_ARG);
        }
        break;
    case GP_STATUS_P1_APPS:
    case GP_STATUS_P1_ELF:
    case GP_STATUS_P1_ELF_MODULES:
        break;
    default:
        OT_FAIL(OT_E_ARG);
    }
    data_init(&d);
    tlv_put(&d.w, GP_TAG_AID, q->aid, q->aid_len);
    if (q->tags) {
        size_t mark;
        tlv_open(&d.w, GP_TAG_TAG_LIST, &mark);
        for (size_t i = 0; i < q->ntags; i++) {
            if (q->tags[i] == 0 || q->tags[i] > 0xFFFFFFu) {
                OT_FAIL(OT_E_ARG);
            }
            tlv_put_tag(&d.w, q->tags[i]);
        }
        tlv_close(&d.w, mark);
    }
    uint8_t p2 = (uint8_t)((q->tlv ? GP_STATUS_P2_TLV : 0) | (q->next ? GP_STATUS_P2_NEXT : 0));
    OT_TRY(emit_data(&d, GP_CLA, ch, GP_INS_GET_STATUS, q->p1, p2, true, out, len));
out:
    return err;
}

/* ---- SET STATUS ---- */

ot_err gp_cmd_set_status(uint8_t ch, uint8_t p1, uint8_t p2, const uint8_t *aid, size_t aid_len,
                         uint8_t *out, size_t *len)
{
    ot_err err = OT_OK;
    switch (p1) {
    case GP_SET_STATUS_P1_CARD:
        /* GPCS 11.10.2.2: only these card transitions can be requested. */
        if (p2 != GP_LCS_CARD_INITIALIZED && p2 != GP_LCS_CARD_SECURED && p2 != GP_LCS_CARD_LOCKED
            && p2 != GP_LCS_CARD_TERMINATED) {
            OT_FAIL(OT_E_RANGE);
        }
        OT_TRY(check_aid(aid, aid_len, true));
        break;
    case GP_SET_STATUS_P1_APP:
    case GP_SET_STATUS_P1_SD_AND_APPS:
        OT_TRY(check_aid(aid, aid_len, false));
        break;
    default:
        OT_FAIL(OT_E_ARG);
    }
    OT_TRY(emit(GP_CLA, ch, GP_INS_SET_STATUS, p1, p2, aid, aid_len, false, out, len));
out:
    return err;
}

/* ---- PUT KEY ---- */

#define GP_KEY_MAX 32u

/* One key data field (GPCS 11.8.2.3, Amd D 7.2.2 Table 7-10). */
static ot_err put_key_field(struct buf_wr *w, const struct gp_put_key_key *k, const uint8_t *dek,
                            size_t dek_len, uint8_t kcv[GP_KCV_LEN])
{
    ot_err err = OT_OK;
    uint8_t ct[GP_KEY_MAX];
    size_t ct_len = sizeof ct;
    if (!k->value) {
        OT_FAIL(OT_E_ARG);
    }
    if (k->type == GP_KEY_TYPE_AES) {
        if (k->len != 16 && k->len != 24 && k->len != 32) {
            OT_FAIL(OT_E_KEY);
        }
        if (dek_len != 16 && dek_len != 24 && dek_len != 32) {
            OT_FAIL(OT_E_KEY);
        }
        /* keywrap pads an AES-192 key to 32 bytes (Amd D Table 7-10); the
         * clear length precedes the encrypted block. */
        OT_TRY(keywrap_aes_encrypt(dek, dek_len, k->value, k->len, ct, &ct_len));
        if (ct_len != keywrap_aes_wrapped_len(k->len)) {
            OT_FAIL(OT_E_INTERNAL);
        }
        OT_TRY(kcv_aes(k->value, k->len, kcv));
        buf_wr_u8(w, GP_KEY_TYPE_AES);
        tlv_put_len(w, 1 + ct_len);
        buf_wr_u8(w, (uint8_t)k->len);
        buf_wr_bytes(w, ct, ct_len);
    } else if (k->type == GP_KEY_TYPE_DES) {
        if (k->len != 16 && k->len != 24) {
            OT_FAIL(OT_E_KEY);
        }
        if (dek_len != 16) {
            OT_FAIL(OT_E_KEY);
        }
        OT_TRY(keywrap_des_encrypt(dek, k->value, k->len, ct, &ct_len));
        if (ct_len != k->len) {
            OT_FAIL(OT_E_INTERNAL);
        }
        OT_TRY(kcv_des3(k->value, k->len, kcv));
        buf_wr_u8(w, GP_KEY_TYPE_DES);
        tlv_put_len(w, ct_len);
        buf_wr_bytes(w, ct, ct_len);
    } else {
        OT_FAIL(OT_E_UNSUPPORTED);
    }
    buf_wr_u8(w, GP_KCV_LEN);
    buf_wr_bytes(w, kcv, GP_KCV_LEN);
out:
    ot_mem_wipe(ct, sizeof ct);
    return err;
}

ot_err gp_cmd_put_key(uint8_t ch, const struct gp_put_key_args *a, uint8_t *out, size_t *len,
                      struct gp_put_key_expect *expect)
{
    ot_err err = OT_OK;
    struct gp_data d;
    struct gp_put_key_expect exp;
    memset(&exp, 0, sizeof exp);
    data_init(&d);
    if (!a || !a->keys || !a->dek) {
        OT_FAIL(OT_E_ARG);
    }
    if (a->nkeys == 0 || a->nkeys > GP_PUT_KEY_MAX_KEYS) {
        OT_FAIL(OT_E_ARG);
    }
    if (a->new_kvn == 0 || a->new_kvn > 0x7F || a->old_kvn > 0x7F || a->kid > 0x7F
        || (size_t)a->kid + a->nkeys - 1 > 0x7F) {
        OT_FAIL(OT_E_ARG);
    }
    exp.kvn = a->new_kvn;
    exp.nkeys = a->nkeys;
    buf_wr_u8(&d.w, a->new_kvn);
    for (size_t i = 0; i < a->nkeys; i++) {
        OT_TRY(put_key_field(&d.w, &a->keys[i], a->dek, a->dek_len, exp.kcv[i]));
    }
    uint8_t p1 = (uint8_t)(a->old_kvn | (a->more ? GP_P1_MORE : 0));
    uint8_t p2 = (uint8_t)(a->kid | (a->nkeys > 1 ? GP_PUT_KEY_P2_MULTI : 0));
    OT_TRY(emit_data(&d, GP_CLA, ch, GP_INS_PUT_KEY, p1, p2, true, out, len));
    if (expect) {
        *expect = exp;
    }
out:
    ot_mem_wipe(d.b, sizeof d.b);
    return err;
}

/* ---- STORE DATA ---- */

static ot_err check_store_p1(uint8_t p1)
{
    if ((p1 & GP_STORE_P1_RFU_MASK) != 0 || (p1 & GP_STORE_P1_FMT_MASK) == GP_STORE_P1_FMT_MASK
        || (p1 & GP_STORE_P1_ENC_MASK) == 0x40u) {
        return OT_E_ARG;
    }
    return OT_OK;
}

ot_err gp_cmd_store_data(uint8_t ch, uint8_t p1, uint8_t block, const uint8_t *data, size_t n,
                         uint8_t *out, size_t *len)
{
    if (n == 0 || !data) {
        return OT_E_ARG;
    }
    if (check_store_p1(p1) != OT_OK) {
        return OT_E_ARG;
    }
    return emit(GP_CLA, ch, GP_INS_STORE_DATA, p1, block, data, n, (p1 & GP_STORE_P1_RESPONSE) != 0,
                out, len);
}

ot_err gp_store_split_init(struct gp_store_split *s, const uint8_t *data, size_t n, uint8_t p1,
                           size_t block_max)
{
    if (!s || !data || n == 0 || block_max > GP_MAX_DATA) {
        return OT_E_ARG;
    }
    p1 &= (uint8_t)~GP_STORE_P1_LAST;
    if (check_store_p1(p1) != OT_OK) {
        return OT_E_ARG;
    }
    s->data = data;
    s->left = n;
    s->p1 = p1;
    s->block_max = block_max == 0 ? GP_MAX_DATA : block_max;
    s->block = 0;
    s->done = false;
    /* GPCS 11.11.2.2: block numbers run 00-FF. */
    if ((n + s->block_max - 1) / s->block_max > 256u) {
        return OT_E_LIMIT;
    }
    return OT_OK;
}

ot_err gp_store_split_next(struct gp_store_split *s, uint8_t ch, uint8_t *out, size_t *len,
                           bool *last)
{
    if (!s || !last) {
        return OT_E_ARG;
    }
    if (s->done) {
        return OT_E_STATE;
    }
    if (s->block > 0xFFu) {
        return OT_E_LIMIT;
    }
    size_t n = s->left < s->block_max ? s->left : s->block_max;
    bool fin = n == s->left;
    uint8_t p1 = (uint8_t)(s->p1 | (fin ? GP_STORE_P1_LAST : 0));
    ot_err err = gp_cmd_store_data(ch, p1, (uint8_t)s->block, s->data, n, out, len);
    if (err != OT_OK) {
        return err; /* state unchanged: the caller may retry with a bigger buffer */
    }
    s->data += n;
    s->left -= n;
    s->block++;
    s->done = fin;
    *last = fin;
    return OT_OK;
}

/* ---- GET DATA ---- */

ot_err gp_cmd_get_data(uint8_t ch, uint16_t tag, uint8_t *out, size_t *len)
{
    /* GPCS 11.3.2: 2F00 needs the tag list 5C 00 to return every entry. */
    static const uint8_t all_tags[] = {GP_TAG_TAG_LIST, 0x00};
    uint8_t p1 = (uint8_t)(tag >> 8);
    uint8_t p2 = (uint8_t)tag;
    if (tag == GP_TAG_APP_LIST) {
        return emit(GP_CLA, ch, GP_INS_GET_DATA, p1, p2, all_tags, sizeof all_tags, true, out, len);
    }
    return emit(GP_CLA, ch, GP_INS_GET_DATA, p1, p2, NULL, 0, true, out, len);
}
