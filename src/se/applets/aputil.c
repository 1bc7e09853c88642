/* Helpers shared by the native applet modules. */
#include "se/applets/aputil.h"

#define OT_LOG_COMPONENT "se.applet"
#include "core/log.h"
#include "core/tlv.h"

#include <string.h>

uint16_t aputil_check_cla(uint8_t cla, bool proprietary)
{
    uint8_t ch;
    if (apdu_cla_channel(cla, &ch) != OT_OK) {
        return APUTIL_SW_CLA;
    }
    if (apdu_cla_is_proprietary(cla) != proprietary) {
        return APUTIL_SW_CLA;
    }
    if (apdu_cla_has_sm(cla)) {
        return APUTIL_SW_SM_UNSUPPORTED;
    }
    if ((cla & 0x10u) != 0) { /* ISO 7816-4 5.4.1: command chaining */
        return APUTIL_SW_CHAIN_UNSUPP;
    }
    return 0;
}

uint16_t aputil_check_le(const struct apdu *a, size_t resp_len)
{
    if (a->ne == 0 || a->ne >= resp_len || a->extended || a->ne >= 256) {
        return 0;
    }
    return (uint16_t)(APUTIL_SW_WRONG_LE | (resp_len > 255 ? 0u : (unsigned)resp_len));
}

uint16_t aputil_store_data_fmt(uint8_t p1, enum aputil_sd_fmt *fmt)
{
    if ((p1 & 0x60u) != 0) { /* b7b6: encrypted values */
        return APUTIL_SW_WRONG_DATA;
    }
    switch (p1 & 0x18u) { /* b5b4: structure */
    case 0x08u:
        *fmt = APUTIL_FMT_DGI;
        return 0;
    case 0x10u:
        *fmt = APUTIL_FMT_BER;
        return 0;
    default:
        return APUTIL_SW_WRONG_DATA;
    }
}

uint16_t aputil_perso_check(uint8_t p1, size_t n, bool dgi_ok, enum aputil_sd_fmt *fmt)
{
    uint16_t sw = aputil_store_data_fmt(p1, fmt);
    if (sw != 0) {
        return sw;
    }
    if (*fmt == APUTIL_FMT_DGI && !dgi_ok) {
        return APUTIL_SW_WRONG_DATA;
    }
    return n == 0 ? APUTIL_SW_WRONG_LENGTH : 0;
}

ot_err aputil_dgi_next(struct buf_rd *r, uint16_t *dgi, const uint8_t **v, size_t *n)
{
    struct buf_rd save = *r;
    ot_err err = OT_OK;
    uint8_t l8 = 0;
    uint16_t len = 0;

    OT_TRY(buf_rd_u16be(r, dgi));
    OT_TRY(buf_rd_u8(r, &l8));
    if (l8 == 0xFFu) {
        OT_TRY(buf_rd_u16be(r, &len));
    } else {
        len = l8;
    }
    OT_TRY(buf_rd_take(r, len, v));
    *n = len;
out:
    if (err != OT_OK) {
        *r = save;
    }
    return err;
}

ot_err aputil_dol_len(const uint8_t *dol, size_t n, size_t *total)
{
    size_t i = 0;
    size_t sum = 0;
    while (i < n) {
        size_t tag_bytes = 1;
        if ((dol[i] & 0x1Fu) == 0x1Fu) {
            while (i + tag_bytes < n && (dol[i + tag_bytes] & 0x80u) != 0) {
                tag_bytes++;
            }
            tag_bytes++; /* the last subsequent byte */
        }
        if (tag_bytes > 3 || i + tag_bytes >= n) {
            return OT_E_FORMAT; /* no room for the length byte */
        }
        sum += dol[i + tag_bytes];
        i += tag_bytes + 1;
    }
    *total = sum;
    return OT_OK;
}

void aputil_put_lv(struct buf_wr *w, const uint8_t *p, size_t n)
{
    if (n > 255) {
        w->err = OT_E_RANGE;
        return;
    }
    buf_wr_u8(w, (uint8_t)n);
    buf_wr_bytes(w, p, n);
}

ot_err aputil_get_lv(struct buf_rd *r, uint8_t *dst, size_t cap, uint8_t *n)
{
    uint8_t len = 0;
    if (buf_rd_u8(r, &len) != OT_OK || len > cap || buf_rd_copy(r, dst, len) != OT_OK) {
        return OT_E_CORRUPT;
    }
    *n = len;
    return OT_OK;
}

uint16_t aputil_save(struct se_applet_ctx *x, const struct buf_wr *w)
{
    if (w->err != OT_OK) {
        return w->err == OT_E_BUF_SMALL ? APUTIL_SW_NO_SPACE : APUTIL_SW_NO_DIAG;
    }
    ot_err err = se_applet_set_data(x, w->p, w->len);
    if (err == OT_E_LIMIT) {
        return APUTIL_SW_NO_SPACE;
    }
    return err == OT_OK ? 0 : APUTIL_SW_MEMORY;
}

bool aputil_is_digits(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
    }
    return true;
}

ot_err aputil_blob_open(const struct se_applet_ctx *x, uint8_t version, struct buf_rd *r)
{
    uint8_t ver = 0;
    buf_rd_init(r, x->data, x->data_len);
    if (buf_rd_u8(r, &ver) != OT_OK || ver != version) {
        return OT_E_CORRUPT;
    }
    return OT_OK;
}

ot_err aputil_blob_close(const struct buf_rd *r, ot_err err, const char *module)
{
    if (err == OT_OK && r->left == 0) {
        return OT_OK;
    }
    OT_LOG_ERROR("%s data blob is corrupt", module);
    return OT_E_CORRUPT;
}

uint16_t aputil_select_fci(struct se_applet_ctx *x, struct buf_wr *out)
{
    size_t fci;
    memset(x->vol, 0, SE_APPLET_VOL_SIZE);
    tlv_open(out, 0x6Fu, &fci);
    tlv_put(out, 0x84u, x->aid, x->aid_len);
    tlv_close(out, fci);
    return out->err == OT_OK ? APUTIL_SW_OK : APUTIL_SW_NO_DIAG;
}
