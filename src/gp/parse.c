#include "gp/parse.h"

#define OT_LOG_COMPONENT "gp.parse"
#include "core/apdu.h"
#include "core/log.h"
#include "core/tlv.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* Copies an AID value of min..16 bytes (longer or shorter: OT_E_FORMAT). */
static ot_err copy_aid(struct gp_aid *dst, const uint8_t *v, size_t n, size_t min)
{
    if (n < min || n > GP_AID_MAX) {
        OT_LOG_DEBUG("AID of %zu bytes outside %zu-%u", n, min, GP_AID_MAX);
        return OT_E_FORMAT;
    }
    dst->len = (uint8_t)n;
    if (n > 0) {
        memcpy(dst->b, v, n);
    }
    return OT_OK;
}

/* ---- GET STATUS ---- */

void gp_status_iter_init(struct gp_status_iter *it, const uint8_t *p, size_t n,
                         enum gp_status_fmt fmt, uint8_t p1)
{
    buf_rd_init(&it->rd, p, n);
    it->fmt = fmt;
    it->p1 = p1;
}

/* One E3 template (GPCS Table 11-36). */
static ot_err parse_e3(const struct tlv *t, struct gp_status_entry *e)
{
    ot_err err = OT_OK;
    struct buf_rd rd;
    struct tlv c;
    bool have_aid = false;
    buf_rd_init(&rd, t->val, t->len);
    while (rd.left > 0) {
        OT_TRY(tlv_next(&rd, &c));
        switch (c.tag) {
        case GP_TAG_AID:
            if (have_aid) {
                OT_FAIL(OT_E_FORMAT);
            }
            OT_TRY(copy_aid(&e->aid, c.val, c.len, GP_AID_MIN));
            have_aid = true;
            break;
        case GP_TAG_LCS:
            if (c.len != 1) {
                OT_FAIL(OT_E_FORMAT);
            }
            e->has_lcs = true;
            e->lcs = c.val[0];
            break;
        case GP_TAG_PRIVS:
            if (c.len < 1 || c.len > 3) {
                OT_FAIL(OT_E_FORMAT);
            }
            e->privs_len = (uint8_t)c.len;
            memcpy(e->privs, c.val, c.len);
            break;
        case GP_TAG_IMPLICIT:
            if (c.len != 1) {
                OT_FAIL(OT_E_FORMAT);
            }
            if (e->nimplicit < GP_STATUS_MAX_IMPLICIT) {
                e->implicit[e->nimplicit] = c.val[0];
            }
            e->nimplicit++;
            break;
        case GP_TAG_ELF_AID:
            OT_TRY(copy_aid(&e->elf_aid, c.val, c.len, 0));
            break;
        case GP_TAG_ELF_VERSION:
            e->version_len =
                (uint8_t)(c.len < GP_STATUS_MAX_VERSION ? c.len : GP_STATUS_MAX_VERSION);
            memcpy(e->version, c.val, e->version_len);
            break;
        case GP_TAG_MODULE_AID:
            if (e->nmodules < GP_STATUS_MAX_MODULES) {
                OT_TRY(copy_aid(&e->modules[e->nmodules], c.val, c.len, 1));
            } else if (c.len < 1 || c.len > GP_AID_MAX) {
                OT_FAIL(OT_E_FORMAT);
            }
            e->nmodules++;
            break;
        case GP_TAG_ASSOC_SD:
            OT_TRY(copy_aid(&e->sd_aid, c.val, c.len, 0));
            break;
        default:
            /* Unknown and proprietary tags are skipped (GPCS 11.4.3.1). */
            break;
        }
    }
    if (!have_aid) {
        OT_LOG_DEBUG("E3 entry without 4F");
        OT_FAIL(OT_E_FORMAT);
    }
out:
    return err;
}

/* Reads a length byte and an AID of 1-16 bytes (legacy layout). */
static ot_err legacy_aid(struct buf_rd *rd, struct gp_aid *dst)
{
    uint8_t n;
    const uint8_t *v;
    ot_err err = buf_rd_u8(rd, &n);
    if (err != OT_OK) {
        return err;
    }
    if (n == 0 || n > GP_AID_MAX) {
        return OT_E_FORMAT;
    }
    err = buf_rd_take(rd, n, &v);
    if (err != OT_OK) {
        return err;
    }
    if (dst) {
        return copy_aid(dst, v, n, 1);
    }
    return OT_OK;
}

/* One legacy record (GPCS 2.1.1 Tables 9-29/9-30). */
static ot_err parse_legacy(struct buf_rd *rd, uint8_t p1, struct gp_status_entry *e)
{
    ot_err err = OT_OK;
    uint8_t priv;
    OT_TRY(legacy_aid(rd, &e->aid));
    OT_TRY(buf_rd_u8(rd, &e->lcs));
    e->has_lcs = true;
    OT_TRY(buf_rd_u8(rd, &priv));
    e->privs_len = 1;
    e->privs[0] = priv;
    if (p1 == GP_STATUS_P1_ELF_MODULES) {
        uint8_t nmod;
        OT_TRY(buf_rd_u8(rd, &nmod));
        for (unsigned i = 0; i < nmod; i++) {
            OT_TRY(legacy_aid(rd, i < GP_STATUS_MAX_MODULES ? &e->modules[i] : NULL));
        }
        e->nmodules = nmod;
    }
out:
    return err;
}

ot_err gp_status_iter_next(struct gp_status_iter *it, struct gp_status_entry *e, bool *done)
{
    ot_err err = OT_OK;
    if (!it || !e || !done) {
        return OT_E_ARG;
    }
    memset(e, 0, sizeof *e);
    *done = false;
    if (it->rd.left == 0) {
        *done = true;
        return OT_OK;
    }
    /* Work on a copy so a failing entry leaves the iterator where it was. */
    struct buf_rd rd = it->rd;
    if (it->fmt == GP_STATUS_FMT_TLV) {
        struct tlv t;
        OT_TRY(tlv_next(&rd, &t));
        if (t.tag != GP_TAG_STATUS_ENTRY) {
            OT_LOG_DEBUG("GET STATUS: tag %X where E3 expected", (unsigned)t.tag);
            OT_FAIL(OT_E_FORMAT);
        }
        OT_TRY(parse_e3(&t, e));
    } else if (it->fmt == GP_STATUS_FMT_LEGACY) {
        OT_TRY(parse_legacy(&rd, it->p1, e));
    } else {
        OT_FAIL(OT_E_ARG);
    }
    it->rd = rd;
out:
    return err;
}

ot_err gp_parse_status(const uint8_t *p, size_t n, enum gp_status_fmt fmt, uint8_t p1,
                       struct gp_status_entry *entries, size_t *count)
{
    ot_err err = OT_OK;
    struct gp_status_iter it;
    struct gp_status_entry scratch;
    size_t cap;
    size_t k = 0;
    bool done = false;
    if ((!p && n > 0) || !count || (!entries && *count > 0)) {
        return OT_E_ARG;
    }
    cap = *count;
    gp_status_iter_init(&it, p, n, fmt, p1);
    for (;;) {
        OT_TRY(gp_status_iter_next(&it, k < cap ? &entries[k] : &scratch, &done));
        if (done) {
            break;
        }
        k++;
    }
    *count = k;
    if (k > cap) {
        OT_LOG_DEBUG("GET STATUS: %zu entries for an array of %zu", k, cap);
        err = OT_E_BUF_SMALL;
    }
out:
    return err;
}

bool gp_status_more(uint16_t sw)
{
    return sw == GP_SW_MORE_DATA;
}

ot_err gp_status_check_sw(uint16_t sw, bool *more)
{
    if (!more) {
        return OT_E_ARG;
    }
    *more = false;
    if (sw == SW_OK) {
        return OT_OK;
    }
    if (sw == GP_SW_MORE_DATA) {
        *more = true;
        return OT_OK;
    }
    ot_err e = sw_to_err(sw);
    return e == OT_OK ? OT_E_SW : e;
}

/* ---- PUT KEY response ---- */

ot_err gp_parse_put_key_resp(const uint8_t *p, size_t n, const struct gp_put_key_expect *exp)
{
    ot_err err = OT_OK;
    struct buf_rd rd;
    uint8_t kvn;
    const uint8_t *kcv;
    if ((!p && n > 0) || !exp || exp->nkeys > GP_PUT_KEY_MAX_KEYS) {
        return OT_E_ARG;
    }
    buf_rd_init(&rd, p, n);
    OT_TRY(buf_rd_u8(&rd, &kvn));
    if (kvn != exp->kvn) {
        OT_LOG_DEBUG("PUT KEY answered KVN %02X, sent %02X", kvn, exp->kvn);
        OT_FAIL(OT_E_FORMAT);
    }
    for (size_t i = 0; i < exp->nkeys; i++) {
        OT_TRY(buf_rd_take(&rd, GP_KCV_LEN, &kcv));
        if (memcmp(kcv, exp->kcv[i], GP_KCV_LEN) != 0) {
            OT_LOG_DEBUG("PUT KEY: KCV of key %zu differs", i);
            OT_FAIL(OT_E_KCV);
        }
    }
    if (rd.left > 0) {
        OT_FAIL(OT_E_TRAILING);
    }
out:
    return err;
}

/* ---- CPLC ---- */

/* Field layout of the 42 CPLC bytes, in order. */
static const struct {
    const char *name;
    uint8_t size;
    bool date;
    size_t off; /* offsetof in struct gp_cplc */
} gp_cplc_fields[] = {
    {"ICFabricator", 2, false, offsetof(struct gp_cplc, ic_fabricator)},
    {"ICType", 2, false, offsetof(struct gp_cplc, ic_type)},
    {"OperatingSystemID", 2, false, offsetof(struct gp_cplc, os_id)},
    {"OperatingSystemReleaseDate", 2, true, offsetof(struct gp_cplc, os_release_date)},
    {"OperatingSystemReleaseLevel", 2, false, offsetof(struct gp_cplc, os_release_level)},
    {"ICFabricationDate", 2, true, offsetof(struct gp_cplc, ic_fabrication_date)},
    {"ICSerialNumber", 4, false, offsetof(struct gp_cplc, ic_serial)},
    {"ICBatchIdentifier", 2, false, offsetof(struct gp_cplc, ic_batch)},
    {"ICModuleFabricator", 2, false, offsetof(struct gp_cplc, module_fabricator)},
    {"ICModulePackagingDate", 2, true, offsetof(struct gp_cplc, module_packaging_date)},
    {"ICCManufacturer", 2, false, offsetof(struct gp_cplc, icc_manufacturer)},
    {"ICEmbeddingDate", 2, true, offsetof(struct gp_cplc, ic_embedding_date)},
    {"ICPrePersonalizer", 2, false, offsetof(struct gp_cplc, pre_perso_id)},
    {"ICPrePersonalizationEquipmentDate", 2, true, offsetof(struct gp_cplc, pre_perso_date)},
    {"ICPrePersonalizationEquipmentID", 4, false, offsetof(struct gp_cplc, pre_perso_equipment)},
    {"ICPersonalizer", 2, false, offsetof(struct gp_cplc, perso_id)},
    {"ICPersonalizationDate", 2, true, offsetof(struct gp_cplc, perso_date)},
    {"ICPersonalizationEquipmentID", 4, false, offsetof(struct gp_cplc, perso_equipment)},
};
#define GP_CPLC_NFIELDS (sizeof gp_cplc_fields / sizeof gp_cplc_fields[0])

ot_err gp_parse_cplc(const uint8_t *p, size_t n, struct gp_cplc *out)
{
    ot_err err = OT_OK;
    struct buf_rd rd;
    if ((!p && n > 0) || !out) {
        return OT_E_ARG;
    }
    if (n != GP_CPLC_LEN && n >= 2 && p[0] == 0x9F && p[1] == 0x7F) {
        struct tlv t;
        OT_TRY(tlv_parse_one(p, n, &t));
        if (t.len != GP_CPLC_LEN) {
            OT_LOG_DEBUG("CPLC of %zu bytes", t.len);
            OT_FAIL(OT_E_FORMAT);
        }
        buf_rd_init(&rd, t.val, t.len);
    } else {
        if (n > GP_CPLC_LEN) {
            OT_FAIL(OT_E_TRAILING);
        }
        buf_rd_init(&rd, p, n);
    }
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < GP_CPLC_NFIELDS; i++) {
        unsigned char *dst = (unsigned char *)out + gp_cplc_fields[i].off;
        if (gp_cplc_fields[i].size == 2) {
            uint16_t v;
            OT_TRY(buf_rd_u16be(&rd, &v));
            memcpy(dst, &v, sizeof v);
        } else {
            uint32_t v;
            OT_TRY(buf_rd_u32be(&rd, &v));
            memcpy(dst, &v, sizeof v);
        }
    }
out:
    return err;
}

ot_err gp_cplc_to_text(const struct gp_cplc *c, char *out, size_t *len)
{
    if (!c || !len || (!out && *len > 0)) {
        return OT_E_ARG;
    }
    size_t cap = *len;
    size_t pos = 0;
    for (size_t i = 0; i < GP_CPLC_NFIELDS; i++) {
        const unsigned char *src = (const unsigned char *)c + gp_cplc_fields[i].off;
        char line[96];
        int k;
        if (gp_cplc_fields[i].size == 2) {
            uint16_t v;
            memcpy(&v, src, sizeof v);
            unsigned y = (unsigned)(v >> 12);
            unsigned d2 = (v >> 8) & 0xFu;
            unsigned d1 = (v >> 4) & 0xFu;
            unsigned d0 = v & 0xFu;
            /* Dates are YDDD in BCD: the last digit of the year and the day. */
            if (gp_cplc_fields[i].date && y <= 9 && d2 <= 9 && d1 <= 9 && d0 <= 9) {
                k = snprintf(line, sizeof line, "%s=%04X (year x%u, day %u)\n",
                             gp_cplc_fields[i].name, (unsigned)v, y, d2 * 100 + d1 * 10 + d0);
            } else {
                k = snprintf(line, sizeof line, "%s=%04X\n", gp_cplc_fields[i].name, (unsigned)v);
            }
        } else {
            uint32_t v;
            memcpy(&v, src, sizeof v);
            k = snprintf(line, sizeof line, "%s=%08lX\n", gp_cplc_fields[i].name, (unsigned long)v);
        }
        if (k < 0 || (size_t)k >= sizeof line) {
            return OT_E_INTERNAL;
        }
        if (pos + (size_t)k < cap) {
            memcpy(out + pos, line, (size_t)k);
            out[pos + (size_t)k] = '\0';
        }
        pos += (size_t)k;
    }
    if (pos >= cap) {
        if (cap > 0) {
            out[0] = '\0';
        }
        *len = pos + 1;
        return OT_E_BUF_SMALL;
    }
    *len = pos;
    return OT_OK;
}

/* ---- card recognition data ---- */

/* 1.2.840.114283 = {iso(1) member-body(2) us(840) globalPlatform(114283)}. */
static const uint8_t gp_oid_prefix[] = {0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B};
#define GP_OID_MAX_ARCS 6u

/* Decodes the arcs of a GP OID after the prefix (each arc base-128, values
 * 0-255 here). Not under the GP arc, an unterminated arc or more than
 * GP_OID_MAX_ARCS arcs: OT_E_FORMAT. */
static ot_err gp_oid_arcs(const uint8_t *v, size_t n, uint8_t *arcs, size_t *narcs)
{
    size_t k = 0;
    if (n < sizeof gp_oid_prefix || memcmp(v, gp_oid_prefix, sizeof gp_oid_prefix) != 0) {
        return OT_E_FORMAT;
    }
    uint32_t acc = 0;
    bool open = false;
    for (size_t i = sizeof gp_oid_prefix; i < n; i++) {
        acc = (acc << 7) | (v[i] & 0x7Fu);
        if (acc > 0xFFu) {
            return OT_E_FORMAT;
        }
        open = (v[i] & 0x80u) != 0;
        if (!open) {
            if (k == GP_OID_MAX_ARCS) {
                return OT_E_FORMAT;
            }
            arcs[k++] = (uint8_t)acc;
            acc = 0;
        }
    }
    if (open) {
        return OT_E_FORMAT;
    }
    *narcs = k;
    return OT_OK;
}

/* The arcs of the OID (tag 06) inside a card data template. */
static ot_err template_oid(const struct tlv *t, uint8_t *arcs, size_t *narcs)
{
    struct tlv oid;
    ot_err err = tlv_find(t->val, t->len, 0x06, &oid);
    if (err == OT_E_NOT_FOUND) {
        return OT_E_FORMAT;
    }
    if (err != OT_OK) {
        return err;
    }
    return gp_oid_arcs(oid.val, oid.len, arcs, narcs);
}

ot_err gp_parse_card_data(const uint8_t *p, size_t n, struct gp_card_data *out)
{
    ot_err err = OT_OK;
    struct tlv top;
    struct tlv t73;
    struct buf_rd rd;
    uint8_t arcs[GP_OID_MAX_ARCS];
    size_t narcs = 0;
    if ((!p && n > 0) || !out) {
        return OT_E_ARG;
    }
    memset(out, 0, sizeof *out);
    OT_TRY(tlv_parse_one(p, n, &top));
    if (top.tag == GP_TAG_CARD_DATA) {
        err = tlv_find(top.val, top.len, GP_TAG_SD_MGMT_DATA, &t73);
        if (err == OT_E_NOT_FOUND) {
            OT_FAIL(OT_E_FORMAT);
        }
        OT_TRY(err);
    } else if (top.tag == GP_TAG_SD_MGMT_DATA) {
        t73 = top;
    } else {
        OT_FAIL(OT_E_FORMAT);
    }
    buf_rd_init(&rd, t73.val, t73.len);
    while (rd.left > 0) {
        struct tlv t;
        OT_TRY(tlv_next(&rd, &t));
        switch (t.tag) {
        case 0x06: /* {gp 1}: GP card recognition data */
            OT_TRY(gp_oid_arcs(t.val, t.len, arcs, &narcs));
            if (narcs < 1 || arcs[0] != 1) {
                OT_FAIL(OT_E_FORMAT);
            }
            out->gp_rid = true;
            break;
        case 0x60: /* {gp 2 v}: card management type and version */
            OT_TRY(template_oid(&t, arcs, &narcs));
            if (narcs < 2 || arcs[0] != 2) {
                OT_FAIL(OT_E_FORMAT);
            }
            out->version_len = narcs - 1 < sizeof out->version ? narcs - 1 : sizeof out->version;
            memcpy(out->version, arcs + 1, out->version_len);
            break;
        case 0x63: /* {gp 3}: card identification scheme */
            OT_TRY(template_oid(&t, arcs, &narcs));
            if (narcs < 1 || arcs[0] != 3) {
                OT_FAIL(OT_E_FORMAT);
            }
            out->id_scheme = true;
            break;
        case 0x64: /* {gp 4 scp i}: secure channel protocol and option */
            OT_TRY(template_oid(&t, arcs, &narcs));
            if (narcs < 3 || arcs[0] != 4) {
                OT_FAIL(OT_E_FORMAT);
            }
            if (out->nscp < GP_CARD_DATA_MAX_SCP) {
                out->scp[out->nscp].id = arcs[1];
                out->scp[out->nscp].i = arcs[2];
            }
            out->nscp++;
            break;
        case 0x65:
            out->card_config = t.val;
            out->card_config_len = t.len;
            break;
        case 0x66:
            out->chip_details = t.val;
            out->chip_details_len = t.len;
            break;
        default:
            break;
        }
    }
out:
    return err;
}

/* ---- key information ---- */

static ot_err parse_c0(const struct tlv *t, struct gp_key_info *k)
{
    ot_err err = OT_OK;
    struct buf_rd rd;
    memset(k, 0, sizeof *k);
    if (t->len < 4) {
        OT_FAIL(OT_E_FORMAT);
    }
    buf_rd_init(&rd, t->val, t->len);
    OT_TRY(buf_rd_u8(&rd, &k->kid));
    OT_TRY(buf_rd_u8(&rd, &k->kvn));
    k->extended = rd.p[0] == GP_KEY_TYPE_EXTENDED;
    if (!k->extended) {
        while (rd.left > 0) {
            uint8_t type;
            uint8_t len;
            if (rd.left < 2 || k->ncomp == GP_KEYINFO_MAX_COMPONENTS) {
                OT_FAIL(OT_E_FORMAT);
            }
            OT_TRY(buf_rd_u8(&rd, &type));
            OT_TRY(buf_rd_u8(&rd, &len));
            k->comp[k->ncomp].type = type;
            k->comp[k->ncomp].len = len;
            k->ncomp++;
        }
        goto out;
    }
    /* Extended (GPCS Table 11-31): {FF tt LL LL}+ then usage and access LVs. */
    while (rd.left > 0 && rd.p[0] == GP_KEY_TYPE_EXTENDED) {
        uint8_t ff;
        uint8_t type;
        uint16_t len;
        if (rd.left < 4 || k->ncomp == GP_KEYINFO_MAX_COMPONENTS) {
            OT_FAIL(OT_E_FORMAT);
        }
        OT_TRY(buf_rd_u8(&rd, &ff));
        OT_TRY(buf_rd_u8(&rd, &type));
        OT_TRY(buf_rd_u16be(&rd, &len));
        k->comp[k->ncomp].type = type;
        k->comp[k->ncomp].len = len;
        k->ncomp++;
    }
    if (rd.left > 0) {
        uint8_t l;
        OT_TRY(buf_rd_u8(&rd, &l));
        if (l > sizeof k->usage || buf_rd_copy(&rd, k->usage, l) != OT_OK) {
            OT_FAIL(OT_E_FORMAT);
        }
        k->usage_len = l;
    }
    if (rd.left > 0) {
        uint8_t l;
        OT_TRY(buf_rd_u8(&rd, &l));
        if (l > sizeof k->access || buf_rd_copy(&rd, k->access, l) != OT_OK) {
            OT_FAIL(OT_E_FORMAT);
        }
        k->access_len = l;
    }
    if (rd.left > 0) {
        OT_FAIL(OT_E_FORMAT);
    }
out:
    return err;
}

ot_err gp_parse_key_info(const uint8_t *p, size_t n, struct gp_key_info *keys, size_t *count)
{
    ot_err err = OT_OK;
    struct buf_rd rd;
    struct gp_key_info scratch;
    size_t cap;
    size_t k = 0;
    if ((!p && n > 0) || !count || (!keys && *count > 0)) {
        return OT_E_ARG;
    }
    cap = *count;
    buf_rd_init(&rd, p, n);
    if (n > 0 && p[0] == GP_TAG_KEY_INFO) {
        struct tlv e0;
        OT_TRY(tlv_parse_one(p, n, &e0));
        buf_rd_init(&rd, e0.val, e0.len);
    }
    while (rd.left > 0) {
        struct tlv t;
        OT_TRY(tlv_next(&rd, &t));
        if (t.tag != 0xC0 || t.len == 0) {
            continue; /* other tags and empty templates (fresh SSD) are skipped */
        }
        OT_TRY(parse_c0(&t, k < cap ? &keys[k] : &scratch));
        k++;
    }
    *count = k;
    if (k > cap) {
        err = OT_E_BUF_SMALL;
    }
out:
    return err;
}

/* ---- IIN / CIN ---- */

static ot_err parse_tagged(const uint8_t *p, size_t n, uint32_t tag, const uint8_t **v,
                           size_t *vlen)
{
    ot_err err = OT_OK;
    struct tlv t;
    if ((!p && n > 0) || !v || !vlen) {
        return OT_E_ARG;
    }
    OT_TRY(tlv_parse_one(p, n, &t));
    if (t.tag != tag || t.len == 0) {
        OT_FAIL(OT_E_FORMAT);
    }
    *v = t.val;
    *vlen = t.len;
out:
    return err;
}

ot_err gp_parse_iin(const uint8_t *p, size_t n, const uint8_t **v, size_t *vlen)
{
    return parse_tagged(p, n, GP_TAG_IIN, v, vlen);
}

ot_err gp_parse_cin(const uint8_t *p, size_t n, const uint8_t **v, size_t *vlen)
{
    return parse_tagged(p, n, GP_TAG_CIN, v, vlen);
}

/* ---- FCI ---- */

static ot_err parse_fci_prop(const struct tlv *a5, struct gp_fci *out)
{
    ot_err err = OT_OK;
    struct buf_rd rd;
    buf_rd_init(&rd, a5->val, a5->len);
    while (rd.left > 0) {
        struct tlv t;
        OT_TRY(tlv_next(&rd, &t));
        switch (t.tag) {
        case GP_TAG_SD_MGMT_DATA:
            out->sd_mgmt = t.val;
            out->sd_mgmt_len = t.len;
            break;
        case GP_TAG_APP_PROD_LCD:
            out->prod_lcd = t.val;
            out->prod_lcd_len = t.len;
            break;
        case GP_TAG_MAX_CMD_LEN:
            if (t.len < 1 || t.len > 4) {
                OT_FAIL(OT_E_FORMAT);
            }
            out->max_cmd_len = 0;
            for (size_t i = 0; i < t.len; i++) {
                out->max_cmd_len = (out->max_cmd_len << 8) | t.val[i];
            }
            out->has_max_cmd_len = true;
            break;
        default:
            break;
        }
    }
out:
    return err;
}

ot_err gp_parse_fci(const uint8_t *p, size_t n, struct gp_fci *out)
{
    ot_err err = OT_OK;
    struct tlv fci;
    struct buf_rd rd;
    if ((!p && n > 0) || !out) {
        return OT_E_ARG;
    }
    memset(out, 0, sizeof *out);
    OT_TRY(tlv_parse_one(p, n, &fci));
    if (fci.tag != GP_TAG_FCI) {
        OT_FAIL(OT_E_FORMAT);
    }
    buf_rd_init(&rd, fci.val, fci.len);
    while (rd.left > 0) {
        struct tlv t;
        OT_TRY(tlv_next(&rd, &t));
        if (t.tag == GP_TAG_DF_NAME) {
            OT_TRY(copy_aid(&out->aid, t.val, t.len, 0));
        } else if (t.tag == GP_TAG_FCI_PROP) {
            out->prop = t.val;
            out->prop_len = t.len;
            OT_TRY(parse_fci_prop(&t, out));
        }
    }
out:
    return err;
}
