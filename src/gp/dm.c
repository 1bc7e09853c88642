/* Delegated Management tokens and receipts, host side (see dm.h). */
#include "gp/dm.h"

#define OT_LOG_COMPONENT "gp.dm"
#include "core/buf.h"
#include "core/log.h"
#include "core/tlv.h"
#include "crypto/cmac.h"
#include "gp/cmd.h"

#include <string.h>

#define DM_INS_INSTALL  0xE6u
#define DM_INS_DELETE   0xE4u
#define DM_P1_MORE      0x80u
#define DM_FOR_PERSO    0x20u
#define DM_FOR_COMBINED 0x0Eu
#define DM_TAG_AID      0x4Fu
#define DM_TAG_TOKEN    0x9Eu
#define DM_CTR_LEN      2u

static bool dm_key_ok(const uint8_t *key, size_t len)
{
    return key != NULL && (len == 16 || len == 24 || len == 32);
}

/* AES-CMAC over a || b. */
static ot_err dm_cmac(const uint8_t *key, size_t key_len, const uint8_t *a, size_t an,
                      const uint8_t *b, size_t bn, uint8_t tag[CMAC_BLOCK])
{
    struct cmac *m = NULL;
    ot_err e = cmac_new(key, key_len, &m);
    if (e != OT_OK) {
        return e == OT_E_NOMEM ? e : OT_E_CRYPTO;
    }
    cmac_init(m);
    e = cmac_update(m, a, an);
    if (e == OT_OK) {
        e = cmac_update(m, b, bn);
    }
    if (e == OT_OK) {
        e = cmac_final(m, tag);
    }
    cmac_free(m);
    return e == OT_OK ? OT_OK : OT_E_CRYPTO;
}

/* ---------------------------------------------------------------- tokens */

/* The length of the data a DELETE token covers: every TLV before 9E; a 9E
 * already there or no 4F first: OT_E_FORMAT. */
static ot_err dm_delete_signed(const uint8_t *data, size_t nc)
{
    struct buf_rd r;
    bool first = true;
    buf_rd_init(&r, data, nc);
    while (r.left > 0) {
        struct tlv t;
        if (tlv_next(&r, &t) != OT_OK) {
            return OT_E_FORMAT;
        }
        if (t.tag == DM_TAG_TOKEN || (first && t.tag != DM_TAG_AID)) {
            return OT_E_FORMAT;
        }
        first = false;
    }
    return first ? OT_E_FORMAT : OT_OK;
}

ot_err gp_dm_token_sign(const uint8_t *key, size_t key_len, const uint8_t *cmd, size_t n,
                        uint8_t *out, size_t *out_len)
{
    if (!dm_key_ok(key, key_len) || cmd == NULL || out_len == NULL
        || (out == NULL && *out_len > 0)) {
        return OT_E_ARG;
    }
    if (n < 6 || (cmd[0] & 0xFCu) != GP_CLA) {
        return OT_E_APDU;
    }
    uint8_t ins = cmd[1], p1 = cmd[2], p2 = cmd[3];
    size_t nc = cmd[4];
    bool le = false;
    if (nc == 0 || (n != 5 + nc && n != 6 + nc)) {
        return OT_E_APDU;
    }
    if (n == 6 + nc) {
        if (cmd[5 + nc] != 0x00) {
            return OT_E_APDU;
        }
        le = true;
    }
    if ((p1 & DM_P1_MORE) != 0) {
        return OT_E_APDU; /* tokens over chained commands: not supported */
    }
    const uint8_t *data = cmd + 5;
    size_t signed_len;
    size_t add;
    if (ins == DM_INS_INSTALL) {
        if (p1 == DM_FOR_PERSO || p1 == DM_FOR_COMBINED || p2 != 0x00) {
            return OT_E_APDU;
        }
        if (data[nc - 1] != 0x00) {
            return OT_E_FORMAT; /* the token field is not empty */
        }
        signed_len = nc - 1;
        add = 1 + GP_DM_SIG_LEN; /* 10 || token in place of 00 */
    } else if (ins == DM_INS_DELETE) {
        if ((p2 & 0x7Fu) != 0) {
            return OT_E_APDU;
        }
        ot_err e = dm_delete_signed(data, nc);
        if (e != OT_OK) {
            return e;
        }
        signed_len = nc;
        add = 2 + GP_DM_SIG_LEN; /* 9E 10 token */
    } else {
        return OT_E_APDU;
    }
    if (signed_len + add > GP_MAX_DATA) {
        return OT_E_TOO_LONG;
    }
    size_t need = 5 + signed_len + add + (le ? 1u : 0u);
    if (*out_len < need) {
        *out_len = need;
        return OT_E_BUF_SMALL;
    }
    uint8_t hdr[3] = {(uint8_t)(p1 & (uint8_t)~DM_P1_MORE), p2, (uint8_t)signed_len};
    uint8_t tok[CMAC_BLOCK];
    ot_err e = dm_cmac(key, key_len, hdr, sizeof hdr, data, signed_len, tok);
    if (e != OT_OK) {
        return e;
    }
    size_t k = 0;
    out[k++] = cmd[0];
    out[k++] = ins;
    out[k++] = p1;
    out[k++] = p2;
    out[k++] = (uint8_t)(signed_len + add);
    memcpy(out + k, data, signed_len);
    k += signed_len;
    if (ins == DM_INS_DELETE) {
        out[k++] = DM_TAG_TOKEN;
    }
    out[k++] = GP_DM_SIG_LEN;
    memcpy(out + k, tok, GP_DM_SIG_LEN);
    k += GP_DM_SIG_LEN;
    if (le) {
        out[k++] = 0x00;
    }
    *out_len = k;
    ot_mem_wipe(tok, sizeof tok);
    return OT_OK;
}

/* ---------------------------------------------------------------- receipts */

/* BER length of one or two bytes (GPCS 11.1.6: 00-7F, 81 80-81 FF). */
static ot_err dm_rd_len(struct buf_rd *r, size_t *n)
{
    uint8_t b = 0;
    if (buf_rd_u8(r, &b) != OT_OK) {
        return OT_E_FORMAT;
    }
    if (b < 0x80u) {
        *n = b;
        return OT_OK;
    }
    if (b != 0x81u || buf_rd_u8(r, &b) != OT_OK || b < 0x80u) {
        return OT_E_FORMAT;
    }
    *n = b;
    return OT_OK;
}

/* One length-prefixed field (1-byte length) of the confirmation data. */
static ot_err dm_rd_lv(struct buf_rd *r, const uint8_t **p, size_t *n)
{
    uint8_t l = 0;
    if (buf_rd_u8(r, &l) != OT_OK || buf_rd_take(r, l, p) != OT_OK) {
        return OT_E_FORMAT;
    }
    *n = l;
    return OT_OK;
}

/* Parses the confirmation; *conf / *conf_len: the confirmation data (what
 * the receipt signs first). */
static ot_err dm_parse(const uint8_t *data, size_t n, struct gp_dm_confirmation *out,
                       const uint8_t **conf, size_t *conf_len)
{
    struct buf_rd r, c;
    size_t total = 0, rl = 0, l = 0;
    const uint8_t *body = NULL, *p = NULL;
    if (data == NULL || out == NULL) {
        return OT_E_ARG;
    }
    memset(out, 0, sizeof *out);
    buf_rd_init(&r, data, n);
    if (dm_rd_len(&r, &total) != OT_OK || buf_rd_take(&r, total, &body) != OT_OK || r.left != 0) {
        return OT_E_FORMAT;
    }
    if (total == 0) {
        return OT_E_NOT_FOUND;
    }
    buf_rd_init(&c, body, total);
    if (dm_rd_len(&c, &rl) != OT_OK || buf_rd_take(&c, rl, &p) != OT_OK) {
        return OT_E_FORMAT;
    }
    if (rl != GP_DM_SIG_LEN) {
        return OT_E_UNSUPPORTED;
    }
    memcpy(out->receipt, p, rl);
    out->receipt_len = rl;
    *conf = c.p;
    *conf_len = c.left;
    /* 02 counter, L SD unique data, [L token id [L digest]] */
    if (dm_rd_lv(&c, &p, &l) != OT_OK || l != DM_CTR_LEN) {
        return OT_E_FORMAT;
    }
    out->counter = (uint16_t)((p[0] << 8) | p[1]);
    if (dm_rd_lv(&c, &p, &l) != OT_OK || l == 0) {
        return OT_E_FORMAT;
    }
    if (l > GP_DM_UNIQUE_MAX) {
        return OT_E_UNSUPPORTED;
    }
    memcpy(out->sd_unique, p, l);
    out->sd_unique_len = l;
    if (c.left > 0) {
        if (dm_rd_lv(&c, &p, &l) != OT_OK) {
            return OT_E_FORMAT;
        }
        if (l > GP_DM_TOKEN_ID_MAX) {
            return OT_E_UNSUPPORTED;
        }
        if (l > 0) {
            memcpy(out->token_id, p, l);
        }
        out->token_id_len = l;
    }
    if (c.left > 0 && dm_rd_lv(&c, &p, &l) != OT_OK) { /* token data digest: not kept */
        return OT_E_FORMAT;
    }
    return c.left == 0 ? OT_OK : OT_E_FORMAT;
}

ot_err gp_dm_parse_confirmation(const uint8_t *data, size_t n, struct gp_dm_confirmation *out)
{
    const uint8_t *conf = NULL;
    size_t conf_len = 0;
    return dm_parse(data, n, out, &conf, &conf_len);
}

struct dm_body {
    uint8_t b[3 * 17 + 4 + 3 + GP_MAX_DATA];
    size_t len;
    bool bad;
};

static void dm_put(struct dm_body *d, const uint8_t *p, size_t n)
{
    if (d->bad || n > sizeof d->b - d->len) {
        d->bad = true;
        return;
    }
    if (n > 0) {
        memcpy(d->b + d->len, p, n);
    }
    d->len += n;
}

/* len || AID; the AID is mandatory (5-16 bytes) unless may_be_empty. */
static void dm_aid(struct dm_body *d, const uint8_t *p, size_t n, bool may_be_empty)
{
    if ((n == 0 && !may_be_empty) || (n > 0 && (p == NULL || n < 5 || n > 16))) {
        d->bad = true;
        return;
    }
    uint8_t l = (uint8_t)n;
    dm_put(d, &l, 1);
    dm_put(d, p, n);
}

/* The data after the confirmation data, per operation (Tables C-11..C-16). */
static ot_err dm_body_of(const struct gp_dm_expect *e, struct dm_body *d)
{
    memset(d, 0, sizeof *d);
    switch (e->op) {
    case GP_DM_LOAD:
        dm_aid(d, e->elf, e->elf_len, false);
        dm_aid(d, e->sd, e->sd_len, false);
        break;
    case GP_DM_INSTALL:
        dm_aid(d, e->elf, e->elf_len, false);
        dm_aid(d, e->app, e->app_len, false);
        break;
    case GP_DM_COMBINED:
        dm_aid(d, e->elf, e->elf_len, false);
        dm_aid(d, e->app, e->app_len, false);
        dm_aid(d, e->sd, e->sd_len, false);
        break;
    case GP_DM_EXTRADITE:
        dm_aid(d, e->old_sd, e->old_sd_len, false);
        dm_aid(d, e->app, e->app_len, false);
        dm_aid(d, e->sd, e->sd_len, false);
        break;
    case GP_DM_DELETE:
        dm_aid(d, e->app, e->app_len, false);
        break;
    case GP_DM_REGISTRY_UPDATE: {
        uint8_t l[3];
        size_t k = 0;
        dm_aid(d, e->old_sd, e->old_sd_len, true);
        dm_aid(d, e->app, e->app_len, false);
        dm_aid(d, e->sd, e->sd_len, true);
        if ((e->privs_len != 0 && e->privs_len != 1 && e->privs_len != 3)
            || (e->privs_len > 0 && e->privs == NULL) || (e->params_len > 0 && e->params == NULL)
            || e->params_len > GP_MAX_DATA) {
            return OT_E_ARG;
        }
        l[0] = (uint8_t)e->privs_len;
        dm_put(d, l, 1);
        dm_put(d, e->privs, e->privs_len);
        if (e->params_len > 0x7Fu) {
            l[k++] = 0x81;
        }
        l[k++] = (uint8_t)e->params_len;
        dm_put(d, l, k);
        dm_put(d, e->params, e->params_len);
        break;
    }
    default:
        return OT_E_ARG;
    }
    return d->bad ? OT_E_ARG : OT_OK;
}

ot_err gp_dm_receipt_verify(const uint8_t *key, size_t key_len, const struct gp_dm_expect *e,
                            const uint8_t *data, size_t n, struct gp_dm_confirmation *out)
{
    struct gp_dm_confirmation tmp;
    struct gp_dm_confirmation *cf = out != NULL ? out : &tmp;
    struct dm_body body;
    const uint8_t *conf = NULL;
    size_t conf_len = 0;
    uint8_t tag[CMAC_BLOCK];
    if (!dm_key_ok(key, key_len) || e == NULL || data == NULL) {
        return OT_E_ARG;
    }
    ot_err err = dm_body_of(e, &body);
    if (err != OT_OK) {
        return err;
    }
    err = dm_parse(data, n, cf, &conf, &conf_len);
    if (err != OT_OK) {
        return err;
    }
    err = dm_cmac(key, key_len, conf, conf_len, body.b, body.len, tag);
    if (err != OT_OK) {
        return err;
    }
    bool ok = ot_mem_equal_ct(tag, cf->receipt, GP_DM_SIG_LEN);
    ot_mem_wipe(tag, sizeof tag);
    if (!ok) {
        OT_LOG_DEBUG("receipt of op %d does not verify", (int)e->op);
        return OT_E_RMAC;
    }
    if (e->sd_unique != NULL
        && (e->sd_unique_len != cf->sd_unique_len
            || memcmp(e->sd_unique, cf->sd_unique, cf->sd_unique_len) != 0)) {
        return OT_E_CONFLICT;
    }
    if (cf->counter < e->min_counter) {
        return OT_E_REPLAY;
    }
    return OT_OK;
}

ot_err gp_dm_parse_counter(const uint8_t *data, size_t n, uint16_t *counter)
{
    if (data == NULL || counter == NULL) {
        return OT_E_ARG;
    }
    if (n == 4 && data[0] == 0xC2 && data[1] == DM_CTR_LEN) {
        data += 2;
        n = 2;
    }
    if (n != DM_CTR_LEN) {
        return OT_E_FORMAT;
    }
    *counter = (uint16_t)((data[0] << 8) | data[1]);
    return OT_OK;
}
