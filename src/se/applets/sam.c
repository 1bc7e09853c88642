/* Native applet module "sam": the payment dongle's secure access module.
 *
 * It holds service providers' keys that pay wrapped for this dongle alone
 * (crypto/ecwrap.h), unwraps them with its own P-256 key pair (generated in
 * the card at install, public key readable, private key never leaves), and
 * computes with them what the payment terminal needs; no command returns a
 * private key or an SP key. Commands (class 80; docs/applets.md, "sam"):
 *
 *   GET DATA      80 CA DF 10 / DF 11 / DF 12  -> dongle id / public key / key list
 *   LOAD KEY      80 D8 00 00 Lc <ecwrap blob> -> key type || version u32 || KCV(3)
 *   REVOKE        80 DA kt 00 Lc <lv sp id> <floor u32>
 *   VERIFY AC     80 A0 00 00 Lc <lv sp> <lv PAN> <ATC u16> <AC 8> <data>
 *   PIN BLOCK     80 A2 00 00 Lc <lv sp> <lv PAN digits> <lv PIN digits> -> block(16)
 *   TRANSIT MAC   80 A4 00 00 Lc <lv sp> <id 8> <amount u32> <counter u32> <MAC 8>
 *                 80 A4 01 00 Lc <lv sp> <id 8> <balance u32> <counter u32> <proof 8>
 *
 * Keys are kept per (SP id, key type) slot with the current key version and
 * a floor: LOAD KEY refuses versions below the floor or the slot's current
 * version (rollback), REVOKE erases a slot's key and raises its floor.
 *
 * Persistent blob (version 1), big-endian:
 *   ver | flags | lv dongle id | priv[32] | pub[65] | nslots |
 *   nslots x (key type | lv sp id | version u32 | floor u32 | lv key)
 * A slot whose key length is 0 has no key (revoked, or only a floor).
 */
#include "se/applets/aputil.h"
#include "se/applets/registry.h"

#include "core/tlv.h"
#include "crypto/ec.h"
#include "crypto/ecwrap.h"
#include "crypto/kcv.h"
#include "crypto/paycard.h"
#include "crypto/pinblock.h"

#define OT_LOG_COMPONENT "se.sam"
#include "core/log.h"

#include <string.h>

#define SAM_BLOB_VERSION  1u
#define SAM_MAX_SLOTS     32u
#define SAM_MAX_PAN_BYTES 10u /* tag 5A, EMV Book 3 annex A */

#define SAM_F_KEYPAIR 0x01u
#define SAM_F_ID      0x02u

#define SAM_INS_GET_DATA    0xCAu
#define SAM_INS_LOAD_KEY    0xD8u
#define SAM_INS_REVOKE      0xDAu
#define SAM_INS_VERIFY_AC   0xA0u
#define SAM_INS_PIN_BLOCK   0xA2u
#define SAM_INS_TRANSIT_MAC 0xA4u

#define SAM_TAG_ID   0xDF10u /* dongle id: personalization and GET DATA */
#define SAM_TAG_PUB  0xDF11u /* GET DATA: public key */
#define SAM_TAG_KEYS 0xDF12u /* GET DATA: key list */

struct sam_slot {
    uint8_t kt;
    uint8_t sp_len;
    char sp[ECWRAP_MAX_ID];
    uint32_t version;
    uint32_t floor;
    uint8_t key_len;
    uint8_t key[ECWRAP_MAX_KEY];
};

struct sam_state {
    uint8_t flags;
    uint8_t id_len;
    char id[ECWRAP_MAX_ID + 1]; /* NUL-terminated */
    uint8_t priv[EC_P256_PRIV_LEN];
    uint8_t pub[EC_P256_PUB_LEN];
    uint8_t n;
    struct sam_slot s[SAM_MAX_SLOTS];
};

static const uint8_t sam_pkg[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x06};
static const uint8_t sam_mod[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x06, 0x01};

/* ---------------------------------------------------------------- blob */

static ot_err sam_load(const struct se_applet_ctx *x, struct sam_state *s)
{
    struct buf_rd r;
    ot_err err = OT_OK;
    uint8_t n = 0;

    memset(s, 0, sizeof *s);
    if (x->data_len == 0) {
        return OT_OK;
    }
    OT_TRY(aputil_blob_open(x, SAM_BLOB_VERSION, &r));
    OT_TRY(buf_rd_u8(&r, &s->flags));
    OT_TRY(aputil_get_lv(&r, (uint8_t *)s->id, ECWRAP_MAX_ID, &s->id_len));
    OT_TRY(buf_rd_copy(&r, s->priv, sizeof s->priv));
    OT_TRY(buf_rd_copy(&r, s->pub, sizeof s->pub));
    OT_TRY(buf_rd_u8(&r, &n));
    if (n > SAM_MAX_SLOTS) {
        OT_FAIL(OT_E_CORRUPT);
    }
    for (s->n = 0; s->n < n; s->n++) {
        struct sam_slot *sl = &s->s[s->n];
        OT_TRY(buf_rd_u8(&r, &sl->kt));
        OT_TRY(aputil_get_lv(&r, (uint8_t *)sl->sp, sizeof sl->sp, &sl->sp_len));
        OT_TRY(buf_rd_u32be(&r, &sl->version));
        OT_TRY(buf_rd_u32be(&r, &sl->floor));
        OT_TRY(aputil_get_lv(&r, sl->key, sizeof sl->key, &sl->key_len));
    }
out:
    return aputil_blob_close(&r, err, "sam");
}

static uint16_t sam_save(struct se_applet_ctx *x, const struct sam_state *s)
{
    uint8_t blob[2 + 1 + ECWRAP_MAX_ID + EC_P256_PRIV_LEN + EC_P256_PUB_LEN + 1
                 + SAM_MAX_SLOTS * (1 + 1 + ECWRAP_MAX_ID + 8 + 1 + ECWRAP_MAX_KEY)];
    struct buf_wr w;
    uint8_t u[8];
    uint16_t sw;

    buf_wr_init(&w, blob, sizeof blob);
    buf_wr_u8(&w, SAM_BLOB_VERSION);
    buf_wr_u8(&w, s->flags);
    aputil_put_lv(&w, (const uint8_t *)s->id, s->id_len);
    buf_wr_bytes(&w, s->priv, sizeof s->priv);
    buf_wr_bytes(&w, s->pub, sizeof s->pub);
    buf_wr_u8(&w, s->n);
    for (uint8_t i = 0; i < s->n; i++) {
        const struct sam_slot *sl = &s->s[i];
        buf_wr_u8(&w, sl->kt);
        aputil_put_lv(&w, (const uint8_t *)sl->sp, sl->sp_len);
        ot_put_u32be(u, sl->version);
        ot_put_u32be(u + 4, sl->floor);
        buf_wr_bytes(&w, u, sizeof u);
        aputil_put_lv(&w, sl->key, sl->key_len);
    }
    sw = aputil_save(x, &w);
    ot_mem_wipe(blob, sizeof blob);
    return sw;
}

static struct sam_slot *sam_find(struct sam_state *s, uint8_t kt, const uint8_t *sp, size_t n)
{
    for (uint8_t i = 0; i < s->n; i++) {
        struct sam_slot *sl = &s->s[i];
        if (sl->kt == kt && sl->sp_len == n && memcmp(sl->sp, sp, n) == 0) {
            return sl;
        }
    }
    return NULL;
}

/* The slot of (kt, sp), created (empty, floor 0) when absent; NULL when the
 * table is full. */
static struct sam_slot *sam_slot_for(struct sam_state *s, uint8_t kt, const char *sp, size_t n)
{
    struct sam_slot *sl = sam_find(s, kt, (const uint8_t *)sp, n);
    if (sl != NULL || s->n == SAM_MAX_SLOTS) {
        return sl;
    }
    sl = &s->s[s->n++];
    memset(sl, 0, sizeof *sl);
    sl->kt = kt;
    sl->sp_len = (uint8_t)n;
    memcpy(sl->sp, sp, n);
    return sl;
}

/* ---------------------------------------------------------------- personalization */

static bool sam_id_ok(const uint8_t *p, size_t n)
{
    if (n == 0 || n > ECWRAP_MAX_ID) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x21u || p[i] > 0x7Eu) {
            return false;
        }
    }
    return true;
}

/* BER-TLV DF10 dongle id. The id is fixed once a key was loaded. */
static uint16_t sam_perso(struct sam_state *s, const uint8_t *d, size_t n)
{
    struct buf_rd r;
    struct tlv t;
    buf_rd_init(&r, d, n);
    while (r.left > 0) {
        if (tlv_next(&r, &t) != OT_OK || t.constructed || t.tag != SAM_TAG_ID
            || !sam_id_ok(t.val, t.len)) {
            return APUTIL_SW_WRONG_DATA;
        }
        if (s->n > 0) {
            return APUTIL_SW_CONDITIONS;
        }
        memcpy(s->id, t.val, t.len);
        s->id[t.len] = '\0';
        s->id_len = (uint8_t)t.len;
        s->flags |= SAM_F_ID;
    }
    return 0;
}

static ot_err sam_install(struct se_applet_ctx *x, const uint8_t *params, size_t n)
{
    struct sam_state s;
    ot_err err = OT_OK;

    memset(&s, 0, sizeof s);
    /* The dongle's key pair is made in the card; only the public half is
     * ever read out (GET DATA DF11). */
    OT_TRY(ec_p256_keygen(s.priv, s.pub));
    s.flags |= SAM_F_KEYPAIR;
    if (n > 0 && sam_perso(&s, params, n) != 0) {
        OT_FAIL(OT_E_FORMAT);
    }
    if (sam_save(x, &s) != 0) {
        OT_FAIL(OT_E_LIMIT);
    }
out:
    ot_mem_wipe(&s, sizeof s);
    return err;
}

static uint16_t sam_personalize(struct se_applet_ctx *x, uint8_t p1, uint8_t p2, const uint8_t *d,
                                size_t n)
{
    struct sam_state s;
    enum aputil_sd_fmt fmt;
    uint16_t sw;

    (void)p2;
    sw = aputil_perso_check(p1, n, false, &fmt);
    if (sw != 0) {
        return sw;
    }
    if (sam_load(x, &s) != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    sw = sam_perso(&s, d, n);
    if (sw == 0) {
        sw = sam_save(x, &s);
    }
    ot_mem_wipe(&s, sizeof s);
    return sw == 0 ? APUTIL_SW_OK : sw;
}

/* ---------------------------------------------------------------- commands */

/* The start of the commands that use a key: P1 at most p1_max and P2 00
 * (6A86), data present (6700), then "lv sp id" (6A80) naming an SP that has
 * a key of type kt (6A88). r is left on the rest of the data. */
static uint16_t sam_key_of(struct sam_state *s, const struct apdu *a, uint8_t p1_max, uint8_t kt,
                           struct buf_rd *r, const struct sam_slot **out)
{
    uint8_t n = 0;
    const uint8_t *sp = NULL;
    const struct sam_slot *sl = NULL;

    if (a->p1 > p1_max || a->p2 != 0) {
        return APUTIL_SW_P1P2;
    }
    if (a->nc == 0) {
        return APUTIL_SW_WRONG_LENGTH;
    }
    buf_rd_init(r, a->data, a->nc);
    if (buf_rd_u8(r, &n) != OT_OK || buf_rd_take(r, n, &sp) != OT_OK || !sam_id_ok(sp, n)) {
        return APUTIL_SW_WRONG_DATA;
    }
    sl = sam_find(s, kt, sp, n);
    if (sl == NULL || sl->key_len == 0) {
        return APUTIL_SW_REF_NF;
    }
    *out = sl;
    return 0;
}

static uint16_t sam_get_data(const struct sam_state *s, const struct apdu *a, struct buf_wr *out)
{
    uint8_t b[SAM_MAX_SLOTS * (1 + 1 + ECWRAP_MAX_ID + 8 + 1 + KCV_LEN)];
    struct buf_wr w;
    uint8_t u[8];
    uint16_t sw;

    if (a->nc != 0) {
        return APUTIL_SW_WRONG_LENGTH;
    }
    buf_wr_init(&w, b, sizeof b);
    switch ((uint16_t)(a->p1 << 8 | a->p2)) {
    case SAM_TAG_ID:
        if ((s->flags & SAM_F_ID) == 0) {
            return APUTIL_SW_CONDITIONS;
        }
        buf_wr_bytes(&w, s->id, s->id_len);
        break;
    case SAM_TAG_PUB:
        buf_wr_bytes(&w, s->pub, sizeof s->pub);
        break;
    case SAM_TAG_KEYS: /* per slot: kt | lv sp | version | floor | key length | KCV */
        for (uint8_t i = 0; i < s->n; i++) {
            const struct sam_slot *sl = &s->s[i];
            uint8_t kcv[KCV_LEN] = {0};
            if (sl->key_len > 0 && kcv_aes(sl->key, sl->key_len, kcv) != OT_OK) {
                return APUTIL_SW_NO_DIAG;
            }
            buf_wr_u8(&w, sl->kt);
            aputil_put_lv(&w, (const uint8_t *)sl->sp, sl->sp_len);
            ot_put_u32be(u, sl->version);
            ot_put_u32be(u + 4, sl->floor);
            buf_wr_bytes(&w, u, sizeof u);
            buf_wr_u8(&w, sl->key_len);
            buf_wr_bytes(&w, kcv, sizeof kcv);
        }
        break;
    default:
        return APUTIL_SW_REF_NF;
    }
    if (w.err != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    sw = aputil_check_le(a, w.len);
    if (sw != 0) {
        return sw;
    }
    buf_wr_bytes(out, b, w.len);
    return out->err == OT_OK ? APUTIL_SW_OK : APUTIL_SW_NO_DIAG;
}

/* LOAD KEY: the unwrap checks the blob (6A80), that it is addressed to this
 * dongle and opens with its key (6982), and the version against the slot's
 * floor; a version below the slot's current one is a rollback (6985). */
static uint16_t sam_load_key(struct se_applet_ctx *x, struct sam_state *s, const struct apdu *a,
                             struct buf_wr *out)
{
    struct ecwrap_view v;
    struct ecwrap_meta m;
    struct ecwrap_policy pol;
    struct sam_slot *sl = NULL;
    uint8_t key[ECWRAP_MAX_KEY];
    uint8_t resp[1 + 4 + KCV_LEN];
    size_t kl = 0;
    uint16_t sw = 0;
    ot_err e;

    if (a->p1 != 0 || a->p2 != 0) {
        return APUTIL_SW_P1P2;
    }
    if (a->nc == 0) {
        return APUTIL_SW_WRONG_LENGTH;
    }
    if (ecwrap_parse(a->data, a->nc, &v) != OT_OK) {
        return APUTIL_SW_WRONG_DATA;
    }
    if ((s->flags & (SAM_F_ID | SAM_F_KEYPAIR)) != (SAM_F_ID | SAM_F_KEYPAIR)) {
        return APUTIL_SW_CONDITIONS; /* not personalized */
    }
    sl = sam_find(s, v.meta.key_type, (const uint8_t *)v.meta.sp_id, strlen(v.meta.sp_id));
    pol.dongle_id = s->id;
    pol.min_version = sl != NULL ? sl->floor : 0;
    if (sl != NULL && sl->key_len > 0 && sl->version > pol.min_version) {
        pol.min_version = sl->version; /* the same version again is a redelivery */
    }
    e = ecwrap_unwrap(s->priv, s->pub, &pol, a->data, a->nc, &m, key, sizeof key, &kl);
    if (e == OT_E_REPLAY) {
        sw = APUTIL_SW_CONDITIONS;
        goto out;
    }
    if (e != OT_OK) {
        sw = APUTIL_SW_SECURITY; /* another dongle's blob, or altered */
        goto out;
    }
    sl = sam_slot_for(s, m.key_type, m.sp_id, strlen(m.sp_id));
    if (sl == NULL) {
        sw = APUTIL_SW_NO_SPACE;
        goto out;
    }
    resp[0] = m.key_type;
    ot_put_u32be(resp + 1, m.key_version);
    if (kcv_aes(key, kl, resp + 5) != OT_OK) {
        sw = APUTIL_SW_NO_DIAG;
        goto out;
    }
    sw = aputil_check_le(a, sizeof resp);
    if (sw != 0) {
        goto out;
    }
    sl->version = m.key_version;
    memcpy(sl->key, key, kl);
    sl->key_len = (uint8_t)kl;
    sw = sam_save(x, s);
    if (sw == 0) {
        buf_wr_bytes(out, resp, sizeof resp);
        sw = out->err == OT_OK ? APUTIL_SW_OK : APUTIL_SW_NO_DIAG;
    }
    OT_LOG_DEBUG("key loaded sp=%s type=%u version=%u", m.sp_id, m.key_type, m.key_version);
out:
    ot_mem_wipe(key, sizeof key);
    return sw;
}

/* REVOKE: erases the key of (P1 key type, sp) when its version is below the
 * new floor and raises the floor (never lowers it). */
static uint16_t sam_revoke(struct se_applet_ctx *x, struct sam_state *s, const struct apdu *a)
{
    struct buf_rd r;
    uint8_t n = 0;
    const uint8_t *sp = NULL;
    uint32_t floor = 0;
    struct sam_slot *sl = NULL;

    if (a->p2 != 0
        || (a->p1 != ECWRAP_KT_EMV_IMK && a->p1 != ECWRAP_KT_TRANSIT_IMK
            && a->p1 != ECWRAP_KT_PIN)) {
        return APUTIL_SW_P1P2;
    }
    if (a->nc < 1 + 1 + 4) {
        return APUTIL_SW_WRONG_LENGTH;
    }
    buf_rd_init(&r, a->data, a->nc);
    if (buf_rd_u8(&r, &n) != OT_OK || buf_rd_take(&r, n, &sp) != OT_OK || !sam_id_ok(sp, n)
        || buf_rd_u32be(&r, &floor) != OT_OK || r.left != 0 || floor == 0) {
        return APUTIL_SW_WRONG_DATA;
    }
    sl = sam_slot_for(s, a->p1, (const char *)sp, n);
    if (sl == NULL) {
        return APUTIL_SW_NO_SPACE;
    }
    if (floor > sl->floor) {
        sl->floor = floor;
    }
    if (sl->key_len > 0 && sl->version < sl->floor) {
        ot_mem_wipe(sl->key, sizeof sl->key);
        sl->key_len = 0;
    }
    return sam_save(x, s);
}

static uint16_t sam_verify_ac(struct sam_state *s, const struct apdu *a)
{
    struct buf_rd r;
    const struct sam_slot *sl = NULL;
    uint8_t pan_len = 0;
    const uint8_t *pan = NULL;
    const uint8_t *ac = NULL;
    uint16_t atc = 0;
    uint8_t mk[PAYCARD_KEY_LEN];
    uint8_t want[PAYCARD_AC_LEN];
    uint16_t sw;

    sw = sam_key_of(s, a, 0, ECWRAP_KT_EMV_IMK, &r, &sl);
    if (sw != 0) {
        return sw;
    }
    if (buf_rd_u8(&r, &pan_len) != OT_OK || pan_len == 0 || pan_len > SAM_MAX_PAN_BYTES
        || buf_rd_take(&r, pan_len, &pan) != OT_OK || buf_rd_u16be(&r, &atc) != OT_OK
        || buf_rd_take(&r, PAYCARD_AC_LEN, &ac) != OT_OK) {
        return APUTIL_SW_WRONG_DATA;
    }
    sw = APUTIL_SW_NO_DIAG;
    if (paycard_derive(sl->key, sl->key_len, PAYCARD_DC_EMV_AC, pan, pan_len, mk) == OT_OK
        && paycard_emv_ac(mk, atc, r.p, r.left, want) == OT_OK) {
        sw = ot_mem_equal_ct(want, ac, PAYCARD_AC_LEN) ? APUTIL_SW_OK : APUTIL_SW_SECURITY;
    }
    ot_mem_wipe(mk, sizeof mk);
    return sw;
}

/* Copies an lv string of digits into a NUL-terminated buffer of cap bytes. */
static bool sam_rd_digits(struct buf_rd *r, char *dst, size_t cap)
{
    uint8_t n = 0;
    const uint8_t *v = NULL;
    if (buf_rd_u8(r, &n) != OT_OK || n >= cap || buf_rd_take(r, n, &v) != OT_OK) {
        return false;
    }
    memcpy(dst, v, n);
    dst[n] = '\0';
    return true;
}

static uint16_t sam_pin_block(struct sam_state *s, const struct apdu *a, struct buf_wr *out)
{
    struct buf_rd r;
    const struct sam_slot *sl = NULL;
    char pan[PINBLOCK_PAN_MAX + 2];
    char pin[PINBLOCK_PIN_MAX + 2];
    uint8_t block[PINBLOCK_LEN];
    uint16_t sw;

    sw = sam_key_of(s, a, 0, ECWRAP_KT_PIN, &r, &sl);
    if (sw != 0) {
        return sw;
    }
    if (!sam_rd_digits(&r, pan, sizeof pan) || !sam_rd_digits(&r, pin, sizeof pin) || r.left != 0
        || pinblock_check_pan(pan) != OT_OK || pinblock_check_pin(pin) != OT_OK) {
        sw = APUTIL_SW_WRONG_DATA;
    } else if ((sw = aputil_check_le(a, sizeof block)) == 0) {
        sw = APUTIL_SW_NO_DIAG;
        if (pinblock4_encipher(sl->key, sl->key_len, pin, pan, block) == OT_OK) {
            buf_wr_bytes(out, block, sizeof block);
            sw = out->err == OT_OK ? APUTIL_SW_OK : APUTIL_SW_NO_DIAG;
        }
    }
    ot_mem_wipe(pin, sizeof pin);
    return sw;
}

/* TRANSIT MAC: P1 00 checks a back end's CREDIT MAC before the terminal
 * writes it to the card; P1 01 checks the card's proof of the new balance.
 * The SAM never makes a credit MAC itself: a dongle cannot create value. */
static uint16_t sam_transit(struct sam_state *s, const struct apdu *a)
{
    struct buf_rd r;
    const struct sam_slot *sl = NULL;
    const uint8_t *id = NULL;
    const uint8_t *mac = NULL;
    uint32_t v1 = 0;
    uint32_t v2 = 0;
    uint8_t k[PAYCARD_KEY_LEN];
    uint8_t want[PAYCARD_MAC_LEN];
    uint16_t sw;

    sw = sam_key_of(s, a, 1, ECWRAP_KT_TRANSIT_IMK, &r, &sl);
    if (sw != 0) {
        return sw;
    }
    if (buf_rd_take(&r, PAYCARD_PURSE_ID, &id) != OT_OK || buf_rd_u32be(&r, &v1) != OT_OK
        || buf_rd_u32be(&r, &v2) != OT_OK || buf_rd_take(&r, PAYCARD_MAC_LEN, &mac) != OT_OK
        || r.left != 0) {
        return APUTIL_SW_WRONG_DATA;
    }
    sw = APUTIL_SW_NO_DIAG;
    if (paycard_derive(sl->key, sl->key_len, PAYCARD_DC_TRANSIT, id, PAYCARD_PURSE_ID, k) == OT_OK
        && paycard_transit_mac(k, a->p1 == 0 ? PAYCARD_TAG_CREDIT : PAYCARD_TAG_PROOF, v1, v2, id,
                               want)
               == OT_OK) {
        sw = ot_mem_equal_ct(want, mac, PAYCARD_MAC_LEN) ? APUTIL_SW_OK : APUTIL_SW_SECURITY;
    }
    ot_mem_wipe(k, sizeof k);
    return sw;
}

static uint16_t sam_process(struct se_applet_ctx *x, const struct apdu *a, struct buf_wr *out)
{
    struct sam_state s;
    uint16_t sw = aputil_check_cla(a->cla, true);

    switch (a->ins) {
    case SAM_INS_GET_DATA:
    case SAM_INS_LOAD_KEY:
    case SAM_INS_REVOKE:
    case SAM_INS_VERIFY_AC:
    case SAM_INS_PIN_BLOCK:
    case SAM_INS_TRANSIT_MAC:
        break;
    default:
        sw = aputil_check_cla(a->cla, apdu_cla_is_proprietary(a->cla));
        return sw != 0 ? sw : APUTIL_SW_INS;
    }
    if (sw != 0) {
        return sw;
    }
    if (sam_load(x, &s) != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    switch (a->ins) {
    case SAM_INS_GET_DATA:
        sw = sam_get_data(&s, a, out);
        break;
    case SAM_INS_LOAD_KEY:
        sw = sam_load_key(x, &s, a, out);
        break;
    case SAM_INS_REVOKE:
        sw = sam_revoke(x, &s, a);
        sw = sw == 0 ? APUTIL_SW_OK : sw;
        break;
    case SAM_INS_VERIFY_AC:
        sw = sam_verify_ac(&s, a);
        break;
    case SAM_INS_PIN_BLOCK:
        sw = sam_pin_block(&s, a, out);
        break;
    default:
        sw = sam_transit(&s, a);
        break;
    }
    ot_mem_wipe(&s, sizeof s);
    return sw;
}

const struct se_applet_ops se_sam_ops = {
    .name = "sam",
    .pkg_aid = sam_pkg,
    .pkg_aid_len = sizeof(sam_pkg),
    .module_aid = sam_mod,
    .module_aid_len = sizeof(sam_mod),
    .payment = false,
    .install = sam_install,
    .select = aputil_select_fci,
    .process = sam_process,
    .personalize = sam_personalize,
    .wipe = NULL,
    .ppse_entry = NULL,
};
