/* Native applet module "transit": a stored-value purse.
 *
 * Commands (proprietary class 80; docs/applets.md):
 *   GET BALANCE 80 5C 00 00 04         -> balance (u32, cents)
 *               80 5C 01 00 10         -> balance || credit counter (u32) || purse id (8)
 *   DEBIT       80 54 00 00 04 amount  -> new balance; insufficient funds: 6985
 *   CREDIT      80 52 00 00 10 amount(4) || counter(4) || MAC(8)
 *                                      -> new balance(4) || counter(4) || proof(8)
 * with, K the personalized credit key (AES-128) and ID the purse id:
 *   MAC   = first 8 bytes of AES-CMAC(K, 52 || amount || counter || ID)
 *   proof = first 8 bytes of AES-CMAC(K, D2 || new balance || counter || ID)
 * The counter of a CREDIT must be the card's credit counter + 1; a replayed
 * or out-of-order counter, like a wrong MAC, gives 6982 and changes nothing.
 *
 * Personalization (STORE DATA, BER-TLV format): DF01 credit key (16),
 * DF04 purse id (8), DF05 balance (4, only while no transaction was made),
 * DF06 balance limit (4). Install parameters: the same tags, may be empty.
 *
 * Persistent blob (version 1), big-endian:
 *   ver | flags | key[16] | id[8] | balance u32 | limit u32 | credit counter
 *   u32 | transaction counter u32
 */
#include "se/applets/aputil.h"
#include "se/applets/registry.h"

#include "core/tlv.h"
#include "crypto/cmac.h"

#define OT_LOG_COMPONENT "se.transit"
#include "core/log.h"

#include <string.h>

#define TRANSIT_BLOB_VERSION  1u
#define TRANSIT_KEY_LEN       16u
#define TRANSIT_ID_LEN        8u
#define TRANSIT_MAC_LEN       8u
#define TRANSIT_DEFAULT_LIMIT 100000u /* 1000.00 in cents */

#define TRANSIT_F_KEY 0x01u
#define TRANSIT_F_ID  0x02u

#define TRANSIT_INS_GET_BALANCE 0x5Cu
#define TRANSIT_INS_DEBIT       0x54u
#define TRANSIT_INS_CREDIT      0x52u
#define TRANSIT_PROOF_TAG       0xD2u /* INS with b8 set: the card's answer to CREDIT */

#define TRANSIT_TAG_KEY     0xDF01u
#define TRANSIT_TAG_ID      0xDF04u
#define TRANSIT_TAG_BALANCE 0xDF05u
#define TRANSIT_TAG_LIMIT   0xDF06u

struct transit_state {
    uint8_t flags;
    uint8_t key[TRANSIT_KEY_LEN];
    uint8_t id[TRANSIT_ID_LEN];
    uint32_t balance;
    uint32_t limit;
    uint32_t credit_ctr;
    uint32_t tx_ctr;
};

static const uint8_t transit_pkg[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x03};
static const uint8_t transit_mod[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x03, 0x01};

static void transit_defaults(struct transit_state *s)
{
    memset(s, 0, sizeof(*s));
    s->limit = TRANSIT_DEFAULT_LIMIT;
}

static ot_err transit_load(const struct se_applet_ctx *x, struct transit_state *s)
{
    struct buf_rd r;
    ot_err err = OT_OK;

    transit_defaults(s);
    if (x->data_len == 0) {
        return OT_OK;
    }
    OT_TRY(aputil_blob_open(x, TRANSIT_BLOB_VERSION, &r));
    OT_TRY(buf_rd_u8(&r, &s->flags));
    OT_TRY(buf_rd_copy(&r, s->key, sizeof(s->key)));
    OT_TRY(buf_rd_copy(&r, s->id, sizeof(s->id)));
    OT_TRY(buf_rd_u32be(&r, &s->balance));
    OT_TRY(buf_rd_u32be(&r, &s->limit));
    OT_TRY(buf_rd_u32be(&r, &s->credit_ctr));
    OT_TRY(buf_rd_u32be(&r, &s->tx_ctr));
    if (s->balance > s->limit) {
        err = OT_E_CORRUPT;
    }
out:
    return aputil_blob_close(&r, err, "transit");
}

static uint16_t transit_save(struct se_applet_ctx *x, const struct transit_state *s)
{
    uint8_t blob[64];
    struct buf_wr w;
    uint16_t sw;

    buf_wr_init(&w, blob, sizeof(blob));
    buf_wr_u8(&w, TRANSIT_BLOB_VERSION);
    buf_wr_u8(&w, s->flags);
    buf_wr_bytes(&w, s->key, sizeof(s->key));
    buf_wr_bytes(&w, s->id, sizeof(s->id));
    uint8_t u[16];
    ot_put_u32be(u, s->balance);
    ot_put_u32be(u + 4, s->limit);
    ot_put_u32be(u + 8, s->credit_ctr);
    ot_put_u32be(u + 12, s->tx_ctr);
    buf_wr_bytes(&w, u, sizeof(u));
    sw = aputil_save(x, &w);
    ot_mem_wipe(blob, sizeof(blob));
    return sw;
}

/* MAC of the scheme: first 8 bytes of AES-CMAC(key, tag || a || b || id). */
static ot_err transit_mac(const struct transit_state *s, uint8_t tag, uint32_t a, uint32_t b,
                          uint8_t mac[TRANSIT_MAC_LEN])
{
    uint8_t in[1 + 4 + 4 + TRANSIT_ID_LEN];
    uint8_t full[CMAC_BLOCK];
    ot_err err;

    in[0] = tag;
    ot_put_u32be(in + 1, a);
    ot_put_u32be(in + 5, b);
    memcpy(in + 9, s->id, TRANSIT_ID_LEN);
    err = cmac_aes(s->key, sizeof(s->key), in, sizeof(in), full);
    memcpy(mac, full, TRANSIT_MAC_LEN);
    ot_mem_wipe(full, sizeof(full));
    return err;
}

/* ---------------------------------------------------------------- personalization */

static bool transit_perso(struct transit_state *s, const uint8_t *d, size_t n)
{
    struct buf_rd r;
    struct tlv t;
    buf_rd_init(&r, d, n);
    while (r.left > 0) {
        if (tlv_next(&r, &t) != OT_OK || t.constructed) {
            return false;
        }
        switch (t.tag) {
        case TRANSIT_TAG_KEY:
            if (t.len != TRANSIT_KEY_LEN) {
                return false;
            }
            memcpy(s->key, t.val, t.len);
            s->flags |= TRANSIT_F_KEY;
            break;
        case TRANSIT_TAG_ID:
            if (t.len != TRANSIT_ID_LEN) {
                return false;
            }
            memcpy(s->id, t.val, t.len);
            s->flags |= TRANSIT_F_ID;
            break;
        case TRANSIT_TAG_BALANCE:
            /* An initial load only: once the purse was used, value comes by CREDIT. */
            if (t.len != 4 || s->tx_ctr != 0) {
                return false;
            }
            s->balance = ot_get_u32be(t.val);
            break;
        case TRANSIT_TAG_LIMIT:
            if (t.len != 4) {
                return false;
            }
            s->limit = ot_get_u32be(t.val);
            break;
        default:
            return false;
        }
    }
    return s->balance <= s->limit;
}

/* ---------------------------------------------------------------- ops */

static ot_err transit_install(struct se_applet_ctx *x, const uint8_t *params, size_t n)
{
    struct transit_state s;
    ot_err err = OT_OK;
    transit_defaults(&s);
    if (n > 0 && !transit_perso(&s, params, n)) {
        err = OT_E_FORMAT;
    } else if (transit_save(x, &s) != 0) {
        err = OT_E_LIMIT;
    }
    ot_mem_wipe(&s, sizeof(s));
    return err;
}

static uint16_t transit_get_balance(const struct transit_state *s, const struct apdu *a,
                                    struct buf_wr *out)
{
    size_t len;
    uint16_t sw;
    if ((a->p1 != 0 && a->p1 != 1) || a->p2 != 0) {
        return APUTIL_SW_P1P2;
    }
    if (a->nc != 0) {
        return APUTIL_SW_WRONG_LENGTH;
    }
    len = a->p1 == 0 ? 4 : 4 + 4 + TRANSIT_ID_LEN;
    sw = aputil_check_le(a, len);
    if (sw != 0) {
        return sw;
    }
    uint8_t v[8];
    ot_put_u32be(v, s->balance);
    ot_put_u32be(v + 4, s->credit_ctr);
    buf_wr_bytes(out, v, 4);
    if (a->p1 == 1) {
        buf_wr_bytes(out, v + 4, 4);
        buf_wr_bytes(out, s->id, sizeof(s->id));
    }
    return out->err == OT_OK ? APUTIL_SW_OK : APUTIL_SW_NO_DIAG;
}

static uint16_t transit_debit(struct se_applet_ctx *x, struct transit_state *s,
                              const struct apdu *a, struct buf_wr *out)
{
    uint32_t amount;
    uint16_t sw;
    if (a->p1 != 0 || a->p2 != 0) {
        return APUTIL_SW_P1P2;
    }
    if (a->nc != 4) {
        return APUTIL_SW_WRONG_LENGTH;
    }
    amount = ot_get_u32be(a->data);
    if (amount == 0) {
        return APUTIL_SW_WRONG_DATA;
    }
    if (amount > s->balance || s->tx_ctr == UINT32_MAX) {
        return APUTIL_SW_CONDITIONS; /* insufficient funds: nothing changes */
    }
    sw = aputil_check_le(a, 4);
    if (sw != 0) {
        return sw;
    }
    s->balance -= amount;
    s->tx_ctr++;
    sw = transit_save(x, s);
    if (sw != 0) {
        return sw;
    }
    uint8_t v[4];
    ot_put_u32be(v, s->balance);
    buf_wr_bytes(out, v, sizeof(v));
    return out->err == OT_OK ? APUTIL_SW_OK : APUTIL_SW_NO_DIAG;
}

static uint16_t transit_credit(struct se_applet_ctx *x, struct transit_state *s,
                               const struct apdu *a, struct buf_wr *out)
{
    uint8_t mac[TRANSIT_MAC_LEN];
    uint8_t resp[4 + 4 + TRANSIT_MAC_LEN];
    uint32_t amount, ctr;
    uint16_t sw;
    bool mac_ok;

    if (a->p1 != 0 || a->p2 != 0) {
        return APUTIL_SW_P1P2;
    }
    if (a->nc != 4 + 4 + TRANSIT_MAC_LEN) {
        return APUTIL_SW_WRONG_LENGTH;
    }
    if ((s->flags & (TRANSIT_F_KEY | TRANSIT_F_ID)) != (TRANSIT_F_KEY | TRANSIT_F_ID)) {
        return APUTIL_SW_CONDITIONS; /* not personalized */
    }
    amount = ot_get_u32be(a->data);
    ctr = ot_get_u32be(a->data + 4);
    if (transit_mac(s, TRANSIT_INS_CREDIT, amount, ctr, mac) != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    mac_ok = ot_mem_equal_ct(mac, a->data + 8, TRANSIT_MAC_LEN);
    ot_mem_wipe(mac, sizeof(mac));
    /* A wrong MAC and a replayed or skipped counter look the same from outside. */
    if (!mac_ok || s->credit_ctr == UINT32_MAX || ctr != s->credit_ctr + 1) {
        return APUTIL_SW_SECURITY;
    }
    if (amount == 0) {
        return APUTIL_SW_WRONG_DATA;
    }
    if (amount > s->limit - s->balance || s->tx_ctr == UINT32_MAX) {
        return APUTIL_SW_CONDITIONS; /* over the balance limit */
    }
    sw = aputil_check_le(a, sizeof(resp));
    if (sw != 0) {
        return sw;
    }
    s->balance += amount;
    s->credit_ctr = ctr;
    s->tx_ctr++;
    ot_put_u32be(resp, s->balance);
    ot_put_u32be(resp + 4, s->credit_ctr);
    if (transit_mac(s, TRANSIT_PROOF_TAG, s->balance, s->credit_ctr, resp + 8) != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    sw = transit_save(x, s);
    if (sw != 0) {
        return sw;
    }
    buf_wr_bytes(out, resp, sizeof(resp));
    return out->err == OT_OK ? APUTIL_SW_OK : APUTIL_SW_NO_DIAG;
}

static uint16_t transit_process(struct se_applet_ctx *x, const struct apdu *a, struct buf_wr *out)
{
    struct transit_state s;
    uint16_t sw = aputil_check_cla(a->cla, true);

    if (a->ins != TRANSIT_INS_GET_BALANCE && a->ins != TRANSIT_INS_DEBIT
        && a->ins != TRANSIT_INS_CREDIT) {
        sw = aputil_check_cla(a->cla, apdu_cla_is_proprietary(a->cla));
        return sw != 0 ? sw : APUTIL_SW_INS;
    }
    if (sw != 0) {
        return sw;
    }
    if (transit_load(x, &s) != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    if (a->ins == TRANSIT_INS_GET_BALANCE) {
        sw = transit_get_balance(&s, a, out);
    } else if (a->ins == TRANSIT_INS_DEBIT) {
        sw = transit_debit(x, &s, a, out);
    } else {
        sw = transit_credit(x, &s, a, out);
    }
    ot_mem_wipe(&s, sizeof(s));
    return sw;
}

static uint16_t transit_personalize(struct se_applet_ctx *x, uint8_t p1, uint8_t p2,
                                    const uint8_t *d, size_t n)
{
    struct transit_state s;
    enum aputil_sd_fmt fmt;
    uint16_t sw;

    (void)p2;
    sw = aputil_perso_check(p1, n, false, &fmt);
    if (sw != 0) {
        return sw;
    }
    if (transit_load(x, &s) != OT_OK) {
        return APUTIL_SW_NO_DIAG;
    }
    sw = transit_perso(&s, d, n) ? transit_save(x, &s) : APUTIL_SW_WRONG_DATA;
    ot_mem_wipe(&s, sizeof(s));
    return sw == 0 ? APUTIL_SW_OK : sw;
}

/* Software destroy: key, purse id and stored value are erased; the counters
 * stay so that old credits can never be replayed. */
static void transit_wipe(struct se_applet_ctx *x)
{
    struct transit_state s;
    uint32_t credit_ctr = 0, tx_ctr = 0;
    if (transit_load(x, &s) == OT_OK) {
        credit_ctr = s.credit_ctr;
        tx_ctr = s.tx_ctr;
    }
    transit_defaults(&s);
    s.credit_ctr = credit_ctr;
    s.tx_ctr = tx_ctr;
    (void)transit_save(x, &s);
}

const struct se_applet_ops se_transit_ops = {
    .name = "transit",
    .pkg_aid = transit_pkg,
    .pkg_aid_len = sizeof(transit_pkg),
    .module_aid = transit_mod,
    .module_aid_len = sizeof(transit_mod),
    .payment = true,
    .install = transit_install,
    .select = aputil_select_fci,
    .process = transit_process,
    .personalize = transit_personalize,
    .wipe = transit_wipe,
    .ppse_entry = NULL,
};
