/* Native applet module "telecom": a SIM-style PIN / PUK holder.
 *
 * Commands (ISO class 00, ETSI TS 102 221 11.1.9-11.1.13 style; PIN
 * reference 01; PINs are 4-8 ASCII digits padded with FF to 8 bytes):
 *   VERIFY PIN   00 20 00 01 08 PIN          9000 / 63Cx / 6983 blocked
 *                00 20 00 01 (no data)       9000 verified, else 63Cx / 6983
 *   CHANGE PIN   00 24 00 01 10 old || new
 *   UNBLOCK PIN  00 2C 00 01 10 PUK || new   (no data: PUK tries 63Cx)
 *   STATUS       80 F2 00 00 03              flags || PIN tries || PUK tries
 * PIN try limit 3, PUK try limit 10. A correct PUK sets the new PIN and
 * resets both counters. After the tenth wrong PUK the PUK is blocked
 * (63C0); the next PUK presented -- the eleventh -- blocks the whole card
 * for good (se_applet_block_card: card TERMINATED), answered 6983. The
 * applet also remembers it in its own blob.
 *
 * Install parameters and personalization (STORE DATA, BER-TLV): 80 PIN
 * (4-8 ASCII digits), 81 PUK (8 ASCII digits). Without them the PIN is
 * "1234" and the PUK "12345678" (development defaults).
 *
 * Persistent blob (version 1): ver | flags | PIN[8] | PIN tries | PUK[8] |
 * PUK tries. Volatile: "PIN verified".
 */
#include "se/applets/aputil.h"
#include "se/applets/registry.h"

#include "core/tlv.h"

#define OT_LOG_COMPONENT "se.telecom"
#include "core/log.h"

#include <string.h>

#define TELECOM_BLOB_VERSION 1u
#define TELECOM_PIN_LEN      8u
#define TELECOM_PIN_PAIR_LEN 16u /* old || new, PUK || new */
#define TELECOM_PIN_LIMIT    3u
#define TELECOM_PUK_LIMIT    10u
#define TELECOM_PIN_REF      0x01u /* TS 102 221 9.5.1: PIN Appl 1 */

#define TELECOM_F_DEAD 0x01u /* PUK exhausted: card blocked for good */

#define TELECOM_INS_VERIFY  0x20u
#define TELECOM_INS_CHANGE  0x24u
#define TELECOM_INS_UNBLOCK 0x2Cu
#define TELECOM_INS_STATUS  0xF2u

#define TELECOM_TAG_PIN 0x80u
#define TELECOM_TAG_PUK 0x81u

#define TELECOM_VOL_PIN_OK 0u

struct telecom_state {
    uint8_t flags;
    uint8_t pin[TELECOM_PIN_LEN];
    uint8_t pin_tries;
    uint8_t puk[TELECOM_PIN_LEN];
    uint8_t puk_tries;
};

static const uint8_t telecom_pkg[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x04};
static const uint8_t telecom_mod[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x04, 0x01};

/* 4-8 ASCII digits then FF padding (TS 102 221 9.5.2). */
static bool telecom_pin_valid(const uint8_t p[TELECOM_PIN_LEN], size_t min)
{
    size_t n = 0;
    while (n < TELECOM_PIN_LEN && p[n] != 0xFFu) {
        n++;
    }
    if (n < min || !aputil_is_digits(p, n)) {
        return false;
    }
    for (size_t i = n; i < TELECOM_PIN_LEN; i++) {
        if (p[i] != 0xFFu) {
            return false;
        }
    }
    return true;
}

/* From 4-8 digits (or an already padded 8-byte value) to the padded form. */
static bool telecom_pin_from(const uint8_t *v, size_t n, size_t min, uint8_t out[8])
{
    if (n == 0 || n > TELECOM_PIN_LEN) {
        return false;
    }
    memset(out, 0xFF, TELECOM_PIN_LEN);
    memcpy(out, v, n);
    return telecom_pin_valid(out, min);
}

static void telecom_defaults(struct telecom_state *s)
{
    memset(s, 0, sizeof(*s));
    memset(s->pin, 0xFF, sizeof(s->pin));
    memcpy(s->pin, "1234", 4);
    memcpy(s->puk, "12345678", 8);
    s->pin_tries = TELECOM_PIN_LIMIT;
    s->puk_tries = TELECOM_PUK_LIMIT;
}

static ot_err telecom_load(const struct se_applet_ctx *x, struct telecom_state *s)
{
    struct buf_rd r;
    ot_err err = OT_OK;

    telecom_defaults(s);
    if (x->data_len == 0) {
        return OT_OK;
    }
    OT_TRY(aputil_blob_open(x, TELECOM_BLOB_VERSION, &r));
    OT_TRY(buf_rd_u8(&r, &s->flags));
    OT_TRY(buf_rd_copy(&r, s->pin, sizeof(s->pin)));
    OT_TRY(buf_rd_u8(&r, &s->pin_tries));
    OT_TRY(buf_rd_copy(&r, s->puk, sizeof(s->puk)));
    OT_TRY(buf_rd_u8(&r, &s->puk_tries));
    if (s->pin_tries > TELECOM_PIN_LIMIT || s->puk_tries > TELECOM_PUK_LIMIT) {
        err = OT_E_CORRUPT;
    }
out:
    return aputil_blob_close(&r, err, "telecom");
}

static uint16_t telecom_save(struct se_applet_ctx *x, const struct telecom_state *s)
{
    uint8_t blob[32];
    struct buf_wr w;
    uint16_t sw;

    buf_wr_init(&w, blob, sizeof(blob));
    buf_wr_u8(&w, TELECOM_BLOB_VERSION);
    buf_wr_u8(&w, s->flags);
    buf_wr_bytes(&w, s->pin, sizeof(s->pin));
    buf_wr_u8(&w, s->pin_tries);
    buf_wr_bytes(&w, s->puk, sizeof(s->puk));
    buf_wr_u8(&w, s->puk_tries);
    sw = aputil_save(x, &w);
    ot_mem_wipe(blob, sizeof(blob));
    return sw;
}

static bool telecom_perso(struct telecom_state *s, const uint8_t *d, size_t n)
{
    struct buf_rd r;
    struct tlv t;
    buf_rd_init(&r, d, n);
    while (r.left > 0) {
        if (tlv_next(&r, &t) != OT_OK || t.constructed) {
            return false;
        }
        if (t.tag == TELECOM_TAG_PIN) {
            if (!telecom_pin_from(t.val, t.len, 4, s->pin)) {
                return false;
            }
            s->pin_tries = TELECOM_PIN_LIMIT;
        } else if (t.tag == TELECOM_TAG_PUK) {
            if (t.len != TELECOM_PIN_LEN || !telecom_pin_from(t.val, t.len, 8, s->puk)) {
                return false;
            }
            s->puk_tries = TELECOM_PUK_LIMIT;
        } else {
            return false;
        }
    }
    return true;
}

/* ---------------------------------------------------------------- ops */

static ot_err telecom_install(struct se_applet_ctx *x, const uint8_t *params, size_t n)
{
    struct telecom_state s;
    ot_err err = OT_OK;
    telecom_defaults(&s);
    if (n > 0 && !telecom_perso(&s, params, n)) {
        err = OT_E_FORMAT;
    } else if (telecom_save(x, &s) != 0) {
        err = OT_E_LIMIT;
    }
    ot_mem_wipe(&s, sizeof(s));
    return err;
}

/* Checks a PIN value against the stored one, counting a failure; the new
 * counter is stored before the answer. 0 when it matched. */
static uint16_t telecom_check_pin(struct se_applet_ctx *x, struct telecom_state *s,
                                  const uint8_t *pin)
{
    uint16_t sw;
    if (s->pin_tries == 0) {
        return APUTIL_SW_BLOCKED;
    }
    if (ot_mem_equal_ct(pin, s->pin, TELECOM_PIN_LEN)) {
        if (s->pin_tries != TELECOM_PIN_LIMIT) {
            s->pin_tries = TELECOM_PIN_LIMIT;
            sw = telecom_save(x, s);
            if (sw != 0) {
                return sw;
            }
        }
        x->vol[TELECOM_VOL_PIN_OK] = 1;
        return 0;
    }
    s->pin_tries--;
    x->vol[TELECOM_VOL_PIN_OK] = 0;
    sw = telecom_save(x, s);
    return sw != 0 ? sw : (uint16_t)(APUTIL_SW_VERIFY_FAIL | s->pin_tries);
}

static uint16_t telecom_verify(struct se_applet_ctx *x, struct telecom_state *s,
                               const struct apdu *a)
{
    if (a->nc == 0) { /* TS 102 221 11.1.9: status of the PIN, no attempt */
        if (s->pin_tries == 0) {
            return APUTIL_SW_BLOCKED;
        }
        return x->vol[TELECOM_VOL_PIN_OK] ? APUTIL_SW_OK
                                          : (uint16_t)(APUTIL_SW_VERIFY_FAIL | s->pin_tries);
    }
    if (a->nc != TELECOM_PIN_LEN) {
        return APUTIL_SW_WRONG_LENGTH;
    }
    if (!telecom_pin_valid(a->data, 1)) {
        return APUTIL_SW_WRONG_DATA;
    }
    uint16_t sw = telecom_check_pin(x, s, a->data);
    return sw != 0 ? sw : APUTIL_SW_OK;
}

static uint16_t telecom_change(struct se_applet_ctx *x, struct telecom_state *s,
                               const struct apdu *a)
{
    uint16_t sw;
    if (a->nc != TELECOM_PIN_PAIR_LEN) {
        return APUTIL_SW_WRONG_LENGTH;
    }
    if (!telecom_pin_valid(a->data, 1) || !telecom_pin_valid(a->data + TELECOM_PIN_LEN, 4)) {
        return APUTIL_SW_WRONG_DATA;
    }
    sw = telecom_check_pin(x, s, a->data);
    if (sw != 0) {
        return sw;
    }
    memcpy(s->pin, a->data + TELECOM_PIN_LEN, TELECOM_PIN_LEN);
    sw = telecom_save(x, s);
    return sw != 0 ? sw : APUTIL_SW_OK;
}

static uint16_t telecom_unblock(struct se_applet_ctx *x, struct telecom_state *s,
                                const struct apdu *a)
{
    uint16_t sw;
    if (a->nc == 0) {
        return s->puk_tries == 0 ? APUTIL_SW_BLOCKED
                                 : (uint16_t)(APUTIL_SW_VERIFY_FAIL | s->puk_tries);
    }
    if (a->nc != TELECOM_PIN_PAIR_LEN) {
        return APUTIL_SW_WRONG_LENGTH;
    }
    if (!telecom_pin_valid(a->data, 1) || !telecom_pin_valid(a->data + TELECOM_PIN_LEN, 4)) {
        return APUTIL_SW_WRONG_DATA;
    }
    if (s->puk_tries == 0) {
        /* An eleventh PUK: the card is blocked for good (seed 000, [0087]). */
        s->flags |= TELECOM_F_DEAD;
        sw = telecom_save(x, s);
        if (sw != 0) {
            return sw;
        }
        OT_LOG_WARN("telecom: PUK presented after exhaustion, blocking the card");
        se_applet_block_card(x);
        return APUTIL_SW_BLOCKED;
    }
    if (!ot_mem_equal_ct(a->data, s->puk, TELECOM_PIN_LEN)) {
        s->puk_tries--;
        sw = telecom_save(x, s);
        return sw != 0 ? sw : (uint16_t)(APUTIL_SW_VERIFY_FAIL | s->puk_tries);
    }
    memcpy(s->pin, a->data + TELECOM_PIN_LEN, TELECOM_PIN_LEN);
    s->pin_tries = TELECOM_PIN_LIMIT;
    s->puk_tries = TELECOM_PUK_LIMIT;
    sw = telecom_save(x, s);
    if (sw != 0) {
        return sw;
    }
    x->vol[TELECOM_VOL_PIN_OK] = 1;
    return APUTIL_SW_OK;
}

static uint16_t telecom_status(struct se_applet_ctx *x, const struct telecom_state *s,
                               const struct apdu *a, struct buf_wr *out)
{
    uint8_t v[3];
    uint16_t sw;
    if (a->p1 != 0 || a->p2 != 0) {
        return APUTIL_SW_P1P2;
    }
    if (a->nc != 0) {
        return APUTIL_SW_WRONG_LENGTH;
    }
    sw = aputil_check_le(a, sizeof(v));
    if (sw != 0) {
        return sw;
    }
    v[0] =
        (uint8_t)((x->vol[TELECOM_VOL_PIN_OK] ? 0x01u : 0u) | (s->pin_tries == 0 ? 0x02u : 0u)
                  | (s->puk_tries == 0 ? 0x04u : 0u) | ((s->flags & TELECOM_F_DEAD) ? 0x08u : 0u));
    v[1] = s->pin_tries;
    v[2] = s->puk_tries;
    buf_wr_bytes(out, v, sizeof(v));
    return out->err == OT_OK ? APUTIL_SW_OK : APUTIL_SW_NO_DIAG;
}

static uint16_t telecom_process(struct se_applet_ctx *x, const struct apdu *a, struct buf_wr *out)
{
    struct telecom_state s;
    bool prop;
    uint16_t sw;

    switch (a->ins) {
    case TELECOM_INS_VERIFY:
    case TELECOM_INS_CHANGE:
    case TELECOM_INS_UNBLOCK:
        prop = false;
        break;
    case TELECOM_INS_STATUS:
        prop = true;
        break;
    default:
        sw = aputil_check_cla(a->cla, apdu_cla_is_proprietary(a->cla));
        return sw != 0 ? sw : APUTIL_SW_INS;
    }
    sw = aputil_check_cla(a->cla, prop);
    if (sw != 0) {
        return sw;
    }
    if (!prop && (a->p1 != 0 || a->p2 != TELECOM_PIN_REF)) {
        return APUTIL_SW_P1P2;
    }
    if (telecom_load(x, &s) != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    if ((s.flags & TELECOM_F_DEAD) != 0 && a->ins != TELECOM_INS_STATUS) {
        sw = APUTIL_SW_BLOCKED;
    } else if (a->ins == TELECOM_INS_VERIFY) {
        sw = telecom_verify(x, &s, a);
    } else if (a->ins == TELECOM_INS_CHANGE) {
        sw = telecom_change(x, &s, a);
    } else if (a->ins == TELECOM_INS_UNBLOCK) {
        sw = telecom_unblock(x, &s, a);
    } else {
        sw = telecom_status(x, &s, a, out);
    }
    ot_mem_wipe(&s, sizeof(s));
    return sw;
}

static uint16_t telecom_personalize(struct se_applet_ctx *x, uint8_t p1, uint8_t p2,
                                    const uint8_t *d, size_t n)
{
    struct telecom_state s;
    enum aputil_sd_fmt fmt;
    uint16_t sw;

    (void)p2;
    sw = aputil_perso_check(p1, n, false, &fmt);
    if (sw != 0) {
        return sw;
    }
    if (telecom_load(x, &s) != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    if ((s.flags & TELECOM_F_DEAD) != 0) {
        sw = APUTIL_SW_CONDITIONS;
    } else {
        sw = telecom_perso(&s, d, n) ? telecom_save(x, &s) : APUTIL_SW_WRONG_DATA;
    }
    ot_mem_wipe(&s, sizeof(s));
    return sw == 0 ? APUTIL_SW_OK : sw;
}

const struct se_applet_ops se_telecom_ops = {
    .name = "telecom",
    .pkg_aid = telecom_pkg,
    .pkg_aid_len = sizeof(telecom_pkg),
    .module_aid = telecom_mod,
    .module_aid_len = sizeof(telecom_mod),
    .payment = false,
    .install = telecom_install,
    .select = aputil_select_fci,
    .process = telecom_process,
    .personalize = telecom_personalize,
    .wipe = NULL,
    .ppse_entry = NULL,
};
